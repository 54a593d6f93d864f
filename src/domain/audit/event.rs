//! What the trail holds: one event per audited attempt or change.

use crate::domain::ids::{DeviceId, KeyId, TenantId, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Granted,
    Denied,
    /// An administrative change (an import moved a device to another owner).
    Changed,
}

impl Outcome {
    pub const ALL: [Self; 3] = [Self::Granted, Self::Denied, Self::Changed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Denied => "denied",
            Self::Changed => "changed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
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
    /// A retired device brought back (`POST /v1/devices/{id}/restore`).
    DeviceRestore,
    SettingsChange,
    /// `portal keys verify`: every stored key opened and checked.
    KeysVerify,
    IncidentOpen,
    IncidentClose,
}

impl Action {
    pub const ALL: [Self; 9] = [
        Self::Disclose,
        Self::Escrow,
        Self::DeviceUpsert,
        Self::DeviceRetire,
        Self::DeviceRestore,
        Self::SettingsChange,
        Self::KeysVerify,
        Self::IncidentOpen,
        Self::IncidentClose,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disclose => "disclose",
            Self::Escrow => "escrow",
            Self::DeviceUpsert => "device_upsert",
            Self::DeviceRetire => "device_retire",
            Self::DeviceRestore => "device_restore",
            Self::SettingsChange => "settings_change",
            Self::KeysVerify => "keys_verify",
            Self::IncidentOpen => "incident_open",
            Self::IncidentClose => "incident_close",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
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

/// The clock hour (hours since the Unix epoch) the denial cap counts in.
pub fn hour_of(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(3600)
}
