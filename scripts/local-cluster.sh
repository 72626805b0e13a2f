#!/usr/bin/env bash
# local-cluster.sh — run a pglease cluster of N nodes on loopback, without Docker.
#
#   scripts/local-cluster.sh start N        start nodes pg1..pgN (ports 54321..)
#   scripts/local-cluster.sh stop           stop every node (SIGTERM, clean)
#   scripts/local-cluster.sh status         pglease status against the shared store
#   scripts/local-cluster.sh kill NODE      kill -9 the node's agent and postgres
#   scripts/local-cluster.sh stop-node NODE SIGTERM to one node's agent
#   scripts/local-cluster.sh start-node NODE
#
# Environment: PGLEASE_CLUSTER_DIR (default: volumes/local/ in the checkout,
# a directory of its own: the store in $dir/lease, the nodes' data in
# $dir/nodes, the password in $dir/password; never docker-compose.yml's
# volumes/lease, whose nodes would find a store naming a cluster they do not
# have), PGLEASE_BASE_PORT (54321), PGLEASE_BIN, and any PGLEASE_<KEY>
# setting, passed to every agent (e.g. PGLEASE_LEASE_TTL_MS).
# As root, agents run as the postgres user.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
dir=${PGLEASE_CLUSTER_DIR:-$top/volumes/local}
base_port=${PGLEASE_BASE_PORT:-54321}
bin=${PGLEASE_BIN:-$top/pglease}

die() { echo "local-cluster.sh: $*" >&2; exit 2; }

as_pg() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

node_dir() { echo "$dir/nodes/$1"; }

node_pid() {
	local f
	f="$(node_dir "$1")/agent.pid"
	[ -f "$f" ] && cat "$f"
}

alive() { local p; p=$(node_pid "$1") && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

start_node() {
	local name=$1 nd port i
	i=${name#pg}
	[[ "$i" =~ ^[0-9]+$ ]] || die "node names are pg1, pg2, ...: got '$name'"
	nd=$(node_dir "$name")
	port=$((base_port + i - 1))
	alive "$name" && { echo "$name already running (pid $(node_pid "$name"))"; return 0; }
	mkdir -p "$nd" "$dir/lease"
	[ -f "$dir/password" ] || { head -c 18 /dev/urandom | base64 > "$dir/password"; }
	chmod 0640 "$dir/password"
	cat > "$nd/pglease.conf" <<CONF
# pglease configuration of $name (written by local-cluster.sh)
node_name = $name
lease_db = $dir/lease/lease.db
pgdata = $nd/data
pg_port = $port
advertise_host = 127.0.0.1
password_file = $dir/password
pg_socket_dir = $nd
allowed_network = 127.0.0.1/32
CONF
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres:postgres "$dir" "$dir/lease" "$dir/nodes" "$nd" "$nd/pglease.conf" "$dir/password"
		touch "$nd/agent.log"; chown postgres:postgres "$nd/agent.log"
		chmod 0770 "$dir/lease"
	fi
	# setsid: the agent gets its own session, so the shell's signals do not reach it.
	rm -f "$nd/agent.pid"
	as_pg setsid sh -c 'echo $$ > "$1"; exec "$2" run -c "$3"' sh "$nd/agent.pid" "$bin" \
		"$nd/pglease.conf" >>"$nd/agent.log" 2>&1 < /dev/null &
	for _ in $(seq 1 50); do [ -s "$nd/agent.pid" ] && break; sleep 0.1; done
	echo "started $name: port $port, pid $(node_pid "$name"), log $nd/agent.log"
}

stop_node() {
	local name=$1 p
	p=$(node_pid "$name") || true
	if [ -z "$p" ] || ! kill -0 "$p" 2>/dev/null; then echo "$name not running"; return 0; fi
	kill -TERM "$p"
	for _ in $(seq 1 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$p" 2>/dev/null && die "$name (pid $p) did not stop within 60 s"
	echo "stopped $name"
}

kill_node() {
	# Both pids are read before either is killed: the agent's fence watchdog
	# may stop PostgreSQL (and remove postmaster.pid) the moment the agent dies.
	local name=$1 p pm nd
	nd=$(node_dir "$name")
	p=$(node_pid "$name") || true
	pm=$(head -1 "$nd/data/postmaster.pid" 2>/dev/null) || true
	[ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
	[ -n "$pm" ] && kill -9 "$pm" 2>/dev/null || true
	echo "killed $name"
}

nodes() { ls "$dir/nodes" 2>/dev/null | sort -V; }

# Before issue 24 the default directory was volumes/ itself, whose lease/
# docker-compose.yml mounts too: say what to do with such leftovers.
legacy_note() {
	[ -z "${PGLEASE_CLUSTER_DIR:-}" ] && [ -d "$top/volumes/nodes" ] || return 0
	echo "local-cluster.sh: note: $top/volumes/nodes and volumes/lease hold a local cluster" \
		"of an older local-cluster.sh (its directory is now $dir); docker-compose.yml" \
		"mounts volumes/lease: once that cluster is stopped" \
		"(PGLEASE_CLUSTER_DIR=$top/volumes $0 stop), remove volumes/nodes," \
		"volumes/password and the files in volumes/lease" >&2
}

cmd=${1:-}
case "$cmd" in
start)
	n=${2:-3}
	[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "start N: N must be a positive integer, got '$n'"
	[ -x "$bin" ] || die "$bin not found: run make first"
	legacy_note
	echo "cluster directory $dir (store $dir/lease/lease.db)"
	for i in $(seq 1 "$n"); do start_node "pg$i"; done ;;
stop)
	# Standbys first, the primary last: stopping the primary first would hand
	# the lease to a standby that is about to stop too.
	h=$(sqlite3 "file:$dir/lease/lease.db?mode=ro" 'select holder from lease' 2>/dev/null || true)
	for n in $(nodes); do [ "$n" = "$h" ] || stop_node "$n"; done
	[ -z "$h" ] || [ ! -d "$(node_dir "$h")" ] || stop_node "$h" ;;
status)
	"$bin" status --lease-db "$dir/lease/lease.db" ;;
kill)
	[ -n "${2:-}" ] || die "kill NODE"; kill_node "$2" ;;
stop-node)
	[ -n "${2:-}" ] || die "stop-node NODE"; stop_node "$2" ;;
start-node)
	[ -n "${2:-}" ] || die "start-node NODE"; start_node "$2" ;;
*)
	sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; [ -z "$cmd" ] && exit 2; [ "$cmd" = -h ] || [ "$cmd" = --help ] || exit 2 ;;
esac
