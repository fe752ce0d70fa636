# shellcheck shell=bash
# The host side of every guest test, sourced by the run-*.sh scripts:
# process supervision, cleanup, bounded waits, ivrdmad and QEMU VMs.
#
# The sourcing script sets BUDGET (seconds any background process may
# live; keep it under the CTest TIMEOUT) and, for VMs, VECTORS and
# $kernel (see find_kernel), then calls vm_lib_init PREFIX once its
# arguments are checked. After that:
#   - every process started with `background CMD... &` and `supervise $!`
#     is stopped on exit, in reverse order of start (so ivrdmad, started
#     first, goes last and its clean exit removes the region and sockets;
#     the janitor below, after the logs are shown);
#     it gets SIGTERM if this script dies, even by SIGKILL (setpriv
#     --pdeathsig), and dies on its own after BUDGET s anyway (timeout);
#   - the work dir $work and the shm objects $shm and $shm-* (a second
#     ivrdmad's) are removed (--keep, i.e. keep=1, keeps the work dir), by
#     a janitor process if this script is SIGKILLed (a CTest timeout);
#   - on failure the logs in $work are printed (the guests' consoles).
# Every wait is bounded; a supervised process that dies early fails the
# test at once (VMs may exit after their guest said DONE or FAIL).

SKIP=77
start_ns=$(date +%s%N)
work='' shm='' keep=${keep:-0} kernel=${kernel:-} janitor_pid=''
supervised=()
daemon_opts=() # more options for ivrdmad (start_daemon), e.g. --addr vm1=IP
daemon_pids=() # every ivrdmad started (start_daemon, start_daemon_at)
daemon_dir=''  # where vm_boot's VMs find their sockets: $work unless set
# More options of vm_boot's ivshmem chardev (IVRDMA_VM_CHARDEV_OPTS), e.g.
# ,reconnect=1: with it QEMU 7.2 never starts the guest (the restart
# scenario of run-verbs-vm.sh, docs/design.md section 4).
vm_chardev_opts=${IVRDMA_VM_CHARDEV_OPTS-}
# Per VM: QEMU's PID, its console's fd, and its console logs: more than one
# once it migrated (vm_incoming, vm_migrated), oldest first.
declare -A vm_pid=() vm_console=() vm_logs=()

now_ms() {
	echo $(($(date +%s%N) / 1000000))
}

