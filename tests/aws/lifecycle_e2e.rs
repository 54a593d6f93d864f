//! The key lifecycle end to end over HTTP (the local server on a real
//! socket), on the embedded backends and on DynamoDB + KMS (moto): enrol,
//! escrow, list, disclose, rotation request, escrow a newer key, request
//! cleared, the old key readable by the helpdesk by key ID, retention ends,
//! settings, retirement; every step audited, no password anywhere but in a
//! disclosure.

use crate::support::aws::moto_env;
use crate::support::common::{
    AUDIENCE, ISSUER, NOW, Reply, Server, TestClock, password, serve_portal, test_seed,
};
use recovery_portal::adapters::embedded::{LocalCipher, MemoryStore};
use recovery_portal::domain::ports::{KeyCipher, LifecycleStore, Portal, Store};
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};
use serde_json::{Value, json};
use std::sync::Arc;

const DEVICE: &str = "PC-DANA";
const K1: &str = "AAAA0001-1111-4111-8111-000000000001";
const K2: &str = "AAAA0002-2222-4222-8222-000000000002";
const MDM_SCOPES: &str = "RecoveryKey.Escrow Devices.ReadWrite.All";

struct Env {
    server: Server,
    idp: DevIdentityProvider,
    clock: Arc<TestClock>,
    portal: Portal,
    /// Every reply that is not a disclosure, to check none holds a password.
    others: Vec<String>,
}

impl Env {
    async fn new<
        S: Store + LifecycleStore + recovery_portal::domain::ports::ImportStore + 'static,
    >(
        store: Arc<S>,
        cipher: Arc<dyn KeyCipher>,
    ) -> Self {
        let clock = TestClock::at(NOW);
        let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
        let seed = recovery_portal::tools::seed::parse(&test_seed()).unwrap();
        recovery_portal::tools::import::import(&seed, cipher.as_ref(), store.as_ref(), &|_, _| {})
            .await
            .unwrap();
        let portal = Portal {
            store: store.clone(),
            lifecycle: store,
            cipher,
            clock: clock.clone(),
            verifier: Arc::new(idp.verifier(clock.clone())),
            key_rate_limit: 50,
            helpdesk_rate_limit: 50,
            incident_max_rate_limit: recovery_portal::config::DEFAULT_INCIDENT_MAX_RATE_LIMIT,
            metrics: Arc::new(recovery_portal::domain::ports::NoMetrics),
            max_auth_age: None,
        };
        Self {
            server: serve_portal(portal.clone()).await,
            idp,
            clock,
            portal,
            others: Vec::new(),
        }
    }

    fn token(&self, user: &str, scopes: &str) -> String {
        self.idp
            .token("contoso", user, scopes, self.clock.unix(), 3600)
    }

    async fn send(&mut self, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
        let text = body.map(|b| b.to_string());
        let r = self
            .server
            .send(
                method,
                path,
                Some(token),
                text.as_deref().map(|t| ("application/json", t)),
            )
            .await;
        self.others.push(r.text.clone());
        r
    }

    /// A retrieval (its reply may hold a password, so it is not kept).
    async fn retrieve(&mut self, user: &str, scopes: &str, body: Value) -> Reply {
        let token = self.token(user, scopes);
        let r = self
            .server
            .post_key(DEVICE, &token, Some(&body.to_string()))
            .await;
        if r.status != 200 {
            self.others.push(r.text.clone());
        }
        r
    }

    async fn escrow(&mut self, key: &str, pw: u32, created_at: &str) -> Reply {
        let t = self.token("mdm-sync", MDM_SCOPES);
        self.send(
            "PUT",
            &format!("/v1/devices/{DEVICE}/recovery-keys/{key}"),
            &t,
            Some(json!({
                "volume_type": "operating_system",
                "recovery_password": password(pw),
                "created_at": created_at,
            })),
        )
        .await
    }

