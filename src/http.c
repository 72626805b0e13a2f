/*
 * http.c — the agent's HTTP API (see http.h), on libmicrohttpd.
 *
 * One thread of our own (serve) drives libmicrohttpd in its "external"
 * polling mode: it polls the listening socket and every connection, then
 * enforces the deadline below, so every callback runs on that one thread.
 * A request is answered from the snapshot the loop published last (copied
 * under a mutex) and, for /cluster and the per-node metrics, from a
 * read-only store handle that only this thread uses.
 *
 * Bounds keep a client from taking more than its share, and a flood of
 * clients from starving a load balancer's probe:
 *  - a deadline, not an idle timeout: a connection that has not had a
 *    request answered within HTTP_DEADLINE_MS of its accept (or of its
 *    previous answer) is shut down, however steadily it trickles bytes;
 *  - at most HTTP_PER_IP connections from one address and HTTP_CONNECTIONS
 *    in all, and a new connection past either bound does not wait or get
 *    refused: it closes the OLDEST one (of that address, or of all).  A
 *    probe is answered within a millisecond of its accept, so a flood
 *    evicts itself first (a probe from the flood's own address can still be
 *    cut by a burst, rarely: seen in 3 of ~500 probes).  This leans on the
 *    select(2) loop (no MHD_USE_EPOLL): libmicrohttpd accepts one connection
 *    per pass and reads a new connection's request in the next pass, so at
 *    most one other connection arrives between a probe's accept and its
 *    answer, too few to make it the oldest of its address (epoll mode
 *    accepts up to ten per pass: a burst from the probe's own address could
 *    then cut it).  select(2) bounds descriptors to FD_SETSIZE (1024), far
 *    above HTTP_MHD_LIMIT plus the agent's own;
 *  - HTTP_MEMORY bytes of request headers; the URL and a query of more than
 *    that are refused by libmicrohttpd itself.
 * A connection is cut with shutdown(2), never close(2): libmicrohttpd sees
 * the end of the stream on its next poll and closes and frees it itself
 * (NOTIFY_CLOSED), so no descriptor is ever closed under it.  Only GET,
 * HEAD and OPTIONS are served (OPTIONS as GET without a body, the way
 * HAProxy's httpchk asks by default).
 *
 * The store handle is reopened after a failure at most once per
 * STORE_RETRY_MIN_MS, backing off to STORE_RETRY_MAX_MS while it keeps
 * failing: in between /cluster answers 503 at once, so a flood of requests
 * against a dead etcd is not a flood of connections to it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "pglease/cli.h"
#include "pglease/config.h"
#include "pglease/decide.h"
#include "pglease/http.h"
#include "pglease/log.h"
#include "pglease/store.h"

#define HTTP_CONNECTIONS PGL_HTTP_CONNECTIONS
#define HTTP_PER_IP PGL_HTTP_PER_IP
#define HTTP_DEADLINE_MS PGL_HTTP_DEADLINE_MS
/* libmicrohttpd's own limit, a backstop never reached: connections past
 * HTTP_CONNECTIONS are cut as they arrive, and a cut one is gone by the next poll. */
#define HTTP_MHD_LIMIT (HTTP_CONNECTIONS + 64)
#define HTTP_TIMEOUT_S 3			/* libmicrohttpd's idle timeout, another backstop */
#define HTTP_TICK_MS 100			/* longest poll: the deadline's slack and stop's latency */
#define HTTP_MEMORY (16 * 1024)
#define STORE_RETRY_MIN_MS 1000
#define STORE_RETRY_MAX_MS 30000

/* Why a connection was cut (pglease_http_connections_cut_total{reason}). */
enum { CUT_DEADLINE = 0, CUT_PER_ADDRESS, CUT_LIMIT, CUT_REASONS };
static const char *const cut_reasons[CUT_REASONS] = { "deadline", "per_address", "limit" };

const double pgl_renew_bucket_s[PGL_RENEW_BUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
};

static const char *const fence_causes[PGL_FENCE_CAUSES] = {
	"deadline", "higher_term", "hung", "store", "other",
};

/*
 * One accepted connection, the socket context libmicrohttpd keeps for us.
 * Linked in pgl_http.conns, oldest start first, until it is cut.
 */
