#!/usr/bin/env bash
# HTTP load benchmark: Tessera's session layer against tower-sessions, over real sockets, on a
# memory store, SQLite, Redis and PostgreSQL (each library with its own store for that backend:
# tower-sessions-memory-store, tower-sessions-sqlx-store for SQLite and PostgreSQL,
# tower-sessions-redis-store (fred) for Redis).
#
#   benchmarks/http-load/run.sh            # every cell, 5 s each (about 7 minutes in all)
#   REPEAT=3 DURATION=4 benchmarks/http-load/run.sh   # medians of 3 interleaved rounds
#   STORES="redis postgres" benchmarks/http-load/run.sh   # only some stores
#
# Needs `wrk` (apt-get install -y wrk) and `taskset` (util-linux), and for the shared stores
# Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (database `test`, user `postgres`,
# trust auth). The server is pinned to core 0 with one tokio worker, wrk (one thread) to
# core 1; Redis and PostgreSQL are not pinned (they float over both cores, as a database on the
# same machine would). Pools, the same size for both libraries: REDIS_CONNECTIONS multiplexed
# Redis connections (default 4), POSTGRES_POOL PostgreSQL connections (default 16); both apps
# read these two variables.
#
# Every cell (library, store, route) gets a fresh server and an empty store: memory and SQLite
# in a fresh temporary directory; Redis in logical database 15, which the apps empty with
# FLUSHDB (never FLUSHALL) at start and when stopped; PostgreSQL in a table of each library's
# own (Tessera `http_load_tessera`, tower-sessions `http_load_tower.session`), truncated at
# start and when stopped. 1000 sessions are seeded first, and /read and /write present them
# round robin (cookies.lua). /new sends no cookie, so every request creates a session.
#
# Results go to stdout and to results.txt, one line per cell: store, library, route, requests
# per second, the HTTP status of one probe request after the run, and how many requests failed
# during the run (non-2xx/3xx answers plus wrk's socket errors). The summary gives each cell's
# median over the rounds, each ratio of medians, and the median and range of the per-round
# ratios (the four libraries run one route back to back, so a round's cells are seconds apart);
# it names every cell whose probe was not 200 or that had failures.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
DURATION="${DURATION:-5}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${PORT:-38080}"
SEEDED="${SEEDED:-1000}"
REPEAT="${REPEAT:-1}"
STORES="${STORES:-memory sqlite redis postgres}"
export REDIS_CONNECTIONS="${REDIS_CONNECTIONS:-4}" POSTGRES_POOL="${POSTGRES_POOL:-16}"
export CARGO_TARGET_DIR="$here/target"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
cargo build --release --quiet --manifest-path tessera/Cargo.toml
cargo build --release --quiet --manifest-path tower/Cargo.toml

results="$here/results.txt"
: >"$results"
server_pid=""
# The apps empty their Redis database or PostgreSQL table when stopped: wait for that.
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

