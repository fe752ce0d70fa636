/* The provider's own cost per work request, with no cache line crossing
 * between cores: one process, two RC QPs of one context connected to each
 * other, 8-byte RDMA writes (or sends into receives posted ahead) from
 * one to the other, each WR posted on its own (or in lists), one in 64
 * signalled as perftest's bandwidth tests do, the send CQ polled as it
 * goes. Everything stays in one core's cache, so the figure does not move
 * with where the host places the virtual CPUs, as ib_write_bw's message
 * rate does: it is the software's share of that rate, for comparing
 * builds of the provider.
 *
 * usage: post_cost [-c CPU] [-n WRS] [-r REPS] [-l LIST] [-o write|send] [-d DEV]
 *   LIST: WRs per ibv_post_send, a divisor of 64
 * prints CSV: post_cost,8,OP[_listN]_ns_{median,min},VALUE,ns (per WR)
 * Run under `ivrdma env` (the provider and its daemon).
 */
#include "bench_common.h"
#include "bench_verbs.h"

#include <infiniband/verbs.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUF_SIZE     4096
#define SIGNAL_EVERY 64
#define MAX_LIST     64
#define RECV_BATCH   256 /* receives the target keeps posted ahead of sends */

struct bench {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *send_cq, *recv_cq;
	struct ibv_mr *mr;
	struct ibv_qp *qp[2]; /* [0] posts, [1] is written or receives */
	uint8_t *buf;
	bool send;
	unsigned long recv_posted, sent; /* over all runs */
};

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static struct ibv_qp *make_qp(struct bench *b)
{
	struct ibv_qp_init_attr qa = {
	    .send_cq = b->send_cq,
	    .recv_cq = b->recv_cq,
	    .qp_type = IBV_QPT_RC,
	    .cap = {.max_send_wr = 2 * MAX_LIST,
		    .max_recv_wr = 2 * RECV_BATCH,
		    .max_send_sge = 1,
		    .max_recv_sge = 1,
		    .max_inline_data = 64},
	};
	struct ibv_qp *qp = ibv_create_qp(b->pd, &qa);

	if (!qp)
		die("ibv_create_qp");
	return qp;
}

