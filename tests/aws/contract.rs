//! One contract for the `Store`, `ImportStore` and `KeyCipher` ports, run
//! against the embedded adapters and against DynamoDB + KMS on moto, so the
//! two backends cannot drift apart.
//!
//! Each operation is a test of its own per backend (`contract_tests!`), so a
//! failure names its case: `contract::dynamodb::find_keys_match_a_prefix_within_the_tenant`.
//! The moto half needs `PORTAL_TEST_MOTO_URL` (see scripts/moto.sh) and fails
//! when it is not set.

use crate::support::aws as common_aws;

use crate::contract_backends::{Backend, contract_tests};
use common_aws::{device, key, password, seed_json};
use recovery_portal::adapters::embedded::{LocalCipher, MemoryStore};
use recovery_portal::domain::audit::{AuditCursor, AuditEvent, AuditPage, AuditQuery, Outcome};
use recovery_portal::domain::error::{Cause, Unavailable};
use recovery_portal::domain::ids::{DeviceId, KeyId, KeyIdPrefix, TenantId, UserId};
use recovery_portal::domain::model::{KeyContext, RecoveryPassword, SealedKey, TenantPolicy};
use recovery_portal::domain::ports::{
    CipherError, Commit, Denial, ImportStore, KeyCipher, Store, StoredDevice,
};
use recovery_portal::domain::ratelimit::{self, Grant, RateWindow, Slot};
use recovery_portal::tools::seed::{Seed, SeedDevice};
use std::collections::{BTreeSet, HashMap};
use time::OffsetDateTime;

// Two keys in t1 share the 8-digit prefix 1f2e3d4c; t2 has a key with the
// same prefix (and a device with the same id as one in t1).
const K1: &str = "1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5B";
const K2: &str = "1F2E3D4C-0000-4798-8A9B-0C1D2E3F4A5C";
const K3: &str = "2A2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5D";
const K4: &str = "1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5E";
const K5: &str = "3B2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5F";

fn t(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}
fn u(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}
fn d(s: &str) -> DeviceId {
    DeviceId::parse(s).unwrap()
}
fn k(s: &str) -> KeyId {
    KeyId::parse(s).unwrap()
}

fn contract_seed() -> Seed {
    let json = seed_json(vec![
        device(
            "t1",
            "PC-1",
            "u1",
            vec![
                key(K1, "operating_system", 1, "2024-05-15T09:30:00Z"),
                key(K2, "fixed_data", 2, "2024-05-16T10:00:00.123456789Z"),
            ],
        ),
        device(
            "t1",
            "PC-2",
            "u1",
            vec![key(K3, "operating_system", 3, "2024-06-01T08:00:00+02:00")],
        ),
        device(
            "t2",
            "PC-1",
            "u2",
            vec![key(K4, "operating_system", 4, "2024-07-01T00:00:00Z")],
        ),
        device(
            "t2",
            "PC-9",
            "u9",
            vec![key(K5, "removable_data", 5, "2024-07-02T00:00:00Z")],
        ),
    ]);
    recovery_portal::tools::seed::parse(&json).expect("contract seed")
}

fn event(
    tenant: &str,
    actor: &str,
    request_id: &str,
    device_id: &str,
    key_id: Option<&str>,
    outcome: Outcome,
    at_unix_nanos: i128,
) -> AuditEvent {
    AuditEvent {
        action: recovery_portal::domain::audit::Action::Disclose,
        event_id: uuid::Uuid::new_v4().to_string(),
        time: OffsetDateTime::from_unix_timestamp_nanos(at_unix_nanos).unwrap(),
        tenant_id: t(tenant),
        actor: u(actor),
        device_id: Some(d(device_id)),
        key_id: key_id.map(k),
        outcome,
        reason: if outcome == Outcome::Granted {
            "owner".into()
        } else {
            "rate_limited".into()
        },
        justification: Some("locked out after a BIOS update".into()),
        source_ip: Some("192.0.2.1".into()),
        user_agent: Some("contract-test".into()),
        request_id: request_id.into(),
    }
}

/// The contract seed imported into `b`, as every import of it promises.
async fn seeded(b: &Backend) -> Seed {
    let seed = contract_seed();
    let summary = recovery_portal::tools::import::import(
        &seed,
        b.cipher.as_ref(),
        b.import.as_ref(),
        &|_, _| {},
    )
    .await
    .expect("import");
    assert_eq!(summary.devices, 4);
    assert_eq!(summary.keys, 5);
    assert_eq!(summary.skipped, 0);
    seed
}

fn seeded_device<'a>(seed: &'a Seed, tenant: &str, id: &str) -> &'a SeedDevice {
    seed.devices
        .iter()
        .find(|x| x.device.tenant == t(tenant) && x.device.device_id == d(id))
        .unwrap()
}

