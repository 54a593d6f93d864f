//! Table-driven tests of the lifecycle planners.
use super::*;
use crate::domain::ids::TenantId;

#[test]
fn digests_bind_the_context() {
    let pw =
        RecoveryPassword::parse("123453-234564-345675-456786-567897-679008-700007-000000").unwrap();
    let ctx = |d: &str| KeyContext {
        tenant: TenantId::parse("t1").unwrap(),
        device: DeviceId::parse(d).unwrap(),
        key_id: KeyId::parse("1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b").unwrap(),
    };
    let a = key_digest(&ctx("PC-1"), &pw);
    assert_eq!(a.len(), 64);
    assert_eq!(a, key_digest(&ctx("PC-1"), &pw));
    assert_ne!(a, key_digest(&ctx("PC-2"), &pw));
    assert!(!a.contains("123453"));
}

#[test]
fn newer_orders_by_time_then_lower_key_id() {
    let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let k = |id: &str, t| KeyMeta::new(KeyId::parse(id).unwrap(), VolumeType::OperatingSystem, t);
    let a = k("1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b", t);
    let b = k("2f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b", t);
    let c = k(
        "0f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b",
        t + Duration::seconds(1),
    );
    assert!(newer(&a, &b) && !newer(&b, &a));
    assert!(newer(&c, &a) && !newer(&a, &c));
    assert!(!newer(&a, &a));
}

const K1: &str = "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a51";
const K2: &str = "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a52";
const K3: &str = "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a53";
const NEW: &str = "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a50";

fn at(t: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + t).unwrap()
}

fn kid(k: &str) -> KeyId {
    KeyId::parse(k).unwrap()
}

/// A stored key: (id, volume, created_at offset, superseded and expiring
/// at this offset).
type Held<'a> = (&'a str, VolumeType, i64, Option<i64>);

fn record(keys: &[Held], digests: &[(&str, &str)]) -> DeviceRecord {
    let metas: Vec<KeyMeta> = keys
        .iter()
        .map(|&(id, v, t, gone)| {
            let mut k = KeyMeta::new(kid(id), v, at(t));
            if let Some(g) = gone {
                k.superseded_at = Some(at(0));
                k.expires_at = Some(at(g));
            }
            k
        })
        .collect();
    DeviceRecord {
        current: metas
            .iter()
            .filter(|k| !k.is_superseded())
            .map(|k| (k.key_id, SealedKey(k.key_id.to_string().into_bytes())))
            .collect(),
        device: Device {
            tenant: TenantId::parse("t1").unwrap(),
            device_id: DeviceId::parse("PC-1").unwrap(),
            owner: crate::domain::ids::UserId::parse("alice").unwrap(),
            display_name: "PC-1".into(),
            os: "Windows 11".into(),
            managed_by: ManagedBy::Organization,
            keys: metas,
            owner_since: None,
            retired: None,
        },
        digests: digests
            .iter()
            .map(|(k, d)| (kid(k), (*d).to_owned()))
            .collect(),
        version: 7,
    }
}

/// What a plan comes to, in comparable terms.
#[derive(Debug, PartialEq, Eq)]
enum Planned {
    Held,
    Conflict,
    Write {
        /// The new key becomes current.
        current: bool,
        /// Current ciphertexts after the write.
        current_ids: Vec<&'static str>,
        /// Keys leaving the current set (the new one included when it is
        /// superseded at once).
        superseded: Vec<&'static str>,
        /// Every key kept, in order.
        keys: Vec<&'static str>,
        /// Keys with a digest after the write.
        digests: Vec<&'static str>,
    },
}

fn name(id: KeyId) -> &'static str {
    [K1, K2, K3, NEW]
        .into_iter()
        .find(|k| kid(k) == id)
        .unwrap()
}

