//! `POST /v1/devices/{device_id}/recovery-key`: one recovery key, after
//! every check and a durable audit event. Bad input is audited too.

use crate::api::body::{Body, Query, bad, fields, parse_optional};
use crate::api::openapi::{
    AMBIGUOUS_KEY_ID, Answer, DEVICE_NOT_FOUND, INSUFFICIENT_SCOPE, INTERNAL, NO_RECOVERY_KEY,
    Param, RATE_LIMITED, RequestBody, RouteDoc, SELF_SERVICE_DISABLED, SHARED_INVALID_REQUEST,
    SHARED_UNAVAILABLE, SHARED_UNSUPPORTED_MEDIA_TYPE, Timestamp, of,
};
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
use utoipa::ToSchema;

/// The answer: the key, and how long the page may show it.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RecoveryKey)]
struct DisclosureBody<'a> {
    device_id: &'a DeviceId,
    key_id: &'a crate::domain::ids::KeyId,
    volume_type: VolumeType,
    /// The 48-digit BitLocker recovery password: 8 dash-separated groups
    /// of 6 digits.
    #[schema(
        pattern = "^[0-9]{6}(-[0-9]{6}){7}$",
        example = "038258-286682-604857-317823-647658-401093-009361-230186"
    )]
    recovery_password: &'a str,
    #[schema(value_type = Timestamp)]
    created_at: String,
    /// How long the portal shows the key.
    #[schema(schema_with = display_seconds)]
    display_seconds: u32,
}

/// `keys::DISPLAY_SECONDS`, a constant of this deployment.
fn display_seconds() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Integer)
        .enum_values(Some([keys::DISPLAY_SECONDS]))
        .description(Some("How long the portal shows the key."))
        .build()
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
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    description = "Optional. An empty body, `{}`, and absent or null fields all mean: the newest `operating_system` key, no reason."
)]
pub(crate) struct RecoveryKeyRequest {
    /// A full key ID (GUID, any case, with or without dashes or braces) or
    /// at least 8 of its leading hex digits (dashes ignored), as read from
    /// the recovery screen.
    #[serde(default, deserialize_with = "fields::opt_key_selector")]
    #[schema(
        value_type = Option<String>,
        pattern = "^(-*([0-9A-Fa-f]-*){8,32}|\\{([0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})\\})$",
        example = "3B8FAA18"
    )]
    pub(crate) key_id: Option<KeySelector>,
    /// Why the key is needed (a ticket number, ...): at most 200
    /// characters, no control characters. Recorded in the audit event as
    /// `justification`.
    #[serde(default, deserialize_with = "fields::opt_reason")]
    #[schema(
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$",
        example = "ticket 4711"
    )]
    pub(crate) reason: Option<String>,
}

impl Body for RecoveryKeyRequest {
    const EXAMPLE: Option<&'static str> =
        Some(r#"{"key_id": "3B8FAA18", "reason": "ticket 4711"}"#);
}

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "getRecoveryKey",
    tags: &["devices", "helpdesk"],
    summary: "Retrieve a device's recovery password",
    description: "Discloses one recovery password, after every check and a durable audit event (no audit, no key). Without `key_id`, the newest `operating_system` key. Every authenticated attempt is audited, granted or denied; a retried `X-Request-Id` adds no second event. **Permission:** `RecoveryKey.Read` or `RecoveryKey.Read.All` (`RecoveryKey.Read`: own devices, if the tenant allows self-service; `RecoveryKey.Read.All`: any device of the tenant). Disclosures per caller are limited per rolling hour (`PORTAL_KEY_RATE_LIMIT`).",
    params: &[Param::path("device_id", of::<crate::domain::ids::DeviceId>)],
    body: Some(RequestBody {
        required: false,
        description: "Optional (at most 4 KiB).",
        schema: of::<RecoveryKeyRequest>,
    }),
    answers: &[
        Answer::Success(
            200,
            "The recovery password (with `Pragma: no-cache`).",
            Some(of::<DisclosureBody>),
        ),
        Answer::Shared(&SHARED_INVALID_REQUEST),
        Answer::Problem(
            "The token lacks the permission (`required_permission`); or the tenant turned self-service off (`helpdesk`).",
            &[&INSUFFICIENT_SCOPE, &SELF_SERVICE_DISABLED],
        ),
        Answer::Problem(
            "The device is missing, another user's or another tenant's (one identical answer); or no key is held for it (with `helpdesk`).",
            &[&DEVICE_NOT_FOUND, &NO_RECOVERY_KEY],
        ),
        Answer::Problem(
            "The key-ID prefix matches several keys of the device: `candidates` lists them.",
            &[&AMBIGUOUS_KEY_ID],
        ),
        Answer::Shared(&SHARED_UNSUPPORTED_MEDIA_TYPE),
        Answer::Problem(
            "Too many keys disclosed to this caller in the rolling hour.",
            &[&RATE_LIMITED],
        ),
        Answer::Problem(
            "Stored data could not be decrypted; nothing disclosed. Never caused by client input.",
            &[&INTERNAL],
        ),
        Answer::Shared(&SHARED_UNAVAILABLE),
    ],
};
