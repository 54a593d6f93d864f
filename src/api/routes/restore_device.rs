//! `POST /v1/devices/{device_id}/restore`: bring a retired device back.

use crate::api::body::{Query, bad};
use crate::api::views::{DeviceView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::ids::DeviceId;
use crate::domain::lifecycle;
use http::StatusCode;

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let device_id = DeviceId::parse(&c.params[0]).map_err(|e| bad("device_id", e))?;
    let device =
        lifecycle::restore_device(c.portal.into(), c.permitted()?, &c.meta, &device_id).await?;
    Ok(json_response(StatusCode::OK, &DeviceView::owned(&device)))
}
