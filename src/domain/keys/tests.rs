//! Table-driven tests of which key a retrieval discloses.

use super::*;
use crate::domain::ids::{KeyIdPrefix, TenantId, UserId};
use crate::domain::model::{Device, Helpdesk, TenantPolicy};

const A: &str = "aaaaaaaa000000000000000000000001";
const B: &str = "aaaaaaaa000000000000000000000002";
const C: &str = "cccccccc000000000000000000000003";
const D: &str = "dddddddd000000000000000000000004";

fn id(hex: &str) -> KeyId {
    KeyId::parse(hex).unwrap()
}

/// A device with these keys (id, volume, created_at); only `sealed` of
/// them have ciphertext, sealed as the id's bytes.
fn device(
    managed_by: ManagedBy,
    keys: &[(&str, VolumeType, i64)],
    sealed: &[&str],
) -> SealedDevice {
    SealedDevice {
        device: Device {
            tenant: TenantId::parse("contoso").unwrap(),
            device_id: DeviceId::parse("PC-1").unwrap(),
            owner: UserId::parse("alice").unwrap(),
            display_name: "PC-1".into(),
            os: "Windows 11".into(),
            managed_by,
            keys: keys
                .iter()
                .map(|&(k, volume_type, t)| {
                    KeyMeta::new(
                        id(k),
                        volume_type,
                        OffsetDateTime::from_unix_timestamp(t).unwrap(),
                    )
                })
                .collect(),
            owner_since: None,
            retired: None,
        },
        policy: TenantPolicy {
            self_service: true,
            helpdesk: Some(Helpdesk {
                email: Some("help@contoso.example".into()),
                ..Helpdesk::default()
            }),
            ..TenantPolicy::default()
        },
        sealed: sealed
            .iter()
            .map(|k| (id(k), SealedKey(k.as_bytes().to_vec())))
            .collect(),
    }
}

#[test]
fn select_key_rules() {
    use ManagedBy::{Organization as Org, User};
    use VolumeType::{FixedData as Fixed, OperatingSystem as Os};
    let exact = |k: &str| Some(KeySelector::Exact(id(k)));
    let prefix = |p: &str| Some(KeySelector::Prefix(KeyIdPrefix::parse(p).unwrap()));
    // D is the newest OS key but has no ciphertext: it is never chosen.
    let all = [(A, Os, 100), (B, Os, 200), (C, Fixed, 300), (D, Os, 400)];
    let held = [A, B, C];
    // (managed by, keys, sealed, selector, chosen key or refusal reason)
    type Case<'a> = (
        ManagedBy,
        &'a [(&'a str, VolumeType, i64)],
        &'a [&'a str],
        Option<KeySelector>,
        Result<&'a str, &'a str>,
    );
    #[rustfmt::skip]
    let table: Vec<Case> = vec![
        (Org, &all, &held, None, Ok(B)),
        (Org, &all, &held, exact(A), Ok(A)),
        (Org, &all, &held, exact(C), Ok(C)),
        (Org, &all, &held, prefix("CCCC-CCCC"), Ok(C)),
        (Org, &all, &held, prefix(A), Ok(A)),
        (Org, &all, &held, prefix("aaaaaaaa"), Err("ambiguous_key_id")),
        (Org, &all, &held, exact(D), Err("key_id_not_found")),
        (Org, &all, &held, prefix("dddddddd"), Err("key_id_not_found")),
        (Org, &all, &held, prefix("eeeeeeee"), Err("key_id_not_found")),
        (Org, &all, &[], None, Err("no_key")),
        (Org, &all, &[], exact(A), Err("no_key")),
        (Org, &all, &[C], None, Err("no_os_key")),
        (Org, &all, &[C], exact(C), Ok(C)),
        // The same creation time: the lower key ID, so the choice is stable.
        (Org, &[(B, Os, 100), (A, Os, 100)], &[A, B], None, Ok(A)),
        (User, &all, &held, None, Err("personally_encrypted")),
        (User, &all, &held, exact(A), Err("personally_encrypted")),
    ];
    for (managed_by, keys, sealed, selector, want) in table {
        let d = device(managed_by, keys, sealed);
        let got = select_key(
            &d,
            selector.as_ref(),
            Access::Owner,
            OffsetDateTime::UNIX_EPOCH,
        );
        let case = format!("{managed_by:?} {keys:?} sealed {sealed:?} selector {selector:?}");
        match want {
            Ok(k) => {
                let (meta, sealed) = got.unwrap_or_else(|e| panic!("{case}: {e:?}"));
                assert_eq!(meta.key_id, id(k), "{case}");
                assert_eq!(sealed, Some(&SealedKey(k.as_bytes().to_vec())), "{case}");
            }
            Err(reason) => {
                let (error, got_reason) = got.map(|(m, _)| m.key_id).unwrap_err();
                assert_eq!(got_reason.as_str(), reason, "{case}");
                let want_error = if reason == "ambiguous_key_id" {
                    ApiError::AmbiguousKey {
                        candidates: vec![id(A), id(B)],
                    }
                } else {
                    ApiError::NoKeyHeld {
                        helpdesk: d.policy.helpdesk.clone(),
                    }
                };
                assert_eq!(error, want_error, "{case}");
            }
        }
    }
}

