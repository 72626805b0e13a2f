#!/usr/bin/env bash
#
# test/fence/run.sh — tests of the pglease_fence extension (src/fence/)
# against a real, throwaway PostgreSQL 15 cluster.
#
# Builds and installs the extension (needs root), initdbs a cluster as the
# postgres OS user in a temp dir with a private port and socket dir, and
# checks that writing transactions are refused past the fence deadline and
# when the postmaster is gone, while reads and disarmed/disabled fences let
# everything through.  Ends with `N passed, M failed`; exits non-zero on any
# failure.  Keeps the temp dir (cluster log) when something failed.
#
# Environment: PGBIN (default /usr/lib/postgresql/15/bin),
# FENCE_CONTROL=1 also runs the orphan scenario with the fence disabled and
# expects that commit to go through (shows the scenario is meaningful).

set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PASS=0
FAIL=0
TMP=
PORT=
DATA=
BG_PIDS=()		# background processes we started (psql clients)
ORPHAN_PIDS=()	# server processes left behind after we killed a postmaster
FROZEN_PIDS=()	# server processes we SIGSTOPped (resumed on exit)

ok()   { PASS=$((PASS + 1)); echo "ok   - $*"; }
nok()  { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }
check() {	# check "description" command...
	local what=$1; shift
	if "$@"; then ok "$what"; else nok "$what"; fi
}

# psql as postgres on our private socket; extra args are passed through.
pg()     { runuser -u postgres -- "$PGBIN/psql" -X -q -At -h "$TMP" -p "$PORT" -d postgres "$@"; }
# Run SQL, print stdout+stderr (errors included), never abort the script.
pg_out() { pg -v ON_ERROR_STOP=1 -c "$1" 2>&1; }
pg_ctl() { runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA" "$@"; }

# The server's CLOCK_MONOTONIC now, in ms, as the fence sees it.
now_ms() { pg -c "SELECT now_ms FROM pglease_fence_status()"; }
arm_in() { pg -c "SELECT pglease_fence_arm($(now_ms) + ($1))" >/dev/null; }
count()  { pg -c "SELECT count(*) FROM t WHERE $1"; }

postmaster_pid() { head -n 1 "$DATA/postmaster.pid" 2>/dev/null; }
alive() { kill -0 "$1" 2>/dev/null; }

# wait_gone SECONDS PID...: 0 once none of the pids exists.
wait_gone() {
	local deadline=$((SECONDS + $1)) p any; shift
	while :; do
		any=0
		for p in "$@"; do alive "$p" && any=1; done
		[ $any = 0 ] && return 0
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.1
	done
}

# poll SECONDS SQL EXPECTED: 0 once SQL prints EXPECTED.
poll() {
	local deadline=$((SECONDS + $1))
	while [ "$(pg -c "$2" 2>/dev/null)" != "$3" ]; do
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.1
	done
}

cleanup() {
	local p pm
	for p in "${FROZEN_PIDS[@]}"; do alive "$p" && kill -CONT "$p" 2>/dev/null; done
	for p in "${BG_PIDS[@]}"; do alive "$p" && kill "$p" 2>/dev/null; done
	if [ -n "$DATA" ]; then
		pm=$(postmaster_pid)
		if [ -n "$pm" ] && alive "$pm"; then
			pg_ctl -m immediate -w stop >/dev/null 2>&1
		fi
	fi
	for p in "${ORPHAN_PIDS[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
	if [ -n "$TMP" ]; then
		if [ "$FAIL" = 0 ]; then rm -rf "$TMP"; else echo "kept $TMP (server log: $TMP/server.log)"; fi
	fi
}
trap cleanup EXIT

contains() { case $1 in *"$2"*) return 0 ;; esac; return 1; }

# ---- build, install, cluster ---------------------------------------------

if [ "$(id -u)" != 0 ]; then
	echo "test/fence/run.sh: must run as root (installs the extension, runs postgres as postgres)" >&2
	exit 2
