#!/usr/bin/env bash
# The Debian package in a fresh Debian 12: builds ivrdma_*.deb with
# scripts/build-deb.sh, unpacks a cached debootstrap root (make-chroot.sh)
# into a new directory, installs the package there with apt, and runs
# in-chroot.sh in it: the installed ivrdmad as its service would run it,
# `ivrdma setup`, the stock ibv_devices, ibv_devinfo and ibv_rc_pingpong on
# ivrdma0, with nothing from the build tree and no environment beyond what
# `ivrdma env` prints.
#
#   run-package-test.sh SOURCE_DIR WORK_DIR CACHE_DIR [IVRDMAD IVRDMA DRVTEST HELPER]
#
# With the four programs of the guest driver test (tests/guest/), the
# module DKMS built boots in a QEMU guest, if /boot has the kernel it was
# built for, and passes that test (run-driver-vm.sh --test basics) on the
# ivrdmad the package's service runs.
#
# The chroot runs in its own mount and PID namespaces (its /proc, a
# private /dev/shm and /run: the region and the sockets never touch the
# machine's), and the verbs programs in their own network namespace (a
# private loopback: no port is shared with anything else). When the test
# ends, however it ends, the namespaces' processes are killed and their
# mounts vanish with them; the root directory is removed. Then
# ivrdma-dkms goes in with DKMS and a Debian kernel's headers, and out.
# Last, where systemd-nspawn is installed, the same root boots with
# systemd and in-chroot.sh checks ivrdmad.service as the package installed
# it, then the service serves a QEMU VM running the module DKMS built.
set -euo pipefail

src=${1:?usage: run-package-test.sh SOURCE_DIR WORK_DIR CACHE_DIR}
work=${2:?}
cache=${3:?}
here=$(cd "$(dirname "$0")" && pwd)

