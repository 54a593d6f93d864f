//! `GET /v1/incidents`: the tenant's incidents, open or not.

use crate::api::body::Query;
use crate::api::openapi::{
    Answer, RouteDoc, SHARED_INSUFFICIENT_SCOPE, SHARED_INVALID_REQUEST, SHARED_UNAVAILABLE_READ,
    of,
};
use crate::api::views::{IncidentView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::incidents;
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// The answer: the incidents, newest first.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IncidentList)]
struct IncidentsBody<'a> {
    /// Newest first: the open one and recent ones.
    #[schema(max_items = 50)]
    incidents: Vec<IncidentView<'a>>,
}

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let list = incidents::list(&*c.portal.lifecycle, c.permitted()?).await?;
    let now = c.portal.clock.now();
    let incidents = list.iter().map(|i| IncidentView::new(i, now)).collect();
    Ok(json_response(StatusCode::OK, &IncidentsBody { incidents }))
}

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "listIncidents",
    tags: &["incidents"],
    summary: "List the tenant's incidents",
    description: "The open incident and recent ones, newest first. **Permission:** `RecoveryKey.Incident` or `RecoveryKey.Read.All` (agents need to know whether batch retrieval is open).",
    params: &[],
    body: None,
    answers: &[
        Answer::Success(200, "The incidents.", Some(of::<IncidentsBody>)),
        Answer::Shared(&SHARED_INVALID_REQUEST),
        Answer::Shared(&SHARED_INSUFFICIENT_SCOPE),
        Answer::Shared(&SHARED_UNAVAILABLE_READ),
    ],
};
