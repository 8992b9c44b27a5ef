#!/usr/bin/env bash
# The read-model benchmark (issue #16), on PostgreSQL and SQLite:
# - replay: the stats model rebuilt from position 0 over $EVENTS events (seeded customers,
#   one CustomerCreated each), timed from `projections rebuild stats` to the swap, beside the
#   machine's limit for writing the same rows bare (one INSERT … SELECT in the database);
# - lag: the create scenario (16 connections, Redis configured) while the model follows,
#   read from the service's projection_apply_delay_seconds histogram (occurredOn → commit of
#   the model's batch): the bucket holding the 99th percentile.
# Writes bench/READ-MODELS.md. Needs the machine's PostgreSQL and Redis. About 10 minutes at
# the default size; smaller: EVENTS=100000 DURATION=5.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-1000000}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-16}
PORT=${PORT:-3096}
PG=postgres://postgres@127.0.0.1:5432
REDIS_URL=redis://127.0.0.1:6379
RUN=rmbench_$(date +%s)
OUT=$(mktemp -d)

cargo build --release -p customer-service -p loadgen
BIN=${SERVICE_BIN:-${CARGO_TARGET_DIR:-target}/release/customer-service}
LOADGEN="${CARGO_TARGET_DIR:-target}/release/loadgen --base-url http://127.0.0.1:$PORT"

SERVICE=
cleanup() {
    [ -n "$SERVICE" ] && kill "$SERVICE" 2>/dev/null && wait "$SERVICE" 2>/dev/null || true
    psql "$PG/postgres" -qc "drop database if exists $RUN" >/dev/null 2>&1 || true
    redis-cli --scan --pattern "$RUN:*" | xargs -r -n 1000 redis-cli del >/dev/null 2>&1 || true
    rm -rf "$OUT"
}
trap cleanup EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
start() { # $@ = extra environment
    env DATABASE_URL="$DB" PORT="$PORT" RUST_LOG=warn DATABASE_POOL_SIZE="$CONNECTIONS" "$@" "$BIN" &
    SERVICE=$!
    until curl -sf "http://127.0.0.1:$PORT/api/v1/health" >/dev/null; do sleep 0.01; done
}
stop() { kill "$SERVICE"; wait "$SERVICE" || true; SERVICE=; }
position() { curl -sf "http://127.0.0.1:$PORT/api/v1/customers/stats" | grep -o '"position":[0-9]*' | cut -d: -f2; }
head_position() { curl -sf "http://127.0.0.1:$PORT/api/v1/events/rates?seconds=1" | grep -o '"upTo":[0-9]*' | cut -d: -f2; }
# Until the model includes every settled event (a backlog from before is not lag).
caught_up() { until [ "$(position)" = "$(head_position)" ]; do sleep 0.2; done; }

# The delay histogram's cumulative counts: "le count" lines.
buckets() {
    curl -sf "http://127.0.0.1:$PORT/metrics" |
        { grep '^projection_apply_delay_seconds_bucket{model="stats"' || true; } |
        sed -E 's/.*le="([^"]+)"} ([0-9]+)/\1 \2/'
}

replay() { # $1 = name; sets REPLAY_RATE, BUILD_RATE
    DATABASE_URL="$DB" RUST_LOG=warn "$BIN" migrate >/dev/null
    echo "== $1: seeding $EVENTS customers"
    DATABASE_URL="$DB" RUST_LOG=warn "$BIN" seed --count "$EVENTS"
    local t0; t0=$(now_ms)
    start
    # The first start builds the model while the relay settles the seeded events.
    until [ "$(position)" = "$EVENTS" ]; do sleep 0.2; done
    local built=$(( $(now_ms) - t0 ))
    BUILD_RATE=$(( EVENTS * 1000 / built ))
    echo "== $1: first build (with the relay settling) ${built} ms: $BUILD_RATE events/s"
    t0=$(now_ms)
    DATABASE_URL="$DB" RUST_LOG=warn "$BIN" projections rebuild stats --wait 3600 | tail -n 1
    local rebuilt=$(( $(now_ms) - t0 ))
    REPLAY_RATE=$(( EVENTS * 1000 / rebuilt ))
    echo "== $1: rebuild from position 0 ${rebuilt} ms: $REPLAY_RATE events/s"
    stop
}

