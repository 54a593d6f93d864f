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
