//! One contract for the `Store`, `ImportStore` and `KeyCipher` ports, run
//! against the embedded adapters and against DynamoDB + KMS on moto, so the
//! two backends cannot drift apart.
//!
//! The moto half needs `PORTAL_TEST_MOTO_URL` (see scripts/moto.sh) and fails
//! when it is not set.

use crate::support::aws as common_aws;

use common_aws::{device, key, moto_env, password, seed_json};
use recovery_portal::adapters::embedded::{LocalCipher, MemoryStore};
use recovery_portal::domain::audit::{AuditEvent, AuditQuery, Outcome};
use recovery_portal::domain::ids::{DeviceId, KeyId, KeyIdPrefix, TenantId, UserId};
use recovery_portal::domain::model::{KeyContext, RecoveryPassword, SealedKey, TenantPolicy};
use recovery_portal::domain::ratelimit::{self, RateWindow};
use recovery_portal::ports::{CipherError, Commit, ImportStore, KeyCipher, Store};
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

fn contract_seed() -> recovery_portal::tools::seed::Seed {
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

/// Everything the store ports promise, asserted identically on any backend.
async fn store_contract(store: &dyn Store, import: &dyn ImportStore, cipher: &dyn KeyCipher) {
    let seed = contract_seed();
    let summary = recovery_portal::tools::import::import(&seed, cipher, import, &|_, _| {})
        .await
        .expect("import");
    assert_eq!(summary.devices, 4);
    assert_eq!(summary.keys, 5);
    assert_eq!(summary.skipped, 0);

    let policy_t1 = seed.tenants[0].policy.clone();
    let policy_t2 = seed.tenants[1].policy.clone();
    let seeded = |tenant: &str, id: &str| {
        seed.devices
            .iter()
            .find(|x| x.device.tenant == t(tenant) && x.device.device_id == d(id))
            .unwrap()
    };

    // --- list_devices: metadata and the tenant's policy, one tenant only.
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
    // An unknown tenant behaves as self-service without helpdesk details.
    let (devices, policy) = store.list_devices(&t("t3"), &u("u1")).await.unwrap();
    assert!(devices.is_empty());
    assert_eq!(policy, TenantPolicy::default());

    // --- find_keys: prefix lookup within the tenant.
    let ids = |v: Vec<recovery_portal::ports::KeyLocation>| {
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

    // --- load_for_disclosure: device, policy and sealed keys of one tenant.
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

    // --- commit_disclosure: written, duplicate, reused request id, conflict.
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
    let u1 = ratelimit::admit(&window, e1.time, 10).unwrap();
    assert_eq!(
        store.commit_disclosure(&e1, &u1).await.unwrap(),
        Commit::Written
    );
    // The same request again (a client retry): new event id, same device and key.
    let retry = AuditEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        ..e1.clone()
    };
    assert_eq!(
        store.commit_disclosure(&retry, &u1).await.unwrap(),
        Commit::Duplicate
    );
    let reused = AuditEvent {
        key_id: Some(k(K2)),
        ..retry.clone()
    };
    assert_eq!(
        store.commit_disclosure(&reused, &u1).await.unwrap(),
        Commit::RequestIdReused
    );
    let reused_device = AuditEvent {
        device_id: Some(d("PC-2")),
        key_id: Some(k(K3)),
        ..retry.clone()
    };
    assert_eq!(
        store.commit_disclosure(&reused_device, &u1).await.unwrap(),
        Commit::RequestIdReused
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
    assert_eq!(window.recent, vec![(base / sec) as i64]);
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
    assert_eq!(window.recent.len(), 2);
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

    // --- append_audit: idempotent on (tenant, actor, request id).
    let e3 = event(
        "t1",
        "u2",
        "req-3",
        "PC-1",
        None,
        Outcome::Denied,
        base + 3 * sec,
    );
    store.append_audit(&e3).await.unwrap();
    let e3_again = AuditEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        ..e3.clone()
    };
    store.append_audit(&e3_again).await.unwrap();
    // A denied event after a granted one of the same request changes nothing.
    let late = AuditEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        outcome: Outcome::Denied,
        ..e1.clone()
    };
    store.append_audit(&late).await.unwrap();

    // --- audit_events: filters, newest first, limit, tenant isolation.
    let q = |device: Option<&str>, actor: Option<&str>, limit: usize| AuditQuery {
        device_id: device.map(d),
        actor: actor.map(u),
        limit,
    };
    let all = store
        .audit_events(&t("t1"), &q(None, None, 100))
        .await
        .unwrap();
    assert_eq!(all, vec![e3.clone(), e2.clone(), e1.clone()]);
    let newest = store
        .audit_events(&t("t1"), &q(None, None, 1))
        .await
        .unwrap();
    assert_eq!(newest, vec![e3.clone()]);
    let by_device = store
        .audit_events(&t("t1"), &q(Some("PC-1"), None, 100))
        .await
        .unwrap();
    assert_eq!(by_device, vec![e3.clone(), e1.clone()]);
    let by_actor = store
        .audit_events(&t("t1"), &q(None, Some("u1"), 100))
        .await
        .unwrap();
    assert_eq!(by_actor, vec![e2.clone(), e1.clone()]);
    let by_both = store
        .audit_events(&t("t1"), &q(Some("PC-1"), Some("u1"), 100))
        .await
        .unwrap();
    assert_eq!(by_both, vec![e1.clone()]);
    // The newest PC-1 event is u2's: the filter drops it and the query must
    // read on (paginate) to fill the limit.
    let filtered_limited = store
        .audit_events(&t("t1"), &q(Some("PC-1"), Some("u1"), 1))
        .await
        .unwrap();
    assert_eq!(filtered_limited, vec![e1.clone()]);
    let limited = store
        .audit_events(&t("t1"), &q(Some("PC-1"), None, 1))
        .await
        .unwrap();
    assert_eq!(limited, vec![e3.clone()]);
    let t2_events = store
        .audit_events(&t("t2"), &q(None, None, 100))
        .await
        .unwrap();
    assert_eq!(t2_events, vec![e_t2.clone()]);
    assert!(
        store
            .audit_events(&t("t2"), &q(Some("PC-2"), None, 100))
            .await
            .unwrap()
            .is_empty()
    );

    // --- fingerprints: what a re-import compares; absent devices left out.
    let mut ids: Vec<(TenantId, DeviceId)> = seed
        .devices
        .iter()
        .map(|x| (x.device.tenant.clone(), x.device.device_id.clone()))
        .collect();
    ids.push((t("t1"), d("PC-404")));
    ids.push((t("t3"), d("PC-1")));
    let fps = import.fingerprints(&ids).await.unwrap();
    let want: HashMap<(TenantId, DeviceId), String> = seed
        .devices
        .iter()
        .map(|x| {
            (
                (x.device.tenant.clone(), x.device.device_id.clone()),
                recovery_portal::tools::import::fingerprint(x),
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

#[tokio::test]
async fn embedded_backends_keep_the_contract() {
    let store = MemoryStore::new();
    let cipher = LocalCipher::random();
    store_contract(&store, &store, &cipher).await;
    cipher_contract(&cipher).await;
}

#[tokio::test]
async fn aws_backends_on_moto_keep_the_contract() {
    let env = moto_env().await;
    store_contract(env.store.as_ref(), env.store.as_ref(), env.cipher.as_ref()).await;
    cipher_contract(env.cipher.as_ref()).await;
}