/// The disclosures the audit cases read back, committed with every check
/// `commit_disclosure` promises on the way: (e1, e2, e_t2) where e1 and e2
/// are t1/u1's grants and e_t2 is the same request id in t2.
async fn commit_disclosures(store: &dyn Store) -> (AuditEvent, AuditEvent, AuditEvent) {
    let (_, window) = store
        .load_for_disclosure(&t("t1"), &d("PC-1"), &u("u1"))
        .await
        .unwrap();
    assert_eq!(window, RateWindow::default());
    let base: i128 = 1_750_000_000_000_000_000;
    let sec: i128 = 1_000_000_000;
    let e1 = event(
        "t1",
        "u1",
        "req-1",
        "PC-1",
        Some(K1),
        Outcome::Granted,
        base,
    );
    let mut u1 = ratelimit::admit(&window, e1.time, 10).unwrap();
    let grant = Grant {
        request_id: "req-1".into(),
        at: e1.time.unix_timestamp(),
        device_id: d("PC-1"),
        key_id: k(K1),
        digest: "0123abcd".into(),
    };
    u1.record(grant.clone());
    assert_eq!(
        store.commit_disclosure(&e1, &u1).await.unwrap(),
        Commit::Written
    );
    // The same write again (a retry with the window read before): the
    // window moved on, so nothing is written.
    let retry = AuditEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        ..e1.clone()
    };
    assert_eq!(
        store.commit_disclosure(&retry, &u1).await.unwrap(),
        Commit::RateConflict
    );
    // A new request with the window read before e1 was committed.
    let e2 = event(
        "t1",
        "u1",
        "req-2",
        "PC-2",
        Some(K3),
        Outcome::Granted,
        base + sec,
    );
    let stale = ratelimit::admit(&window, e2.time, 10).unwrap();
    assert_eq!(
        store.commit_disclosure(&e2, &stale).await.unwrap(),
        Commit::RateConflict
    );
    let (_, window) = store
        .load_for_disclosure(&t("t1"), &d("PC-2"), &u("u1"))
        .await
        .unwrap();
    assert_eq!(window.version, 1);
    assert_eq!(window.recent, vec![Slot::one((base / sec) as i64)]);
    assert_eq!(window.grants, vec![grant.clone()], "grants round-trip");
    let fresh = ratelimit::admit(&window, e2.time, 10).unwrap();
    assert_eq!(
        store.commit_disclosure(&e2, &fresh).await.unwrap(),
        Commit::Written
    );
    let (_, window) = store
        .load_for_disclosure(&t("t1"), &d("PC-2"), &u("u1"))
        .await
        .unwrap();
    assert_eq!(window.version, 2);
    assert_eq!(window.used(e2.time), 2);
    assert_eq!(window.grants, vec![grant], "kept for the replay window");
    // Another caller's window is separate, and so is the same user in another tenant.
    let (_, w) = store
        .load_for_disclosure(&t("t1"), &d("PC-1"), &u("helpdesk-1"))
        .await
        .unwrap();
    assert_eq!(w, RateWindow::default());
    let (_, w) = store
        .load_for_disclosure(&t("t2"), &d("PC-1"), &u("u1"))
        .await
        .unwrap();
    assert_eq!(w, RateWindow::default());
    // The same request id in another tenant is another request.
    let e_t2 = event(
        "t2",
        "u1",
        "req-1",
        "PC-1",
        Some(K4),
        Outcome::Granted,
        base + 2 * sec,
    );
    let up = ratelimit::admit(&RateWindow::default(), e_t2.time, 10).unwrap();
    assert_eq!(
        store.commit_disclosure(&e_t2, &up).await.unwrap(),
        Commit::Written
    );

    (e1, e2, e_t2)
}

/// The contract's denied attempt in t1, at `base + 3s`.
fn denied_e3(base: i128, sec: i128) -> AuditEvent {
    event(
        "t1",
        "u2",
        "req-3",
        "PC-1",
        None,
        Outcome::Denied,
        base + 3 * sec,
    )
}

/// `list_devices`: metadata and the tenant's policy, one tenant only.
async fn list_devices_shows_an_owners_devices_and_the_tenant_policy(b: &Backend) {
    let seed = seeded(b).await;
    let policy_t1 = seed.tenants[0].policy.clone();
    let policy_t2 = seed.tenants[1].policy.clone();
    let seeded = |tenant: &str, id: &str| seeded_device(&seed, tenant, id);
    let store = b.store.as_ref();
    let (mut devices, policy) = store.list_devices(&t("t1"), &u("u1")).await.unwrap();
    devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    assert_eq!(
        devices,
        vec![
            seeded("t1", "PC-1").device.clone(),
            seeded("t1", "PC-2").device.clone()
        ]
    );
    assert_eq!(policy, policy_t1);
    let (devices, policy) = store.list_devices(&t("t2"), &u("u2")).await.unwrap();
    assert_eq!(devices, vec![seeded("t2", "PC-1").device.clone()]);
    assert_eq!(policy, policy_t2);
    // An owner with no devices still gets the tenant's helpdesk.
    let (devices, policy) = store.list_devices(&t("t1"), &u("u2")).await.unwrap();
    assert!(devices.is_empty());
    assert_eq!(policy, policy_t1);
    let (devices, policy) = store.list_devices(&t("t2"), &u("u1")).await.unwrap();
    assert!(devices.is_empty());
    assert_eq!(policy, policy_t2);
    // An unknown tenant has no self-service and no helpdesk details.
    let (devices, policy) = store.list_devices(&t("t3"), &u("u1")).await.unwrap();
    assert!(devices.is_empty());
    assert_eq!(
        policy,
        TenantPolicy {
            self_service: false,
            helpdesk: None,
            ..TenantPolicy::default()
        }
    );
}

