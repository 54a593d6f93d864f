//! `GET /v1/recovery-keys?key_id_prefix=…`: which keys (metadata only) of
//! the tenant start with a key ID prefix (helpdesk).

use crate::api::body::{Query, bad};
use crate::api::openapi::{
    Answer, In, Param, RouteDoc, SHARED_INSUFFICIENT_SCOPE, SHARED_INVALID_REQUEST,
    SHARED_UNAVAILABLE, Timestamp, of,
};
use crate::api::views::{json_response, rfc3339};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::devices;
use crate::domain::ids::KeyIdPrefix;
use crate::domain::ids::{DeviceId, KeyId, UserId};
use crate::domain::model::VolumeType;
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// The answer: the matching keys' metadata and where they are.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyLookup)]
struct RecoveryKeysBody<'a> {
    /// Every key of the caller's tenant whose ID starts with the prefix,
    /// sorted by key ID.
    recovery_keys: Vec<KeyLocationView<'a>>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyLocation)]
struct KeyLocationView<'a> {
    key_id: &'a KeyId,
    device_id: &'a DeviceId,
    display_name: &'a str,
    owner: &'a UserId,
    volume_type: VolumeType,
    #[schema(value_type = Timestamp)]
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

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "findRecoveryKeys",
    tags: &["helpdesk"],
    summary: "Find keys by the key ID shown on a recovery screen",
    description: "Every key of the caller's tenant whose ID starts with `key_id_prefix`, with its device and owner: metadata only. **Permission:** `RecoveryKey.Read.All`.",
    params: &[Param {
        name: "key_id_prefix",
        location: In::Query,
        required: true,
        description: Some(
            "At least 8 leading hex digits of the key ID (up to all 32), case-insensitive, dashes ignored.",
        ),
        schema: |_| serde_json::json!({"type": "string", "pattern": "^-*([0-9A-Fa-f]-*){8,32}$"}),
        examples: &[("recovery screen", "3B8FAA18")],
    }],
    body: None,
    answers: &[
        Answer::Success(
            200,
            "The matching keys (possibly none).",
            Some(of::<RecoveryKeysBody>),
        ),
        Answer::Shared(&SHARED_INVALID_REQUEST),
        Answer::Shared(&SHARED_INSUFFICIENT_SCOPE),
        Answer::Shared(&SHARED_UNAVAILABLE),
    ],
};
