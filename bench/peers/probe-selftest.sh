#!/usr/bin/env bash
# probe-selftest.sh — the probe against one plain PostgreSQL 15 (port 15401,
# as postgres, in /var/tmp/pglease-peers-probetest.*): the multi-host conninfo
# skips the two dead ports; a restart (pg_ctl -m immediate) is ridden through.
# Prints the counts; exits non-zero if the probe acknowledged nothing.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
make -s -C "$here" probe
bin=/usr/lib/postgresql/15/bin
d=$(mktemp -d /var/tmp/pglease-peers-probetest.XXXX)
chown postgres: "$d"
pg() { runuser -u postgres -- "$@"; }
cleanup() {
	[ -n "${wpid:-}" ] && kill "$wpid" 2>/dev/null || true
	pg "$bin/pg_ctl" -D "$d/data" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$d"
}
trap cleanup EXIT
pg "$bin/initdb" -D "$d/data" -U postgres --auth=trust >/dev/null
start() { pg "$bin/pg_ctl" -D "$d/data" -w -l "$d/log" \
	-o "-p 15401 -k $d -c listen_addresses=127.0.0.1" start >/dev/null; }
start
pg "$bin/psql" -X -q -h "$d" -p 15401 -U postgres -c \
	"CREATE ROLE bench LOGIN PASSWORD 'bench'; CREATE TABLE bench_probe (id bigint, src text,
	 at timestamptz DEFAULT clock_timestamp()); GRANT ALL ON bench_probe TO bench"
ci="host=127.0.0.1,127.0.0.1,127.0.0.1 port=15400,15401,15402 user=bench password=bench"
ci="$ci dbname=postgres target_session_attrs=read-write connect_timeout=2"
"$here/probe" write -d 4 "$ci" > "$d/w.csv" 2>"$d/w.err" & wpid=$!
"$here/probe" sample -d 1 "host=127.0.0.1 port=15400 user=bench password=bench dbname=postgres" \
	"host=127.0.0.1 port=15401 user=bench password=bench dbname=postgres" > "$d/s.csv"
pg "$bin/pg_ctl" -D "$d/data" -m immediate stop >/dev/null
t0=$(python3 -c 'import time; print(time.monotonic_ns())')
sleep 0.5
start
wait "$wpid"; wpid=
acked=$(grep -c '^w,' "$d/w.csv" || true)
stored=$(pg "$bin/psql" -X -At -h "$d" -p 15401 -U postgres -c \
	"SELECT count(*) FROM bench_probe WHERE src = 'w'")
gap=$(awk -F, -v t0="$t0" '$1=="w" && $3<t0 {last=$3} $1=="w" && $3>t0 && !first {first=$3}
	END {printf "%.0f", (first-last)/1e6}' "$d/w.csv")
echo "writes acknowledged: $acked, stored: $stored, not acknowledged (u): $(grep -c '^u,' "$d/w.csv" || true)"
echo "write gap over the restart: $gap ms"
echo "samples: $(cut -d, -f2,4 "$d/s.csv" | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
[ "$acked" -gt 0 ]
