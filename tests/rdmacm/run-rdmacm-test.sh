#!/bin/bash
# RDMA CM over ivrdma0 in host mode: a real ivrdmad, `ivrdma setup` and
# `ivrdma env`, then librdmacm (unchanged, from Debian) through the
# preload's rdma_cm device.
#
# usage: run-rdmacm-test.sh api|tools|perftest IVRDMAD IVRDMA PROVIDER_SO TEST_RDMACM [UCX_EXAMPLE]
#   api       test_rdmacm.c: librdmacm's API, data checked, errors and a dying peer
#   tools     rdmacm-utils: rping -V, ucmatose, udaddy, rdma_server/client,
#             mckey (multicast), rstream, riostream; libfabric's fi_pingpong over verbs (msg)
#             and verbs;ofi_rxm (rdm); UCX's ucp_client_server over rdmacm
#   perftest  perftest's latency and bandwidth tests with -R
#   libfabric-rdm  fi_pingpong over verbs;ofi_rxm (disabled in CTest: see there)
# env: IVRDMA_PRELOAD  a sanitizer runtime stock binaries must preload
set -euo pipefail
# shellcheck source=../lib/ivrdmad.sh
. "$(dirname "$0")/../lib/ivrdmad.sh"

mode=$1 ivrdmad=$2 ivrdma=$3 provider=$(realpath "$4") test_bin=$5 ucx_example=${6:-}
dir=$(mktemp -d /tmp/ivrdma-rdmacm.XXXXXX)
shm=/ivrdma-rdmacm-$$
daemon_pid=
server_pid=

cleanup() {
	local rc=$?
	[[ -z $server_pid ]] || kill -KILL "$server_pid" 2>/dev/null || true
	if [[ -n $daemon_pid ]]; then
		kill -TERM "$daemon_pid" 2>/dev/null || true
		wait "$daemon_pid" 2>/dev/null || true
	fi
	if ((rc != 0)) && [[ -f $dir/ivrdmad.log ]]; then
		echo "--- ivrdmad log" >&2
		cat "$dir/ivrdmad.log" >&2
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

# 256 MiB: libfabric's rxm asks CQs of 262144 entries (16 MiB each).
"$ivrdmad" --dir "$dir" --shm "$shm" --size 256M >"$dir/ivrdmad.log" 2>&1 &
daemon_pid=$!
ivrdmad_ready "$ivrdma" "$dir" "$daemon_pid" || fail "no ivrdmad"
"$ivrdma" --dir "$dir" setup --sysfs "$dir/sysfs" >/dev/null
eval "$("$ivrdma" --dir "$dir" env --sysfs "$dir/sysfs" --provider "$provider")"
[[ ${LD_PRELOAD:-} == *libivrdma-preload.so ]] || fail "ivrdma env: no preload"
# A sanitizer runtime must come first in LD_PRELOAD, ahead of the preload.
if [[ -n ${IVRDMA_PRELOAD:-} ]]; then
	export LD_PRELOAD=$IVRDMA_PRELOAD:$LD_PRELOAD ASAN_OPTIONS=detect_leaks=0
fi
# Under TSan, the stock programs' own races are not ours to report.
if [[ ${IVRDMA_PRELOAD:-} == *tsan* ]]; then
	supp=$(dirname "$(realpath "$0")")/tsan.supp
	export TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}suppressions=$supp"
fi

next_port=$((20000 + RANDOM % 20000))

