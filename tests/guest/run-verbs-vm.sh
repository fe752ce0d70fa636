#!/usr/bin/env bash
# Guest tests of unchanged verbs programs: real QEMU VMs (TCG) whose
# initramfs holds libibverbs, the provider (installed as
# /etc/libibverbs.d/ivrdma.driver says), ivrdma, ibverbs-utils' examples
# and perftest, with their libraries; ivrdma_ivshmem.ko gives them the
# region and the command device. Each guest runs udevd with --rules (the
# build's 60-ivrdma.rules, ivrdma where its RUN+= says), whose `ivrdma
# setup` writes the sysfs tree when the device appears, takes `ivrdma
# env`'s environment (guest-verbs-init.sh), then runs what this script
# sends to its console.
#
#   run-verbs-vm.sh --scenario two-vms|ud|host-guest|restart|mpi|unplug|migrate|rdmacm --ivrdmad PATH
#                   --ivrdma PATH --provider PATH --module PATH --rules PATH [--mpi-dir DIR]
#                   [--unplug-test PATH] [--preload PATH] [--kernel PATH] [--keep]
#
# two-vms: vm1 and vm2 on one ivrdmad, their e1000 NICs linked by a QEMU
#   stream socket (a UNIX socket in the work dir: no host network at all;
#   guest addresses 192.0.2.1 and .2) for the tools' TCP handshake.
#   ibv_devinfo in each guest (its LID is ivrdmad's for that VM), then
#   vm1 serves and vm2 connects: ibv_rc_pingpong -c at 4 KiB and 1 MiB,
#   ibv_rc_pingpong -e -c (sleeping in ibv_get_cq_event on a completion
#   channel of the command device), ib_write_lat, ib_send_bw; and
#   ibv_rc_pingpong -e -c between two processes of vm1 (one peer ID, one
#   set of MSI-X vectors, each process its own eventfds).
# ud: the same two VMs, ibv_ud_pingpong -c.
# mpi: the same two VMs, with Open MPI and dropbear in the image as well
#   (guest-mpi.sh). mpirun.openmpi in vm1 starts its daemon in vm2 over
#   dropbear's ssh (dbclient, a key made for this run) and runs the MPI
#   tests of --mpi-dir (tests/mpi: p2p, coll, rma) over ob1 + openib on
#   ivrdma0 and nothing else (btl openib,self), with one rank per guest,
#   then two per guest. Each job's stdout must equal the same program's
#   over shared memory (vader) on the host, and its stderr be empty.
# host-guest: one VM; a host process (through host.sock, with `ivrdma
#   env`'s environment) busy-polls in ibv_rc_pingpong -c against the
#   guest's ibv_rc_pingpong -e -c, which sleeps on a completion channel of
#   the command device until the host's doorbell reaches it as an MSI-X
#   interrupt. The guest's NIC is QEMU user networking with nothing but a
#   forward from 127.0.0.1:PORT on the host to the guest's server. One host
#   process per VM boot: ivrdmad hands a departed peer's ID to the next
#   client, and QEMU 7.2's ivshmem frees a departed peer's eventfd array
#   without forgetting it, so a second host process would corrupt QEMU's
#   heap (see the issue note).
# restart: host-guest's VM and host process, ivrdmad killed (SIGKILL)
#   and started again with the same command while they busy-poll
#   ibv_rc_pingpong -c (500000 iterations, which span the restart). The
#   new ivrdmad adopts the region, the host process rejoins it, the pair
#   ends well, data checked; QEMU cannot rejoin (its ivshmem device has
#   no such protocol, and with its chardev's reconnect=1 QEMU 7.2 never
#   starts the guest: IVRDMA_VM_CHARDEV_OPTS=,reconnect=1 shows it), so
#   ivrdmad logs that it gave up waiting and the VM keeps its region,
#   active. New processes in vm1 and on the host then pass a busy-polling
#   pair. Not tested, because it does not work: doorbells between the VM
#   and processes that joined after the restart (their eventfds never
#   reach QEMU), so completion events across them.
# unplug: one VM with a QMP monitor (TCP on 127.0.0.1, spoken with bash's
#   /dev/tcp); --unplug-test (guest-unplug.c) runs in it: transfers in
#   flight between two QPs of one context and a thread using the
#   registered buffer. The host runs `ivrdma migrate-begin vm1` (exit 0),
#   QMP device_del of the ivshmem device until DEVICE_DELETED (the guest's
#   ACPI PCI hotplug ejects it), chardev-remove (ivrdmad sees vm1 leave);
#   the program polls all its completions on the private copy of the
#   region, checks its buffer and closes. Then chardev-add and device_add
#   as before; the driver probes the new device, the program opens
#   ivrdma0 again and moves checked data; `ivrdma migrate-end vm1` (exit 0)
#   and vm1 active in `ivrdma status`. Prints migrate-begin's time and the
#   time from device_add to the first transfer (TCG: orientation only).
# migrate: unplug's program and teardown through a QEMU migration. A
#   second ivrdmad stands for the destination host (its own region and
#   subnet; vm1 configured there under the same name, so the same GUID,
#   but behind another VM, so another LID). At the source: migrate-begin,
#   device_del, chardev-remove; then a second QEMU with the same machine
#   (no ivshmem device) started with -incoming tcp:127.0.0.1:PORT, QMP
#   migrate to it, the source stopped; at the destination chardev-add to
#   the second ivrdmad's vm1.sock and device_add, and migrate-end there.
#   The program (guest-unplug --setup) runs through all of it: after the
#   device is back the guest's udevd runs `ivrdma setup` (60-ivrdma.rules;
#   the GID's prefix and the LID changed), the program waits for that and
#   reconnects; its port must then show vm1's LID and GID at the
#   destination, and vm1 must be gone at the source. Prints the teardown
#   time (migrate-begin), QEMU's migration time and downtime, and the time
#   from device_add to the first transfer (TCG: orientation only). The
#   migration is live (pre-copy), the program's thread rewriting and
#   checking its buffer all along; vm-lib.sh's RAM size keeps QEMU 7.2's
#   TCG from losing stores meanwhile (see vm_machine_args there, and
#   guest.migration_precopy). IVRDMA_MIGRATE_STOPPED=1 stops the vCPUs for
#   the copy instead (QMP stop, then cont at the destination).
# rdmacm: the two VMs of two-vms, ivrdmad started with their addresses
#   for RDMA CM (--addr vm1=192.0.2.1 --addr vm2=192.0.2.2, the guests'
#   own NIC addresses; ivrdma status must list them). The image adds
#   rdmacm-utils' rping and rstream with librdmacm, and --preload (the
#   rdma_cm device, which the guest kernel lacks) where the package puts
#   it; the tools run with LD_PRELOAD set to it. The CM messages go
#   agent to agent through the region, not over the NICs. Each server
#   runs in vm1 and the client in vm2 once `ivrdma status` on the host
#   lists the server's RDMA CM listener: rping -V (data checked), rping
#   -c to a port nobody listens on (must fail with REJECTED, well before
#   the timeout), then rstream; at the end no listener is left (rstream
#   never closes its own: the preload releases it at exit).
#
# Pass: every tool exits 0 on both ends, and no "invalid data" from -c.
# Iteration counts are small: TCG is slow, and its timings are not
# performance. Exit 0 pass, 1 fail, 77 skip (no QEMU, or no module).
# Whatever happens, QEMU and ivrdmad are stopped and the work dir and shm
# object removed (--keep keeps the work dir).
set -euo pipefail

