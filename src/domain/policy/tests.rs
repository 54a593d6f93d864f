//! Table-driven tests of the authorization rules.

use super::*;
use crate::domain::ids::{DeviceId, TenantId};
use crate::domain::model::{Helpdesk, ManagedBy};

fn caller(user: &str, permissions: &str) -> Caller {
    Caller {
        tenant: TenantId::parse("contoso").unwrap(),
        user: UserId::parse(user).unwrap(),
        permissions: Permissions::from_names(permissions.split_whitespace()),
        device: None,
        expires_at: 0,
        auth_time: None,
    }
}

fn device(tenant: &str, owner: &str) -> Device {
    Device {
        tenant: TenantId::parse(tenant).unwrap(),
        device_id: DeviceId::parse("PC-1").unwrap(),
        owner: UserId::parse(owner).unwrap(),
        display_name: "PC-1".into(),
        os: "Windows 11".into(),
        managed_by: ManagedBy::Organization,
        keys: vec![],
        owner_since: None,
        retired: None,
    }
}

const READ: &str = "Devices.Read";
const KEY: &str = "RecoveryKey.Read";
const ALL: &str = "RecoveryKey.Read.All";
const AUDIT: &str = "AuditLog.Read.All";

#[test]
fn route_permissions() {
    // (permissions, own list, other's list, key lookup, audit, retrieve)
    #[rustfmt::skip]
    let table: &[(&str, [bool; 5])] = &[
        ("", [false, false, false, false, false]),
        ("Unknown.Permission devices.read", [false; 5]),
        (READ, [true, false, false, false, false]),
        (KEY, [true, false, false, false, true]),
        (ALL, [true, true, true, false, true]),
        (AUDIT, [false, false, false, true, false]),
        ("Devices.Read AuditLog.Read.All", [true, false, false, true, false]),
        ("RecoveryKey.Read RecoveryKey.Read.All", [true, true, true, false, true]),
    ];
    let alice = UserId::parse("alice").unwrap();
    let bob = UserId::parse("bob").unwrap();
    for (names, want) in table {
        let c = caller("alice", names);
        let got = [
            may_list_devices(&c, &alice).is_ok(),
            may_list_devices(&c, &bob).is_ok(),
            may_look_up_keys(&c).is_ok(),
            may_read_audit(&c).is_ok(),
            may_retrieve_keys(&c).is_ok(),
        ];
        assert_eq!(&got, want, "permissions {names:?}");
    }
}

#[test]
fn a_refusal_names_the_missing_permission() {
    let alice = UserId::parse("alice").unwrap();
    let bob = UserId::parse("bob").unwrap();
    let none = caller("alice", "");
    let table: [(Result<(), ApiError>, &str); 5] = [
        (may_list_devices(&none, &alice), Permissions::DEVICES_READ),
        (may_list_devices(&none, &bob), Permissions::KEY_READ_ALL),
        (may_look_up_keys(&none), Permissions::KEY_READ_ALL),
        (may_read_audit(&none), Permissions::AUDIT_READ_ALL),
        (may_retrieve_keys(&none), Permissions::KEY_READ),
    ];
    for (got, needed) in table {
        assert_eq!(got, Err(ApiError::InsufficientScope { needed }));
    }
}

#[test]
fn device_access_rules() {
    let helpdesk = Helpdesk {
        email: Some("help@contoso.example".into()),
        ..Helpdesk::default()
    };
    let self_service = TenantPolicy {
        self_service: true,
        helpdesk: None,
        ..TenantPolicy::default()
    };
    let helpdesk_only = TenantPolicy {
        self_service: false,
        helpdesk: Some(helpdesk.clone()),
        ..TenantPolicy::default()
    };
    let disabled = Err(ApiError::SelfServiceDisabled {
        helpdesk: Some(helpdesk),
    });
    // (caller permissions, device tenant, device owner, policy, outcome, refusal reason)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a TenantPolicy,
        Result<Access, ApiError>,
        &'a str,
    );
    #[rustfmt::skip]
    let table: Vec<Case> = vec![
        (KEY, "contoso", "alice", &self_service, Ok(Access::Owner), ""),
        (ALL, "contoso", "alice", &self_service, Ok(Access::Helpdesk), ""),
        ("RecoveryKey.Read RecoveryKey.Read.All", "contoso", "alice", &self_service, Ok(Access::Owner), ""),
        (KEY, "contoso", "alice", &helpdesk_only, disabled.clone(), "self_service_disabled"),
        ("RecoveryKey.Read RecoveryKey.Read.All", "contoso", "alice", &helpdesk_only, Ok(Access::Helpdesk), ""),
        (ALL, "contoso", "alice", &helpdesk_only, Ok(Access::Helpdesk), ""),
        (KEY, "contoso", "bob", &self_service, Err(ApiError::DeviceNotFound), "not_owner"),
        (READ, "contoso", "alice", &self_service, Err(ApiError::DeviceNotFound), "not_owner"),
        (ALL, "contoso", "bob", &helpdesk_only, Ok(Access::Helpdesk), ""),
        (KEY, "fabrikam", "alice", &self_service, Err(ApiError::DeviceNotFound), "other_tenant"),
        (ALL, "fabrikam", "bob", &self_service, Err(ApiError::DeviceNotFound), "other_tenant"),
    ];
    for (names, tenant, owner, policy, want, reason) in table {
        let got = device_access(&caller("alice", names), &device(tenant, owner), policy);
        let got = got.map_err(|(e, r)| (e, r.as_str()));
        let want = want.map_err(|e| (e, reason));
        assert_eq!(got, want, "{names:?} on {owner}'s device in {tenant}");
    }
}

