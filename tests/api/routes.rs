//! The API contract over real sockets: every route, every status path, the
//! decision order, tenant isolation, the rate limit and the audit trail.

use crate::support::common;
use crate::support::racing;

use common::*;
use racing::RacingStore;
use serde_json::{Value, json};
use std::sync::Arc;
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

/// Eight retrievals by one caller on a multi-threaded runtime, all holding
/// the same rate window when they write (the store pauses each between its
/// read and its write until all eight have read): the version check refuses
/// seven writes, the retry loop settles them, and exactly the limit (3) is
/// disclosed, each disclosure with its event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retrievals_collide_and_never_exceed_the_limit() {
    const N: usize = 8;
    let h = Harness::new(&test_seed(), 3).await;
    let racing = Arc::new(RacingStore::barrier(h.store.clone(), N));
    let mut portal = h.portal.clone();
    portal.store = racing.clone();
    let s = Arc::new(serve_portal(portal).await);
    let t = h.token("contoso", "alice", OWNER);
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (s, t) = (s.clone(), t.clone());
            tokio::spawn(async move {
                post_as(
                    &s,
                    &t,
                    "PC-ALICE",
                    &format!("race-{i:04}-abcdef"),
                    "ua/1",
                    None,
                )
                .await
            })
        })
        .collect();
    let mut codes = Vec::new();
    for task in tasks {
        let r = task.await.unwrap();
        match r.status {
            200 => assert_eq!(r.json()["recovery_password"], password(2)),
            429 | 503 => assert!(r.header("retry-after").is_some(), "{}", r.text),
            other => panic!("unexpected {other}: {}", r.text),
        }
        codes.push(r.status);
    }
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 3, "{codes:?}");
    assert!(
        RacingStore::count(&racing.conflicts) >= N - 1,
        "all {N} read one window: at least {} writes conflict, saw {}",
        N - 1,
        RacingStore::count(&racing.conflicts)
    );
    assert_eq!(h.opens(), 3);
    let log = h.memory.audit_log();
    let granted = log
        .iter()
        .filter(|e| e.outcome.as_str() == "granted")
        .count();
    assert_eq!(granted, 3);
    // Every attempt left a trace: 3 grants and a denial for each other one.
    assert_eq!(log.len(), N, "{log:?}");
}

/// A retrieval overtaken by another disclosure of the same caller between
/// its read and its write, on every attempt: after the 3 attempts the
/// contract allows, a 503 with Retry-After, nothing decrypted, and a denied
/// event for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrieval_overtaken_on_every_attempt_is_a_503_after_three_attempts() {
    let h = Harness::new(&test_seed(), 10).await;
    let racing = Arc::new(RacingStore::competitor(h.store.clone(), h.clock.clone()));
    let mut portal = h.portal.clone();
    portal.store = racing.clone();
    let s = serve_portal(portal).await;
    let t = h.token("contoso", "alice", OWNER);
    let r = post_as(&s, &t, "PC-ALICE", "overtaken-0001", "ua/1", None).await;
    r.assert_problem(503);
    assert!(r.header("retry-after").is_some());
    assert!(!r.text.contains(&password(2)));
    assert_eq!(RacingStore::count(&racing.loads), 3);
    assert_eq!(RacingStore::count(&racing.commits), 3);
    assert_eq!(RacingStore::count(&racing.conflicts), 3);
    assert_eq!(h.opens(), 0);
    assert_eq!(
        events_of(&h, "overtaken-0001"),
        [pair("denied", "concurrent_retrievals")]
    );
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

/// A key retrieval with a chosen `X-Request-Id`, user agent and body.
async fn post_as(
    s: &Server,
    token: &str,
    device: &str,
    request_id: &str,
    user_agent: &str,
    body: Option<&str>,
) -> Reply {
    let mut rb = s
        .client
        .post(s.url(&format!("/v1/devices/{device}/recovery-key")))
        .bearer_auth(token)
        .header("x-request-id", request_id)
        .header("user-agent", user_agent);
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let r = rb.send().await.expect("request");
    Reply {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        text: r.text().await.unwrap(),
    }
}

/// The audit events of one request id, oldest first, as (outcome, reason).
fn events_of(h: &Harness, request_id: &str) -> Vec<(String, String)> {
    h.memory
        .audit_log()
        .into_iter()
        .filter(|e| e.request_id == request_id)
        .map(|e| (e.outcome.as_str().to_owned(), e.reason))
        .collect()
}

fn pair(outcome: &str, reason: &str) -> (String, String) {
    (outcome.to_owned(), reason.to_owned())
}

