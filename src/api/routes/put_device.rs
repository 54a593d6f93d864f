//! `PUT /v1/devices/{device_id}`: enrol a device or change its metadata
//! (201 when created, 200 otherwise).

use crate::api::body::{Body, Query, bad, fields, parse};
use crate::api::views::{DeviceView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::ids::{DeviceId, UserId};
use crate::domain::lifecycle::{self, DeviceMetadata, Upserted};
use crate::domain::model::ManagedBy;
use http::StatusCode;
use serde::{Deserialize, Deserializer};

/// A device's metadata, every field required.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceUpsertRequest {
    /// The device's owner, as the identity provider names the user.
    #[serde(deserialize_with = "fields::user_id")]
    pub(crate) owner: UserId,
    /// Not blank, no control characters; at most 256 characters.
    #[serde(deserialize_with = "display_name")]
    pub(crate) display_name: String,
    /// Not blank, no control characters; at most 128 characters.
    #[serde(deserialize_with = "os")]
    pub(crate) os: String,
    /// Who encrypted the device: `organization` or `user`.
    #[serde(deserialize_with = "fields::managed_by")]
    pub(crate) managed_by: ManagedBy,
}

impl Body for DeviceUpsertRequest {}

fn display_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    fields::text(d, 256)
}

fn os<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    fields::text(d, 128)
}

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let device_id = DeviceId::parse(&c.params[0]).map_err(|e| bad("device_id", e))?;
    let b: DeviceUpsertRequest = parse(&c.req.headers, &c.req.body)?;
    let md = DeviceMetadata {
        owner: b.owner,
        display_name: b.display_name,
        os: b.os,
        managed_by: b.managed_by,
    };
    let (status, device) =
        match lifecycle::upsert_device(c.portal.into(), c.permitted()?, &c.meta, &device_id, md)
            .await?
        {
            Upserted::Created(d) => (StatusCode::CREATED, d),
            Upserted::Updated(d) | Upserted::Unchanged(d) => (StatusCode::OK, d),
        };
    Ok(json_response(status, &DeviceView::owned(&device)))
}