struct conn {
	struct conn *prev, *next;
	bool linked;
	int fd;
	struct sockaddr_storage addr;
	int64_t start_ms;			/* accept, or the end of its last answer */
};

struct pgl_http {
	struct MHD_Daemon *mhd;
	pthread_t thread;
	atomic_bool stop;
	pthread_mutex_t mu;
	struct pgl_http_state st;
	bool published;
	/* Everything below belongs to the HTTP thread alone. */
	struct conn *head, *tail;	/* live connections, oldest first */
	int live;
	int64_t cuts[CUT_REASONS];
	char store_path[PGL_PATH_MAX];
	struct pgl_store *store;	/* opened by the HTTP thread on first use */
	int64_t store_retry_ms;		/* no reopen before this (CLOCK_MONOTONIC) */
	int64_t store_backoff_ms;	/* the last wait; 0 after a success */
};

bool
pgl_http_listen_parse(const char *s, char *addr, size_t addrlen, int *port, char *why,
					  size_t whylen)
{
	const char *colon = strrchr(s, ':');
	struct in_addr a;
	char host[64];
	char *end;
	long p;

	if (colon == NULL || (size_t) (colon - s) >= sizeof(host)) {
		snprintf(why, whylen, "'%s' is not [ADDRESS]:PORT (for example :8008 or "
				 "127.0.0.1:8008)", s);
		return false;
	}
	memcpy(host, s, (size_t) (colon - s));
	host[colon - s] = '\0';
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end != '\0' || p < 1 || p > 65535) {
		snprintf(why, whylen, "'%s': the port must be a number from 1 to 65535", s);
		return false;
	}
	if (host[0] && inet_pton(AF_INET, host, &a) != 1) {
		snprintf(why, whylen, "'%s': the address must be an IPv4 address, or empty for "
				 "every address", s);
		return false;
	}
	if (!pgl_strlcpy(addr, host, addrlen)) {
		snprintf(why, whylen, "'%s': address too long", s);
		return false;
	}
	*port = (int) p;
	return true;
}

/*
 * Parses a ?lag= value (see http.h).  The number is decimal, a fraction
 * allowed ("1.5MB"); the unit follows it, spaces allowed between.
 */
bool
pgl_http_parse_lag(const char *s, int64_t *bytes, char *why, size_t whylen)
{
	static const char *const units[] = { "B", "kB", "MB", "GB", "TB" };
	uint64_t whole = 0, frac = 0, den = 1, mult = 0;
	const char *p = s;

	while (*p == ' ')
		p++;
	if (*p < '0' || *p > '9')
		goto not_number;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (whole > ((uint64_t) INT64_MAX - (uint64_t) (*p - '0')) / 10)
			goto too_large;
		whole = whole * 10 + (uint64_t) (*p - '0');
	}
	if (*p == '.') {
		if (p[1] < '0' || p[1] > '9')
			goto not_number;
		for (p++; *p >= '0' && *p <= '9'; p++)
			if (den < 1000000000000000000ULL) {		/* further digits are below a byte */
				frac = frac * 10 + (uint64_t) (*p - '0');
				den *= 10;
			}
	}
	while (*p == ' ')
		p++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]) && mult == 0; i++)
		if (strncmp(p, units[i], strlen(units[i])) == 0) {
			mult = (uint64_t) 1 << (10 * i);
			p += strlen(units[i]);
		}
	while (*p == ' ')
		p++;
	if (*p != '\0') {
		snprintf(why, whylen, "lag: unknown unit: the units are B, kB, MB, GB and TB "
				 "(case matters; for example ?lag=16MB or ?lag=1048576)");
		return false;
	}
	if (mult == 0)
		mult = 1;
	if (whole > (uint64_t) INT64_MAX / mult)
		goto too_large;
	{
		unsigned __int128 f = ((unsigned __int128) frac * mult + den / 2) / den;

		if (f > (unsigned __int128) ((uint64_t) INT64_MAX - whole * mult))
			goto too_large;
		*bytes = (int64_t) (whole * mult + (uint64_t) f);
	}
	return true;
not_number:
	snprintf(why, whylen, "lag must be a number of bytes, optionally with a unit: B, kB, "
			 "MB, GB or TB (for example ?lag=16MB or ?lag=1048576)");
	return false;
