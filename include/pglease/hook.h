/*
 * hook.h — on_role_change (hook.c): the operator's program, run when this
 * node's role changes, asynchronously and bounded by hook_timeout_ms.
 */
#ifndef PGLEASE_HOOK_H
#define PGLEASE_HOOK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define PGL_HOOK_QUEUE 8

struct pgl_daemon;

struct pgl_hook_call {
	char event[32];				/* bootstrap, promoted, fenced, released, followed */
	char role[16];				/* the role after it */
	int64_t term;
};

struct pgl_hooks {
	pid_t pid;					/* running now (its process group), 0 when none */
	int64_t started_ms;
	bool killed;				/* its group was killed at the timeout */
	bool exited;				/* reaped by pgl_server_reap(), which reaps every child */
	int status;					/* ... with this wait status */
	pid_t linger;				/* an ended one's group, SIGTERMed at linger_ms; 0 when none */
	int64_t linger_ms;
	struct pgl_hook_call running;
	struct pgl_hook_call queue[PGL_HOOK_QUEUE];
	int n;
};

/* Queues a call (nothing when on_role_change is empty) and starts it when none runs. */
void pgl_hook_fire(struct pgl_daemon *d, const char *event, const char *role, int64_t term);
/* Reaps the running one, kills it at its timeout, starts the next.  Every pass. */
void pgl_hook_poll(struct pgl_daemon *d);
/* When the running one's timeout is due (INT64_MAX when none). */
int64_t pgl_hook_wake_ms(const struct pgl_daemon *d);
/* At exit: lets the running and queued ones run for up to max_ms, then abandons. */
void pgl_hook_finish(struct pgl_daemon *d, int64_t max_ms);
/* Ends the running one's group and an ended one's leftovers (SIGTERM, 1 s, SIGKILL), forgets the queue. */
void pgl_hook_abandon(struct pgl_daemon *d);

#endif
