//! Shared by the function crates' runtime tests: the local-development path
//! of the README, run as processes. `portal dev-env` gives the function its
//! environment and `portal event <route>` the API Gateway event with a fresh
//! dev token; the function then runs under the Runtime API emulator.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `portal` binary of this workspace build, next to the function's own
/// (`cargo test --workspace` builds both).
pub fn portal_binary(function_binary: &str) -> PathBuf {
    let p = Path::new(function_binary)
        .with_file_name(format!("portal{}", std::env::consts::EXE_SUFFIX));
    assert!(
        p.is_file(),
        "{} is missing: build it first (`cargo build --bin portal`, or run `cargo test --workspace`)",
        p.display()
    );
    p
}

/// A fresh dev signing key location, as `PORTAL_DEV_KEY_FILE`.
pub fn fresh_key_file(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portal-dev-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("dev-signing-key.p8")
}

/// Runs `portal <args>` with the dev key at `key`; its stdout.
pub fn portal(portal: &Path, key: &Path, args: &[&str]) -> String {
    let out = Command::new(portal)
        .args(args)
        .env("PORTAL_DEV_KEY_FILE", key)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", portal.display()));
    assert!(
        out.status.success(),
        "portal {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `portal dev-env`'s `export NAME='value'` lines, as a shell would read them.
pub fn dev_env(portal_bin: &Path, key: &Path) -> Vec<(String, String)> {
    portal(portal_bin, key, &["dev-env"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l
                .strip_prefix("export ")
                .and_then(|l| l.split_once('='))
                .unwrap_or_else(|| panic!("not an export line: {l}"));
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or_else(|| panic!("not single-quoted: {l}"))
                .replace(r"'\''", "'");
            (name.to_owned(), value)
        })
        .collect()
}

/// Every line the function wrote is a JSON log record with a `level` and an
/// RFC 3339 `timestamp` (what Lambda's JSON log format filters on).
pub fn assert_json_log_lines(output: &str) {
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string(), "no level: {line}");
        let ts = v["timestamp"]
            .as_str()
            .unwrap_or_else(|| panic!("no timestamp: {line}"));
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("timestamp {ts} is not RFC 3339 ({e}): {line}"));
    }
}