#[test]
fn rate_limit_rules() {
    use crate::domain::incidents::{IncidentId, OpenIncident};
    let now = time::OffsetDateTime::from_unix_timestamp(1_000).unwrap();
    let limits = RateLimits {
        key: 5,
        helpdesk: 50,
        incident_max: 500,
    };
    let incident = |limit, expires| OpenIncident {
        incident_id: IncidentId::new(),
        expires_at: time::OffsetDateTime::from_unix_timestamp(expires).unwrap(),
        helpdesk_rate_limit: limit,
        opened_by: None,
    };
    let tenant = |own: Option<u32>, agents: Option<u32>, inc: Option<OpenIncident>| TenantPolicy {
        self_service_rate_limit: own,
        helpdesk_rate_limit: agents,
        incident: inc,
        ..TenantPolicy::default()
    };
    // (case, access, tenant policy, limit)
    #[rustfmt::skip]
    let table: Vec<(&str, Access, TenantPolicy, u32)> = vec![
        ("owner, deployment's", Access::Owner, tenant(None, None, None), 5),
        ("owner, tenant's lower", Access::Owner, tenant(Some(2), None, None), 2),
        ("owner, tenant's higher is capped", Access::Owner, tenant(Some(9), None, None), 5),
        ("owner, an incident changes nothing", Access::Owner, tenant(None, None, Some(incident(400, 2_000))), 5),
        ("agent, deployment's", Access::Helpdesk, tenant(None, None, None), 50),
        ("agent, tenant's lower", Access::Helpdesk, tenant(Some(1), Some(20), None), 20),
        ("agent, tenant's higher is capped", Access::Helpdesk, tenant(None, Some(90), None), 50),
        ("agent, open incident's", Access::Helpdesk, tenant(None, Some(20), Some(incident(400, 2_000))), 400),
        ("agent, incident's capped", Access::Helpdesk, tenant(None, None, Some(incident(900, 2_000))), 500),
        ("agent, closed incident", Access::Helpdesk, tenant(None, Some(20), Some(incident(400, 1_000))), 20),
    ];
    for (case, access, policy, want) in table {
        assert_eq!(rate_limit(&limits, access, &policy, now), want, "{case}");
    }
}

/// F1: the proof a service takes exists only once the check passed, for
/// that caller, under the permission it names.
#[test]
fn the_permission_check_alone_makes_the_proof() {
    use super::permission::grant;
    const ALL_PERMISSIONS: [Permission; 10] = [
        Permission::ReadDevices,
        Permission::LookUpKeys,
        Permission::ReadAudit,
        Permission::RetrieveKeys,
        Permission::RetrieveBatch,
        Permission::Escrow,
        Permission::WriteDevices,
        Permission::ManageSettings,
        Permission::RunIncidents,
        Permission::ReadIncidents,
    ];
    let nobody = caller("alice", "");
    for p in ALL_PERMISSIONS {
        let Err(ApiError::InsufficientScope { needed }) = p.check(&nobody) else {
            panic!("{p:?} admitted a caller without permissions");
        };
        assert!(p.names().contains(&needed), "{p:?}: {needed}");
        // Each of its names alone admits (a device-bound escrow credential
        // needs its device, below).
        for name in p.names() {
            let c = caller("alice", name);
            let admitted = p.check(&c).unwrap_or_else(|e| panic!("{p:?} {name}: {e}"));
            assert_eq!(admitted.permission(), p);
            assert_eq!(admitted.caller(), &c, "the proof is the checked caller's");
        }
    }

    // The typed proof: free under the admitting permission, checked again
    // under any other, so it never stands for an unchecked permission.
    let admin = caller("admin", "Devices.ReadWrite.All");
    let admitted = Permission::WriteDevices.check(&admin).unwrap();
    let who = admitted.permitted::<grant::WriteDevices>().unwrap();
    assert_eq!(who.caller(), &admin);
    assert_eq!(
        admitted.permitted::<grant::Escrow>().err(),
        Some(ApiError::InsufficientScope {
            needed: Permissions::KEY_ESCROW
        })
    );
    let both = caller("sync", "Devices.ReadWrite.All RecoveryKey.Escrow");
    let admitted = Permission::WriteDevices.check(&both).unwrap();
    assert!(admitted.permitted::<grant::Escrow>().is_ok());

    // A device-bound escrow credential is admitted with its device only.
    let mut agent = caller("agent", Permissions::KEY_ESCROW_DEVICE);
    assert!(Permission::Escrow.check(&agent).is_err());
    agent.device = Some(DeviceId::parse("PC-1").unwrap());
    let admitted = Permission::Escrow.check(&agent).unwrap();
    assert!(admitted.permitted::<grant::Escrow>().is_ok());
}
