#!/usr/bin/env bash
# One benchmark run on this machine: the service's figures and, beside them, the limits of the
# same machine's PostgreSQL and Redis for the same work. Writes bench/RESULTS.md.
# Needs the machine's PostgreSQL (127.0.0.1:5432, user postgres, pgbench) and Redis
# (127.0.0.1:6379, redis-benchmark). Takes about 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}      # seconds measured per scenario
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-16}
SEED=${SEED:-10000}
BACKLOG=${BACKLOG:-100000}
RUNS=${RUNS:-3}
# LIMITS=0 skips pgbench and redis-benchmark (an A/B compares two builds, not the machine).
LIMITS=${LIMITS:-1}
# A subset for a quick A/B (e.g. SCENARIOS=get BACKLOG=0); the table is written for a full run only.
SCENARIOS=${SCENARIOS:-create get list search update mixed floor}
PORT=${PORT:-3099}
PG=postgres://postgres@127.0.0.1:5432
REDIS_URL=redis://127.0.0.1:6379
RUN=bench_$(date +%s)
OUT=$(mktemp -d)

cargo build --release -p customer-service -p loadgen
# SERVICE_BIN: a service binary built elsewhere (to compare two builds in one session).
BIN=${SERVICE_BIN:-${CARGO_TARGET_DIR:-target}/release/customer-service}
LOADGEN="${CARGO_TARGET_DIR:-target}/release/loadgen --base-url http://127.0.0.1:$PORT"

psql "$PG/postgres" -qc "create database $RUN"
# The insert limit writes into its own copy of the schema, so the service never sees its rows.
psql "$PG/postgres" -qc "create database ${RUN}_limit"
SERVICE=
cleanup() {
    [ -n "$SERVICE" ] && kill "$SERVICE" 2>/dev/null && wait "$SERVICE" 2>/dev/null || true
    psql "$PG/postgres" -qc "drop database if exists $RUN" >/dev/null 2>&1 || true
    psql "$PG/postgres" -qc "drop database if exists ${RUN}_limit" >/dev/null 2>&1 || true
    redis-cli del "$RUN:stream" "$RUN:bench-stream" >/dev/null 2>&1 || true
    redis-cli --scan --pattern "$RUN:*" | xargs -r -n 1000 redis-cli del >/dev/null 2>&1 || true
    rm -rf "$OUT"
}
trap cleanup EXIT

service_env() {
    echo DATABASE_URL="$PG/$RUN" PORT="$PORT" RUST_LOG=warn DATABASE_POOL_SIZE="$CONNECTIONS" \
        REDIS_URL="$REDIS_URL" REDIS_KEY_PREFIX="$RUN" EVENT_CHANNEL="$RUN:events" EVENT_STREAM="$RUN:stream"
}
start() { # $1 = RELAY_ENABLED; sets SERVICE and STARTUP_MS
    local t0; t0=$(date +%s%N)
    env $(service_env) RELAY_ENABLED="$1" "$BIN" & SERVICE=$!
    until curl -sf "http://127.0.0.1:$PORT/api/v1/health" >/dev/null; do sleep 0.002; done
    STARTUP_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}
stop() { kill "$SERVICE"; wait "$SERVICE" || true; SERVICE=; }
. bench/lib.sh

echo "== schema and seed ($SEED customers)"
env $(service_env) "$BIN" migrate
DATABASE_URL="$PG/${RUN}_limit" RUST_LOG=warn "$BIN" migrate
env $(service_env) "$BIN" seed --count "$SEED" >/dev/null

echo "== limits: pgbench and redis-benchmark"
MAX_ID=$(psql "$PG/$RUN" -Atc "select max(id) from customers")
PAYLOAD=$(head -c 900 /dev/zero | tr '\0' x)
for r in $(seq 1 "$RUNS"); do
    [ "$LIMITS" = 0 ] && break
    pgbench -n -c "$CONNECTIONS" -j 2 -T "$DURATION" -M prepared -f bench/pgbench-insert.sql "$PG/${RUN}_limit" > "$OUT/pg-insert.$r" 2>&1
    pgbench -n -c "$CONNECTIONS" -j 2 -T "$DURATION" -M prepared -D max_id="$MAX_ID" -f bench/pgbench-select.sql "$PG/$RUN" > "$OUT/pg-select.$r" 2>&1
    redis-benchmark -q -n 200000 -c "$CONNECTIONS" -r 100000000 SET "$RUN:k:__rand_int__" "$PAYLOAD" EX 86400 NX > "$OUT/r-set.$r"
    redis-benchmark -q -n 200000 -c "$CONNECTIONS" PUBLISH "$RUN:bench-channel" "$PAYLOAD" > "$OUT/r-pub.$r"
    redis-benchmark -q -n 200000 -c "$CONNECTIONS" XADD "$RUN:bench-stream" MAXLEN '~' 1000000 '*' event "$PAYLOAD" > "$OUT/r-xadd.$r"
