#!/usr/bin/env bash
# test/integration/run.sh — integration tests against real PostgreSQL 15 (make integration).
#
# Usage: test/integration/run.sh [pytest args...]   e.g. -k test_002
#
# Runs python3 -m pytest on test/integration with the ./pglease of this
# checkout (or $PGLEASE_BIN).  Works as root (agents and postgres then run as
# the postgres OS user) and as a normal user.  Every test bounds its own time
# (PGLEASE_IT_TIMEOUT seconds, default 480).  Temporary clusters live in a
# fresh directory under $TMPDIR; logs of failed tests are kept in
# $PGLEASE_IT_ARTIFACTS (default /tmp/pglease-it-artifacts).  Exits non-zero
# on any failure.  Needs python3-pytest, python3-psycopg2 and postgresql-15
# (scripts/install-deps.sh).
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${PGLEASE_BIN:-$root/pglease}
if [ ! -x "$bin" ]; then
	echo "integration tests: FAILED ($bin not found: run make first)"
	exit 1
fi

py=
for cand in /usr/bin/python3 python3; do
	if "$cand" -c 'import pytest, psycopg2' >/dev/null 2>&1; then
		py=$cand
		break
	fi
done
if [ -z "$py" ]; then
	echo "integration tests: FAILED (no python3 with pytest and psycopg2;" \
		"apt-get install python3-pytest python3-psycopg2)"
	exit 1
fi
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
	echo "integration tests: FAILED (running as root needs the postgres OS user; install postgresql-15)"
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pglease-it.XXXXXX")
chmod 0755 "$work"

# Safety net if pytest itself dies: end what the tests started, by pid only
# (agents from their pid files, postmasters from postmaster.pid), and
# unmount the tmpfs stores.
cleanup() {
	local f p
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

start=$(date +%s)
PGLEASE_BIN=$bin PGLEASE_IT_DIR=$work PYTHONDONTWRITEBYTECODE=1 \
	"$py" -m pytest -v -p no:cacheprovider -o faulthandler_timeout=900 "$here" "$@"
rc=$?
echo "integration tests: $([ "$rc" -eq 0 ] && echo PASSED || echo "FAILED (pytest exit $rc)") in $(( $(date +%s) - start )) s"
exit "$rc"
