#!/usr/bin/env bash
# Runs every test of the project, on a fresh machine too: installs what the
# tests need (a project-local .venv with moto and checkov), starts moto, runs
# the Rust tests, then checks the Terraform.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/moto.sh start)"
trap 'scripts/moto.sh stop >/dev/null 2>&1 || true' EXIT

cargo test --workspace
bash scripts/check-infra.sh
echo "scripts/test.sh: all tests passed"
