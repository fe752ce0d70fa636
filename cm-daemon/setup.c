// SPDX-License-Identifier: MIT
/*
 * `ivrdma setup` and `ivrdma env`.
 *
 * Where the kernel has no RDMA core, libibverbs 44 finds devices by
 * scanning $SYSFS_PATH/class/infiniband_verbs; it then opens
 * /dev/infiniband/<entry> (a character device whose numbers match the
 * entry's `dev` file, 0:0 = any) and reads node GUID, GIDs and pkeys from
 * $SYSFS_PATH/class/infiniband/<ibdev>. setup writes that tree from the
 * node directory, formatted as the kernel formats it.
 *
 * On the host the node is the host node and ivrdmad says which it is. In a
 * guest /dev/infiniband/<cdev> is the driver's command device: setup asks
 * no daemon, it maps the region behind it (BAR2), takes its peer ID
 * (IVPosition) and finds that peer's node in the region's directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <json-c/json.h>

#include "ctl_client.h"
#include "ivshmem_transport.h"
#include "region.h"
#include "shm_atomic.h"
#include "setup.h"

#define DEFAULT_DIR	"/run/ivrdma"
#define CDEV_DIR	"/dev/infiniband" /* fixed in libibverbs (RDMA_CDEV_DIR) */
#define DEFAULT_CDEV	"ivrdma0"	  /* the guest driver's command device has this name */
#define HOST_CDEV	"ivrdma_host"	  /* the driver's host-mode one (its parameter host=1) */
#define IBDEV_NAME	"ivrdma0"	  /* the provider matches names starting "ivrdma" */
#define UVERBS_ABI	6		  /* IB_USER_VERBS_ABI_VERSION, what the provider accepts */
#define PROVIDER_SO	"libivrdma-rdmav34.so"
#define PRELOAD_SO	"libivrdma-preload.so"
#define PROVIDER_SUFFIX "-rdmav34.so" /* libibverbs appends it to RDMAV_DRIVERS paths */

/* Where `cmake --install` (and the Debian package) put them: CMakeLists.txt. */
#ifndef IVRDMA_INSTALLED_PROVIDER
#define IVRDMA_INSTALLED_PROVIDER "/usr/local/lib/libibverbs/" PROVIDER_SO
#endif
#ifndef IVRDMA_INSTALLED_DRIVER
#define IVRDMA_INSTALLED_DRIVER "/etc/libibverbs.d/ivrdma.driver"
#endif
#ifndef IVRDMA_INSTALLED_PRELOAD
#define IVRDMA_INSTALLED_PRELOAD "/usr/local/lib/ivrdma/" PRELOAD_SO
#endif

struct node_ident {
	char name[64];
	uint64_t guid;
	uint8_t gid[16];
	unsigned int lid;
	int peer; /* in a guest: my IVPosition */
};

