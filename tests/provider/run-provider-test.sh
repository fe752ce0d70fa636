#!/bin/bash
# Host-mode provider test: a real ivrdmad, `ivrdma setup`, then the stock
# ibv_devices / ibv_devinfo (mode "tools") or the libibverbs C test
# (mode "verbs") against the provider from the build tree.
#
# usage: run-provider-test.sh tools|verbs|pingpong|counters|uc-pingpong|srq-pingpong|ud-pingpong|perftest|datapath|migrate|soak|kill-trials IVRDMAD IVRDMA PROVIDER_SO [TEST_BINARY [GROUP]]
# env:   IVRDMA_PRELOAD  a sanitizer runtime stock binaries must preload
#                        to load an ASan-built provider
#        IVRDMA_REGION_SIZE  the region's size (16M; mode defaults gives none)
set -euo pipefail
# shellcheck source=../lib/free-port.sh
. "$(dirname "$0")/../lib/free-port.sh"
# shellcheck source=../lib/ivrdmad.sh
. "$(dirname "$0")/../lib/ivrdmad.sh"

mode=$1 ivrdmad=$2 ivrdma=$3 provider=$(realpath "$4") test_bin=${5:-} group=${6:-}
vm_peer=${7:-}
dir=$(mktemp -d /tmp/ivrdma-provider.XXXXXX)
shm=/ivrdma-test-$$
daemon_pid=

