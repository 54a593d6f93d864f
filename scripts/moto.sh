#!/usr/bin/env bash
# A local moto server (DynamoDB + KMS) for the AWS adapter tests (tests/aws/).
#
# Usage:
#   source scripts/moto.sh start     # start (or reuse) moto; exports PORTAL_TEST_MOTO_URL
#   eval "$(scripts/moto.sh start)"  # the same without sourcing (prints `export ...`)
#   scripts/moto.sh stop             # stop the server this script started
#   scripts/moto.sh status           # is it running? prints the export line if so
#   scripts/moto.sh venv             # only create/update the virtualenv
#
# `start` creates the project-local virtualenv ($VENV, default .venv at the repo
# root) with python3 -m venv if it is missing, and (re)installs
# scripts/requirements-test.txt whenever that file or the Python version
# changed (a stamp file in the virtualenv records what was installed). It then
# starts scripts/moto_server.py (moto_server, serialized) on a free port in the background, waits
# until it answers HTTP, and records its pid and URL under $VENV/run/. A server
# that is already running (pid alive and answering) is reused.
#
# Everything informative goes to stderr; stdout carries only the export line,
# so `eval "$(scripts/moto.sh start)"` is safe. When sourced, the script never
# changes the caller's shell options and only exports PORTAL_TEST_MOTO_URL.

_moto_main() {
    local repo_root venv run_dir pid_file url_file log_file req stamp want
    repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    venv="${VENV:-$repo_root/.venv}"
    run_dir="$venv/run"
    pid_file="$run_dir/moto.pid"
    url_file="$run_dir/moto.url"
    log_file="$run_dir/moto.log"
    req="$repo_root/scripts/requirements-test.txt"
    stamp="$venv/.requirements-test.stamp"

    _moto_log() { echo "moto.sh: $*" >&2; }

    _moto_venv() {
        local py="${PYTHON:-python3}"
        if [ ! -x "$venv/bin/python" ]; then
            _moto_log "creating virtualenv $venv"
            "$py" -m venv "$venv" >&2 || { _moto_log "python3 -m venv failed"; return 1; }
        fi
        want="$( { cat "$req"; "$venv/bin/python" --version 2>&1; } | sha256sum | cut -d' ' -f1)"
        if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x "$venv/bin/moto_server" ]; then
            _moto_log "installing $req into $venv (this takes a few minutes the first time)"
            if ! { "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2 &&
                "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2; }; then
                _moto_log "pip install failed"
                return 1
            fi
            echo "$want" >"$stamp"
        fi
    }

    # 0 when something answers HTTP at $1 (any status counts).
    _moto_answers() {
        "$venv/bin/python" - "$1" <<'PY' 2>/dev/null
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=1)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PY
    }

    _moto_running() {
        [ -f "$pid_file" ] && [ -f "$url_file" ] \
            && kill -0 "$(cat "$pid_file")" 2>/dev/null \
            && _moto_answers "$(cat "$url_file")"
    }

    _moto_export() {
        export PORTAL_TEST_MOTO_URL="$1"
        echo "export PORTAL_TEST_MOTO_URL=$1"
    }

    _moto_start() {
        _moto_venv || return 1
        mkdir -p "$run_dir"
        if _moto_running; then
            _moto_log "reusing moto at $(cat "$url_file") (pid $(cat "$pid_file"))"
            _moto_export "$(cat "$url_file")"
            return 0
        fi
        local port url pid
        port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')" \
            || { _moto_log "could not find a free port"; return 1; }
        url="http://127.0.0.1:$port"
        # setsid: the server outlives this shell and is not killed by its job control.
        # moto_server.py: moto with one request at a time (its transactions are
        # not isolated under its threaded server; see the script).
        setsid "$venv/bin/python" "$repo_root/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$log_file" 2>&1 </dev/null &
        pid=$!
        echo "$pid" >"$pid_file"
        echo "$url" >"$url_file"
        for _ in $(seq 1 150); do
            if _moto_answers "$url"; then
                _moto_log "moto listening at $url (pid $pid, log $log_file)"
                _moto_export "$url"
                return 0
            fi
            if ! kill -0 "$pid" 2>/dev/null; then
                break
            fi
            sleep 0.2
        done
        _moto_log "moto did not start; last lines of $log_file:"
        tail -n 20 "$log_file" >&2
        kill "$pid" 2>/dev/null
        rm -f "$pid_file" "$url_file"
        return 1
    }

    _moto_stop() {
        if [ -f "$pid_file" ]; then
            local pid
            pid="$(cat "$pid_file")"
            if kill -0 "$pid" 2>/dev/null; then
                kill "$pid" 2>/dev/null
                for _ in $(seq 1 50); do
                    kill -0 "$pid" 2>/dev/null || break
                    sleep 0.1
                done
                kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
                _moto_log "stopped moto (pid $pid)"
            fi
            rm -f "$pid_file" "$url_file"
        else
            _moto_log "moto is not running (no $pid_file)"
        fi
    }

    case "${1:-}" in
        start) _moto_start ;;
        stop) _moto_stop ;;
        venv) _moto_venv ;;
        status)
            if [ -x "$venv/bin/python" ] && _moto_running; then
                _moto_log "running at $(cat "$url_file") (pid $(cat "$pid_file"))"
                _moto_export "$(cat "$url_file")"
            else
                _moto_log "not running"
                return 1
            fi
            ;;
        *)
            echo "usage: source scripts/moto.sh start | scripts/moto.sh start|stop|status|venv" >&2
            return 2
            ;;
    esac
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    # Sourced: run in the caller's shell (for the export), leave its options alone.
    _moto_main "$@"
    _moto_rc=$?
    unset -f _moto_main _moto_log _moto_venv _moto_answers _moto_running _moto_export _moto_start _moto_stop
    # shellcheck disable=SC2317 # reached only if `return` is refused
    return "$_moto_rc" 2>/dev/null || true
else
    set -uo pipefail
    _moto_main "$@"
    exit $?
fi
