//! `GET /v1/incidents`: the tenant's incidents, open or not.

use crate::api::body::Query;
use crate::api::views::{incident_json, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::incidents;
use http::StatusCode;
use serde_json::json;

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let list = incidents::list(c.portal, &c.caller).await?;
    let now = c.portal.clock.now();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "incidents": list.iter().map(|i| incident_json(i, now)).collect::<Vec<_>>() }),
    ))
}
