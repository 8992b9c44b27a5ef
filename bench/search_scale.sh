#!/usr/bin/env bash
# Search and lists at 1M customers on PostgreSQL, MariaDB and SQLite, right after `seed` and a
# fresh start, with no manual step in between (issue #29): no ANALYZE, no VACUUM, no warm-up
# but what the service does itself. Writes bench/SEARCH-SCALE.md (bench/SCALE.md quotes it).
#
# For each engine: seed BIG customers (one event each); start the service (relay off: the
# seeded events are history, and publishing 1M of them would share the CPU with the
# figures); then, in this order,
#   - the first list page at 16 connections over the first 5 s after start;
#   - each of the 20 terms of bench/search-terms.txt searched once, one client (first
#     requests: nothing was searched since start);
#   - the same terms repeated, one client; then at 16 connections;
#   - cursor pages and offset pages by depth, one client.
# On PostgreSQL and MariaDB also the write cost of what search maintains: create and PATCH at
# 16 connections on two databases of AB_SEED customers, alternately: PostgreSQL with the
# narrow search table and with the trigram index on `customers` instead (as before
# migration 10), MariaDB with the posting table's triggers and without them.
#
# MariaDB: a server of its own (mariadbd from the machine's packages) with
# innodb_buffer_pool_size=$MARIADB_BUFFER_POOL (default 4G: a 1M-customer database with its
# posting table is ~1.6 GB; the packaged default of 128 MB serves every read from disk),
# unless MYSQL_URL names one. PostgreSQL: the machine's (shared_buffers as configured; it
# reads through the OS page cache). Needs mariadbd, mariadb-install-db, psql, python3, curl.
# Takes about 25 minutes. Smaller: BIG=100000 DURATION=3.
set -euo pipefail
cd "$(dirname "$0")/.."

BIG=${BIG:-1000000}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
ENGINES=${ENGINES:-postgres mariadb sqlite}
AB_SEED=${AB_SEED:-10000}
AB_ROUNDS=${AB_ROUNDS:-3}
MARIADB_BUFFER_POOL=${MARIADB_BUFFER_POOL:-4G}
PORT=${PORT:-3096}
PG=postgres://postgres@127.0.0.1:5432
RUN=search_$(date +%s)
OUT=$(mktemp -d)
ulimit -n "$(ulimit -Hn)"

cargo build --release -p customer-service -p loadgen
BIN=${SERVICE_BIN:-${CARGO_TARGET_DIR:-target}/release/customer-service}
LOADGEN="${CARGO_TARGET_DIR:-target}/release/loadgen --base-url http://127.0.0.1:$PORT"

SERVICE=
MARIADB_PID=
MY=${MYSQL_URL:-}
cleanup() {
    [ -n "$SERVICE" ] && kill "$SERVICE" 2>/dev/null && wait "$SERVICE" 2>/dev/null || true
    psql "$PG/postgres" -qc "drop database if exists ${RUN}" >/dev/null 2>&1 || true
    if [ -n "$MARIADB_PID" ]; then
        kill "$MARIADB_PID" 2>/dev/null && wait "$MARIADB_PID" 2>/dev/null || true
    elif [ -n "$MY" ]; then
        for db in "$RUN" "${RUN}_on" "${RUN}_off"; do
            mariadb -h "$MY_HOST" -P "$MY_PORT" -u root -e "drop database if exists $db" || true
        done
    fi
    rm -rf "$OUT"
}
trap cleanup EXIT

if [[ " $ENGINES " == *" mariadb "* && -z "$MY" ]]; then
    MY_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$OUT/mariadb"
    user=(); [ "$(id -u)" = 0 ] && { user=(--user=mysql); chown mysql:mysql "$OUT/mariadb"; chmod 755 "$OUT"; }
    mariadb-install-db --no-defaults --datadir="$OUT/mariadb/data" "${user[@]}" \
        --skip-test-db --auth-root-authentication-method=normal > "$OUT/mariadb-install.log" 2>&1
    mariadbd --no-defaults --datadir="$OUT/mariadb/data" --socket="$OUT/mariadb/socket" \
        --pid-file="$OUT/mariadb/pid" --log-error="$OUT/mariadb/error.log" --port="$MY_PORT" \
        "${user[@]}" --bind-address=127.0.0.1 --skip-name-resolve --max-connections=1000 \
        --skip-log-bin --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        --innodb-buffer-pool-size="$MARIADB_BUFFER_POOL" --innodb-log-file-size=1G &
    MARIADB_PID=$!
    until mariadb -h 127.0.0.1 -P "$MY_PORT" -u root -e 'select 1' >/dev/null 2>&1; do sleep 0.2; done
    MY=mysql://root@127.0.0.1:$MY_PORT
