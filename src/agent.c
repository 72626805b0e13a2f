/*
 * agent.c — `pglease run`: the lease loop, the election and the supervision
 * of the local PostgreSQL (DESIGN.md sections 2, 3 and 6).
 *
 * One thread runs everything through a poll(2) loop woken by inotify on the
 * store, by signals (signalfd) and by a timer.  A second process, the
 * fence watchdog, enforces the fence deadline even when the
 * agent itself is stalled (SIGSTOP, a frozen server, a hung disk).
 *
 * Safety rests on CLOCK_MONOTONIC alone: the holder fences at
 * t0 + lease_ttl_ms - fence_margin_ms where t0 is taken before the renewing
 * transaction began; an observer takes over only after the same lease
 * version was unchanged for lease_ttl_ms on its own clock, or when the
 * kernel proves that every process of the holder is gone (its alive lock
 * can be taken).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pglease/agent.h"
#include "pglease/daemon.h"
#include "pglease/log.h"
#include "pglease/pgctl.h"

static void holder_duties(struct pgl_daemon *d, int64_t now);

/* ---- the fence watchdog ---- */

/*
 * The fence watchdog is a separate process, not a thread: a SIGSTOP of the
 * agent (or any stall of its process) must not stop the fence.  The agent
 * publishes its fence deadline and the postmaster's pid in a shared page;
 * the watchdog kills the postmaster and every child of it the moment the
 * deadline passes.  It holds no lock and no store connection.
 */
struct wd_page {
	int64_t deadline_ms;		/* 0 when not holding */
	int32_t pm_pid;
	int32_t agent_pid;
};

static struct wd_page *wd;

static void
watchdog_main(void)
{
	for (;;) {
		int64_t dl = __atomic_load_n(&wd->deadline_ms, __ATOMIC_SEQ_CST);
		pid_t pm = __atomic_load_n(&wd->pm_pid, __ATOMIC_SEQ_CST);

		if (getppid() != wd->agent_pid)
			_exit(0);
		/*
		 * 100 ms of slack lets a running agent fence cleanly first (SIGQUIT,
		 * an event in the store); a stalled one is fenced here.
		 */
		if (dl > 0 && pm > 0 && pgl_mono_ms() >= dl + 100) {
			pgl_proc_kill_tree(pm);
			pgl_log_error("fenced by the watchdog: deadline passed while the agent was stalled; "
						  "postgres (pid %d) and its children killed", (int) pm);
			__atomic_store_n(&wd->deadline_ms, 0, __ATOMIC_SEQ_CST);
		}
		usleep(10000);
	}
}

static int
watchdog_start(void)
{
	pid_t pid;

	wd = mmap(NULL, sizeof(*wd), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (wd == MAP_FAILED)
		return -PGL_ESYS;
	wd->agent_pid = getpid();
	pid = fork();
	if (pid < 0)
		return -PGL_ESYS;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close_range(3, ~0U, 0);		/* never holds the alive lock or the store */
		prctl(PR_SET_NAME, "pglease-fence");
		watchdog_main();
	}
	return 0;
}

static void
wd_update(struct pgl_daemon *d)
{
	if (wd == NULL)
		return;
	__atomic_store_n(&wd->pm_pid, d->pm_pid, __ATOMIC_SEQ_CST);
	__atomic_store_n(&wd->deadline_ms, d->term ? d->deadline_ms : 0, __ATOMIC_SEQ_CST);
}

/* ---- events that must not be lost ---- */

/*
 * Writes an event, or keeps it for later when the store cannot be written
 * now (locked, full): a fence caused by a locked store must still be
 * recorded once the store is back.  Kept events are written by
 * flush_events() with their original time in the detail.
 */
