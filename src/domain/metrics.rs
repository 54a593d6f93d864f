//! What the portal counts for its operators (see `adapters::emf` for how it
//! reaches CloudWatch). A closed set of names and dimension values: no
//! identifier or secret can become a metric dimension.

/// Why a request could not be completed safely (a 503): the errors' own
/// vocabulary.
pub use crate::domain::error::Cause;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Keys decrypted and answered.
    KeysDisclosed,
    /// Refused retrievals, by the audit event's reason (a fixed vocabulary
    /// of the domain, such as `not_owner` or `rate_limited`).
    Denials(crate::domain::denial::Denied),
    /// Retrievals (or batch items) refused by a rate limit.
    RateLimited,
    Unavailable(Cause),
    /// Granted disclosures whose audit write failed (fail closed).
    AuditWriteFailures,
    /// Keys asked for in one batch request.
    BatchSize,
    IncidentsOpened,
    /// Tenant settings changed (`PATCH /v1/tenant/settings`).
    SettingsChanges,
    /// Devices given to another owner through the API.
    OwnerChanges,
    /// Owner changes refused because they named the caller themselves.
    OwnerChangesRefused,
    DevicesRetired,
    DevicesRestored,
    /// After each helpdesk disclosure: how many keys that agent has been
    /// disclosed in the rolling hour (its own rate window). An alarm on the
    /// maximum catches one agent reading more than a threshold of keys an
    /// hour without naming anyone in a dimension.
    AgentKeysInHour,
    /// A scheduled Entra sync run that finished (1 per run): the
    /// "no successful run in 25 hours" alarm watches it.
    EntraSyncSucceeded,
    /// Keys a scheduled Entra sync run copied (read from Graph and stored).
    EntraSyncKeysCopied,
}

impl Metric {
    /// The CloudWatch metric name.
    pub fn name(self) -> &'static str {
        match self {
            Self::KeysDisclosed => "KeysDisclosed",
            Self::Denials(_) => "Denials",
            Self::RateLimited => "RateLimited",
            Self::Unavailable(_) => "Unavailable",
            Self::AuditWriteFailures => "AuditWriteFailures",
            Self::BatchSize => "BatchSize",
            Self::IncidentsOpened => "IncidentsOpened",
            Self::SettingsChanges => "SettingsChanges",
            Self::OwnerChanges => "OwnerChanges",
            Self::OwnerChangesRefused => "OwnerChangesRefused",
            Self::DevicesRetired => "DevicesRetired",
            Self::DevicesRestored => "DevicesRestored",
            Self::AgentKeysInHour => "AgentKeysInHour",
            Self::EntraSyncSucceeded => "EntraSyncSucceeded",
            Self::EntraSyncKeysCopied => "EntraSyncKeysCopied",
        }
    }

    /// The one dimension this metric is also published by, if any.
    pub fn dimension(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Denials(reason) => Some(("Reason", reason.as_str())),
            Self::Unavailable(cause) => Some(("Cause", cause.as_str())),
            _ => None,
        }
    }
}
