#!/usr/bin/env bash
# Issue #18's figures, on this machine, in one run:
#   1. relay drain rate of a backlog, and 201 -> consumer latency, on one Redis server and on a
#      Redis Cluster (3 masters + 3 replicas, started here; arrivals on the pub/sub channel),
#      and with the NATS JetStream sink (arrivals at an ordered pull consumer of the stream)
#   2. GET throughput on the primary alone and with a streaming replica (a PostgreSQL
#      primary and its pg_basebackup replica, both started here)
# Uses the machine's PostgreSQL (for 1) and Redis, and starts its own nats-server. Prints the figures;
# bench/SCALE-OUT.md records them by hand with the machine and commit.
set -euo pipefail
cd "$(dirname "$0")/.."

BACKLOG=${BACKLOG:-50000}
RATE=${RATE:-1000}
PORT=${PORT:-3099}
PG=postgres://postgres@127.0.0.1:5432
RUN=bench_$(date +%s)
WORK=$(mktemp -d /tmp/cs_bench_XXXX)
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

cargo build --release -p customer-service -p loadgen
BIN=target/release/customer-service
LOADGEN=target/release/loadgen

SERVICE=
NATS=
CLUSTER_PORTS=(32101 32102 32103 32104 32105 32106)
cleanup() {
    [ -n "$SERVICE" ] && kill "$SERVICE" 2>/dev/null && wait "$SERVICE" 2>/dev/null || true
    [ -n "$NATS" ] && kill "$NATS" 2>/dev/null && wait "$NATS" 2>/dev/null || true
    for p in "${CLUSTER_PORTS[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
    for d in primary replica; do
        [ -d "$WORK/$d" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/$d" -m immediate stop >/dev/null 2>&1 || true
    done
    for db in $(psql "$PG/postgres" -Atc "select datname from pg_database where datname like '${RUN}%'"); do
        psql "$PG/postgres" -qc "drop database if exists $db" || true
    done
    redis-cli --scan --pattern "$RUN*" | xargs -r -n 1000 redis-cli del >/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

start() { # $1 = database URL, $2 = RELAY_ENABLED, then VAR=value… for the sink
    local url=$1 relay=$2
    shift 2
    env DATABASE_URL="$url" PORT=$PORT RUST_LOG=warn RELAY_ENABLED=$relay DATABASE_POOL_SIZE=16 \
        REDIS_KEY_PREFIX=$RUN EVENT_CHANNEL=$RUN:events "$@" "$BIN" & SERVICE=$!
    until curl -sf "http://127.0.0.1:$PORT/api/v1/customers/health" >/dev/null; do sleep 0.05; done
}
stop() { kill "$SERVICE"; wait "$SERVICE" || true; SERVICE=; }

relay_figures() { # $1 = label, $2 = loadgen's options naming where to time arrivals ('|' between several), then the sink's VAR=value…
    local label=$1 arrivals=$2 db=${RUN}_$1
    shift 2
    psql "$PG/postgres" -qc "create database $db"
    echo "== $label: backlog of $BACKLOG events (relay off), then the drain"
    start "$PG/$db" false EVENT_STREAM="$RUN:$label:stream" "$@"
    "$LOADGEN" --base-url "http://127.0.0.1:$PORT" create --count "$BACKLOG" --connections 16 >/dev/null
    stop
    start "$PG/$db" true EVENT_STREAM="$RUN:$label:stream" "$@"
    "$LOADGEN" --base-url "http://127.0.0.1:$PORT" drain
    local list options opts
    IFS='|' read -r -a list <<< "$arrivals"
    for options in "${list[@]}"; do
        echo "== $label: 201 -> consumer at $RATE writes/s ($options)"
        read -r -a opts <<< "$options"
        "$LOADGEN" --base-url "http://127.0.0.1:$PORT" event-latency "${opts[@]}" \
            --channel "$RUN:events" --rate "$RATE" --duration-secs 10
    done
    stop
}

# --- 1. the relay: one Redis, a Redis Cluster, NATS JetStream ------------------------------
relay_figures single "--redis-url redis://127.0.0.1:6379" REDIS_URL=redis://127.0.0.1:6379

for p in "${CLUSTER_PORTS[@]}"; do
    mkdir -p "$WORK/redis/$p"
    redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes --cluster-port $((p + 1000)) \
        --cluster-node-timeout 1000 --cluster-config-file "$WORK/redis/$p/nodes.conf" --save "" \
        --appendonly no --dir "$WORK/redis/$p" --daemonize yes --logfile "$WORK/redis/$p/log"
done
sleep 1
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${CLUSTER_PORTS[@]}") --cluster-replicas 1 \
    --cluster-yes >/dev/null
until redis-cli -p "${CLUSTER_PORTS[0]}" cluster info | grep -q cluster_state:ok; do sleep 0.2; done
sleep 3 # the replicas' first sync
NODES=$(printf '127.0.0.1:%s,' "${CLUSTER_PORTS[@]}")
# Subscribers on the master of the stream's slot (where the relay's PUBLISH runs) and on
# another node (a cluster forwards PUBLISH to every node over its bus).
SLOT=$(redis-cli -p "${CLUSTER_PORTS[0]}" cluster keyslot "$RUN:cluster:stream")
STREAM_MASTER=$(redis-cli -p "${CLUSTER_PORTS[0]}" cluster nodes | awk -v slot="$SLOT" '
    $3 ~ /master/ { for (i = 9; i <= NF; i++) { n = split($i, r, "-"); if (n == 1) r[2] = r[1]
        if (slot >= r[1] && slot <= r[2]) { split($2, a, "[:@]"); print a[2] } } }')
OTHER_NODE=${CLUSTER_PORTS[0]}
[ "$OTHER_NODE" = "$STREAM_MASTER" ] && OTHER_NODE=${CLUSTER_PORTS[1]}
relay_figures cluster \
    "--redis-url redis://127.0.0.1:$STREAM_MASTER|--redis-url redis://127.0.0.1:$OTHER_NODE" \
    REDIS_CLUSTER_NODES="${NODES%,}"
echo "== cluster: the bare work, one client: SET then WAIT 1 1000, 1000 times, on the stream's master"
for i in $(seq 1000); do printf 'SET {%s}:bare:%s v\nWAIT 1 1000\n' "$RUN:cluster:stream" "$i"; done > "$WORK/setwait"
BARE_START=$(date +%s%N)
redis-cli -p "$STREAM_MASTER" < "$WORK/setwait" >/dev/null
echo "SET + WAIT 1: $(( ($(date +%s%N) - BARE_START) / 1000000 )) µs per pair"

# A nats-server of this run's own (JetStream in $WORK), so that nothing stays behind.
NATS_PORT=32201
"$(command -v nats-server || echo /usr/sbin/nats-server)" -js -a 127.0.0.1 -p "$NATS_PORT" \
    -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 & NATS=$!
until (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null; do sleep 0.1; done
relay_figures jetstream "--nats-url nats://127.0.0.1:$NATS_PORT --nats-stream CUSTOMER_EVENTS" \
    NATS_URL="nats://127.0.0.1:$NATS_PORT"

# --- 2. reads: the primary alone, then with a streaming replica -----------------------------
mkdir -p "$WORK/primary" && chown postgres "$WORK" "$WORK/primary"
runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/primary" -A trust -U postgres --no-sync >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/primary" -l "$WORK/primary.log" -w \
    -o "-p 5481 -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
runuser -u postgres -- "$PG_BIN/pg_basebackup" -D "$WORK/replica" -h 127.0.0.1 -p 5481 -U postgres \
    -R -X stream --no-sync
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/replica" -l "$WORK/replica.log" -w \
    -o "-p 5482 -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
PRIMARY=postgres://postgres@127.0.0.1:5481/postgres
REPLICA=postgres://postgres@127.0.0.1:5482/postgres
start "$PRIMARY" true
"$LOADGEN" --base-url "http://127.0.0.1:$PORT" create --count 20000 --connections 16 >/dev/null
stop
sleep 1
echo "== GET by id, primary alone"
start "$PRIMARY" true
"$LOADGEN" --base-url "http://127.0.0.1:$PORT" run --scenario get --duration-secs 15
stop
echo "== GET by id, with the replica (DATABASE_READ_URL)"
start "$PRIMARY" true DATABASE_READ_URL="$REPLICA"
until curl -sf "http://127.0.0.1:$PORT/api/v1/health" | grep -q '"replica":{"status":"ok"'; do sleep 0.2; done
"$LOADGEN" --base-url "http://127.0.0.1:$PORT" run --scenario get --duration-secs 15
curl -s "http://127.0.0.1:$PORT/metrics" | grep '^database_replica_reads_total'
stop

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD)"
