//! `GET /v1/rotation-requests`: keys disclosed and not superseded since,
//! which an escrow agent should rotate; paged by an opaque cursor.

use crate::api::body::{Query, limit};
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

/// The answer: one page of keys to rotate, and the cursor of the next.
#[derive(Serialize)]
struct RotationRequestsBody<'a> {
    rotation_requests: Vec<RotationRequestView<'a>>,
    next: Option<String>,
}

#[derive(Serialize)]
struct RotationRequestView<'a> {
    device_id: &'a DeviceId,
    key_id: &'a KeyId,
    volume_type: VolumeType,
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
