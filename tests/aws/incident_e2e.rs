//! Mass-outage readiness end to end over HTTP (the local server on a real
//! socket), on the embedded backends and on DynamoDB + KMS (moto): the
//! helpdesk limit without an incident, batch retrieval refused without one,
//! an incident opened (and a second refused), 100 keys in one request with
//! one durable granted event each, the incident's limit applied within a
//! batch, tenant isolation and ambiguity per item, closing and expiry.

use crate::support::aws::moto_env;
use crate::support::common::{AUDIENCE, ISSUER, NOW, Reply, Server, TestClock, serve_portal};
use recovery_portal::adapters::emf::MemoryMetrics;
use recovery_portal::domain::audit::{AuditEvent, AuditQuery, Outcome};
use recovery_portal::domain::denial::Denied;
use recovery_portal::domain::ids::{TenantId, UserId};
use recovery_portal::domain::metrics::Metric;
use recovery_portal::domain::ports::{ImportStore, KeyCipher, LifecycleStore, Portal, Store};
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Devices (one OS key each) in the incident tenant.
const DEVICES: usize = 160;
const AGENT: &str = "RecoveryKey.Read.All";
const LEAD: &str = "RecoveryKey.Incident";

fn key_id(i: usize) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", 0x1000_0000 + i, i)
}

/// A password the seed format accepts (groups are multiples of 11).
fn pw(i: usize) -> String {
    (0..8)
        .map(|g| format!("{:06}", ((i * 8 + g) % 65_536) * 11))
        .collect::<Vec<_>>()
        .join("-")
}

fn seed() -> String {
    let mut devices: Vec<Value> = (0..DEVICES)
        .map(|i| {
            json!({"tenant_id": "contoso", "device_id": format!("PC-{i:04}"), "owner": format!("user-{i}"),
                   "display_name": "Laptop", "os": "Windows 11", "managed_by": "organization",
                   "recovery_keys": [{"key_id": key_id(i), "volume_type": "operating_system",
                                      "recovery_password": pw(i), "created_at": "2025-01-01T00:00:00Z"}]})
        })
        .collect();
    // Two keys sharing their first 8 hex digits (ambiguous as a prefix), and
    // a key of another tenant.
    for (n, id) in [
        "abcd0000-0000-4000-8000-000000000001",
        "abcd0000-0000-4000-8000-000000000002",
    ]
    .iter()
    .enumerate()
    {
        devices.push(json!({"tenant_id": "contoso", "device_id": format!("PC-AMB-{n}"), "owner": "amb",
            "display_name": "Twin", "os": "Windows 11", "managed_by": "organization",
            "recovery_keys": [{"key_id": id, "volume_type": "operating_system",
                               "recovery_password": pw(900 + n), "created_at": "2025-01-01T00:00:00Z"}]}));
    }
    devices.push(json!({"tenant_id": "fabrikam", "device_id": "PC-F", "owner": "f",
        "display_name": "Other tenant", "os": "Windows 11", "managed_by": "organization",
        "recovery_keys": [{"key_id": "fab00000-0000-4000-8000-000000000001", "volume_type": "operating_system",
                           "recovery_password": pw(950), "created_at": "2025-01-01T00:00:00Z"}]}));
    json!({
        "tenants": [
            {"tenant_id": "contoso", "self_service": true, "helpdesk": {"name": "Contoso IT"}},
            {"tenant_id": "fabrikam", "self_service": true}
        ],
        "devices": devices,
    })
    .to_string()
}

struct Env {
    server: Server,
    idp: DevIdentityProvider,
    clock: Arc<TestClock>,
    store: Arc<dyn Store>,
    import: Arc<dyn ImportStore>,
    cipher: Arc<dyn KeyCipher>,
    metrics: Arc<MemoryMetrics>,
    /// Every reply that is not a batch or a disclosure.
    others: Vec<String>,
}

