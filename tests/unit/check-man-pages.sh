#!/usr/bin/env bash
# The man pages (docs/man/) name every long option the programs take, and
# no option the programs do not take.
#   check-man-pages.sh IVRDMAD IVRDMA MAN_DIR
set -euo pipefail
ivrdmad=${1:?usage: check-man-pages.sh IVRDMAD IVRDMA MAN_DIR}
ivrdma=${2:?}
man=${3:?}
bad=0

# Long options in a program's usage text, one a line.
options_of() { grep -o -- '--[a-z][a-z-]*' | sort -u; }
# Long options in a roff page (written \-\-name there).
options_in_page() { grep -o -- '\\-\\-[a-z][a-z\\-]*' "$1" | sed 's/\\-/-/g' | sort -u; }

compare() {
	local page=$1 program=$2 extra=$3
	local in_page
	in_page=$(options_in_page "$man/$page")
	for o in $program; do
		grep -qx -- "$o" <<<"$in_page" || { echo "$page: $o is not documented"; bad=1; }
	done
	for o in $in_page; do
		grep -qx -- "$o" <<<"$program"$'\n'"$extra" || { echo "$page: $o is no option"; bad=1; }
	done
}

daemon_opts=$("$ivrdmad" --help | options_of)
tool_opts=$({
	"$ivrdma" --help
	"$ivrdma" setup --no-such-option 2>&1 || true
	"$ivrdma" env --no-such-option 2>&1 || true
	"$ivrdma" status --help 2>&1 || true
} | options_of | grep -vx -- '--no-such-option')
compare ivrdmad.8 "$daemon_opts" ""
# ivrdma.1 also quotes mpirun's and Open MPI's options; ivrdma takes --help
# without listing it.
compare ivrdma.1 "$tool_opts" $'--mca\n--help'
[[ $bad == 0 ]] && echo "check-man-pages: ivrdmad.8 and ivrdma.1 match the options"
exit "$bad"
