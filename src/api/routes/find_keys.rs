//! `GET /v1/recovery-keys?key_id_prefix=…`: which keys (metadata only) of
//! the tenant start with a key ID prefix (helpdesk).

use crate::api::body::{Query, bad};
use crate::api::views::{json_response, rfc3339};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::devices;
use crate::domain::ids::KeyIdPrefix;
use crate::domain::ids::{DeviceId, KeyId, UserId};
use crate::domain::model::VolumeType;
use http::StatusCode;
use serde::Serialize;

/// The answer: the matching keys' metadata and where they are.
#[derive(Serialize)]
struct RecoveryKeysBody<'a> {
    recovery_keys: Vec<KeyLocationView<'a>>,
}

#[derive(Serialize)]
struct KeyLocationView<'a> {
    key_id: &'a KeyId,
    device_id: &'a DeviceId,
    display_name: &'a str,
    owner: &'a UserId,
    volume_type: VolumeType,
    created_at: String,
}

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    let q = Query::parse(c.query(), &["key_id_prefix"])?;
    let raw = q
        .get("key_id_prefix")
        .ok_or_else(|| HttpError::bad_request("key_id_prefix is required"))?;
    let prefix = KeyIdPrefix::parse(raw).map_err(|e| bad("key_id_prefix", e))?;
    let keys = devices::find_keys(&*c.portal.store, c.permitted()?, &prefix).await?;
    let recovery_keys = keys
        .iter()
        .map(|k| KeyLocationView {
            key_id: &k.key_id,
            device_id: &k.device_id,
            display_name: &k.display_name,
            owner: &k.owner,
            volume_type: k.volume_type,
            created_at: rfc3339(k.created_at),
        })
        .collect();
    let body = RecoveryKeysBody { recovery_keys };
    Ok(json_response(StatusCode::OK, &body))
}
