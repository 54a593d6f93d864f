//! How the API shows stored things (devices, keys, audit events, incidents,
//! settings): the typed bodies the routes that answer them share. Each
//! borrows from the domain value it shows.

use super::ApiResponse;
use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::domain::ids::{DeviceId, KeyId, TenantId, UserId};
use crate::domain::incidents::{Incident, IncidentId};
use crate::domain::model::{
    Device, Helpdesk, KeyMeta, ManagedBy, RequireReason, TenantPolicy, VolumeType,
};
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;
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

/// Key metadata as the API shows it (never a password).
#[derive(Serialize)]
pub(crate) struct KeyView<'a> {
    pub key_id: &'a KeyId,
    pub volume_type: VolumeType,
    pub created_at: String,
    pub disclosed_at: Option<String>,
    pub superseded_at: Option<String>,
}

impl<'a> From<&'a KeyMeta> for KeyView<'a> {
    fn from(k: &'a KeyMeta) -> Self {
        Self {
            key_id: &k.key_id,
            volume_type: k.volume_type,
            created_at: rfc3339(k.created_at),
            disclosed_at: k.disclosed_at.map(rfc3339),
            superseded_at: k.superseded_at.map(rfc3339),
        }
    }
}

/// A device as `GET /v1/devices` shows it; the device routes add its owner.
#[derive(Serialize)]
pub(crate) struct DeviceView<'a> {
    pub device_id: &'a DeviceId,
    pub display_name: &'a str,
    pub os: &'a str,
    pub managed_by: ManagedBy,
    pub recovery_keys: Vec<KeyView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<&'a UserId>,
}

impl<'a> DeviceView<'a> {
    pub(crate) fn listed(d: &'a Device) -> Self {
        Self {
            device_id: &d.device_id,
            display_name: &d.display_name,
            os: &d.os,
            managed_by: d.managed_by,
            recovery_keys: d.keys.iter().map(KeyView::from).collect(),
            owner: None,
        }
    }

    /// As the device routes answer it: with its owner.
    pub(crate) fn owned(d: &'a Device) -> Self {
        Self {
            owner: Some(&d.owner),
            ..Self::listed(d)
        }
    }
}

/// An audit event as the API (and `portal audit export`) shows it.
#[derive(Serialize)]
pub struct EventView<'a> {
    action: Action,
    event_id: &'a str,
    time: String,
    tenant_id: &'a TenantId,
    actor: &'a UserId,
    device_id: Option<&'a DeviceId>,
    key_id: Option<&'a KeyId>,
    outcome: Outcome,
    reason: &'a str,
    justification: Option<&'a str>,
    source_ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    request_id: &'a str,
}

impl<'a> From<&'a AuditEvent> for EventView<'a> {
    fn from(e: &'a AuditEvent) -> Self {
        Self {
            action: e.action,
            event_id: &e.event_id,
            time: rfc3339(e.time),
            tenant_id: &e.tenant_id,
            actor: &e.actor,
            device_id: e.device_id.as_ref(),
            key_id: e.key_id.as_ref(),
            outcome: e.outcome,
            reason: &e.reason,
            justification: e.justification.as_deref(),
            source_ip: e.source_ip.as_deref(),
            user_agent: e.user_agent.as_deref(),
            request_id: &e.request_id,
        }
    }
}

/// An audit event as one line of JSON (`portal audit export`).
pub fn event_json(e: &AuditEvent) -> serde_json::Value {
    serde_json::to_value(EventView::from(e)).unwrap_or_default()
}

#[derive(Serialize)]
pub(crate) struct IncidentView<'a> {
    incident_id: &'a IncidentId,
    status: &'static str,
    opened_by: &'a UserId,
    opened_at: String,
    expires_at: String,
    closed_at: Option<String>,
    reason: &'a str,
    helpdesk_rate_limit: u32,
}

impl<'a> IncidentView<'a> {
    /// `now` decides whether it is still open.
    pub(crate) fn new(i: &'a Incident, now: OffsetDateTime) -> Self {
        Self {
            incident_id: &i.incident_id,
            status: i.state(now).as_str(),
            opened_by: &i.opened_by,
            opened_at: rfc3339(i.opened_at),
            expires_at: rfc3339(i.expires_at),
            closed_at: i.closed_at.map(rfc3339),
            reason: &i.reason,
            helpdesk_rate_limit: i.helpdesk_rate_limit,
        }
    }
}

/// The tenant's settings (`GET` and `PATCH /v1/tenant/settings`).
#[derive(Serialize)]
pub(crate) struct SettingsView<'a> {
    self_service: bool,
    helpdesk: Option<&'a Helpdesk>,
    require_reason: RequireReason,
    superseded_key_retention_days: u16,
    retired_device_retention_days: u16,
    self_service_rate_limit: Option<u32>,
    helpdesk_rate_limit: Option<u32>,
}

impl<'a> From<&'a TenantPolicy> for SettingsView<'a> {
    fn from(p: &'a TenantPolicy) -> Self {
        Self {
            self_service: p.self_service,
            helpdesk: p.helpdesk.as_ref(),
            require_reason: p.require_reason,
            superseded_key_retention_days: p.superseded_key_retention_days,
            retired_device_retention_days: p.retired_device_retention_days,
            self_service_rate_limit: p.self_service_rate_limit,
            helpdesk_rate_limit: p.helpdesk_rate_limit,
        }
    }
}
