# shellcheck shell=bash
# ivrdmad_ready IVRDMA DIR PID: waits until the ivrdmad serving DIR
# (process PID, just started) answers `ivrdma status`, 10 s at most.
# Status 0 when it answers; 1, with the reason on stderr, when it exited
# or did not answer in time.
ivrdmad_ready() {
	local ivrdma=$1 dir=$2 pid=$3 _
	for _ in $(seq 100); do
		"$ivrdma" --dir "$dir" status >/dev/null 2>&1 && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "ivrdmad of $dir exited at start" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "ivrdmad of $dir did not answer within 10 s" >&2
	return 1
}
