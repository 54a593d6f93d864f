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
    /// The deployment's rate limits (`policy::rate_limit` applies them).
    pub fn rate_limits(&self) -> crate::domain::policy::RateLimits {
        crate::domain::policy::RateLimits {
            key: self.key_rate_limit,
            helpdesk: self.helpdesk_rate_limit,
            incident_max: self.incident_max_rate_limit,
        }
    }

    pub fn count(&self, metric: crate::domain::metrics::Metric, value: u64) {
        self.metrics.record(metric, value);
    }
}