static void __attribute__((format(printf, 4, 5)))
agent_event(struct pgl_daemon *d, int64_t term, const char *kind, const char *fmt, ...)
{
	struct pgl_pending_event *e;
	char detail[512], ts[PGL_TS_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (d->n_pending == 0 &&
		pgl_store_event(d->st, term, d->cfg.node_name, kind, "%s", detail) == 0)
		return;
	if (d->n_pending == PGL_MAX_PENDING) {
		pgl_log_error("event %s not recorded (store unavailable, queue full): %s", kind, detail);
		return;
	}
	pgl_wall_iso(ts, sizeof(ts));
	e = &d->pending[d->n_pending++];
	e->term = term;
	pgl_strlcpy(e->kind, kind, sizeof(e->kind));
	snprintf(e->detail, sizeof(e->detail), "%s (happened at %s; recorded late, the store "
			 "was unavailable)", detail, ts);
	pgl_log_warn("event %s kept until the store can be written", kind);
}

static void
flush_events(struct pgl_daemon *d)
{
	int i;

	for (i = 0; i < d->n_pending; i++) {
		struct pgl_pending_event *e = &d->pending[i];

		if (pgl_store_event(d->st, e->term, d->cfg.node_name, e->kind, "%s", e->detail) < 0)
			break;
	}
	if (i > 0) {
		memmove(d->pending, d->pending + i, (d->n_pending - i) * sizeof(d->pending[0]));
		d->n_pending -= i;
	}
}

/* ---- holder ---- */

void
pgl_agent_fence(struct pgl_daemon *d, const char *why)
{
	int64_t term = d->term;

	d->term = 0;
	wd_update(d);
	pgl_node_kill(d);
	pgl_strlcpy(d->state, "fenced", sizeof(d->state));
	pgl_log_error("fenced: %s (gave up term %lld; postgres stopped immediately)", why,
				  (long long) term);
	pgl_store_set_busy_ms(d->st, 200);
	agent_event(d, term, "fenced", "%s", why);
	pgl_store_set_busy_ms(d->st, 500);
	pgl_log_set_term(-1);
}

static void
renew(struct pgl_daemon *d)
{
	int64_t t0 = pgl_mono_ms(), dl = 0, renewals = 0;
	int64_t late = d->last_renew_ms ? t0 - (d->last_renew_ms + d->cfg.renew_interval_ms) : 0;
	int rc;

	rc = pgl_store_renew(d->st, d->cfg.node_name, d->term, t0, d->cfg.lease_ttl_ms,
						 d->cfg.fence_margin_ms, d->deadline_ms, &dl, &renewals);
	if (rc == 0) {
		if (late > d->cfg.renew_interval_ms / 2) {
			pgl_log_warn("renewal late by %lld ms", (long long) late);
			if (late >= d->cfg.renew_interval_ms)
				agent_event(d, d->term, "renewed-late", "late by %lld ms", (long long) late);
		}
		d->deadline_ms = dl;
		d->last_renew_ms = t0;
		d->next_renew_ms = t0 + d->cfg.renew_interval_ms;
		wd_update(d);
		pgl_node_fence_arm(d);
		return;
	}
	if (rc == -PGL_ENOTHOLDER) {
		pgl_agent_fence(d, "higher term seen: the lease is no longer ours");
		return;
	}
	pgl_log_warn("renewal failed: %s (%s); fencing in %lld ms unless a renewal succeeds",
				 pgl_strerror(rc), pgl_store_errmsg(d->st),
				 (long long) (d->deadline_ms - pgl_mono_ms()));
	d->next_renew_ms = pgl_mono_ms() + 100;
}

static void
holder_duties(struct pgl_daemon *d, int64_t now)
{
	if (d->term == 0 || d->in_tick_renew)
		return;
	d->in_tick_renew = true;
	if (now >= d->deadline_ms)
		pgl_agent_fence(d, "deadline passed without a successful renewal");
	else if (now >= d->next_renew_ms)
		renew(d);
	d->in_tick_renew = false;
}

void
pgl_agent_keepalive(void *arg)
{
	holder_duties(arg, pgl_mono_ms());
}

/* Releases the lease (lsn may be NULL) and forgets the term. */
static void
release(struct pgl_daemon *d, const char *lsn, const char *why)
{
	int rc = pgl_store_release(d->st, d->cfg.node_name, d->term, lsn, why);

	if (rc < 0)
		pgl_log_error("cannot release term %lld: %s", (long long) d->term, pgl_strerror(rc));
	else
		pgl_log_info("released term %lld%s%s: %s", (long long) d->term,
					 lsn ? " at " : "", lsn ? lsn : "", why);
	d->term = 0;
	wd_update(d);
	pgl_log_set_term(-1);
}

/* ---- liveness of the other nodes ---- */

static void
track_heartbeats(struct pgl_daemon *d, const struct pgl_node *nodes, int n, int64_t now)
{
	for (int i = 0; i < n; i++) {
		int j;

		for (j = 0; j < d->n_hb; j++)
			if (strcmp(d->hb[j].name, nodes[i].name) == 0)
				break;
		if (j == d->n_hb) {
			d->hb = realloc(d->hb, (d->n_hb + 1) * sizeof(*d->hb));
			pgl_strlcpy(d->hb[j].name, nodes[i].name, sizeof(d->hb[j].name));
			d->hb[j].heartbeat = -1;
			d->n_hb++;
		}
		if (d->hb[j].heartbeat != nodes[i].heartbeat) {
			d->hb[j].heartbeat = nodes[i].heartbeat;
			d->hb[j].changed_ms = now;
		}
	}
}

/* Monotonic time this node last saw name's heartbeat change, 0 if never. */
static int64_t
hb_changed_at(const struct pgl_daemon *d, const char *name)
{
	for (int j = 0; j < d->n_hb; j++)
		if (strcmp(d->hb[j].name, name) == 0)
			return d->hb[j].changed_ms;
	return 0;
}

/* Live: its heartbeat was seen changing within ttl on this node's clock. */
static bool
node_live(const struct pgl_daemon *d, const char *name, int64_t now, int64_t ttl)
{
	int64_t at = hb_changed_at(d, name);

	return at > 0 && now - at < ttl;
}

/*
 * Opens <store dir>/alive/<node>.lock.  The shared directory is input, not
 * truth: the name must be a valid node name (it comes from the store), the
 * alive directory and the file must not be symlinks (a link planted there
 * would make us create or lock a file in another node's data directory),
 * nothing may block (a FIFO), and the file must be a regular file.
 * Returns the descriptor or -1 (errno set; a reason in err when given).
 */
static int
open_alive_lock(struct pgl_daemon *d, const char *node, int flags, char *err, size_t len)
{
	char file[PGL_NAME_MAX + 8];
	struct stat sb;
	int dfd, fd = -1, e = 0;

	if (!pgl_name_valid(node)) {
		if (err)
			snprintf(err, len, "%s: refusing a lock file for an invalid node name", d->lock_dir);
		errno = EINVAL;
		return -1;
	}
	snprintf(file, sizeof(file), "%s.lock", node);
	dfd = open(d->lock_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		e = errno;
		if (err)
			snprintf(err, len, "%s: %s%s", d->lock_dir, strerror(e),
					 e == ELOOP || e == ENOTDIR ? " (must be a directory, not a symlink)" : "");
		errno = e;
		return -1;
	}
	fd = openat(dfd, file, flags | O_NOFOLLOW | O_NONBLOCK, 0660);
	if (fd < 0)
		e = errno;
	else if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		e = EINVAL;
		close(fd);
		fd = -1;
	}
	close(dfd);
	if (fd < 0) {
		if (err)
			snprintf(err, len, "%s/%s: %s", d->lock_dir, file, e == ELOOP ?
					 "is a symlink; refusing to follow it" : e == EINVAL ?
					 "not a regular file" : strerror(e));
		errno = e;
	}
	return fd;
}

