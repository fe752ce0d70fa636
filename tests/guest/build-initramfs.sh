#!/usr/bin/env bash
# Builds a small initramfs for guest tests: a static busybox with its applet
# links, an /init script and any extra files (static binaries we build,
# kernel modules, data).
#
#   build-initramfs.sh [--init FILE] [--busybox PATH] OUT.cpio.gz [SRC[:DEST]]...
#
# SRC[:DEST] copies SRC to DEST inside the image (absolute path; default
# /bin/<basename of SRC>), keeping its mode. ELF programs must be static:
# the image has no libc, and a dynamic program would only fail at boot with
# a puzzling "not found".
#
# Writes only next to OUT (a staging dir removed on exit). Needs no root:
# the archive says every file is root's (cpio -R 0:0), and /dev/console
# comes from the kernel's built-in initramfs (CONFIG_INITRAMFS_SOURCE="").
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
init="$here/guest-init.sh"
busybox=$(command -v busybox || echo /bin/busybox)

die() {
	echo "build-initramfs: $*" >&2
	exit 1
}

usage() {
	echo "usage: build-initramfs.sh [--init FILE] [--busybox PATH] OUT.cpio.gz [SRC[:DEST]]..." >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case "$1" in
	--init) init=${2:?--init needs a file}; shift 2 ;;
	--busybox) busybox=${2:?--busybox needs a path}; shift 2 ;;
	-h | --help) usage ;;
	--) shift; break ;;
	-*) usage ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || usage
out=$1
shift

# A dynamic ELF names its interpreter; scripts and data are fine as they are.
require_static() {
	local f=$1
	if [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] &&
		LC_ALL=C readelf -l "$f" 2>/dev/null | grep -q 'program interpreter'; then
		die "$f is dynamically linked; guest programs must be static (-static)"
	fi
}

[ -x "$busybox" ] || die "busybox not found at $busybox (install busybox-static)"
require_static "$busybox"
[ -r "$init" ] || die "init script $init not readable"

outdir=$(cd "$(dirname "$out")" && pwd)
stage=$(mktemp -d "$outdir/.initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,root}

# busybox --list-full names each applet's path (bin/sh, sbin/poweroff, ...).
add_busybox() {
	local applet
	cp "$busybox" "$stage/bin/busybox"
	while read -r applet; do
		if [ -z "$applet" ] || [ "$applet" = bin/busybox ]; then
			continue
		fi
		mkdir -p "$stage/$(dirname "$applet")"
		ln -sf /bin/busybox "$stage/$applet"
	done < <("$busybox" --list-full)
	[ -e "$stage/bin/sh" ] || die "$busybox has no sh applet"
}

# add_file SRC DEST: one file into the image, mode kept.
add_file() {
	local src=$1 dest=$2
	[ -f "$src" ] || die "no such file: $src"
	case "$dest" in /*) ;; *) die "destination must be absolute: $dest" ;; esac
	require_static "$src"
	mkdir -p "$stage$(dirname "$dest")"
	cp -p "$src" "$stage$dest"
}

add_busybox
add_file "$init" /init
chmod 0755 "$stage/init"
for spec in "$@"; do
	case "$spec" in
	*:*) add_file "${spec%%:*}" "${spec#*:}" ;;
	*) add_file "$spec" "/bin/$(basename "$spec")" ;;
	esac
done

# Written beside the stage (not in it: find would list it) and renamed into
# place, so OUT is never a half-written image.
tmp="$stage.cpio.gz"
trap 'rm -rf "$stage" "$tmp"' EXIT
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
	gzip -6n >"$tmp"
mv "$tmp" "$out"