VECTORS=4 # QEMU's vectors= must equal ivrdmad's --vectors
# BAR2 above 4 GiB, write-back (see uio-driver/README.md); the shm object
# stays sparse.
REGION_SIZE=${IVRDMA_VERBS_REGION_SIZE:-4G}
BUDGET=${IVRDMA_GUEST_BUDGET:-400} # see vm-lib.sh; keep it under the CTest TIMEOUT
BOOT_TIMEOUT=${IVRDMA_GUEST_BOOT_TIMEOUT:-90} # a bound against hangs; more on a loaded machine
TOOL_TIMEOUT=150 # one tool run in a guest, a bound against hangs only
VM_MEMORY=512

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
scenario='' ivrdmad='' ivrdma='' provider='' module='' kernel='' keep=0 mpi_dir='' unplug_test=''
preload='' rules=''
# shellcheck source=vm-lib.sh
. "$here/vm-lib.sh"
# shellcheck source=../lib/free-port.sh
. "$here/../lib/free-port.sh"

usage() {
	echo "usage: run-verbs-vm.sh --scenario two-vms|ud|host-guest|mpi|unplug|migrate|rdmacm" \
		"--ivrdmad PATH --ivrdma PATH --provider PATH --module PATH --rules PATH [--mpi-dir DIR]" \
		"[--unplug-test PATH] [--preload PATH] [--kernel PATH] [--keep]" >&2
	exit 2
}

parse_args() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--scenario) scenario=${2:-}; shift 2 ;;
		--ivrdmad) ivrdmad=${2:-}; shift 2 ;;
		--ivrdma) ivrdma=${2:-}; shift 2 ;;
		--provider) provider=${2:-}; shift 2 ;;
		--module) module=${2:-}; shift 2 ;;
		--mpi-dir) mpi_dir=${2:-}; shift 2 ;;
		--unplug-test) unplug_test=${2:-}; shift 2 ;;
		--preload) preload=${2:-}; shift 2 ;;
		--rules) rules=${2:-}; shift 2 ;;
		--kernel) kernel=${2:-}; shift 2 ;;
		--keep) keep=1; shift ;;
		*) usage ;;
		esac
	done
	case "$scenario" in
	two-vms | ud | host-guest | restart) ;;
	mpi) [ -n "$mpi_dir" ] || usage ;;
	unplug | migrate) [ -x "$unplug_test" ] || usage ;;
	rdmacm) [ -r "$preload" ] || usage ;;
	*) usage ;;
	esac
	if [ -z "$ivrdmad" ] || [ -z "$ivrdma" ] || [ -z "$provider" ]; then
		usage
	fi
	for f in "$ivrdmad" "$ivrdma"; do
		[ -x "$f" ] || fail "not an executable: $f"
	done
	[ -r "$provider" ] || fail "no provider at $provider"
	[ -r "$rules" ] || fail "no udev rules at '$rules' (--rules: the build's packaging/60-ivrdma.rules)"
}

TOOLS=(ibv_devinfo ibv_rc_pingpong ibv_ud_pingpong ib_write_lat ib_send_bw ibv_asyncwatch)
UDEVD=/lib/systemd/systemd-udevd # a link to udevadm, which acts on its name

# The image: the tools from the installed packages, ours from the build;
# build_image SPEC... adds more (build-initramfs.sh's SRC:DEST).
build_image() {
	local release=${kernel##*/vmlinuz-} nic tool run specs=("$@")
	nic=/lib/modules/$release/kernel/drivers/net/ethernet/intel/e1000/e1000.ko
	[ -r "$nic" ] || fail "no $nic (the e1000 module of linux-image-$release)"
	for tool in "${TOOLS[@]}"; do
		specs+=("$(command -v "$tool"):/usr/bin/$tool")
	done
	# The rule as installed, with ivrdma where it runs it from.
	[ -x "$UDEVD" ] || fail "no $UDEVD (package udev, see scripts/install-deps.sh)"
	run=$(sed -n 's|.*RUN+="\(/[^ ]*\) setup .*|\1|p' "$rules")
	[ -n "$run" ] || fail "$rules runs no 'ivrdma setup'"
	[ "$run" = /usr/bin/ivrdma ] || specs+=("$ivrdma:$run")
	specs+=("$UDEVD:$UDEVD" "$UDEVD:/usr/bin/udevadm" "$rules:/lib/udev/rules.d/60-ivrdma.rules")
	echo "driver ivrdma" >"$work/ivrdma.driver"
	"$here/build-initramfs.sh" --libs --init "$here/guest-verbs-init.sh" "$work/verbs.cpio.gz" \
		"$module:/lib/modules/ivrdma_ivshmem.ko" "$nic:/lib/modules/e1000.ko" \
		"$ivrdma:/usr/bin/ivrdma" \
		"$provider:/usr/lib/x86_64-linux-gnu/libibverbs/libivrdma-rdmav34.so" \
		"$work/ivrdma.driver:/etc/libibverbs.d/ivrdma.driver" "${specs[@]}"
	log "initramfs: $(du -k "$work/verbs.cpio.gz" | cut -f1) KiB"
}

wait_ready() { # wait_ready VM...
	local vm
	for vm in "$@"; do
		wait_until "$vm to print READY" "$BOOT_TIMEOUT" guest_said "$vm" '\(READY\|FAIL\)'
		guest_failure "$vm"
		log "$vm ready: $(guest_lines "$vm" setup)"
	done
}

# ended VM ID: the guest reported the end of command ID.
ended() {
	guest_said "$1" "END $2 rc="
}

# wait_end VM ID: waits for command ID's end on VM; returns its status.
wait_end() {
	local rc
	wait_until "$2 to end on $1" $((TOOL_TIMEOUT + 30)) ended "$1" "$2"
	rc=$(serial "$1" | sed -n "s/^IVR-GUEST: END $2 rc=\\([0-9]*\\)$/\\1/p" | head -n 1)
	return "${rc:-1}"
}

# show VM ID: the output of command ID.
show() {
	guest_lines "$1" "$2" | sed "s/^/    $1 $2: /"
}

ncmd=0
# guest_run VM CMD...: starts CMD on VM; sets $cmd_id.
guest_run() {
	local vm=$1
	shift
	ncmd=$((ncmd + 1))
	cmd_id="c$ncmd"
	vm_send "$vm" "run $cmd_id $TOOL_TIMEOUT $*"
}

# guest_listen VM PORT: waits until something listens on PORT in VM.
guest_listen() {
	ncmd=$((ncmd + 1))
	vm_send "$1" "listen l$ncmd $TOOL_TIMEOUT $2"
	wait_end "$1" "l$ncmd" || fail "nothing listens on port $2 in $1"
}

# check_pair NAME SERVER_VM SERVER_ID CLIENT_VM CLIENT_ID: both ended well.
check_pair() {
	local name=$1 svm=$2 sid=$3 cvm=$4 cid=$5 crc=0 src=0
	wait_end "$cvm" "$cid" || crc=$?
	wait_end "$svm" "$sid" || src=$?
	if [ $crc -ne 0 ] || [ $src -ne 0 ]; then
		show "$svm" "$sid" >&2
		show "$cvm" "$cid" >&2
		fail "$name: server exited $src, client $crc"
	fi
	if guest_lines "$svm" "$sid" | grep 'invalid data' >/dev/null ||
		guest_lines "$cvm" "$cid" | grep 'invalid data' >/dev/null; then
		show "$svm" "$sid" >&2
		fail "$name: -c found invalid data"
	fi
}

# start_pair PORT CLIENT_VM ADDR TOOL ARGS...: the server on vm1, then the
# client; sets sid and cid.
start_pair() {
	local port=$1 cvm=$2 addr=$3
	shift 3
	guest_run vm1 "$@" -p "$port"
	sid=$cmd_id
	guest_listen vm1 "$port"
	guest_run "$cvm" "$@" -p "$port" "$addr"
	cid=$cmd_id
}

# calibration_failed SERVER_VM SID CLIENT_VM CID: both ended, and an end
# failed only in perftest's clock sampling ("Can't produce a report").
calibration_failed() {
	local rc=0
	wait_end "$3" "$4" || rc=1
	wait_end "$1" "$2" || rc=1
	[ $rc -ne 0 ] || return 1
	guest_lines "$1" "$2" | grep -F "Can't produce a report" >/dev/null ||
		guest_lines "$3" "$4" | grep -F "Can't produce a report" >/dev/null
}

# pair NAME PORT TOOL ARGS...: TOOL serves on vm1, vm2 connects to it
# (CLIENT_VM=vm1: both in vm1, two verbs processes of one VM).
pair() {
	local name=$1 port=$2 cvm=${CLIENT_VM:-vm2} addr=192.0.2.1 sid cid
	shift 2
	[ "$cvm" != vm1 ] || addr=127.0.0.1
	start_pair "$port" "$cvm" "$addr" "$@"
	# perftest times the CPU clock before its report and gives up when the
	# samples scatter (r^2 < 0.9), as a TCG vCPU's may: the run, not the
	# transfer, failed. Once more on another port then.
	if calibration_failed vm1 "$sid" "$cvm" "$cid"; then
		log "$name: perftest could not time the emulated CPU; once more"
		start_pair $((port + 100)) "$cvm" "$addr" "$@"
	fi
	check_pair "$name" vm1 "$sid" "$cvm" "$cid"
	log "PASS $name: $(guest_lines "$cvm" "$cid" | grep -E 'usec/iter|^ *[0-9]+ +[0-9]+ ' |
		tr -s ' \t' ' ' | head -n 2 | tr '\n' ' ')(TCG: not performance)"
}