static const char *daemon_dir(void)
{
	const char *dir = getenv("IVRDMA_DIR");

	return dir && *dir ? dir : DEFAULT_DIR;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("ivrdma: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

#define SETUP_USAGE "usage: ivrdma [--dir DIR] setup [--sysfs PATH] [--cdev NAME]\n"
#define ENV_USAGE   "usage: ivrdma [--dir DIR] env [--sysfs PATH] [--provider PATH]\n"

static int usage(const char *text)
{
	fputs(text, stderr);
	return 2;
}

/* --- the node's identity, from ivrdmad ----------------------------------- */

/* "fe80:0000:...": exactly 8 groups of 4 hex digits, as `status` prints. */
static bool parse_gid(const char *s, uint8_t gid[16])
{
	for (int i = 0; i < 8; i++) {
		unsigned int v;
		int n = 0;

		if (sscanf(s, "%4x%n", &v, &n) != 1 || n != 4 || s[4] != (i == 7 ? '\0' : ':'))
			return false;
		gid[2 * i] = (uint8_t)(v >> 8);
		gid[2 * i + 1] = (uint8_t)v;
		s += 5;
	}
	return true;
}

static const char *json_str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int parse_node(json_object *n, struct node_ident *id)
{
	const char *name = json_str(n, "name"), *guid = json_str(n, "guid"),
		   *gid = json_str(n, "gid");
	json_object *lid;
	char *end;

	if (!name || !guid || !gid || !json_object_object_get_ex(n, "lid", &lid))
		return fail("ivrdmad's node entry lacks name, guid, gid or lid");
	snprintf(id->name, sizeof(id->name), "%s", name);
	errno = 0;
	id->guid = strtoull(guid, &end, 16);
	if (errno || *end || end == guid)
		return fail("bad node GUID '%s' from ivrdmad", guid);
	if (!parse_gid(gid, id->gid))
		return fail("bad GID '%s' from ivrdmad", gid);
	id->lid = (unsigned int)json_object_get_int(lid);
	if (id->lid == 0 || id->lid >= 0xc000) /* unicast LIDs only */
		return fail("bad LID %u from ivrdmad", id->lid);
	return 0;
}

/*
 * The host's node: a host process attaches through DIR/host.sock, so the
 * provider's port is the host node's.
 */
static int find_host_node(json_object *doc, struct node_ident *id)
{
	json_object *nodes;

	if (!json_object_object_get_ex(doc, "nodes", &nodes) ||
	    !json_object_is_type(nodes, json_type_array))
		return fail("no node directory in ivrdmad's status");
	for (size_t i = 0; i < json_object_array_length(nodes); i++) {
		json_object *n = json_object_array_get_idx(nodes, i);
		const char *kind = json_str(n, "kind");

		if (kind && !strcmp(kind, "host"))
			return parse_node(n, id);
	}
	return fail("ivrdmad lists no host node");
}

static int query_host_node(struct node_ident *id)
{
	char err[256];
	json_object *doc = ctl_request(daemon_dir(), "status", err, sizeof(err));
	int rc;

	if (!doc)
		return fail("%s", err);
	rc = find_host_node(doc, id);
	json_object_put(doc);
	return rc;
}

/* --- the node's identity, in a guest ---------------------------------------- */

/*
 * What /dev/infiniband/<cdev> is: the guest driver's command device (then
 * ivshmem gets the path of the ivshmem device behind it), the driver's
 * host-mode one, or neither. Returns an enum ivt_cmd_device, or -1 after a
 * message (the driver's, but unusable).
 */
static int cmd_device(const char *cdev, char *ivshmem, size_t len)
{
	char path[PATH_MAX], err[256] = "";
	int fd, rc;

	snprintf(path, sizeof(path), "%s/%s", CDEV_DIR, cdev);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return IVT_CMD_OTHER;
	rc = ivt_guest_cmd_device(fd, ivshmem, len, err, sizeof(err));
	close(fd);
	if (rc < 0) {
		fail("%s: %s", path, err);
		return -1;
	}
	return rc;
}

/* My peer (IVPosition) and its node, read from the region's directory. */
static int read_guest_node(const struct ivrdma_region *r, int peer_id, struct node_ident *id)
{
	struct ivrdma_peer *p = peer_id >= 0 ? ivrdma_region_peer(r, (uint32_t)peer_id) : NULL;
	struct ivrdma_node *n;

	if (!p || shm_load_acquire32(&p->state) != IVRDMA_PEER_ACTIVE)
		return fail("peer %d (IVPosition) is not active in the region's peer table",
			    peer_id);
	n = ivrdma_region_node(r, shm_load_relaxed16(&p->node));
	if (!n || shm_load_acquire32(&n->state) != IVRDMA_NODE_ACTIVE)
		return fail("peer %d's node is not an active node of the directory", peer_id);
	snprintf(id->name, sizeof(id->name), "%.*s", (int)sizeof(n->name), n->name);
	id->guid = n->node_guid;
	memcpy(id->gid, n->gid, sizeof(id->gid));
	id->lid = n->lid;
	if (id->lid == 0 || id->lid >= 0xc000)
		return fail("bad LID %u in the directory", id->lid);
	return 0;
}

static int query_guest_node(const char *ivshmem, struct node_ident *id)
{
	struct ivt_options opts = {.backend = IVT_BACKEND_GUEST, .path = ivshmem};
	struct ivrdma_region r;
	const char *why = "";
	struct ivt *t;
	char err[256];
	int rc;

	rc = ivt_attach(&opts, &t, err, sizeof(err));
	if (rc)
		return fail("%s: %s", ivshmem, err);
	rc = ivrdma_region_open(&r, ivt_region_base(t), ivt_region_size(t), &why);
	if (rc)
		rc = fail("%s: region rejected: %s", ivshmem, why);
	else
		rc = read_guest_node(&r, ivt_peer_id(t), id);
	if (!rc)
		id->peer = ivt_peer_id(t);
	ivt_detach(t);
	return rc;
}

/* --- writing the tree ------------------------------------------------------ */

static int mkdirs(const char *path)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return fail("bad directory name '%s'", path);
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;

		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return fail("cannot create %s: %s", buf, strerror(errno));
		if (saved == '\0')
			return 0;
		*p = saved;
	}
}

