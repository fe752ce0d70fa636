#!/usr/bin/env bash
# Prints the path of a cached, fresh Debian 12 (bookworm) root file system
# as a tarball, making it first if it is not there: debootstrap --variant=
# minbase with the stock verbs tools (ibverbs-utils) and systemd (to boot
# it with systemd-nspawn), from the Debian mirror apt uses on this machine
# (or $IVRDMA_DEBIAN_MIRROR).
#
#   make-chroot.sh CACHE_DIR      -> CACHE_DIR/bookworm-minbase-verbs-systemd.tar.zst
#
# The first run downloads about 70 MB and takes a few minutes; later runs
# print the path at once. Delete the tarball to make it afresh.
set -euo pipefail

cache=${1:?usage: make-chroot.sh CACHE_DIR}
suite=bookworm
include=ibverbs-utils,systemd
tarball=$cache/$suite-minbase-verbs-systemd.tar.zst

if [[ -s $tarball ]]; then
	echo "$tarball"
	exit 0
fi

# The mirror of the main archive in apt's own configuration.
mirror() {
	if [[ -n ${IVRDMA_DEBIAN_MIRROR:-} ]]; then
		echo "$IVRDMA_DEBIAN_MIRROR"
		return
	fi
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -r $f ]] || continue
		# deb822 stanzas: the URIs of one whose Suites name the release itself.
		uri=$(awk -v s="$suite" '
			/^$/ { if (u && ok) { print u; exit } u = ""; ok = 0 }
			/^URIs:/ { u = $2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
			END { if (u && ok) print u }' "$f" | head -n1)
		[[ -n $uri ]] && { echo "$uri"; return; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -r $f ]] || continue
		uri=$(awk -v s="$suite" '$1 == "deb" && $3 == s { print $2; exit }' "$f")
		[[ -n $uri ]] && { echo "$uri"; return; }
	done
	echo http://deb.debian.org/debian
}

command -v debootstrap >/dev/null || {
	echo "make-chroot: debootstrap is not installed (scripts/install-deps.sh)" >&2
	exit 1
}
[[ $(id -u) -eq 0 ]] || { echo "make-chroot: needs root" >&2; exit 1; }

mkdir -p "$cache"
work=$(mktemp -d "$cache/debootstrap.XXXXXX")
trap 'rm -rf "$work"' EXIT
url=$(mirror)
started=$SECONDS
echo "make-chroot: debootstrap $suite (minbase, $include) from $url" >&2
# In a mount namespace of its own: the /proc debootstrap mounts in the
# root goes with it however it ends (a test killed at its timeout left one
# mounted, under a directory the trap then could not remove).
if ! unshare --mount --propagation private \
	debootstrap --variant=minbase --include="$include" "$suite" "$work/root" "$url" \
	>"$work/debootstrap.log" 2>&1; then
	tail -n 30 "$work/debootstrap.log" >&2
	[[ -f $work/root/debootstrap/debootstrap.log ]] && tail -n 30 "$work/root/debootstrap/debootstrap.log" >&2
	exit 1
fi
# Keep the image small: apt's downloaded packages are not part of it.
rm -rf "$work/root/var/cache/apt/archives/"*.deb
tar -C "$work/root" --numeric-owner -I 'zstd -T0 -3' -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
echo "make-chroot: made $tarball in $((SECONDS - started)) s" >&2
echo "$tarball"
