#!/bin/bash
# Each region is its own subnet: the prefix ivrdmad derives is stable across
# restarts with the same --shm/--dir, differs between two regions running at
# once, is never fe80::/64, and --subnet-prefix overrides it. Every GID of
# the directory carries it, and `ivrdma status` shows it as text and JSON.
#
# usage: run-subnet-test.sh IVRDMAD IVRDMA
set -euo pipefail
# shellcheck source=../lib/ivrdmad.sh
. "$(dirname "$0")/../lib/ivrdmad.sh"

ivrdmad=$1 ivrdma=$2
base=$(mktemp -d /tmp/ivrdma-subnet.XXXXXX)
pids=()

cleanup() {
	local rc=$?
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -f /dev/shm/ivrdma-subnet-$$-*
	rm -rf "$base"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

start() { # start NAME [extra args]: a daemon on DIR $base/NAME, shm /ivrdma-subnet-$$-NAME
	local name=$1
	shift
	mkdir -p "$base/$name"
	"$ivrdmad" --dir "$base/$name" --shm "/ivrdma-subnet-$$-$name" --size 16M --vm vm1 "$@" \
		>>"$base/$name.log" 2>&1 &
	pids+=($!)
	ivrdmad_ready "$ivrdma" "$base/$name" "${pids[-1]}" && return 0
	cat "$base/$name.log" >&2
	fail "no ivrdmad $name"
}

stop_last() {
	local pid=${pids[-1]}
	kill -TERM "$pid"
	wait "$pid" || fail "ivrdmad $pid did not exit cleanly"
	unset 'pids[-1]'
}

prefix_of() { # prefix_of NAME: the region's prefix, checked against every node's GID
	local st prefix
	st=$("$ivrdma" --dir "$base/$1" status --json)
	prefix=$(jq -r .region.subnet_prefix <<<"$st")
	[[ $prefix =~ ^[0-9a-f]{4}(:[0-9a-f]{4}){3}$ ]] || fail "$1: prefix '$prefix'"
	[[ $prefix != fe80:0000:0000:0000 ]] || fail "$1: the default subnet prefix"
	jq -e --arg p "$prefix:" '[.nodes[].gid | startswith($p)] | all' <<<"$st" >/dev/null ||
		fail "$1: a GID outside subnet $prefix"
	"$ivrdma" --dir "$base/$1" status | grep -q "subnet prefix $prefix\$" ||
		fail "$1: text status does not show subnet prefix $prefix"
	echo "$prefix"
}

start a
pa=$(prefix_of a)
start b
pb=$(prefix_of b)
[[ $pa != "$pb" ]] || fail "two regions share subnet prefix $pa"
stop_last
stop_last
start a
[[ $(prefix_of a) == "$pa" ]] || fail "restarted region a changed prefix: $pa, then $(prefix_of a)"
stop_last
echo "region a: $pa (same after a restart), region b: $pb"

start c --subnet-prefix fd00:1:abcd:0
[[ $(prefix_of c) == fd00:0001:abcd:0000 ]] || fail "--subnet-prefix not used: $(prefix_of c)"
stop_last
for bad in fe80:0:0:0 fe80:0000:0000:0000 0:0:0:0 fd00:1:2 fd00:1:2:3:4 fd00:1:2:x 12345:0:0:0; do
	if "$ivrdmad" --dir "$base/bad" --shm "/ivrdma-subnet-$$-bad" --subnet-prefix "$bad" \
		>"$base/bad.log" 2>&1; then
		fail "--subnet-prefix $bad accepted"
	fi
done
echo "--subnet-prefix: override used, default and malformed prefixes refused"
