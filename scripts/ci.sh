#!/usr/bin/env bash
# The test command: installs what is needed, builds four times (plain,
# with ASan+UBSan, with TSan, and clang's libFuzzer harnesses), runs every
# test in the first, all but the guest tests in the ASan build, the unit,
# host and migration tests in the TSan build, the fuzz harnesses for a
# bounded time, and checks formatting.
# Run as root on Debian 12 (the guest and provider tests need /dev access).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

jobs=$(nproc)
started=$SECONDS

echo "== build (RelWithDebInfo)"
cmake -S . -B build/ci -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/ci -j"$jobs"

# The label slow (the long soak) is for runs by hand: never here.
echo "== tests: unit, host, provider, guest, mpi, package"
ctest --test-dir build/ci -LE slow --output-on-failure --timeout 900

echo "== build (ASan+UBSan)"
cmake -S . -B build/ci-asan -DCMAKE_BUILD_TYPE=Debug -DIVRDMA_SANITIZE=ON \
	-DIVRDMA_GUEST_TESTS=OFF >/dev/null
cmake --build build/ci-asan -j"$jobs"

echo "== tests under ASan+UBSan (guest tests need static guest binaries: plain build only)"
ctest --test-dir build/ci-asan -LE slow --output-on-failure --timeout 900

echo "== build (TSan)"
cmake -S . -B build/ci-tsan -DCMAKE_BUILD_TYPE=Debug -DIVRDMA_TSAN=ON \
	-DIVRDMA_GUEST_TESTS=OFF >/dev/null
cmake --build build/ci-tsan -j"$jobs"

# Every process of a test (ivrdmad, stock tools, our programs) writes its
# reports to a file of its own here; a daemon's exit status goes unchecked,
# so any file at all fails the stage. bench.smoke tests the benchmark
# runner, not the provider: left to the other builds (it takes minutes
# under TSan).
echo "== tests under TSan: unit, host, provider and migration (races between threads of one process)"
tsan_started=$SECONDS
reports=$PWD/build/ci-tsan/tsan-reports
rm -rf "$reports"
mkdir -p "$reports"
# TSan's runtime refuses some address-space layouts ("unexpected memory
# mapping", seen with a high vm.mmap_rnd_bits): then run without ASLR.
tsan_wrap=()
if ! build/ci-tsan/cm-daemon/ivrdma version >/dev/null 2>&1; then
	tsan_wrap=(setarch "$(uname -m)" -R)
	"${tsan_wrap[@]}" build/ci-tsan/cm-daemon/ivrdma version >/dev/null
fi
rc=0
TSAN_OPTIONS="log_path=$reports/report" "${tsan_wrap[@]}" ctest --test-dir build/ci-tsan -L 'unit|host|migration' \
	-E '^bench\.' --output-on-failure --timeout 900 || rc=$?
if compgen -G "$reports/report*" >/dev/null; then
	cat "$reports"/report* >&2
	echo "ci: ThreadSanitizer reported the races above" >&2
	rc=1
fi
((rc == 0)) || exit "$rc"
echo "TSan tests done in $((SECONDS - tsan_started)) s"

# Each harness runs 30 s here (IVRDMA_FUZZ_SECONDS, 45 by default) over its
# corpus in tests/fuzz/corpus, one at a time: under 4 minutes for the seven,
# which keeps the whole run under 45; a crash, hang or sanitizer report fails.
echo "== fuzz (clang libFuzzer with ASan+UBSan)"
fuzz_started=$SECONDS
cmake -S . -B build/ci-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DIVRDMA_FUZZ=ON -DIVRDMA_FUZZ_SECONDS=30 -DIVRDMA_GUEST_TESTS=OFF >/dev/null
cmake --build build/ci-fuzz -j"$jobs" --target fuzzers
ctest --test-dir build/ci-fuzz -L fuzz --output-on-failure
echo "fuzz: $((SECONDS - fuzz_started)) s"

echo "== clang-format"
bash scripts/check-format.sh

echo "ci: all done in $((SECONDS - started)) s"
