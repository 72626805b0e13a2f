#!/usr/bin/env bash
# test/cli/run.sh — the CLI tests (make cli-test).
#
# Usage: test/cli/run.sh /path/to/pglease
#
# Builds the test-only fixture builder test/cli/mkstore.c from pglease's own
# store code (src/store.c, store_sqlite.c, store_etcd.c, watch.c, common.c, log.c; libpq
# for common.c) into a temporary directory, then
# runs the pytest suite in test/cli against the given binary.  Needs gcc,
# pkg-config, sqlite3 headers and python3 with pytest (Debian: python3-pytest).
# Exits non-zero on any failure; the last line is the summary.
set -u

bin=${1:-}
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
	echo "usage: $0 /path/to/pglease" >&2
	exit 2
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/pglease-cli.XXXXXX")
trap 'rm -rf "$work"' EXIT

# shellcheck disable=SC2046  # pkg-config output is a list of flags
if ! "${CC:-gcc}" -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -I"$root/include" \
	$(pkg-config --cflags libpq sqlite3 libcurl jansson) -o "$work/mkstore" "$here/mkstore.c" \
	"$root/src/store.c" "$root/src/store_sqlite.c" "$root/src/store_etcd.c" "$root/src/watch.c" \
	"$root/src/common.c" "$root/src/log.c" $(pkg-config --libs libpq sqlite3 libcurl jansson) -lpthread; then
	echo "cli tests: FAILED (cannot build test/cli/mkstore.c)"
	exit 1
fi

py=
for cand in python3 /usr/bin/python3; do
	if "$cand" -c 'import pytest' >/dev/null 2>&1; then
		py=$cand
		break
	fi
done
if [ -z "$py" ]; then
	echo "cli tests: FAILED (no python3 with pytest; apt-get install python3-pytest)"
	exit 1
fi

PGLEASE_BIN=$bin PGLEASE_MKSTORE=$work/mkstore PYTHONDONTWRITEBYTECODE=1 \
	"$py" -m pytest -q -p no:cacheprovider --basetemp="$work/t" "$here"
rc=$?
if [ "$rc" -eq 0 ]; then
	echo "cli tests: PASSED"
else
	echo "cli tests: FAILED (pytest exit $rc)"
fi
exit "$rc"
