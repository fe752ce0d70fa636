/* SPDX-License-Identifier: MIT */
/*
 * `ivrdma setup` and `ivrdma env`: make the local ivrdma device visible to
 * unchanged libibverbs (see design.md, "How a device becomes visible").
 *
 * Both take argv[0] = the command name and read the daemon directory from
 * $IVRDMA_DIR (default /run/ivrdma); the CLI sets it from --dir.
 */
#ifndef IVRDMA_SETUP_H
#define IVRDMA_SETUP_H

/*
 * ivrdma setup [--sysfs PATH] [--cdev NAME]
 * Finds the node's identity (on the host: ivrdmad's host node; in a guest,
 * where /dev/infiniband/<cdev> is the driver's command device: the node
 * of my IVPosition in the region's directory) and writes the sysfs tree
 * (default $IVRDMA_DIR/sysfs) and, on the host, /dev/infiniband/<cdev>.
 * Idempotent:
 * run it again after the node's GID or LID changed. --cdev names the
 * command device (default ivrdma0). Returns the exit status.
 */
int ivrdma_cmd_setup(int argc, char **argv);

/*
 * ivrdma env [--sysfs PATH] [--provider PATH]
 * Prints `export NAME=value` lines for a shell (eval "$(ivrdma env)") or
 * mpirun -x: IVRDMA_DIR, SYSFS_PATH and, unless the provider is installed,
 * RDMAV_DRIVERS, and outside a guest LD_PRELOAD of the completion channel
 * library (next to a build tree's provider, or the installed one).
 * The provider is the given one, else this build tree's, else the
 * installed one. Returns the exit status.
 */
int ivrdma_cmd_env(int argc, char **argv);

#endif