[[ $(id -u) -eq 0 ]] || { echo "package test: needs root (chroot, namespaces)"; exit 77; }
for tool in unshare chroot zstd dpkg-buildpackage; do
	command -v "$tool" >/dev/null || { echo "package test: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done

mkdir -p "$work" "$cache/archives"
started=$SECONDS
root=
ns_pid=
nspawn_pid=
cleanup() {
	local rc=$?
	if [[ -n $nspawn_pid ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
		kill -TERM "$nspawn_pid" 2>/dev/null || true # powers the container off
		for _ in $(seq 100); do
			kill -0 "$nspawn_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$nspawn_pid" 2>/dev/null || true
		wait "$nspawn_pid" 2>/dev/null || true
	fi
	if [[ -n $ns_pid ]] && kill -0 "$ns_pid" 2>/dev/null; then
		kill -KILL "$ns_pid" 2>/dev/null || true # unshare --kill-child: its PID 1, and all of the namespace, go too
		wait "$ns_pid" 2>/dev/null || true
	fi
	if [[ -n $root ]]; then
		if grep -q " $root" /proc/mounts; then
			echo "package test: mounts left under $root" >&2
			rc=1
		else
			rm -rf "$root"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

step() { printf '== %s (%d s)\n' "$*" $((SECONDS - started)); }

step "build the packages (scripts/build-deb.sh)"
mapfile -t debs < <(bash "$src/scripts/build-deb.sh" "$work/deb")
deb=
for d in "${debs[@]}"; do
	[[ $d == */ivrdma_*_amd64.deb ]] && deb=$d
done
[[ -n $deb ]] || { echo "package test: no ivrdma_*_amd64.deb among: ${debs[*]}" >&2; exit 1; }
deps=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $deps"
for dep in libibverbs1 libjson-c5; do
	[[ ",$deps" == *[,\ ]$dep[,\ ]* || ",$deps" == *[,\ ]$dep ]] ||
		{ echo "package test: Depends lacks $dep" >&2; exit 1; }
done
dkms=$(dirname "$deb")/$(basename "$deb" | sed 's/^ivrdma_\(.*\)_amd64.deb$/ivrdma-dkms_\1_all.deb/')
dkms_files=$(dpkg-deb -c "$dkms")
[[ $dkms_files =~ /usr/src/ivrdma-[0-9.]+/dkms.conf ]] ||
	{ echo "package test: $dkms has no dkms.conf" >&2; exit 1; }

step "a fresh Debian 12 root (make-chroot.sh)"
tarball=$(bash "$here/make-chroot.sh" "$cache")
root=$(mktemp -d "$work/root.XXXXXX")
tar -C "$root" -I zstd -xf "$tarball"
mkdir -p "$root/root/pkg-test"
cp "$deb" "$dkms" "$here/in-chroot.sh" "$root/root/pkg-test/"
# The kernel the guest tests boot: DKMS builds the module for it, if it can.
guest_kernel=$(printf '%s\n' /boot/vmlinuz-*-amd64 | sort -V | tail -n 1)
if [[ -r $guest_kernel ]]; then
	echo "${guest_kernel#/boot/vmlinuz-}" >"$root/root/pkg-test/guest-kver"
	mkdir -p "$root/root/pkg-test/apt"
	cp /etc/apt/sources.list.d/*.sources "$root/root/pkg-test/apt/" 2>/dev/null || true
	[[ -r /etc/apt/sources.list ]] && cp /etc/apt/sources.list "$root/root/pkg-test/apt/host.list"
fi
cp "$cache/archives/"*.deb "$root/var/cache/apt/archives/" 2>/dev/null || true

# Runs in-chroot.sh PHASE in the chroot, in new mount and PID namespaces
# (and a network namespace with only loopback when NET=private).
in_chroot() {
	local phase=$1 net=${2:-host} flags=(--mount --pid --fork --kill-child --propagation private)
	[[ $net == private ]] && flags+=(--net)
	unshare "${flags[@]}" bash -c '
		set -e
		root=$1 phase=$2
		mount -t proc proc "$root/proc"
		mount -t tmpfs -o mode=1777,size=1g tmpfs "$root/dev/shm"
		mount -t tmpfs -o mode=755 tmpfs "$root/run"
		ip link set lo up 2>/dev/null || true
		env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
			chroot "$root" /bin/bash /root/pkg-test/in-chroot.sh "$phase"
	' in-chroot "$root" "$phase" &
	ns_pid=$!
	wait "$ns_pid"
}

step "install $(basename "$deb") with apt"
in_chroot install
# Keep what apt downloads (the packages' dependencies) for the next run.
keep_downloads() {
	cp -n "$root/var/cache/apt/archives/"*.deb "$cache/archives/" 2>/dev/null || true
}
keep_downloads

step "run the installed files"
in_chroot run private

step "ivrdma-dkms with DKMS and linux-headers-amd64 (apt)"
in_chroot dkms
keep_downloads

# Whether the module DKMS built can boot here: in a guest of the kernel it
# was built for, with the guest test's programs (tests/guest/).
kver=$(cat "$root/root/pkg-test/out/kver")
vm_test=
if [[ $# -lt 7 ]]; then
	step "no guest test programs given: the DKMS-built module is not booted"
elif [[ ! -r /boot/vmlinuz-$kver ]]; then
	step "no /boot/vmlinuz-$kver (linux-image-amd64 is older or newer than its headers): the DKMS-built module is not booted"
else
	vm_test=1
fi

# The same root booted with systemd: the service as installed (enabled by
# the package, started at boot), restarted with new settings and stopped;
# then serving a real VM (QEMU, on this machine, joins the service's
# vm1.sock through the container's root), whose guest runs the module DKMS
# built (run-driver-vm.sh --test basics: the region's bytes both ways,
# doorbells both ways, ivrdma status shows the VM).
if command -v systemd-nspawn >/dev/null; then
	step "boot the root with systemd (systemd-nspawn) and use ivrdmad.service"
	systemd-nspawn -q -D "$root" --register=no --keep-unit -M "ivrdma-pkg-$$" \
		--private-network --boot >"$work/boot.log" 2>&1 &
	nspawn_pid=$!
	leader=
	for _ in $(seq 300); do # the container's PID 1: systemd, nspawn's child
		leader=$(pgrep -x -P "$nspawn_pid" systemd || true)
		[[ -n $leader ]] && break
		kill -0 "$nspawn_pid" 2>/dev/null || break
		sleep 0.1
	done
	[[ -n $leader ]] || { tail -n 20 "$work/boot.log" >&2; echo "package test: the container did not boot" >&2; exit 1; }
	inside() {
		nsenter -t "$leader" -m -u -i -n -p -r -w env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 "$@"
	}
	for _ in $(seq 300); do # systemd's own socket: systemctl can talk to it
		inside test -S /run/systemd/private && break
		sleep 0.1
	done
	state=$(timeout 120 nsenter -t "$leader" -m -u -i -n -p -r -w \
		systemctl is-system-running --wait 2>/dev/null || true)
	echo "system: ${state:-not up}"
	inside /bin/bash /root/pkg-test/in-chroot.sh service
	if [[ -n $vm_test ]]; then
		step "ivrdmad.service serving a VM that runs the DKMS-built module (run-driver-vm.sh --test basics)"
		inside /bin/bash /root/pkg-test/in-chroot.sh service-vm
		bash "$src/tests/guest/run-driver-vm.sh" --test basics --ivrdmad "$4" --ivrdma "$5" \
			--drvtest "$6" --helper "$7" --module "$root/root/pkg-test/out/ivrdma_ivshmem.ko" \
			--kernel "/boot/vmlinuz-$kver" --daemon-dir "/proc/$leader/root/run/ivrdma"
		inside /bin/bash /root/pkg-test/in-chroot.sh service-vm-end
	fi
	kill -TERM "$nspawn_pid" # nspawn powers the container off: systemd stops every unit
	for _ in $(seq 300); do
		kill -0 "$nspawn_pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$nspawn_pid" 2>/dev/null; then
		echo "package test: the container did not power off" >&2
		exit 1
	fi
	wait "$nspawn_pid" || true
	nspawn_pid=
else
	step "no systemd-nspawn (systemd-container): the service is not run under systemd"
	if [[ -n $vm_test ]]; then
		step "the DKMS-built module in a guest of $kver (run-driver-vm.sh --test basics)"
		bash "$src/tests/guest/run-driver-vm.sh" --test basics --ivrdmad "$4" --ivrdma "$5" \
			--drvtest "$6" --helper "$7" --module "$root/root/pkg-test/out/ivrdma_ivshmem.ko" \
			--kernel "/boot/vmlinuz-$kver"
	fi
fi
step "passed"
