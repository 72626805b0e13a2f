/*
 * timing.h — every time bound the agent uses, in one place (DESIGN.md
 * section 2 for the lease timings themselves).
 *
 * The lease timings (lease_ttl_ms, renew_interval_ms, fence_margin_ms,
 * election_grace_ms, follow_timeout_ms) come from the configuration and are
 * checked against each other at startup; the decision module derives its
 * own waits from them (decide.c).  The bounds below are for operations on
 * the local server.  Only local_ms depends on the lease timings: jobs never
 * hold up a renewal or a fence (the loop renews while they wait, job.c), but
 * a connection attempt or a query of the local server still runs inside a
 * pass, so it is bounded by half a renewal interval.
 */
#ifndef PGLEASE_TIMING_H
#define PGLEASE_TIMING_H

#include <stdint.h>

#include "pglease/config.h"

struct pgl_timeouts {
	int64_t connect_s;			/* libpq connect_timeout for the local server */
	int64_t start_ms;			/* postgres accepting connections after a start */
	int64_t promote_ms;			/* out of recovery after pg_promote() */
	int64_t stop_ms;			/* clean stop: fast shutdown to a shutdown checkpoint */
	int64_t stop_for_rewind_ms;	/* fast shutdown before pg_rewind */
	int64_t quit_ms;			/* immediate shutdown (SIGQUIT) before SIGKILL of the tree */
	int64_t kill_ms;			/* the tree gone after SIGKILL */
	int64_t initdb_ms;
	int64_t clone_ms;			/* pg_basebackup */
	int64_t rewind_ms;			/* pg_rewind */
	int64_t poll_ms;			/* between checks while waiting on the server */
	int64_t local_ms;			/* any one connection attempt or query of the local server */
};

/* Fills t for the configuration cfg. */
void pgl_timeouts_init(struct pgl_timeouts *t, const struct pgl_config *cfg);

#endif