fi
MY_HOST=127.0.0.1
MY_PORT=${MY_PORT:-$(echo "$MY" | sed -E 's|.*:([0-9]+).*|\1|')}
my() { mariadb -h "$MY_HOST" -P "$MY_PORT" -u root "$@"; }

declare -A R
. bench/lib.sh

start() { # $1 = DATABASE_URL
    env DATABASE_URL="$1" PORT="$PORT" RUST_LOG=warn DATABASE_POOL_SIZE="$CONNECTIONS" \
        RELAY_ENABLED=false "$BIN" & SERVICE=$!
    until curl -sf "http://127.0.0.1:$PORT/livez" >/dev/null 2>&1; do sleep 0.01; done
}
stop() { kill "$SERVICE"; wait "$SERVICE" || true; SERVICE=; }
# paths KEY CONNECTIONS SECONDS WARMUP PATH...
paths() {
    local key=$1 connections=$2 seconds=$3 warmup=$4
    shift 4
    printf '%s\n' "$@" > "$OUT/paths"
    $LOADGEN run --scenario paths --paths-file "$OUT/paths" --connections "$connections" \
        --duration-secs "$seconds" --warmup-secs "$warmup" > "$OUT/$key.out"
    record "$key"
}
scenario() { # KEY SCENARIO
    $LOADGEN run --scenario "$2" --connections "$CONNECTIONS" --duration-secs "$DURATION" \
        --warmup-secs 2 > "$OUT/$1.out"
    record "$1"
}

terms=()
while read -r term; do terms+=("/api/v1/customers?search=$(urlencode "$term")&limit=10"); done < bench/search-terms.txt

figures() { # KEY DATABASE_URL
    local key=$1 url=$2 line
    line=$(env DATABASE_URL="$url" RUST_LOG=warn "$BIN" seed --count "$BIG" | tail -n 1)
    echo "  $line"
    R[$key.seed_s]=$(echo "$line" | grep -o 'in [0-9.]*' | awk '{print $2}')
    start "$url"
    # The first 5 s after start: the first page, 16 connections, nothing warmed.
    paths "$key.first_page" "$CONNECTIONS" 5 0 "/api/v1/customers?page=1&limit=10"
    # Each term's first request, one client.
    : > "$OUT/$key.first_terms"
    local path ms
    for path in "${terms[@]}"; do
        ms=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT$path" |
            python3 -c 'import sys; print(f"{float(sys.stdin.read()) * 1000:.1f}")')
        echo "$ms $path" >> "$OUT/$key.first_terms"
    done
    sort -n "$OUT/$key.first_terms" | tail -n 3 | sed 's/^/  slowest first request: /'
    R[$key.first_max]=$(sort -n "$OUT/$key.first_terms" | tail -n 1 | cut -d' ' -f1)
    R[$key.first_median]=$(sort -n "$OUT/$key.first_terms" | sed -n 10p | cut -d' ' -f1)
    R[$key.first_list]=$(awk '{n = $2; sub(/.*search=/, "", n); sub(/&limit.*/, "", n); printf "%s%s %s ms", sep, n, $1; sep = ", "}' "$OUT/$key.first_terms")
    paths "$key.search1" 1 "$DURATION" 0 "${terms[@]}"
    paths "$key.search" "$CONNECTIONS" "$DURATION" 2 "${terms[@]}"
    local depth
    for depth in 10 1000 10000 50000; do
        [ "$depth" -ge $((BIG / 10)) ] && continue
        paths "$key.offset.$depth" 1 3 1 "/api/v1/customers?page=$depth&limit=10"
        paths "$key.cursor.$depth" 1 3 1 "/api/v1/customers?after=$(cursor_at "$depth")&limit=10"
    done
    curl -s "http://127.0.0.1:$PORT/metrics" | grep '^customer_search_queries_total' | sed 's/^/  /'
    stop
}

