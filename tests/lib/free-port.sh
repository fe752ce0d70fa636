# shellcheck shell=bash
# free_port: prints a TCP port for a test's server. Unused, and below the
# kernel's ephemeral range, where no client connection (of a test running
# beside this one) can hold it. Status 1 if none was found.
free_port() {
	local low p _
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % (low - 20000)))
		ss -Htan "sport = :$p" 2>/dev/null | grep . >/dev/null || { echo "$p"; return 0; }
	done
	echo "no free TCP port below $low" >&2
	return 1
}