# vm_lid VM: the LID ivrdmad gave VM's node.
vm_lid() {
	"$ivrdma" --dir "$work" status --json | jq -r --arg vm "$1" '.nodes[] | select(.name == $vm) | .lid'
}

check_devinfo() { # check_devinfo VM
	local vm=$1 id lid hex
	guest_run "$vm" ibv_devinfo -v
	id=$cmd_id
	wait_end "$vm" "$id" || { show "$vm" "$id" >&2; fail "ibv_devinfo in $vm"; }
	lid=$(vm_lid "$vm")
	hex=$(printf '0x%04x' "$lid")
	guest_lines "$vm" "$id" | grep 'hca_id:[[:space:]]*ivrdma0' >/dev/null || fail "$vm: no ivrdma0"
	guest_lines "$vm" "$id" | grep 'state:[[:space:]]*PORT_ACTIVE' >/dev/null ||
		fail "$vm: port not active"
	guest_lines "$vm" "$id" | grep -E "port_lid:[[:space:]]*$lid\\b" >/dev/null ||
		{ show "$vm" "$id" >&2; fail "$vm: port_lid is not ivrdmad's LID $lid ($hex)"; }
	log "PASS ibv_devinfo in $vm: ivrdma0, PORT_ACTIVE, LID $lid = ivrdmad's for $vm"
}

two_vms() { # two_vms [IMAGE SPEC...]
	start_daemon "$ivrdmad" "$ivrdma" "$REGION_SIZE" vm1 vm2
	build_image "$@"
	vm_boot vm1 "$work/verbs.cpio.gz" "ivr.ip=192.0.2.1/24" \
		-netdev stream,id=n0,server=on,addr.type=unix,addr.path="$work/net.sock" \
		-device e1000,netdev=n0,mac=52:54:00:12:34:01
	wait_until "vm1's network socket" 30 test -S "$work/net.sock"
	vm_boot vm2 "$work/verbs.cpio.gz" "ivr.ip=192.0.2.2/24" \
		-netdev stream,id=n0,server=off,addr.type=unix,addr.path="$work/net.sock" \
		-device e1000,netdev=n0,mac=52:54:00:12:34:02
	wait_ready vm1 vm2
}

finish_vms() {
	local vm
	for vm in "$@"; do
		vm_send "$vm" quit
	done
	for vm in "$@"; do
		vm_wait_done "$vm" 60
	done
}

# events_posted VM: the completion events VM's driver queued itself (its event rules).
events_posted() {
	local id n
	guest_run "$1" cat /sys/class/misc/ivrdma0/events_posted
	id=$cmd_id
	wait_end "$1" "$id" || { show "$1" "$id" >&2; fail "$1: no events_posted in sysfs"; }
	n=$(guest_lines "$1" "$id" | head -n 1)
	[[ $n =~ ^[0-9]+$ ]] || fail "$1: events_posted reads '$n'"
	echo "$n"
}

# ibv_rc_pingpong -e between the VMs: every event of both ends is queued
# by the driver's interrupt handler (one wakeup), none by the event
# thread; with IVRDMA_EVENT_RELAY=1 the event threads post them all.
event_pairs() {
	local b1 b2 a1 a2
	b1=$(events_posted vm1) b2=$(events_posted vm2)
	pair "ibv_rc_pingpong -e -c" 18517 ibv_rc_pingpong -d ivrdma0 -e -c -s 4096 -n 20
	a1=$(events_posted vm1) a2=$(events_posted vm2)
	[ $((a1 - b1)) -ge 20 ] && [ $((a2 - b2)) -ge 20 ] ||
		fail "the drivers queued $((a1 - b1)) and $((a2 - b2)) events for 20 iterations each"
	log "PASS events queued by the drivers' interrupt handlers: vm1 $((a1 - b1)), vm2 $((a2 - b2))"
	pair "ibv_rc_pingpong -e -c, relayed" 18524 env IVRDMA_EVENT_RELAY=1 \
		ibv_rc_pingpong -d ivrdma0 -e -c -s 4096 -n 20
	[ "$(events_posted vm1)" = "$a1" ] && [ "$(events_posted vm2)" = "$a2" ] ||
		fail "a driver queued events with IVRDMA_EVENT_RELAY=1"
}

