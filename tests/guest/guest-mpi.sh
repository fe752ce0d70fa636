#!/bin/sh
# The MPI side of the verbs test image (busybox sh), run by the host's
# "run" commands (see guest-verbs-init.sh and run-verbs-vm.sh, scenario
# mpi):
#
#   guest-mpi.sh sshd NAME        hostname NAME, /dev/shm, then dropbear
#                                 (root by the key in the image only, its
#                                 host key the image's too, which the
#                                 image's known_hosts names) as the ssh
#                                 server mpirun's launcher needs
#   guest-mpi.sh ssh HOST CMD...  CMD on HOST by dbclient, as mpirun does
#   guest-mpi.sh job HOSTS PROG   mpirun.openmpi of /usr/lib/ivr/PROG on
#                                 HOSTS (Open MPI's --host: vm1:1,vm2:1),
#                                 ob1 + openib over ivrdma0 with the
#                                 settings of the README, its remote
#                                 daemons started by dbclient; prints the
#                                 job's stdout, then its stderr as
#                                 "stderr: " lines; exits as mpirun did
#
# The ranks take `ivrdma env`'s environment (the init evaluated it) by -x.
KEY=/root/.ssh/id_dropbear
# dbclient finds known_hosts in $HOME/.ssh (init's HOME is /); a host not
# found there it asks about on the terminal, and waits for ever.
export HOME=/root

sshd() {
	hostname "$1" || return 1
	mkdir -p /dev/shm && mount -t tmpfs tmpfs /dev/shm || return 1
	# Until the kernel's random pool is ready dropbear and dbclient wait
	# for it, and dbclient says so on stderr: /dev/random blocks until then.
	head -c 1 /dev/random >/dev/null || return 1
	# -s: no passwords at all.
	dropbear -r /etc/dropbear/dropbear_ed25519_host_key -s -p 22 -P /tmp/dropbear.pid ||
		return 1
	echo "$1: dropbear on port 22"
}

# -x NAME for each variable `ivrdma env` set (the init saved it in /tmp/env).
env_args() {
	sed -n 's/^export \([A-Z_]*\)=.*/-x \1/p' /tmp/env
}

job() {
	hosts=$1 prog=/usr/lib/ivr/$2
	np=0
	for h in $(echo "$hosts" | tr ',' ' '); do
		np=$((np + ${h#*:}))
	done
	# shellcheck disable=SC2046 # env_args: words on purpose
	mpirun.openmpi --allow-run-as-root -np "$np" --host "$hosts" --bind-to none \
		--mca plm_rsh_agent "dbclient -i $KEY" \
		--mca pml ob1 --mca btl openib,self --mca btl_openib_allow_ib 1 \
		--mca btl_openib_device_param_files \
		/usr/share/ivrdma/openib-device-params-ivrdma.ini:/usr/share/openmpi/mca-btl-openib-device-params.ini \
		--mca osc pt2pt --mca mpi_yield_when_idle 1 \
		--mca oob_tcp_if_include eth0 $(env_args) \
		"$prog" >/tmp/job.out 2>/tmp/job.err
	rc=$?
	cat /tmp/job.out
	sed 's/^/stderr: /' /tmp/job.err
	return $rc
}

case "$1" in
sshd) sshd "$2" ;;
ssh)
	shift
	dbclient -i $KEY "$@"
	;;
job) job "$2" "$3" ;;
*)
	echo "usage: guest-mpi.sh sshd NAME | ssh HOST CMD... | job HOSTS PROG" >&2
	exit 2
	;;
esac
