#!/usr/bin/env bash
# Runs every test of the project, on a fresh machine too: installs what the
# tests need into a project-local .venv (moto, checkov, openapi-spec-validator,
# Playwright, pytest), starts moto, runs the Rust tests (the function binaries
# under a Lambda Runtime API emulator included), validates openapi.json, runs
# the portal page in Chromium (Debian's package, installed with apt-get when
# missing) against the development identity provider and against
# node-oidc-provider (npm `oidc-provider`, pinned in tests/browser/oidc and
# installed there with `npm ci`), then checks the Terraform. The AWS provider's schema for the
# Terraform check under `cargo test` is installed with npm first
# (scripts/provider-schema.sh).
#
# `scripts/test.sh --package` also builds the Lambda zips with cargo-lambda
# (a second, release build: about 10 minutes on 2 cores, so CI leaves it out)
# and runs the same runtime smoke tests on the packaged bootstraps.
set -euo pipefail
cd "$(dirname "$0")/.."

# strace: the functions' init guard (functions/*/tests/runtime.rs) traces
# the real binaries' file opens and connections.
if ! command -v strace >/dev/null; then
    echo "==> installing strace for the init guard"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace
fi

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
    for f in list-devices get-recovery-key manage-keys entra-sync; do
        mkdir -p "$smoke/$f"
        .venv/bin/python -m zipfile -e "target/lambda/$f/bootstrap.zip" "$smoke/$f"
        chmod +x "$smoke/$f/bootstrap"
    done
    export PORTAL_SMOKE_BOOTSTRAP_DIR="$smoke"
fi

# The AWS provider's schema (npm @cdktf/provider-aws, pinned), which
# tests/infra/provider_schema.rs checks infra/*.tf against: installed before
# `cargo test`, skipped when already there.
scripts/provider-schema.sh
cargo test --workspace
# The API's OpenAPI document against the OpenAPI 3.1 specification (the Rust
# tests check it against the router and the answers).
"${VENV:-$PWD/.venv}/bin/openapi-spec-validator" openapi.json

# The portal page in a real browser: Debian's Chromium driven by Playwright
# for Python (which never downloads a browser of its own here). CI runs as
# root; elsewhere sudo is used for the one-time install.
if [ ! -x /usr/bin/chromium ]; then
    echo "==> installing Debian's chromium for the browser tests"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
# The `portal` binary `cargo test` just built for the CLI tests (a plain
# `cargo build` would compile it again with other dependency features).
portal_bin="$(cargo test -p recovery-portal --test cli --no-run --message-format=json 2>/dev/null |
    "${VENV:-.venv}/bin/python" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "portal" and m.get("executable"):
        print(m["executable"])
')"
# node-oidc-provider, the real OpenID provider the browser tests sign in
# with (tests/browser/oidc/package.json and package-lock.json pin it).
oidc_dir=tests/browser/oidc
oidc_want="$(sed -n 's/^ *"oidc-provider": *"\([^"]*\)".*/\1/p' "$oidc_dir/package.json")"
oidc_have="$(sed -n 's/^  "version": *"\([^"]*\)".*/\1/p' "$oidc_dir/node_modules/oidc-provider/package.json" 2>/dev/null || true)"
if [ "$oidc_have" != "$oidc_want" ]; then
    echo "==> installing node-oidc-provider $oidc_want into $oidc_dir/node_modules"
    (cd "$oidc_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
PORTAL_BIN="$portal_bin" \
    "${VENV:-.venv}/bin/python" -m pytest -q -p no:cacheprovider tests/browser

bash scripts/check-infra.sh
echo "scripts/test.sh: all tests passed"
