//! Request bodies with wrong values: every body route, given arbitrary
//! strings, numbers and lists in its known fields and in unknown ones,
//! answers 400 with a problem that never quotes a value, and changes
//! nothing it stores (the only new audit events are denials of bad input).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use recovery_portal::adapters::embedded::MemoryStore;
use recovery_portal::api::{self, ApiRequest, Routes};
use recovery_portal::app;
use recovery_portal::domain::audit::Outcome;
use recovery_portal::domain::ports::Portal;
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};
use recovery_portal::tools::seed;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Every permission: the body, not the caller, is what is wrong.
const SCOPES: &str = "RecoveryKey.Read.All RecoveryKey.Escrow Devices.ReadWrite.All \
    Tenant.Settings.ReadWrite RecoveryKey.Incident AuditLog.Read.All";
const DEVICE: &str = "DESKTOP-7Q2M4K1";
const NEW_KEY: &str = "99999999-9999-4999-8999-000000000009";

/// Each body route: method, path, and the fields its body type knows.
fn routes() -> Vec<(&'static str, String, &'static [&'static str])> {
    vec![
        (
            "POST",
            format!("/v1/devices/{DEVICE}/recovery-key"),
            &["key_id", "reason"],
        ),
        (
            "POST",
            "/v1/recovery-keys/batch".into(),
            &["key_ids", "reason"],
        ),
        (
            "PUT",
            format!("/v1/devices/{DEVICE}"),
            &["owner", "display_name", "os", "managed_by"],
        ),
        ("DELETE", format!("/v1/devices/{DEVICE}"), &["reason"]),
        (
            "PUT",
            format!("/v1/devices/{DEVICE}/recovery-keys/{NEW_KEY}"),
            &["volume_type", "recovery_password", "created_at"],
        ),
        (
            "PATCH",
            "/v1/tenant/settings".into(),
            &[
                "self_service",
                "helpdesk",
                "require_reason",
                "superseded_key_retention_days",
                "retired_device_retention_days",
                "self_service_rate_limit",
                "helpdesk_rate_limit",
            ],
        ),
        (
            "POST",
            "/v1/incidents".into(),
            &["reason", "duration_hours", "helpdesk_rate_limit"],
        ),
    ]
}

/// A value a problem must never quote: long random text, a well-formed
/// recovery password, a large number, or such values nested.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9 ._:/@-]{12,40}",
        proptest::collection::vec(0u32..65_536, 8).prop_map(|g| {
            g.iter()
                .map(|n| format!("{:06}", n * 11))
                .collect::<Vec<_>>()
                .join("-")
        }),
        (100_000_000u64..u64::MAX).prop_map(|n| n.to_string()),
    ]
}

/// A JSON value built from `s`, and whether it quotes `s` as a number.
fn shaped(s: &str, shape: u8) -> Value {
    let v = match s.parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => json!(s),
    };
    match shape % 4 {
        0 => v,
        1 => json!([v]),
        2 => json!({ "name": v }),
        _ => json!(s),
    }
}

type Case = (usize, Vec<(String, u8)>, Vec<(String, String, u8)>);

/// A route, a value for each known field, and 1 to 3 unknown fields.
fn case() -> impl Strategy<Value = Case> {
    let known = proptest::collection::vec((secret(), any::<u8>()), 7);
    let unknown = proptest::collection::vec(("x_[a-z]{1,10}", secret(), any::<u8>()), 1..=3);
    (0..routes().len(), known, unknown)
}

fn body(fields: &[&str], known: &[(String, u8)], unknown: &[(String, String, u8)]) -> Value {
    let mut o = Map::new();
    for (f, (s, shape)) in fields.iter().zip(known) {
        o.insert((*f).to_owned(), shaped(s, *shape));
    }
    for (k, s, shape) in unknown {
        o.insert(k.clone(), shaped(s, *shape));
    }
    Value::Object(o)
}

struct Demo {
    rt: tokio::runtime::Runtime,
    portal: Portal,
    store: Arc<MemoryStore>,
    token: String,
    /// Another person with the same permissions (an incident's opener
    /// cannot batch-retrieve under it).
    other: String,
}

fn demo() -> Demo {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let idp = DevIdentityProvider::generate(
        DevAlg::Es256,
        "https://idp.example.test/v2.0",
        "api://portal",
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = idp.token("contoso", "lead", SCOPES, now, 3600);
    let other = idp.token("contoso", "deputy", SCOPES, now, 3600);
    let verifier = Arc::new(idp.verifier(Arc::new(recovery_portal::domain::ports::SystemClock)));
    let (portal, store) = rt.block_on(app::embedded(
        &seed::parse(seed::DEMO_SEED).unwrap(),
        verifier,
        app::RateLimits::default(),
    ));
    Demo {
        rt,
        portal,
        store,
        token,
        other,
    }
}

impl Demo {
    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(Value::to_string).unwrap_or_default();
        self.send_raw(&self.token, method, path, &body)
    }

    /// `send` by `token`, with the body as written (a key may be given
    /// twice).
    fn send_raw(&self, token: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
        let mut headers = http::HeaderMap::new();
        let bearer = format!("Bearer {token}");
        headers.insert(http::header::AUTHORIZATION, bearer.parse().unwrap());
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        let req = ApiRequest {
            method: method.parse().unwrap(),
            path: path.into(),
            query: None,
            headers,
            body: body.to_owned().into(),
            source_ip: None,
            request_id: "prop-bodies".into(),
        };
        let resp = self
            .rt
            .block_on(api::handle(&self.portal, Routes::All, req));
        let status = resp.status().as_u16();
        let body = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
        (status, body)
    }

    /// What the routes could change: settings, incidents, and every audit
    /// event but the denials of bad input.
    fn state(&self) -> (Value, Value, usize) {
        let changes = self
            .store
            .audit_log()
            .iter()
            .filter(|e| e.outcome != Outcome::Denied)
            .count();
        let settings = self.send("GET", "/v1/tenant/settings", None).1;
        let incidents = self.send("GET", "/v1/incidents", None).1;
        (settings, incidents, changes)
    }
}

