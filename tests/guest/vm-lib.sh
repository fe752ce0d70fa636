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
#   - the work dir $work and the shm object $shm are removed (--keep,
#     i.e. keep=1, keeps the work dir), by a janitor process if this
#     script is SIGKILLed (a CTest timeout);
#   - on failure the logs in $work are printed (the guests' consoles).
# Every wait is bounded; a supervised process that dies early fails the
# test at once (VMs may exit after their guest said DONE or FAIL).

SKIP=77
start_ns=$(date +%s%N)
work='' shm='' keep=${keep:-0} daemon_pid='' kernel=${kernel:-} janitor_pid=''
supervised=()
daemon_opts=() # more options for ivrdmad (start_daemon), e.g. --addr vm1=IP
declare -A vm_pid=() vm_console=()

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
	[ -z "$shm" ] || rm -f "/dev/shm/${shm#/}"
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
	background sh -c 'trap "rm -rf \"\$1\" \"\$2\"; exit 0" TERM; while :; do sleep 1; done' \
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
	local vm
	[ -z "$daemon_pid" ] || kill -0 "$daemon_pid" 2>/dev/null || fail "ivrdmad exited early"
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
# (and the options in daemon_opts).
start_daemon() {
	local ivrdmad=$1 ivrdma=$2 size=$3 args=() vm
	shift 3
	for vm in "$@"; do
		args+=(--vm "$vm")
	done
	background "$ivrdmad" --dir "$work" --shm "$shm" --size "$size" \
		--vectors "$VECTORS" "${args[@]}" "${daemon_opts[@]}" -v </dev/null >"$work/ivrdmad.log" 2>&1 &
	daemon_pid=$!
	supervise $!
	wait_until "ivrdmad to answer status" 15 "$ivrdma" --dir "$work" status >/dev/null 2>&1
	log "ivrdmad ready (shm $shm, size $size, dir $work)"
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
	local name=$1 initrd=$2 append=$3 fd
	shift 3
	mkfifo "$work/$name.console"
	exec {fd}<>"$work/$name.console"
	vm_console[$name]=$fd
	background qemu-system-x86_64 -accel tcg -smp 1,maxcpus=2 -m "${VM_MEMORY:-256}" \
		-nographic -no-reboot \
		-kernel "$kernel" -initrd "$initrd" -append "console=ttyS0 quiet panic=-1 $append" \
		-chardev socket,path="$work/$name.sock",id=iv \
		-device ivshmem-doorbell,id=ivrdma,chardev=iv,vectors="$VECTORS" "$@" \
		<"$work/$name.console" >"$work/$name.serial.log" 2>&1 &
	vm_pid[$name]=$!
	supervise $!
	log "QEMU $name started (kernel $kernel)"
}

# vm_send NAME LINE: a line on NAME's console input.
vm_send() {
	echo "$2" >&"${vm_console[$1]}"
}

# serial NAME: its console log, one line per line, without CRs and escapes.
serial() {
	tr -d '\r' <"$work/$1.serial.log" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g'
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

qmp_fd=''

# qmp_connect PORT: the monitor of a VM started with
# -qmp tcp:127.0.0.1:PORT,server=on,wait=off; greeting read, capabilities
# negotiated. Every line read is logged in $work/qmp.log.
qmp_connect() {
	local port=$1
	wait_until "QMP on port $port" 30 qmp_listening "$port"
	exec {qmp_fd}<>"/dev/tcp/127.0.0.1/$port"
	qmp_read_until '"QMP"' 30 >/dev/null || fail "no QMP greeting on port $port"
	qmp_cmd '{"execute": "qmp_capabilities"}' >/dev/null
}

qmp_listening() {
	ss -Hltn "sport = :$1" | grep LISTEN >/dev/null
}

# qmp_read_until REGEX SECONDS: reads QMP lines until one matches (bash
# regex); prints it. Status 1 if none did in time.
qmp_read_until() {
	local line end=$(($(date +%s) + $2))
	while [ "$(date +%s)" -lt "$end" ]; do
		IFS= read -r -t 1 line <&"$qmp_fd" || continue
		line=${line%$'\r'}
		echo "$line" >>"$work/qmp.log"
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
	done <"$work/qmp.log"
	qmp_read_until "$1" "$2" >/dev/null
}
