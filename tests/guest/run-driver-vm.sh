#!/usr/bin/env bash
# Guest tests of the kernel module: one real QEMU VM (TCG) on ivrdmad, with
# ivrdma_ivshmem.ko in its initramfs (guest-driver-init.sh runs the test).
#
#   run-driver-vm.sh --test basics|robust --ivrdmad PATH --ivrdma PATH
#                    --drvtest PATH --helper PATH --module PATH
#                    [--kernel PATH] [--keep]
#
# basics: a host peer (guest-host-peer) writes a pattern into a chunk; the
#   guest attaches through the transport's guest backend, its IVPosition
#   must be the peer ID ivrdma status gives the VM, it reads the pattern
#   (same checksum, also through an ivt_map_at() MAP_FIXED mapping), writes
#   one back that the host peer verifies, rings the host peer, and the host
#   peer rings the guest, which wakes on its eventfd. The memory type of
#   BAR2's user mapping must be write-back.
# robust: module load/unload x20, bad ioctl and mmap arguments, more
#   vectors than the device has, unbind with open mappings (SIGBUS,
#   ENODEV), rebind; no BUG/Oops/WARNING in the guest's kernel log.
#
# Exit 0 pass, 1 fail, 77 skip (no qemu-system-x86_64, or no module: the
# guest kernel's headers are not installed). Whatever happens, QEMU,
# ivrdmad and the helper are stopped and the work dir and the shm object
# are removed (--keep keeps the work dir).
set -euo pipefail

SKIP=77
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
start_ns=$(date +%s%N)
test_name='' ivrdmad='' ivrdma='' drvtest='' helper='' module='' kernel='' keep=0
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
		tail -n 60 "$work/$f" | tr -d '\r' | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g'
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


