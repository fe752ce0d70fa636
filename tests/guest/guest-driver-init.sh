#!/bin/sh
# /init of the driver test image (busybox sh): loads ivrdma_ivshmem.ko and
# runs one driver test, chosen on the kernel command line:
#
#   ivr.test=basics  attach through the transport's guest backend, report
#                    the memory type of BAR2's user mapping, print READY and
#                    wait for "go" on the console, then the data and
#                    doorbell exchange with the host peer:
#                    ivr.off ivr.len ivr.woff ivr.wseed ivr.peer ivr.vec ivr.wvec
#                    ivr.race=1 (locked adds on one BAR2 word with the host peer)
#   ivr.test=robust  module load/unload loop (ivr.loops, default 20), bad
#                    ioctl and mmap arguments, the command device and its
#                    completion channels, unbind with open mappings and
#                    channels, node modes from the module parameters
#   ivr.shell=1      end in a shell instead of powering off (debugging)
#
# Result lines and the end: see guest-lib.sh.
MODULE=/lib/modules/ivrdma_ivshmem.ko
DEV=/dev/ivshmem0
CMD=/dev/infiniband/ivrdma0

# shellcheck source=guest-lib.sh
. /lib/ivr/guest-lib.sh

# load [PARAM=VALUE]...: insmod, then wait for both device nodes.
load() {
	insmod "$MODULE" "$@" || return 1
	w=0
	while { [ ! -c $DEV ] || [ ! -c $CMD ]; } && [ $w -lt 50 ]; do # devtmpfs is asynchronous
		sleep 0.1
		w=$((w + 1))
	done
	[ -c $DEV ] || { echo "no $DEV after insmod"; return 1; }
	[ -c $CMD ] || { echo "no $CMD after insmod"; return 1; }
}

node() {
	ls -l $DEV $CMD
	grep -H . /sys/module/ivrdma_ivshmem/parameters/*
}

# node_modes DEV_MODE CMD_MODE: reload with those parameters, check the nodes.
node_modes() {
	rmmod ivrdma_ivshmem || return 1
	load mode="$1" cmd_mode="$2" channel_depth=4 || return 1
	dm=$(stat -c %a $DEV)
	cm=$(stat -c %a $CMD)
	echo "MODES $DEV=$dm $CMD=$cm"
	if [ "$dm" != "${1#0}" ] || [ "$cm" != "${2#0}" ]; then
		echo "modes not as asked"
		return 1
	fi
	ivshmem-drvtest cmddev >/tmp/cmddev.out 2>&1 || { cat /tmp/cmddev.out; return 1; }
	grep -E '^(CMDDEV|CHANNEL_QUEUE)' /tmp/cmddev.out
	rmmod ivrdma_ivshmem && load
}

# The memory type BAR2's user mapping really got: the PTE's PAT index
# (from the driver) through the kernel's PAT table, the MTRRs over BAR2,
# and the kernel's memtype reservation of BAR2.
memtype() {
	dmesg | grep -o 'x86/PAT: Configuration.*' || { echo "no PAT configuration in dmesg"; return 1; }
	line=$(ivshmem-drvtest attach | grep '^MAPPING=bar2 ') || return 1
	idx=${line#*PAT_INDEX=}
	idx=${idx%% *}
	phys=${line#*PHYS=0x}
	type=$(dmesg | sed -n 's/.*x86\/PAT: Configuration \[0-7\]: *//p' |
		awk -v i="$idx" '{ print $(i + 1) }')
	echo "BAR2 user mapping: PAT index $idx = $type (page at 0x$phys)"
	echo "MTRR:"
	cat /proc/mtrr 2>&1
	echo "PAT memtype reservations:"
	grep -i "$phys" /sys/kernel/debug/x86/pat_memtype_list 2>&1 | head -n 5
	echo "MEMTYPE=$type"
}

no_oops() {
	if dmesg | grep -E 'BUG|Oops|WARNING|Call Trace|general protection'; then
		echo "kernel complained (above)"
		return 1
	fi
	dmesg | grep ivrdma_ivshmem | tail -n 6
	echo "no BUG/Oops/WARNING in dmesg"
}

load_loop() {
	n=$1
	round=0
	while [ $round -lt "$n" ]; do
		rmmod ivrdma_ivshmem || { echo "rmmod failed in round $round"; return 1; }
		[ ! -e $DEV ] || sleep 0.2
		[ ! -e $DEV ] || { echo "$DEV still there after rmmod"; return 1; }
		load || { echo "insmod failed in round $round"; return 1; }
		ivshmem-drvtest attach >/dev/null || { echo "attach failed in round $round"; return 1; }
		round=$((round + 1))
	done
	echo "LOADS=$n"
}

bdf() {
	for d in /sys/bus/pci/drivers/ivrdma_ivshmem/0000:*; do
		basename "$d"
		return
	done
	return 1
}

say "BOOTED kernel $(uname -r)"
step insmod load
step node node
case "$(param test)" in
basics)
	step attach ivshmem-drvtest attach
	step memtype memtype
	wait_for_go
	race=$(param race)
	step basics ivshmem-drvtest basics "$(param off)" "$(param len)" "$(param woff)" \
		"$(param wseed)" "$(param peer)" "$(param vec)" "$(param wvec)" 60 ${race:+race}
	;;
robust)
	loops=$(param loops)
	step loadloop load_loop "${loops:-20}"
	step badargs ivshmem-drvtest badargs
	step cmddev ivshmem-drvtest cmddev
	step modes node_modes 0640 0600
	b=$(bdf) || { say "FAIL bdf no device bound"; finish; }
	step unbind ivshmem-drvtest unbind "$b"
	step reload load_loop 1
	;;
*)
	say "FAIL test unknown ivr.test=$(param test)"
	finish
	;;
esac
step dmesg no_oops
say "DONE"
finish
