//! Audit events: one per key-retrieval attempt that authenticated, written
//! before any key is decrypted, and one per write (escrow, device change,
//! retirement, settings change, key verification); never updated or deleted.

use crate::domain::ids::{DeviceId, KeyId, TenantId, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Granted,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Denied => "denied",
        }
    }
}

/// What an audited request did. Events written before there were other
/// actions carry none and read as `Disclose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A key retrieval (granted or denied).
    #[default]
    Disclose,
    Escrow,
    DeviceUpsert,
    DeviceRetire,
    SettingsChange,
    /// `portal keys verify`: every stored key opened and checked.
    KeysVerify,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disclose => "disclose",
            Self::Escrow => "escrow",
            Self::DeviceUpsert => "device_upsert",
            Self::DeviceRetire => "device_retire",
            Self::SettingsChange => "settings_change",
            Self::KeysVerify => "keys_verify",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Disclose,
            Self::Escrow,
            Self::DeviceUpsert,
            Self::DeviceRetire,
            Self::SettingsChange,
            Self::KeysVerify,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    #[serde(default)]
    pub action: Action,
    pub event_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub tenant_id: TenantId,
    pub actor: UserId,
    pub device_id: Option<DeviceId>,
    pub key_id: Option<KeyId>,
    pub outcome: Outcome,
    /// Why: `owner` or `helpdesk` when granted, the denial code otherwise.
    pub reason: String,
    /// The caller's own words (the request's `reason` field), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: String,
}

/// Filters of `GET /v1/audit-events`, always within one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub device_id: Option<DeviceId>,
    pub actor: Option<UserId>,
    pub limit: usize,
}

impl AuditQuery {
    pub const DEFAULT_LIMIT: usize = 100;
    pub const MAX_LIMIT: usize = 1000;

    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.device_id
            .as_ref()
            .is_none_or(|d| e.device_id.as_ref() == Some(d))
            && self.actor.as_ref().is_none_or(|a| &e.actor == a)
    }
}

/// Sort newest first, ties broken by event id so the order is total.
pub fn newest_first(events: &mut [AuditEvent]) {
    events.sort_by(|a, b| {
        b.time
            .cmp(&a.time)
            .then_with(|| b.event_id.cmp(&a.event_id))
    });
}
