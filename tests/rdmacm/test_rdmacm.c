// SPDX-License-Identifier: MIT
/*
 * RDMA CM over ivrdma0 with librdmacm's own API, between two processes:
 * connect and accept with private data both ways, a send, an RDMA write
 * and an RDMA read over the connection (every byte checked), disconnect,
 * rejection, no listener, no route, bad lengths, a port already taken, a
 * non-blocking channel, UD through SIDR, a server that dies with a
 * request outstanding, and a child forked with RDMA CM in use.
 *
 * The server is a child forked before either side touches RDMA CM; the
 * two talk over a pipe pair only to agree on ports and to say "go".
 * usage: test_rdmacm (run under `ivrdma env`, with an ivrdmad up)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <rdma/rdma_cma.h>
#include <rdma/rdma_verbs.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define DATA_LEN   (64u << 10)
#define REQ_PDATA  56u
#define REP_PDATA  196u
#define UD_QKEY	   0x01234567u
#define EVENT_WAIT 15 /* seconds: the agent gives up a request after 4 */

struct ends {
	int to_peer, from_peer;
};

/* What the server tells the client in its REP: where its buffer is. */
struct remote_buf {
	uint64_t addr;
	uint32_t rkey;
	uint8_t fill[REP_PDATA - 16]; /* 192 bytes in all: within the REP's 196 */
};

static void put_u16(const struct ends *e, uint16_t v)
{
	REQUIRE(write(e->to_peer, &v, sizeof(v)) == sizeof(v), "pipe write");
}

static uint16_t get_u16(const struct ends *e)
{
	uint16_t v = 0;

	REQUIRE(read(e->from_peer, &v, sizeof(v)) == sizeof(v), "pipe read (peer gone?)");
	return v;
}

static void pattern(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7 + (i >> 9));
}

static bool pattern_ok(const uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (uint8_t)(seed + i * 7 + (i >> 9)))
			return false;
	return true;
}

/* The next event on ch, which must be 'want'; NULL (and a failed check) otherwise. */
static struct rdma_cm_event *expect_event(struct rdma_event_channel *ch,
					  enum rdma_cm_event_type want)
{
	struct pollfd p = {.fd = ch->fd, .events = POLLIN};
	struct rdma_cm_event *ev;

	if (poll(&p, 1, EVENT_WAIT * 1000) != 1) {
		CHECK(false, "no event within %d s, wanted %s", EVENT_WAIT, rdma_event_str(want));
		return NULL;
	}
	if (rdma_get_cm_event(ch, &ev)) {
		CHECK(false, "rdma_get_cm_event: %s", strerror(errno));
		return NULL;
	}
	CHECK(ev->event == want, "event %s (status %d), wanted %s", rdma_event_str(ev->event),
	      ev->status, rdma_event_str(want));
	if (ev->event != want) {
		rdma_ack_cm_event(ev);
		return NULL;
	}
	return ev;
}

static void expect_and_ack(struct rdma_event_channel *ch, enum rdma_cm_event_type want)
{
	struct rdma_cm_event *ev = expect_event(ch, want);

	if (ev)
		rdma_ack_cm_event(ev);
}

