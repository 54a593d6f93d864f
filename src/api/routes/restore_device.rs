//! `POST /v1/devices/{device_id}/restore`: bring a retired device back.

use crate::api::body::{Query, bad};
use crate::api::openapi::{
    Answer, DEVICE_NOT_FOUND, Param, RouteDoc, SHARED_INSUFFICIENT_SCOPE, SHARED_INVALID_REQUEST,
    SHARED_UNAVAILABLE_WRITE, of,
};
use crate::api::views::{EnrolledDeviceView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::ids::DeviceId;
use crate::domain::lifecycle;
use http::StatusCode;

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let device_id = DeviceId::parse(&c.params[0]).map_err(|e| bad("device_id", e))?;
    let device =
        lifecycle::restore_device(c.portal.into(), c.permitted()?, &c.meta, &device_id).await?;
    Ok(json_response(
        StatusCode::OK,
        &EnrolledDeviceView::from(&device),
    ))
}

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "restoreDevice",
    tags: &["lifecycle"],
    summary: "Restore a retired device",
    description: "Brings a retired device back, within its retention, as it was: its owner lists it and reads its keys again. Audited (`device_restore`), counted (`DevicesRestored`). A device that is not retired, or whose retention ended, is the uniform 404. **Permission:** `Devices.ReadWrite.All`.",
    params: &[Param::path("device_id", of::<crate::domain::ids::DeviceId>)],
    body: None,
    answers: &[
        Answer::Success(
            200,
            "The device, restored (with `owner`).",
            Some(of::<EnrolledDeviceView>),
        ),
        Answer::Shared(&SHARED_INVALID_REQUEST),
        Answer::Shared(&SHARED_INSUFFICIENT_SCOPE),
        Answer::Problem(
            "No retired device with this ID in the caller's tenant (or its retention ended).",
            &[&DEVICE_NOT_FOUND],
        ),
        Answer::Shared(&SHARED_UNAVAILABLE_WRITE),
    ],
};
