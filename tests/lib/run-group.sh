# shellcheck shell=bash
# wait_group PID SECONDS [CMD...]: waits for PID, the leader of a process
# group of its own (started with setsid), SECONDS at most, running
# `CMD... N` every 0.2 s meanwhile (N = 0, 1, ...). Then kills whatever
# is left of the group (a rank that outlived its launcher). Sets rc: PID's
# exit status, or 124 if the time ran out and it was killed.
wait_group() {
	local pid=$1 limit=$2 n=0 start=$SECONDS
	shift 2
	while kill -0 "$pid" 2>/dev/null && ((SECONDS - start < limit)); do
		if (($# > 0)); then
			"$@" "$n"
			n=$((n + 1))
		fi
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL -- "-$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		rc=124
	else
		rc=0
		wait "$pid" || rc=$?
	fi
	kill -KILL -- "-$pid" 2>/dev/null || true
}
