#!/usr/bin/env bash
# Guest test of QEMU's live (pre-copy) migration under TCG, with no
# ivshmem device and no ivrdma: does the destination get every store the
# guest made while its RAM was copied? guest.migration_qemu migrates live
# and relies on that.
#
#   run-precopy-vm.sh --program PATH [--hops N] [--kernel PATH] [--keep]
#
# One busybox VM (vm-lib.sh's machine, no ivshmem device) runs --program
# (guest-precopy.c: threads rewriting and checking their own buffers),
# then migrates N times (default 3), each time to a new QEMU started with
# -incoming, live by default. After each hop the program checks every word
# of its buffers; a word still holding an older round's value is a store
# the migration lost. Pass: no stale word after any hop.
#
# Environment, for investigating:
#   IVRDMA_PRECOPY_MODE=stopped  stop the vCPUs for each copy (QMP stop,
#                                then cont at the destination)
#   IVRDMA_PRECOPY_THREADS, IVRDMA_PRECOPY_KIB  the program's threads and
#                                KiB per thread (default 2 and 1024)
#   IVRDMA_VM_RAM                the VMs' -m (vm-lib.sh)
#   IVRDMA_VM_ACCEL              the VMs' -accel (vm-lib.sh)
#
# Exit 0 pass, 1 fail, 77 skip (no qemu-system-x86_64). Whatever happens,
# QEMU is stopped and the work dir removed (--keep keeps it).
set -euo pipefail

BUDGET=${IVRDMA_GUEST_BUDGET:-270} # see vm-lib.sh; keep it under the CTest TIMEOUT (300)
BOOT_TIMEOUT=${IVRDMA_GUEST_BOOT_TIMEOUT:-90}
CHECK_TIMEOUT=120 # the program's two rounds after a hop, a bound against hangs

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
program='' kernel='' keep=0 hops=3
# shellcheck source=vm-lib.sh
. "$here/vm-lib.sh"
# shellcheck source=../lib/free-port.sh
. "$here/../lib/free-port.sh"

usage() {
	echo "usage: run-precopy-vm.sh --program PATH [--hops N] [--kernel PATH] [--keep]" >&2
	exit 2
}

parse_args() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--program) program=${2:-}; shift 2 ;;
		--hops) hops=${2:-}; shift 2 ;;
		--kernel) kernel=${2:-}; shift 2 ;;
		--keep) keep=1; shift ;;
		*) usage ;;
		esac
	done
	[ -x "$program" ] || usage
	[[ $hops =~ ^[1-9][0-9]*$ ]] || usage
}

# checked ID: the program's CHECKED line for ID, once printed.
checked() {
	guest_lines vm1 precopy | grep "^CHECKED $1 " || true
}

# ended_badly: the program found a stale word (its state may be stale as
# well: a thread's round counter on its stack, say), the guest kernel
# oopsed or the guest failed.
ended_badly() {
	serial vm1 | grep -E '^(\[ *[0-9.]+\] )?(BUG:|Oops|Kernel panic)|^IVR-GUEST: (FAIL|precopy: STALE)' || true
}

# hop_checked N: the program's check after hop N is done, or the guest
# will not get there.
hop_checked() {
	[ -n "$(checked "hop$1")" ] || [ -n "$(ended_badly)" ]
}

qmp_or_ended() { # qmp_or_ended PORT: QMP listens there, or the guest ended badly
	tcp_listening "$1" || [ -n "$(ended_badly)" ]
}

# hop N MODE: vm1 migrates to a new QEMU; then every word is checked.
hop() {
	local n=$1 mode=$2 port qmp out t line
	port=$(free_port) || fail "no port for the migration"
	qmp=$(free_port) || fail "no port for QMP"
	[ "$qmp" != "$port" ] || qmp=$((port + 1))
	vm_incoming vm1 "$port" "$work/precopy.cpio.gz" "$append" \
		-qmp tcp:127.0.0.1:"$qmp",server=on,wait=off
	t=$(now_ms)
	out=$(qmp_migrate "$port" "$mode")
	vm_migrated vm1
	exec {qmp_fd}>&-
	# A guest that crashed at once may take its QEMU down before QMP.
	wait_until "QMP of vm1 after hop $n" 30 qmp_or_ended "$qmp"
	[ -z "$(ended_badly)" ] || fail "the guest after hop $n: $(ended_badly | head -n 3 | tr '\n' ' ')"
	qmp_connect "$qmp" "qmp-hop$n"
	[ "$mode" = live ] || qmp_cmd '{"execute": "cont"}' >/dev/null
	log "hop $n ($mode) in $(($(now_ms) - t)) ms:" \
		"$(jq -r '.return | "total-time \(.["total-time"]) ms, downtime \(.downtime) ms, \(.ram.transferred) bytes, \(.ram["dirty-sync-count"]) syncs"' <<<"$out")"
	vm_send vm1 "wait hop$n"
	wait_until "the program's check after hop $n" $CHECK_TIMEOUT hop_checked "$n"
	line=$(checked "hop$n")
	[ -n "$line" ] || fail "the guest after hop $n: $(ended_badly | head -n 3 | tr '\n' ' ')"
	log "hop $n: $line"
	stale_after[n]=${line#* stale }
	stale_after[n]=${stale_after[n]%% *}
}

main() {
	local mode=${IVRDMA_PRECOPY_MODE:-live} n qmp stale=0
	parse_args "$@"
	check_tools jq cpio busybox timeout setpriv mkfifo
	vm_lib_init ivrdma-precopy
	"$here/build-initramfs.sh" --init "$here/guest-precopy-init.sh" "$work/precopy.cpio.gz" \
		"$program:/bin/guest-precopy"
	append="ivr.threads=${IVRDMA_PRECOPY_THREADS:-2} ivr.kib=${IVRDMA_PRECOPY_KIB:-1024}"
	qmp=$(free_port) || fail "no port for QMP"
	qemu_start vm1 "$work/precopy.cpio.gz" "$append" -qmp tcp:127.0.0.1:"$qmp",server=on,wait=off
	log "QEMU vm1 started: $(vm_machine_args | tr '\n' ' ')"
	wait_until "the program to run" "$BOOT_TIMEOUT" guest_said vm1 '\(precopy: RUNNING\|FAIL\)'
	guest_failure vm1
	log "vm1: $(guest_lines vm1 precopy | head -n 1)"
	qmp_connect "$qmp"
	declare -a stale_after=()
	for n in $(seq "$hops"); do
		hop "$n" "$mode"
	done
	vm_send vm1 quit
	wait_until "the program to end" $CHECK_TIMEOUT guest_said vm1 '\(DONE\|FAIL\)'
	guest_lines vm1 precopy | grep '^STALE' | sed 's/^/    /' >&2 || true
	for n in $(seq "$hops"); do
		[ "${stale_after[n]}" = 0 ] || { stale=1; log "hop $n: stale words (cumulative ${stale_after[n]})"; }
	done
	[ $stale -eq 0 ] || fail "$mode pre-copy migration lost guest stores: $(guest_lines vm1 precopy | tail -n 1)"
	vm_wait_done vm1 60
	log "PASS $hops $mode migrations, no stale word: $(guest_lines vm1 precopy | tail -n 1)"
}

main "$@"
