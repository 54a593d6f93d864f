//! `PATCH /v1/tenant/settings`: change some of the tenant's policy; the
//! answer is the policy after the change.

use crate::api::body::{Query, json_object, only, string};
use crate::api::views::{SettingsView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::error::ApiError;
use crate::domain::model::{Helpdesk, RequireReason, TenantPolicy};
use crate::domain::settings::{self, SettingsPatch};
use http::StatusCode;
use serde_json::{Map, Value};

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let patch = settings_patch(json_object(&c.req.headers, &c.req.body)?)?;
    let current = settings::patch(c.portal, &c.caller, &c.meta, &patch).await?;
    Ok(json_response(StatusCode::OK, &SettingsView::from(&current)))
}

fn settings_patch(body: Map<String, Value>) -> Result<SettingsPatch, ApiError> {
    only(
        &body,
        &[
            "self_service",
            "helpdesk",
            "require_reason",
            "superseded_key_retention_days",
            "retired_device_retention_days",
            "self_service_rate_limit",
            "helpdesk_rate_limit",
        ],
    )?;
    let mut patch = SettingsPatch::default();
    match body.get("self_service") {
        None => {}
        Some(Value::Bool(b)) => patch.self_service = Some(*b),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "self_service must be true or false".into(),
            ));
        }
    }
    if let Some(v) = body.get("helpdesk") {
        patch.helpdesk = Some(helpdesk(v)?);
    }
    if let Some(v) = body.get("require_reason") {
        patch.require_reason =
            Some(v.as_str().and_then(RequireReason::parse).ok_or_else(|| {
                ApiError::BadRequest(
                    "require_reason must be \"never\", \"helpdesk\" or \"always\"".into(),
                )
            })?);
    }
    for (field, slot) in [
        (
            "superseded_key_retention_days",
            &mut patch.superseded_key_retention_days,
        ),
        (
            "retired_device_retention_days",
            &mut patch.retired_device_retention_days,
        ),
    ] {
        if let Some(v) = body.get(field) {
            *slot = Some(retention_days(field, v)?);
        }
    }
    for (field, slot) in [
        (
            "self_service_rate_limit",
            &mut patch.self_service_rate_limit,
        ),
        ("helpdesk_rate_limit", &mut patch.helpdesk_rate_limit),
    ] {
        if let Some(v) = body.get(field) {
            *slot = Some(rate_limit(field, v)?);
        }
    }
    Ok(patch)
}

/// `helpdesk`: a card, or `null` to remove it.
fn helpdesk(v: &Value) -> Result<Option<Helpdesk>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Object(h) => {
            only(h, &["name", "email", "phone", "url"])?;
            let field = |f: &str| string(h, f).map(|v| v.map(str::to_owned));
            let card = Helpdesk {
                name: field("name")?,
                email: field("email")?,
                phone: field("phone")?,
                url: field("url")?,
            };
            card.check().map_err(ApiError::BadRequest)?;
            Ok(Some(card))
        }
        _ => Err(ApiError::BadRequest(
            "helpdesk must be an object {name, email, phone, url} or null".into(),
        )),
    }
}

/// A retention in days, within the policy's range.
fn retention_days(field: &str, v: &Value) -> Result<u16, ApiError> {
    let range = TenantPolicy::RETENTION_DAYS;
    v.as_u64()
        .and_then(|d| u16::try_from(d).ok())
        .filter(|d| range.contains(d))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{field} must be a whole number from {} to {}",
                range.start(),
                range.end()
            ))
        })
}

/// A tenant rate limit, or `null` for the deployment's default.
fn rate_limit(field: &str, v: &Value) -> Result<Option<u32>, ApiError> {
    if v.is_null() {
        return Ok(None);
    }
    let range = TenantPolicy::RATE_LIMITS;
    v.as_u64()
        .and_then(|d| u32::try_from(d).ok())
        .filter(|d| range.contains(d))
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{field} must be a whole number from {} to {}, or null for the deployment's default",
                range.start(),
                range.end()
            ))
        })
}