# pair NAME 'SERVER ARGS' 'CLIENT ARGS' [PATTERN]: the server in the
# background, then the client; both must exit 0, and the client's output
# must match PATTERN. Ports are RDMA CM's own (ivrdma's listener table),
# not the kernel's, so any will do.
pair() {
	local name=$1 server=$2 client=$3 pattern=${4:-} port=$((next_port++)) rc=0
	server=${server//PORT/$port}
	client=${client//PORT/$port}
	# shellcheck disable=SC2086
	timeout -k 5 60 $server >"$dir/$name.server" 2>&1 &
	server_pid=$!
	sleep 0.5
	# shellcheck disable=SC2086
	timeout -k 5 60 $client >"$dir/$name.client" 2>&1 || rc=$?
	if ((rc != 0)); then
		cat "$dir/$name.client" >&2
		fail "$name: client exited $rc"
	fi
	rc=0
	wait "$server_pid" || rc=$?
	server_pid=
	if ((rc != 0)); then
		cat "$dir/$name.server" >&2
		fail "$name: server exited $rc"
	fi
	if [[ -n $pattern ]] && ! grep -Eq -- "$pattern" "$dir/$name.client"; then
		cat "$dir/$name.client" >&2
		fail "$name: no '$pattern' in the client's output"
	fi
	echo "ok $name"
}

# pair_server_stays NAME 'SERVER' 'CLIENT' PATTERN: for a server that serves
# clients until killed; the client must exit 0 and the server's output
# must match PATTERN by then.
pair_server_stays() {
	local name=$1 server=$2 client=$3 pattern=$4 port=$((next_port++)) rc=0
	server=${server//PORT/$port}
	client=${client//PORT/$port}
	# shellcheck disable=SC2086
	timeout -k 5 60 stdbuf -oL $server >"$dir/$name.server" 2>&1 &
	server_pid=$!
	sleep 1
	# shellcheck disable=SC2086
	timeout -k 5 60 $client >"$dir/$name.client" 2>&1 || rc=$?
	sleep 0.5
	kill -TERM "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=
	if ((rc != 0)); then
		cat "$dir/$name.client" "$dir/$name.server" >&2
		fail "$name: client exited $rc"
	fi
	grep -Eq -- "$pattern" "$dir/$name.server" || {
		cat "$dir/$name.server" >&2
		fail "$name: no '$pattern' in the server's output"
	}
	echo "ok $name"
}

# mckey: two receivers join a group, a sender sends to it; each receiver
# must take every message.
check_mckey() {
	local group=239.1.2.$((RANDOM % 250 + 1)) pids=() rc=0 i
	for i in 1 2; do
		timeout -k 5 60 mckey -m "$group" -C 20 >"$dir/mckey.r$i" 2>&1 &
		pids+=($!)
	done
	sleep 1
	timeout -k 5 60 mckey -m "$group" -s -C 20 >"$dir/mckey.s" 2>&1 || rc=$?
	for i in 1 2; do
		wait "${pids[i - 1]}" || rc=$?
		grep -q "data transfers complete" "$dir/mckey.r$i" || rc=1
	done
	if ((rc != 0)); then
		cat "$dir"/mckey.* >&2
		fail "mckey: a sender and two receivers of group $group"
	fi
	echo "ok mckey"
}

check_tools() {
	pair rping "rping -s -a 127.0.0.1 -p PORT -C 50 -S 4000 -V" \
		"rping -c -a 127.0.0.1 -p PORT -C 50 -S 4000 -V -v" "rdma-ping-49"
	pair ucmatose "ucmatose -p PORT -c 4 -C 20 -S 4096" \
		"ucmatose -s 127.0.0.1 -p PORT -c 4 -C 20 -S 4096" "return status 0"
	pair udaddy "udaddy -c 4 -C 20" "udaddy -s 127.0.0.1 -c 4 -C 20" "return status 0"
	pair rdma_server "rdma_server -p PORT" "rdma_client -s 127.0.0.1 -p PORT" \
		"rdma_client: end 0"
	check_mckey
	pair rstream "rstream -p PORT -S 65536 -C 200" \
		"rstream -s 127.0.0.1 -p PORT -S 65536 -C 200" "custom +64k +200"
	pair riostream "riostream -p PORT -S 65536 -C 200" \
		"riostream -s 127.0.0.1 -p PORT -S 65536 -C 200" "custom +64k +200"
	# libfabric's verbs provider: connected (msg) and reliable datagrams
	# over connections (rdm, ofi_rxm); -c checks every byte.
	pair fi_msg "fi_pingpong -p verbs -e msg -B PORT -I 100 -c" \
		"fi_pingpong -p verbs -e msg -P PORT -I 100 -c 127.0.0.1" "^1m +100 +=100"
	# verbs;ofi_rxm (rdm) passes its transfers, but its server crashes in
	# libfabric's teardown in about one run of three: libfabric-rdm mode.
	# UCX's client-server example, connected by UCX's rdmacm connection
	# manager. Not under TSan: the example's client crashes with TSan's
	# runtime preloaded even over UCX's tcp alone, without ivrdma.
	if [[ -n $ucx_example && ${IVRDMA_PRELOAD:-} != *tsan* ]]; then
		UCX_SOCKADDR_TLS_PRIORITY=rdmacm UCX_TLS=rc_verbs,ud_verbs,self \
			pair_server_stays ucp_client_server "$ucx_example -p PORT -c tag -i 3" \
			"$ucx_example -a 127.0.0.1 -p PORT -c tag -i 3" "Server: iteration #3"
	fi
}

check_libfabric_rdm() {
	pair fi_rdm "fi_pingpong -p verbs;ofi_rxm -e rdm -B PORT -I 100 -c" \
		"fi_pingpong -p verbs;ofi_rxm -e rdm -P PORT -I 100 -c 127.0.0.1" "^1m +100 +=100"
}

check_perftest() {
	local t
	for t in ib_send_lat ib_write_lat ib_read_lat ib_atomic_lat ib_send_bw ib_write_bw \
		ib_read_bw; do
		pair "$t" "$t -R -n 500 -p PORT" "$t -R -n 500 -p PORT 127.0.0.1" \
			"^[[:space:]]*[0-9]+[[:space:]]+500[[:space:]]"
	done
}

case $mode in
api) timeout -k 5 150 "$test_bin" ;;
tools) check_tools ;;
libfabric-rdm) check_libfabric_rdm ;;
perftest) check_perftest ;;
*) fail "unknown mode $mode" ;;
esac
