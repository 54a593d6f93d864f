//! `DELETE /v1/incidents/{incident_id}`: close an incident early.

use crate::api::body::{Query, bad};
use crate::api::openapi::{
    Answer, INCIDENT_NOT_FOUND, In, Param, RouteDoc, SHARED_INSUFFICIENT_SCOPE,
    SHARED_INVALID_REQUEST, SHARED_UNAVAILABLE_WRITE, of,
};
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

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "closeIncident",
    tags: &["incidents"],
    summary: "Close an incident early",
    description: "Closes the incident; batch retrieval and the incident's limit end at once. Closing one that has ended answers it unchanged. Audited (`incident_close`). **Permission:** `RecoveryKey.Incident`.",
    params: &[Param {
        name: "incident_id",
        location: In::Path,
        required: true,
        description: Some("The incident's ID (a UUID; anything else is a 400)."),
        schema: |_| serde_json::json!({"type": "string"}),
        examples: &[],
    }],
    body: None,
    answers: &[
        Answer::Success(200, "The incident, closed.", Some(of::<IncidentView>)),
        Answer::Shared(&SHARED_INVALID_REQUEST),
        Answer::Shared(&SHARED_INSUFFICIENT_SCOPE),
        Answer::Problem(
            "No such incident in the caller's tenant.",
            &[&INCIDENT_NOT_FOUND],
        ),
        Answer::Shared(&SHARED_UNAVAILABLE_WRITE),
    ],
};
