//! Authorization policy: who may see what, decided from the verified caller
//! and the stored device, before anything is decrypted.

use crate::domain::caller::{Caller, Permissions};
use crate::domain::denial::Denied;
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, UserId};
use crate::domain::model::{Device, RequireReason, TenantPolicy};

mod permission;
pub use permission::{Admitted, Grant, Permission, Permitted, grant};

/// On what grounds a key is disclosed (recorded as the audit reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Owner,
    Helpdesk,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Helpdesk => "helpdesk",
        }
    }
}

/// The deployment's rate limits: one value, so no assembly can take one
/// setting from the configuration and hard-code the other (the in-memory
/// `portal serve` once ignored `PORTAL_HELPDESK_RATE_LIMIT` that way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `PORTAL_KEY_RATE_LIMIT`: keys per device owner per rolling hour.
    pub key: u32,
    /// `PORTAL_HELPDESK_RATE_LIMIT`: keys per helpdesk agent per rolling hour.
    pub helpdesk: u32,
    /// `PORTAL_INCIDENT_MAX_RATE_LIMIT`: the highest limit an incident may set.
    pub incident_max: u32,
}

/// The limit that applies to a disclosure with `access` in a tenant with
/// `policy` at `now`: the tenant's setting (an open incident's, for agents)
/// within the deployment's `limits`.
pub fn rate_limit(
    limits: &RateLimits,
    access: Access,
    policy: &TenantPolicy,
    now: time::OffsetDateTime,
) -> u32 {
    // Stored values are capped again here: a deployment may have lowered
    // its limits (or an import set higher ones) since they were written.
    match access {
        Access::Owner => policy
            .self_service_rate_limit
            .map_or(limits.key, |l| l.min(limits.key)),
        Access::Helpdesk => match policy.open_incident(now) {
            Some(i) => i.helpdesk_rate_limit.min(limits.incident_max),
            None => policy
                .helpdesk_rate_limit
                .map_or(limits.helpdesk, |l| l.min(limits.helpdesk)),
        },
    }
}

/// Listing devices: own devices with any read permission; someone else's
/// only with `RecoveryKey.Read.All`. Always within the caller's tenant.
pub fn may_list_devices(caller: &Caller, owner: &UserId) -> Result<(), ApiError> {
    let p = caller.permissions;
    if owner != &caller.user {
        return require(p.key_read_all, Permissions::KEY_READ_ALL);
    }
    require(
        p.devices_read || p.key_read || p.key_read_all,
        Permissions::DEVICES_READ,
    )
}

pub fn may_look_up_keys(caller: &Caller) -> Result<(), ApiError> {
    require(caller.permissions.key_read_all, Permissions::KEY_READ_ALL)
}

pub fn may_read_audit(caller: &Caller) -> Result<(), ApiError> {
    require(
        caller.permissions.audit_read_all,
        Permissions::AUDIT_READ_ALL,
    )
}

/// Escrowing keys and reading rotation requests at all: tenant-wide
/// `RecoveryKey.Escrow` (a central MDM job), or `RecoveryKey.Escrow.Device`
/// with the token's `device_id` claim (an on-device agent).
pub fn may_escrow(caller: &Caller) -> Result<(), ApiError> {
    let p = caller.permissions;
    require(
        p.key_escrow || (p.key_escrow_device && caller.device.is_some()),
        Permissions::KEY_ESCROW,
    )
}

/// Escrowing a key of `device`: a device-bound credential writes only its
/// own device's keys, so one stolen agent token cannot plant or bury keys
/// on any other device.
pub fn may_escrow_to(caller: &Caller, device: &DeviceId) -> Result<(), ApiError> {
    let p = caller.permissions;
    require(
        p.key_escrow || (p.key_escrow_device && caller.device.as_ref() == Some(device)),
        Permissions::KEY_ESCROW,
    )
}

/// The one device whose rotation requests a device-bound credential sees
/// (`None`: all of the tenant's, for `RecoveryKey.Escrow`).
pub fn escrow_scope(caller: &Caller) -> Option<&DeviceId> {
    if caller.permissions.key_escrow {
        None
    } else {
        caller.device.as_ref()
    }
}