/// `find_keys`: prefix lookup within the tenant.
async fn find_keys_match_a_prefix_within_the_tenant(b: &Backend) {
    let seed = seeded(b).await;
    let seeded = |tenant: &str, id: &str| seeded_device(&seed, tenant, id);
    let store = b.store.as_ref();
    let ids = |v: Vec<recovery_portal::domain::ports::KeyLocation>| {
        v.into_iter()
            .map(|l| (l.device_id.to_string(), l.key_id.to_string()))
            .collect::<BTreeSet<_>>()
    };
    let found = store
        .find_keys(&t("t1"), &KeyIdPrefix::parse("1f2e3d4c").unwrap())
        .await
        .unwrap();
    let pc1 = seeded("t1", "PC-1");
    let loc = found.iter().find(|l| l.key_id == k(K2)).expect("K2 found");
    assert_eq!(loc.device_id, d("PC-1"));
    assert_eq!(loc.owner, u("u1"));
    assert_eq!(loc.display_name, pc1.device.display_name);
    assert_eq!(loc.volume_type, pc1.device.keys[1].volume_type);
    assert_eq!(loc.created_at, pc1.device.keys[1].created_at);
    assert_eq!(
        ids(found),
        BTreeSet::from([("PC-1".into(), K1.into()), ("PC-1".into(), K2.into())])
    );
    let found = store
        .find_keys(&t("t1"), &KeyIdPrefix::parse("1F2E3D4C-5B6A").unwrap())
        .await
        .unwrap();
    assert_eq!(ids(found), BTreeSet::from([("PC-1".into(), K1.into())]));
    let found = store
        .find_keys(&t("t2"), &KeyIdPrefix::parse("1f2e3d4c").unwrap())
        .await
        .unwrap();
    assert_eq!(ids(found), BTreeSet::from([("PC-1".into(), K4.into())]));
    assert!(
        store
            .find_keys(&t("t1"), &KeyIdPrefix::parse("3b2e3d4c").unwrap())
            .await
            .unwrap()
            .is_empty(),
        "another tenant's key must not be found"
    );
}

/// `load_for_disclosure`: device, policy and sealed keys of one tenant.
async fn load_for_disclosure_returns_one_tenants_sealed_keys(b: &Backend) {
    let seed = seeded(b).await;
    let policy_t1 = seed.tenants[0].policy.clone();
    let policy_t2 = seed.tenants[1].policy.clone();
    let seeded = |tenant: &str, id: &str| seeded_device(&seed, tenant, id);
    let (store, cipher) = (b.store.as_ref(), b.cipher.as_ref());
    let pc1 = seeded("t1", "PC-1");
    let (sealed, window) = store
        .load_for_disclosure(&t("t1"), &d("PC-1"), &u("u1"))
        .await
        .unwrap();
    let sealed = sealed.expect("t1/PC-1 exists");
    assert_eq!(sealed.device, pc1.device);
    assert_eq!(sealed.policy, policy_t1);
    assert_eq!(window, RateWindow::default());
    assert_eq!(
        sealed
            .sealed
            .iter()
            .map(|(id, _)| *id)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([k(K1), k(K2)])
    );
    for (meta, pw) in &pc1.passwords {
        let blob = &sealed
            .sealed
            .iter()
            .find(|(id, _)| *id == meta.key_id)
            .unwrap()
            .1;
        let ctx = KeyContext {
            tenant: t("t1"),
            device: d("PC-1"),
            key_id: meta.key_id,
        };
        let opened = cipher.open(&ctx, blob).await.expect("open a stored key");
        assert_eq!(opened.expose(), pw.expose());
    }
    let (other, _) = store
        .load_for_disclosure(&t("t2"), &d("PC-1"), &u("u1"))
        .await
        .unwrap();
    let other = other.expect("t2/PC-1 exists");
    assert_eq!(other.device, seeded("t2", "PC-1").device);
    assert_eq!(other.policy, policy_t2);
    let (missing, _) = store
        .load_for_disclosure(&t("t1"), &d("PC-9"), &u("u1"))
        .await
        .unwrap();
    assert!(missing.is_none(), "t2's PC-9 must not be visible from t1");
}

/// `commit_disclosure`: written, or refused for a stale rate window.
async fn commit_disclosure_refuses_a_stale_rate_window(b: &Backend) {
    seeded(b).await;
    let store = b.store.as_ref();
    commit_disclosures(store).await;
}

/// `append_denied`: a record per attempt, at most `cap` per actor and clock hour, then one marker.
async fn append_denied_caps_records_per_actor_and_hour(b: &Backend) {
    let store = b.store.as_ref();
    let (base, sec) = (1_750_000_000_000_000_000, 1_000_000_000);
    let e3 = denied_e3(base, sec);
    assert_eq!(store.append_denied(&e3, 100).await.unwrap(), Denial::Stored);
    denial_cap_contract(store, base).await;
}

