//! `PUT /v1/devices/{device_id}`: enrol a device or change its metadata
//! (201 when created, 200 otherwise).

use crate::api::body::{Body, Query, bad, fields, parse};
use crate::api::openapi::{
    Answer, CONFLICT, INSUFFICIENT_SCOPE, Param, RequestBody, RouteDoc, SECOND_PERSON_REQUIRED,
    SHARED_INVALID_REQUEST, SHARED_UNAVAILABLE_WRITE, SHARED_UNSUPPORTED_MEDIA_TYPE, of,
};
use crate::api::views::{EnrolledDeviceView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::ids::{DeviceId, UserId};
use crate::domain::lifecycle::{self, DeviceMetadata, Upserted};
use crate::domain::model::ManagedBy;
use http::StatusCode;
use serde::{Deserialize, Deserializer};

/// A device's metadata, every field required.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "owner": "alice",
    "display_name": "Alice's laptop",
    "os": "Windows 11",
    "managed_by": "organization"
}))]
pub(crate) struct DeviceUpsertRequest {
    /// The device's owner, as the identity provider names the user.
    #[serde(deserialize_with = "fields::user_id")]
    pub(crate) owner: UserId,
    /// Not blank, no control characters; at most 256 characters.
    #[serde(deserialize_with = "display_name")]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub(crate) display_name: String,
    /// Not blank, no control characters; at most 128 characters.
    #[serde(deserialize_with = "os")]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
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
use utoipa::ToSchema;

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
    Ok(json_response(status, &EnrolledDeviceView::from(&device)))
}

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "upsertDevice",
    tags: &["lifecycle"],
    summary: "Enrol a device or change its metadata",
    description: "Creates the device, or replaces its owner, display name, OS and `managed_by`; its keys stay with it. Idempotent: the same body again changes nothing. Audited (`device_upsert`; an owner change with `justification` `owner <old> -> <new>`). **Permission:** `Devices.ReadWrite.All`. An owner change is audited and counted (`OwnerChanges`); one that names the caller is refused (403 `second-person-required`, audited `self_assignment`, counted `OwnerChangesRefused`). The new owner reads only keys created after the change; older keys take the helpdesk path (`RecoveryKey.Read.All`, its limit and reason rule).",
    params: &[Param::path("device_id", of::<crate::domain::ids::DeviceId>)],
    body: Some(RequestBody {
        required: true,
        description: "Every field required (at most 4 KiB).",
        schema: of::<DeviceUpsertRequest>,
    }),
    answers: &[
        Answer::Success(
            200,
            "The device was updated, or was already so (with `owner`).",
            Some(of::<EnrolledDeviceView>),
        ),
        Answer::Success(
            201,
            "The device was enrolled (with `owner`).",
            Some(of::<EnrolledDeviceView>),
        ),
        Answer::Shared(&SHARED_INVALID_REQUEST),
        Answer::Problem(
            "The token lacks `Devices.ReadWrite.All` (`required_permission`, with `WWW-Authenticate`), or the request makes the caller the device's owner (`second-person-required`: another administrator must).",
            &[&INSUFFICIENT_SCOPE, &SECOND_PERSON_REQUIRED],
        ),
        Answer::Problem(
            "The device is retired: restore it first (`POST /v1/devices/{device_id}/restore`).",
            &[&CONFLICT],
        ),
        Answer::Shared(&SHARED_UNSUPPORTED_MEDIA_TYPE),
        Answer::Shared(&SHARED_UNAVAILABLE_WRITE),
    ],
};