too_large:
	snprintf(why, whylen, "lag: too large (at most %" PRId64 " bytes)", INT64_MAX);
	return false;
}

/* ---- connections: the deadline and the caps ---- */

static void
conn_unlink(struct pgl_http *h, struct conn *k)
{
	if (!k->linked)
		return;
	*(k->prev ? &k->prev->next : &h->head) = k->next;
	*(k->next ? &k->next->prev : &h->tail) = k->prev;
	k->prev = k->next = NULL;
	k->linked = false;
	h->live--;
}

/* Appends k, the newest, with its deadline counted from now. */
static void
conn_append(struct pgl_http *h, struct conn *k, int64_t now)
{
	k->start_ms = now;
	k->prev = h->tail;
	k->next = NULL;
	*(h->tail ? &h->tail->next : &h->head) = k;
	h->tail = k;
	k->linked = true;
	h->live++;
}

/*
 * Cuts k: shutdown(2) ends both directions, libmicrohttpd reads the end of
 * the stream on its next poll and closes the connection (NOTIFY_CLOSED frees k).
 */
static void
conn_cut(struct pgl_http *h, struct conn *k, int why)
{
	conn_unlink(h, k);
	shutdown(k->fd, SHUT_RDWR);
	h->cuts[why]++;
	pgl_log_debug("http: connection cut (%s) after %" PRId64 " ms", cut_reasons[why],
				  pgl_mono_ms() - k->start_ms);
}

static bool
same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *) a)->sin_addr.s_addr ==
			((const struct sockaddr_in *) b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *) a)->sin6_addr,
					  &((const struct sockaddr_in6 *) b)->sin6_addr, sizeof(struct in6_addr)) == 0;
	return false;
}

/*
 * Makes room for a new connection from addr: past HTTP_PER_IP from that
 * address, or HTTP_CONNECTIONS in all, the oldest one (of the address, or of
 * all) is cut.  The newcomer is never the one refused.
 */
static void
make_room(struct pgl_http *h, const struct sockaddr_storage *addr)
{
	struct conn *oldest = NULL;
	int n = 0;

	for (struct conn *k = h->head; k; k = k->next)
		if (same_address(&k->addr, addr) && n++ == 0)
			oldest = k;
	if (n >= HTTP_PER_IP)
		conn_cut(h, oldest, CUT_PER_ADDRESS);
	while (h->live >= HTTP_CONNECTIONS)
		conn_cut(h, h->head, CUT_LIMIT);
}

/* Cuts every connection past its deadline (the list is in deadline order). */
static void
sweep(struct pgl_http *h, int64_t now)
{
	while (h->head && now - h->head->start_ms >= HTTP_DEADLINE_MS)
		conn_cut(h, h->head, CUT_DEADLINE);
}

/* MHD_OPTION_NOTIFY_CONNECTION: a connection accepted, or closed. */
static void
on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct pgl_http *h = cls;
	const union MHD_ConnectionInfo *fd, *ad;
	struct conn *k = *socket_context;

	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (k != NULL)
			conn_unlink(h, k);
		free(k);
		*socket_context = NULL;
		return;
	}
	fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	ad = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (fd == NULL)
		return;					/* cannot happen; libmicrohttpd's timeout still holds */
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		shutdown(fd->connect_fd, SHUT_RDWR);
		return;
	}
	k->fd = fd->connect_fd;
	if (ad != NULL && ad->client_addr != NULL)
		memcpy(&k->addr, ad->client_addr, ad->client_addr->sa_family == AF_INET6 ?
			   sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	make_room(h, &k->addr);
	conn_append(h, k, pgl_mono_ms());
	*socket_context = k;
}

/* MHD_OPTION_NOTIFY_COMPLETED: a request answered; the next one gets a deadline of its own. */
static void
on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct pgl_http *h = cls;
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn *k = ci ? ci->socket_context : NULL;

	(void) con_cls;
	if (k == NULL || !k->linked || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
		return;
	conn_unlink(h, k);
	conn_append(h, k, pgl_mono_ms());
}

