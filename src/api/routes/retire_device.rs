//! `DELETE /v1/devices/{device_id}`: retire a device (204), with an
//! optional body `{"reason": …}`.

use crate::api::body::{Body, MAX_REASON_CHARS, Query, bad, fields, parse_optional};
use crate::api::openapi::{
    Answer, DEVICE_NOT_FOUND, Param, RequestBody, RouteDoc, SHARED_INSUFFICIENT_SCOPE,
    SHARED_INVALID_REQUEST, SHARED_UNAVAILABLE_WRITE, SHARED_UNSUPPORTED_MEDIA_TYPE, of,
};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::ids::DeviceId;
use crate::domain::lifecycle;
use http::{Response, StatusCode};
use serde::{Deserialize, Deserializer};

/// Optional: why the device is retired.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetireRequest {
    /// Why the device is retired: at most 200 characters of plain text.
    /// Blank or null: no reason.
    #[serde(default, deserialize_with = "retire_reason")]
    pub(crate) reason: Option<String>,
}

impl Body for RetireRequest {}

fn retire_reason<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    fields::opt_string(d)?
        .filter(|r| !r.trim().is_empty())
        .map(|r| fields::reason(&r, MAX_REASON_CHARS))
        .transpose()
}

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let device_id = DeviceId::parse(&c.params[0]).map_err(|e| bad("device_id", e))?;
    let RetireRequest { reason } = parse_optional(&c.req.headers, &c.req.body)?;
    lifecycle::retire_device(c.portal.into(), c.permitted()?, &c.meta, &device_id, reason).await?;
    let mut r = Response::new(Vec::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "retireDevice",
    tags: &["lifecycle"],
    summary: "Retire a device",
    description: "Retires the device: it leaves its owner's list and self-service at once (the uniform 404 on the owner and listing routes, on escrow, and on a second retirement). For the tenant's `retired_device_retention_days` (default 30) the helpdesk can still find its keys by key ID and read them with a reason, and `POST /v1/devices/{device_id}/restore` brings it back; then the device and its keys are deleted. Optional body `{\"reason\"}` (the same text rules as a retrieval's `reason`). Audited (`device_retire`), counted (`DevicesRetired`). **Permission:** `Devices.ReadWrite.All`.",
    params: &[Param::path("device_id", of::<crate::domain::ids::DeviceId>)],
    body: Some(RequestBody {
        required: false,
        description: "Optional: why the device is retired.",
        schema: |_| serde_json::json!({"type": "object", "additionalProperties": false, "properties": {"reason": {"type": "string", "maxLength": 200}}}),
    }),
    answers: &[
        Answer::Success(
            204,
            "The device is retired (restorable until its retention ends).",
            None,
        ),
        Answer::Shared(&SHARED_INVALID_REQUEST),
        Answer::Shared(&SHARED_INSUFFICIENT_SCOPE),
        Answer::Problem(
            "No device with this ID in the caller's tenant.",
            &[&DEVICE_NOT_FOUND],
        ),
        Answer::Shared(&SHARED_UNSUPPORTED_MEDIA_TYPE),
        Answer::Shared(&SHARED_UNAVAILABLE_WRITE),
    ],
};
