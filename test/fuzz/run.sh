#!/usr/bin/env bash
# test/fuzz/run.sh — runs the libFuzzer targets (make fuzz).
#
# Usage: test/fuzz/run.sh BUILD_DIR SECONDS
#
# Each target runs for SECONDS on a working copy of its corpus in
# BUILD_DIR/corpus/NAME (new inputs go there, never into test/fuzz/corpus),
# with crashes, leaks and timeouts written to BUILD_DIR/artifacts/.  A
# finding stops that target and makes the script exit non-zero; the last
# line is the summary.
set -u
build=${1:?usage: $0 BUILD_DIR SECONDS}
secs=${2:?usage: $0 BUILD_DIR SECONDS}
here=$(cd "$(dirname "$0")" && pwd)
failed=""

run() {	# NAME BINARY CORPUS [libFuzzer options...]
	local name=$1 bin=$2 corpus=$3
	shift 3
	local work="$build/corpus/$name"
	mkdir -p "$work" "$build/artifacts"
	echo "fuzz: $name for ${secs}s"
	if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$build/artifacts/$name-" "$@" "$work" "$corpus" \
		>"$build/$name.log" 2>&1; then
		failed="$failed $name"
		tail -n 40 "$build/$name.log"
	fi
	grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$build/$name.log" |
		sed "s/^/  $name: /"
}

run config "$build/fuzz_config" "$here/corpus/config" -dict="$here/config.dict" -max_len=4096
run store "$build/fuzz_store" "$here/corpus/store" -max_len=65536
PGLEASE_FUZZ_BASE="$here/corpus/store/cluster.db" \
	run store_mutate "$build/fuzz_store_mutate" "$here/corpus/store_mutate" -max_len=256

if [ -n "$failed" ]; then
	echo "fuzz: FAILED:$failed (inputs in $build/artifacts/)"
	exit 1
fi
echo "fuzz: PASSED (${secs}s each, no crash, leak or timeout)"