/* The HTTP thread: libmicrohttpd's work, then the deadline, until stopped. */
static void *
serve(void *arg)
{
	struct pgl_http *h = arg;

	while (!atomic_load(&h->stop)) {
		int64_t wait = HTTP_TICK_MS;

		if (h->head != NULL) {
			int64_t left = h->head->start_ms + HTTP_DEADLINE_MS - pgl_mono_ms();

			wait = left < 0 ? 0 : left < wait ? left : wait;
		}
		MHD_run_wait(h->mhd, (int32_t) wait);
		sweep(h, pgl_mono_ms());
	}
	return NULL;
}

/* ---- answers ---- */

/* A response holding a copy of text. */
static enum MHD_Result
reply(struct MHD_Connection *c, unsigned code, const char *type, const char *text,
	  bool body)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(body ? strlen(text) : 0, (void *) text,
										MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD, OPTIONS");
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

/* The role answer of /primary, /replica, /read-only and /health. */
static enum MHD_Result
reply_role(struct MHD_Connection *c, bool ok, const struct pgl_http_state *st,
		   bool writable, bool body)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "{\"node\":\"%s\",\"role\":\"%s\",\"writable\":%s,"
			 "\"running\":%s,\"in_recovery\":%s,\"streaming\":%s,\"term\":%" PRId64
			 ",\"lag_bytes\":%" PRId64 "}\n", st->node, st->role, writable ? "true" : "false",
			 st->running ? "true" : "false", st->in_recovery ? "true" : "false",
			 st->streaming ? "true" : "false", st->term, st->lag_bytes);
	return reply(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", buf,
				 body);
}

/* No reopen of the store before a backoff (1 s, doubling to 30 s) has passed. */
static void
store_backoff(struct pgl_http *h)
{
	h->store_backoff_ms = h->store_backoff_ms == 0 ? STORE_RETRY_MIN_MS :
		h->store_backoff_ms * 2 > STORE_RETRY_MAX_MS ? STORE_RETRY_MAX_MS :
		h->store_backoff_ms * 2;
	h->store_retry_ms = pgl_mono_ms() + h->store_backoff_ms;
}

/* A read through the handle failed: the handle may be stale, close it and back off. */
static void
store_failed(struct pgl_http *h)
{
	pgl_log_warn("http: the lease store cannot be read: %s", pgl_store_errmsg(h->store));
	pgl_store_close(h->store);
	h->store = NULL;
	store_backoff(h);
}

/*
 * The HTTP thread's read-only store handle, opened on first use; NULL while
 * it cannot be opened.  After a failed open or read it is tried again only
 * once the backoff has passed, never sooner, so requests against a dead
 * store do not each try to reach it.  Borrowed: valid until store_failed().
 */
static struct pgl_store *
store_of(struct pgl_http *h)
{
	char err[PGL_PATH_MAX + 256];

	if (h->store != NULL || pgl_mono_ms() < h->store_retry_ms)
		return h->store;
	if (pgl_store_open(h->store_path, PGL_STORE_RDONLY, &h->store, err, sizeof(err)) < 0) {
		h->store = NULL;
		store_backoff(h);
		pgl_log_warn("http: %s (no new try for %d s)", err, (int) (h->store_backoff_ms / 1000));
		return NULL;
	}
	h->store_backoff_ms = 0;
	return h->store;
}

/* The 503 of /cluster while the store cannot be read, with when it is tried again. */
static enum MHD_Result
reply_no_store(struct pgl_http *h, struct MHD_Connection *c, bool body)
{
	int64_t left = h->store_retry_ms - pgl_mono_ms();
	char buf[160];

	snprintf(buf, sizeof(buf), "{\"error\":\"the lease store cannot be read; the next try "
			 "is in %.1f s at the earliest\"}\n", left > 0 ? left / 1000.0 : 0.0);
	return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", buf, body);
}

static enum MHD_Result
reply_cluster(struct pgl_http *h, struct MHD_Connection *c, bool body)
{
	struct pgl_store *st = store_of(h);
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int rc;
	enum MHD_Result ret;

	if (st == NULL)
		return reply_no_store(h, c, body);
	if ((f = open_memstream(&buf, &len)) == NULL)
		return MHD_NO;
	rc = pgl_cli_status_json(st, f);
	if (fclose(f) != 0 && rc == 0) {
		free(buf);
		return MHD_NO;
	}
	if (rc < 0) {
		store_failed(h);
		free(buf);
		return reply_no_store(h, c, body);
	}
	ret = reply(c, MHD_HTTP_OK, "application/json", buf, body);
	free(buf);
	return ret;
}