run_two_vms() {
	two_vms
	check_devinfo vm1
	check_devinfo vm2
	pair "ibv_rc_pingpong -c 4 KiB" 18515 ibv_rc_pingpong -d ivrdma0 -c -s 4096 -n 20
	pair "ibv_rc_pingpong -c 1 MiB" 18516 ibv_rc_pingpong -d ivrdma0 -c -s 1048576 -n 5
	event_pairs
	pair "ib_write_lat" 18518 ib_write_lat -d ivrdma0 -s 2 -n 20
	pair "ib_send_bw" 18519 ib_send_bw -d ivrdma0 -s 4096 -n 20
	# Two processes of one VM share its peer ID and MSI-X vectors.
	CLIENT_VM=vm1 pair "ibv_rc_pingpong -e -c, both in vm1" 18521 \
		ibv_rc_pingpong -d ivrdma0 -e -c -s 4096 -n 20
	killed_in_guest
	finish_vms vm1 vm2
}

status_json() { "$ivrdma" --dir "$work" status --json; }
chunks_used() { status_json | jq .region.chunks_used; }
open_contexts() { status_json | jq '[.contexts[] | select(.state == "open")] | length'; }
contexts_open() { [ "$(open_contexts)" = "$1" ]; } # contexts_open N
chunks_used_is() { [ "$(chunks_used)" = "$1" ]; }    # chunks_used_is N

# A process of vm1 killed (SIGKILL) in the middle of a connection to vm2:
# its peer in vm2 fails (an error completion: the program exits 1), what
# the killed process held in the region is reclaimed while vm1 stays
# active, and vm1 serves a new pair afterwards.
killed_in_guest() {
	local used sid cid rc=0 out
	used=$(chunks_used)
	guest_run vm1 ibv_rc_pingpong -d ivrdma0 -s 4096 -n 1000000000 -p 18522
	sid=$cmd_id
	guest_listen vm1 18522
	guest_run vm2 ibv_rc_pingpong -d ivrdma0 -s 4096 -n 1000000000 -p 18522 192.0.2.1
	cid=$cmd_id
	wait_until "the two processes to open their contexts" 60 contexts_open 2
	sleep 2 # well into their exchange
	# A guest context's QPs are held under its own tag: status still counts them.
	status_json | jq -e '[.contexts[] | select(.state == "open" and .node == "vm1")]
		| length == 1 and .[0].nr_qps == 1' >/dev/null ||
		fail "status does not show vm1's context with its QP: $(status_json | jq -c .contexts)"
	! ended vm2 "$cid" || { show vm2 "$cid" >&2; fail "the pair ended before the kill"; }
	vm_send vm1 "kill k$cid 0 ibv_rc_pingpong"
	wait_end vm1 "k$cid" || fail "nothing to kill in vm1"
	wait_end vm2 "$cid" || rc=$?
	out=$(guest_lines vm2 "$cid")
	if [ $rc -eq 0 ] || ! grep -Eq 'Failed status|[Ee]rror' <<<"$out"; then
		show vm2 "$cid" >&2
		fail "vm2's process did not fail when its peer in vm1 died (rc $rc)"
	fi
	grep -Eq "context [0-9]+ \(pid [0-9]+ on node vm1\) ended with its process; reclaimed [1-9]" \
		"$work/ivrdmad.log" || fail "ivrdmad did not reclaim the killed process's context"
	wait_until "the region's chunks back to $used" 30 chunks_used_is "$used"
	status_json | jq -e '[.contexts[] | select(.state == "lost" and .node == "vm1")] | length == 1' \
		>/dev/null || fail "status does not show the killed process's context lost"
	status_json | jq -e '.nodes[] | select(.name == "vm1") | .state == "active"' >/dev/null ||
		fail "vm1 is no longer active"
	log "PASS a process of vm1 killed: vm2's failed with '$(grep -E 'Failed status|[Ee]rror' \
		<<<"$out" | head -n 1)', its context reclaimed, vm1 still active"
	pair "ibv_rc_pingpong -c after the kill" 18523 ibv_rc_pingpong -d ivrdma0 -c -s 4096 -n 20
}

# The device unbound under a verbs process: IBV_EVENT_DEVICE_FATAL, the
# last event (ibv_get_async_event fails after it, as after a kernel
# device's disassociation), and no crash.
device_fatal() { # device_fatal VM
	local vm=$1 id
	ncmd=$((ncmd + 1))
	id=u$ncmd
	vm_send "$vm" "unbind $id 10"
	wait_end "$vm" "$id" && { show "$vm" "$id" >&2; fail "$vm: ibv_asyncwatch did not fail"; }
	guest_lines "$vm" "$id" | grep 'IBV_EVENT_DEVICE_FATAL' >/dev/null ||
		{ show "$vm" "$id" >&2; fail "$vm: no IBV_EVENT_DEVICE_FATAL on unbind"; }
	log "PASS device unbound in $vm: $(guest_lines "$vm" "$id" | grep DEVICE_FATAL | head -n 1)"
}

run_ud() {
	two_vms
	pair "ibv_ud_pingpong -c" 18520 ibv_ud_pingpong -d ivrdma0 -c -s 1024 -n 20
	device_fatal vm2
	finish_vms vm1 vm2
}


# --- mpi: an Open MPI job across the two guests

MPI_PROGRAMS=(p2p coll rma)

# What Open MPI needs at run time (its libraries, components, help texts
# and settings, PMIx's), dropbear, the test programs and the guest files
# (users, hosts, the key), as image specs in $mpi_specs.
mpi_image_specs() {
	local f p
	mpi_specs=()
	while IFS= read -r f; do
		[ -f "$f" ] && mpi_specs+=("$f:$f")
	done < <(dpkg -L openmpi-bin openmpi-common libopenmpi3 libpmix2 |
		grep -vE '^/usr/share/(doc|man|lintian)/|\.(la|a|mod)$|/include/|/pkgconfig/|wrapper-data')
	for p in "${MPI_PROGRAMS[@]}"; do
		[ -x "$mpi_dir/$p-openmpi" ] || fail "no $mpi_dir/$p-openmpi (build target mpi_tests)"
		mpi_specs+=("$mpi_dir/$p-openmpi:/usr/lib/ivr/$p")
	done
	# The client's key, and the guests' host key (one image: one for both).
	dropbearkey -t ed25519 -f "$work/id_dropbear" >/dev/null 2>&1 || fail "dropbearkey"
	dropbearkey -t ed25519 -f "$work/host_key" >/dev/null 2>&1 || fail "dropbearkey"
	dropbearkey -y -f "$work/id_dropbear" | grep '^ssh-' >"$work/authorized_keys"
	dropbearkey -y -f "$work/host_key" | grep '^ssh-' | cut -d' ' -f1,2 |
		sed 's/^/vm1 /;p;s/^vm1 /vm2 /' >"$work/known_hosts"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$work/passwd"
	printf 'root:x:0:\n' >"$work/group"
	printf '/bin/sh\n' >"$work/shells"
	printf 'passwd: files\ngroup: files\nhosts: files\n' >"$work/nsswitch.conf"
	printf '127.0.0.1 localhost\n192.0.2.1 vm1\n192.0.2.2 vm2\n' >"$work/hosts"
	chmod 600 "$work/id_dropbear" "$work/host_key" "$work/authorized_keys"
	mpi_specs+=("$(command -v dropbear):/usr/sbin/dropbear"
		"$(command -v dbclient):/usr/bin/dbclient"
		"$here/guest-mpi.sh:/usr/bin/guest-mpi.sh"
		"$here/../../mpi/openib-device-params-ivrdma.ini:/usr/share/ivrdma/openib-device-params-ivrdma.ini"
		"$work/id_dropbear:/root/.ssh/id_dropbear"
		"$work/authorized_keys:/root/.ssh/authorized_keys"
		"$work/known_hosts:/root/.ssh/known_hosts"
		"$work/host_key:/etc/dropbear/dropbear_ed25519_host_key")
	for f in passwd group shells nsswitch.conf hosts; do
		mpi_specs+=("$work/$f:/etc/$f")
	done
}

