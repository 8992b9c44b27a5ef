# Sourced by .ci/run (set -euo pipefail, at the repository's root): the machine's PostgreSQL,
# Redis, MariaDB and NATS, started with their documented commands if they are down.
PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_PORT=6379
MYSQL_PORT=3306
NATS_PORT=4222

# --- services: start them with the machine's documented commands if they are down --------
if ! pg_isready -h "$PG_HOST" -p "$PG_PORT" -q; then
    echo "PostgreSQL is not answering; starting it"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
fi
for _ in $(seq 1 30); do pg_isready -h "$PG_HOST" -p "$PG_PORT" -q && break; sleep 1; done
pg_isready -h "$PG_HOST" -p "$PG_PORT" || { echo "PostgreSQL is unreachable" >&2; exit 1; }

if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    echo "Redis is not answering; starting it"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 1; done
redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null || { echo "Redis is unreachable" >&2; exit 1; }

mysql_up() { mysqladmin -h 127.0.0.1 -P "$MYSQL_PORT" -u root ping >/dev/null 2>&1; }
if ! mysql_up; then
    echo "MariaDB is not answering; starting it"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
for _ in $(seq 1 30); do mysql_up && break; sleep 1; done
mysql_up || { echo "MariaDB is unreachable" >&2; exit 1; }

# NATS with JetStream, for the JetStream sink's tests (each uses its own subjects and stream).
nats_up() { (exec 3<>/dev/tcp/127.0.0.1/$NATS_PORT) 2>/dev/null; }
if ! nats_up; then
    echo "NATS is not answering; starting it"
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p "$NATS_PORT" -js -sd /var/lib/nats-server -l /var/log/nats-server.log
fi
for _ in $(seq 1 30); do nats_up && break; sleep 1; done
nats_up || { echo "NATS is unreachable" >&2; exit 1; }
