//! Tenant settings, owned by the tenant's administrators:
//! `GET`/`PATCH /v1/tenant/settings`. Stored on the tenant record, which
//! every request reads, so a change applies on the next request everywhere.

use crate::domain::audit::Audit;
use crate::domain::audit::{Action, Outcome};
use crate::domain::denial::Denied;
use crate::domain::error::ApiError;
use crate::domain::keys::RequestMeta;
use crate::domain::lifecycle::{WRITE_ATTEMPTS, WritePorts};
use crate::domain::model::{Helpdesk, RequireReason, TenantPolicy};
use crate::domain::policy::{Permitted, RateLimits, grant};
use crate::domain::ports::{LifecycleStore, Portal, WriteOutcome};

/// What a settings change uses of the ports: a write's, and the
/// deployment's rate limits, the ceilings of a tenant's.
#[derive(Clone, Copy)]
pub struct SettingsPorts<'a> {
    pub writes: WritePorts<'a>,
    pub limits: RateLimits,
}

impl<'a> From<&'a Portal> for SettingsPorts<'a> {
    fn from(p: &'a Portal) -> Self {
        Self {
            writes: p.into(),
            limits: p.rate_limits(),
        }
    }
}

/// A partial update: absent fields stay as they are; `helpdesk: null`
/// removes the helpdesk details.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub self_service: Option<bool>,
    pub helpdesk: Option<Option<Helpdesk>>,
    pub require_reason: Option<RequireReason>,
    pub superseded_key_retention_days: Option<u16>,
    pub retired_device_retention_days: Option<u16>,
    /// `Some(None)`: back to the deployment's default.
    pub self_service_rate_limit: Option<Option<u32>>,
    pub helpdesk_rate_limit: Option<Option<u32>>,
}

impl SettingsPatch {
    pub fn apply(&self, current: &TenantPolicy) -> TenantPolicy {
        TenantPolicy {
            self_service: self.self_service.unwrap_or(current.self_service),
            helpdesk: self
                .helpdesk
                .clone()
                .unwrap_or_else(|| current.helpdesk.clone()),
            require_reason: self.require_reason.unwrap_or(current.require_reason),
            superseded_key_retention_days: self
                .superseded_key_retention_days
                .unwrap_or(current.superseded_key_retention_days),
            retired_device_retention_days: self
                .retired_device_retention_days
                .unwrap_or(current.retired_device_retention_days),
            self_service_rate_limit: self
                .self_service_rate_limit
                .unwrap_or(current.self_service_rate_limit),
            helpdesk_rate_limit: self
                .helpdesk_rate_limit
                .unwrap_or(current.helpdesk_rate_limit),
            // Not a setting: incidents open and close on their own routes.
            incident: current.incident.clone(),
        }
    }
}

/// What changed, for the audit event (settings hold no secret); also
/// `portal import`'s settings changes (`tools::import`).
pub fn describe_change(old: &TenantPolicy, new: &TenantPolicy) -> String {
    let mut parts = Vec::new();
    if old.self_service != new.self_service {
        parts.push(format!(
            "self_service {} -> {}",
            old.self_service, new.self_service
        ));
    }
    if old.helpdesk != new.helpdesk {
        // The values themselves: the card tells locked-out users where to
        // turn, so the trail must show exactly what they were told.
        let card = |h: &Option<crate::domain::model::Helpdesk>| {
            serde_json::to_string(h).unwrap_or_default()
        };
        parts.push(format!(
            "helpdesk {} -> {}",
            card(&old.helpdesk),
            card(&new.helpdesk)
        ));
    }
    if old.require_reason != new.require_reason {
        parts.push(format!(
            "require_reason {} -> {}",
            old.require_reason.as_str(),
            new.require_reason.as_str()
        ));
    }
    if old.superseded_key_retention_days != new.superseded_key_retention_days {
        parts.push(format!(
            "superseded_key_retention_days {} -> {}",
            old.superseded_key_retention_days, new.superseded_key_retention_days
        ));
    }
    if old.retired_device_retention_days != new.retired_device_retention_days {
        parts.push(format!(
            "retired_device_retention_days {} -> {}",
            old.retired_device_retention_days, new.retired_device_retention_days
        ));
    }
    let limit = |l: Option<u32>| l.map_or("default".to_owned(), |n| n.to_string());
    if old.self_service_rate_limit != new.self_service_rate_limit {
        parts.push(format!(
            "self_service_rate_limit {} -> {}",
            limit(old.self_service_rate_limit),
            limit(new.self_service_rate_limit)
        ));
    }
    if old.helpdesk_rate_limit != new.helpdesk_rate_limit {
        parts.push(format!(
            "helpdesk_rate_limit {} -> {}",
            limit(old.helpdesk_rate_limit),
            limit(new.helpdesk_rate_limit)
        ));
    }
    parts.join("; ")
}