/*
 * Proof of death: true when the holder's alive lock can be taken, i.e. the
 * holder's agent, postmaster and every backend have exited.  The lock is
 * dropped again at once.
 */
static bool
holder_processes_gone(struct pgl_daemon *d, const char *holder)
{
	bool gone = false;
	int fd = open_alive_lock(d, holder, O_RDONLY | O_CLOEXEC, NULL, 0);

	if (fd < 0)
		return false;			/* no lock file: no proof, the TTL decides */
	if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
		gone = true;
		flock(fd, LOCK_UN);
	}
	close(fd);
	return gone;
}

/* ---- the local server's status ---- */

static int
local_status(struct pgl_daemon *d, struct pgl_pg_status *s)
{
	PGconn *c = d->pm_pid > 0 ? pgl_node_conn(d) : NULL;

	if (c == NULL || pgl_pg_status(c, s) < 0) {
		if (c)
			pgl_node_disconnect(d);
		return -PGL_EPG;
	}
	return 0;
}

static void
heartbeat(struct pgl_daemon *d, int64_t now)
{
	struct pgl_node n;
	struct pgl_pg_status s;

	if (now < d->next_heartbeat_ms)
		return;
	d->next_heartbeat_ms = now + d->cfg.renew_interval_ms;
	memset(&n, 0, sizeof(n));
	pgl_strlcpy(n.name, d->cfg.node_name, sizeof(n.name));
	snprintf(n.conninfo, sizeof(n.conninfo), "host=%s port=%d", d->cfg.advertise_host,
			 d->cfg.pg_port);
	n.priority = d->cfg.priority;
	strcpy(n.role, "unknown");
	if (local_status(d, &s) == 0) {
		strcpy(n.role, s.in_recovery ? "standby" : "primary");
		n.timeline = s.timeline;
		n.receive_lsn_int = s.receive_lsn > s.replay_lsn ? s.receive_lsn : s.replay_lsn;
		n.replay_lsn_int = s.replay_lsn;
		pgl_lsn_format(n.receive_lsn_int, n.receive_lsn, sizeof(n.receive_lsn));
		pgl_lsn_format(n.replay_lsn_int, n.replay_lsn, sizeof(n.replay_lsn));
		if (s.in_recovery) {
			pgl_strlcpy(n.state, s.streaming ? "streaming" : "recovering", sizeof(n.state));
			pgl_strlcpy(n.upstream, d->following, sizeof(n.upstream));
		} else
			pgl_strlcpy(n.state, "running", sizeof(n.state));
	} else
		pgl_strlcpy(n.state, pgl_node_has_data(d) ? (d->state[0] ? d->state : "stopped")
					: (d->state[0] ? d->state : "empty"), sizeof(n.state));
	if (pgl_store_node_upsert(d->st, &n) < 0)
		pgl_log_debug("heartbeat not written: %s", pgl_store_errmsg(d->st));
}

/* ---- becoming primary ---- */

static void
become_primary(struct pgl_daemon *d)
{
	int rc;

	if (!pgl_node_has_data(d)) {
		rc = pgl_node_bootstrap(d);
		if (rc == 0)
			pgl_log_info("bootstrapped the cluster as primary");
	} else {
		rc = pgl_node_promote(d);
		if (rc == 0) {
			struct pgl_pg_status s;

			local_status(d, &s);
			pgl_log_info("promoted: now primary on timeline %lld", (long long) s.timeline);
			agent_event(d, d->term, "promoted", "pg_promote() done; timeline %lld",
						(long long) s.timeline);
		}
	}
	if (d->term == 0)
		return;					/* fenced meanwhile */
	if (rc < 0) {
		pgl_log_error("could not become primary (%s); releasing the lease", pgl_strerror(rc));
		agent_event(d, d->term, "promotion-failed", "%s", pgl_strerror(rc));
		pgl_node_kill(d);
		release(d, NULL, "promotion failed");
		return;
	}
	if (pgl_node_fence_setup(d) < 0)
		pgl_log_warn("in-server fence not armed; relying on the agent and its watchdog");
	d->following[0] = '\0';
	pgl_strlcpy(d->state, "running", sizeof(d->state));
	pgl_node_sync_slots(d);
	d->slots_checked_ms = pgl_mono_ms();
	d->next_heartbeat_ms = 0;
	wd_update(d);
}

static void
claim(struct pgl_daemon *d, const char *rule)
{
	int64_t t0 = pgl_mono_ms(), term = 0;
	char detail[256];
	int rc;

	snprintf(detail, sizeof(detail), "%s (previous holder %s, term %lld)", rule,
			 d->lease.holder[0] ? d->lease.holder : "none", (long long) d->lease.term);
	rc = pgl_store_claim(d->st, &d->lease, d->cfg.node_name, d->cfg.lease_ttl_ms, detail, &term);
	if (rc == -PGL_ECONFLICT) {
		pgl_log_info("lost the claim for term %lld: the lease changed", (long long) d->lease.term + 1);
		return;
	}
	if (rc < 0) {
		/* Back off: a full or locked store must not turn every wake into a retry. */
		if (d->claim_failures++ % 20 == 0)
			pgl_log_warn("claim failed: %s (%s); retrying every 250 ms", pgl_strerror(rc),
						 pgl_store_errmsg(d->st));
		d->claim_retry_ms = t0 + 250;
		return;
	}
	d->claim_failures = 0;
	d->term = term;
	d->deadline_ms = t0 + d->cfg.lease_ttl_ms - d->cfg.fence_margin_ms;
	d->last_renew_ms = t0;
	d->next_renew_ms = t0 + d->cfg.renew_interval_ms;
	d->expired_since_ms = 0;
	wd_update(d);
	pgl_log_set_term(term);
	pgl_log_info("claimed term %lld: %s", (long long) term, detail);
	become_primary(d);
}