aw_pid=
cleanup() {
	local rc=$?
	[[ -z $aw_pid ]] || kill "$aw_pid" 2>/dev/null || true
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

start_daemon() {
	local size=(--size "${IVRDMA_REGION_SIZE:-16M}")
	[[ $mode != defaults ]] || size=() # what a user gets with no --size
	"$ivrdmad" --dir "$dir" --shm "$shm" "${size[@]}" --vm vm1 >"$dir/ivrdmad.log" 2>&1 &
	daemon_pid=$!
	ivrdmad_ready "$ivrdma" "$dir" "$daemon_pid" || fail "no ivrdmad"
}

# The host node's LID, GUID (0x...) and GID, as ivrdmad reports them.
read_host_identity() {
	read -r lid guid gid < <("$ivrdma" --dir "$dir" status |
		awk '$2 == "host" { print $4, $5, $6 }')
	[[ -n ${gid:-} ]] || fail "no host node in ivrdma status"
	export IVRDMA_EXPECT_LID=$lid IVRDMA_EXPECT_GUID=$guid IVRDMA_EXPECT_GID=$gid
}

# Runs a stock binary with the sanitizer runtime preloaded if needed.
stock() {
	if [[ -n ${IVRDMA_PRELOAD:-} ]]; then
		ASAN_OPTIONS=detect_leaks=0 "$@" # their leaks are not ours to report
	else
		"$@"
	fi
}

expect() { # expect FILE PATTERN WHAT
	grep -Eq -- "$2" "$1" || { cat "$1" >&2; fail "$3"; }
}

check_tools() {
	local guid_hex=${IVRDMA_EXPECT_GUID#0x} prefix
	local guid_sysfs=${guid_hex:0:4}:${guid_hex:4:4}:${guid_hex:8:4}:${guid_hex:12:4}

	stock ibv_devices >"$dir/devices.out" 2>"$dir/devices.err"
	expect "$dir/devices.out" "^[[:space:]]*ivrdma0[[:space:]]+$guid_hex\$" \
		"ibv_devices does not list ivrdma0 with GUID $guid_hex"
	stock ibv_devinfo -v >"$dir/devinfo.out" 2>"$dir/devinfo.err"
	expect "$dir/devinfo.out" "^hca_id:[[:space:]]+ivrdma0\$" "ibv_devinfo: no ivrdma0"
	expect "$dir/devinfo.out" "node_guid:[[:space:]]+$guid_sysfs\$" "ibv_devinfo: node GUID"
	expect "$dir/devinfo.out" "state:[[:space:]]+PORT_ACTIVE \(4\)" "ibv_devinfo: port state"
	expect "$dir/devinfo.out" "port_lid:[[:space:]]+$IVRDMA_EXPECT_LID\$" "ibv_devinfo: LID"
	expect "$dir/devinfo.out" "link_layer:[[:space:]]+InfiniBand" "ibv_devinfo: link layer"
	expect "$dir/devinfo.out" "active_mtu:[[:space:]]+4096" "ibv_devinfo: MTU"
	# -v advertises exactly what works (test_verbs.c checks the same from C).
	expect "$dir/devinfo.out" "device_cap_flags:[[:space:]]+0x01121c00\$" "ibv_devinfo: cap flags"
	expect "$dir/devinfo.out" "device_cap_flags_ex:[[:space:]]+0x1121C00\$" "ibv_devinfo: cap flags ex"
	expect "$dir/devinfo.out" "max_mw:[[:space:]]+[1-9][0-9]*\$" "ibv_devinfo: memory windows"
	expect "$dir/devinfo.out" "max_cqe:[[:space:]]+4194303\$" "ibv_devinfo: max_cqe"
	expect "$dir/devinfo.out" "max_mcast_grp:[[:space:]]+[1-9][0-9]*\$" "ibv_devinfo: multicast groups"
	expect "$dir/devinfo.out" "completion timestamp_mask:[[:space:]]+0xffffffffffffffff" "ibv_devinfo: timestamps"
	expect "$dir/devinfo.out" "hca_core_clock:[[:space:]]+1000000kHZ" "ibv_devinfo: clock"
	expect "$dir/devinfo.out" "tag matching not supported" "ibv_devinfo: tag matching"
	grep -q "XRC" "$dir/devinfo.out" || fail "ibv_devinfo -v: XRC not advertised"
	grep -q "MEM_WINDOW_TYPE_2B" "$dir/devinfo.out" || fail "ibv_devinfo -v: windows not advertised"
	! grep -Eq "RESIZE|MEM_MGT|max_tso:[[:space:]]+[1-9]" "$dir/devinfo.out" ||
		fail "ibv_devinfo -v advertises what is not offered"
	expect "$dir/devinfo.out" "GID\[  0\]:[[:space:]]+$IVRDMA_EXPECT_GID\$" "ibv_devinfo: GID"
	# ... in the region's own subnet, not the default fe80::/64 of real HCAs.
	prefix=$("$ivrdma" --dir "$dir" status --json | jq -r .region.subnet_prefix)
	[[ $IVRDMA_EXPECT_GID == "$prefix":* && $prefix != fe80:0000:0000:0000 ]] ||
		fail "GID $IVRDMA_EXPECT_GID is not in the region's subnet $prefix"
	# The provider prints nothing unless IVRDMA_DEBUG is set.
	[[ ! -s $dir/devices.err && ! -s $dir/devinfo.err ]] ||
		{ cat "$dir"/*.err >&2; fail "stock tools printed to stderr"; }
	# Without a daemon the device is listed but cannot be opened.
	if IVRDMA_DIR=$dir/absent stock ibv_devinfo >"$dir/nodaemon.out" 2>&1; then
		fail "ibv_devinfo succeeded without a daemon"
	fi
	expect "$dir/nodaemon.out" "Failed to open device" "ibv_devinfo without daemon"
	echo "stock tools: ivrdma0 GUID $guid_sysfs LID $IVRDMA_EXPECT_LID GID $IVRDMA_EXPECT_GID"
}

# Stock ibv_rc_pingpong between two processes, with -c validation (see stock_pingpong).
pingpong_once() { # pingpong_once SIZE ITERS [extra args]
	stock_pingpong ibv_rc_pingpong "$@"
}

# Stock ibv_uc_pingpong and ibv_srq_pingpong (16 QPs on one SRQ), -c validation.
stock_pingpong() { # stock_pingpong TOOL SIZE ITERS [extra args]
	local tool=$1 size=$2 iters=$3 port spid
	port=$(free_port) || fail "no server port"
	shift 3
	stock timeout 60 "$tool" -d ivrdma0 -c -s "$size" -n "$iters" -p "$port" "$@" \
		>"$dir/pp-server.out" 2>&1 &
	spid=$!
	for _ in $(seq 50); do
		ss -ltn 2>/dev/null | grep ":$port " >/dev/null && break
		sleep 0.1
	done
	stock timeout 60 "$tool" -d ivrdma0 -c -s "$size" -n "$iters" -p "$port" "$@" \
		127.0.0.1 >"$dir/pp-client.out" 2>&1 ||
		{ cat "$dir"/pp-*.out >&2; fail "$tool client, size $size"; }
	wait "$spid" || { cat "$dir"/pp-*.out >&2; fail "$tool server, size $size"; }
	! grep -q "invalid data" "$dir"/pp-*.out || fail "$tool: invalid data, size $size"
	echo "$tool -s $size -n $iters $*: $(grep usec/iter "$dir/pp-client.out")"
}

check_stock_pingpong() { # check_stock_pingpong TOOL
	stock_pingpong "$1" 1 1000
	stock_pingpong "$1" 4096 500
	stock_pingpong "$1" 65537 100
	stock_pingpong "$1" 1048576 50
	stock_pingpong "$1" 4194304 20
}

# Stock perftest, both post APIs (ibv_qp_ex wr_* by default, ibv_post_send with
# --use_old_post_send): a few iterations of each operation must complete.
perftest_once() { # perftest_once TOOL [args]; env PERFTEST_TIMEOUT (60 s a side)
	local tool=$1 port spid t=${PERFTEST_TIMEOUT:-60}
	port=$(free_port) || fail "no server port"
	shift
	stock timeout "$t" "$tool" -d ivrdma0 -p "$port" "$@" >"$dir/pt-server.out" 2>&1 &
	spid=$!
	for _ in $(seq 50); do
		ss -ltn 2>/dev/null | grep ":$port " >/dev/null && break
		sleep 0.1
	done
	stock timeout "$t" "$tool" -d ivrdma0 -p "$port" "$@" 127.0.0.1 >"$dir/pt-client.out" 2>&1 ||
		{ cat "$dir"/pt-*.out >&2; fail "$tool $*"; }
	wait "$spid" || { cat "$dir"/pt-*.out >&2; fail "$tool $* (server)"; }
	echo "$tool $*: $(grep -E '^ *[0-9]+ +[0-9]+ ' "$dir/pt-client.out" | tr -s ' \t' ' ')"
}

check_perftest() {
	for api in "" --use_old_post_send; do
		perftest_once ib_write_lat -s 2 -n 50 $api
		perftest_once ib_send_lat -s 2 -n 50 $api
		perftest_once ib_read_lat -s 2 -n 50 $api
		perftest_once ib_atomic_lat -n 50 $api
		perftest_once ib_write_bw -s 2 -n 50 $api
	done
}

# Stock ibv_ud_pingpong: datagrams up to the MTU, with and without a GRH
# (-g 0), busy-polling and sleeping in ibv_get_cq_event (-e).
check_ud_pingpong() {
	stock_pingpong ibv_ud_pingpong 1 1000
	stock_pingpong ibv_ud_pingpong 2048 500
	stock_pingpong ibv_ud_pingpong 4096 500
	stock_pingpong ibv_ud_pingpong 4096 200 -g 0
	stock_pingpong ibv_ud_pingpong 1024 300 -e
	stock_pingpong ibv_ud_pingpong 4096 100 -e -g 0
}

# Stock ibv_asyncwatch sees the port events of another node (vm1) joining
# and leaving: a peer attaches through vm1's socket, waits 1 s, goes.
check_port_events() {
	# Started directly (not through the stock function, a subshell): $! must
	# be asyncwatch itself, so that it is stopped here and by cleanup.
	ASAN_OPTIONS=detect_leaks=0 stdbuf -oL ibv_asyncwatch -d ivrdma0 >"$dir/aw.out" 2>&1 &
	aw_pid=$!
	for _ in $(seq 100); do # its context is attached: the host node has a peer
		"$ivrdma" --dir "$dir" status --json | jq -e '.peers | length == 1' >/dev/null && break
		sleep 0.1
	done
	"$vm_peer" --socket "$dir/vm1.sock" --timeout 1 >"$dir/vm.out" 2>&1 || true
	grep -q "^PEER=" "$dir/vm.out" || { cat "$dir/vm.out" >&2; fail "vm1 peer did not attach"; }
	for _ in $(seq 100); do
		grep -q PORT_ERR "$dir/aw.out" && break
		sleep 0.1
	done
	kill "$aw_pid" 2>/dev/null || true
	wait "$aw_pid" 2>/dev/null || true
	aw_pid=
	expect "$dir/aw.out" "IBV_EVENT_PORT_ACTIVE.*port 1" "asyncwatch: no PORT_ACTIVE when vm1 joined"
	expect "$dir/aw.out" "IBV_EVENT_PORT_ERR.*port 1" "asyncwatch: no PORT_ERR when vm1 left"
	sed -n 1,4p "$dir/aw.out"
}

# --- counters: what `ivrdma status --json` says each stock tool's contexts did
status_json() { "$ivrdma" --dir "$dir" status --json; }
ended_count() { status_json | jq '[.contexts[] | select(.state != "open")] | length'; }

# expect_counters N0 WHAT JQ: JQ holds for the contexts that ended since N0
# ended (an array of them, each with .totals, and .sum: their totals added up).
expect_counters() {
	local doc
	doc=$(status_json | jq --argjson n "$1" '[.contexts[] | select(.state != "open")] | .[$n:] |
		{ctxs: ., sum: (map(.totals) | reduce .[] as $t ({};
			reduce ($t | keys[]) as $k (.; .[$k] += $t[$k])))}')
	jq -e "$3" <<<"$doc" >/dev/null || { echo "$doc" >&2; fail "counters: $2"; }
	echo "counters: $2"
}

# ivrdma status --watch while ibv_rc_pingpong runs (stopped once the
# watch is done; not perftest's -D, whose SIGALRM handler posts WRs, which
# ThreadSanitizer reports): the pinging contexts and their node show work
# requests posted and bytes per second.
check_watch() {
	local port spid cpid wrc=0
	port=$(free_port) || fail "no server port"
	# timeout: kill reaches stock's subshells, and the pingpongs below them end by themselves.
	stock timeout 30 ibv_rc_pingpong -d ivrdma0 -s 4096 -n 100000000 -p "$port" \
		>"$dir/pp-server.out" 2>&1 &
	spid=$!
	for _ in $(seq 50); do
		ss -ltn 2>/dev/null | grep ":$port " >/dev/null && break
		sleep 0.1
	done
	stock timeout 30 ibv_rc_pingpong -d ivrdma0 -s 4096 -n 100000000 -p "$port" 127.0.0.1 \
		>"$dir/pp-client.out" 2>&1 &
	cpid=$!
	for _ in $(seq 100); do # the two are pinging
		status_json | jq -e '[.contexts[].totals.send_ops] | add > 0' >/dev/null && break
		sleep 0.1
	done
	"$ivrdma" --dir "$dir" status --watch 1 --count 2 >"$dir/watch.out" || wrc=$?
	kill "$cpid" "$spid" 2>/dev/null || true
	wait "$cpid" "$spid" 2>/dev/null || true
	cat "$dir/watch.out"
	((wrc == 0)) || fail "ivrdma status --watch exited $wrc"
	# Columns: name (2 words), posted, completed, errors, sends, ..., MB.
	awk '$1 == "context" && $3 > 0 && $6 > 0 && $NF > 0 { c++ }
	     $1 == "node" && $2 == "host" && $3 > 0 { n++ } END { exit !(c >= 4 && n >= 2) }' \
		"$dir/watch.out" || fail "status --watch showed no work per second in two turns"
}

check_counters() {
	local n0 port spid
	# A server waiting for its client: an open context, its QP with the receives it
	# posted (ibv_rc_pingpong posts its rx_depth, 500, before it connects).
	port=$(free_port) || fail "no server port"
	stock timeout 60 ibv_rc_pingpong -d ivrdma0 -s 4096 -n 300 -p "$port" >"$dir/pp-server.out" 2>&1 &
	spid=$!
	for _ in $(seq 100); do
		status_json | jq -e '.contexts[] | select(.state == "open" and .nr_qps == 1)' \
			>/dev/null && break
		sleep 0.1
	done
	status_json | jq -e '[.contexts[] | select(.state == "open")] | length == 1 and
		(.[0] | .pid > 0 and .node == "host" and .qps[0].type == "RC" and
		 .qps[0].counters.rq_posted == 500 and .totals.rq_posted == 500)' >/dev/null ||
		{ status_json >&2; fail "counters: the waiting server's context and QP"; }
	"$ivrdma" --dir "$dir" status | grep -Eq "^    QP 0x[0-9a-f]+ RC (INIT|RTR)" ||
		fail "counters: no QP line in the text status"
	n0=$(ended_count)
	stock timeout 60 ibv_rc_pingpong -d ivrdma0 -s 4096 -n 300 -p "$port" 127.0.0.1 \
		>"$dir/pp-client.out" 2>&1 || { cat "$dir"/pp-*.out >&2; fail "ibv_rc_pingpong"; }
	wait "$spid" || fail "ibv_rc_pingpong server"
	expect_counters "$n0" "ibv_rc_pingpong -s 4096 -n 300: 300 sends and receives each way" \
		'(.ctxs | length == 2) and (.ctxs | all(.state == "closed" and .qps_destroyed == 1 and
		 .nr_qps == 0)) and (.ctxs | all(.totals | .sq_posted == 300 and .send_ops == 300 and
		 .send_bytes == 1228800 and .recv_ops == 300 and .recv_bytes == 1228800 and
		 .completions == 600 and .errors == 0 and .flushed == 0 and .write_ops == 0))'
	for api in "" --use_old_post_send; do
		n0=$(ended_count)
		perftest_once ib_write_bw -s 1024 -n 100 $api >/dev/null
		expect_counters "$n0" "ib_write_bw -s 1024 -n 100 $api" \
			'.sum | .sq_posted == 100 and .write_ops == 100 and .write_bytes == 102400 and
			 .send_ops == 0 and .read_ops == 0 and .errors == 0'
	done
	n0=$(ended_count)
	perftest_once ib_read_bw -s 1024 -n 100 >/dev/null
	expect_counters "$n0" "ib_read_bw -s 1024 -n 100" \
		'.sum | .read_ops == 100 and .read_bytes == 102400 and .write_ops == 0 and .errors == 0'
	n0=$(ended_count)
	perftest_once ib_atomic_bw -n 100 >/dev/null
	expect_counters "$n0" "ib_atomic_bw -n 100" \
		'.sum | .atomic_ops == 100 and .atomic_bytes == 800 and .errors == 0'
	n0=$(ended_count)
	perftest_once ib_send_bw -s 1024 -n 100 >/dev/null
	expect_counters "$n0" "ib_send_bw -s 1024 -n 100" \
		'.sum | .send_ops == 100 and .send_bytes == 102400 and .recv_ops == 100 and
		 .recv_bytes == 102400 and .rq_posted >= 100 and .errors == 0'
}

# ivrdmad with no --size: the region is sized from the machine (--size
# auto), its tables hold what a 64-rank job over openib opens once the
# region reaches 1 GiB, and perftest moves 64 MiB and 512 MiB messages.
check_defaults() {
	local st size
	grep -q "(auto: at most half of" "$dir/ivrdmad.log" ||
		{ cat "$dir/ivrdmad.log" >&2; fail "ivrdmad did not say where its size came from"; }
	st=$("$ivrdma" --dir "$dir" status --json)
	size=$(jq .region.size <<<"$st")
	echo "region of $((size >> 20)) MiB:" \
		"$(jq -c '.region | {qp_slots, cq_slots, srq_slots, mr_slots}' <<<"$st")"
	if ((size >= 1 << 30)); then
		jq -e '.region | .qp_slots >= 65536 and .cq_slots >= 65536 and .mr_slots >= 262144' \
			<<<"$st" >/dev/null || fail "a region of $size bytes has too few slots"
	fi
	# Each first touch of a page costs a fault: registering a GiB takes
	# seconds, and minutes on a loaded machine.
	PERFTEST_TIMEOUT=280
	perftest_once ib_write_bw -s $((64 << 20)) -n 5
	# Each side registers twice the message: 2 GiB of a region that holds 4.
	if ((size < 4 << 30)); then
		echo "SKIP: ib_write_bw -s 512M needs a region of 4 GiB; auto gave $((size >> 20)) MiB"
		exit 77
	fi
	perftest_once ib_write_bw -s $((512 << 20)) -n 5
}

check_pingpong() {
	pingpong_once 1 1000
	pingpong_once 1 500 -g 0
	pingpong_once 4096 500
	pingpong_once 65537 100
	pingpong_once 1048576 50
	pingpong_once 4194304 20
	# -e: both sides sleep in ibv_get_cq_event (completion channels).
	pingpong_once 1 500 -e
	pingpong_once 65536 100 -e
}

start_daemon
"$ivrdma" --dir "$dir" setup --sysfs "$dir/sysfs" >/dev/null
eval "$("$ivrdma" --dir "$dir" env --sysfs "$dir/sysfs" --provider "$provider")"
[[ $RDMAV_DRIVERS == "${provider%-rdmav34.so}" ]] || fail "ivrdma env: RDMAV_DRIVERS=$RDMAV_DRIVERS"
# A sanitizer runtime must come first in LD_PRELOAD, ahead of the shim.
if [[ -n ${IVRDMA_PRELOAD:-} ]]; then
	export LD_PRELOAD=$IVRDMA_PRELOAD${LD_PRELOAD:+:$LD_PRELOAD}
fi
read_host_identity
case $mode in
tools) check_tools ;;
verbs)
	# Both ways: with the completion-channel shim ivrdma env preloads, and without.
	[[ ${LD_PRELOAD:-} == *libivrdma-preload.so ]] || fail "ivrdma env: no LD_PRELOAD shim"
	timeout -k 5 80 "$test_bin"
	env -u LD_PRELOAD timeout -k 5 80 "$test_bin"
	;;
pingpong) check_pingpong ;;
uc-pingpong) check_stock_pingpong ibv_uc_pingpong ;;
srq-pingpong)
	check_stock_pingpong ibv_srq_pingpong
	stock_pingpong ibv_srq_pingpong 4096 300 -e # sleeping in ibv_get_cq_event
	;;
ud-pingpong) check_ud_pingpong ;;
port-events) check_port_events ;;
perftest) check_perftest ;;
defaults) check_defaults ;;
counters)
	check_counters
	check_watch
	;;
# Bounded below CTest's TIMEOUT: a hang ends here, where cleanup runs, and
# not in CTest's kill, which leaves the test binary and ivrdmad behind.
datapath) timeout -k 5 240 "$test_bin" "$group" ;;
migrate) timeout -k 5 240 "$test_bin" "$ivrdma" ;;
# group is SECONDSxPAIRS: the run is bounded by its own clock, plus set-up.
# ASan's quarantine holds freed blocks by design, so RssAnon would grow with
# it: off here (LeakSanitizer still checks every process at exit).
soak)
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0 \
		timeout -k 5 $((${group%x*} + 120)) "$test_bin" "$group" "/dev/shm$shm"
	;;
# group is the number of trials; each is bounded by the test's own hang
# detectors, the whole run here.
kill-trials) timeout -k 5 540 "$test_bin" "$group" "/dev/shm$shm" ;;
*) fail "unknown mode $mode" ;;
esac
