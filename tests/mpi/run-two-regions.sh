#!/bin/bash
# A job that spans two hosts: two ivrdmad regions on this machine (two
# --dir, two --shm, so two InfiniBand subnets) stand for two hosts. Four
# ranks: 0 and 1 with region a's `ivrdma env`, 2 and 3 with region b's
# (an MPMD command line), ivrdma0 and tcp both enabled:
#
#   openib    Open MPI, pml ob1, btl openib,tcp,self
#   ompi-ucx  Open MPI, pml ucx, UCX_TLS=rc_verbs,ud_verbs,tcp,self
#   mpich     MPICH (ch4:ucx), the same UCX_TLS, every rank remote
#
# UCX_NET_DEVICES=ivrdma0:1,lo. The MPI must use ivrdma0 between the two
# ranks of a region and tcp between regions, unchanged: it tells them
# apart by the regions' different subnet prefixes.
#
# Each program's run must exit 0, print nothing on stderr and exactly what
# the same 4-rank program prints over the same MPI's shared memory (the
# collectives and one-sided tests exchange data between ranks of different
# regions: only tcp can have carried it). While it runs the regions are
# sampled (region_qps: live QPs with their destinations, open contexts,
# and each context's MPI rank from its environment); afterwards:
#
# - every verbs context on region a is rank 0's or 1's, on b rank 2's or
#   3's, and every rank opened one on its own region;
# - every connected RC QP (RTR/RTS) has the destination LID of a node of
#   its own region, and its destination QPN is a QP of that region, of
#   the region's other rank, pointing back, or itself (openib connects a
#   loopback endpoint for the process's own rank); none is left unpaired;
# - from `ivrdma status --json` (closed contexts are kept), the bytes
#   each rank moved to the other rank of its region (its sends and RDMA
#   writes, plus the other's RDMA reads) are non-zero both ways, and for
#   p2p at least its payload between the pair (see p2p_volume).
#
# usage: run-two-regions.sh GROUP IVRDMAD IVRDMA PROVIDER_SO REGION_QPS PROGRAM_DIR PROGRAM...
#   PROGRAM_DIR/PROGRAM-openmpi and -mpich are the two builds.
# env: MT_RUN_TIMEOUT  seconds per run (120)
#      MT_KEEP_DIR     set: keep the samples, outputs and logs (the directory is printed)
set -euo pipefail
# shellcheck source=../lib/ivrdmad.sh
. "$(dirname "$0")/../lib/ivrdmad.sh"
# shellcheck source=../lib/run-group.sh
. "$(dirname "$0")/../lib/run-group.sh"

group=$1 ivrdmad=$2 ivrdma=$3 provider=$(realpath "$4") region_qps=$5 progdir=$6
shift 6
programs=("$@")
limit=${MT_RUN_TIMEOUT:-120}
dir=$(mktemp -d /tmp/ivrdma-2regions.XXXXXX)
shm_prefix=/ivrdma-2regions-$$
regions=(a b)
declare -A daemon_pid=() ranks_of=([a]="0 1" [b]="2 3") region_env=()
run_pid=

