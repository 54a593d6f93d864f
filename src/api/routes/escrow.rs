//! `PUT /v1/devices/{device_id}/recovery-keys/{key_id}`: escrow a key
//! (201 when stored, 200 when the same key was already held). The body
//! holds a recovery password: no problem ever quotes a value.

use crate::api::body::{Body, Query, bad, fields, parse};
use crate::api::openapi::{
    Answer, CONFLICT, DEVICE_NOT_FOUND, INTERNAL, INVALID_REQUEST, In, Param, RequestBody,
    RouteDoc, SHARED_INSUFFICIENT_SCOPE, SHARED_UNAVAILABLE_WRITE, SHARED_UNSUPPORTED_MEDIA_TYPE,
    Timestamp, of,
};
use crate::api::views::{KeyView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::ids::{DeviceId, KeyId};
use crate::domain::lifecycle::{self, Escrowed};
use crate::domain::model::{RecoveryPassword, VolumeType};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// The escrowed key's metadata, never the password.
// `KeyView`'s fields written out rather than flattened (a flattened
// struct would be an `allOf`, which cannot keep `additionalProperties:
// false`).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EscrowedKey)]
struct EscrowedBody<'a> {
    #[schema(value_type = DeviceId)]
    device_id: &'a str,
    key_id: &'a KeyId,
    volume_type: VolumeType,
    #[schema(value_type = Timestamp)]
    created_at: String,
    /// The key's first granted disclosure, else null.
    #[schema(value_type = Option<Timestamp>, required = true)]
    disclosed_at: Option<String>,
    /// When a newer key of its volume type was escrowed, else null.
    /// Superseded keys are listed until their retention
    /// (`superseded_key_retention_days`) ends.
    #[schema(value_type = Option<Timestamp>, required = true)]
    superseded_at: Option<String>,
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
    let key = KeyView::from(&key);
    let body = EscrowedBody {
        device_id: device,
        key_id: key.key_id,
        volume_type: key.volume_type,
        created_at: key.created_at,
        disclosed_at: key.disclosed_at,
        superseded_at: key.superseded_at,
    };
    Ok(json_response(status, &body))
}

/// A key to escrow.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EscrowRequest {
    /// What kind of volume the key unlocks.
    #[serde(deserialize_with = "fields::volume_type")]
    pub(crate) volume_type: VolumeType,
    /// The 48-digit recovery password: 8 dash-separated groups of 6
    /// digits, each group a multiple of 11 below 720896 (as BitLocker
    /// generates them).
    #[serde(deserialize_with = "fields::recovery_password")]
    #[schema(pattern = "^[0-9]{6}(-[0-9]{6}){7}$")]
    #[schema(value_type = String)]
    pub(crate) recovery_password: RecoveryPassword,
    /// When BitLocker created the key (RFC 3339); default now, at most 5
    /// minutes ahead.
    #[serde(default, deserialize_with = "fields::opt_timestamp")]
    #[schema(value_type = Option<Timestamp>)]
    pub(crate) created_at: Option<OffsetDateTime>,
}

impl Body for EscrowRequest {}

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "escrowRecoveryKey",
    tags: &["lifecycle"],
    summary: "Escrow a recovery key",
    description: "Stores a device's recovery password, sealed with KMS under the key's tenant/device/key-ID context before anything is stored. Idempotent: the same key with the same password again answers 200 and stores nothing. A key newer than the device's current key of its volume type supersedes it (an older one is stored already superseded); escrowing a newer key clears the device's rotation request. Never echoes the password. Audited (`escrow`). **Permission:** `RecoveryKey.Escrow`. A device agent's credential may use `RecoveryKey.Escrow.Device` instead, with the token's `device_id` claim naming the one device whose keys it may write (403 for any other). `created_at` may not be in the future. A stored ciphertext is never replaced: the same key ID with another password, or held without an escrow digest, is 409.",
    params: &[
        Param::path("device_id", of::<crate::domain::ids::DeviceId>),
        Param {
            name: "key_id",
            location: In::Path,
            required: true,
            description: Some(
                "The key protector ID: a GUID, any case, with or without braces (32 hex digits, or dashed as 8-4-4-4-12).",
            ),
            schema: |_| serde_json::json!({"type": "string", "pattern": "^([0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}|\\{[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}\\})$", "examples": ["3B8FAA18-37F8-488B-97FC-695A07A0CA6E"]}),
            examples: &[],
        },
    ],
    body: Some(RequestBody {
        required: true,
        description: "The key (at most 4 KiB).",
        schema: of::<EscrowRequest>,
    }),
    answers: &[
        Answer::Success(
            200,
            "This key with this password is already held: nothing changed.",
            Some(of::<EscrowedBody>),
        ),
        Answer::Success(201, "The key was stored.", Some(of::<EscrowedBody>)),
        Answer::Problem(
            "Invalid input (an invalid ID, volume type, recovery password or `created_at`, one in the future, an unknown field); `detail` names the field, never quoting the password.",
            &[&INVALID_REQUEST],
        ),
        Answer::Shared(&SHARED_INSUFFICIENT_SCOPE),
        Answer::Problem(
            "The device is not enrolled in the caller's tenant: enrol it first (`PUT /v1/devices/{device_id}`).",
            &[&DEVICE_NOT_FOUND],
        ),
        Answer::Problem(
            "A different recovery password (or volume type) is already stored under this key ID.",
            &[&CONFLICT],
        ),
        Answer::Shared(&SHARED_UNSUPPORTED_MEDIA_TYPE),
        Answer::Problem(
            "KMS refused to seal the key; nothing stored. Never caused by client input.",
            &[&INTERNAL],
        ),
        Answer::Shared(&SHARED_UNAVAILABLE_WRITE),
    ],
};
