/*
 * timing.c — every time bound the agent uses, in one place (see timing.h).
 */
#include "pglease/timing.h"

void
pgl_timeouts_init(struct pgl_timeouts *t, const struct pgl_config *cfg)
{
	t->connect_s = 2;
	t->start_ms = 120000;		/* crash recovery of a busy server */
	t->promote_ms = 60000;
	t->stop_ms = 60000;			/* docker stop's default grace is 10 s: it kills first */
	t->stop_for_rewind_ms = 30000;
	t->quit_ms = 2000;
	t->kill_ms = 5000;
	t->initdb_ms = 600000;
	t->clone_ms = 3600000;		/* a large database over a slow link */
	t->rewind_ms = 1800000;
	t->poll_ms = 20;
	/*
	 * A hung local server must not stall the loop: a pass spends at most one
	 * bound on it (after a timeout the server gets a renewal interval to
	 * recover before the next attempt), half the holder's slack of one
	 * renewal interval between a due renewal and its deadline (config.c
	 * requires renew_interval_ms * 2 <= lease_ttl_ms - fence_margin_ms).
	 */
	t->local_ms = cfg->renew_interval_ms / 2;
	t->local_ms = t->local_ms < 100 ? 100 : t->local_ms > 1000 ? 1000 : t->local_ms;
}
