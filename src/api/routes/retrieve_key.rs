//! `POST /v1/devices/{device_id}/recovery-key`: one recovery key, after
//! every check and a durable audit event. Bad input is audited too.

use crate::api::body::{Query, bad, check_reason, is_blank, is_json, starts_object};
use crate::api::views::{json_response, rfc3339};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::audit::Audit;
use crate::domain::denial::Denied;
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, KeySelector};
use crate::domain::keys::{self, RetrievalRequest};
use crate::domain::model::VolumeType;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde::Serialize;

/// The answer: the key, and how long the page may show it.
#[derive(Serialize)]
struct DisclosureBody<'a> {
    device_id: &'a DeviceId,
    key_id: &'a crate::domain::ids::KeyId,
    volume_type: VolumeType,
    recovery_password: &'a str,
    created_at: String,
    display_seconds: u32,
}

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    let attempt = |device_id| Audit::disclosure(c.portal, &c.caller, &c.meta, device_id, None);
    let device_id = match DeviceId::parse(&c.params[0]) {
        Ok(d) => d,
        Err(e) => return Err(denied(attempt(None), bad("device_id", e).into()).await),
    };
    // This route takes no query parameters: a stray one is refused (and
    // audited like any other bad input) rather than silently ignored.
    let input = Query::parse(c.query(), &[])
        .map_err(HttpError::from)
        .and_then(|_| parse_key_body(&c.req.headers, &c.req.body));
    let (key, justification) = match input {
        Ok(v) => v,
        Err(e) => return Err(denied(attempt(Some(&device_id)), e).await),
    };
    let request = RetrievalRequest {
        device_id,
        key,
        justification,
    };
    let d = keys::retrieve(c.portal, &c.caller, &c.meta, request).await?;
    let body = DisclosureBody {
        device_id: &d.device_id,
        key_id: &d.key_id,
        volume_type: d.volume_type,
        recovery_password: d.password.expose(),
        created_at: rfc3339(d.created_at),
        display_seconds: keys::DISPLAY_SECONDS,
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// Audits bad input of a disclosure attempt as `invalid_request`.
pub(super) async fn denied(attempt: Audit<'_>, e: HttpError) -> HttpError {
    match e {
        HttpError::Domain(e) => attempt.deny(None, Denied::InvalidRequest, e).await.into(),
        transport => {
            let recorded = ApiError::BadRequest(transport.to_string());
            attempt.deny(None, Denied::InvalidRequest, recorded).await;
            transport
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    key_id: Option<String>,
    reason: Option<String>,
}

fn parse_key_body(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Option<KeySelector>, Option<String>), HttpError> {
    if is_blank(body) {
        return Ok((None, None));
    }
    if !is_json(headers) {
        return Err(HttpError::UnsupportedMediaType);
    }
    if !starts_object(body) {
        return Err(HttpError::bad_request(
            r#"the body must be a JSON object such as {"key_id": "3B8FAA18", "reason": "ticket 4711"}"#,
        ));
    }
    let b: KeyBody = serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("invalid JSON body: {e}")))?;
    let key = b
        .key_id
        .map(|k| {
            KeySelector::parse(&k).map_err(|_| {
                HttpError::bad_request(
                    "key_id must be a full key ID (GUID) or at least 8 of its leading hex digits",
                )
            })
        })
        .transpose()?;
    let reason = b.reason.map(|r| check_reason(&r)).transpose()?;
    Ok((key, reason.filter(|r| !r.trim().is_empty())))
}
