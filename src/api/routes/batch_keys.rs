//! `POST /v1/recovery-keys/batch`: up to `batch::MAX_KEYS` keys at once,
//! for a helpdesk agent during an open incident. Each key gets its own
//! status; bad input is audited.

use super::retrieve_key::denied;
use crate::api::body::{Body, MAX_REASON_CHARS, Query, fields, parse};
use crate::api::openapi::{
    Answer, INCIDENT_REQUIRED, INSUFFICIENT_SCOPE, RequestBody, RouteDoc, SECOND_PERSON_REQUIRED,
    SHARED_INVALID_REQUEST, SHARED_UNAVAILABLE, SHARED_UNSUPPORTED_MEDIA_TYPE, Timestamp, of,
};
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
use utoipa::ToSchema;

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
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BatchResponse)]
struct BatchAnswer {
    /// One per requested key, in request order.
    results: Vec<ItemResult>,
    /// How long a client shows each password.
    display_seconds: u32,
}

/// One key's result: its own status, and the key (a 200) or what to do
/// next.
// The disclosed key's fields are written out rather than a flattened
// struct: that would be an `allOf` in the document, which cannot keep
// `additionalProperties: false`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BatchResult)]
struct ItemResult {
    /// The key ID as requested.
    key_id_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    device_id: Option<DeviceId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    key_id: Option<KeyId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    volume_type: Option<VolumeType>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose")]
    #[schema(nullable = false, value_type = String, pattern = "^[0-9]{6}(-[0-9]{6}){7}$")]
    recovery_password: Option<RecoveryPassword>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Timestamp)]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    candidates: Option<Vec<KeyId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 1)]
    retry_after: Option<u64>,
    /// 200: disclosed; 404: no readable key of the tenant matches; 409:
    /// several match (`candidates`); 429: the agent's limit was reached
    /// (`retry_after`); 503: could not be disclosed safely now (nothing
    /// was); 500: the stored key is broken.
    #[schema(schema_with = item_status)]
    status: u16,
    /// What to do next (every status but 200).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    detail: Option<&'static str>,
}

/// The statuses `ItemResult::from` gives.
fn item_status() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Integer)
        .enum_values(Some([200, 404, 409, 429, 500, 503]))
        .description(Some("200: disclosed; 404: no readable key of the tenant matches; 409: several match (`candidates`); 429: the agent's limit was reached (`retry_after`); 503: could not be disclosed safely now (nothing was); 500: the stored key is broken."))
        .build()
}

fn expose<S: serde::Serializer>(p: &Option<RecoveryPassword>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(p.expose()),
        None => s.serialize_none(),
    }
}

impl From<BatchItem> for ItemResult {
    fn from(item: BatchItem) -> Self {
        let mut r = ItemResult {
            key_id_prefix: item.requested,
            device_id: None,
            key_id: None,
            volume_type: None,
            recovery_password: None,
            created_at: None,
            candidates: None,
            retry_after: None,
            status: 200,
            detail: None,
        };
        let (status, detail) = match item.outcome {
            ItemOutcome::Disclosed(d) => {
                r.device_id = Some(d.device_id);
                r.key_id = Some(d.key_id);
                r.volume_type = Some(d.volume_type);
                r.recovery_password = Some(d.password);
                r.created_at = Some(rfc3339(d.created_at));
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
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchRequest {
    /// Each a full key ID, or at least 8 of its leading hex digits (dashes
    /// ignored); 1 to 100 of them.
    #[serde(deserialize_with = "key_ids")]
    #[schema(schema_with = key_ids_schema)]
    pub(crate) key_ids: Vec<BatchKey>,
    /// Recorded in every audit event of the batch.
    #[serde(deserialize_with = "batch_reason")]
    #[schema(min_length = 1, max_length = 200)]
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

/// 1 to `batch::MAX_KEYS` key IDs or prefixes.
fn key_ids_schema() -> utoipa::openapi::Array {
    let item = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(
            "A full key ID, or at least 8 of its leading hex digits (dashes ignored).",
        ));
    utoipa::openapi::ArrayBuilder::new()
        .items(item)
        .min_items(Some(1))
        .max_items(Some(batch::MAX_KEYS))
        .build()
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

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "getRecoveryKeysBatch",
    tags: &["helpdesk", "incidents"],
    summary: "Retrieve up to 100 recovery passwords during an incident",
    description: "Helpdesk batch retrieval while an incident is open in the caller's tenant. Every disclosed key has its own granted audit event, durable before it is decrypted (no audit, no key, per item); the same checks as a single retrieval, in the same order, with per-item answers in request order. The incident's `helpdesk_rate_limit` applies per agent. **Permission:** `RecoveryKey.Read.All`, and an open incident (else 403 `incident-required`).",
    params: &[],
    body: Some(RequestBody {
        required: true,
        description: "Key IDs and a reason (at most 16 KiB).",
        schema: of::<BatchRequest>,
    }),
    answers: &[
        Answer::Success(200, "Per-key results.", Some(of::<BatchAnswer>)),
        Answer::Shared(&SHARED_INVALID_REQUEST),
        Answer::Problem(
            "The token lacks `RecoveryKey.Read.All` (`required_permission`), no incident is open (`incident-required`), or the caller opened the incident (`second-person-required`: another agent must batch-retrieve).",
            &[
                &INSUFFICIENT_SCOPE,
                &INCIDENT_REQUIRED,
                &SECOND_PERSON_REQUIRED,
            ],
        ),
        Answer::Shared(&SHARED_UNSUPPORTED_MEDIA_TYPE),
        Answer::Shared(&SHARED_UNAVAILABLE),
    ],
};