# mpi_reference PROG NP: the program's stdout over Open MPI's shared
# memory on the host, in $work/PROG-NP.ref.
mpi_reference() {
	local prog=$1 np=$2
	OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout $TOOL_TIMEOUT \
		mpirun.openmpi --oversubscribe --bind-to none -np "$np" --mca pml ob1 \
		--mca btl vader,self --mca osc pt2pt "$mpi_dir/$prog-openmpi" \
		>"$work/$prog-$np.ref" 2>"$work/$prog-$np.ref.err" </dev/null ||
		fail "$prog on $np ranks over shared memory: $(cat "$work/$prog-$np.ref.err")"
}

# What a job may print on stderr: Open MPI's rsh launcher sets the ssh
# child's process group from both sides, and when the child has already
# exec'd, the parent's setpgid fails with EACCES (POSIX) and says so; the
# child's own call did it (seen once in CI, TCG timing).
benign_stderr='plm:rsh: Warning: setpgid\([0-9]+,[0-9]+\) failed in parent with errno=Permission denied\(13\)$'

# mpi_job PROG HOSTS NP: the job from vm1; its stdout must be the
# reference's, its stderr empty but for benign_stderr.
mpi_job() {
	local prog=$1 hosts=$2 np=$3 id start=$SECONDS
	guest_run vm1 guest-mpi.sh job "$hosts" "$prog"
	id=$cmd_id
	mpi_reference "$prog" "$np"
	wait_end vm1 "$id" || { show vm1 "$id" >&2; fail "$prog on $hosts: mpirun failed"; }
	guest_lines vm1 "$id" | grep -v '^stderr: ' >"$work/$prog-$np.out"
	if guest_lines vm1 "$id" | grep '^stderr: ' | grep -Ev "$benign_stderr" >"$work/$prog-$np.err"; then
		cat "$work/$prog-$np.err" >&2
		fail "$prog on $hosts: the job wrote to stderr"
	fi
	diff -u "$work/$prog-$np.ref" "$work/$prog-$np.out" >&2 ||
		fail "$prog on $hosts: output differs from shared memory's"
	log "PASS $prog on $hosts ($np ranks, openib on ivrdma0): same output as shared memory," \
		"$((SECONDS - start)) s (TCG)"
}

run_mpi() {
	local vm prog
	mpi_image_specs
	two_vms "${mpi_specs[@]}"
	for vm in vm1 vm2; do
		guest_run "$vm" guest-mpi.sh sshd "$vm"
		wait_end "$vm" "$cmd_id" || { show "$vm" "$cmd_id" >&2; fail "dropbear in $vm"; }
	done
	guest_listen vm2 22
	# The launcher's way in: vm1 to vm2 by key, the host key checked.
	guest_run vm1 guest-mpi.sh ssh vm2 hostname
	wait_end vm1 "$cmd_id" && [ "$(guest_lines vm1 "$cmd_id")" = vm2 ] ||
		{ show vm1 "$cmd_id" >&2; fail "ssh from vm1 to vm2"; }
	log "PASS ssh from vm1 to vm2 (dropbear, dbclient)"
	for prog in "${MPI_PROGRAMS[@]}"; do
		mpi_job "$prog" vm1:1,vm2:1 2
	done
	for prog in "${MPI_PROGRAMS[@]}"; do
		mpi_job "$prog" vm1:2,vm2:2 4
	done
	finish_vms vm1 vm2
}

# host_pingpong NAME PORT "GUEST ARGS" HOST ARGS...: the guest serves, a
# host process connects.
host_pingpong() {
	local name=$1 port=$2 gargs=$3 sid rc=0
	shift 3
	# shellcheck disable=SC2086 # words
	guest_run vm1 ibv_rc_pingpong -d ivrdma0 -p 18515 $gargs
	sid=$cmd_id
	guest_listen vm1 18515
	(
		eval "$host_env"
		exec timeout $TOOL_TIMEOUT ibv_rc_pingpong -d ivrdma0 -p "$port" "$@" 127.0.0.1
	) >"$work/host.out" 2>&1 </dev/null || rc=$?
	wait_end vm1 "$sid" || { show vm1 "$sid" >&2; fail "$name: the guest's server failed"; }
	[ $rc -eq 0 ] || fail "$name: host client exited $rc: $(cat "$work/host.out")"
	! grep -q 'invalid data' "$work/host.out" || fail "$name: -c found invalid data"
	! guest_lines vm1 "$sid" | grep 'invalid data' >/dev/null || fail "$name: -c found invalid data"
	log "PASS $name: host $(grep usec/iter "$work/host.out"), guest" \
		"$(guest_lines vm1 "$sid" | grep usec/iter) (TCG: not performance)"
}

# ivrdmad with vm1, the host's sysfs tree and environment ($host_env), and
# vm1 booted, its port 18515 forwarded from the host's 127.0.0.1:$port.
host_and_vm1() {
	start_daemon "$ivrdmad" "$ivrdma" "$REGION_SIZE" vm1
	"$ivrdma" --dir "$work" setup --sysfs "$work/sysfs" >"$work/setup.out" ||
		fail "ivrdma setup on the host: $(cat "$work/setup.out")"
	host_env=$("$ivrdma" --dir "$work" env --sysfs "$work/sysfs") || fail "ivrdma env"
	build_image
	port=$(free_port) || fail "no port for the guest's forwarded server"
	vm_boot vm1 "$work/verbs.cpio.gz" "ivr.ip=10.0.2.15/24" \
		-netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:"$port"-10.0.2.15:18515 \
		-device e1000,netdev=n0
	wait_ready vm1
	log "host: $(cat "$work/setup.out"); guest server reached at 127.0.0.1:$port"
}

run_host_guest() {
	host_and_vm1
	host_pingpong "ibv_rc_pingpong -c host, -e -c guest" "$port" "-e -c -s 4096 -n 20" \
		-c -s 4096 -n 20
	finish_vms vm1
}

# --- restart: ivrdmad killed and started again under a VM

# The one ivrdmad killed (SIGKILL), then the same command again. Its pid
# is timeout's (background), which then exits too.
restart_daemon() {
	local pid=${daemon_pids[0]}
	pkill -KILL -P "$pid" -x ivrdmad || fail "no ivrdmad under pid $pid"
	wait "$pid" 2>/dev/null || true
	unsupervise "$pid"
	daemon_pids=()
	mv "$work/ivrdmad.log" "$work/ivrdmad.killed.log"
	start_daemon "$ivrdmad" "$ivrdma" "$REGION_SIZE" vm1
}