struct cand {
	const char *name;
	uint64_t lsn;
	int64_t priority;
};

/* True when a ranks before b: received LSN, then priority, then name. */
static bool
ranks_before(const struct cand *a, const struct cand *b)
{
	if (a->lsn != b->lsn)
		return a->lsn > b->lsn;
	if (a->priority != b->priority)
		return a->priority > b->priority;
	return strcmp(a->name, b->name) < 0;
}

/*
 * Decides whether this node claims the claimable lease now.
 *
 * Candidates rank by received LSN, priority, name.  The LSNs in the nodes
 * table are up to one heartbeat old, so every candidate publishes a fresh
 * heartbeat the moment it finds the lease claimable, and the best claims at
 * once only when every live candidate has published since then: with
 * synchronous replication, the standby holding an acknowledged commit is
 * never outranked by a stale reading.  Others wait election_grace_ms, and
 * even then defer to a fresher, better candidate until three graces pass.
 */
static void
maybe_claim(struct pgl_daemon *d, const struct pgl_node *nodes, int n, int64_t now, int64_t ttl)
{
	const struct pgl_lease *l = &d->lease;
	bool bootstrap = (l->term == 0 && l->holder[0] == '\0');
	bool released = (l->holder[0] == '\0' && l->has_released_lsn);
	struct cand me = { d->cfg.node_name, 0, d->cfg.priority };
	int64_t waited = now - d->expired_since_ms;
	bool best = true, all_fresh = true, fresher_better = false;
	struct pgl_cluster c;
	struct pgl_pg_status s;

	if (d->cfg.priority == 0 || d->stop || now < d->claim_retry_ms)
		return;
	if (pgl_store_read_cluster(d->st, &c) == 0 && c.paused)
		return;
	if (pgl_node_has_data(d)) {
		if (d->pm_pid == 0 || d->pg_mode != PGL_PG_STANDBY || local_status(d, &s) < 0)
			return;				/* a candidate is a running standby */
		me.lsn = s.receive_lsn > s.replay_lsn ? s.receive_lsn : s.replay_lsn;
	} else if (!bootstrap)
		return;					/* nothing to promote; wait for a primary to clone */
	/*
	 * released_lsn is the start of the old primary's shutdown checkpoint
	 * record; a candidate must have received past it, so that the new
	 * timeline forks after that record and the old primary can follow
	 * without a rewind.
	 */
	if (released && me.lsn <= l->released_lsn_int) {
		pgl_log_debug("not a candidate: received %llX, not past released %s",
					  (unsigned long long) me.lsn, l->released_lsn);
		return;
	}
	for (int i = 0; i < n; i++) {
		struct cand o = { nodes[i].name, nodes[i].receive_lsn_int, nodes[i].priority };
		bool fresh;

		if (strcmp(o.name, me.name) == 0 || o.priority <= 0 || !node_live(d, o.name, now, ttl))
			continue;
		if (bootstrap ? strcmp(nodes[i].state, "empty") != 0 && strcmp(nodes[i].role, "standby") != 0
			: strcmp(nodes[i].role, "standby") != 0)
			continue;
		if (released && o.lsn <= l->released_lsn_int)
			continue;
		fresh = hb_changed_at(d, o.name) >= d->expired_since_ms;
		if (!fresh)
			all_fresh = false;
		if (ranks_before(&o, &me)) {
			best = false;
			if (fresh)
				fresher_better = true;
		}
	}
	if ((best && all_fresh) ||
		(waited >= d->cfg.election_grace_ms && !fresher_better) ||
		waited >= 3 * (int64_t) d->cfg.election_grace_ms)
		claim(d, d->expiry_rule);
}

/* ---- following ---- */

static bool
has_standby_signal(const struct pgl_daemon *d)
{
	char p[PGL_PATH_MAX + 32];

	snprintf(p, sizeof(p), "%s/standby.signal", d->cfg.pgdata);
	return access(p, F_OK) == 0;
}

/*
 * Starts the local server as a standby of h.  A data directory that was a
 * primary, or one that failed to start as a standby twice (e.g. "requested
 * timeline N is not a child of this server's history"), is rewound first;
 * one that failed twice more after that is re-cloned.  Returns true once
 * postgres runs; false to try again later.
 */
static bool
start_standby(struct pgl_daemon *d, const struct pgl_node *h, int64_t now)
{
	bool primary = strcmp(h->role, "primary") == 0;

	if (now < d->start_retry_ms)
		return false;
	if (d->start_failures >= 4) {
		if (!primary)
			return false;
		pgl_log_warn("postgres failed to start as a standby %d times, also after "
					 "pg_rewind; re-cloning from %s", d->start_failures, h->name);
		agent_event(d, d->lease.term, "recloned", "postgres failed to start %d times, "
					"also after pg_rewind; data directory re-cloned from %s",
					d->start_failures, h->name);
		if (pgl_node_clone(d, h) < 0)
			goto retry;
		d->start_failures = 0;
	} else if (!has_standby_signal(d) || d->start_failures >= 2) {
		if (!primary)
			return false;
		if (pgl_node_rewind(d, h) < 0)
			goto retry;
	}
	if (pgl_node_start(d, PGL_PG_STANDBY, h->name) < 0) {
		d->start_failures++;
		goto retry;
	}
	d->start_failures = 0;
	d->following[0] = '\0';
	return true;
retry:
	d->start_retry_ms = pgl_mono_ms() + 1000;
	return false;
}

