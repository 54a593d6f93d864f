//! The one audit-event builder: who asks, from where, for what, about
//! which device. Retrievals and writes alike build their events, granted
//! and denied, here.

use super::{Action, AuditEvent, DENIED_EVENTS_PER_HOUR, Outcome};
use crate::domain::caller::Caller;
use crate::domain::denial::Denied;
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, KeyId};
use crate::domain::keys::RequestMeta;
use crate::domain::metrics::{Cause, Metric};
use crate::domain::ports::{AuditLog, Clock, Denial, Metrics, Portal};

/// What the audit builder needs of the ports: the trail's append side, the
/// clock its events are stamped with and the metrics refusals are counted
/// in. Services that write hold it instead of the whole `Portal`.
#[derive(Clone, Copy)]
pub struct AuditPorts<'a> {
    pub log: &'a dyn AuditLog,
    pub clock: &'a dyn Clock,
    pub metrics: &'a dyn Metrics,
}

impl AuditPorts<'_> {
    pub fn count(&self, metric: Metric, value: u64) {
        self.metrics.record(metric, value);
    }
}

impl<'a> From<&'a Portal> for AuditPorts<'a> {
    fn from(p: &'a Portal) -> Self {
        Self {
            log: &p.store,
            clock: &*p.clock,
            metrics: &*p.metrics,
        }
    }
}

/// The audit trail of one authenticated request. For a retrieval
/// (`Action::Disclose`) it is one attempt; for a write, one change.
#[derive(Clone, Copy)]
pub struct Audit<'a> {
    pub ports: AuditPorts<'a>,
    pub caller: &'a Caller,
    pub meta: &'a RequestMeta,
    pub action: Action,
    pub device_id: Option<&'a DeviceId>,
    /// What the events record as the justification: a retrieval's reason,
    /// or a write's detail (`with_detail`).
    pub justification: Option<&'a str>,
}

impl<'a> Audit<'a> {
    /// A key retrieval's attempt.
    pub fn disclosure(
        ports: AuditPorts<'a>,
        caller: &'a Caller,
        meta: &'a RequestMeta,
        device_id: Option<&'a DeviceId>,
        justification: Option<&'a str>,
    ) -> Self {
        Self {
            ports,
            caller,
            meta,
            action: Action::Disclose,
            device_id,
            justification,
        }
    }

    /// A write's events (`action`), with no justification until
    /// `with_detail` gives one.
    pub fn write(
        ports: AuditPorts<'a>,
        caller: &'a Caller,
        meta: &'a RequestMeta,
        action: Action,
        device_id: Option<&'a DeviceId>,
    ) -> Self {
        Self {
            ports,
            caller,
            meta,
            action,
            device_id,
            justification: None,
        }
    }

    /// The same request, its events recording `detail` as justification.
    pub fn with_detail<'b>(&self, detail: Option<&'b str>) -> Audit<'b>
    where
        'a: 'b,
    {
        Audit {
            justification: detail,
            ..*self
        }
    }

    /// An event of its own (a fresh event id), carrying the request id for
    /// correlation.
    pub fn event(&self, key_id: Option<KeyId>, outcome: Outcome, reason: &str) -> AuditEvent {
        AuditEvent {
            action: self.action,
            event_id: uuid::Uuid::new_v4().to_string(),
            time: self.ports.clock.now(),
            tenant_id: self.caller.tenant.clone(),
            actor: self.caller.user.clone(),
            device_id: self.device_id.cloned(),
            key_id,
            outcome,
            reason: reason.to_owned(),
            justification: self.justification.map(str::to_owned),
            source_ip: self.meta.source_ip.clone(),
            user_agent: self.meta.user_agent.clone(),
            request_id: self.meta.request_id.clone(),
        }
    }

    /// An event recording `detail` as its justification (a write's change).
    pub fn detailed(
        &self,
        key_id: Option<KeyId>,
        outcome: Outcome,
        reason: &str,
        detail: Option<String>,
    ) -> AuditEvent {
        AuditEvent {
            justification: detail,
            ..self.event(key_id, outcome, reason)
        }
    }

    /// Records a refusal and answers `error`. Best effort: a refusal
    /// discloses and changes nothing, so a failed write must not turn a 4xx
    /// into a 5xx; it is logged instead. A refused retrieval is counted and
    /// stored within the caller's hourly cap ([`DENIED_EVENTS_PER_HOUR`]:
    /// beyond it the attempt is logged, not stored, and one marker event
    /// says so). So is a write refused for lack of the route's permission:
    /// any signed-in user can repeat it. Any other refused write is stored
    /// as it is: its caller holds the write permission, and could as well
    /// fill the trail with granted writes, which are never capped.
    pub async fn deny(&self, key_id: Option<KeyId>, reason: Denied, error: ApiError) -> ApiError {
        if self.action != Action::Disclose && reason == Denied::InsufficientScope {
            self.store_denied(key_id, reason).await;
            return error;
        }
        if self.action != Action::Disclose {
            let event = self.event(key_id, Outcome::Denied, reason.as_str());
            if let Err(e) = self.ports.log.append_audit(&event).await {
                tracing::error!(error = %e, request_id = %self.meta.request_id, reason = reason.as_str(), "could not audit a refused write");
            }
            return error;
        }
        self.ports.count(Metric::Denials(reason), 1);
        match &error {
            ApiError::RateLimited { .. } => self.ports.count(Metric::RateLimited, 1),
            ApiError::Unavailable(_) if reason == Denied::StoreUnavailable => {
                self.ports.count(Metric::Unavailable(Cause::Store), 1)
            }
            _ => {}
        }
        self.store_denied(key_id, reason).await;
        error
    }

    /// Stores a denied attempt within the caller's hourly cap (see `deny`).
    pub(crate) async fn store_denied(&self, key_id: Option<KeyId>, reason: Denied) {
        let store = self.ports.log;
        let event = self.event(key_id, Outcome::Denied, reason.as_str());
        match store.append_denied(&event, DENIED_EVENTS_PER_HOUR).await {
            Ok(Denial::Stored) => {}
            Ok(Denial::OverCap { marked }) => {
                tracing::warn!(
                    request_id = %self.meta.request_id,
                    tenant = %event.tenant_id,
                    actor = %event.actor,
                    device = event.device_id.as_ref().map(|d| d.as_str()),
                    source_ip = event.source_ip.as_deref(),
                    reason = reason.as_str(),
                    cap = DENIED_EVENTS_PER_HOUR,
                    "denied attempt logged, not stored: this caller reached the hourly cap of denied audit events"
                );
                if !marked {
                    let mut marker =
                        self.event(None, Outcome::Denied, Denied::DenialsCapped.as_str());
                    marker.device_id = None;
                    marker.time = event.time;
                    marker.justification = Some(format!(
                        "{DENIED_EVENTS_PER_HOUR} denied attempts stored this hour; further denials of this caller until the hour ends are logged only"
                    ));
                    if let Err(e) = store.append_cap_marker(&marker).await {
                        tracing::error!(error = %e, request_id = %self.meta.request_id, "could not store the denial-cap marker");
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, request_id = %self.meta.request_id, reason = reason.as_str(), "could not audit a denied attempt");
            }
        }
    }
}
