//! The contract of the `LifecycleStore` port (and of what it changes on the
//! `Store` side: disclosure marks, settings on the read path), run against
//! the embedded store and against DynamoDB + KMS on moto.

use crate::support::aws as common_aws;

use crate::contract_backends::{Backend, contract_tests};
use common_aws::{device, key, moto_env, password, seed_json};
use recovery_portal::domain::audit::{Action, AuditEvent, AuditQuery, Outcome};
use recovery_portal::domain::ids::{DeviceId, KeyId, KeyIdPrefix, TenantId, UserId};
use recovery_portal::domain::lifecycle::key_digest;
use recovery_portal::domain::model::{
    Device, Helpdesk, KeyContext, KeyMeta, ManagedBy, RecoveryPassword, RequireReason,
    TenantPolicy, VolumeType,
};
use recovery_portal::domain::ports::{
    Commit, DeviceUpsert, EscrowWrite, ImportStore, KeyCipher, LifecycleStore, Store, WriteOutcome,
};
use recovery_portal::domain::ratelimit::{self, RateWindow};
use std::collections::BTreeSet;
use time::{Duration, OffsetDateTime};

const K6: &str = "6A2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A60";
const K7: &str = "7A2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A70";
const K8: &str = "8A2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A80";

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

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn write_event(action: Action, tenant: &str, device: Option<&str>, request_id: &str) -> AuditEvent {
    AuditEvent {
        action,
        event_id: uuid::Uuid::new_v4().to_string(),
        time: at(T0),
        tenant_id: t(tenant),
        actor: u("mdm-sync"),
        device_id: device.map(d),
        key_id: None,
        outcome: Outcome::Granted,
        reason: "contract".into(),
        justification: None,
        source_ip: None,
        user_agent: None,
        request_id: request_id.into(),
    }
}

fn ctx(tenant: &str, device: &str, key_id: &str) -> KeyContext {
    KeyContext {
        tenant: t(tenant),
        device: d(device),
        key_id: k(key_id),
    }
}

fn pw(n: u32) -> RecoveryPassword {
    RecoveryPassword::parse(&password(n)).unwrap()
}

/// The steps of the lifecycle story, in order: a case runs the story up to
/// and including its step, since each step reads what the ones before it
/// wrote (so the first failing case names the step at fault).
#[derive(Clone, Copy, PartialEq)]
enum Step {
    DeviceForWrite,
    CommitUpsert,
    CommitEscrow,
    DisclosureMarks,
    Supersede,
    StoredKeys,
    TenantSettings,
    SweepExpired,
    RetireRestore,
    AuditTrail,
    RotationPages,
}