# --- PostgreSQL ------------------------------------------------------------------------
psql "$PG/postgres" -qc "create database $RUN"
DB="$PG/$RUN"
replay PostgreSQL
PG_REPLAY=$REPLAY_RATE; PG_BUILD=$BUILD_RATE
# The machine's limit for the same rows written bare, inside the database.
LIMIT_MS=$(psql "$DB" -qAt <<'SQL' | tail -n 1
create table limit_rows (id bigint primary key, is_active bigint not null, deleted bigint not null,
    erased bigint not null, country varchar(200), created_day varchar(10) not null);
\timing on
insert into limit_rows select customer_id, 1, 0, 0, null, '2026-01-01'
from customer_events where event_type = 'CustomerCreated';
SQL
)
LIMIT_MS=$(echo "$LIMIT_MS" | grep -o '[0-9.]* ms' | cut -d' ' -f1 | cut -d. -f1)
PG_LIMIT=$(( EVENTS * 1000 / LIMIT_MS ))
echo "== PostgreSQL limit: INSERT … SELECT of $EVENTS rows in ${LIMIT_MS} ms: $PG_LIMIT rows/s"

REDIS_ENV=(REDIS_URL="$REDIS_URL" REDIS_KEY_PREFIX="$RUN" EVENT_CHANNEL="$RUN:events" EVENT_STREAM="$RUN:stream")
echo "== PostgreSQL: the create scenario without the read models (READ_MODELS_ENABLED=false)"
start "${REDIS_ENV[@]}" READ_MODELS_ENABLED=false
$LOADGEN run --scenario create --connections "$CONNECTIONS" --duration-secs "$DURATION" \
    --warmup-secs "$WARMUP" | tee "$OUT/create-off"
stop
CREATE_OFF=$(grep -o '[0-9.]* req/s' "$OUT/create-off" | head -n 1 | awk '{print $1}')

echo "== PostgreSQL: lag under the create scenario ($CONNECTIONS connections, ${DURATION}s)"
start "${REDIS_ENV[@]}"
caught_up
buckets > "$OUT/before"
$LOADGEN run --scenario create --connections "$CONNECTIONS" --duration-secs "$DURATION" \
    --warmup-secs "$WARMUP" | tee "$OUT/create"
sleep 1
buckets > "$OUT/after"
stop
CREATE_RPS=$(grep -o '[0-9.]* req/s' "$OUT/create" | head -n 1 | awk '{print $1}')
# Bucket deltas (a series absent before the run counts from 0), in the order of the bounds.
P99=$(awk 'FILENAME == ARGV[1] { before[$1] = $2; next }
           { le[++n] = $1; d[n] = $2 - before[$1] }
           END { total = d[n]; for (i = 1; i <= n; i++) if (d[i] >= 0.99 * total) { print le[i], total; exit } }' \
      "$OUT/before" "$OUT/after")
P99_LE=${P99% *}; LAG_EVENTS=${P99#* }
echo "== p99 of the apply delay: <= ${P99_LE} s over $LAG_EVENTS events"

# --- SQLite ------------------------------------------------------------------------------
DB="sqlite://$OUT/stats.db"
replay SQLite
SQ_REPLAY=$REPLAY_RATE; SQ_BUILD=$BUILD_RATE

cat > bench/READ-MODELS.md <<MD
# Read models (issue #16)

\`bash bench/read_models.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores, EVENTS=$EVENTS.

## Replay of the stats model from position 0

| | events/s | target |
|---|---|---|
| PostgreSQL, \`projections rebuild stats\` (request → swap) | $PG_REPLAY | ≥ 50,000 |
| PostgreSQL, first build while the relay settles the seeded log | $PG_BUILD | |
| PostgreSQL limit: the same rows by one bare \`INSERT … SELECT\` | $PG_LIMIT | |
| SQLite, \`projections rebuild stats\` | $SQ_REPLAY | ≥ 50,000 |
| SQLite, first build while the relay settles | $SQ_BUILD | |

## Lag under the create scenario (PostgreSQL, Redis, $CONNECTIONS connections, ${DURATION} s)

The create scenario ran at ${CREATE_RPS:-?} req/s with the model following (${CREATE_OFF:-?} req/s in the
same run with \`READ_MODELS_ENABLED=false\`). Of the $LAG_EVENTS events the stats model applied
meanwhile, 99 % were committed to it within **${P99_LE} s** of their \`occurredOn\`
(\`projection_apply_delay_seconds\`, the bucket holding the 99th percentile; target ≤ 0.1 s).
MD
cat bench/READ-MODELS.md
