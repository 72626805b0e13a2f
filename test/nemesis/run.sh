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
cleanup() {
	local f p m
	for f in "$work"/*/*/agent.pid; do
		[ -f "$f" ] || continue
		p=$(cat "$f" 2>/dev/null)
		if [ -n "$p" ] && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q 'pglease run'; then
			kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null
		fi
	done
	for f in "$work"/*/*/data/postmaster.pid; do
		[ -f "$f" ] || continue
		p=$(head -1 "$f" 2>/dev/null)
		if [ -n "$p" ] && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q postgres; then
			kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null
		fi
	done
	for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$py" -m pytest -q -p no:cacheprovider "$here/test_checker.py" || exit 1
PGLEASE_BIN=$bin PGLEASE_IT_DIR=$work PYTHONDONTWRITEBYTECODE=1 "$py" "$here/nemesis.py" "$@"
