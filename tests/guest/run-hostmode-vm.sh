#!/usr/bin/env bash
# guest.host_mode: completion channels for host processes from the kernel
# module (ivrdma_ivshmem.ko host=1), instead of the LD_PRELOAD library. A
# real QEMU VM (TCG) without ivshmem device plays the host: it runs
# ivrdmad, `ivrdma setup` and `ivrdma env`, and unchanged
# ibv_rc_pingpong -e -c between two of its processes, first over the
# driver's channels with no LD_PRELOAD, then, with the module unloaded,
# over the preload's (the fallback `ivrdma env` then picks), and once
# without either, which must fail. guest-hostmode-init.sh runs the steps.
#
#   run-hostmode-vm.sh --ivrdmad PATH --ivrdma PATH --provider PATH
#                      --preload PATH --preload-dest PATH --module PATH
#                      [--kernel PATH] [--keep]
#
# --preload-dest: where `ivrdma env` looks for the installed preload
# library (the build's IVRDMA_PRELOAD_DIR); the image has it there.
#
# Exit 0 pass, 1 fail, 77 skip (no QEMU, or no module). Whatever happens,
# QEMU is stopped and the work dir removed (--keep keeps it).
set -euo pipefail

BUDGET=${IVRDMA_GUEST_BUDGET:-270} # see vm-lib.sh; keep it under the CTest TIMEOUT (300)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ivrdmad='' ivrdma='' provider='' preload='' preload_dest='' module='' kernel='' keep=0
# shellcheck source=vm-lib.sh
. "$here/vm-lib.sh"

usage() {
	echo "usage: run-hostmode-vm.sh --ivrdmad PATH --ivrdma PATH --provider PATH" \
		"--preload PATH --preload-dest PATH --module PATH [--kernel PATH] [--keep]" >&2
	exit 2
}

parse_args() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--ivrdmad) ivrdmad=${2:-}; shift 2 ;;
		--ivrdma) ivrdma=${2:-}; shift 2 ;;
		--provider) provider=${2:-}; shift 2 ;;
		--preload) preload=${2:-}; shift 2 ;;
		--preload-dest) preload_dest=${2:-}; shift 2 ;;
		--module) module=${2:-}; shift 2 ;;
		--kernel) kernel=${2:-}; shift 2 ;;
		--keep) keep=1; shift ;;
		*) usage ;;
		esac
	done
	if [ ! -x "$ivrdmad" ] || [ ! -x "$ivrdma" ] || [ ! -r "$provider" ] || [ ! -r "$preload" ]; then
		usage
	fi
	[[ $preload_dest == /* ]] || usage
}

build_image() {
	local tool specs=()
	for tool in ibv_rc_pingpong ibv_devinfo; do
		specs+=("$(command -v "$tool"):/usr/bin/$tool")
	done
	echo "driver ivrdma" >"$work/ivrdma.driver"
	"$here/build-initramfs.sh" --libs --init "$here/guest-hostmode-init.sh" "$work/host.cpio.gz" \
		"$module:/lib/modules/ivrdma_ivshmem.ko" "$ivrdmad:/usr/bin/ivrdmad" \
		"$ivrdma:/usr/bin/ivrdma" "$preload:$preload_dest" \
		"$provider:/usr/lib/x86_64-linux-gnu/libibverbs/libivrdma-rdmav34.so" \
		"$work/ivrdma.driver:/etc/libibverbs.d/ivrdma.driver" "${specs[@]}"
	log "initramfs: $(du -k "$work/host.cpio.gz" | cut -f1) KiB"
}

main() {
	parse_args "$@"
	check_tools cpio busybox timeout setpriv mkfifo
	check_module "$module"
	vm_lib_init ivrdma-hostmode
	build_image
	qemu_start vm1 "$work/host.cpio.gz" "ivr.preload=$preload_dest"
	log "QEMU vm1 started, no ivshmem device: $(vm_machine_args | tr '\n' ' ')"
	vm_wait_done vm1 $((BUDGET - 30))
	log "$(guest_lines vm1 setup | tail -n 2 | tr '\n' ' ')"
	log "$(guest_lines vm1 channels | grep -E "^(LD_PRELOAD|events posted|client: .*usec/iter)" | tr '\n' ' ')"
	log "$(guest_lines vm1 setup2 | tail -n 1); $(guest_lines vm1 control | head -n 1)"
	log "PASS in $(elapsed)s"
}

main "$@"
