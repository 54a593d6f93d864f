//! `GET /v1/rotation-requests`: keys disclosed and not superseded since,
//! which an escrow agent should rotate; paged by an opaque cursor.

use crate::api::body::{Query, limit};
use crate::api::openapi::{
    Answer, Param, RouteDoc, SHARED_INSUFFICIENT_SCOPE, SHARED_INVALID_REQUEST,
    SHARED_UNAVAILABLE_READ, Timestamp, of,
};
use crate::api::views::{json_response, rfc3339};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::error::ApiError;
use crate::domain::ids::DeviceId;
use crate::domain::ids::KeyId;
use crate::domain::lifecycle::{self, ROTATION_DEFAULT_LIMIT, ROTATION_MAX_LIMIT};
use crate::domain::model::VolumeType;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// The answer: one page of keys to rotate, and the cursor of the next.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RotationRequestPage)]
struct RotationRequestsBody<'a> {
    /// Oldest disclosure first.
    rotation_requests: Vec<RotationRequestView<'a>>,
    /// Opaque cursor of the next page: pass it as `cursor`. Null on the
    /// last page.
    #[schema(required = true)]
    next: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RotationRequest)]
struct RotationRequestView<'a> {
    device_id: &'a DeviceId,
    key_id: &'a KeyId,
    volume_type: VolumeType,
    /// When the key was first disclosed.
    #[schema(value_type = Timestamp)]
    disclosed_at: String,
}

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    let q = Query::parse(c.query(), &["limit", "cursor"])?;
    let limit = limit(&q, ROTATION_DEFAULT_LIMIT, ROTATION_MAX_LIMIT)?;
    let cursor = q.get("cursor").map(decode_cursor).transpose()?;
    let page = lifecycle::rotation_requests(
        &*c.portal.lifecycle,
        &*c.portal.clock,
        c.permitted()?,
        cursor.as_deref(),
        limit,
    )
    .await?;
    let rotation_requests = page
        .requests
        .iter()
        .map(|r| RotationRequestView {
            device_id: &r.device_id,
            key_id: &r.key_id,
            volume_type: r.volume_type,
            disclosed_at: rfc3339(r.disclosed_at),
        })
        .collect();
    let body = RotationRequestsBody {
        rotation_requests,
        next: page.next.map(|c| URL_SAFE_NO_PAD.encode(c)),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// A rotation-requests cursor: base64url of the store's `<sort>#<device>`.
fn decode_cursor(raw: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::BadRequest("cursor must be the `next` value of an earlier page, unchanged".into())
    };
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let ok = text.split_once('#').is_some_and(|(sort, device)| {
        !sort.is_empty()
            && sort.len() <= 64
            && !sort.chars().any(char::is_control)
            && DeviceId::parse(device).is_ok()
    });
    if ok { Ok(text) } else { Err(invalid()) }
}

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "listRotationRequests",
    tags: &["lifecycle"],
    summary: "Keys due for rotation",
    description: "Keys of the caller's tenant that were disclosed and not superseded since, oldest disclosure first: the escrow client has each device rotate its key and escrows the new one, which clears the request. **Permission:** `RecoveryKey.Escrow`.",
    params: &[
        Param::query(
            "limit",
            "Page size, in devices.",
            |_| serde_json::json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
        ),
        Param::query(
            "cursor",
            "The `next` value of the previous page (opaque).",
            |_| serde_json::json!({"type": "string", "minLength": 1}),
        ),
    ],
    body: None,
    answers: &[
        Answer::Success(
            200,
            "One page of rotation requests.",
            Some(of::<RotationRequestsBody>),
        ),
        Answer::Shared(&SHARED_INVALID_REQUEST),
        Answer::Shared(&SHARED_INSUFFICIENT_SCOPE),
        Answer::Shared(&SHARED_UNAVAILABLE_READ),
    ],
};
