//! `POST /v1/recovery-keys/batch`: up to `batch::MAX_KEYS` keys at once,
//! for a helpdesk agent during an open incident. Each key gets its own
//! status; bad input is audited.

use super::retrieve_key::denied;
use crate::api::body::{Query, check_reason, is_json, starts_object};
use crate::api::views::{json_response, rfc3339};
use crate::api::{ApiResponse, Ctx, HttpError, UNAVAILABLE_RETRY_AFTER_SECS};
use crate::domain::batch::{self, BatchItem, BatchKey, ItemOutcome};
use crate::domain::ids::KeySelector;
use crate::domain::keys::{self, Attempt};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    let (keys, reason) = match parse_batch_body(c) {
        Ok(v) => v,
        Err(e) => {
            let attempt = Attempt {
                portal: c.portal,
                caller: &c.caller,
                meta: &c.meta,
                device_id: None,
                justification: None,
            };
            return Err(denied(attempt, e).await);
        }
    };
    let items = batch::retrieve(c.portal, &c.caller, &c.meta, keys, &reason).await?;
    let results: Vec<Value> = items.into_iter().map(item_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results, "display_seconds": keys::DISPLAY_SECONDS }),
    ))
}

fn item_json(item: BatchItem) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("key_id_prefix".into(), json!(item.requested));
    let (status, detail) = match item.outcome {
        ItemOutcome::Disclosed(d) => {
            m.insert("device_id".into(), json!(d.device_id));
            m.insert("key_id".into(), json!(d.key_id));
            m.insert("volume_type".into(), json!(d.volume_type));
            m.insert("recovery_password".into(), json!(d.password.expose()));
            m.insert("created_at".into(), json!(rfc3339(d.created_at)));
            (200, None)
        }
        ItemOutcome::NotFound => (
            404,
            Some(
                "No key of your organization matches this key ID. Check the digits on the recovery screen.",
            ),
        ),
        ItemOutcome::Ambiguous(candidates) => {
            m.insert("candidates".into(), json!(candidates));
            (
                409,
                Some(
                    "Several keys start with this key ID. Enter more digits of the key ID shown on the recovery screen.",
                ),
            )
        }
        ItemOutcome::RateLimited { retry_after_secs } => {
            m.insert("retry_after".into(), json!(retry_after_secs));
            (
                429,
                Some(
                    "You reached your limit of recovery keys for now (the incident's limit). Try this key again later.",
                ),
            )
        }
        ItemOutcome::Unavailable => {
            m.insert("retry_after".into(), json!(UNAVAILABLE_RETRY_AFTER_SECS));
            (
                503,
                Some(
                    "This key could not be disclosed safely right now; nothing was disclosed. Try it again in a few seconds.",
                ),
            )
        }
        ItemOutcome::Internal => (
            500,
            Some("The stored key could not be decrypted. Contact your IT administrator."),
        ),
    };
    m.insert("status".into(), json!(status));
    if let Some(d) = detail {
        m.insert("detail".into(), json!(d));
    }
    Value::Object(m)
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
