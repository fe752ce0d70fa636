#!/usr/bin/env bash
# Builds a small initramfs for guest tests: a static busybox with its applet
# links, an /init script, the guest-lib.sh it sources (/lib/ivr/) and any
# extra files (binaries, kernel modules, data).
#
#   build-initramfs.sh [--init FILE] [--busybox PATH] [--libs] OUT.cpio.gz [SRC[:DEST]]...
#
# SRC[:DEST] copies SRC to DEST inside the image (absolute path; default
# /bin/<basename of SRC>), keeping its mode. ELF programs must be static,
# unless --libs is given: then each dynamic ELF brings the shared libraries
# ldd finds for it, and their loader, at the same paths (a dlopen()ed
# library, e.g. a verbs provider, is given as a SRC of its own). Without
# --libs a dynamic program would only fail at boot with a puzzling
# "not found".
#
# Writes only next to OUT (a staging dir removed on exit). Needs no root:
# the archive says every file is root's (cpio -R 0:0), and /dev/console
# comes from the kernel's built-in initramfs (CONFIG_INITRAMFS_SOURCE="").
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
init="$here/guest-init.sh"
libs=0
busybox=$(command -v busybox || echo /bin/busybox)

die() {
	echo "build-initramfs: $*" >&2
	exit 1
}

usage() {
	echo "usage: build-initramfs.sh [--init FILE] [--busybox PATH] [--libs] OUT.cpio.gz [SRC[:DEST]]..." >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case "$1" in
	--init) init=${2:?--init needs a file}; shift 2 ;;
	--busybox) busybox=${2:?--busybox needs a path}; shift 2 ;;
	--libs) libs=1; shift ;;
	-h | --help) usage ;;
	--) shift; break ;;
	-*) usage ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || usage
out=$1
shift

is_elf() {
	local magic=''
	IFS= LC_ALL=C read -r -N 4 magic <"$1" 2>/dev/null || true
	[ "$magic" = $'\x7fELF' ]
}

# A dynamic ELF needs libraries (an executable names its interpreter, a
# library has a dynamic section); scripts and data are fine as they are.
is_dynamic() {
	is_elf "$1" && LC_ALL=C readelf -d "$1" 2>/dev/null | grep '(NEEDED)' >/dev/null
}

require_static() {
	local f=$1
	if [ $libs -eq 0 ] && is_dynamic "$f"; then
		die "$f is dynamically linked; guest programs must be static (-static), or pass --libs"
	fi
}

[ -x "$busybox" ] || die "busybox not found at $busybox (install busybox-static)"
require_static "$busybox"
[ -r "$init" ] || die "init script $init not readable"

outdir=$(cd "$(dirname "$out")" && pwd)
stage=$(mktemp -d "$outdir/.initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,root}

# make_dir DIR: mkdir -p, once per directory (a few hundred files: no
# fork each).
declare -A have_dir=()
make_dir() {
	[ -n "${have_dir[$1]:-}" ] || mkdir -p "$1"
	have_dir[$1]=1
}

# busybox --list-full names each applet's path (bin/sh, sbin/poweroff, ...).
add_busybox() {
	local applet
	cp "$busybox" "$stage/bin/busybox"
	while read -r applet; do
		if [ -z "$applet" ] || [ "$applet" = bin/busybox ]; then
			continue
		fi
		make_dir "$stage/${applet%/*}"
		ln -sf /bin/busybox "$stage/$applet"
	done < <("$busybox" --list-full)
	[ -e "$stage/bin/sh" ] || die "$busybox has no sh applet"
}

# add_file SRC DEST: one file into the image, mode kept (and with --libs,
# what it needs).
add_file() {
	local src=$1 dest=$2
	[ -f "$src" ] || die "no such file: $src"
	case "$dest" in /*) ;; *) die "destination must be absolute: $dest" ;; esac
	require_static "$src"
	make_dir "$stage${dest%/*}"
	cp -pL "$src" "$stage$dest"
	[ $libs -eq 0 ] || ! is_dynamic "$src" || dynamic+=("$src")
}

# add_libs ELF...: the libraries and loader ldd resolves for them, each
# once. One ldd for all (it names each file on a line of its own before
# its libraries): one per file costs a minute for a few hundred.
declare -A have_lib=()
dynamic=()
add_libs() {
	local line path file=$1
	while IFS= read -r line; do
		case "$line" in
		/*:) file=${line%:}; continue ;;
		*'not found'*) die "$file needs a library that is not installed: $line" ;;
		*' => '/*) path=${line#* => }; path=${path%% (*} ;;
		*/*' ('*) path=${line%% (*}; path=${path//[[:space:]]/} ;;
		*) continue ;; # linux-vdso.so.1, statically linked
		esac
		[ -z "${have_lib[$path]:-}" ] || continue
		have_lib[$path]=1
		make_dir "$stage${path%/*}"
		cp -L "$path" "$stage$path"
	done < <(LC_ALL=C ldd "$@" 2>&1 || true)
}

add_busybox
add_file "$init" /init
chmod 0755 "$stage/init"
add_file "$here/guest-lib.sh" /lib/ivr/guest-lib.sh
for spec in "$@"; do
	case "$spec" in
	*:*) add_file "${spec%%:*}" "${spec#*:}" ;;
	*) add_file "$spec" "/bin/$(basename "$spec")" ;;
	esac
done
[ ${#dynamic[@]} -eq 0 ] || add_libs "${dynamic[@]}"

# Written beside the stage (not in it: find would list it) and renamed into
# place, so OUT is never a half-written image.
tmp="$stage.cpio.gz"
trap 'rm -rf "$stage" "$tmp"' EXIT
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
	gzip -6n >"$tmp"
mv "$tmp" "$out"
