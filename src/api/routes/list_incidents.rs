//! `GET /v1/incidents`: the tenant's incidents, open or not.

use crate::api::body::Query;
use crate::api::views::{IncidentView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::incidents;
use http::StatusCode;
use serde::Serialize;

/// The answer: the incidents, newest first.
#[derive(Serialize)]
struct IncidentsBody<'a> {
    incidents: Vec<IncidentView<'a>>,
}

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let list = incidents::list(&*c.portal.lifecycle, c.permitted()?).await?;
    let now = c.portal.clock.now();
    let incidents = list.iter().map(|i| IncidentView::new(i, now)).collect();
    Ok(json_response(StatusCode::OK, &IncidentsBody { incidents }))
}
