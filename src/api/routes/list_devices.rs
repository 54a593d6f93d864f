//! `GET /v1/devices`: the caller's devices (or, for a helpdesk agent,
//! another owner's) with their keys' metadata and the helpdesk card.

use crate::api::body::{Query, bad};
use crate::api::openapi::{
    Answer, Param, RouteDoc, SHARED_INSUFFICIENT_SCOPE, SHARED_INVALID_REQUEST, SHARED_UNAVAILABLE,
    of,
};
use crate::api::views::{DeviceView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::devices;
use crate::domain::ids::UserId;
use crate::domain::model::Helpdesk;
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// The answer: the devices and whom to ask for help.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeviceList)]
struct DevicesBody<'a> {
    /// Sorted by `display_name`.
    devices: Vec<DeviceView<'a>>,
    /// The tenant's helpdesk, or null when none is configured.
    #[schema(required = true)]
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

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "listDevices",
    tags: &["devices"],
    summary: "List a user's devices and their key metadata",
    description: "The caller's devices (or `owner`'s, for the helpdesk), sorted by `display_name`, with the metadata of their escrowed keys and the tenant's helpdesk. Never key material. **Permission:** `Devices.Read` or `RecoveryKey.Read` or `RecoveryKey.Read.All` (own devices); `RecoveryKey.Read.All` for another `owner`.",
    params: &[Param::query(
        "owner",
        "Whose devices (default: the caller). Another user's need `RecoveryKey.Read.All`; always within the caller's tenant.",
        of::<crate::domain::ids::UserId>,
    )],
    body: None,
    answers: &[
        Answer::Success(200, "The devices.", Some(of::<DevicesBody>)),
        Answer::Shared(&SHARED_INVALID_REQUEST),
        Answer::Shared(&SHARED_INSUFFICIENT_SCOPE),
        Answer::Shared(&SHARED_UNAVAILABLE),
    ],
};