#[test]
fn superseded_keys_are_read_by_key_id_until_they_expire() {
    use VolumeType::OperatingSystem as Os;
    let now = OffsetDateTime::from_unix_timestamp(1_000).unwrap();
    // A is superseded by B and expires at 2000; C expired at 900.
    let mut d = device(
        ManagedBy::Organization,
        &[(A, Os, 100), (B, Os, 200), (C, Os, 50)],
        &[B],
    );
    for k in &mut d.device.keys {
        if k.key_id == id(A) {
            k.superseded_at = Some(OffsetDateTime::from_unix_timestamp(200).unwrap());
            k.expires_at = Some(OffsetDateTime::from_unix_timestamp(2_000).unwrap());
        }
        if k.key_id == id(C) {
            k.superseded_at = Some(OffsetDateTime::from_unix_timestamp(60).unwrap());
            k.expires_at = Some(OffsetDateTime::from_unix_timestamp(900).unwrap());
        }
    }
    let exact = |k: &str| KeySelector::Exact(id(k));
    let pick = |sel: Option<&KeySelector>, access, at| {
        select_key(&d, sel, access, at)
            .map(|(m, s)| (m.key_id, s.is_some()))
            .map_err(|(_, reason)| reason.as_str())
    };
    // Never the default, for anyone.
    assert_eq!(pick(None, Access::Owner, now), Ok((id(B), true)));
    assert_eq!(pick(None, Access::Helpdesk, now), Ok((id(B), true)));
    // The helpdesk by key ID: chosen, its ciphertext to be read apart.
    assert_eq!(
        pick(Some(&exact(A)), Access::Helpdesk, now),
        Ok((id(A), false))
    );
    // Its owner by key ID too (issue 17): the key ID on the recovery screen
    // proves which key the PC needs, so a newer key never hides it.
    assert_eq!(
        pick(Some(&exact(A)), Access::Owner, now),
        Ok((id(A), false))
    );
    // An owner since after the key was created: the helpdesk path only.
    let mut reowned = d.clone();
    reowned.device.owner_since = Some(OffsetDateTime::from_unix_timestamp(150).unwrap());
    let owner_pick = |sel: Option<&KeySelector>| {
        select_key(&reowned, sel, Access::Owner, now)
            .map(|(m, _)| m.key_id)
            .map_err(|(_, reason)| reason.as_str())
    };
    assert_eq!(owner_pick(Some(&exact(A))), Err("key_predates_owner"));
    assert_eq!(owner_pick(None), Ok(id(B)));
    reowned.device.owner_since = Some(OffsetDateTime::from_unix_timestamp(300).unwrap());
    assert_eq!(
        select_key(&reowned, None, Access::Owner, now)
            .map_err(|(_, r)| r.as_str())
            .map(|_| ()),
        Err("key_predates_owner")
    );
    // Past its retention: gone for everyone.
    assert_eq!(
        pick(Some(&exact(C)), Access::Helpdesk, now),
        Err("key_id_not_found")
    );
    let later = OffsetDateTime::from_unix_timestamp(2_000).unwrap();
    assert_eq!(
        pick(Some(&exact(A)), Access::Helpdesk, later),
        Err("key_id_not_found")
    );
}

