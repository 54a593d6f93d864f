//! `POST /v1/recovery-keys/batch`: up to `batch::MAX_KEYS` keys at once,
//! for a helpdesk agent during an open incident. Each key gets its own
//! status; bad input is audited.

use super::retrieve_key::denied;
use crate::api::body::{Body, MAX_REASON_CHARS, Query, fields, parse};
use crate::api::views::{json_response, rfc3339};
use crate::api::{ApiResponse, Ctx, HttpError, UNAVAILABLE_RETRY_AFTER_SECS};
use crate::domain::audit::Audit;
use crate::domain::batch::{self, BatchItem, BatchKey, ItemOutcome};
use crate::domain::ids::{DeviceId, KeyId, KeySelector};
use crate::domain::keys;
use crate::domain::model::{RecoveryPassword, VolumeType};
use http::StatusCode;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    let input = Query::parse(c.query(), &[])
        .map_err(HttpError::from)
        .and_then(|_| parse::<BatchRequest>(&c.req.headers, &c.req.body));
    let BatchRequest {
        key_ids: keys,
        reason,
    } = match input {
        Ok(v) => v,
        Err(e) => {
            let attempt = Audit::disclosure(c.portal.into(), &c.caller, &c.meta, None, None);
            return Err(denied(attempt, e).await);
        }
    };
    let items = batch::retrieve(c.portal.into(), c.permitted()?, &c.meta, keys, &reason).await?;
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

/// Key IDs and a reason.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchRequest {
    /// Each a full key ID, or at least 8 of its leading hex digits (dashes
    /// ignored); 1 to 100 of them.
    #[serde(deserialize_with = "key_ids")]
    pub(crate) key_ids: Vec<BatchKey>,
    /// Recorded in every audit event of the batch.
    #[serde(deserialize_with = "batch_reason")]
    pub(crate) reason: String,
}

const REASON_REQUIRED: &str =
    "is required for a batch retrieval: give the incident or ticket it is for";

impl Body for BatchRequest {
    const EXAMPLE: Option<&'static str> =
        Some(r#"{"key_ids": ["3B8FAA18", "1F2E3D4C"], "reason": "incident 2026-11-25"}"#);
    const SYNTAX_HINT: &'static str =
        ": it must be an object with key_ids (a list of key IDs) and reason";
    fn missing(field: &str) -> Option<String> {
        (field == "reason").then(|| REASON_REQUIRED.into())
    }
}

fn batch_reason<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match fields::opt_string(d)? {
        Some(r) if !r.trim().is_empty() => fields::reason(&r, MAX_REASON_CHARS),
        _ => Err(fields::must(REASON_REQUIRED)),
    }
}

/// One requested key, as typed and as a selector.
struct Requested(BatchKey);

impl<'de> Deserialize<'de> for Requested {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let rule = fields::KEY_SELECTOR_RULE;
        let Value::String(requested) = fields::value(d)? else {
            return Err(fields::must(rule));
        };
        let selector = KeySelector::parse(&requested).map_err(|_| fields::must(rule))?;
        Ok(Self(BatchKey {
            requested,
            selector,
        }))
    }
}

/// 1 to `batch::MAX_KEYS` key IDs, each problem naming its position.
fn key_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BatchKey>, D::Error> {
    struct KeyIds;
    impl<'de> Visitor<'de> for KeyIds {
        type Value = Vec<BatchKey>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "must list 1 to {} key IDs", batch::MAX_KEYS)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let count_ok = |n: usize| (1..=batch::MAX_KEYS).contains(&n);
            // The count first, as the list holds it: before any item's problem.
            if let Some(n) = seq.size_hint().filter(|n| !count_ok(*n)) {
                return Err(de::Error::invalid_length(n, &self));
            }
            let mut keys = Vec::new();
            while let Some(Requested(k)) = seq.next_element()? {
                keys.push(k);
            }
            if count_ok(keys.len()) {
                Ok(keys)
            } else {
                Err(de::Error::invalid_length(keys.len(), &self))
            }
        }
    }
    d.deserialize_seq(KeyIds)
}