/*
 * One gauge of every node with a clone (pg_basebackup) or rewind
 * (pg_rewind) under way whose heartbeat is within the TTL (a node that died
 * mid-copy leaves its last figures in its record), labelled with the node
 * and the operation.
 */
static void
write_progress_gauge(const struct pgl_lease *l, const struct pgl_node *nodes, int n, FILE *f,
					 const char *name, const char *help, int which)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
	for (int i = 0; i < n; i++) {
		const struct pgl_progress *p = &nodes[i].progress;
		double v = which == 0 ? (double) p->done_kb * 1024 : which == 1 ?
			(double) p->total_kb * 1024 : (double) p->elapsed_ms / 1000.0;

		if (p->op != PGL_PROGRESS_NONE && pgl_decide_node_reachable(l, &nodes[i]))
			fprintf(f, "%s{node=\"%s\",operation=\"%s\"} %.*f\n", name, nodes[i].name,
					pgl_progress_op_name(p->op), which == 2 ? 3 : 0, v);
	}
}

/* The copy progress gauges (README "HTTP API"), from the nodes' records. */
static void
write_progress_metrics(struct pgl_http *h, const struct pgl_node *nodes, int n, FILE *f)
{
	struct pgl_lease l;

	memset(&l, 0, sizeof(l));
	if (n > 0 && h->store && pgl_store_read_lease(h->store, &l) < 0) {
		store_failed(h);
		n = 0;
	}
	write_progress_gauge(&l, nodes, n, f, "pglease_node_copy_done_bytes", "Bytes copied so "
						 "far by each node's clone or rewind under way.", 0);
	write_progress_gauge(&l, nodes, n, f, "pglease_node_copy_total_bytes", "The whole "
						 "copy's size as the tool estimates it (0 while unknown).", 1);
	write_progress_gauge(&l, nodes, n, f, "pglease_node_copy_elapsed_seconds", "Time since "
						 "the copy started, as the node last reported it.", 2);
}

/* The HTTP thread's own metrics: its connections, then each node's heartbeat from the store. */
static void
write_http_metrics(struct pgl_http *h, FILE *f)
{
	struct pgl_node *nodes = NULL;
	struct pgl_store *st;
	int n = 0;

	fprintf(f, "# HELP pglease_http_connections Open connections to the HTTP API.\n"
			"# TYPE pglease_http_connections gauge\npglease_http_connections %d\n", h->live);
	fprintf(f, "# HELP pglease_http_connections_cut_total Connections the HTTP API closed: "
			"past the deadline, or the oldest when a new one came past a cap.\n"
			"# TYPE pglease_http_connections_cut_total counter\n");
	for (int i = 0; i < CUT_REASONS; i++)
		fprintf(f, "pglease_http_connections_cut_total{reason=\"%s\"} %" PRId64 "\n",
				cut_reasons[i], h->cuts[i]);
	if ((st = store_of(h)) != NULL && pgl_store_list_nodes(st, &nodes, &n) < 0) {
		store_failed(h);
		st = NULL;
		n = 0;
	}
	fprintf(f, "# HELP pglease_http_store_readable 1 when the HTTP API could read the lease "
			"store for this answer.\n# TYPE pglease_http_store_readable gauge\n"
			"pglease_http_store_readable %d\n", st != NULL);
	fprintf(f, "# HELP pglease_node_heartbeat_age_seconds Age of each node's last "
			"heartbeat, as its record says.\n# TYPE pglease_node_heartbeat_age_seconds gauge\n");
	for (int i = 0; i < n; i++)
		if (nodes[i].age_s >= 0)
			fprintf(f, "pglease_node_heartbeat_age_seconds{node=\"%s\"} %.3f\n",
					nodes[i].name, nodes[i].age_s);
	write_progress_metrics(h, nodes, n, f);
	free(nodes);
}

