//! `DELETE /v1/devices/{device_id}`: retire a device (204), with an
//! optional body `{"reason": …}`.

use crate::api::body::{Query, bad, check_reason, is_blank, json_object, only, string};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::ids::DeviceId;
use crate::domain::lifecycle;
use http::{HeaderMap, Response, StatusCode};

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let device_id = DeviceId::parse(&c.params[0]).map_err(|e| bad("device_id", e))?;
    let reason = retire_reason(&c.req.headers, &c.req.body)?;
    lifecycle::retire_device(c.portal, &c.caller, &c.meta, &device_id, reason).await?;
    let mut r = Response::new(Vec::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

fn retire_reason(headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, HttpError> {
    if is_blank(body) {
        return Ok(None);
    }
    let body = json_object(headers, body)?;
    only(&body, &["reason"])?;
    Ok(string(&body, "reason")?
        .filter(|r| !r.trim().is_empty())
        .map(check_reason)
        .transpose()?)
}
