//! `PATCH /v1/tenant/settings`: change some of the tenant's policy; the
//! answer is the policy after the change.

use crate::api::body::{Body, Query, fields, parse};
use crate::api::openapi::{
    Answer, RequestBody, RouteDoc, SHARED_INSUFFICIENT_SCOPE, SHARED_INVALID_REQUEST,
    SHARED_UNAVAILABLE_WRITE, SHARED_UNSUPPORTED_MEDIA_TYPE, of,
};
use crate::api::views::{SettingsView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::error::ApiError;
use crate::domain::model::{Helpdesk, RequireReason, TenantPolicy};
use crate::domain::settings::{self, SettingsPatch};
use http::StatusCode;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use utoipa::ToSchema;

/// The settings to change; absent fields keep their value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"require_reason": "helpdesk"}))]
pub(crate) struct TenantSettingsPatch {
    /// Whether device owners may see their own keys.
    #[serde(default, deserialize_with = "self_service")]
    #[schema(nullable = false)]
    pub(crate) self_service: Option<bool>,
    /// The new helpdesk, or null to remove it (absent: unchanged).
    #[serde(default, deserialize_with = "helpdesk")]
    #[schema(inline)]
    #[schema(value_type = Option<HelpdeskCard>)]
    pub(crate) helpdesk: Option<Option<HelpdeskCard>>,
    /// When a key retrieval must carry a `reason`.
    #[serde(default, deserialize_with = "require_reason")]
    #[schema(nullable = false)]
    pub(crate) require_reason: Option<RequireReason>,
    /// Days a superseded key is kept, 1 to 3650.
    #[serde(default, deserialize_with = "retention_days")]
    #[schema(nullable = false, minimum = 1, maximum = 3650)]
    pub(crate) superseded_key_retention_days: Option<u16>,
    /// Days a retired device is kept, 1 to 3650.
    #[serde(default, deserialize_with = "retention_days")]
    #[schema(nullable = false, minimum = 1, maximum = 3650)]
    pub(crate) retired_device_retention_days: Option<u16>,
    /// Keys per device owner per rolling hour, 1 to 100000; null: the
    /// deployment's `PORTAL_KEY_RATE_LIMIT`.
    #[serde(default, deserialize_with = "rate_limit")]
    #[schema(minimum = 1, maximum = 100000)]
    #[schema(value_type = Option<u32>)]
    pub(crate) self_service_rate_limit: Option<Option<u32>>,
    /// Keys per helpdesk agent per rolling hour, 1 to 100000; null: the
    /// deployment's `PORTAL_HELPDESK_RATE_LIMIT`. An open incident's limit
    /// replaces it.
    #[serde(default, deserialize_with = "rate_limit")]
    #[schema(minimum = 1, maximum = 100000)]
    #[schema(value_type = Option<u32>)]
    pub(crate) helpdesk_rate_limit: Option<Option<u32>>,
}

impl Body for TenantSettingsPatch {}

/// Replaces the whole helpdesk; absent or null fields are left out.
#[derive(Deserialize, ToSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "must be an object {name, email, phone, url} or null"
)]
pub(crate) struct HelpdeskCard {
    /// 1 to 256 characters of plain text.
    #[serde(default, deserialize_with = "fields::opt_string")]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub(crate) name: Option<String>,
    /// One plain address such as it@example.com.
    #[serde(default, deserialize_with = "fields::opt_string")]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub(crate) email: Option<String>,
    /// 1 to 256 characters of plain text.
    #[serde(default, deserialize_with = "fields::opt_string")]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub(crate) phone: Option<String>,
    /// An `https://` address.
    #[serde(default, deserialize_with = "fields::opt_string")]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub(crate) url: Option<String>,
}

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    Query::parse(c.query(), &[])?;
    let patch = settings_patch(parse(&c.req.headers, &c.req.body)?)?;
    let current = settings::patch(c.portal.into(), c.permitted()?, &c.meta, &patch).await?;
    Ok(json_response(StatusCode::OK, &SettingsView::from(&current)))
}

fn settings_patch(b: TenantSettingsPatch) -> Result<SettingsPatch, ApiError> {
    let helpdesk = b.helpdesk.map(|card| card.map(Helpdesk::from));
    if let Some(Some(card)) = &helpdesk {
        card.check().map_err(ApiError::BadRequest)?;
    }
    Ok(SettingsPatch {
        self_service: b.self_service,
        helpdesk,
        require_reason: b.require_reason,
        superseded_key_retention_days: b.superseded_key_retention_days,
        retired_device_retention_days: b.retired_device_retention_days,
        self_service_rate_limit: b.self_service_rate_limit,
        helpdesk_rate_limit: b.helpdesk_rate_limit,
    })
}

impl From<HelpdeskCard> for Helpdesk {
    fn from(c: HelpdeskCard) -> Self {
        Helpdesk {
            name: c.name,
            email: c.email,
            phone: c.phone,
            url: c.url,
        }
    }
}

fn self_service<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match fields::value(d)? {
        Value::Bool(b) => Ok(Some(b)),
        _ => Err(fields::must("must be true or false")),
    }
}

/// A card, or `null` to remove it.
fn helpdesk<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<HelpdeskCard>>, D::Error> {
    Option::<HelpdeskCard>::deserialize(d).map(Some)
}

fn require_reason<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RequireReason>, D::Error> {
    let v = fields::value(d)?;
    v.as_str()
        .and_then(RequireReason::parse)
        .map(Some)
        .ok_or_else(|| fields::must("must be \"never\", \"helpdesk\" or \"always\""))
}

/// A retention in days, within the policy's range.
fn retention_days<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let range = TenantPolicy::RETENTION_DAYS;
    fields::whole(&fields::value(d)?)
        .filter(|d| range.contains(d))
        .map(Some)
        .ok_or_else(|| {
            fields::must(format!(
                "must be a whole number from {} to {}",
                range.start(),
                range.end()
            ))
        })
}

/// A tenant rate limit, or `null` for the deployment's default.
fn rate_limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    let v = fields::value(d)?;
    if v.is_null() {
        return Ok(Some(None));
    }
    let range = TenantPolicy::RATE_LIMITS;
    fields::whole(&v)
        .filter(|n| range.contains(n))
        .map(|n| Some(Some(n)))
        .ok_or_else(|| {
            fields::must(format!(
                "must be a whole number from {} to {}, or null for the deployment's default",
                range.start(),
                range.end()
            ))
        })
}

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "patchTenantSettings",
    tags: &["settings"],
    summary: "Change the tenant's settings",
    description: "A partial update: absent fields keep their value, `helpdesk: null` removes the helpdesk. Answers the settings after the change; the next request on every instance applies them. Audited (`settings_change`, what changed in `justification`). **Permission:** `Tenant.Settings.ReadWrite`.",
    params: &[],
    body: Some(RequestBody {
        required: true,
        description: "The fields to change (at most 4 KiB).",
        schema: of::<TenantSettingsPatch>,
    }),
    answers: &[
        Answer::Success(
            200,
            "The settings after the change.",
            Some(of::<SettingsView>),
        ),
        Answer::Shared(&SHARED_INVALID_REQUEST),
        Answer::Shared(&SHARED_INSUFFICIENT_SCOPE),
        Answer::Shared(&SHARED_UNSUPPORTED_MEDIA_TYPE),
        Answer::Shared(&SHARED_UNAVAILABLE_WRITE),
    ],
};