cleanup() {
	local rc=$? r
	[[ -z $run_pid ]] || kill -KILL -- "-$run_pid" 2>/dev/null || true
	for r in "${!daemon_pid[@]}"; do
		kill -TERM "${daemon_pid[$r]}" 2>/dev/null || true
		wait "${daemon_pid[$r]}" 2>/dev/null || true
		if ((rc != 0)) && [[ -f $dir/ivrdmad-$r.log ]]; then
			echo "--- ivrdmad $r log (last 10 lines)" >&2
			tail -n 10 "$dir/ivrdmad-$r.log" >&2
		fi
	done
	rm -f "/dev/shm${shm_prefix}"-*
	if [[ -n ${MT_KEEP_DIR:-} ]]; then
		echo "kept $dir" >&2
	else
		rm -rf "$dir"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

start_region() { # start_region R: ivrdmad on $dir/R, shm ${shm_prefix}-R, set up, its env
	local r=$1
	mkdir -p "$dir/$r"
	"$ivrdmad" --dir "$dir/$r" --shm "$shm_prefix-$r" --size 1G --vm vm1 \
		>"$dir/ivrdmad-$r.log" 2>&1 &
	daemon_pid[$r]=$!
	ivrdmad_ready "$ivrdma" "$dir/$r" "${daemon_pid[$r]}" || fail "no ivrdmad for region $r"
	"$ivrdma" --dir "$dir/$r" setup --sysfs "$dir/$r/sysfs" >/dev/null
	# `ivrdma env` prints export NAME='VALUE' lines: NAME=VALUE words for env(1) and -env.
	region_env[$r]=$("$ivrdma" --dir "$dir/$r" env --sysfs "$dir/$r/sysfs" --provider "$provider" |
		sed -E "s/^export ([A-Z_]+)='(.*)'\$/\\1=\\2/")
	[[ -n ${region_env[$r]} ]] || fail "ivrdma env printed nothing for region $r"
}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
params=$(realpath "$(dirname "$0")/../../mpi/openib-device-params-ivrdma.ini")
param_files=$params:/usr/share/openmpi/mca-btl-openib-device-params.ini
# Ranks that wait yield the CPU: 4 busy-polling ranks on a machine of 2
# CPUs otherwise take turns of a scheduler tick per message.
ompi_run=(mpirun.openmpi --oversubscribe --bind-to none --mca mpi_yield_when_idle 1)

# One app context per region: -np 2 env NAME=VALUE... PROGRAM (Open MPI) or
# -n 2 -env NAME VALUE... PROGRAM (MPICH), joined by ':'.
mpmd() { # mpmd openmpi|mpich PROGRAM
	local flavour=$1 prog=$2 r kv sep=()
	for r in "${regions[@]}"; do
		mapfile -t kvs <<<"${region_env[$r]}"
		if [[ $flavour == openmpi ]]; then
			printf '%s\n' "${sep[@]}" -np 2 env "${kvs[@]}" "$progdir/$prog-openmpi"
		else
			printf '%s\n' "${sep[@]}" -n 2
			for kv in "${kvs[@]}"; do
				printf '%s\n' -env "${kv%%=*}" "${kv#*=}"
			done
			printf '%s\n' "$progdir/$prog-mpich"
		fi
		sep=(:)
	done
}

ucx_env=("UCX_TLS=rc_verbs,ud_verbs,tcp,self" "UCX_NET_DEVICES=ivrdma0:1,lo")

# The job over ivrdma0 and tcp (sets cmd). openib's options as in
# run-mpi-test.sh (see README, "MPI over ivrdma"), tcp added.
job_cmd() { # job_cmd PROGRAM
	local apps
	case $group in
	openib)
		mapfile -t apps < <(mpmd openmpi "$1")
		cmd=("${ompi_run[@]}" --mca pml ob1 --mca btl "openib,tcp,self"
			--mca btl_openib_allow_ib 1 --mca btl_openib_device_param_files "$param_files"
			--mca osc pt2pt "${apps[@]}")
		;;
	ompi-ucx)
		mapfile -t apps < <(mpmd openmpi "$1")
		cmd=(env "${ucx_env[@]}" "${ompi_run[@]}" -x UCX_TLS -x UCX_NET_DEVICES
			--mca pml ucx --mca osc ucx --mca btl self "${apps[@]}")
		;;
	mpich)
		mapfile -t apps < <(mpmd mpich "$1")
		# UCX_RC_VERBS_SEG_SIZE=8193: as in run-mpi-test.sh (MPICH's vector receives).
		cmd=(env "${ucx_env[@]}" UCX_RC_VERBS_SEG_SIZE=8193 MPIR_CVAR_NOLOCAL=1 mpiexec.mpich "${apps[@]}")
		;;
	*) fail "unknown group $group" ;;
	esac
}