# KEY URL_ON URL_OFF: create and PATCH at $CONNECTIONS connections on the database with the
# search index's write path and on the one without, alternately, $AB_ROUNDS rounds.
write_cost() {
    local round side url
    for round in $(seq "$AB_ROUNDS"); do
        for side in on off; do
            url=$2; [ "$side" = off ] && url=$3
            start "$url"
            scenario "ab.$1.$side.create.$round" create
            scenario "ab.$1.$side.update.$round" update
            stop
        done
    done
}

for engine in $ENGINES; do
    echo "== $engine, $BIG customers"
    case $engine in
        postgres)
            psql "$PG/postgres" -qc "create database $RUN"
            figures pg "$PG/$RUN"
            R[pg.bytes]=$(psql "$PG/$RUN" -Atc "select (pg_total_relation_size('customers') + pg_total_relation_size('customers_search')) / greatest(count(*), 1) from customers")
            psql "$PG/postgres" -qc "drop database $RUN"
            echo "-- the narrow search table's write cost: $AB_SEED customers, with it and with the trigram index on customers instead"
            for side in on off; do
                psql "$PG/postgres" -qc "create database ${RUN}_$side"
                env DATABASE_URL="$PG/${RUN}_$side" RUST_LOG=warn "$BIN" seed --count "$AB_SEED" > /dev/null
            done
            psql "$PG/${RUN}_off" -qc "drop trigger customers_search_on_insert on customers; drop trigger customers_search_on_update on customers; drop trigger customers_search_on_delete on customers; drop index customers_search_text_trgm; create index customers_search_trgm on customers using gin (search_text gin_trgm_ops)"
            write_cost pg "$PG/${RUN}_on" "$PG/${RUN}_off"
            for side in on off; do psql "$PG/postgres" -qc "drop database ${RUN}_$side"; done
            ;;
        mariadb)
            my -e "create database $RUN"
            figures my "$MY/$RUN"
            R[my.bytes]=$(my -N -e "select sum(data_length + index_length) div (select count(*) from $RUN.customers) from information_schema.tables where table_schema = '$RUN' and table_name in ('customers', 'customer_trigrams')")
            R[my.posting_bytes]=$(my -N -e "select sum(data_length + index_length) div (select count(*) from $RUN.customers) from information_schema.tables where table_schema = '$RUN' and table_name = 'customer_trigrams'")
            my -e "drop database $RUN"
            echo "-- the posting table's write cost: $AB_SEED customers, with and without its triggers"
            for side in on off; do
                my -e "create database ${RUN}_$side"
                env DATABASE_URL="$MY/${RUN}_$side" RUST_LOG=warn "$BIN" seed --count "$AB_SEED" > /dev/null
            done
            my "${RUN}_off" -e "drop trigger customers_trigrams_on_insert; drop trigger customers_trigrams_on_update_add; drop trigger customers_trigrams_on_update_remove; drop trigger customers_trigrams_on_delete"
            write_cost my "$MY/${RUN}_on" "$MY/${RUN}_off"
            ;;
        sqlite)
            figures sq "sqlite://$OUT/search.db"
            R[sq.bytes]=$(sqlite3 "$OUT/search.db" "select (select sum(pgsize) from dbstat where name in ('customers', 'customers_email_key', 'customers_created_order') or name like 'customers_search%') / (select count(*) from customers)" 2>/dev/null || echo –)
            rm -f "$OUT"/search.db*
            ;;
    esac
done