usage() {
	echo "usage: run-driver-vm.sh --test basics|robust --ivrdmad PATH --ivrdma PATH" \
		"--drvtest PATH --helper PATH --module PATH [--kernel PATH] [--keep]" >&2
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

check_tools() {
	if ! command -v qemu-system-x86_64 >/dev/null; then
		echo "SKIP: qemu-system-x86_64 not installed (package qemu-system-x86)"
		exit $SKIP
	fi
	if [ -z "$module" ]; then
		echo "SKIP: ivrdma_ivshmem.ko was not built: no kernel headers for the guest kernel" \
			"(install linux-headers-amd64 and re-run cmake)"
		exit $SKIP
	fi
	[ -r "$module" ] || fail "module $module not built (cmake --build: target uio-driver)"
	local t
	for t in jq cpio busybox timeout setpriv mkfifo; do
		command -v "$t" >/dev/null || fail "$t not installed (see scripts/install-deps.sh)"
	done
	find_kernel
	local release=${kernel##*/vmlinuz-} vermagic
	vermagic=$(grep -a -o 'vermagic=[^ ]*' "$module" | head -n 1)
	[ "${vermagic#vermagic=}" = "$release" ] ||
		fail "module built for '${vermagic#vermagic=}', guest kernel is $release"
}

start_daemon() {
	background "$ivrdmad" --dir "$work" --shm "$shm" --size $REGION_SIZE \
		--vectors $VECTORS --vm "$VM" -v </dev/null >"$work/ivrdmad.log" 2>&1 &
	daemon_pid=$!
	wait_until "ivrdmad to answer status" 15 "$ivrdma" --dir "$work" status >/dev/null 2>&1
	log "ivrdmad ready (shm $shm, dir $work)"
}

start_helper() {
	local line
	background "$helper" --socket "$work/host.sock" --vector $VECTOR --len $LEN \
		--expect-seed $WSEED --ring-back $WVECTOR \
		--timeout $((BUDGET - 10)) </dev/null >"$work/helper.out" 2>"$work/helper.err" &
	helper_pid=$!
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
	local initrd="$work/guest.cpio.gz" args="console=ttyS0 quiet panic=-1 ivr.test=$test_name"
	"$here/build-initramfs.sh" --init "$here/guest-driver-init.sh" "$initrd" \
		"$drvtest:/bin/ivshmem-drvtest" "$module:/lib/modules/ivrdma_ivshmem.ko"
	if [ "$test_name" = basics ]; then
		args+=" ivr.off=$offset ivr.len=$len ivr.woff=$woffset ivr.wseed=$WSEED"
		args+=" ivr.peer=$host_peer ivr.vec=$VECTOR ivr.wvec=$WVECTOR"
	fi
	mkfifo "$work/console.in"
	exec {console_fd}<>"$work/console.in"
	background qemu-system-x86_64 -accel tcg -m 256 -nographic -no-reboot \
		-kernel "$kernel" -initrd "$initrd" -append "$args" \
		-chardev socket,path="$work/$VM.sock",id=iv \
		-device ivshmem-doorbell,chardev=iv,vectors=$VECTORS \
		<"$work/console.in" >"$work/serial.log" 2>&1 &
	qemu_pid=$!
	log "QEMU started (kernel $kernel, test $test_name)"
}

guest_said() {
	serial | grep -q "^IVR-GUEST: $1"
}

guest_lines() { # guest_lines STEP: that step's output
	serial | sed -n "s/^IVR-GUEST: $1: //p"
}

# ivrdmad's view while the VM is up: vm1 active with the guest's peer ID.
check_status_active() {
	local json="$work/status.json"
	"$ivrdma" --dir "$work" status --json >"$json" || fail "ivrdma status --json failed"
	jq -e --arg vm "$VM" --argjson g "$guest_pos" '
		(.nodes[] | select(.name == $vm)) as $v
		| $v.state == "active" and ($v.peers | index($g)) != null
		  and any(.peers[]; .id == $g and .node == $vm)' "$json" >/dev/null ||
		fail "ivrdma status does not show $VM active with peer $guest_pos: $(jq -c . "$json")"
	log "status: $VM active with peer $guest_pos = the guest's IVPosition"
}

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

wait_guest_done() {
	local rc=0
	wait_exit "$qemu_pid" "$1" || rc=$?
	qemu_pid=
	guest_said FAIL && fail "guest: $(serial | grep '^IVR-GUEST: FAIL')"
	[ $rc -eq 0 ] || fail "QEMU exited $rc (124: guest did not power off)"
	guest_said DONE || fail "guest did not finish (no DONE)"
}

run_basics() {
	local memtype
	start_helper
	start_vm
	wait_until "the guest to print READY" $BOOT_TIMEOUT guest_said '\(READY\|FAIL\)'
	guest_said FAIL && fail "guest: $(serial | grep '^IVR-GUEST: FAIL')"
	guest_pos=$(guest_lines attach | sed -n 's/^IVPOSITION=\([0-9]*\).*/\1/p' | head -n 1)
	[[ $guest_pos =~ ^[0-9]+$ ]] || fail "guest printed no IVPOSITION"
	check_status_active
	memtype=$(guest_lines memtype | sed -n 's/^MEMTYPE=//p')
	log "guest: $(guest_lines memtype | grep '^BAR2 user mapping')"
	[ "$memtype" = WB ] || fail "BAR2 user mapping is '$memtype', not write-back: $(guest_lines memtype)"
	echo go >&"$console_fd"
	wait_guest_done 60
	local gsum
	gsum=$(guest_lines basics | sed -n 's/^OFFSET=.* SUM=\([0-9a-f]*\)$/\1/p')
	[ "$gsum" = "$host_sum" ] || fail "checksum mismatch: guest read $gsum, host wrote $host_sum"
	guest_lines basics | grep -q '^MAP_AT=ok' || fail "guest: ivt_map_at failed"
	local rc=0
	wait_exit "$helper_pid" 20 || rc=$?
	helper_pid=
	[ $rc -eq 0 ] || fail "host peer exited $rc: $(cat "$work/helper.err")"
	grep -qx "DOORBELL vector=$VECTOR" "$work/helper.out" || fail "host peer saw no doorbell"
	grep -q '^GUEST_WRITE=ok' "$work/helper.out" || fail "host peer did not verify the guest's write"
	grep -q "^RANG_BACK peer=$guest_pos " "$work/helper.out" || fail "host peer did not ring the guest"
	guest_lines basics | grep -q "^WOKE vector=$WVECTOR" || fail "guest did not wake on its eventfd"
	log "guest read the host's bytes (sum $gsum), host verified the guest's, doorbells both ways;" \
		"$(guest_lines basics | grep '^WOKE')"
}

run_robust() {
	start_vm
	wait_guest_done $((BUDGET - 15))
	log "$(guest_lines loadloop | tail -n 1); $(guest_lines unbind | grep -E '^(RMMOD|BAR2_ACCESS|IOCTL_AFTER)' | tr '\n' ' ')"
	log "$(guest_lines badargs | tail -n 1); $(guest_lines cmddev | grep -E "^(BAD_COMMANDS|CHANNEL_QUEUE)" | tr "\n" " ")"
}

main() {
	parse_args "$@"
	check_tools
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
	work=$(mktemp -d /tmp/ivrdma-drv.XXXXXX) # short: socket paths max 107 bytes
	shm="/ivrdma-drv-$$-$RANDOM"
	start_janitor
	start_daemon
	"run_$test_name"
	log "PASS in $(elapsed)s"
}

main "$@"
