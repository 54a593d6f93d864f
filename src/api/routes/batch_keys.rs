//! `POST /v1/recovery-keys/batch`: up to `batch::MAX_KEYS` keys at once,
//! for a helpdesk agent during an open incident. Each key gets its own
//! status; bad input is audited.

use super::retrieve_key::denied;
use crate::api::body::{Query, check_reason, is_json, starts_object};
use crate::api::views::{json_response, rfc3339};
use crate::api::{ApiResponse, Ctx, HttpError, UNAVAILABLE_RETRY_AFTER_SECS};
use crate::domain::audit::Audit;
use crate::domain::batch::{self, BatchItem, BatchKey, ItemOutcome};
use crate::domain::ids::{DeviceId, KeyId, KeySelector};
use crate::domain::keys;
use crate::domain::model::{RecoveryPassword, VolumeType};
use http::StatusCode;
use serde::{Deserialize, Serialize};

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    let (keys, reason) = match parse_batch_body(c) {
        Ok(v) => v,
        Err(e) => {
            let attempt = Audit::disclosure(c.portal, &c.caller, &c.meta, None, None);
            return Err(denied(attempt, e).await);
        }
    };
    let items = batch::retrieve(c.portal, &c.caller, &c.meta, keys, &reason).await?;
    let body = BatchAnswer {
        results: items.into_iter().map(ItemResult::from).collect(),
        display_seconds: keys::DISPLAY_SECONDS,
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// The answer: one result per requested key, in the order asked.
#[derive(Serialize)]
struct BatchAnswer {
    results: Vec<ItemResult>,
    display_seconds: u32,
}

/// One key's result: its own status, and the key or what to do next.
#[derive(Serialize)]
struct ItemResult {
    key_id_prefix: String,
    #[serde(flatten)]
    disclosed: Option<ItemDisclosure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidates: Option<Vec<KeyId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'static str>,
}

#[derive(Serialize)]
struct ItemDisclosure {
    device_id: DeviceId,
    key_id: KeyId,
    volume_type: VolumeType,
    #[serde(serialize_with = "expose")]
    recovery_password: RecoveryPassword,
    created_at: String,
}

fn expose<S: serde::Serializer>(p: &RecoveryPassword, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.expose())
}

impl From<BatchItem> for ItemResult {
    fn from(item: BatchItem) -> Self {
        let mut r = ItemResult {
            key_id_prefix: item.requested,
            disclosed: None,
            candidates: None,
            retry_after: None,
            status: 200,
            detail: None,
        };
        let (status, detail) = match item.outcome {
            ItemOutcome::Disclosed(d) => {
                r.disclosed = Some(ItemDisclosure {
                    device_id: d.device_id,
                    key_id: d.key_id,
                    volume_type: d.volume_type,
                    recovery_password: d.password,
                    created_at: rfc3339(d.created_at),
                });
                return r;
            }
            ItemOutcome::NotFound => (
                404,
                "No key of your organization matches this key ID. Check the digits on the recovery screen.",
            ),
            ItemOutcome::Ambiguous(candidates) => {
                r.candidates = Some(candidates);
                (
                    409,
                    "Several keys start with this key ID. Enter more digits of the key ID shown on the recovery screen.",
                )
            }
            ItemOutcome::RateLimited { retry_after_secs } => {
                r.retry_after = Some(retry_after_secs);
                (
                    429,
                    "You reached your limit of recovery keys for now (the incident's limit). Try this key again later.",
                )
            }
            ItemOutcome::Unavailable => {
                r.retry_after = Some(UNAVAILABLE_RETRY_AFTER_SECS);
                (
                    503,
                    "This key could not be disclosed safely right now; nothing was disclosed. Try it again in a few seconds.",
                )
            }
            ItemOutcome::Internal => (
                500,
                "The stored key could not be decrypted. Contact your IT administrator.",
            ),
        };
        (r.status, r.detail) = (status, Some(detail));
        r
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    key_ids: Vec<String>,
    reason: Option<String>,
}

fn parse_batch_body(c: &Ctx<'_>) -> Result<(Vec<BatchKey>, String), HttpError> {
    Query::parse(c.query(), &[])?;
    let body = &c.req.body;
    if !is_json(&c.req.headers) {
        return Err(HttpError::UnsupportedMediaType);
    }
    if !starts_object(body) {
        return Err(HttpError::bad_request(
            r#"the body must be a JSON object such as {"key_ids": ["3B8FAA18", "1F2E3D4C"], "reason": "incident 2026-11-25"}"#,
        ));
    }
    let b: BatchBody = serde_json::from_slice(body).map_err(|e| {
        HttpError::bad_request(format!(
            "invalid JSON body (line {}, column {}): it must be an object with key_ids (a list of key IDs) and reason",
            e.line(),
            e.column()
        ))
    })?;
    if b.key_ids.is_empty() || b.key_ids.len() > batch::MAX_KEYS {
        return Err(HttpError::bad_request(format!(
            "key_ids must list 1 to {} key IDs",
            batch::MAX_KEYS
        )));
    }
    let keys = b
        .key_ids
        .into_iter()
        .enumerate()
        .map(|(i, k)| match KeySelector::parse(&k) {
            Ok(selector) => Ok(BatchKey {
                requested: k,
                selector,
            }),
            Err(_) => Err(HttpError::bad_request(format!(
                "key_ids[{i}] must be a full key ID (GUID) or at least 8 of its leading hex digits"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let reason = match b.reason {
        Some(r) if !r.trim().is_empty() => r,
        _ => {
            return Err(HttpError::bad_request(
                "reason is required for a batch retrieval: give the incident or ticket it is for",
            ));
        }
    };
    Ok((keys, check_reason(&reason)?))
}
