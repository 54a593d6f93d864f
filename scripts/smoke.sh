#!/usr/bin/env bash
# Smoke test of a deployed portal, to run after `terraform apply`: through
# the real API Gateway, JWT authorizer, Lambda functions, DynamoDB and KMS,
#   1. GET  /v1/devices                          (list-devices)
#   2. POST /v1/devices/{device_id}/recovery-key  (get-recovery-key)
# and reports each step as PASS or FAIL (with the HTTP status and the
# problem+json title and detail). The recovery password is never printed:
# only that one came back, its length and whether it is well formed, and
# the key ID.
#
# Usage: scripts/smoke.sh [--api-url URL] [--device DEVICE_ID] [--list-only]
#
#   --api-url URL   the API's base URL; default $PORTAL_API_URL, else
#                   `terraform -chdir=infra output -raw api_url`
#   --device ID     the device whose key is retrieved; default
#                   $PORTAL_SMOKE_DEVICE, else the first listed device that
#                   has a current operating_system key
#   --list-only     stop after listing devices (no key is disclosed)
#
# The bearer token comes from $PORTAL_SMOKE_TOKEN: an access token of your
# identity provider for this API (aud = jwt_audience) with RecoveryKey.Read
# (your own devices) or RecoveryKey.Read.All (any device of the tenant).
# The simplest way to get one: sign in to the portal page (terraform output
# portal_url), open the browser's developer tools, Network tab, and copy the
# token after "Bearer " from the Authorization header of a /v1 request. Or
# from the command line, e.g. with Entra ID (if the Azure CLI is allowed to
# request tokens for the API app):
#   export PORTAL_SMOKE_TOKEN="$(az account get-access-token \
#       --scope api://<api-client-id>/RecoveryKey.Read --query accessToken -o tsv)"
# To keep a pasted token out of the shell history:
#   read -rs PORTAL_SMOKE_TOKEN && export PORTAL_SMOKE_TOKEN
#
# A retrieval is real: it is audited as a granted disclosure (reason
# "post-deploy smoke test (scripts/smoke.sh)") and asks for the key's
# rotation (GET /v1/rotation-requests). Use a test device, or --list-only.
#
# Needs curl and python3. Exit status: 0 when every step passed, 1 when one
# failed, 2 on a usage error.
set -euo pipefail

usage() {
    sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

api_url="${PORTAL_API_URL:-}"
device="${PORTAL_SMOKE_DEVICE:-}"
list_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --api-url) [ $# -ge 2 ] || usage; api_url="$2"; shift 2 ;;
        --api-url=*) api_url="${1#*=}"; shift ;;
        --device) [ $# -ge 2 ] || usage; device="$2"; shift 2 ;;
        --device=*) device="${1#*=}"; shift ;;
        --list-only) list_only=1; shift ;;
        -h | --help) usage ;;
        *) echo "smoke: unknown argument: $1" >&2; usage ;;
    esac
done

for tool in curl python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "smoke: $tool is needed" >&2
        exit 2
    fi
done

if [ -z "$api_url" ]; then
    repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if command -v terraform >/dev/null 2>&1 &&
        api_url="$(terraform -chdir="$repo_root/infra" output -raw api_url 2>/dev/null)" &&
        [ -n "$api_url" ]; then
        :
    else
        echo "smoke: no API URL: pass --api-url URL, set PORTAL_API_URL, or run it where" >&2
        echo "       \`terraform -chdir=infra output -raw api_url\` works (after terraform apply)" >&2
        exit 2
    fi
fi
api_url="${api_url%/}"

if [ -z "${PORTAL_SMOKE_TOKEN:-}" ]; then
    echo "smoke: set PORTAL_SMOKE_TOKEN to an access token for this API (see the top of $0)" >&2
    exit 2
fi

# Answers (one holds a recovery password) go to a private directory that is
# removed on exit. The token goes to curl in a header file, not argv.
umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf 'Authorization: Bearer %s\n' "$PORTAL_SMOKE_TOKEN" >"$work/auth"

failures=0
run_id="smoke-$(date +%s)-$$"

# request NAME METHOD URL [JSON BODY]: the status in $status, the body in
# $work/NAME.body, the headers in $work/NAME.headers.
request() {
    local name="$1" method="$2" url="$3" body="${4:-}"
    local args=(-sS -X "$method" -H "@$work/auth" -H "X-Request-Id: $run_id-$name"
        -H "Accept: application/json" --max-time 30
        -D "$work/$name.headers" -o "$work/$name.body" -w '%{http_code}')
    if [ -n "$body" ]; then
        args+=(-H "Content-Type: application/json" --data-binary "$body")
    fi
    : >"$work/$name.body"
    : >"$work/$name.headers"
    if ! status="$(curl "${args[@]}" "$url" 2>"$work/$name.curl")"; then
        status="000"
    fi
}