fi
if ! make -s -C "$ROOT/src/fence" >/dev/null || ! make -s -C "$ROOT/src/fence" install >/dev/null; then
	nok "build and install the extension"
	echo "$PASS passed, $FAIL failed"
	exit 1
fi
ok "build and install the extension"

TMP=$(mktemp -d /tmp/pglease-fence.XXXXXX)
chown postgres: "$TMP"
chmod 700 "$TMP"
DATA=$TMP/data
cd "$TMP" || exit 2
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

runuser -u postgres -- "$PGBIN/initdb" -D "$DATA" -U postgres -A trust --no-sync >"$TMP/initdb.log" 2>&1 \
	|| { nok "initdb"; cat "$TMP/initdb.log"; echo "$PASS passed, $FAIL failed"; exit 1; }
cat >>"$DATA/postgresql.conf" <<EOF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$TMP'
shared_preload_libraries = 'pglease_fence'
max_prepared_transactions = 4
fsync = off
max_wal_size = 4GB
EOF

start_server() { pg_ctl -l "$TMP/server.log" -w -t 60 start >"$TMP/pg_ctl.out" 2>&1; }
if ! start_server; then
	nok "start the cluster"; cat "$TMP/server.log"
	echo "$PASS passed, $FAIL failed"; exit 1
fi
ok "start the cluster with shared_preload_libraries = 'pglease_fence'"

check "CREATE EXTENSION pglease_fence" \
	pg -v ON_ERROR_STOP=1 -c "CREATE EXTENSION pglease_fence" -c "CREATE TABLE t (v bigint)"

MSG_DEADLINE="pglease: refusing to commit: this node's lease deadline has passed"

# ---- deadline ---------------------------------------------------------------

check "unarmed: status says not armed" test "$(pg -c "SELECT armed, deadline_ms IS NULL FROM pglease_fence_status()")" = "f|t"
pg_out "INSERT INTO t VALUES (1)" >/dev/null
check "unarmed: a write commits" test "$(count "v = 1")" = 1

arm_in 60000
rem=$(pg -c "SELECT remaining_ms FROM pglease_fence_status()")
check "armed now+60000: status armed with ~60 s left ($rem ms)" test "$rem" -gt 55000 -a "$rem" -le 60000
pg_out "INSERT INTO t VALUES (2)" >/dev/null
check "armed now+60000: a write commits" test "$(count "v = 2")" = 1

arm_in -1
out=$(pg_out "INSERT INTO t VALUES (3)")
check "deadline passed: INSERT refused with the pglease message" contains "$out" "$MSG_DEADLINE"
check "deadline passed: the error says how late" contains "$out" "ms ago"
check "deadline passed: the refused row is absent" test "$(count "v = 3")" = 0
check "deadline passed: read-only SELECT still works" test "$(count "true")" = 2
out=$(pg -v ON_ERROR_STOP=1 -c "BEGIN" -c "SELECT count(*) FROM t" -c "COMMIT" 2>&1)
check "deadline passed: a read-only transaction block commits" test "$out" = 2
out=$(pg -v ON_ERROR_STOP=1 -c "BEGIN" -c "INSERT INTO t VALUES (30)" -c "PREPARE TRANSACTION 'p30'" 2>&1)
check "deadline passed: PREPARE TRANSACTION of a write refused" contains "$out" "pglease: refusing to prepare"
check "deadline passed: nothing prepared" test "$(pg -c "SELECT count(*) FROM pg_prepared_xacts")" = 0

pg -c "SELECT pglease_fence_disarm()" >/dev/null
check "disarm: status says not armed" test "$(pg -c "SELECT armed FROM pglease_fence_status()")" = f
pg_out "INSERT INTO t VALUES (4)" >/dev/null
check "disarm: a write commits again" test "$(count "v = 4")" = 1