impl Env {
    async fn new<S: Store + LifecycleStore + ImportStore + 'static>(
        store: Arc<S>,
        cipher: Arc<dyn KeyCipher>,
    ) -> Self {
        let clock = TestClock::at(NOW);
        let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
        let seed = recovery_portal::tools::seed::parse(&seed()).unwrap();
        recovery_portal::tools::import::import(&seed, cipher.as_ref(), store.as_ref(), &|_, _| {})
            .await
            .unwrap();
        let metrics = Arc::new(MemoryMetrics::default());
        let portal = Portal {
            store: store.clone(),
            lifecycle: store.clone(),
            cipher: cipher.clone(),
            clock: clock.clone(),
            verifier: Arc::new(idp.verifier(clock.clone())),
            key_rate_limit: 3,
            helpdesk_rate_limit: 5,
            incident_max_rate_limit: recovery_portal::config::DEFAULT_INCIDENT_MAX_RATE_LIMIT,
            metrics: metrics.clone(),
            max_auth_age: None,
        };
        Self {
            server: serve_portal(portal).await,
            idp,
            clock,
            store: store.clone(),
            import: store,
            cipher,
            metrics,
            others: Vec::new(),
        }
    }

    fn token(&self, user: &str, scopes: &str) -> String {
        self.idp
            .token("contoso", user, scopes, self.clock.unix(), 3600)
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        user: &str,
        scopes: &str,
        body: Option<Value>,
    ) -> Reply {
        let token = self.token(user, scopes);
        let text = body.map(|b| b.to_string());
        let r = self
            .server
            .send(
                method,
                path,
                Some(&token),
                text.as_deref().map(|t| ("application/json", t)),
            )
            .await;
        if !(path.ends_with("/batch") || path.ends_with("/recovery-key")) || r.status != 200 {
            self.others.push(r.text.clone());
        }
        r
    }

    async fn batch(&mut self, agent: &str, ids: &[String]) -> Reply {
        self.send(
            "POST",
            "/v1/recovery-keys/batch",
            agent,
            AGENT,
            Some(json!({"key_ids": ids, "reason": "incident INC-42"})),
        )
        .await
    }

    async fn events(&self, actor: &str) -> Vec<AuditEvent> {
        let q = AuditQuery {
            actor: Some(UserId::parse(actor).unwrap()),
            limit: AuditQuery::MAX_LIMIT,
            ..Default::default()
        };
        let mut all = Vec::new();
        let mut q = q;
        loop {
            let page = self
                .store
                .audit_events(&TenantId::parse("contoso").unwrap(), &q)
                .await
                .unwrap();
            all.extend(page.events);
            match page.next {
                Some(c) => q.after = Some(c),
                None => break,
            }
        }
        all
    }
}

