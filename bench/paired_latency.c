/* Verbs latency and the memory limit, measured in turns by the same two
 * processes. The host moves this machine's virtual CPUs around: a
 * cache-line round trip costs 4x more in some seconds than in others. So
 * one process pair alternates short blocks: a cache-line ping-pong (as
 * cacheline_pingpong does), then a verbs ping-pong on ivrdma0 (as
 * perftest's write, send, read and atomic latency tests do), again and
 * again. Each block pair gives a ratio of medians taken a few hundred
 * microseconds apart; the median over blocks is the figure.
 *
 * usage: paired_latency [-a CPU] [-b CPU] [-n ROUNDS] [-k BLOCKS] [-d DEV] [OP...]
 *   OP: write send read atomic (all by default)
 * prints CSV: paired_latency,SIZE,OP_{half_rtt,cacheline,ratio},VALUE,{usec,x}
 * Run under `ivrdma env` (the provider and its daemon).
 */
#include "bench_common.h"
#include "bench_verbs.h"

#include <infiniband/verbs.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum op { OP_WRITE, OP_SEND, OP_READ, OP_ATOMIC, NR_OPS };
static const char *const op_names[NR_OPS] = {"write", "send", "read", "atomic"};

/* What the two sides tell each other to connect. */
struct wire {
	uint32_t qpn, rkey;
	uint16_t lid;
	uint64_t addr;
};

struct side {
	bool asker; /* times the rounds; the other side answers */
	struct bench_line *line;
	uint64_t line_seq;
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *send_cq, *recv_cq; /* two, as perftest has them */
	struct ibv_qp *qp;
	struct ibv_mr *mr;
	volatile uint8_t *buf; /* [0]: where the peer writes; [64]: what I send; [128]: atomics */
	struct wire peer;
	uint8_t turn; /* the byte value the next ping-pong round carries */
};

#define BUF_SIZE 4096
#define RX_DEPTH 64

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void xfer(int fd, void *p, size_t n, bool out)
{
	if ((out ? write(fd, p, n) : read(fd, p, n)) != (ssize_t)n)
		die("exchange with the other process");
}

static void post_recv(struct side *s)
{
	struct ibv_sge sge = {(uintptr_t)s->buf + 256, 64, s->mr->lkey};
	struct ibv_recv_wr wr = {.sg_list = &sge, .num_sge = 1}, *bad;

	if (ibv_post_recv(s->qp, &wr, &bad))
		die("ibv_post_recv");
}

static void open_verbs(struct side *s, const char *dev, int sock)
{
	struct ibv_qp_init_attr qa = {
	    .qp_type = IBV_QPT_RC,
	    .cap = {.max_send_wr = 16,
		    .max_recv_wr = RX_DEPTH,
		    .max_send_sge = 1,
		    .max_recv_sge = 1,
		    .max_inline_data = 64},
	};
	struct ibv_port_attr port;
	struct wire me = {0};

	s->ctx = bench_open_device(dev);
	if (!s->ctx)
		die("ibv_open_device (run under `ivrdma env`)");
	s->buf = aligned_alloc(4096, BUF_SIZE);
	s->pd = ibv_alloc_pd(s->ctx);
	s->send_cq = ibv_create_cq(s->ctx, 16, NULL, NULL, 0);
	s->recv_cq = ibv_create_cq(s->ctx, RX_DEPTH, NULL, NULL, 0);
	if (!s->buf || !s->pd || !s->send_cq || !s->recv_cq)
		die("verbs resources");
	memset((void *)s->buf, 0, BUF_SIZE);
	s->mr = ibv_reg_mr(s->pd, (void *)s->buf, BUF_SIZE,
			   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
			       IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC);
	qa.send_cq = s->send_cq;
	qa.recv_cq = s->recv_cq;
	s->qp = ibv_create_qp(s->pd, &qa);
	if (!s->mr || !s->qp || ibv_query_port(s->ctx, 1, &port))
		die("verbs resources");
	me = (struct wire){s->qp->qp_num, s->mr->rkey, port.lid, (uintptr_t)s->buf};
	xfer(sock, &me, sizeof(me), true);
	xfer(sock, &s->peer, sizeof(s->peer), false);
}

