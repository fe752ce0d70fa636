/* The cheapest wakeup one process can give another, against TCP over
 * loopback, in alternating blocks of one process pair. A completion event
 * (ibv_get_cq_event) wakes a thread that sleeps in the kernel; so does a
 * TCP message. The floor of any such wakeup is a futex ping-pong: a store
 * to a shared word and FUTEX_WAKE, the other side asleep in FUTEX_WAIT
 * until then, no file, no socket, no copy. Each block pair gives the ratio
 * of the futex's median half round trip to TCP's, taken milliseconds
 * apart (the host's phase moves both alike); the median over blocks is
 * the figure: what fraction of TCP's latency any design that sleeps can
 * reach on this machine.
 *
 * usage: wakeup_floor [-a CPU] [-b CPU] [-n ROUNDS] [-k BLOCKS]
 * prints CSV: wakeup_floor,2,{futex,tcp}_half_rtt,VALUE,usec
 *             wakeup_floor,2,futex_tcp_ratio{,_p25,_p75},VALUE,x
 */
#include "bench_common.h"

#include <linux/futex.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* The futex word both processes map: the number of the last turn taken. */
static _Atomic uint32_t *word;

static void futex_wait_for(uint32_t want)
{
	uint32_t v;

	while ((v = atomic_load(word)) != want)
		syscall(SYS_futex, word, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void futex_pass(uint32_t to)
{
	atomic_store(word, to);
	syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* One round: the asker passes an odd turn, the answerer answers with the next. */
static void futex_round(uint32_t round, int asker)
{
	if (asker) {
		futex_pass(2 * round + 1);
		futex_wait_for(2 * round + 2);
	} else {
		futex_wait_for(2 * round + 1);
		futex_pass(2 * round + 2);
	}
}

static void tcp_round(int fd, int asker)
{
	char b[2] = {0};

	if (asker && write(fd, b, 2) != 2)
		die("wakeup_floor: write");
	if (recv(fd, b, 2, MSG_WAITALL) != 2)
		die("wakeup_floor: read");
	if (!asker && write(fd, b, 2) != 2)
		die("wakeup_floor: write");
}

/* A connected TCP pair over 127.0.0.1 with TCP_NODELAY: fds[0] parent's, fds[1] child's. */
static void tcp_pair(int fds[2])
{
	struct sockaddr_in a;
	int l = bench_tcp_listen_loopback(&a);

	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&a, sizeof(a)))
		die("wakeup_floor: connect");
	fds[1] = accept(l, NULL, NULL);
	if (fds[1] < 0)
		die("wakeup_floor: accept");
	bench_tcp_nodelay(fds[0]);
	bench_tcp_nodelay(fds[1]);
	close(l);
}

/* Median half round trip (usec) of one block; the answerer's figure is unused. */
static double block(int fd, int asker, int tcp, uint32_t *round, uint64_t n, double *t)
{
	double cpu = bench_cycles_per_usec();

	for (uint64_t i = 0; i < n; i++) {
		uint64_t t0 = bench_cycles();

		if (tcp)
			tcp_round(fd, asker);
		else
			futex_round((*round)++, asker);
		t[i] = (double)(bench_cycles() - t0) / cpu / 2;
	}
	return bench_quantile(t, n, 0.5);
}

static void run(int fd, int asker, uint64_t n, unsigned k)
{
	double *t = calloc(n, sizeof(*t)), *f = calloc(k, sizeof(*f)), *c = calloc(k, sizeof(*c)),
	       *r = calloc(k, sizeof(*r));
	uint32_t round = 0;

	if (!t || !f || !c || !r)
		die("wakeup_floor: calloc");
	block(fd, asker, 0, &round, n, t); /* warm-up */
	block(fd, asker, 1, &round, n, t);
	for (unsigned i = 0; i < k; i++) {
		f[i] = block(fd, asker, 0, &round, n, t);
		c[i] = block(fd, asker, 1, &round, n, t);
		r[i] = f[i] / c[i];
	}
	if (asker) {
		bench_emit("wakeup_floor", 2, "futex_half_rtt", bench_quantile(f, k, 0.5), "usec");
		bench_emit("wakeup_floor", 2, "tcp_half_rtt", bench_quantile(c, k, 0.5), "usec");
		bench_emit("wakeup_floor", 2, "futex_tcp_ratio", bench_quantile(r, k, 0.5), "x");
		bench_emit("wakeup_floor", 2, "futex_tcp_ratio_p25", bench_quantile(r, k, 0.25),
			   "x");
		bench_emit("wakeup_floor", 2, "futex_tcp_ratio_p75", bench_quantile(r, k, 0.75),
			   "x");
	}
	free(t), free(f), free(c), free(r);
}

int main(int argc, char **argv)
{
	int cpu_a = 0, cpu_b = 1, opt, fds[2], status;
	uint64_t n = 200;
	unsigned k = 50;
	pid_t pid;

	while ((opt = getopt(argc, argv, "a:b:n:k:")) != -1) {
		switch (opt) {
		case 'a':
			cpu_a = atoi(optarg);
			break;
		case 'b':
			cpu_b = atoi(optarg);
			break;
		case 'n':
			n = strtoull(optarg, NULL, 0);
			break;
		case 'k':
			k = (unsigned)atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-a CPU] [-b CPU] [-n ROUNDS] [-k BLOCKS]\n",
				argv[0]);
			return 2;
		}
	}
	if (!n || !k)
		return 2;
	word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (word == MAP_FAILED)
		die("wakeup_floor: mmap");
	tcp_pair(fds);
	pid = fork();
	if (pid < 0)
		die("wakeup_floor: fork");
	if (pid == 0) {
		close(fds[0]);
		bench_pin(cpu_a);
		run(fds[1], 0, n, k);
		_exit(0);
	}
	close(fds[1]);
	bench_pin(cpu_b);
	run(fds[0], 1, n, k);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		die("wakeup_floor: answerer failed");
	return 0;
}
