#!/bin/bash
# Runs one MPI test program over ivrdma0 and over shared memory, and
# compares: a real ivrdmad on its own region, `ivrdma setup`, then
#
#   openib    Open MPI, pml ob1, btl openib,self
#   ompi-ucx  Open MPI, pml ucx, UCX_TLS=rc_verbs,ud_verbs,self and ud_verbs,self
#   mpich     MPICH (ch4:ucx), UCX_TLS=rc_verbs,ud_verbs,self, every rank remote
#
# The reference is the same program over the same MPI's shared memory
# (Open MPI: ob1 with btl vader,self, and tcp, which only joins spawned
# jobs, vader cannot; MPICH: UCX_TLS=sm,self), without the
# ivrdma environment. Each ivrdma run must exit 0 within the time limit,
# print exactly the reference's stdout, print nothing on stderr but the
# lines whitelisted below, and ivrdmad must have seen at least NP peers
# join during it. No shared-memory or TCP transport is enabled in an
# ivrdma run, so a job that could not use ivrdma0 fails instead of falling
# back.
#
# usage: run-mpi-test.sh [--must-fail PATTERN] GROUP NP IVRDMAD IVRDMA PROVIDER_SO PROGRAM_PREFIX [ARGS...]
#   PROGRAM_PREFIX-openmpi and PROGRAM_PREFIX-mpich are the two builds.
#   --must-fail: every ivrdma run must instead exit non-zero within the
#   limit with PATTERN on its stderr (no reference, no comparison).
# env: MT_RUN_TIMEOUT  seconds per run (120)
set -euo pipefail
# shellcheck source=../lib/ivrdmad.sh
. "$(dirname "$0")/../lib/ivrdmad.sh"
# shellcheck source=../lib/run-group.sh
. "$(dirname "$0")/../lib/run-group.sh"

must_fail=
if [[ ${1:-} == --must-fail ]]; then
	must_fail=$2
	shift 2
fi
group=$1 np=$2 ivrdmad=$3 ivrdma=$4 provider=$(realpath "$5") prefix=$6
shift 6
args=("$@")
limit=${MT_RUN_TIMEOUT:-120}
dir=$(mktemp -d /tmp/ivrdma-mpi.XXXXXX)
shm=/ivrdma-mpi-$$
daemon_pid=
run_pid=