/// `audit_events`: filters, newest first, limit, tenant isolation.
async fn audit_events_filter_newest_first_within_the_tenant(b: &Backend) {
    seeded(b).await;
    let store = b.store.as_ref();
    let (e1, e2, e_t2) = commit_disclosures(store).await;
    let e3 = denied_e3(1_750_000_000_000_000_000, 1_000_000_000);
    assert_eq!(store.append_denied(&e3, 100).await.unwrap(), Denial::Stored);
    let q = |device: Option<&str>, actor: Option<&str>, limit: usize| AuditQuery {
        device_id: device.map(d),
        actor: actor.map(u),
        limit,
        ..Default::default()
    };
    let events = |p: AuditPage| p.events;
    let all = events(
        store
            .audit_events(&t("t1"), &q(None, None, 100))
            .await
            .unwrap(),
    );
    assert_eq!(all, vec![e3.clone(), e2.clone(), e1.clone()]);
    let newest = store
        .audit_events(&t("t1"), &q(None, None, 1))
        .await
        .unwrap()
        .events;
    assert_eq!(newest, vec![e3.clone()]);
    let by_device = store
        .audit_events(&t("t1"), &q(Some("PC-1"), None, 100))
        .await
        .unwrap()
        .events;
    assert_eq!(by_device, vec![e3.clone(), e1.clone()]);
    let by_actor = store
        .audit_events(&t("t1"), &q(None, Some("u1"), 100))
        .await
        .unwrap()
        .events;
    assert_eq!(by_actor, vec![e2.clone(), e1.clone()]);
    let by_both = store
        .audit_events(&t("t1"), &q(Some("PC-1"), Some("u1"), 100))
        .await
        .unwrap()
        .events;
    assert_eq!(by_both, vec![e1.clone()]);
    // The newest PC-1 event is u2's: the filter drops it and the query must
    // read on (paginate) to fill the limit.
    let filtered_limited = store
        .audit_events(&t("t1"), &q(Some("PC-1"), Some("u1"), 1))
        .await
        .unwrap()
        .events;
    assert_eq!(filtered_limited, vec![e1.clone()]);
    let limited = store
        .audit_events(&t("t1"), &q(Some("PC-1"), None, 1))
        .await
        .unwrap()
        .events;
    assert_eq!(limited, vec![e3.clone()]);
    let t2_events = store
        .audit_events(&t("t2"), &q(None, None, 100))
        .await
        .unwrap()
        .events;
    assert_eq!(t2_events, vec![e_t2.clone()]);
    assert!(
        store
            .audit_events(&t("t2"), &q(Some("PC-2"), None, 100))
            .await
            .unwrap()
            .events
            .is_empty()
    );
}

/// `audit_events` paging: limit, cursor, range and filters in one order.
async fn audit_events_page_in_one_total_order(b: &Backend) {
    let store = b.store.as_ref();
    paging_contract(store).await;
}

/// `stored_devices`: what a re-import compares; absent devices left out.
async fn stored_devices_fingerprint_what_a_reimport_compares(b: &Backend) {
    let seed = seeded(b).await;
    let (import, cipher) = (b.import.as_ref(), b.cipher.as_ref());
    let mut ids: Vec<(TenantId, DeviceId)> = seed
        .devices
        .iter()
        .map(|x| (x.device.tenant.clone(), x.device.device_id.clone()))
        .collect();
    ids.push((t("t1"), d("PC-404")));
    ids.push((t("t3"), d("PC-1")));
    let fps = import.stored_devices(&ids).await.unwrap();
    let want: HashMap<(TenantId, DeviceId), StoredDevice> = seed
        .devices
        .iter()
        .map(|x| {
            (
                (x.device.tenant.clone(), x.device.device_id.clone()),
                StoredDevice {
                    fingerprint: Some(recovery_portal::tools::import::fingerprint(x)),
                    owner: x.device.owner.clone(),
                },
            )
        })
        .collect();
    assert_eq!(fps, want);
    // And so importing the same seed again writes nothing.
    let again = recovery_portal::tools::import::import(&seed, cipher, import, &|_, _| {})
        .await
        .unwrap();
    assert_eq!((again.devices, again.keys, again.skipped), (0, 0, 4));
}

/// Everything the cipher port promises.
async fn cipher_contract(cipher: &dyn KeyCipher) {
    let ctx = KeyContext {
        tenant: t("t1"),
        device: d("PC-1"),
        key_id: k(K1),
    };
    let pw = RecoveryPassword::parse(&password(42)).unwrap();
    let sealed = cipher.seal(&ctx, &pw).await.expect("seal");
    assert!(
        !sealed
            .0
            .windows(6)
            .any(|w| w == &pw.expose().as_bytes()[..6]),
        "ciphertext must not contain the plaintext"
    );
    let opened = cipher.open(&ctx, &sealed).await.expect("open");
    assert_eq!(opened.expose(), pw.expose());
    // Sealing twice gives different ciphertexts that both open.
    let sealed2 = cipher.seal(&ctx, &pw).await.unwrap();
    assert_ne!(sealed, sealed2);
    assert_eq!(
        cipher.open(&ctx, &sealed2).await.unwrap().expose(),
        pw.expose()
    );

    let wrong = [
        KeyContext {
            device: d("PC-2"),
            ..ctx.clone()
        },
        KeyContext {
            key_id: k(K2),
            ..ctx.clone()
        },
        KeyContext {
            tenant: t("t2"),
            ..ctx.clone()
        },
    ];
    for other in &wrong {
        match cipher.open(other, &sealed).await {
            Err(CipherError::Rejected(_)) => {}
            Err(e) => panic!("wrong context {other:?}: expected Rejected, got {e:?}"),
            Ok(_) => panic!("wrong context {other:?} opened the key"),
        }
    }
    let mut tampered = sealed.0.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    assert!(matches!(
        cipher.open(&ctx, &SealedKey(tampered)).await,
        Err(CipherError::Rejected(_))
    ));
    assert!(matches!(
        cipher
            .open(&ctx, &SealedKey(b"not a ciphertext at all".to_vec()))
            .await,
        Err(CipherError::Rejected(_))
    ));
}

