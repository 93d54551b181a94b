#!/usr/bin/env bash
# Command 1: set everything up and run a throwaway PostgreSQL cluster (15 by
# default, PG_MAJOR=16 or 18 for the others; see scripts/setup.sh) with
# lightdb_bgw preloaded and two static counter workers.
#
#   bash scripts/run.sh          set up, build, install, (re)start the cluster
#   bash scripts/run.sh stop     stop the cluster
#
# The cluster lives in .cluster/ of the project (override with
# LIGHTDB_BGW_CLUSTER_DIR), listens on 127.0.0.1 and a private socket
# directory, port 54315 (override with LIGHTDB_BGW_PORT), so it never
# collides with a system server. Running it again is safe: it rebuilds,
# reinstalls and restarts the same cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

CLUSTER="${LIGHTDB_BGW_CLUSTER_DIR:-$PWD/.cluster}"
DATA="$CLUSTER/data"
PORT="${LIGHTDB_BGW_PORT:-54315}"
PSQL="psql -h $CLUSTER -p $PORT -U postgres postgres"

# The server's programs, once it is installed (stop needs none otherwise).
bindir() { "$PG_CONFIG" --bindir; }
pgctl() { as_postgres "$(bindir)/pg_ctl" -D "$DATA" "$@"; }
running() { [ -f "$DATA/postmaster.pid" ] && [ -x "$PG_CONFIG" ] && pgctl status >/dev/null 2>&1; }

case "${1:-start}" in
    stop)
        if running; then
            pgctl -m fast -w stop
        else
            echo "the lightdb_bgw cluster in $CLUSTER is not running"
        fi
        exit 0
        ;;
    start) ;;
    *)
        echo "usage: bash scripts/run.sh [start|stop]" >&2
        exit 2
        ;;
esac

ensure_toolchain
BINDIR="$(bindir)"
PSQL="$BINDIR/$PSQL"

log "building and installing lightdb_bgw (release)"
cargo pgrx install --release --pg-config "$PG_CONFIG"

if [ ! -f "$DATA/PG_VERSION" ]; then
    log "creating the cluster in $DATA"
    mkdir -p "$CLUSTER"
    chown postgres:postgres "$CLUSTER"
    if ! as_postgres test -w "$CLUSTER"; then
        echo "user postgres cannot reach $CLUSTER; set LIGHTDB_BGW_CLUSTER_DIR to a directory it can use" >&2
        exit 1
    fi
    as_postgres "$BINDIR/initdb" -D "$DATA" -A trust -U postgres -E UTF8 --locale=C >/dev/null
    cat >>"$DATA/postgresql.conf" <<CONF

# lightdb_bgw development cluster (scripts/run.sh)
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$CLUSTER'
shared_preload_libraries = 'lightdb_bgw'
lightdb_bgw.static_workers = 'counter:2'
lightdb_bgw.database = 'postgres'
lightdb_bgw.naptime = '2s'
max_worker_processes = 32
log_line_prefix = '%m [%p] %b '
CONF
fi

if running; then
    log "restarting the cluster to load the new build"
    pgctl -m fast -w stop >/dev/null
fi
log "starting the cluster on port $PORT"
pgctl -l "$CLUSTER/server.log" -w -t 60 start >/dev/null

as_postgres $PSQL -q -X -v ON_ERROR_STOP=1 -c "CREATE EXTENSION IF NOT EXISTS lightdb_bgw"

log "waiting for the static counters"
for _ in $(seq 1 300); do
    n=$(as_postgres $PSQL -At -X -c "SELECT count(*) FROM lightdb_bgw.workers WHERE status = 'started'")
    [ "$n" = 2 ] && break
    sleep 0.1
done

as_postgres $PSQL -X -c "SELECT id, name, kind, database, pid, status, started_at FROM lightdb_bgw.workers ORDER BY id"
as_postgres $PSQL -X -c "SELECT pid, backend_type, application_name, state FROM pg_stat_activity WHERE backend_type = 'lightdb_bgw' ORDER BY application_name"

cat <<EOT
lightdb_bgw is running in $DATA (log: $CLUSTER/server.log).

Connect:      $PSQL
Try:          INSERT INTO lightdb_bgw_counter_1.counted VALUES ('delta', 5);
              -- two seconds later:
              SELECT * FROM lightdb_bgw_counter_1.counted;
Stop it:      bash scripts/run.sh stop
EOT
