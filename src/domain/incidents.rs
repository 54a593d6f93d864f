//! Incident mode: a time-boxed, audited state of one tenant for a mass
//! outage (a bad update sends a fleet to the recovery screen).
//!
//! While an incident is open, the tenant's helpdesk agents read keys at the
//! incident's limit instead of their usual one, and may read up to 100 keys
//! per request (`domain::batch`). An incident ends by itself at
//! `expires_at` (at most 72 hours after it opened) or when closed early.
//! One incident is open per tenant at a time.
//!
//! The open incident is summarised on the tenant record ([`OpenIncident`]),
//! which every retrieval already reads, so incident mode costs the key path
//! no extra call; each incident also has a record of its own for
//! `GET /v1/incidents`. Opening and closing write the record, the summary
//! and the audit event in one atomic write, conditioned on the tenant
//! record's version (so two openings cannot both win).

use crate::domain::audit::Audit;
use crate::domain::audit::{Action, Outcome};
use crate::domain::caller::Caller;
use crate::domain::denial::Denied;
use crate::domain::error::{ApiError, Cause, Unavailable};
use crate::domain::keys::RequestMeta;
use crate::domain::lifecycle::{WRITE_ATTEMPTS, WritePorts};
use crate::domain::policy::{Permitted, grant};
use crate::domain::ports::{LifecycleStore, WriteOutcome};
use time::{Duration, OffsetDateTime};

pub const DURATION_HOURS: std::ops::RangeInclusive<u32> = 1..=72;
/// Keys per agent per rolling hour during an incident, unless the opener
/// sets another.
pub const DEFAULT_HELPDESK_RATE_LIMIT: u32 = 5_000;
pub const MAX_REASON_CHARS: usize = 200;
/// Incidents `GET /v1/incidents` lists, newest first.
pub const LIST_LIMIT: usize = 50;

pub use crate::domain::model::{Incident, IncidentId, IncidentState, OpenIncident};

/// `POST /v1/incidents`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    pub reason: String,
    pub duration_hours: u32,
    pub helpdesk_rate_limit: u32,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn audit<'a>(
    ports: WritePorts<'a>,
    caller: &'a Caller,
    meta: &'a RequestMeta,
    action: Action,
) -> Audit<'a> {
    Audit::write(ports.audit, caller, meta, action, None)
}

fn too_busy() -> ApiError {
    ApiError::Unavailable(Unavailable::new(
        Cause::Store,
        "the tenant record kept changing",
    ))
}

/// `POST /v1/incidents`: 409 while another incident is open.
pub async fn open(
    ports: WritePorts<'_>,
    who: Permitted<'_, grant::RunIncidents>,
    meta: &RequestMeta,
    req: &OpenRequest,
) -> Result<Incident, ApiError> {
    let caller = who.caller();
    let audit = audit(ports, caller, meta, Action::IncidentOpen);
    for _ in 0..WRITE_ATTEMPTS {
        let (settings, version) = ports.lifecycle.tenant_settings(&caller.tenant).await?;
        let now = ports.now();
        if let Some(open) = settings.open_incident(now) {
            let e = ApiError::Conflict(format!(
                "incident {} is already open until {}; close it (DELETE /v1/incidents/{}) before opening another",
                open.incident_id,
                rfc3339(open.expires_at),
                open.incident_id
            ));
            return Err(audit.deny(None, Denied::IncidentAlreadyOpen, e).await);
        }
        let incident = Incident {
            incident_id: IncidentId::new(),
            tenant: caller.tenant.clone(),
            opened_by: caller.user.clone(),
            opened_at: now,
            expires_at: now + Duration::hours(i64::from(req.duration_hours)),
            closed_at: None,
            reason: req.reason.clone(),
            helpdesk_rate_limit: req.helpdesk_rate_limit,
        };
        let event = audit.detailed(
            None,
            Outcome::Granted,
            "opened",
            Some(format!(
                "incident {} for {} h, helpdesk limit {} keys/hour: {}",
                incident.incident_id, req.duration_hours, req.helpdesk_rate_limit, req.reason
            )),
        );
        match ports
            .lifecycle
            .commit_incident(&incident, Some(&incident.summary()), version, &event)
            .await?
        {
            WriteOutcome::Written => {
                ports.count(crate::domain::metrics::Metric::IncidentsOpened, 1);
                tracing::warn!(
                    request_id = %meta.request_id,
                    tenant = %caller.tenant,
                    actor = %caller.user,
                    incident = %incident.incident_id,
                    expires_at = %rfc3339(incident.expires_at),
                    "incident opened"
                );
                return Ok(incident);
            }
            WriteOutcome::Conflict | WriteOutcome::NotFound => continue,
            WriteOutcome::RequestIdReused => return Err(request_id_reused()),
        }
    }
    Err(too_busy())
}

