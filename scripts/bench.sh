#!/usr/bin/env bash
# Performance benchmarks (issue 5). Not run by CI: they take minutes and their
# figures depend on the machine. One command:
#
#   scripts/bench.sh                 # coldstart + requests + outage + aws
#   scripts/bench.sh coldstart       # or any of: coldstart requests outage incident aws profiles dispatch check
#
# Environment: RUNS (cold starts per variant, default 30), USERS (outage,
# default 10000), CONNECTIONS (outage and incident, default 64), REPEAT
# (outage runs, default 3), INVOCATIONS (aws, per route, default 30),
# INCIDENT_USERS (default 100000), AGENTS (default 200), BATCH (key IDs per
# batch request, default 100), INCIDENT_REPEAT (default 1), BATCHES (aws:
# batch invocations, default 3), AWS_BATCH (aws: keys per batch, default 25:
# a batch of 100 exceeds the function's 8 s budget against the serialized
# moto). CARGO_TARGET_DIR is honoured.
#
# - coldstart: release builds of both functions and of bench/hello-lambda
#   (the floor), spawned under the Lambda Runtime API emulator RUNS times
#   each, interleaved; init, init + first invocation (401, bad signature),
#   warm invocations, peak RSS, binary size; then a strace check that init
#   makes no connection besides the runtime API. If cargo-lambda packages
#   exist (target/lambda/<fn>/bootstrap.zip, scripts/package.sh), their
#   bootstraps are measured too and smoke-tested (functions/*/tests/runtime.rs).
# - requests: criterion, benches/requests.rs (per-request cost vs verifying
#   the token alone).
# - outage: benches/outage.rs against a release `portal serve`.
# - incident: benches/outage.rs --modes incident: INCIDENT_USERS users list
#   and retrieve while AGENTS helpdesk agents retrieve the other devices'
#   keys in batches of BATCH during an incident opened over the API; the
#   whole audit log reconciled afterwards; the raw verification rate (the
#   floor) measured in the same run.
# - aws: benches/awspath.rs, the release function binaries with
#   PORTAL_BACKEND=aws against moto (scripts/moto.sh), through a proxy that
#   counts AWS calls per invocation; also their CPU time per invocation; then
#   an incident opened by manage-keys and BATCHES helpdesk batches of BATCH
#   keys: AWS calls per disclosed key, single retrieval against batch.
# - profiles: the functions built with other release settings (opt-level s
#   and z, thin LTO, aws-lc jitter entropy on) and the floor on Tokio's
#   multi-threaded runtime, measured against the release build in one
#   interleaved coldstart run. Slow (several LTO builds).
#
# - dispatch: issue 19's dispatcher question, benches/dispatch.rs: the
#   functions' table dispatch against the same route table as an axum
#   Router (benches/support/axum_router.rs), both behind lambda_http's
#   adapter, counted in instructions under valgrind's callgrind (load on a
#   shared machine does not change the count): DISPATCH_N requests
#   (default 1000) of each kind through each dispatcher and the floor, the
#   router's construction per function, and the size of get-recovery-key's
#   `main` built with each (benches/dispatch_fn_*.rs). Needs valgrind.
#
# - check: builds every benchmark (release, as the runs do) and runs none:
#   a quick way to see they still compile.
#
# coldstart, outage and awspath are benches/*.rs drivers with arguments of
# their own (harness = false, bench = false in Cargo.toml): built with
# `cargo build --release --bench <name>` and run from target/release/deps.
#
# Everything is written to target/bench/<UTC time>/ (summary.md plus raw
# CSV and logs); BENCHMARKS.md records the figures and what they led to.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build exactly as scripts/package.sh builds the Lambda zips (.cargo/config.toml
# sets the same; exported too, so the setting holds if cargo runs elsewhere).
export AWS_LC_SYS_NO_JITTER_ENTROPY=1
RUNS="${RUNS:-30}"
USERS="${USERS:-10000}"
CONNECTIONS="${CONNECTIONS:-64}"
REPEAT="${REPEAT:-3}"
INCIDENT_USERS="${INCIDENT_USERS:-100000}"
AGENTS="${AGENTS:-200}"
BATCH="${BATCH:-100}"
INCIDENT_REPEAT="${INCIDENT_REPEAT:-1}"
BATCHES="${BATCHES:-3}"