/// Denied events: each attempt is a record of its own (the same request id
/// twice is two records); at most `cap` per actor and clock hour; then the
/// hour's marker, once.
async fn denial_cap_contract(store: &dyn Store, base: i128) {
    let sec: i128 = 1_000_000_000;
    // An hour boundary: `base` is 2025-06-15T15:06:40Z.
    let hour_start = base - (base % (3600 * sec));
    let denied = |actor: &str, request_id: &str, at: i128| {
        event(
            "t4",
            actor,
            request_id,
            "PC-4",
            None,
            Outcome::Denied,
            hour_start + at,
        )
    };
    let cap = 3;
    let mut stored = Vec::new();
    for i in 0..cap {
        // The same request id each time: three attempts, three records.
        let e = denied("flood", "same-id", i * sec);
        assert_eq!(store.append_denied(&e, 3).await.unwrap(), Denial::Stored);
        stored.push(e);
    }
    let over = denied("flood", "same-id", 10 * sec);
    assert_eq!(
        store.append_denied(&over, 3).await.unwrap(),
        Denial::OverCap { marked: false }
    );
    let marker = AuditEvent {
        reason: "denials_capped".into(),
        device_id: None,
        ..denied("flood", "same-id", 10 * sec)
    };
    assert!(store.append_cap_marker(&marker).await.unwrap());
    let again = AuditEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        ..marker.clone()
    };
    assert!(
        !store.append_cap_marker(&again).await.unwrap(),
        "one marker per hour"
    );
    assert_eq!(
        store
            .append_denied(&denied("flood", "other-id", 3599 * sec), 3)
            .await
            .unwrap(),
        Denial::OverCap { marked: true }
    );
    // Another actor has a cap of its own; the next hour starts afresh.
    let other = denied("quiet", "q-1", 20 * sec);
    assert_eq!(
        store.append_denied(&other, 3).await.unwrap(),
        Denial::Stored
    );
    let next_hour = denied("flood", "same-id", 3600 * sec);
    assert_eq!(
        store.append_denied(&next_hour, 3).await.unwrap(),
        Denial::Stored
    );

    let mut want = vec![next_hour, other, marker];
    want.extend(stored.into_iter().rev());
    let page = store
        .audit_events(&t("t4"), &AuditQuery::default())
        .await
        .unwrap();
    assert_eq!(page.events, want);
    assert_eq!(page.next, None);
}

