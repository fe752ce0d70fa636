#!/usr/bin/env bash
# Guest tests of the kernel module: one real QEMU VM (TCG) on ivrdmad, with
# ivrdma_ivshmem.ko in its initramfs (guest-driver-init.sh runs the test).
#
#   run-driver-vm.sh --test basics|robust --ivrdmad PATH --ivrdma PATH
#                    --drvtest PATH --helper PATH --module PATH
#                    [--daemon-dir DIR] [--kernel PATH] [--keep]
#
# --daemon-dir: the VM joins the ivrdmad already serving DIR (with a VM
#   vm1 and a region of 4 GiB or more), which the test neither starts nor
#   stops: the package test's service (tests/package/).
#
# basics: a host peer (guest-host-peer) writes a pattern into a chunk; the
#   guest attaches through the transport's guest backend, its IVPosition
#   must be the peer ID ivrdma status gives the VM, it reads the pattern
#   (same checksum, also through an ivt_map_at() MAP_FIXED mapping), writes
#   one back that the host peer verifies, rings the host peer, and the host
#   peer rings the guest, which wakes on its eventfd. The memory type of
#   BAR2's user mapping must be write-back. Then guest and host peer race
#   locked adds on one BAR2 word: no add may be lost (a TCG guest's locked
#   instructions are atomic against other processes only with parallel
#   code, see vm_boot).
# robust: module load/unload x20, bad ioctl and mmap arguments, more
#   vectors than the device has, unbind with open mappings (SIGBUS,
#   ENODEV), rebind; no BUG/Oops/WARNING in the guest's kernel log.
#
# Exit 0 pass, 1 fail, 77 skip (no qemu-system-x86_64, or no module: the
# guest kernel's headers are not installed). Whatever happens, QEMU,
# ivrdmad and the helper are stopped and the work dir and the shm object
# are removed (--keep keeps the work dir).
set -euo pipefail

VM=vm1
VECTORS=4 # QEMU's vectors= must equal ivrdmad's --vectors
VECTOR=3  # IVRDMA_VEC_SPARE: rung by the guest, waited on by the helper
WVECTOR=1 # IVRDMA_VEC_COMPLETION: rung by the helper, waited on by the guest
WSEED=7   # the pattern the guest writes
LEN=65536
# Big enough that SeaBIOS places BAR2 above 4 GiB: below, its MTRRs make
# the 32-bit PCI hole uncachable and BAR2 could only be UC- (see the note
# in uio-driver/README.md). The shm object stays sparse.
REGION_SIZE=${IVRDMA_DRV_REGION_SIZE:-4G}
BUDGET=100
BOOT_TIMEOUT=60

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
test_name='' ivrdmad='' ivrdma='' drvtest='' helper='' module='' kernel='' keep=0
helper_pid=''
# shellcheck source=vm-lib.sh
. "$here/vm-lib.sh"

usage() {
	echo "usage: run-driver-vm.sh --test basics|robust --ivrdmad PATH --ivrdma PATH" \
		"--drvtest PATH --helper PATH --module PATH [--daemon-dir DIR] [--kernel PATH] [--keep]" >&2
	exit 2
}

parse_args() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--test) test_name=${2:-}; shift 2 ;;
		--ivrdmad) ivrdmad=${2:-}; shift 2 ;;
		--ivrdma) ivrdma=${2:-}; shift 2 ;;
		--drvtest) drvtest=${2:-}; shift 2 ;;
		--helper) helper=${2:-}; shift 2 ;;
		--module) module=${2:-}; shift 2 ;;
		--daemon-dir) daemon_dir=${2:-}; shift 2 ;;
		--kernel) kernel=${2:-}; shift 2 ;;
		--keep) keep=1; shift ;;
		*) usage ;;
		esac
	done
	case "$test_name" in basics | robust) ;; *) usage ;; esac
	if [ -z "$ivrdmad" ] || [ -z "$ivrdma" ] || [ -z "$drvtest" ] || [ -z "$helper" ]; then
		usage
	fi
	for f in "$ivrdmad" "$ivrdma" "$drvtest" "$helper"; do
		[ -x "$f" ] || fail "not an executable: $f"
	done
}

find_kernel() {
	if [ -z "$kernel" ]; then
		kernel=$(printf '%s\n' /boot/vmlinuz-*-amd64 | sort -V | tail -n 1)
	fi
	[ -r "$kernel" ] || fail "no readable kernel (/boot/vmlinuz-*-amd64; install linux-image-amd64, or pass --kernel)"
}

start_helper() {
	local line
	background "$helper" --socket "$daemon_dir/host.sock" --vector $VECTOR --len $LEN \
		--expect-seed $WSEED --ring-back $WVECTOR --race \
		--timeout $((BUDGET - 10)) </dev/null >"$work/helper.out" 2>"$work/helper.err" &
	helper_pid=$!
	supervise $!
	wait_until "the host peer's PEER= line" 15 grep -q '^PEER=' "$work/helper.out"
	line=$(grep '^PEER=' "$work/helper.out")
	[[ $line =~ ^PEER=([0-9]+)\ OFFSET=([0-9]+)\ LEN=([0-9]+)\ SUM=([0-9a-f]{16})$ ]] ||
		fail "unexpected helper output: $line"
	host_peer=${BASH_REMATCH[1]} offset=${BASH_REMATCH[2]} len=${BASH_REMATCH[3]}
	host_sum=${BASH_REMATCH[4]}
	woffset=$(sed -n 's/^WRITE_OFFSET=//p' "$work/helper.out")
	[[ $woffset =~ ^[0-9]+$ ]] || fail "helper printed no WRITE_OFFSET"
	log "host peer $host_peer wrote $len bytes at $offset (sum $host_sum); guest writes at $woffset"
}

