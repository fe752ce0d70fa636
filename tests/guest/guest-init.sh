#!/bin/sh
# /init of the guest test image (busybox sh). Driven by the kernel command
# line, so one image serves several tests:
#
#   ivr.header=0       skip the region header check (a device without ivrdmad)
#   ivr.off=N ivr.len=N  checksum BAR2 bytes [off, off+len)
#   ivr.wait=1         print READY, then wait for a line "go" on the console
#                      (the host checks its view of us meanwhile)
#   ivr.waitsec=N      how long to wait for it (default 120)
#   ivr.peer=N ivr.vec=N  ring that peer's doorbell vector
#   ivr.shell=1        end in a shell instead of powering off (debugging)
#
# Every result line starts with "IVR-GUEST: <step>: "; the last line is
# "IVR-GUEST: DONE" or "IVR-GUEST: FAIL <step> ...". Then the VM powers off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

say() {
	echo "IVR-GUEST: $*"
}

finish() {
	if [ "$(param shell)" = 1 ]; then
		setsid cttyhack sh
	fi
	sync
	poweroff -f
	sleep 10 # poweroff -f does not return; never let init exit (panic)
}

# param NAME: the value of ivr.NAME= on the kernel command line, or empty.
param() {
	read -r cmdline </proc/cmdline
	for word in $cmdline; do
		case "$word" in
		"ivr.$1="*)
			echo "${word#*=}"
			return
			;;
		esac
	done
}

# step NAME CMD...: run, prefix each output line, stop the test on failure.
step() {
	name=$1
	shift
	out=$("$@" 2>&1)
	rc=$?
	echo "$out" | while IFS= read -r line; do
		say "$name: $line"
	done
	if [ $rc -ne 0 ]; then
		say "FAIL $name rc=$rc"
		finish
	fi
}

wait_for_go() {
	limit=$(param waitsec)
	limit=${limit:-120}
	say "READY"
	end=$(($(date +%s) + limit))
	while [ "$(date +%s)" -lt "$end" ]; do
		# shellcheck disable=SC3045 # busybox sh has read -t
		if read -r -t 5 line && [ "$line" = go ]; then
			say "wait: go"
			return
		fi
	done
	say "FAIL wait no 'go' on the console within ${limit}s"
	finish
}

say "BOOTED kernel $(uname -r)"
step info ivshmem-probe info
step position ivshmem-probe position
if [ "$(param header)" != 0 ]; then
	step header ivshmem-probe header
fi
if [ -n "$(param off)" ] && [ -n "$(param len)" ]; then
	step read ivshmem-probe read "$(param off)" "$(param len)"
fi
if [ "$(param wait)" = 1 ]; then
	wait_for_go
fi
if [ -n "$(param peer)" ] && [ -n "$(param vec)" ]; then
	step ring ivshmem-probe ring "$(param peer)" "$(param vec)"
fi
say "DONE"
finish