fn caller(user: &str, owner: bool, helpdesk: bool) -> Caller {
    Caller {
        tenant: TenantId::parse("contoso").unwrap(),
        user: UserId::parse(user).unwrap(),
        permissions: crate::domain::caller::Permissions {
            key_read: owner,
            key_read_all: helpdesk,
            ..Default::default()
        },
        device: None,
        expires_at: i64::MAX,
        auth_time: None,
    }
}

#[test]
fn plan_retrieval_rules() {
    use crate::domain::model::{RequireReason, Retirement};
    use VolumeType::OperatingSystem as Os;
    let at = |t| OffsetDateTime::from_unix_timestamp(t).unwrap();
    let now = at(1_000);
    let base = device(
        ManagedBy::Organization,
        &[(A, Os, 100), (B, Os, 200)],
        &[A, B],
    );
    let with = |f: &dyn Fn(&mut SealedDevice)| {
        let mut d = base.clone();
        f(&mut d);
        d
    };
    let retired = |until| {
        with(&|d: &mut SealedDevice| {
            d.device.retired = Some(Retirement {
                at: at(500),
                expires_at: at(until),
            })
        })
    };
    let reason_rule = |r| with(&|d: &mut SealedDevice| d.policy.require_reason = r);
    let no_self_service = with(&|d: &mut SealedDevice| d.policy.self_service = false);
    let other_tenant =
        with(&|d: &mut SealedDevice| d.device.tenant = TenantId::parse("fabrikam").unwrap());
    let personal = with(&|d: &mut SealedDevice| d.device.managed_by = ManagedBy::User);
    let alice = caller("alice", true, false);
    let bob = caller("bob", true, false);
    let agent = caller("bob", false, true);
    let both = caller("alice", true, true);
    // (case, caller, device, key asked for, reason given, chosen key and
    // access, or refusal reason)
    type Case<'a> = (
        &'a str,
        &'a Caller,
        Option<SealedDevice>,
        Option<&'a str>,
        bool,
        Result<(&'a str, Access), &'a str>,
    );
    #[rustfmt::skip]
    let table: Vec<Case> = vec![
        ("no such device", &alice, None, None, false, Err("not_found")),
        ("owner, newest OS key", &alice, Some(base.clone()), None, false, Ok((B, Access::Owner))),
        ("owner by key ID", &alice, Some(base.clone()), Some(A), false, Ok((A, Access::Owner))),
        ("another tenant's device", &alice, Some(other_tenant.clone()), None, false, Err("other_tenant")),
        ("someone else's device", &bob, Some(base.clone()), None, false, Err("not_owner")),
        ("self-service off", &alice, Some(no_self_service.clone()), None, false, Err("self_service_disabled")),
        ("self-service off, owner is an agent", &both, Some(no_self_service.clone()), None, true, Ok((B, Access::Helpdesk))),
        ("agent", &agent, Some(base.clone()), None, false, Ok((B, Access::Helpdesk))),
        ("reason always required", &alice, Some(reason_rule(RequireReason::Always)), None, false, Err("reason_required")),
        ("reason always required, given", &alice, Some(reason_rule(RequireReason::Always)), None, true, Ok((B, Access::Owner))),
        ("reason required of agents, owner", &alice, Some(reason_rule(RequireReason::Helpdesk)), None, false, Ok((B, Access::Owner))),
        ("reason required of agents, agent", &agent, Some(reason_rule(RequireReason::Helpdesk)), None, false, Err("reason_required")),
        ("retired: not its owner's", &alice, Some(retired(2_000)), Some(A), true, Err("retired")),
        ("retired: agent without key ID", &agent, Some(retired(2_000)), None, true, Err("retired_device")),
        ("retired: agent without reason", &agent, Some(retired(2_000)), Some(A), false, Err("retired_device")),
        ("retired: agent with both", &agent, Some(retired(2_000)), Some(A), true, Ok((A, Access::Helpdesk))),
        ("retired and gone", &agent, Some(retired(900)), Some(A), true, Err("retired_device")),
        ("key refused by select_key", &alice, Some(personal.clone()), None, false, Err("personally_encrypted")),
    ];
    for (case, caller, device, key, reason, want) in table {
        let req = RetrievalRequest {
            device_id: DeviceId::parse("PC-1").unwrap(),
            key: key.map(|k| KeySelector::Exact(id(k))),
            justification: reason.then(|| "INC-1".to_owned()),
        };
        let got = plan_retrieval(caller, device.as_ref(), &req, now)
            .map(|s| (s.key.key_id, s.access))
            .map_err(|(_, reason)| reason.as_str());
        assert_eq!(got, want.map(|(k, a)| (id(k), a)), "{case}");
    }
}