what=("$@")
[ ${#what[@]} -gt 0 ] || what=(coldstart requests outage aws)

out="target/bench/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
summary="$out/summary.md"
rel="${CARGO_TARGET_DIR:-target}/release"

{
    echo "# Benchmark run $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo '```'
    echo "commit:  $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src functions bench Cargo.toml Cargo.lock || echo ' (+ uncommitted changes)')"
    echo "machine: $(uname -srm); $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory:  $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
    echo "rustc:   $(rustc -V)"
    echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, at start; other builds share this machine)"
    echo "command: scripts/bench.sh ${what[*]} (RUNS=$RUNS USERS=$USERS CONNECTIONS=$CONNECTIONS REPEAT=$REPEAT INCIDENT_USERS=$INCIDENT_USERS AGENTS=$AGENTS BATCH=$BATCH INCIDENT_REPEAT=$INCIDENT_REPEAT BATCHES=$BATCHES)"
    echo '```'
    echo
} | tee "$summary"

# Builds the bench driver `$1` (release) and prints its executable's path:
# a bench target's binary has a hashed name under target/release/deps.
bench_bin() {
    cargo build --release -p recovery-portal --bench "$1" --message-format=json-render-diagnostics |
        sed -n 's/.*"name":"'"$1"'".*"executable":"\([^"]*\)".*/\1/p' | tail -n 1 | grep .
}

section() { printf '\n## %s\n\n' "$1" | tee -a "$summary"; }
note() { echo "$*" | tee -a "$summary"; }

# Executable packaged bootstraps (cargo-lambda zips for this machine's arch).
bootstraps() {
    local fn zip dir machine want
    case "$(uname -m)" in x86_64) want=3e ;; aarch64) want=b7 ;; *) want=none ;; esac
    for fn in list-devices get-recovery-key; do
        zip="target/lambda/$fn/bootstrap.zip"
        [ -f "$zip" ] || continue
        dir="$out/bootstrap/$fn"
        mkdir -p "$dir"
        unzip -qo "$zip" -d "$dir"
        chmod +x "$dir/bootstrap"
        machine="$(od -An -tx1 -j18 -N1 "$dir/bootstrap" | tr -d ' ')"
        if [ "$machine" = "$want" ]; then
            echo "$fn"
        else
            echo "bench.sh: $zip is not for $(uname -m); not measured" >&2
        fi
    done
}

coldstart_variants() {
    local suffix="$1"
    echo "hello$suffix=$rel/hello-lambda"
    echo "list-devices$suffix=$rel/list-devices@embedded"
    echo "get-recovery-key$suffix=$rel/get-recovery-key@embedded"
    echo "list-devices/aws$suffix=$rel/list-devices@aws"
    echo "get-recovery-key/aws$suffix=$rel/get-recovery-key@aws"
    # The SDK client trusts the compiled-in Amazon Trust Services roots
    # (src/adapters/aws/tls.rs); for comparison, the platform's trust store as the
    # SDK loads it by default (here /etc/ssl/certs: one PEM file per CA
    # besides the bundle, Debian layout).
    echo "get-recovery-key/aws+system-roots$suffix=$rel/get-recovery-key@aws,PORTAL_TLS_ROOTS=system"
}

