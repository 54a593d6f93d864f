//! The AWS adapters end to end on moto (real DynamoDB and KMS wire
//! protocols): requests through `api::handle`, the number of AWS calls per
//! request, ciphertext binding, import idempotency and table creation.
//!
//! Needs `PORTAL_TEST_MOTO_URL` (see scripts/moto.sh); fails without it.

use crate::support::aws as common_aws;

use aws_sdk_dynamodb::types::AttributeValue;
use common_aws::{call, device, key, moto_env, password, portal, seed_json};
use recovery_portal::adapters::aws::items;
use recovery_portal::adapters::aws::{TableStatus, create_tables};
use recovery_portal::domain::ids::{DeviceId, KeyId, KeyIdPrefix, TenantId};
use recovery_portal::domain::model::KeyContext;
use recovery_portal::ports::{CipherError, KeyCipher, Store};
use recovery_portal::tools::import::import;
use recovery_portal::tools::seed::parse;

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

    // List own devices: one Query on by_owner and, alongside it, the tenant
    // item (the settings, which the API can change).
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

    // No devices: the same two calls.
    let (resp, body) = call(&p, "GET", "/v1/devices", Some("t1|nobody|Devices.Read"), "").await;
    assert_eq!(status(&resp), 200, "{body}");
    assert_eq!(body["helpdesk"]["name"], "T1 IT");
    assert_eq!(
        sorted(env.calls.take()),
        ["DynamoDB.GetItem", "DynamoDB.Query"]
    );

    // Key retrieval: one read, one transactional write, one decrypt.
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
        env.calls.take().len(),
        recovery_portal::adapters::aws::schema::AUDIT_TIME_SHARDS as usize
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
    // nothing; by design its one call is the audit record of the denial.
    let (resp, body) = call(
        &p,
        "POST",
        "/v1/devices/PC-A/recovery-key",
        Some("t1|u1|Devices.Read"),
        "",
    )
    .await;
    assert_eq!(status(&resp), 403, "{body}");
    assert_eq!(env.calls.take(), ["DynamoDB.PutItem"]);
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
