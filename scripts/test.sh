#!/usr/bin/env bash
# Runs every test of the project, on a fresh machine too: installs what the
# tests need into a project-local .venv (moto, checkov, openapi-spec-validator),
# starts moto, runs the Rust tests (the function binaries under a Lambda
# Runtime API emulator included), validates openapi.json, then checks the
# Terraform.
#
# `scripts/test.sh --package` also builds the Lambda zips with cargo-lambda
# (a second, release build: about 10 minutes on 2 cores, so CI leaves it out)
# and runs the same runtime smoke tests on the packaged bootstraps.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/moto.sh start)"
trap 'scripts/moto.sh stop >/dev/null 2>&1 || true' EXIT

if [ "${1:-}" = --package ]; then
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
# The API's OpenAPI document against the OpenAPI 3.1 specification (the Rust
# tests check it against the router and the answers).
"${VENV:-$PWD/.venv}/bin/openapi-spec-validator" openapi.json
bash scripts/check-infra.sh
echo "scripts/test.sh: all tests passed"