static struct sockaddr_in loopback(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

/* One completion of 'what' on cq, successful. */
static void expect_wc(struct ibv_cq *cq, enum ibv_wc_opcode what, uint32_t len)
{
	struct ibv_wc wc;
	time_t end = time(NULL) + EVENT_WAIT;
	int n;

	while ((n = ibv_poll_cq(cq, 1, &wc)) == 0 && time(NULL) < end)
		;
	REQUIRE(n == 1, "no completion for opcode %d", what);
	CHECK(wc.status == IBV_WC_SUCCESS, "completion status %s", ibv_wc_status_str(wc.status));
	CHECK(wc.opcode == what, "completion opcode %d, wanted %d", wc.opcode, what);
	if (what == IBV_WC_RECV)
		CHECK(wc.byte_len == len, "received %u bytes, wanted %u", wc.byte_len, len);
}

/* After the last work request: no completion beyond one per request. */
static void expect_cq_empty(struct ibv_cq *cq)
{
	struct ibv_wc wc;

	CHECK(ibv_poll_cq(cq, 1, &wc) == 0, "a completion more than work requests posted");
}

static struct ibv_qp_init_attr qp_attr(enum ibv_qp_type type)
{
	return (struct ibv_qp_init_attr){
	    .qp_type = type,
	    .sq_sig_all = 1,
	    .cap = {.max_send_wr = 8, .max_recv_wr = 8, .max_send_sge = 1, .max_recv_sge = 1},
	};
}

static struct rdma_cm_id *listen_on(struct rdma_event_channel *ch, enum rdma_port_space ps,
				    uint16_t *port)
{
	struct sockaddr_in a = loopback(0);
	struct rdma_cm_id *id;

	REQUIRE(rdma_create_id(ch, &id, NULL, ps) == 0, "rdma_create_id: %s", strerror(errno));
	REQUIRE(rdma_bind_addr(id, (struct sockaddr *)&a) == 0, "bind: %s", strerror(errno));
	REQUIRE(rdma_listen(id, 4) == 0, "rdma_listen: %s", strerror(errno));
	*port = ntohs(rdma_get_src_port(id));
	CHECK(*port != 0, "no port assigned");
	return id;
}

/* Server, case 1: accept with private data, then take a send, a write and a read. */
static void serve_data(struct rdma_event_channel *ch)
{
	struct rdma_cm_event *ev = expect_event(ch, RDMA_CM_EVENT_CONNECT_REQUEST);
	struct ibv_qp_init_attr qa = qp_attr(IBV_QPT_RC);
	struct rdma_conn_param param = {.responder_resources = 1, .initiator_depth = 1};
	static uint8_t buf[DATA_LEN], msg[4096], done[4096];
	struct remote_buf rb;
	struct rdma_cm_id *id;
	struct ibv_mr *mr, *mmr, *dmr;

	REQUIRE(ev, "no connection request");
	id = ev->id;
	CHECK(ev->param.conn.private_data_len >= REQ_PDATA &&
		  pattern_ok(ev->param.conn.private_data, REQ_PDATA, 1),
	      "REQ private data: %u bytes", ev->param.conn.private_data_len);
	rdma_ack_cm_event(ev);
	REQUIRE(rdma_create_qp(id, NULL, &qa) == 0, "rdma_create_qp: %s", strerror(errno));
	mr = ibv_reg_mr(id->pd, buf, sizeof(buf),
			IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
	mmr = rdma_reg_msgs(id, msg, sizeof(msg));
	dmr = rdma_reg_msgs(id, done, sizeof(done));
	REQUIRE(mr && mmr && dmr, "reg_mr");
	/* Both receives before the accept: a send finding none is an RNR error. */
	REQUIRE(rdma_post_recv(id, NULL, msg, sizeof(msg), mmr) == 0, "post_recv");
	REQUIRE(rdma_post_recv(id, NULL, done, sizeof(done), dmr) == 0, "post_recv");
	rb.addr = (uintptr_t)buf;
	rb.rkey = mr->rkey;
	pattern(rb.fill, sizeof(rb.fill), 2);
	param.private_data = &rb;
	param.private_data_len = sizeof(rb);
	REQUIRE(rdma_accept(id, &param) == 0, "rdma_accept: %s", strerror(errno));
	expect_and_ack(ch, RDMA_CM_EVENT_ESTABLISHED);
	expect_wc(id->recv_cq, IBV_WC_RECV, sizeof(msg));
	CHECK(pattern_ok(msg, sizeof(msg), 3), "the send's bytes");
	expect_wc(id->recv_cq, IBV_WC_RECV, 4); /* the client's "written" */
	CHECK(pattern_ok(buf, sizeof(buf), 4), "the RDMA write's bytes");
	expect_cq_empty(id->recv_cq);
	expect_and_ack(ch, RDMA_CM_EVENT_DISCONNECTED);
	CHECK(rdma_disconnect(id) == 0, "rdma_disconnect after DISCONNECTED: %s", strerror(errno));
	rdma_dereg_mr(dmr);
	rdma_dereg_mr(mmr);
	ibv_dereg_mr(mr);
	rdma_destroy_qp(id);
	CHECK(rdma_destroy_id(id) == 0, "rdma_destroy_id");
}

static void serve_reject(struct rdma_event_channel *ch)
{
	struct rdma_cm_event *ev = expect_event(ch, RDMA_CM_EVENT_CONNECT_REQUEST);
	struct rdma_cm_id *id;

	REQUIRE(ev, "no connection request to refuse");
	id = ev->id;
	rdma_ack_cm_event(ev);
	CHECK(rdma_reject(id, "no thanks", 10) == 0, "rdma_reject: %s", strerror(errno));
	CHECK(rdma_destroy_id(id) == 0, "rdma_destroy_id");
}

static void serve_ud(struct rdma_event_channel *ch)
{
	struct rdma_cm_event *ev = expect_event(ch, RDMA_CM_EVENT_CONNECT_REQUEST);
	struct ibv_qp_init_attr qa = qp_attr(IBV_QPT_UD);
	struct rdma_conn_param param = {0};
	static uint8_t msg[40 + 1024], pdata[136];
	struct rdma_cm_id *id;
	struct ibv_mr *mr;

	REQUIRE(ev, "no SIDR request");
	id = ev->id;
	CHECK(ev->param.ud.private_data_len >= 100 && pattern_ok(ev->param.ud.private_data, 100, 5),
	      "SIDR REQ private data: %u bytes", ev->param.ud.private_data_len);
	rdma_ack_cm_event(ev);
	REQUIRE(rdma_create_qp(id, NULL, &qa) == 0, "UD rdma_create_qp: %s", strerror(errno));
	mr = rdma_reg_msgs(id, msg, sizeof(msg));
	REQUIRE(mr && rdma_post_recv(id, NULL, msg, sizeof(msg), mr) == 0, "UD post_recv");
	pattern(pdata, sizeof(pdata), 6);
	param.qp_num = id->qp->qp_num;
	param.private_data = pdata;
	param.private_data_len = sizeof(pdata);
	REQUIRE(rdma_accept(id, &param) == 0, "UD rdma_accept: %s", strerror(errno));
	expect_wc(id->recv_cq, IBV_WC_RECV, sizeof(msg));
	CHECK(pattern_ok(msg + 40, 1024, 7), "the datagram's bytes");
	rdma_dereg_mr(mr);
	rdma_destroy_qp(id);
	rdma_destroy_id(id);
}

static int serve(const struct ends *e)
{
	struct rdma_event_channel *ch = rdma_create_event_channel();
	struct rdma_cm_id *listen, *ulisten;
	uint16_t port, uport;

	REQUIRE(ch, "rdma_create_event_channel: %s", strerror(errno));
	listen = listen_on(ch, RDMA_PS_TCP, &port);
	ulisten = listen_on(ch, RDMA_PS_UDP, &uport);
	put_u16(e, port);
	put_u16(e, uport);
	serve_data(ch);
	serve_reject(ch);
	serve_ud(ch);
	get_u16(e); /* now die with a request outstanding */
	if (expect_event(ch, RDMA_CM_EVENT_CONNECT_REQUEST))
		_exit(check_summary());
	rdma_destroy_id(ulisten);
	rdma_destroy_id(listen);
	rdma_destroy_event_channel(ch);
	return check_summary();
}

/* A new ID with its address and route resolved to 127.0.0.1:port. */
static struct rdma_cm_id *resolved(struct rdma_event_channel *ch, enum rdma_port_space ps,
				   uint16_t port)
{
	struct sockaddr_in a = loopback(port);
	struct rdma_cm_id *id;

	REQUIRE(rdma_create_id(ch, &id, NULL, ps) == 0, "rdma_create_id: %s", strerror(errno));
	REQUIRE(rdma_resolve_addr(id, NULL, (struct sockaddr *)&a, 2000) == 0, "resolve_addr");
	expect_and_ack(ch, RDMA_CM_EVENT_ADDR_RESOLVED);
	REQUIRE(rdma_resolve_route(id, 2000) == 0, "resolve_route: %s", strerror(errno));
	expect_and_ack(ch, RDMA_CM_EVENT_ROUTE_RESOLVED);
	return id;
}

static void post_send(struct rdma_cm_id *id, enum ibv_wr_opcode op, void *buf, uint32_t len,
		      struct ibv_mr *mr, const struct remote_buf *rb)
{
	struct ibv_sge sge = {.addr = (uintptr_t)buf, .length = len, .lkey = mr->lkey};
	struct ibv_send_wr wr = {.opcode = op,
				 .sg_list = &sge,
				 .num_sge = 1,
				 .send_flags = IBV_SEND_SIGNALED},
			   *bad;

	if (rb) {
		wr.wr.rdma.remote_addr = rb->addr;
		wr.wr.rdma.rkey = rb->rkey;
	}
	REQUIRE(ibv_post_send(id->qp, &wr, &bad) == 0, "post_send opcode %d", op);
}

/* Client, case 1: connect, send, write, read back, disconnect. */
static void client_data(struct rdma_event_channel *ch, uint16_t port)
{
	struct rdma_cm_id *id = resolved(ch, RDMA_PS_TCP, port);
	struct ibv_qp_init_attr qa = qp_attr(IBV_QPT_RC);
	struct rdma_conn_param param = {
	    .responder_resources = 1, .initiator_depth = 1, .retry_count = 7, .rnr_retry_count = 7};
	static uint8_t buf[DATA_LEN], back[DATA_LEN], pdata[REQ_PDATA + 1];
	struct rdma_cm_event *ev;
	struct remote_buf rb = {0};
	struct ibv_mr *mr, *bmr;

	REQUIRE(rdma_create_qp(id, NULL, &qa) == 0, "rdma_create_qp: %s", strerror(errno));
	mr = rdma_reg_msgs(id, buf, sizeof(buf));
	bmr = rdma_reg_msgs(id, back, sizeof(back));
	REQUIRE(mr && bmr, "reg_mr");
	pattern(pdata, sizeof(pdata), 1);
	param.private_data = pdata;
	param.private_data_len = REQ_PDATA + 1;
	CHECK(rdma_connect(id, &param) == -1 && errno == EINVAL,
	      "57 bytes of REQ private data accepted");
	param.private_data_len = REQ_PDATA;
	REQUIRE(rdma_connect(id, &param) == 0, "rdma_connect: %s", strerror(errno));
	ev = expect_event(ch, RDMA_CM_EVENT_ESTABLISHED);
	REQUIRE(ev, "not established");
	CHECK(ev->param.conn.private_data_len >= sizeof(rb), "REP private data: %u bytes",
	      ev->param.conn.private_data_len);
	memcpy(&rb, ev->param.conn.private_data, sizeof(rb));
	CHECK(pattern_ok(rb.fill, sizeof(rb.fill), 2), "REP private data bytes");
	rdma_ack_cm_event(ev);
	pattern(buf, 4096, 3);
	post_send(id, IBV_WR_SEND, buf, 4096, mr, NULL);
	expect_wc(id->send_cq, IBV_WC_SEND, 0);
	pattern(buf, sizeof(buf), 4);
	post_send(id, IBV_WR_RDMA_WRITE, buf, sizeof(buf), mr, &rb);
	expect_wc(id->send_cq, IBV_WC_RDMA_WRITE, 0);
	post_send(id, IBV_WR_SEND, buf, 4, mr, NULL);
	expect_wc(id->send_cq, IBV_WC_SEND, 0);
	post_send(id, IBV_WR_RDMA_READ, back, sizeof(back), bmr, &rb);
	expect_wc(id->send_cq, IBV_WC_RDMA_READ, 0);
	CHECK(pattern_ok(back, sizeof(back), 4), "the RDMA read's bytes");
	expect_cq_empty(id->send_cq);
	expect_cq_empty(id->recv_cq);
	CHECK(rdma_disconnect(id) == 0, "rdma_disconnect: %s", strerror(errno));
	expect_and_ack(ch, RDMA_CM_EVENT_DISCONNECTED);
	rdma_dereg_mr(bmr);
	rdma_dereg_mr(mr);
	rdma_destroy_qp(id);
	CHECK(rdma_destroy_id(id) == 0, "rdma_destroy_id");
}

/* A connect that must end in 'want' with 'status' (any status if status_any). */
static void connect_expect(struct rdma_event_channel *ch, uint16_t port,
			   enum rdma_cm_event_type want, int status, const char *pdata)
{
	struct rdma_cm_id *id = resolved(ch, RDMA_PS_TCP, port);
	struct rdma_conn_param param = {.qp_num = 1, .retry_count = 7};
	struct rdma_cm_event *ev;

	REQUIRE(rdma_connect(id, &param) == 0, "rdma_connect: %s", strerror(errno));
	ev = expect_event(ch, want);
	if (ev) {
		CHECK(ev->status == status, "%s status %d, wanted %d", rdma_event_str(want),
		      ev->status, status);
		if (pdata)
			CHECK(ev->param.conn.private_data_len >= strlen(pdata) + 1 &&
				  !strcmp(ev->param.conn.private_data, pdata),
			      "REJ private data");
		rdma_ack_cm_event(ev);
	}
	CHECK(rdma_destroy_id(id) == 0, "rdma_destroy_id");
}

static void client_errors(struct rdma_event_channel *ch, uint16_t port, uint16_t free_port)
{
	struct sockaddr_in nowhere = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct sockaddr_in taken = loopback(port);
	struct rdma_cm_event *ev;
	struct rdma_cm_id *id;
	int flags;

	connect_expect(ch, port, RDMA_CM_EVENT_REJECTED, 28, "no thanks"); /* consumer defined */
	connect_expect(ch, free_port, RDMA_CM_EVENT_REJECTED, 8, NULL);	   /* invalid service ID */

	inet_pton(AF_INET, "192.0.2.1", &nowhere.sin_addr); /* TEST-NET-1: no node has it */
	REQUIRE(rdma_create_id(ch, &id, NULL, RDMA_PS_TCP) == 0, "rdma_create_id");
	REQUIRE(rdma_resolve_addr(id, NULL, (struct sockaddr *)&nowhere, 2000) == 0, "resolve");
	ev = expect_event(ch, RDMA_CM_EVENT_ADDR_ERROR);
	if (ev) {
		CHECK(ev->status != 0, "ADDR_ERROR with status 0");
		rdma_ack_cm_event(ev);
	}
	CHECK(rdma_connect(id, NULL) == -1, "connect without a route succeeded");
	rdma_destroy_id(id);

	REQUIRE(rdma_create_id(ch, &id, NULL, RDMA_PS_TCP) == 0, "rdma_create_id");
	CHECK(rdma_bind_addr(id, (struct sockaddr *)&taken) == 0, "bind: %s", strerror(errno));
	CHECK(rdma_listen(id, 1) == -1 && errno == EADDRINUSE, "a second listener on port %u",
	      port);
	rdma_destroy_id(id);

	flags = fcntl(ch->fd, F_GETFL);
	fcntl(ch->fd, F_SETFL, flags | O_NONBLOCK);
	CHECK(rdma_get_cm_event(ch, &ev) == -1 && errno == EAGAIN,
	      "an event, or no EAGAIN, on an empty non-blocking channel");
	CHECK(poll(&(struct pollfd){.fd = ch->fd, .events = POLLIN}, 1, 0) == 0,
	      "an empty channel polls readable");
	fcntl(ch->fd, F_SETFL, flags);
}

static void client_ud(struct rdma_event_channel *ch, uint16_t uport)
{
	struct rdma_cm_id *id = resolved(ch, RDMA_PS_UDP, uport);
	struct ibv_qp_init_attr qa = qp_attr(IBV_QPT_UD);
	struct rdma_conn_param param = {0};
	static uint8_t pdata[100], msg[1024];
	struct rdma_cm_event *ev;
	struct ibv_ah *ah;
	struct ibv_mr *mr;

	REQUIRE(rdma_create_qp(id, NULL, &qa) == 0, "UD rdma_create_qp: %s", strerror(errno));
	pattern(pdata, sizeof(pdata), 5);
	param.private_data = pdata;
	param.private_data_len = sizeof(pdata);
	REQUIRE(rdma_connect(id, &param) == 0, "UD rdma_connect: %s", strerror(errno));
	ev = expect_event(ch, RDMA_CM_EVENT_ESTABLISHED);
	REQUIRE(ev, "UD not established");
	CHECK(ev->param.ud.qkey == UD_QKEY, "qkey %#x", ev->param.ud.qkey);
	CHECK(ev->param.ud.private_data_len >= 136 && pattern_ok(ev->param.ud.private_data, 136, 6),
	      "SIDR REP private data");
	ah = ibv_create_ah(id->pd, &ev->param.ud.ah_attr);
	mr = rdma_reg_msgs(id, msg, sizeof(msg));
	REQUIRE(ah && mr, "UD ah and mr");
	pattern(msg, sizeof(msg), 7);
	REQUIRE(rdma_post_ud_send(id, NULL, msg, sizeof(msg), mr, IBV_SEND_SIGNALED, ah,
				  ev->param.ud.qp_num) == 0,
		"UD send");
	expect_wc(id->send_cq, IBV_WC_SEND, 0);
	rdma_ack_cm_event(ev);
	ibv_destroy_ah(ah);
	rdma_dereg_mr(mr);
	rdma_destroy_qp(id);
	rdma_destroy_id(id);
}

/* The server dies on this request: the connect ends in an error event, not a hang. */
static void client_peer_dies(struct rdma_event_channel *ch, const struct ends *e, uint16_t port)
{
	struct rdma_cm_id *id = resolved(ch, RDMA_PS_TCP, port);
	struct rdma_conn_param param = {.qp_num = 1, .retry_count = 7};
	struct rdma_cm_event *ev;

	put_u16(e, 1);
	REQUIRE(rdma_connect(id, &param) == 0, "rdma_connect: %s", strerror(errno));
	REQUIRE(rdma_get_cm_event(ch, &ev) == 0, "no event after the server died");
	CHECK(ev->event == RDMA_CM_EVENT_UNREACHABLE || ev->event == RDMA_CM_EVENT_REJECTED,
	      "%s after the server died", rdma_event_str(ev->event));
	rdma_ack_cm_event(ev);
	rdma_destroy_id(id);
}

struct waiter {
	struct rdma_event_channel *ch;
	atomic_int done; /* rdma_get_cm_event returned */
	int rc, err;
};

static void *wait_event(void *arg)
{
	struct waiter *w = arg;
	struct rdma_cm_event *ev;

	w->rc = rdma_get_cm_event(w->ch, &ev);
	w->err = errno;
	atomic_store(&w->done, 1);
	return NULL;
}

/* Bytes in a channel's fd: the preload keeps one per queued event. */
static int pending_bytes(int fd)
{
	int n = -1;

	return ioctl(fd, FIONREAD, &n) == 0 ? n : -1;
}

/*
 * A thread waiting in rdma_get_cm_event while another closes the channel
 * waits on, as on the kernel's device, whose blocked reader holds the
 * file (rping's CM thread is there when its main thread exits). The
 * close lands right after the waiter took the byte of an event that its
 * ID's destruction dropped, where main() made the preload pause it
 * (IVRDMA_UCMA_TEST_EVENTLESS_MS).
 */
static void client_close_under_waiter(uint16_t port)
{
	struct sockaddr_in a = loopback(port);
	struct waiter w = {.ch = rdma_create_event_channel()};
	struct rdma_cm_id *id;
	pthread_t t;
	int fd, i;

	REQUIRE(w.ch, "rdma_create_event_channel: %s", strerror(errno));
	fd = w.ch->fd;
	REQUIRE(rdma_create_id(w.ch, &id, NULL, RDMA_PS_TCP) == 0, "rdma_create_id");
	REQUIRE(rdma_resolve_addr(id, NULL, (struct sockaddr *)&a, 2000) == 0, "resolve_addr");
	for (i = 0; i < 1000 && pending_bytes(fd) < 1; i++)
		usleep(10000);
	REQUIRE(pending_bytes(fd) == 1, "ADDR_RESOLVED queued: %d bytes", pending_bytes(fd));
	rdma_destroy_id(id); /* drops the event, never reported; its byte stays */
	REQUIRE(pthread_create(&t, NULL, wait_event, &w) == 0, "pthread_create");
	for (i = 0; i < 10000 && pending_bytes(fd) > 0; i++)
		usleep(1000);
	REQUIRE(pending_bytes(fd) == 0, "the waiter took the byte");
	rdma_destroy_event_channel(w.ch); /* while the waiter pauses */
	usleep(1500 * 1000);		  /* past its pause: it has read again */
	CHECK(!atomic_load(&w.done),
	      "rdma_get_cm_event returned %d (%s) after another thread closed its channel", w.rc,
	      strerror(w.err));
	pthread_detach(t); /* it waits until the process exits */
}

/* A child forked with RDMA CM in use closes the channel's fd and leaves cleanly. */
static void client_fork(struct rdma_event_channel *ch)
{
	int status = -1;
	pid_t pid = fork();

	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		alarm(10);
		_exit(close(ch->fd) == 0 ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child: status %#x", status);
}

static int client(const struct ends *e)
{
	struct rdma_event_channel *ch;
	uint16_t port = get_u16(e), uport = get_u16(e), free_port = port + 1;

	if (free_port == uport)
		free_port++;
	ch = rdma_create_event_channel();
	REQUIRE(ch, "rdma_create_event_channel: %s", strerror(errno));
	client_data(ch, port);
	client_errors(ch, port, free_port);
	client_ud(ch, uport);
	client_peer_dies(ch, e, port);
	client_close_under_waiter(port);
	client_fork(ch);
	rdma_destroy_event_channel(ch);
	return check_summary();
}

int main(void)
{
	int to_server[2], to_client[2], status = 0, rc;
	pid_t pid;

	alarm(120); /* a hang fails the test here, not in CTest's kill */
	/* Set before any thread runs: client_close_under_waiter's pause (ucma_cmd.c). */
	setenv("IVRDMA_UCMA_TEST_EVENTLESS_MS", "300", 1);
	REQUIRE(pipe(to_server) == 0 && pipe(to_client) == 0, "pipes");
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		struct ends e = {.to_peer = to_client[1], .from_peer = to_server[0]};

		close(to_server[1]);
		close(to_client[0]);
		_exit(serve(&e));
	}
	close(to_server[0]);
	close(to_client[1]);
	rc = client(&(struct ends){.to_peer = to_server[1], .from_peer = to_client[0]});
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "FAIL: the server process ended with status %#x\n", status);
		rc = 1;
	}
	return rc;
}
