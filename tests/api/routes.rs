//! The API contract over real sockets: every route, every status path, the
//! decision order, tenant isolation, the rate limit and the audit trail.

use crate::support::common;

use common::*;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

const OWNER: &str = "RecoveryKey.Read";
const HELPDESK: &str = "RecoveryKey.Read.All";
const AUDITOR: &str = "AuditLog.Read.All";

async fn setup() -> (Harness, Server) {
    let h = Harness::new(&test_seed(), 10).await;
    let s = h.serve().await;
    (h, s)
}

#[tokio::test]
async fn lists_own_devices_sorted_with_metadata_only() {
    let (h, s) = setup().await;
    let r = s
        .get("/v1/devices", &h.token("contoso", "alice", "Devices.Read"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let j = r.json();
    let names: Vec<&str> = j["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["display_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Alpha desktop", "Home PC", "New laptop", "Zeta laptop"]
    );
    let zeta = &j["devices"][3];
    assert_eq!(zeta["device_id"], "PC-ALICE");
    assert_eq!(zeta["managed_by"], "organization");
    assert_eq!(j["devices"][1]["managed_by"], "user");
    let keys = zeta["recovery_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    for k in keys {
        let mut fields: Vec<&str> = k.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "created_at",
                "disclosed_at",
                "key_id",
                "superseded_at",
                "volume_type"
            ]
        );
        // Never disclosed, never superseded.
        assert!(k["disclosed_at"].is_null() && k["superseded_at"].is_null());
    }
    assert_eq!(j["helpdesk"]["email"], "help@contoso.test");
    for n in 1..=7 {
        assert!(
            !r.text.contains(&password(n)),
            "key material in a device list"
        );
    }
    assert_eq!(h.opens(), 0);
}

#[tokio::test]
async fn listing_is_tenant_scoped_and_other_owners_need_helpdesk_permission() {
    let (h, s) = setup().await;
    // The fabrikam "alice" sees only fabrikam's device of that name.
    let r = s
        .get("/v1/devices", &h.token("fabrikam", "alice", OWNER))
        .await;
    let j = r.json();
    assert_eq!(j["devices"].as_array().unwrap().len(), 1);
    assert_eq!(
        j["devices"][0]["display_name"],
        "Fabrikam PC of another alice"
    );

    let r = s
        .get("/v1/devices?owner=bob", &h.token("contoso", "alice", OWNER))
        .await;
    r.assert_problem(403);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains(r#"error="insufficient_scope""#)
    );

    let r = s
        .get(
            "/v1/devices?owner=bob",
            &h.token("contoso", "agent", HELPDESK),
        )
        .await;
    assert_eq!(r.json()["devices"][0]["device_id"], "PC-BOB");
    // A helpdesk agent of contoso cannot reach fabrikam's users.
    let r = s
        .get(
            "/v1/devices?owner=carol",
            &h.token("contoso", "agent", HELPDESK),
        )
        .await;
    assert_eq!(r.json()["devices"], json!([]));
    // No permission at all.
    s.get("/v1/devices", &h.token("contoso", "alice", "User.Read"))
        .await
        .assert_problem(403);
    s.get(
        "/v1/devices?owner=a%20b",
        &h.token("contoso", "agent", HELPDESK),
    )
    .await
    .assert_problem(400);
}

