#!/bin/bash
# RDMA CM over ivrdma0 in host mode: a real ivrdmad, `ivrdma setup` and
# `ivrdma env`, then librdmacm (unchanged, from Debian) through the
# preload's rdma_cm device.
#
# usage: run-rdmacm-test.sh MODE IVRDMAD IVRDMA PROVIDER_SO TEST_RDMACM [UCX_EXAMPLE
#        [RS_COMPAT_SO [RS_SELECT]]]
#   api       test_rdmacm.c: librdmacm's API, data checked, errors and a dying peer
#   tools     rdmacm-utils: rping -V, ucmatose, udaddy, rdma_server/client,
#             rdma_xserver/xclient (XRC), mckey (multicast), rstream, riostream; libfabric's fi_pingpong
#             over verbs (msg); UCX's ucp_client_server over rdmacm
#   perftest  perftest's latency and bandwidth tests with -R
#   libfabric-rdm  fi_pingpong over verbs;ofi_rxm (disabled in CTest: see there)
#   rsockets  unchanged socket programs over librspreload.so (with
#             RS_COMPAT_SO, bench/rs_compat.c, ahead of it): RS_SELECT
#             (rs_select.c: select() on accepted and connected sockets,
#             poll() after a timeout),
#             sockperf ping-pong over poll() for 2 s, and memcached (libevent
#             on poll) with memcslap's sets and gets; all must complete and
#             move data
#   rsockets-iperf3  iperf3 (select()) over librspreload.so for 2 s:
#             completes, JSON bytes received > 0
# env: IVRDMA_PRELOAD  a sanitizer runtime stock binaries must preload
set -euo pipefail
# shellcheck source=../lib/ivrdmad.sh
. "$(dirname "$0")/../lib/ivrdmad.sh"

mode=$1 ivrdmad=$2 ivrdma=$3 provider=$(realpath "$4") test_bin=$5 ucx_example=${6:-}
rs_compat=${7:-} rs_select=${8:-}
rspreload=/usr/lib/x86_64-linux-gnu/rsocket/librspreload.so
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
ivrdma_preload=$LD_PRELOAD
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