static void
follow(struct pgl_daemon *d, const struct pgl_node *h, int64_t now)
{
	struct pgl_pg_status s;
	char host[256];
	int port = 0;

	if (!pgl_node_has_data(d)) {
		if (strcmp(h->role, "primary") != 0)
			return;				/* wait until it runs */
		if (pgl_node_clone(d, h) < 0) {
			d->next_heartbeat_ms = 0;
			return;
		}
		agent_event(d, d->lease.term, "cloned", "pg_basebackup from %s", h->name);
	}
	if (d->pm_pid == 0 && !start_standby(d, h, now))
		return;
	if (d->pg_mode != PGL_PG_STANDBY)
		return;
	if (strcmp(d->following, h->name) != 0 || d->follow_term != d->lease.term) {
		if (pgl_node_follow(d, h) < 0)
			return;
		pgl_log_info("following %s (term %lld)", h->name, (long long) d->lease.term);
		agent_event(d, d->lease.term, "followed", "primary_conninfo now points at %s",
					h->name);
		pgl_strlcpy(d->following, h->name, sizeof(d->following));
		d->follow_term = d->lease.term;
		d->follow_since_ms = now;
		d->not_streaming_since_ms = 0;
		pgl_strlcpy(d->state, "", sizeof(d->state));
		return;
	}
	if (local_status(d, &s) < 0)
		return;
	pgl_node_addr(h, host, sizeof(host), &port);
	if (s.streaming && s.sender_port == port) {
		d->not_streaming_since_ms = 0;
		return;
	}
	if (d->not_streaming_since_ms == 0)
		d->not_streaming_since_ms = now;
	/*
	 * Rewind only when the primary answers: a standby cut off from the
	 * network is not a forked timeline, and must keep its data.
	 */
	if (strcmp(h->role, "primary") == 0 &&
		now - d->follow_since_ms > d->cfg.follow_timeout_ms &&
		now - d->not_streaming_since_ms > d->cfg.follow_timeout_ms / 2 &&
		pgl_pg_ping_remote(host, port)) {
		pgl_log_warn("not streaming from %s after %d ms: timeline forked? rewinding",
					 h->name, d->cfg.follow_timeout_ms);
		if (pgl_node_rewind(d, h) == 0) {
			if (pgl_node_start(d, PGL_PG_STANDBY, h->name) == 0)
				d->following[0] = '\0';
			else
				d->start_failures++;
		}
		d->follow_since_ms = pgl_mono_ms();
	}
}

/* ---- one pass of the loop ---- */

static const struct pgl_node *
find_node(const struct pgl_node *nodes, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(nodes[i].name, name) == 0)
			return &nodes[i];
	return NULL;
}

/* Is the lease claimable as seen from here?  Sets d->expiry_rule. */
static bool
claimable(struct pgl_daemon *d, int64_t now, int64_t ttl)
{
	const struct pgl_lease *l = &d->lease;

	if (l->holder[0] == '\0') {
		if (l->has_released_lsn)
			snprintf(d->expiry_rule, sizeof(d->expiry_rule), "lease released at %s",
					 l->released_lsn);
		else
			snprintf(d->expiry_rule, sizeof(d->expiry_rule),
					 l->term == 0 ? "no lease yet" : "lease released");
		return true;
	}
	if (strcmp(l->holder, d->cfg.node_name) == 0) {
		/* We hold our own alive lock, so the previous incarnation is gone. */
		snprintf(d->expiry_rule, sizeof(d->expiry_rule), "own previous term is dead");
		return true;
	}
	if (holder_processes_gone(d, l->holder)) {
		snprintf(d->expiry_rule, sizeof(d->expiry_rule), "holder's processes gone");
		return true;
	}
	if (pgl_observer_expired(&d->obs, now, ttl)) {
		snprintf(d->expiry_rule, sizeof(d->expiry_rule), "lease unchanged for %lld ms",
				 (long long) (now - d->obs.first_seen_ms));
		return true;
	}
	return false;
}

static void
supervise(struct pgl_daemon *d)
{
	if (!pgl_node_reap(d) || d->stop)
		return;
	wd_update(d);
	if (d->term == 0) {
		d->pg_mode = PGL_PG_NONE;
		return;					/* a standby is restarted by the follow logic */
	}
	pgl_log_warn("postgres exited while primary; restarting it under term %lld (crash recovery)",
				 (long long) d->term);
	agent_event(d, d->term, "restarted", "postgres exited; crash recovery under the same term");
	if (pgl_node_start(d, PGL_PG_PRIMARY, NULL) < 0 && d->term) {
		pgl_node_kill(d);
		release(d, NULL, "postgres could not be restarted");
	} else if (d->term && pgl_node_fence_setup(d) < 0)
		pgl_log_warn("in-server fence not armed after the restart");
	wd_update(d);
}

/*
 * True while the store's path still names the file this agent opened and
 * that file still starts with a pglease store's header.  A store deleted or
 * replaced under running agents would split the cluster in two (the old
 * inode and the new file); one overwritten in place is read differently by
 * each agent (some from a cached page, some from the disk).  Either way the
 * agent fences and stops.
 */
static bool
store_still_there(struct pgl_daemon *d, int64_t now)
{
	char why[PGL_PATH_MAX + 128];
	struct stat sb;

	if (now - d->store_checked_ms < d->cfg.renew_interval_ms)
		return true;
	d->store_checked_ms = now;
	if (stat(d->cfg.lease_db, &sb) != 0 || sb.st_dev != d->store_dev || sb.st_ino != d->store_ino) {
		if (d->term)
			pgl_agent_fence(d, "the lease store file was deleted or replaced");
		pgl_log_error("%s was deleted or replaced while running; stopping (restart the agents "
					  "once the store is in place)", d->cfg.lease_db);
	} else if (pgl_store_check_file(d->st, why, sizeof(why)) == -PGL_EFOREIGN) {
		/* Overwritten in place: the agents' caches no longer agree with the file. */
		if (d->term)
			pgl_agent_fence(d, "the lease store file is corrupt");
		pgl_log_error("%s; stopping (restore the store from a copy, or create a new one with "
					  "every agent stopped)", why);
	} else
		return true;
	d->stop = 1;
	d->fatal = true;
	return false;
}

