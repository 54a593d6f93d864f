//! `GET /v1/devices`: the caller's devices (or, for a helpdesk agent,
//! another owner's) with their keys' metadata and the helpdesk card.

use crate::api::body::{Query, bad};
use crate::api::views::{device_json, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::devices;
use crate::domain::ids::UserId;
use crate::domain::model::Helpdesk;
use http::StatusCode;
use serde::Serialize;

#[derive(Serialize)]
struct DevicesBody {
    devices: Vec<serde_json::Value>,
    helpdesk: Option<Helpdesk>,
}

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    let q = Query::parse(c.query(), &["owner"])?;
    let owner = q
        .get("owner")
        .map(|o| UserId::parse(o).map_err(|e| bad("owner", e)))
        .transpose()?;
    let listing = devices::list(c.portal, &c.caller, owner).await?;
    let body = DevicesBody {
        devices: listing.devices.iter().map(device_json).collect(),
        helpdesk: listing.helpdesk,
    };
    Ok(json_response(StatusCode::OK, &body))
}
