#!/bin/sh
# pglease container entrypoint. Runs under tini (PID 1), which forwards
# SIGTERM from `docker stop` and reaps orphaned processes.
#
# Started as root (the default): makes the lease store and the data
# directory usable by the postgres user (a bind-mounted host directory is
# usually owned by root), then drops to postgres with setpriv and execs
# `pglease "$@"` -- exec all the way, so pglease gets tini's signals
# directly. Started as another user (docker run --user ...): execs pglease
# as that user with no changes.
#
# Every subcommand (run, health, status, ...) goes through this drop, so
# root never opens the lease database (SQLite would otherwise leave
# root-owned -wal/-shm files that postgres cannot open).
set -eu

PGLEASE_BIN=/usr/local/libexec/pglease
[ $# -gt 0 ] || set -- run

if [ "$(id -u)" != 0 ]; then
    exec "$PGLEASE_BIN" "$@"
fi

if [ "$1" = run ]; then
    lease_dir=$(dirname "${PGLEASE_LEASE_DB:-/var/lib/pglease/lease.db}")
    pgdata=${PGLEASE_PGDATA:-/var/lib/postgresql/data/pgdata}
    data_parent=$(dirname "$pgdata")

    mkdir -p "$lease_dir" "$data_parent"
    # Only files not already owned by postgres are touched: cheap on restarts.
    find "$lease_dir" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 0770 "$lease_dir"
    # The data directory: fix the parent (and pgdata if some other uid owns
    # files in it, e.g. after a uid change); postgres itself insists on 0700.
    find "$data_parent" -xdev \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 0700 "$data_parent"
    [ ! -d "$pgdata" ] || chmod 0700 "$pgdata"
    mkdir -p /run/postgresql
    chown postgres:postgres /run/postgresql
    chmod 2775 /run/postgresql

    # No password given: the first node generates one in the shared lease
    # directory (created with link(2), so concurrent nodes agree on one).
    pw=${PGLEASE_PASSWORD_FILE:-$lease_dir/password}
    if [ ! -s "$pw" ] && [ "$(dirname "$pw")" = "$lease_dir" ]; then
        tmp=$(mktemp "$pw.XXXXXX")     # unique even when every container's pid is 7
        head -c 24 /dev/urandom | base64 > "$tmp"
        chown postgres:postgres "$tmp"
        ln "$tmp" "$pw" 2>/dev/null || true
        rm -f "$tmp"
    fi
    export PGLEASE_PASSWORD_FILE="$pw"

    if command -v mountpoint >/dev/null 2>&1 && ! mountpoint -q "$lease_dir"; then
        echo "pglease-entrypoint: WARNING: $lease_dir is not a mounted volume;" \
             "this node does not share its lease store with any other node" >&2
    fi
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$PGLEASE_BIN" "$@"
