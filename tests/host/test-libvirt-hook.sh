#!/bin/bash
# migration/libvirt-hook-qemu on the domain XML libvirt hands it: it
# refuses an incoming migration of a VM that still has its ivrdma device,
# and lets everything else through unchanged (no output).
# usage: test-libvirt-hook.sh HOOK
set -euo pipefail
hook=$1
fail() { echo "FAIL: $*" >&2; exit 1; }

domain() { # domain SHMEM_SOCKET_PATH|none
	echo "<domain type='kvm'><name>vm1</name><devices>"
	echo "  <disk type='file' device='disk'><source file='/v/vm1.img'/></disk>"
	if [[ $1 != none ]]; then
		echo "  <shmem name='ivrdma'>"
		echo "    <model type='ivshmem-doorbell'/>"
		echo "    <server path='$1'/>"
		echo "    <msi vectors='4' ioeventfd='on'/>"
		echo "  </shmem>"
	fi
	echo "  <shmem name='other'><model type='ivshmem-plain'/><size unit='M'>4</size></shmem>"
	echo "</devices></domain>"
}

run() { # run EXPECTED_STATUS ARGS... (XML on stdin); sets out, err
	local want=$1 rc=0
	shift
	out=$(IVRDMA_DIR=/run/ivrdma "$hook" "$@" 2>/tmp/hook-err.$$) || rc=$?
	err=$(cat /tmp/hook-err.$$)
	rm -f /tmp/hook-err.$$
	((rc == want)) || fail "hook $* exited $rc, expected $want: $err"
	[[ -z $out ]] || fail "hook $* printed XML: $out"
}

run 1 vm1 migrate begin - < <(domain /run/ivrdma/vm1.sock)
[[ $err == *"ivrdma migrate-begin vm1"* ]] || fail "the refusal does not say what to do: $err"
run 0 vm1 migrate begin - < <(domain none)
run 0 vm1 migrate begin - < <(domain /var/run/other/doorbell.sock)
run 0 vm1 started begin - < <(domain /run/ivrdma/vm1.sock)
run 0 vm1 prepare begin - < <(domain /run/ivrdma/vm1.sock)
echo "libvirt hook: refuses a migration with the device attached, lets the rest through"
