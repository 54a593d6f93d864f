//! The AWS adapters end to end on moto (real DynamoDB and KMS wire
//! protocols): requests through `api::handle`, the number of AWS calls per
//! request, ciphertext binding, import idempotency and table creation.
//!
//! Needs `PORTAL_TEST_MOTO_URL` (see scripts/moto.sh); fails without it.

use crate::support::aws as common_aws;
use crate::support::racing;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use common_aws::{call, device, key, moto_env, password, portal, seed_json};
use racing::RacingStore;
use recovery_portal::adapters::aws::items;
use recovery_portal::adapters::aws::{DynamoStore, KmsCipher, TableStatus, create_tables};
use recovery_portal::domain::audit::{AuditQuery, Outcome};
use recovery_portal::domain::error::{Cause, Unavailable};
use recovery_portal::domain::ids::{DeviceId, KeyId, KeyIdPrefix, TenantId, UserId};
use recovery_portal::domain::model::{KeyContext, RecoveryPassword, SealedKey};
use recovery_portal::domain::ports::{CipherError, ImportStore, KeyCipher, Store, SystemClock};
use recovery_portal::tools::import::import;
use recovery_portal::tools::seed::parse;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const KA: &str = "AAAA0001-5B6A-4798-8A9B-0C1D2E3F4A01";
const KB: &str = "BBBB0002-5B6A-4798-8A9B-0C1D2E3F4A02";
const KB2: &str = "BBBB0002-5B6A-4798-8A9B-0C1D2E3F4A03";
const KC: &str = "CCCC0003-5B6A-4798-8A9B-0C1D2E3F4A04";

fn t(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}
fn d(s: &str) -> DeviceId {
    DeviceId::parse(s).unwrap()
}

fn two_devices() -> String {
    seed_json(vec![
        device(
            "t1",
            "PC-A",
            "u1",
            vec![key(KA, "operating_system", 10, "2024-05-15T09:30:00Z")],
        ),
        device(
            "t1",
            "PC-B",
            "u1",
            vec![key(KB, "operating_system", 11, "2024-05-16T09:30:00Z")],
        ),
    ])
}

fn status(resp: &recovery_portal::api::ApiResponse) -> u16 {
    resp.status().as_u16()
}

