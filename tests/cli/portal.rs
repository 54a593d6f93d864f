//! The `portal` binary as a newcomer uses it: `serve` with the demo data and
//! its own dev identity provider, `token`, `validate`, and start-up errors.

use crate::support;

use std::process::Command;

const PORTAL: &str = env!("CARGO_BIN_EXE_portal");

fn portal(key_file: &std::path::Path) -> Command {
    let mut c = Command::new(PORTAL);
    c.env("PORTAL_DEV_KEY_FILE", key_file);
    for v in [
        "PORTAL_ISSUER",
        "PORTAL_AUDIENCE",
        "PORTAL_JWKS",
        "PORTAL_JWKS_URL",
        "PORTAL_BACKEND",
        "PORTAL_KEY_RATE_LIMIT",
        "PORTAL_SEED_FILE",
    ] {
        c.env_remove(v);
    }
    c
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("portal-cli-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn serve_demo_data_with_tokens_from_portal_token() {
    let dir = temp_dir("serve");
    let key = dir.join("key.p8");
    let served = support::serve::spawn({
        let mut c = portal(&key);
        c.args(["serve", "--addr", "127.0.0.1:0"]);
        c
    });
    assert!(
        served.banner.contains("LOCAL DEVELOPMENT MODE"),
        "{}",
        served.banner
    );
    let issuer = served.base.clone();
    let token = |user: &str, scope: &str| {
        let out = portal(&key)
            .args([
                "token", "--issuer", &issuer, "--tenant", "contoso", "--user", user, "--scope",
                scope,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let client = reqwest::Client::new();
    let alice = token("alice", "RecoveryKey.Read");
    let r = client
        .get(format!("{issuer}/v1/devices"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["devices"].as_array().unwrap().len(), 4);
    let r = client
        .post(format!("{issuer}/v1/devices/DESKTOP-7Q2M4K1/recovery-key"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["volume_type"], "operating_system");
    // The demo seed's newest operating-system key of that device, exactly.
    assert_eq!(j["key_id"], "3B8FAA18-37F8-488B-97FC-695A07A0CA6E");
    assert_eq!(
        j["recovery_password"],
        "038258-286682-604857-317823-647658-401093-009361-230186"
    );
    // The dev identity provider publishes discovery and JWKS documents.
    let d: serde_json::Value = client
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], issuer.as_str());
    let jwks: serde_json::Value = client
        .get(d["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    // A token from another dev key is refused.
    let other = portal(&dir.join("other.p8"))
        .args([
            "token", "--issuer", &issuer, "--tenant", "contoso", "--user", "alice",
        ])
        .output()
        .unwrap();
    assert!(
        other.status.success(),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    let forged = String::from_utf8(other.stdout).unwrap();
    let r = client
        .get(format!("{issuer}/v1/devices"))
        .bearer_auth(forged.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn start_up_errors_name_the_problem() {
    let dir = temp_dir("errors");
    let key = dir.join("key.p8");
    let out = portal(&key)
        .args(["serve", "--addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("local development only"));
    let out = portal(&key)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("PORTAL_KEY_RATE_LIMIT", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORTAL_KEY_RATE_LIMIT"));
    let out = portal(&key)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("PORTAL_ISSUER", "https://issuer.example")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORTAL_AUDIENCE"));
}

#[test]
fn validate_reports_record_and_field_and_loads_nothing() {
    let dir = temp_dir("validate");
    let key = dir.join("key.p8");
    let good = dir.join("good.json");
    std::fs::write(&good, recovery_portal::tools::seed::DEMO_SEED).unwrap();
    let out = portal(&key)
        .args(["validate", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("6 devices"));
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        recovery_portal::tools::seed::DEMO_SEED.replacen("\"fixed_data\"", "\"floppy\"", 1),
    )
    .unwrap();
    let out = portal(&key)
        .args(["validate", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"devices[0] (device_id "DESKTOP-7Q2M4K1").recovery_keys[2].volume_type"#),
        "{err}"
    );
    let out = portal(&key)
        .args([
            "serve",
            "--seed",
            bad.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an invalid seed stops the server");
}

/// A dev signing key others can read lets them mint tokens the local server
/// accepts: such a file is refused, with the fix in the message.
#[cfg(unix)]
#[test]
fn a_dev_signing_key_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("keymode");
    let key = dir.join("key.p8");
    let token = || {
        portal(&key)
            .args(["token", "--tenant", "contoso", "--user", "alice"])
            .output()
            .unwrap()
    };
    let out = token();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "created private");
    for loose in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(loose)).unwrap();
        let out = token();
        assert!(!out.status.success(), "{loose:o}");
        assert!(out.stdout.is_empty(), "{loose:o}: no token printed");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(key.to_str().unwrap())
                && err.contains("readable by group or others")
                && err.contains("chmod 600"),
            "{loose:o}: {err}"
        );
        let (status, err) = exits_within({
            let mut c = portal(&key);
            c.args(["serve", "--addr", "127.0.0.1:0"]);
            c
        });
        assert!(
            status.is_some_and(|s| !s.success()),
            "{loose:o}: serve refuses it too: {status:?} {err}"
        );
        assert!(
            err.contains("readable by group or others"),
            "{loose:o}: {err}"
        );
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(token().status.success());
}

/// Runs `cmd` for at most 30 s: its exit status (None if it was still
/// running and got killed) and its stderr.
fn exits_within(mut cmd: Command) -> (Option<std::process::ExitStatus>, String) {
    use std::io::Read;
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (status, err)
}

#[test]
fn import_needs_to_know_who_runs_it() {
    let dir = temp_dir("import-actor");
    let key = dir.join("key.p8");
    let seed = dir.join("seed.json");
    std::fs::write(&seed, recovery_portal::tools::seed::DEMO_SEED).unwrap();
    let out = portal(&key)
        .args(["import", seed.to_str().unwrap()])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("USERNAME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--actor"), "{err}");
    let out = portal(&key)
        .args(["import", seed.to_str().unwrap(), "--actor", "j doe"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--actor"));
}

#[test]
fn audit_export_refuses_bad_arguments_before_reading_anything() {
    let dir = temp_dir("export-args");
    let key = dir.join("key.p8");
    for (args, names) in [
        (
            vec!["--tenant", "contoso", "--since", "yesterday"],
            "--since",
        ),
        (
            vec![
                "--tenant",
                "contoso",
                "--since",
                "2026-01-01T00:00:00Z",
                "--until",
                "2025-01-01T00:00:00Z",
            ],
            "--until",
        ),
        (
            vec!["--tenant", "a b", "--since", "2026-01-01T00:00:00Z"],
            "--tenant",
        ),
        (
            vec![
                "--tenant",
                "contoso",
                "--since",
                "2026-01-01T00:00:00Z",
                "--page-size",
                "0",
            ],
            "--page-size",
        ),
        (
            vec![
                "--tenant",
                "contoso",
                "--since",
                "2026-01-01T00:00:00Z",
                "--actor",
                "x:y",
            ],
            "--actor",
        ),
    ] {
        let out = portal(&key)
            .args(["audit", "export"])
            .args(&args)
            // No AWS endpoint: a read would fail differently (and slowly).
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(names), "{args:?}: {err}");
    }
    // --since is required (clap's usage error, exit status 2).
    let out = portal(&key)
        .args(["audit", "export", "--tenant", "contoso"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
}

/// `PORTAL_SEED_FILE` is `--seed` for `portal serve`, as the configuration
/// table says: the server loads that file instead of the demo data.
#[tokio::test]
async fn serve_loads_portal_seed_file() {
    let dir = temp_dir("seed-file");
    let key = dir.join("key.p8");
    let seed = dir.join("seed.json");
    std::fs::write(
        &seed,
        serde_json::json!({
            "tenants": [{"tenant_id": "contoso", "self_service": true}],
            "devices": [{"tenant_id": "contoso", "device_id": "ONLY-PC", "owner": "alice",
                "display_name": "The only PC", "os": "Windows 11", "managed_by": "organization",
                "recovery_keys": [{"key_id": "0a0b0c0d-1111-4222-8333-444455556666",
                    "volume_type": "operating_system",
                    "recovery_password": "111111-222222-333333-444444-555555-666666-000000-111111",
                    "created_at": "2025-05-05T05:05:05Z"}]}]
        })
        .to_string(),
    )
    .unwrap();
    let served = support::serve::spawn({
        let mut c = portal(&key);
        c.args(["serve", "--addr", "127.0.0.1:0"])
            .env("PORTAL_SEED_FILE", &seed);
        c
    });
    let out = portal(&key)
        .args([
            "token",
            "--issuer",
            &served.base,
            "--tenant",
            "contoso",
            "--user",
            "alice",
        ])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap();
    let client = reqwest::Client::new();
    let j: serde_json::Value = client
        .get(format!("{}/v1/devices", served.base))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = j["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ONLY-PC"], "{j}");
    let r = client
        .post(format!("{}/v1/devices/ONLY-PC/recovery-key", served.base))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        j["recovery_password"],
        "111111-222222-333333-444444-555555-666666-000000-111111"
    );
    drop(served);

    // An unreadable or invalid file stops the server, naming the setting.
    for bad in [dir.join("missing.json"), {
        let p = dir.join("bad.json");
        std::fs::write(&p, "{\"tenants\": 5}").unwrap();
        p
    }] {
        let out = portal(&key)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .env("PORTAL_SEED_FILE", &bad)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("PORTAL_SEED_FILE") && err.contains(bad.to_str().unwrap()),
            "{err}"
        );
    }
}

/// `portal event` prints an API Gateway HTTP API (payload 2.0) event per
/// route, with a token `portal dev-env`'s JWKS verifies; wrong options are
/// refused. (functions/*/tests/runtime.rs feed these events to the functions.)
#[test]
fn event_and_dev_env_print_what_a_local_lambda_needs() {
    let dir = temp_dir("event");
    let key = dir.join("key.p8");
    let run = |args: &[&str]| portal(&key).args(args).output().unwrap();
    let out = run(&["dev-env"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = String::from_utf8(out.stdout).unwrap();
    let jwks = env
        .lines()
        .find_map(|l| l.strip_prefix("export PORTAL_JWKS='"))
        .and_then(|l| l.strip_suffix('\''))
        .unwrap_or_else(|| panic!("{env}"));
    let jwks: serde_json::Value = serde_json::from_str(jwks).unwrap();
    assert!(env.contains("export PORTAL_BACKEND='embedded'"), "{env}");
    assert!(
        env.contains("export PORTAL_ISSUER='http://127.0.0.1:8080'"),
        "{env}"
    );
    assert!(
        env.contains("export PORTAL_AUDIENCE='api://recovery-portal'"),
        "{env}"
    );

    for (route, method, path, scope) in [
        ("list-devices", "GET", "/v1/devices", "RecoveryKey.Read"),
        (
            "get-recovery-key",
            "POST",
            "/v1/devices/DESKTOP-7Q2M4K1/recovery-key",
            "RecoveryKey.Read",
        ),
        (
            "find-recovery-keys",
            "GET",
            "/v1/recovery-keys",
            "RecoveryKey.Read.All",
        ),
        (
            "audit-events",
            "GET",
            "/v1/audit-events",
            "AuditLog.Read.All",
        ),
    ] {
        let out = run(&["event", route, "--user", "alice"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["requestContext"]["http"]["method"], method);
        assert_eq!(e["rawPath"], path);
        let token = e["headers"]["authorization"]
            .as_str()
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap();
        let part = |i: usize| -> serde_json::Value {
            use base64::Engine;
            let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.split('.').nth(i).unwrap())
                .unwrap();
            serde_json::from_slice(&b).unwrap()
        };
        assert_eq!(
            part(0)["kid"],
            jwks["keys"][0]["kid"],
            "signed by the dev-env key"
        );
        let claims = part(1);
        assert_eq!(claims["scp"], scope);
        assert_eq!(claims["oid"], "alice");
        assert_eq!(claims["tid"], "contoso");
        assert_eq!(claims["iss"], "http://127.0.0.1:8080");
    }
    let out = run(&[
        "event",
        "get-recovery-key",
        "--user",
        "bob",
        "--device",
        "PC-9",
        "--tenant",
        "fabrikam",
        "--scope",
        "RecoveryKey.Read.All",
    ]);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["rawPath"], "/v1/devices/PC-9/recovery-key");
    assert_eq!(
        e["requestContext"]["http"]["path"],
        "/v1/devices/PC-9/recovery-key"
    );
    assert_eq!(e["pathParameters"]["device_id"], "PC-9");

    for (args, message) in [
        (
            &[
                "event",
                "list-devices",
                "--user",
                "alice",
                "--device",
                "PC-9",
            ][..],
            "--device applies to get-recovery-key",
        ),
        (
            &[
                "event",
                "get-recovery-key",
                "--user",
                "alice",
                "--device",
                "a/b",
            ][..],
            "--device",
        ),
        (
            &["event", "list-devices", "--user", "a b"][..],
            "--tenant and --user",
        ),
        (
            &["event", "delete-everything", "--user", "alice"][..],
            "invalid value",
        ),
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
    }
}
