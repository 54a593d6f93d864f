//! `scripts/smoke.sh` (the post-`terraform apply` smoke test) against a
//! local `portal serve`: it lists devices, retrieves a key, says PASS for
//! each, and never prints the recovery password; a token without the key
//! permission makes it fail with the answer's status, title and detail.

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

#[test]
fn smoke_script_against_portal_serve() {
    let dir = std::env::temp_dir().join(format!("portal-smoke-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key.p8");
    let served = support::serve::spawn({
        let mut c = portal(&key);
        c.args(["serve", "--addr", "127.0.0.1:0"]);
        c
    });
    let token = |scope: &str| {
        let out = portal(&key)
            .args([
                "token",
                "--issuer",
                &served.base,
                "--tenant",
                "contoso",
                "--user",
                "alice",
                "--scope",
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
    let smoke = |token: &str, args: &[&str]| {
        let out = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/smoke.sh"))
            .args(["--api-url", &format!("{}/", served.base)])
            .args(args)
            .env("PORTAL_SMOKE_TOKEN", token)
            .env_remove("PORTAL_API_URL")
            .env_remove("PORTAL_SMOKE_DEVICE")
            .output()
            .expect("bash scripts/smoke.sh");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), format!("{stdout}{stderr}"))
    };
    assert!(holds_a_password(
        "x 038258-286682-604857-317823-647658-401093-009361-230186."
    ));

    // Both steps pass; the chosen device's key is named, its password not.
    let (code, out) = smoke(&token("RecoveryKey.Read"), &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("PASS  GET /v1/devices: HTTP 200, 4 device(s)"),
        "{out}"
    );
    assert!(
        out.contains("PASS  POST /v1/devices/DESKTOP-3H8N2P5/recovery-key: HTTP 200, key ")
            && out.contains("a recovery password was returned, 55 characters, well formed"),
        "{out}"
    );
    assert!(
        !holds_a_password(&out),
        "the smoke script printed a password:\n{out}"
    );

    // A device named explicitly: the demo seed's known key, not printed.
    let (code, out) = smoke(&token("RecoveryKey.Read"), &["--device", "DESKTOP-7Q2M4K1"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("key 3B8FAA18-37F8-488B-97FC-695A07A0CA6E"),
        "{out}"
    );
    assert!(!out.contains("038258-286682"), "{out}");

    // Listing only: no retrieval.
    let (code, out) = smoke(&token("Devices.Read"), &["--list-only"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("SKIP  POST"), "{out}");

    // Without the key permission: FAIL with status, title and detail.
    let (code, out) = smoke(&token("Devices.Read"), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("PASS  GET /v1/devices"), "{out}");
    assert!(
        out.contains(
            "FAIL  POST /v1/devices/DESKTOP-3H8N2P5/recovery-key: HTTP 403 Permission required: "
        ),
        "{out}"
    );

    // A bad token: 401, with the hint about issuer and audience.
    let (code, out) = smoke("not-a-token", &["--list-only"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL  GET /v1/devices: HTTP 401 "), "{out}");
    assert!(out.contains("jwt_audience"), "{out}");

    // No token at all: a usage error.
    let (code, out) = smoke("", &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("PORTAL_SMOKE_TOKEN"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether `text` holds something shaped like a recovery password (eight
/// dash-separated groups of six digits).
fn holds_a_password(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_digit() || c == '-'))
        .any(|word| {
            let groups: Vec<&str> = word.split('-').collect();
            groups.len() >= 8
                && groups.windows(8).any(|w| {
                    w.iter()
                        .all(|g| g.len() == 6 && g.bytes().all(|b| b.is_ascii_digit()))
                })
        })
}