static void
tick(struct pgl_daemon *d)
{
	int64_t now = pgl_mono_ms(), ttl;
	struct pgl_node *nodes = NULL;
	const struct pgl_node *h;
	int n = 0, rc;

	if (!store_still_there(d, now))
		return;
	holder_duties(d, now);
	supervise(d);
	if ((rc = pgl_store_read_lease(d->st, &d->lease)) < 0) {
		/* Reported when the reason changes; the deadline fences a holder meanwhile. */
		const char *why = pgl_store_errmsg(d->st);

		if (strcmp(d->lease_read_err, why) != 0) {
			pgl_log_error("cannot read the lease: %s (%s)", pgl_strerror(rc), why);
			pgl_strlcpy(d->lease_read_err, why, sizeof(d->lease_read_err));
		}
		return;
	}
	if (d->n_pending)
		flush_events(d);
	if (pgl_observer_see(&d->obs, &d->lease, now) && d->lease.term > d->seen_term) {
		if (d->seen_term && d->term == 0)
			pgl_log_info("lease term %lld now held by %s", (long long) d->lease.term,
						 d->lease.holder[0] ? d->lease.holder : "nobody");
		d->seen_term = d->lease.term;
	}
	if (d->term && (d->lease.term != d->term || strcmp(d->lease.holder, d->cfg.node_name) != 0))
		pgl_agent_fence(d, "higher term seen");
	if (pgl_store_list_nodes(d->st, &nodes, &n) < 0)
		return;
	track_heartbeats(d, nodes, n, now);
	ttl = d->lease.ttl_ms > d->cfg.lease_ttl_ms ? d->lease.ttl_ms : d->cfg.lease_ttl_ms;
	if (d->term == 0) {
		if (claimable(d, now, ttl)) {
			if (d->expired_since_ms == 0) {
				d->expired_since_ms = now;
				/* Publish a fresh LSN for the election right away. */
				d->next_heartbeat_ms = 0;
				heartbeat(d, now);
				if (d->lease.holder[0])
					pgl_log_info("lease term %lld of %s claimable as seen here: %s",
								 (long long) d->lease.term, d->lease.holder, d->expiry_rule);
			}
			/* A data directory without a primary runs as a standby, to be a candidate. */
			if (d->pm_pid == 0 && pgl_node_has_data(d) && !d->stop)
				pgl_node_start(d, PGL_PG_STANDBY, NULL);
			maybe_claim(d, nodes, n, now, ttl);
		} else {
			d->expired_since_ms = 0;
			h = find_node(nodes, n, d->lease.holder);
			if (h)
				follow(d, h, now);
		}
	} else if (now - d->slots_checked_ms > 5000) {
		pgl_node_sync_slots(d);
		d->slots_checked_ms = now;
	}
	heartbeat(d, pgl_mono_ms());
	free(nodes);
}

/* ---- startup and shutdown ---- */

static int
read_password(struct pgl_daemon *d, char *err, size_t len)
{
	FILE *f;

	if (d->cfg.password_file[0] == '\0') {
		snprintf(err, len, "password_file is not set (the replication role needs a password)");
		return -PGL_ECONFIG;
	}
	/*
	 * Never blocks on a FIFO; must be a regular file.  In the shared lease
	 * directory (where the Docker entrypoint generates it) anybody with the
	 * volume could plant a symlink, so there it is not followed either.
	 */
	{
		char *a = strdup(d->cfg.password_file), *b = strdup(d->cfg.lease_db);
		bool shared = a && b && strcmp(dirname(a), dirname(b)) == 0;
		int fd = open(d->cfg.password_file, O_RDONLY | O_NONBLOCK | O_CLOEXEC |
					  (shared ? O_NOFOLLOW : 0));
		struct stat sb;

		free(a);
		free(b);
		if (fd >= 0 && (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))) {
			close(fd);
			snprintf(err, len, "password_file %s: not a regular file", d->cfg.password_file);
			return -PGL_ECONFIG;
		}
		if (fd < 0 && errno == ELOOP) {
			snprintf(err, len, "password_file %s: is a symlink in the shared lease directory; "
					 "refusing to follow it", d->cfg.password_file);
			return -PGL_ECONFIG;
		}
		f = fd >= 0 ? fdopen(fd, "r") : NULL;
		if (f == NULL && fd >= 0)
			close(fd);
	}
	if (f == NULL || fgets(d->password, sizeof(d->password), f) == NULL) {
		snprintf(err, len, "password_file %s: %s", d->cfg.password_file,
				 f ? "empty" : strerror(errno));
		if (f)
			fclose(f);
		return -PGL_ECONFIG;
	}
	fclose(f);
	d->password[strcspn(d->password, "\r\n")] = '\0';
	if (d->password[0] == '\0') {
		snprintf(err, len, "password_file %s: first line is empty", d->cfg.password_file);
		return -PGL_ECONFIG;
	}
	return 0;
}

/*
 * Takes <store dir>/alive/<node>.lock.  The descriptor has no FD_CLOEXEC:
 * the postmaster and every backend inherit it, so the lock is released only
 * when all of them have exited.  A held lock means a live agent already uses
 * this node name.
 */
