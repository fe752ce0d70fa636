# shellcheck shell=sh
# What every /init of the guest test images shares (busybox sh), sourced
# from /lib/ivr/guest-lib.sh (build-initramfs.sh puts it there): the
# mounts, result lines, kernel command line parameters, steps, the wait
# for "go" on the console, the waits for a path or a listening port, and
# the power-off.
#
# Every result line starts with "IVR-GUEST: <step>: "; the last line is
# "IVR-GUEST: DONE" or "IVR-GUEST: FAIL <step> ...". Then the VM powers
# off (ivr.shell=1: a shell first, for debugging).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

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

# step NAME CMD...: run, prefix each output line, stop the test on failure
# (with the end of the kernel log).
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
		dmesg | tail -n 20 | while IFS= read -r line; do say "dmesg: $line"; done
		finish
	fi
}

# Prints READY, then waits for a line "go" on the console (ivr.waitsec,
# default 120 s) while the host checks its view of us.
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

# wait_for PATH...: each path exists within 10 s in all (devtmpfs makes
# nodes asynchronously, and daemons their sockets).
wait_for() {
	w=0
	for p in "$@"; do
		while [ ! -e "$p" ] && [ $w -lt 100 ]; do
			sleep 0.1
			w=$((w + 1))
		done
		[ -e "$p" ] || { echo "no $p"; return 1; }
	done
}

# listening PORT: a TCP socket listens on it (IPv4 or IPv6); not one of an
# earlier connection in TIME_WAIT.
listening() {
	hex=$(printf '%04X' "$1")
	cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
		awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }'
}