fn request_id_reused() -> ApiError {
    ApiError::BadRequest(
        "this X-Request-Id was already used for another request; send a new one".into(),
    )
}

/// `DELETE /v1/incidents/{id}`: the incident after closing. Closing one that
/// has already ended changes nothing and answers it as it is.
pub async fn close(
    ports: WritePorts<'_>,
    who: Permitted<'_, grant::RunIncidents>,
    meta: &RequestMeta,
    id: &IncidentId,
) -> Result<Incident, ApiError> {
    let caller = who.caller();
    let audit = audit(ports, caller, meta, Action::IncidentClose);
    for _ in 0..WRITE_ATTEMPTS {
        let (settings, version) = ports.lifecycle.tenant_settings(&caller.tenant).await?;
        let Some(incident) = ports.lifecycle.incident(&caller.tenant, id).await? else {
            return Err(ApiError::IncidentNotFound);
        };
        let now = ports.now();
        if incident.state(now) != IncidentState::Open {
            return Ok(incident);
        }
        let closed = Incident {
            closed_at: Some(now),
            ..incident
        };
        // The tenant record keeps its summary unless it is this incident's.
        let summary = settings
            .incident
            .filter(|s| &s.incident_id != id)
            .map(|s| s.to_owned());
        let event = audit.detailed(
            None,
            Outcome::Granted,
            "closed",
            Some(format!("incident {id} closed early")),
        );
        match ports
            .lifecycle
            .commit_incident(&closed, summary.as_ref(), version, &event)
            .await?
        {
            WriteOutcome::Written => {
                tracing::warn!(request_id = %meta.request_id, tenant = %caller.tenant, actor = %caller.user, incident = %id, "incident closed");
                return Ok(closed);
            }
            WriteOutcome::Conflict | WriteOutcome::NotFound => continue,
            WriteOutcome::RequestIdReused => return Err(request_id_reused()),
        }
    }
    Err(too_busy())
}

/// `GET /v1/incidents`: the tenant's incidents, newest first (open and
/// recent). Incident leads and helpdesk agents may read them: an agent
/// needs to know whether batch retrieval is open.
pub async fn list(
    lifecycle: &dyn LifecycleStore,
    who: Permitted<'_, grant::ReadIncidents>,
) -> Result<Vec<Incident>, ApiError> {
    let caller = who.caller();
    Ok(lifecycle.incidents(&caller.tenant, LIST_LIMIT).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{TenantId, UserId};

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(s).unwrap()
    }

    #[test]
    fn an_incident_is_open_until_it_expires_or_closes() {
        let mut i = Incident {
            incident_id: IncidentId::new(),
            tenant: TenantId::parse("t1").unwrap(),
            opened_by: UserId::parse("lead").unwrap(),
            opened_at: at(1_000),
            expires_at: at(4_600),
            closed_at: None,
            reason: "bad update".into(),
            helpdesk_rate_limit: 5_000,
        };
        assert_eq!(i.state(at(1_000)), IncidentState::Open);
        assert_eq!(i.state(at(4_599)), IncidentState::Open);
        assert_eq!(i.state(at(4_600)), IncidentState::Expired);
        assert!(i.summary().is_open(at(4_599)));
        assert!(!i.summary().is_open(at(4_600)));
        i.closed_at = Some(at(2_000));
        assert_eq!(i.state(at(2_001)), IncidentState::Closed);
    }

    #[test]
    fn incident_ids_are_uuids_in_canonical_form() {
        let id = IncidentId::parse("3B8FAA18-0000-4000-8000-000000000001").unwrap();
        assert_eq!(id.as_str(), "3b8faa18-0000-4000-8000-000000000001");
        for bad in ["", "x", "3b8faa18", "../../etc"] {
            assert!(IncidentId::parse(bad).is_err(), "{bad}");
        }
    }
}