elapsed() {
	local ms=$((($(date +%s%N) - start_ns) / 1000000))
	printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

log() {
	echo "[guest +$(elapsed)s] $*"
}

fail() {
	echo "[guest +$(elapsed)s] FAIL: $*" >&2
	exit 1
}

skip() {
	echo "SKIP: $*"
	exit $SKIP
}

# background CMD...: runs CMD supervised (see BUDGET); only ever call it
# with '&', since it execs. $! is then the process to stop.
background() {
	exec setpriv --pdeathsig TERM -- timeout -k 5 "$BUDGET" "$@"
}

supervise() {
	supervised+=("$1")
}

# unsupervise PID: it was reaped; never signal its (reusable) PID again.
unsupervise() {
	local i
	for i in "${!supervised[@]}"; do
		[ "${supervised[$i]}" != "$1" ] || unset 'supervised[i]'
	done
}

# stop PID: TERM, then KILL after 5 s; reaps it.
stop() {
	local pid=$1 _
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# The logs of the work dir, consoles first, without CRs and escapes.
show_logs() {
	local f
	for f in "$work"/*.serial.log "$work"/*.log "$work"/*.out "$work"/*.err; do
		[ -s "$f" ] || continue
		[[ $f != *.serial.log ]] || [[ ${shown:-} != *"|$f|"* ]] || continue
		shown="${shown:-}|$f|"
		echo "----- ${f##*/} (last ${SHOW_LINES:-60} lines) -----"
		tail -n "${SHOW_LINES:-60}" "$f" | tr -d '\r' | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g'
	done
}

vm_lib_cleanup() {
	local rc=$? i fd
	set +e
	trap - EXIT INT TERM HUP
	for fd in "${vm_console[@]}"; do
		exec {fd}>&-
	done
	# Not the janitor yet: stopped, it removes the work dir, logs and all.
	for ((i = ${#supervised[@]} - 1; i >= 0; i--)); do
		[ -z "${supervised[i]:-}" ] || [ "${supervised[i]}" = "$janitor_pid" ] ||
			stop "${supervised[i]}"
	done
	if [ -n "$work" ]; then
		[ $rc -eq 0 ] || [ $rc -eq $SKIP ] || show_logs >&2
		if [ "$keep" -eq 1 ]; then
			echo "work dir kept: $work" >&2
		else
			rm -rf "$work"
		fi
	fi
	[ -z "$shm" ] || rm -f "/dev/shm/${shm#/}" "/dev/shm/${shm#/}"-*
	stop "$janitor_pid"
	exit $rc
}

# vm_lib_init PREFIX: traps, the work dir and shm name, the janitor.
vm_lib_init() {
	trap vm_lib_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
	work=$(mktemp -d "/tmp/$1.XXXXXX") # short: socket paths max 107 bytes
	shm="/$1-$$-$RANDOM"
	[ "$keep" -eq 1 ] && return 0
	# shellcheck disable=SC2016 # expanded by that sh, at trap time
	background sh -c 'trap "rm -rf \"\$1\" \"\$2\" \"\$2\"-*; exit 0" TERM; while :; do sleep 1; done' \
		janitor "$work" "/dev/shm/${shm#/}" </dev/null >/dev/null 2>&1 &
	janitor_pid=$!
	supervise $!
}

# wait_until DESC SECONDS CMD...: polls CMD every 0.2 s; fails on timeout.
# A supervised process that died fails at once (see alive_or_fail).
wait_until() {
	local desc=$1 limit=$2 end
	shift 2
	end=$(($(date +%s) + limit))
	until "$@"; do
		alive_or_fail
		[ "$(date +%s)" -lt "$end" ] || fail "timed out after ${limit}s waiting for $desc"
		sleep 0.2
	done
}

alive_or_fail() {
	local vm pid
	for pid in "${daemon_pids[@]}"; do
		kill -0 "$pid" 2>/dev/null || fail "ivrdmad (pid $pid) exited early"
	done
	for vm in "${!vm_pid[@]}"; do
		[ -z "${vm_pid[$vm]}" ] || kill -0 "${vm_pid[$vm]}" 2>/dev/null ||
			guest_said "$vm" '\(DONE\|FAIL\)' || fail "QEMU of $vm exited before its guest finished"
	done
}

# wait_exit PID SECONDS: its exit status (reaped), or 124 if still running.
wait_exit() {
	local pid=$1 limit=$2 rc=0 _
	for _ in $(seq $((limit * 5))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	kill -0 "$pid" 2>/dev/null && return 124
	wait "$pid" || rc=$?
	unsupervise "$pid"
	return $rc
}

# The newest Debian kernel, unless given. A missing kernel is a broken CI
# image, not a reason to skip.
find_kernel() {
	if [ -z "$kernel" ]; then
		kernel=$(printf '%s\n' /boot/vmlinuz-*-amd64 | sort -V | tail -n 1)
	fi
	[ -r "$kernel" ] || fail "no readable kernel (/boot/vmlinuz-*-amd64; install linux-image-amd64, or pass --kernel)"
}

# check_tools TOOL...: skip without QEMU, fail without the others.
check_tools() {
	local t
	command -v qemu-system-x86_64 >/dev/null ||
		skip "qemu-system-x86_64 not installed (package qemu-system-x86)"
	for t in "$@"; do
		command -v "$t" >/dev/null || fail "$t not installed (see scripts/install-deps.sh)"
	done
	find_kernel
}

# check_module MODULE: skip if it was not built, fail if built for another kernel.
check_module() {
	local module=$1 release=${kernel##*/vmlinuz-} vermagic
	[ -n "$module" ] || skip "ivrdma_ivshmem.ko was not built: no kernel headers for the" \
		"guest kernel (install linux-headers-amd64 and re-run cmake)"
	[ -r "$module" ] || fail "module $module not built (cmake --build: target uio-driver)"
	vermagic=$(grep -a -o 'vermagic=[^ ]*' "$module" | head -n 1)
	[ "${vermagic#vermagic=}" = "$release" ] ||
		fail "module built for '${vermagic#vermagic=}', guest kernel is $release"
}

# start_daemon IVRDMAD IVRDMA SIZE VM...: ivrdmad with one socket per VM
# (and the options in daemon_opts), in $work with the shm object $shm.
start_daemon() {
	start_daemon_at "$work" "$shm" "$@"
}

# start_daemon_at DIR SHM IVRDMAD IVRDMA SIZE VM...: the same in DIR (made
# if needed) with SHM, which must be $shm or $shm-SUFFIX (removed at the
# end); its log is DIR/ivrdmad.log, or $work/ivrdmad-SUFFIX.log.
start_daemon_at() {
	local dir=$1 obj=$2 ivrdmad=$3 ivrdma=$4 size=$5 args=() vm logf=$work/ivrdmad.log
	shift 5
	[[ $obj == "$shm" || $obj == "$shm"-* ]] || fail "start_daemon_at: shm $obj is not $shm(-*)"
	[ "$obj" = "$shm" ] || logf=$work/ivrdmad${obj#"$shm"}.log
	mkdir -p "$dir"
	for vm in "$@"; do
		args+=(--vm "$vm")
	done
	background "$ivrdmad" --dir "$dir" --shm "$obj" --size "$size" \
		--vectors "$VECTORS" "${args[@]}" "${daemon_opts[@]}" -v </dev/null >"$logf" 2>&1 &
	daemon_pids+=($!)
	supervise $!
	wait_until "ivrdmad to answer status" 15 "$ivrdma" --dir "$dir" status >/dev/null 2>&1
	log "ivrdmad ready (shm $obj, size $size, dir $dir)"
}

# vm_boot NAME INITRD APPEND [QEMU ARGS...]: one TCG VM whose
# ivshmem-doorbell device (QEMU id "ivrdma", its chardev "iv") joins
# ivrdmad as NAME; its console output goes
# to $work/NAME.serial.log, its console input comes from vm_send.
#
# maxcpus=2 though one vCPU runs: QEMU generates parallel code (CF_PARALLEL)
# only when the machine may have more than one CPU. Without it TCG emits
# the guest's locked instructions as plain load-then-store and drops its
# fences, which is right for a lone vCPU but not for BAR2, whose words
# ivrdmad's other peers (host processes, other VMs) update at the same
# time: a guest CAS of a CQ's prod then takes the same entry as a host
# producer's and overwrites its CQE (seen as a guest.verbs_host_guest hang
# when a preempted vCPU thread held that window open). guest.driver_basics
# races locked adds on one BAR2 word against the host to check it.
vm_boot() {
	local name=$1 initrd=$2 append=$3
	shift 3
	qemu_start "$name" "$initrd" "$append" \
		-chardev "socket,path=${daemon_dir:-$work}/$name.sock,id=iv$vm_chardev_opts" \
		-device ivshmem-doorbell,id=ivrdma,chardev=iv,vectors="$VECTORS" "$@"
	log "QEMU $name started (kernel $kernel)"
}

# vm_machine_args: the accelerator, CPUs and RAM of every VM, one argument
# a line (IVRDMA_VM_ACCEL, IVRDMA_VM_SMP, IVRDMA_VM_RAM override them).
#
# The RAM is VM_MEMORY MiB and 8 KiB, so that a live (pre-copy) migration
# keeps every guest store. When a RAM block's size is a multiple of 256
# KiB, QEMU 7.2 syncs its migration dirty bitmap 64 pages per word and
# clears the bits without marking the TCG TLB entries of those pages
# not-dirty again: stores through an entry cached before the sync mark
# nothing dirty, and the page is never sent again (the destination keeps
# an old copy). Fixed in QEMU 9.0 ("physmem: Fix migration dirty bitmap
# coherency with TCG memory access"). Another size takes the page-by-page
# sync, which resets the TLB entries of each page it clears.
# guest.migration_precopy shows it; KVM tracks dirty pages in the kernel.
vm_machine_args() {
	printf '%s\n' -accel "${IVRDMA_VM_ACCEL:-tcg}" -smp "${IVRDMA_VM_SMP:-1,maxcpus=2}" \
		-m "${IVRDMA_VM_RAM:-$((${VM_MEMORY:-256} * 1024 + 8))k}"
}

# qemu_start KEY INITRD APPEND [QEMU ARGS...]: the QEMU of vm_boot without
# an ivshmem device, known as KEY: console input $work/KEY.console, output
# $work/KEY.serial.log.
qemu_start() {
	local key=$1 initrd=$2 append=$3 fd
	shift 3
	mkfifo "$work/$key.console"
	exec {fd}<>"$work/$key.console"
	vm_console[$key]=$fd
	vm_logs[$key]=$work/$key.serial.log
	local machine
	mapfile -t machine < <(vm_machine_args)
	background qemu-system-x86_64 "${machine[@]}" -nographic -no-reboot \
		-kernel "$kernel" -initrd "$initrd" -append "console=ttyS0 quiet panic=-1 $append" "$@" \
		<"$work/$key.console" >"$work/$key.serial.log" 2>&1 &
	vm_pid[$key]=$!
	supervise $!
}

# vm_incoming NAME PORT INITRD APPEND [QEMU ARGS...]: the destination of
# NAME's live migration, known as NAME.in until vm_migrated: the machine
# of vm_boot (same INITRD, APPEND and ARGS) without the ivshmem device,
# which cannot migrate, waiting on tcp:127.0.0.1:PORT.
vm_incoming() {
	local name=$1 port=$2
	shift 2
	qemu_start "$name.in" "$@" -incoming tcp:127.0.0.1:"$port"
	wait_until "QEMU $name.in to listen on port $port" 30 tcp_listening "$port"
	log "QEMU $name.in started, incoming on 127.0.0.1:$port"
}

# vm_migrated NAME: the migration to NAME.in completed; the source QEMU
# is stopped and NAME is the destination from now on (its console, its
# PID), the guest's output being the source's log, then the destination's
# (renamed NAME.hopN.serial.log, so that NAME can migrate again).
vm_migrated() {
	local name=$1 in=$1.in fd=${vm_console[$1]} hop
	stop "${vm_pid[$name]}"
	unsupervise "${vm_pid[$name]}"
	exec {fd}>&-
	hop=$(wc -w <<<"${vm_logs[$name]}")
	mv "$work/$in.console" "$work/$name.hop$hop.console"
	mv "$work/$in.serial.log" "$work/$name.hop$hop.serial.log"
	vm_pid[$name]=${vm_pid[$in]}
	vm_console[$name]=${vm_console[$in]}
	vm_logs[$name]+=" $work/$name.hop$hop.serial.log"
	unset "vm_pid[$in]" "vm_console[$in]" "vm_logs[$in]"
}

# vm_send NAME LINE: a line on NAME's console input.
vm_send() {
	echo "$2" >&"${vm_console[$1]}"
}

# serial NAME: its console logs, one line per line, without CRs and escapes.
serial() {
	local f
	# shellcheck disable=SC2086 # a list of paths in the work dir
	for f in ${vm_logs[$1]}; do
		cat "$f"
	done | tr -d '\r' | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g'
}

# Under pipefail a pipe into grep -q fails when grep stops reading at the
# first match and the writer gets SIGPIPE: these scripts let grep read all.
guest_said() { # guest_said NAME PATTERN
	serial "$1" | grep "^IVR-GUEST: $2" >/dev/null
}

guest_lines() { # guest_lines NAME STEP: that step's output
	serial "$1" | sed -n "s/^IVR-GUEST: $2: //p"
}

guest_failure() { # guest_failure NAME: fail if the guest said FAIL
	! guest_said "$1" FAIL || fail "$1: $(serial "$1" | grep '^IVR-GUEST: FAIL')"
}

# vm_wait_done NAME SECONDS: QEMU exits, its guest said DONE.
vm_wait_done() {
	local rc=0
	wait_exit "${vm_pid[$1]}" "$2" || rc=$?
	[ $rc -eq 124 ] || vm_pid[$1]=''
	guest_failure "$1"
	[ $rc -eq 0 ] || fail "QEMU of $1 exited $rc (124: guest did not power off)"
	guest_said "$1" DONE || fail "guest $1 did not finish (no DONE)"
}

# --- QMP, with bash's /dev/tcp (no socat, no python in the image)

qmp_fd='' qmp_log=''

# qmp_connect PORT [NAME]: the monitor of a VM started with
# -qmp tcp:127.0.0.1:PORT,server=on,wait=off; greeting read, capabilities
# negotiated. The qmp_* functions below talk to it from now on (the one
# connected last). Every line read is logged in $work/NAME.log (qmp.log).
qmp_connect() {
	local port=$1
	qmp_log=$work/${2:-qmp}.log
	wait_until "QMP on port $port" 30 tcp_listening "$port"
	exec {qmp_fd}<>"/dev/tcp/127.0.0.1/$port"
	qmp_read_until '"QMP"' 30 >/dev/null || fail "no QMP greeting on port $port"
	qmp_cmd '{"execute": "qmp_capabilities"}' >/dev/null
}

tcp_listening() {
	ss -Hltn "sport = :$1" | grep LISTEN >/dev/null
}

# qmp_read_until REGEX SECONDS: reads QMP lines until one matches (bash
# regex); prints it. Status 1 if none did in time.
qmp_read_until() {
	local line end=$(($(date +%s) + $2))
	while [ "$(date +%s)" -lt "$end" ]; do
		IFS= read -r -t 1 line <&"$qmp_fd" || continue
		line=${line%$'\r'}
		echo "$line" >>"$qmp_log"
		if [[ $line =~ $1 ]]; then
			echo "$line"
			return 0
		fi
	done
	return 1
}

# qmp_cmd JSON: sends one command, prints its answer; fails on an error
# answer or none within 30 s. Events read meanwhile stay in qmp.log.
qmp_cmd() {
	local reply
	echo "$1" >&"$qmp_fd"
	reply=$(qmp_read_until '^\{"(return|error)"' 30) || fail "QMP: no answer to $1"
	[[ $reply == '{"return"'* ]] || fail "QMP: $1: $reply"
	echo "$reply"
}

# qmp_wait_event REGEX SECONDS: an event line matching REGEX, already read
# or still to come; status 1 if none in time.
qmp_wait_event() {
	local line
	while IFS= read -r line; do
		[[ ! $line =~ $1 ]] || return 0
	done <"$qmp_log"
	qmp_read_until "$1" "$2" >/dev/null
}

# --- The ivshmem device under QMP (hot-unplug, hot-plug, migration)

# qmp_ivshmem_del: device_del of vm_boot's ivshmem device (id ivrdma)
# until QEMU reports DEVICE_DELETED (the guest's ACPI PCI hotplug ejected
# it), then chardev-remove of its chardev (iv): the VM leaves ivrdmad.
# Status 1 if the guest did not eject the device within 60 s.
qmp_ivshmem_del() {
	local t
	t=$(now_ms)
	qmp_cmd '{"execute": "device_del", "arguments": {"id": "ivrdma"}}' >/dev/null
	qmp_wait_event '"event": *"DEVICE_DELETED".*"device": *"ivrdma"' 60 || return 1
	log "device_del: DEVICE_DELETED after $(($(now_ms) - t)) ms"
	qmp_cmd '{"execute": "chardev-remove", "arguments": {"id": "iv"}}' >/dev/null
}

# qmp_ivshmem_add SOCKET: chardev-add (id iv) connected to ivrdmad's VM
# SOCKET, then device_add of an ivshmem-doorbell (id ivrdma) on it, as
# vm_boot's. Sets t_add (now_ms) just before device_add.
qmp_ivshmem_add() {
	qmp_cmd "$(printf '{"execute": "chardev-add", "arguments": {"id": "iv", "backend": {"type": "socket", "data": {"server": false, "addr": {"type": "unix", "data": {"path": "%s"}}}}}}' "$1")" >/dev/null
	# shellcheck disable=SC2034 # the caller's
	t_add=$(now_ms)
	qmp_cmd "$(printf '{"execute": "device_add", "arguments": {"driver": "ivshmem-doorbell", "id": "ivrdma", "chardev": "iv", "vectors": %d}}' "$VECTORS")" >/dev/null
	log "chardev-add ($1), device_add done"
}

# qmp_migrate PORT [stopped]: migrates the VM of the monitor to a
# vm_incoming QEMU waiting on tcp:127.0.0.1:PORT, at up to 1 GiB/s
# (QEMU's default is 32 MiB/s), and waits up to 120 s for it; prints
# query-migrate's last answer. Fails if the migration fails or does not
# end in time. Live (pre-copy) by default; 'stopped' stops the vCPUs
# first (QMP stop), so the guest stores nothing while its RAM moves, and
# the destination stays paused until QMP cont.
qmp_migrate() {
	local reply status end=$(($(date +%s) + 120))
	[ "${2:-}" != stopped ] || qmp_cmd '{"execute": "stop"}' >/dev/null
	qmp_cmd '{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1073741824}}' >/dev/null
	qmp_cmd "$(printf '{"execute": "migrate", "arguments": {"uri": "tcp:127.0.0.1:%d"}}' "$1")" >/dev/null
	while :; do
		reply=$(qmp_cmd '{"execute": "query-migrate"}')
		status=$(jq -r '.return.status' <<<"$reply")
		case $status in
		completed) break ;;
		failed | cancelled) fail "migration to port $1: $status: $reply" ;;
		esac
		alive_or_fail
		[ "$(date +%s)" -lt "$end" ] || fail "migration to port $1 not done in 120 s: $reply"
		sleep 0.2
	done
	echo "$reply"
}
