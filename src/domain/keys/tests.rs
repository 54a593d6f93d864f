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
                assert_eq!(got_reason, reason, "{case}");
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
            .map_err(|(_, reason)| reason)
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
            .map_err(|(_, reason)| reason)
    };
    assert_eq!(owner_pick(Some(&exact(A))), Err("key_predates_owner"));
    assert_eq!(owner_pick(None), Ok(id(B)));
    reowned.device.owner_since = Some(OffsetDateTime::from_unix_timestamp(300).unwrap());
    assert_eq!(
        select_key(&reowned, None, Access::Owner, now)
            .map_err(|(_, r)| r)
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
