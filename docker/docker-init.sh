#!/bin/sh
# pglease's bootstrap_program in the Docker image: the official postgres
# image's first-start conventions, run ONCE, by the node that bootstraps the
# cluster (pglease runs it after initdb, before the node serves as primary;
# the other nodes clone the result).
#
#   POSTGRES_PASSWORD / POSTGRES_PASSWORD_FILE   password of POSTGRES_USER
#   POSTGRES_USER   (default postgres) a LOGIN role that owns POSTGRES_DB; it
#                   is NOT a superuser (unlike the official image): the only
#                   superuser is postgres, which, unless POSTGRES_USER is
#                   postgres itself, has no password and logs in only on the
#                   container's Unix socket
#   POSTGRES_DB     (default POSTGRES_USER) created, owned by POSTGRES_USER
#   /docker-entrypoint-initdb.d/   *.sh (executed if executable, else sourced),
#                   *.sql, *.sql.gz, *.sql.xz run with psql in POSTGRES_DB, in
#                   the order of their names; anything else is skipped
#
# pglease sets PGHOST, PGPORT, PGUSER=postgres (peer authentication) and
# PGOPTIONS (no wait for a synchronous standby) for it.  Any failure stops
# here with a non-zero exit: pglease logs the output, and the cluster's
# bootstrap event says "bootstrap_program FAILED".  Values are passed to psql
# as variables (:'v', :"v"), never spliced into SQL text; the password never
# on any command line (psql's \getenv reads it from the environment).
set -eu

initdir=${PGLEASE_INITDB_DIR:-/docker-entrypoint-initdb.d}

if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        echo "docker-init: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE, not both" >&2
        exit 1
    fi
    [ -r "$POSTGRES_PASSWORD_FILE" ] || {
        echo "docker-init: POSTGRES_PASSWORD_FILE $POSTGRES_PASSWORD_FILE is not readable" >&2
        exit 1
    }
    POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
fi
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
pw=${POSTGRES_PASSWORD:-}

psql_() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

if [ "$user" != postgres ] || [ -n "$pw" ]; then
    # The password reaches psql in its environment (PGLEASE_INIT_PASSWORD,
    # exported for this psql alone and read with \getenv): never argv, which
    # any local user reads in /proc/PID/cmdline while psql runs (environ is
    # readable by the same user and root only), never the server log
    # (log_statement off for this session).  The script itself is on stdin.
    printf '%s\n' \
        "SET log_statement = 'none';" \
        "SET log_min_error_statement = 'panic';" \
        "SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') AS create_role \\gset" \
        "\\if :create_role" \
        "  CREATE ROLE :\"user\" LOGIN;" \
        "\\endif" \
        "\\getenv pw PGLEASE_INIT_PASSWORD" \
        "\\if :{?pw}" \
        "  ALTER ROLE :\"user\" PASSWORD :'pw';" \
        "\\endif" |
        if [ -n "$pw" ]; then
            (export PGLEASE_INIT_PASSWORD="$pw"; psql_ -v user="$user")
        else
            (unset PGLEASE_INIT_PASSWORD; psql_ -v user="$user")
        fi
    echo "docker-init: role $user ready${pw:+ (with a password)}"
fi

if [ "$db" != postgres ]; then
    printf '%s\n' \
        "SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') AS create_db \\gset" \
        "\\if :create_db" \
        "  CREATE DATABASE :\"db\" OWNER :\"user\";" \
        "\\endif" | psql_ -v user="$user" -v db="$db"
    echo "docker-init: database $db ready (owner $user)"
fi

if [ -d "$initdir" ]; then
    export PGDATABASE="$db"
    for f in "$initdir"/*; do
        [ -e "$f" ] || continue
        case "$f" in
            *.sh)
                if [ -x "$f" ]; then
                    echo "docker-init: running $f"
                    "$f"
                else
                    echo "docker-init: sourcing $f"
                    # shellcheck disable=SC1090
                    . "$f"
                fi ;;
            *.sql)    echo "docker-init: running $f"; psql_ -f "$f" ;;
            *.sql.gz) echo "docker-init: running $f"; gzip -dc "$f" | psql_ ;;
            *.sql.xz) echo "docker-init: running $f"; xz -dc "$f" | psql_ ;;
            *)        echo "docker-init: ignoring $f" ;;
        esac
    done
fi