/// Every `LifecycleStore` operation, asserted identically on any backend.
/// `sweeps`: whether `sweep_expired` deletes (embedded) or leaves it to
/// DynamoDB TTL (AWS).
async fn lifecycle_contract(
    store: &dyn Store,
    life: &dyn LifecycleStore,
    import: &dyn ImportStore,
    cipher: &dyn KeyCipher,
    sweeps: bool,
    upto: Step,
) {
    // A tenant with an imported device, so settings start from the file.
    let seed = recovery_portal::tools::seed::parse(&seed_json(vec![device(
        "t1",
        "PC-1",
        "u1",
        vec![key(
            "1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5B",
            "operating_system",
            1,
            "2024-05-15T09:30:00Z",
        )],
    )]))
    .unwrap();
    recovery_portal::tools::import::import(&seed, cipher, import, &|_, _| {})
        .await
        .unwrap();
    let t1_policy = seed.tenants[0].policy.clone();

    // --- device_for_write: nothing for an unknown device; the settings.
    let (none, policy) = life.device_for_write(&t("t1"), &d("PC-5")).await.unwrap();
    assert!(none.is_none());
    assert_eq!(policy, t1_policy);
    // The imported device has a digest per key (so a repeated escrow is
    // recognised without decrypting).
    let (imported, _) = life.device_for_write(&t("t1"), &d("PC-1")).await.unwrap();
    let imported = imported.expect("imported device");
    let k1 = imported.device.keys[0].key_id;
    assert_eq!(
        imported.digests,
        vec![(
            k1,
            key_digest(
                &KeyContext {
                    tenant: t("t1"),
                    device: d("PC-1"),
                    key_id: k1
                },
                &pw(1)
            )
        )]
    );

    if upto == Step::DeviceForWrite {
        return;
    }

    // --- commit_upsert: create once, then only against the version read.
    let pc5 = Device {
        tenant: t("t1"),
        device_id: d("PC-5"),
        owner: u("u5"),
        display_name: "PC-5 of u5".into(),
        os: "Windows 11".into(),
        managed_by: ManagedBy::Organization,
        keys: vec![],
        owner_since: None,
        retired: None,
    };
    let create = DeviceUpsert {
        device: pc5.clone(),
        expected_version: None,
    };
    let e = write_event(Action::DeviceUpsert, "t1", Some("PC-5"), "w-1");
    assert_eq!(
        life.commit_upsert(&create, &e).await.unwrap(),
        WriteOutcome::Written
    );
    let e = write_event(Action::DeviceUpsert, "t1", Some("PC-5"), "w-2");
    assert_eq!(
        life.commit_upsert(&create, &e).await.unwrap(),
        WriteOutcome::Conflict,
        "a device is created once"
    );
    let (rec, _) = life.device_for_write(&t("t1"), &d("PC-5")).await.unwrap();
    let rec = rec.expect("enrolled");
    assert_eq!(rec.device, pc5);
    assert!(rec.current.is_empty() && rec.digests.is_empty());
    assert!(rec.version > 0);
    let (listed, _) = store.list_devices(&t("t1"), &u("u5")).await.unwrap();
    assert_eq!(listed, vec![pc5.clone()]);
    // Not visible from another tenant.
    let (other, _) = life.device_for_write(&t("t2"), &d("PC-5")).await.unwrap();
    assert!(other.is_none());

    // A new owner: stale version refused, current version written, listing
    // follows the owner.
    let moved = Device {
        owner: u("u6"),
        display_name: "Renamed".into(),
        ..pc5.clone()
    };
    let e = write_event(Action::DeviceUpsert, "t1", Some("PC-5"), "w-3");
    assert_eq!(
        life.commit_upsert(
            &DeviceUpsert {
                device: moved.clone(),
                expected_version: Some(rec.version + 7)
            },
            &e
        )
        .await
        .unwrap(),
        WriteOutcome::Conflict
    );
    assert_eq!(
        life.commit_upsert(
            &DeviceUpsert {
                device: moved.clone(),
                expected_version: Some(rec.version)
            },
            &e
        )
        .await
        .unwrap(),
        WriteOutcome::Written
    );
    assert!(
        store
            .list_devices(&t("t1"), &u("u5"))
            .await
            .unwrap()
            .0
            .is_empty()
    );
    assert_eq!(
        store.list_devices(&t("t1"), &u("u6")).await.unwrap().0,
        vec![moved.clone()]
    );

    if upto == Step::CommitUpsert {
        return;
    }

    // --- commit_escrow: the first key.
    let (rec, _) = life.device_for_write(&t("t1"), &d("PC-5")).await.unwrap();
    let rec = rec.unwrap();
    let k6_sealed = cipher.seal(&ctx("t1", "PC-5", K6), &pw(6)).await.unwrap();
    let k6 = KeyMeta::new(k(K6), VolumeType::OperatingSystem, at(T0 - 86_400));
    let digest6 = key_digest(&ctx("t1", "PC-5", K6), &pw(6));
    let escrow6 = EscrowWrite {
        device: Device {
            keys: vec![k6.clone()],
            ..moved.clone()
        },
        expected_version: rec.version,
        added: k6.clone(),
        current: vec![(k(K6), k6_sealed.clone())],
        digests: vec![(k(K6), digest6.clone())],
        superseded: vec![],
    };
    let e = write_event(Action::Escrow, "t1", Some("PC-5"), "w-4");
    assert_eq!(
        life.commit_escrow(&escrow6, &e).await.unwrap(),
        WriteOutcome::Written
    );
    // The same version again: a conflict.
    let e = write_event(Action::Escrow, "t1", Some("PC-5"), "w-5");
    assert_eq!(
        life.commit_escrow(&escrow6, &e).await.unwrap(),
        WriteOutcome::Conflict
    );
    let (rec, _) = life.device_for_write(&t("t1"), &d("PC-5")).await.unwrap();
    let rec = rec.unwrap();
    assert_eq!(rec.device.keys, vec![k6.clone()]);
    assert_eq!(rec.current, vec![(k(K6), k6_sealed.clone())]);
    assert_eq!(rec.digests, vec![(k(K6), digest6.clone())]);
    let reuse = EscrowWrite {
        expected_version: rec.version,
        ..escrow6.clone()
    };
    // A request id used before is no obstacle: every attempt is an audit
    // record of its own (the README's request-id rule).
    let e = write_event(Action::Escrow, "t1", Some("PC-5"), "w-4");
    assert_eq!(
        life.commit_escrow(&reuse, &e).await.unwrap(),
        WriteOutcome::Written
    );
    // Retrieval sees the key; the helpdesk lookup finds it under the new owner.
    let (loaded, window) = store
        .load_for_disclosure(&t("t1"), &d("PC-5"), &u("u6"))
        .await
        .unwrap();
    let loaded = loaded.unwrap();
    assert_eq!(loaded.sealed, vec![(k(K6), k6_sealed.clone())]);
    let opened = cipher
        .open(&ctx("t1", "PC-5", K6), &loaded.sealed[0].1)
        .await
        .unwrap();
    assert_eq!(opened.expose(), password(6));
    let found = store
        .find_keys(&t("t1"), &KeyIdPrefix::parse("6a2e3d4c").unwrap())
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (&found[0].owner, found[0].display_name.as_str()),
        (&u("u6"), "Renamed")
    );
    assert!(
        life.rotation_requests(&t("t1"), None, 10)
            .await
            .unwrap()
            .devices
            .is_empty()
    );

    if upto == Step::CommitEscrow {
        return;
    }

    // --- a granted disclosure marks the key and requests its rotation.
    let disclose = |key: &str, request_id: &str, time: i64| AuditEvent {
        action: Action::Disclose,
        event_id: uuid::Uuid::new_v4().to_string(),
        time: at(time),
        tenant_id: t("t1"),
        actor: u("helpdesk-1"),
        device_id: Some(d("PC-5")),
        key_id: Some(k(key)),
        outcome: Outcome::Granted,
        reason: "helpdesk".into(),
        justification: None,
        source_ip: None,
        user_agent: None,
        request_id: request_id.into(),
    };
    let d1 = disclose(K6, "r-1", T0 + 60);
    let up = ratelimit::admit(&window, d1.time, 10).unwrap();
    assert_eq!(
        store.commit_disclosure(&d1, &up).await.unwrap(),
        Commit::Written
    );
    let (listed, _) = store.list_devices(&t("t1"), &u("u6")).await.unwrap();
    assert_eq!(listed[0].keys[0].disclosed_at, Some(at(T0 + 60)));
    // A second disclosure keeps the first time.
    let (_, window) = store
        .load_for_disclosure(&t("t1"), &d("PC-5"), &u("helpdesk-1"))
        .await
        .unwrap();
    let d2 = disclose(K6, "r-2", T0 + 120);
    let up = ratelimit::admit(&window, d2.time, 10).unwrap();
    assert_eq!(
        store.commit_disclosure(&d2, &up).await.unwrap(),
        Commit::Written
    );
    let page = life.rotation_requests(&t("t1"), None, 10).await.unwrap();
    assert_eq!(page.devices.len(), 1);
    assert_eq!(page.devices[0].device_id, d("PC-5"));
    assert_eq!(page.devices[0].keys[0].disclosed_at, Some(at(T0 + 60)));
    assert!(page.next.is_none());
    assert!(
        life.rotation_requests(&t("t2"), None, 10)
            .await
            .unwrap()
            .devices
            .is_empty(),
        "rotation requests stay in their tenant"
    );
    // The disclosure moved the version on: an escrow prepared before it
    // must read again (or it would erase the mark).
    let e = write_event(Action::Escrow, "t1", Some("PC-5"), "w-6");
    assert_eq!(
        life.commit_escrow(
            &EscrowWrite {
                expected_version: rec.version,
                ..escrow6.clone()
            },
            &e
        )
        .await
        .unwrap(),
        WriteOutcome::Conflict
    );

    if upto == Step::DisclosureMarks {
        return;
    }

    // --- a newer key supersedes K6: rotation request cleared, K6 kept apart.
    let (rec, settings) = life.device_for_write(&t("t1"), &d("PC-5")).await.unwrap();
    let rec = rec.unwrap();
    let k6_now = rec.device.keys[0].clone();
    assert_eq!(k6_now.disclosed_at, Some(at(T0 + 60)));
    let expires = at(T0 + 300) + Duration::days(i64::from(settings.superseded_key_retention_days));
    let k6_old = KeyMeta {
        superseded_at: Some(at(T0 + 300)),
        expires_at: Some(expires),
        ..k6_now
    };
    let k7 = KeyMeta::new(k(K7), VolumeType::OperatingSystem, at(T0 + 300));
    let k7_sealed = cipher.seal(&ctx("t1", "PC-5", K7), &pw(7)).await.unwrap();
    let e = write_event(Action::Escrow, "t1", Some("PC-5"), "w-7");
    assert_eq!(
        life.commit_escrow(
            &EscrowWrite {
                device: Device {
                    keys: vec![k6_old.clone(), k7.clone()],
                    ..moved.clone()
                },
                expected_version: rec.version,
                added: k7.clone(),
                current: vec![(k(K7), k7_sealed.clone())],
                digests: vec![
                    (k(K6), digest6.clone()),
                    (k(K7), key_digest(&ctx("t1", "PC-5", K7), &pw(7)))
                ],
                superseded: vec![(k6_old.clone(), k6_sealed.clone())],
            },
            &e
        )
        .await
        .unwrap(),
        WriteOutcome::Written
    );
    assert!(
        life.rotation_requests(&t("t1"), None, 10)
            .await
            .unwrap()
            .devices
            .is_empty(),
        "superseding clears the rotation request"
    );
    let (loaded, _) = store
        .load_for_disclosure(&t("t1"), &d("PC-5"), &u("u6"))
        .await
        .unwrap();
    let loaded = loaded.unwrap();
    assert_eq!(loaded.sealed, vec![(k(K7), k7_sealed.clone())]);
    assert_eq!(loaded.device.keys, vec![k6_old.clone(), k7.clone()]);
    let apart = life
        .superseded_key(&t("t1"), &d("PC-5"), &k(K6))
        .await
        .unwrap()
        .expect("the superseded ciphertext is kept");
    assert_eq!(
        cipher
            .open(&ctx("t1", "PC-5", K6), &apart)
            .await
            .unwrap()
            .expose(),
        password(6)
    );
    assert!(
        life.superseded_key(&t("t1"), &d("PC-5"), &k(K7))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        life.superseded_key(&t("t2"), &d("PC-5"), &k(K6))
            .await
            .unwrap()
            .is_none()
    );
    // Disclosing the superseded key (the helpdesk, by key ID) records the
    // event but requests no rotation.
    let (_, window) = store
        .load_for_disclosure(&t("t1"), &d("PC-5"), &u("helpdesk-1"))
        .await
        .unwrap();
    let d3 = disclose(K6, "r-3", T0 + 400);
    let up = ratelimit::admit(&window, d3.time, 10).unwrap();
    assert_eq!(
        store.commit_disclosure(&d3, &up).await.unwrap(),
        Commit::Written
    );
    assert!(
        life.rotation_requests(&t("t1"), None, 10)
            .await
            .unwrap()
            .devices
            .is_empty()
    );

    if upto == Step::Supersede {
        return;
    }

    // --- stored_keys: current and superseded ciphertexts, one tenant.
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = life
            .stored_keys(Some(&t("t1")), cursor.as_deref())
            .await
            .unwrap();
        all.extend(page.keys);
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let found: BTreeSet<(String, String, bool)> = all
        .iter()
        .map(|s| {
            (
                s.context.device.to_string(),
                s.context.key_id.to_string(),
                s.superseded,
            )
        })
        .collect();
    assert_eq!(
        found,
        BTreeSet::from([
            ("PC-1".into(), k1.to_string(), false),
            ("PC-5".into(), K6.into(), true),
            ("PC-5".into(), K7.into(), false),
        ])
    );
    for s in &all {
        assert!(cipher.open(&s.context, &s.sealed).await.is_ok(), "{s:?}");
    }

    if upto == Step::StoredKeys {
        return;
    }

    // --- tenant settings: versioned, audited, read by the next request.
    let (current, v0) = life.tenant_settings(&t("t1")).await.unwrap();
    assert_eq!(current, t1_policy);
    let strict = TenantPolicy {
        self_service: false,
        helpdesk: Some(Helpdesk {
            name: Some("Desk".into()),
            ..Default::default()
        }),
        require_reason: RequireReason::Always,
        superseded_key_retention_days: 7,
        retired_device_retention_days: 14,
        // Per-tenant limits round-trip too (set here, cleared below).
        self_service_rate_limit: Some(25),
        helpdesk_rate_limit: Some(900),
        incident: None,
    };
    let e = write_event(Action::SettingsChange, "t1", None, "w-8");
    assert_eq!(
        life.commit_settings(&t("t1"), &strict, v0, &e)
            .await
            .unwrap(),
        WriteOutcome::Written
    );
    let e = write_event(Action::SettingsChange, "t1", None, "w-9");
    assert_eq!(
        life.commit_settings(&t("t1"), &t1_policy, v0, &e)
            .await
            .unwrap(),
        WriteOutcome::Conflict
    );
    let (now, v1) = life.tenant_settings(&t("t1")).await.unwrap();
    assert_eq!((now, v1 > v0), (strict.clone(), true));
    let (loaded, _) = store
        .load_for_disclosure(&t("t1"), &d("PC-1"), &u("u1"))
        .await
        .unwrap();
    assert_eq!(
        loaded.unwrap().policy,
        strict,
        "retrieval reads the new settings"
    );
    assert_eq!(
        store.list_devices(&t("t1"), &u("u1")).await.unwrap().1,
        strict
    );
    // Clearing the helpdesk and the per-tenant limits.
    let open = TenantPolicy {
        helpdesk: None,
        self_service_rate_limit: None,
        helpdesk_rate_limit: None,
        ..strict.clone()
    };
    let e = write_event(Action::SettingsChange, "t1", None, "w-10");
    assert_eq!(
        life.commit_settings(&t("t1"), &open, v1, &e).await.unwrap(),
        WriteOutcome::Written
    );
    assert_eq!(life.tenant_settings(&t("t1")).await.unwrap().0, open);
    // An import that names the tenant sets all its settings again (the
    // ones the file leaves out take their defaults).
    let reimport = recovery_portal::tools::seed::parse(
        &serde_json::json!({
            "tenants": [{"tenant_id": "t1", "self_service": true, "require_reason": "helpdesk", "superseded_key_retention_days": 90}],
        })
        .to_string(),
    )
    .unwrap();
    recovery_portal::tools::import::import(&reimport, cipher, import, &|_, _| {})
        .await
        .unwrap();
    let (imported, _) = life.tenant_settings(&t("t1")).await.unwrap();
    assert_eq!(imported, reimport.tenants[0].policy);
    assert_eq!(imported.require_reason, RequireReason::Helpdesk);
    // A change prepared before the import (at the version `open` left)
    // must read again.
    let e = write_event(Action::SettingsChange, "t1", None, "w-10b");
    assert_eq!(
        life.commit_settings(&t("t1"), &open, v1 + 1, &e)
            .await
            .unwrap(),
        WriteOutcome::Conflict
    );
    let (loaded, _) = store
        .load_for_disclosure(&t("t1"), &d("PC-1"), &u("u1"))
        .await
        .unwrap();
    assert_eq!(loaded.unwrap().policy, imported);
    // A tenant never written has the defaults.
    assert_eq!(
        life.tenant_settings(&t("t9")).await.unwrap(),
        (TenantPolicy::default(), 0)
    );

    if upto == Step::TenantSettings {
        return;
    }

    // --- sweep_expired: the embedded store deletes what DynamoDB TTL would.
    let swept = life
        .sweep_expired(expires + Duration::seconds(1))
        .await
        .unwrap();
    if sweeps {
        assert_eq!(swept, 1);
        assert!(
            life.superseded_key(&t("t1"), &d("PC-5"), &k(K6))
                .await
                .unwrap()
                .is_none()
        );
        let (rec, _) = life.device_for_write(&t("t1"), &d("PC-5")).await.unwrap();
        assert_eq!(rec.unwrap().device.keys, vec![k7.clone()]);
    } else {
        assert_eq!(swept, 0);
    }

    if upto == Step::SweepExpired {
        return;
    }

    // --- retire_device / restore_device: conditional on the version; a
    // retired device leaves the owner index and the rotation requests but
    // keeps its keys (for the helpdesk, by key ID) until its retention ends.
    let (rec, _) = life.device_for_write(&t("t1"), &d("PC-5")).await.unwrap();
    let rec = rec.unwrap();
    let retired = Device {
        retired: Some(recovery_portal::domain::model::Retirement {
            at: at(T0),
            expires_at: at(T0 + 30 * 86_400),
        }),
        ..rec.device.clone()
    };
    let e = write_event(Action::DeviceRetire, "t1", Some("PC-5"), "w-11");
    assert_eq!(
        life.retire_device(&retired, rec.version + 3, &e)
            .await
            .unwrap(),
        WriteOutcome::Conflict
    );
    assert_eq!(
        life.retire_device(&retired, rec.version, &e).await.unwrap(),
        WriteOutcome::Written
    );
    let (kept, _) = store
        .load_for_disclosure(&t("t1"), &d("PC-5"), &u("u6"))
        .await
        .unwrap();
    assert_eq!(
        kept.expect("kept while restorable").device.retired,
        retired.retired
    );
    assert!(
        !store
            .find_keys(&t("t1"), &KeyIdPrefix::parse("7a2e3d4c").unwrap())
            .await
            .unwrap()
            .is_empty(),
        "the helpdesk still finds its keys"
    );
    assert!(
        store
            .list_devices(&t("t1"), &u("u6"))
            .await
            .unwrap()
            .0
            .is_empty()
    );
    let (rec, _) = life.device_for_write(&t("t1"), &d("PC-5")).await.unwrap();
    let rec = rec.unwrap();
    assert_eq!(rec.device.retired, retired.retired);
    let back = Device {
        retired: None,
        ..rec.device.clone()
    };
    let e = write_event(Action::DeviceRestore, "t1", Some("PC-5"), "w-12");
    assert_eq!(
        life.restore_device(&back, rec.version, &e).await.unwrap(),
        WriteOutcome::Written
    );
    let (listed, _) = store.list_devices(&t("t1"), &u("u6")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].retired, None);
    // Retired again, then past its retention: the sweep (embedded) deletes
    // it with every key; on DynamoDB TTL does.
    let (rec, _) = life.device_for_write(&t("t1"), &d("PC-5")).await.unwrap();
    let rec = rec.unwrap();
    let e = write_event(Action::DeviceRetire, "t1", Some("PC-5"), "w-13");
    assert_eq!(
        life.retire_device(&retired, rec.version, &e).await.unwrap(),
        WriteOutcome::Written
    );
    let swept = life.sweep_expired(at(T0 + 30 * 86_400 + 1)).await.unwrap();
    if sweeps {
        assert!(swept >= 1);
        assert!(
            life.device_for_write(&t("t1"), &d("PC-5"))
                .await
                .unwrap()
                .0
                .is_none()
        );
        let left = life.stored_keys(Some(&t("t1")), None).await.unwrap();
        assert!(left.keys.iter().all(|s| s.context.device != d("PC-5")));
    } else {
        assert_eq!(swept, 0);
    }

    if upto == Step::RetireRestore {
        return;
    }

    // --- every write left its event, with its action.
    let events = store
        .audit_events(
            &t("t1"),
            &AuditQuery {
                device_id: Some(d("PC-5")),
                actor: Some(u("mdm-sync")),
                limit: 100,
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    let mut got: Vec<(Action, String)> = events
        .events
        .iter()
        .map(|e| (e.action, e.request_id.clone()))
        .collect();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    let want: Vec<(Action, String)> = [
        (Action::DeviceUpsert, "w-1"),
        (Action::DeviceRetire, "w-11"),
        (Action::DeviceRestore, "w-12"),
        (Action::DeviceRetire, "w-13"),
        (Action::DeviceUpsert, "w-3"),
        (Action::Escrow, "w-4"),
        // The second write under w-4: an audit record of its own.
        (Action::Escrow, "w-4"),
        (Action::Escrow, "w-7"),
    ]
    .into_iter()
    .map(|(a, r)| (a, r.to_owned()))
    .collect();
    assert_eq!(got, want);
    let settings_events = store
        .audit_events(
            &t("t1"),
            &AuditQuery {
                device_id: None,
                actor: Some(u("mdm-sync")),
                limit: 100,
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        settings_events
            .events
            .iter()
            .filter(|e| e.action == Action::SettingsChange)
            .count(),
        2
    );

    if upto == Step::AuditTrail {
        return;
    }

    // --- rotation pages: `limit` devices per page, `next` until the end.
    for (i, dev) in ["R-1", "R-2", "R-3"].iter().enumerate() {
        let device = Device {
            device_id: d(dev),
            keys: vec![],
            ..pc5.clone()
        };
        let e = write_event(Action::DeviceUpsert, "t1", Some(dev), &format!("p-{i}"));
        assert_eq!(
            life.commit_upsert(
                &DeviceUpsert {
                    device: device.clone(),
                    expected_version: None
                },
                &e
            )
            .await
            .unwrap(),
            WriteOutcome::Written
        );
        let (rec, _) = life.device_for_write(&t("t1"), &d(dev)).await.unwrap();
        let meta = KeyMeta::new(k(K8), VolumeType::OperatingSystem, at(T0));
        let sealed = cipher.seal(&ctx("t1", dev, K8), &pw(8)).await.unwrap();
        let e = write_event(Action::Escrow, "t1", Some(dev), &format!("q-{i}"));
        assert_eq!(
            life.commit_escrow(
                &EscrowWrite {
                    device: Device {
                        keys: vec![meta.clone()],
                        ..device
                    },
                    expected_version: rec.unwrap().version,
                    added: meta,
                    current: vec![(k(K8), sealed)],
                    digests: vec![],
                    superseded: vec![],
                },
                &e
            )
            .await
            .unwrap(),
            WriteOutcome::Written
        );
        let (_, window) = store
            .load_for_disclosure(&t("t1"), &d(dev), &u("helpdesk-2"))
            .await
            .unwrap();
        let ev = AuditEvent {
            actor: u("helpdesk-2"),
            device_id: Some(d(dev)),
            key_id: Some(k(K8)),
            // Disclosed in reverse order: R-3 first.
            time: at(T0 + 1_000 - i as i64),
            ..disclose(K8, &format!("s-{i}"), 0)
        };
        let up = ratelimit::admit(&window, ev.time, 10).unwrap();
        assert_eq!(
            store.commit_disclosure(&ev, &up).await.unwrap(),
            Commit::Written
        );
    }
    let mut order = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = life
            .rotation_requests(&t("t1"), cursor.as_deref(), 2)
            .await
            .unwrap();
        pages += 1;
        assert!(page.devices.len() <= 2);
        order.extend(page.devices.iter().map(|x| x.device_id.to_string()));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
        assert!(pages < 5, "paging does not end");
    }
    assert_eq!(order, ["R-3", "R-2", "R-1"], "oldest disclosure first");
    let _ = RateWindow::default();
}

async fn device_for_write_reads_settings_and_digests(b: &Backend) {
    lifecycle_contract(
        b.store.as_ref(),
        b.life.as_ref(),
        b.import.as_ref(),
        b.cipher.as_ref(),
        b.sweeps,
        Step::DeviceForWrite,
    )
    .await;
}

async fn commit_upsert_creates_once_then_by_version(b: &Backend) {
    lifecycle_contract(
        b.store.as_ref(),
        b.life.as_ref(),
        b.import.as_ref(),
        b.cipher.as_ref(),
        b.sweeps,
        Step::CommitUpsert,
    )
    .await;
}

async fn commit_escrow_is_conditional_on_the_version(b: &Backend) {
    lifecycle_contract(
        b.store.as_ref(),
        b.life.as_ref(),
        b.import.as_ref(),
        b.cipher.as_ref(),
        b.sweeps,
        Step::CommitEscrow,
    )
    .await;
}

async fn a_disclosure_marks_the_key_for_rotation(b: &Backend) {
    lifecycle_contract(
        b.store.as_ref(),
        b.life.as_ref(),
        b.import.as_ref(),
        b.cipher.as_ref(),
        b.sweeps,
        Step::DisclosureMarks,
    )
    .await;
}

async fn a_newer_key_supersedes_and_keeps_the_old_apart(b: &Backend) {
    lifecycle_contract(
        b.store.as_ref(),
        b.life.as_ref(),
        b.import.as_ref(),
        b.cipher.as_ref(),
        b.sweeps,
        Step::Supersede,
    )
    .await;
}

async fn stored_keys_lists_current_and_superseded(b: &Backend) {
    lifecycle_contract(
        b.store.as_ref(),
        b.life.as_ref(),
        b.import.as_ref(),
        b.cipher.as_ref(),
        b.sweeps,
        Step::StoredKeys,
    )
    .await;
}

async fn tenant_settings_are_versioned_and_read_back(b: &Backend) {
    lifecycle_contract(
        b.store.as_ref(),
        b.life.as_ref(),
        b.import.as_ref(),
        b.cipher.as_ref(),
        b.sweeps,
        Step::TenantSettings,
    )
    .await;
}

async fn sweep_expired_deletes_or_leaves_to_ttl(b: &Backend) {
    lifecycle_contract(
        b.store.as_ref(),
        b.life.as_ref(),
        b.import.as_ref(),
        b.cipher.as_ref(),
        b.sweeps,
        Step::SweepExpired,
    )
    .await;
}

async fn retire_and_restore_are_conditional_on_the_version(b: &Backend) {
    lifecycle_contract(
        b.store.as_ref(),
        b.life.as_ref(),
        b.import.as_ref(),
        b.cipher.as_ref(),
        b.sweeps,
        Step::RetireRestore,
    )
    .await;
}

async fn every_write_leaves_its_event(b: &Backend) {
    lifecycle_contract(
        b.store.as_ref(),
        b.life.as_ref(),
        b.import.as_ref(),
        b.cipher.as_ref(),
        b.sweeps,
        Step::AuditTrail,
    )
    .await;
}

async fn rotation_requests_page_oldest_disclosure_first(b: &Backend) {
    lifecycle_contract(
        b.store.as_ref(),
        b.life.as_ref(),
        b.import.as_ref(),
        b.cipher.as_ref(),
        b.sweeps,
        Step::RotationPages,
    )
    .await;
}

macro_rules! lifecycle_contract_tests {
    ($($backend:ident),*) => {
        $(contract_tests!($backend, [
            device_for_write_reads_settings_and_digests,
            commit_upsert_creates_once_then_by_version,
            commit_escrow_is_conditional_on_the_version,
            a_disclosure_marks_the_key_for_rotation,
            a_newer_key_supersedes_and_keeps_the_old_apart,
            stored_keys_lists_current_and_superseded,
            tenant_settings_are_versioned_and_read_back,
            sweep_expired_deletes_or_leaves_to_ttl,
            retire_and_restore_are_conditional_on_the_version,
            every_write_leaves_its_event,
            rotation_requests_page_oldest_disclosure_first,
        ]);)*
    };
}
lifecycle_contract_tests!(embedded, sqlite, dynamodb);

/// A device item written before keys became a map (a list of key
/// metadata, no version): disclosures still work, just without the mark,
/// and an escrow converts the item.
#[tokio::test]
async fn dynamodb_device_items_from_before_escrow_still_disclose() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let env = moto_env().await;
    let s = env.store.as_ref();
    let seed = recovery_portal::tools::seed::parse(&seed_json(vec![device(
        "t1",
        "OLD-1",
        "u1",
        vec![key(K6, "operating_system", 6, "2024-05-15T09:30:00Z")],
    )]))
    .unwrap();
    recovery_portal::tools::import::import(&seed, env.cipher.as_ref(), s, &|_, _| {})
        .await
        .unwrap();
    // Rewrite the device item the old way.
    let table = s.devices_table().to_owned();
    let mut item = env
        .dynamodb
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("D#t1#OLD-1".into()))
        .key("sk", AttributeValue::S("DEVICE".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let AttributeValue::M(keys) = item.remove("keys").unwrap() else {
        panic!("keys is a map now")
    };
    let list: Vec<AttributeValue> = keys
        .into_values()
        .map(|v| {
            let AttributeValue::M(mut m) = v else {
                panic!()
            };
            m.remove("pos");
            AttributeValue::M(m)
        })
        .collect();
    item.insert("keys".into(), AttributeValue::L(list));
    item.remove("digests");
    env.dynamodb
        .put_item()
        .table_name(&table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();

    let (loaded, window) = s
        .load_for_disclosure(&t("t1"), &d("OLD-1"), &u("u1"))
        .await
        .unwrap();
    let loaded = loaded.expect("the old item reads");
    assert_eq!(loaded.device.keys.len(), 1);
    let ev = AuditEvent {
        action: Action::Disclose,
        event_id: uuid::Uuid::new_v4().to_string(),
        time: at(T0),
        tenant_id: t("t1"),
        actor: u("u1"),
        device_id: Some(d("OLD-1")),
        key_id: Some(k(K6)),
        outcome: Outcome::Granted,
        reason: "owner".into(),
        justification: None,
        source_ip: None,
        user_agent: None,
        request_id: "old-1".into(),
    };
    let up = ratelimit::admit(&window, ev.time, 10).unwrap();
    assert_eq!(
        s.commit_disclosure(&ev, &up).await.unwrap(),
        Commit::Written
    );
    let events = s
        .audit_events(
            &t("t1"),
            &AuditQuery {
                device_id: Some(d("OLD-1")),
                actor: None,
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(events.events.len(), 1);
    // No digest: the record says so, and an escrow (through the domain) may
    // replace the key; the store writes the map form.
    let (rec, _) = s.device_for_write(&t("t1"), &d("OLD-1")).await.unwrap();
    let rec = rec.unwrap();
    assert!(rec.digests.is_empty());
    assert_eq!(rec.version, 0);
    let meta = rec.device.keys[0].clone();
    let e = write_event(Action::Escrow, "t1", Some("OLD-1"), "old-2");
    assert_eq!(
        s.commit_escrow(
            &EscrowWrite {
                device: rec.device.clone(),
                expected_version: 0,
                added: meta.clone(),
                current: rec.current.clone(),
                digests: vec![(k(K6), key_digest(&ctx("t1", "OLD-1", K6), &pw(6)))],
                superseded: vec![],
            },
            &e
        )
        .await
        .unwrap(),
        WriteOutcome::Written
    );
    let (rec, _) = s.device_for_write(&t("t1"), &d("OLD-1")).await.unwrap();
    assert_eq!(rec.unwrap().version, 1);
}
