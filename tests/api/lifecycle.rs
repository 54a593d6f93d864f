//! The lifecycle routes' edges over real sockets: methods, media types,
//! validation, which deployment unit serves them, out-of-order escrow,
//! rotation-request paging, ownership changes in the trail, settings that
//! apply on the next request.

use crate::support::common;

use common::*;
use recovery_portal::api::{self, ApiRequest, Routes};
use serde_json::{Value, json};

const MDM: &str = "RecoveryKey.Escrow Devices.ReadWrite.All";
const ADMIN: &str = "Tenant.Settings.ReadWrite";
const K_NEW: &str = "99999999-9999-4999-8999-000000000009";
const K_OLD: &str = "99999999-9999-4999-8999-000000000001";

async fn setup() -> (Harness, Server) {
    let h = Harness::new(&test_seed(), 10).await;
    let s = h.serve().await;
    (h, s)
}

async fn json_send(s: &Server, method: &str, path: &str, token: &str, body: Value) -> Reply {
    s.send(
        method,
        path,
        Some(token),
        Some(("application/json", &body.to_string())),
    )
    .await
}

#[tokio::test]
async fn methods_media_types_and_sizes() {
    let (h, s) = setup().await;
    let mdm = h.token("contoso", "mdm", MDM);
    for (method, path, allow) in [
        ("GET", "/v1/devices/PC-ALICE", "PUT, DELETE"),
        ("POST", "/v1/devices/PC-ALICE", "PUT, DELETE"),
        ("GET", "/v1/devices/PC-ALICE/recovery-keys/x", "PUT"),
        ("DELETE", "/v1/devices/PC-ALICE/recovery-keys/x", "PUT"),
        ("POST", "/v1/rotation-requests", "GET"),
        ("PUT", "/v1/tenant/settings", "GET, PATCH"),
    ] {
        let r = s.send(method, path, Some(&mdm), None).await;
        r.assert_problem(405);
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
    // Not JSON, too large, not an object, unknown field, bad JSON.
    let path = format!("/v1/devices/PC-ALICE/recovery-keys/{K_NEW}");
    let r = s
        .send(
            "PUT",
            &path,
            Some(&mdm),
            Some(("text/plain", "volume_type=x")),
        )
        .await;
    r.assert_problem(415);
    let big = json!({"volume_type": "x".repeat(5000)}).to_string();
    s.send("PUT", &path, Some(&mdm), Some(("application/json", &big)))
        .await
        .assert_problem(413);
    for body in [
        "[1,2]",
        "{\"volume_type\": \"operating_system\", \"recovery_password\": \"x\", \"colour\": 1}",
        "{\"volume_type\": ",
    ] {
        s.send("PUT", &path, Some(&mdm), Some(("application/json", body)))
            .await
            .assert_problem(400);
    }
    // Unknown sub-routes stay 404.
    s.send(
        "PUT",
        "/v1/devices/PC-ALICE/recovery-keys",
        Some(&mdm),
        None,
    )
    .await
    .assert_problem(404);
    s.send("PUT", "/v1/devices/PC-ALICE/other/x", Some(&mdm), None)
        .await
        .assert_problem(404);
    // No token: 401 before anything else.
    s.send("DELETE", "/v1/devices/PC-ALICE", None, None)
        .await
        .assert_problem(401);
    assert!(h.memory.audit_log().is_empty(), "nothing was audited");
}

#[tokio::test]
async fn each_function_serves_only_its_routes() {
    let h = Harness::new(&test_seed(), 10).await;
    let mdm = h.token("contoso", "mdm", MDM);
    let req = |method: &str, path: &str| {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {mdm}").parse().unwrap(),
        );
        ApiRequest {
            method: method.parse().unwrap(),
            path: path.into(),
            query: None,
            headers,
            body: bytes::Bytes::new(),
            source_ip: None,
            request_id: "req-routes-1".into(),
        }
    };
    let manage = [
        ("GET", "/v1/rotation-requests"),
        ("GET", "/v1/tenant/settings"),
        ("DELETE", "/v1/devices/PC-ALICE"),
    ];
    for unit in [Routes::List, Routes::Key] {
        for (m, p) in manage {
            let r = api::handle(&h.portal, unit, req(m, p)).await;
            assert_eq!(r.status(), 404, "{unit:?} {m} {p}");
        }
    }
    for (m, p) in [
        ("GET", "/v1/devices"),
        ("POST", "/v1/devices/PC-ALICE/recovery-key"),
    ] {
        let r = api::handle(&h.portal, Routes::Manage, req(m, p)).await;
        assert_eq!(r.status(), 404, "manage-keys must not serve {m} {p}");
    }
    let r = api::handle(
        &h.portal,
        Routes::Manage,
        req("GET", "/v1/rotation-requests"),
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn device_metadata_is_validated_and_ownership_changes_are_audited() {
    let (h, s) = setup().await;
    let mdm = h.token("contoso", "mdm", MDM);
    let good = json!({"owner": "alice", "display_name": "Zeta laptop", "os": "Windows 11", "managed_by": "organization"});
    for (field, value) in [
        ("owner", json!("al ice")),
        ("display_name", json!("tab\tbed")),
        ("display_name", json!("")),
        ("os", json!("x".repeat(129))),
        ("managed_by", json!("nobody")),
        ("owner", json!(7)),
    ] {
        let mut body = good.clone();
        body[field] = value;
        json_send(&s, "PUT", "/v1/devices/PC-ALICE", &mdm, body)
            .await
            .assert_problem(400);
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("os");
    json_send(&s, "PUT", "/v1/devices/PC-ALICE", &mdm, missing)
        .await
        .assert_problem(400);
    json_send(&s, "PUT", "/v1/devices/bad%20id", &mdm, good.clone())
        .await
        .assert_problem(400);

    // The same metadata: 200, nothing written; a new owner: 200 and audited.
    let r = json_send(&s, "PUT", "/v1/devices/PC-ALICE", &mdm, good.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(h.memory.audit_log().is_empty());
    let mut moved = good.clone();
    moved["owner"] = json!("bob");
    let r = json_send(&s, "PUT", "/v1/devices/PC-ALICE", &mdm, moved).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["owner"], "bob");
    // Keys stay with the device.
    assert_eq!(r.json()["recovery_keys"].as_array().unwrap().len(), 3);
    let log = h.memory.audit_log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].justification.as_deref(), Some("owner alice -> bob"));
    // Bob now lists it, but its keys predate his ownership: not his to
    // read (the helpdesk path is); alice no longer can either.
    let r = s
        .get(
            "/v1/devices",
            &h.token("contoso", "bob", "RecoveryKey.Read"),
        )
        .await;
    assert!(r.text.contains("PC-ALICE\""), "{}", r.text);
    s.post_key(
        "PC-ALICE",
        &h.token("contoso", "alice", "RecoveryKey.Read"),
        None,
    )
    .await
    .assert_problem(404);
    s.post_key(
        "PC-ALICE",
        &h.token("contoso", "bob", "RecoveryKey.Read"),
        None,
    )
    .await
    .assert_problem(404);
    let r = s
        .post_key(
            "PC-ALICE",
            &h.token("contoso", "agent", "RecoveryKey.Read.All"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn an_older_key_escrowed_late_is_kept_superseded() {
    let (h, s) = setup().await;
    let mdm = h.token("contoso", "mdm", MDM);
    let escrow = |key: &'static str, pw: u32, created: &'static str| {
        let s = &s;
        let mdm = mdm.clone();
        async move {
            json_send(
                s,
                "PUT",
                &format!("/v1/devices/PC-ALICE-2/recovery-keys/{key}"),
                &mdm,
                json!({"volume_type": "operating_system", "recovery_password": password(pw), "created_at": created}),
            )
            .await
        }
    };
    // PC-ALICE-2's current key was created 2023-01-01; this one is older.
    let r = escrow(K_OLD, 30, "2022-06-01T00:00:00Z").await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["superseded_at"], "2026-01-01T00:00:00Z");
    // The default is still the current key.
    let alice = h.token("contoso", "alice", "RecoveryKey.Read");
    let r = s.post_key("PC-ALICE-2", &alice, None).await;
    assert_eq!(r.json()["key_id"], "33333333-CCCC-4CCC-8CCC-000000000004");
    // A key from the future is refused.
    escrow(K_NEW, 31, "2027-01-01T00:00:00Z")
        .await
        .assert_problem(400);
    // A newer key supersedes the current one.
    let r = escrow(K_NEW, 31, "2025-12-31T00:00:00Z").await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s.post_key("PC-ALICE-2", &alice, None).await;
    assert_eq!(r.json()["key_id"], K_NEW);
    // The import's key (which has a digest) is recognised when re-escrowed.
    let r = json_send(
        &s,
        "PUT",
        "/v1/devices/PC-ALICE-2/recovery-keys/33333333-cccc-4ccc-8ccc-000000000004",
        &mdm,
        json!({"volume_type": "operating_system", "recovery_password": password(4)}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["superseded_at"].is_string());
    // Another volume type under the same key ID is a conflict.
    json_send(
        &s,
        "PUT",
        &format!("/v1/devices/PC-ALICE-2/recovery-keys/{K_NEW}"),
        &mdm,
        json!({"volume_type": "fixed_data", "recovery_password": password(31)}),
    )
    .await
    .assert_problem(409);
}

#[tokio::test]
async fn rotation_requests_page_with_a_cursor() {
    let (h, s) = setup().await;
    let mdm = h.token("contoso", "mdm", MDM);
    // Three disclosures on three devices, a minute apart.
    for (device, user) in [
        ("PC-BOB", "bob"),
        ("PC-ALICE", "alice"),
        ("PC-ALICE-2", "alice"),
    ] {
        let r = s
            .post_key(device, &h.token("contoso", user, "RecoveryKey.Read"), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        h.clock.advance(60);
    }
    let mut seen = Vec::new();
    let mut path = "/v1/rotation-requests?limit=2".to_owned();
    loop {
        let r = s.get(&path, &mdm).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let j = r.json();
        for req in j["rotation_requests"].as_array().unwrap() {
            seen.push(req["device_id"].as_str().unwrap().to_owned());
        }
        match j["next"].as_str() {
            Some(c) => path = format!("/v1/rotation-requests?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["PC-BOB", "PC-ALICE", "PC-ALICE-2"]);
    for bad in [
        "?limit=0",
        "?limit=1001",
        "?limit=x",
        "?cursor=***",
        "?cursor=bm90LWEtY3Vyc29y",
        "?page=2",
    ] {
        s.get(&format!("/v1/rotation-requests{bad}"), &mdm)
            .await
            .assert_problem(400);
    }
    // Another tenant's escrow job sees none of them.
    let r = s
        .get("/v1/rotation-requests", &h.token("fabrikam", "mdm", MDM))
        .await;
    assert_eq!(r.json()["rotation_requests"], json!([]));
}

#[tokio::test]
async fn settings_apply_on_the_next_request() {
    let (h, s) = setup().await;
    let admin = h.token("contoso", "admin", ADMIN);
    let alice = h.token("contoso", "alice", "RecoveryKey.Read");
    let desk = h.token("contoso", "desk", "RecoveryKey.Read.All");
    // Reasons for the helpdesk only.
    let r = json_send(
        &s,
        "PATCH",
        "/v1/tenant/settings",
        &admin,
        json!({"require_reason": "helpdesk"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.post_key("PC-ALICE", &alice, None).await.status, 200);
    let p = s
        .post_key("PC-ALICE", &desk, None)
        .await
        .assert_problem(400);
    assert!(p["detail"].as_str().unwrap().contains("reason"));
    // Whitespace is no reason.
    s.post_key("PC-ALICE", &desk, Some(r#"{"reason":"   "}"#))
        .await
        .assert_problem(400);
    let r = s
        .post_key("PC-ALICE", &desk, Some(r#"{"reason":"ticket 4711"}"#))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let denied = h
        .memory
        .audit_log()
        .into_iter()
        .filter(|e| e.reason == "reason_required")
        .count();
    assert_eq!(denied, 2, "refusals are audited");

    // Self-service off, helpdesk removed: the owner is told at once.
    let r = json_send(
        &s,
        "PATCH",
        "/v1/tenant/settings",
        &admin,
        json!({"self_service": false, "helpdesk": null}),
    )
    .await;
    assert_eq!(r.json()["helpdesk"], Value::Null);
    let p = s
        .post_key("PC-ALICE", &alice, None)
        .await
        .assert_problem(403);
    assert_eq!(
        p["type"],
        "https://recovery-portal.dev/problems/self-service-disabled"
    );
    let r = s.get("/v1/devices", &alice).await;
    assert_eq!(r.json()["helpdesk"], Value::Null);
    // A new helpdesk shows in the listing.
    json_send(
        &s,
        "PATCH",
        "/v1/tenant/settings",
        &admin,
        json!({"helpdesk": {"name": "Desk", "phone": "+1 555"}}),
    )
    .await;
    let r = s.get("/v1/devices", &alice).await;
    assert_eq!(
        r.json()["helpdesk"],
        json!({"name": "Desk", "phone": "+1 555"})
    );
    // Invalid helpdesk details.
    for bad in [
        json!({"helpdesk": {"name": ""}}),
        json!({"helpdesk": {"fax": "1"}}),
        json!({"helpdesk": "Desk"}),
    ] {
        json_send(&s, "PATCH", "/v1/tenant/settings", &admin, bad)
            .await
            .assert_problem(400);
    }
    // Only the tenant's own settings: fabrikam's are untouched.
    let r = s
        .get("/v1/tenant/settings", &h.token("fabrikam", "admin", ADMIN))
        .await;
    assert_eq!(r.json()["require_reason"], "never");
    assert_eq!(r.json()["helpdesk"]["name"], "Fabrikam Desk");
    // An empty patch changes (and audits) nothing.
    let before = h.memory.audit_len();
    let r = json_send(&s, "PATCH", "/v1/tenant/settings", &admin, json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(h.memory.audit_len(), before);
}

/// A tenant's own limits replace the deployment's, for owners and agents
/// alike; `null` goes back to the deployment's; an open incident's limit
/// replaces the tenant's helpdesk limit.
#[tokio::test]
async fn tenant_limits_override_the_deployments_and_an_incident_overrides_them() {
    let (h, s) = setup().await; // PORTAL_KEY_RATE_LIMIT-like limits of 10
    let admin = h.token("contoso", "admin", ADMIN);
    let r = json_send(
        &s,
        "PATCH",
        "/v1/tenant/settings",
        &admin,
        json!({"self_service_rate_limit": 1, "helpdesk_rate_limit": 2}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (
            r.json()["self_service_rate_limit"].clone(),
            r.json()["helpdesk_rate_limit"].clone()
        ),
        (json!(1), json!(2))
    );
    let alice = h.token("contoso", "alice", "RecoveryKey.Read");
    assert_eq!(s.post_key("PC-ALICE", &alice, None).await.status, 200);
    assert_eq!(s.post_key("PC-ALICE", &alice, None).await.status, 429);
    let agent = h.token("contoso", "agent", "RecoveryKey.Read.All");
    for _ in 0..2 {
        assert_eq!(s.post_key("PC-BOB", &agent, None).await.status, 200);
    }
    assert_eq!(s.post_key("PC-BOB", &agent, None).await.status, 429);
    // Another tenant keeps the deployment's limits.
    let carol = h.token("fabrikam", "agent", "RecoveryKey.Read.All");
    for _ in 0..3 {
        assert_eq!(s.post_key("PC-CAROL", &carol, None).await.status, 200);
    }
    // An incident's limit replaces the tenant's helpdesk limit at once.
    let lead = h.token("contoso", "lead", "RecoveryKey.Incident");
    let r = json_send(
        &s,
        "POST",
        "/v1/incidents",
        &lead,
        json!({"reason": "outage", "duration_hours": 1, "helpdesk_rate_limit": 4}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    for _ in 0..2 {
        assert_eq!(s.post_key("PC-BOB", &agent, None).await.status, 200);
    }
    assert_eq!(s.post_key("PC-BOB", &agent, None).await.status, 429);
    // Back to the deployment's self-service limit (10).
    let r = json_send(
        &s,
        "PATCH",
        "/v1/tenant/settings",
        &admin,
        json!({"self_service_rate_limit": null}),
    )
    .await;
    assert_eq!(r.json()["self_service_rate_limit"], Value::Null);
    assert_eq!(s.post_key("PC-ALICE", &alice, None).await.status, 200);
    // Out of range: 400, nothing changed.
    for bad in [
        json!({"helpdesk_rate_limit": 0}),
        json!({"self_service_rate_limit": 100_001}),
        json!({"helpdesk_rate_limit": "5"}),
    ] {
        let r = json_send(&s, "PATCH", "/v1/tenant/settings", &admin, bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    let r = s.get("/v1/tenant/settings", &admin).await;
    assert_eq!(r.json()["helpdesk_rate_limit"], 2);
}

/// Only a grant under the client's own `X-Request-Id` is kept for replay:
/// a gateway's id is new on every request, and keeping its grants would only
/// make the caller's rate record heavier.
#[tokio::test]
async fn only_grants_under_a_client_request_id_are_kept_for_replay() {
    use recovery_portal::domain::ids::{DeviceId, TenantId, UserId};
    use recovery_portal::domain::ports::Store;
    let (h, s) = setup().await;
    let alice = h.token("contoso", "alice", "RecoveryKey.Read");
    let grants = || async {
        h.memory
            .load_for_disclosure(
                &TenantId::parse("contoso").unwrap(),
                &DeviceId::parse("PC-ALICE").unwrap(),
                &UserId::parse("alice").unwrap(),
            )
            .await
            .unwrap()
            .1
            .grants
    };
    for _ in 0..2 {
        assert_eq!(s.post_key("PC-ALICE", &alice, None).await.status, 200);
    }
    assert!(grants().await.is_empty(), "no client id, nothing kept");
    let send = |id: &'static str| {
        s.client
            .post(s.url("/v1/devices/PC-ALICE/recovery-key"))
            .bearer_auth(&alice)
            .header("x-request-id", id)
            .send()
    };
    assert_eq!(send("client-retry-0001").await.unwrap().status(), 200);
    let kept = grants().await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].request_id, "client-retry-0001");
    // And it replays: no new event for the identical retry.
    let before = h.memory.audit_len();
    assert_eq!(send("client-retry-0001").await.unwrap().status(), 200);
    assert_eq!(h.memory.audit_len(), before);
}

/// The route table's permission check runs once, before any input is read,
/// and a refused disclosure or write is audited under the route's action
/// (before the table, most write routes refused without an audit event, and
/// a disclosure with bad input answered 400 or 415 to anyone).
#[tokio::test]
async fn permission_comes_before_input_and_refused_writes_are_audited() {
    let (h, s) = setup().await;
    let nobody = h.token("contoso", "mallory", "User.Read");
    for r in api::ROUTES.iter().filter(|r| r.audit.is_some()) {
        let path = r
            .path
            .replace("{device_id}", "PC-ALICE")
            .replace("{key_id}", K_NEW)
            .replace("{incident_id}", "not-an-incident");
        let before = h.memory.audit_log().len();
        let p = s
            .send(
                r.method,
                &format!("{path}?junk=1"),
                Some(&nobody),
                Some(("text/plain", "not json")),
            )
            .await
            .assert_problem(403);
        assert_eq!(
            p["type"], "https://recovery-portal.dev/problems/insufficient-scope",
            "{} {}",
            r.method, r.path
        );
        let log = h.memory.audit_log();
        assert_eq!(
            log.len(),
            before + 1,
            "{} {}: one audit event",
            r.method,
            r.path
        );
        let e = log.last().unwrap();
        assert_eq!(Some(e.action), r.audit, "{} {}", r.method, r.path);
        assert_eq!(
            (e.outcome.as_str(), e.reason.as_str(), e.actor.as_str()),
            ("denied", "insufficient_scope", "mallory")
        );
        let device = r.path.starts_with("/v1/devices/").then_some("PC-ALICE");
        assert_eq!(e.device_id.as_ref().map(|d| d.as_str()), device);
    }
    // Reads are refused the same way, without an audit event.
    let before = h.memory.audit_log().len();
    for r in api::ROUTES.iter().filter(|r| r.audit.is_none()) {
        s.send(r.method, &format!("{}?junk=1", r.path), Some(&nobody), None)
            .await
            .assert_problem(403);
    }
    assert_eq!(h.memory.audit_log().len(), before);
}
