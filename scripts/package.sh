#!/usr/bin/env bash
# Builds the three Lambda zips with cargo-lambda:
#   target/lambda/list-devices/bootstrap.zip
#   target/lambda/get-recovery-key/bootstrap.zip
#   target/lambda/manage-keys/bootstrap.zip
#
# Usage: scripts/package.sh [arm64|x86_64]
# Default: arm64 when the aarch64-unknown-linux-gnu Rust target is installed
# (the deployment default: cheaper and faster), else x86_64; deploy with
# `-var architecture=<the same>`.
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

# Jitter entropy in aws-lc costs tens of milliseconds at every cold start.
export AWS_LC_SYS_NO_JITTER_ENTROPY=1
cargo lambda build --release "$flag" --output-format zip \
    --package list-devices --package get-recovery-key --package manage-keys
for f in list-devices get-recovery-key manage-keys; do
    ls -l "target/lambda/$f/bootstrap.zip"
done
echo "package.sh: built for $arch; deploy with -var architecture=$arch"