/// The whole scenario; `moto` relaxes nothing, it only names the backend.
async fn incident_scenario(env: &mut Env) {
    // --- No incident: the agent's own limit (5/hour), and no batch.
    for i in 0..5 {
        let r = env
            .send(
                "POST",
                &format!("/v1/devices/PC-{i:04}/recovery-key"),
                "agent-0",
                AGENT,
                Some(json!({"key_id": key_id(i)})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = env
        .send(
            "POST",
            "/v1/devices/PC-0005/recovery-key",
            "agent-0",
            AGENT,
            None,
        )
        .await;
    assert_eq!(
        r.status, 429,
        "the helpdesk limit, not the self-service one: {}",
        r.text
    );
    // The self-service limit (3) is the user's own.
    for _ in 0..3 {
        let r = env
            .send(
                "POST",
                "/v1/devices/PC-0009/recovery-key",
                "user-9",
                "RecoveryKey.Read",
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = env
        .send(
            "POST",
            "/v1/devices/PC-0009/recovery-key",
            "user-9",
            "RecoveryKey.Read",
            None,
        )
        .await;
    assert_eq!(r.status, 429);

    let ids: Vec<String> = (10..110).map(key_id).collect();
    let r = env.batch("agent-1", &ids).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let p = r.json();
    assert_eq!(
        p["type"],
        "https://recovery-portal.dev/problems/incident-required"
    );
    assert!(p["detail"].as_str().unwrap().contains("incident"), "{p}");
    let denied = env.events("agent-1").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(
        (denied[0].outcome, denied[0].reason.as_str()),
        (Outcome::Denied, "incident_required")
    );
    // Without RecoveryKey.Read.All: refused before anything else.
    let r = env
        .send(
            "POST",
            "/v1/recovery-keys/batch",
            "lead",
            LEAD,
            Some(json!({"key_ids": ids, "reason": "x"})),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["required_permission"], "RecoveryKey.Read.All");
    // Agents may not open incidents.
    let r = env
        .send(
            "POST",
            "/v1/incidents",
            "agent-1",
            AGENT,
            Some(json!({"reason": "x", "duration_hours": 1})),
        )
        .await;
    assert_eq!(r.status, 403);

    let refused = env.events("agent-1").await;
    assert!(
        refused.iter().any(|e| e.action.as_str() == "incident_open"
            && e.outcome == Outcome::Denied
            && e.reason == "insufficient_scope"),
        "a refused opening is audited: {refused:?}"
    );
    // --- Bad input leaves nothing behind.
    for body in [
        json!({"reason": "x"}),
        json!({"reason": "", "duration_hours": 4}),
        json!({"reason": "x", "duration_hours": 0}),
        json!({"reason": "x", "duration_hours": 73}),
        json!({"reason": "x", "duration_hours": 4, "helpdesk_rate_limit": 0}),
        json!({"reason": "x", "duration_hours": 4, "extra": 1}),
        json!({"reason": "a\u{202E}b", "duration_hours": 4}),
    ] {
        let r = env
            .send("POST", "/v1/incidents", "lead", LEAD, Some(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
    }
    let r = env.send("GET", "/v1/incidents", "lead", LEAD, None).await;
    assert_eq!(r.json()["incidents"], json!([]));

    // --- Open an incident: 150 keys per agent per hour.
    let r = env
        .send(
            "POST",
            "/v1/incidents",
            "lead",
            LEAD,
            Some(json!({"reason": "faulty agent update", "duration_hours": 4, "helpdesk_rate_limit": 150})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let incident = r.json();
    assert_eq!(incident["status"], "open");
    assert_eq!(incident["opened_by"], "lead");
    assert_eq!(incident["helpdesk_rate_limit"], 150);
    assert_eq!(incident["closed_at"], Value::Null);
    assert_eq!(incident["expires_at"], "2026-01-01T04:00:00Z");
    let id = incident["incident_id"].as_str().unwrap().to_owned();
    let r = env
        .send(
            "POST",
            "/v1/incidents",
            "lead",
            LEAD,
            Some(json!({"reason": "again", "duration_hours": 1})),
        )
        .await;
    assert_eq!(r.status, 409, "one open incident per tenant: {}", r.text);
    // An import that sets the tenant's settings keeps it open.
    let reimport = recovery_portal::tools::seed::parse(
        &json!({"tenants": [{"tenant_id": "contoso", "self_service": true}]}).to_string(),
    )
    .unwrap();
    recovery_portal::tools::import::import(
        &reimport,
        env.cipher.as_ref(),
        env.import.as_ref(),
        &|_, _| {},
    )
    .await
    .unwrap();
    // Agents see it (to know batches are open).
    let r = env
        .send("GET", "/v1/incidents", "agent-1", AGENT, None)
        .await;
    assert_eq!(r.json()["incidents"][0]["incident_id"], id.as_str());

    // --- 100 keys in one request: 98 full IDs, an 8-digit prefix, an
    // unknown ID; one granted event per disclosed key.
    let mut ids: Vec<String> = (10..108).map(key_id).collect();
    ids.push(key_id(108)[..8].to_uppercase());
    ids.push("deadbeef-0000-4000-8000-000000000000".into());
    let r = env.batch("agent-1", &ids).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 100);
    for (n, item) in results.iter().enumerate() {
        assert_eq!(item["key_id_prefix"], ids[n].as_str(), "request order");
        if n < 99 {
            let i = 10 + n;
            assert_eq!(item["status"], 200, "{item}");
            assert_eq!(item["device_id"], format!("PC-{i:04}"));
            assert_eq!(item["key_id"], key_id(i).to_uppercase());
            assert_eq!(item["recovery_password"], pw(i));
            assert_eq!(item["volume_type"], "operating_system");
        }
    }
    assert_eq!(results[99]["status"], 404);
    assert!(results[99].get("recovery_password").is_none());
    let events = env.events("agent-1").await;
    let granted: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.outcome == Outcome::Granted)
        .collect();
    assert_eq!(granted.len(), 99, "one granted event per disclosed key");
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for e in &granted {
        *per_key.entry(e.key_id.unwrap().to_string()).or_default() += 1;
        assert_eq!(e.justification.as_deref(), Some("incident INC-42"));
        assert_eq!(e.reason, "helpdesk");
    }
    assert_eq!(per_key.len(), 99);
    assert!(per_key.values().all(|&n| n == 1));
    // The refused item is listed in the batch's one denied event.
    assert!(events.iter().any(|e| {
        e.outcome == Outcome::Denied
            && e.reason == "batch_items_denied"
            && e.justification
                .as_deref()
                .is_some_and(|j| j.contains("key_id_not_found"))
    }));

    // --- The incident's limit within a batch: 51 of 150 left.
    let ids: Vec<String> = (100..160).map(key_id).collect();
    let r = env.batch("agent-1", &ids).await;
    let results = r.json()["results"].as_array().unwrap().clone();
    let ok = results.iter().filter(|i| i["status"] == 200).count();
    let limited: Vec<&Value> = results.iter().filter(|i| i["status"] == 429).collect();
    assert_eq!((ok, limited.len()), (51, 9), "{}", r.text);
    assert!(
        limited
            .iter()
            .all(|i| i["retry_after"].as_u64().unwrap() > 0)
    );
    assert!(
        results[..51].iter().all(|i| i["status"] == 200),
        "the first ones in request order"
    );
    // Another agent has a window of their own; per item, another tenant's
    // key and an ambiguous prefix.
    let r = env
        .batch(
            "agent-2",
            &[
                "fab00000-0000-4000-8000-000000000001".into(),
                "abcd0000".into(),
                key_id(3),
                key_id(3)[..8].to_owned(),
            ],
        )
        .await;
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(
        results[0]["status"], 404,
        "another tenant's key: {}",
        results[0]
    );
    assert_eq!(results[1]["status"], 409);
    assert_eq!(results[1]["candidates"].as_array().unwrap().len(), 2);
    assert_eq!(results[2]["recovery_password"], pw(3));
    // The same key again (by prefix): answered again, disclosed once.
    assert_eq!(results[3]["recovery_password"], pw(3));
    let granted: Vec<AuditEvent> = env
        .events("agent-2")
        .await
        .into_iter()
        .filter(|e| e.outcome == Outcome::Granted)
        .collect();
    assert_eq!(granted.len(), 1, "one event for the key asked twice");

    // --- Bad batch input: 400 and nothing disclosed.
    let too_many: Vec<String> = (0..101).map(key_id).collect();
    for body in [
        json!({"key_ids": [], "reason": "x"}),
        json!({"key_ids": too_many, "reason": "x"}),
        json!({"key_ids": ["xyz"], "reason": "x"}),
        json!({"key_ids": [key_id(1)]}),
        json!({"key_ids": [key_id(1)], "reason": "x", "more": true}),
        json!([key_id(1)]),
    ] {
        let r = env
            .send(
                "POST",
                "/v1/recovery-keys/batch",
                "agent-3",
                AGENT,
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
    }
    assert!(
        env.events("agent-3")
            .await
            .iter()
            .all(|e| e.outcome == Outcome::Denied)
    );

    // --- Closing ends batch retrieval at once; closing again changes nothing.
    let r = env
        .send("DELETE", &format!("/v1/incidents/{id}"), "lead", LEAD, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "closed");
    assert_eq!(r.json()["closed_at"], "2026-01-01T00:00:00Z");
    let r = env.batch("agent-2", &[key_id(4)]).await;
    assert_eq!(r.status, 403);
    let r = env
        .send("DELETE", &format!("/v1/incidents/{id}"), "lead", LEAD, None)
        .await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (200, json!("closed"))
    );
    let r = env
        .send(
            "DELETE",
            "/v1/incidents/6f1c2d3e-0000-4000-8000-000000000000",
            "lead",
            LEAD,
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    let r = env
        .send("DELETE", "/v1/incidents/not-an-id", "lead", LEAD, None)
        .await;
    assert_eq!(r.status, 400);

    // --- An incident ends by itself at expires_at.
    env.clock.advance(60);
    let r = env
        .send(
            "POST",
            "/v1/incidents",
            "lead",
            LEAD,
            Some(json!({"reason": "second wave", "duration_hours": 1})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.json()["helpdesk_rate_limit"],
        5000,
        "the default incident limit"
    );
    let r = env.batch("agent-2", &[key_id(5)]).await;
    assert_eq!(r.json()["results"][0]["status"], 200);
    env.clock.advance(3600);
    let r = env.batch("agent-2", &[key_id(6)]).await;
    assert_eq!(r.status, 403, "expired: {}", r.text);
    let r = env.send("GET", "/v1/incidents", "lead", LEAD, None).await;
    let list = r.json()["incidents"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["status"], "expired");
    assert_eq!(list[1]["status"], "closed");

    // --- Opening and closing are audited; the metrics add up.
    let lead_events = env.events("lead").await;
    let actions: Vec<(&str, Outcome)> = lead_events
        .iter()
        .map(|e| (e.action.as_str(), e.outcome))
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == ("incident_open", Outcome::Granted))
            .count(),
        2
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == ("incident_close", Outcome::Granted))
            .count(),
        1
    );
    let m = &env.metrics;
    assert_eq!(m.get(Metric::IncidentsOpened), 2);
    // 5 + 3 singles, 99 + 51 + 1 + 1 in batches.
    assert_eq!(m.get(Metric::KeysDisclosed), 5 + 3 + 99 + 51 + 1 + 1);
    assert_eq!(m.get(Metric::BatchSize), 100 + 60 + 4 + 1);
    assert_eq!(m.get(Metric::RateLimited), 2 + 9);
    assert!(m.get(Metric::Denials(Denied::IncidentRequired)) >= 3);
    // Nothing but a disclosure ever holds a password.
    for text in &env.others {
        for i in 0..DEVICES {
            assert!(!text.contains(&pw(i)), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_and_batch_retrieval_over_http_on_the_embedded_backends() {
    let store = Arc::new(recovery_portal::adapters::embedded::MemoryStore::new());
    let cipher = Arc::new(recovery_portal::adapters::embedded::LocalCipher::random());
    let mut env = Env::new(store.clone(), cipher).await;
    incident_scenario(&mut env).await;
    let trail = format!("{:?}", store.audit_log());
    for i in 0..DEVICES {
        assert!(!trail.contains(&pw(i)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_and_batch_retrieval_over_http_on_dynamodb_and_kms() {
    let aws = moto_env().await;
    let mut env = Env::new(aws.store.clone(), aws.cipher.clone()).await;
    incident_scenario(&mut env).await;
}
