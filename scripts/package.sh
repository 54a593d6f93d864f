#!/usr/bin/env bash
# Builds the four Lambda zips with cargo-lambda:
#   target/lambda/list-devices/bootstrap.zip
#   target/lambda/get-recovery-key/bootstrap.zip
#   target/lambda/manage-keys/bootstrap.zip
#   target/lambda/entra-sync/bootstrap.zip (deployed only with var.entra_sync)
# and records what it built in target/lambda/build.json (the architecture
# and each zip's SHA-256), which Terraform (infra/) reads: the functions are
# deployed with the architecture they were built for, and a zip built any
# other way fails the plan.
#
# Usage: scripts/package.sh [arm64|x86_64]
# Default: arm64 when the aarch64-unknown-linux-gnu Rust target is installed
# (cheaper and faster on Lambda), else x86_64.
#
# The build environment (AWS_LC_SYS_NO_JITTER_ENTROPY=1) comes from
# .cargo/config.toml, so a `cargo lambda build` by hand builds the same.
#
# cargo-lambda (with its Zig linker) is installed from PyPI into the project's
# .venv, so nothing needs installing by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${VENV:-$PWD/.venv}"
req=scripts/requirements-package.txt
stamp="$venv/.requirements-package.stamp"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/cargo-lambda" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "package.sh: installing cargo-lambda into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
    echo "$want" >"$stamp"
fi
export PATH="$venv/bin:$PATH"

arch="${1:-}"
if [ -z "$arch" ]; then
    if rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$'; then
        arch=arm64
    else
        arch=x86_64
    fi
fi
case "$arch" in
    arm64) flag=--arm64 ;;
    x86_64) flag=--x86-64 ;;
    *) echo "package.sh: architecture must be arm64 or x86_64, got $arch" >&2; exit 2 ;;
esac

manifest=target/lambda/build.json
# A failed build must not leave a manifest describing older zips.
rm -f "$manifest"
cargo lambda build --release "$flag" --output-format zip \
    --package list-devices --package get-recovery-key --package manage-keys --package entra-sync
"$venv/bin/python" - "$arch" "$manifest" <<'PY'
import base64, hashlib, json, sys
arch, manifest = sys.argv[1], sys.argv[2]
zips = {}
for f in ("list-devices", "get-recovery-key", "manage-keys", "entra-sync"):
    with open(f"target/lambda/{f}/bootstrap.zip", "rb") as z:
        # As Terraform's filebase64sha256().
        zips[f] = base64.b64encode(hashlib.sha256(z.read()).digest()).decode()
with open(manifest, "w") as out:
    json.dump({"architecture": arch, "zips": zips}, out, indent=2)
    out.write("\n")
PY
for f in list-devices get-recovery-key manage-keys entra-sync; do
    ls -l "target/lambda/$f/bootstrap.zip"
done
echo "package.sh: built for $arch ($manifest); terraform -chdir=infra apply deploys them as $arch"
