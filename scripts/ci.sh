#!/usr/bin/env bash
# The test command: installs what is needed, builds twice (plain, and with
# ASan+UBSan), runs every test in both, runs the fuzz harnesses for a
# bounded time (clang's libFuzzer), and checks formatting.
# Run as root on Debian 12 (the guest and provider tests need /dev access).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

jobs=$(nproc)
started=$SECONDS

echo "== build (RelWithDebInfo)"
cmake -S . -B build/ci -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/ci -j"$jobs"

echo "== tests: unit, host, provider, guest"
ctest --test-dir build/ci --output-on-failure --timeout 900

echo "== build (ASan+UBSan)"
cmake -S . -B build/ci-asan -DCMAKE_BUILD_TYPE=Debug -DIVRDMA_SANITIZE=ON \
	-DIVRDMA_GUEST_TESTS=OFF >/dev/null
cmake --build build/ci-asan -j"$jobs"

echo "== tests under ASan+UBSan (guest tests need static guest binaries: plain build only)"
ctest --test-dir build/ci-asan --output-on-failure --timeout 900

# Each harness runs IVRDMA_FUZZ_SECONDS (45) over its corpus in tests/fuzz/corpus,
# one at a time: about 4 minutes, and a crash, hang or sanitizer report fails.
echo "== fuzz (clang libFuzzer with ASan+UBSan)"
fuzz_started=$SECONDS
cmake -S . -B build/ci-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DIVRDMA_FUZZ=ON -DIVRDMA_GUEST_TESTS=OFF >/dev/null
cmake --build build/ci-fuzz -j"$jobs" --target fuzzers
ctest --test-dir build/ci-fuzz -L fuzz --output-on-failure
echo "fuzz: $((SECONDS - fuzz_started)) s"

echo "== clang-format"
bash scripts/check-format.sh

echo "ci: all done in $((SECONDS - started)) s"
