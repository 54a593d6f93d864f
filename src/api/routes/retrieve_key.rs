//! `POST /v1/devices/{device_id}/recovery-key`: one recovery key, after
//! every check and a durable audit event. Bad input is audited too.

use crate::api::body::{Body, Query, bad, fields, parse_optional};
use crate::api::views::{json_response, rfc3339};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::audit::Audit;
use crate::domain::denial::Denied;
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, KeySelector};
use crate::domain::keys::{self, RetrievalRequest};
use crate::domain::model::VolumeType;
use http::StatusCode;
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
    let attempt =
        |device_id| Audit::disclosure(c.portal.into(), &c.caller, &c.meta, device_id, None);
    let device_id = match DeviceId::parse(&c.params[0]) {
        Ok(d) => d,
        Err(e) => return Err(denied(attempt(None), bad("device_id", e).into()).await),
    };
    // This route takes no query parameters: a stray one is refused (and
    // audited like any other bad input) rather than silently ignored.
    let input = Query::parse(c.query(), &[])
        .map_err(HttpError::from)
        .and_then(|_| parse_optional::<RecoveryKeyRequest>(&c.req.headers, &c.req.body));
    let RecoveryKeyRequest {
        key_id: key,
        reason: justification,
    } = match input {
        Ok(v) => v,
        Err(e) => return Err(denied(attempt(Some(&device_id)), e).await),
    };
    let request = RetrievalRequest {
        device_id,
        key,
        justification,
    };
    let d = keys::retrieve(c.portal.into(), c.permitted()?, &c.meta, request).await?;
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

/// Which key, and why. Optional: an empty body, `{}`, and absent or null
/// fields all mean the newest `operating_system` key, no reason.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecoveryKeyRequest {
    /// A full key ID (GUID, any case, with or without dashes or braces) or
    /// at least 8 of its leading hex digits (dashes ignored), as read from
    /// the recovery screen.
    #[serde(default, deserialize_with = "fields::opt_key_selector")]
    pub(crate) key_id: Option<KeySelector>,
    /// Why the key is needed (a ticket number, ...): at most 200
    /// characters, no control characters. Recorded in the audit event as
    /// `justification`.
    #[serde(default, deserialize_with = "fields::opt_reason")]
    pub(crate) reason: Option<String>,
}

impl Body for RecoveryKeyRequest {
    const EXAMPLE: Option<&'static str> =
        Some(r#"{"key_id": "3B8FAA18", "reason": "ticket 4711"}"#);
}
