//! How domain records are stored: JSON of storage types of their own, so
//! the file format changes only when this file does, not whenever a domain
//! type gains a field.

use crate::domain::ids::{DeviceId, KeyId, TenantId, UserId};
use crate::domain::incidents::{Incident, IncidentId, OpenIncident};
use crate::domain::model::VolumeType;
use crate::domain::model::{
    Device, Helpdesk, KeyMeta, ManagedBy, RequireReason, Retirement, TenantPolicy,
};
use crate::domain::ratelimit::{Grant, RateWindow, Slot};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A stored record that does not decode: the file was changed by hand or
/// by a newer version. Reported as the store being unavailable.
fn corrupt(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    super::failure(format!("stored {what} does not decode: {e}"))
}

fn encode<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("storage records always serialise")
}

#[derive(Serialize, Deserialize)]
struct KeyRec {
    key_id: KeyId,
    volume_type: VolumeType,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    disclosed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    superseded_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    expires_at: Option<OffsetDateTime>,
}

#[derive(Serialize, Deserialize)]
struct DeviceRec {
    owner: UserId,
    display_name: String,
    os: String,
    managed_by: ManagedBy,
    keys: Vec<KeyRec>,
    /// Rows written before issue 17 have neither field.
    #[serde(with = "time::serde::rfc3339::option", default)]
    owner_since: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired: Option<RetiredRec>,
}