/*
 * Writes root/rel atomically (temporary file, then rename): a verbs
 * program reading while setup rewrites a GID sees the old or the new one.
 * The temporary file is this process's own: the udev rule's setup and one
 * run by hand may write the same tree at the same time.
 */
static int put_file(const char *root, const char *rel, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int put_file(const char *root, const char *rel, const char *fmt, ...)
{
	char path[PATH_MAX], tmp[PATH_MAX + 32];
	va_list ap;
	FILE *f;
	int ok;

	if (snprintf(path, sizeof(path), "%s/%s", root, rel) >= (int)sizeof(path))
		return fail("path too long: %s/%s", root, rel);
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	f = fopen(tmp, "w");
	if (!f)
		return fail("cannot write %s: %s", tmp, strerror(errno));
	va_start(ap, fmt);
	ok = vfprintf(f, fmt, ap) >= 0;
	va_end(ap);
	if (fclose(f) != 0 || !ok || rename(tmp, path) < 0) {
		int err = errno;

		unlink(tmp);
		return fail("cannot write %s: %s", path, strerror(err));
	}
	return 0;
}

static int make_dirs(const char *root, const char *cdev)
{
	static const char *const dirs[] = {
	    "class/infiniband/" IBDEV_NAME "/ports/1/gids",
	    "class/infiniband/" IBDEV_NAME "/ports/1/gid_attrs/types",
	    "class/infiniband/" IBDEV_NAME "/ports/1/pkeys",
	};
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (snprintf(path, sizeof(path), "%s/%s", root, dirs[i]) >= (int)sizeof(path))
			return fail("path too long: %s", root);
		if (mkdirs(path))
			return 1;
	}
	if (snprintf(path, sizeof(path), "%s/class/infiniband_verbs/%s", root, cdev) >=
	    (int)sizeof(path))
		return fail("path too long: %s", root);
	return mkdirs(path);
}

/*
 * One command device per tree: when setup moves between /dev/null's node
 * and the driver's host-mode device, the entry of the other goes, or
 * libibverbs would list ivrdma0 twice.
 */
static void remove_uverbs(const char *root, const char *cdev)
{
	static const char *const files[] = {"ibdev", "dev", "abi_version"};
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (snprintf(path, sizeof(path), "%s/class/infiniband_verbs/%s/%s", root, cdev,
			     files[i]) < (int)sizeof(path))
			unlink(path);
	if (snprintf(path, sizeof(path), "%s/class/infiniband_verbs/%s", root, cdev) <
	    (int)sizeof(path))
		rmdir(path);
}

/* class/infiniband_verbs: what libibverbs' sysfs scan reads. */
static int write_uverbs(const char *root, const char *cdev, dev_t rdev)
{
	char rel[128];
	int rc = put_file(root, "class/infiniband_verbs/abi_version", "%d\n", UVERBS_ABI);

	snprintf(rel, sizeof(rel), "class/infiniband_verbs/%s/ibdev", cdev);
	rc = rc ?: put_file(root, rel, "%s\n", IBDEV_NAME);
	snprintf(rel, sizeof(rel), "class/infiniband_verbs/%s/dev", cdev);
	rc = rc ?: put_file(root, rel, "%u:%u\n", major(rdev), minor(rdev));
	snprintf(rel, sizeof(rel), "class/infiniband_verbs/%s/abi_version", cdev);
	return rc ?: put_file(root, rel, "%d\n", UVERBS_ABI);
}