run_coldstart() {
    section "Cold start (RUNS=$RUNS per variant, interleaved)"
    cargo build --release -p list-devices -p get-recovery-key -p hello-lambda
    local driver
    driver="$(bench_bin coldstart)"
    local variants=() fn
    mapfile -t variants < <(coldstart_variants "")
    local packaged=()
    mapfile -t packaged < <(bootstraps)
    for fn in "${packaged[@]}"; do
        variants+=("$fn/bootstrap=$out/bootstrap/$fn/bootstrap@embedded")
    done
    note "Binaries: $(for b in hello-lambda list-devices get-recovery-key; do printf '%s %s bytes; ' "$b" "$(stat -c %s "$rel/$b")"; done)"
    note
    "$driver" --runs "$RUNS" --netcheck --raw "$out/coldstart.csv" "${variants[@]}" \
        2> >(tee "$out/coldstart.log" >&2) | tee -a "$summary"
    note
    note "Raw samples: $out/coldstart.csv"
    if [ ${#packaged[@]} -gt 0 ]; then
        section "Smoke test of the packaged bootstraps"
        PORTAL_SMOKE_BOOTSTRAP_DIR="$PWD/$out/bootstrap" \
            cargo test -p list-devices -p get-recovery-key --test runtime 2>&1 | tee -a "$out/smoke.log" |
            grep -E '^test |test result' | tee -a "$summary"
    fi
}

run_requests() {
    section "Per-request cost (criterion, benches/requests.rs)"
    cargo bench -p recovery-portal --bench requests 2>&1 | tee "$out/requests.log" |
        grep -E '^per_request/|time:|thrpt:' | tee -a "$summary"
}

run_outage() {
    section "Outage simulation (USERS=$USERS, CONNECTIONS=$CONNECTIONS, REPEAT=$REPEAT)"
    cargo build --release -p recovery-portal --bin portal
    local driver
    driver="$(bench_bin outage)"
    "$driver" --portal "$rel/portal" --users "$USERS" \
        --connections "$CONNECTIONS" --repeat "$REPEAT" 2> >(tee "$out/outage.log" >&2) | tee -a "$summary"
}

run_incident() {
    section "Incident: outage with helpdesk batches (INCIDENT_USERS=$INCIDENT_USERS, AGENTS=$AGENTS, BATCH=$BATCH, CONNECTIONS=$CONNECTIONS, INCIDENT_REPEAT=$INCIDENT_REPEAT)"
    cargo build --release -p recovery-portal --bin portal
    local driver
    driver="$(bench_bin outage)"
    "$driver" --portal "$rel/portal" --modes incident --users "$INCIDENT_USERS" \
        --agents "$AGENTS" --batch "$BATCH" --connections "$CONNECTIONS" --repeat "$INCIDENT_REPEAT" \
        2> >(tee "$out/incident.log" >&2) | tee -a "$summary"
}

run_aws() {
    section "AWS path against moto (benches/awspath.rs)"
    cargo build --release -p list-devices -p get-recovery-key -p manage-keys
    local driver
    driver="$(bench_bin awspath)"
    local started=0
    if ! scripts/moto.sh status >/dev/null 2>&1; then started=1; fi
    eval "$(scripts/moto.sh start)"
    "$driver" --invocations "${INVOCATIONS:-30}" --batches "$BATCHES" --batch "${AWS_BATCH:-25}" --bin-dir "$rel" 2> >(tee "$out/awspath.log" >&2) | tee -a "$summary"
    # Leave a moto server that was already running (other tests use it).
    if [ "$started" = 1 ]; then scripts/moto.sh stop >/dev/null 2>&1 || true; fi
}

# Release-profile experiments: each variant is a custom profile (its own
# target/<profile>/ directory, so nothing else's cache is disturbed).
run_profiles() {
    section "Release profile experiments (RUNS=$RUNS per variant, interleaved)"
    cargo build --release -p list-devices -p get-recovery-key -p hello-lambda
    local driver
    driver="$(bench_bin coldstart)"
    local variants=() p
    mapfile -t variants < <(coldstart_variants "" | grep -v /aws)
    # A profile changes the SDK's init the way it changes the rest: one AWS variant.
    variants+=("get-recovery-key/aws=$rel/get-recovery-key@aws")
    for p in opt-s opt-z thin-lto jitter mt; do
        local cfg=(--config "profile.bench-$p.inherits=\"release\"")
        case $p in
            opt-s) cfg+=(--config "profile.bench-$p.opt-level=\"s\"") ;;
            opt-z) cfg+=(--config "profile.bench-$p.opt-level=\"z\"") ;;
            thin-lto) cfg+=(--config "profile.bench-$p.lto=\"thin\"" --config "profile.bench-$p.codegen-units=16") ;;
            jitter | mt) ;;
        esac
        if [ "$p" = jitter ]; then
            # aws-lc's jitter entropy source, as a build without the
            # .cargo/config.toml setting would have it (the process
            # environment overrides [env] there; 0 means "keep jitter").
            AWS_LC_SYS_NO_JITTER_ENTROPY=0 cargo build "${cfg[@]}" --profile "bench-$p" \
                -p list-devices -p get-recovery-key -p hello-lambda
        elif [ "$p" = mt ]; then
            # The runtime flavour's own cost, on the floor binary.
            cargo build "${cfg[@]}" --profile "bench-$p" -p hello-lambda --features hello-lambda/multi-thread
            variants+=("hello/$p=${CARGO_TARGET_DIR:-target}/bench-$p/hello-lambda")
            continue
        else
            cargo build "${cfg[@]}" --profile "bench-$p" -p list-devices -p get-recovery-key -p hello-lambda
        fi
        local d="${CARGO_TARGET_DIR:-target}/bench-$p"
        variants+=("hello/$p=$d/hello-lambda" "list-devices/$p=$d/list-devices@embedded" "get-recovery-key/$p=$d/get-recovery-key@embedded" "get-recovery-key/aws/$p=$d/get-recovery-key@aws")
    done
    note "Sizes (bytes): $(for v in "${variants[@]}"; do p="${v#*=}"; p="${p%@*}"; printf '%s %s; ' "${v%%=*}" "$(stat -c %s "$p")"; done)"
    note
    "$driver" --runs "$RUNS" --raw "$out/profiles.csv" "${variants[@]}" \
        2> >(tee "$out/profiles.log" >&2) | tee -a "$summary"
}

