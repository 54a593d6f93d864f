//! How the API shows stored things (devices, keys, audit events, incidents,
//! settings): the typed bodies the routes that answer them share. Each
//! borrows from the domain value it shows.

use super::ApiResponse;
use super::openapi::{Timestamp, action, incident_state, outcome, uuid};
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
use utoipa::ToSchema;

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

/// Metadata of one escrowed key, never the key itself.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyMetadata)]
pub(crate) struct KeyView<'a> {
    pub key_id: &'a KeyId,
    pub volume_type: VolumeType,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    /// The key's first granted disclosure, else null.
    #[schema(value_type = Option<Timestamp>, required = true)]
    pub disclosed_at: Option<String>,
    /// When a newer key of its volume type was escrowed, else null.
    /// Superseded keys are listed until their retention
    /// (`superseded_key_retention_days`) ends.
    #[schema(value_type = Option<Timestamp>, required = true)]
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

/// A device as `GET /v1/devices` shows it.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Device)]
pub(crate) struct DeviceView<'a> {
    pub device_id: &'a DeviceId,
    #[schema(min_length = 1, max_length = 256)]
    pub display_name: &'a str,
    #[schema(min_length = 1, max_length = 128)]
    pub os: &'a str,
    pub managed_by: ManagedBy,
    /// Newest first. Empty for a personally encrypted device or when
    /// nothing was escrowed.
    pub recovery_keys: Vec<KeyView<'a>>,
}

impl<'a> DeviceView<'a> {
    pub(crate) fn listed(d: &'a Device) -> Self {
        Self {
            device_id: &d.device_id,
            display_name: &d.display_name,
            os: &d.os,
            managed_by: d.managed_by,
            recovery_keys: d.keys.iter().map(KeyView::from).collect(),
        }
    }
}

/// A device as `GET /v1/devices` shows it, plus its `owner`.
// The fields are `DeviceView`'s written out, not flattened: a flattened
// struct would be an `allOf` in the document, which cannot keep
// `additionalProperties: false`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EnrolledDevice)]
pub(crate) struct EnrolledDeviceView<'a> {
    pub device_id: &'a DeviceId,
    #[schema(min_length = 1, max_length = 256)]
    pub display_name: &'a str,
    #[schema(min_length = 1, max_length = 128)]
    pub os: &'a str,
    pub managed_by: ManagedBy,
    /// Newest first. Empty for a personally encrypted device or when
    /// nothing was escrowed.
    pub recovery_keys: Vec<KeyView<'a>>,
    pub owner: &'a UserId,
}

impl<'a> From<&'a Device> for EnrolledDeviceView<'a> {
    fn from(d: &'a Device) -> Self {
        let v = DeviceView::listed(d);
        Self {
            device_id: v.device_id,
            display_name: v.display_name,
            os: v.os,
            managed_by: v.managed_by,
            recovery_keys: v.recovery_keys,
            owner: &d.owner,
        }
    }
}

/// One audited action by an authenticated caller: a key-retrieval attempt
/// (granted or denied), or a write (escrow, device enrolment or
/// retirement, settings change, key verification). Events are never
/// updated or deleted. Clients must ignore fields they do not know: new
/// ones may be added.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditEvent)]
pub struct EventView<'a> {
    #[schema(schema_with = action)]
    action: Action,
    #[schema(schema_with = uuid)]
    event_id: &'a str,
    #[schema(value_type = Timestamp)]
    time: String,
    tenant_id: &'a TenantId,
    actor: &'a UserId,
    #[schema(required = true)]
    device_id: Option<&'a DeviceId>,
    #[schema(required = true)]
    key_id: Option<&'a KeyId>,
    #[schema(schema_with = outcome)]
    outcome: Outcome,
    /// `owner` or `helpdesk` when a retrieval was granted; what a write did
    /// (`created`, `updated`, ...) when granted; the denial code otherwise
    /// (`not_found`, `not_owner`, `insufficient_scope`,
    /// `self_service_disabled`, `rate_limited`, `invalid_request`,
    /// `no_key`, `key_conflict`, ...).
    reason: &'a str,
    /// The caller's `reason` for a retrieval, if given; for a write, what
    /// changed (`owner <old> -> <new>`, the settings changed).
    #[schema(required = true)]
    justification: Option<&'a str>,
    #[schema(required = true)]
    source_ip: Option<&'a str>,
    #[schema(required = true, max_length = 256)]
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

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Incident)]
pub(crate) struct IncidentView<'a> {
    incident_id: &'a IncidentId,
    #[schema(schema_with = incident_state)]
    status: &'static str,
    opened_by: &'a UserId,
    #[schema(value_type = Timestamp)]
    opened_at: String,
    #[schema(value_type = Timestamp)]
    expires_at: String,
    /// When it was closed early, or null.
    #[schema(value_type = Option<Timestamp>, required = true)]
    closed_at: Option<String>,
    #[schema(max_length = 200)]
    reason: &'a str,
    /// Keys per helpdesk agent per rolling hour while it is open.
    #[schema(minimum = 1, maximum = 100000)]
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
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TenantSettings)]
pub(crate) struct SettingsView<'a> {
    /// Whether owners may retrieve their own keys (`RecoveryKey.Read`).
    self_service: bool,
    /// The tenant's helpdesk, or null.
    #[schema(required = true)]
    helpdesk: Option<&'a Helpdesk>,
    require_reason: RequireReason,
    /// How long a superseded key stays retrievable.
    #[schema(minimum = 1, maximum = 3650)]
    superseded_key_retention_days: u16,
    /// How long a retired device stays restorable (`POST
    /// /v1/devices/{device_id}/restore`) and its keys readable by the
    /// helpdesk by key ID with a reason; then it is deleted. Default 30.
    #[schema(minimum = 1, maximum = 3650)]
    retired_device_retention_days: u16,
    /// Keys per device owner per rolling hour; null: the deployment's
    /// `PORTAL_KEY_RATE_LIMIT`. Never above the deployment's own limit: a
    /// tenant may lower it, not raise it.
    #[schema(required = true, minimum = 1, maximum = 100000)]
    self_service_rate_limit: Option<u32>,
    /// Keys per helpdesk agent per rolling hour; null: the deployment's
    /// `PORTAL_HELPDESK_RATE_LIMIT`. An open incident's limit replaces it.
    /// Never above the deployment's own limit: a tenant may lower it, not
    /// raise it.
    #[schema(required = true, minimum = 1, maximum = 100000)]
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
