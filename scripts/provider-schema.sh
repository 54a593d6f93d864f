#!/usr/bin/env bash
# Installs the hashicorp/aws provider's schema that tests/infra/provider_schema.rs
# checks infra/*.tf against: the .jsii file of cdktf's generated bindings
# (npm package @cdktf/provider-aws, pinned in scripts/schema/package.json and
# package-lock.json; 21.22.1 is generated from hashicorp/aws 6.25.0).
#
# Installs into scripts/schema/node_modules (git-ignored) with `npm ci`, and
# does nothing when the pinned version is already there. Run by
# scripts/test.sh (before `cargo test`) and by scripts/check-infra.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/schema"

pkg=node_modules/@cdktf/provider-aws
want="$(sed -n 's/^ *"@cdktf\/provider-aws": *"\([^"]*\)".*/\1/p' package.json)"
have=""
if [ -f "$pkg/package.json" ] && [ -s "$pkg/.jsii" ]; then
    have="$(sed -n 's/^  "version": *"\([^"]*\)".*/\1/p' "$pkg/package.json" | head -n 1)"
fi
if [ -n "$want" ] && [ "$have" = "$want" ]; then
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "provider-schema: npm not found on PATH (needed to install @cdktf/provider-aws@$want, the AWS provider's schema)" >&2
    exit 1
fi
echo "==> installing the AWS provider's schema (@cdktf/provider-aws@$want, 37 MB download) into scripts/schema/node_modules"
npm ci --no-audit --no-fund --loglevel=error >/dev/null