done
# median NAME PATTERN: the median over the rounds' files $OUT/NAME.* of the first number
# after PATTERN ("tps = " for pgbench, "" for redis-benchmark's "N requests per second").
median() {
    [ "$LIMITS" = 0 ] && { echo 0; return; }
    for f in "$OUT/$1".*; do
        if [ -n "$2" ]; then grep -o "$2[0-9.]*" "$f" | head -n 1 | grep -o '[0-9.]*$'
        else grep -o '[0-9.]* requests per second' "$f" | tail -n 1 | awk '{print $1}'; fi
    done | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
PG_INSERT=$(median pg-insert 'tps = ')
PG_SELECT=$(median pg-select 'tps = ')
R_SET=$(median r-set ''); R_PUB=$(median r-pub ''); R_XADD=$(median r-xadd '')

echo "== service scenarios ($CONNECTIONS connections, ${WARMUP}s warm-up, ${DURATION}s, $RUNS rounds)"
start true
STARTUP=$STARTUP_MS
sleep 1
IDLE_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SERVICE/status")
# The service's CPU time (user + system, from /proc) over a scenario's measured seconds, per
# request: what a build costs per request, which the client, PostgreSQL and Redis sharing
# the cores blur in req/s.
TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVICE/stat"; }
for r in $(seq 1 "$RUNS"); do
    for scenario in $SCENARIOS; do
        ( sleep "$WARMUP"; cpu_ticks > "$OUT/ticks" ) &
        sampler=$!
        $LOADGEN run --scenario "$scenario" --connections "$CONNECTIONS" --duration-secs "$DURATION" \
            --warmup-secs "$WARMUP" | tee "$OUT/$scenario.$r"
        wait "$sampler"
        awk -v t0="$(cat "$OUT/ticks")" -v t1="$(cpu_ticks)" -v hz="$TICK" -v d="$DURATION" \
            -v rps="$(field "connections," < "$OUT/$scenario.$r")" \
            'BEGIN { if (rps > 0) printf "%.1f\n", (t1 - t0) / hz * 1e6 / (rps * d) }' > "$OUT/cpu-$scenario.$r"
    done
    [ "$BACKLOG" = 0 ] ||
        $LOADGEN event-latency --redis-url "$REDIS_URL" --channel "$RUN:events" --rate 1000 --duration-secs 10 | tee "$OUT/latency.$r"
done
RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SERVICE/status")
ANON_KB=$(awk '/RssAnon/ {print $2}' "/proc/$SERVICE/status")
FILE_KB=$(awk '/RssFile/ {print $2}' "/proc/$SERVICE/status")
stop

echo "== backlog of $BACKLOG events written with the relay off, then drained ($RUNS rounds)"
for r in $(seq 1 "$RUNS"); do
    [ "$BACKLOG" = 0 ] && break
    start false
    $LOADGEN create --count "$BACKLOG" --connections "$CONNECTIONS" > /dev/null
    stop
    start true
    $LOADGEN drain | tee "$OUT/drain.$r"
    stop
done

if [ "$BACKLOG" = 0 ]; then
    echo "medians of $RUNS rounds (limits: pgbench insert $PG_INSERT, select $PG_SELECT tps):"
    mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
    echo "peak RSS $(mb "$RSS_KB") MB"
    echo "start RSS $(mb "$IDLE_KB") MB (1 s after the first healthy answer)"
    echo "end RssAnon $(mb "$ANON_KB") MB"
    echo "end RssFile $(mb "$FILE_KB") MB"
    for scenario in $SCENARIOS; do
        for f in "$OUT/$scenario".*; do echo "$(field "connections," < "$f") $f"; done | sort -n -k1,1 |
            awk '{ v[NR] = $1 } END { print "  '"$scenario"'", v[int((NR + 1) / 2)], "req/s" }'
        cat "$OUT/cpu-$scenario".* | sort -n |
            awk '{ v[NR] = $1 } END { print "cpu '"$scenario"'", v[int((NR + 1) / 2)], "us/request" }'
    done
    exit 0
fi

# The round with the median figure of each scenario: its line is the one reported.
median_round() { # $1 = scenario, $2 = the text before the figure
    for f in "$OUT/$1".*; do echo "$(field "$2" < "$f") $f"; done | sort -n -k1,1 |
        awk '{ v[NR] = $2 } END { print v[int((NR + 1) / 2)] }'
}
for scenario in create get list search update mixed floor; do
    cp "$(median_round "$scenario" "connections,")" "$OUT/$scenario"
done
cp "$(median_round latency "p99")" "$OUT/latency"
cp "$(for f in "$OUT"/drain.*; do echo "$(grep -o '[0-9]* events/s' "$f" | awk '{print $1}') $f"; done |
    sort -n -k1,1 | awk '{ v[NR] = $2 } END { print v[int((NR + 1) / 2)] }')" "$OUT/drain"

