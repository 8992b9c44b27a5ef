#!/usr/bin/env bash
# Writes crates/customer-service/link-order.txt: the functions the service runs when it starts
# and serves, hottest first, for the release link (`crates/customer-service/build.rs` hands it
# to lld as `--symbol-ordering-file`). Packed together, that code is a few MB of the binary's
# text instead of being spread over all of it, and the kernel maps code in 64 KB windows
# around each page run: peak RSS under the benchmark fell from ~21 MB to ~13 MB
# (bench/NOTES.md, issue #27).
#
#   bench/link-order.sh           profile a release build under callgrind and rewrite the file
#   bench/link-order.sh --check   how many of the file's functions the current release build has
#
# Symbol names carry hashes that change with the toolchain, the dependencies' versions and
# their features (turning on one feature of uuid renamed half the functions of the crates above
# it, and peak RSS went from 14 to 19 MB); a name the build no longer has is skipped by the
# linker, so a stale file costs memory, never correctness. Run it again after any such change:
# --check tells, and fails below 90 % (bench/ab.sh warns then).
# Needs valgrind and what bench/run.sh needs (the machine's PostgreSQL and Redis). ~5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
FILE=crates/customer-service/link-order.txt
BIN=${CARGO_TARGET_DIR:-target}/release/customer-service

defined() { nm --defined-only "$BIN" | awk '$2 ~ /^[tTwW]$/ {print $3}' | sort -u; }

if [ "${1:-}" = --check ]; then
    cargo build --release -p customer-service
    total=$(wc -l < "$FILE")
    found=$(sort -u "$FILE" | comm -12 - <(defined) | wc -l)
    echo "$found of $total functions of $FILE are in $BIN"
    [ $((found * 10)) -ge $((total * 9)) ] || {
        echo "$FILE is stale: run bench/link-order.sh to write it again" >&2
        exit 1
    }
    exit 0
fi

PORT=${PORT:-3096}
PG=postgres://postgres@127.0.0.1:5432
RUN=order_$(date +%s)
OUT=$(mktemp -d)
cargo build --release -p customer-service -p loadgen
LOADGEN="${CARGO_TARGET_DIR:-target}/release/loadgen --base-url http://127.0.0.1:$PORT"
SERVICE=
cleanup() {
    [ -n "$SERVICE" ] && kill "$SERVICE" 2>/dev/null && wait "$SERVICE" 2>/dev/null || true
    psql "$PG/postgres" -qc "drop database if exists $RUN with (force)" >/dev/null 2>&1 || true
    redis-cli --scan --pattern "$RUN*" | xargs -r -n 1000 redis-cli del >/dev/null 2>&1 || true
    rm -rf "$OUT"
}
trap cleanup EXIT
psql "$PG/postgres" -qc "create database $RUN"

# The service as the benchmark runs it (PostgreSQL, the Redis sink, the relay and the read
# model on), under callgrind, which records every function that runs, in every thread.
env DATABASE_URL="$PG/$RUN" PORT="$PORT" RUST_LOG=warn DATABASE_POOL_SIZE=4 \
    REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX="$RUN" EVENT_CHANNEL="$RUN:events" \
    EVENT_STREAM="$RUN:stream" \
    valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file="$OUT/profile" \
    "$BIN" 2> "$OUT/valgrind.log" &
SERVICE=$!
for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$PORT/api/v1/health" >/dev/null && break
    sleep 0.2
done
for scenario in create get list search update mixed floor; do
    $LOADGEN run --scenario "$scenario" --connections 4 --duration-secs 10 --warmup-secs 0 | grep '^run'
done
base=http://127.0.0.1:$PORT
for path in /api/v1/health /api/v1/health/ready /metrics /api/v1/customers/stats \
    "/api/v1/events?limit=20" /api/v1/customers/1/history "/api/v1/customers?page=2&limit=20"; do
    curl -s -o /dev/null "$base$path"
done
curl -s -o /dev/null -X DELETE "$base/api/v1/customers/2"
kill -INT "$SERVICE"
wait "$SERVICE" || true
SERVICE=

# Every function of the binary that ran, by its own cost (instructions), most first. The
# profile names a function once as `fn=(id) name` (or `cfn=`, `cob=`…) and by `(id)` after.
awk '
    /^fn=\(/ { id = $1; sub(/^fn=/, "", id); if (NF > 1) { name[id] = $2 } cur = id; call = 0; next }
    /^cfn=\(/ { id = $1; sub(/^cfn=/, "", id); if (NF > 1) { name[id] = $2 } next }
    /^calls=/ { call = 1; next }
    /^[0-9+*-]/ { if (call) { call = 0; next } if (cur != "") cost[cur] += $2 }
    END { for (id in name) print (cost[id] + 0), name[id] }
' "$OUT/profile" | sort -k1,1nr -k2 > "$OUT/ran"
defined > "$OUT/defined"
awk 'NR == FNR { keep[$1] = 1; next } ($2 in keep) { print $2 }' "$OUT/defined" "$OUT/ran" > "$FILE"
echo "wrote $FILE: $(wc -l < "$FILE") functions, $(nm -S -t d --defined-only "$BIN" |
    awk 'NR == FNR { keep[$1] = 1; next } ($4 in keep) { s += $2 } END { printf "%.1f MB", s / 1e6 }' "$FILE" -) of code"