/// A device's `sealed` blob moved onto another device (someone with write
/// access to the table) must not decrypt: KMS binds each ciphertext to its
/// tenant, device and key ID. Nothing is disclosed; the answer is a 500.
#[tokio::test]
async fn a_ciphertext_copied_to_another_device_does_not_decrypt() {
    let env = moto_env().await;
    let seed = parse(&two_devices()).unwrap();
    import(&seed, env.cipher.as_ref(), env.store.as_ref(), &|_, _| {})
        .await
        .unwrap();

    // Copy PC-A's ciphertext into PC-B's slot for its own key id.
    let item = env
        .dynamodb
        .get_item()
        .table_name(env.store.devices_table())
        .key(
            "pk",
            AttributeValue::S(items::device_pk(&t("t1"), &d("PC-A"))),
        )
        .key("sk", AttributeValue::S(items::DEVICE_SK.into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let AttributeValue::M(sealed) = &item["sealed"] else {
        panic!("sealed is a map")
    };
    let blob_a = sealed[KA].clone();
    env.dynamodb
        .update_item()
        .table_name(env.store.devices_table())
        .key(
            "pk",
            AttributeValue::S(items::device_pk(&t("t1"), &d("PC-B"))),
        )
        .key("sk", AttributeValue::S(items::DEVICE_SK.into()))
        .update_expression("SET #s.#k = :blob")
        .expression_attribute_names("#s", "sealed")
        .expression_attribute_names("#k", KB)
        .expression_attribute_values(":blob", blob_a.clone())
        .send()
        .await
        .unwrap();

    // The cipher itself refuses: the context names PC-B.
    let AttributeValue::B(raw) = &blob_a else {
        panic!("blob")
    };
    let ctx_b = KeyContext {
        tenant: t("t1"),
        device: d("PC-B"),
        key_id: KeyId::parse(KB).unwrap(),
    };
    let swapped = recovery_portal::domain::model::SealedKey(raw.as_ref().to_vec());
    assert!(matches!(
        env.cipher.open(&ctx_b, &swapped).await,
        Err(CipherError::Rejected(_))
    ));

    // And so does the whole request path.
    let p = portal(env.store.clone(), env.cipher.clone());
    let (resp, body) = call(
        &p,
        "POST",
        "/v1/devices/PC-B/recovery-key",
        Some("t1|u1|RecoveryKey.Read"),
        "",
    )
    .await;
    assert_eq!(status(&resp), 500, "{body}");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert!(body.get("recovery_password").is_none(), "{body}");
    let text = String::from_utf8_lossy(resp.body()).to_string();
    for n in [10, 11] {
        assert!(!text.contains(&password(n)), "a password leaked: {text}");
    }
    // PC-A still opens normally.
    let (resp, body) = call(
        &p,
        "POST",
        "/v1/devices/PC-A/recovery-key",
        Some("t1|u1|RecoveryKey.Read"),
        "",
    )
    .await;
    assert_eq!(status(&resp), 200, "{body}");
    assert_eq!(body["recovery_password"], password(10));
}

/// AWS calls per request, counted by an interceptor on both clients.
#[tokio::test]
async fn each_request_makes_the_budgeted_aws_calls() {
    let env = moto_env().await;
    let seed = parse(&two_devices()).unwrap();
    import(&seed, env.cipher.as_ref(), env.store.as_ref(), &|_, _| {})
        .await
        .unwrap();
    let p = portal(env.store.clone(), env.cipher.clone());
    env.calls.reset();

    // List own devices: one Query on by_owner and, concurrently, the tenant
    // item (the policy's one source).
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let (resp, body) = call(&p, "GET", "/v1/devices", Some("t1|u1|Devices.Read"), "").await;
    assert_eq!(status(&resp), 200, "{body}");
    assert_eq!(body["devices"].as_array().unwrap().len(), 2);
    assert_eq!(body["helpdesk"]["name"], "T1 IT");
    assert_eq!(
        sorted(env.calls.take()),
        ["DynamoDB.GetItem", "DynamoDB.Query"]
    );

    // No devices: the same two calls; the tenant item gives the helpdesk.
    let (resp, body) = call(&p, "GET", "/v1/devices", Some("t1|nobody|Devices.Read"), "").await;
    assert_eq!(status(&resp), 200, "{body}");
    assert_eq!(body["helpdesk"]["name"], "T1 IT");
    assert_eq!(
        sorted(env.calls.take()),
        ["DynamoDB.GetItem", "DynamoDB.Query"]
    );

    // Key retrieval: one read (device, tenant and rate window), one
    // transactional write, one decrypt.
    let (resp, body) = call(
        &p,
        "POST",
        "/v1/devices/PC-A/recovery-key",
        Some("t1|u1|RecoveryKey.Read"),
        r#"{"reason":"BIOS update"}"#,
    )
    .await;
    assert_eq!(status(&resp), 200, "{body}");
    assert_eq!(body["recovery_password"], password(10));
    let ops = env.calls.take();
    assert_eq!(
        ops,
        [
            "DynamoDB.BatchGetItem",
            "DynamoDB.TransactWriteItems",
            "KMS.Decrypt"
        ]
    );
    assert!(ops.len() <= 3);

    // Helpdesk key lookup: one Query on by_key.
    let (resp, body) = call(
        &p,
        "GET",
        "/v1/recovery-keys?key_id_prefix=AAAA0001",
        Some("t1|hd|RecoveryKey.Read.All"),
        "",
    )
    .await;
    assert_eq!(status(&resp), 200, "{body}");
    assert_eq!(body["recovery_keys"].as_array().unwrap().len(), 1);
    assert_eq!(env.calls.take(), ["DynamoDB.Query"]);

    // Audit by device: one Query; the whole tenant: one Query per time shard.
    let (resp, body) = call(
        &p,
        "GET",
        "/v1/audit-events?device_id=PC-A",
        Some("t1|auditor|AuditLog.Read.All"),
        "",
    )
    .await;
    assert_eq!(status(&resp), 200, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    assert_eq!(env.calls.take(), ["DynamoDB.Query"]);
    let (resp, body) = call(
        &p,
        "GET",
        "/v1/audit-events",
        Some("t1|auditor|AuditLog.Read.All"),
        "",
    )
    .await;
    assert_eq!(status(&resp), 200, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    assert_eq!(
        env.calls.take(),
        ["DynamoDB.Query"; 8],
        "one per time shard"
    );

    // No token, a bad token, a missing permission: no AWS call at all.
    for (method, path, token) in [
        ("GET", "/v1/devices", None),
        ("GET", "/v1/devices", Some("garbage")),
        ("POST", "/v1/devices/PC-A/recovery-key", None),
        ("POST", "/v1/devices/PC-A/recovery-key", Some("garbage")),
        ("GET", "/v1/devices", Some("t1|u1|")),
        (
            "GET",
            "/v1/devices?owner=u2",
            Some("t1|u1|RecoveryKey.Read"),
        ),
        (
            "GET",
            "/v1/recovery-keys?key_id_prefix=AAAA0001",
            Some("t1|u1|RecoveryKey.Read"),
        ),
        (
            "GET",
            "/v1/audit-events",
            Some("t1|u1|RecoveryKey.Read.All"),
        ),
    ] {
        let (resp, body) = call(&p, method, path, token, "").await;
        assert!(
            [401, 403].contains(&status(&resp)),
            "{method} {path} {token:?}: {body}"
        );
        assert_eq!(
            env.calls.take(),
            Vec::<String>::new(),
            "{method} {path} {token:?}"
        );
    }

    // A key retrieval without the permission reads nothing and decrypts
    // nothing; by design its one call is the audit record of the denial
    // (the event and the caller's hourly denial count, in one transaction).
    let (resp, body) = call(
        &p,
        "POST",
        "/v1/devices/PC-A/recovery-key",
        Some("t1|u1|Devices.Read"),
        "",
    )
    .await;
    assert_eq!(status(&resp), 403, "{body}");
    assert_eq!(env.calls.take(), ["DynamoDB.TransactWriteItems"]);
    assert_eq!(env.calls.attempts(), 2 + 2 + 3 + 1 + 1 + 8 + 1);
}

/// Re-importing writes only what changed, and a device's key set is
/// replaced exactly: no stale key pointer survives.
#[tokio::test]
async fn import_is_idempotent_and_replaces_changed_devices_exactly() {
    let env = moto_env().await;
    let v1 = seed_json(vec![
        device(
            "t1",
            "PC-A",
            "u1",
            vec![key(KA, "operating_system", 10, "2024-05-15T09:30:00Z")],
        ),
        device(
            "t1",
            "PC-B",
            "u1",
            vec![
                key(KB, "operating_system", 11, "2024-05-16T09:30:00Z"),
                key(KB2, "fixed_data", 12, "2024-05-16T09:31:00Z"),
            ],
        ),
        device(
            "t2",
            "PC-A",
            "u2",
            vec![key(KC, "operating_system", 13, "2024-05-17T09:30:00Z")],
        ),
    ]);
    let seed = parse(&v1).unwrap();
    let first = import(&seed, env.cipher.as_ref(), env.store.as_ref(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(
        (first.tenants, first.devices, first.keys, first.skipped),
        (2, 3, 4, 0)
    );
    env.calls.reset();
    let second = import(&seed, env.cipher.as_ref(), env.store.as_ref(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!((second.devices, second.keys, second.skipped), (0, 0, 3));
    let ops = env.calls.take();
    assert!(
        !ops.iter()
            .any(|o| o == "KMS.Encrypt" || o == "DynamoDB.BatchWriteItem"),
        "an unchanged re-import must not seal or write devices: {ops:?}"
    );

    // One password changed (PC-A in t1): only that device is rewritten.
    let v2 = v1.replace(&password(10), &password(20));
    let seed2 = parse(&v2).unwrap();
    let third = import(&seed2, env.cipher.as_ref(), env.store.as_ref(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!((third.devices, third.keys, third.skipped), (1, 1, 2));
    let p = portal(env.store.clone(), env.cipher.clone());
    let (resp, body) = call(
        &p,
        "POST",
        "/v1/devices/PC-A/recovery-key",
        Some("t1|u1|RecoveryKey.Read"),
        "",
    )
    .await;
    assert_eq!(status(&resp), 200, "{body}");
    assert_eq!(body["recovery_password"], password(20));
    // t2's PC-A (same device id, other tenant) is untouched.
    let (resp, body) = call(
        &p,
        "POST",
        "/v1/devices/PC-A/recovery-key",
        Some("t2|u2|RecoveryKey.Read"),
        "",
    )
    .await;
    assert_eq!(status(&resp), 403, "t2 has self-service off: {body}");
    let (resp, body) = call(
        &p,
        "POST",
        "/v1/devices/PC-A/recovery-key",
        Some("t2|hd|RecoveryKey.Read.All"),
        "",
    )
    .await;
    assert_eq!(status(&resp), 200, "{body}");
    assert_eq!(body["recovery_password"], password(13));

    // PC-B's key set changes from {KB, KB2} to {KB, KC-like new key}.
    const KNEW: &str = "DDDD0004-5B6A-4798-8A9B-0C1D2E3F4A05";
    let v3 = seed_json(vec![
        device(
            "t1",
            "PC-A",
            "u1",
            vec![key(KA, "operating_system", 20, "2024-05-15T09:30:00Z")],
        ),
        device(
            "t1",
            "PC-B",
            "u1",
            vec![
                key(KB, "operating_system", 11, "2024-05-16T09:30:00Z"),
                key(KNEW, "fixed_data", 14, "2024-08-01T00:00:00Z"),
            ],
        ),
        device(
            "t2",
            "PC-A",
            "u2",
            vec![key(KC, "operating_system", 13, "2024-05-17T09:30:00Z")],
        ),
    ]);
    let fourth = import(
        &parse(&v3).unwrap(),
        env.cipher.as_ref(),
        env.store.as_ref(),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!((fourth.devices, fourth.keys, fourth.skipped), (1, 2, 2));
    let find = |prefix: &'static str| {
        let store = env.store.clone();
        async move {
            store
                .find_keys(&t("t1"), &KeyIdPrefix::parse(prefix).unwrap())
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.key_id.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        find("BBBB0002").await,
        vec![KB.to_owned()],
        "KB2's pointer must be gone"
    );
    assert_eq!(find("DDDD0004").await, vec![KNEW.to_owned()]);
    // The partition holds exactly the device item and the two pointers.
    let rows = env
        .dynamodb
        .query()
        .table_name(env.store.devices_table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            AttributeValue::S(items::device_pk(&t("t1"), &d("PC-B"))),
        )
        .send()
        .await
        .unwrap();
    let mut sks: Vec<String> = rows
        .items()
        .iter()
        .map(|i| i["sk"].as_s().unwrap().clone())
        .collect();
    sks.sort();
    assert_eq!(
        sks,
        [
            "DEVICE".to_owned(),
            format!("KEY#{KB}"),
            format!("KEY#{KNEW}")
        ]
    );
    // The helpdesk can retrieve the new key by its id.
    let (resp, body) = call(
        &p,
        "POST",
        "/v1/devices/PC-B/recovery-key",
        Some("t1|hd|RecoveryKey.Read.All"),
        &format!(r#"{{"key_id":"{KNEW}"}}"#),
    )
    .await;
    assert_eq!(status(&resp), 200, "{body}");
    assert_eq!(body["recovery_password"], password(14));
    let (resp, body) = call(
        &p,
        "POST",
        "/v1/devices/PC-B/recovery-key",
        Some("t1|hd|RecoveryKey.Read.All"),
        &format!(r#"{{"key_id":"{KB2}"}}"#),
    )
    .await;
    assert_eq!(status(&resp), 404, "{body}");
}

/// `create_tables` is idempotent and builds what schema.rs describes.
#[tokio::test]
async fn create_tables_is_idempotent_and_matches_the_schema() {
    let env = moto_env().await;
    // moto_env created them already: a second run only checks them.
    let again = create_tables(&env.dynamodb, &env.prefix).await.unwrap();
    assert_eq!(
        again.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        [TableStatus::AlreadyExisted; 3]
    );
    let fresh = common_aws::fresh_prefix();
    let created = create_tables(&env.dynamodb, &fresh).await.unwrap();
    assert_eq!(
        created,
        recovery_portal::adapters::aws::schema::ALL_TABLES
            .iter()
            .map(|t| (
                recovery_portal::adapters::aws::schema::table_name(&fresh, t),
                TableStatus::Created
            ))
            .collect::<Vec<_>>()
    );
    for def in recovery_portal::adapters::aws::schema::ALL_TABLES {
        let name = recovery_portal::adapters::aws::schema::table_name(&fresh, &def);
        let desc = env
            .dynamodb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .unwrap()
            .table
            .unwrap();
        let mut got: Vec<&str> = desc
            .global_secondary_indexes()
            .iter()
            .filter_map(|g| g.index_name())
            .collect();
        got.sort_unstable();
        let mut want: Vec<&str> = def.indexes.iter().map(|i| i.name).collect();
        want.sort_unstable();
        assert_eq!(got, want, "{name}");
        for ix in def.indexes {
            let g = desc
                .global_secondary_indexes()
                .iter()
                .find(|g| g.index_name() == Some(ix.name))
                .unwrap();
            let p = g.projection().unwrap();
            match ix.projection {
                recovery_portal::adapters::aws::schema::Projection::All => {
                    assert_eq!(p.projection_type().unwrap().as_str(), "ALL")
                }
                recovery_portal::adapters::aws::schema::Projection::Include(attrs) => {
                    assert_eq!(p.projection_type().unwrap().as_str(), "INCLUDE");
                    let mut a: Vec<&str> =
                        p.non_key_attributes().iter().map(String::as_str).collect();
                    a.sort_unstable();
                    let mut w = attrs.to_vec();
                    w.sort_unstable();
                    assert_eq!(a, w, "{name}/{}", ix.name);
                }
            }
        }
        if let Some(attr) = def.ttl {
            let ttl = env
                .dynamodb
                .describe_time_to_live()
                .table_name(&name)
                .send()
                .await
                .unwrap();
            let ttl = ttl.time_to_live_description().unwrap();
            assert_eq!(ttl.attribute_name(), Some(attr));
        }
    }
    // The device table projects no ciphertext into its indexes.
    for ix in recovery_portal::adapters::aws::schema::DEVICES.indexes {
        if let recovery_portal::adapters::aws::schema::Projection::Include(attrs) = ix.projection {
            for secret in ["sealed", "fingerprint", "digests"] {
                assert!(!attrs.contains(&secret), "{} projects {secret}", ix.name);
            }
        }
    }
}

/// A devices table from before the key lifecycle (no `by_rotation`, no TTL)
/// is upgraded in place: the index and the TTL are added, nothing else moves.
#[tokio::test]
async fn create_tables_adds_indexes_the_schema_gained() {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let env = moto_env().await;
    let prefix = common_aws::fresh_prefix();
    let s = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let k = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap()
    };
    let gsi = |name: &str, h: &str, r: &str| {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(k(h, KeyType::Hash))
            .key_schema(k(r, KeyType::Range))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .unwrap()
    };
    let name = format!("{prefix}-devices");
    env.dynamodb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(
            [
                "pk",
                "sk",
                "owner_key",
                "device_id",
                "key_bucket",
                "key_hex",
            ]
            .map(s)
            .to_vec(),
        ))
        .key_schema(k("pk", KeyType::Hash))
        .key_schema(k("sk", KeyType::Range))
        .global_secondary_indexes(gsi("by_owner", "owner_key", "device_id"))
        .global_secondary_indexes(gsi("by_key", "key_bucket", "key_hex"))
        .send()
        .await
        .unwrap();
    let out = create_tables(&env.dynamodb, &prefix).await.unwrap();
    assert_eq!(out[0], (name.clone(), TableStatus::Upgraded));
    let desc = env
        .dynamodb
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let mut got: Vec<&str> = desc
        .global_secondary_indexes()
        .iter()
        .filter_map(|g| g.index_name())
        .collect();
    got.sort_unstable();
    assert_eq!(got, ["by_key", "by_owner", "by_rotation"]);
    let ttl = env
        .dynamodb
        .describe_time_to_live()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description().unwrap().attribute_name(),
        Some("expires_at")
    );
    // Now it is as the schema says: the next run only checks it.
    let again = create_tables(&env.dynamodb, &prefix).await.unwrap();
    assert_eq!(again[0].1, TableStatus::AlreadyExisted);
}

/// An existing table with another layout is reported, not silently used.
#[tokio::test]
async fn create_tables_refuses_a_table_with_another_layout() {
    let env = moto_env().await;
    let prefix = common_aws::fresh_prefix();
    env.dynamodb
        .create_table()
        .table_name(format!("{prefix}-devices"))
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let err = create_tables(&env.dynamodb, &prefix).await.unwrap_err();
    assert!(
        err.to_string().contains(&format!("{prefix}-devices"))
            && err.to_string().contains("key schema"),
        "{err}"
    );
}

fn u(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

async fn events_of(
    store: &DynamoStore,
    tenant: &str,
    actor: &str,
) -> Vec<recovery_portal::domain::audit::AuditEvent> {
    store
        .audit_events(
            &t(tenant),
            &AuditQuery {
                actor: Some(u(actor)),
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .events
}

/// The concurrent scenario of tests/api.rs on DynamoDB: six retrievals by
/// one caller on a multi-threaded runtime all read the same rate window
/// (the store holds each after its read until all six have read); the
/// conditional write (ConditionalCheckFailed, or TransactionConflict when
/// two transactions meet) refuses the stale ones and the retry loop settles
/// them: exactly the limit (3) is disclosed and decrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retrievals_on_dynamodb_never_exceed_the_limit() {
    const N: usize = 6;
    let env = moto_env().await;
    import(
        &parse(&two_devices()).unwrap(),
        env.cipher.as_ref(),
        env.store.as_ref(),
        &|_, _| {},
    )
    .await
    .unwrap();
    let racing = Arc::new(RacingStore::barrier(env.store.clone(), N));
    let mut p = portal(env.store.clone(), env.cipher.clone());
    p.store = racing.clone();
    p.key_rate_limit = 3;
    env.calls.reset();
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move {
                call(
                    &p,
                    "POST",
                    "/v1/devices/PC-A/recovery-key",
                    Some("t1|u1|RecoveryKey.Read"),
                    "",
                )
                .await
            })
        })
        .collect();
    let mut codes = Vec::new();
    for task in tasks {
        let (resp, body) = task.await.unwrap();
        match status(&resp) {
            200 => assert_eq!(body["recovery_password"], password(10)),
            429 | 503 => assert!(resp.headers().contains_key("retry-after"), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
        codes.push(status(&resp));
    }
    // Never more than the limit. Fewer is allowed here: when two of
    // DynamoDB's transactions meet, both may be cancelled
    // (TransactionConflict), so on a slow server a request can lose all
    // three of its attempts even though the window still has room.
    let granted = codes.iter().filter(|&&c| c == 200).count();
    assert!((1..=3).contains(&granted), "{codes:?}");
    assert!(
        RacingStore::count(&racing.conflicts) >= N - 1,
        "{} conflicts",
        RacingStore::count(&racing.conflicts)
    );
    let decrypts = env
        .calls
        .take()
        .iter()
        .filter(|o| *o == "KMS.Decrypt")
        .count();
    assert_eq!(decrypts, granted, "one Decrypt per disclosed key");
    let events = events_of(&env.store, "t1", "u1").await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.outcome == Outcome::Granted)
            .count(),
        granted
    );
    assert_eq!(events.len(), N, "every attempt left a trace: {events:?}");
}

/// Overtaken by another disclosure of the same caller on each of its 3
/// attempts: 503 with Retry-After, no Decrypt, and a denied event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrieval_overtaken_on_every_attempt_on_dynamodb_is_a_503() {
    let env = moto_env().await;
    import(
        &parse(&two_devices()).unwrap(),
        env.cipher.as_ref(),
        env.store.as_ref(),
        &|_, _| {},
    )
    .await
    .unwrap();
    let racing = Arc::new(RacingStore::competitor(
        env.store.clone(),
        Arc::new(SystemClock),
    ));
    let mut p = portal(env.store.clone(), env.cipher.clone());
    p.store = racing.clone();
    env.calls.reset();
    let (resp, body) = call(
        &p,
        "POST",
        "/v1/devices/PC-A/recovery-key",
        Some("t1|u1|RecoveryKey.Read"),
        "",
    )
    .await;
    assert_eq!(status(&resp), 503, "{body}");
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        (
            RacingStore::count(&racing.loads),
            RacingStore::count(&racing.commits),
            RacingStore::count(&racing.conflicts)
        ),
        (3, 3, 3)
    );
    assert!(!env.calls.take().iter().any(|o| o == "KMS.Decrypt"));
    let events = events_of(&env.store, "t1", "u1").await;
    let denied: Vec<_> = events
        .iter()
        .filter(|e| e.outcome == Outcome::Denied)
        .map(|e| e.reason.as_str())
        .collect();
    assert_eq!(denied, ["concurrent_retrievals"]);
    assert_eq!(events.len(), 4, "3 competing grants and the denial");
}

/// KMS key pinning: a ciphertext sealed under another KMS key (with the
/// right encryption context) is refused by the cipher pinned to the
/// configured key, and the request path discloses nothing.
#[tokio::test]
async fn a_ciphertext_sealed_under_another_kms_key_is_refused() {
    let env = moto_env().await;
    let other_key = env
        .kms
        .create_key()
        .description("another key")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let other = KmsCipher::new(env.kms.clone(), Some(other_key));
    let ctx = KeyContext {
        tenant: t("t1"),
        device: d("PC-A"),
        key_id: KeyId::parse(KA).unwrap(),
    };
    let pw = RecoveryPassword::parse(&password(10)).unwrap();
    let sealed = other.seal(&ctx, &pw).await.unwrap();
    // Control: the key it was sealed under opens it.
    assert_eq!(
        other.open(&ctx, &sealed).await.unwrap().expose(),
        password(10)
    );
    match env.cipher.open(&ctx, &sealed).await {
        Err(CipherError::Rejected(_)) => {}
        Err(e) => panic!("expected Rejected, got {e:?}"),
        Ok(_) => panic!("a ciphertext of another key opened under the pinned key"),
    }
    // Through the request path: data imported under the other key, served
    // by a function pinned to the configured one.
    import(
        &parse(&two_devices()).unwrap(),
        &other,
        env.store.as_ref(),
        &|_, _| {},
    )
    .await
    .unwrap();
    let p = portal(env.store.clone(), env.cipher.clone());
    let (resp, body) = call(
        &p,
        "POST",
        "/v1/devices/PC-A/recovery-key",
        Some("t1|u1|RecoveryKey.Read"),
        "",
    )
    .await;
    assert_eq!(status(&resp), 500, "{body}");
    assert!(body.get("recovery_password").is_none(), "{body}");
    assert!(!String::from_utf8_lossy(resp.body()).contains(&password(10)));
}

/// A cipher that fails (as KMS throttling past its retries) from the
/// `fail_from`-th seal on.
struct FailingCipher {
    inner: Arc<KmsCipher>,
    seals: AtomicUsize,
    fail_from: usize,
}

#[async_trait]
impl KeyCipher for FailingCipher {
    async fn seal(
        &self,
        ctx: &KeyContext,
        pw: &RecoveryPassword,
    ) -> Result<SealedKey, CipherError> {
        if self.seals.fetch_add(1, Ordering::SeqCst) + 1 >= self.fail_from {
            return Err(CipherError::Unavailable(Unavailable::new(
                Cause::Kms,
                "injected throttling",
            )));
        }
        self.inner.seal(ctx, pw).await
    }
    async fn open(&self, ctx: &KeyContext, s: &SealedKey) -> Result<RecoveryPassword, CipherError> {
        self.inner.open(ctx, s).await
    }
}

/// Fails the `nth` call (1-based) of one DynamoDB operation, before it is
/// sent: a write that never happened.
#[derive(Debug)]
struct FailNth {
    op: &'static str,
    nth: usize,
    seen: Arc<AtomicUsize>,
}

impl Intercept for FailNth {
    fn name(&self) -> &'static str {
        "FailNth"
    }
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let is_op = cfg.load::<Metadata>().is_some_and(|m| m.name() == self.op);
        if is_op && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.nth {
            return Err(format!("injected failure of {} #{}", self.op, self.nth).into());
        }
        Ok(())
    }
}

fn three_devices() -> String {
    seed_json(vec![
        device(
            "t1",
            "PC-A",
            "u1",
            vec![key(KA, "operating_system", 10, "2024-05-15T09:30:00Z")],
        ),
        device(
            "t1",
            "PC-B",
            "u1",
            vec![key(KB, "operating_system", 11, "2024-05-16T09:30:00Z")],
        ),
        device(
            "t2",
            "PC-C",
            "u2",
            vec![key(KC, "operating_system", 13, "2024-05-17T09:30:00Z")],
        ),
    ])
}

/// What the import claims when it stops part-way, checked through the
/// store: no device of the failed round can be listed or retrieved, the
/// rerun loads everything, and a third run has nothing left to do.
async fn assert_nothing_loaded_then_rerun(env: &common_aws::MotoEnv) {
    let ids: Vec<(TenantId, DeviceId)> = [("t1", "PC-A"), ("t1", "PC-B"), ("t2", "PC-C")]
        .iter()
        .map(|(a, b)| (t(a), d(b)))
        .collect();
    assert!(env.store.stored_devices(&ids).await.unwrap().is_empty());
    for (tenant, dev) in &ids {
        let (found, _) = env
            .store
            .load_for_disclosure(tenant, dev, &u("u1"))
            .await
            .unwrap();
        assert!(found.is_none(), "{tenant}/{dev} is loaded");
    }
    let (devices, policy) = env.store.list_devices(&t("t1"), &u("u1")).await.unwrap();
    assert!(devices.is_empty(), "{devices:?}");
    // The tenants went first: their policy is in place.
    assert!(policy.self_service);

    let seed = parse(&three_devices()).unwrap();
    let rerun = import(&seed, env.cipher.as_ref(), env.store.as_ref(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(
        (rerun.tenants, rerun.devices, rerun.keys, rerun.skipped),
        (2, 3, 3, 0)
    );
    let p = portal(env.store.clone(), env.cipher.clone());
    for (dev, token, pw) in [
        ("PC-A", "t1|u1|RecoveryKey.Read", 10),
        ("PC-B", "t1|u1|RecoveryKey.Read", 11),
        ("PC-C", "t2|hd|RecoveryKey.Read.All", 13),
    ] {
        let (resp, body) = call(
            &p,
            "POST",
            &format!("/v1/devices/{dev}/recovery-key"),
            Some(token),
            "",
        )
        .await;
        assert_eq!(status(&resp), 200, "{dev}: {body}");
        assert_eq!(body["recovery_password"], password(pw));
    }
    let third = import(&seed, env.cipher.as_ref(), env.store.as_ref(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!((third.devices, third.keys, third.skipped), (0, 0, 3));
}

/// KMS fails on the third key of the round: nothing of the round is written.
#[tokio::test]
async fn an_import_stopped_by_kms_loads_nothing_and_the_rerun_completes() {
    let env = moto_env().await;
    let failing = FailingCipher {
        inner: env.cipher.clone(),
        seals: AtomicUsize::new(0),
        fail_from: 3,
    };
    let err = import(
        &parse(&three_devices()).unwrap(),
        &failing,
        env.store.as_ref(),
        &|_, _| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("injected throttling"), "{err}");
    assert_nothing_loaded_then_rerun(&env).await;
}

/// DynamoDB fails the write of the device items, after the key pointers
/// went in: no device is loaded (only the helpdesk's key-ID lookup may list
/// a pointer until the rerun), and the rerun completes.
#[tokio::test]
async fn an_import_stopped_by_dynamodb_loads_nothing_and_the_rerun_completes() {
    let env = moto_env().await;
    let failing = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&env.sdk)
            .interceptor(FailNth {
                op: "BatchWriteItem",
                nth: 2,
                seen: Arc::default(),
            })
            .build(),
    );
    let store = DynamoStore::new(failing, &env.prefix);
    let err = import(
        &parse(&three_devices()).unwrap(),
        env.cipher.as_ref(),
        &store,
        &|_, _| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("BatchWriteItem"), "{err}");
    // The pointers (the first batch) are in; the devices (the second) not.
    let pointers = env
        .store
        .find_keys(&t("t1"), &KeyIdPrefix::parse("AAAA0001").unwrap())
        .await
        .unwrap();
    assert_eq!(pointers.len(), 1);
    assert_nothing_loaded_then_rerun(&env).await;
}

/// The request-id rule on DynamoDB (grants kept in the rate-limit item): an
/// identical retry of a grant is served again without a new event or slot;
/// the same id for another device is a 400 with a denied event of its own.
#[tokio::test]
async fn request_ids_on_dynamodb_replay_identical_grants_and_refuse_reuse() {
    let env = moto_env().await;
    import(
        &parse(&two_devices()).unwrap(),
        env.cipher.as_ref(),
        env.store.as_ref(),
        &|_, _| {},
    )
    .await
    .unwrap();
    let p = portal(env.store.clone(), env.cipher.clone());
    let send = |device: &str| {
        let mut headers = ::http::HeaderMap::new();
        headers.insert(
            "authorization",
            "Bearer t1|u1|RecoveryKey.Read".parse().unwrap(),
        );
        headers.insert("x-request-id", "client-retry-0001".parse().unwrap());
        headers.insert("user-agent", "moto-test/1".parse().unwrap());
        recovery_portal::api::ApiRequest {
            method: ::http::Method::POST,
            path: format!("/v1/devices/{device}/recovery-key"),
            query: None,
            headers,
            body: Default::default(),
            source_ip: Some("192.0.2.10".into()),
            request_id: format!("gw-{}", uuid::Uuid::new_v4().simple()),
        }
    };
    let routes = recovery_portal::api::Routes::All;
    for _ in 0..2 {
        let resp = recovery_portal::api::handle(&p, routes, send("PC-A")).await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["recovery_password"], password(10));
    }
    let resp = recovery_portal::api::handle(&p, routes, send("PC-B")).await;
    assert_eq!(resp.status(), 400);
    let events = events_of(&env.store, "t1", "u1").await;
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.outcome.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        seen,
        [("denied", "request_id_reused"), ("granted", "owner")]
    );
    assert!(events.iter().all(|e| e.request_id == "client-retry-0001"));
    let (_, window) = env
        .store
        .load_for_disclosure(&t("t1"), &d("PC-A"), &u("u1"))
        .await
        .unwrap();
    assert_eq!(
        window.recent.iter().map(|s| s.count).sum::<u32>(),
        1,
        "the replay took no slot"
    );
}