static void connect_qp(struct ibv_qp *qp, uint32_t dest, uint16_t lid)
{
	struct ibv_qp_attr a = {
	    .qp_state = IBV_QPS_INIT, .port_num = 1, .qp_access_flags = IBV_ACCESS_REMOTE_WRITE};

	if (ibv_modify_qp(qp, &a,
			  IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
		die("INIT");
	a = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTR,
				 .path_mtu = IBV_MTU_4096,
				 .dest_qp_num = dest,
				 .min_rnr_timer = 1,
				 .ah_attr = {.dlid = lid, .port_num = 1}};
	if (ibv_modify_qp(qp, &a,
			  IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			      IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		die("RTR");
	a = (struct ibv_qp_attr){
	    .qp_state = IBV_QPS_RTS, .timeout = 14, .retry_cnt = 7, .rnr_retry = 7};
	if (ibv_modify_qp(qp, &a,
			  IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
			      IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC))
		die("RTS");
}

static void open_bench(struct bench *b, const char *dev)
{
	struct ibv_port_attr port;

	b->ctx = bench_open_device(dev);
	if (!b->ctx)
		die("ibv_open_device (run under `ivrdma env`)");
	b->buf = aligned_alloc(4096, BUF_SIZE);
	b->pd = ibv_alloc_pd(b->ctx);
	b->send_cq = ibv_create_cq(b->ctx, 16, NULL, NULL, 0);
	b->recv_cq = ibv_create_cq(b->ctx, 4 * RECV_BATCH, NULL, NULL, 0);
	if (!b->buf || !b->pd || !b->send_cq || !b->recv_cq)
		die("verbs resources");
	memset(b->buf, 0, BUF_SIZE);
	b->mr =
	    ibv_reg_mr(b->pd, b->buf, BUF_SIZE, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	if (!b->mr || ibv_query_port(b->ctx, 1, &port))
		die("ibv_reg_mr");
	b->qp[0] = make_qp(b);
	b->qp[1] = make_qp(b);
	connect_qp(b->qp[0], b->qp[1]->qp_num, port.lid);
	connect_qp(b->qp[1], b->qp[0]->qp_num, port.lid);
}

/* Tops the target's receives up to 2 * RECV_BATCH, a batch at a time. */
static void refill_receives(struct bench *b)
{
	struct ibv_sge sge = {(uintptr_t)b->buf + 2048, 64, b->mr->lkey};
	struct ibv_recv_wr wr = {.sg_list = &sge, .num_sge = 1}, *bad;

	while (b->recv_posted - b->sent < RECV_BATCH) {
		for (int i = 0; i < RECV_BATCH; i++)
			if (ibv_post_recv(b->qp[1], &wr, &bad))
				die("ibv_post_recv");
		b->recv_posted += RECV_BATCH;
	}
}

/* Polls cq until 'want' completions came, checking each. */
static void reap(struct ibv_cq *cq, int want)
{
	struct ibv_wc wc[32];

	while (want > 0) {
		int n = ibv_poll_cq(cq, want < 32 ? want : 32, wc);

		if (n < 0)
			die("ibv_poll_cq");
		for (int i = 0; i < n; i++)
			if (wc[i].status != IBV_WC_SUCCESS) {
				fprintf(stderr, "post_cost: %s\n", ibv_wc_status_str(wc[i].status));
				exit(1);
			}
		want -= n;
	}
}

/* n WRs in lists of 'list'; returns ns per WR. */
static double run(struct bench *b, unsigned long n, int list)
{
	struct ibv_sge sge = {(uintptr_t)b->buf, 8, b->mr->lkey};
	struct ibv_send_wr wr[MAX_LIST], *bad;
	unsigned long done = 0;
	uint64_t t0;

	for (int i = 0; i < list; i++)
		wr[i] = (struct ibv_send_wr){
		    .next = i + 1 < list ? &wr[i + 1] : NULL,
		    .sg_list = &sge,
		    .num_sge = 1,
		    .opcode = b->send ? IBV_WR_SEND : IBV_WR_RDMA_WRITE,
		    .send_flags = IBV_SEND_INLINE,
		    .wr.rdma = {(uintptr_t)b->buf + 1024, b->mr->rkey},
		};
	t0 = bench_now_ns();
	while (done < n) {
		bool sig = (done + (unsigned long)list) % SIGNAL_EVERY == 0;

		if (b->send)
			refill_receives(b);
		wr[list - 1].send_flags = IBV_SEND_INLINE | (sig ? IBV_SEND_SIGNALED : 0);
		if (ibv_post_send(b->qp[0], wr, &bad))
			die("ibv_post_send");
		done += (unsigned long)list;
		b->sent += (unsigned long)list;
		if (sig)
			reap(b->send_cq, 1);
		/* Each send's receive completion, a batch at a time. */
		if (b->send && b->sent % RECV_BATCH == 0)
			reap(b->recv_cq, RECV_BATCH);
	}
	return (double)(bench_now_ns() - t0) / (double)done;
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: post_cost [-c CPU] [-n WRS] [-r REPS] [-l LIST] [-o write|send] [-d DEV]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *dev = "ivrdma0";
	unsigned long n = 1000000, reps = 10;
	int cpu = -1, list = 1, opt;
	struct bench b = {0};
	char name[48];
	double *ns;

	while ((opt = getopt(argc, argv, "c:n:r:l:o:d:")) != -1) {
		switch (opt) {
		case 'c':
			cpu = atoi(optarg);
			break;
		case 'n':
			n = bench_parse_size(optarg);
			break;
		case 'r':
			reps = bench_parse_size(optarg);
			break;
		case 'l':
			list = atoi(optarg);
			break;
		case 'o':
			if (strcmp(optarg, "write") && strcmp(optarg, "send"))
				usage();
			b.send = !strcmp(optarg, "send");
			break;
		case 'd':
			dev = optarg;
			break;
		default:
			usage();
		}
	}
	if (list < 1 || list > MAX_LIST || SIGNAL_EVERY % list || !reps ||
	    n < (unsigned long)RECV_BATCH)
		usage();
	n -= n % RECV_BATCH; /* whole batches of receives */
	if (cpu >= 0)
		bench_pin(cpu);
	open_bench(&b, dev);
	ns = calloc(reps, sizeof(*ns));
	if (!ns)
		die("calloc");
	run(&b, n / 10 - n / 10 % RECV_BATCH + RECV_BATCH, list); /* warm-up */
	for (unsigned long r = 0; r < reps; r++)
		ns[r] = run(&b, n, list);
	snprintf(name, sizeof(name), list > 1 ? "%s_list%d" : "%s", b.send ? "send" : "write",
		 list);
	strcat(name, "_ns_median");
	bench_emit("post_cost", 8, name, bench_quantile(ns, reps, 0.5), "ns");
	strcpy(strstr(name, "_ns_median"), "_ns_min");
	bench_emit("post_cost", 8, name, bench_quantile(ns, reps, 0), "ns");
	return 0;
}
