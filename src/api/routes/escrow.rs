//! `PUT /v1/devices/{device_id}/recovery-keys/{key_id}`: escrow a key
//! (201 when stored, 200 when the same key was already held). The body
//! holds a recovery password: no problem ever quotes a value.

use crate::api::body::{Query, bad, json_object, only, required, string};
use crate::api::views::{KeyView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, KeyId};
use crate::domain::lifecycle::{self, EscrowRequest, Escrowed};
use crate::domain::model::{RecoveryPassword, VolumeType};
use http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};

/// The answer: the key's metadata and its device.
#[derive(Serialize)]
struct EscrowedBody<'a> {
    #[serde(flatten)]
    key: KeyView<'a>,
    device_id: &'a str,
}
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let (device, key) = (&c.params[0], &c.params[1]);
    let device_id = DeviceId::parse(device).map_err(|e| bad("device_id", e))?;
    let key_id = KeyId::parse(key).map_err(|e| bad("key_id", e))?;
    let body = json_object(&c.req.headers, &c.req.body)?;
    let request = escrow_request(device_id, key_id, body)?;
    let (status, key) = match lifecycle::escrow(c.portal, &c.caller, &c.meta, request).await? {
        Escrowed::Created(k) => (StatusCode::CREATED, k),
        Escrowed::AlreadyHeld(k) => (StatusCode::OK, k),
    };
    let body = EscrowedBody {
        key: KeyView::from(&key),
        device_id: device,
    };
    Ok(json_response(status, &body))
}

pub(crate) fn volume_type(v: &str) -> Result<VolumeType, ApiError> {
    VolumeType::parse(v).ok_or_else(|| {
        ApiError::BadRequest(
            "volume_type must be operating_system, fixed_data or removable_data".into(),
        )
    })
}

fn escrow_request(
    device_id: DeviceId,
    key_id: KeyId,
    body: Map<String, Value>,
) -> Result<EscrowRequest, ApiError> {
    only(&body, &["volume_type", "recovery_password", "created_at"])?;
    let volume_type = volume_type(required(&body, "volume_type")?)?;
    // Never echo the password, valid or not.
    let password = RecoveryPassword::parse(required(&body, "recovery_password")?)
        .map_err(|e| ApiError::BadRequest(format!("the recovery password {e}")))?;
    let created_at = string(&body, "created_at")?
        .map(|t| {
            OffsetDateTime::parse(t, &Rfc3339).map_err(|_| {
                ApiError::BadRequest(
                    "created_at must be an RFC 3339 timestamp such as 2024-05-15T09:30:00Z".into(),
                )
            })
        })
        .transpose()?;
    Ok(EscrowRequest {
        device_id,
        key_id,
        volume_type,
        password,
        created_at,
    })
}