/// Enrolling, changing and retiring devices: `Devices.ReadWrite.All`.
pub fn may_write_devices(caller: &Caller) -> Result<(), ApiError> {
    require(
        caller.permissions.devices_write_all,
        Permissions::DEVICES_WRITE_ALL,
    )
}

/// Opening and closing incidents: `RecoveryKey.Incident`.
pub fn may_run_incidents(caller: &Caller) -> Result<(), ApiError> {
    require(caller.permissions.incident, Permissions::INCIDENT)
}

/// Incident leads, and helpdesk agents (who need to know whether batch
/// retrieval is open).
pub fn may_read_incidents(caller: &Caller) -> Result<(), ApiError> {
    let p = caller.permissions;
    require(p.incident || p.key_read_all, Permissions::INCIDENT)
}

/// Batch retrieval: helpdesk agents only (an open incident is checked
/// against the tenant record).
pub fn may_retrieve_batch(caller: &Caller) -> Result<(), ApiError> {
    require(caller.permissions.key_read_all, Permissions::KEY_READ_ALL)
}

pub fn may_manage_settings(caller: &Caller) -> Result<(), ApiError> {
    require(
        caller.permissions.tenant_settings,
        Permissions::TENANT_SETTINGS,
    )
}

/// Whether the tenant requires a `reason` for a retrieval on these grounds.
pub fn reason_required(policy: &TenantPolicy, access: Access) -> bool {
    match policy.require_reason {
        RequireReason::Never => false,
        RequireReason::Helpdesk => access == Access::Helpdesk,
        RequireReason::Always => true,
    }
}

/// The permission check that precedes loading anything for a key retrieval.
pub fn may_retrieve_keys(caller: &Caller) -> Result<(), ApiError> {
    let p = caller.permissions;
    require(p.key_read || p.key_read_all, Permissions::KEY_READ)
}

/// `PORTAL_WEB_MAX_AGE`: a disclosure needs a sign-in no older than
/// `max_age` seconds (with the tokens' clock-skew leeway), when the token
/// says when the person signed in (`auth_time`); a token without one is
/// not refused for it.
pub fn recent_enough(caller: &Caller, max_age: Option<u64>, now: i64) -> Result<(), ApiError> {
    match (max_age, caller.auth_time) {
        (Some(max_age), Some(t))
            if now.saturating_sub(t) > (max_age as i64).saturating_add(LEEWAY_SECS) =>
        {
            Err(ApiError::SignInTooOld { max_age })
        }
        _ => Ok(()),
    }
}

/// Clock skew tolerated on `auth_time`, as on `exp` and `nbf`.
const LEEWAY_SECS: i64 = 60;

/// Ownership and tenant policy for one device the store returned from the
/// caller's tenant. Another user's device looks exactly like a missing one.
pub fn device_access(
    caller: &Caller,
    device: &Device,
    policy: &TenantPolicy,
) -> Result<Access, (ApiError, Denied)> {
    if device.tenant != caller.tenant {
        // The store only reads the caller's tenant; this is defence in depth.
        return Err((ApiError::DeviceNotFound, Denied::OtherTenant));
    }
    let p = caller.permissions;
    // A retired device has left its owner's list and self-service; only
    // the helpdesk may still read its keys (by key ID, with a reason).
    let retired = device.retired.is_some();
    // An owner who is also an agent and got the device through an owner
    // change reads it on helpdesk grounds: its reason rule and limit.
    let reowned_agent = device.owner_since.is_some() && p.key_read_all;
    if device.owner == caller.user && p.key_read && !retired && !reowned_agent {
        if policy.self_service {
            return Ok(Access::Owner);
        }
        if !p.key_read_all {
            return Err((
                ApiError::SelfServiceDisabled {
                    helpdesk: policy.helpdesk.clone(),
                },
                Denied::SelfServiceDisabled,
            ));
        }
    }
    if p.key_read_all {
        return Ok(Access::Helpdesk);
    }
    if retired && device.owner == caller.user {
        return Err((ApiError::DeviceNotFound, Denied::Retired));
    }
    Err((ApiError::DeviceNotFound, Denied::NotOwner))
}

fn require(ok: bool, needed: &'static str) -> Result<(), ApiError> {
    if ok {
        Ok(())
    } else {
        Err(ApiError::InsufficientScope { needed })
    }
}

#[cfg(test)]
mod tests;
