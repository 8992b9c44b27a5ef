#!/usr/bin/env bash
# The ecosystem's own validators against the documents a running service publishes:
#   - @asyncapi/parser (npm) on /api/v1/events/asyncapi.json, with the Redis and NATS
#     channels configured when TEST_REDIS_URL / TEST_NATS_URL name servers;
#   - schemathesis (PyPI) on /api/docs/openapi.json: every default check but
#     `unsupported_method` (the contract's 404 "Cannot METHOD …" for methods a route does not
#     have is the original's behaviour), a fixed seed and a bounded number of cases.
# Exits non-zero on any error either reports. The tools come from the pinned
# tools/validators/package-lock.json and requirements.txt, installed once into
# tools/validators/node_modules and target/tools/venv.
#
#   tools/validate-docs.sh                        # SERVICE_BIN=target/debug/customer-service
#   MAX_EXAMPLES=200 SEED=7 tools/validate-docs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${SERVICE_BIN:-$ROOT/target/debug/customer-service}
SEED=${SEED:-20261207}
MAX_EXAMPLES=${MAX_EXAMPLES:-40}
VALIDATORS=$ROOT/tools/validators
VENV=$ROOT/target/tools/venv

[ -x "$BIN" ] || { echo "no service binary at $BIN (cargo build first)" >&2; exit 1; }

# --- the tools, installed when the pinned versions changed ------------------------------------
if ! cmp -s "$VALIDATORS/package-lock.json" "$VALIDATORS/node_modules/.package-lock.json.installed" 2>/dev/null; then
    (cd "$VALIDATORS" && npm ci --no-audit --no-fund --ignore-scripts >/dev/null)
    cp "$VALIDATORS/package-lock.json" "$VALIDATORS/node_modules/.package-lock.json.installed"
fi
if ! cmp -s "$VALIDATORS/requirements.txt" "$VENV/requirements.installed" 2>/dev/null; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$VALIDATORS/requirements.txt"
    cp "$VALIDATORS/requirements.txt" "$VENV/requirements.installed"
fi

# --- a service of its own: SQLite in a temp dir, its own Redis names and NATS stream ----------
WORK=$(mktemp -d)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
NAME=cs_test_docs_$(python3 -c 'import uuid; print(uuid.uuid4().hex)')
env -i PATH="$PATH" HOME="${HOME:-/root}" \
    HOST=127.0.0.1 PORT="$PORT" DATABASE_URL="sqlite://$WORK/customers.db" LOG_FORMAT=json RUST_LOG=warn \
    ${TEST_REDIS_URL:+REDIS_URL="$TEST_REDIS_URL" REDIS_KEY_PREFIX="$NAME" EVENT_CHANNEL="$NAME" EVENT_STREAM="$NAME:stream"} \
    ${TEST_NATS_URL:+NATS_URL="$TEST_NATS_URL" NATS_STREAM="${NAME^^}" NATS_SUBJECT_PREFIX="$NAME"} \
    "$BIN" > "$WORK/service.log" 2>&1 &
PID=$!
BASE=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do
    curl -fsS "$BASE/livez" >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/service.log" >&2; exit 1; }
    sleep 0.1
done

echo "== @asyncapi/parser: $BASE/api/v1/events/asyncapi.json"
node "$VALIDATORS/check-asyncapi.mjs" "$BASE/api/v1/events/asyncapi.json"

echo "== schemathesis: $BASE/api/docs/openapi.json (seed $SEED, at most $MAX_EXAMPLES cases per operation)"
status=0
export PYTHONPATH=$VALIDATORS SCHEMATHESIS_HOOKS=hooks
# From the temp dir: schemathesis keeps a cache of earlier runs' crashes in the working
# directory, which would make a run depend on the ones before it.
st() { (cd "$WORK" && "$VENV/bin/schemathesis" --config-file "$VALIDATORS/schemathesis.toml" run "$BASE/api/docs/openapi.json" \
    --exclude-checks unsupported_method --workers 1 --seed "$SEED" \
    --suppress-health-check too_slow,filter_too_much --output-truncate false "$@"); }
# Every operation but the event streams, in every phase.
st --exclude-path-regex '/stream$' --max-examples "$MAX_EXAMPLES" --request-timeout 10 || status=$?
# The event streams never end by themselves: each request is read for 2 s, so only a few.
echo "== schemathesis: the event streams"
st --include-path-regex '/stream$' --phases examples,fuzzing --max-examples 3 --request-timeout 2 || status=$?
if [ "$status" -ne 0 ] && grep -q '"level":"ERROR"' "$WORK/service.log"; then
    echo "== the service's errors" >&2
    grep '"level":"ERROR"' "$WORK/service.log" | tail -n 20 >&2
fi
exit "$status"
