//! The `portal` binary as the CLI tests start it: a clean environment (no
//! setting of the developer's shell leaks in), a private dev signing key,
//! and tokens from that key for a running server.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const PORTAL: &str = env!("CARGO_BIN_EXE_portal");

/// Every variable of the configuration table (docs/configuration.md) that `portal serve`
/// reads: removed, so each test sets exactly what it means to.
pub const SERVE_VARS: &[&str] = &[
    "PORTAL_ISSUER",
    "PORTAL_AUDIENCE",
    "PORTAL_JWKS",
    "PORTAL_JWKS_URL",
    "PORTAL_JWKS_MAX_AGE",
    "PORTAL_DEFAULT_TENANT",
    "PORTAL_BACKEND",
    "PORTAL_KEY_RATE_LIMIT",
    "PORTAL_HELPDESK_RATE_LIMIT",
    "PORTAL_SEED_FILE",
    "PORTAL_DATA_DIR",
    "PORTAL_MASTER_KEY_FILE",
    "PORTAL_WEB_CLIENT_ID",
    "PORTAL_WEB_SCOPES",
    "PORTAL_METRICS_NAMESPACE",
];

/// `portal` with `key_file` as its dev signing key and no other setting.
pub fn portal(key_file: &Path) -> Command {
    let mut c = Command::new(PORTAL);
    c.env("PORTAL_DEV_KEY_FILE", key_file);
    for v in SERVE_VARS {
        c.env_remove(v);
    }
    c
}

/// A fresh directory of its own for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("portal-cli-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A dev token for `issuer` (a server's base URL) from `key_file`.
pub fn token(key_file: &Path, issuer: &str, tenant: &str, user: &str, scope: &str) -> String {
    let out = portal(key_file)
        .args([
            "token", "--issuer", issuer, "--tenant", tenant, "--user", user, "--scope", scope,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
