#!/bin/sh
# /init of the verbs test image (busybox sh, plus libibverbs, the provider,
# ivrdma, udevd with the packaged 60-ivrdma.rules and the stock verbs tools
# with their libraries): starts udevd, loads ivrdma_ivshmem.ko (the rule
# runs `ivrdma setup` for its device, as in an installed guest; so again
# when the device is plugged back in), brings up the network, waits for
# the rule's sysfs tree, takes `ivrdma env`'s environment, prints READY,
# then runs what the host sends on the console, one command per line:
#
#   run ID SECONDS CMD [ARG]...  run CMD in the background (bounded by
#                                SECONDS); when it ends, print its output
#                                as "IVR-GUEST: ID: ..." lines, then
#                                "IVR-GUEST: END ID rc=N"
#   live ID SECONDS CMD [ARG]...  the same, but each output line is
#                                printed as it comes (the host's cues)
#   listen ID SECONDS PORT       END ID rc=0 once something listens on
#                                TCP PORT, rc=1 after SECONDS
#   unbind ID SECONDS            ibv_asyncwatch runs while the ivshmem
#                                device is unbound from its driver; its
#                                output, then END ID rc=(its exit status)
#   quit                         power off (after "IVR-GUEST: DONE")
#
# Kernel command line:
#   ivr.ip=ADDR/LEN   address of eth0 (an e1000 NIC); none: no network
#   ivr.shell=1       end in a shell instead of powering off (debugging)
#
# Result lines and the end: see guest-lib.sh.
MODULE=/lib/modules/ivrdma_ivshmem.ko
NIC_MODULE=/lib/modules/e1000.ko
DEV=/dev/ivshmem0
CMD=/dev/infiniband/ivrdma0
UDEVD=/lib/systemd/systemd-udevd
# What the rule's `ivrdma setup` writes (ivrdma env's SYSFS_PATH)
PORT=/run/ivrdma/sysfs/class/infiniband/ivrdma0/ports/1

# shellcheck source=guest-lib.sh
. /lib/ivr/guest-lib.sh

# udevd as an initramfs runs it (no systemd); its rules are 60-ivrdma.rules.
start_udevd() {
	$UDEVD --daemon --resolve-names=never || return 1
	udevadm --version
}

# The rule's `ivrdma setup` ran: udev handled the device's events (settle
# returns once their RUN+= programs ended), and the tree is there.
udev_setup() {
	udevadm settle --timeout=60 || return 1
	wait_for $PORT/lid $PORT/gids/0 || return 1
	echo "ivrdma0 set up by udev: LID $(cat $PORT/lid), GID $(cat $PORT/gids/0)"
}

load_driver() {
	insmod $MODULE || return 1
	wait_for $DEV $CMD || return 1
	ls -l $DEV $CMD
}

network() {
	ip=$(param ip)
	ip link set lo up
	[ -n "$ip" ] || { echo "no ivr.ip: no network"; return 0; }
	insmod $NIC_MODULE || return 1
	wait_for /sys/class/net/eth0 || return 1
	ip addr add "$ip" dev eth0 && ip link set eth0 up || return 1
	ip -o addr show dev eth0
}

# The provider comes from /etc/libibverbs.d, as when installed; the
# environment says where setup wrote the sysfs tree.
verbs_env() {
	ivrdma env >/tmp/env || return 1
	cat /tmp/env
	if grep -q LD_PRELOAD /tmp/env; then
		echo "ivrdma env wants LD_PRELOAD in a guest"
		return 1
	fi
}

# report ID RC FILE: the output of a command, then its end.
report() {
	while IFS= read -r line; do
		say "$1: $line"
	done <"$3"
	say "END $1 rc=$2"
}

run_cmd() { # run_cmd ID SECONDS CMD...
	id=$1 limit=$2
	shift 2
	timeout "$limit" "$@" >"/tmp/$id.out" 2>&1
	report "$id" $? "/tmp/$id.out"
}

live_cmd() { # live_cmd ID SECONDS CMD...
	id=$1 limit=$2
	shift 2
	{
		timeout "$limit" "$@" 2>&1
		echo $? >"/tmp/$id.rc"
	} | while IFS= read -r line; do
		say "$id: $line"
	done
	say "END $id rc=$(cat "/tmp/$id.rc")"
}

listen_cmd() { # listen_cmd ID SECONDS PORT
	end=$(($(date +%s) + $2))
	while ! listening "$3"; do
		[ "$(date +%s)" -lt "$end" ] || { say "END $1 rc=1"; return; }
		sleep 0.1
	done
	say "END $1 rc=0"
}

# The device leaves under a verbs process: it hears IBV_EVENT_DEVICE_FATAL.
unbind_cmd() { # unbind_cmd ID SECONDS
	ibv_asyncwatch -d ivrdma0 >"/tmp/$1.out" 2>&1 &
	watcher=$!
	sleep 1
	for d in /sys/bus/pci/drivers/ivrdma_ivshmem/0000:*; do
		basename "$d" >/sys/bus/pci/drivers/ivrdma_ivshmem/unbind
	done
	w=0
	while kill -0 $watcher 2>/dev/null && [ $w -lt $(($2 * 10)) ]; do
		sleep 0.1
		w=$((w + 1))
	done
	kill $watcher 2>/dev/null
	wait $watcher
	report "$1" $? "/tmp/$1.out"
}

# SIGKILL to every process named NAME: a verbs program dies under its connection.
kill_cmd() { # kill_cmd ID NAME
	n=0
	for p in /proc/[0-9]*; do
		[ "$(cat "$p/comm" 2>/dev/null)" = "$2" ] || continue
		kill -9 "${p#/proc/}" && n=$((n + 1))
	done
	say "$1: killed $n"
	[ $n -gt 0 ]
	say "END $1 rc=$?"
}

serve() {
	stty -echo 2>/dev/null
	say "READY"
	# shellcheck disable=SC2086 # commands are words, split on purpose
	while read -r verb id limit rest; do
		case "$verb" in
		run) run_cmd "$id" "$limit" $rest & ;;
		live) live_cmd "$id" "$limit" $rest & ;;
		listen) listen_cmd "$id" "$limit" "$rest" & ;;
		unbind) unbind_cmd "$id" "$limit" & ;;
		kill) kill_cmd "$id" "$rest" ;;
		quit) break ;;
		'') ;;
		*) say "FAIL serve unknown command '$verb'" ;;
		esac
	done
	wait
}

say "BOOTED kernel $(uname -r)"
step udevd start_udevd
step driver load_driver
step network network
step setup udev_setup
step env verbs_env
eval "$(cat /tmp/env)"
serve
say "DONE"
finish
