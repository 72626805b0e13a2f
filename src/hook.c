/*
 * hook.c — on_role_change: the operator's program, run with argv
 * (EVENT, ROLE, TERM, NODE) when this node's role changes (README "Hooks").
 *
 * Never in the way of the lease: the program is started without waiting
 * (pgl_spawn_detached: its own process group, no descriptor of the agent's,
 * none of the agent's secrets in its environment, dies with the agent),
 * reaped on a later pass, and its group killed once it has run
 * hook_timeout_ms.  One runs at a time; the next waits in a short queue
 * (the oldest waiting one is dropped, with a warning, when it is full).
 * Its exit status and run time are logged.
 *
 * What the program left running in its group (`sleep 1000 &`) does not
 * outlive it: when the leader exits, the group gets SIGTERM and, still there
 * HOOK_GRACE_MS later, SIGKILL; at agent exit the same, waited for.  A
 * process that left the group (setsid) is the operator's own.
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

/* How long a hook's group has between SIGTERM and SIGKILL. */
#define HOOK_GRACE_MS 1000

/*
 * The leader of group pgid has exited: SIGTERM what is left of the group,
 * SIGKILLed on a later pass (reap_group) after HOOK_GRACE_MS.  An older
 * group still waiting for its SIGKILL gets it now (one is tracked).
 */
static void
end_group(struct pgl_hooks *h, pid_t pgid)
{
	if (kill(-pgid, SIGTERM) != 0)
		return;					/* ESRCH: nothing was left */
	if (h->linger > 0)
		kill(-h->linger, SIGKILL);
	h->linger = pgid;
	h->linger_ms = pgl_mono_ms();
}

/* SIGKILLs the lingering group once its grace has passed (or forgets it when it is gone). */
static void
reap_group(struct pgl_hooks *h)
{
	if (h->linger <= 0)
		return;
	if (kill(-h->linger, 0) != 0 && errno == ESRCH)
		h->linger = 0;
	else if (pgl_mono_ms() - h->linger_ms >= HOOK_GRACE_MS) {
		kill(-h->linger, SIGKILL);
		h->linger = 0;
	}
}

/*
 * At exit: SIGTERM group pgid, wait up to HOOK_GRACE_MS for it to be gone
 * (reaping its leader, our child, when leader > 0), then SIGKILL it.
 */
static void
stop_group(pid_t pgid, pid_t leader)
{
	int64_t until = pgl_mono_ms() + HOOK_GRACE_MS;

	if (kill(-pgid, SIGTERM) != 0)
		return;
	while (pgl_mono_ms() < until) {
		if (leader > 0 && waitpid(leader, NULL, WNOHANG) == leader)
			leader = 0;
		if (leader == 0 && kill(-pgid, 0) != 0)
			return;
		poll(NULL, 0, 20);
	}
	kill(-pgid, SIGKILL);
	while (leader > 0 && waitpid(leader, NULL, 0) < 0 && errno == EINTR)
		;
}

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

	reap_group(h);
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
	end_group(h, h->pid);
	h->pid = 0;
	if (h->n > 0)
		start_next(d);
}

int64_t
pgl_hook_wake_ms(const struct pgl_daemon *d)
{
	const struct pgl_hooks *h = &d->hooks;
	int64_t w = INT64_MAX;		/* the running one's exit wakes the loop (SIGCHLD) */

	if (h->pid > 0 && !h->killed)
		w = h->started_ms + d->cfg.hook_timeout_ms;
	if (h->linger > 0 && h->linger_ms + HOOK_GRACE_MS < w)
		w = h->linger_ms + HOOK_GRACE_MS;
	return w;
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
		stop_group(h->pid, h->exited ? 0 : h->pid);
		h->pid = 0;
	}
	if (h->linger > 0) {
		stop_group(h->linger, 0);
		h->linger = 0;
	}
	h->n = 0;
}