/* Prometheus text format: the snapshot's counters, then each node from the store. */
static void
write_metrics(struct pgl_http *h, const struct pgl_http_state *s, FILE *f)
{
	fprintf(f, "# HELP pglease_term The lease term this node saw last.\n"
			"# TYPE pglease_term gauge\npglease_term %" PRId64 "\n", s->term);
	fprintf(f, "# HELP pglease_role 1 for this node's current role.\n"
			"# TYPE pglease_role gauge\npglease_role{role=\"%s\"} 1\n", s->role);
	fprintf(f, "# HELP pglease_lease_holder 1 when this node holds the lease.\n"
			"# TYPE pglease_lease_holder gauge\npglease_lease_holder %d\n",
			s->held_term ? 1 : 0);
	fprintf(f, "# HELP pglease_renewals_total Lease renewals written by this node.\n"
			"# TYPE pglease_renewals_total counter\npglease_renewals_total %" PRId64 "\n",
			s->renewals);
	fprintf(f, "# HELP pglease_renewals_failed_total Renewals that could not be written.\n"
			"# TYPE pglease_renewals_failed_total counter\n"
			"pglease_renewals_failed_total %" PRId64 "\n", s->renewals_failed);
	fprintf(f, "# HELP pglease_renewals_late_total Renewals later than half an interval.\n"
			"# TYPE pglease_renewals_late_total counter\n"
			"pglease_renewals_late_total %" PRId64 "\n", s->renewals_late);
	fprintf(f, "# HELP pglease_renewal_duration_seconds Time to write one renewal.\n"
			"# TYPE pglease_renewal_duration_seconds histogram\n");
	for (int i = 0; i < PGL_RENEW_BUCKETS; i++)
		fprintf(f, "pglease_renewal_duration_seconds_bucket{le=\"%g\"} %" PRId64 "\n",
				pgl_renew_bucket_s[i], s->renew_buckets[i]);
	fprintf(f, "pglease_renewal_duration_seconds_bucket{le=\"+Inf\"} %" PRId64 "\n"
			"pglease_renewal_duration_seconds_sum %.6f\n"
			"pglease_renewal_duration_seconds_count %" PRId64 "\n", s->renew_count,
			s->renew_sum_s, s->renew_count);
	fprintf(f, "# HELP pglease_fences_total Times this node fenced itself, by cause.\n"
			"# TYPE pglease_fences_total counter\n");
	for (int i = 0; i < PGL_FENCE_CAUSES; i++)
		fprintf(f, "pglease_fences_total{cause=\"%s\"} %" PRId64 "\n", fence_causes[i],
				s->fences[i]);
	fprintf(f, "# HELP pglease_term_changes_total Lease term changes seen (failovers, "
			"switchovers).\n# TYPE pglease_term_changes_total counter\n"
			"pglease_term_changes_total %" PRId64 "\n", s->terms_seen);
	fprintf(f, "# HELP pglease_replication_lag_bytes WAL this node is behind the holder's "
			"last reported position (-1 unknown).\n# TYPE pglease_replication_lag_bytes "
			"gauge\npglease_replication_lag_bytes %" PRId64 "\n", s->lag_bytes);
	write_http_metrics(h, f);
}

static enum MHD_Result
reply_metrics(struct pgl_http *h, struct MHD_Connection *c, const struct pgl_http_state *s,
			  bool body)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	enum MHD_Result ret;

	if (f == NULL)
		return MHD_NO;
	write_metrics(h, s, f);
	if (fclose(f) != 0) {
		free(buf);
		return MHD_NO;
	}
	ret = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", buf, body);
	free(buf);
	return ret;
}

/* Is this node the primary to send writes to, now, on this thread's clock? */
static bool
writable(const struct pgl_http_state *s)
{
	return s->held_term > 0 && strcmp(s->role, "primary") == 0 && s->running &&
		!s->in_recovery && pgl_mono_ms() < s->deadline_ms;
}

