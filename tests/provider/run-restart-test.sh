#!/bin/bash
# ivrdmad restarted under live host processes (test_restart.c): killed
# (SIGKILL) and stopped (SIGTERM), then started again with the same
# command, while two processes exchange verified RC and UD traffic,
# sleeping in completion channels. The new ivrdmad adopts the region,
# the processes rejoin and their traffic never stops; a process that died
# while ivrdmad was away is reclaimed at adoption, one that cannot rejoin
# (stopped) keeps what it holds until it exits; after the restarts a
# dead peer is still reclaimed (the survivor gets its error) and a new
# process joins and talks to a rejoined one; --size auto keeps the
# region's size; a region of another --size is not adopted.
#
# usage: run-restart-test.sh IVRDMAD IVRDMA PROVIDER_SO TEST_RESTART
# env:   IVRDMA_PRELOAD  a sanitizer runtime to preload ahead of the shim
set -euo pipefail
# shellcheck source=../lib/ivrdmad.sh
. "$(dirname "$0")/../lib/ivrdmad.sh"

ivrdmad=$1 ivrdma=$2 provider=$(realpath "$3") test_bin=$4
dir=$(mktemp -d /tmp/ivrdma-restart.XXXXXX)
shm=/ivrdma-restart-$$
daemon_pid='' hold_pid='' stopped_pid='' pair_pid='' nr_starts=0 reply=''