# host_client PORT ARGS...: a host ibv_rc_pingpong to the guest's server, in
# the background; its pid in $client_pid, its output in $work/client.out.
host_client() {
	local port=$1
	shift
	(
		eval "$host_env"
		exec timeout $TOOL_TIMEOUT ibv_rc_pingpong -d ivrdma0 -p "$port" "$@" 127.0.0.1
	) >"$work/client.out" 2>&1 </dev/null &
	client_pid=$!
}

# ivrdmad's log says PATTERN (grep -E).
daemon_said() { grep -Eq -- "$1" "$work/ivrdmad.log"; }

run_restart() {
	local sid rc=0
	host_and_vm1
	# A pair busy-polling across the restart: long enough (6 to 60 s under TCG) to span it.
	guest_run vm1 ibv_rc_pingpong -d ivrdma0 -p 18515 -c -s 4096 -n 500000
	sid=$cmd_id
	guest_listen vm1 18515
	host_client "$port" -c -s 4096 -n 500000
	wait_until "the pair's two contexts" 60 contexts_open 2
	restart_daemon
	wait_until "the new ivrdmad to adopt the region" 15 daemon_said "adopted region $shm"
	kill -0 "$client_pid" 2>/dev/null || fail "the pair ended before the restart"
	wait "$client_pid" || rc=$?
	[ $rc -eq 0 ] || fail "the host client across the restart exited $rc: $(cat "$work/client.out")"
	wait_end vm1 "$sid" || { show vm1 "$sid" >&2; fail "the guest's server across the restart"; }
	! grep -q 'invalid data' "$work/client.out" || fail "-c found invalid data across the restart"
	log "PASS a host-guest pair across ivrdmad's SIGKILL and restart:" \
		"$(grep usec/iter "$work/client.out")"
	daemon_said "peer [0-9]+ rejoined node host" || fail "the host process did not rejoin"
	wait_until "ivrdmad to give up on vm1's rejoin" 30 daemon_said "a QEMU VM: QEMU cannot rejoin"
	[ "$(vm1_node .state)" = active ] || fail "vm1 is not active after the restart"
	log "PASS the host process rejoined; vm1 (QEMU cannot rejoin) keeps its region and stays active"
	# New processes on both sides, busy-polling: the region is all they need.
	guest_run vm1 ibv_rc_pingpong -d ivrdma0 -p 18515 -c -s 4096 -n 20
	sid=$cmd_id
	guest_listen vm1 18515
	host_client "$port" -c -s 4096 -n 20
	rc=0
	wait "$client_pid" || rc=$?
	[ $rc -eq 0 ] || fail "a new host process after the restart exited $rc: $(cat "$work/client.out")"
	wait_end vm1 "$sid" || { show vm1 "$sid" >&2; fail "a new guest process after the restart"; }
	log "PASS new processes in vm1 and on the host after the restart:" \
		"$(grep usec/iter "$work/client.out")"
	finish_vms vm1
}

# --- unplug: migrate-begin, device_del, device_add, migrate-end

# vm1_node FILTER [DIR]: jq FILTER applied to vm1's node in `ivrdma
# status` of the ivrdmad in DIR ($work).
vm1_node() {
	"$ivrdma" --dir "${2:-$work}" status --json |
		jq -r '.nodes[] | select(.name == "vm1") | '"$1"
}

vm1_away() { # vm1_away [DIR]
	[ "$(vm1_node '"\(.state) \(.peers | length)"' "$@")" != "active 1" ] &&
		[ "$(vm1_node '.peers | length' "$@")" = 0 ]
}

vm1_back() { # vm1_back [DIR]
	[ "$(vm1_node '"\(.state) \(.peers | length)"' "$@")" = "active 1" ]
}

# cue ID WORD SECONDS: the unplug program's line WORD; fails on its end.
cue() {
	wait_until "'$2' from the program in vm1" "$3" guest_said vm1 "\($1: $2\|END $1 \)"
	guest_said vm1 "$1: $2" || { show vm1 "$1" >&2; fail "the program in vm1 ended before '$2'"; }
}

# guest_dmesg WHAT: the guest kernel's lines about WHAT, logged.
guest_dmesg() {
	guest_run vm1 dmesg
	wait_end vm1 "$cmd_id" || true
	guest_lines vm1 "$cmd_id" | grep -iE "$1" | sed 's/^/    vm1 dmesg: /' || true
}

unplug() {
	if ! qmp_ivshmem_del; then
		guest_dmesg 'pci|acpi|ivrdma|ivshm|hotplug' >&2
		fail "no DEVICE_DELETED within 60 s of device_del (the guest did not eject it)"
	fi
	wait_until "vm1 to leave ivrdmad" 30 vm1_away
	log "PASS vm1 left: ivrdma status says $(vm1_node '"\(.state), peers \(.peers)"')"
}

run_unplug() {
	local port id out t_add
	start_daemon "$ivrdmad" "$ivrdma" "$REGION_SIZE" vm1
	build_image "$unplug_test:/usr/bin/guest-unplug"
	port=$(free_port) || fail "no port for QMP"
	vm_boot vm1 "$work/verbs.cpio.gz" "" -qmp tcp:127.0.0.1:"$port",server=on,wait=off
	wait_ready vm1
	qmp_connect "$port"
	ncmd=$((ncmd + 1))
	id=c$ncmd
	# IVRDMA_DEBUG: the provider says how it held stores off the buffer's pages.
	vm_send vm1 "live $id $((BUDGET - 60)) env IVRDMA_DEBUG=1 guest-unplug 180"
	cue "$id" READY 120
	log "vm1: $(guest_lines vm1 "$id" | grep '^READY')"
	out=$("$ivrdma" --dir "$work" migrate-begin vm1 --timeout 60 2>&1) ||
		{ show vm1 "$id" >&2; fail "migrate-begin vm1: $out"; }
	# The program's context: it acknowledged (handing its record back).
	[[ $out == *" 1 context(s) acknowledged"* ]] ||
		fail "migrate-begin vm1: not the one context of vm1's program: $out"
	log "PASS migrate-begin: $out (TCG)"
	cue "$id" FATAL 30
	unplug
	cue "$id" LEFT 60
	log "vm1: $(guest_lines vm1 "$id" | grep '^LEFT')"
	# The registered pages went private with the app thread's stores held
	# off by the driver (IOC_HOLD): userfaultfd cannot protect a BAR.
	guest_lines vm1 "$id" | grep 'stores held off by the driver' >/dev/null ||
		{ show vm1 "$id" >&2; fail "vm1: the registered pages went private unprotected"; }
	qmp_ivshmem_add "$work/vm1.sock"
	cue "$id" FIRST-TRANSFER 120
	log "PASS first transfer $(($(now_ms) - t_add)) ms after device_add (TCG): " \
		"$(guest_lines vm1 "$id" | grep '^FIRST-TRANSFER')"
	wait_end vm1 "$id" || { show vm1 "$id" >&2; fail "the program in vm1 failed"; }
	show vm1 "$id"
	# The contexts ended by their own hand: none open, none lost. Both
	# should be listed; one was missing once in 13 runs (open bug: the
	# JSON is printed when that happens again, not yet understood).
	out=$("$ivrdma" --dir "$work" status --json |
		jq -r '[.contexts[] | select(.node == "vm1") | .state] | join(" ")')
	if [ "$out" != "closed closed" ]; then
		"$ivrdma" --dir "$work" status --json | jq -c '.contexts[]' >&2
		case " $out " in
		*" open "* | *" lost "* | "  ") fail "vm1's contexts in ivrdma status: '$out'" ;;
		esac
		log "vm1's contexts in ivrdma status: '$out', not 'closed closed' (open bug)"
	fi
	out=$("$ivrdma" --dir "$work" migrate-end vm1 --timeout 60 2>&1) || fail "migrate-end vm1: $out"
	vm1_back || fail "vm1 not active after migrate-end: $(vm1_node .)"
	log "PASS migrate-end: $out; vm1 $(vm1_node '"\(.state), peers \(.peers)"')"
	guest_dmesg 'ivrdma|ivshm|1af4|acpiphp|hotplug|eject|\[1af4'
	finish_vms vm1
}