rps() { field "connections," < "$OUT/$1" ; }
p() { grep -o "$2 [0-9.]* ms" "$OUT/$1" | head -n 1 | awk '{print $2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "–" }'; }
CREATE=$(rps create); GET=$(rps get); LIST=$(rps list); SEARCH=$(rps search); UPDATE=$(rps update); MIXED=$(rps mixed); FLOOR=$(rps floor)
DRAIN=$(grep -o '[0-9]* events/s' "$OUT/drain" | awk '{print $1}')
DRAINED=$(grep -o 'drain: [0-9]* events' "$OUT/drain" | awk '{print $2}')
RSS_MB=$(awk -v k="$RSS_KB" 'BEGIN { printf "%.1f", k / 1024 }')
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)

cat > bench/RESULTS.md <<MD
# Benchmark results

Produced by \`bench/run.sh\` on $(date -u +%Y-%m-%d) at commit \`$(git rev-parse --short HEAD)\`,
on $(nproc) cores ($CPU), $(free -g | awk '/Mem:/ {print $2}') GiB. PostgreSQL $(psql -V | awk '{print $3}'),
Redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2). Service: release build, PostgreSQL backend,
Redis sink on, $CONNECTIONS client connections, ${WARMUP} s warm-up then ${DURATION} s per scenario,
$SEED seeded customers. Each figure is the median of $RUNS rounds (limits included); the
p50/p99 beside a rate are those of its median round. Client, service, PostgreSQL and Redis
share the same 2 cores.
The original NestJS service's figures are those measured on the same kind of machine (issue \`bench\`).

| figure | service | limit beside it | ratio | original | target |
|---|---|---|---|---|---|
| POST create, req/s | $CREATE (p50 $(p create p50) ms, p99 $(p create p99) ms) | pgbench insert tx $PG_INSERT tps | $(ratio "$CREATE" "$PG_INSERT") | 927 (p99 31 ms) | ≥ 0.8 × limit |
| GET by id, req/s | $GET (p99 $(p get p99) ms) | pgbench pk select $PG_SELECT tps | $(ratio "$GET" "$PG_SELECT") | 2,541 | ≥ 0.5 × limit |
| GET list page, req/s | $LIST (p99 $(p list p99) ms) | original 1,987 | $(ratio "$LIST" 1987) | 1,987 | ≥ 10 × original |
| GET list with search, req/s | $SEARCH (p99 $(p search p99) ms) | | | | |
| PATCH update, req/s | $UPDATE (p99 $(p update p99) ms) | | | | |
| mixed 80 % reads, req/s | $MIXED (p99 $(p mixed p99) ms) | | | | |
| HTTP alone: GET of a malformed id (400, no database), req/s | $FLOOR (p99 $(p floor p99) ms) | | | | |
| peak RSS under load | $RSS_MB MB | | | 373 MB | ≤ 30 MB |
| start → first healthy answer | $STARTUP ms | | | 960 ms | ≤ 50 ms |
| event latency 201 → Redis subscriber at 1,000 writes/s | p50 $(p latency p50) ms, p99 $(p latency p99) ms | | | | p99 < 5 ms |
| backlog drain ($DRAINED of the $BACKLOG events still pending when measured) | $DRAIN events/s | redis-benchmark SET NX EX $R_SET, PUBLISH $R_PUB, XADD $R_XADD req/s | | | ≥ 30,000 events/s |

Raw lines of every round:

\`\`\`
$(for r in $(seq 1 "$RUNS"); do echo "# round $r"; cat "$OUT"/{create,get,list,search,update,mixed,floor,latency,drain}."$r"; done)
\`\`\`
MD
# The hand-written reading of the figures (profiles, causes, what was fixed) follows.
{ echo; cat bench/NOTES.md; } >> bench/RESULTS.md
echo "wrote bench/RESULTS.md"
