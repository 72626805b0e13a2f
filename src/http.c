/*
 * http.c — the agent's HTTP API (see http.h), on libmicrohttpd.
 *
 * One thread of libmicrohttpd's own polls the listening socket and every
 * connection.  A request is answered from the snapshot the loop published
 * last (copied under a mutex) and, for /cluster and the per-node metrics,
 * from a read-only store handle that only this thread uses.  Bounds keep a
 * client from taking more than its share: at most HTTP_CONNECTIONS
 * connections (HTTP_PER_IP from one address), HTTP_TIMEOUT_S seconds of
 * silence, HTTP_MEMORY bytes of request headers; the URL and a query of
 * more than that are refused by libmicrohttpd itself.  Only GET, HEAD and
 * OPTIONS are served (OPTIONS as GET without a body, the way HAProxy's
 * httpchk asks by default).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pglease/cli.h"
#include "pglease/config.h"
#include "pglease/decide.h"
#include "pglease/http.h"
#include "pglease/log.h"
#include "pglease/store.h"

#define HTTP_CONNECTIONS 32
#define HTTP_PER_IP 8
#define HTTP_TIMEOUT_S 5
#define HTTP_MEMORY (16 * 1024)

const double pgl_renew_bucket_s[PGL_RENEW_BUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
};

static const char *const fence_causes[PGL_FENCE_CAUSES] = {
	"deadline", "higher_term", "hung", "store", "other",
};

struct pgl_http {
	struct MHD_Daemon *mhd;
	pthread_mutex_t mu;
	struct pgl_http_state st;
	bool published;
	char store_path[PGL_PATH_MAX];
	struct pgl_store *store;	/* opened by the HTTP thread on first use */
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

/* ?lag=BYTES: -1 when absent, -2 when not a number. */
static int64_t
lag_arg(struct MHD_Connection *c)
{
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "lag");
	char *end;
	long long n;

	if (v == NULL)
		return -1;
	errno = 0;
	n = strtoll(v, &end, 10);
	return errno || end == v || *end != '\0' || n < 0 ? -2 : n;
}

static struct pgl_store *
store_of(struct pgl_http *h)
{
	char err[PGL_PATH_MAX + 256];

	if (h->store == NULL &&
		pgl_store_open(h->store_path, PGL_STORE_RDONLY, &h->store, err, sizeof(err)) < 0) {
		pgl_log_warn("http: %s", err);
		h->store = NULL;
	}
	return h->store;
}

/* The store is read through a handle that may go stale: a failed read reopens it next time. */
static void
store_failed(struct pgl_http *h)
{
	pgl_store_close(h->store);
	h->store = NULL;
}

static enum MHD_Result
reply_cluster(struct pgl_http *h, struct MHD_Connection *c, bool body)
{
	struct pgl_store *st = store_of(h);
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int rc = -PGL_ESTORE;
	enum MHD_Result ret;

	if (st && (f = open_memstream(&buf, &len)) != NULL) {
		rc = pgl_cli_status_json(st, f);
		if (fclose(f) != 0 && rc == 0)
			rc = -PGL_ENOMEM;
	}
	if (rc < 0) {
		store_failed(h);
		free(buf);
		return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json",
					 "{\"error\":\"the lease store cannot be read\"}\n", body);
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

/* Prometheus text format: the snapshot's counters, then each node from the store. */
static void
write_metrics(struct pgl_http *h, const struct pgl_http_state *s, FILE *f)
{
	struct pgl_node *nodes = NULL;
	struct pgl_store *st;
	int n = 0;

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
	if ((st = store_of(h)) != NULL && pgl_store_list_nodes(st, &nodes, &n) < 0) {
		store_failed(h);
		n = 0;
	}
	fprintf(f, "# HELP pglease_node_heartbeat_age_seconds Age of each node's last "
			"heartbeat, as its record says.\n# TYPE pglease_node_heartbeat_age_seconds gauge\n");
	for (int i = 0; i < n; i++)
		if (nodes[i].age_s >= 0)
			fprintf(f, "pglease_node_heartbeat_age_seconds{node=\"%s\"} %.3f\n",
					nodes[i].name, nodes[i].age_s);
	write_progress_metrics(h, nodes, n, f);
	free(nodes);
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

		if ((lag = lag_arg(c)) == -2)
			return reply(c, MHD_HTTP_BAD_REQUEST, "text/plain",
						 "lag must be a number of bytes\n", true);
		if (lag >= 0)
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
	h->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
							  MHD_USE_ERROR_LOG, 0, NULL, NULL, answer, h,
							  MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &sa,
							  MHD_OPTION_CONNECTION_LIMIT, (unsigned) HTTP_CONNECTIONS,
							  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned) HTTP_PER_IP,
							  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) HTTP_TIMEOUT_S,
							  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) HTTP_MEMORY,
							  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
							  MHD_OPTION_END);
	if (h->mhd == NULL) {
		snprintf(err, errlen, "http_listen %s: cannot listen (the port may be in use: %s)",
				 listen, strerror(errno));
		pthread_mutex_destroy(&h->mu);
		free(h);
		return -PGL_ESYS;
	}
	*out = h;
	return 0;
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
	MHD_stop_daemon(h->mhd);		/* joins the thread: the store is ours again */
	pgl_store_close(h->store);
	pthread_mutex_destroy(&h->mu);
	free(h);
}
