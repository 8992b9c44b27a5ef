#!/usr/bin/env bash
# Instructions per request, counted rather than timed: each service binary runs under
# callgrind on its own fresh PostgreSQL database (Redis sink on, SEED customers), idles
# IDLE seconds (what it runs unprompted: the relay's poll, timers), then serves loadgen's
# SCENARIO for DURATION seconds; per request = (load − idle × DURATION / IDLE) / requests.
# Counts move by well under 1 % between runs of one binary on a busy machine, where req/s
# moves by ±20 %: this is how two builds' per-request CPU is compared (bench/NOTES.md).
#
#   bench/ipr.sh A-binary [B-binary …]                 e.g. after bench/ab.sh has built both
#   ROUNDS=2 SCENARIO=floor bench/ipr.sh target/release/customer-service
#   PROFILE=dir bench/ipr.sh …   keeps each load's callgrind profile there (callgrind_annotate)
#
# Binaries alternate round by round (A B A B). Needs valgrind, the machine's PostgreSQL and
# Redis, and a release loadgen (`cargo build --release -p loadgen`).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n 2,13p "$0"; exit 2; }
ROUNDS=${ROUNDS:-2}
SCENARIO=${SCENARIO:-get}
SEED=${SEED:-500}
CONNECTIONS=${CONNECTIONS:-4}
DURATION=${DURATION:-20}
IDLE=${IDLE:-10}
PORT=${PORT:-3098}
PG=postgres://postgres@127.0.0.1:5432
REDIS_URL=redis://127.0.0.1:6379
LOADGEN="${CARGO_TARGET_DIR:-target}/release/loadgen"
OUT=$(mktemp -d)
SERVICE=
DB=
cleanup() {
    [ -n "$SERVICE" ] && kill "$SERVICE" 2>/dev/null && wait "$SERVICE" 2>/dev/null || true
    [ -n "$DB" ] && psql "$PG/postgres" -qc "drop database if exists $DB" >/dev/null 2>&1 || true
    rm -rf "$OUT"
}
trap cleanup EXIT

# The newest dump's total instruction count.
total() { awk '/^totals:/ {print $2}' "$(ls -t "$OUT"/cg.* | head -n 1)"; }

measure() { # $1 binary; prints "instructions/request requests"
    local bin=$1
    DB=ipr_$(date +%s%N)
    psql "$PG/postgres" -qc "create database $DB"
    local env=(DATABASE_URL="$PG/$DB" PORT="$PORT" RUST_LOG=warn DATABASE_POOL_SIZE=16
        REDIS_URL="$REDIS_URL" REDIS_KEY_PREFIX="$DB" EVENT_CHANNEL="$DB:events" EVENT_STREAM="$DB:stream")
    env "${env[@]}" "$bin" migrate >/dev/null
    env "${env[@]}" "$bin" seed --count "$SEED" >/dev/null 2>&1
    rm -f "$OUT"/cg.*
    env "${env[@]}" valgrind -q --tool=callgrind --callgrind-out-file="$OUT/cg.%p" "$bin" \
        >"$OUT/service.log" 2>&1 &
    SERVICE=$!
    until curl -sf "http://127.0.0.1:$PORT/api/v1/health" >/dev/null; do sleep 0.2; done
    sleep 3
    callgrind_control -z "$SERVICE" >/dev/null 2>&1
    sleep "$IDLE"
    callgrind_control -d "$SERVICE" >/dev/null 2>&1
    local idle; idle=$(total)
    callgrind_control -z "$SERVICE" >/dev/null 2>&1
    "$LOADGEN" --base-url "http://127.0.0.1:$PORT" run --scenario "$SCENARIO" \
        --connections "$CONNECTIONS" --duration-secs "$DURATION" --warmup-secs 0 >"$OUT/load"
    callgrind_control -d "$SERVICE" >/dev/null 2>&1
    local load; load=$(total)
    [ -n "${PROFILE:-}" ] && mkdir -p "$PROFILE" &&
        cp "$(ls -t "$OUT"/cg.* | head -n 1)" "$PROFILE/$(basename "$bin").$(date +%s)"
    kill "$SERVICE"; wait "$SERVICE" 2>/dev/null || true; SERVICE=
    psql "$PG/postgres" -qc "drop database if exists $DB"; DB=
    redis-cli --scan --pattern "ipr_*" | xargs -r -n 1000 redis-cli del >/dev/null
    local requests
    requests=$(grep -o 'statuses \[[^]]*\]' "$OUT/load" | grep -o '=[0-9]*' | tr -d = | paste -sd+ | bc)
    echo "$(( (load - idle * DURATION / IDLE) / requests )) $requests"
}

echo "| round | $(for b in "$@"; do printf '%s | ' "$b"; done)"
for round in $(seq 1 "$ROUNDS"); do
    line="| $round |"
    for bin in "$@"; do
        read -r ipr n < <(measure "$bin")
        line="$line $ipr ($n requests) |"
    done
    echo "$line"
done