v() { echo "${R[$1]:-–}"; }
median() { printf '%s\n' "$@" | grep -v '^$' | sort -n | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]; else print "–"}'; }
ab() { # ENGINE KIND SIDE: the median req/s over the rounds
    local values=() round
    for round in $(seq "$AB_ROUNDS"); do values+=("${R[ab.$1.$3.$2.$round.rps]:-}"); done
    median "${values[@]}"
}
ab_report() { # ENGINE WHAT: the write cost's lines
    [ -n "${R[ab.$1.on.create.1.rps]:-}" ] || return 0
    echo "$2 ($AB_SEED seeded customers, 16 connections, $AB_ROUNDS rounds"
    echo "alternately, median req/s): create $(ab "$1" create on) with it, $(ab "$1" create off) without;"
    echo "PATCH $(ab "$1" update on) with, $(ab "$1" update off) without. Target: each loses ≤ 15 %."
    echo
    for round in $(seq "$AB_ROUNDS"); do
        echo "- round $round: create $(v ab.$1.on.create.$round.rps) / $(v ab.$1.off.create.$round.rps), PATCH $(v ab.$1.on.update.$round.rps) / $(v ab.$1.off.update.$round.rps)"
    done
    echo
}
{
    echo "# Search and lists at $BIG customers, right after \`seed\`"
    echo
    echo "Written by \`bench/search_scale.sh\` on $(date -u +%Y-%m-%d) at commit \`$(git describe --always --dirty)\`,"
    echo "$(nproc) cores; the service, \`loadgen\` and the databases share them. Each engine: \`seed --count $BIG\`,"
    echo "then the service started (relay off) and measured at once: no ANALYZE, no VACUUM, no warm-up."
    echo "MariaDB: its own server, innodb_buffer_pool_size=$MARIADB_BUFFER_POOL. p50/p99 in ms."
    echo
    echo "| figure | PostgreSQL | MariaDB | SQLite | target |"
    echo "|---|---|---|---|---|"
    echo "| seed, s | $(v pg.seed_s) | $(v my.seed_s) | $(v sq.seed_s) | |"
    echo "| first list page, 16 connections, first 5 s: p99 (req/s) | $(v pg.first_page.p99) ($(v pg.first_page.rps)) | $(v my.first_page.p99) ($(v my.first_page.rps)) | $(v sq.first_page.p99) ($(v sq.first_page.rps)) | p99 ≤ 10 |"
    echo "| each term's first request, one client: median / slowest | $(v pg.first_median) / $(v pg.first_max) | $(v my.first_median) / $(v my.first_max) | $(v sq.first_median) / $(v sq.first_max) | ≤ 50 |"
    echo "| 20 terms repeated, one client: p50 / p99 | $(v pg.search1.p50) / $(v pg.search1.p99) | $(v my.search1.p50) / $(v my.search1.p99) | $(v sq.search1.p50) / $(v sq.search1.p99) | p99 ≤ 20 |"
    echo "| 20 terms, 16 connections: req/s (p99) | $(v pg.search.rps) ($(v pg.search.p99)) | $(v my.search.rps) ($(v my.search.p99)) | $(v sq.search.rps) ($(v sq.search.p99)) | ≥ 2,000 (PostgreSQL, MariaDB) |"
    for depth in 10 1000 10000 50000; do
        echo "| page $depth at limit 10, offset / cursor: p99 | $(v pg.offset.$depth.p99) / $(v pg.cursor.$depth.p99) | $(v my.offset.$depth.p99) / $(v my.cursor.$depth.p99) | $(v sq.offset.$depth.p99) / $(v sq.cursor.$depth.p99) | cursor ≤ 10; offset page 1000 ≤ 20 |"
    done
    echo "| bytes per customer (table, indexes, search index) | $(v pg.bytes) | $(v my.bytes) (posting table $(v my.posting_bytes)) | $(v sq.bytes) | |"
    echo
    echo "Each term's first request (ms):"
    echo
    for key in pg my sq; do
        [ -n "${R[$key.first_list]:-}" ] && echo "- $key: ${R[$key.first_list]}"
    done
    echo
    ab_report pg "PostgreSQL's write cost of the narrow search table, against the trigram index on customers"
    ab_report my "MariaDB's write cost of the posting table, against no triggers"
} > bench/SEARCH-SCALE.md
cat bench/SEARCH-SCALE.md