static int
take_alive_lock(struct pgl_daemon *d, char *err, size_t len)
{
	char *copy = strdup(d->cfg.lease_db), path[PGL_PATH_MAX + 80];
	struct pgl_node other;

	snprintf(d->lock_dir, sizeof(d->lock_dir), "%s/alive", dirname(copy));
	free(copy);
	if (mkdir(d->lock_dir, 0770) != 0 && errno != EEXIST) {
		snprintf(err, len, "%s: cannot create: %s", d->lock_dir, strerror(errno));
		return -PGL_ESYS;
	}
	snprintf(path, sizeof(path), "%s/%s.lock", d->lock_dir, d->cfg.node_name);
	/* Inherited by the postmaster on purpose: no O_CLOEXEC. */
	d->lock_fd = open_alive_lock(d, d->cfg.node_name, O_RDWR | O_CREAT, err, len);
	if (d->lock_fd < 0)
		return -PGL_ESYS;
	/* Observers probe this lock for an instant; retry past their probes. */
	for (int i = 0; i < 100; i++) {
		if (flock(d->lock_fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		usleep(20000);
	}
	if (pgl_store_get_node(d->st, d->cfg.node_name, &other) == 0)
		snprintf(err, len, "node name '%s' is already in use by a live agent (%s, role %s; "
				 "lock %s is held); refusing to start", d->cfg.node_name, other.conninfo,
				 other.role, path);
	else
		snprintf(err, len, "node name '%s' is already in use by a live agent (lock %s is "
				 "held); refusing to start", d->cfg.node_name, path);
	return -PGL_EDUP;
}

/*
 * True if pid is a live (not zombie) process whose working directory is the
 * data directory: what a postmaster looks like.  A recycled pid of an
 * unrelated process (common after a container restart) does not match.
 */
static bool
is_live_postmaster(long pid, const char *pgdata)
{
	char p[64], cwd[PGL_PATH_MAX], real[PGL_PATH_MAX], stat[512];
	ssize_t n;
	FILE *f;

	snprintf(p, sizeof(p), "/proc/%ld/stat", pid);
	if ((f = fopen(p, "r")) == NULL)
		return false;
	n = fread(stat, 1, sizeof(stat) - 1, f);
	fclose(f);
	stat[n > 0 ? n : 0] = '\0';
	if (strstr(stat, ") Z") || strstr(stat, ") X"))
		return false;
	snprintf(p, sizeof(p), "/proc/%ld/cwd", pid);
	n = readlink(p, cwd, sizeof(cwd) - 1);
	if (n < 0)
		return errno == EACCES;		/* cannot tell: assume it is one */
	cwd[n] = '\0';
	return realpath(pgdata, real) != NULL && strcmp(real, cwd) == 0;
}

static int
check_no_foreign_postmaster(struct pgl_daemon *d, char *err, size_t len)
{
	char p[PGL_PATH_MAX + 32];
	FILE *f;
	long pid = 0;

	snprintf(p, sizeof(p), "%s/postmaster.pid", d->cfg.pgdata);
	f = fopen(p, "r");
	if (f == NULL)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	/* A postmaster killed together with its agent may take a moment to go. */
	for (int i = 0; i < 50 && pid > 0 && is_live_postmaster(pid, d->cfg.pgdata); i++)
		usleep(100000);
	if (pid > 0 && pid != getpid() && is_live_postmaster(pid, d->cfg.pgdata)) {
		snprintf(err, len, "%s: postgres is already running (pid %ld) and was not started by "
				 "this agent; stop it first", d->cfg.pgdata, pid);
		return -PGL_EINVAL;
	}
	/*
	 * The pid is gone, a zombie nobody reaped yet, or recycled by another
	 * program: postgres (and pg_rewind's single-user recovery) would take a
	 * zombie for a live postmaster and refuse to start, so the stale file goes.
	 */
	if (pid > 0 && unlink(p) == 0)
		pgl_log_info("removed stale %s (pid %ld is not a running postmaster)", p, pid);
	return 0;
}

static void
shutdown_node(struct pgl_daemon *d)
{
	struct pgl_controldata cd;
	char lsn[PGL_LSN_TEXT_MAX];

	if (d->term) {
		pgl_log_info("clean stop: fast shutdown, then releasing term %lld", (long long) d->term);
		pgl_strlcpy(d->state, "stopping", sizeof(d->state));
		if (pgl_node_stop(d, true, 60000) == 0 && d->term &&
			pgl_pg_controldata(&d->cfg, &cd) == 0 && strcmp(cd.state, "shut down") == 0) {
			pgl_lsn_format(cd.checkpoint_lsn, lsn, sizeof(lsn));
			release(d, lsn, "clean stop: fast shutdown; standbys that reached the shutdown "
					"checkpoint may claim at once");
		} else if (d->term) {
			pgl_node_kill(d);
			release(d, NULL, "stop without a clean shutdown checkpoint");
		}
	} else
		pgl_node_stop(d, true, 60000);
	pgl_strlcpy(d->state, "stopped", sizeof(d->state));
	d->next_heartbeat_ms = 0;
	heartbeat(d, pgl_mono_ms());
}

static void
usage(FILE *f)
{
	fprintf(f,
			"usage: pglease run [-c FILE] [--lease-db PATH]\n"
			"\n"
			"Runs the agent in the foreground: owns the local PostgreSQL (initdb, clone,\n"
			"rewind, start, promote, fence), renews or watches the lease, and logs one\n"
			"line per decision on stderr.  Runs as the postgres OS user, never as root.\n"
			"SIGTERM stops it cleanly: a primary shuts down fast and releases the lease.\n"
			"\n"
			"  -c, --config FILE   key = value configuration file (optional)\n"
			"      --lease-db PATH the lease store (overrides lease_db)\n"
			"  -h, --help          this help\n"
			"\n"
			"Every key may also be set as PGLEASE_<KEY> in the environment.  Keys:\n");
	pgl_config_print_keys(f);
}

static int
setup(struct pgl_daemon *d, const char *conf, const char *lease_db)
{
	char err[4096];
	sigset_t mask, orig;
	int rc;

	if ((rc = pgl_config_load(&d->cfg, conf, NULL, err, sizeof(err))) < 0) {
		for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
			fprintf(stderr, "pglease: %s\n", line);
		return PGL_EXIT_USAGE;
	}
	if (lease_db)
		pgl_strlcpy(d->cfg.lease_db, lease_db, sizeof(d->cfg.lease_db));
	pgl_log_set_node(d->cfg.node_name);
	if (read_password(d, err, sizeof(err)) < 0) {
		fprintf(stderr, "pglease: %s\n", err);
		return PGL_EXIT_USAGE;
	}
	umask(0007);
	rc = pgl_store_open(d->cfg.lease_db, PGL_STORE_CREATE, &d->st, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "pglease: %s\n", err);
		return rc == -PGL_EFOREIGN || rc == -PGL_ENEWER ? PGL_EXIT_USAGE : PGL_EXIT_FAIL;
	}
	pgl_store_set_busy_ms(d->st, 500);
	{
		struct stat sb;

		if (stat(d->cfg.lease_db, &sb) == 0) {
			d->store_dev = sb.st_dev;
			d->store_ino = sb.st_ino;
		}
	}
	{
		char lib[PGL_PATH_MAX + 32];

		pgl_node_fence_lib(&d->cfg, lib, sizeof(lib));
		d->fence_on = strcmp(d->cfg.in_server_fence, "off") != 0 && access(lib, R_OK) == 0;
		if (strcmp(d->cfg.in_server_fence, "on") == 0 && !d->fence_on) {
			fprintf(stderr, "pglease: in_server_fence = on, but %s is not installed "
					"(make -C src/fence install)\n", lib);
			return PGL_EXIT_USAGE;
		}
		if (!d->fence_on && strcmp(d->cfg.in_server_fence, "auto") == 0)
			pgl_log_warn("in-server fence not installed (%s): a primary frozen as a whole "
						 "may still commit briefly when it thaws", lib);
	}
	if ((rc = take_alive_lock(d, err, sizeof(err))) < 0 ||
		(rc = pgl_node_check_identity(d, err, sizeof(err))) < 0 ||
		(rc = check_no_foreign_postmaster(d, err, sizeof(err))) < 0) {
		fprintf(stderr, "pglease: %s\n", err);
		return rc == -PGL_ESYS || rc == -PGL_ESTORE ? PGL_EXIT_FAIL : PGL_EXIT_USAGE;
	}
	if ((rc = pgl_watch_open(d->cfg.lease_db, &d->watch)) < 0)
		return PGL_EXIT_FAIL;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, &orig);
	pgl_proc_set_child_sigmask(&orig);
	d->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (d->sig_fd < 0 || watchdog_start() < 0) {
		fprintf(stderr, "pglease: cannot set up signals or the fence watchdog: %s\n",
				strerror(errno));
		return PGL_EXIT_FAIL;
	}
	pgl_log_info("agent started: store %s, data %s, port %d, ttl %d ms, renew %d ms",
				 d->cfg.lease_db, d->cfg.pgdata, d->cfg.pg_port, d->cfg.lease_ttl_ms,
				 d->cfg.renew_interval_ms);
	return PGL_EXIT_OK;
}

