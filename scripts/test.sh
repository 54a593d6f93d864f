#!/usr/bin/env bash
# Runs every test of the project, on a fresh machine too: installs what the
# tests need into a project-local .venv (moto and checkov; cargo-lambda for
# packaging), starts moto, builds the Lambda zips, runs the Rust tests (the
# packaged bootstraps included), then checks the Terraform.
#
# SKIP_PACKAGE=1 skips the cargo-lambda release build (minutes on 2 cores);
# the runtime smoke tests then run the workspace's own function binaries only.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/moto.sh start)"
trap 'scripts/moto.sh stop >/dev/null 2>&1 || true' EXIT

if [ "${SKIP_PACKAGE:-0}" != 1 ]; then
    # Package for this machine's architecture so the zips can run here.
    case "$(uname -m)" in
        aarch64 | arm64) arch=arm64 ;;
        *) arch=x86_64 ;;
    esac
    scripts/package.sh "$arch"
    smoke="$PWD/target/lambda-smoke"
    rm -rf "$smoke"
    for f in list-devices get-recovery-key; do
        mkdir -p "$smoke/$f"
        .venv/bin/python -m zipfile -e "target/lambda/$f/bootstrap.zip" "$smoke/$f"
        chmod +x "$smoke/$f/bootstrap"
    done
    export PORTAL_SMOKE_BOOTSTRAP_DIR="$smoke"
fi

cargo test --workspace
bash scripts/check-infra.sh
echo "scripts/test.sh: all tests passed"
