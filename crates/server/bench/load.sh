#!/usr/bin/env bash
# Load test of `tessera serve`: GET /healthz, GET /v1/session and GET /v1/auth (valid cookie)
# on the same server in the same run, for `memory:` and SQLite.
#
#   bash crates/server/bench/load.sh            # from the workspace root
#   DURATION=5 ROUNDS=3 CONNECTIONS=16 bash crates/server/bench/load.sh
#
# The server is pinned to CPU 0 and wrk to CPU 1 (taskset), so they do not fight for a core.
# Each (store, endpoint) pair runs ROUNDS times for DURATION seconds, interleaved, and the
# median requests/s and median p99 are reported. Bounded: at most
# 2 stores x 3 endpoints x ROUNDS x DURATION seconds of load, plus start-up.
#
# Needs wrk (Debian package `wrk`; installed with apt-get when missing and running as root).
set -euo pipefail

DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-16}"
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
BIN="$ROOT/target/release/tessera"
WORK="$(mktemp -d)"
SERVER_PID=""

cleanup() {
    if [[ -n "$SERVER_PID" ]]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v wrk >/dev/null; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    else
        echo "wrk is missing: apt-get install wrk" >&2
        exit 1
    fi
fi
for tool in taskset curl; do
    command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done

(cd "$ROOT" && cargo build --release -p tessera-server --quiet)

API_KEY="$("$BIN" keys generate)"

start_server() {
    local store="$1"
    RUST_LOG=warn taskset -c 0 "$BIN" serve --listen 127.0.0.1:0 --store "$store" \
        --api-key "$API_KEY" >"$WORK/out.txt" 2>"$WORK/err.txt" &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        if grep -q '^demo: ' "$WORK/out.txt" 2>/dev/null; then break; fi
        sleep 0.1
    done
    BASE="$(grep -o 'http://[0-9.:]*' "$WORK/out.txt" | head -1)"
    [[ -n "$BASE" ]] || { echo "the server did not start:" >&2; cat "$WORK/err.txt" >&2; exit 1; }
}

stop_server() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
}

# One wrk run; prints "<requests/s> <p99 in ms>".
measure() {
    local path="$1"; shift
    local out
    out="$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$BASE$path")"
    local rps p99
    rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/, "", v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v=v*1000}; print v}' <<<"$out")"
    local errors
    errors="$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")"
    if [[ -n "$errors" ]]; then echo "non-2xx responses on $path: $errors" >&2; exit 1; fi
    echo "$rps $p99"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '| store | endpoint | req/s (median of %s x %ss) | p99 ms (median) | vs /healthz |\n' "$ROUNDS" "$DURATION"
printf '|---|---|---|---|---|\n'
for store in memory: "sqlite:$WORK/bench.db"; do
    start_server "$store"
    TOKEN="$(curl -sf -X POST -H "Authorization: Bearer $API_KEY" -H 'content-type: application/json' \
        -d '{"subject":"bench","data":{"cart":["tea","jam"]}}' "$BASE/v1/sessions" \
        | sed -E 's/.*"token":"([^"]+)".*/\1/')"
    [[ ${#TOKEN} == 43 ]] || { echo "could not create a session" >&2; exit 1; }
    declare -A RPS=() P99=()
    for round in $(seq 1 "$ROUNDS"); do
        read -r r p < <(measure /healthz)
        RPS[healthz]+="$r "; P99[healthz]+="$p "
        read -r r p < <(measure /v1/auth -H "Cookie: __Host-session=$TOKEN")
        RPS[auth]+="$r "; P99[auth]+="$p "
        read -r r p < <(measure /v1/session -H "Authorization: Bearer $API_KEY" -H "Session-Token: $TOKEN")
        RPS[session]+="$r "; P99[session]+="$p "
    done
    base_rps="$(tr ' ' '\n' <<<"${RPS[healthz]}" | grep . | median)"
    name="${store%%:*}"
    for endpoint in healthz auth session; do
        rps="$(tr ' ' '\n' <<<"${RPS[$endpoint]}" | grep . | median)"
        p99="$(tr ' ' '\n' <<<"${P99[$endpoint]}" | grep . | median)"
        ratio="$(awk -v a="$rps" -v b="$base_rps" 'BEGIN {printf "%.0f%%", 100*a/b}')"
        case "$endpoint" in
            healthz) path="GET /healthz" ;;
            auth) path="GET /v1/auth (cookie)" ;;
            session) path="GET /v1/session" ;;
        esac
        printf '| %s | %s | %.0f | %s | %s |\n' "$name" "$path" "$rps" "$p99" "$ratio"
    done
    unset RPS P99
    stop_server
done