start_vm() {
	local initrd="$work/guest.cpio.gz" append="ivr.test=$test_name"
	"$here/build-initramfs.sh" --init "$here/guest-driver-init.sh" "$initrd" \
		"$drvtest:/bin/ivshmem-drvtest" "$module:/lib/modules/ivrdma_ivshmem.ko"
	if [ "$test_name" = basics ]; then
		append+=" ivr.off=$offset ivr.len=$len ivr.woff=$woffset ivr.wseed=$WSEED"
		append+=" ivr.peer=$host_peer ivr.vec=$VECTOR ivr.wvec=$WVECTOR ivr.race=1"
	fi
	vm_boot "$VM" "$initrd" "$append"
}

# ivrdmad's view while the VM is up: vm1 active with the guest's peer ID.
check_status_active() {
	local json="$work/status.json"
	"$ivrdma" --dir "$daemon_dir" status --json >"$json" || fail "ivrdma status --json failed"
	jq -e --arg vm "$VM" --argjson g "$guest_pos" '
		(.nodes[] | select(.name == $vm)) as $v
		| $v.state == "active" and ($v.peers | index($g)) != null
		  and any(.peers[]; .id == $g and .node == $vm)' "$json" >/dev/null ||
		fail "ivrdma status does not show $VM active with peer $guest_pos: $(jq -c . "$json")"
	log "status: $VM active with peer $guest_pos = the guest's IVPosition"
}

run_basics() {
	local memtype
	start_helper
	start_vm
	wait_until "the guest to print READY" $BOOT_TIMEOUT guest_said "$VM" '\(READY\|FAIL\)'
	guest_failure "$VM"
	guest_pos=$(guest_lines "$VM" attach | sed -n 's/^IVPOSITION=\([0-9]*\).*/\1/p' | head -n 1)
	[[ $guest_pos =~ ^[0-9]+$ ]] || fail "guest printed no IVPOSITION"
	check_status_active
	memtype=$(guest_lines "$VM" memtype | sed -n 's/^MEMTYPE=//p')
	log "guest: $(guest_lines "$VM" memtype | grep '^BAR2 user mapping')"
	[ "$memtype" = WB ] || fail "BAR2 user mapping is '$memtype', not write-back: $(guest_lines "$VM" memtype)"
	vm_send "$VM" go
	vm_wait_done "$VM" 60
	local gsum
	gsum=$(guest_lines "$VM" basics | sed -n 's/^OFFSET=.* SUM=\([0-9a-f]*\)$/\1/p')
	[ "$gsum" = "$host_sum" ] || fail "checksum mismatch: guest read $gsum, host wrote $host_sum"
	guest_lines "$VM" basics | grep '^MAP_AT=ok' >/dev/null || fail "guest: ivt_map_at failed"
	local rc=0
	wait_exit "$helper_pid" 20 || rc=$?
	[ $rc -eq 0 ] || fail "host peer exited $rc: $(cat "$work/helper.err")"
	grep -qx "DOORBELL vector=$VECTOR" "$work/helper.out" || fail "host peer saw no doorbell"
	grep -q '^GUEST_WRITE=ok' "$work/helper.out" || fail "host peer did not verify the guest's write"
	grep -q "^RANG_BACK peer=$guest_pos " "$work/helper.out" || fail "host peer did not ring the guest"
	guest_lines "$VM" basics | grep "^WOKE vector=$WVECTOR" >/dev/null || fail "guest did not wake on its eventfd"
	grep -q '^ADDS=ok' "$work/helper.out" || fail "host peer did not check the race of adds"
	log "guest read the host's bytes (sum $gsum), host verified the guest's, doorbells both ways;" \
		"$(guest_lines "$VM" basics | grep '^WOKE'); no add lost: $(grep '^ADDS=ok' "$work/helper.out")"
}

run_robust() {
	start_vm
	vm_wait_done "$VM" $((BUDGET - 15))
	log "$(guest_lines "$VM" loadloop | tail -n 1); $(guest_lines "$VM" unbind | grep -E '^(RMMOD|BAR2_ACCESS|IOCTL_AFTER)' | tr '\n' ' ')"
	log "$(guest_lines "$VM" badargs | tail -n 1); $(guest_lines "$VM" cmddev | grep -E "^(BAD_COMMANDS|CHANNEL_QUEUE|EVENT_RULE|RULE_LIFETIME)" | tr "\n" " ")"
}

main() {
	parse_args "$@"
	check_tools jq cpio busybox timeout setpriv mkfifo
	check_module "$module"
	vm_lib_init ivrdma-drv
	if [ -z "$daemon_dir" ]; then
		daemon_dir=$work
		start_daemon "$ivrdmad" "$ivrdma" "$REGION_SIZE" "$VM"
	fi
	"run_$test_name"
	log "PASS in $(elapsed)s"
}

main "$@"