#[test]
fn wrong_bodies_are_refused_without_quoting_a_value_or_changing_anything() {
    let demo = demo();
    let before = demo.state();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new(config)
        .run(&case(), |(route, known, unknown)| {
            let (method, path, fields) = &routes()[route];
            let sent = body(fields, &known, &unknown);
            let (status, problem) = demo.send(method, path, Some(&sent));
            prop_assert_eq!(status, 400, "{} {} {}: {}", method, path, sent, problem);
            let detail = problem["detail"].as_str().unwrap_or_default();
            let values = known
                .iter()
                .map(|(s, _)| s)
                .chain(unknown.iter().map(|(_, s, _)| s));
            for v in values {
                prop_assert!(!detail.contains(v.as_str()), "{} quoted in {:?}", v, detail);
            }
            prop_assert_eq!(&demo.state(), &before, "{} {} {}", method, path, sent);
            Ok::<(), TestCaseError>(())
        })
        .unwrap();
}

/// A body valid but for one field given twice, each value valid alone, on
/// every body route: method, path, body, and the problem's detail.
fn given_twice() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let retrieve = format!("/v1/devices/{DEVICE}/recovery-key");
    let device = format!("/v1/devices/{DEVICE}");
    let escrow = format!("/v1/devices/{DEVICE}/recovery-keys/{NEW_KEY}");
    vec![
        (
            "POST",
            retrieve.clone(),
            r#"{"key_id": "3B8FAA18", "key_id": "BDD640FB"}"#,
            "key_id is given more than once",
        ),
        (
            "POST",
            retrieve,
            r#"{"key_id": "3B8FAA18", "reason": "first", "reason": "second"}"#,
            "reason is given more than once",
        ),
        (
            "POST",
            "/v1/recovery-keys/batch".into(),
            r#"{"key_ids": ["3B8FAA18"], "reason": "first", "reason": "second"}"#,
            "reason is given more than once",
        ),
        (
            "POST",
            "/v1/recovery-keys/batch".into(),
            r#"{"key_ids": ["3B8FAA18"], "key_ids": ["BDD640FB"], "reason": "x"}"#,
            "key_ids is given more than once",
        ),
        (
            "PUT",
            device.clone(),
            r#"{"owner": "alice", "display_name": "x", "os": "y", "managed_by": "user", "owner": "bob"}"#,
            "owner is given more than once",
        ),
        (
            "DELETE",
            device,
            r#"{"reason": "first", "reason": "second"}"#,
            "reason is given more than once",
        ),
        (
            "PUT",
            escrow,
            r#"{"volume_type": "fixed_data",
                "recovery_password": "111111-222222-333333-444444-555555-666666-000011-123453",
                "recovery_password": "222222-111111-333333-444444-555555-666666-000011-123453"}"#,
            "the recovery password is given more than once",
        ),
        (
            "PATCH",
            "/v1/tenant/settings".into(),
            r#"{"require_reason": "always", "require_reason": "never"}"#,
            "require_reason is given more than once",
        ),
        (
            "PATCH",
            "/v1/tenant/settings".into(),
            r#"{"helpdesk": {"name": "IT", "email": "it@contoso.example", "name": "Other"}}"#,
            "helpdesk.name is given more than once",
        ),
        (
            "POST",
            "/v1/incidents".into(),
            r#"{"reason": "first", "duration_hours": 4, "reason": "second"}"#,
            "reason is given more than once",
        ),
    ]
}

#[test]
fn a_key_given_twice_is_refused_on_every_body_route_and_nothing_changes() {
    // Batch retrievals need an open incident.
    let with_incident = |open: bool| {
        let d = demo();
        if !open {
            return d;
        }
        let incident = r#"{"reason": "outage", "duration_hours": 4}"#;
        assert_eq!(
            d.send_raw(&d.other, "POST", "/v1/incidents", incident).0,
            201
        );
        d
    };
    let refusing = with_incident(true);
    let before = refusing.state();
    for (method, path, body, want) in given_twice() {
        let (status, problem) = refusing.send_raw(&refusing.token, method, &path, body);
        assert_eq!(status, 400, "{method} {path} {body}: {problem}");
        assert_eq!(problem["detail"], want, "{method} {path} {body}");
        assert!(
            !problem.to_string().contains("recovery_password"),
            "{method} {path}: {problem}"
        );
        assert_eq!(refusing.state(), before, "{method} {path} {body}");
        // The repetition alone is wrong: the body as a reader keeping
        // the last value sees it is accepted.
        let last: Value = serde_json::from_str(body).unwrap();
        let (status, answer) =
            with_incident(path.ends_with("batch")).send(method, &path, Some(&last));
        assert!(
            (200..300).contains(&status),
            "{method} {path} {last}: {answer}"
        );
    }
}
