//! The write routes of the key lifecycle (served by the `manage-keys`
//! function on AWS, and by `portal serve`):
//!
//! - `PUT /v1/devices/{device_id}/recovery-keys/{key_id}`: escrow;
//! - `PUT` / `DELETE /v1/devices/{device_id}`: enrol or change, retire;
//! - `POST /v1/devices/{device_id}/restore`: bring a retired device back;
//! - `GET /v1/rotation-requests`;
//! - `GET` / `PATCH /v1/tenant/settings`.
//!
//! Bodies are read as JSON values and checked field by field, so no error
//! message can quote a value (an escrow body holds a recovery password).

use super::{
    ApiRequest, ApiResponse, MAX_BODY, Query, Routes, authenticate, bad, json_response, rfc3339,
};
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, KeyId, UserId};
use crate::domain::incidents::{self, IncidentId};
use crate::domain::lifecycle::{
    self, DeviceMetadata, EscrowRequest, Escrowed, ROTATION_DEFAULT_LIMIT, ROTATION_MAX_LIMIT,
    Upserted,
};
use crate::domain::model::{
    Helpdesk, KeyMeta, ManagedBy, RecoveryPassword, RequireReason, TenantPolicy, VolumeType,
};
use crate::domain::policy;
use crate::domain::settings::{self, SettingsPatch};
use crate::ports::Portal;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, Response, StatusCode, header};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub(super) enum LifeRoute {
    Escrow { device: String, key: String },
    Device(String),
    Restore(String),
    RotationRequests,
    TenantSettings,
    Incidents,
    Incident(String),
}

/// The lifecycle route of `path` and the methods it allows.
pub(super) fn route(path: &str) -> Option<(LifeRoute, &'static [&'static str])> {
    match path {
        "/v1/rotation-requests" => Some((LifeRoute::RotationRequests, &["GET"])),
        "/v1/tenant/settings" => Some((LifeRoute::TenantSettings, &["GET", "PATCH"])),
        "/v1/incidents" => Some((LifeRoute::Incidents, &["GET", "POST"])),
        _ => {
            if let Some(id) = path.strip_prefix("/v1/incidents/") {
                return (!id.is_empty() && !id.contains('/'))
                    .then(|| (LifeRoute::Incident(id.to_owned()), &["DELETE"][..]));
            }
            let rest = path.strip_prefix("/v1/devices/")?;
            let segments: Vec<&str> = rest.split('/').collect();
            match segments.as_slice() {
                [device] if !device.is_empty() => {
                    Some((LifeRoute::Device((*device).to_owned()), &["PUT", "DELETE"]))
                }
                [device, "restore"] if !device.is_empty() => {
                    Some((LifeRoute::Restore((*device).to_owned()), &["POST"]))
                }
                [device, "recovery-keys", key] if !device.is_empty() && !key.is_empty() => Some((
                    LifeRoute::Escrow {
                        device: (*device).to_owned(),
                        key: (*key).to_owned(),
                    },
                    &["PUT"],
                )),
                _ => None,
            }
        }
    }
}

fn allow_header(methods: &[&str]) -> &'static str {
    match methods {
        ["GET"] => "GET",
        ["PUT"] => "PUT",
        ["GET", "PATCH"] => "GET, PATCH",
        ["GET", "POST"] => "GET, POST",
        ["DELETE"] => "DELETE",
        ["POST"] => "POST",
        _ => "PUT, DELETE",
    }
}

