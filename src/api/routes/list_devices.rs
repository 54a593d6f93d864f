//! `GET /v1/devices`: the caller's devices (or, for a helpdesk agent,
//! another owner's) with their keys' metadata and the helpdesk card.

use crate::api::body::{Query, bad};
use crate::api::views::{DeviceView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::devices;
use crate::domain::ids::UserId;
use crate::domain::model::Helpdesk;
use http::StatusCode;
use serde::Serialize;

/// The answer: the devices and whom to ask for help.
#[derive(Serialize)]
struct DevicesBody<'a> {
    devices: Vec<DeviceView<'a>>,
    helpdesk: Option<&'a Helpdesk>,
}

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    let q = Query::parse(c.query(), &["owner"])?;
    let owner = q
        .get("owner")
        .map(|o| UserId::parse(o).map_err(|e| bad("owner", e)))
        .transpose()?;
    let listing = devices::list(&*c.portal.store, &*c.portal.clock, &c.caller, owner).await?;
    let body = DevicesBody {
        devices: listing.devices.iter().map(DeviceView::listed).collect(),
        helpdesk: listing.helpdesk.as_ref(),
    };
    Ok(json_response(StatusCode::OK, &body))
}
