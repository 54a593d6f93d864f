//! End to end on the AWS backends: `portal tables create`, `portal import`
//! of the demo seed into moto (DynamoDB + KMS), `portal serve --backend aws`,
//! and every route of the API contract over HTTP.

use crate::support;
use crate::support::aws as common_aws;

use common_aws::{fresh_prefix, moto_config, moto_url};
use serde_json::Value;
use std::process::Command;

const PORTAL: &str = env!("CARGO_BIN_EXE_portal");

struct Env {
    prefix: String,
    kms_key: String,
    key_file: std::path::PathBuf,
}

impl Env {
    fn cmd(&self) -> Command {
        let mut c = Command::new(PORTAL);
        for v in [
            "PORTAL_ISSUER",
            "PORTAL_AUDIENCE",
            "PORTAL_JWKS",
            "PORTAL_JWKS_URL",
            "PORTAL_KEY_RATE_LIMIT",
        ] {
            c.env_remove(v);
        }
        c.env("AWS_ENDPOINT_URL", moto_url())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("PORTAL_TABLE_PREFIX", &self.prefix)
            .env("PORTAL_KMS_KEY_ID", &self.kms_key)
            .env("PORTAL_DEV_KEY_FILE", &self.key_file);
        c
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.cmd().args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }
}

#[tokio::test]
async fn import_then_serve_every_route_over_http() {
    let kms = aws_sdk_kms::Client::new(&moto_config().await);
    let kms_key = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let dir = std::env::temp_dir().join(format!("portal-e2e-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let env = Env {
        prefix: fresh_prefix(),
        kms_key,
        key_file: dir.join("dev.p8"),
    };
    let seed = dir.join("seed.json");
    std::fs::write(&seed, recovery_portal::tools::seed::DEMO_SEED).unwrap();

    let (ok, out, err) = env.run(&["tables", "create"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.matches("Created").count(), 3, "{out}");
    // An invalid file writes nothing...
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        recovery_portal::tools::seed::DEMO_SEED.replacen("\"alice\"", "\"al ice\"", 1),
    )
    .unwrap();
    let seed_arg = seed.to_str().unwrap();
    let (ok, _, err) = env.run(&["import", bad.to_str().unwrap(), "--actor", "e2e-admin"]);
    assert!(!ok && err.contains("owner"), "{err}");
    // ...a valid one loads, and loading it again changes nothing.
    let (ok, out, err) = env.run(&["import", seed_arg, "--actor", "e2e-admin"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("6 devices written, 7 keys written, 0 devices skipped"),
        "{out}"
    );
    let (ok, out, _) = env.run(&["import", seed_arg, "--actor", "e2e-admin"]);
    assert!(
        ok && out.contains("0 devices written, 0 keys written, 6 devices skipped"),
        "{out}"
    );

    let served = support::serve::spawn({
        let mut c = env.cmd();
        c.args(["serve", "--backend", "aws", "--addr", "127.0.0.1:0"]);
        c
    });
    let base = served.base.clone();
    let token = |user: &str, scope: &str| {
        let (ok, out, err) = env.run(&[
            "token", "--issuer", &base, "--tenant", "contoso", "--user", user, "--scope", scope,
        ]);
        assert!(ok, "{err}");
        out.trim().to_owned()
    };
    let (alice, agent, auditor) = (
        token("alice", "RecoveryKey.Read"),
        token("agent", "RecoveryKey.Read.All"),
        token("auditor", "AuditLog.Read.All"),
    );
    let http = reqwest::Client::new();
    let get = |path: String, t: String| {
        let http = http.clone();
        async move {
            let r = http.get(path).bearer_auth(t).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    let (s, j) = get(format!("{base}/v1/devices"), alice.clone()).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = j["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["display_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Alice's desktop",
            "Alice's home PC",
            "Alice's test laptop",
            "Alice's work laptop"
        ]
    );
    assert_eq!(j["helpdesk"]["name"], "Contoso IT Helpdesk");

    let r = http
        .post(format!("{base}/v1/devices/DESKTOP-7Q2M4K1/recovery-key"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let j: Value = r.json().await.unwrap();
    assert_eq!(j["key_id"], "3B8FAA18-37F8-488B-97FC-695A07A0CA6E");
    // Exactly the password the seed file holds for that key (sealed by KMS
    // at import, opened by KMS now).
    assert_eq!(
        j["recovery_password"],
        "038258-286682-604857-317823-647658-401093-009361-230186"
    );

    let r = http
        .post(format!("{base}/v1/devices/ALICE-HOME-PC/recovery-key"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["helpdesk"]["email"],
        "helpdesk@contoso.example"
    );
    let r = http
        .post(format!("{base}/v1/devices/DESKTOP-5K1L9M3/recovery-key"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "bob's device looks missing to alice");

    let (s, j) = get(
        format!("{base}/v1/recovery-keys?key_id_prefix=3b8f-aa18"),
        agent.clone(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(j["recovery_keys"][0]["owner"], "alice");
    let (s, j) = get(format!("{base}/v1/devices?owner=bob"), agent.clone()).await;
    assert_eq!(
        (s, j["devices"][0]["device_id"].as_str()),
        (200, Some("DESKTOP-5K1L9M3"))
    );

    let (s, j) = get(format!("{base}/v1/audit-events"), auditor.clone()).await;
    assert_eq!(s, 200);
    let events = j["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[2]["outcome"], "granted");
    assert_eq!(events[1]["reason"], "personally_encrypted");
    assert_eq!(events[0]["reason"], "not_owner");
    let (s, j) = get(
        format!("{base}/v1/audit-events?device_id=DESKTOP-7Q2M4K1"),
        auditor.clone(),
    )
    .await;
    assert_eq!((s, j["events"].as_array().unwrap().len()), (200, 1));

    let (s, _) = get(format!("{base}/v1/audit-events"), alice).await;
    assert_eq!(s, 403);

    // A device moved to another owner by an import is audited under the
    // importer's name.
    let moved = dir.join("moved.json");
    let text = recovery_portal::tools::seed::DEMO_SEED.replacen(
        "\"owner\": \"alice\"",
        "\"owner\": \"bob\"",
        1,
    );
    assert_ne!(
        text,
        recovery_portal::tools::seed::DEMO_SEED,
        "the demo seed's first owner is alice"
    );
    std::fs::write(&moved, text).unwrap();
    let (ok, out, err) = env.run(&["import", moved.to_str().unwrap(), "--actor", "e2e-admin"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("1 devices written")
            && out.contains("1 owner changes audited as import:e2e-admin"),
        "{out}"
    );

    // `portal audit export`: JSON Lines of the same events the API pages
    // through (4 now), in pages of 3, with exit status 0 and no progress
    // output off a terminal.
    let (s, j) = get(format!("{base}/v1/audit-events"), auditor.clone()).await;
    assert_eq!(s, 200);
    let api_events = j["events"].as_array().unwrap().clone();
    assert_eq!(api_events.len(), 4, "{api_events:?}");
    let out = env
        .cmd()
        .args([
            "audit",
            "export",
            "--tenant",
            "contoso",
            "--since",
            "2000-01-01T00:00:00Z",
            "--page-size",
            "3",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("exported"),
        "no progress off a terminal"
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, api_events);
    assert_eq!(lines[0]["outcome"], "changed");
    assert_eq!(lines[0]["actor"], "import:e2e-admin");
    assert_eq!(lines[0]["reason"], "owner_changed");
    // Filters and a time range: the importer's event only; nothing before
    // the first event.
    let (ok, out, err) = env.run(&[
        "audit",
        "export",
        "--tenant",
        "contoso",
        "--since",
        "2000-01-01T00:00:00Z",
        "--actor",
        "import:e2e-admin",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let (ok, out, err) = env.run(&[
        "audit",
        "export",
        "--tenant",
        "contoso",
        "--since",
        "2000-01-01T00:00:00Z",
        "--until",
        "2000-01-02T00:00:00Z",
    ]);
    assert!(ok && out.is_empty(), "{out}{err}");
    // A store that cannot be read: exit status 1 and a message, no output.
    let out = env
        .cmd()
        .env("PORTAL_TABLE_PREFIX", "no-such-prefix")
        .args([
            "audit",
            "export",
            "--tenant",
            "contoso",
            "--since",
            "2000-01-01T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("audit export stopped after 0 events"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
