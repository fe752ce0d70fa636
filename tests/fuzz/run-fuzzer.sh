#!/usr/bin/env bash
# Runs one libFuzzer harness for a bounded time over its committed corpus.
# New inputs and crash artifacts go to the work directory, never into the
# committed corpus. Prints libFuzzer's closing figures (cov, ft, exec/s).
# usage: run-fuzzer.sh FUZZER SECONDS CORPUS_DIR WORK_DIR
set -euo pipefail
fuzzer=$1 seconds=$2 corpus=$3 work=$4

rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
rc=0
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	-artifact_prefix="$work/artifacts/" "$work/corpus" "$corpus" >"$work/log" 2>&1 || rc=$?
grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec)' \
	"$work/log" || true
if [ "$rc" -ne 0 ]; then
	tail -n 60 "$work/log"
	echo "run-fuzzer: $(basename "$fuzzer") failed (status $rc); artifacts in $work/artifacts"
fi
exit "$rc"
