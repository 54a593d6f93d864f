#!/usr/bin/env bash
# Static checks of the Terraform in infra/:
#   1. terraform fmt -check (skipped when terraform is not installed);
#   2. checkov, from the virtualenv $VENV (default: .venv at the repo root);
#   3. the AWS provider's schema (npm @cdktf/provider-aws, pinned in
#      scripts/schema/) installed for tests/infra/provider_schema.rs, which
#      checks every resource and data block against it under `cargo test`
#      (scripts/test.sh installs it before `cargo test` too).
# Exits non-zero if one finds a problem. Needs no AWS credentials; no network
# either (providers are not downloaded; checkov runs with --skip-download)
# once the schema package is installed (or in npm's cache).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

venv="${VENV:-$repo_root/.venv}"
status=0

echo "==> terraform fmt -check -recursive infra"
if command -v terraform >/dev/null 2>&1; then
    if ! terraform fmt -check -recursive -diff infra; then
        echo "terraform fmt: files above need 'terraform fmt -recursive infra'" >&2
        status=1
    fi
else
    echo "terraform not found on PATH: skipping the formatting check"
fi

echo "==> checkov -d infra --framework terraform"
checkov="$venv/bin/checkov"
if [ ! -x "$checkov" ]; then
    echo "checkov not found at $checkov (set VENV to a virtualenv with checkov installed: pip install checkov)" >&2
    exit 1
fi
# checkov exits 1 when a check fails. --skip-download keeps it offline (it
# would otherwise try to fetch guideline links from Prisma Cloud).
if ! "$checkov" -d infra --quiet --compact --framework terraform --skip-download; then
    echo "checkov: failed checks above (fix them, or add an inline #checkov:skip=<id>:<reason> where a check does not apply)" >&2
    status=1
fi

echo "==> AWS provider schema for tests/infra/provider_schema.rs"
if ! scripts/provider-schema.sh; then
    echo "provider schema: not installed (npm ci in scripts/schema failed); cargo test --test infra will fail" >&2
    status=1
fi

exit "$status"
