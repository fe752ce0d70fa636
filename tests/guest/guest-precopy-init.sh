#!/bin/sh
# /init of guest.migration_precopy's image (busybox sh and guest-precopy,
# see run-precopy-vm.sh): runs guest-precopy with its stdin on the console
# (the host's commands) and its lines as "IVR-GUEST: precopy: ..." lines.
#
# Kernel command line:
#   ivr.threads=N ivr.kib=N  guest-precopy's arguments (default 2 and 1024)
#   ivr.shell=1              end in a shell instead of powering off
#
# Result lines and the end: see guest-lib.sh.
# shellcheck source=guest-lib.sh
. /lib/ivr/guest-lib.sh

say "BOOTED kernel $(uname -r)"
stty -echo 2>/dev/null
threads=$(param threads)
kib=$(param kib)
{
	guest-precopy "${threads:-2}" "${kib:-1024}" 2>&1
	echo "rc=$?" >/tmp/precopy.rc
} | while IFS= read -r line; do
	say "precopy: $line"
done
rc=$(cat /tmp/precopy.rc)
if [ "$rc" = rc=0 ]; then
	say "DONE"
else
	say "FAIL precopy guest-precopy exited with $rc"
fi
finish