static void
read_signals(struct pgl_daemon *d)
{
	struct signalfd_siginfo si;

	while (read(d->sig_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			if (!d->stop)
				pgl_log_info("received %s: stopping", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			d->stop = 1;
		} else if (si.ssi_signo == SIGHUP)
			pgl_log_info("SIGHUP: configuration reload is not supported; restart the agent");
	}
}

/* Milliseconds until the next thing this node must do. */
static int
next_timeout(const struct pgl_daemon *d)
{
	int64_t now = pgl_mono_ms(), t = 100;	/* observers probe the holder's lock often */

	if (d->term) {
		t = d->next_renew_ms - now;
		if (d->deadline_ms - now < t)
			t = d->deadline_ms - now;
	}
	if (t < 0)
		t = 0;
	if (t > d->cfg.renew_interval_ms)
		t = d->cfg.renew_interval_ms;
	return (int) t;
}

int
pgl_agent_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "lease-db", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct pgl_daemon *d;
	const char *conf = NULL, *lease_db = NULL;
	int opt, rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': conf = optarg; break;
		case 'L': lease_db = optarg; break;
		case 'h': usage(stdout); return PGL_EXIT_OK;
		default: usage(stderr); return PGL_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pglease run: unexpected argument '%s'\n", argv[optind]);
		return PGL_EXIT_USAGE;
	}
	if (geteuid() == 0) {
		fprintf(stderr, "pglease run: refusing to run as root; PostgreSQL must not run as "
				"root. Run it as the postgres user, e.g. runuser -u postgres -- pglease run\n");
		return PGL_EXIT_USAGE;
	}
	d = calloc(1, sizeof(*d));
	d->lock_fd = d->sig_fd = -1;
	rc = setup(d, conf, lease_db);
	while (rc == PGL_EXIT_OK && !d->stop) {
		struct pollfd p[2] = {
			{ .fd = pgl_watch_fd(d->watch), .events = POLLIN },
			{ .fd = d->sig_fd, .events = POLLIN },
		};

		tick(d);
		if (poll(p, 2, next_timeout(d)) > 0) {
			if (p[0].revents)
				pgl_watch_drain(d->watch);
			if (p[1].revents)
				read_signals(d);
		}
	}
	if (rc == PGL_EXIT_OK)
		shutdown_node(d);
	if (rc == PGL_EXIT_OK && d->fatal)
		rc = PGL_EXIT_FAIL;
	pgl_node_disconnect(d);
	pgl_watch_close(d->watch);
	pgl_store_close(d->st);
	free(d->hb);
	free(d);
	return rc;
}
