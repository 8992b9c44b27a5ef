#!/usr/bin/env bash
# Event-delivery figures of issue `events-published`, on this machine, in one run:
#   1. drain rate of a 100,000-event backlog (written with the relay off, as during an outage)
#   2. latency from HTTP 201 to arrival on the Redis channel at ~1,000 writes/s
# Uses the machine's PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379),
# with a throwaway database and unique Redis names. Prints the figures; bench/RESULTS.md
# records them by hand with the machine and commit.
set -euo pipefail
cd "$(dirname "$0")/.."

BACKLOG=${BACKLOG:-100000}
RATE=${RATE:-1000}
PORT=${PORT:-3099}
PG=postgres://postgres@127.0.0.1:5432
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
RUN=bench_$(date +%s)

cargo build --release -p customer-service -p loadgen
BIN=target/release/customer-service
LOADGEN=target/release/loadgen

psql "$PG/postgres" -qc "create database $RUN"
cleanup() {
    [ -n "${SERVICE:-}" ] && kill "$SERVICE" 2>/dev/null && wait "$SERVICE" 2>/dev/null || true
    psql "$PG/postgres" -qc "drop database if exists $RUN" || true
    redis-cli -u "$REDIS_URL" del "$RUN:stream" >/dev/null || true
    redis-cli -u "$REDIS_URL" --scan --pattern "$RUN:events:*" | xargs -r -n 1000 redis-cli -u "$REDIS_URL" del >/dev/null || true
}
trap cleanup EXIT

start() { # $1 = RELAY_ENABLED
    DATABASE_URL="$PG/$RUN" PORT=$PORT RUST_LOG=warn RELAY_ENABLED=$1 DATABASE_POOL_SIZE=16 \
        REDIS_URL="$REDIS_URL" REDIS_KEY_PREFIX=$RUN EVENT_CHANNEL=$RUN:events EVENT_STREAM=$RUN:stream \
        "$BIN" & SERVICE=$!
    until curl -sf "http://127.0.0.1:$PORT/api/v1/customers/health" >/dev/null; do sleep 0.05; done
}

echo "== backlog of $BACKLOG events (relay off)"
start false
"$LOADGEN" --base-url "http://127.0.0.1:$PORT" create --count "$BACKLOG" --connections 16
kill "$SERVICE"; wait "$SERVICE" || true

echo "== drain (relay on)"
start true
"$LOADGEN" --base-url "http://127.0.0.1:$PORT" drain

echo "== 201 -> Redis channel latency at $RATE writes/s"
"$LOADGEN" --base-url "http://127.0.0.1:$PORT" event-latency --redis-url "$REDIS_URL" \
    --channel "$RUN:events" --rate "$RATE" --duration-secs 10
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD)"
