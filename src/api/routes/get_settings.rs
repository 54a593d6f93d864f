//! `GET /v1/tenant/settings`: the tenant's policy.

use crate::api::body::Query;
use crate::api::openapi::{
    Answer, RouteDoc, SHARED_INSUFFICIENT_SCOPE, SHARED_INVALID_REQUEST, SHARED_UNAVAILABLE_READ,
    of,
};
use crate::api::views::{SettingsView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::settings;
use http::StatusCode;

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let current = settings::get(&*c.portal.lifecycle, c.permitted()?).await?;
    Ok(json_response(StatusCode::OK, &SettingsView::from(&current)))
}

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "getTenantSettings",
    tags: &["settings"],
    summary: "Read the tenant's settings",
    description: "The caller's tenant's settings. **Permission:** `Tenant.Settings.ReadWrite`.",
    params: &[],
    body: None,
    answers: &[
        Answer::Success(200, "The settings.", Some(of::<SettingsView>)),
        Answer::Shared(&SHARED_INVALID_REQUEST),
        Answer::Shared(&SHARED_INSUFFICIENT_SCOPE),
        Answer::Shared(&SHARED_UNAVAILABLE_READ),
    ],
};
