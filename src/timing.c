/*
 * timing.c — every time bound the agent uses, in one place (see timing.h).
 */
#include "pglease/timing.h"

void
pgl_timeouts_init(struct pgl_timeouts *t, const struct pgl_config *cfg)
{
	(void) cfg;					/* no bound depends on the lease timings yet */
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
}
