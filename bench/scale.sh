#!/usr/bin/env bash
# The scale benchmark (issue #13): the service at 10,000 and at 1,000,000 customers (ten events
# each, so 10M events) on PostgreSQL, and at 1,000,000 on SQLite. Writes bench/SCALE.md:
# seed time, p50/p99 of get, list page 1, deep offset pages, cursor pages, search (the 20
# terms of bench/search-terms.txt; the 1–2-character ones of search-terms-short.txt apart),
# create and update; SSE delivery and database transactions/s at 0, 200 and 2,000 clients;
# the drain of a 1M-event backlog; bytes per customer and per event on disk; and the minimal
# pgbench limit of a create measured in the same run.
#
# Needs the machine's PostgreSQL (127.0.0.1:5432, user postgres, pgbench), redis-server,
# python3 (URL-encoding, JSON) and sqlite3 (SQLite sizes). Takes about 30 minutes and ~20 GB of disk (10M events at ~1.5 kB).
# Smaller runs for a quick look: BIG=100000 SQLITE_BIG=100000 DURATION=3.
set -euo pipefail
cd "$(dirname "$0")/.."

BIG=${BIG:-1000000}
SMALL=${SMALL:-10000}
SQLITE_BIG=${SQLITE_BIG:-$BIG}   # (the drain's database is also $BIG customers, one event each)
UPDATES=${UPDATES:-9}           # CustomerUpdated events per customer (1 + UPDATES events each)
SQLITE_UPDATES=${SQLITE_UPDATES:-0}  # SQLite's file: customers with their CustomerCreated only
DURATION=${DURATION:-10}        # seconds measured per figure
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-16}
SSE_CLIENTS=${SSE_CLIENTS:-0 200 2000}
SSE_RATE=${SSE_RATE:-20}        # creates per second while the SSE clients listen
PORT=${PORT:-3098}
REDIS_PORT=${REDIS_PORT:-6391}  # a redis-server of its own: the drain fills it with 1M keys
PG=postgres://postgres@127.0.0.1:5432
RUN=scale_$(date +%s)
OUT=$(mktemp -d)
ulimit -n "$(ulimit -Hn)"

cargo build --release -p customer-service -p loadgen
BIN=${SERVICE_BIN:-${CARGO_TARGET_DIR:-target}/release/customer-service}
LOADGEN="${CARGO_TARGET_DIR:-target}/release/loadgen --base-url http://127.0.0.1:$PORT"
REDIS_URL=redis://127.0.0.1:$REDIS_PORT

SERVICE=
REDIS_PID=
cleanup() {
    [ -n "$SERVICE" ] && kill "$SERVICE" 2>/dev/null && wait "$SERVICE" 2>/dev/null || true
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
    for db in small big limit own drain; do
        psql "$PG/postgres" -qc "drop database if exists ${RUN}_$db" >/dev/null 2>&1 || true
    done
    rm -rf "$OUT"
}
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --save '' --appendonly no --logfile "$OUT/redis.log" &
REDIS_PID=$!
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.05; done

declare -A R   # figure name → value, for the report
. bench/lib.sh

start() { # $1 = DATABASE_URL; sets SERVICE
    env DATABASE_URL="$1" PORT="$PORT" RUST_LOG=warn DATABASE_POOL_SIZE="$CONNECTIONS" \
        REDIS_URL="$REDIS_URL" REDIS_KEY_PREFIX="$RUN" EVENT_CHANNEL="$RUN:events" \
        EVENT_STREAM="$RUN:stream" EVENT_STREAM_MAXLEN=100000 EVENT_TTL_SECONDS=600 \
        "$BIN" & SERVICE=$!
    until curl -sf "http://127.0.0.1:$PORT/api/v1/health" >/dev/null; do sleep 0.01; done
}
stop() { kill "$SERVICE"; wait "$SERVICE" || true; SERVICE=; }

