# Sourced by .ci/run (set -euo pipefail, at the repository's root): where the tests find the
# servers, and the leftovers of earlier runs dropped.
export TEST_DATABASE_URL="postgres://postgres@$PG_HOST:$PG_PORT/postgres"
export TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export TEST_MYSQL_URL="mysql://root@127.0.0.1:$MYSQL_PORT/test"
export TEST_NATS_URL="nats://127.0.0.1:$NATS_PORT"

# Each test creates its own database named cs_test_<uuid>; drop those of earlier runs.
psql "$TEST_DATABASE_URL" -Atc "select datname from pg_database where datname like 'cs\_test\_%'" |
    while read -r db; do psql "$TEST_DATABASE_URL" -qc "drop database if exists \"$db\"" || true; done

mysql -h 127.0.0.1 -P "$MYSQL_PORT" -u root -N -e "show databases like 'cs\_test\_%'" |
    while read -r db; do mysql -h 127.0.0.1 -P "$MYSQL_PORT" -u root -e "drop database if exists \`$db\`" || true; done

# Tests with the shared Redis name their keys and streams cs_test_<uuid>…; drop earlier runs'.
redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --scan --pattern 'cs_test_*' |
    xargs -r -n 500 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" del >/dev/null
