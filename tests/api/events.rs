//! Every file in `events/` (API Gateway HTTP API, payload 2.0) dispatched
//! through the Lambda handler exactly as the function binaries do.

use crate::support::common;

use common::{AUDIENCE, ISSUER};
use recovery_portal::api::Routes;
use recovery_portal::app;
use recovery_portal::frontends::lambda;
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};
use recovery_portal::tools::seed;
use serde_json::Value;
use std::sync::Arc;

fn load(name: &str, token: &str) -> lambda_http::Request {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("{{TOKEN}}", token);
    lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn call(
    portal: &recovery_portal::ports::Portal,
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
    let verifier = Arc::new(idp.verifier(Arc::new(recovery_portal::ports::SystemClock)));
    let (portal, store) = app::embedded(&seed::parse(seed::DEMO_SEED).unwrap(), verifier, 10).await;
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
    assert!(
        recovery_portal::domain::model::RecoveryPassword::parse(
            j["recovery_password"].as_str().unwrap()
        )
        .is_ok()
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