#[tokio::test]
async fn a_request_id_reused_for_another_request_is_refused_and_each_attempt_is_audited() {
    let (h, s) = setup().await;
    let t = h.token("contoso", "alice", OWNER);
    const ID: &str = "reuse-0001-abcdef";
    let r = post_as(&s, &t, "PC-ALICE", ID, "ua/1", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-request-id"), Some(ID));
    // Another user's device under the granted request id: the usual 404,
    // and a denied event of its own.
    post_as(&s, &t, "PC-BOB", ID, "ua/1", None)
        .await
        .assert_problem(404);
    // Another own device under the same id: 400, and audited too.
    let j = post_as(&s, &t, "PC-ALICE-2", ID, "ua/1", None)
        .await
        .assert_problem(400);
    assert!(
        j["detail"].as_str().unwrap().contains("X-Request-Id"),
        "{j}"
    );
    // Another key of the same device: 400 as well.
    post_as(
        &s,
        &t,
        "PC-ALICE",
        ID,
        "ua/1",
        Some(r#"{"key_id":"22222222-bbbb-4bbb-8bbb-000000000003"}"#),
    )
    .await
    .assert_problem(400);
    assert_eq!(
        events_of(&h, ID),
        [
            pair("granted", "owner"),
            pair("denied", "not_owner"),
            pair("denied", "request_id_reused"),
            pair("denied", "request_id_reused"),
        ]
    );
    assert_eq!(h.opens(), 1);
}

#[tokio::test]
async fn the_same_request_retried_after_a_denial_or_failure_is_a_new_attempt() {
    let h = Harness::new(&test_seed(), 1).await;
    let s = h.serve().await;
    let t = h.token("contoso", "alice", OWNER);
    assert_eq!(
        post_as(&s, &t, "PC-ALICE", "first-0001-abcdef", "ua/1", None)
            .await
            .status,
        200
    );
    // Rate-limited, then retried with the same id once Retry-After passed.
    const ID: &str = "retry-0002-abcdef";
    let r = post_as(&s, &t, "PC-ALICE-2", ID, "ua/1", None).await;
    r.assert_problem(429);
    let wait: i64 = r.header("retry-after").unwrap().parse().unwrap();
    h.clock.advance(wait);
    let r = post_as(&s, &t, "PC-ALICE-2", ID, "ua/1", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["recovery_password"], password(4));
    assert_eq!(
        events_of(&h, ID),
        [pair("denied", "rate_limited"), pair("granted", "owner")]
    );

    // A store outage (503), then the same request again.
    h.clock.advance(3600);
    let t = h.token("contoso", "alice", OWNER);
    const ID2: &str = "retry-0003-abcdef";
    h.store.fail_load.store(true, Ordering::SeqCst);
    let r = post_as(&s, &t, "PC-ALICE", ID2, "ua/1", None).await;
    r.assert_problem(503);
    assert!(r.header("retry-after").is_some());
    h.store.fail_load.store(false, Ordering::SeqCst);
    let r = post_as(&s, &t, "PC-ALICE", ID2, "ua/1", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        events_of(&h, ID2),
        [
            pair("denied", "store_unavailable"),
            pair("granted", "owner")
        ]
    );
}

#[tokio::test]
async fn a_granted_request_replays_only_briefly_and_only_when_identical() {
    let h = Harness::new(&test_seed(), 3).await;
    let s = h.serve().await;
    let t = h.token("contoso", "alice", OWNER);
    const ID: &str = "replay-0001-abcdef";
    let body = Some(r#"{"reason":"locked out"}"#);
    let first = post_as(&s, &t, "PC-ALICE", ID, "ua/1", body).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json()["recovery_password"], password(2));
    // An identical retry within the replay window (300 s): the same key,
    // no second event, no second rate-limit slot.
    for _ in 0..4 {
        h.clock.advance(60);
        let r = post_as(&s, &t, "PC-ALICE", ID, "ua/1", body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["recovery_password"], password(2));
    }
    assert_eq!(events_of(&h, ID), [pair("granted", "owner")]);
    // Another reason (or user agent) is not a replay: a new attempt with
    // its own event and its own slot.
    let r = post_as(
        &s,
        &t,
        "PC-ALICE",
        ID,
        "ua/1",
        Some(r#"{"reason":"other"}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post_as(&s, &t, "PC-ALICE", ID, "ua/2", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let events: Vec<_> = h
        .memory
        .audit_log()
        .into_iter()
        .filter(|e| e.request_id == ID)
        .collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[1].justification.as_deref(), Some("other"));
    assert_eq!(events[2].user_agent.as_deref(), Some("ua/2"));
    // Three slots used: the window (limit 3) is full, so a new request is
    // refused, while an identical replay of the newest grant is still served.
    post_as(&s, &t, "PC-ALICE-2", "fresh-0001-abcdef", "ua/1", None)
        .await
        .assert_problem(429);
    let r = post_as(&s, &t, "PC-ALICE", ID, "ua/2", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // After the replay window the id is a new request: rate-limited now.
    h.clock.advance(301);
    post_as(&s, &t, "PC-ALICE", ID, "ua/2", body)
        .await
        .assert_problem(429);
    // And once a slot frees up (an hour after the first grant), granted
    // again with a new event.
    h.clock.advance(3600);
    let t = h.token("contoso", "alice", OWNER);
    let r = post_as(&s, &t, "PC-ALICE", ID, "ua/2", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        events_of(&h, ID),
        [
            pair("granted", "owner"),
            pair("granted", "owner"),
            pair("granted", "owner"),
            pair("denied", "rate_limited"),
            pair("granted", "owner"),
        ]
    );
    assert_eq!(h.opens(), 1 + 4 + 2 + 1 + 1);
}

#[tokio::test]
async fn denied_events_per_caller_are_capped_per_hour() {
    let (h, s) = setup().await;
    // A token without this API's permissions cannot flood the trail.
    let mallory = h.token("contoso", "mallory", "User.Read");
    for i in 0..150 {
        let r = post_as(
            &s,
            &mallory,
            "PC-ALICE",
            &format!("flood-{i:06}"),
            "ua/1",
            None,
        )
        .await;
        r.assert_problem(403);
    }
    let mine = |h: &Harness, who: &str| {
        h.memory
            .audit_log()
            .into_iter()
            .filter(|e| e.actor.as_str() == who)
            .collect::<Vec<_>>()
    };
    let stored = mine(&h, "mallory");
    // 100 denied events per caller per clock hour, then one marker event.
    assert_eq!(stored.len(), 101, "{}", stored.len());
    assert!(
        stored[..100]
            .iter()
            .all(|e| e.reason == "insufficient_scope")
    );
    assert_eq!(stored[100].reason, "denials_capped");
    assert_eq!(stored[100].outcome.as_str(), "denied");
    // Others are not affected.
    post_as(
        &s,
        &h.token("contoso", "bob", OWNER),
        "PC-ALICE",
        "bob-0001-abcdef",
        "ua/1",
        None,
    )
    .await
    .assert_problem(404);
    assert_eq!(mine(&h, "bob").len(), 1);
    // The next hour, mallory's denials are recorded again.
    h.clock.advance(3600);
    let mallory = h.token("contoso", "mallory", "User.Read");
    post_as(&s, &mallory, "PC-ALICE", "flood-next-hour", "ua/1", None)
        .await
        .assert_problem(403);
    assert_eq!(mine(&h, "mallory").len(), 102);
    assert_eq!(h.opens(), 0);
}

#[tokio::test]
async fn audit_events_page_with_a_cursor_and_a_time_range() {
    let h = Harness::new(&test_seed(), 100).await;
    let s = h.serve().await;
    let alice = h.token("contoso", "alice", OWNER);
    let bob = h.token("contoso", "bob", OWNER);
    // Seven events, one a minute: alice (5) and bob (2), from NOW on.
    for i in 0..7 {
        let (t, dev) = if i % 3 == 2 {
            (&bob, "PC-BOB")
        } else {
            (&alice, "PC-ALICE")
        };
        let r = post_as(&s, t, dev, &format!("page-{i:06}-x"), "ua/1", None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        h.clock.advance(60);
    }
    let auditor = h.token("contoso", "auditor", AUDITOR);
    let ids = |j: &Value| -> Vec<String> {
        j["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["request_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = s.get("/v1/audit-events", &auditor).await.json();
    assert_eq!(all["next"], Value::Null);
    let newest_first: Vec<String> = (0..7).rev().map(|i| format!("page-{i:06}-x")).collect();
    assert_eq!(ids(&all), newest_first);

    // Pages of 3: 3 + 3 + 1, `next` null on the last page.
    let mut got = Vec::new();
    let mut path = "/v1/audit-events?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let r = s.get(&path, &auditor).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let j = r.json();
        pages += 1;
        got.extend(ids(&j));
        match j["next"].as_str() {
            Some(c) => path = format!("/v1/audit-events?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(got, newest_first);

    // A time range: since inclusive, until exclusive (events at NOW + 60 i).
    let at = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(NOW + secs)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let r = s
        .get(
            &format!("/v1/audit-events?since={}&until={}", at(120), at(300)),
            &auditor,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        ids(&r.json()),
        ["page-000004-x", "page-000003-x", "page-000002-x"]
    );
    // Combined with actor, limit and a cursor.
    let r = s
        .get(
            &format!("/v1/audit-events?actor=alice&since={}&limit=2", at(60)),
            &auditor,
        )
        .await;
    let j = r.json();
    assert_eq!(ids(&j), ["page-000006-x", "page-000004-x"]);
    let c = j["next"].as_str().expect("more pages");
    let r = s
        .get(
            &format!(
                "/v1/audit-events?actor=alice&since={}&limit=2&cursor={c}",
                at(60)
            ),
            &auditor,
        )
        .await;
    let j = r.json();
    assert_eq!(ids(&j), ["page-000003-x", "page-000001-x"]);
    assert_eq!(j["next"], Value::Null);
    // And with device_id.
    let r = s
        .get(
            &format!("/v1/audit-events?device_id=PC-BOB&until={}", at(300)),
            &auditor,
        )
        .await;
    assert_eq!(ids(&r.json()), ["page-000002-x"]);

    for bad in [
        "cursor=not-a-cursor".to_owned(),
        "cursor=".to_owned(),
        "since=yesterday".to_owned(),
        "until=2026-01-01".to_owned(),
        format!("since={}&until={}", at(300), at(300)),
        format!("since={}&until={}", at(300), at(120)),
    ] {
        let r = s.get(&format!("/v1/audit-events?{bad}"), &auditor).await;
        r.assert_problem(400);
    }
    // A cursor is no way into another tenant: it only says "older than".
    let fab = h.token("fabrikam", "auditor", AUDITOR);
    let c = s.get("/v1/audit-events?limit=1", &auditor).await.json()["next"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s.get(&format!("/v1/audit-events?cursor={c}"), &fab).await;
    assert_eq!(ids(&r.json()), Vec::<String>::new());
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

#[tokio::test]
async fn a_401_names_its_reason_in_www_authenticate_and_nothing_of_the_token() {
    let (h, s) = setup().await;
    let claims = |extra: serde_json::Value| {
        let mut c = serde_json::json!({"iss": h.idp.issuer, "aud": h.idp.audience, "exp": NOW + 600,
            "tid": "contoso", "oid": "alice", "scp": OWNER});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let other = recovery_portal::tools::devidp::DevIdentityProvider::generate(
        recovery_portal::tools::devidp::DevAlg::Es256,
        &h.idp.issuer,
        &h.idp.audience,
    );
    for (token, reason) in [
        (
            h.idp
                .sign(&claims(serde_json::json!({"aud": "api://other"}))),
            "wrong audience",
        ),
        (
            h.idp.sign(&claims(serde_json::json!({"exp": NOW - 3600}))),
            "expired",
        ),
        ("abc.def.ghi".to_owned(), "not a JWT"),
        (
            other.sign(&claims(serde_json::json!({}))),
            "unknown signing key",
        ),
        (
            h.idp.sign_raw(
                &serde_json::json!({"alg": "ES256", "kid": "kid-nobody-knows"}),
                &claims(serde_json::json!({})),
            ),
            "unknown signing key",
        ),
        (
            h.idp.sign(&claims(serde_json::json!({"nonce": "n"}))),
            "not an access token",
        ),
        (
            h.idp.sign(&claims(serde_json::json!({"tid": null}))),
            "no tenant",
        ),
    ] {
        let r = s.get("/v1/devices", &token).await;
        let body = r.assert_problem(401);
        assert_eq!(
            r.header("www-authenticate"),
            Some(format!(r#"Bearer error="invalid_token", error_description="{reason}""#).as_str()),
        );
        // The body a person sees is the same whatever the reason.
        assert_eq!(body["title"], "Sign-in required");
        assert_eq!(
            body["detail"],
            "Sign in to the company portal again, then retry."
        );
    }
}

#[tokio::test]
async fn a_disclosure_needs_a_sign_in_within_the_web_max_age() {
    let (mut h, _) = setup().await;
    h.portal.max_auth_age = Some(600);
    let s = h.serve().await;
    let token = |auth_time: Option<i64>| {
        let mut c = serde_json::json!({"iss": h.idp.issuer, "aud": h.idp.audience, "exp": NOW + 600,
            "tid": "contoso", "oid": "alice", "scp": OWNER});
        if let Some(t) = auth_time {
            c["auth_time"] = serde_json::json!(t);
        }
        h.idp.sign(&c)
    };
    // Signed in 20 minutes ago: listing is fine, a key is not.
    let old = token(Some(NOW - 1200));
    assert_eq!(s.get("/v1/devices", &old).await.status, 200);
    let r = s.post_key("PC-ALICE", &old, None).await;
    let body = r.assert_problem(401);
    assert_eq!(body["max_age"], 600);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("within the last 10 minutes"),
        "{body}"
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="sign-in too old", max_age=600"#
        )
    );
    assert!(!r.text.contains("recovery_password"));
    // The refusal is audited like any denied retrieval.
    assert!(
        h.memory
            .audit_log()
            .iter()
            .any(|e| e.reason == "sign_in_too_old")
    );
    // Recent enough, or a token that does not say when: served.
    assert_eq!(
        s.post_key("PC-ALICE", &token(Some(NOW - 300)), None)
            .await
            .status,
        200
    );
    assert_eq!(s.post_key("PC-ALICE", &token(None), None).await.status, 200);
}
