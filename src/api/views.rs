//! How the API shows stored things (devices, keys, audit events, incidents,
//! settings), shared by the routes that answer them.

use super::ApiResponse;
use crate::domain::audit::AuditEvent;
use crate::domain::incidents::Incident;
use crate::domain::model::{Device, KeyMeta, TenantPolicy};
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn json_response(status: StatusCode, body: &impl Serialize) -> ApiResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(bytes);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A device as `GET /v1/devices` shows it.
pub(crate) fn device_json(d: &Device) -> Value {
    json!({
        "device_id": d.device_id,
        "display_name": d.display_name,
        "os": d.os,
        "managed_by": d.managed_by,
        "recovery_keys": d.keys.iter().map(key_json).collect::<Vec<_>>(),
    })
}

/// A device as the device routes answer it: as `GET /v1/devices` shows it,
/// plus its owner.
pub(crate) fn owned_device_json(device: &Device) -> Value {
    let mut body = device_json(device);
    if let Value::Object(m) = &mut body {
        m.insert("owner".into(), json!(device.owner));
    }
    body
}

/// Key metadata as the API shows it (never a password).
pub(crate) fn key_json(k: &KeyMeta) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("key_id".into(), json!(k.key_id));
    m.insert("volume_type".into(), json!(k.volume_type));
    m.insert("created_at".into(), json!(rfc3339(k.created_at)));
    m.insert("disclosed_at".into(), json!(k.disclosed_at.map(rfc3339)));
    m.insert("superseded_at".into(), json!(k.superseded_at.map(rfc3339)));
    m
}

/// An audit event as the API (and `portal audit export`) shows it.
pub fn event_json(e: &AuditEvent) -> Value {
    json!({
        "action": e.action,
        "event_id": e.event_id,
        "time": rfc3339(e.time),
        "tenant_id": e.tenant_id,
        "actor": e.actor,
        "device_id": e.device_id,
        "key_id": e.key_id,
        "outcome": e.outcome,
        "reason": e.reason,
        "justification": e.justification,
        "source_ip": e.source_ip,
        "user_agent": e.user_agent,
        "request_id": e.request_id,
    })
}

pub(crate) fn incident_json(i: &Incident, now: OffsetDateTime) -> Value {
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

pub(crate) fn settings_json(p: &TenantPolicy) -> Value {
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
