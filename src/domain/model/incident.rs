//! An incident's records: the types the ports store, apart from the
//! incident service (`domain::incidents`) so the ports import no service.

use crate::domain::ids::{TenantId, UserId};
use time::OffsetDateTime;

/// An incident ID: a UUID in canonical lower-case form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct IncidentId(String);

impl IncidentId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// Accepts any UUID spelling; keeps the canonical form.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        uuid::Uuid::try_parse(s)
            .map(|u| Self(u.to_string()))
            .map_err(|_| "must be an incident ID (a UUID)")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for IncidentId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for IncidentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the tenant record holds of its latest incident: what the key path
/// needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenIncident {
    pub incident_id: IncidentId,
    pub expires_at: OffsetDateTime,
    pub helpdesk_rate_limit: u32,
    /// Who opened it: they may not batch-retrieve under it (two people for a
    /// bulk disclosure). `None` on summaries written before this was kept:
    /// the incident's own record says.
    pub opened_by: Option<UserId>,
}

impl OpenIncident {
    pub fn is_open(&self, now: OffsetDateTime) -> bool {
        now < self.expires_at
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub incident_id: IncidentId,
    pub tenant: TenantId,
    pub opened_by: UserId,
    pub opened_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub closed_at: Option<OffsetDateTime>,
    pub reason: String,
    pub helpdesk_rate_limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentState {
    Open,
    Closed,
    Expired,
}

impl IncidentState {
    pub const ALL: [Self; 3] = [Self::Open, Self::Closed, Self::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Expired => "expired",
        }
    }
}

impl Incident {
    pub fn state(&self, now: OffsetDateTime) -> IncidentState {
        match self.closed_at {
            Some(_) => IncidentState::Closed,
            None if now < self.expires_at => IncidentState::Open,
            None => IncidentState::Expired,
        }
    }

    pub fn summary(&self) -> OpenIncident {
        OpenIncident {
            incident_id: self.incident_id.clone(),
            expires_at: self.expires_at,
            helpdesk_rate_limit: self.helpdesk_rate_limit,
            opened_by: Some(self.opened_by.clone()),
        }
    }
}