static void format_guid(uint64_t guid, char *out, size_t len)
{
	snprintf(out, len, "%04x:%04x:%04x:%04x", (unsigned int)(guid >> 48) & 0xffff,
		 (unsigned int)(guid >> 32) & 0xffff, (unsigned int)(guid >> 16) & 0xffff,
		 (unsigned int)guid & 0xffff);
}

/* Eight groups of four hex digits, uncompressed, like the kernel's %pI6. */
static void format_gid(const uint8_t g[16], char *out, size_t len)
{
	int n = 0;

	for (int i = 0; i < 16; i += 2)
		n += snprintf(out + n, len - (size_t)n, "%s%02x%02x", i ? ":" : "", g[i], g[i + 1]);
}

/* class/infiniband/<ibdev>: the device attributes, as the kernel prints them. */
static int write_ibdev(const char *root, const struct node_ident *id)
{
	const char *d = "class/infiniband/" IBDEV_NAME;
	char rel[128], guid[24];
	struct utsname u;
	int rc = 0;

	format_guid(id->guid, guid, sizeof(guid));
	if (uname(&u) < 0)
		snprintf(u.nodename, sizeof(u.nodename), "%s", id->name);
#define PUT(file, ...)                                                                             \
	(snprintf(rel, sizeof(rel), "%s/%s", d, file), put_file(root, rel, __VA_ARGS__))
	rc = rc ?: PUT("node_type", "1: CA\n");
	rc = rc ?: PUT("node_guid", "%s\n", guid);
	rc = rc ?: PUT("sys_image_guid", "%s\n", guid);
	rc = rc ?: PUT("fw_ver", "%s\n", IVRDMA_VERSION);
	rc = rc ?: PUT("board_id", "IVRDMA_IVSHMEM\n");
	rc = rc ?: PUT("hca_type", "ivrdma\n");
	rc = rc ?: PUT("node_desc", "%s %s\n", u.nodename, IBDEV_NAME);
#undef PUT
	return rc;
}

/* ports/1: the one GID and pkey libibverbs reads, plus what IB tools show. */
static int write_port(const struct node_ident *id, const char *root)
{
	char rel[128], gid[48];
	int rc = 0;

	format_gid(id->gid, gid, sizeof(gid));
#define PUT(file, ...)                                                                             \
	(snprintf(rel, sizeof(rel), "class/infiniband/%s/ports/1/%s", IBDEV_NAME, file),           \
	 put_file(root, rel, __VA_ARGS__))
	rc = rc ?: PUT("gids/0", "%s\n", gid);
	rc = rc ?: PUT("gid_attrs/types/0", "IB/RoCE v1\n");
	rc = rc ?: PUT("pkeys/0", "0xffff\n");
	rc = rc ?: PUT("lid", "0x%x\n", id->lid);
	rc = rc ?: PUT("sm_lid", "0x1\n"); /* ivrdmad, on the host node, plays subnet manager */
	rc = rc ?: PUT("lid_mask_count", "0\n");
	rc = rc ?: PUT("link_layer", "InfiniBand\n");
	rc = rc ?: PUT("rate", "100 Gb/sec (4X EDR)\n");
#undef PUT
	return rc;
}

/*
 * /dev/infiniband/<cdev> must open O_RDWR as a character device. In a
 * guest it is the driver's command device and already exists. On the host
 * any character device does, because the provider swaps it for a
 * read-only /dev/null at once: a /dev/null node (1:3), or a symlink to
 * /dev/null where mknod is not allowed (containers).
 */
static int create_cdev(const char *path)
{
	if (mkdirs(CDEV_DIR))
		return 1;
	if (mknod(path, S_IFCHR | 0666, makedev(1, 3)) == 0) {
		chmod(path, 0666); /* past the umask: libibverbs opens it O_RDWR as any user */
		return 0;
	}
	if (symlink("/dev/null", path) == 0)
		return 0;
	return fail("cannot create %s: %s", path, strerror(errno));
}

