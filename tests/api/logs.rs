//! No recovery password or bearer token ever reaches a log line, at any
//! level, from our code or from the libraries below it.

use crate::support::common;

use common::*;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let h = Harness::new(&test_seed(), 2).await;
    let s = h.serve().await;
    let alice = h.token("contoso", "alice", "RecoveryKey.Read");
    let agent = h.token("contoso", "agent", "RecoveryKey.Read.All AuditLog.Read.All");
    let mut tokens = vec![alice.clone(), agent.clone()];
    assert_eq!(s.get("/v1/devices", &alice).await.status, 200);
    let mut shown = Vec::new();
    for body in [None, Some(r#"{"key_id":"22222222","reason":"lost PIN"}"#)] {
        let r = s.post_key("PC-ALICE", &alice, body).await;
        assert_eq!(r.status, 200);
        shown.push(r.json()["recovery_password"].as_str().unwrap().to_owned());
    }
    s.post_key("PC-ALICE", &alice, None)
        .await
        .assert_problem(429);
    let r = s.post_key("PC-BOB", &agent, None).await;
    shown.push(r.json()["recovery_password"].as_str().unwrap().to_owned());
    s.post_key("PC-BOB", &alice, None).await.assert_problem(404);
    let expired = h
        .idp
        .token("contoso", "alice", "RecoveryKey.Read", NOW - 9000, 60);
    let forged = format!("{}x", &alice[..alice.len() - 1]);
    for t in [&expired, &forged] {
        s.get("/v1/devices", t).await.assert_problem(401);
        tokens.push(t.to_string());
    }
    h.store
        .fail_audit
        .store(true, std::sync::atomic::Ordering::SeqCst);
    s.post_key("PC-BOB", &agent, None).await.assert_problem(503);
    h.store
        .fail_audit
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(s.get("/v1/audit-events", &agent).await.status, 200);

    // Escrow: stored, repeated, conflicting, invalid.
    let mdm = h.token("contoso", "mdm", "RecoveryKey.Escrow");
    tokens.push(mdm.clone());
    let path = "/v1/devices/PC-ALICE-2/recovery-keys/77777777-aaaa-4aaa-8aaa-000000000077";
    let invalid = "123454-234564-345675-456786-567897-679008-700007-000000".to_owned();
    for (pw, status) in [
        (password(41), 201),
        (password(41), 200),
        (password(42), 409),
        (invalid.clone(), 400),
    ] {
        let body = serde_json::json!({"volume_type": "operating_system", "recovery_password": pw});
        let r = s
            .send(
                "PUT",
                path,
                Some(&mdm),
                Some(("application/json", &body.to_string())),
            )
            .await;
        assert_eq!(r.status, status, "{}", r.text);
        shown.push(pw);
    }

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("recovery key escrowed"), "{logs:.500}");
    assert!(
        logs.contains("recovery key disclosed"),
        "the capture works: {logs:.500}"
    );
    assert!(logs.contains("token rejected"));
    for n in 1..=7 {
        assert!(!logs.contains(&password(n)), "password {n} logged");
    }
    for p in &shown {
        assert!(!logs.contains(p.as_str()));
        // Nor its digits without dashes.
        assert!(!logs.contains(&p.replace('-', "")));
    }
    for t in &tokens {
        let sig = t.rsplit('.').next().unwrap();
        assert!(!logs.contains(sig), "a token signature was logged");
        assert!(
            !logs.contains(t.split('.').nth(1).unwrap()),
            "a token payload was logged"
        );
    }
}