# measure KEY CONNECTIONS SECONDS PATH... : GETs the paths (a random one per request); stores
# KEY.rps, KEY.p50, KEY.p99.
measure() {
    local key=$1 connections=$2 seconds=$3
    shift 3
    printf '%s\n' "$@" > "$OUT/paths"
    $LOADGEN run --scenario paths --paths-file "$OUT/paths" --connections "$connections" \
        --duration-secs "$seconds" --warmup-secs "$WARMUP" > "$OUT/$key.out"
    record "$key"
}
# scenario KEY SCENARIO CONNECTIONS: a loadgen scenario (get, create, update).
scenario() {
    $LOADGEN run --scenario "$2" --connections "$3" --duration-secs "$DURATION" \
        --warmup-secs "$WARMUP" > "$OUT/$1.out"
    record "$1"
}
# seed KEY DATABASE_URL COUNT UPDATES: stores KEY.seed_s.
seed() {
    local line
    line=$(env DATABASE_URL="$2" RUST_LOG=warn "$BIN" seed --count "$3" --updates-per-customer "$4" | tail -n 1)
    echo "  $line"
    R[$1.seed_s]=$(echo "$line" | grep -o 'in [0-9.]*' | awk '{print $2}')
}
# The events seeded are the history, not a backlog: mark them published (the drain is
# measured on its own database).
settle_pg() {
    psql "$1" -qc "delete from customer_events_pending" \
        -c "update relay_watermark set position = (select coalesce(max(position), 0) from customer_events)" \
        -c "vacuum analyze"
}
settle_sqlite() {
    sqlite3 "$1" "delete from customer_events_pending;
        update relay_watermark set position = (select coalesce(max(position), 0) from customer_events);
        analyze;"
}

# read_figures KEY: the read figures of the running service.
read_figures() {
    local key=$1 total=$2 pages=() cursors=() terms=() short=()
    scenario "$key.get1" get 1
    scenario "$key.get" get "$CONNECTIONS"
    measure "$key.page1" 1 "$DURATION" "/api/v1/customers?limit=10"
    local depth
    # Page numbers at limit 10: near the front, the middle and the very end.
    for depth in 10 1000 10000 $((total / 20)) $((total / 10 - 1)); do
        [ "$depth" -ge $((total / 10)) ] && continue
        [[ " ${pages[*]} " == *" $depth "* ]] && continue
        measure "$key.offset.$depth" 1 3 "/api/v1/customers?page=$depth&limit=10"
        measure "$key.cursor.$depth" 1 3 "/api/v1/customers?after=$(cursor_at "$depth")&limit=10"
        pages+=("$depth")
    done
    R[$key.depths]="${pages[*]}"
    while read -r term; do terms+=("/api/v1/customers?search=$(urlencode "$term")&limit=10"); done < bench/search-terms.txt
    while read -r term; do short+=("/api/v1/customers?search=$(urlencode "$term")&limit=10"); done < bench/search-terms-short.txt
    measure "$key.search1" 1 "$DURATION" "${terms[@]}"
    measure "$key.search" "$CONNECTIONS" "$DURATION" "${terms[@]}"
    measure "$key.short1" 1 "$DURATION" "${short[@]}"
}

echo "== PostgreSQL"
for size in small big; do
    count=$SMALL; [ "$size" = big ] && count=$BIG
    url="$PG/${RUN}_$size"
    psql "$PG/postgres" -qc "create database ${RUN}_$size"
    echo "-- $count customers, $((count * (1 + UPDATES))) events"
    seed "pg.$size" "$url" "$count" "$UPDATES"
    settle_pg "$url"
    start "$url"
    read_figures "pg.$size" "$count"
    scenario "pg.$size.create" create "$CONNECTIONS"
    scenario "pg.$size.update" update "$CONNECTIONS"
    stop
done

echo "-- bytes on disk (tables with their indexes)"
big="$PG/${RUN}_big"
R[pg.customer_bytes]=$(psql "$big" -Atc "select pg_total_relation_size('customers') / greatest(count(*), 1) from customers")
R[pg.event_bytes]=$(psql "$big" -Atc "select (pg_total_relation_size('customer_events')) / greatest(count(*), 1) from customer_events")

echo "-- the minimal create limit (bench/pgbench-insert.sql into bench/minimal-schema.sql)"
psql "$PG/postgres" -qc "create database ${RUN}_limit"
psql -q "$PG/${RUN}_limit" -f bench/minimal-schema.sql
pgbench -n -c "$CONNECTIONS" -j 2 -T "$DURATION" -M prepared -f bench/pgbench-insert.sql "$PG/${RUN}_limit" > "$OUT/limit.out" 2>&1
R[pg.limit]=$(grep -o 'tps = [0-9.]*' "$OUT/limit.out" | awk '{print $3}' | cut -d. -f1)
echo "  minimal limit ${R[pg.limit]} tps"
# Our own create transaction (pending row by the trigger, every index of the log), for the
# breakdown of the difference; into a copy of our schema, so the service never sees its rows.
psql "$PG/postgres" -qc "create database ${RUN}_own"
DATABASE_URL="$PG/${RUN}_own" RUST_LOG=warn "$BIN" migrate
pgbench -n -c "$CONNECTIONS" -j 2 -T "$DURATION" -M prepared -f bench/pgbench-insert.sql "$PG/${RUN}_own" > "$OUT/own.out" 2>&1
R[pg.own]=$(grep -o 'tps = [0-9.]*' "$OUT/own.out" | awk '{print $3}' | cut -d. -f1)
echo "  our create transaction ${R[pg.own]} tps"
# The service's create, right after it, in the same minute.
start "$big"
scenario "pg.big.create2" create "$CONNECTIONS"

