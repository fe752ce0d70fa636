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
# Result lines and the end: see guest-lib.sh.
# shellcheck source=guest-lib.sh
. /lib/ivr/guest-lib.sh

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