static void connect_qp(struct side *s)
{
	struct ibv_qp_attr a = {
	    .qp_state = IBV_QPS_INIT,
	    .port_num = 1,
	    .qp_access_flags =
		IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC,
	};

	if (ibv_modify_qp(s->qp, &a,
			  IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
		die("INIT");
	for (int i = 0; i < RX_DEPTH; i++)
		post_recv(s);
	a = (struct ibv_qp_attr){
	    .qp_state = IBV_QPS_RTR,
	    .path_mtu = IBV_MTU_4096,
	    .dest_qp_num = s->peer.qpn,
	    .max_dest_rd_atomic = 1,
	    .min_rnr_timer = 1,
	    .ah_attr = {.dlid = s->peer.lid, .port_num = 1},
	};
	if (ibv_modify_qp(s->qp, &a,
			  IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			      IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		die("RTR");
	a = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTS,
				 .timeout = 14,
				 .retry_cnt = 7,
				 .rnr_retry = 7,
				 .max_rd_atomic = 1};
	if (ibv_modify_qp(s->qp, &a,
			  IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
			      IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC))
		die("RTS");
}

static struct ibv_wc wait_one(struct ibv_cq *cq)
{
	struct ibv_wc wc;
	int n;

	while ((n = ibv_poll_cq(cq, 1, &wc)) == 0)
		;
	if (n < 0 || wc.status != IBV_WC_SUCCESS) {
		fprintf(stderr, "paired_latency: completion %s\n",
			n < 0 ? "poll failed" : ibv_wc_status_str(wc.status));
		exit(1);
	}
	return wc;
}

static void post(struct side *s, enum ibv_wr_opcode opcode, uint64_t local_off, uint32_t len)
{
	struct ibv_sge sge = {(uintptr_t)s->buf + local_off, len, s->mr->lkey};
	struct ibv_send_wr wr =
			       {
				   .sg_list = &sge,
				   .num_sge = 1,
				   .opcode = opcode,
				   .send_flags = IBV_SEND_SIGNALED | (opcode == IBV_WR_RDMA_WRITE ||
									      opcode == IBV_WR_SEND
									  ? IBV_SEND_INLINE
									  : 0),
				   .wr.rdma = {s->peer.addr, s->peer.rkey},
			       },
			   *bad;

	if (opcode == IBV_WR_ATOMIC_FETCH_AND_ADD) {
		wr.wr.atomic.remote_addr = s->peer.addr + 128;
		wr.wr.atomic.rkey = s->peer.rkey;
		wr.wr.atomic.compare_add = 1;
	}
	if (ibv_post_send(s->qp, &wr, &bad))
		die("ibv_post_send");
}

static void wait_recv(struct side *s)
{
	wait_one(s->recv_cq);
	post_recv(s);
}

/* One round of 'op', as perftest's latency test does it; 'asker' starts. */
static void round_trip(struct side *s, enum op op)
{
	uint8_t next = (uint8_t)(s->turn + 1);

	switch (op) {
	case OP_WRITE: /* each side writes the other's byte 0 and waits for its own */
		if (!s->asker)
			while (s->buf[0] != next)
				;
		s->buf[64] = next;
		post(s, IBV_WR_RDMA_WRITE, 64, 2);
		wait_one(s->send_cq);
		if (s->asker)
			while (s->buf[0] != next)
				;
		break;
	case OP_SEND: /* a message answers a message */
		if (!s->asker)
			wait_recv(s);
		post(s, IBV_WR_SEND, 64, 2);
		wait_one(s->send_cq);
		if (s->asker)
			wait_recv(s);
		break;
	case OP_READ:
		post(s, IBV_WR_RDMA_READ, 512, 2);
		wait_one(s->send_cq);
		break;
	case OP_ATOMIC:
		post(s, IBV_WR_ATOMIC_FETCH_AND_ADD, 512, 8);
		wait_one(s->send_cq);
		break;
	case NR_OPS:
		break;
	}
	s->turn = next;
}

/*
 * Both sides run the same schedule. One-sided operations leave the
 * answerer nothing to do, so it waits for the asker's cache-line round
 * that closes the block.
 */
static double block(struct side *s, enum op op, bool verbs, uint64_t rounds, double *t)
{
	double cpu = bench_cycles_per_usec();
	bool one_sided = verbs && (op == OP_READ || op == OP_ATOMIC);

	if (one_sided && !s->asker) {
		bench_line_round(s->line, &s->line_seq, false); /* the end of the block */
		return 0;
	}
	for (uint64_t i = 0; i < rounds; i++) {
		uint64_t t0 = bench_cycles();

		if (verbs)
			round_trip(s, op);
		else
			bench_line_round(s->line, &s->line_seq, s->asker);
		t[i] = (double)(bench_cycles() - t0) / cpu / (one_sided ? 1 : 2);
	}
	if (one_sided)
		bench_line_round(s->line, &s->line_seq, true); /* the end of the block */
	return bench_quantile(t, rounds, 0.5);
}

static void run(struct side *s, enum op op, uint64_t rounds, uint64_t blocks)
{
	double *t = calloc(rounds, sizeof(*t)), *ratio = calloc(blocks, sizeof(*ratio));
	double *lat = calloc(blocks, sizeof(*lat)), *line = calloc(blocks, sizeof(*line));

	if (!t || !ratio || !lat || !line)
		die("memory");
	for (uint64_t b = 0; b <= blocks; b++) { /* block 0 warms up */
		double l = block(s, op, false, rounds, t);
		double v = block(s, op, true, rounds, t);

		if (b == 0)
			continue;
		line[b - 1] = l;
		lat[b - 1] = v;
		ratio[b - 1] = v / l;
	}
	if (s->asker) {
		char name[64];
		size_t size = op == OP_ATOMIC ? 8 : 2;

		snprintf(name, sizeof(name), "%s_half_rtt", op_names[op]);
		bench_emit("paired_latency", size, name, bench_quantile(lat, blocks, 0.5), "usec");
		snprintf(name, sizeof(name), "%s_cacheline", op_names[op]);
		bench_emit("paired_latency", size, name, bench_quantile(line, blocks, 0.5), "usec");
		snprintf(name, sizeof(name), "%s_ratio", op_names[op]);
		bench_emit("paired_latency", size, name, bench_quantile(ratio, blocks, 0.5), "x");
		snprintf(name, sizeof(name), "%s_ratio_p25", op_names[op]);
		bench_emit("paired_latency", size, name, bench_quantile(ratio, blocks, 0.25), "x");
		snprintf(name, sizeof(name), "%s_ratio_p75", op_names[op]);
		bench_emit("paired_latency", size, name, bench_quantile(ratio, blocks, 0.75), "x");
	}
	free(t);
	free(ratio);
	free(lat);
	free(line);
}

static void side_main(struct side *s, int cpu, int sock, const char *dev, const bool *ops,
		      uint64_t rounds, uint64_t blocks)
{
	bench_pin(cpu);
	open_verbs(s, dev, sock);
	connect_qp(s);
	xfer(sock, &s->turn, 1, s->asker); /* both connected */
	xfer(sock, &s->turn, 1, !s->asker);
	for (int op = 0; op < NR_OPS; op++)
		if (ops[op])
			run(s, (enum op)op, rounds, blocks);
	ibv_destroy_qp(s->qp);
	ibv_dereg_mr(s->mr);
	ibv_destroy_cq(s->send_cq);
	ibv_destroy_cq(s->recv_cq);
	ibv_dealloc_pd(s->pd);
	ibv_close_device(s->ctx);
	free((void *)s->buf);
}

int main(int argc, char **argv)
{
	int cpu_a = 0, cpu_b = 1, opt, sv[2], status;
	uint64_t rounds = 500, blocks = 200;
	const char *dev = "ivrdma0";
	bool ops[NR_OPS] = {0}, any = false;
	struct bench_line *l;
	pid_t pid;

	while ((opt = getopt(argc, argv, "a:b:n:k:d:")) != -1) {
		switch (opt) {
		case 'a':
			cpu_a = atoi(optarg);
			break;
		case 'b':
			cpu_b = atoi(optarg);
			break;
		case 'n':
			rounds = strtoull(optarg, NULL, 0);
			break;
		case 'k':
			blocks = strtoull(optarg, NULL, 0);
			break;
		case 'd':
			dev = optarg;
			break;
		default:
			fprintf(stderr,
				"usage: %s [-a CPU] [-b CPU] [-n ROUNDS] [-k BLOCKS] [-d DEV] "
				"[write|send|read|atomic]...\n",
				argv[0]);
			return 2;
		}
	}
	for (int i = optind; i < argc; i++) {
		int op = 0;

		while (op < NR_OPS && strcmp(argv[i], op_names[op]))
			op++;
		if (op == NR_OPS) {
			fprintf(stderr, "paired_latency: unknown operation %s\n", argv[i]);
			return 2;
		}
		ops[op] = any = true;
	}
	if (!any)
		for (int op = 0; op < NR_OPS; op++)
			ops[op] = true;
	if (rounds == 0 || blocks == 0)
		return 2;
	l = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (l == MAP_FAILED || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		die("setup");
	bench_cycles_per_usec();
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		struct side s = {.asker = false, .line = l};

		close(sv[0]);
		side_main(&s, cpu_b, sv[1], dev, ops, rounds, blocks);
		_exit(0);
	}
	close(sv[1]);
	{
		struct side s = {.asker = true, .line = l};

		side_main(&s, cpu_a, sv[0], dev, ops, rounds, blocks);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "paired_latency: the answering process failed\n");
		return 1;
	}
	return 0;
}