cleanup() {
	local rc=$?
	[[ -z $hold_pid ]] || kill -9 "$hold_pid" 2>/dev/null || true
	[[ -z $stopped_pid ]] || kill -9 "$stopped_pid" 2>/dev/null || true
	# Its responders go with it (PR_SET_PDEATHSIG).
	[[ -z $pair_pid ]] || kill -9 "$pair_pid" 2>/dev/null || true
	if [[ -n $daemon_pid ]]; then
		kill -TERM "$daemon_pid" 2>/dev/null || true
		wait "$daemon_pid" 2>/dev/null || true
	fi
	if ((rc != 0)); then
		for f in "$dir"/*.log "$dir"/*.err; do
			[[ -f $f ]] && { echo "--- $f" >&2; cat "$f" >&2; }
		done
	fi
	rm -f "/dev/shm${shm}"
	rm -rf "$dir"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# The same command every time, but for what a test adds (another --size).
start_daemon() {
	nr_starts=$((nr_starts + 1))
	log=$dir/ivrdmad.$nr_starts.log
	"$ivrdmad" --dir "$dir" --shm "$shm" --size 16M "$@" >"$log" 2>&1 &
	daemon_pid=$!
	ivrdmad_ready "$ivrdma" "$dir" "$daemon_pid" || fail "no ivrdmad"
}

stop_daemon() { # stop_daemon SIGNAL
	kill "-$1" "$daemon_pid"
	wait "$daemon_pid" || true
	daemon_pid=
}

status_json() { "$ivrdma" --dir "$dir" status --json; }

expect_log() { # expect_log PATTERN WHAT: in the current daemon's log, within 30 s
	for _ in $(seq 300); do
		grep -Eq -- "$1" "$log" && return 0
		sleep 0.1
	done
	fail "$2: no '$1' in $log"
}

# ask COMMAND: test_restart's one-line answer in $reply.
ask() {
	echo "$1" >&"${PAIR[1]}"
	read -r -t 120 reply <&"${PAIR[0]}" || fail "test_restart did not answer '$1'"
}

# The traffic goes on: 100 more verified rounds, 60 s at most.
progress() { # progress WHEN
	local r0
	ask rounds
	r0=${reply#rounds }
	for _ in $(seq 1200); do
		ask rounds
		((${reply#rounds } >= r0 + 100)) && { echo "traffic $1: rounds $r0 -> ${reply#rounds }"; return 0; }
		sleep 0.05
	done
	fail "traffic stopped $1 (at round $r0)"
}

wait_connected() { # wait_connected N: N peers connected, none waiting to rejoin
	for _ in $(seq 100); do
		status_json | jq -e --argjson n "$1" '(.peers | length == $n) and
			all(.peers[]; .state == "connected")' >/dev/null && return 0
		sleep 0.1
	done
	status_json >&2
	fail "not $1 peers connected"
}

chunks_used() { status_json | jq .region.chunks_used; }

start_daemon
"$ivrdma" --dir "$dir" setup --sysfs "$dir/sysfs" >/dev/null
eval "$("$ivrdma" --dir "$dir" env --sysfs "$dir/sysfs" --provider "$provider")"
# A sanitizer runtime must come first in LD_PRELOAD, ahead of the shim.
if [[ -n ${IVRDMA_PRELOAD:-} ]]; then
	export LD_PRELOAD=$IVRDMA_PRELOAD${LD_PRELOAD:+:$LD_PRELOAD}
fi

coproc PAIR { exec "$test_bin" pair 2>"$dir/pair.err"; }
# shellcheck disable=SC2153 # PAIR_PID is set by coproc
pair_pid=$PAIR_PID
if ! read -r -t 60 reply <&"${PAIR[0]}" || [[ $reply != ready ]]; then
	fail "test_restart pair not ready"
fi
progress "before any restart"
wait_connected 2
used_pair=$(chunks_used)

start_hold() { # start_hold NAME: a process holding objects; its pid in $!
	"$test_bin" hold >"$dir/$1.out" 2>"$dir/$1.err" &
	for _ in $(seq 100); do grep -q held "$dir/$1.out" && break; sleep 0.1; done
	grep -q held "$dir/$1.out" || fail "test_restart hold did not start"
}

# A process holding objects, killed while ivrdmad is away.
start_hold hold
hold_pid=$!
(($(chunks_used) > used_pair)) || fail "the held objects take no chunks"

stop_daemon KILL
kill -9 "$hold_pid"
wait "$hold_pid" 2>/dev/null || true
hold_pid=
progress "while ivrdmad is killed"
start_daemon
expect_log "adopted region $shm" "SIGKILL restart"
expect_log "left node host: its process died while ivrdmad was away; reclaimed [1-9]" \
	"the process that died meanwhile"
wait_connected 2
[[ $(grep -c " rejoined node host" "$log") == 2 ]] || fail "not 2 rejoins after SIGKILL"
(($(chunks_used) == used_pair)) || fail "the dead process's chunks are not back"
progress "after the SIGKILL restart"

# A process that cannot rejoin (stopped) keeps what it holds until it exits.
start_hold stopped
stopped_pid=$!
wait_connected 3
kill -STOP "$stopped_pid"
stop_daemon TERM
grep -q "leaving region $shm in place with 3 peer(s) attached" "$log" ||
	fail "SIGTERM: region not left for the next ivrdmad"
[[ -e /dev/shm$shm ]] || fail "SIGTERM removed the region"
progress "while ivrdmad is stopped"
start_daemon
expect_log "adopted region $shm" "SIGTERM restart"
expect_log "pid $stopped_pid\) has not rejoined within --rejoin-grace" "the stopped process"
(($(chunks_used) > used_pair)) || fail "the stopped process's objects were reclaimed while it lives"
kill -9 "$stopped_pid"
wait "$stopped_pid" 2>/dev/null || true
stopped_pid=
expect_log "left node host: its process exited before it rejoined; reclaimed [1-9]" \
	"the stopped process, killed"
wait_connected 2
(($(chunks_used) == used_pair)) || fail "the stopped process's chunks are not back"
progress "after the SIGTERM restart"

# A dead peer is still reclaimed, and its survivor gets its error.
ask kill-peer
[[ $reply == "peer-error "* && $reply != "peer-error none" ]] || fail "survivor: $reply"
echo "survivor: $reply"
expect_log "left node host: disconnected; reclaimed [1-9]" "the killed peer's reclaim"
wait_connected 1
(($(chunks_used) < used_pair)) || fail "the killed peer's chunks are not back"
status_json | jq -e '[.contexts[] | select(.state == "open")] | length == 1' >/dev/null ||
	fail "the killed peer's context is still open"

# A new process joins the restarted ivrdmad and talks to the rejoined one.
ask join
[[ $reply == "join-ok 200" ]] || fail "join: $reply"
echo "a new process: $reply"

# --size auto keeps the adopted region's size, whatever the machine's free space says.
stop_daemon KILL
start_daemon --size auto
expect_log "adopted region $shm" "the --size auto restart"
grep -q "serving a 16 MiB region $shm (--size auto: the adopted region's own" "$log" ||
	fail "--size auto did not keep the adopted region's size"
wait_connected 1

# Another --size: the region is not adopted, and the survivor's rejoin is refused.
stop_daemon KILL
start_daemon --size 32M
expect_log "not adopting $shm, left behind by an ivrdmad that is gone: its size differs from --size" \
	"the mismatched region"
status_json | jq -e '.region.size == 33554432 and .region.chunks_used == 0' >/dev/null ||
	fail "no new 32M region"
expect_log "refusing peer [0-9]+'s rejoin: no such peer waits to rejoin" "the refused rejoin"
ask quit
wait "$pair_pid" || fail "test_restart pair: checks failed"
pair_pid=
wait_connected 0
stop_daemon TERM
[[ ! -e /dev/shm$shm ]] || fail "SIGTERM without peers left the region"
echo "restart: all phases passed"
