#!/usr/bin/env bash
# Guest test of the foundation: one real QEMU VM (TCG) on ivrdmad.
#
#   run-ivshmem-vm.sh --ivrdmad PATH --ivrdma PATH --probe PATH --helper PATH
#                     [--kernel PATH] [--keep]
#
# ivrdmad serves a small region with one VM node "vm1"; a host peer
# (guest-host-peer) writes a pattern into a chunk; the VM's ivshmem-doorbell
# device joins through DIR/vm1.sock and its busybox init runs ivshmem-probe
# (position, header, read, ring). Checked: the guest reads the bytes the
# host wrote (same checksum), ivrdmad lists vm1 active with the guest's
# peer ID and its own LID/GID, the guest's doorbell reaches the host peer,
# and vm1 stops being active once the VM is gone.
#
# Exit 0 pass, 1 fail, 77 skip (no qemu-system-x86_64). Whatever happens,
# QEMU, ivrdmad and the helper are stopped and the work dir and the shm
# object are removed (--keep keeps the work dir for a post-mortem).
set -euo pipefail

SKIP=77
VM=vm1
VECTORS=4 # QEMU's vectors= must equal ivrdmad's --vectors
VECTOR=3  # IVRDMA_VEC_SPARE: rung by the guest, waited on by the helper
LEN=65536
# Every wait below is bounded, and the background processes never outlive
# this script: they get SIGTERM when it dies, even by SIGKILL (setpriv
# --pdeathsig), and die on their own after BUDGET s anyway (timeout(1)).
# Keep BUDGET under the CTest TIMEOUT.
BUDGET=270
BOOT_TIMEOUT=150

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
start_ns=$(date +%s%N)
ivrdmad='' ivrdma='' probe='' helper='' kernel='' keep=0
work='' shm='' daemon_pid='' helper_pid='' qemu_pid='' janitor_pid='' console_fd=''

elapsed() {
	local ms=$((($(date +%s%N) - start_ns) / 1000000))
	printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

log() {
	echo "[guest +$(elapsed)s] $*"
}

fail() {
	echo "[guest +$(elapsed)s] FAIL: $*" >&2
	exit 1
}

usage() {
	echo "usage: run-ivshmem-vm.sh --ivrdmad PATH --ivrdma PATH --probe PATH --helper PATH" \
		"[--kernel PATH] [--keep]" >&2
	exit 2
}

parse_args() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--ivrdmad) ivrdmad=${2:-}; shift 2 ;;
		--ivrdma) ivrdma=${2:-}; shift 2 ;;
		--probe) probe=${2:-}; shift 2 ;;
		--helper) helper=${2:-}; shift 2 ;;
		--kernel) kernel=${2:-}; shift 2 ;;
		--keep) keep=1; shift ;;
		*) usage ;;
		esac
	done
	if [ -z "$ivrdmad" ] || [ -z "$ivrdma" ] || [ -z "$probe" ] || [ -z "$helper" ]; then
		usage
	fi
	for f in "$ivrdmad" "$ivrdma" "$probe" "$helper"; do
		[ -x "$f" ] || fail "not an executable: $f"
	done
}

# The newest Debian kernel, unless given. A missing kernel is a broken
# CI image, not a reason to skip.
find_kernel() {
	if [ -z "$kernel" ]; then
		kernel=$(printf '%s\n' /boot/vmlinuz-*-amd64 | sort -V | tail -n 1)
	fi
	[ -r "$kernel" ] || fail "no readable kernel (/boot/vmlinuz-*-amd64; install linux-image-amd64, or pass --kernel)"
}

check_tools() {
	if ! command -v qemu-system-x86_64 >/dev/null; then
		echo "SKIP: qemu-system-x86_64 not installed (package qemu-system-x86)"
		exit $SKIP
	fi
	local t
	for t in jq cpio busybox timeout setpriv mkfifo; do
		command -v "$t" >/dev/null || fail "$t not installed (see scripts/install-deps.sh)"
	done
	find_kernel
}

# background CMD...: runs CMD supervised (see BUDGET); only ever call it
# with '&', since it execs. $! is then the process to stop.
background() {
	exec setpriv --pdeathsig TERM -- timeout -k 5 $BUDGET "$@"
}

