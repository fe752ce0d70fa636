#!/usr/bin/env bash
# Builds the Debian packages ivrdma and ivrdma-dkms with dpkg-buildpackage
# (debhelper, debian/) from a copy of this tree in OUT/src (the files git
# tracks or would track; without git, or for a user git does not trust
# here, all but build*/ and .git), so the source tree stays clean. Prints
# the paths of the .deb files, which land in OUT (default build/deb).
#
#   bash scripts/build-deb.sh [OUT]
#
# Needs the build dependencies in debian/control (scripts/install-deps.sh
# installs them); no root.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
out=${1:-build/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=$(sed -n 's/^project(ivrdma VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
deb_version=$(dpkg-parsechangelog -S Version -l debian/changelog)
if [[ $version != "$deb_version" ]]; then
	echo "build-deb: CMakeLists.txt says $version, debian/changelog $deb_version" >&2
	exit 1
fi

src=$out/src
rm -rf "$src"
mkdir -p "$src"
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git -C "$top" ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done |
		tar -C "$top" --null -T - -cf - | tar -C "$src" -xf -
else
	tar -C "$top" --exclude='./build*' --exclude=./.git --exclude=./out -cf - . | tar -C "$src" -xf -
fi
rm -f "$out"/ivrdma*_"$version"_*.deb "$out"/ivrdma_"$version"_*.buildinfo \
	"$out"/ivrdma_"$version"_*.changes

echo "build-deb: dpkg-buildpackage in $src (log: $out/build.log)" >&2
if ! (cd "$src" && dpkg-buildpackage -b -uc -us -j"$(nproc)") >"$out/build.log" 2>&1; then
	tail -n 40 "$out/build.log" >&2
	echo "build-deb: failed; the whole log is $out/build.log" >&2
	exit 1
fi
ls "$out"/ivrdma*_"$version"_*.deb