cleanup() {
	local rc=$?
	# A run still going (the script was interrupted): its whole process group.
	[[ -z $run_pid ]] || kill -KILL -- "-$run_pid" 2>/dev/null || true
	if [[ -n $daemon_pid ]]; then
		kill -TERM "$daemon_pid" 2>/dev/null || true
		wait "$daemon_pid" 2>/dev/null || true
	fi
	if ((rc != 0)) && [[ -f $dir/ivrdmad.log ]]; then
		echo "--- ivrdmad log (last 20 lines)" >&2
		tail -n 20 "$dir/ivrdmad.log" >&2
	fi
	rm -f "/dev/shm${shm}"
	rm -rf "$dir"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

start_daemon() {
	"$ivrdmad" --dir "$dir" --shm "$shm" --size 1G --vm vm1 >"$dir/ivrdmad.log" 2>&1 &
	daemon_pid=$!
	ivrdmad_ready "$ivrdma" "$dir" "$daemon_pid" || fail "no ivrdmad"
}

# Open MPI refuses root without these; --oversubscribe: 8 ranks on 2 CPUs.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ompi_run=(mpirun.openmpi --oversubscribe --bind-to none -np "$np")
mpich_run=(mpiexec.mpich -n "$np")
params=$(realpath "$(dirname "$0")/../../mpi/openib-device-params-ivrdma.ini")
# ivrdma's own file first: Open MPI 4.1.4 reads the presets of the first
# file only (listed second, the ivrdma0 section is not found).
param_files=$params:/usr/share/openmpi/mca-btl-openib-device-params.ini

# The ivrdma environment (what `ivrdma env` prints) as mpirun -x options.
ompi_x() {
	local v
	for v in SYSFS_PATH IVRDMA_DIR RDMAV_DRIVERS LD_PRELOAD "$@"; do
		printf -- '-x\n%s\n' "$v"
	done
}

# Open MPI over ivrdma0, openib BTL, with Open MPI's defaults otherwise: see
# README ("MPI over ivrdma").
openib_cmd() {
	mapfile -t x < <(ompi_x)
	cmd=("${ompi_run[@]}" "${x[@]}" --mca pml ob1 --mca btl "openib,self"
		--mca btl_openib_allow_ib 1 --mca btl_openib_device_param_files "$param_files"
		--mca osc pt2pt "$prefix-openmpi" "${args[@]}")
}

# Open MPI over UCX on ivrdma0 only, UCX's registration cache on (its default).
ompi_ucx_cmd() { # ompi_ucx_cmd UCX_TLS
	mapfile -t x < <(ompi_x UCX_TLS UCX_NET_DEVICES)
	export UCX_TLS=$1 UCX_NET_DEVICES=ivrdma0:1
	cmd=("${ompi_run[@]}" "${x[@]}" --mca pml ucx --mca osc ucx --mca btl self
		"$prefix-openmpi" "${args[@]}")
}

# MPICH: MPIR_CVAR_NOLOCAL=1, or MPICH's own shared memory would carry
# every message between ranks of one machine and UCX would see none.
# UCX_RC_VERBS_SEG_SIZE=8193: MPICH 4.0.2 cannot unpack a non-contiguous
# receive whose UCX fragments split a basic element ("Message truncated");
# rc's default 8256-byte segments leave such fragments, and so do UCX's
# shared-memory segments of 8257 bytes (UCX_POSIX_SEG_SIZE): not ivrdma's
# doing. 8193 leaves fragments of whole elements.
mpich_cmd() {
	export UCX_TLS=rc_verbs,ud_verbs,self UCX_NET_DEVICES=ivrdma0:1
	export UCX_RC_VERBS_SEG_SIZE=8193 MPIR_CVAR_NOLOCAL=1
	cmd=("${mpich_run[@]}" "$prefix-mpich" "${args[@]}")
}

# Runs cmd (with the ivrdma environment when $1 is "ivrdma") in its own
# process group, killed whole at the time limit. Sets rc; 124 = timed out.
launch() { # launch ivrdma|plain NAME
	local env_kind=$1 name=$2
	(
		if [[ $env_kind == ivrdma ]]; then
			eval "$ivrdma_env"
		fi
		exec setsid "${cmd[@]}"
	) >"$dir/$name.out" 2>"$dir/$name.err" </dev/null &
	run_pid=$!
	wait_group "$run_pid" "$limit"
	run_pid=
}

joins() {
	grep -c "joined node host" "$dir/ivrdmad.log" || true
}

# Lines of stderr that are neither whitelisted nor empty. Whitelisted:
# - the forkexec program only: openib's warning that the program called
#   fork() (its help block, and mpirun's note that more ranks sent it). It
#   is the point of that program, which checks that fork is harmless;
#   and the ORTE_ERROR_LOG lines of Open MPI 4.1.4's help aggregation in
#   show_help.c, which fails ("Data unpack would read past end of buffer",
#   "Out of resource") when two such help messages arrive together.
unexpected_stderr() { # unexpected_stderr FILE
	local filter='/^[[:space:]]*$/d'
	if [[ $(basename "$prefix") == forkexec ]]; then
		filter+=';/^-+$/d;/A process has executed an operation involving a call to the/,/mpi_warn_on_fork MCA parameter to 0/d'
		filter+=';/sent help message help-opal-runtime.txt \/ opal_init:warn-fork/{N;d}'
		filter+=';/ORTE_ERROR_LOG: .* in file .*show_help.c at line/d'
	fi
	sed -E "$filter" "$1"
}

reference() {
	case $group in
	openib | ompi-ucx)
		cmd=("${ompi_run[@]}" --mca pml ob1 --mca btl "vader,self,tcp" --mca osc pt2pt
			"$prefix-openmpi" "${args[@]}")
		;;
	mpich)
		cmd=(env "UCX_TLS=sm,self" "${mpich_run[@]}" "$prefix-mpich" "${args[@]}")
		;;
	esac
	launch plain reference
	((rc == 0)) || { cat "$dir/reference.err" >&2; fail "reference run: status $rc"; }
	[[ -s $dir/reference.out ]] || fail "reference run printed nothing"
}

check_run() { # check_run NAME (cmd set)
	local name=$1 before after bad start=$SECONDS
	before=$(joins)
	launch ivrdma "$name"
	after=$(joins)
	if [[ -n $must_fail ]]; then
		((rc != 0 && rc != 124)) || { cat "$dir/$name.err" >&2; fail "$name: status $rc, expected a failure within ${limit} s"; }
		grep -q -- "$must_fail" "$dir/$name.err" || { cat "$dir/$name.err" >&2; fail "$name: no '$must_fail' on stderr"; }
		echo "$name: failed as expected (status $rc) in $((SECONDS - start)) s"
		return
	fi
	((rc == 0)) || { cat "$dir/$name.out" "$dir/$name.err" >&2; fail "$name: status $rc"; }
	bad=$(unexpected_stderr "$dir/$name.err")
	[[ -z $bad ]] || { echo "$bad" >&2; fail "$name: unexpected lines on stderr"; }
	diff -u "$dir/reference.out" "$dir/$name.out" >&2 || fail "$name: output differs from the shared-memory reference"
	((after - before >= np)) || fail "$name: ivrdmad saw $((after - before)) peers join, fewer than $np ranks"
	echo "$name: same output as the reference, $((after - before)) peers joined, $((SECONDS - start)) s"
}

start_daemon
"$ivrdma" --dir "$dir" setup --sysfs "$dir/sysfs" >/dev/null
ivrdma_env=$("$ivrdma" --dir "$dir" env --sysfs "$dir/sysfs" --provider "$provider")

[[ -n $must_fail ]] || reference
case $group in
openib)
	openib_cmd
	check_run openib
	;;
ompi-ucx)
	ompi_ucx_cmd rc_verbs,ud_verbs,self
	check_run ucx-rc
	ompi_ucx_cmd ud_verbs,self
	check_run ucx-ud
	;;
mpich)
	mpich_cmd
	check_run mpich-ucx
	;;
*) fail "unknown group $group" ;;
esac
[[ -n $must_fail ]] || cat "$dir/reference.out"