static int ensure_cdev(const char *cdev, dev_t *rdev)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", CDEV_DIR, cdev);
	if (stat(path, &st) < 0) {
		if (errno != ENOENT)
			return fail("cannot use %s: %s", path, strerror(errno));
		if (create_cdev(path))
			return 1;
		if (stat(path, &st) < 0)
			return fail("cannot use %s: %s", path, strerror(errno));
	}
	if (!S_ISCHR(st.st_mode))
		return fail("%s exists and is not a character device", path);
	*rdev = st.st_rdev;
	return 0;
}

static int default_sysfs(char *out, size_t len)
{
	if (snprintf(out, len, "%s/sysfs", daemon_dir()) >= (int)len)
		return fail("directory name too long: %s", daemon_dir());
	return 0;
}

int ivrdma_cmd_setup(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"sysfs", required_argument, NULL, 's'},
	    {"cdev", required_argument, NULL, 'c'},
	    {NULL, 0, NULL, 0},
	};
	const char *cdev = NULL;
	char root[PATH_MAX], ivshmem[64];
	struct node_ident id = {.peer = -1};
	dev_t rdev;
	int c, kind;

	if (default_sysfs(root, sizeof(root)))
		return 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 's')
			snprintf(root, sizeof(root), "%s", optarg);
		else if (c == 'c' && !strchr(optarg, '/') && strlen(optarg) < 32)
			cdev = optarg;
		else
			return usage(SETUP_USAGE);
	}
	if (optind != argc)
		return usage(SETUP_USAGE);
	kind = cmd_device(cdev ? cdev : DEFAULT_CDEV, ivshmem, sizeof(ivshmem));
	if (!cdev)
		cdev = kind == IVT_CMD_OTHER && cmd_device(HOST_CDEV, NULL, 0) == IVT_CMD_HOST
			   ? HOST_CDEV
			   : DEFAULT_CDEV;
	if (kind < 0)
		return 1;
	if ((kind == IVT_CMD_GUEST ? query_guest_node(ivshmem, &id) : query_host_node(&id)) ||
	    ensure_cdev(cdev, &rdev) || make_dirs(root, cdev) || write_ibdev(root, &id) ||
	    write_port(&id, root) || write_uverbs(root, cdev, rdev))
		return 1;
	remove_uverbs(root, strcmp(cdev, HOST_CDEV) ? HOST_CDEV : DEFAULT_CDEV);
	printf("%s: node %s, LID %u, sysfs tree %s, command device %s/%s", IBDEV_NAME, id.name,
	       id.lid, root, CDEV_DIR, cdev);
	if (kind == IVT_CMD_GUEST)
		printf(" (guest: %s, IVPosition %d)", ivshmem, id.peer);
	else if (!strcmp(cdev, HOST_CDEV))
		printf(" (the driver's: completion channels without LD_PRELOAD)");
	putchar('\n');
	return 0;
}

/* --- env ------------------------------------------------------------------- */

/* Single-quoted for a POSIX shell. */
static void print_export(const char *name, const char *value)
{
	printf("export %s='", name);
	for (const char *p = value; *p; p++) {
		if (*p == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*p);
	}
	puts("'");
}

/*
 * SYSFS_PATH must be absolute to mean the same in every program's working
 * directory.
 */
static int absolute(const char *path, char *out, size_t len)
{
	char cwd[PATH_MAX];

	if (path[0] == '/')
		return snprintf(out, len, "%s", path) >= (int)len ? fail("path too long") : 0;
	if (!getcwd(cwd, sizeof(cwd)))
		return fail("getcwd: %s", strerror(errno));
	return snprintf(out, len, "%s/%s", cwd, path) >= (int)len ? fail("path too long") : 0;
}

/*
 * RDMAV_DRIVERS takes a path without the "-rdmav34.so" libibverbs appends.
 * Accepts either form; a path relative to the current directory is made
 * absolute (libibverbs only treats absolute paths as paths).
 */
static int provider_prefix(const char *given, char *out, size_t len)
{
	size_t n, sl = strlen(PROVIDER_SUFFIX);

	if (absolute(given, out, len))
		return 1;
	n = strlen(out);
	if (n > sl && !strcmp(out + n - sl, PROVIDER_SUFFIX))
		out[n - sl] = '\0';
	return 0;
}

