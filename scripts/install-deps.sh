#!/usr/bin/env bash
# Installs every Debian 12 package ivrdma needs to build, test and demo.
# Idempotent; run as root on a fresh machine (CI does exactly that).
set -euo pipefail

packages=(
	# build; clang's libFuzzer and sanitizer runtimes for tests/fuzz
	build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
	libibverbs-dev libjson-c-dev
	# the real verbs stack we plug into, and its stock tools
	libibverbs1 ibverbs-utils ibverbs-providers rdma-core perftest
	# RDMA CM: librdmacm and its tools (tests/rdmacm), headers for our own test
	librdmacm1 librdmacm-dev rdmacm-utils
	# ... and libfabric's verbs provider over it (fi_pingpong)
	libfabric-bin
	# unchanged socket programs over rsockets (librdmacm1's librspreload.so)
	# against TCP loopback: tests/rdmacm (rdmacm.rsockets) and
	# perftest-configs/rsockets.suite. sockperf and iperf3 measure; memcached
	# is the real server, memcslap (libmemcached-tools) its client
	sockperf iperf3 memcached libmemcached-tools
	# tests: JSON checks, guest VMs (TCG) with a Debian kernel and a busybox initramfs
	jq procps psmisc util-linux iproute2
	# tests/mpi: Open MPI (openib, UCX), MPICH (ch4:ucx), UCX and its verbs transports
	openmpi-bin libopenmpi-dev mpich libmpich-dev ucx-utils libucx-dev
	# the benchmark suite's plots (perftest-configs/run-suite); its MPI
	# suites: NetPIPE for Open MPI and MPICH, HPC Challenge (Open MPI, 0.5 MB)
	gnuplot-nox netpipe-openmpi netpipe-mpich2 hpcc
	# tests/guest MPI job: dropbear as the ssh of mpirun between the guests
	dropbear-bin
	qemu-system-x86 linux-image-amd64 linux-headers-amd64 busybox-static cpio kmod
	# the verbs guests' udevd, which runs 60-ivrdma.rules (ivrdma setup)
	udev
	# the Debian package (scripts/build-deb.sh) and its test in a fresh
	# Debian 12 root (tests/package/), booted with systemd-nspawn
	debhelper dpkg-dev debootstrap zstd systemd-container
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#packages[@]} packages present"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages (${missing[*]}); run as root" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
