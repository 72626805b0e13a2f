#!/usr/bin/env bash
# test/nemesis/ci.sh — the short nemesis run of `make check` (make nemesis-check).
#
# 1. a short campaign (NEMESIS_CI_FAULTS faults, default 20, fixed seed,
#    synchronous mode) must find no violation;
# 2. the checker must catch a deliberate split brain (a second primary
#    promoted by hand from a standby's data directory);
# 3. the checker must catch a deliberately lost acknowledged write.
# Prints "nemesis-check: N passed, M failed" and exits non-zero on a failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${NEMESIS_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/pglease-nemesis-out.XXXXXX")}
mkdir -p "$out"
faults=${NEMESIS_CI_FAULTS:-20}
pass=0 fail=0

if [ "$(id -u)" -ne 0 ]; then
	echo "nemesis-check: skipped (needs root)"
	exit 0
fi

run() {	# name expected-status needle args...
	local name=$1 want=$2 needle=$3 log rc
	shift 3
	log="$out/$name.log"
	echo "== nemesis-check: $name: test/nemesis/run.sh $*"
	"$here/run.sh" --out "$out" "$@" > "$log" 2>&1
	rc=$?
	grep -E '^(nemesis mode|VIOLATION)' "$log" | head -5
	if [ "$rc" -eq "$want" ] && grep -q "$needle" "$log"; then
		echo "   PASSED ($name: exit $rc)"
		pass=$((pass + 1))
	else
		echo "   FAILED ($name: exit $rc, wanted $want and '$needle'); last lines of $log:"
		tail -40 "$log"
		fail=$((fail + 1))
	fi
}

run campaign 0 "0 violations" --faults "$faults" --seed 1 --mode sync --ttl-ms 2000
run catches-split-brain 1 "VIOLATION: split brain" --faults 4 --seed 5 --mode async \
	--bug split-brain
run catches-lost-write 1 "VIOLATION: lost write" --faults 2 --seed 6 --mode sync \
	--bug lost-write
echo "nemesis-check: results in $out"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
