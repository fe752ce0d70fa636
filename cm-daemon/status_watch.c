// SPDX-License-Identifier: MIT
/*
 * ivrdma status --watch: rates, sampled.
 *
 * Each turn asks ivrdmad for its status, as `ivrdma status --json` does,
 * and prints for every node and every open context what it did since the
 * turn before, per second: work requests posted, completions, errors,
 * operations and bytes. The counters themselves are totals that only
 * grow while a context lives (provider/counters.h), so a rate is the
 * difference of two samples of the same context record over the time
 * between them. A context new since the last turn shows its totals over
 * that time; one that ended drops out.
 */
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl_client.h"
#include "status_watch.h"

/* The counters a turn shows, in the order of the columns. */
static const char *const rate_keys[] = {"wrs_posted", "completions", "errors",	   "send_ops",
					"write_ops",  "read_ops",    "atomic_ops", "recv_ops"};
static const char *const byte_keys[] = {"send_bytes", "write_bytes", "read_bytes", "atomic_bytes"};
#define NR_RATES (sizeof(rate_keys) / sizeof(rate_keys[0]))
#define NR_BYTES (sizeof(byte_keys) / sizeof(byte_keys[0]))

/* One context's totals at one turn. */
struct sample {
	int64_t record, opened_ns; /* together they name a context */
	char node[64];
	double v[NR_RATES], bytes;
};

struct turn {
	struct sample *s;
	size_t n;
	double at; /* CLOCK_MONOTONIC, seconds */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int64_t int_of(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static void sample_of(json_object *c, struct sample *s)
{
	json_object *t = NULL, *node;

	s->record = int_of(c, "record");
	s->opened_ns = int_of(c, "opened_ns");
	snprintf(s->node, sizeof(s->node), "%s",
		 json_object_object_get_ex(c, "node", &node) ? json_object_get_string(node) : "?");
	json_object_object_get_ex(c, "totals", &t);
	for (size_t k = 0; k < NR_RATES; k++)
		s->v[k] = (double)int_of(t, rate_keys[k]);
	s->bytes = 0;
	for (size_t k = 0; k < NR_BYTES; k++)
		s->bytes += (double)int_of(t, byte_keys[k]);
}

/* The open contexts of a status document: 0, or -1 with a message in err. */
static int take_turn(const char *dir, struct turn *t, char *err, size_t errlen)
{
	json_object *doc = ctl_request(dir, "status", err, errlen), *ctxs, *state;
	size_t n;

	if (!doc)
		return -1;
	t->at = now_s();
	t->n = 0;
	n = json_object_object_get_ex(doc, "contexts", &ctxs) ? json_object_array_length(ctxs) : 0;
	t->s = calloc(n ? n : 1, sizeof(*t->s));
	if (!t->s) {
		json_object_put(doc);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		json_object *c = json_object_array_get_idx(ctxs, i);

		if (json_object_object_get_ex(c, "state", &state) &&
		    !strcmp(json_object_get_string(state), "open"))
			sample_of(c, &t->s[t->n++]);
	}
	json_object_put(doc);
	return 0;
}

/* The same context in the turn before, or NULL. */
static const struct sample *before(const struct turn *prev, const struct sample *s)
{
	for (size_t i = 0; prev && i < prev->n; i++)
		if (prev->s[i].record == s->record && prev->s[i].opened_ns == s->opened_ns)
			return &prev->s[i];
	return NULL;
}

static void print_rates(const char *what, const double *v, double bytes, double dt)
{
	printf("%-22s", what);
	for (size_t k = 0; k < NR_RATES; k++)
		printf(" %10.0f", v[k] / dt);
	printf(" %10.1f\n", bytes / dt / 1e6);
}

/* Per-second rates of each open context, then of each node (its contexts summed). */
static void print_turn(const struct turn *prev, const struct turn *t)
{
	double dt = prev ? t->at - prev->at : 1.0, node_v[NR_RATES], node_bytes;
	char what[sizeof(((struct sample *)0)->node) + 16];

	printf("%-22s %10s %10s %10s %10s %10s %10s %10s %10s %10s\n", "PER SECOND", "posted",
	       "completed", "errors", "sends", "writes", "reads", "atomics", "receives", "MB");
	for (size_t i = 0; i < t->n; i++) {
		const struct sample *s = &t->s[i], *p = before(prev, s);
		double d[NR_RATES];

		for (size_t k = 0; k < NR_RATES; k++)
			d[k] = s->v[k] - (p ? p->v[k] : 0);
		snprintf(what, sizeof(what), "context %lld", (long long)s->record);
		print_rates(what, d, s->bytes - (p ? p->bytes : 0), dt);
	}
	for (size_t i = 0; i < t->n; i++) {
		bool first = true;

		for (size_t j = 0; j < i; j++)
			first &= strcmp(t->s[j].node, t->s[i].node) != 0;
		if (!first)
			continue;
		memset(node_v, 0, sizeof(node_v));
		node_bytes = 0;
		for (size_t j = i; j < t->n; j++) {
			const struct sample *s = &t->s[j], *p = before(prev, s);

			if (strcmp(s->node, t->s[i].node))
				continue;
			for (size_t k = 0; k < NR_RATES; k++)
				node_v[k] += s->v[k] - (p ? p->v[k] : 0);
			node_bytes += s->bytes - (p ? p->bytes : 0);
		}
		snprintf(what, sizeof(what), "node %s", t->s[i].node);
		print_rates(what, node_v, node_bytes, dt);
	}
	if (t->n == 0)
		puts("(no open contexts)");
}

int status_watch(const char *dir, double period_s, long turns)
{
	struct turn prev = {0}, t;
	bool tty = isatty(STDOUT_FILENO);
	char err[256];
	int rc = 0;

	if (take_turn(dir, &prev, err, sizeof(err))) {
		fprintf(stderr, "ivrdma: %s\n", err);
		return 1;
	}
	for (long i = 0; turns <= 0 || i < turns; i++) {
		struct timespec ts = {(time_t)period_s,
				      (long)((period_s - (double)(time_t)period_s) * 1e9)};

		nanosleep(&ts, NULL);
		if (take_turn(dir, &t, err, sizeof(err))) {
			fprintf(stderr, "ivrdma: %s\n", err);
			rc = 1;
			break;
		}
		if (tty)
			fputs("\033[H\033[2J", stdout); /* a fresh screen a turn */
		print_turn(&prev, &t);
		if (!tty)
			puts("");
		fflush(stdout);
		free(prev.s);
		prev = t;
	}
	free(prev.s);
	return rc;
}