# COMMIT PREPARED writes its commit record inside the statement.
pg -v ON_ERROR_STOP=1 -c "BEGIN" -c "INSERT INTO t VALUES (40)" -c "PREPARE TRANSACTION 'p40'" >/dev/null 2>&1
arm_in -1
out=$(pg_out "COMMIT PREPARED 'p40'")
check "deadline passed: COMMIT PREPARED refused" contains "$out" "pglease: refusing to commit prepared transaction"
check "deadline passed: the prepared row stays invisible" test "$(count "v = 40")" = 0
out=$(pg_out "ROLLBACK PREPARED 'p40'")
check "deadline passed: ROLLBACK PREPARED allowed" test -z "$out"
pg -c "SELECT pglease_fence_disarm()" >/dev/null

# The deadline passes while a writing transaction is open.
arm_in 1500
out=$(pg -c "BEGIN" -c "INSERT INTO t VALUES (5)" -c "SELECT pg_sleep(2)" -c "COMMIT" \
	-c "SELECT 'session usable: ' || (txid_current_if_assigned() IS NULL)::text" 2>&1)
check "deadline passes before COMMIT: COMMIT refused" contains "$out" "$MSG_DEADLINE"
check "deadline passes before COMMIT: the row is absent" test "$(count "v = 5")" = 0
check "deadline passes before COMMIT: the session is usable afterwards" contains "$out" "session usable: true"
pg -c "SELECT pglease_fence_disarm()" >/dev/null

# The whole server freezes (SIGSTOP postmaster and backend) past the
# deadline with a write on its way; on thaw the write must not commit.
arm_in 1500
pg -c "SELECT pg_sleep(1)" -c "INSERT INTO t VALUES (8)" >"$TMP/frozen.out" 2>&1 &
BG_PIDS+=($!)
if poll 10 "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(1)'" 1; then
	bpid=$(pg -c "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(1)'")
	FROZEN_PIDS=("$(postmaster_pid)" "$bpid")
	kill -STOP "${FROZEN_PIDS[@]}"
	sleep 2.5
	kill -CONT "${FROZEN_PIDS[@]}"
	FROZEN_PIDS=()
fi
wait "${BG_PIDS[-1]}" 2>/dev/null
check "frozen past the deadline: the write is refused on thaw" contains "$(cat "$TMP/frozen.out")" "$MSG_DEADLINE"
check "frozen past the deadline: the row is absent" test "$(count "v = 8")" = 0
pg -c "SELECT pglease_fence_disarm()" >/dev/null

out=$(pg_out "SELECT pglease_fence_arm(0)")
check "arm(0) rejected" contains "$out" "deadline_ms must be positive"

# ---- emergency switch ---------------------------------------------------------

pg -c "ALTER SYSTEM SET pglease_fence.enabled = off" -c "SELECT pg_reload_conf()" >/dev/null
check "pglease_fence.enabled = off after reload" poll 10 "SHOW pglease_fence.enabled" off
arm_in -1
pg_out "INSERT INTO t VALUES (6)" >/dev/null
check "enabled = off: a write past the deadline commits" test "$(count "v = 6")" = 1
pg -c "ALTER SYSTEM RESET pglease_fence.enabled" -c "SELECT pg_reload_conf()" >/dev/null
check "pglease_fence.enabled back on after reload" poll 10 "SHOW pglease_fence.enabled" on
out=$(pg_out "INSERT INTO t VALUES (7)")
check "enabled = on again: the write is refused" contains "$out" "$MSG_DEADLINE"
out=$(pg_out "SET pglease_fence.enabled = off")
check "enabled cannot be changed by SET" contains "$out" "cannot be changed now"
pg -c "SELECT pglease_fence_disarm()" >/dev/null

# ---- privileges ---------------------------------------------------------------

