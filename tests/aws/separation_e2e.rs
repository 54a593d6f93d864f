//! Issue 17: who may change what, end to end over HTTP on the embedded
//! backends and on DynamoDB + KMS (moto). Owner changes, escrow credentials,
//! incidents and retirement must not become ways to read or bury keys.

use crate::support::aws::moto_env;
use crate::support::common::{
    AUDIENCE, ISSUER, NOW, Reply, Server, TestClock, password, serve_portal, test_seed,
};
use recovery_portal::adapters::embedded::{LocalCipher, MemoryStore};
use recovery_portal::adapters::emf::MemoryMetrics;
use recovery_portal::domain::ports::{ImportStore, KeyCipher, LifecycleStore, Portal, Store};
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};
use serde_json::{Value, json};
use std::sync::Arc;

/// Bob's one key (seeded 2024-02-01).
const BOB_KEY: &str = "44444444-DDDD-4DDD-8DDD-000000000005";
/// Alice's current OS key on PC-ALICE (seeded 2025-01-01).
const ALICE_KEY: &str = "11111111-AAAA-4AAA-8AAA-000000000002";
const K_NEW: &str = "77777777-7777-4777-8777-000000000001";
const K_PLANT: &str = "77777777-7777-4777-8777-000000000002";
const MDM: &str = "RecoveryKey.Escrow";
const DEV_ADMIN: &str = "Devices.ReadWrite.All";
const AGENT: &str = "RecoveryKey.Read.All";

struct Env {
    server: Server,
    idp: DevIdentityProvider,
    clock: Arc<TestClock>,
    portal: Portal,
    metrics: Arc<MemoryMetrics>,
}

