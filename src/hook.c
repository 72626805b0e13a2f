/*
 * hook.c — on_role_change: the operator's program, run with argv
 * (EVENT, ROLE, TERM, NODE) when this node's role changes (README "Hooks").
 *
 * Never in the way of the lease: the program is started without waiting
 * (pgl_spawn_detached: its own process group, no descriptor of the agent's,
 * dies with the agent), reaped on a later pass, and its group killed once it
 * has run hook_timeout_ms.  One runs at a time; the next waits in a short
 * queue (the oldest waiting one is dropped, with a warning, when it is
 * full).  Its exit status and run time are logged.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "pglease/daemon.h"
#include "pglease/hook.h"
#include "pglease/log.h"
#include "pglease/pgctl.h"

static void
start_next(struct pgl_daemon *d)
{
	struct pgl_hooks *h = &d->hooks;
	struct pgl_hook_call *c = &h->queue[0];
	char term[32];
	char *argv[6];

	snprintf(term, sizeof(term), "%lld", (long long) c->term);
	argv[0] = d->cfg.on_role_change;
	argv[1] = c->event;
	argv[2] = c->role;
	argv[3] = term;
	argv[4] = d->cfg.node_name;
	argv[5] = NULL;
	h->running = *c;
	memmove(&h->queue[0], &h->queue[1], (size_t) (h->n - 1) * sizeof(h->queue[0]));
	h->n--;
	h->pid = pgl_spawn_detached(argv);
	if (h->pid < 0) {
		pgl_log_error("on_role_change %s %s %s: cannot start %s: %s", h->running.event,
					  h->running.role, term, d->cfg.on_role_change, strerror(errno));
		h->pid = 0;
		return;
	}
	h->started_ms = pgl_mono_ms();
	h->killed = h->exited = false;
}

void
pgl_hook_fire(struct pgl_daemon *d, const char *event, const char *role, int64_t term)
{
	struct pgl_hooks *h = &d->hooks;
	struct pgl_hook_call *c;

	if (!d->cfg.on_role_change[0])
		return;
	if (h->n == PGL_HOOK_QUEUE) {
		pgl_log_warn("on_role_change: %d calls waiting; dropping the oldest (%s %s %lld)",
					 h->n, h->queue[0].event, h->queue[0].role, (long long) h->queue[0].term);
		memmove(&h->queue[0], &h->queue[1], (size_t) (h->n - 1) * sizeof(h->queue[0]));
		h->n--;
	}
	c = &h->queue[h->n++];
	pgl_strlcpy(c->event, event, sizeof(c->event));
	pgl_strlcpy(c->role, role, sizeof(c->role));
	c->term = term;
	if (h->pid == 0)
		start_next(d);
}

void
pgl_hook_poll(struct pgl_daemon *d)
{
	struct pgl_hooks *h = &d->hooks;
	int64_t ran;
	int st;
	pid_t r;

	if (h->pid == 0)
		return;
	if (h->exited) {
		r = h->pid;
		st = h->status;
	} else
		r = waitpid(h->pid, &st, WNOHANG);
	ran = pgl_mono_ms() - h->started_ms;
	if (r == 0) {
		if (!h->killed && ran >= d->cfg.hook_timeout_ms) {
			kill(-h->pid, SIGKILL);
			h->killed = true;
		}
		return;
	}
	if (r < 0 && errno == EINTR)
		return;
	if (r < 0)
		pgl_log_warn("on_role_change %s %s %lld: its exit status was lost (%s)",
					 h->running.event, h->running.role, (long long) h->running.term,
					 strerror(errno));
	if (r > 0 && h->killed)
		pgl_log_warn("on_role_change %s %s %lld: killed after %.2f s (hook_timeout_ms %d)",
					 h->running.event, h->running.role, (long long) h->running.term,
					 ran / 1000.0, d->cfg.hook_timeout_ms);
	else if (r > 0 && WIFEXITED(st))
		pgl_log(WEXITSTATUS(st) ? PGL_LOG_WARN : PGL_LOG_INFO,
				   "on_role_change %s %s %lld: exit status %d after %.2f s", h->running.event,
				   h->running.role, (long long) h->running.term, WEXITSTATUS(st), ran / 1000.0);
	else if (r > 0)
		pgl_log_warn("on_role_change %s %s %lld: ended by signal %d after %.2f s",
					 h->running.event, h->running.role, (long long) h->running.term,
					 WTERMSIG(st), ran / 1000.0);
	h->pid = 0;
	if (h->n > 0)
		start_next(d);
}

int64_t
pgl_hook_wake_ms(const struct pgl_daemon *d)
{
	const struct pgl_hooks *h = &d->hooks;

	if (h->pid == 0 || h->killed)
		return INT64_MAX;		/* its exit wakes the loop (SIGCHLD) */
	return h->started_ms + d->cfg.hook_timeout_ms;
}

void
pgl_hook_finish(struct pgl_daemon *d, int64_t max_ms)
{
	int64_t until = pgl_mono_ms() + max_ms;

	while ((d->hooks.pid > 0 || d->hooks.n > 0) && pgl_mono_ms() < until) {
		pgl_hook_poll(d);
		if (d->hooks.pid > 0)
			poll(NULL, 0, 20);
	}
	pgl_hook_abandon(d);
}

void
pgl_hook_abandon(struct pgl_daemon *d)
{
	struct pgl_hooks *h = &d->hooks;

	if (h->pid > 0) {
		kill(-h->pid, SIGKILL);
		while (!h->exited && waitpid(h->pid, NULL, 0) < 0 && errno == EINTR)
			;
		h->pid = 0;
	}
	h->n = 0;
}
