//! `PUT /v1/devices/{device_id}/recovery-keys/{key_id}`: escrow a key
//! (201 when stored, 200 when the same key was already held). The body
//! holds a recovery password: no problem ever quotes a value.

use crate::api::body::{Body, Query, bad, fields, parse};
use crate::api::views::{KeyView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::ids::{DeviceId, KeyId};
use crate::domain::lifecycle::{self, Escrowed};
use crate::domain::model::{RecoveryPassword, VolumeType};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The answer: the key's metadata and its device.
#[derive(Serialize)]
struct EscrowedBody<'a> {
    #[serde(flatten)]
    key: KeyView<'a>,
    device_id: &'a str,
}

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let (device, key) = (&c.params[0], &c.params[1]);
    let device_id = DeviceId::parse(device).map_err(|e| bad("device_id", e))?;
    let key_id = KeyId::parse(key).map_err(|e| bad("key_id", e))?;
    let body: EscrowRequest = parse(&c.req.headers, &c.req.body)?;
    let request = lifecycle::EscrowRequest {
        device_id,
        key_id,
        volume_type: body.volume_type,
        password: body.recovery_password,
        created_at: body.created_at,
    };
    let (status, key) =
        match lifecycle::escrow(c.portal.into(), c.permitted()?, &c.meta, request).await? {
            Escrowed::Created(k) => (StatusCode::CREATED, k),
            Escrowed::AlreadyHeld(k) => (StatusCode::OK, k),
        };
    let body = EscrowedBody {
        key: KeyView::from(&key),
        device_id: device,
    };
    Ok(json_response(status, &body))
}

/// A key to escrow.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EscrowRequest {
    /// What kind of volume the key unlocks.
    #[serde(deserialize_with = "fields::volume_type")]
    pub(crate) volume_type: VolumeType,
    /// The 48-digit recovery password: 8 dash-separated groups of 6
    /// digits, each group a multiple of 11 below 720896 (as BitLocker
    /// generates them).
    #[serde(deserialize_with = "fields::recovery_password")]
    pub(crate) recovery_password: RecoveryPassword,
    /// When BitLocker created the key (RFC 3339); default now, at most 5
    /// minutes ahead.
    #[serde(default, deserialize_with = "fields::opt_timestamp")]
    pub(crate) created_at: Option<OffsetDateTime>,
}

impl Body for EscrowRequest {}