pub(super) async fn dispatch(
    portal: &Portal,
    serves: Routes,
    req: ApiRequest,
    route: LifeRoute,
    methods: &'static [&'static str],
) -> Result<ApiResponse, ApiError> {
    if serves != Routes::All && serves != Routes::Manage {
        return Err(ApiError::RouteNotFound);
    }
    if !methods.contains(&req.method.as_str()) {
        return Err(ApiError::MethodNotAllowed {
            allow: allow_header(methods),
        });
    }
    if req.body.len() > MAX_BODY {
        return Err(ApiError::PayloadTooLarge { max: MAX_BODY });
    }
    let caller = authenticate(portal, &req.headers).await?;
    let meta = super::request_meta(&req);
    match route {
        LifeRoute::Escrow { device, key } => {
            Query::parse(req.query.as_deref(), &[])?;
            // Permission before input validation: no hints to the unauthorised.
            policy::may_escrow(&caller)?;
            let device_id = DeviceId::parse(&device).map_err(|e| bad("device_id", e))?;
            let key_id = KeyId::parse(&key).map_err(|e| bad("key_id", e))?;
            let body = json_object(&req.headers, &req.body)?;
            let request = escrow_request(device_id, key_id, body)?;
            let (status, key) = match lifecycle::escrow(portal, &caller, &meta, request).await? {
                Escrowed::Created(k) => (StatusCode::CREATED, k),
                Escrowed::AlreadyHeld(k) => (StatusCode::OK, k),
            };
            let mut body = key_json(&key);
            body.insert("device_id".into(), json!(device));
            Ok(json_response(status, &body))
        }
        LifeRoute::Device(raw) => {
            Query::parse(req.query.as_deref(), &[])?;
            policy::may_write_devices(&caller)?;
            let device_id = DeviceId::parse(&raw).map_err(|e| bad("device_id", e))?;
            if req.method == Method::DELETE {
                let reason = retire_reason(&req.headers, &req.body)?;
                lifecycle::retire_device(portal, &caller, &meta, &device_id, reason).await?;
                let mut r = Response::new(Vec::new());
                *r.status_mut() = StatusCode::NO_CONTENT;
                return Ok(r);
            }
            let md = device_metadata(json_object(&req.headers, &req.body)?)?;
            let (status, device) =
                match lifecycle::upsert_device(portal, &caller, &meta, &device_id, md).await? {
                    Upserted::Created(d) => (StatusCode::CREATED, d),
                    Upserted::Updated(d) | Upserted::Unchanged(d) => (StatusCode::OK, d),
                };
            Ok(json_response(status, &owned_device_json(&device)))
        }
        LifeRoute::Restore(raw) => {
            Query::parse(req.query.as_deref(), &[])?;
            policy::may_write_devices(&caller)?;
            let device_id = DeviceId::parse(&raw).map_err(|e| bad("device_id", e))?;
            let device = lifecycle::restore_device(portal, &caller, &meta, &device_id).await?;
            Ok(json_response(StatusCode::OK, &owned_device_json(&device)))
        }
        LifeRoute::RotationRequests => {
            let q = Query::parse(req.query.as_deref(), &["limit", "cursor"])?;
            policy::may_escrow(&caller)?;
            let limit = match q.get("limit") {
                None => ROTATION_DEFAULT_LIMIT,
                Some(l) => l
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=ROTATION_MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "limit must be a whole number from 1 to {ROTATION_MAX_LIMIT}"
                        ))
                    })?,
            };
            let cursor = q.get("cursor").map(decode_cursor).transpose()?;
            let page =
                lifecycle::rotation_requests(portal, &caller, cursor.as_deref(), limit).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "rotation_requests": page.requests.iter().map(|r| json!({
                        "device_id": r.device_id,
                        "key_id": r.key_id,
                        "volume_type": r.volume_type,
                        "disclosed_at": rfc3339(r.disclosed_at),
                    })).collect::<Vec<_>>(),
                    "next": page.next.map(|c| URL_SAFE_NO_PAD.encode(c)),
                }),
            ))
        }
        LifeRoute::TenantSettings => {
            Query::parse(req.query.as_deref(), &[])?;
            policy::may_manage_settings(&caller)?;
            let current = if req.method == Method::PATCH {
                let patch = settings_patch(json_object(&req.headers, &req.body)?)?;
                settings::patch(portal, &caller, &meta, &patch).await?
            } else {
                settings::get(portal, &caller).await?
            };
            Ok(json_response(StatusCode::OK, &settings_json(&current)))
        }
        LifeRoute::Incidents => {
            Query::parse(req.query.as_deref(), &[])?;
            if req.method == Method::POST {
                incidents::check_permission(portal, &caller, &meta, false).await?;
                let request = incident_request(
                    json_object(&req.headers, &req.body)?,
                    portal.incident_max_rate_limit,
                )?;
                let i = incidents::open(portal, &caller, &meta, &request).await?;
                let now = portal.clock.now();
                return Ok(json_response(StatusCode::CREATED, &incident_json(&i, now)));
            }
            let list = incidents::list(portal, &caller).await?;
            let now = portal.clock.now();
            Ok(json_response(
                StatusCode::OK,
                &json!({ "incidents": list.iter().map(|i| incident_json(i, now)).collect::<Vec<_>>() }),
            ))
        }
        LifeRoute::Incident(raw) => {
            Query::parse(req.query.as_deref(), &[])?;
            incidents::check_permission(portal, &caller, &meta, true).await?;
            let id = IncidentId::parse(&raw).map_err(|e| bad("incident_id", e))?;
            let i = incidents::close(portal, &caller, &meta, &id).await?;
            Ok(json_response(
                StatusCode::OK,
                &incident_json(&i, portal.clock.now()),
            ))
        }
    }
}

