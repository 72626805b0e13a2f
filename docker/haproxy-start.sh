#!/bin/sh
# Entrypoint of the compose files' haproxy service (runs as user haproxy,
# under tini): sets the statistics page's password, then execs HAProxy on
# /usr/local/etc/pglease/haproxy.cfg, whose `stats auth` line reads it from
# the environment.
#
#   PGLEASE_HAPROXY_STATS_USER           user name (default admin; no ':')
#   PGLEASE_HAPROXY_STATS_PASSWORD_FILE  a file holding the password (a
#                                        docker secret), or
#   PGLEASE_HAPROXY_STATS_PASSWORD       the password itself.
#
# With neither, a random password is generated at each start and written
# to /var/lib/haproxy/stats-password (mode 0600, the haproxy user's):
#   docker-compose exec haproxy cat /var/lib/haproxy/stats-password
# The password is never on a command line, and not in the log.
set -eu

cfg=${PGLEASE_HAPROXY_CFG:-/usr/local/etc/pglease/haproxy.cfg}
generated=/var/lib/haproxy/stats-password
user=${PGLEASE_HAPROXY_STATS_USER:-admin}

case "$user" in
''|*:*|*[[:space:]]*)
    echo "haproxy-start: PGLEASE_HAPROXY_STATS_USER must be a non-empty name without ':' or spaces" >&2
    exit 2 ;;
esac

if [ -n "${PGLEASE_HAPROXY_STATS_PASSWORD_FILE:-}" ]; then
    if [ -n "${PGLEASE_HAPROXY_STATS_PASSWORD:-}" ]; then
        echo "haproxy-start: set PGLEASE_HAPROXY_STATS_PASSWORD or PGLEASE_HAPROXY_STATS_PASSWORD_FILE, not both" >&2
        exit 2
    fi
    [ -r "$PGLEASE_HAPROXY_STATS_PASSWORD_FILE" ] || {
        echo "haproxy-start: PGLEASE_HAPROXY_STATS_PASSWORD_FILE $PGLEASE_HAPROXY_STATS_PASSWORD_FILE is not readable" >&2
        exit 2
    }
    PGLEASE_HAPROXY_STATS_PASSWORD=$(head -n 1 "$PGLEASE_HAPROXY_STATS_PASSWORD_FILE")
    [ -n "$PGLEASE_HAPROXY_STATS_PASSWORD" ] || {
        echo "haproxy-start: $PGLEASE_HAPROXY_STATS_PASSWORD_FILE is empty" >&2
        exit 2
    }
    src="from $PGLEASE_HAPROXY_STATS_PASSWORD_FILE"
elif [ -n "${PGLEASE_HAPROXY_STATS_PASSWORD:-}" ]; then
    src="from PGLEASE_HAPROXY_STATS_PASSWORD"
else
    PGLEASE_HAPROXY_STATS_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr '/+' '_-')
    (umask 077; rm -f "$generated"; printf '%s\n' "$PGLEASE_HAPROXY_STATS_PASSWORD" > "$generated")
    src="generated, in $generated"
fi
[ -n "$PGLEASE_HAPROXY_STATS_PASSWORD" ] || { echo "haproxy-start: no password" >&2; exit 2; }
export PGLEASE_HAPROXY_STATS_USER="$user" PGLEASE_HAPROXY_STATS_PASSWORD PGLEASE_HAPROXY_STATS_CHECKED=1
unset PGLEASE_HAPROXY_STATS_PASSWORD_FILE
echo "haproxy-start: statistics page on :7000, user $user, password $src" >&2
exec haproxy -W -db -f "$cfg"
