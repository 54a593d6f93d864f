//! `DELETE /v1/incidents/{incident_id}`: close an incident early.

use crate::api::body::{Query, bad};
use crate::api::views::{IncidentView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::incidents::{self, IncidentId};
use http::StatusCode;

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let id = IncidentId::parse(&c.params[0]).map_err(|e| bad("incident_id", e))?;
    let i = incidents::close(c.portal.into(), c.permitted()?, &c.meta, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        &IncidentView::new(&i, c.portal.clock.now()),
    ))
}