/// A device as the device routes answer it: as `GET /v1/devices` shows it,
/// plus its owner.
fn owned_device_json(device: &crate::domain::model::Device) -> Value {
    let mut body = super::device_json(device);
    if let Value::Object(m) = &mut body {
        m.insert("owner".into(), json!(device.owner));
    }
    body
}

/// `DELETE /v1/devices/{id}`'s optional body `{"reason": …}`.
fn retire_reason(headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let body = json_object(headers, body)?;
    only(&body, &["reason"])?;
    string(&body, "reason")?
        .filter(|r| !r.trim().is_empty())
        .map(super::check_reason)
        .transpose()
}

fn incident_request(
    body: Map<String, Value>,
    max_rate_limit: u32,
) -> Result<incidents::OpenRequest, ApiError> {
    only(&body, &["reason", "duration_hours", "helpdesk_rate_limit"])?;
    let reason = match body.get("reason") {
        Some(Value::String(r)) if !r.trim().is_empty() => r.clone(),
        _ => {
            return Err(ApiError::BadRequest(
                "reason is required: say what the incident is (for example \"faulty agent update 2026-11-25\")".into(),
            ));
        }
    };
    let reason = super::check_reason_max(&reason, incidents::MAX_REASON_CHARS)?;
    let range = incidents::DURATION_HOURS;
    let duration_hours = body
        .get("duration_hours")
        .and_then(Value::as_u64)
        .and_then(|h| u32::try_from(h).ok())
        .filter(|h| range.contains(h))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "duration_hours is required: a whole number of hours from {} to {}",
                range.start(),
                range.end()
            ))
        })?;
    // The deployment's ceiling (PORTAL_INCIDENT_MAX_RATE_LIMIT): one person
    // opening an incident cannot give agents an unbounded bulk export.
    let helpdesk_rate_limit = match body.get("helpdesk_rate_limit") {
        None | Some(Value::Null) => incidents::DEFAULT_HELPDESK_RATE_LIMIT.min(max_rate_limit),
        Some(v) => v
            .as_u64()
            .and_then(|l| u32::try_from(l).ok())
            .filter(|l| (1..=max_rate_limit).contains(l))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "helpdesk_rate_limit must be a whole number from 1 to {max_rate_limit} (this deployment's ceiling, PORTAL_INCIDENT_MAX_RATE_LIMIT)"
                ))
            })?,
    };
    Ok(incidents::OpenRequest {
        reason,
        duration_hours,
        helpdesk_rate_limit,
    })
}

pub(super) fn incident_json(i: &incidents::Incident, now: OffsetDateTime) -> Value {
    json!({
        "incident_id": i.incident_id,
        "status": i.state(now).as_str(),
        "opened_by": i.opened_by,
        "opened_at": rfc3339(i.opened_at),
        "expires_at": rfc3339(i.expires_at),
        "closed_at": i.closed_at.map(rfc3339),
        "reason": i.reason,
        "helpdesk_rate_limit": i.helpdesk_rate_limit,
    })
}

/// A rotation-requests cursor: base64url of the store's `<sort>#<device>`.
fn decode_cursor(raw: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::BadRequest("cursor must be the `next` value of an earlier page, unchanged".into())
    };
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let ok = text.split_once('#').is_some_and(|(sort, device)| {
        !sort.is_empty()
            && sort.len() <= 64
            && !sort.chars().any(char::is_control)
            && DeviceId::parse(device).is_ok()
    });
    if ok { Ok(text) } else { Err(invalid()) }
}

/// A JSON object body (`application/json` or `+json`).
fn json_object(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || m.ends_with("+json")
        });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    // serde_json's syntax errors name a position, never the text there.
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        )),
        Err(e) => Err(ApiError::BadRequest(format!(
            "invalid JSON body (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

/// How a problem names a field. The password field is named in words: a
/// problem document never carries the literal `recovery_password`, which
/// only a disclosure does.
fn field_name(f: &str) -> &str {
    if f == "recovery_password" {
        "the recovery password"
    } else {
        f
    }
}

/// Rejects fields other than `allowed`.
fn only(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    for k in body.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown field {:?}; allowed: {}",
                k.chars().take(64).collect::<String>(),
                allowed
                    .iter()
                    .map(|f| field_name(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

fn string<'a>(body: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::BadRequest(format!(
            "{} must be a string",
            field_name(field)
        ))),
    }
}

fn required<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    string(body, field)?
        .ok_or_else(|| ApiError::BadRequest(format!("{} is required", field_name(field))))
}

fn text_ok(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
}

fn text(body: &Map<String, Value>, field: &str, max: usize) -> Result<String, ApiError> {
    let v = required(body, field)?;
    if text_ok(v, max) {
        Ok(v.to_owned())
    } else {
        Err(ApiError::BadRequest(format!(
            "{field} must be 1 to {max} characters without control characters"
        )))
    }
}

