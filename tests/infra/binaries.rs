//! The function binaries carry no development tooling: neither the dev
//! identity provider (which mints tokens) nor the CLI's server and argument
//! parser. `cargo tree` shows what they are built from.

use std::path::Path;
use std::process::Command;

/// `cargo tree -e normal,features -p <package>`: the packages and features a
/// release build of that binary compiles (no dev-dependencies).
fn tree(package: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--prefix",
            "none",
            "-e",
            "normal,features",
        ])
        .args(["-p", package, "--manifest-path"])
        .arg(manifest)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn function_binaries_carry_no_dev_tooling() {
    for function in [
        "get-recovery-key",
        "list-devices",
        "manage-keys",
        "entra-sync",
    ] {
        let tree = tree(function);
        assert!(
            tree.lines().any(|l| l.starts_with("recovery-portal v")),
            "{function} is built on the library:\n{tree}"
        );
        for line in tree.lines() {
            for banned in [
                "recovery-portal feature \"dev-idp\"",
                "recovery-portal feature \"cli\"",
                "recovery-portal feature \"default\"",
                "axum ",
                "clap ",
                "lambda-emulator ",
            ] {
                assert!(
                    !line.starts_with(banned),
                    "{function} is built with `{line}`"
                );
            }
        }
    }
}

/// The operator build (`--no-default-features --features cli`, the one that
/// imports production keys) carries no token minter: the dev identity
/// provider is not in it, its commands are not offered, and `serve` without
/// an issuer refuses, saying what to set, instead of falling back on one.
#[test]
fn operator_build_has_no_dev_identity_provider() {
    // The default build, as `cargo test` made it: the dev provider is in.
    let default = std::fs::read(env!("CARGO_BIN_EXE_portal")).expect("the default portal binary");
    assert!(
        carries_dev_idp(&default),
        "the check must see the dev provider where it is"
    );

    let operator = OperatorBuild::new();
    assert!(
        !carries_dev_idp(&operator.bytes),
        "the operator build carries tools::devidp"
    );
    for command in ["token", "event", "dev-env"] {
        let out = operator.run(&[command, "--help"], &[]);
        assert!(
            !out.status.success(),
            "the operator build offers `portal {command}`"
        );
    }
    let out = operator.run(&["serve", "--addr", "127.0.0.1:0"], &["PORTAL_ISSUER"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "serve without an issuer must refuse: {stderr}"
    );
    for needle in [
        "PORTAL_ISSUER is not set",
        "operator build",
        "PORTAL_AUDIENCE",
    ] {
        assert!(
            stderr.contains(needle),
            "the refusal must say {needle:?}: {stderr}"
        );
    }
}

/// The development identity provider's code is linked in: its module path
/// (`tools::devidp`, `src/tools/devidp.rs`) is in a debug build's symbol
/// names and panic locations.
fn carries_dev_idp(binary: &[u8]) -> bool {
    binary.windows(6).any(|w| w == b"devidp")
}

/// The `portal` binary built `--no-default-features --features cli`, copied
/// out of the target directory. Building it replaces `target/debug/portal`
/// (the other tests' and the browser tests' binary), so the default build
/// is put back when this is dropped, even after a failed assertion. It is
/// built together with this test target so dependencies resolve with the
/// same features as `cargo test`'s (nothing but this package recompiles).
struct OperatorBuild {
    bytes: Vec<u8>,
    copy: std::path::PathBuf,
}

impl OperatorBuild {
    fn new() -> Self {
        let features = ["--no-default-features", "--features", "cli"];
        let out = cargo_build(&features);
        let copy = std::env::temp_dir().join(format!("portal-operator-{}", std::process::id()));
        let path = executable(&out).expect("cargo reports the portal binary");
        std::fs::copy(&path, &copy).expect("copy the operator binary");
        let bytes = std::fs::read(&copy).unwrap();
        Self { bytes, copy }
    }

    fn run(&self, args: &[&str], unset: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(&self.copy);
        cmd.args(args);
        for var in unset {
            cmd.env_remove(var);
        }
        cmd.output().expect("the operator binary runs")
    }
}

impl Drop for OperatorBuild {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.copy);
        cargo_build(&[]);
    }
}

/// `cargo build --bin portal --test infra` with `features`; its JSON lines.
fn cargo_build(features: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "build",
            "--offline",
            "--message-format=json",
            "-p",
            "recovery-portal",
        ])
        .args(["--bin", "portal", "--test", "infra"])
        .args(features)
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build {features:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `portal` executable among cargo's JSON messages.
fn executable(messages: &str) -> Option<std::path::PathBuf> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "portal")
        .find_map(|m| m["executable"].as_str().map(Into::into))
}