static enum MHD_Result
answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
	   const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct pgl_http *h = cls;
	struct pgl_http_state s;
	bool body = strcmp(method, MHD_HTTP_METHOD_GET) == 0, w;
	int64_t lag;

	(void) version;
	(void) upload;
	if (*con_cls == NULL) {			/* first call: headers only */
		*con_cls = h;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0;			/* a body is read and dropped; answered at the end */
		return MHD_YES;
	}
	if (!body && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0 &&
		strcmp(method, MHD_HTTP_METHOD_OPTIONS) != 0)
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
					 "only GET, HEAD and OPTIONS\n", true);
	pthread_mutex_lock(&h->mu);
	s = h->st;
	if (!h->published)
		strcpy(s.role, "starting");
	pthread_mutex_unlock(&h->mu);
	w = writable(&s);
	if (strcmp(url, "/primary") == 0 || strcmp(url, "/read-write") == 0)
		return reply_role(c, w, &s, w, body);
	if (strcmp(url, "/replica") == 0 || strcmp(url, "/read-only") == 0) {
		bool replica = s.running && s.in_recovery && s.streaming;
		const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "lag");
		char why[160];

		if (v != NULL && !pgl_http_parse_lag(v, &lag, why, sizeof(why) - 1))
			return reply(c, MHD_HTTP_BAD_REQUEST, "text/plain", strcat(why, "\n"), true);
		if (v != NULL)
			replica = replica && s.lag_bytes >= 0 && s.lag_bytes <= lag;
		return reply_role(c, strcmp(url, "/read-only") == 0 ?
						  replica || w : replica, &s, w, body);
	}
	if (strcmp(url, "/health") == 0)
		return reply_role(c, s.running, &s, w, body);
	if (strcmp(url, "/cluster") == 0)
		return reply_cluster(h, c, body);
	if (strcmp(url, "/metrics") == 0)
		return reply_metrics(h, c, &s, body);
	return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", "not found: /primary, /replica, "
				 "/read-only, /health, /cluster, /metrics\n", body);
}

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];

	(void) cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	pgl_log_debug("http: %s", buf);
}

int
pgl_http_start(const char *listen, const char *store_path, struct pgl_http **out, char *err,
			   size_t errlen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct pgl_http *h;
	char addr[64], why[256];
	int port;

	*out = NULL;
	if (!pgl_http_listen_parse(listen, addr, sizeof(addr), &port, why, sizeof(why))) {
		snprintf(err, errlen, "http_listen: %s", why);
		return -PGL_EINVAL;
	}
	sa.sin_port = htons((uint16_t) port);
	if (addr[0])
		inet_pton(AF_INET, addr, &sa.sin_addr);
	else
		sa.sin_addr.s_addr = htonl(INADDR_ANY);
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(err, errlen, "http: out of memory");
		return -PGL_ENOMEM;
	}
	pthread_mutex_init(&h->mu, NULL);
	pgl_strlcpy(h->store_path, store_path, sizeof(h->store_path));
	h->st.lag_bytes = -1;
	h->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, answer, h,
							  MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &sa,
							  MHD_OPTION_CONNECTION_LIMIT, (unsigned) HTTP_MHD_LIMIT,
							  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) HTTP_TIMEOUT_S,
							  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) HTTP_MEMORY,
							  MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
							  MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
							  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
							  MHD_OPTION_END);
	if (h->mhd == NULL) {
		snprintf(err, errlen, "http_listen %s: cannot listen (the port may be in use: %s)",
				 listen, strerror(errno));
		goto fail;
	}
	if ((errno = pthread_create(&h->thread, NULL, serve, h)) != 0) {
		snprintf(err, errlen, "http: cannot start its thread: %s", strerror(errno));
		MHD_stop_daemon(h->mhd);
		goto fail;
	}
	*out = h;
	return 0;
fail:
	pthread_mutex_destroy(&h->mu);
	free(h);
	return -PGL_ESYS;
}

void
pgl_http_publish(struct pgl_http *h, const struct pgl_http_state *st)
{
	if (h == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	h->st = *st;
	h->published = true;
	pthread_mutex_unlock(&h->mu);
}

void
pgl_http_stop(struct pgl_http *h)
{
	if (h == NULL)
		return;
	atomic_store(&h->stop, true);
	pthread_join(h->thread, NULL);	/* within HTTP_TICK_MS: the store is ours again */
	MHD_stop_daemon(h->mhd);		/* closes what is left (NOTIFY_CLOSED frees each) */
	pgl_store_close(h->store);
	pthread_mutex_destroy(&h->mu);
	free(h);
}