/// A tenant's limits may only lower the deployment's (`PORTAL_KEY_RATE_LIMIT`,
/// `PORTAL_HELPDESK_RATE_LIMIT`): raising the helpdesk's takes an incident,
/// which has a second person and its own ceiling.
fn within_ceilings(limits: &RateLimits, patch: &SettingsPatch) -> Result<(), ApiError> {
    for (field, value, ceiling, variable) in [
        (
            "self_service_rate_limit",
            patch.self_service_rate_limit,
            limits.key,
            "PORTAL_KEY_RATE_LIMIT",
        ),
        (
            "helpdesk_rate_limit",
            patch.helpdesk_rate_limit,
            limits.helpdesk,
            "PORTAL_HELPDESK_RATE_LIMIT",
        ),
    ] {
        if let Some(Some(v)) = value
            && v > ceiling
        {
            return Err(ApiError::BadRequest(format!(
                "{field} must be at most {ceiling}, this deployment's limit ({variable}): a tenant may lower it, not raise it. For a mass outage, open an incident (POST /v1/incidents) instead."
            )));
        }
    }
    Ok(())
}

/// `GET /v1/tenant/settings`.
pub async fn get(
    lifecycle: &dyn LifecycleStore,
    who: Permitted<'_, grant::ManageSettings>,
) -> Result<TenantPolicy, ApiError> {
    let caller = who.caller();
    Ok(lifecycle.tenant_settings(&caller.tenant).await?.0)
}

/// `PATCH /v1/tenant/settings`: the settings after the change.
pub async fn patch(
    ports: SettingsPorts<'_>,
    who: Permitted<'_, grant::ManageSettings>,
    meta: &RequestMeta,
    patch: &SettingsPatch,
) -> Result<TenantPolicy, ApiError> {
    let caller = who.caller();
    let w = ports.writes;
    let audit = Audit::write(w.audit, caller, meta, Action::SettingsChange, None);
    if let Err(e) = within_ceilings(&ports.limits, patch) {
        return Err(audit.deny(None, Denied::InvalidRequest, e).await);
    }
    for _ in 0..WRITE_ATTEMPTS {
        let (current, version) = w.lifecycle.tenant_settings(&caller.tenant).await?;
        let new = patch.apply(&current);
        if new == current {
            return Ok(current);
        }
        let event = audit.detailed(
            None,
            Outcome::Granted,
            "updated",
            Some(describe_change(&current, &new)),
        );
        match w
            .lifecycle
            .commit_settings(&caller.tenant, &new, version, &event)
            .await?
        {
            WriteOutcome::Written => {
                w.count(crate::domain::metrics::Metric::SettingsChanges, 1);
                tracing::info!(request_id = %meta.request_id, tenant = %caller.tenant, actor = %caller.user, "tenant settings changed");
                return Ok(new);
            }
            WriteOutcome::Conflict | WriteOutcome::NotFound => continue,
            WriteOutcome::RequestIdReused => {
                return Err(ApiError::BadRequest(
                    "this X-Request-Id was already used for another request; send a new one".into(),
                ));
            }
        }
    }
    Err(ApiError::Unavailable(
        crate::domain::error::Unavailable::new(
            crate::domain::error::Cause::Store,
            "the settings kept changing",
        ),
    ))
}