start_server() { # binary library store dir
  local bin="$1" library="$2" store="$3" dir="$4"
  taskset -c 0 "$CARGO_TARGET_DIR/release/$bin" "$library" "$store" "$PORT" "$dir" &
  server_pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/plain" >/dev/null && return
    kill -0 "$server_pid" 2>/dev/null || { echo "$bin $library $store did not start" >&2; exit 1; }
    sleep 0.1
  done
  echo "$bin $library $store did not answer within 10 s" >&2
  exit 1
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true # it may have died: the probe status says so
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

run_cell() { # binary library store cookie_name route
  local bin="$1" library="$2" store="$3" cookie_name="$4" route="$5"
  # A fresh server and an empty store for every cell, so that no route sees what the one
  # before left behind (sessions it created, pooled connections wrk cut off mid-request).
  local dir; dir="$(mktemp -d)"
  start_server "$bin" "$library" "$store" "$dir"
  curl -sf "http://127.0.0.1:$PORT/seed?n=$SEEDED" >"$dir/tokens"
  local script=()
  if [ "$route" = read ] || [ "$route" = write ]; then script=(-s "$here/cookies.lua"); fi
  local out rps failed status
  out="$(TOKENS="$dir/tokens" COOKIE_NAME="$cookie_name" timeout $((DURATION + 20)) \
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "${script[@]}" \
    "http://127.0.0.1:$PORT/$route" || true)"
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  rps="${rps:-0}" # wrk failed or was stopped by the timeout: the cell shows 0
  # wrk prints these two lines only when there was something to count.
  failed="$(awk '/Non-2xx or 3xx responses/ {n += $NF}
    /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")"
  # 000 when the server gave no answer within 10 s.
  status="$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' \
    -H "Cookie: $cookie_name=$(head -1 "$dir/tokens")" "http://127.0.0.1:$PORT/$route" || true)"
  printf '%s %s %s %s %s %s\n' "$store" "$library" "$route" "$rps" "$status" "$failed" | tee -a "$results"
  stop_server
  rm -rf "$dir"
}

# The four libraries run one route back to back, so that the cells a ratio compares are
# measured within seconds of each other (this machine's speed drifts over minutes).
for _round in $(seq 1 "$REPEAT"); do
  for store in $STORES; do
    for route in plain read new write; do
      run_cell http-load-tessera tessera "$store" session "$route"
      run_cell http-load-tessera tessera-touch-every-request "$store" session "$route"
      run_cell http-load-tower tower-sessions "$store" id "$route"
      run_cell http-load-tower tower-sessions-always-save "$store" id "$route"
    done
  done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
runs, bad, stores = {}, [], []
for s, lib, r, v, status, failed in rows:
    runs.setdefault((s, lib, r), []).append(float(v))
    if s not in stores:
        stores.append(s)
    if status != "200" or failed != "0":
        bad.append(f"{s} {lib} /{r}: probe {status}, {failed} failed during the run")
rps = {k: statistics.median(v) for k, v in runs.items()}
def per_round(a, b):
    """Per-round ratios a/b (cells of one round were measured back to back)."""
    return [x / y for x, y in zip(runs[a], runs[b]) if y]
def spread(ratios, form=".2f", unit="x"):
    """Median (with `unit`) and range of per-round ratios, each number in format `form`."""
    if not ratios:
        return "n/a"
    return f"{statistics.median(ratios):{form}}{unit} ({min(ratios):{form}}-{max(ratios):{form}})"
print(f"medians of {max(len(v) for v in runs.values())} round(s)")
print("\n| store | route | tessera | tessera (touch every request) | tower-sessions | tower-sessions always_save "
      "| tessera / tower-sessions | tessera / always_save | per round: tessera / always_save, median (range) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for store in stores:
    for route in ("plain", "read", "new", "write"):
        key = lambda lib: (store, lib, route)
        t, t0, ts, ta = (rps[key(lib)] for lib in (
            "tessera", "tessera-touch-every-request", "tower-sessions", "tower-sessions-always-save"))
        ratio = lambda a, b: f"{a / b:.2f}x" if b else "n/a"
        rounds = spread(per_round(key("tessera"), key("tower-sessions-always-save")))
        print(f"| {store} | /{route} | {t:,.0f} | {t0:,.0f} | {ts:,.0f} | {ta:,.0f} | {ratio(t, ts)} "
              f"| {ratio(t, ta)} | {rounds} |")
for store in stores:
    share = lambda lib: (f"{rps[(store, lib, 'read')] / rps[(store, lib, 'plain')]:.0%}"
                         if rps[(store, lib, "plain")] else "n/a")
    rounds = per_round((store, "tessera", "read"), (store, "tessera", "plain"))
    per = spread(rounds, ".0%", "")
    print(f"{store}: tessera /read = {share('tessera')} of its /plain (per round, median (range): {per}); "
          f"tower-sessions always_save /read = {share('tower-sessions-always-save')} of its /plain")
for line in bad:
    print("FAILED:", line)
PY
