//! No recovery password or bearer token ever reaches a log line, at any
//! level, from our code or from the libraries below it.

use crate::support;
use crate::support::aws as common_aws;
use crate::support::common;

use base64::Engine;
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
    // The right keys were shown (the checks below look for these strings).
    assert_eq!(shown, [password(2), password(3), password(5)]);
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

/// Every recovery password of the demo seed, read from the file itself.
fn demo_passwords() -> Vec<String> {
    let seed: serde_json::Value =
        serde_json::from_str(recovery_portal::tools::seed::DEMO_SEED).unwrap();
    seed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["recovery_keys"].as_array().unwrap().iter())
        .map(|k| k["recovery_password"].as_str().unwrap().to_owned())
        .collect()
}

/// The forms a password could take in a log line: as shown, its digits,
/// base64 of either (KMS carries the plaintext base64-encoded in JSON), and
/// each of those as a `Debug` byte list (`[48, 51, 56, ...]`), the way the
/// SDK prints a body it holds as bytes.
fn secret_forms(pw: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let digits = pw.replace('-', "");
    let mut v = Vec::new();
    for s in [pw.to_owned(), digits.clone()] {
        let e = b64.encode(&s);
        // Prefixes, so a line that breaks or truncates them still counts.
        for form in [s.clone(), e[..24].to_owned()] {
            let bytes = form.as_bytes()[..16]
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            v.push(form);
            v.push(bytes);
        }
    }
    v
}

fn assert_no_secrets(logs: &str, what: &str, tokens: &[String]) {
    for pw in demo_passwords() {
        for form in secret_forms(&pw) {
            assert!(
                !logs.contains(&form),
                "{what}: a recovery password ({form}) reached the logs"
            );
        }
    }
    for t in tokens {
        let sig = t.rsplit('.').next().unwrap();
        assert!(!logs.contains(sig), "{what}: a token signature was logged");
        assert!(
            !logs.contains(t.split('.').nth(1).unwrap()),
            "{what}: a token payload was logged"
        );
    }
}

/// The AWS path at the most verbose levels: `portal import` seals each key
/// with KMS `Encrypt` (the plaintext is in the request body) and `portal
/// serve --backend aws` opens it with `Decrypt` (the plaintext is in the
/// response body). Whatever `RUST_LOG` says, and even with the SDK's own
/// body-logging switches on, neither body is printed.
#[tokio::test]
async fn aws_bodies_never_reach_the_logs_at_trace() {
    let kms = aws_sdk_kms::Client::new(&common_aws::moto_config().await);
    let kms_key = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let dir = std::env::temp_dir().join(format!("portal-logs-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed.json");
    std::fs::write(&seed, recovery_portal::tools::seed::DEMO_SEED).unwrap();
    // `trace` everywhere, and a directive more specific than any cap a
    // plain appended `target=info` could express.
    let levels = [
        "trace",
        "info,aws_smithy_runtime::client::orchestrator=trace,aws_smithy_runtime_api=trace,\
         aws_sdk_kms=trace,aws_sdk_dynamodb=trace,aws_smithy_http_client=trace,hyper=trace,\
         hyper_util=trace,lambda_runtime=trace",
    ];
    for rust_log in levels {
        let prefix = common_aws::fresh_prefix();
        let cmd = || {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_portal"));
            for v in [
                "PORTAL_ISSUER",
                "PORTAL_AUDIENCE",
                "PORTAL_JWKS",
                "PORTAL_JWKS_URL",
                "PORTAL_KEY_RATE_LIMIT",
                "AWS_LAMBDA_LOG_LEVEL",
            ] {
                c.env_remove(v);
            }
            c.env("AWS_ENDPOINT_URL", common_aws::moto_url())
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_REGION", "us-east-1")
                .env("PORTAL_TABLE_PREFIX", &prefix)
                .env("PORTAL_KMS_KEY_ID", &kms_key)
                .env("PORTAL_DEV_KEY_FILE", dir.join("dev.p8"))
                .env("RUST_LOG", rust_log)
                // The SDK's own switches that print the bodies it otherwise
                // redacts: the signed request (KMS `Encrypt` holds the
                // plaintext) and sensitive responses (`Decrypt`'s plaintext).
                .env("LOG_SIGNABLE_BODY", "true")
                .env("LOG_SENSITIVE_BODIES", "true");
            c
        };
        let run = |args: &[&str]| {
            let out = cmd().args(args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "portal {args:?}: {stderr}");
            (String::from_utf8(out.stdout).unwrap(), stderr)
        };
        run(&["tables", "create"]);
        let (out, import_log) = run(&["import", seed.to_str().unwrap(), "--actor", "log-test"]);
        assert!(out.contains("7 keys written"), "{out}");
        assert_no_secrets(&import_log, "portal import", &[]);

        let served = support::serve::spawn({
            let mut c = cmd();
            c.args(["serve", "--backend", "aws", "--addr", "127.0.0.1:0"]);
            c
        });
        let base = served.base.clone();
        let token = |user: &str, scope: &str| {
            let (out, _) = run(&[
                "token", "--issuer", &base, "--tenant", "contoso", "--user", user, "--scope", scope,
            ]);
            out.trim().to_owned()
        };
        let tokens = [
            token("alice", "RecoveryKey.Read"),
            token("agent", "RecoveryKey.Read.All"),
        ];
        let http = reqwest::Client::new();
        let mut shown = Vec::new();
        for (device, t) in [
            ("DESKTOP-7Q2M4K1", &tokens[0]),
            ("DESKTOP-5K1L9M3", &tokens[1]),
        ] {
            let r = http
                .post(format!("{base}/v1/devices/{device}/recovery-key"))
                .bearer_auth(t)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let j: serde_json::Value = r.json().await.unwrap();
            shown.push(j["recovery_password"].as_str().unwrap().to_owned());
        }
        // Exactly the seed's keys were shown (so the checks below look for
        // the right strings).
        assert_eq!(
            shown,
            [
                "038258-286682-604857-317823-647658-401093-009361-230186",
                "328581-417230-115038-335632-145618-548053-400774-653719"
            ]
        );
        let serve_log = served.finish();
        assert!(
            serve_log.contains("recovery key disclosed"),
            "the capture works: {serve_log:.2000}"
        );
        assert_no_secrets(&serve_log, "portal serve", &tokens);
    }
}
