#!/bin/bash
# Runs perftest-configs/smoke.suite with run-suite and checks what it leaves:
# every test passed, CSV files with rows, ratios, both plots, and no process
# or shared-memory file of its own left behind.
#
# usage: run-smoke.sh PERFTEST_CONFIGS BUILD_DIR OUT_DIR
set -euo pipefail

configs=$1 build=$2 out=$3

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

rm -rf "$out"
mkdir -p "$out"
"$configs/run-suite" -b "$build" -o "$out" "$configs/smoke.suite" 2>&1 | tee "$out.log"
((PIPESTATUS[0] == 0)) || fail "run-suite failed"

# Nothing of its own may outlive it: the region, the daemon, perftest pairs
# (they all carry IVRDMA_DIR=its private dir in their environment).
dir=$(sed -n 's/^run-suite: .*, daemon dir \(.*\)$/\1/p' "$out.log")
shm=$(sed -n 's/^run-suite: .*, region \(.*\), daemon dir .*$/\1/p' "$out.log")
[[ -n $dir && -n $shm ]] || fail "run-suite did not say where its daemon was"
[[ ! -e /dev/shm$shm ]] || fail "region /dev/shm$shm left behind"
[[ ! -e $dir ]] || fail "$dir left behind"
for env in /proc/[0-9]*/environ; do
	if tr '\0' '\n' <"$env" 2>/dev/null | grep -x "IVRDMA_DIR=$dir" >/dev/null; then
		pid=${env#/proc/}
		fail "process ${pid%/environ} left behind: $(tr '\0' ' ' <"/proc/${pid%/environ}/cmdline")"
	fi
done

rows=$(grep -c ',ok,' "$out/results.csv") || fail "no result rows"
tests=$(grep -c '^test ' "$configs/smoke.suite")
((rows >= tests)) || fail "$rows result rows for $tests tests"
! grep -q ',FAIL,\|,TIMEOUT,' "$out/results.csv" || fail "failed rows in results.csv"
grep -q '^1,cacheline_pingpong,64,half_rtt_typical,' "$out/baselines.csv" || fail "no cache-line baseline"
grep -q '^1,memcpy_hot,1048576,bw,' "$out/baselines.csv" || fail "no memcpy baseline"
grep -q '^1,tcp_pingpong,2,half_rtt_typical,' "$out/baselines.csv" || fail "no TCP baseline"
grep -q '^write_lat/cacheline ' "$out/ratios.txt" || fail "no ratio for write_lat"
for png in latency bandwidth; do
	[[ $(head -c 8 "$out/$png.png" | od -An -tx1 | tr -d ' ') == 89504e470d0a1a0a ]] ||
		fail "$png.png is not a PNG"
done
echo "smoke suite: $rows result rows, ratios and plots in $out"
