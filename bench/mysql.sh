#!/usr/bin/env bash
# The MySQL benchmark (issue #14): `import` of an original-service table of $IMPORT_ROWS
# customers into PostgreSQL, MariaDB and SQLite; and the main scenarios on MariaDB beside
# PostgreSQL (same seed, same load), with each engine's limit for a create measured in the
# same run: the service's own create transaction (a customer row and its event) run bare by
# pgbench on PostgreSQL and by 16 parallel `mariadb` clients on MariaDB. Writes
# bench/MYSQL.md.
#
# Needs the machine's PostgreSQL (127.0.0.1:5432, user postgres, pgbench), MariaDB
# (127.0.0.1:3306, root without a password, the `mariadb` client) and Redis (127.0.0.1:6379).
# Takes about 10 minutes. Smaller: IMPORT_ROWS=20000 DURATION=3.
set -euo pipefail
cd "$(dirname "$0")/.."

IMPORT_ROWS=${IMPORT_ROWS:-200000}
SEED=${SEED:-10000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-16}
# Reads first, on the seeded customers with fresh statistics; then the writes. (With the
# creates first, PostgreSQL searched the tens of thousands of created customers with the
# seed's statistics until autovacuum analyzed them: 138 to 4,660 req/s between runs.)
SCENARIOS=${SCENARIOS:-get list search create update}
LIMIT_TX=${LIMIT_TX:-1000}      # bare create transactions per MariaDB client
PORT=${PORT:-3097}
PG=postgres://postgres@127.0.0.1:5432
MY=mysql://root@127.0.0.1:3306
REDIS_URL=redis://127.0.0.1:6379
RUN=mysqlbench_$(date +%s)
OUT=$(mktemp -d)

cargo build --release -p customer-service -p loadgen
BIN=${SERVICE_BIN:-${CARGO_TARGET_DIR:-target}/release/customer-service}
LOADGEN="${CARGO_TARGET_DIR:-target}/release/loadgen --base-url http://127.0.0.1:$PORT"
my() { mariadb -h 127.0.0.1 -P 3306 -u root "$@"; }

SERVICE=
cleanup() {
    [ -n "$SERVICE" ] && kill "$SERVICE" 2>/dev/null && wait "$SERVICE" 2>/dev/null || true
    for db in import scenarios limit; do
        psql "$PG/postgres" -qc "drop database if exists ${RUN}_$db" >/dev/null 2>&1 || true
    done
    for db in source import scenarios limit; do my -e "drop database if exists ${RUN}_$db" || true; done
    redis-cli --scan --pattern "$RUN:*" | xargs -r -n 1000 redis-cli del >/dev/null 2>&1 || true
    rm -rf "$OUT"
}
trap cleanup EXIT

echo "== the original's table with $IMPORT_ROWS customers"
my -e "create database ${RUN}_source"
my "${RUN}_source" <<SQL
CREATE TABLE customers (
  id int NOT NULL AUTO_INCREMENT,
  createdAt datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updatedAt datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  email varchar(255) NOT NULL, firstName varchar(255) NOT NULL, lastName varchar(255) NOT NULL,
  phone varchar(255) NULL, isActive tinyint NOT NULL DEFAULT 1, dateOfBirth date NULL,
  address json NULL, preferences json NULL,
  UNIQUE INDEX IDX_customers_email (email), PRIMARY KEY (id)) ENGINE=InnoDB;
SET SESSION max_recursive_iterations = $IMPORT_ROWS;
INSERT INTO customers (createdAt, updatedAt, email, firstName, lastName, phone, isActive,
                       dateOfBirth, address, preferences)
WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $IMPORT_ROWS)
SELECT timestampadd(SECOND, i * 60, '2018-01-01 00:00:00.123456'),
       timestampadd(SECOND, i * 90, '2018-01-01 00:00:00.654321'),
       concat(elt(1 + i % 4, 'ann', 'Bob', 'zoë', 'WEI'), '.', i, '@example.com'),
       elt(1 + i % 4, 'Ann', 'Bob', 'Zoë', 'Wei'), elt(1 + i % 3, 'Lee', 'García', 'Ørsted'),
       if(i % 4 = 0, NULL, concat('+1-555-', lpad(i % 1000, 3, '0'), '-', lpad(i % 10000, 4, '0'))),
       i % 10 <> 0,
       if(i % 3 = 0, NULL, date_add('1950-01-01', INTERVAL i % 20000 DAY)),
       if(i % 5 = 0, NULL, concat('{"street": "', i, ' Main St", "city": "Springfield", ',
                                  '"state": "IL", "zipCode": "62701", "country": "USA"}')),
       if(i % 2 = 0, NULL, concat('{"company": "Acme", "newsletter": ',
                                  if(i % 3 = 0, 'true', 'false'), '}'))
