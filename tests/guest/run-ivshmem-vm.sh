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

VM=vm1
VECTORS=4 # QEMU's vectors= must equal ivrdmad's --vectors
VECTOR=3  # IVRDMA_VEC_SPARE: rung by the guest, waited on by the helper
LEN=65536
BUDGET=270 # see vm-lib.sh; keep it under the CTest TIMEOUT
BOOT_TIMEOUT=150

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ivrdmad='' ivrdma='' probe='' helper='' kernel='' keep=0
helper_pid=''
# shellcheck source=vm-lib.sh
. "$here/vm-lib.sh"

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

guest_value() { # guest_value STEP KEY: KEY=value of "IVR-GUEST: STEP: ..." lines
	serial "$VM" | sed -n "s/^IVR-GUEST: $1: .*\\b$2=\\([^ ]*\\).*/\\1/p" | head -n 1
}

start_helper() {
	local line
	background "$helper" --socket "$work/host.sock" --vector $VECTOR --len $LEN \
		--timeout $((BUDGET - 30)) </dev/null >"$work/helper.out" 2>"$work/helper.err" &
	helper_pid=$!
	supervise $!
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
	# The guest waits for "go" on its console before ringing.
	vm_boot "$VM" "$initrd" "ivr.peer=$host_peer ivr.off=$offset ivr.len=$len ivr.vec=$VECTOR ivr.wait=1 ivr.waitsec=$BOOT_TIMEOUT"
}

wait_guest_ready() {
	wait_until "the guest to print READY" $BOOT_TIMEOUT guest_said "$VM" '\(READY\|FAIL\)'
	guest_failure "$VM"
	log "guest ready: $(serial "$VM" | grep -c '^IVR-GUEST:') result lines"
	guest_pos=$(guest_value position IVPOSITION)
	guest_sum=$(guest_value read SUM)
	[[ $guest_pos =~ ^[0-9]+$ ]] || fail "guest printed no IVPOSITION"
	guest_said "$VM" 'header: HEADER=ok' || fail "guest did not validate the region header"
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

ring_and_finish() {
	local rc=0
	vm_send "$VM" go
	wait_exit "$helper_pid" 60 || rc=$?
	[ $rc -eq 0 ] || fail "host peer exited $rc: $(cat "$work/helper.err")"
	grep -qx "DOORBELL vector=$VECTOR" "$work/helper.out" || fail "host peer saw no doorbell"
	log "host peer got the guest's doorbell on vector $VECTOR"
	vm_wait_done "$VM" 60
	guest_said "$VM" 'ring: RANG' || fail "guest did not ring: no RANG"
}

vm_not_active() {
	"$ivrdma" --dir "$work" status --json | jq -e --arg vm "$VM" --argjson g "$guest_pos" '
		.nodes[] | select(.name == $vm)
		| .state != "active" and (.peers | index($g)) == null' >/dev/null
}

main() {
	parse_args "$@"
	check_tools jq cpio busybox timeout setpriv mkfifo
	vm_lib_init ivrdma-guest
	start_daemon "$ivrdmad" "$ivrdma" 16M "$VM"
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
