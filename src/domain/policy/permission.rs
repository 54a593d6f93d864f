//! What admits a caller to a route, and the proof that it did (security
//! review F1). The route table checks a route's permission once, before any
//! input is read; the services after it do not check again. So that no new
//! caller of a service (a CLI command, a tool, a future route) can skip the
//! check, each service that needs a permission takes a [`Permitted`], and
//! the only way to one is [`Permission::check`] (through [`Admitted`]).

use super::{
    may_escrow, may_list_devices, may_look_up_keys, may_manage_settings, may_read_audit,
    may_read_incidents, may_retrieve_batch, may_retrieve_keys, may_run_incidents,
    may_write_devices,
};
use crate::domain::caller::{Caller, Permissions};
use crate::domain::error::ApiError;
use std::marker::PhantomData;

/// What admits a caller to a route, checked once, right after sign-in and
/// before any input is read (no hints to the unauthorised). Checks that
/// depend on the input (another owner's devices, another device's keys)
/// stay with the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// One's own devices (`policy::may_list_devices`).
    ReadDevices,
    LookUpKeys,
    ReadAudit,
    RetrieveKeys,
    RetrieveBatch,
    /// Tenant-wide escrow, or a device-bound credential (`policy::may_escrow`).
    Escrow,
    WriteDevices,
    ManageSettings,
    RunIncidents,
    ReadIncidents,
}

impl Permission {
    /// The check, and the only way to an [`Admitted`].
    pub fn check(self, caller: &Caller) -> Result<Admitted, ApiError> {
        match self {
            Self::ReadDevices => may_list_devices(caller, &caller.user),
            Self::LookUpKeys => may_look_up_keys(caller),
            Self::ReadAudit => may_read_audit(caller),
            Self::RetrieveKeys => may_retrieve_keys(caller),
            Self::RetrieveBatch => may_retrieve_batch(caller),
            Self::Escrow => may_escrow(caller),
            Self::WriteDevices => may_write_devices(caller),
            Self::ManageSettings => may_manage_settings(caller),
            Self::RunIncidents => may_run_incidents(caller),
            Self::ReadIncidents => may_read_incidents(caller),
        }?;
        Ok(Admitted {
            caller: caller.clone(),
            permission: self,
        })
    }

    /// The permissions that admit a caller, any one sufficing, as the
    /// OpenAPI document lists them (`x-permissions`).
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Self::ReadDevices => &[
                Permissions::DEVICES_READ,
                Permissions::KEY_READ,
                Permissions::KEY_READ_ALL,
            ],
            Self::LookUpKeys | Self::RetrieveBatch => &[Permissions::KEY_READ_ALL],
            Self::ReadAudit => &[Permissions::AUDIT_READ_ALL],
            Self::RetrieveKeys => &[Permissions::KEY_READ, Permissions::KEY_READ_ALL],
            // A device-bound credential (RecoveryKey.Escrow.Device) is an
            // agent's, not a role anyone is given.
            Self::Escrow => &[Permissions::KEY_ESCROW],
            Self::WriteDevices => &[Permissions::DEVICES_WRITE_ALL],
            Self::ManageSettings => &[Permissions::TENANT_SETTINGS],
            Self::RunIncidents => &[Permissions::INCIDENT],
            Self::ReadIncidents => &[Permissions::INCIDENT, Permissions::KEY_READ_ALL],
        }
    }
}

/// Proof that a caller passed one permission's check: made only by
/// [`Permission::check`] (its fields are private to this module). It owns
/// its caller, so a proof cannot be paired with another caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    caller: Caller,
    permission: Permission,
}

impl Admitted {
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    pub fn permission(&self) -> Permission {
        self.permission
    }

    /// The typed proof a service takes. Free when this caller was admitted
    /// under `G`'s permission (the route's own); any other is checked now,
    /// so a service never runs on a permission nobody checked.
    pub fn permitted<G: Grant>(&self) -> Result<Permitted<'_, G>, ApiError> {
        if self.permission != G::PERMISSION {
            G::PERMISSION.check(&self.caller)?;
        }
        Ok(Permitted {
            caller: &self.caller,
            grant: PhantomData,
        })
    }
}

/// What a service takes instead of a bare `&Caller`: the caller, proven to
/// hold `G`'s permission. Only [`Admitted::permitted`] makes one.
pub struct Permitted<'a, G> {
    caller: &'a Caller,
    grant: PhantomData<G>,
}

impl<G> Clone for Permitted<'_, G> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<G> Copy for Permitted<'_, G> {}

impl<'a, G: Grant> Permitted<'a, G> {
    pub fn caller(&self) -> &'a Caller {
        self.caller
    }
}

/// A permission as a type, for [`Permitted`]. Sealed: the markers in
/// [`grant`] are all there are.
pub trait Grant: sealed::Sealed {
    const PERMISSION: Permission;
}

mod sealed {
    pub trait Sealed {}
}

/// The permissions services take proof of, one marker type each.
pub mod grant {
    use super::{Grant, Permission, sealed::Sealed};

    macro_rules! grants {
        ($($name:ident),* $(,)?) => {$(
            #[doc = concat!("Proof of `Permission::", stringify!($name), "`.")]
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub enum $name {}
            impl Sealed for $name {}
            impl Grant for $name {
                const PERMISSION: Permission = Permission::$name;
            }
        )*};
    }

    grants!(
        LookUpKeys,
        ReadAudit,
        RetrieveKeys,
        RetrieveBatch,
        Escrow,
        WriteDevices,
        ManageSettings,
        RunIncidents,
        ReadIncidents,
    );
}
