#!/usr/bin/env bash
# run-all.sh — runs each unit-test binary given as an argument in its own
# scratch directory (passed as PGL_TEST_DIR), prints each one's summary line,
# then the total as the last line: "N passed, M failed".  Exits non-zero if
# any test failed or any binary crashed (a crash counts as one failure).
# A failing binary's scratch directory is kept for inspection.
set -u
total_pass=0
total_fail=0
base=${PGL_UNIT_TMP:-${TMPDIR:-/tmp}}
for bin in "$@"; do
	name=$(basename "$bin")
	dir=$(mktemp -d "$base/pglease-$name.XXXXXX") || exit 1
	out="$dir/stdout"
	PGL_TEST_DIR="$dir" "$bin" >"$out" 2>"$dir/stderr"
	rc=$?
	summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
	# Show the failures and anything the test printed besides the summary.
	grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | sed "s/^/  $name: /"
	if [ -z "$summary" ]; then
		echo "$name: CRASHED (exit status $rc, no summary line); stderr tail:"
		tail -n 20 "$dir/stderr" | sed 's/^/  /'
		total_fail=$((total_fail + 1))
		echo "  scratch kept in $dir"
		continue
	fi
	p=${summary%% passed*}
	f=${summary#*passed, }
	f=${f%% failed}
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
	if [ "$f" -gt 0 ] || [ "$rc" -ne 0 ]; then
		grep -A1 --no-group-separator '^FAIL ' "$dir/stderr" | sed 's/^/  /'
		[ "$f" -eq 0 ] && { echo "  $name: exit status $rc"; total_fail=$((total_fail + 1)); }
		echo "$name: $summary (scratch kept in $dir)"
	else
		echo "$name: $summary"
		rm -rf "$dir"
	fi
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