/// A retirement. Its `expires_at` is what `sweep_tx` looks for.
#[derive(Serialize, Deserialize)]
struct RetiredRec {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

pub(super) fn device_to_json(d: &Device) -> String {
    encode(&DeviceRec {
        owner: d.owner.clone(),
        display_name: d.display_name.clone(),
        os: d.os.clone(),
        managed_by: d.managed_by,
        keys: d
            .keys
            .iter()
            .map(|k| KeyRec {
                key_id: k.key_id,
                volume_type: k.volume_type,
                created_at: k.created_at,
                disclosed_at: k.disclosed_at,
                superseded_at: k.superseded_at,
                expires_at: k.expires_at,
            })
            .collect(),
        owner_since: d.owner_since,
        retired: d.retired.map(|r| RetiredRec {
            at: r.at,
            expires_at: r.expires_at,
        }),
    })
}

pub(super) fn device_from_json(
    tenant: TenantId,
    device_id: DeviceId,
    json: &str,
) -> rusqlite::Result<Device> {
    let r: DeviceRec = serde_json::from_str(json).map_err(|e| corrupt("device", e))?;
    Ok(Device {
        tenant,
        device_id,
        owner: r.owner,
        display_name: r.display_name,
        os: r.os,
        managed_by: r.managed_by,
        keys: r
            .keys
            .into_iter()
            .map(|k| KeyMeta {
                key_id: k.key_id,
                volume_type: k.volume_type,
                created_at: k.created_at,
                disclosed_at: k.disclosed_at,
                superseded_at: k.superseded_at,
                expires_at: k.expires_at,
            })
            .collect(),
        owner_since: r.owner_since,
        retired: r.retired.map(|r| Retirement {
            at: r.at,
            expires_at: r.expires_at,
        }),
    })
}

pub(super) fn digests_to_json(d: &[(KeyId, String)]) -> String {
    encode(&d)
}

pub(super) fn digests_from_json(json: &str) -> rusqlite::Result<Vec<(KeyId, String)>> {
    serde_json::from_str(json).map_err(|e| corrupt("digests", e))
}

#[derive(Serialize, Deserialize)]
struct OpenIncidentRec {
    incident_id: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    helpdesk_rate_limit: u32,
    #[serde(default)]
    opened_by: Option<UserId>,
}

#[derive(Serialize, Deserialize)]
struct PolicyRec {
    self_service: bool,
    helpdesk: Option<Helpdesk>,
    require_reason: RequireReason,
    superseded_key_retention_days: u16,
    /// Policies written before issue 17 lack it: the default retention.
    #[serde(default = "default_retention_days")]
    retired_device_retention_days: u16,
    self_service_rate_limit: Option<u32>,
    helpdesk_rate_limit: Option<u32>,
    incident: Option<OpenIncidentRec>,
}

fn default_retention_days() -> u16 {
    TenantPolicy::DEFAULT_RETENTION_DAYS
}

pub(super) fn policy_to_json(p: &TenantPolicy) -> String {
    encode(&PolicyRec {
        self_service: p.self_service,
        helpdesk: p.helpdesk.clone(),
        require_reason: p.require_reason,
        superseded_key_retention_days: p.superseded_key_retention_days,
        retired_device_retention_days: p.retired_device_retention_days,
        self_service_rate_limit: p.self_service_rate_limit,
        helpdesk_rate_limit: p.helpdesk_rate_limit,
        incident: p.incident.as_ref().map(|i| OpenIncidentRec {
            incident_id: i.incident_id.to_string(),
            expires_at: i.expires_at,
            helpdesk_rate_limit: i.helpdesk_rate_limit,
            opened_by: i.opened_by.clone(),
        }),
    })
}

pub(super) fn policy_from_json(json: &str) -> rusqlite::Result<TenantPolicy> {
    let r: PolicyRec = serde_json::from_str(json).map_err(|e| corrupt("tenant", e))?;
    let incident = match r.incident {
        None => None,
        Some(i) => Some(OpenIncident {
            incident_id: IncidentId::parse(&i.incident_id).map_err(|e| corrupt("tenant", e))?,
            expires_at: i.expires_at,
            helpdesk_rate_limit: i.helpdesk_rate_limit,
            opened_by: i.opened_by,
        }),
    };
    Ok(TenantPolicy {
        self_service: r.self_service,
        helpdesk: r.helpdesk,
        require_reason: r.require_reason,
        superseded_key_retention_days: r.superseded_key_retention_days,
        retired_device_retention_days: r.retired_device_retention_days,
        self_service_rate_limit: r.self_service_rate_limit,
        helpdesk_rate_limit: r.helpdesk_rate_limit,
        incident,
    })
}

#[derive(Serialize, Deserialize)]
struct GrantRec {
    request_id: String,
    at: i64,
    device_id: DeviceId,
    key_id: KeyId,
    digest: String,
}

#[derive(Serialize, Deserialize)]
struct WindowRec {
    /// `(at, count)` per slot, oldest first.
    recent: Vec<(i64, u32)>,
    grants: Vec<GrantRec>,
}

/// The window without its version (the version has a column of its own).
pub(super) fn window_to_json(w: &RateWindow) -> String {
    encode(&WindowRec {
        recent: w.recent.iter().map(|s| (s.at, s.count)).collect(),
        grants: w
            .grants
            .iter()
            .map(|g| GrantRec {
                request_id: g.request_id.clone(),
                at: g.at,
                device_id: g.device_id.clone(),
                key_id: g.key_id,
                digest: g.digest.clone(),
            })
            .collect(),
    })
}

pub(super) fn window_from_json(json: &str, version: u64) -> rusqlite::Result<RateWindow> {
    let r: WindowRec = serde_json::from_str(json).map_err(|e| corrupt("rate window", e))?;
    Ok(RateWindow {
        recent: r
            .recent
            .into_iter()
            .map(|(at, count)| Slot { at, count })
            .collect(),
        version,
        grants: r
            .grants
            .into_iter()
            .map(|g| Grant {
                request_id: g.request_id,
                at: g.at,
                device_id: g.device_id,
                key_id: g.key_id,
                digest: g.digest,
            })
            .collect(),
    })
}

#[derive(Serialize, Deserialize)]
struct IncidentRec {
    opened_by: UserId,
    #[serde(with = "time::serde::rfc3339")]
    opened_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    closed_at: Option<OffsetDateTime>,
    reason: String,
    helpdesk_rate_limit: u32,
}

pub(super) fn incident_to_json(i: &Incident) -> String {
    encode(&IncidentRec {
        opened_by: i.opened_by.clone(),
        opened_at: i.opened_at,
        expires_at: i.expires_at,
        closed_at: i.closed_at,
        reason: i.reason.clone(),
        helpdesk_rate_limit: i.helpdesk_rate_limit,
    })
}

pub(super) fn incident_from_json(
    tenant: TenantId,
    id: &str,
    json: &str,
) -> rusqlite::Result<Incident> {
    let r: IncidentRec = serde_json::from_str(json).map_err(|e| corrupt("incident", e))?;
    Ok(Incident {
        incident_id: IncidentId::parse(id).map_err(|e| corrupt("incident", e))?,
        tenant,
        opened_by: r.opened_by,
        opened_at: r.opened_at,
        expires_at: r.expires_at,
        closed_at: r.closed_at,
        reason: r.reason,
        helpdesk_rate_limit: r.helpdesk_rate_limit,
    })
}

/// Ids as stored: they were valid when written, so a failure here is a
/// corrupt file.
pub(super) fn tenant_id(s: &str) -> rusqlite::Result<TenantId> {
    TenantId::parse(s).map_err(|e| corrupt("tenant id", e))
}

pub(super) fn device_id(s: &str) -> rusqlite::Result<DeviceId> {
    DeviceId::parse(s).map_err(|e| corrupt("device id", e))
}

pub(super) fn key_id(s: &str) -> rusqlite::Result<KeyId> {
    KeyId::parse(s).map_err(|e| corrupt("key id", e))
}

/// Audit events are stored as the API shows them (`AuditEvent`'s serde
/// form). Its actor field reads only user ids, while importers are
/// `import:<name>`: the actor is read with `UserId::parse_actor`, which
/// takes both.
pub(super) fn event_from_json(json: &str) -> rusqlite::Result<crate::domain::audit::AuditEvent> {
    let mut v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| corrupt("audit event", e))?;
    let actor = v["actor"].as_str().unwrap_or_default().to_owned();
    let actor = UserId::parse_actor(&actor).map_err(|e| corrupt("audit event", e))?;
    v["actor"] = serde_json::Value::from("placeholder");
    let mut event: crate::domain::audit::AuditEvent =
        serde_json::from_value(v).map_err(|e| corrupt("audit event", e))?;
    event.actor = actor;
    Ok(event)
}
