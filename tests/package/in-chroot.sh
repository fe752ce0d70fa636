#!/bin/bash
# Inside the fresh Debian 12 root of run-package-test.sh (PID 1's child in
# its own namespaces; the environment is PATH, HOME and LANG only).
#   install   apt installs /root/pkg-test/ivrdma_*.deb (Depends from the archive)
#   run       the installed service command lines, then the stock tools
#   service   booted with systemd: ivrdmad.service as the package set it up
#   dkms      ivrdma-dkms with the real DKMS and a Debian kernel's headers
set -euo pipefail

fail() {
	echo "in-chroot: $*" >&2
	exit 1
}

install_phase() {
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 /root/pkg-test/ivrdma_*_amd64.deb
	dpkg-query -W -f='${Status}\n' ivrdma | grep -q 'install ok installed' || fail "ivrdma not installed"
	apt-get check
	getent group ivrdma >/dev/null || fail "postinst made no group ivrdma"
	echo "-- installed files:"
	dpkg -L ivrdma | while read -r f; do [[ -f $f ]] && echo "  $f"; done
}

daemon_pid=
server=
stop_all() {
	[[ -n $server ]] && kill "$server" 2>/dev/null
	if [[ -n $daemon_pid ]]; then
		kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" || true
	fi
}

# The command of KEY= in the installed unit (without the prefixes systemd
# takes: "-" ignores a failure, which this test does not).
unit_line() {
	sed -n "s/^$1=[-@:+!]*//p" /lib/systemd/system/ivrdmad.service
}

# Stock ibv_rc_pingpong between two processes on ivrdma0, at each size.
pingpong() {
	local port=18515 size iters ok
	for size in "$@"; do
		iters=$((size > 65536 ? 100 : 1000))
		ibv_rc_pingpong -d ivrdma0 -g 0 -p $port -s "$size" -n $iters -c >/tmp/server.out 2>&1 &
		server=$!
		ok=0
		for _ in $(seq 50); do
			if ibv_rc_pingpong -d ivrdma0 -g 0 -p $port -s "$size" -n $iters -c 127.0.0.1 \
				>/tmp/client.out 2>&1; then
				ok=1
				break
			fi
			sleep 0.1
		done
		wait "$server" || ok=0
		server=
		sed 's/^/  /' /tmp/client.out
		[[ $ok == 1 ]] || { cat /tmp/server.out >&2; fail "ibv_rc_pingpong -s $size failed"; }
	done
}

run_phase() {
	trap stop_all EXIT
	local libdir=/usr/lib/x86_64-linux-gnu
	for f in /usr/sbin/ivrdmad /usr/bin/ivrdma $libdir/libibverbs/libivrdma-rdmav34.so \
		$libdir/ivrdma/libivrdma-preload.so /usr/share/ivrdma/openib-device-params-ivrdma.ini \
		/usr/share/man/man1/ivrdma.1.gz /usr/share/man/man8/ivrdmad.8.gz \
		/lib/udev/rules.d/60-ivrdma.rules /etc/default/ivrdmad; do
		[[ -e $f ]] || fail "$f is not installed"
	done
	grep -qx 'driver ivrdma' /etc/libibverbs.d/ivrdma.driver || fail "bad ivrdma.driver"
	# The guest's automatic setup runs the packaged ivrdma.
	grep -q 'RUN+="/usr/bin/ivrdma setup --cdev %k"' /lib/udev/rules.d/60-ivrdma.rules ||
		fail "60-ivrdma.rules does not run /usr/bin/ivrdma setup"
	ivrdma version

	echo "-- /etc/default/ivrdmad: one VM (vm1), a 64M region, addresses for vm1 and the host"
	sed -i -e 's/^IVRDMAD_VMS=.*/IVRDMAD_VMS="vm1"/' -e 's/^IVRDMAD_SIZE=.*/IVRDMAD_SIZE="64M"/' \
		-e 's/^IVRDMAD_ADDRS=.*/IVRDMAD_ADDRS="vm1=10.0.0.11 host=10.0.0.1"/' \
		/etc/default/ivrdmad

	# What systemd would run: ExecStart in the background, then ExecStartPost.
	local start post
	start=$(unit_line ExecStart)
	post=$(unit_line ExecStartPost)
	echo "-- ExecStart=$start"
	$start 2>/tmp/ivrdmad.log &
	daemon_pid=$!
	echo "-- ExecStartPost=$post"
	$post || { cat /tmp/ivrdmad.log >&2; fail "ExecStartPost failed"; }
	ivrdma status | tee /tmp/status
	grep -q "^vm1 " /tmp/status || fail "no node vm1"
	grep -q "^vm1 .* 10\.0\.0\.11$" /tmp/status || fail "the service did not pass IVRDMAD_ADDRS"

	echo "-- sockets and region: mode 0660, group ivrdma"
	for f in /run/ivrdma/host.sock /run/ivrdma/vm1.sock /run/ivrdma/ctl.sock /dev/shm/ivrdma; do
		stat -c '  %A %U:%G %n' "$f"
		[[ $(stat -c '%a %G' "$f") == "660 ivrdma" ]] || fail "$f is not 660 ivrdma"
	done

	echo "-- ivrdma env"
	ivrdma env
	eval "$(ivrdma env)"
	[[ $SYSFS_PATH == /run/ivrdma/sysfs ]] || fail "SYSFS_PATH=$SYSFS_PATH"
	[[ -z ${RDMAV_DRIVERS:-} ]] || fail "RDMAV_DRIVERS set although the provider is installed"
	[[ $LD_PRELOAD == "$libdir/ivrdma/libivrdma-preload.so" ]] || fail "LD_PRELOAD=${LD_PRELOAD:-}"

	echo "-- ibv_devices, ibv_devinfo"
	ibv_devices | tee /tmp/devices
	grep -q ivrdma0 /tmp/devices || fail "ibv_devices does not list ivrdma0"
	ibv_devinfo -d ivrdma0 | tee /tmp/devinfo
	grep -q 'PORT_ACTIVE' /tmp/devinfo || fail "ivrdma0's port is not active"

	echo "-- ibv_rc_pingpong, every byte checked (-c)"
	pingpong 1 4096 1048576

	echo "-- as a member of group ivrdma, not root"
	useradd --no-create-home --groups ivrdma ivrdma-user
	setpriv --reuid ivrdma-user --regid ivrdma-user --init-groups env -i PATH="$PATH" \
		sh -c 'eval "$(ivrdma env)" && ivrdma status >/dev/null && ibv_devinfo -d ivrdma0 >/dev/null' ||
		fail "a member of group ivrdma cannot use ivrdma0"

	echo "-- stop ivrdmad"
	kill -TERM "$daemon_pid"
	wait "$daemon_pid" || fail "ivrdmad exited with $?"
	daemon_pid=
	sed 's/^/  /' /tmp/ivrdmad.log
	[[ ! -e /dev/shm/ivrdma && ! -e /run/ivrdma/host.sock ]] || fail "ivrdmad left its region or sockets"
}