/* A build tree keeps the provider at <build>/provider, next to <build>/cm-daemon. */
static bool find_build_provider(char *out, size_t len)
{
	char exe[PATH_MAX], so[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n <= 0)
		return false;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (!slash)
		return false;
	*slash = '\0';
	snprintf(so, sizeof(so), "%s/../provider/%s", exe, PROVIDER_SO);
	if (access(so, R_OK) != 0 || !realpath(so, exe))
		return false;
	return provider_prefix(exe, out, len) == 0;
}

/*
 * Host processes get ibv_create_comp_channel() from libivrdma-preload.so
 * (provider/preload/), which a build tree keeps next to the provider.
 */
static bool preload_beside(const char *provider_prefix, char *out, size_t len)
{
	const char *slash = strrchr(provider_prefix, '/');

	if (!slash || snprintf(out, len, "%.*s/%s", (int)(slash - provider_prefix), provider_prefix,
			       PRELOAD_SO) >= (int)len)
		return false;
	return access(out, R_OK) == 0;
}

/*
 * Which provider and preload library: the given one, else the build
 * tree's (this program's own), else the installed ones. RDMAV_DRIVERS
 * names the provider unless libibverbs finds it by itself (installed,
 * with its driver file); the installed preload library lives in a private
 * directory (IVRDMA_INSTALLED_PRELOAD).
 */
static int print_env(const char *sysfs, const char *provider)
{
	char prefix[PATH_MAX], root[PATH_MAX], dev[64], preload[PATH_MAX + 32] = "";
	bool have = false, installed = false;

	if (absolute(sysfs, root, sizeof(root)))
		return 1;
	if (provider) {
		if (provider_prefix(provider, prefix, sizeof(prefix)))
			return 1;
		have = true;
	} else {
		have = find_build_provider(prefix, sizeof(prefix));
	}
	if (have) {
		if (!preload_beside(prefix, preload, sizeof(preload)))
			preload[0] = '\0';
	} else if (access(IVRDMA_INSTALLED_PROVIDER, R_OK) == 0) {
		installed = true;
		if (access(IVRDMA_INSTALLED_DRIVER, R_OK) != 0) {
			if (provider_prefix(IVRDMA_INSTALLED_PROVIDER, prefix, sizeof(prefix)))
				return 1;
			have = true;
		}
	} else if (access(IVRDMA_INSTALLED_DRIVER, R_OK) == 0) {
		installed = true; /* installed elsewhere: libibverbs knows where */
	} else {
		return fail("cannot find %s (not in this build tree, not installed at %s): "
			    "pass --provider PATH or install it",
			    PROVIDER_SO, IVRDMA_INSTALLED_PROVIDER);
	}
	if (installed && access(IVRDMA_INSTALLED_PRELOAD, R_OK) == 0)
		snprintf(preload, sizeof(preload), "%s", IVRDMA_INSTALLED_PRELOAD);
	print_export("IVRDMA_DIR", daemon_dir());
	print_export("SYSFS_PATH", root);
	if (have)
		print_export("RDMAV_DRIVERS", prefix);
	/* The driver's command devices (a guest's, the host-mode one) make completion channels. */
	if (preload[0] && cmd_device(DEFAULT_CDEV, dev, sizeof(dev)) == IVT_CMD_OTHER &&
	    cmd_device(HOST_CDEV, NULL, 0) == IVT_CMD_OTHER)
		print_export("LD_PRELOAD", preload);
	return 0;
}

int ivrdma_cmd_env(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"sysfs", required_argument, NULL, 's'},
	    {"provider", required_argument, NULL, 'p'},
	    {NULL, 0, NULL, 0},
	};
	const char *provider = getenv("IVRDMA_PROVIDER");
	char root[PATH_MAX];
	int c;

	if (default_sysfs(root, sizeof(root)))
		return 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 's')
			snprintf(root, sizeof(root), "%s", optarg);
		else if (c == 'p')
			provider = optarg;
		else
			return usage(ENV_USAGE);
	}
	if (optind != argc)
		return usage(ENV_USAGE);
	return print_env(root, provider && *provider ? provider : NULL);
}