# stop PID: TERM, then KILL after 5 s; reaps it.
stop() {
	local pid=$1 _
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

show_logs() {
	local f
	for f in serial.log ivrdmad.log helper.out helper.err; do
		[ -s "$work/$f" ] || continue
		echo "----- $f (last 40 lines) -----"
		tail -n 40 "$work/$f" | tr -d '\r' | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g'
	done
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM HUP
	[ -n "$console_fd" ] && exec {console_fd}>&-
	stop "$helper_pid"
	stop "$qemu_pid"
	stop "$daemon_pid" # after its peers: its clean exit removes the region and sockets
	stop "$janitor_pid"
	if [ -n "$work" ]; then
		[ $rc -eq 0 ] || [ $rc -eq $SKIP ] || show_logs >&2
		if [ $keep -eq 1 ]; then
			echo "work dir kept: $work" >&2
		else
			rm -rf "$work"
		fi
	fi
	[ -n "$shm" ] && rm -f "/dev/shm/${shm#/}"
	exit $rc
}

# The trap above cannot run if this script is SIGKILLed (a CTest timeout):
# then this process, told by --pdeathsig, removes the work dir and the shm
# object. Not with --keep.
start_janitor() {
	[ $keep -eq 0 ] || return 0
	# shellcheck disable=SC2016 # expanded by that sh, at trap time
	background sh -c 'trap "rm -rf \"\$1\" \"\$2\"; exit 0" TERM; while :; do sleep 1; done' \
		janitor "$work" "/dev/shm/${shm#/}" </dev/null >/dev/null 2>&1 &
	janitor_pid=$!
}

# wait_until DESC SECONDS CMD...: polls CMD every 0.2 s; fails on timeout.
# A watched process that died fails at once (see alive_or_fail).
wait_until() {
	local desc=$1 limit=$2 end
	shift 2
	end=$(($(date +%s) + limit))
	until "$@"; do
		alive_or_fail
		[ "$(date +%s)" -lt "$end" ] || fail "timed out after ${limit}s waiting for $desc"
		sleep 0.2
	done
}

alive_or_fail() {
	[ -z "$daemon_pid" ] || kill -0 "$daemon_pid" 2>/dev/null || fail "ivrdmad exited early"
	[ -z "$qemu_pid" ] || kill -0 "$qemu_pid" 2>/dev/null || qemu_exited
}

# QEMU ending is expected only after the guest said DONE or FAIL.
qemu_exited() {
	serial | grep -q '^IVR-GUEST: \(DONE\|FAIL\)' && return 0
	fail "QEMU exited before the guest finished"
}

# The console log without CRs and terminal escapes, one line per line.
serial() {
	tr -d '\r' <"$work/serial.log" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g'
}

guest_value() { # guest_value STEP KEY: KEY=value of "IVR-GUEST: STEP: ..." lines
	serial | sed -n "s/^IVR-GUEST: $1: .*\\b$2=\\([^ ]*\\).*/\\1/p" | head -n 1
}

start_daemon() {
	background "$ivrdmad" --dir "$work" --shm "$shm" --size 16M \
		--vectors $VECTORS --vm "$VM" -v </dev/null >"$work/ivrdmad.log" 2>&1 &
	daemon_pid=$!
	wait_until "ivrdmad to answer status" 15 "$ivrdma" --dir "$work" status >/dev/null 2>&1
	log "ivrdmad ready (shm $shm, dir $work)"
}

start_helper() {
	local line
	background "$helper" --socket "$work/host.sock" --vector $VECTOR --len $LEN \
		--timeout $((BUDGET - 30)) </dev/null >"$work/helper.out" 2>"$work/helper.err" &
	helper_pid=$!
	wait_until "the host peer's PEER= line" 15 grep -q '^PEER=' "$work/helper.out"
	line=$(grep '^PEER=' "$work/helper.out")
	[[ $line =~ ^PEER=([0-9]+)\ OFFSET=([0-9]+)\ LEN=([0-9]+)\ SUM=([0-9a-f]{16})$ ]] ||
		fail "unexpected helper output: $line"
	host_peer=${BASH_REMATCH[1]} offset=${BASH_REMATCH[2]} len=${BASH_REMATCH[3]}
	host_sum=${BASH_REMATCH[4]}
	log "host peer $host_peer wrote $len bytes at $offset, sum $host_sum"
}

start_vm() {
	local initrd="$work/guest.cpio.gz"
	"$here/build-initramfs.sh" "$initrd" "$probe:/bin/ivshmem-probe"
	# The console's input: the guest waits for "go" on it before ringing.
	mkfifo "$work/console.in"
	exec {console_fd}<>"$work/console.in"
	background qemu-system-x86_64 -accel tcg -m 256 -nographic -no-reboot \
		-kernel "$kernel" -initrd "$initrd" \
		-append "console=ttyS0 quiet panic=-1 ivr.peer=$host_peer ivr.off=$offset ivr.len=$len ivr.vec=$VECTOR ivr.wait=1 ivr.waitsec=$BOOT_TIMEOUT" \
		-chardev socket,path="$work/$VM.sock",id=iv \
		-device ivshmem-doorbell,chardev=iv,vectors=$VECTORS \
		<"$work/console.in" >"$work/serial.log" 2>&1 &
	qemu_pid=$!
	log "QEMU started (kernel $kernel)"
}

guest_said() {
	serial | grep -q "^IVR-GUEST: $1"
}

wait_guest_ready() {
	wait_until "the guest to print READY" $BOOT_TIMEOUT guest_said '\(READY\|FAIL\)'
	guest_said FAIL && fail "guest: $(serial | grep '^IVR-GUEST: FAIL')"
	log "guest ready: $(serial | grep -c '^IVR-GUEST:') result lines"
	guest_pos=$(guest_value position IVPOSITION)
	guest_sum=$(guest_value read SUM)
	[[ $guest_pos =~ ^[0-9]+$ ]] || fail "guest printed no IVPOSITION"
	guest_said 'header: HEADER=ok' || fail "guest did not validate the region header"
	[ "$guest_sum" = "$host_sum" ] ||
		fail "checksum mismatch: guest read $guest_sum, host wrote $host_sum"
	log "guest peer $guest_pos read the host's bytes (sum $guest_sum)"
}

# ivrdmad's view while the VM is up: vm1 active with the guest's peer ID,
# the helper under the host node, distinct LIDs, GUIDs and GIDs.
check_status_active() {
	local json="$work/status.json"
	"$ivrdma" --dir "$work" status --json >"$json" || fail "ivrdma status --json failed"
	jq -e --arg vm "$VM" --argjson g "$guest_pos" --argjson h "$host_peer" '
		(.nodes[] | select(.name == $vm)) as $v
		| (.nodes[] | select(.kind == "host")) as $host
		| $v.kind == "vm" and $v.state == "active"
		  and ($v.peers | index($g)) != null
		  and ($host.peers | index($h)) != null
		  and $v.lid != $host.lid and $v.lid > 0
		  and $v.gid != $host.gid and $v.guid != $host.guid
		  and any(.peers[]; .id == $g and .node == $vm)
		  and any(.peers[]; .id == $h and .node == $host.name)' "$json" >/dev/null ||
		fail "ivrdma status does not show $VM active with peer $guest_pos: $(jq -c . "$json")"
	log "status: $(jq -r --arg vm "$VM" '.nodes[] | select(.name == $vm)
		| "\(.name) \(.state) lid \(.lid) gid \(.gid) peers \(.peers)"' "$json")"
}

# wait_exit PID SECONDS: its exit status, or fails after SECONDS.
wait_exit() {
	local pid=$1 limit=$2 rc=0 _
	for _ in $(seq $((limit * 5))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	kill -0 "$pid" 2>/dev/null && return 124
	wait "$pid" || rc=$?
	return $rc
}

ring_and_finish() {
	local rc=0
	echo go >&"$console_fd"
	wait_exit "$helper_pid" 60 || rc=$?
	helper_pid=
	[ $rc -eq 0 ] || fail "host peer exited $rc: $(cat "$work/helper.err")"
	grep -qx "DOORBELL vector=$VECTOR" "$work/helper.out" || fail "host peer saw no doorbell"
	log "host peer got the guest's doorbell on vector $VECTOR"
	rc=0
	wait_exit "$qemu_pid" 60 || rc=$?
	qemu_pid=
	[ $rc -eq 0 ] || fail "QEMU exited $rc (124: guest did not power off)"
	if ! guest_said 'ring: RANG' || ! guest_said DONE; then
		fail "guest did not finish: no RANG/DONE"
	fi
}

vm_not_active() {
	"$ivrdma" --dir "$work" status --json | jq -e --arg vm "$VM" --argjson g "$guest_pos" '
		.nodes[] | select(.name == $vm)
		| .state != "active" and (.peers | index($g)) == null' >/dev/null
}

main() {
	parse_args "$@"
	check_tools
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
	work=$(mktemp -d /tmp/ivrdma-guest.XXXXXX) # short: socket paths max 107 bytes
	shm="/ivrdma-guest-$$-$RANDOM"
	start_janitor
	start_daemon
	start_helper
	start_vm
	wait_guest_ready
	check_status_active
	ring_and_finish
	wait_until "ivrdmad to see $VM leave" 10 vm_not_active
	log "$VM is $("$ivrdma" --dir "$work" status --json |
		jq -r --arg vm "$VM" '.nodes[] | select(.name == $vm) | .state') after power-off"
	log "PASS in $(elapsed)s"
}

main "$@"
