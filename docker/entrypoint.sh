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

# chown -h to postgres of what under $1 is not postgres's.  -execdir, never
# -exec: chown runs inside the directory find itself entered (find never
# follows a symlink) and is given ./NAME, so a directory of the tree swapped
# for a symlink between find's listing and the chown (root in another
# container sharing the lease directory can do that) leads nowhere; with
# -exec, chown -h walked the full path through the swapped directory and
# chowned what the symlink pointed at (a stand-in /etc/shadow, in a test).
# Files may vanish while find runs (another node's temporary password file in
# the shared directory): a first pass that fails is tried once more, and only
# the second one's error counts.  test/docker/test_entrypoint_chown.py races
# this function against such a swap.
chown_tree() {
    find "$1" -xdev \! -user postgres -execdir chown -h postgres:postgres '{}' + 2>/dev/null ||
        find "$1" -xdev \! -user postgres -execdir chown -h postgres:postgres '{}' +
}

# The lease store on etcd (etcd://..., docker-compose.etcd.yml): there is no
# shared directory to prepare, and the password comes from a secret.
case "${PGLEASE_LEASE_DB:-}" in
*://*) store_url=1 ;;
*) store_url=0 ;;
esac

if [ "$1" = run ] && [ "$store_url" = 1 ]; then
    data_parent=$(dirname "${PGLEASE_PGDATA:-/var/lib/postgresql/data/pgdata}")
    mkdir -p "$data_parent"
    chown_tree "$data_parent"
    chmod 0700 "$data_parent"
    install -d -o postgres -g postgres -m 0700 /var/run/postgresql
    if [ -z "${PGLEASE_PASSWORD_FILE:-}" ]; then
        echo "pglease-entrypoint: PGLEASE_PASSWORD_FILE must name the replication password" \
             "(a secret shared by every node) when the lease store is on etcd" >&2
        exit 2
    fi
elif [ "$1" = run ]; then
    lease_dir=$(dirname "${PGLEASE_LEASE_DB:-/var/lib/pglease/lease.db}")
    pgdata=${PGLEASE_PGDATA:-/var/lib/postgresql/data/pgdata}
    data_parent=$(dirname "$pgdata")

    mkdir -p "$lease_dir" "$data_parent"
    # Only files not already owned by postgres are touched: cheap on restarts.
    # Never through a symlink (chown -h, and find does not follow them): the
    # lease directory is shared, and root in another container could plant
    # a link to this container's /etc/passwd there.
    chown_tree "$lease_dir"
    chmod 0770 "$lease_dir"
    # The data directory: fix the parent (and pgdata if some other uid owns
    # files in it, e.g. after a uid change); postgres itself insists on 0700.
    chown_tree "$data_parent"
    chmod 0700 "$data_parent"
    [ -L "$pgdata" ] || [ ! -d "$pgdata" ] || chmod 0700 "$pgdata"
    # The Unix socket's directory, as in the official image; the socket
    # itself is 0700 and authenticated by peer (root maps to postgres), so
    # `docker exec NODE psql -U postgres` works as root or postgres only.
    install -d -o postgres -g postgres -m 0700 /var/run/postgresql

    # No password given: the first node generates one in the shared lease
    # directory (created with link(2), so concurrent nodes agree on one).
    # Nothing here follows a symlink planted in the shared directory: the
    # file is created with O_EXCL|O_NOFOLLOW (dd conv=excl oflag=nofollow),
    # chown -h, a hard link of the link itself (ln -P), rm of the name.
    pw=${PGLEASE_PASSWORD_FILE:-$lease_dir/password}
    if [ ! -L "$pw" ] && [ ! -s "$pw" ] && [ "$(dirname "$pw")" = "$lease_dir" ]; then
        tmp="$pw.$(head -c 9 /dev/urandom | base64 | tr '/+' '_-')"
        if head -c 24 /dev/urandom | base64 |
            (umask 077; dd of="$tmp" conv=excl oflag=nofollow status=none); then
            chown -h postgres:postgres "$tmp"
            ln -P "$tmp" "$pw" 2>/dev/null || true
        fi
        rm -f "$tmp"
    fi
    export PGLEASE_PASSWORD_FILE="$pw"

    if command -v mountpoint >/dev/null 2>&1 && ! mountpoint -q "$lease_dir"; then
        echo "pglease-entrypoint: WARNING: $lease_dir is not a mounted volume;" \
             "this node does not share its lease store with any other node" >&2
    fi
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$PGLEASE_BIN" "$@"