    async fn dana_keys(&mut self) -> Vec<Value> {
        let t = self.token("dana", "RecoveryKey.Read");
        let r = self.send("GET", "/v1/devices", &t, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device_id"] == DEVICE)
            .map(|d| d["recovery_keys"].as_array().unwrap().clone())
            .unwrap_or_default()
    }

    async fn rotation_requests(&mut self) -> Value {
        let t = self.token("mdm-sync", MDM_SCOPES);
        let r = self.send("GET", "/v1/rotation-requests", &t, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    }
}

fn key<'a>(keys: &'a [Value], id: &str) -> &'a Value {
    keys.iter()
        .find(|k| k["key_id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {keys:?}"))
}

/// Enrol → escrow → list → disclose → rotation request → newer escrow →
/// request cleared → old key for the helpdesk by ID. Returns with the old
/// key superseded and still readable.
async fn until_superseded(env: &mut Env) {
    let mdm = env.token("mdm-sync", MDM_SCOPES);
    // Escrow needs an enrolled device: the uniform 404 before.
    env.escrow(K1, 11, "2025-01-01T00:00:00Z")
        .await
        .assert_problem(404);
    let device_body = json!({"owner": "dana", "display_name": "Dana laptop", "os": "Windows 11", "managed_by": "organization"});
    let r = env
        .send(
            "PUT",
            &format!("/v1/devices/{DEVICE}"),
            &mdm,
            Some(device_body.clone()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["owner"], "dana");
    let r = env
        .send(
            "PUT",
            &format!("/v1/devices/{DEVICE}"),
            &mdm,
            Some(device_body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Devices.ReadWrite.All and RecoveryKey.Escrow are separate permissions.
    let escrow_only = env.token("agent", "RecoveryKey.Escrow");
    let r = env
        .send(
            "PUT",
            &format!("/v1/devices/{DEVICE}"),
            &escrow_only,
            Some(json!({"owner": "mallory", "display_name": "x", "os": "x", "managed_by": "organization"})),
        )
        .await;
    assert_eq!(
        r.assert_problem(403)["required_permission"],
        "Devices.ReadWrite.All"
    );

    // Escrow: 201, then 200 for the same key again, 409 for another password.
    let r = env.escrow(K1, 11, "2025-01-01T00:00:00Z").await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["key_id"], K1);
    assert_eq!(r.json()["superseded_at"], Value::Null);
    assert_eq!(env.escrow(K1, 11, "2025-01-01T00:00:00Z").await.status, 200);
    env.escrow(K1, 12, "2025-01-01T00:00:00Z")
        .await
        .assert_problem(409);
    // Invalid input: 400, and the password is not echoed.
    let bad = env
        .send(
            "PUT",
            &format!("/v1/devices/{DEVICE}/recovery-keys/{K2}"),
            &mdm,
            Some(json!({"volume_type": "operating_system", "recovery_password": "123454-234564-345675-456786-567897-679008-700007-000000"})),
        )
        .await;
    bad.assert_problem(400);
    assert!(!bad.text.contains("123454"), "{}", bad.text);
    let bad = env
        .send(
            "PUT",
            &format!("/v1/devices/{DEVICE}/recovery-keys/{K2}"),
            &mdm,
            Some(json!({"volume_type": "operating_system", "recovery_password": 123_453_234_564_u64})),
        )
        .await;
    bad.assert_problem(400);
    assert!(!bad.text.contains("123453"), "{}", bad.text);
    env.send(
        "PUT",
        &format!("/v1/devices/{DEVICE}/recovery-keys/not-a-guid"),
        &mdm,
        Some(json!({"volume_type": "operating_system", "recovery_password": password(13)})),
    )
    .await
    .assert_problem(400);
    let r = env
        .send(
            "PUT",
            &format!("/v1/devices/{DEVICE}/recovery-keys/{K2}"),
            &env.token("dana", "RecoveryKey.Read"),
            Some(json!({"volume_type": "operating_system", "recovery_password": password(13)})),
        )
        .await;
    assert_eq!(
        r.assert_problem(403)["required_permission"],
        "RecoveryKey.Escrow"
    );

    // Listed, not yet disclosed.
    let keys = env.dana_keys().await;
    assert_eq!(keys.len(), 1);
    assert_eq!(key(&keys, K1)["disclosed_at"], Value::Null);
    assert_eq!(
        env.rotation_requests().await,
        json!({"rotation_requests": [], "next": null})
    );

    // The owner discloses it: marked, rotation requested.
    env.clock.advance(60);
    let r = env.retrieve("dana", "RecoveryKey.Read", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["key_id"], K1);
    assert_eq!(r.json()["recovery_password"], password(11));
    let disclosed_at = "2026-01-01T00:01:00Z";
    assert_eq!(
        key(&env.dana_keys().await, K1)["disclosed_at"],
        disclosed_at
    );
    assert_eq!(
        env.rotation_requests().await,
        json!({"rotation_requests": [{"device_id": DEVICE, "key_id": K1, "volume_type": "operating_system", "disclosed_at": disclosed_at}], "next": null})
    );
    let r = env
        .send(
            "GET",
            "/v1/rotation-requests",
            &env.token("dana", "RecoveryKey.Read RecoveryKey.Read.All"),
            None,
        )
        .await;
    r.assert_problem(403);

    // The device rotates: the newer key supersedes K1, the request clears.
    env.clock.advance(60);
    let r = env.escrow(K2, 22, "2026-01-01T00:02:00Z").await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        env.rotation_requests().await,
        json!({"rotation_requests": [], "next": null})
    );
    let keys = env.dana_keys().await;
    assert_eq!(key(&keys, K1)["superseded_at"], "2026-01-01T00:02:00Z");
    assert_eq!(key(&keys, K1)["disclosed_at"], disclosed_at);
    assert_eq!(key(&keys, K2)["superseded_at"], Value::Null);

    // Never a self-service default; but its owner reads it by its key ID
    // (the ID on the recovery screen proves which key the PC needs).
    let r = env.retrieve("dana", "RecoveryKey.Read", json!({})).await;
    assert_eq!(r.json()["key_id"], K2);
    assert_eq!(r.json()["recovery_password"], password(22));
    let r = env
        .retrieve("dana", "RecoveryKey.Read", json!({"key_id": K1}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["recovery_password"], password(11));
    // The helpdesk reads it by key ID (a user may be looking at an old
    // recovery screen), and not by default.
    let r = env
        .retrieve("helpdesk-1", "RecoveryKey.Read.All", json!({"key_id": K1}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["recovery_password"], password(11));
    let r = env
        .retrieve("helpdesk-1", "RecoveryKey.Read.All", json!({}))
        .await;
    assert_eq!(r.json()["key_id"], K2);
}

/// Retention ends → settings → retirement → the trail.
async fn after_retention(env: &mut Env, sweep: bool) {
    // 30 days (the default retention) and a second later: gone.
    env.clock.advance(30 * 86_400 + 1);
    if sweep {
        let n = env
            .portal
            .lifecycle
            .sweep_expired(env.portal.clock.now())
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    env.retrieve("helpdesk-1", "RecoveryKey.Read.All", json!({"key_id": K1}))
        .await
        .assert_problem(404);
    let keys = env.dana_keys().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["key_id"], K2);

    // Settings: read, changed, effective on the next request.
    let admin = env.token("admin", "Tenant.Settings.ReadWrite");
    let r = env.send("GET", "/v1/tenant/settings", &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"self_service": true, "helpdesk": {"name": "Contoso IT", "email": "help@contoso.test", "phone": "+1 555 0100", "url": "https://help.contoso.test"},
               "require_reason": "never", "superseded_key_retention_days": 30,
               "retired_device_retention_days": 30,
               "self_service_rate_limit": null, "helpdesk_rate_limit": null})
    );
    let r = env
        .send(
            "PATCH",
            "/v1/tenant/settings",
            &admin,
            Some(json!({"require_reason": "always", "superseded_key_retention_days": 7})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["require_reason"], "always");
    assert_eq!(r.json()["self_service"], true);
    let refused = env.retrieve("dana", "RecoveryKey.Read", json!({})).await;
    let p = refused.assert_problem(400);
    assert!(p["detail"].as_str().unwrap().contains("reason"), "{p}");
    let r = env
        .retrieve(
            "dana",
            "RecoveryKey.Read",
            json!({"reason": "locked out after an update"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for bad in [
        json!({"superseded_key_retention_days": 0}),
        json!({"superseded_key_retention_days": 3651}),
        json!({"require_reason": "sometimes"}),
        json!({"self_service": "yes"}),
        json!({"colour": "red"}),
    ] {
        env.send("PATCH", "/v1/tenant/settings", &admin, Some(bad))
            .await
            .assert_problem(400);
    }
    let r = env
        .send(
            "GET",
            "/v1/tenant/settings",
            &env.token("mdm-sync", MDM_SCOPES),
            None,
        )
        .await;
    assert_eq!(
        r.assert_problem(403)["required_permission"],
        "Tenant.Settings.ReadWrite"
    );

    // Retirement: 204, then the uniform 404 on the owner and listing
    // routes; the helpdesk still reads its keys by key ID with a reason.
    let mdm = env.token("mdm-sync", MDM_SCOPES);
    let r = env
        .send("DELETE", &format!("/v1/devices/{DEVICE}"), &mdm, None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(r.text.is_empty());
    env.send("DELETE", &format!("/v1/devices/{DEVICE}"), &mdm, None)
        .await
        .assert_problem(404);
    env.retrieve("dana", "RecoveryKey.Read", json!({"reason": "again"}))
        .await
        .assert_problem(404);
    let r = env
        .retrieve(
            "helpdesk-1",
            "RecoveryKey.Read.All",
            json!({"key_id": K2, "reason": "ticket 1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(env.dana_keys().await.is_empty());
    env.escrow(K2, 22, "2026-01-01T00:02:00Z")
        .await
        .assert_problem(404);

    // Every step left its event, with its action.
    let auditor = env.token("auditor", "AuditLog.Read.All");
    let r = env
        .send(
            "GET",
            &format!("/v1/audit-events?device_id={DEVICE}&limit=1000"),
            &auditor,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let events = r.json()["events"].as_array().unwrap().clone();
    let count = |action: &str, outcome: &str| {
        events
            .iter()
            .filter(|e| e["action"] == action && e["outcome"] == outcome)
            .count()
    };
    assert_eq!(count("device_upsert", "granted"), 1, "{events:?}");
    assert_eq!(count("escrow", "granted"), 2);
    assert_eq!(
        count("escrow", "denied"),
        4,
        "404, 409, 403 (dana lacks RecoveryKey.Escrow) and 404 after retirement"
    );
    // A refused write is audited like a refused disclosure (the route
    // table's one permission check, `api::permit`).
    assert!(
        events.iter().any(|e| e["action"] == "escrow"
            && e["reason"] == "insufficient_scope"
            && e["actor"] == "dana"),
        "{events:?}"
    );
    assert_eq!(count("disclose", "granted"), 7);
    assert_eq!(count("device_retire", "granted"), 1);
    let r = env
        .send("GET", "/v1/audit-events?actor=admin", &auditor, None)
        .await;
    let settings: Vec<Value> = r.json()["events"].as_array().unwrap().clone();
    assert_eq!(settings.len(), 1, "{settings:?}");
    assert_eq!(settings[0]["action"], "settings_change");
    assert!(
        settings[0]["justification"]
            .as_str()
            .unwrap()
            .contains("require_reason never -> always")
    );

    // No password in any answer but the disclosures themselves.
    for text in &env.others {
        for n in [11, 12, 13, 22] {
            assert!(!text.contains(&password(n)), "password {n} in {text}");
        }
    }
}

#[tokio::test]
async fn key_lifecycle_over_http_on_the_embedded_backends() {
    let store = Arc::new(MemoryStore::new());
    let mut env = Env::new(store.clone(), Arc::new(LocalCipher::random())).await;
    until_superseded(&mut env).await;
    after_retention(&mut env, true).await;
    // No event of the embedded trail holds a password either.
    let trail = format!("{:?}", store.audit_log());
    for n in [11, 12, 13, 22] {
        assert!(!trail.contains(&password(n)));
    }
}

#[tokio::test]
async fn key_lifecycle_over_http_on_dynamodb_and_kms() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let aws = moto_env().await;
    let mut env = Env::new(aws.store.clone(), aws.cipher.clone()).await;
    until_superseded(&mut env).await;
    // The superseded key's item expires by TTL when its retention ends.
    let item = aws
        .dynamodb
        .get_item()
        .table_name(aws.store.devices_table())
        .key("pk", AttributeValue::S(format!("D#contoso#{DEVICE}")))
        .key("sk", AttributeValue::S(format!("KEY#{K1}")))
        .send()
        .await
        .unwrap()
        .item
        .expect("the superseded key's item");
    let superseded_at = NOW + 120;
    assert_eq!(
        item.get("expires_at"),
        Some(&AttributeValue::N(
            (superseded_at + 30 * 86_400).to_string()
        ))
    );
    assert!(matches!(item.get("sealed"), Some(AttributeValue::B(_))));
    after_retention(&mut env, false).await;
}

/// `portal keys verify` against DynamoDB + KMS (moto): a bad escrow (a
/// ciphertext sealed for another key, and a damaged one) is reported by
/// device and key ID, no password is printed, the run is audited, and the
/// exit status says whether every key is sound.
#[test]
fn keys_verify_reports_broken_keys_and_prints_none() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use recovery_portal::domain::audit::{Action, AuditQuery};
    use recovery_portal::domain::ids::TenantId;
    use std::process::Command;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let aws = rt.block_on(moto_env());
    let seed = recovery_portal::tools::seed::parse(&test_seed()).unwrap();
    rt.block_on(recovery_portal::tools::import::import(
        &seed,
        aws.cipher.as_ref(),
        aws.store.as_ref(),
        &|_, _| {},
    ))
    .unwrap();
    let table = aws.store.devices_table().to_owned();
    let get_sealed = |device: &str| -> std::collections::HashMap<String, AttributeValue> {
        let item = rt
            .block_on(
                aws.dynamodb
                    .get_item()
                    .table_name(&table)
                    .key("pk", AttributeValue::S(format!("D#contoso#{device}")))
                    .key("sk", AttributeValue::S("DEVICE".into()))
                    .send(),
            )
            .unwrap()
            .item
            .unwrap();
        match item.get("sealed") {
            Some(AttributeValue::M(m)) => m.clone(),
            _ => panic!("no sealed map"),
        }
    };
    // PC-BOB's key replaced by PC-ALICE-2's ciphertext (sealed for another
    // device and key); one byte of PC-ALICE-2's own flipped.
    let alice2 = get_sealed("PC-ALICE-2");
    let (alice2_key, alice2_blob) = alice2.iter().next().unwrap();
    let AttributeValue::B(blob) = alice2_blob else {
        panic!()
    };
    let mut damaged = blob.clone().into_inner();
    damaged[20] ^= 0x55;
    let bob_key = get_sealed("PC-BOB").keys().next().unwrap().clone();
    for (device, key, value) in [
        ("PC-BOB", bob_key.clone(), blob.clone().into_inner()),
        ("PC-ALICE-2", alice2_key.clone(), damaged),
    ] {
        rt.block_on(
            aws.dynamodb
                .update_item()
                .table_name(&table)
                .key("pk", AttributeValue::S(format!("D#contoso#{device}")))
                .key("sk", AttributeValue::S("DEVICE".into()))
                .update_expression("SET #s.#k = :v")
                .expression_attribute_names("#s", "sealed")
                .expression_attribute_names("#k", key)
                .expression_attribute_values(":v", AttributeValue::B(value.into()))
                .send(),
        )
        .unwrap();
    }

    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_portal"))
            .args(args)
            .env("AWS_ENDPOINT_URL", crate::support::aws::moto_url())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("PORTAL_TABLE_PREFIX", &aws.prefix)
            .env("PORTAL_KMS_KEY_ID", &aws.kms_key_id)
            .env("USER", "ops-admin")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["keys", "verify"]);
    assert!(!ok, "broken keys must fail the run: {out}{err}");
    assert!(
        out.contains(&format!(
            "BROKEN tenant contoso device PC-BOB key {bob_key}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "BROKEN tenant contoso device PC-ALICE-2 key {alice2_key}"
        )),
        "{out}"
    );
    assert!(
        out.contains("7 keys checked in 2 tenants, 2 broken"),
        "{out}"
    );
    for n in 1..=7 {
        assert!(
            !out.contains(&password(n)) && !err.contains(&password(n)),
            "a password was printed"
        );
    }
    // Another tenant alone: all sound.
    let (ok, out, err) = run(&["keys", "verify", "--tenant", "fabrikam"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("2 keys checked in 1 tenants, 0 broken"),
        "{out}"
    );

    // Each run is in the tenants' audit trails.
    let events = rt
        .block_on(aws.store.audit_events(
            &TenantId::parse("contoso").unwrap(),
            &AuditQuery {
                device_id: None,
                actor: None,
                limit: 100,
                ..AuditQuery::default()
            },
        ))
        .unwrap();
    let verify: Vec<_> = events
        .events
        .iter()
        .filter(|e| e.action == Action::KeysVerify)
        .collect();
    assert_eq!(verify.len(), 1, "{events:?}");
    assert_eq!(verify[0].actor.as_str(), "cli.ops-admin");
    assert_eq!(verify[0].reason, "broken_keys");
    let detail = verify[0].justification.as_deref().unwrap();
    assert!(detail.starts_with("5 keys checked, 2 broken"), "{detail}");
    assert!(detail.contains(&format!("PC-BOB/{bob_key}")), "{detail}");
}

/// A signed-in caller without a write permission cannot flood the audit
/// trail by repeating a refused write: like refused retrievals, its
/// refusals are stored up to the hourly per-caller cap, then one marker
/// event; every answer stays a 403 problem.
async fn refused_writes_are_capped(env: &mut Env) {
    use recovery_portal::domain::audit::DENIED_EVENTS_PER_HOUR as CAP;
    let eve = env.token("eve", "RecoveryKey.Read");
    for i in 0..2 * CAP {
        let r = env
            .send(
                "PATCH",
                "/v1/tenant/settings",
                &eve,
                Some(json!({ "self_service_enabled": i % 2 == 0 })),
            )
            .await;
        r.assert_problem(403);
    }
    let auditor = env.token("auditor", "AuditLog.Read.All");
    let r = env
        .send(
            "GET",
            "/v1/audit-events?actor=eve&limit=1000",
            &auditor,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let events = r.json()["events"].as_array().unwrap().clone();
    let count = |reason: &str| events.iter().filter(|e| e["reason"] == reason).count();
    assert_eq!(events.len(), CAP as usize + 1, "cap + 1 marker");
    assert_eq!(count("insufficient_scope"), CAP as usize);
    assert_eq!(count("denials_capped"), 1);
    assert!(events.iter().all(|e| e["outcome"] == "denied"));
}

#[tokio::test]
async fn refused_writes_are_capped_on_the_embedded_backends() {
    let store = Arc::new(MemoryStore::new());
    let mut env = Env::new(store.clone(), Arc::new(LocalCipher::random())).await;
    refused_writes_are_capped(&mut env).await;
    let eve = store
        .audit_log()
        .into_iter()
        .filter(|e| e.actor.as_str() == "eve")
        .count();
    assert!(eve <= 1 + recovery_portal::domain::audit::DENIED_EVENTS_PER_HOUR as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_are_capped_on_sqlite() {
    let (store, cipher) = crate::contract_backends::sqlite_backends().await;
    let mut env = Env::new(Arc::new(store), Arc::new(cipher)).await;
    refused_writes_are_capped(&mut env).await;
}

#[tokio::test]
async fn refused_writes_are_capped_on_dynamodb() {
    let aws = moto_env().await;
    let mut env = Env::new(aws.store.clone(), aws.cipher.clone()).await;
    refused_writes_are_capped(&mut env).await;
}