# The creates above left a backlog: let the relay publish it first, so the windows below
# count only what the SSE clients and their events cost.
until [ "$(curl -sf "http://127.0.0.1:$PORT/api/v1/health" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["checks"]["outbox"]["pending"])')" = 0 ]; do sleep 0.5; done
sleep 2
echo "-- SSE clients (creates at $SSE_RATE/s)"
commits() { psql "$big" -Atc "select xact_commit + xact_rollback from pg_stat_database where datname = '${RUN}_big'"; }
for clients in $SSE_CLIENTS; do
    $LOADGEN sse --clients "$clients" --rate "$SSE_RATE" --duration-secs "$DURATION" > "$OUT/sse.$clients.out" &
    sse=$!
    # The clients connect and catch up during loadgen's first 5 s; count the posting window.
    sleep 6
    before=$(commits); t0=$(date +%s%N)
    sleep $((DURATION - 2))
    after=$(commits); t1=$(date +%s%N)
    wait "$sse"
    R[sse.$clients.tps]=$(( (after - before) * 1000000000 / (t1 - t0) ))
    R[sse.$clients.p50]=$(field p50 < "$OUT/sse.$clients.out")
    R[sse.$clients.p99]=$(field p99 < "$OUT/sse.$clients.out")
    echo "  $clients clients: ${R[sse.$clients.tps]} transactions/s; $(cat "$OUT/sse.$clients.out")"
done
stop

echo "-- drain of a $BIG-event backlog"
drain="$PG/${RUN}_drain"
psql "$PG/postgres" -qc "create database ${RUN}_drain"
seed drain "$drain" "$BIG" 0
start "$drain"
$LOADGEN drain --timeout-secs 900 > "$OUT/drain.out"
R[drain]=$(grep -o '[0-9.]* events/s' "$OUT/drain.out" | awk '{print $1}')
echo "  $(cat "$OUT/drain.out")"
stop

echo "== SQLite ($SQLITE_BIG customers)"
file="$OUT/scale.db"
seed "sqlite" "sqlite://$file" "$SQLITE_BIG" "$SQLITE_UPDATES"
settle_sqlite "$file"
R[sqlite.customer_bytes]=$(sqlite3 "$file" "select (select sum(pgsize) from dbstat where name in ('customers', 'customers_email_key', 'customers_created_order') or name like 'customers_search%') / (select count(*) from customers)")
R[sqlite.event_bytes]=$(sqlite3 "$file" "select (select sum(pgsize) from dbstat where name like 'customer_events%' or name like 'sqlite_autoindex_customer_events%') / (select count(*) from customer_events)")
start "sqlite://$file"
read_figures sqlite "$SQLITE_BIG"
stop

# ---- the report
v() { echo "${R[$1]:-–}"; }
ratio() { python3 -c "import sys; a, b = sys.argv[1:]; print(f'{float(a) / float(b):.2f}' if a and b and float(b) else '–')" "$1" "$2"; }
{
    echo "# Scale benchmark: results"
    echo
    echo "Written by \`bench/scale.sh\` on $(date -u +%Y-%m-%d) at commit \`$(git rev-parse --short HEAD)\`,"
    echo "$(nproc) cores. PostgreSQL: $SMALL vs $BIG customers with $((1 + UPDATES)) events each;"
    echo "SQLite: $SQLITE_BIG customers with $((1 + SQLITE_UPDATES)) event(s) each. p50/p99 in ms from one client;"
    echo "req/s at $CONNECTIONS connections. Search: the 20 terms of bench/search-terms.txt, a random one"
    echo "per request; 1–2 characters: bench/search-terms-short.txt. MariaDB, and all three engines at 1M"
    echo "right after \`seed\`: \"Search and lists at 1M right after \`seed\`\" below (issue #29)."
    echo
    echo "| figure | PostgreSQL $SMALL | PostgreSQL $BIG | SQLite $SQLITE_BIG | target at 1M |"
    echo "|---|---|---|---|---|"
    echo "| seed with $((1 + UPDATES)) events per customer, s | $(v pg.small.seed_s) | $(v pg.big.seed_s) | | |"
    echo "| seed with 1 event per customer, s | | $(v drain.seed_s) | $(v sqlite.seed_s) | ≤ 60 (1M customers) |"
    echo "| get p50 / p99; req/s | $(v pg.small.get1.p50) / $(v pg.small.get1.p99); $(v pg.small.get.rps) | $(v pg.big.get1.p50) / $(v pg.big.get1.p99); $(v pg.big.get.rps) | $(v sqlite.get1.p50) / $(v sqlite.get1.p99); $(v sqlite.get.rps) | req/s within 10 % of 10k |"
    echo "| list page 1 p50 / p99 | $(v pg.small.page1.p50) / $(v pg.small.page1.p99) | $(v pg.big.page1.p50) / $(v pg.big.page1.p99) | $(v sqlite.page1.p50) / $(v sqlite.page1.p99) | |"
    echo "| search, 20 terms, p50 / p99 | $(v pg.small.search1.p50) / $(v pg.small.search1.p99) | $(v pg.big.search1.p50) / $(v pg.big.search1.p99) | $(v sqlite.search1.p50) / $(v sqlite.search1.p99) | p99 ≤ 20 |"
    echo "| search, 20 terms, req/s | $(v pg.small.search.rps) | $(v pg.big.search.rps) | $(v sqlite.search.rps) | ≥ 2,000 |"
    echo "| search, 1–2 characters, p50 / p99 | $(v pg.small.short1.p50) / $(v pg.small.short1.p99) | $(v pg.big.short1.p50) / $(v pg.big.short1.p99) | $(v sqlite.short1.p50) / $(v sqlite.short1.p99) | none (a curve) |"
    echo "| create req/s (p99) | $(v pg.small.create.rps) ($(v pg.small.create.p99)) | $(v pg.big.create.rps) ($(v pg.big.create.p99)) | | ≥ 0.8 × minimal limit |"
    echo "| update req/s (p99) | $(v pg.small.update.rps) ($(v pg.small.update.p99)) | $(v pg.big.update.rps) ($(v pg.big.update.p99)) | | |"
    echo
    echo "Paging by depth (page number at limit 10), p50 / p99 ms, one client:"
    echo
    echo "| page | PostgreSQL $BIG offset | PostgreSQL $BIG cursor | SQLite $SQLITE_BIG offset | SQLite $SQLITE_BIG cursor |"
    echo "|---|---|---|---|---|"
    for depth in ${R[pg.big.depths]}; do
        echo "| $depth | $(v pg.big.offset.$depth.p50) / $(v pg.big.offset.$depth.p99) | $(v pg.big.cursor.$depth.p50) / $(v pg.big.cursor.$depth.p99) | $(v sqlite.offset.$depth.p50) / $(v sqlite.offset.$depth.p99) | $(v sqlite.cursor.$depth.p50) / $(v sqlite.cursor.$depth.p99) |"
    done
    echo
    echo "Create against the minimal limit (same minute): minimal pgbench $(v pg.limit) tps; our own"
    echo "create transaction in pgbench $(v pg.own) tps ($(ratio "$(v pg.own)" "$(v pg.limit)") ×); the service"
    echo "$(v pg.big.create2.rps) req/s at $BIG customers = $(ratio "$(v pg.big.create2.rps)" "$(v pg.limit)") × the minimal limit (target ≥ 0.8),"
    echo "$(ratio "$(v pg.big.create2.rps)" "$(v pg.own)") × our transaction's."
    echo
    echo "SSE: clients connected to one instance while customers are created at $SSE_RATE/s; database"
    echo "transactions/s (commits of every statement, the relay's idle poll included) over the posting window."
    echo
    echo "| SSE clients | database transactions/s | delivery p50 / p99 ms |"
    echo "|---|---|---|"
    for clients in $SSE_CLIENTS; do
        echo "| $clients | $(v sse.$clients.tps) | $(v sse.$clients.p50) / $(v sse.$clients.p99) |"
    done
    echo
    echo "Backlog drain: $(v drain) events/s (target ≥ 30,000)."
    echo
    echo "Bytes on disk with indexes: PostgreSQL $(v pg.customer_bytes) per customer, $(v pg.event_bytes) per event;"
    echo "SQLite $(v sqlite.customer_bytes) per customer (with the FTS5 index), $(v sqlite.event_bytes) per event."
    echo
    cat bench/SCALE-NOTES.md
} > bench/SCALE.md
echo "wrote bench/SCALE.md"