/// Paging through the trail: `limit`, `cursor`, `since`/`until` and the
/// filters together, in one total order (time at microsecond precision,
/// then event id), on every index the query can use.
async fn paging_contract(store: &dyn Store) {
    let base: i128 = 1_760_000_000_000_000_000;
    let sec: i128 = 1_000_000_000;
    let mut all = Vec::new();
    for i in 0..23i128 {
        let (actor, device) = match i % 3 {
            0 => ("pa", "PC-A"),
            1 => ("pb", "PC-A"),
            _ => ("pa", "PC-B"),
        };
        let mut e = event(
            "t8",
            actor,
            &format!("p-{i}"),
            device,
            None,
            Outcome::Denied,
            base + i * sec,
        );
        e.event_id = format!("ev-{i:02}");
        all.push(e);
    }
    // Two more in one microsecond (other nanoseconds): the event id orders
    // them, "ev-tie-b" after "ev-tie-a" whatever their nanoseconds.
    for (id, nanos) in [("ev-tie-a", 900), ("ev-tie-b", 100)] {
        let mut e = event(
            "t8",
            "pa",
            id,
            "PC-A",
            None,
            Outcome::Denied,
            base + 5 * sec + 500_000 + nanos,
        );
        e.event_id = id.into();
        all.push(e);
    }
    for e in &all {
        assert_eq!(store.append_denied(e, 1000).await.unwrap(), Denial::Stored);
    }
    // The expected order, written out: ev-22 … ev-06, ev-tie-b, ev-tie-a, ev-05 … ev-00.
    let mut newest_first: Vec<String> = (6..23).rev().map(|i| format!("ev-{i:02}")).collect();
    newest_first.extend(["ev-tie-b".to_owned(), "ev-tie-a".to_owned()]);
    newest_first.extend((0..6).rev().map(|i| format!("ev-{i:02}")));
    let at = |i: i128| OffsetDateTime::from_unix_timestamp_nanos(base + i * sec).unwrap();

    let walk = |query: AuditQuery| async move {
        let mut q = query;
        let mut ids = Vec::new();
        let mut pages = 0;
        loop {
            let page = store.audit_events(&t("t8"), &q).await.unwrap();
            pages += 1;
            assert!(page.events.len() <= q.limit);
            if page.next.is_some() {
                assert_eq!(page.events.len(), q.limit, "only the last page is short");
            }
            ids.extend(page.events.iter().map(|e| e.event_id.clone()));
            match page.next {
                Some(c) => {
                    // Cursors survive their text form.
                    q.after = Some(AuditCursor::decode(&c.encode()).unwrap());
                }
                None => break,
            }
        }
        (ids, pages)
    };
    let only = |f: &dyn Fn(&AuditEvent) -> bool| -> Vec<String> {
        let mut sorted = all.clone();
        sorted.retain(|e| f(e));
        newest_first
            .iter()
            .filter(|id| sorted.iter().any(|e| &e.event_id == *id))
            .cloned()
            .collect()
    };

    // The whole tenant (the time shards, merged), 25 events in pages of 4.
    let (ids, pages) = walk(AuditQuery {
        limit: 4,
        ..Default::default()
    })
    .await;
    assert_eq!(ids, newest_first);
    assert_eq!(pages, 7);
    // Exactly one page's worth: no empty page after it.
    let (ids, pages) = walk(AuditQuery {
        limit: 25,
        ..Default::default()
    })
    .await;
    assert_eq!((ids.len(), pages), (25, 1));
    // A time range: since inclusive, until exclusive.
    let (ids, _) = walk(AuditQuery {
        since: Some(at(5)),
        until: Some(at(9)),
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids,
        ["ev-08", "ev-07", "ev-06", "ev-tie-b", "ev-tie-a", "ev-05"]
    );
    // By device (by_device), by actor (by_actor), and both (a filter on
    // by_device), each with a range and small pages.
    let (ids, _) = walk(AuditQuery {
        device_id: Some(d("PC-A")),
        since: Some(at(3)),
        limit: 3,
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids,
        only(&|e| e.device_id == Some(d("PC-A")) && e.time >= at(3))
    );
    let (ids, _) = walk(AuditQuery {
        actor: Some(u("pb")),
        until: Some(at(20)),
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(ids, only(&|e| e.actor == u("pb") && e.time < at(20)));
    assert_eq!(ids.len(), 7);
    let (ids, _) = walk(AuditQuery {
        device_id: Some(d("PC-A")),
        actor: Some(u("pa")),
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids,
        only(&|e| e.device_id == Some(d("PC-A")) && e.actor == u("pa"))
    );
    assert_eq!(ids.len(), 10);
    // A range with nothing in it, and a cursor past the oldest event.
    let (ids, pages) = walk(AuditQuery {
        since: at(100).into(),
        ..Default::default()
    })
    .await;
    assert_eq!((ids.len(), pages), (0, 1));
    let oldest = all.iter().find(|e| e.event_id == "ev-00").unwrap();
    let past = AuditQuery {
        after: Some(AuditCursor(recovery_portal::domain::audit::Position::of(
            oldest,
        ))),
        ..Default::default()
    };
    assert_eq!(
        store.audit_events(&t("t8"), &past).await.unwrap().events,
        vec![]
    );
}

const K6: &str = "6A2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A60";
const K7: &str = "7A2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A70";
const K8: &str = "8A2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A80";

/// The tenant item is the one source of a tenant's policy: a tenant-only
/// import reaches every existing device at once, and a device whose tenant
/// has no item is never self-service.
async fn tenant_policy_contract(
    store: &dyn Store,
    import: &dyn ImportStore,
    cipher: &dyn KeyCipher,
) {
    let with = |self_service: bool, devices: Vec<serde_json::Value>| {
        let json = serde_json::json!({
            "tenants": [{"tenant_id": "t5", "self_service": self_service,
                         "helpdesk": {"name": if self_service { "T5 IT" } else { "T5 Desk" }}}],
            "devices": devices,
        });
        recovery_portal::tools::seed::parse(&json.to_string()).unwrap()
    };
    let on = with(
        true,
        vec![device(
            "t5",
            "PC-5",
            "u5",
            vec![key(K6, "operating_system", 6, "2024-05-15T09:30:00Z")],
        )],
    );
    recovery_portal::tools::import::import(&on, cipher, import, &|_, _| {})
        .await
        .unwrap();
    let (dev, _) = store
        .load_for_disclosure(&t("t5"), &d("PC-5"), &u("u5"))
        .await
        .unwrap();
    assert!(dev.expect("t5/PC-5").policy.self_service);

    // The tenant alone, self-service off: the existing device follows.
    let off = with(false, vec![]);
    let summary = recovery_portal::tools::import::import(&off, cipher, import, &|_, _| {})
        .await
        .unwrap();
    assert_eq!((summary.tenants, summary.devices), (1, 0));
    let want = TenantPolicy {
        self_service: false,
        helpdesk: Some(recovery_portal::domain::model::Helpdesk {
            name: Some("T5 Desk".into()),
            ..Default::default()
        }),
        ..TenantPolicy::default()
    };
    let (dev, _) = store
        .load_for_disclosure(&t("t5"), &d("PC-5"), &u("u5"))
        .await
        .unwrap();
    assert_eq!(dev.expect("t5/PC-5").policy, want);
    let (devices, policy) = store.list_devices(&t("t5"), &u("u5")).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(policy, want);

    // A device written without its tenant (say, an import that stopped
    // after the devices of a tenant that was never loaded): no self-service,
    // whatever the device record says.
    let orphan = with(
        true,
        vec![device(
            "t5",
            "PC-6",
            "u6",
            vec![key(K7, "operating_system", 7, "2024-05-15T09:30:00Z")],
        )],
    );
    let sd = &orphan.devices[0];
    let mut dev = sd.device.clone();
    dev.tenant = t("t6");
    let ctx = KeyContext {
        tenant: t("t6"),
        device: d("PC-6"),
        key_id: k(K7),
    };
    let sealed = cipher.seal(&ctx, &sd.passwords[0].1).await.unwrap();
    import
        .put_devices(&[recovery_portal::domain::ports::ImportDevice {
            sealed: recovery_portal::domain::model::SealedDevice {
                device: dev,
                policy: TenantPolicy {
                    self_service: true,
                    helpdesk: None,
                    ..TenantPolicy::default()
                },
                sealed: vec![(k(K7), sealed)],
            },
            fingerprint: "orphan".into(),
            digests: Vec::new(),
        }])
        .await
        .unwrap();
    let (dev, _) = store
        .load_for_disclosure(&t("t6"), &d("PC-6"), &u("u6"))
        .await
        .unwrap();
    let dev = dev.expect("t6/PC-6 is stored");
    assert!(!dev.policy.self_service, "{:?}", dev.policy);
    let (devices, policy) = store.list_devices(&t("t6"), &u("u6")).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert!(!policy.self_service, "{policy:?}");
}

/// A re-import that moves a device to another owner records the change in
/// the audit trail, under the importer's identity.
async fn ownership_change_contract(
    store: &dyn Store,
    import: &dyn ImportStore,
    cipher: &dyn KeyCipher,
) {
    let owned_by = |owner: &str| {
        let json = serde_json::json!({
            "tenants": [{"tenant_id": "t7", "self_service": true}],
            "devices": [device(
                "t7",
                "PC-7",
                owner,
                vec![key(K8, "operating_system", 8, "2024-05-15T09:30:00Z")],
            )],
        });
        recovery_portal::tools::seed::parse(&json.to_string()).unwrap()
    };
    let q = AuditQuery {
        device_id: Some(d("PC-7")),
        ..Default::default()
    };
    let admin = UserId::importer("admin").unwrap();
    let run = |owner: &str| {
        let seed = owned_by(owner);
        let admin = admin.clone();
        async move {
            recovery_portal::tools::import::import_as(&seed, cipher, import, &admin, &|_, _| {})
                .await
                .unwrap()
        }
    };
    assert_eq!(
        run("u7").await.owner_changes,
        0,
        "a new device moves nowhere"
    );
    assert!(
        store
            .audit_events(&t("t7"), &q)
            .await
            .unwrap()
            .events
            .is_empty()
    );
    let moved = run("u8").await;
    assert_eq!((moved.devices, moved.owner_changes), (1, 1));
    let events = store.audit_events(&t("t7"), &q).await.unwrap().events;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.reason, "owner_changed");
    assert_eq!(e.outcome, Outcome::Changed);
    assert_eq!(e.actor.as_str(), "import:admin");
    assert_eq!(e.device_id, Some(d("PC-7")));
    assert_eq!(e.key_id, None);
    assert_eq!(e.justification.as_deref(), Some("owner u7 -> u8"));
    // The importer's events are found by actor too.
    let by_importer = AuditQuery {
        actor: Some(UserId::parse_actor("import:admin").unwrap()),
        ..Default::default()
    };
    assert_eq!(
        store
            .audit_events(&t("t7"), &by_importer)
            .await
            .unwrap()
            .events,
        events
    );
    // The same file again changes nothing and records nothing.
    assert_eq!(run("u8").await.skipped, 1);
    assert_eq!(
        store.audit_events(&t("t7"), &q).await.unwrap().events.len(),
        1
    );
    let (dev, _) = store
        .load_for_disclosure(&t("t7"), &d("PC-7"), &u("u8"))
        .await
        .unwrap();
    assert_eq!(dev.unwrap().device.owner, u("u8"));
}

/// A re-import that changes a tenant's settings records the change in the
/// audit trail, as `PATCH /v1/tenant/settings` does, under the importer's
/// identity: one `settings_change` event per tenant actually changed, none
/// for a tenant the file leaves as it is (nor for a tenant it creates).
async fn settings_change_contract(
    store: &dyn Store,
    import: &dyn ImportStore,
    cipher: &dyn KeyCipher,
) {
    let tenants = |t8: serde_json::Value| {
        let json = serde_json::json!({
            "tenants": [t8, {"tenant_id": "t9", "self_service": true}],
            "devices": [],
        });
        recovery_portal::tools::seed::parse(&json.to_string()).unwrap()
    };
    let admin = UserId::importer("admin").unwrap();
    let by_importer = AuditQuery {
        actor: Some(UserId::parse_actor("import:admin").unwrap()),
        ..Default::default()
    };
    let run = |t8: serde_json::Value| {
        let seed = tenants(t8);
        let admin = admin.clone();
        async move {
            recovery_portal::tools::import::import_as(&seed, cipher, import, &admin, &|_, _| {})
                .await
                .unwrap()
        }
    };
    let events = |tenant: &'static str| {
        let q = by_importer.clone();
        async move { store.audit_events(&t(tenant), &q).await.unwrap().events }
    };
    let first = serde_json::json!({"tenant_id": "t8", "self_service": true,
                                   "helpdesk": {"name": "T8 IT"}});
    assert_eq!(run(first.clone()).await.settings_changes, 0, "new tenants");
    assert_eq!(run(first).await.settings_changes, 0, "the same file again");
    assert!(events("t8").await.is_empty());

    let changed = serde_json::json!({"tenant_id": "t8", "self_service": false,
        "helpdesk": {"name": "T8 IT"}, "require_reason": "always",
        "superseded_key_retention_days": 90});
    assert_eq!(run(changed.clone()).await.settings_changes, 1);
    let got = events("t8").await;
    assert_eq!(got.len(), 1, "{got:?}");
    let e = &got[0];
    assert_eq!(
        e.action,
        recovery_portal::domain::audit::Action::SettingsChange
    );
    assert_eq!(e.actor.as_str(), "import:admin");
    assert_eq!(e.outcome, Outcome::Changed);
    assert_eq!(e.reason, "settings_changed");
    assert_eq!((e.device_id.as_ref(), e.key_id), (None, None));
    assert_eq!(
        e.justification.as_deref(),
        Some(
            "self_service true -> false; require_reason never -> always; \
             superseded_key_retention_days 30 -> 90"
        )
    );
    assert!(e.request_id.starts_with("import-"), "{}", e.request_id);
    // The tenant the file left unchanged got none.
    assert!(events("t9").await.is_empty());
    // Unchanged again: nothing more.
    assert_eq!(run(changed).await.settings_changes, 0);
    assert_eq!(events("t8").await.len(), 1);
    // The helpdesk alone.
    let helpdesk = serde_json::json!({"tenant_id": "t8", "self_service": false,
        "helpdesk": {"name": "T8 Desk"}, "require_reason": "always",
        "superseded_key_retention_days": 90});
    assert_eq!(run(helpdesk).await.settings_changes, 1);
    let got = events("t8").await;
    assert_eq!(got.len(), 2, "{got:?}");
    // What users were told before and after, not just that it changed.
    assert_eq!(
        got[0].justification.as_deref(),
        Some(r#"helpdesk {"name":"T8 IT"} -> {"name":"T8 Desk"}"#)
    );
    let (_, policy) = store.list_devices(&t("t8"), &u("u8")).await.unwrap();
    assert_eq!(
        policy.helpdesk.and_then(|h| h.name).as_deref(),
        Some("T8 Desk")
    );
}

/// An import whose settings-change events cannot be stored writes no tenant
/// (nor any device): a change is never made without its record.
#[tokio::test]
async fn an_import_whose_settings_change_cannot_be_recorded_changes_nothing() {
    struct NoAudit<'a>(&'a MemoryStore);
    #[async_trait::async_trait]
    impl ImportStore for NoAudit<'_> {
        async fn stored_devices(
            &self,
            devices: &[(TenantId, DeviceId)],
        ) -> Result<HashMap<(TenantId, DeviceId), StoredDevice>, Unavailable> {
            self.0.stored_devices(devices).await
        }
        async fn stored_tenants(
            &self,
            tenants: &[TenantId],
        ) -> Result<HashMap<TenantId, TenantPolicy>, Unavailable> {
            self.0.stored_tenants(tenants).await
        }
        async fn put_tenants(
            &self,
            tenants: &[recovery_portal::domain::model::Tenant],
        ) -> Result<(), Unavailable> {
            self.0.put_tenants(tenants).await
        }
        async fn put_devices(
            &self,
            devices: &[recovery_portal::domain::ports::ImportDevice],
        ) -> Result<(), Unavailable> {
            self.0.put_devices(devices).await
        }
        async fn append_import_events(&self, _: &[AuditEvent]) -> Result<(), Unavailable> {
            Err(Unavailable::new(Cause::Audit, "the audit table is down"))
        }
    }
    let store = MemoryStore::new();
    let cipher = LocalCipher::random();
    let with = |self_service: bool| {
        let json = serde_json::json!({
            "tenants": [{"tenant_id": "t8", "self_service": self_service}],
            "devices": [device(
                "t8",
                "PC-8",
                "u8",
                vec![key(K8, "operating_system", 8, "2024-05-15T09:30:00Z")],
            )],
        });
        recovery_portal::tools::seed::parse(&json.to_string()).unwrap()
    };
    recovery_portal::tools::import::import(&with(true), &cipher, &store, &|_, _| {})
        .await
        .unwrap();
    let e =
        recovery_portal::tools::import::import(&with(false), &cipher, &NoAudit(&store), &|_, _| {})
            .await
            .unwrap_err();
    assert!(e.to_string().contains("audit"), "{e}");
    let (_, policy) = store.list_devices(&t("t8"), &u("u8")).await.unwrap();
    assert!(
        policy.self_service,
        "the settings were changed without a record"
    );
    assert!(
        store
            .audit_events(&t("t8"), &AuditQuery::default())
            .await
            .unwrap()
            .events
            .is_empty()
    );
}

/// The tenant item is the one source of a tenant's policy.
async fn tenant_item_is_the_one_source_of_policy(b: &Backend) {
    tenant_policy_contract(b.store.as_ref(), b.import.as_ref(), b.cipher.as_ref()).await;
}

/// A re-import that moves a device to another owner is audited.
async fn reimport_audits_an_owner_change(b: &Backend) {
    ownership_change_contract(b.store.as_ref(), b.import.as_ref(), b.cipher.as_ref()).await;
}

/// A re-import that changes a tenant's settings is audited.
async fn reimport_audits_a_settings_change(b: &Backend) {
    settings_change_contract(b.store.as_ref(), b.import.as_ref(), b.cipher.as_ref()).await;
}

/// The `KeyCipher` port: seal, open, and reject any other context.
async fn cipher_seals_opens_and_rejects_other_contexts(b: &Backend) {
    cipher_contract(b.cipher.as_ref()).await;
}

macro_rules! store_contract_tests {
    ($($backend:ident),*) => {
        $(contract_tests!($backend, [
            list_devices_shows_an_owners_devices_and_the_tenant_policy,
            find_keys_match_a_prefix_within_the_tenant,
            load_for_disclosure_returns_one_tenants_sealed_keys,
            commit_disclosure_refuses_a_stale_rate_window,
            append_denied_caps_records_per_actor_and_hour,
            audit_events_filter_newest_first_within_the_tenant,
            audit_events_page_in_one_total_order,
            stored_devices_fingerprint_what_a_reimport_compares,
            tenant_item_is_the_one_source_of_policy,
            reimport_audits_an_owner_change,
            reimport_audits_a_settings_change,
            cipher_seals_opens_and_rejects_other_contexts,
        ]);)*
    };
}
store_contract_tests!(embedded, sqlite, dynamodb);