# Instructions per request through each dispatcher (callgrind counts only
# inside benches/dispatch.rs's measured_* functions), the router's
# construction, and the size twins. Built in a profile of its own: release
# with symbols, which callgrind's --toggle-collect needs.
run_dispatch() {
    local n="${DISPATCH_N:-1000}"
    section "Dispatcher: the route table against an axum Router (callgrind instructions, N=$n)"
    command -v valgrind >/dev/null || { note "valgrind is not installed: nothing measured"; return 1; }
    local p=bench-dispatch
    local cfg=(--config "profile.$p.inherits=\"release\"" --config "profile.$p.strip=false")
    local built driver
    built="$(cargo build "${cfg[@]}" --profile "$p" -p recovery-portal \
        --bench dispatch --bench dispatch_fn_table --bench dispatch_fn_axum \
        --message-format=json-render-diagnostics)"
    exe() { sed -n 's/.*"name":"'"$1"'".*"executable":"\([^"]*\)".*/\1/p' <<<"$built" | tail -n 1 | grep .; }
    driver="$(exe dispatch)"
    count() {
        valgrind --tool=callgrind --callgrind-out-file=/dev/null --collect-atstart=no \
            --toggle-collect="$1" "${@:2}" 2>&1 >/dev/null | tee -a "$out/dispatch.log" |
            sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
    }
    note "| request | dispatcher | instructions / request |"
    note "|---|---|---|"
    local kind d total
    for kind in key list unauth notfound; do
        for d in floor table-trivial axum-trivial table axum; do
            total="$(count '*measured_requests*' "$driver" run "$d" "$kind" "$n")"
            note "| $kind | $d | $((total / n)) |"
        done
    done
    note
    note "| router built for | instructions |"
    note "|---|---|"
    for d in key list manage all; do
        note "| $d | $(count '*measured_init*' "$driver" init "$d") |"
    done
    note
    local t a
    t="$(exe dispatch_fn_table)"
    a="$(exe dispatch_fn_axum)"
    strip -o "$out/dispatch_fn_table" "$t"
    strip -o "$out/dispatch_fn_axum" "$a"
    note "Stripped size (bytes): table $(stat -c %s "$out/dispatch_fn_table"), axum $(stat -c %s "$out/dispatch_fn_axum")"
}

# Every benchmark builds; none runs.
run_check() {
    section "Build check (nothing measured)"
    local b
    for b in coldstart outage awspath dispatch dispatch_fn_table dispatch_fn_axum; do
        note "$b: $(bench_bin "$b")"
    done
    cargo bench -p recovery-portal --bench requests --no-run 2>&1 | tail -n 1
    note "requests: built (cargo bench --no-run)"
}

for w in "${what[@]}"; do
    case "$w" in
        coldstart) run_coldstart ;;
        requests) run_requests ;;
        outage) run_outage ;;
        incident) run_incident ;;
        aws) run_aws ;;
        profiles) run_profiles ;;
        dispatch) run_dispatch ;;
        check) run_check ;;
        *) echo "bench.sh: unknown benchmark $w (coldstart, requests, outage, incident, aws, profiles, dispatch, check)" >&2; exit 2 ;;
    esac
done
echo
echo "bench.sh: results in $out/summary.md"
