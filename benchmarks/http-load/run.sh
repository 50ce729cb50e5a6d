#!/usr/bin/env bash
# HTTP load benchmark: Tessera's session layer against tower-sessions, over real sockets.
#
#   benchmarks/http-load/run.sh            # every cell, 5 s each (about 4 minutes in all)
#   REPEAT=3 DURATION=4 benchmarks/http-load/run.sh   # medians of 3 interleaved rounds
#
# Needs `wrk` (apt-get install -y wrk) and `taskset` (util-linux). The server is pinned to
# core 0 with one tokio worker, wrk (one thread) to core 1. Each library/store pair gets a
# fresh server and a fresh database in a temporary directory; 1000 sessions are seeded first,
# and /read and /write present them round robin (cookies.lua). /new sends no cookie, so every
# request creates a session. Results go to stdout and to results.txt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
DURATION="${DURATION:-5}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${PORT:-38080}"
SEEDED="${SEEDED:-1000}"
REPEAT="${REPEAT:-1}"
export CARGO_TARGET_DIR="$here/target"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
cargo build --release --quiet --manifest-path tessera/Cargo.toml
cargo build --release --quiet --manifest-path tower/Cargo.toml

results="$here/results.txt"
: >"$results"
server_pid=""
cleanup() { if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

run_library() { # binary library store cookie_name
  local bin="$1" library="$2" store="$3" cookie_name="$4"
  local dir; dir="$(mktemp -d)"
  taskset -c 0 "$CARGO_TARGET_DIR/release/$bin" "$library" "$store" "$PORT" "$dir" &
  server_pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/plain" >/dev/null && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$PORT/seed?n=$SEEDED" >"$dir/tokens"
  for route in plain new read write; do
    local script=()
    if [ "$route" = read ] || [ "$route" = write ]; then script=(-s "$here/cookies.lua"); fi
    local rps
    rps="$(TOKENS="$dir/tokens" COOKIE_NAME="$cookie_name" timeout $((DURATION + 20)) \
      taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "${script[@]}" \
      "http://127.0.0.1:$PORT/$route" | awk '/Requests\/sec/ {print $2}')"
    local errors
    errors="$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie_name=$(head -1 "$dir/tokens")" "http://127.0.0.1:$PORT/$route")"
    printf '%s %s %s %s %s\n' "$store" "$library" "$route" "$rps" "$errors" | tee -a "$results"
  done
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  rm -rf "$dir"
}

for _round in $(seq 1 "$REPEAT"); do
  for store in memory sqlite; do
    run_library http-load-tessera tessera "$store" session
    run_library http-load-tessera tessera-touch-every-request "$store" session
    run_library http-load-tower tower-sessions "$store" id
    run_library http-load-tower tower-sessions-always-save "$store" id
  done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
runs = {}
for s, lib, r, v, _ in rows:
    runs.setdefault((s, lib, r), []).append(float(v))
rps = {k: statistics.median(v) for k, v in runs.items()}
print(f"medians of {max(len(v) for v in runs.values())} round(s)")
print("\n| store | route | tessera | tessera (touch every request) | tower-sessions | tower-sessions always_save | tessera / tower-sessions | tessera / always_save |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for store in ("memory", "sqlite"):
    for route in ("plain", "new", "read", "write"):
        t = rps[(store, "tessera", route)]
        t0 = rps[(store, "tessera-touch-every-request", route)]
        ts = rps[(store, "tower-sessions", route)]
        ta = rps[(store, "tower-sessions-always-save", route)]
        print(f"| {store} | /{route} | {t:,.0f} | {t0:,.0f} | {ts:,.0f} | {ta:,.0f} | {t/ts:.2f}x | {t/ta:.2f}x |")
for store in ("memory", "sqlite"):
    plain = rps[(store, "tessera", "plain")]
    print(f"{store}: tessera /read = {rps[(store, 'tessera', 'read')] / plain:.0%} of its /plain; "
          f"tower-sessions always_save /read = {rps[(store, 'tower-sessions-always-save', 'read')] / rps[(store, 'tower-sessions-always-save', 'plain')]:.0%} of its /plain")
PY
