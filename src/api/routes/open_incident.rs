//! `POST /v1/incidents`: open an incident (201), which lets helpdesk agents
//! retrieve keys in batches until it expires or is closed.

use crate::api::body::{Body, Query, fields, parse_with};
use crate::api::openapi::{
    Answer, CONFLICT, RequestBody, RouteDoc, SHARED_INSUFFICIENT_SCOPE, SHARED_INVALID_REQUEST,
    SHARED_UNAVAILABLE_WRITE, SHARED_UNSUPPORTED_MEDIA_TYPE, of,
};
use crate::api::views::{IncidentView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::incidents;
use http::StatusCode;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The incident to open.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncidentRequest {
    /// What the incident is; no control or text-direction characters.
    #[serde(deserialize_with = "reason")]
    #[schema(min_length = 1, max_length = 200)]
    pub(crate) reason: String,
    /// It ends by itself this many hours after opening (1 to 72).
    #[serde(deserialize_with = "duration_hours")]
    #[schema(minimum = 1, maximum = 72)]
    pub(crate) duration_hours: u32,
    /// Keys per helpdesk agent per rolling hour during the incident, at
    /// most the deployment's `PORTAL_INCIDENT_MAX_RATE_LIMIT`; default
    /// 5000 (or that ceiling, if lower).
    #[serde(default, deserialize_with = "helpdesk_rate_limit")]
    #[schema(nullable = false, minimum = 1, maximum = 100000, default = 5000)]
    pub(crate) helpdesk_rate_limit: Option<u32>,
}

const REASON_REQUIRED: &str =
    "is required: say what the incident is (for example \"faulty agent update 2026-11-25\")";

fn duration_rule() -> String {
    let range = incidents::DURATION_HOURS;
    format!(
        "is required: a whole number of hours from {} to {}",
        range.start(),
        range.end()
    )
}

impl Body for IncidentRequest {
    fn missing(field: &str) -> Option<String> {
        match field {
            "reason" => Some(REASON_REQUIRED.into()),
            "duration_hours" => Some(duration_rule()),
            _ => None,
        }
    }
}

fn reason<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match fields::value(d)? {
        Value::String(r) if !r.trim().is_empty() => fields::reason(&r, incidents::MAX_REASON_CHARS),
        _ => Err(fields::must(REASON_REQUIRED)),
    }
}

fn duration_hours<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    fields::whole(&fields::value(d)?)
        .filter(|h| incidents::DURATION_HOURS.contains(h))
        .ok_or_else(|| fields::must(duration_rule()))
}

/// Any whole number here; the route holds it to the deployment's ceiling.
fn helpdesk_rate_limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = fields::value(d)?;
    if v.is_null() {
        return Ok(None);
    }
    fields::whole(&v)
        .map(Some)
        .ok_or_else(|| fields::must("must be a whole number"))
}
use utoipa::ToSchema;

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let max = c.portal.incident_max_rate_limit;
    // The deployment's ceiling (PORTAL_INCIDENT_MAX_RATE_LIMIT): one person
    // opening an incident cannot give agents an unbounded bulk export.
    let ceiling = || {
        format!(
            "helpdesk_rate_limit must be a whole number from 1 to {max} (this deployment's ceiling, PORTAL_INCIDENT_MAX_RATE_LIMIT)"
        )
    };
    let b: IncidentRequest = parse_with(&c.req.headers, &c.req.body, |field| {
        (field == "helpdesk_rate_limit").then(ceiling)
    })?;
    let helpdesk_rate_limit = match b.helpdesk_rate_limit {
        None => incidents::DEFAULT_HELPDESK_RATE_LIMIT.min(max),
        Some(l) if (1..=max).contains(&l) => l,
        Some(_) => return Err(HttpError::bad_request(ceiling())),
    };
    let request = incidents::OpenRequest {
        reason: b.reason,
        duration_hours: b.duration_hours,
        helpdesk_rate_limit,
    };
    let i = incidents::open(c.portal.into(), c.permitted()?, &c.meta, &request).await?;
    let now = c.portal.clock.now();
    Ok(json_response(
        StatusCode::CREATED,
        &IncidentView::new(&i, now),
    ))
}

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "openIncident",
    tags: &["incidents"],
    summary: "Open an incident",
    description: "Opens a time-boxed incident in the caller's tenant: while it is open, helpdesk agents read keys at its `helpdesk_rate_limit` and may use batch retrieval. It ends by itself at `expires_at`. Opening is audited (`incident_open`) and counted (`IncidentsOpened`, which raises an alarm). One incident is open at a time (409). **Permission:** `RecoveryKey.Incident`.",
    params: &[],
    body: Some(RequestBody {
        required: true,
        description: "The incident.",
        schema: of::<IncidentRequest>,
    }),
    answers: &[
        Answer::Success(201, "Opened.", Some(of::<IncidentView>)),
        Answer::Shared(&SHARED_INVALID_REQUEST),
        Answer::Shared(&SHARED_INSUFFICIENT_SCOPE),
        Answer::Problem("Another incident is open; `detail` names it.", &[&CONFLICT]),
        Answer::Shared(&SHARED_UNSUPPORTED_MEDIA_TYPE),
        Answer::Shared(&SHARED_UNAVAILABLE_WRITE),
    ],
};