# Booted with systemd: the package enabled ivrdmad.service, so it runs, with
# the settings run_phase left (vm1, 64M).
service_phase() {
	trap stop_all EXIT
	systemd-analyze verify --man=no ivrdmad.service || fail "systemd-analyze verify ivrdmad.service"
	systemctl is-enabled ivrdmad.service || fail "ivrdmad.service is not enabled"
	systemctl is-active ivrdmad.service || {
		systemctl status ivrdmad.service --no-pager >&2 || true
		fail "ivrdmad.service is not running after boot"
	}
	ivrdma status | tee /tmp/status
	grep -q "^vm1 " /tmp/status || fail "the service did not take IVRDMAD_VMS"
	[[ -s /run/ivrdma/sysfs/class/infiniband/ivrdma0/node_guid ]] ||
		fail "the service did not run ivrdma setup"
	stat -c '  %A %U:%G %n' /run/ivrdma/host.sock /dev/shm/ivrdma
	eval "$(ivrdma env)"
	ibv_devinfo -d ivrdma0 >/tmp/devinfo
	grep -q PORT_ACTIVE /tmp/devinfo || fail "ivrdma0 is not active"
	pingpong 4096

	echo "-- IVRDMAD_VMS=\"vm1 vm2\", systemctl restart ivrdmad"
	sed -i 's/^IVRDMAD_VMS=.*/IVRDMAD_VMS="vm1 vm2"/' /etc/default/ivrdmad
	systemctl restart ivrdmad.service
	ivrdma status | tee /tmp/status
	grep -q "^vm2 " /tmp/status || fail "the restarted service has no vm2"
	pingpong 1048576

	echo "-- systemctl stop ivrdmad"
	systemctl stop ivrdmad.service
	! systemctl is-active ivrdmad.service >/dev/null || fail "ivrdmad.service still runs"
	[[ ! -e /dev/shm/ivrdma && ! -e /run/ivrdma/host.sock ]] || fail "the stopped service left its region or sockets"
	journalctl -u ivrdmad.service --no-pager -o cat | sed 's/^/  /' | tail -n 12
}

# The service as a user sets it up for a VM: vm1 in /etc/default/ivrdmad
# and a region large enough that the guest's BAR2 lands above 4 GiB
# (write-back, tests/guest/run-driver-vm.sh), then a restart. The host
# side then starts the VM on /run/ivrdma/vm1.sock.
service_vm_phase() {
	sed -i -e 's/^IVRDMAD_VMS=.*/IVRDMAD_VMS="vm1"/' -e 's/^IVRDMAD_SIZE=.*/IVRDMAD_SIZE="4G"/' \
		/etc/default/ivrdmad
	systemctl start ivrdmad.service
	systemctl is-active ivrdmad.service || fail "ivrdmad.service did not start with vm1 and 4G"
	ivrdma status | head -n 4
	[[ -S /run/ivrdma/vm1.sock ]] || fail "no /run/ivrdma/vm1.sock"
}