reference_cmd() { # reference_cmd PROGRAM: 4 ranks over shared memory, no ivrdma
	case $group in
	openib | ompi-ucx)
		cmd=("${ompi_run[@]}" -np 4 --mca pml ob1 --mca btl "vader,self" --mca osc pt2pt
			"$progdir/$1-openmpi")
		;;
	mpich)
		cmd=(env "UCX_TLS=sm,self" mpiexec.mpich -n 4 "$progdir/$1-mpich")
		;;
	esac
}

# One look at both regions: their QPs and contexts, and each context's
# MPI rank (Open MPI: OMPI_COMM_WORLD_RANK, MPICH: PMI_RANK).
sample() { # sample NAME N
	local name=$1 n=$2 r pid rank
	for r in "${regions[@]}"; do
		{
			echo "sample $n"
			"$region_qps" "/dev/shm$shm_prefix-$r"
		} >>"$dir/$name.$r.qps"
		while read -r pid; do
			rank=$({ tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null |
				sed -n -E 's/^(OMPI_COMM_WORLD_RANK|PMI_RANK)=//p') || true
			[[ -z $rank ]] || echo "$pid $rank" >>"$dir/$name.$r.ranks"
		done < <(awk -v n="sample $n" '$0 == n {on = 1; next} /^sample/ {on = 0}
			on && $1 == "ctx" {print $2}' "$dir/$name.$r.qps")
	done
}

# Runs cmd in its own process group, sampling the regions every 0.2 s,
# killed whole at the time limit. Sets rc; 124 = timed out.
launch() { # launch sample|plain NAME
	local how=$1 name=$2
	(exec setsid "${cmd[@]}") >"$dir/$name.out" 2>"$dir/$name.err" </dev/null &
	run_pid=$!
	if [[ $how == sample ]]; then
		wait_group "$run_pid" "$limit" sample "$name"
	else
		wait_group "$run_pid" "$limit"
	fi
	run_pid=
}

# Payload p2p.c sends from the lower rank of a pair to the higher (lo) and
# back (hi), datatypes left out: blocking and nonblocking, 2 iterations of
# every size each way; wildcards, unexpected, ssend and probe, every size
# lower to higher; many, 64 messages of 4 sizes each way.
p2p_volume() { # p2p_volume lo|hi
	local sizes=(0 1 2 3 7 8 64 127 128 1023 1024 1025 4095 4096 4097 12287 12288 12289
		65535 65536 65537 262145 1048577 4194303 16777216)
	local s sum=0 many=$((64 * (8 + 4096 + 70000 + 300000)))
	for s in "${sizes[@]}"; do
		sum=$((sum + s))
	done
	if [[ $1 == lo ]]; then
		echo $((8 * sum + many))
	else
		echo $((4 * sum + many))
	fi
}

# Contexts of region R and their ranks; each rank of the region has one,
# nobody else does. Prints "pid rank" lines.
check_contexts() { # check_contexts NAME R
	local name=$1 r=$2 pid rank
	local -A rank_of=()
	[[ -s $dir/$name.$r.ranks ]] || fail "$name: no verbs context seen on region $r"
	while read -r pid rank; do
		rank_of[$pid]=$rank
	done <"$dir/$name.$r.ranks"
	while read -r pid; do
		rank=${rank_of[$pid]:-}
		[[ -n $rank ]] || fail "$name: region $r: context of pid $pid, not an MPI rank's"
		[[ " ${ranks_of[$r]} " == *" $rank "* ]] ||
			fail "$name: rank $rank (pid $pid) opened a context on region $r"
	done < <(awk '$1 == "ctx" || ($1 == "qp" && $NF != 0) {print $NF}' "$dir/$name.$r.qps" | sort -u)
	for rank in ${ranks_of[$r]}; do
		[[ " ${rank_of[*]} " == *" $rank "* ]] || fail "$name: rank $rank opened no context on region $r"
	done
	for pid in "${!rank_of[@]}"; do
		echo "$pid ${rank_of[$pid]}"
	done
}

# Every connected RC QP of region R, in every sample: destination LID a
# node of R, destination QPN a QP of R of another process whose own
# destination is this QP (once both are connected). And each one's
# destination seen at least once as an RC QP of R: connected back to it
# (in any sample), or still connecting (INIT: openib's udcm connects the
# two sides one after the other, and a job of a second may leave one
# sample between them).
check_qps() { # check_qps NAME R
	awk -v name="$1" -v r="$2" '
	function flush(  q, d) {
		for (q in type) {
			if (type[q] != 2 || state[q] < 2 || state[q] > 4)
				continue
			rc[pid[q] ":" q] = 1
			dest[pid[q] ":" q] = dqpn[q] ":" q
			conn[q ":" dqpn[q]] = 1
			if (!(dlid[q] in lid))
				bad = bad sprintf("%s: region %s: QP %d (pid %d) has destination LID %d, not a node of its region\n",
					name, r, q, pid[q], dlid[q])
			d = dqpn[q]
			if (d == q) {
				# Open MPI openib connects a loopback endpoint to itself.
				paired[pid[q] ":" q] = 1
				loop[pid[q] ":" q] = 1
				continue
			}
			if (!(d in type))
				continue
			if (type[d] != 2 || pid[d] == pid[q] || (state[d] >= 2 && dqpn[d] != q))
				bad = bad sprintf("%s: region %s: QP %d (pid %d) -> QPN %d, which is type %d of pid %d -> QPN %d\n",
					name, r, q, pid[q], d, type[d], pid[d], dqpn[d])
			else if (state[d] >= 2 && state[d] <= 4)
				paired[pid[q] ":" q] = 1
			else
				within[pid[q] ":" q] = 1
		}
		delete type; delete state; delete dlid; delete dqpn; delete pid
	}
	$1 == "sample" { flush(); next }
	$1 == "node" { lid[$2] = 1; next }
	$1 == "qp" { type[$2] = $3; state[$2] = $4; dlid[$2] = $5; dqpn[$2] = $6; pid[$2] = $7; if ($3 == 4) ud[$7 ":" $2] = 1 }
	END {
		flush()
		for (k in rc) {
			n++
			if (!(k in paired) && !(k in within) && !(dest[k] in conn))
				bad = bad sprintf("%s: region %s: RC QP pid:qpn %s: its destination never seen as a QP of the region\n", name, r, k)
		}
		for (k in ud)
			u++
		for (k in loop)
			l++
		printf "%s", bad
		if (bad == "")
			printf "region %s: %d connected RC QPs (%d loopback), each with a QP of the region as its destination; %d UD QPs\n", r, n, l, u
		exit bad != ""
	}' "$dir/$1.$2.qps" >"$dir/$1.$2.qpsum" || { cat "$dir/$1.$2.qpsum" >&2; fail "$1: QPs of region $2 not all within it"; }
	cat "$dir/$1.$2.qpsum"
}

# Bytes the ranks of region R moved to each other, from the region's
# counters: a rank's sends and RDMA writes plus the other's RDMA reads.
check_bytes() { # check_bytes NAME R PIDRANKS_JSON PROGRAM
	local name=$1 r=$2 pidranks=$3 prog=$4 lo hi out_lo out_hi need_lo=1 need_hi=1
	read -r lo hi <<<"${ranks_of[$r]}"
	"$ivrdma" --dir "$dir/$r" status --json >"$dir/$name.$r.json"
	# Per rank: send+write, read.
	jq -r --argjson pr "$pidranks" '
		[.contexts[] | select(($pr[.pid | tostring]) != null)
		 | {rank: $pr[.pid | tostring], out: (.totals.send_bytes + .totals.write_bytes),
		    rd: .totals.read_bytes}]
		| group_by(.rank)[] | "\(.[0].rank) \(map(.out) | add) \(map(.rd) | add)"' \
		"$dir/$name.$r.json" >"$dir/$name.$r.bytes"
	local -A out=() rd=()
	local rank o d
	while read -r rank o d; do
		out[$rank]=$o rd[$rank]=$d
	done <"$dir/$name.$r.bytes"
	out_lo=$((${out[$lo]:-0} + ${rd[$hi]:-0}))
	out_hi=$((${out[$hi]:-0} + ${rd[$lo]:-0}))
	if [[ $prog == p2p ]]; then
		need_lo=$(p2p_volume lo) need_hi=$(p2p_volume hi)
	fi
	((out_lo >= need_lo)) || fail "$name: region $r: rank $lo -> $hi moved $out_lo bytes over ivrdma0, fewer than $need_lo"
	((out_hi >= need_hi)) || fail "$name: region $r: rank $hi -> $lo moved $out_hi bytes over ivrdma0, fewer than $need_hi"
	echo "region $r: rank $lo -> $hi $out_lo bytes, $hi -> $lo $out_hi bytes over ivrdma0 (at least $need_lo and $need_hi)"
}

for r in "${regions[@]}"; do
	start_region "$r"
done
prefix_a=$("$ivrdma" --dir "$dir/a" status --json | jq -r .region.subnet_prefix)
prefix_b=$("$ivrdma" --dir "$dir/b" status --json | jq -r .region.subnet_prefix)
[[ $prefix_a != "$prefix_b" ]] || fail "both regions have subnet prefix $prefix_a"
echo "region a: subnet $prefix_a, ranks ${ranks_of[a]}; region b: subnet $prefix_b, ranks ${ranks_of[b]}"

# What UCX may print (on stdout) at the end of an ompi-ucx run: Open MPI
# 4.1 closes osc ucx's endpoints after MPI_Finalize's last fence, and the
# flush of a tcp endpoint whose peer process has exited fails. The same
# 4 ranks with UCX_TLS=tcp,self and no ivrdma at all print it too (2 runs
# in 8); every result line before it is still compared.
benign_stdout='UCX  (ERROR req 0x[0-9a-f]+: error during flush: Endpoint timeout, flush comp 0x[0-9a-f]+ count reduced to 0|WARN  disconnect failed: Endpoint timeout)$'

for prog in "${programs[@]}"; do
	start=$SECONDS
	reference_cmd "$prog"
	launch plain "$prog-reference"
	((rc == 0)) || { cat "$dir/$prog-reference.err" >&2; fail "$prog: reference run: status $rc"; }
	[[ -s $dir/$prog-reference.out ]] || fail "$prog: reference run printed nothing"

	name=$prog-$group
	job_cmd "$prog"
	launch sample "$name"
	((rc == 0)) || { cat "$dir/$name.out" "$dir/$name.err" >&2; fail "$name: status $rc"; }
	if grep -q . "$dir/$name.err"; then
		cat "$dir/$name.err" >&2
		fail "$name: unexpected lines on stderr"
	fi
	grep -Ev "$benign_stdout" "$dir/$name.out" >"$dir/$name.kept" || true
	diff -u "$dir/$prog-reference.out" "$dir/$name.kept" >&2 ||
		fail "$name: output differs from the shared-memory reference"
	echo "$name: same output as the reference, $((SECONDS - start)) s"
	pidranks='{}'
	for r in "${regions[@]}"; do
		list=$(check_contexts "$name" "$r")
		pidranks=$(jq -c --arg l "$list" '. + ($l | split("\n") | map(select(. != "") | split(" ")
			| {(.[0]): (.[1] | tonumber)}) | add)' <<<"$pidranks")
		check_qps "$name" "$r"
		check_bytes "$name" "$r" "$pidranks" "$prog"
	done
	cat "$dir/$name.out"
done