# Is a kernel TCP socket listening on port $1 (/proc/net/tcp, tcp6)?
kernel_listening() {
	awk -v p="$(printf '%04X' "$1")" '$4 == "0A" && $2 ~ ":" p "$" { f = 1 } END { exit !f }' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# wait_listener SPACE PORT PID: until the server PID (or a child of it)
# has its RDMA CM listener on PORT of port space SPACE (tcp, udp, ib) in
# the region, or (SPACE kernel) a kernel TCP socket listening on PORT, as
# fi_pingpong's out-of-band one: under load a fixed pause was not always
# enough.
wait_listener() {
	local _
	for _ in $(seq 400); do
		if [[ $1 == kernel ]]; then
			kernel_listening "$2" && return 0
		else
			"$ivrdma" --dir "$dir" status 2>/dev/null |
				awk -v s="$1" -v p="$2" '$2 == s && $3 == p { f = 1 } END { exit !f }' &&
				return 0
		fi
		kill -0 "$3" 2>/dev/null || fail "server $3 exited before listening on $1 port $2"
		sleep 0.05
	done
	fail "no RDMA CM listener on $1 port $2 after 20 s"
}

# pair NAME 'SERVER ARGS' 'CLIENT ARGS' [PATTERN [SPACE [PORT]]]: the server
# in the background, its listener on PORT (its own, or the one given) of
# SPACE (tcp) awaited, then the client; both must exit 0, and the client's
# output must match PATTERN. Ports are RDMA CM's own (ivrdma's listener
# table), not the kernel's, so any will do.
pair() {
	local name=$1 server=$2 client=$3 pattern=${4:-} space=${5:-tcp} port=$((next_port++)) rc=0
	server=${server//PORT/$port}
	client=${client//PORT/$port}
	# shellcheck disable=SC2086
	timeout -k 5 60 $server >"$dir/$name.server" 2>&1 &
	server_pid=$!
	wait_listener "$space" "${6:-$port}" "$server_pid"
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
	wait_listener tcp "$port" "$server_pid"
	# shellcheck disable=SC2086
	timeout -k 5 60 $client >"$dir/$name.client" 2>&1 || rc=$?
	# The server may print its last line after the client is gone (a loaded
	# machine ran it 0.5 s late): wait for it, or for the server to end.
	for _ in $(seq 200); do
		grep -Eq -- "$pattern" "$dir/$name.server" && break
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
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
	pair udaddy "udaddy -c 4 -C 20" "udaddy -s 127.0.0.1 -c 4 -C 20" "return status 0" udp 7174
	pair rdma_server "rdma_server -p PORT" "rdma_client -s 127.0.0.1 -p PORT" \
		"rdma_client: end 0"
	# XRC: the client's send QP reaches the SRQ whose number the server
	# gave it in the connection's private data.
	pair rdma_xserver "rdma_xserver -c x -p PORT" "rdma_xclient -c x -s 127.0.0.1 -p PORT" \
		"rdma_xclient: end 0" ib
	check_mckey
	pair rstream "rstream -p PORT -S 65536 -C 200" \
		"rstream -s 127.0.0.1 -p PORT -S 65536 -C 200" "custom +64k +200"
	pair riostream "riostream -p PORT -S 65536 -C 200" \
		"riostream -s 127.0.0.1 -p PORT -S 65536 -C 200" "custom +64k +200"
	# libfabric's verbs provider: connected (msg) and reliable datagrams
	# over connections (rdm, ofi_rxm); -c checks every byte.
	pair fi_msg "fi_pingpong -p verbs -e msg -B PORT -I 100 -c" \
		"fi_pingpong -p verbs -e msg -P PORT -I 100 -c 127.0.0.1" "^1m +100 +=100" kernel
	# verbs;ofi_rxm (rdm) passes its transfers, but libfabric's rxm may
	# crash closing a connection (tests/rdmacm/CMakeLists.txt): its own mode.
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
		"fi_pingpong -p verbs;ofi_rxm -e rdm -P PORT -I 100 -c 127.0.0.1" "^1m +100 +=100" kernel
}

check_perftest() {
	local t
	for t in ib_send_lat ib_write_lat ib_read_lat ib_atomic_lat ib_send_bw ib_write_bw \
		ib_read_bw; do
		pair "$t" "$t -R -n 500 -p PORT" "$t -R -n 500 -p PORT 127.0.0.1" \
			"^[[:space:]]*[0-9]+[[:space:]]+500[[:space:]]"
	done
}

# rs_env: the LD_PRELOAD of a socket program over rsockets on ivrdma0. The
# ivrdma preload comes last: librspreload.so sees every call first and
# passes what is not an rsocket on (RTLD_NEXT), to the ivrdma preload for
# the rdma_cm device it emulates. The other order works as well (README).
rs_env() {
	[[ -n $rs_compat && -r $rs_compat ]] || fail "no librs-compat.so given"
	[[ -r $rspreload ]] || fail "no $rspreload (Debian: librdmacm1)"
	rs_preload=${IVRDMA_PRELOAD:+$IVRDMA_PRELOAD:}$rs_compat:$rspreload:$ivrdma_preload
}

# Waits until the rsockets server (PID, or a child of it) has its RDMA CM
# listener on PORT in the region (rsockets listen in RDMA CM's port space,
# not the kernel's).
wait_rs_listener() { # wait_rs_listener PORT PID
	wait_listener tcp "$@"
}

# rs_pair NAME 'SERVER ARGS' 'CLIENT ARGS': a server that runs until stopped,
# its client, both over rsockets; the client must exit 0 within 60 s. PORT
# and DIR in the arguments become the port and this test's folder.
rs_pair() {
	local name=$1 server=$2 client=$3 port=$((next_port++)) rc=0
	server=${server//PORT/$port}
	client=${client//PORT/$port}
	server=${server//DIR/$dir}
	client=${client//DIR/$dir}
	# no timeout wrapper: server_pid is the server itself, which this
	# function and the EXIT trap stop
	# shellcheck disable=SC2086
	LD_PRELOAD=$rs_preload EVENT_NOEPOLL=1 $server >"$dir/$name.server" 2>&1 &
	server_pid=$!
	wait_rs_listener "$port" "$server_pid"
	# shellcheck disable=SC2086
	LD_PRELOAD=$rs_preload timeout -k 5 60 $client >"$dir/$name.client" 2>&1 || rc=$?
	# a few seconds' grace, then SIGKILL (memcached stayed in rpoll() on
	# SIGTERM before bench/rs_compat.c's poll())
	kill -TERM "$server_pid" 2>/dev/null || true
	for _ in $(seq 30); do
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=
	if ((rc != 0)); then
		cat "$dir/$name.client" "$dir/$name.server" >&2
		fail "$name: client exited $rc"
	fi
}

check_rsockets() {
	local obs keys
	rs_env
	[[ -n $rs_select && -x $rs_select ]] || fail "no rs_select given"
	LD_PRELOAD=$rs_preload timeout -k 5 60 "$rs_select" "$((next_port++))" ||
		fail "rs_select: select() and poll() over rsockets"
	echo "ok select() and poll() over rsockets"
	echo "T:127.0.0.1:$next_port" >"$dir/feed"
	rs_pair sockperf "sockperf server -f DIR/feed -F p" \
		"sockperf ping-pong -f DIR/feed -F p -m 64 -t 2"
	obs=$(sed -n 's/.*Total \([0-9]*\) observations.*/\1/p' "$dir/sockperf.client")
	if [[ -z $obs ]] || ((obs == 0)); then
		cat "$dir/sockperf.client" >&2
		fail "sockperf: no observations"
	fi
	echo "ok sockperf over rsockets ($obs round trips)"
	rs_pair memcached "memcached -u root -l 127.0.0.1 -p PORT -t 1 -U 0" \
		"memcslap -s 127.0.0.1:PORT -t set -e 2000 -c 1"
	keys=$(awk '/Time to set +[0-9]+ keys by/ { print $4 }' "$dir/memcached.client")
	[[ $keys == 2000 ]] || { cat "$dir/memcached.client" >&2; fail "memcslap: $keys keys set, not 2000"; }
	echo "ok memcached over rsockets ($keys sets)"
	# gets: a load, then a second connection from a thread of memcslap's
	# own, which memcached's worker learns of through a pipe (a plain fd in
	# its poll() set: bench/rs_compat.c's poll())
	rs_pair memcached_get "memcached -u root -l 127.0.0.1 -p PORT -t 1 -U 0" \
		"memcslap -s 127.0.0.1:PORT -t get -e 2000 -c 1"
	keys=$(awk '/Time to get +[0-9]+ keys by/ { print $4 }' "$dir/memcached_get.client")
	[[ $keys == 2000 ]] || { cat "$dir/memcached_get.client" >&2; fail "memcslap: $keys keys got, not 2000"; }
	echo "ok memcached over rsockets ($keys gets)"
}

check_rsockets_iperf3() {
	local bytes
	rs_env
	rs_pair iperf3 "iperf3 -s -1 -p PORT" "iperf3 -c 127.0.0.1 -p PORT -t 2 -J"
	bytes=$(jq '.end.sum_received.bytes' "$dir/iperf3.client")
	[[ $bytes =~ ^[1-9][0-9]*$ ]] || fail "iperf3: $bytes bytes received"
	echo "ok iperf3 over rsockets ($bytes bytes)"
}

case $mode in
api) timeout -k 5 150 "$test_bin" ;;
tools) check_tools ;;
libfabric-rdm) check_libfabric_rdm ;;
perftest) check_perftest ;;
rsockets) check_rsockets ;;
rsockets-iperf3) check_rsockets_iperf3 ;;
*) fail "unknown mode $mode" ;;
esac
