#!/bin/sh
# /init of guest.host_mode's image (see run-hostmode-vm.sh): a VM that
# plays the host. It has no ivshmem device; it runs ivrdmad itself and
# its verbs processes are host processes (host.sock), as on a real host.
#
#   driver    insmod ivrdma_ivshmem.ko host=1: /dev/infiniband/ivrdma_host
#   daemon    ivrdmad on a 64 MiB region in /run/ivrdma
#   setup     `ivrdma setup` picks the driver's command device, and the
#             sysfs tree has that one uverbs entry
#   env       `ivrdma env` exports no LD_PRELOAD, although the preload
#             library is installed where env finds it
#   channels  ibv_rc_pingpong -e -c (1 B and 4 KiB) between two processes,
#             without LD_PRELOAD: their completion channels are the
#             driver's (the provider alone cannot make one), and each
#             event was posted by its producer through the driver
#             (events_posted); then once relayed (IVRDMA_EVENT_RELAY=1)
#   unload    rmmod; `ivrdma setup` again falls back to /dev/null's node
#             (one uverbs entry again)
#   fallback  `ivrdma env` now exports LD_PRELOAD, and the same
#             ibv_rc_pingpong -e -c passes with it
#   control   ... and fails without it (the channels of the first round
#             could only have come from the driver)
#
# Kernel command line: ivr.preload=PATH where the image has the preload
# library (where `ivrdma env` looks for it); ivr.shell=1 ends in a shell
# (debugging).
# Result lines and the end: see guest-lib.sh.
MODULE=/lib/modules/ivrdma_ivshmem.ko
HOST_CMD=/dev/infiniband/ivrdma_host
DIR=/run/ivrdma
UVERBS=$DIR/sysfs/class/infiniband_verbs

# shellcheck source=guest-lib.sh
. /lib/ivr/guest-lib.sh

driver() {
	insmod $MODULE host=1 || return 1
	wait_for $HOST_CMD || return 1
	ls -l $HOST_CMD
	[ ! -e /dev/infiniband/ivrdma0 ] || { echo "ivrdma0 exists without an ivshmem device"; return 1; }
}

daemon() {
	mkdir -p /dev/shm /run && mount -t tmpfs tmpfs /dev/shm || return 1
	ip link set lo up || return 1
	ivrdmad --dir $DIR --size 64M >/tmp/ivrdmad.log 2>&1 &
	echo $! >/tmp/ivrdmad.pid
	wait_for $DIR/ctl.sock || { cat /tmp/ivrdmad.log; return 1; }
	ivrdma --dir $DIR status | head -n 3
}

# uverbs_entries: the names under class/infiniband_verbs, one line.
uverbs_entries() {
	for e in "$UVERBS"/*/; do
		basename "$e"
	done | tr '\n' ' '
}

setup() { # setup EXPECTED_ENTRY
	ivrdma --dir $DIR setup || return 1
	entries=$(uverbs_entries)
	echo "uverbs entries: $entries"
	[ "$entries" = "$1 " ] || { echo "want only $1"; return 1; }
}

env_check() { # env_check yes|no: whether LD_PRELOAD is wanted
	ivrdma --dir $DIR env >/tmp/env || return 1
	cat /tmp/env
	ls -l "$(param preload)" || return 1
	if grep -q LD_PRELOAD /tmp/env; then has=yes; else has=no; fi
	[ $has = "$1" ] || { echo "LD_PRELOAD exported: $has, want $1"; return 1; }
}

# pingpong SIZE: ibv_rc_pingpong -e -c, server and client, in the environment.
pingpong() {
	timeout 60 ibv_rc_pingpong -d ivrdma0 -e -c -s "$1" -n 100 >/tmp/server.out 2>&1 &
	server=$!
	w=0
	while ! listening 18515 && [ $w -lt 100 ]; do # ibv_rc_pingpong's port
		sleep 0.1
		w=$((w + 1))
	done
	timeout 60 ibv_rc_pingpong -d ivrdma0 -e -c -s "$1" -n 100 127.0.0.1 >/tmp/client.out 2>&1
	crc=$?
	wait $server
	src=$?
	sed 's/^/server: /' /tmp/server.out
	sed 's/^/client: /' /tmp/client.out
	[ $crc -eq 0 ] && [ $src -eq 0 ]
}

# events_posted: the records producers queued through the driver (CHANNEL_POST).
events_posted() {
	cat /sys/class/misc/ivrdma_host/events_posted
}

# Every event of 200 iterations reached the sleeping thread from the
# producer itself, through the driver, none through an event thread; with
# IVRDMA_EVENT_RELAY=1 none does.
channels() {
	eval "$(cat /tmp/env)"
	echo "LD_PRELOAD='${LD_PRELOAD:-}'"
	before=$(events_posted) || return 1
	pingpong 1 && pingpong 4096 || return 1
	after=$(events_posted)
	echo "events posted by producers through the driver: $((after - before))"
	[ $((after - before)) -ge 200 ] || { echo "want at least 200"; return 1; }
	(export IVRDMA_EVENT_RELAY=1 && pingpong 4096) || return 1
	[ "$(events_posted)" = "$after" ] || { echo "events posted with IVRDMA_EVENT_RELAY=1"; return 1; }
}

unload() {
	rmmod ivrdma_ivshmem || return 1
	[ ! -e $HOST_CMD ] || { echo "$HOST_CMD still there"; return 1; }
}

fallback() {
	(eval "$(cat /tmp/env)" && echo "LD_PRELOAD='$LD_PRELOAD'" && pingpong 4096)
}

control() {
	eval "$(grep -v LD_PRELOAD /tmp/env)"
	if pingpong 4096; then
		echo "ibv_rc_pingpong -e passed without the driver and without LD_PRELOAD"
		return 1
	fi
	grep -i 'channel' /tmp/server.out /tmp/client.out | head -n 2
	return 0
}

say "BOOTED kernel $(uname -r)"
step driver driver
step daemon daemon
step setup setup ivrdma_host
step env env_check no
step channels channels
step unload unload
step setup2 setup ivrdma0
step env2 env_check yes
step fallback fallback
step control control
kill "$(cat /tmp/ivrdmad.pid)"
say "DONE"
finish