# --- migrate: unplug, QEMU migration to another ivrdmad, device_add there

# distinct_ports N: N free TCP ports, all different.
distinct_ports() {
	local ports=() p
	while [ ${#ports[@]} -lt "$1" ]; do
		p=$(free_port) || fail "no free TCP port"
		[[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
	done
	echo "${ports[@]}"
}

# The destination: another ivrdmad, as on another host (its own region
# and subnet), where vm1 is configured under the same name (so the same
# GUID) behind another VM (so another LID).
migrate_start() {
	dst=$work/dst
	start_daemon "$ivrdmad" "$ivrdma" "$REGION_SIZE" vm1
	start_daemon_at "$dst" "$shm-dst" "$ivrdmad" "$ivrdma" "$REGION_SIZE" spare vm1
	[ "$(vm1_node .guid)" = "$(vm1_node .guid "$dst")" ] || fail "vm1's GUID differs between the daemons"
	[ "$(vm1_node .lid)" != "$(vm1_node .lid "$dst")" ] || fail "vm1 has the same LID on both daemons"
	build_image "$unplug_test:/usr/bin/guest-unplug"
	read -r qmp_src qmp_dst mig_port < <(distinct_ports 3)
	vm_boot vm1 "$work/verbs.cpio.gz" "" -qmp tcp:127.0.0.1:"$qmp_src",server=on,wait=off
	wait_ready vm1
	qmp_connect "$qmp_src" qmp-src
}

# The teardown at the source, as in run_unplug: migrate-begin, device_del.
migrate_leave() {
	local out
	out=$("$ivrdma" --dir "$work" migrate-begin vm1 --timeout 60 2>&1) ||
		{ show vm1 "$id" >&2; fail "migrate-begin vm1: $out"; }
	[[ $out == *" 1 context(s) acknowledged"* ]] ||
		fail "migrate-begin vm1: not the one context of vm1's program: $out"
	log "PASS migrate-begin (teardown, begin until all acknowledged): $out (TCG)"
	cue "$id" FATAL 30
	unplug
	cue "$id" LEFT 60
	log "vm1: $(guest_lines vm1 "$id" | grep '^LEFT')"
}

# QEMU's migration of vm1 (no ivshmem device left) to vm1.in: live,
# unless IVRDMA_MIGRATE_STOPPED=1 (see the top).
vm_migrate() {
	local out t mode=live
	[ "${IVRDMA_MIGRATE_STOPPED:-0}" = 0 ] || mode=stopped
	vm_incoming vm1 "$mig_port" "$work/verbs.cpio.gz" "" \
		-qmp tcp:127.0.0.1:"$qmp_dst",server=on,wait=off
	t=$(now_ms)
	out=$(qmp_migrate "$mig_port" "$mode")
	vm_migrated vm1
	qmp_connect "$qmp_dst" qmp-dst
	[ $mode = live ] || qmp_cmd '{"execute": "cont"}' >/dev/null
	# Stopped, the vCPUs were paused for all of it, not just QEMU's downtime.
	log "PASS QEMU migrated vm1 ($mode) in $(($(now_ms) - t)) ms, running again:" \
		"$(jq -r '.return | "total-time \(.["total-time"]) ms, downtime \(.downtime) ms, \(.ram.transferred) bytes sent, \(.ram.duplicate) zero pages"' <<<"$out") (TCG)"
	out=$(qmp_cmd '{"execute": "query-status"}' | jq -r .return.status)
	[ "$out" = running ] || fail "vm1 after the migration: $out, not running"
	# The program kept running: its thread still counts (OLD-BUFFER, later).
	[ "$(vm1_node .state)" = gone ] || fail "vm1 at the source: $(vm1_node .state), not gone"
}

run_migrate() {
	local id out dst qmp_src qmp_dst mig_port t_add gid
	migrate_start
	ncmd=$((ncmd + 1))
	id=c$ncmd
	vm_send vm1 "live $id $((BUDGET - 60)) env IVRDMA_DEBUG=1 guest-unplug 180 --setup"
	cue "$id" READY 120
	log "vm1: $(guest_lines vm1 "$id" | grep '^READY')"
	migrate_leave
	vm_migrate
	qmp_ivshmem_add "$dst/vm1.sock"
	cue "$id" FIRST-TRANSFER 120
	log "PASS first transfer $(($(now_ms) - t_add)) ms after device_add at the destination" \
		"(TCG): $(guest_lines vm1 "$id" | grep -E '^(SET-UP|FIRST-TRANSFER)' | tr '\n' ' ')"
	wait_end vm1 "$id" || { show vm1 "$id" >&2; fail "the program in vm1 failed"; }
	show vm1 "$id"
	out=$(guest_lines vm1 "$id" | grep '^REJOINED')
	gid=$(vm1_node .gid "$dst")
	[[ $out == "REJOINED lid $(vm1_node .lid "$dst") gid $gid:"* ]] ||
		fail "vm1's port after the migration is not its node at the destination (LID" \
			"$(vm1_node .lid "$dst"), GID $gid): $out"
	log "PASS vm1 at the destination: LID $(vm1_node .lid "$dst") (was $(vm1_node .lid))," \
		"GID $gid (was $(vm1_node .gid)), GUID $(vm1_node .guid) kept"
	out=$("$ivrdma" --dir "$dst" migrate-end vm1 --timeout 60 2>&1) ||
		fail "migrate-end vm1 at the destination: $out"
	vm1_back "$dst" || fail "vm1 not active at the destination: $(vm1_node . "$dst")"
	log "PASS migrate-end at the destination: $out; vm1 $(vm1_node '"\(.state), peers \(.peers)"' "$dst")"
	finish_vms vm1
}

# --- rdmacm: librdmacm between the guests (the preload's rdma_cm device)

PRELOAD_DEST=/usr/lib/x86_64-linux-gnu/ivrdma/libivrdma-preload.so
RDMACM_TOOLS=(rping rstream)
# glibc loads it for pthread_cancel and pthread_exit (rping's threads end
# so): ldd does not name it.
LIBGCC_S=/lib/x86_64-linux-gnu/libgcc_s.so.1
VM1_IP=192.0.2.1 # two_vms gives these to the guests' NICs
VM2_IP=192.0.2.2

# cm_run VM CMD...: CMD on VM with the preload; sets $cmd_id.
cm_run() {
	local vm=$1
	shift
	guest_run "$vm" env LD_PRELOAD=$PRELOAD_DEST "$@"
}

# cm_listener VM PORT: VM's RDMA CM listener on PORT as `ivrdma status
# --json` on the host lists it; empty if there is none.
cm_listener() {
	"$ivrdma" --dir "$work" status --json | jq -r --arg vm "$1" --argjson port "$2" \
		'.listeners[] | select(.node == $vm and .port == $port) |
		"\(.port_space) port \(.port) addr \(.addr) peer \(.peer) agent QPN \(.agent_qpn)"'
}

cm_listening_or_ended() { # cm_listening_or_ended VM PORT ID
	[ -n "$(cm_listener "$1" "$2")" ] || ended "$1" "$3"
}

# cm_listen VM PORT ID: waits until command ID of VM listens on RDMA CM
# PORT (there is no TCP port to watch: the region's listener table).
cm_listen() {
	wait_until "an RDMA CM listener on port $2 in $1" $TOOL_TIMEOUT \
		cm_listening_or_ended "$1" "$2" "$3"
	[ -n "$(cm_listener "$1" "$2")" ] ||
		{ show "$1" "$3" >&2; fail "$1: $3 ended before it listened on RDMA CM port $2"; }
}

# cm_pair NAME PORT PATTERN 'SERVER CMD' 'CLIENT CMD': the server in vm1,
# the client in vm2 once the server listens (PORT replaces the word
# PORT); both exit 0, and the client's output matches PATTERN.
cm_pair() {
	local name=$1 port=$2 pattern=$3 server=$4 client=$5 sid cid start
	# shellcheck disable=SC2086 # words
	cm_run vm1 ${server//PORT/$port}
	sid=$cmd_id
	cm_listen vm1 "$port" "$sid"
	log "$name: vm1 listens: $(cm_listener vm1 "$port")"
	[ -n "${cm_status_shown:-}" ] || cm_status
	start=$SECONDS
	# shellcheck disable=SC2086 # words
	cm_run vm2 ${client//PORT/$port}
	cid=$cmd_id
	check_pair "$name" vm1 "$sid" vm2 "$cid"
	guest_lines vm2 "$cid" | grep -E -- "$pattern" >/dev/null ||
		{ show vm2 "$cid" >&2; fail "$name: no '$pattern' in the client's output"; }
	log "PASS $name: both exit 0, $((SECONDS - start)) s (TCG): " \
		"$(guest_lines vm2 "$cid" | grep -E -- "$pattern" | tail -n 1)"
}

# cm_status: `ivrdma status` on the host, its nodes and listeners, once.
cm_status() {
	cm_status_shown=1
	"$ivrdma" --dir "$work" status >"$work/status.out" || fail "ivrdma status"
	log "ivrdma status while vm1 listens:"
	sed -n '/^NODE /,/^CONTEXTS/p' "$work/status.out" | grep -v '^CONTEXTS' | sed 's/^/    /'
}

# cm_addrs: ivrdmad gives each guest its address.
cm_addrs() {
	local vm ip addrs
	for vm in vm1 vm2; do
		ip=$VM1_IP
		[ $vm = vm1 ] || ip=$VM2_IP
		addrs=$("$ivrdma" --dir "$work" status --json |
			jq -r --arg vm $vm '.nodes[] | select(.name == $vm) | .addrs | join(",")')
		[ "$addrs" = "$ip" ] || fail "ivrdma status: $vm's addresses are '$addrs', not $ip"
	done
	log "PASS ivrdma status: vm1 at $VM1_IP, vm2 at $VM2_IP"
}

# cm_rejected PORT: a connect from vm2 to vm1's PORT, where nobody
# listens, fails with REJECTED (the region's listener table has no
# entry: invalid service ID) before the tool's timeout.
cm_rejected() {
	local port=$1 id rc=0 start=$SECONDS
	[ -z "$(cm_listener vm1 "$port")" ] || fail "something listens on RDMA CM port $port in vm1"
	cm_run vm2 rping -c -a $VM1_IP -p "$port" -C 1 -v
	id=$cmd_id
	wait_end vm2 "$id" || rc=$?
	# The guest's timeout (busybox) exits 143 when it stops the tool, 137
	# when it has to kill it.
	case $rc in
	0 | 124 | 137 | 143)
		show vm2 "$id" >&2
		fail "rping -c to port $port with no listener: exit $rc (0: it connected; 124, 137, 143: timeout stopped it)"
		;;
	esac
	guest_lines vm2 "$id" | grep REJECTED >/dev/null ||
		{ show vm2 "$id" >&2; fail "rping -c to port $port with no listener: no REJECTED"; }
	log "PASS rping -c to a port nobody listens on: exit $rc after $((SECONDS - start)) s (TCG):" \
		"$(guest_lines vm2 "$id" | grep REJECTED | head -n 1)"
}

run_rdmacm() {
	local left
	daemon_opts=(--addr "vm1=$VM1_IP" --addr "vm2=$VM2_IP")
	[ -r $LIBGCC_S ] || fail "no $LIBGCC_S (package libgcc-s1)"
	two_vms "$preload:$PRELOAD_DEST" "$LIBGCC_S:$LIBGCC_S" "$(command -v rping):/usr/bin/rping" \
		"$(command -v rstream):/usr/bin/rstream"
	cm_addrs
	cm_pair "rping -V" 7174 'rdma-ping-19: ' \
		"rping -s -a $VM1_IP -p PORT -V -C 20" "rping -c -a $VM1_IP -p PORT -V -C 20 -v"
	cm_rejected 7175
	cm_pair "rstream" 7176 'custom +64k +100 ' \
		"rstream -p PORT -S 65536 -C 100" "rstream -s $VM1_IP -p PORT -S 65536 -C 100"
	# Every listener went with its process.
	left=$("$ivrdma" --dir "$work" status --json |
		jq -r '.listeners[] | "\(.node) \(.port_space) port \(.port) addr \(.addr)"')
	[ -z "$left" ] || fail "RDMA CM listener(s) left after the servers exited: ${left//$'\n'/; }"
	log "PASS no RDMA CM listener left"
	finish_vms vm1 vm2
}

main() {
	parse_args "$@"
	[ "$scenario" != rdmacm ] || TOOLS+=("${RDMACM_TOOLS[@]}")
	check_tools jq cpio busybox timeout setpriv mkfifo ss ldd "${TOOLS[@]}"
	check_module "$module"
	vm_lib_init ivrdma-verbs
	case "$scenario" in
	two-vms) run_two_vms ;;
	ud) run_ud ;;
	host-guest) run_host_guest ;;
	restart) run_restart ;;
	mpi) VM_MEMORY=1024 TOOL_TIMEOUT=${IVRDMA_MPI_JOB_TIMEOUT:-600} run_mpi ;;
	unplug) run_unplug ;;
	migrate) VM_MEMORY=256 run_migrate ;;
	rdmacm) run_rdmacm ;;
	esac
	log "PASS in $(elapsed)s"
}

main "$@"