impl Env {
    async fn new<S: Store + LifecycleStore + ImportStore + 'static>(
        store: Arc<S>,
        cipher: Arc<dyn KeyCipher>,
    ) -> Self {
        let clock = TestClock::at(NOW);
        let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
        let seed = recovery_portal::tools::seed::parse(&test_seed()).unwrap();
        recovery_portal::tools::import::import(&seed, cipher.as_ref(), store.as_ref(), &|_, _| {})
            .await
            .unwrap();
        let metrics = Arc::new(MemoryMetrics::default());
        // The deployment's limits: 10 keys an hour for owners and agents.
        let mut portal = crate::support::aws::portal(store, cipher);
        portal.clock = clock.clone();
        portal.verifier = Arc::new(idp.verifier(clock.clone()));
        portal.metrics = metrics.clone();
        Self {
            server: serve_portal(portal.clone()).await,
            idp,
            clock,
            portal,
            metrics,
        }
    }

    fn token(&self, user: &str, scopes: &str) -> String {
        self.idp
            .token("contoso", user, scopes, self.clock.unix(), 3600)
    }

    /// A device agent's token: bound to one device by its `device_id` claim.
    fn device_token(&self, device: &str) -> String {
        let now = self.clock.unix();
        self.idp.sign(&json!({
            "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 3600,
            "tid": "contoso", "oid": format!("agent-{device}"),
            "roles": ["RecoveryKey.Escrow.Device"], "device_id": device,
        }))
    }

    async fn send(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
        let text = body.map(|b| b.to_string());
        self.server
            .send(
                method,
                path,
                Some(token),
                text.as_deref().map(|t| ("application/json", t)),
            )
            .await
    }

    async fn retrieve(&self, device: &str, user: &str, scopes: &str, body: Value) -> Reply {
        let t = self.token(user, scopes);
        self.server
            .post_key(device, &t, Some(&body.to_string()))
            .await
    }

    async fn escrow(&self, token: &str, device: &str, key: &str, pw: u32, at: &str) -> Reply {
        self.send(
            "PUT",
            &format!("/v1/devices/{device}/recovery-keys/{key}"),
            token,
            Some(json!({"volume_type": "operating_system", "recovery_password": password(pw), "created_at": at})),
        )
        .await
    }

    async fn events(&self, query: &str) -> Vec<Value> {
        let t = self.token("auditor", "AuditLog.Read.All");
        let r = self
            .send(
                "GET",
                &format!("/v1/audit-events?limit=1000&{query}"),
                &t,
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["events"].as_array().unwrap().clone()
    }

    async fn listed(&self, user: &str, device: &str) -> bool {
        let r = self
            .send(
                "GET",
                "/v1/devices",
                &self.token(user, "RecoveryKey.Read"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["device_id"] == device)
    }
}

fn bob_pc(owner: &str) -> Value {
    json!({"owner": owner, "display_name": "Bob PC", "os": "Windows 11", "managed_by": "organization"})
}

/// Finding 1: re-own, read, re-own back is impossible. An owner change
/// naming the caller is refused (403, audited, counted); a new owner reads
/// only keys escrowed after they became the owner; older keys take the
/// helpdesk path.
async fn ownership_is_not_a_key_permission(env: &Env) {
    let insider = env.token("mallory", &format!("{DEV_ADMIN} RecoveryKey.Read"));
    let r = env
        .send(
            "PUT",
            "/v1/devices/PC-BOB",
            &insider,
            Some(bob_pc("mallory")),
        )
        .await;
    let p = r.assert_problem(403);
    assert!(p["detail"].as_str().unwrap().contains("another"), "{p}");
    assert!(env.listed("bob", "PC-BOB").await, "nothing changed");
    let denied = env.events("actor=mallory").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["outcome"], "denied");
    assert_eq!(denied[0]["reason"], "self_assignment");

    // A second administrator moves it: allowed, audited, counted.
    let admin = env.token("it-admin", DEV_ADMIN);
    let r = env
        .send("PUT", "/v1/devices/PC-BOB", &admin, Some(bob_pc("mallory")))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(env.metrics.total("OwnerChanges"), 1);
    // The new owner lists the device but cannot read bob's key, by default
    // or by its key ID.
    assert!(env.listed("mallory", "PC-BOB").await);
    env.retrieve("PC-BOB", "mallory", "RecoveryKey.Read", json!({}))
        .await
        .assert_problem(404);
    env.retrieve(
        "PC-BOB",
        "mallory",
        "RecoveryKey.Read",
        json!({"key_id": BOB_KEY}),
    )
    .await
    .assert_problem(404);
    // The helpdesk path still reads it.
    let r = env
        .retrieve(
            "PC-BOB",
            "agent",
            AGENT,
            json!({"key_id": BOB_KEY, "reason": "ticket 1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A key escrowed after the change is the new owner's.
    env.clock.advance(60);
    let mdm = env.token("mdm-sync", MDM);
    let r = env
        .escrow(&mdm, "PC-BOB", K_NEW, 40, "2026-01-01T00:01:00Z")
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = env
        .retrieve("PC-BOB", "mallory", "RecoveryKey.Read", json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["key_id"], K_NEW);
    let denials: Vec<Value> = env
        .events("device_id=PC-BOB")
        .await
        .into_iter()
        .filter(|e| e["actor"] == "mallory" && e["action"] == "disclose")
        .collect();
    assert!(
        denials.iter().any(|e| e["reason"] == "key_predates_owner"),
        "{denials:?}"
    );
}

/// Finding 2: device-bound escrow credentials, no future `created_at`, a
/// superseded key readable by its owner by key ID, never a replaced
/// ciphertext.
async fn escrow_cannot_plant_or_bury(env: &Env) {
    let pc_alice = env.device_token("PC-ALICE");
    let r = env
        .escrow(&pc_alice, "PC-BOB", K_PLANT, 41, "2026-01-01T00:00:00Z")
        .await;
    assert_eq!(
        r.assert_problem(403)["required_permission"],
        "RecoveryKey.Escrow"
    );
    // Four minutes ahead: refused, nothing stored.
    let r = env
        .escrow(&pc_alice, "PC-ALICE", K_PLANT, 41, "2026-01-01T00:04:00Z")
        .await;
    let p = r.assert_problem(400);
    assert!(p["detail"].as_str().unwrap().contains("future"), "{p}");
    // Its own device: stored, and it becomes the default.
    let r = env
        .escrow(&pc_alice, "PC-ALICE", K_PLANT, 41, "2026-01-01T00:00:00Z")
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = env
        .retrieve("PC-ALICE", "alice", "RecoveryKey.Read", json!({}))
        .await;
    assert_eq!(r.json()["key_id"], K_PLANT);
    // The key the recovery screen names is still hers, by its key ID.
    let r = env
        .retrieve(
            "PC-ALICE",
            "alice",
            "RecoveryKey.Read",
            json!({"key_id": ALICE_KEY}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["recovery_password"], password(2));
    // The same key ID with another password: 409, the stored key unchanged.
    let mdm = env.token("mdm-sync", MDM);
    env.escrow(&mdm, "PC-ALICE", ALICE_KEY, 42, "2025-01-01T00:00:00Z")
        .await
        .assert_problem(409);
    let r = env
        .retrieve(
            "PC-ALICE",
            "alice",
            "RecoveryKey.Read",
            json!({"key_id": ALICE_KEY}),
        )
        .await;
    assert_eq!(r.json()["recovery_password"], password(2));
    // A device agent sees only its own device's rotation requests.
    let r = env
        .send("GET", "/v1/rotation-requests", &pc_alice, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for req in r.json()["rotation_requests"].as_array().unwrap() {
        assert_eq!(req["device_id"], "PC-ALICE", "{req}");
    }
    let r = env.send("GET", "/v1/rotation-requests", &mdm, None).await;
    assert!(r.text.contains("PC-BOB"), "{}", r.text);
}

/// Finding 3: two people and a ceiling.
async fn incidents_need_two_people(env: &Env) {
    let lead = env.token("lead", &format!("RecoveryKey.Incident {AGENT}"));
    let r = env
        .send(
            "POST",
            "/v1/incidents",
            &lead,
            Some(json!({"reason": "outage", "duration_hours": 2, "helpdesk_rate_limit": 5001})),
        )
        .await;
    assert!(
        r.assert_problem(400)["detail"]
            .as_str()
            .unwrap()
            .contains("5000")
    );
    let r = env
        .send(
            "POST",
            "/v1/incidents",
            &lead,
            Some(json!({"reason": "outage", "duration_hours": 2, "helpdesk_rate_limit": 100})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let batch = json!({"key_ids": [BOB_KEY], "reason": "outage"});
    let r = env
        .send(
            "POST",
            "/v1/recovery-keys/batch",
            &lead,
            Some(batch.clone()),
        )
        .await;
    r.assert_problem(403);
    let events = env.events("actor=lead").await;
    assert!(
        events
            .iter()
            .any(|e| e["outcome"] == "denied" && e["reason"] == "incident_opener"),
        "{events:?}"
    );
    let agent = env.token("agent-2", AGENT);
    let r = env
        .send("POST", "/v1/recovery-keys/batch", &agent, Some(batch))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["results"][0]["status"], 200);

    // Finding 6: a batch of unknown key IDs is one denied event, listing
    // its items, so one request cannot use up the hourly cap.
    let unknown: Vec<String> = (0..100)
        .map(|i| format!("{:08X}-0000-4000-8000-000000000000", 0xE000_0000u32 + i))
        .collect();
    let r = env
        .send(
            "POST",
            "/v1/recovery-keys/batch",
            &agent,
            Some(json!({"key_ids": unknown, "reason": "outage"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let denied: Vec<Value> = env
        .events("actor=agent-2")
        .await
        .into_iter()
        .filter(|e| e["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    let listed = denied[0]["justification"].as_str().unwrap();
    assert!(
        listed.contains("E0000063") && listed.contains("key_id_not_found"),
        "{listed}"
    );

    // Settings cannot lift a limit above the deployment's.
    let admin = env.token("settings-admin", "Tenant.Settings.ReadWrite");
    for body in [
        json!({"helpdesk_rate_limit": 100_000}),
        json!({"self_service_rate_limit": 10_001}),
    ] {
        env.send("PATCH", "/v1/tenant/settings", &admin, Some(body))
            .await
            .assert_problem(400);
    }
    let r = env
        .send(
            "PATCH",
            "/v1/tenant/settings",
            &admin,
            Some(json!({"helpdesk_rate_limit": 5})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(env.metrics.total("SettingsChanges"), 1);
}

/// Finding 4: retirement is reversible for the retention period.
async fn retirement_is_reversible(env: &Env, sweep: bool) {
    let admin = env.token("it-admin", DEV_ADMIN);
    let r = env
        .send(
            "GET",
            "/v1/tenant/settings",
            &env.token("s", "Tenant.Settings.ReadWrite"),
            None,
        )
        .await;
    assert_eq!(r.json()["retired_device_retention_days"], 30, "{}", r.text);
    let retired = env.metrics.total("DevicesRetired");
    let r = env
        .send(
            "DELETE",
            "/v1/devices/PC-ALICE-2",
            &admin,
            Some(json!({"reason": "sold"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(env.metrics.total("DevicesRetired"), retired + 1);
    // Gone for the owner at once, and for the owner routes.
    assert!(!env.listed("alice", "PC-ALICE-2").await);
    env.retrieve("PC-ALICE-2", "alice", "RecoveryKey.Read", json!({}))
        .await
        .assert_problem(404);
    env.send("DELETE", "/v1/devices/PC-ALICE-2", &admin, None)
        .await
        .assert_problem(404);
    let mdm = env.token("mdm-sync", MDM);
    env.escrow(&mdm, "PC-ALICE-2", K_NEW, 43, "2026-01-01T00:00:00Z")
        .await
        .assert_problem(404);
    // The helpdesk finds its key by key ID and reads it with a reason.
    let agent = env.token("agent", AGENT);
    let r = env
        .send(
            "GET",
            "/v1/recovery-keys?key_id_prefix=33333333",
            &agent,
            None,
        )
        .await;
    assert!(r.text.contains("PC-ALICE-2"), "{}", r.text);
    let key = "33333333-CCCC-4CCC-8CCC-000000000004";
    env.retrieve("PC-ALICE-2", "agent", AGENT, json!({"key_id": key}))
        .await
        .assert_problem(400);
    let r = env
        .retrieve(
            "PC-ALICE-2",
            "agent",
            AGENT,
            json!({"key_id": key, "reason": "ticket 9"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["recovery_password"], password(4));
    // Restored: back for its owner.
    let r = env
        .send("POST", "/v1/devices/PC-ALICE-2/restore", &admin, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["owner"], "alice");
    assert!(env.listed("alice", "PC-ALICE-2").await);
    let r = env
        .retrieve("PC-ALICE-2", "alice", "RecoveryKey.Read", json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    env.send("POST", "/v1/devices/PC-ALICE-2/restore", &admin, None)
        .await
        .assert_problem(404);
    // Retired again; after the retention it is gone for good.
    let r = env
        .send("DELETE", "/v1/devices/PC-ALICE-2", &admin, None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    env.clock.advance(30 * 86_400 + 1);
    // Fresh tokens: the ones above expired with the month.
    let admin = env.token("it-admin", DEV_ADMIN);
    if sweep {
        env.portal
            .lifecycle
            .sweep_expired(env.portal.clock.now())
            .await
            .unwrap();
    }
    env.retrieve(
        "PC-ALICE-2",
        "agent",
        AGENT,
        json!({"key_id": key, "reason": "ticket 9"}),
    )
    .await
    .assert_problem(404);
    env.send("POST", "/v1/devices/PC-ALICE-2/restore", &admin, None)
        .await
        .assert_problem(404);
    let actions: Vec<String> = env
        .events("device_id=PC-ALICE-2")
        .await
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap()
            )
        })
        .collect();
    for want in ["device_retire granted", "device_restore granted"] {
        assert!(actions.iter().any(|a| a == want), "{actions:?}");
    }
}

async fn all(env: &Env, sweep: bool) {
    ownership_is_not_a_key_permission(env).await;
    escrow_cannot_plant_or_bury(env).await;
    incidents_need_two_people(env).await;
    retirement_is_reversible(env, sweep).await;
}

#[tokio::test]
async fn who_may_change_what_on_the_embedded_backends() {
    let env = Env::new(
        Arc::new(MemoryStore::new()),
        Arc::new(LocalCipher::random()),
    )
    .await;
    all(&env, true).await;
}

#[tokio::test]
async fn who_may_change_what_on_dynamodb_and_kms() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let aws = moto_env().await;
    let env = Env::new(aws.store.clone(), aws.cipher.clone()).await;
    ownership_is_not_a_key_permission(&env).await;
    escrow_cannot_plant_or_bury(&env).await;
    incidents_need_two_people(&env).await;
    // A retired device's items carry the TTL of its retention.
    let admin = env.token("it-admin", DEV_ADMIN);
    let r = env.send("DELETE", "/v1/devices/PC-BOB", &admin, None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let item = |sk: String| {
        let aws = &aws;
        async move {
            aws.dynamodb
                .get_item()
                .table_name(aws.store.devices_table())
                .key("pk", AttributeValue::S("D#contoso#PC-BOB".into()))
                .key("sk", AttributeValue::S(sk))
                .send()
                .await
                .unwrap()
                .item
                .expect("kept while restorable")
        }
    };
    let ttl = AttributeValue::N((env.clock.unix() + 30 * 86_400).to_string());
    let device = item("DEVICE".into()).await;
    assert_eq!(device.get("expires_at"), Some(&ttl));
    assert!(!device.contains_key("owner_key"), "out of the owner index");
    let pointer = item(format!("KEY#{K_NEW}")).await;
    assert_eq!(pointer.get("expires_at"), Some(&ttl));
    // Bob's key was superseded by K_NEW: its own, earlier expiry stays.
    let superseded = item(format!("KEY#{BOB_KEY}")).await;
    let own = superseded.get("expires_at").cloned();
    assert!(own.is_some(), "{own:?}");
    let r = env
        .send("POST", "/v1/devices/PC-BOB/restore", &admin, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let device = item("DEVICE".into()).await;
    assert!(!device.contains_key("expires_at"));
    assert!(device.contains_key("owner_key"));
    assert!(
        !item(format!("KEY#{K_NEW}"))
            .await
            .contains_key("expires_at")
    );
    assert_eq!(
        item(format!("KEY#{BOB_KEY}"))
            .await
            .get("expires_at")
            .cloned(),
        own
    );
    retirement_is_reversible(&env, false).await;
}

/// An item written before escrow digests existed: a re-escrow under its key
/// ID is 409 whatever the password, and the stored ciphertext stays.
#[tokio::test]
async fn a_key_without_a_digest_is_never_replaced_on_dynamodb() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let aws = moto_env().await;
    let env = Env::new(aws.store.clone(), aws.cipher.clone()).await;
    aws.dynamodb
        .update_item()
        .table_name(aws.store.devices_table())
        .key("pk", AttributeValue::S("D#contoso#PC-BOB".into()))
        .key("sk", AttributeValue::S("DEVICE".into()))
        .update_expression("REMOVE digests")
        .send()
        .await
        .unwrap();
    let mdm = env.token("mdm-sync", MDM);
    for pw in [5, 50] {
        env.escrow(&mdm, "PC-BOB", BOB_KEY, pw, "2024-02-01T00:00:00Z")
            .await
            .assert_problem(409);
    }
    let r = env
        .retrieve("PC-BOB", "bob", "RecoveryKey.Read", json!({}))
        .await;
    assert_eq!(r.json()["recovery_password"], password(5));
}

#[tokio::test]
async fn a_key_without_a_digest_is_never_replaced_embedded() {
    use recovery_portal::domain::ids::{DeviceId, TenantId};
    let store = Arc::new(MemoryStore::new());
    let env = Env::new(store.clone(), Arc::new(LocalCipher::random())).await;
    // Rewrite PC-BOB as an import from before digests existed.
    let (rec, policy) = store
        .device_for_write(
            &TenantId::parse("contoso").unwrap(),
            &DeviceId::parse("PC-BOB").unwrap(),
        )
        .await
        .unwrap();
    let rec = rec.unwrap();
    store
        .put_devices(&[recovery_portal::domain::ports::ImportDevice {
            sealed: recovery_portal::domain::model::SealedDevice {
                device: rec.device,
                policy,
                sealed: rec.current,
            },
            fingerprint: String::new(),
            digests: Vec::new(),
        }])
        .await
        .unwrap();
    let mdm = env.token("mdm-sync", MDM);
    for pw in [5, 50] {
        env.escrow(&mdm, "PC-BOB", BOB_KEY, pw, "2024-02-01T00:00:00Z")
            .await
            .assert_problem(409);
    }
    let r = env
        .retrieve("PC-BOB", "bob", "RecoveryKey.Read", json!({}))
        .await;
    assert_eq!(r.json()["recovery_password"], password(5));
}
