#!/usr/bin/env bash
# Fails if a user-space C file differs from .clang-format's layout.
# uio-driver/ follows the kernel's own style (scripts/checkpatch.pl) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.c' '*.h' | grep -v '^uio-driver/')
clang-format --dry-run --Werror "${files[@]}"
echo "check-format: ${#files[@]} files formatted"
