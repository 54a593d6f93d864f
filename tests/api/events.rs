//! Every file in `events/` (API Gateway HTTP API, payload 2.0) dispatched
//! through the Lambda handler exactly as the function binaries do.

use crate::support::common;

use common::{AUDIENCE, ISSUER};
use recovery_portal::api::Routes;
use recovery_portal::app;
use recovery_portal::frontends::lambda;
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};
use recovery_portal::tools::seed;
use serde_json::{Value, json};
use std::sync::Arc;

/// The recovery password the demo seed file holds for `key_id`: read from
/// the file itself, so the expectation is the data, not the code under test.
fn seed_password(key_id: &str) -> String {
    let seed: Value = serde_json::from_str(seed::DEMO_SEED).unwrap();
    seed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["recovery_keys"].as_array().unwrap().iter())
        .find(|k| k["key_id"] == key_id)
        .unwrap_or_else(|| panic!("{key_id} is not in the demo seed"))["recovery_password"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn load(name: &str, token: &str) -> lambda_http::Request {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("{{TOKEN}}", token);
    lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn call(
    portal: &recovery_portal::domain::ports::Portal,
    routes: Routes,
    req: lambda_http::Request,
) -> (u16, Value, http::HeaderMap) {
    let resp = lambda::handle(portal, routes, req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = match resp.into_body() {
        lambda_http::Body::Text(t) => t,
        other => panic!("expected a text body, got {other:?}"),
    };
    (status, serde_json::from_str(&body).unwrap(), headers)
}

#[tokio::test]
async fn each_event_reaches_its_route_through_the_lambda_handler() {
    let idp = DevIdentityProvider::generate(DevAlg::Rs256, ISSUER, AUDIENCE);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let verifier = Arc::new(idp.verifier(Arc::new(recovery_portal::domain::ports::SystemClock)));
    let (portal, store) = app::embedded(
        &seed::parse(seed::DEMO_SEED).unwrap(),
        verifier,
        app::RateLimits {
            key: 10,
            ..Default::default()
        },
    )
    .await;
    let alice = idp.token("contoso", "alice", "RecoveryKey.Read", now, 600);
    let agent = idp.token("contoso", "agent", "RecoveryKey.Read.All", now, 600);
    let auditor = idp.token("contoso", "auditor", "AuditLog.Read.All", now, 600);

    let (s, j, _) = call(&portal, Routes::List, load("list-devices.json", &alice)).await;
    assert_eq!(s, 200, "{j}");
    assert!(
        j["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["device_id"] == "DESKTOP-7Q2M4K1")
    );

    let (s, j, h) = call(&portal, Routes::Key, load("get-recovery-key.json", &alice)).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["device_id"], "DESKTOP-7Q2M4K1");
    assert_eq!(j["display_seconds"], 300);
    // The newest operating-system key of that device, exactly.
    assert_eq!(j["key_id"], "3B8FAA18-37F8-488B-97FC-695A07A0CA6E");
    assert_eq!(
        j["recovery_password"],
        seed_password("3B8FAA18-37F8-488B-97FC-695A07A0CA6E")
    );
    assert_eq!(
        j["recovery_password"],
        "038258-286682-604857-317823-647658-401093-009361-230186"
    );
    assert_eq!(h["cache-control"], "no-store");
    // The gateway's request id and source IP reach the audit trail.
    let ev = store.audit_log().pop().unwrap();
    assert_eq!(ev.request_id, "Ab1Cd2Ef3Gh3=");
    assert_eq!(ev.source_ip.as_deref(), Some("198.51.100.23"));
    assert_eq!(
        ev.justification.as_deref(),
        Some("Locked out after a firmware update")
    );

    let (s, j, _) = call(
        &portal,
        Routes::List,
        load("find-recovery-keys.json", &agent),
    )
    .await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(
        j["recovery_keys"][0]["key_id"],
        "3B8FAA18-37F8-488B-97FC-695A07A0CA6E"
    );

    let (s, j, _) = call(&portal, Routes::List, load("audit-events.json", &auditor)).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["events"].as_array().unwrap().len(), 1);

    // Each function serves only its own routes.
    let (s, _, _) = call(&portal, Routes::List, load("get-recovery-key.json", &alice)).await;
    assert_eq!(s, 404);
    let (s, _, _) = call(&portal, Routes::Key, load("list-devices.json", &alice)).await;
    assert_eq!(s, 404);
    // And an event without a valid token is a 401, not an error.
    let (s, j, h) = call(
        &portal,
        Routes::Key,
        load("get-recovery-key.json", "expired.or.forged"),
    )
    .await;
    assert_eq!((s, j["status"].as_u64()), (401, Some(401)));
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

/// The demo portal, a dev identity provider and alice's token.
async fn demo() -> (
    recovery_portal::domain::ports::Portal,
    Arc<recovery_portal::adapters::embedded::MemoryStore>,
    DevIdentityProvider,
    String,
) {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let verifier = Arc::new(idp.verifier(Arc::new(recovery_portal::domain::ports::SystemClock)));
    let (portal, store) = app::embedded(
        &seed::parse(seed::DEMO_SEED).unwrap(),
        verifier,
        app::RateLimits {
            key: 100,
            ..Default::default()
        },
    )
    .await;
    let alice = idp.token("contoso", "alice", "RecoveryKey.Read", now, 600);
    (portal, store, idp, alice)
}

/// `events/get-recovery-key.json` for `token`, changed by `edit`.
fn key_event(token: &str, edit: impl FnOnce(&mut Value)) -> lambda_http::Request {
    let path = format!(
        "{}/events/get-recovery-key.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("{{TOKEN}}", token);
    let mut v: Value = serde_json::from_str(&text).unwrap();
    edit(&mut v);
    lambda_http::request::from_str(&v.to_string()).unwrap()
}

fn set_body(v: &mut Value, content_type: &str, body: &str) {
    v["headers"]["content-type"] = json!(content_type);
    v["headers"]["content-length"] = json!(body.len().to_string());
    v["body"] = json!(body);
}

#[tokio::test]
async fn the_audit_records_the_gateways_source_ip_not_x_forwarded_for() {
    let (portal, store, _, alice) = demo().await;
    let req = key_event(&alice, |v| {
        v["headers"]["x-forwarded-for"] = json!("203.0.113.66, 10.1.2.3");
        v["headers"]["x-real-ip"] = json!("203.0.113.67");
    });
    let (s, j, _) = call(&portal, Routes::Key, req).await;
    assert_eq!(s, 200, "{j}");
    let ev = store.audit_log().pop().unwrap();
    assert_eq!(ev.source_ip.as_deref(), Some("198.51.100.23"));
}

#[tokio::test]
async fn base64_encoded_bodies_are_decoded() {
    use base64::Engine;
    let (portal, store, _, alice) = demo().await;
    let body = r#"{"key_id":"bdd640fb","reason":"sent base64-encoded"}"#;
    let req = key_event(&alice, |v| {
        v["isBase64Encoded"] = json!(true);
        v["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
        v["headers"]["content-length"] = json!(body.len().to_string());
    });
    let (s, j, _) = call(&portal, Routes::Key, req).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["key_id"], "BDD640FB-0667-4AD1-9C80-317FA3B1799D");
    assert_eq!(
        j["recovery_password"],
        seed_password("BDD640FB-0667-4AD1-9C80-317FA3B1799D")
    );
    let ev = store.audit_log().pop().unwrap();
    assert_eq!(ev.justification.as_deref(), Some("sent base64-encoded"));
}

#[tokio::test]
async fn size_media_type_and_method_errors_through_the_lambda_adapter() {
    let (portal, store, _, alice) = demo().await;
    let big = format!(r#"{{"reason":"{}"}}"#, "x".repeat(4 * 1024));
    let (s, j, _) = call(
        &portal,
        Routes::Key,
        key_event(&alice, |v| set_body(v, "application/json", &big)),
    )
    .await;
    assert_eq!((s, j["status"].as_u64()), (413, Some(413)), "{j}");
    // Exactly at the limit is fine as far as size goes.
    let at_limit = format!(r#"{{"reason":"{}"}}"#, " ".repeat(4 * 1024 - 13));
    assert_eq!(at_limit.len(), 4 * 1024);
    let (s, j, _) = call(
        &portal,
        Routes::Key,
        key_event(&alice, |v| set_body(v, "application/json", &at_limit)),
    )
    .await;
    assert_ne!(s, 413, "{j}");
    let (s, j, _) = call(
        &portal,
        Routes::Key,
        key_event(&alice, |v| set_body(v, "text/plain", r#"{"reason":"x"}"#)),
    )
    .await;
    assert_eq!((s, j["status"].as_u64()), (415, Some(415)), "{j}");
    let (s, j, h) = call(
        &portal,
        Routes::Key,
        key_event(&alice, |v| {
            v["requestContext"]["http"]["method"] = json!("GET")
        }),
    )
    .await;
    assert_eq!((s, j["status"].as_u64()), (405, Some(405)), "{j}");
    assert_eq!(h["allow"], "POST");
    // None of these disclosed anything.
    assert!(
        store
            .audit_log()
            .iter()
            .all(|e| e.outcome == recovery_portal::domain::audit::Outcome::Denied),
        "{:?}",
        store.audit_log()
    );
}

/// A cipher that takes longer than any invocation may.
struct SlowCipher(Arc<dyn recovery_portal::domain::ports::KeyCipher>);

#[async_trait::async_trait]
impl recovery_portal::domain::ports::KeyCipher for SlowCipher {
    async fn seal(
        &self,
        ctx: &recovery_portal::domain::model::KeyContext,
        pw: &recovery_portal::domain::model::RecoveryPassword,
    ) -> Result<
        recovery_portal::domain::model::SealedKey,
        recovery_portal::domain::ports::CipherError,
    > {
        self.0.seal(ctx, pw).await
    }
    async fn open(
        &self,
        ctx: &recovery_portal::domain::model::KeyContext,
        sealed: &recovery_portal::domain::model::SealedKey,
    ) -> Result<
        recovery_portal::domain::model::RecoveryPassword,
        recovery_portal::domain::ports::CipherError,
    > {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        self.0.open(ctx, sealed).await
    }
}

#[tokio::test]
async fn the_invocation_deadline_ends_in_a_503_before_lambda_kills_the_function() {
    let (mut portal, _, _, alice) = demo().await;
    portal.cipher = Arc::new(SlowCipher(portal.cipher.clone()));
    let mut ctx = lambda_http::Context::default();
    let deadline = std::time::SystemTime::now() + std::time::Duration::from_millis(1500);
    ctx.deadline = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let req = lambda_http::RequestExt::with_lambda_context(key_event(&alice, |_| {}), ctx);
    let started = std::time::Instant::now();
    let (s, j, h) = call(&portal, Routes::Key, req).await;
    let took = started.elapsed();
    assert_eq!((s, j["status"].as_u64()), (503, Some(503)), "{j}");
    assert_eq!(h["retry-after"], "2");
    assert_eq!(h["x-request-id"], "Ab1Cd2Ef3Gh3=");
    assert!(j["recovery_password"].is_null(), "{j}");
    // Answered before the deadline, keeping the margin to send it.
    assert!(
        std::time::SystemTime::now() < deadline,
        "answered after the deadline ({took:?})"
    );
    assert!(took >= std::time::Duration::from_millis(500), "{took:?}");
}