fn volume_type(v: &str) -> Result<VolumeType, ApiError> {
    VolumeType::parse(v).ok_or_else(|| {
        ApiError::BadRequest(
            "volume_type must be operating_system, fixed_data or removable_data".into(),
        )
    })
}

fn escrow_request(
    device_id: DeviceId,
    key_id: KeyId,
    body: Map<String, Value>,
) -> Result<EscrowRequest, ApiError> {
    only(&body, &["volume_type", "recovery_password", "created_at"])?;
    let volume_type = volume_type(required(&body, "volume_type")?)?;
    // Never echo the password, valid or not.
    let password = RecoveryPassword::parse(required(&body, "recovery_password")?)
        .map_err(|e| ApiError::BadRequest(format!("the recovery password {e}")))?;
    let created_at = string(&body, "created_at")?
        .map(|t| {
            OffsetDateTime::parse(t, &Rfc3339).map_err(|_| {
                ApiError::BadRequest(
                    "created_at must be an RFC 3339 timestamp such as 2024-05-15T09:30:00Z".into(),
                )
            })
        })
        .transpose()?;
    Ok(EscrowRequest {
        device_id,
        key_id,
        volume_type,
        password,
        created_at,
    })
}

fn device_metadata(body: Map<String, Value>) -> Result<DeviceMetadata, ApiError> {
    only(&body, &["owner", "display_name", "os", "managed_by"])?;
    let owner = UserId::parse(required(&body, "owner")?).map_err(|e| bad("owner", e))?;
    let managed_by = ManagedBy::parse(required(&body, "managed_by")?).ok_or_else(|| {
        ApiError::BadRequest("managed_by must be \"organization\" or \"user\"".into())
    })?;
    Ok(DeviceMetadata {
        owner,
        display_name: text(&body, "display_name", 256)?,
        os: text(&body, "os", 128)?,
        managed_by,
    })
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
    match body.get("helpdesk") {
        None => {}
        Some(Value::Null) => patch.helpdesk = Some(None),
        Some(Value::Object(h)) => {
            only(h, &["name", "email", "phone", "url"])?;
            let field = |f: &str| string(h, f).map(|v| v.map(str::to_owned));
            let card = Helpdesk {
                name: field("name")?,
                email: field("email")?,
                phone: field("phone")?,
                url: field("url")?,
            };
            card.check().map_err(ApiError::BadRequest)?;
            patch.helpdesk = Some(Some(card));
        }
        Some(_) => {
            return Err(ApiError::BadRequest(
                "helpdesk must be an object {name, email, phone, url} or null".into(),
            ));
        }
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
            let range = TenantPolicy::RETENTION_DAYS;
            *slot = Some(
                v.as_u64()
                    .and_then(|d| u16::try_from(d).ok())
                    .filter(|d| range.contains(d))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "{field} must be a whole number from {} to {}",
                            range.start(),
                            range.end()
                        ))
                    })?,
            );
        }
    }
    for (field, slot) in [
        (
            "self_service_rate_limit",
            &mut patch.self_service_rate_limit,
        ),
        ("helpdesk_rate_limit", &mut patch.helpdesk_rate_limit),
    ] {
        match body.get(field) {
            None => {}
            Some(Value::Null) => *slot = Some(None),
            Some(v) => {
                let range = TenantPolicy::RATE_LIMITS;
                *slot = Some(Some(
                    v.as_u64()
                        .and_then(|d| u32::try_from(d).ok())
                        .filter(|d| range.contains(d))
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "{field} must be a whole number from {} to {}, or null for the deployment's default",
                                range.start(),
                                range.end()
                            ))
                        })?,
                ));
            }
        }
    }
    Ok(patch)
}

pub(super) fn settings_json(p: &TenantPolicy) -> Value {
    json!({
        "self_service": p.self_service,
        "helpdesk": p.helpdesk,
        "require_reason": p.require_reason,
        "superseded_key_retention_days": p.superseded_key_retention_days,
        "retired_device_retention_days": p.retired_device_retention_days,
        "self_service_rate_limit": p.self_service_rate_limit,
        "helpdesk_rate_limit": p.helpdesk_rate_limit,
    })
}

/// Key metadata as the API shows it (never a password).
pub(super) fn key_json(k: &KeyMeta) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("key_id".into(), json!(k.key_id));
    m.insert("volume_type".into(), json!(k.volume_type));
    m.insert("created_at".into(), json!(rfc3339(k.created_at)));
    m.insert("disclosed_at".into(), json!(k.disclosed_at.map(rfc3339)));
    m.insert("superseded_at".into(), json!(k.superseded_at.map(rfc3339)));
    m
}
