//! `PUT /v1/devices/{device_id}`: enrol a device or change its metadata
//! (201 when created, 200 otherwise).

use crate::api::body::{Query, bad, json_object, only, required, text};
use crate::api::views::{DeviceView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, UserId};
use crate::domain::lifecycle::{self, DeviceMetadata, Upserted};
use crate::domain::model::ManagedBy;
use http::StatusCode;
use serde_json::{Map, Value};

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let device_id = DeviceId::parse(&c.params[0]).map_err(|e| bad("device_id", e))?;
    let md = device_metadata(json_object(&c.req.headers, &c.req.body)?)?;
    let (status, device) =
        match lifecycle::upsert_device(c.portal, &c.caller, &c.meta, &device_id, md).await? {
            Upserted::Created(d) => (StatusCode::CREATED, d),
            Upserted::Updated(d) | Upserted::Unchanged(d) => (StatusCode::OK, d),
        };
    Ok(json_response(status, &DeviceView::owned(&device)))
}

fn device_metadata(body: Map<String, Value>) -> Result<DeviceMetadata, ApiError> {
    only(&body, &["owner", "display_name", "os", "managed_by"])?;
    let owner = UserId::parse(required(&body, "owner")?).map_err(|e| bad("owner", e))?;
    let managed_by = ManagedBy::parse(required(&body, "managed_by")?).ok_or_else(|| {
        ApiError::BadRequest("managed_by must be \"organization\" or \"user\"".into())
    })?;
    Ok(DeviceMetadata {
        owner,
        display_name: text(&body, "display_name", 256)?,
        os: text(&body, "os", 128)?,
        managed_by,
    })
}
