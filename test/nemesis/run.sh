#!/usr/bin/env bash
# test/nemesis/run.sh — the randomized fault campaign (make nemesis).
#
# Usage: test/nemesis/run.sh [nemesis.py args...]
#   e.g. test/nemesis/run.sh --faults 500 --seed 7 --mode async --nodes 3 --ttl-ms 2000
#
# Runs the checker's unit tests, then nemesis.py against the ./pglease of this
# checkout (or $PGLEASE_BIN), as root (agents and postgres run as the postgres
# OS user).  Temporary clusters live in a fresh directory under $TMPDIR and are
# removed at the end; every process is ended by its pid.  The history (JSON)
# and the plot (PNG) go to --out (default ./nemesis-out).  Exits non-zero when
# the checker finds a violation.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${PGLEASE_BIN:-$root/pglease}
if [ ! -x "$bin" ]; then
	echo "nemesis: FAILED ($bin not found: run make first)"
	exit 2
fi
py=/usr/bin/python3
if ! "$py" -c 'import pytest, psycopg2' >/dev/null 2>&1; then
	echo "nemesis: FAILED (needs python3-pytest and python3-psycopg2: scripts/install-deps.sh)"
	exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "nemesis: FAILED (run as root: it mounts a tmpfs and runs nodes as postgres)"
	exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pglease-nemesis.XXXXXX")
chmod 0755 "$work"
# Ends every process the campaign started, by pid: those whose command line
# names this run's directory (agents, their runuser wrappers, postmasters),
# and their descendants (backends, the fence watchdog).  Stopped ones get
# SIGCONT first.  Then unmounts the store's tmpfs and removes the directory.
cleanup() {
	local pids=() p m kids
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" = "$$" ] && continue
		if { tr '\0' ' ' < "/proc/$p/cmdline"; } 2>/dev/null | grep -qF "$work/"; then
			pids+=("$p")
		fi
	done
	local i=0
	while [ $i -lt ${#pids[@]} ]; do
		kids=$(cat /proc/"${pids[$i]}"/task/*/children 2>/dev/null)
		for p in $kids; do pids+=("$p"); done
		i=$((i + 1))
	done
	if [ ${#pids[@]} -gt 0 ]; then
		kill -CONT "${pids[@]}" 2>/dev/null
		kill -KILL "${pids[@]}" 2>/dev/null
	fi
	for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$py" -m pytest -q -p no:cacheprovider "$here/test_checker.py" || exit 1
# A private copy: a rebuild during a long campaign must not change the binary
# that restarted nodes run.
cp "$bin" "$work/pglease" && chmod 0755 "$work/pglease"
PGLEASE_BIN=$work/pglease PGLEASE_IT_DIR=$work PYTHONDONTWRITEBYTECODE=1 "$py" "$here/nemesis.py" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' INT TERM
wait "$child"
rc=$?
if kill -0 "$child" 2>/dev/null; then	# interrupted: let it tear down, then clean up
	wait "$child"
	rc=$?
fi
exit "$rc"
