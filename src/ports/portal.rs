//! The assembled application as the domain sees it: one implementation of
//! each port. `app` builds it from configuration.

use super::{Clock, KeyCipher, LifecycleStore, Metrics, Store, TokenVerifier};
use std::sync::Arc;

#[derive(Clone)]
pub struct Portal {
    pub store: Arc<dyn Store>,
    /// The key lifecycle (escrow, devices, settings): the same backend as
    /// `store`.
    pub lifecycle: Arc<dyn LifecycleStore>,
    pub cipher: Arc<dyn KeyCipher>,
    pub clock: Arc<dyn Clock>,
    pub verifier: Arc<dyn TokenVerifier>,
    /// Keys disclosed to a device owner per rolling hour
    /// (`PORTAL_KEY_RATE_LIMIT`; a tenant setting may override it).
    pub key_rate_limit: u32,
    /// Keys disclosed to a helpdesk agent per rolling hour
    /// (`PORTAL_HELPDESK_RATE_LIMIT`; a tenant setting or an open incident
    /// may override it).
    pub helpdesk_rate_limit: u32,
    /// The highest limit an incident may give agents
    /// (`PORTAL_INCIDENT_MAX_RATE_LIMIT`).
    pub incident_max_rate_limit: u32,
    pub metrics: Arc<dyn Metrics>,
    /// `PORTAL_WEB_MAX_AGE`: a disclosure needs a sign-in at most this many
    /// seconds old (`auth_time`), when set.
    pub max_auth_age: Option<u64>,
}

impl Portal {
    /// The limit that applies to a disclosure with `access` in a tenant with
    /// `policy` at `now`.
    pub fn rate_limit(
        &self,
        access: crate::domain::policy::Access,
        policy: &crate::domain::model::TenantPolicy,
        now: time::OffsetDateTime,
    ) -> u32 {
        use crate::domain::policy::Access;
        // Stored values are capped again here: a deployment may have lowered
        // its limits (or an import set higher ones) since they were written.
        match access {
            Access::Owner => policy
                .self_service_rate_limit
                .map_or(self.key_rate_limit, |l| l.min(self.key_rate_limit)),
            Access::Helpdesk => match policy.open_incident(now) {
                Some(i) => i.helpdesk_rate_limit.min(self.incident_max_rate_limit),
                None => policy
                    .helpdesk_rate_limit
                    .map_or(self.helpdesk_rate_limit, |l| {
                        l.min(self.helpdesk_rate_limit)
                    }),
            },
        }
    }

    pub fn count(&self, metric: crate::domain::metrics::Metric, value: u64) {
        self.metrics.record(metric, value);
    }
}
