#!/bin/bash
# Runs a smoke suite (perftest-configs/smoke.suite by default) with
# run-suite and checks what it leaves: every test passed, CSV files with
# rows, ratios, the plots, and no process or shared-memory file of its own
# left behind. For a suite with MPI lines (smoke-mpi.suite): a result row
# for every one of them, none skipped, and the MPI plots.
#
# usage: run-smoke.sh PERFTEST_CONFIGS BUILD_DIR OUT_DIR [SUITE [RUN-SUITE OPTIONS...]]
set -euo pipefail

configs=$1 build=$2 out=$3
suite=${4:-$configs/smoke.suite}
opts=("${@:5}")

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

no_baselines=0
for o in "${opts[@]}"; do
	[[ $o == -B ]] && no_baselines=1
done

rm -rf "$out"
mkdir -p "$out"
"$configs/run-suite" -b "$build" -o "$out" "${opts[@]}" "$suite" 2>&1 | tee "$out.log"
((PIPESTATUS[0] == 0)) || fail "run-suite failed"

# Nothing of its own may outlive it: the region, the daemon, perftest pairs,
# MPI launchers and ranks (they all carry IVRDMA_DIR=its private dir in
# their environment).
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

is_png() { # is_png FILE
	[[ $(head -c 8 "$1" | od -An -tx1 | tr -d ' ') == 89504e470d0a1a0a ]] || fail "$1 is not a PNG"
}

tests=$(grep -c '^test ' "$suite") || true
if ((tests)); then
	rows=$(grep -c ',ok,' "$out/results.csv") || fail "no result rows"
	((rows >= tests)) || fail "$rows result rows for $tests tests"
	! grep -q ',FAIL,\|,TIMEOUT,' "$out/results.csv" || fail "failed rows in results.csv"
	grep -q '^write_lat/cacheline ' "$out/ratios.txt" || fail "no ratio for write_lat"
	for png in latency bandwidth; do
		is_png "$out/$png.png"
	done
	echo "smoke suite: $rows result rows"
fi
if ((!no_baselines)); then
	grep -q '^1,cacheline_pingpong,64,half_rtt_typical,' "$out/baselines.csv" || fail "no cache-line baseline"
	grep -q '^1,memcpy_hot,1048576,bw,' "$out/baselines.csv" || fail "no memcpy baseline"
	grep -q '^1,tcp_pingpong,2,half_rtt_typical,' "$out/baselines.csv" || fail "no TCP baseline"
fi

mpi_lines=$(grep -cE '^(mpi|app) ' "$suite") || true
if ((mpi_lines)); then
	! grep -qE ',(FAIL|TIMEOUT|SKIP)$' "$out/mpi.csv" || fail "failed or skipped rows in mpi.csv"
	while read -r _ name transport _; do
		grep -q "^1,[^,]*,$name,[^,]*,$transport,[^,]*,[^,]*,[^,]*,[^,]*,ok$" "$out/mpi.csv" ||
			fail "no result row for $name ($transport)"
	done < <(grep -E '^(mpi|app) ' "$suite")
	if grep -q '^mpi ' "$suite"; then
		for png in mpi-latency mpi-bandwidth; do
			is_png "$out/$png.png"
		done
	fi
	if grep -q '^ratio ' "$suite"; then
		! grep -q '(no ratio could be computed)' "$out/ratios.txt" || fail "no ratio computed"
	fi
	echo "smoke suite: $(grep -c ',ok$' "$out/mpi.csv") MPI result rows from $mpi_lines MPI lines"
fi
echo "smoke suite: results, ratios and plots in $out"