#[tokio::test]
async fn owner_gets_newest_os_key_by_default_with_no_store_headers() {
    let (h, s) = setup().await;
    let t = h.token("contoso", "alice", OWNER);
    let r = s.post_key("PC-ALICE", &t, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("pragma"), Some("no-cache"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let j = r.json();
    assert_eq!(j["device_id"], "PC-ALICE");
    assert_eq!(j["key_id"], "11111111-AAAA-4AAA-8AAA-000000000002");
    assert_eq!(j["volume_type"], "operating_system");
    assert_eq!(j["recovery_password"], password(2));
    assert_eq!(j["created_at"], "2025-01-01T00:00:00Z");
    assert_eq!(j["display_seconds"], 300);
    assert_eq!(h.opens(), 1);
}

#[tokio::test]
async fn key_selection_by_full_id_prefix_and_ambiguity() {
    let (h, s) = setup().await;
    let t = h.token("contoso", "alice", OWNER);
    let r = s
        .post_key(
            "PC-ALICE",
            &t,
            Some(r#"{"key_id":"22222222-bbbb-4bbb-8bbb-000000000003","reason":"locked out"}"#),
        )
        .await;
    assert_eq!(r.json()["recovery_password"], password(3));
    let r = s
        .post_key("PC-ALICE", &t, Some(r#"{"key_id":"2222-2222-BB"}"#))
        .await;
    assert_eq!(r.json()["key_id"], "22222222-BBBB-4BBB-8BBB-000000000003");
    let r = s
        .post_key("PC-ALICE", &t, Some(r#"{"key_id":"11111111"}"#))
        .await;
    let j = r.assert_problem(409);
    assert_eq!(
        j["candidates"],
        json!([
            "11111111-AAAA-4AAA-8AAA-000000000001",
            "11111111-AAAA-4AAA-8AAA-000000000002"
        ])
    );
    // A key that is not on this device: no key held, with the helpdesk.
    let r = s
        .post_key(
            "PC-ALICE",
            &t,
            Some(r#"{"key_id":"44444444-dddd-4ddd-8ddd-000000000005"}"#),
        )
        .await;
    assert_eq!(r.assert_problem(404)["helpdesk"]["name"], "Contoso IT");
    assert_eq!(h.opens(), 2);
}

#[tokio::test]
async fn missing_foreign_and_cross_tenant_devices_get_the_same_404() {
    let (h, s) = setup().await;
    let t = h.token("contoso", "alice", OWNER);
    let strip = |mut j: Value| {
        j.as_object_mut().unwrap().remove("request_id");
        j
    };
    let missing = strip(s.post_key("NO-SUCH-PC", &t, None).await.assert_problem(404));
    let foreign = strip(s.post_key("PC-BOB", &t, None).await.assert_problem(404));
    let other_tenant = strip(s.post_key("PC-CAROL", &t, None).await.assert_problem(404));
    assert_eq!(missing, foreign);
    assert_eq!(missing, other_tenant);
    assert!(missing.get("helpdesk").is_none());
    assert_eq!(h.opens(), 0);
}

#[tokio::test]
async fn personal_and_keyless_devices_point_to_the_helpdesk() {
    let (h, s) = setup().await;
    let t = h.token("contoso", "alice", OWNER);
    for device in ["PC-ALICE-HOME", "PC-ALICE-NOKEY"] {
        let j = s.post_key(device, &t, None).await.assert_problem(404);
        assert_eq!(
            j["type"],
            "https://recovery-portal.dev/problems/no-recovery-key"
        );
        assert_eq!(j["helpdesk"]["phone"], "+1 555 0100");
        assert!(j["detail"].as_str().unwrap().contains("IT support"));
    }
    assert_eq!(h.opens(), 0);
}

#[tokio::test]
async fn self_service_off_sends_owners_to_the_helpdesk_but_helpdesk_may_retrieve() {
    let (h, s) = setup().await;
    let j = s
        .post_key("PC-CAROL", &h.token("fabrikam", "carol", OWNER), None)
        .await
        .assert_problem(403);
    assert_eq!(j["helpdesk"]["name"], "Fabrikam Desk");
    assert_eq!(h.opens(), 0);
    let r = s
        .post_key("PC-CAROL", &h.token("fabrikam", "agent", HELPDESK), None)
        .await;
    assert_eq!(r.json()["recovery_password"], password(7));
    // The helpdesk may retrieve any device of its own tenant only.
    let r = s
        .post_key("PC-BOB", &h.token("fabrikam", "agent", HELPDESK), None)
        .await;
    r.assert_problem(404);
    let r = s
        .post_key("PC-BOB", &h.token("contoso", "agent", HELPDESK), None)
        .await;
    assert_eq!(r.json()["recovery_password"], password(5));
}

#[tokio::test]
async fn helpdesk_looks_up_keys_by_prefix_within_its_tenant() {
    let (h, s) = setup().await;
    let agent = h.token("contoso", "agent", HELPDESK);
    let r = s
        .get("/v1/recovery-keys?key_id_prefix=1111-1111", &agent)
        .await;
    let j = r.json();
    let rows = j["recovery_keys"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["device_id"], "PC-ALICE");
    assert_eq!(rows[0]["owner"], "alice");
    assert_eq!(rows[0]["display_name"], "Zeta laptop");
    assert_eq!(rows[0]["volume_type"], "operating_system");
    assert!(!r.text.contains("recovery_password"));
    let r = s
        .get("/v1/recovery-keys?key_id_prefix=66666666", &agent)
        .await;
    assert_eq!(
        r.json()["recovery_keys"],
        json!([]),
        "fabrikam's key is invisible to contoso"
    );
    for bad in ["1111111", "1111111g", ""] {
        s.get(&format!("/v1/recovery-keys?key_id_prefix={bad}"), &agent)
            .await
            .assert_problem(400);
    }
    s.get("/v1/recovery-keys", &agent).await.assert_problem(400);
    s.get(
        "/v1/recovery-keys?key_id_prefix=11111111",
        &h.token("contoso", "alice", OWNER),
    )
    .await
    .assert_problem(403);
}

#[tokio::test]
async fn rate_limit_counts_disclosures_per_caller_per_rolling_hour() {
    let h = Harness::new(&test_seed(), 3).await;
    let s = h.serve().await;
    let t = h.token("contoso", "alice", OWNER);
    for _ in 0..3 {
        assert_eq!(s.post_key("PC-ALICE", &t, None).await.status, 200);
        h.clock.advance(60);
    }
    let r = s.post_key("PC-ALICE-2", &t, None).await;
    let j = r.assert_problem(429);
    // The first disclosure (t=0) frees its slot at t=3600; now is t=180.
    assert_eq!(r.header("retry-after"), Some("3420"));
    assert_eq!(j["retry_after"], 3420);
    assert_eq!(h.opens(), 3);
    // Another caller is not affected.
    assert_eq!(
        s.post_key("PC-BOB", &h.token("contoso", "bob", OWNER), None)
            .await
            .status,
        200
    );
    h.clock.advance(3420);
    assert_eq!(s.post_key("PC-ALICE-2", &t, None).await.status, 200);
    let denied: Vec<_> = h
        .memory
        .audit_log()
        .into_iter()
        .filter(|e| e.reason == "rate_limited")
        .collect();
    assert_eq!(denied.len(), 1);
}

#[tokio::test]
async fn concurrent_retrievals_never_exceed_the_limit() {
    let h = Harness::new(&test_seed(), 5).await;
    let s = std::sync::Arc::new(h.serve().await);
    let t = h.token("contoso", "alice", OWNER);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (s, t) = (s.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            s.post_key("PC-ALICE", &t, None).await.status
        }));
    }
    let mut codes = Vec::new();
    for task in tasks {
        codes.push(task.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 5, "{codes:?}");
    assert!(
        codes.iter().all(|&c| c == 200 || c == 429 || c == 503),
        "{codes:?}"
    );
    assert_eq!(h.opens(), 5);
    let granted = h
        .memory
        .audit_log()
        .into_iter()
        .filter(|e| e.outcome == recovery_portal::domain::audit::Outcome::Granted)
        .count();
    assert_eq!(granted, 5);
}

#[tokio::test]
async fn no_audit_no_key() {
    let (h, s) = setup().await;
    h.store.fail_audit.store(true, Ordering::SeqCst);
    let r = s
        .post_key("PC-ALICE", &h.token("contoso", "alice", OWNER), None)
        .await;
    r.assert_problem(503);
    assert!(r.header("retry-after").is_some());
    assert!(!r.text.contains(&password(2)));
    assert_eq!(h.opens(), 0, "decrypted without a durable audit event");
    assert_eq!(h.memory.audit_len(), 0);
}

#[tokio::test]
async fn the_cipher_is_never_called_when_an_earlier_step_fails() {
    let (h, s) = setup().await;
    let alice = h.token("contoso", "alice", OWNER);
    s.send("POST", "/v1/devices/PC-ALICE/recovery-key", None, None)
        .await
        .assert_problem(401);
    s.send(
        "POST",
        "/v1/devices/PC-ALICE/recovery-key",
        Some("not.a.jwt"),
        None,
    )
    .await
    .assert_problem(401);
    s.post_key(
        "PC-ALICE",
        &h.token("contoso", "alice", "Devices.Read"),
        None,
    )
    .await
    .assert_problem(403);
    s.post_key(
        "PC-ALICE",
        &h.token("fabrikam", "alice", "Devices.Read"),
        None,
    )
    .await
    .assert_problem(403);
    s.post_key("NOPE", &alice, None).await.assert_problem(404);
    s.post_key("PC-BOB", &alice, None).await.assert_problem(404);
    s.post_key("PC-CAROL", &h.token("fabrikam", "carol", OWNER), None)
        .await
        .assert_problem(403);
    s.post_key("PC-ALICE-HOME", &alice, None)
        .await
        .assert_problem(404);
    s.post_key("PC-ALICE", &alice, Some(r#"{"key_id":"11111111"}"#))
        .await
        .assert_problem(409);
    s.post_key("PC-ALICE", &alice, Some("{"))
        .await
        .assert_problem(400);
    assert_eq!(h.opens(), 0);
}

#[tokio::test]
async fn every_authenticated_attempt_is_audited_and_readable_by_auditors() {
    let (h, s) = setup().await;
    let alice = h.token("contoso", "alice", OWNER);
    assert_eq!(
        s.post_key("PC-ALICE", &alice, Some(r#"{"reason":"forgot PIN"}"#))
            .await
            .status,
        200
    );
    h.clock.advance(1);
    s.post_key("PC-BOB", &alice, None).await.assert_problem(404);
    h.clock.advance(1);
    s.post_key(
        "PC-ALICE",
        &h.token("contoso", "mallory", "Devices.Read"),
        None,
    )
    .await
    .assert_problem(403);
    h.clock.advance(1);
    s.post_key("PC-CAROL", &h.token("fabrikam", "carol", OWNER), None)
        .await
        .assert_problem(403);
    // Unauthenticated attempts have no actor to record.
    s.send("POST", "/v1/devices/PC-ALICE/recovery-key", None, None)
        .await
        .assert_problem(401);

    let auditor = h.token("contoso", "auditor", AUDITOR);
    let r = s.get("/v1/audit-events", &auditor).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let events = r.json()["events"].as_array().unwrap().clone();
    assert_eq!(
        events.len(),
        3,
        "contoso sees only its own events: {events:?}"
    );
    assert_eq!(events[0]["actor"], "mallory");
    assert_eq!(events[0]["reason"], "insufficient_scope");
    assert_eq!(events[1]["outcome"], "denied");
    assert_eq!(events[1]["reason"], "not_owner");
    assert_eq!(events[1]["device_id"], "PC-BOB");
    let granted = &events[2];
    assert_eq!(granted["outcome"], "granted");
    assert_eq!(granted["reason"], "owner");
    assert_eq!(granted["justification"], "forgot PIN");
    assert_eq!(granted["key_id"], "11111111-AAAA-4AAA-8AAA-000000000002");
    assert_eq!(granted["tenant_id"], "contoso");
    assert_eq!(granted["source_ip"], "127.0.0.1");
    for f in ["event_id", "time", "request_id", "user_agent"] {
        assert!(granted[f].is_string(), "{f} missing: {granted}");
    }
    let r = s.get("/v1/audit-events?device_id=PC-BOB", &auditor).await;
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 1);
    let r = s
        .get("/v1/audit-events?actor=alice&limit=1", &auditor)
        .await;
    assert_eq!(r.json()["events"][0]["device_id"], "PC-BOB");
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "actor=a%20b",
        "colour=red",
        "limit=1&limit=2",
    ] {
        s.get(&format!("/v1/audit-events?{bad}"), &auditor)
            .await
            .assert_problem(400);
    }
    s.get("/v1/audit-events", &alice).await.assert_problem(403);
    let r = s
        .get("/v1/audit-events", &h.token("fabrikam", "auditor", AUDITOR))
        .await;
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_retried_request_id_adds_no_second_event_and_cannot_be_reused_elsewhere() {
    let (h, s) = setup().await;
    let t = h.token("contoso", "alice", OWNER);
    let send = |device: &'static str| {
        s.client
            .post(s.url(&format!("/v1/devices/{device}/recovery-key")))
            .bearer_auth(&t)
            .header("x-request-id", "retry-0001-abcdef")
            .send()
    };
    let a = send("PC-ALICE").await.unwrap();
    assert_eq!(a.status(), 200);
    assert_eq!(a.headers()["x-request-id"], "retry-0001-abcdef");
    assert_eq!(send("PC-ALICE").await.unwrap().status(), 200);
    assert_eq!(h.memory.audit_len(), 1);
    let other = send("PC-ALICE-2").await.unwrap();
    assert_eq!(other.status(), 400);
    assert_eq!(h.memory.audit_len(), 1);
    assert_eq!(h.opens(), 2);
}

#[tokio::test]
async fn bad_input_gets_clear_4xx_problems() {
    let (h, s) = setup().await;
    let t = h.token("contoso", "alice", OWNER);
    let r = s
        .send("GET", "/v1/devices/PC-ALICE/recovery-key", Some(&t), None)
        .await;
    r.assert_problem(405);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = s.send("DELETE", "/v1/devices", Some(&t), None).await;
    r.assert_problem(405);
    assert_eq!(r.header("allow"), Some("GET"));
    s.send("GET", "/v2/devices", Some(&t), None)
        .await
        .assert_problem(404);
    s.send("GET", "/", None, None).await.assert_problem(404);
    s.send("POST", "/v1/devices//recovery-key", Some(&t), None)
        .await
        .assert_problem(404);
    s.post_key("PC%20ALICE", &t, None).await.assert_problem(400);
    s.post_key(&"x".repeat(129), &t, None)
        .await
        .assert_problem(400);
    for body in [
        "{",
        "[]",
        r#"{"key_id": 5}"#,
        r#"{"key_id":"not-hex!"}"#,
        r#"{"key_id":"1234567"}"#,
        r#"{"colour":"red"}"#,
        &format!(r#"{{"reason":"{}"}}"#, "x".repeat(201)),
        r#"{"reason":"line\nbreak"}"#,
    ] {
        let j = s
            .post_key("PC-ALICE", &t, Some(body))
            .await
            .assert_problem(400);
        assert!(!j["detail"].as_str().unwrap().is_empty());
    }
    let r = s
        .send(
            "POST",
            "/v1/devices/PC-ALICE/recovery-key",
            Some(&t),
            Some(("text/plain", "{}")),
        )
        .await;
    r.assert_problem(415);
    let big = format!(r#"{{"reason":"{}"}}"#, "x".repeat(5000));
    s.post_key("PC-ALICE", &t, Some(&big))
        .await
        .assert_problem(413);
    // An empty body and an empty object are both "no options".
    assert_eq!(s.post_key("PC-ALICE", &t, Some("{}")).await.status, 200);
    assert_eq!(
        s.send("POST", "/v1/devices/PC-ALICE/recovery-key", Some(&t), None)
            .await
            .status,
        200
    );
    // Nothing above changed stored data: the two successes are the only grants.
    let grants = h
        .memory
        .audit_log()
        .iter()
        .filter(|e| e.outcome == recovery_portal::domain::audit::Outcome::Granted)
        .count();
    assert_eq!(grants, 2);
}

#[tokio::test]
async fn unauthenticated_answers_carry_bearer_challenges() {
    let (h, s) = setup().await;
    let r = s.send("GET", "/v1/devices", None, None).await;
    r.assert_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = s
        .send("GET", "/v1/devices", Some("abc.def.ghi"), None)
        .await;
    r.assert_problem(401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .starts_with(r#"Bearer error="invalid_token""#)
    );
    let expired = h.idp.token("contoso", "alice", OWNER, NOW - 7200, 3600);
    s.get("/v1/devices", &expired).await.assert_problem(401);
    let r = s
        .client
        .get(s.url("/v1/devices"))
        .header("authorization", "Basic YWxpY2U6cHc=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_ciphertext_that_does_not_open_is_a_500_without_the_key() {
    // Data sealed under one key, served with another: as a row whose blob
    // was replaced or corrupted. Audited as granted, yet nothing disclosed.
    let h = Harness::new(&test_seed(), 10).await;
    let mut portal = h.portal.clone();
    portal.cipher = std::sync::Arc::new(recovery_portal::adapters::embedded::LocalCipher::random());
    let resp = recovery_portal::api::handle(
        &portal,
        recovery_portal::api::Routes::Key,
        recovery_portal::api::ApiRequest {
            method: http::Method::POST,
            path: "/v1/devices/PC-ALICE/recovery-key".into(),
            query: None,
            headers: [(
                http::header::AUTHORIZATION,
                format!("Bearer {}", h.token("contoso", "alice", OWNER))
                    .parse()
                    .unwrap(),
            )]
            .into_iter()
            .collect(),
            body: Default::default(),
            source_ip: None,
            request_id: "req-500".into(),
        },
    )
    .await;
    assert_eq!(resp.status(), 500);
    let body = String::from_utf8(resp.into_body()).unwrap();
    assert!(
        !body.contains(&password(2)) && !body.contains("recovery_password"),
        "{body}"
    );
}
