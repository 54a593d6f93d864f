//! `POST /v1/incidents`: open an incident (201), which lets helpdesk agents
//! retrieve keys in batches until it expires or is closed.

use crate::api::body::{Query, check_reason_max, json_object, only};
use crate::api::views::{IncidentView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::error::ApiError;
use crate::domain::incidents;
use http::StatusCode;
use serde_json::{Map, Value};

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let body = json_object(&c.req.headers, &c.req.body)?;
    let request = incident_request(body, c.portal.incident_max_rate_limit)?;
    let i = incidents::open(c.portal, &c.caller, &c.meta, &request).await?;
    let now = c.portal.clock.now();
    Ok(json_response(
        StatusCode::CREATED,
        &IncidentView::new(&i, now),
    ))
}

fn incident_request(
    body: Map<String, Value>,
    max_rate_limit: u32,
) -> Result<incidents::OpenRequest, ApiError> {
    only(&body, &["reason", "duration_hours", "helpdesk_rate_limit"])?;
    let reason = match body.get("reason") {
        Some(Value::String(r)) if !r.trim().is_empty() => r.clone(),
        _ => {
            return Err(ApiError::BadRequest(
                "reason is required: say what the incident is (for example \"faulty agent update 2026-11-25\")".into(),
            ));
        }
    };
    let reason = check_reason_max(&reason, incidents::MAX_REASON_CHARS)?;
    let range = incidents::DURATION_HOURS;
    let duration_hours = body
        .get("duration_hours")
        .and_then(Value::as_u64)
        .and_then(|h| u32::try_from(h).ok())
        .filter(|h| range.contains(h))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "duration_hours is required: a whole number of hours from {} to {}",
                range.start(),
                range.end()
            ))
        })?;
    // The deployment's ceiling (PORTAL_INCIDENT_MAX_RATE_LIMIT): one person
    // opening an incident cannot give agents an unbounded bulk export.
    let helpdesk_rate_limit = match body.get("helpdesk_rate_limit") {
        None | Some(Value::Null) => incidents::DEFAULT_HELPDESK_RATE_LIMIT.min(max_rate_limit),
        Some(v) => v
            .as_u64()
            .and_then(|l| u32::try_from(l).ok())
            .filter(|l| (1..=max_rate_limit).contains(l))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "helpdesk_rate_limit must be a whole number from 1 to {max_rate_limit} (this deployment's ceiling, PORTAL_INCIDENT_MAX_RATE_LIMIT)"
                ))
            })?,
    };
    Ok(incidents::OpenRequest {
        reason,
        duration_hours,
        helpdesk_rate_limit,
    })
}
