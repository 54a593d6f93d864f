//! `GET /v1/tenant/settings`: the tenant's policy.

use crate::api::body::Query;
use crate::api::views::{SettingsView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::settings;
use http::StatusCode;

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let current = settings::get(&*c.portal.lifecycle, c.permitted()?).await?;
    Ok(json_response(StatusCode::OK, &SettingsView::from(&current)))
}
