#!/usr/bin/env bash
# The main job: installs what is needed, builds, and shows ivrdma at work on
# a host-mode region. Everything it starts it stops again.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/demo -j"$(nproc)"

bin=build/demo/cm-daemon
dir=$(mktemp -d /tmp/ivrdma-demo.XXXXXX)
shm=/ivrdma-demo-$$
daemon_pid=
cleanup() {
	[[ -n $daemon_pid ]] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" || true
	rm -f "/dev/shm$shm"
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

step() { printf '\n== %s\n' "$*"; }

step "ivrdmad: a 64 MiB host-mode region, one VM identity configured (vm1)"
"$bin/ivrdmad" --dir "$dir" --shm "$shm" --size 64M --vm vm1 2>"$dir/ivrdmad.log" &
daemon_pid=$!
for _ in $(seq 100); do "$bin/ivrdma" --dir "$dir" status >/dev/null 2>&1 && break; sleep 0.1; done
"$bin/ivrdma" --dir "$dir" status

step "ivrdma setup: the sysfs tree and command device unchanged libibverbs reads"
"$bin/ivrdma" --dir "$dir" setup
eval "$("$bin/ivrdma" --dir "$dir" env)"
"$bin/ivrdma" --dir "$dir" env

step "stock ibv_devices and ibv_devinfo see ivrdma0"
ibv_devices
ibv_devinfo

step "stock ibv_rc_pingpong between two host processes, every byte checked (-c)"
port=$((18515 + $$ % 1000))
for size in 1 4096 1048576; do
	iters=$((size > 65536 ? 100 : 1000))
	ibv_rc_pingpong -d ivrdma0 -g 0 -p "$port" -s "$size" -n "$iters" -c >"$dir/server.out" 2>&1 &
	server=$!
	ok=0
	for _ in $(seq 50); do # the client retries until the server listens
		if ibv_rc_pingpong -d ivrdma0 -g 0 -p "$port" -s "$size" -n "$iters" -c 127.0.0.1 \
			>"$dir/client.out" 2>&1; then
			ok=1
			break
		fi
		sleep 0.1
	done
	wait "$server" || ok=0
	echo "-- $size bytes x $iters"
	sed 's/^/  /' "$dir/client.out"
	[[ $ok == 1 ]] || { echo "demo: ibv_rc_pingpong failed" >&2; cat "$dir/server.out" >&2; exit 1; }
done

step "the daemon's view while the demo ran"
"$bin/ivrdma" --dir "$dir" status
sed 's/^/  /' "$dir/ivrdmad.log"