pg -c "CREATE ROLE app LOGIN" -c "GRANT ALL ON t TO app" >/dev/null
out=$(pg -U app -v ON_ERROR_STOP=1 -c "SELECT pglease_fence_arm(1)" 2>&1)
check "non-superuser: pglease_fence_arm denied" contains "$out" "permission denied for function pglease_fence_arm"
out=$(pg -U app -v ON_ERROR_STOP=1 -c "SELECT pglease_fence_disarm()" 2>&1)
check "non-superuser: pglease_fence_disarm denied" contains "$out" "permission denied for function pglease_fence_disarm"
check "non-superuser: the fence stays disarmed" test "$(pg -c "SELECT armed FROM pglease_fence_status()")" = f

# ---- orphan backend ------------------------------------------------------------

# orphan_scenario TAG: starts a 20M-row INSERT, SIGKILLs the postmaster (only
# that pid) while it runs, waits for every server process to exit, restarts
# the cluster.  Sets ORPHAN_RAN=1 when the backend outlived the postmaster,
# and ORPHAN_OUT to the client's output.
orphan_scenario() {
	local tag=$1 bpid pm children
	local match="FROM pg_stat_activity WHERE query LIKE 'INSERT INTO t SELECT g FROM generate_series%'"
	ORPHAN_RAN=0
	ORPHAN_OUT=
	pg -U app -c "INSERT INTO t SELECT g FROM generate_series(1000000, 20999999) g" \
		>"$TMP/orphan-$tag.out" 2>&1 &
	BG_PIDS+=($!)
	if ! poll 20 "SELECT count(*) $match AND state = 'active'" 1; then
		ORPHAN_OUT="the INSERT never started"
		return
	fi
	bpid=$(pg -c "SELECT pid $match")
	sleep 1
	pm=$(postmaster_pid)
	children=$(ps -o pid= --ppid "$pm" | tr '\n' ' ')
	ORPHAN_PIDS+=($children)
	kill -KILL "$pm"
	alive "$bpid" && ORPHAN_RAN=1
	wait_gone 180 "$pm" $children || echo "# server processes still alive after 180 s: $children"
	wait "${BG_PIDS[-1]}" 2>/dev/null
	ORPHAN_OUT=$(cat "$TMP/orphan-$tag.out")
	start_server || echo "# restart after the orphan scenario failed"
}

orphan_scenario fenced
check "orphan: the INSERT was still running when the postmaster died" test "$ORPHAN_RAN" = 1
check "orphan: the client got the refusal" contains "$ORPHAN_OUT" "pglease: refusing to commit: the postmaster is gone"
check "orphan: the server log has the refusal" grep -q "pglease: refusing to commit: the postmaster is gone" "$TMP/server.log"
check "orphan: after restart no row of that INSERT exists" test "$(count "v >= 1000000")" = 0
check "orphan: earlier committed rows survived" test "$(count "v < 1000000")" = 4

if [ "${FENCE_CONTROL:-0}" = 1 ]; then
	pg -c "ALTER SYSTEM SET pglease_fence.enabled = off" -c "SELECT pg_reload_conf()" >/dev/null
	poll 10 "SHOW pglease_fence.enabled" off
	orphan_scenario control
	check "control (fence off): the orphan's INSERT commits" test "$(count "v >= 1000000")" = 20000000
	pg -c "ALTER SYSTEM RESET pglease_fence.enabled" -c "SELECT pg_reload_conf()" >/dev/null
fi

# Without shared_preload_libraries the functions must fail loudly, never
# pretend to arm a fence that does not exist.
pg_ctl -m fast -w stop >/dev/null 2>&1
sed -i "/^shared_preload_libraries/d" "$DATA/postgresql.conf"
start_server
out=$(pg_out "SELECT pglease_fence_arm(1)")
check "not preloaded: pglease_fence_arm raises an error" contains "$out" "must be loaded via shared_preload_libraries"

pg_ctl -m fast -w stop >/dev/null 2>&1
check "cluster stopped" test -z "$(postmaster_pid)"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