#[test]
fn plan_grant_rules() {
    use crate::domain::ratelimit::{Grant, Slot};
    let now = OffsetDateTime::from_unix_timestamp(10_000).unwrap();
    let pc1 = DeviceId::parse("PC-1").unwrap();
    let pc2 = DeviceId::parse("PC-2").unwrap();
    let grant = |rid: &str, ago: i64, device: &DeviceId, key: &str, digest: &str| Grant {
        request_id: rid.into(),
        at: 10_000 - ago,
        device_id: device.clone(),
        key_id: id(key),
        digest: digest.into(),
    };
    let window = |grants: Vec<Grant>, used: u32| RateWindow {
        recent: (used > 0)
            .then_some(Slot {
                at: 9_000,
                count: used,
            })
            .into_iter()
            .collect(),
        version: 3,
        grants,
    };
    // (case, window, client's own request id, key asked for, plan)
    #[rustfmt::skip]
    let table: Vec<(&str, RateWindow, bool, &str, &str)> = vec![
        ("fresh id, room", window(vec![], 0), true, A, "admit"),
        ("fresh id, limit reached", window(vec![], 5), true, A, "rate_limited"),
        ("identical retry", window(vec![grant("r1", 10, &pc1, A, "d")], 5), true, A, "replay"),
        ("identical retry of a gateway id: a new attempt", window(vec![grant("r1", 10, &pc1, A, "d")], 0), false, A, "admit"),
        ("same id, other key", window(vec![grant("r1", 10, &pc1, B, "d")], 0), true, A, "request_id_reused"),
        ("same id, other device", window(vec![grant("r1", 10, &pc2, A, "d")], 0), true, A, "request_id_reused"),
        ("same id and key, other details: a new attempt", window(vec![grant("r1", 10, &pc1, A, "x")], 0), true, A, "admit"),
        ("same key under both", window(vec![grant("r1", 10, &pc1, B, "d"), grant("r1", 5, &pc1, A, "x")], 0), true, A, "admit"),
        ("identical retry after the replay window", window(vec![grant("r1", 301, &pc1, A, "d")], 0), true, A, "admit"),
        ("another id's grant", window(vec![grant("r2", 10, &pc1, B, "d")], 0), true, A, "admit"),
    ];
    for (case, window, client_request_id, key, want) in table {
        let ask = GrantAsk {
            request_id: "r1",
            client_request_id,
            device_id: &pc1,
            key_id: id(key),
            digest: "d",
        };
        let got = match plan_grant(&window, &ask, 5, now) {
            GrantPlan::Replay => "replay",
            GrantPlan::Admit(u) => {
                assert_eq!(u.expected_version, 3, "{case}");
                assert_eq!(u.window.used(now), window.used(now) + 1, "{case}");
                "admit"
            }
            GrantPlan::Refuse((e, reason)) => {
                let retry = matches!(e, ApiError::RateLimited { .. });
                assert_eq!(retry, reason == Denied::RateLimited, "{case}");
                reason.as_str()
            }
        };
        assert_eq!(got, want, "{case}");
    }
}