# The VM came and went: the service saw it, and stops cleanly.
service_vm_end_phase() {
	journalctl -u ivrdmad.service --no-pager -o cat | grep -i 'vm1' | sed 's/^/  /' | tail -n 4
	systemctl stop ivrdmad.service
	[[ ! -e /dev/shm/ivrdma && ! -e /run/ivrdma/host.sock ]] || fail "the stopped service left its region or sockets"
}

# ivrdma-dkms with the real DKMS: added on installation, built and
# installed for a Debian kernel whose headers are there (as the kernel
# packages' hook does), removed with the package. This root runs on the
# machine's kernel, which need not be Debian's: no module is loaded here;
# run-package-test.sh boots the one built in a guest of its kernel.
dkms_phase() {
	export DEBIAN_FRONTEND=noninteractive
	local headers=linux-headers-amd64 want
	# The headers of the kernel the machine boots its test guests with, if
	# Debian still has them (the root's package lists may be older).
	want=$(cat /root/pkg-test/guest-kver 2>/dev/null || true)
	if [[ -n $want ]] && ! apt-cache show "linux-headers-$want" >/dev/null 2>&1; then
		# Where the machine got that kernel: its apt sources (security updates).
		cp /root/pkg-test/apt/*.sources /etc/apt/sources.list.d/ 2>/dev/null || true
		cp /root/pkg-test/apt/*.list /etc/apt/sources.list.d/ 2>/dev/null || true
		apt-get update -o Dpkg::Use-Pty=0 >/tmp/apt-update.log 2>&1 || true
	fi
	if [[ -n $want ]] && apt-cache show "linux-headers-$want" >/dev/null 2>&1; then
		headers=linux-headers-$want
	fi
	apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "$headers" \
		>/tmp/apt-headers.log 2>&1 || { tail -n 20 /tmp/apt-headers.log >&2; fail "apt: $headers"; }
	apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 /root/pkg-test/ivrdma-dkms_*_all.deb \
		>/tmp/apt-dkms.log 2>&1 || { tail -n 20 /tmp/apt-dkms.log >&2; fail "apt: ivrdma-dkms"; }
	grep 'ivrdma-dkms:' /tmp/apt-dkms.log || true
	local kver ko
	if [[ $headers == linux-headers-amd64 ]]; then
		kver=$(cd /usr/src && ls -d linux-headers-*-amd64 | sed 's/^linux-headers-//' | sort -V | tail -n1)
	else
		kver=$want
	fi
	dkms status -m ivrdma
	dkms autoinstall -k "$kver" >/tmp/dkms.log 2>&1 || { tail -n 20 /tmp/dkms.log >&2; fail "dkms autoinstall -k $kver"; }
	dkms status -m ivrdma | tee /tmp/dkms-status
	grep -q "^ivrdma/[0-9.]*, $kver, x86_64: installed" /tmp/dkms-status || fail "ivrdma is not installed for $kver"
	ko=$(find "/lib/modules/$kver" -name 'ivrdma_ivshmem.ko*' | head -n1)
	[[ -n $ko ]] || fail "no ivrdma_ivshmem.ko under /lib/modules/$kver"
	modinfo -F alias "$ko" >/tmp/alias
	grep -qi 'pci:v00001AF4d00001110' /tmp/alias || fail "$ko lacks the ivshmem PCI alias"
	echo "  $ko"
	# For run-package-test.sh to boot in a guest, if this machine has that kernel.
	mkdir -p /root/pkg-test/out
	case $ko in
	*.ko.xz) xz -dc "$ko" >/root/pkg-test/out/ivrdma_ivshmem.ko ;;
	*.ko.zst) zstd -dcq "$ko" >/root/pkg-test/out/ivrdma_ivshmem.ko ;;
	*) cp "$ko" /root/pkg-test/out/ivrdma_ivshmem.ko ;;
	esac
	echo "$kver" >/root/pkg-test/out/kver
	apt-get purge -y -o Dpkg::Use-Pty=0 ivrdma-dkms >/tmp/apt-purge.log 2>&1 || { tail -n 20 /tmp/apt-purge.log >&2; fail "apt purge"; }
	dkms status -m ivrdma >/tmp/dkms-status
	[[ ! -s /tmp/dkms-status ]] || fail "dkms still knows ivrdma after the purge: $(cat /tmp/dkms-status)"
	[[ ! -e $ko ]] || fail "$ko is left after the purge"
	echo "  purged: dkms knows no ivrdma, the module is gone"
}

case ${1:-} in
install) install_phase ;;
run) run_phase ;;
service) service_phase ;;
service-vm) service_vm_phase ;;
service-vm-end) service_vm_end_phase ;;
dkms) dkms_phase ;;
*) fail "usage: in-chroot.sh install|run|service|service-vm|service-vm-end|dkms" ;;
esac
