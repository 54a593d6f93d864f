//! The verified caller and the permissions a token grants: what the domain
//! knows of authentication, whichever verifier produced it.

use crate::domain::ids::{TenantId, UserId};

/// What a caller may do. Permission names are matched exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions {
    /// `Devices.Read`: list own devices.
    pub devices_read: bool,
    /// `RecoveryKey.Read`: list own devices and get their keys.
    pub key_read: bool,
    /// `RecoveryKey.Read.All`: helpdesk, any device in the caller's tenant.
    pub key_read_all: bool,
    /// `AuditLog.Read.All`: read the tenant's audit events.
    pub audit_read_all: bool,
    /// `RecoveryKey.Escrow`: escrow keys and read rotation requests (an MDM
    /// sync job or an on-device agent, usually an application permission).
    pub key_escrow: bool,
    /// `RecoveryKey.Escrow.Device`: escrow keys of one device only, the one
    /// the token's `device_id` claim names (an on-device agent's credential).
    pub key_escrow_device: bool,
    /// `Devices.ReadWrite.All`: enrol, update and retire devices.
    pub devices_write_all: bool,
    /// `Tenant.Settings.ReadWrite`: read and change the tenant's settings.
    pub tenant_settings: bool,
    /// `RecoveryKey.Incident`: open and close incidents (an application
    /// role for the tenant's IT lead).
    pub incident: bool,
}

impl Permissions {
    pub const DEVICES_READ: &'static str = "Devices.Read";
    pub const KEY_READ: &'static str = "RecoveryKey.Read";
    pub const KEY_READ_ALL: &'static str = "RecoveryKey.Read.All";
    pub const AUDIT_READ_ALL: &'static str = "AuditLog.Read.All";
    pub const KEY_ESCROW: &'static str = "RecoveryKey.Escrow";
    pub const KEY_ESCROW_DEVICE: &'static str = "RecoveryKey.Escrow.Device";
    pub const DEVICES_WRITE_ALL: &'static str = "Devices.ReadWrite.All";
    pub const TENANT_SETTINGS: &'static str = "Tenant.Settings.ReadWrite";
    pub const INCIDENT: &'static str = "RecoveryKey.Incident";

    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut p = Self::default();
        for n in names {
            match n {
                Self::DEVICES_READ => p.devices_read = true,
                Self::KEY_READ => p.key_read = true,
                Self::KEY_READ_ALL => p.key_read_all = true,
                Self::AUDIT_READ_ALL => p.audit_read_all = true,
                Self::KEY_ESCROW => p.key_escrow = true,
                Self::KEY_ESCROW_DEVICE => p.key_escrow_device = true,
                Self::DEVICES_WRITE_ALL => p.devices_write_all = true,
                Self::TENANT_SETTINGS => p.tenant_settings = true,
                Self::INCIDENT => p.incident = true,
                _ => {}
            }
        }
        p
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    pub user: UserId,
    pub permissions: Permissions,
    /// The device a device-bound credential belongs to (the token's
    /// `device_id` claim), if any.
    pub device: Option<crate::domain::ids::DeviceId>,
    /// The token's `exp` (unix seconds): a verified-token cache must not
    /// outlive it.
    pub expires_at: i64,
    /// The token's `auth_time` (unix seconds), when it carries one: when
    /// the person last entered their credentials (`PORTAL_WEB_MAX_AGE`).
    pub auth_time: Option<i64>,
}