FROM n;
SQL

echo "== import into each backend"
psql "$PG/postgres" -qc "create database ${RUN}_import"
my -e "create database ${RUN}_import"
SQLITE_FILE="$OUT/import.db"
import_into() { # $1 = name, $2 = DATABASE_URL
    DATABASE_URL="$2" RUST_LOG=warn "$BIN" import --from "$MY/${RUN}_source" | tail -n 1 | tee "$OUT/import.$1"
    DATABASE_URL="$2" RUST_LOG=warn "$BIN" import --from "$MY/${RUN}_source" --verify | tail -n 1 | tee "$OUT/verify.$1"
}
import_into postgres "$PG/${RUN}_import"
import_into mariadb "$MY/${RUN}_import"
import_into sqlite "sqlite://$SQLITE_FILE"
import_rate() { # customers/s from "imported N, … in X s"
    awk '{ for (i = 1; i <= NF; i++) { if ($i == "imported") n = $(i + 1); if ($i == "in") t = $(i + 1) } }
         END { gsub(",", "", n); printf "%d customers in %.1f s: %d customers/s", n, t, n / t }' "$OUT/import.$1"
}

echo "== search and list at $IMPORT_ROWS imported customers (relay off)"
. bench/lib.sh
terms=()
while read -r term; do terms+=("/api/v1/customers?search=$(urlencode "$term")&limit=10"); done < bench/search-terms.txt
printf '%s\n' "${terms[@]}" > "$OUT/search-paths"
echo "/api/v1/customers?limit=10" > "$OUT/list-paths"
at_scale() { # $1 = name, $2 = DATABASE_URL
    env DATABASE_URL="$2" PORT="$PORT" RUST_LOG=warn DATABASE_POOL_SIZE="$CONNECTIONS" \
        RELAY_ENABLED=false "$BIN" & SERVICE=$!
    until curl -sf "http://127.0.0.1:$PORT/api/v1/health" >/dev/null; do sleep 0.05; done
    for what in search list; do
        $LOADGEN run --scenario paths --paths-file "$OUT/$what-paths" --connections "$CONNECTIONS" \
            --duration-secs "$DURATION" --warmup-secs "$WARMUP" | tee "$OUT/$what-at-scale.$1"
    done
    kill "$SERVICE"; wait "$SERVICE" || true; SERVICE=
}
at_scale postgres "$PG/${RUN}_import"
at_scale mariadb "$MY/${RUN}_import"

echo "== the create limit of each engine"
psql "$PG/postgres" -qc "create database ${RUN}_limit"
my -e "create database ${RUN}_limit"
DATABASE_URL="$PG/${RUN}_limit" RUST_LOG=warn "$BIN" migrate
DATABASE_URL="$MY/${RUN}_limit" RUST_LOG=warn "$BIN" migrate
PG_LIMIT=$(pgbench -n -c "$CONNECTIONS" -j 2 -T "$DURATION" -M prepared -f bench/pgbench-insert.sql \
    "$PG/${RUN}_limit" 2>&1 | grep -o 'tps = [0-9.]*' | head -n 1 | awk '{printf "%d", $3}')
# The same transaction for MariaDB, $LIMIT_TX times per client.
for _ in $(seq 1 "$LIMIT_TX"); do
    cat <<'SQL'
begin;
insert into customers (email, first_name, last_name, phone, is_active, date_of_birth, address, preferences, search_text, created_at_ms, updated_at_ms, version) values (concat('slap-', uuid(), '@bench.example'), 'Bench', 'Mark', '+1-555-010-0100', 1, '1990-01-15', '{"street": "1 Main St", "city": "Springfield", "state": "IL", "zipCode": "62701", "country": "USA"}', '{"company": "Acme", "industry": "Retail", "newsletter": true, "preferredContact": "email"}', 'bench mark slap@bench.example', 1795741307502, 1795741307502, 1);
insert into customer_events (event_id, event_type, customer_id, sequence, occurred_at_ms, payload) values (concat('CustomerCreated_slap_', uuid()), 'CustomerCreated', last_insert_id(), 1, 1795741307502, repeat('x', 900));
commit;
SQL
done > "$OUT/limit.sql"
T0=$(date +%s%N)
for _ in $(seq 1 "$CONNECTIONS"); do my "${RUN}_limit" < "$OUT/limit.sql" & done
wait
MY_LIMIT=$(awk -v n=$((LIMIT_TX * CONNECTIONS)) -v ns=$(( $(date +%s%N) - T0 )) 'BEGIN { printf "%d", n / (ns / 1e9) }')