# report LABEL NAME: PASS for a 200 (then runs the check passed on stdin of
# python, see below), FAIL with what the answer says otherwise.
fail() {
    local label="$1" name="$2"
    failures=$((failures + 1))
    if [ "$status" = 000 ]; then
        echo "FAIL  $label: no HTTP answer: $(tr '\n' ' ' <"$work/$name.curl")"
        return
    fi
    python3 - "$label" "$status" "$work/$name.body" "$work/$name.headers" <<'PY'
import json, sys
label, status, body_path, headers_path = sys.argv[1:5]
headers = {}
for line in open(headers_path, encoding="latin-1"):
    if ":" in line:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
raw = open(body_path, "rb").read()
line = f"FAIL  {label}: HTTP {status}"
try:
    p = json.loads(raw)
except ValueError:
    p = None
if isinstance(p, dict) and ("title" in p or "detail" in p):
    line += f" {p.get('title', '')}: {p.get('detail', '')}"
    if p.get("required_permission"):
        line += f" (required permission: {p['required_permission']})"
    if p.get("request_id"):
        line += f" [request id {p['request_id']}]"
elif isinstance(p, dict) and "message" in p:
    # API Gateway's own answers are {"message": ...}, not problem+json.
    line += f" {p['message']} (API Gateway's answer, not the function's"
    line += ": its JWT authorizer refused the token)" if status == "401" else ")"
elif status == "200":
    line += " but the body is not the expected JSON"
elif raw:
    line += f" (not problem+json: {raw[:200].decode('utf-8', 'replace')!r})"
else:
    line += " (empty body)"
if headers.get("www-authenticate"):
    line += f"\n      WWW-Authenticate: {headers['www-authenticate']}"
if status == "401":
    line += "\n      (the token is missing, expired, or not for this API: check iss/aud against jwt_issuer/jwt_audience)"
if status in ("403", "404") and "x-amzn-errortype" in headers:
    line += f"\n      (API Gateway: {headers['x-amzn-errortype']})"
print(line)
PY
}

echo "API: $api_url"

# --- 1. list devices --------------------------------------------------------
request list GET "$api_url/v1/devices"
label="GET /v1/devices"
chosen=""
if [ "$status" = 200 ] &&
    python3 - "$work/list.body" "$work/list.headers" "$work/chosen" >"$work/list.summary" <<'PY'
import json, sys
body_path, headers_path, chosen_path = sys.argv[1:4]
headers = {}
for line in open(headers_path, encoding="latin-1"):
    if ":" in line:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
try:
    doc = json.load(open(body_path, "rb"))
    devices = doc["devices"]
    assert isinstance(devices, list)
except (ValueError, KeyError, TypeError, AssertionError):
    sys.exit(1)
print(f"{len(devices)} device(s)")
for d in devices:
    keys = d.get("recovery_keys") or []
    current = [k for k in keys if not k.get("superseded_at")]
    print(f"      {d.get('device_id')}  {d.get('display_name')!r}  {d.get('os')}  "
          f"{len(keys)} key(s), {len(current)} current")
for k in ("x-content-type-options", "cache-control"):
    if k not in headers:
        print(f"      warning: no {k} header on the answer")
# The first device with a current operating_system key (what a retrieval
# without key_id returns).
with open(chosen_path, "w") as f:
    for d in devices:
        if any(k.get("volume_type") == "operating_system" and not k.get("superseded_at")
               for k in d.get("recovery_keys") or []):
            f.write(d["device_id"])
            break
PY
then
    echo "PASS  $label: HTTP 200, $(head -n 1 "$work/list.summary")"
    sed '1d' "$work/list.summary"
    chosen="$(cat "$work/chosen")"
else
    fail "$label" list
fi
if [ -n "$device" ]; then
    chosen="$device"
fi

# --- 2. retrieve a key ------------------------------------------------------
label="POST /v1/devices/{device_id}/recovery-key"
if [ "$list_only" = 1 ]; then
    echo "SKIP  $label: --list-only"
elif [ -z "$chosen" ] && [ "$failures" -gt 0 ]; then
    echo "SKIP  $label: no device list to choose from (or pass --device ID)"
elif [ -z "$chosen" ]; then
    echo "SKIP  $label: no listed device has a current operating_system key (pass --device ID)"
else
    path_id="$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$chosen")"
    label="POST /v1/devices/$chosen/recovery-key"
    request key POST "$api_url/v1/devices/$path_id/recovery-key" \
        '{"reason":"post-deploy smoke test (scripts/smoke.sh)"}'
    if [ "$status" = 200 ] &&
        python3 - "$work/key.body" "$work/key.headers" >"$work/key.summary" <<'PY'
import json, re, sys
body_path, headers_path = sys.argv[1:3]
headers = {}
for line in open(headers_path, encoding="latin-1"):
    if ":" in line:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
try:
    doc = json.load(open(body_path, "rb"))
    password = doc["recovery_password"]
except (ValueError, KeyError, TypeError):
    sys.exit(1)
well_formed = isinstance(password, str) and re.fullmatch(r"\d{6}(-\d{6}){7}", password) is not None
print(f"key {doc.get('key_id')} ({doc.get('volume_type')}) of {doc.get('device_id')}: "
      f"a recovery password was returned, {len(password) if isinstance(password, str) else '?'} characters, "
      f"{'well formed (8 groups of 6 digits)' if well_formed else 'NOT well formed'}; "
      f"display_seconds {doc.get('display_seconds')}")
notes = []
if "no-store" not in headers.get("cache-control", ""):
    notes.append("no Cache-Control: no-store on the answer")
if "no-cache" not in headers.get("pragma", ""):
    notes.append("no Pragma: no-cache on the answer")
for n in notes:
    print(f"      warning: {n}")
sys.exit(0 if well_formed else 3)
PY
    then
        echo "PASS  $label: HTTP 200, $(head -n 1 "$work/key.summary")"
        sed '1d' "$work/key.summary"
    elif [ "$status" = 200 ] && [ -s "$work/key.summary" ]; then
        failures=$((failures + 1))
        echo "FAIL  $label: HTTP 200, $(head -n 1 "$work/key.summary")"
    else
        fail "$label" key
    fi
fi

if [ "$failures" -gt 0 ]; then
    echo "smoke: $failures step(s) failed"
    exit 1
fi
echo "smoke: all steps passed"
