/*
 * http.h — the agent's HTTP API for load balancers and monitoring (README
 * "HTTP API"): /primary, /replica, /read-only, /health, /cluster, /metrics.
 *
 * libmicrohttpd serves it from its own thread.  The agent's loop publishes a
 * small snapshot (pgl_http_publish) after each pass; requests are answered
 * from the last snapshot, never by the loop, so no client can delay a
 * renewal or a fence.  /cluster and the per-node lines of /metrics are read
 * by the HTTP thread from its own read-only handle on the store.  /primary
 * answers 200 only while the snapshot's fence deadline is in the future on
 * the HTTP thread's own clock: a loop that stopped publishing stops being
 * the primary for HAProxy at the moment its watchdog fences it.
 *
 * No client can hold the API: a connection gets PGL_HTTP_DEADLINE_MS from
 * its accept (or its previous answer) to have a request answered, and a
 * new connection past PGL_HTTP_PER_IP from its address or
 * PGL_HTTP_CONNECTIONS in all closes the oldest one instead of waiting.
 */
#ifndef PGLEASE_HTTP_H
#define PGLEASE_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include "pglease/common.h"

/* Fence causes counted in pglease_fences_total{cause}. */
enum { PGL_FENCE_DEADLINE = 0, PGL_FENCE_HIGHER_TERM, PGL_FENCE_HUNG, PGL_FENCE_STORE,
	   PGL_FENCE_OTHER, PGL_FENCE_CAUSES };

/* The API's bounds (README "HTTP API"). */
#define PGL_HTTP_CONNECTIONS 256	/* open connections in all */
#define PGL_HTTP_PER_IP 4			/* open connections from one client address */
#define PGL_HTTP_DEADLINE_MS 2000	/* accept (or last answer) to the next answer */

/* Upper bounds (seconds) of the renewal latency histogram's buckets. */
#define PGL_RENEW_BUCKETS 8

/* What the loop publishes after each pass. */
struct pgl_http_state {
	char node[PGL_NAME_MAX];
	char role[16];				/* the decision's role: primary, standby, candidate, ... */
	int64_t term;				/* the lease's term as last read */
	char holder[PGL_NAME_MAX];	/* its holder, "" when none */
	int64_t held_term;			/* the term this node holds, 0 when none */
	int64_t deadline_ms;		/* its fence deadline (CLOCK_MONOTONIC), 0 when none */
	bool running;				/* the local server answered the last status query */
	bool in_recovery;
	bool streaming;
	int64_t lag_bytes;			/* behind the holder's last reported position; -1 unknown */
	/* Counters since the agent started. */
	int64_t renewals;
	int64_t renewals_failed;
	int64_t renewals_late;
	int64_t fences[PGL_FENCE_CAUSES];
	int64_t terms_seen;			/* lease term changes seen (failovers and switchovers) */
	int64_t renew_buckets[PGL_RENEW_BUCKETS];	/* cumulative counts, le bucket bound */
	int64_t renew_count;
	double renew_sum_s;
};

struct pgl_http;

/*
 * Parses "[ADDRESS]:PORT" (an IPv4 address, or empty for every address).
 * Returns false, with a reason in why, when it is not one.
 */
bool pgl_http_listen_parse(const char *s, char *addr, size_t addrlen, int *port,
						   char *why, size_t whylen);

/*
 * Parses the value of /replica?lag=: a number of bytes, decimal (a fraction
 * allowed), optionally followed by a unit, B, kB, MB, GB or TB (multiples of
 * 1024, case-sensitive, as Patroni and postgresql.conf write them): "1048576",
 * "1024kB", "1.5MB".  Rounds to the nearest byte.  Returns false, with one line
 * in why, for anything else (a sign, an unknown unit, more than INT64_MAX).
 */
bool pgl_http_parse_lag(const char *s, int64_t *bytes, char *why, size_t whylen);

/*
 * Starts serving on listen ("[ADDRESS]:PORT"); store_path is opened read-only
 * by the HTTP thread when a request needs it.  Returns 0, or a negative PGL_E*
 * code with one line in err.  Stop with pgl_http_stop() (NULL is a no-op).
 */
int pgl_http_start(const char *listen, const char *store_path, struct pgl_http **out,
				   char *err, size_t errlen);
void pgl_http_publish(struct pgl_http *h, const struct pgl_http_state *st);
void pgl_http_stop(struct pgl_http *h);

/* The bucket bounds, seconds (for the agent's counting and the output). */
extern const double pgl_renew_bucket_s[PGL_RENEW_BUCKETS];

#endif
