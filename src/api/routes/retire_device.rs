//! `DELETE /v1/devices/{device_id}`: retire a device (204), with an
//! optional body `{"reason": …}`.

use crate::api::body::{Body, MAX_REASON_CHARS, Query, bad, fields, parse_optional};
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
