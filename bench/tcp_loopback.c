/* What a user compares with when there is no RDMA: TCP over 127.0.0.1
 * between two processes pinned to two cores, with TCP_NODELAY.
 *   ping-pong - a SIZE-byte message there and back, timed per round with the
 *               cycle counter like perftest; half a round trip is reported;
 *   stream    - one side writes CHUNK-byte messages for a while, the other
 *               reads them; bytes received per second.
 *
 * usage: tcp_loopback [-a CPU] [-b CPU] [-s SIZE] [-n ROUNDS] [-t MS] [-c CHUNK]...
 * prints CSV: tcp_pingpong,SIZE,half_rtt_{typical,min,avg,p99},VALUE,usec
 *             tcp_stream,CHUNK,bw,VALUE,MiB/s
 */
#include "bench_common.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void full_write(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n <= 0)
			die("tcp_loopback: write");
		p += n;
		len -= (size_t)n;
	}
}

/* Returns 0 at end of stream before any byte, 1 once len bytes are read. */
static int full_read(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);

		if (n == 0 && got == 0)
			return 0;
		if (n <= 0)
			die("tcp_loopback: read");
		got += (size_t)n;
	}
	return 1;
}

/* The echo side: answers each size-byte message with itself, then drains
 * stream phases, acknowledging each with one byte. */
static void serve(int lfd, int cpu, size_t size, size_t max_chunk)
{
	char *buf = malloc(size > max_chunk ? size : max_chunk), ack = 'k';
	int fd;
	uint64_t rounds, bytes;

	bench_pin(cpu);
	fd = accept(lfd, NULL, NULL);
	if (fd < 0 || !buf)
		die("tcp_loopback: accept");
	bench_tcp_nodelay(fd);
	if (!full_read(fd, &rounds, sizeof(rounds)))
		exit(1);
	for (uint64_t i = 0; i < rounds; i++) {
		full_read(fd, buf, size);
		full_write(fd, buf, size);
	}
	/* Each stream phase: an 8-byte length, that many bytes, one ack byte. */
	while (full_read(fd, &bytes, sizeof(bytes))) {
		while (bytes) {
			ssize_t n = read(fd, buf, bytes < max_chunk ? bytes : max_chunk);

			if (n <= 0)
				die("tcp_loopback: stream read");
			bytes -= (uint64_t)n;
		}
		full_write(fd, &ack, 1);
	}
	exit(0);
}

static void pingpong(int fd, size_t size, uint64_t rounds)
{
	double cpu = bench_cycles_per_usec();
	double *s = calloc(rounds, sizeof(*s));
	char *buf = calloc(1, size);
	uint64_t total = rounds + rounds / 10; /* a tenth more as warm-up */

	if (!s || !buf)
		die("tcp_loopback: calloc");
	full_write(fd, &total, sizeof(total));
	for (uint64_t i = 0; i < total; i++) {
		uint64_t t0 = bench_cycles();

		full_write(fd, buf, size);
		full_read(fd, buf, size);
		if (i >= total - rounds)
			s[i - (total - rounds)] = (double)(bench_cycles() - t0) / cpu / 2;
	}
	bench_emit_latency("tcp_pingpong", size, s, rounds);
	free(s);
	free(buf);
}

/* Streams chunk-byte writes for about ms milliseconds; the rate counts only
 * bytes the receiver acknowledged having read. */
static void stream(int fd, size_t chunk, unsigned ms)
{
	uint64_t per_phase = 64u << 20, bytes = 0, start, now;
	char *buf = calloc(1, chunk), ack;

	if (!buf)
		die("tcp_loopback: calloc");
	per_phase -= per_phase % chunk;
	start = bench_now_ns();
	do {
		full_write(fd, &per_phase, sizeof(per_phase));
		for (uint64_t sent = 0; sent < per_phase; sent += chunk)
			full_write(fd, buf, chunk);
		if (!full_read(fd, &ack, 1))
			die("tcp_loopback: no ack");
		bytes += per_phase;
		now = bench_now_ns();
	} while (now - start < (uint64_t)ms * 1000000u);
	bench_emit("tcp_stream", chunk, "bw",
		   (double)bytes / ((double)(now - start) / 1e9) / 1048576.0, "MiB/s");
	free(buf);
}

int main(int argc, char **argv)
{
	int cpu_a = 0, cpu_b = 1, opt, fd, lfd, status;
	size_t size = 2, chunks[16], nchunks = 0, max_chunk = 65536;
	uint64_t rounds = 20000;
	unsigned ms = 500;
	struct sockaddr_in addr;
	pid_t pid;

	while ((opt = getopt(argc, argv, "a:b:s:n:t:c:")) != -1) {
		switch (opt) {
		case 'a':
			cpu_a = atoi(optarg);
			break;
		case 'b':
			cpu_b = atoi(optarg);
			break;
		case 's':
			size = bench_parse_size(optarg);
			break;
		case 'n':
			rounds = strtoull(optarg, NULL, 0);
			break;
		case 't':
			ms = (unsigned)atoi(optarg);
			break;
		case 'c':
			if (nchunks == 16)
				goto usage;
			chunks[nchunks] = bench_parse_size(optarg);
			if (chunks[nchunks] > max_chunk)
				max_chunk = chunks[nchunks];
			nchunks++;
			break;
		default:
			goto usage;
		}
	}
	if (rounds == 0)
		goto usage;
	bench_cycles_per_usec();
	lfd = bench_tcp_listen_loopback(&addr);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0)
		serve(lfd, cpu_a, size, max_chunk);
	close(lfd);
	bench_pin(cpu_b);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
		die("tcp_loopback: connect");
	bench_tcp_nodelay(fd);
	pingpong(fd, size, rounds);
	for (size_t i = 0; i < nchunks; i++)
		stream(fd, chunks[i], ms);
	shutdown(fd, SHUT_WR);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "tcp_loopback: echo side failed\n");
		return 1;
	}
	return 0;
usage:
	fprintf(stderr, "usage: %s [-a CPU] [-b CPU] [-s SIZE] [-n ROUNDS] [-t MS] [-c CHUNK]...\n",
		argv[0]);
	return 2;
}