echo "== scenarios on each engine ($SEED customers, $CONNECTIONS connections, ${DURATION} s each)"
psql "$PG/postgres" -qc "create database ${RUN}_scenarios"
my -e "create database ${RUN}_scenarios"
scenarios() { # $1 = name, $2 = DATABASE_URL
    DATABASE_URL="$2" RUST_LOG=warn "$BIN" seed --count "$SEED" > /dev/null
    case "$1" in
        postgres) psql "$2" -qc "analyze customers" ;;
        mariadb) my "${RUN}_scenarios" -e "analyze table customers" > /dev/null ;;
    esac
    env DATABASE_URL="$2" PORT="$PORT" RUST_LOG=warn DATABASE_POOL_SIZE="$CONNECTIONS" \
        REDIS_URL="$REDIS_URL" REDIS_KEY_PREFIX="$RUN:$1" EVENT_CHANNEL="$RUN:$1:events" \
        EVENT_STREAM="$RUN:$1:stream" "$BIN" & SERVICE=$!
    until curl -sf "http://127.0.0.1:$PORT/api/v1/health" >/dev/null; do sleep 0.05; done
    # The seed's events are a backlog for the relay: measure after it has drained.
    until curl -s "http://127.0.0.1:$PORT/api/v1/health" | grep -q '"pending":0'; do sleep 0.2; done
    for scenario in $SCENARIOS; do
        $LOADGEN run --scenario "$scenario" --connections "$CONNECTIONS" --duration-secs "$DURATION" \
            --warmup-secs "$WARMUP" | tee "$OUT/$scenario.$1"
    done
    kill "$SERVICE"; wait "$SERVICE" || true; SERVICE=
}
scenarios postgres "$PG/${RUN}_scenarios"
scenarios mariadb "$MY/${RUN}_scenarios"

rps() { grep -o 'connections, [0-9]* req/s' "$OUT/$1.$2" | awk '{print $2}'; }
p99() { grep -o 'p99 [0-9.]* ms' "$OUT/$1.$2" | awk '{print $2}'; }
row() { # $1 = scenario, $2 = label
    echo "| $2 | $(rps "$1" postgres) (p99 $(p99 "$1" postgres) ms) | $(rps "$1" mariadb) (p99 $(p99 "$1" mariadb) ms) |"
}

cat > bench/MYSQL.md <<MD
# MySQL / MariaDB results

Produced by \`bench/mysql.sh\` on $(date -u +%Y-%m-%d) at commit \`$(git rev-parse --short HEAD)\`, on
$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB: PostgreSQL $(psql -V | awk '{print $3}'),
MariaDB $(my -N -e "select version()"), release build. Client, service and databases share the
2 cores; each figure is one run of ${DURATION} s (after ${WARMUP} s of warm-up): compare within
this run only.

## Import of the original's table ($IMPORT_ROWS customers, from MariaDB)

Time of the whole command (it decides every row before writing, then writes in batches of
2,000), and the \`--verify\` that follows it.

| into | rate | verify |
|---|---|---|
| PostgreSQL | $(import_rate postgres) | $(cat "$OUT/verify.postgres") |
| MariaDB | $(import_rate mariadb) | $(cat "$OUT/verify.mariadb") |
| SQLite | $(import_rate sqlite) | $(cat "$OUT/verify.sqlite") |

Target: at least 20,000 customers/s into PostgreSQL.

## Search and the first list page at $IMPORT_ROWS imported customers

The 20 terms of \`bench/search-terms.txt\`, a random one per request (against these
customers some match a third of them, most match none), and \`GET /customers?limit=10\`.
PostgreSQL looks terms up in its trigram index, MariaDB in the trigram posting table of
issue #29 (before it, MariaDB walked the list order and counted by a full scan: 52 req/s,
p99 2.9 s). Each engine here runs with its packaged settings: MariaDB's 128 MB buffer pool
holds neither the customers nor the posting table of this database, so it reads them from
disk; \`bench/SCALE.md\` has the figures at a million with a 4 GB pool.

| request, req/s | PostgreSQL | MariaDB |
|---|---|---|
$(row search-at-scale "search (20 terms)")
$(row list-at-scale "list, first page")

## The main scenarios ($SEED seeded customers, $CONNECTIONS connections)

Reads first, on the seeded customers (statistics taken after the seed), then the writes.
The search scenario's term matches none of the seeded customers.

| scenario, req/s | PostgreSQL | MariaDB |
|---|---|---|
$(row get "GET by id")
$(row list "GET list page")
$(row search "GET list with search")
$(row create "POST create")
$(row update "PATCH update")
| create limit: the bare create transaction, tx/s | $PG_LIMIT (pgbench, $CONNECTIONS clients) | $MY_LIMIT ($CONNECTIONS \`mariadb\` clients) |

Raw lines:

\`\`\`
$(for b in postgres mariadb; do echo "# $b"; for s in search-at-scale list-at-scale $SCENARIOS; do cat "$OUT/$s.$b"; done; done)
\`\`\`
MD
echo "wrote bench/MYSQL.md"