fn summarise(plan: EscrowPlan) -> Planned {
    match plan {
        EscrowPlan::AlreadyHeld(_) => Planned::Held,
        EscrowPlan::Conflict => Planned::Conflict,
        EscrowPlan::Write(d) => {
            let current = d.current;
            let w = d.sealed_with(SealedKey(b"new".to_vec()));
            assert_eq!(w.expected_version, 7);
            // Superseded keys expire after the retention, from now.
            for k in w
                .device
                .keys
                .iter()
                .filter(|k| k.superseded_at == Some(at(50)))
            {
                assert_eq!(k.expires_at, Some(at(50) + Duration::days(30)));
            }
            assert_eq!(w.added, *w.device.keys.last().unwrap());
            Planned::Write {
                current,
                current_ids: w.current.iter().map(|(k, _)| name(*k)).collect(),
                superseded: w.superseded.iter().map(|(k, _)| name(k.key_id)).collect(),
                keys: w.device.keys.iter().map(|k| name(k.key_id)).collect(),
                digests: w.digests.iter().map(|(k, _)| name(*k)).collect(),
            }
        }
    }
}

#[test]
fn plan_escrow_rules() {
    use VolumeType::{FixedData as Fixed, OperatingSystem as Os};
    let write = |current,
                 cur: &[&'static str],
                 sup: &[&'static str],
                 keys: &[&'static str],
                 dig: &[&'static str]| {
        Planned::Write {
            current,
            current_ids: cur.to_vec(),
            superseded: sup.to_vec(),
            keys: keys.to_vec(),
            digests: dig.to_vec(),
        }
    };
    // (case, stored keys, stored digests, new key (id, volume, created_at, digest), plan)
    type Case<'a> = (
        &'a str,
        Vec<Held<'a>>,
        Vec<(&'a str, &'a str)>,
        (&'a str, VolumeType, i64, &'a str),
        Planned,
    );
    #[rustfmt::skip]
    let table: Vec<Case> = vec![
        ("first key", vec![], vec![], (NEW, Os, 10, "d"),
            write(true, &[NEW], &[], &[NEW], &[NEW])),
        ("same key, same password", vec![(NEW, Os, 10, None)], vec![(NEW, "d")], (NEW, Os, 10, "d"),
            Planned::Held),
        ("same key, other password", vec![(NEW, Os, 10, None)], vec![(NEW, "x")], (NEW, Os, 10, "d"),
            Planned::Conflict),
        ("same key, other volume", vec![(NEW, Os, 10, None)], vec![(NEW, "d")], (NEW, Fixed, 10, "d"),
            Planned::Conflict),
        ("same key, stored before digests", vec![(NEW, Os, 10, None)], vec![], (NEW, Os, 10, "d"),
            Planned::Conflict),
        ("superseded key held: same rules", vec![(NEW, Os, 10, Some(100))], vec![(NEW, "d")], (NEW, Os, 10, "d"),
            Planned::Held),
        ("newer key supersedes the current one of its volume",
            vec![(K1, Os, 5, None), (K2, Fixed, 5, None)], vec![(K1, "a"), (K2, "b")], (NEW, Os, 10, "d"),
            write(true, &[K2, NEW], &[K1], &[K1, K2, NEW], &[K1, K2, NEW])),
        ("older key is superseded at once",
            vec![(K1, Os, 20, None)], vec![(K1, "a")], (NEW, Os, 10, "d"),
            write(false, &[K1], &[NEW], &[K1, NEW], &[K1, NEW])),
        ("same time: the lower key ID is newer",
            vec![(K1, Os, 10, None)], vec![], (NEW, Os, 10, "d"),
            write(true, &[NEW], &[K1], &[K1, NEW], &[NEW])),
        ("same time: a higher key ID is older",
            vec![(NEW, Fixed, 1, None), (K1, Os, 10, None)], vec![], (K2, Os, 10, "d"),
            write(false, &[NEW, K1], &[K2], &[NEW, K1, K2], &[K2])),
        ("already superseded keys stay as they are",
            vec![(K1, Os, 1, Some(100)), (K2, Os, 5, None)], vec![], (NEW, Os, 10, "d"),
            write(true, &[NEW], &[K2], &[K1, K2, NEW], &[NEW])),
        ("expired keys and their digests are dropped; their ID is free",
            vec![(K1, Os, 1, Some(40)), (NEW, Os, 2, Some(40))], vec![(K1, "a"), (NEW, "old")], (NEW, Os, 10, "d"),
            write(true, &[NEW], &[], &[NEW], &[NEW])),
        ("newest of several current keys decides",
            vec![(K1, Os, 5, None), (K3, Os, 30, None)], vec![], (NEW, Os, 20, "d"),
            write(false, &[K1, K3], &[NEW], &[K1, K3, NEW], &[NEW])),
    ];
    for (case, held, digests, (id, volume_type, t, digest), want) in table {
        let key = EscrowKey {
            key_id: kid(id),
            volume_type,
            created_at: at(t),
            digest: digest.into(),
        };
        let got = summarise(plan_escrow(&record(&held, &digests), &key, 30, at(50)));
        assert_eq!(got, want, "{case}");
    }
}

fn admin(user: &str) -> Caller {
    Caller {
        tenant: TenantId::parse("t1").unwrap(),
        user: crate::domain::ids::UserId::parse_actor(user).unwrap(),
        permissions: crate::domain::caller::Permissions {
            devices_write_all: true,
            ..Default::default()
        },
        device: None,
        expires_at: i64::MAX,
        auth_time: None,
    }
}

#[test]
fn plan_upsert_rules() {
    use crate::domain::ids::UserId;
    let md = |owner: &str, name: &str| DeviceMetadata {
        owner: UserId::parse(owner).unwrap(),
        display_name: name.into(),
        os: "Windows 11".into(),
        managed_by: ManagedBy::Organization,
    };
    // alice's PC-1 with one live key and one expired at 40, owner since 5.
    let stored = || {
        let mut r = record(
            &[
                (K1, VolumeType::OperatingSystem, 1, Some(40)),
                (K2, VolumeType::OperatingSystem, 2, None),
            ],
            &[],
        );
        r.device.owner_since = Some(at(5));
        Some(r)
    };
    let retired = || {
        let mut r = stored();
        if let Some(r) = &mut r {
            r.device.retired = Some(Retirement {
                at: at(10),
                expires_at: at(1_000),
            });
        }
        r
    };
    #[derive(Debug, PartialEq)]
    enum Want {
        Refused(&'static str),
        Unchanged,
        /// reason, detail, expected version, owner_since, keys kept
        Write(
            &'static str,
            Option<&'static str>,
            Option<u64>,
            Option<OffsetDateTime>,
            usize,
        ),
    }
    // (case, caller, stored, request, plan)
    #[rustfmt::skip]
    let table: Vec<(&str, &str, Option<DeviceRecord>, DeviceMetadata, Want)> = vec![
        ("new device", "admin", None, md("alice", "PC-1"), Want::Write("created", None, None, None, 0)),
        ("new device for oneself", "admin", None, md("admin", "PC-1"), Want::Write("created", None, None, None, 0)),
        ("nothing differs", "admin", stored(), md("alice", "PC-1"), Want::Unchanged),
        ("renamed", "admin", stored(), md("alice", "Laptop"), Want::Write("updated", None, Some(7), Some(at(5)), 1)),
        ("new owner", "admin", stored(), md("bob", "PC-1"), Want::Write("updated", Some("owner alice -> bob"), Some(7), Some(at(50)), 1)),
        ("new owner from the directory", "sync:entra", stored(), md("bob", "PC-1"), Want::Write("updated", Some("owner alice -> bob"), Some(7), None, 1)),
        ("making oneself the owner", "admin", stored(), md("admin", "PC-1"), Want::Refused("self_assignment")),
        ("retired", "admin", retired(), md("alice", "Laptop"), Want::Refused("retired")),
        ("retired, unchanged", "admin", retired(), md("alice", "PC-1"), Want::Refused("retired")),
    ];
    let pc1 = DeviceId::parse("PC-1").unwrap();
    for (case, user, stored, md, want) in table {
        let got = match plan_upsert(&admin(user), &pc1, stored, &md, at(50)) {
            UpsertPlan::Refuse((_, reason)) => Want::Refused(reason.as_str()),
            UpsertPlan::Unchanged(_) => Want::Unchanged,
            UpsertPlan::Write {
                write,
                reason,
                detail,
            } => {
                let d = &write.device;
                assert_eq!(
                    (&d.owner, &d.display_name),
                    (&md.owner, &md.display_name),
                    "{case}"
                );
                assert_eq!(
                    (&d.device_id, &d.tenant),
                    (&pc1, &admin(user).tenant),
                    "{case}"
                );
                let detail = detail.map(|s| &*s.leak());
                Want::Write(
                    reason,
                    detail,
                    write.expected_version,
                    d.owner_since,
                    d.keys.len(),
                )
            }
        };
        assert_eq!(got, want, "{case}");
    }
}
