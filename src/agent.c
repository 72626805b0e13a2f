/*
 * agent.c — `pglease run`: the lease loop, the election and the supervision
 * of the local PostgreSQL (DESIGN.md sections 2, 3 and 6).
 *
 * One thread runs everything through a poll(2) loop woken by inotify on the
 * store, by signals (signalfd, SIGCHLD included) and by a timer.  Long
 * operations run as jobs the loop advances without waiting on them (job.c).
 * A second process, the fence watchdog, enforces the fence deadline even
 * when the agent itself is stalled (SIGSTOP, a frozen server, a hung disk).
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
#include <linux/futex.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pglease/agent.h"
#include "pglease/daemon.h"
#include "pglease/log.h"
#include "pglease/notify.h"
#include "pglease/pgctl.h"

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
	uint32_t seq;				/* futex word: bumped after every change */
};

static struct wd_page *wd;

/* Sleeps until wd->seq is no longer `seen`, or ms pass. */
static void
wd_sleep(uint32_t seen, int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	syscall(SYS_futex, &wd->seq, FUTEX_WAIT, seen, &ts, NULL, 0);
}

/*
 * Sleeps until the deadline (plus slack) or a change of the page: no
 * polling.  Not holding, it wakes once a second to see whether its agent
 * is gone (PR_SET_PDEATHSIG covers an agent that is killed).
 */
static void
watchdog_main(void)
{
	for (;;) {
		uint32_t seq = __atomic_load_n(&wd->seq, __ATOMIC_SEQ_CST);
		int64_t dl = __atomic_load_n(&wd->deadline_ms, __ATOMIC_SEQ_CST);
		pid_t pm = __atomic_load_n(&wd->pm_pid, __ATOMIC_SEQ_CST);
		int64_t now = pgl_mono_ms();

		if (getppid() != wd->agent_pid)
			_exit(0);
		/*
		 * 100 ms of slack lets a running agent fence cleanly first (SIGQUIT,
		 * an event in the store); a stalled one is fenced here.
		 */
		if (dl > 0 && pm > 0 && now >= dl + 100) {
			pgl_proc_kill_tree(pm);
			pgl_log_error("fenced by the watchdog: deadline passed while the agent was stalled; "
						  "postgres (pid %d) and its children killed", (int) pm);
			__atomic_store_n(&wd->deadline_ms, 0, __ATOMIC_SEQ_CST);
			continue;
		}
		wd_sleep(seq, dl > 0 && pm > 0 ? dl + 100 - now : 1000);
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
	__atomic_store_n(&wd->pm_pid, d->srv.pm_pid, __ATOMIC_SEQ_CST);
	__atomic_store_n(&wd->deadline_ms, d->dc.term ? d->dc.deadline_ms : 0, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&wd->seq, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &wd->seq, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* ---- events and log lines ---- */

static void
log_at(int level, const char *text)
{
	switch (level) {
	case PGL_ALOG_ERROR: pgl_log_error("%s", text); break;
	case PGL_ALOG_WARN: pgl_log_warn("%s", text); break;
	case PGL_ALOG_INFO: pgl_log_info("%s", text); break;
	default: pgl_log_debug("%s", text); break;
	}
}

/*
 * Writes an event, or keeps it for later when the store cannot be written
 * now (locked, full): a fence caused by a locked store must still be
 * recorded once the store is back.  Kept events are written by
 * flush_events() with their original time in the detail.
 */
/* The events that change this node's role run the on_role_change program. */
static void
role_hook(struct pgl_daemon *d, int64_t term, const char *kind)
{
	static const char *const kinds[] = { "bootstrap", "promoted", "fenced", "released",
		"followed" };

	for (size_t i = 0; i < PGL_ARRAY_LEN(kinds); i++)
		if (strcmp(kind, kinds[i]) == 0) {
			const char *role = strcmp(kind, "bootstrap") == 0 ? "primary"
				: pgl_role_name(d->dc.role);

			pgl_hook_fire(d, kind, role, term);
			pgl_notify("STATUS=%s (%s), term %lld", role, kind, (long long) term);
		}
}

static void
agent_event(struct pgl_daemon *d, int64_t term, const char *kind, const char *detail)
{
	struct pgl_pending_event *e;
	char ts[PGL_TS_MAX];

	role_hook(d, term, kind);
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

/* The log line (when there is one) and the event, together. */
static void
note(struct pgl_daemon *d, const struct pgl_action *a)
{
	if (a->text[0])
		log_at(a->level, a->text);
	agent_event(d, a->term, a->kind, a->detail);
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

/* ---- the holder's actions ---- */

/* The cause a fence is counted under in pglease_fences_total. */
static int
fence_cause(const char *why)
{
	if (strstr(why, "deadline"))
		return PGL_FENCE_DEADLINE;
	if (strstr(why, "higher term"))
		return PGL_FENCE_HIGHER_TERM;
	if (strstr(why, "hung"))
		return PGL_FENCE_HUNG;
	if (strstr(why, "store"))
		return PGL_FENCE_STORE;
	return PGL_FENCE_OTHER;
}

static void
do_fence(struct pgl_daemon *d, const struct pgl_action *a)
{
	d->hs.fences[fence_cause(a->detail)]++;
	wd_update(d);
	pgl_server_kill(d);
	pgl_strlcpy(d->state, "fenced", sizeof(d->state));
	pgl_log_error("%s", a->text);
	/* Recorded now if the store allows it soon, else kept for later. */
	pgl_store_set_busy_ms(d->st, 200);
	agent_event(d, a->term, "fenced", a->detail);
	pgl_store_set_busy_ms(d->st, d->busy_ms);
	pgl_log_set_term(-1);
}

/* Renewal counters and latency for /metrics. */
static void
count_renewal(struct pgl_daemon *d, int rc, int64_t t0)
{
	struct pgl_http_state *s = &d->hs;
	int64_t iv = d->dc.cfg.renew_interval_ms, last = d->dc.last_renew_ms;
	double took = (pgl_mono_ms() - t0) / 1000.0;

	if (rc < 0) {
		s->renewals_failed++;
		return;
	}
	s->renewals++;
	if (last && t0 - (last + iv) > iv / 2)
		s->renewals_late++;
	for (int i = 0; i < PGL_RENEW_BUCKETS; i++)
		if (took <= pgl_renew_bucket_s[i])
			s->renew_buckets[i]++;
	s->renew_count++;
	s->renew_sum_s += took;
}

static void
do_renew(struct pgl_daemon *d, struct pgl_actions *out)
{
	int64_t t0 = pgl_mono_ms(), dl = 0, renewals = 0;
	const struct pgl_decide_cfg *c = &d->dc.cfg;
	int rc;

	rc = pgl_store_renew(d->st, c->node_name, d->dc.term, t0, c->lease_ttl_ms,
						 c->fence_margin_ms, d->dc.deadline_ms, &dl, &renewals);
	count_renewal(d, rc, t0);
	pgl_decide_renewed(&d->dc, rc, t0, dl, rc < 0 ? pgl_store_errmsg(d->st) : NULL,
					   pgl_mono_ms(), out);
	if (rc == 0) {
		wd_update(d);
		pgl_server_fence_arm(d);
	}
}

static void
do_claim(struct pgl_daemon *d, const struct pgl_action *a, struct pgl_actions *out)
{
	int64_t t0 = pgl_mono_ms(), term = 0;
	int rc = pgl_store_claim(d->st, &a->lease, d->cfg.node_name, d->cfg.lease_ttl_ms,
							 a->detail, &term);

	if (rc == 0) {
		pgl_log_set_term(term);
		pgl_log_info("claimed term %lld: %s", (long long) term, a->detail);
	}
	pgl_decide_claimed(&d->dc, rc, term, t0, rc < 0 ? pgl_store_errmsg(d->st) : NULL, out);
	wd_update(d);
}

static void
do_release(struct pgl_daemon *d, const struct pgl_action *a)
{
	const char *lsn = a->lsn[0] ? a->lsn : NULL;
	int rc = pgl_store_release(d->st, d->cfg.node_name, a->term, lsn, a->detail);

	if (rc < 0)
		pgl_log_error("cannot release term %lld: %s", (long long) a->term, pgl_strerror(rc));
	else {
		pgl_log_info("released term %lld%s%s: %s", (long long) a->term,
					 lsn ? " at " : "", lsn ? lsn : "", a->detail);
		/* The store wrote the event with the release: the hook and systemd hear of it here. */
		role_hook(d, a->term, "released");
	}
	wd_update(d);
	pgl_log_set_term(-1);
}

/* ---- the local server's status ---- */

static int
local_status(struct pgl_daemon *d, struct pgl_pg_status *s)
{
	PGconn *c = d->srv.pm_pid > 0 ? pgl_server_conn(d) : NULL;

	/* A broken connection is replaced by the next pgl_server_conn(); the fence's stays. */
	if (c == NULL || pgl_pg_status(c, s) < 0)
		return -PGL_EPG;
	return 0;
}

/*
 * Writes this node's row.  With query, the local server is asked for its
 * status; without (inside a job), or when it does not answer, the row says
 * what the agent is doing and, while the data directory is the one last
 * seen running, the LSN it had reached: a server that is down still ranks
 * in an election by the WAL on its disk (DESIGN.md section 3).
 */
static void
heartbeat(struct pgl_daemon *d, bool query)
{
	struct pgl_node n;
	struct pgl_pg_status s;

	memset(&n, 0, sizeof(n));
	pgl_strlcpy(n.name, d->cfg.node_name, sizeof(n.name));
	pgl_conninfo_format(d->cfg.advertise_host, d->cfg.pg_port, n.conninfo, sizeof(n.conninfo));
	n.priority = d->cfg.priority;
	strcpy(n.role, "unknown");
	if (query && local_status(d, &s) == 0) {
		strcpy(n.role, s.in_recovery ? "standby" : "primary");
		n.timeline = s.timeline;
		n.receive_lsn_int = s.receive_lsn > s.replay_lsn ? s.receive_lsn : s.replay_lsn;
		n.replay_lsn_int = s.replay_lsn;
		d->last_lsn = n.receive_lsn_int;
		if (s.in_recovery) {
			pgl_strlcpy(n.state, s.streaming ? "streaming" : "recovering", sizeof(n.state));
			pgl_strlcpy(n.upstream, d->dc.following, sizeof(n.upstream));
		} else
			pgl_strlcpy(n.state, "running", sizeof(n.state));
	} else if (pgl_server_has_data(d)) {
		pgl_strlcpy(n.state, d->state[0] ? d->state : "down", sizeof(n.state));
		n.receive_lsn_int = d->last_lsn;
	} else
		pgl_strlcpy(n.state, d->state[0] ? d->state : "empty", sizeof(n.state));
	pgl_lsn_format(n.receive_lsn_int, n.receive_lsn, sizeof(n.receive_lsn));
	pgl_lsn_format(n.replay_lsn_int, n.replay_lsn, sizeof(n.replay_lsn));
	pgl_job_progress(d, &n.progress);	/* a clone or rewind under way, for status */
	if (pgl_store_node_upsert(d->st, &n) < 0)
		pgl_log_debug("heartbeat not written: %s", pgl_store_errmsg(d->st));
}

/* ---- jobs ---- */

/* What this node's row says while a job runs (when the server does not answer). */
static const char *
job_state(const struct pgl_daemon *d, enum pgl_job job)
{
	switch (job) {
	case PGL_JOB_BOOTSTRAP: return "initdb";
	case PGL_JOB_CLONE: return "cloning";
	case PGL_JOB_REWIND: return "rewinding";
	case PGL_JOB_START: return d->state[0] ? NULL : "starting";
	case PGL_JOB_STOP: return d->dc.term ? "stopping" : NULL;
	case PGL_JOB_HANDOVER: return "handing-over";
	default: return NULL;
	}
}

static void
job_begin(struct pgl_daemon *d, const struct pgl_action *a)
{
	const char *st = job_state(d, a->job);

	if (d->job.job != PGL_JOB_NONE) {
		pgl_log_error("internal error: %s job asked for while the %s job runs; ignored",
					  pgl_job_name(a->job), pgl_job_name(d->job.job));
		return;
	}
	if (a->job == PGL_JOB_CLONE || a->job == PGL_JOB_BOOTSTRAP)
		d->last_lsn = 0;		/* the data directory is replaced */
	if (st)
		pgl_strlcpy(d->state, st, sizeof(d->state));
	pgl_job_begin(d, a);
	d->job.state = st;
}

/* The new cluster's identity in the store, and the event. */
static int
record_bootstrap(struct pgl_daemon *d, const char *sysid, const char *note)
{
	char detail[768];
	int rc;

	if ((rc = pgl_store_set_sysid(d->st, sysid)) < 0) {
		pgl_log_error("cannot record system identifier %s in the store: %s", sysid,
					  pgl_strerror(rc));
		return rc;
	}
	snprintf(detail, sizeof(detail), "initdb --data-checksums; system identifier %s%s", sysid,
			 note);
	agent_event(d, d->dc.term, "bootstrap", detail);
	return 0;
}

/* What the agent itself does when a job ended, before the decision hears of it. */
static void
job_finished(struct pgl_daemon *d, struct pgl_job_result *r)
{
	if (r->job == PGL_JOB_BOOTSTRAP && r->rc == 0)
		r->rc = record_bootstrap(d, d->job.sysid, r->text);
	if (r->job == PGL_JOB_REWIND && r->rc == 0)
		d->last_lsn = 0;		/* rewound to the source's history: ask again */
	/* The job's state goes, unless something else (a fence) replaced it meanwhile. */
	if (d->job.state && strcmp(d->state, d->job.state) == 0)
		d->state[0] = '\0';
}

/* ---- carrying out actions ---- */

static void
do_arm_fence(struct pgl_daemon *d)
{
	if (pgl_server_fence_setup(d) < 0)
		pgl_log_warn("in-server fence not armed; relying on the agent and its watchdog");
	pgl_strlcpy(d->state, "running", sizeof(d->state));
	wd_update(d);
}

/*
 * Records a switchover request's new state (the store writes its event).
 * Naming the target is reported back: the hand-over starts only once the
 * others can see who may claim.
 */
static void
do_switchover(struct pgl_daemon *d, const struct pgl_action *a, struct pgl_actions *out)
{
	int rc = pgl_store_set_switchover(d->st, a->seq, a->sw_state,
									  a->has_node ? a->node.name : NULL, d->cfg.node_name,
									  a->detail);

	if (a->text[0])
		log_at(a->level, a->text);
	if (rc < 0)
		pgl_log_warn("switchover %lld: cannot record %s: %s (%s)", (long long) a->seq,
					 pgl_sw_state_name(a->sw_state), pgl_strerror(rc), pgl_store_errmsg(d->st));
	if (a->sw_state == PGL_SW_HANDING_OVER)
		pgl_decide_switchover_set(&d->dc, rc, pgl_mono_ms(), out);
}

static void
do_follow(struct pgl_daemon *d, const struct pgl_action *a, struct pgl_actions *out)
{
	int rc = pgl_server_follow(d, &a->node);

	if (rc == 0)
		d->state[0] = '\0';
	pgl_decide_followed(&d->dc, &a->node, rc, pgl_mono_ms(), out);
}

/*
 * Carries out the actions of one step, in order; results may append more
 * (a won claim asks for a promotion).  Returns true when something changed
 * that the next step should look at at once (a job ended, a claim won).
 */
static bool
execute(struct pgl_daemon *d, struct pgl_actions *acts)
{
	bool again = false;

	for (int i = 0; i < acts->n; i++) {
		const struct pgl_action *a = &acts->a[i];

		switch (a->type) {
		case PGL_ACT_LOG: log_at(a->level, a->text); break;
		case PGL_ACT_EVENT: note(d, a); break;
		case PGL_ACT_RENEW: do_renew(d, acts); break;
		case PGL_ACT_FENCE: do_fence(d, a); break;
		case PGL_ACT_CLAIM: do_claim(d, a, acts); again = true; break;
		case PGL_ACT_RELEASE: do_release(d, a); break;
		case PGL_ACT_FOLLOW: do_follow(d, a, acts); break;
		case PGL_ACT_KILL: pgl_server_kill(d); wd_update(d); break;
		case PGL_ACT_ARM_FENCE: do_arm_fence(d); break;
		case PGL_ACT_SYNC_SLOTS: pgl_server_sync_slots(d); break;
		case PGL_ACT_HEARTBEAT: heartbeat(d, true); break;
		case PGL_ACT_EXIT: d->exit = true; d->fatal |= a->fatal; break;
		case PGL_ACT_JOB: job_begin(d, a); break;
		case PGL_ACT_SWITCHOVER: do_switchover(d, a, acts); break;
		}
	}
	return again;
}

/*
 * While a job runs, the loop does what the job cannot hold up: a holder
 * renews when due (or fences at its deadline); any other node keeps its row
 * fresh, so that elections still see it alive and its LSN.
 */
static void
during_job(struct pgl_daemon *d, struct pgl_actions *acts)
{
	int64_t now = pgl_mono_ms();

	if (d->dc.term == 0) {
		if (now >= d->job.next_heartbeat_ms) {
			heartbeat(d, false);
			d->job.next_heartbeat_ms = now + d->cfg.renew_interval_ms;
		}
		return;
	}
	acts->n = 0;
	pgl_decide_holder(&d->dc, now, acts);
	execute(d, acts);
}

/*
 * Advances the job under way.  False while it runs; true once it ended and
 * its result went to the decision (whose actions are carried out here).
 */
static bool
job_progress(struct pgl_daemon *d, struct pgl_actions *acts)
{
	bool ended;

	during_job(d, acts);		/* a renewal that is due comes first */
	ended = pgl_job_poll(d);
	wd_update(d);				/* the postmaster may have started or exited */
	if (!ended)
		return false;
	job_finished(d, &d->job.r);
	acts->n = 0;
	pgl_decide_job_done(&d->dc, &d->job.r, pgl_mono_ms(), acts);
	execute(d, acts);
	return true;
}

/* ---- observing ---- */

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

/* ---- death seen at once ---- */

/*
 * An observer keeps one child process blocked in flock() on the holder's
 * alive lock.  The kernel hands it the lock the moment the last process of
 * the holder (agent, postmaster, backends) exits; the child exits 0 at once,
 * releasing the lock, and its SIGCHLD wakes the loop through the signalfd.
 * The child keeps only that descriptor (never this agent's own lock or the
 * store) and dies with the agent.
 */
static void
watch_stop(struct pgl_daemon *d)
{
	if (d->watch_pid > 0) {
		kill(d->watch_pid, SIGKILL);
		while (waitpid(d->watch_pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	d->watch_pid = 0;
	d->watch_name[0] = '\0';
	d->watch_term = 0;
	d->watch_gone = false;
}

static void __attribute__((noreturn))
watch_child(int fd, pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(2);
	if (fd != 3 && dup2(fd, 3) < 0)
		_exit(2);
	close_range(4, ~0U, 0);
	prctl(PR_SET_NAME, "pglease-watch");
	while (flock(3, LOCK_EX) != 0)
		if (errno != EINTR)
			_exit(2);
	_exit(0);
}

/*
 * Watches holder's lock at term.  True when the watch was already running
 * before this call (it will report the death itself).
 */
static bool
watch_holder(struct pgl_daemon *d, const char *holder, int64_t term)
{
	pid_t parent = getpid(), pid;
	int fd;

	if (strcmp(d->watch_name, holder) == 0 && d->watch_term == term &&
		(d->watch_pid > 0 || d->watch_gone))
		return d->watch_pid > 0;
	watch_stop(d);
	fd = open_alive_lock(d, holder, O_RDONLY | O_CLOEXEC, NULL, 0);
	if (fd < 0)
		return false;			/* no lock file: no proof, the TTL decides */
	pid = fork();
	if (pid == 0)
		watch_child(fd, parent);
	close(fd);
	if (pid < 0)
		return false;
	d->watch_pid = pid;
	pgl_strlcpy(d->watch_name, holder, sizeof(d->watch_name));
	d->watch_term = term;
	return false;
}

/*
 * Proof of death for the lease's holder, from the watch; a probe of the
 * lock only when no watch was running yet (it reaps nothing, so the first
 * pass after the holder's death still sees it at once).
 */
static bool
holder_gone(struct pgl_daemon *d, const struct pgl_lease *l)
{
	bool watching = watch_holder(d, l->holder, l->term);

	if (d->watch_gone && d->watch_term == l->term && strcmp(d->watch_name, l->holder) == 0)
		return true;
	return watching ? false : holder_processes_gone(d, l->holder);
}



/*
 * A store fault: the store's path no longer names the file this agent
 * opened (deleted or replaced: the cluster would split in two, the old
 * inode and the new file), or the file no longer starts with a pglease
 * store's header (overwritten in place: each agent reads it differently,
 * some from a cached page, some from the disk).  Checked once per renewal
 * interval.
 */
static enum pgl_store_fault
store_fault(struct pgl_daemon *d, int64_t now, char *why, size_t len)
{
	char msg[PGL_PATH_MAX + 128];
	struct stat sb;

	if (now - d->store_checked_ms < d->cfg.renew_interval_ms)
		return PGL_STORE_FINE;
	d->store_checked_ms = now;
	if (!pgl_store_is_url(d->cfg.lease_db) &&
		(stat(d->cfg.lease_db, &sb) != 0 || sb.st_dev != d->store_dev || sb.st_ino != d->store_ino)) {
		snprintf(why, len, "%s was deleted or replaced while running; stopping (restart the "
				 "agents once the store is in place: on a new, empty store they re-form the "
				 "cluster on its most advanced node; if it is lost, `pglease store rebuild "
				 "--lease-db %s` with every agent stopped makes one above every term seen)",
				 d->cfg.lease_db, d->cfg.lease_db);
		return PGL_STORE_REPLACED;
	}
	if (pgl_store_check_file(d->st, msg, sizeof(msg)) == -PGL_EFOREIGN) {
		snprintf(why, len, "%s; stopping: with every agent stopped, run `pglease store "
				 "rebuild --lease-db %s` (it keeps the damaged file and re-forms the cluster "
				 "on its most advanced node)", msg, d->cfg.lease_db);
		return PGL_STORE_CORRUPT;
	}
	return PGL_STORE_FINE;
}

static bool
has_standby_signal(const struct pgl_daemon *d)
{
	char p[PGL_PATH_MAX + 32];

	snprintf(p, sizeof(p), "%s/standby.signal", d->cfg.pgdata);
	return access(p, F_OK) == 0;
}

/* The local server and the helpers: reaps what exited (the holder watch too). */
static void
observe_children(struct pgl_daemon *d, struct pgl_server_obs *s)
{
	if (pgl_server_reap(d)) {
		s->exited = true;
		d->srv.mode = PGL_SERVER_NONE;
		wd_update(d);
	}
	s->has_data = pgl_server_has_data(d);
	s->standby_signal = s->has_data && has_standby_signal(d);
	s->running = d->srv.pm_pid > 0;
	s->mode = d->srv.mode;
}

/* The local server's status, when ask. */
static void
observe_status(struct pgl_daemon *d, int64_t now, bool ask, struct pgl_server_obs *s)
{
	struct pgl_pg_status st;

	if (!s->running || !ask)
		return;
	s->status_asked = true;
	d->hs_status_ok = false;
	if (local_status(d, &st) < 0) {
		int64_t t = pgl_pg_timeout_at();

		/* No answer in time (not a refusal): recently, a local call timed out. */
		s->unresponsive = t && now - t <= 2 * d->cfg.renew_interval_ms;
	} else {
		s->status_ok = d->hs_status_ok = true;
		d->hs.in_recovery = st.in_recovery;
		d->hs.streaming = st.streaming;
		d->hs_replay_lsn = st.replay_lsn;
		s->in_recovery = st.in_recovery;
		s->streaming = st.streaming;
		s->sender_port = st.sender_port;
		s->timeline = st.timeline;
		s->receive_lsn = st.receive_lsn > st.replay_lsn ? st.receive_lsn : st.replay_lsn;
	}
}

/* Could the lease be claimable now?  Only then is the cluster row read. */
static bool
maybe_claimable(const struct pgl_daemon *d, const struct pgl_obs *o)
{
	const struct pgl_lease *l = &o->lease;
	int64_t ttl = l->ttl_ms > d->cfg.lease_ttl_ms ? l->ttl_ms : d->cfg.lease_ttl_ms;

	return d->dc.term == 0 && (l->holder[0] == '\0' || o->holder_gone || l->holder_expired ||
							   strcmp(l->holder, d->cfg.node_name) == 0 ||
							   (!l->store_expires && pgl_observer_matches(&d->dc.obs, l) &&
								pgl_observer_expired(&d->dc.obs, o->now, ttl)));
}

/* The lease, the cluster row, the node rows and the holder's lock. */
static void
observe_store(struct pgl_daemon *d, struct pgl_obs *o, struct pgl_node **nodes)
{
	struct pgl_cluster c;
	int rc;

	if ((rc = pgl_store_read_lease(d->st, &o->lease)) < 0) {
		/* Reported when the reason changes; the deadline fences a holder meanwhile. */
		const char *why = pgl_store_errmsg(d->st);

		if (strcmp(d->lease_read_err, why) != 0) {
			pgl_log_error("cannot read the lease: %s (%s)", pgl_strerror(rc), why);
			pgl_strlcpy(d->lease_read_err, why, sizeof(d->lease_read_err));
		}
		return;
	}
	o->lease_ok = true;
	/*
	 * The time of this observation is taken after the lease was read, never
	 * before: the observer's expiry counts from when it first saw a version,
	 * and a reading stamped with an earlier time (the agent stopped between
	 * the clock and the read, while the holder renewed) would make a fresh
	 * renewal look old.  Safety needs first-seen >= the read >= the holder's t0.
	 */
	o->now = pgl_mono_ms();
	if (d->n_pending)
		flush_events(d);
	if (o->lease.holder[0] && strcmp(o->lease.holder, d->cfg.node_name) != 0 && d->dc.term == 0)
		o->holder_gone = holder_gone(d, &o->lease);
	else
		watch_stop(d);
	if (maybe_claimable(d, o) && pgl_store_read_cluster(d->st, &c) == 0)
		o->paused = c.paused;
	/* A switchover asks the holder; a switchover or failover names who claims. */
	if ((d->dc.term || maybe_claimable(d, o)) && pgl_store_read_switchover(d->st, &o->sw) == 0)
		o->sw_ok = true;
	if (o->lease.term > d->last_term_seen) {
		d->hs.terms_seen += d->last_term_seen > 0;
		d->last_term_seen = o->lease.term;
	}
	if (pgl_store_list_nodes(d->st, nodes, &o->n_nodes) == 0) {
		o->nodes_ok = true;
		o->nodes = *nodes;
		d->holder_lsn = 0;
		for (int i = 0; i < o->n_nodes; i++)
			if (strcmp(o->nodes[i].name, o->lease.holder) == 0)
				d->holder_lsn = o->nodes[i].receive_lsn_int;
	} else
		o->n_nodes = 0;
}

/*
 * Does this pass need the local server's status?  The query is most of what
 * an idle agent costs, and an idle standby wakes on every write to the store:
 * it asks when its heartbeat is due, and whenever its status can change a
 * decision (an election may be near, it is not a plain standby, or it does
 * not follow the holder's term yet, as after a start).  A holder asks for
 * its heartbeat (and the hang rule).
 */
static bool
need_status(const struct pgl_daemon *d, const struct pgl_obs *o)
{
	if (o->now >= d->dc.next_heartbeat_ms)
		return true;
	if (d->dc.term)
		return false;
	if (d->dc.role != PGL_ROLE_STANDBY || !o->lease_ok || maybe_claimable(d, o))
		return true;
	return strcmp(d->dc.following, o->lease.holder) != 0 || d->dc.follow_term != o->lease.term;
}

static void
observe(struct pgl_daemon *d, struct pgl_obs *o, struct pgl_node **nodes)
{
	memset(o, 0, sizeof(*o));
	*nodes = NULL;
	o->now = pgl_mono_ms();
	o->stop = d->stop;
	o->store_fault = store_fault(d, o->now, o->store_why, sizeof(o->store_why));
	if (o->store_fault != PGL_STORE_FINE)
		return;
	observe_children(d, &o->server);
	observe_store(d, o, nodes);
	observe_status(d, o->now, need_status(d, o), &o->server);
}

/* ---- one pass of the loop ---- */

/*
 * While a job runs: advance it (and renew or heartbeat meanwhile).  Else
 * observe, decide, carry out; again at once (a few times at most) when a
 * claim was won, so the next decision sees the new state.
 */
/* What the HTTP API answers from until the next pass (see http.h). */
static void
http_publish(struct pgl_daemon *d)
{
	struct pgl_http_state *s = &d->hs;

	if (d->http == NULL)
		return;
	pgl_strlcpy(s->node, d->cfg.node_name, sizeof(s->node));
	pgl_strlcpy(s->role, pgl_role_name(d->dc.role), sizeof(s->role));
	s->term = d->dc.lease.term;
	pgl_strlcpy(s->holder, d->dc.lease.holder, sizeof(s->holder));
	s->held_term = d->dc.term;
	s->deadline_ms = d->dc.term ? d->dc.deadline_ms : 0;
	/* A server stopping (clean stop, switchover) takes no more writes or reads. */
	s->running = d->srv.pm_pid > 0 && d->hs_status_ok && !d->dc.stop_asked &&
		d->job.job != PGL_JOB_STOP && d->job.job != PGL_JOB_HANDOVER;
	s->lag_bytes = -1;
	if (s->running && !s->in_recovery)
		s->lag_bytes = 0;
	else if (s->running && d->holder_lsn && d->hs_replay_lsn)
		s->lag_bytes = d->holder_lsn > d->hs_replay_lsn ?
			(int64_t) (d->holder_lsn - d->hs_replay_lsn) : 0;
	pgl_http_publish(d->http, s);
}

static void
tick(struct pgl_daemon *d)
{
	struct pgl_actions *acts = malloc(sizeof(*acts));

	if (acts == NULL) {
		pgl_log_error("out of memory; retrying");
		return;
	}
	if (d->job.job != PGL_JOB_NONE && (!job_progress(d, acts) || d->job.job != PGL_JOB_NONE)) {
		free(acts);
		pgl_hook_poll(d);
		http_publish(d);
		return;
	}
	for (int round = 0; round < 4 && !d->exit; round++) {
		struct pgl_node *nodes = NULL;
		struct pgl_obs o;
		bool again;

		observe(d, &o, &nodes);
		acts->n = 0;
		pgl_decide_step(&d->dc, &o, acts);
		again = execute(d, acts);
		free(nodes);
		if (!again || d->job.job != PGL_JOB_NONE)
			break;
	}
	free(acts);
	pgl_hook_poll(d);
	http_publish(d);
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
	char path[PGL_PATH_MAX + 80];
	struct pgl_node other;

	pgl_config_alive_dir(&d->cfg, d->lock_dir, sizeof(d->lock_dir));
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
		if (flock(d->lock_fd, LOCK_EX | LOCK_NB) == 0) {
			/* The agent's pid, for `pglease reload` (a hint: the lock is the truth). */
			char pid[32];
			int n = snprintf(pid, sizeof(pid), "%d\n", (int) getpid());

			if (ftruncate(d->lock_fd, 0) != 0 || pwrite(d->lock_fd, pid, (size_t) n, 0) != n)
				pgl_log_warn("%s: cannot write the agent's pid: %s", path, strerror(errno));
			return 0;
		}
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

/* After the loop: the last heartbeat says the node stopped. */
static void
shutdown_node(struct pgl_daemon *d)
{
	pgl_server_stop(d, true, d->tmo.stop_ms);	/* already stopped unless the loop broke early */
	pgl_strlcpy(d->state, "stopped", sizeof(d->state));
	heartbeat(d, true);
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

/* Is the in-server fence (pglease_fence.so) installed, and is it required? */
/* The store file's identity, to notice it deleted or replaced later. */
static void
remember_store_file(struct pgl_daemon *d)
{
	struct stat sb;

	if (stat(d->cfg.lease_db, &sb) == 0) {
		d->store_dev = sb.st_dev;
		d->store_ino = sb.st_ino;
	}
}

static int
check_fence_lib(struct pgl_daemon *d)
{
	char lib[PGL_PATH_MAX + 32];

	pgl_server_fence_lib(&d->cfg, lib, sizeof(lib));
	d->srv.fence_on = strcmp(d->cfg.in_server_fence, "off") != 0 && access(lib, R_OK) == 0;
	if (strcmp(d->cfg.in_server_fence, "on") == 0 && !d->srv.fence_on) {
		fprintf(stderr, "pglease: in_server_fence = on, but %s is not installed "
				"(make -C src/fence install)\n", lib);
		return -PGL_ECONFIG;
	}
	if (!d->srv.fence_on && strcmp(d->cfg.in_server_fence, "auto") == 0)
		pgl_log_warn("in-server fence not installed (%s): a primary frozen as a whole "
					 "may still commit briefly when it thaws", lib);
	return 0;
}

/*
 * SIGTERM, SIGINT, SIGHUP and SIGCHLD arrive through a signalfd the loop
 * polls; children start with the original mask.
 */
static int
setup_signals(struct pgl_daemon *d)
{
	sigset_t mask, orig;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, &orig);
	pgl_proc_set_child_sigmask(&orig);
	d->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	return d->sig_fd < 0 ? -PGL_ESYS : 0;
}

/* The operator's programs must be there and executable: at start and on reload. */
static int
programs_check(const struct pgl_config *c, char *err, size_t len)
{
	const struct { const char *key, *path; } p[] = {
		{ "on_role_change", c->on_role_change },
		{ "bootstrap_program", c->bootstrap_program },
	};

	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
		if (p[i].path[0] && access(p[i].path, X_OK) != 0) {
			snprintf(err, len, "%s: %s: %s", p[i].key, p[i].path, strerror(errno));
			return -1;
		}
	return 0;
}

/* The configuration, timings and password; PGL_EXIT_OK or the exit code. */
static int
setup_config(struct pgl_daemon *d, const char *conf, const char *lease_db, char *err,
			 size_t errlen)
{
	if (pgl_config_load(&d->cfg, conf, NULL, err, errlen) < 0) {
		for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
			fprintf(stderr, "pglease: %s\n", line);
		return PGL_EXIT_USAGE;
	}
	if (lease_db)
		pgl_strlcpy(d->cfg.lease_db, lease_db, sizeof(d->cfg.lease_db));
	pgl_strlcpy(d->conf_path, conf ? conf : "", sizeof(d->conf_path));
	pgl_strlcpy(d->lease_db_arg, lease_db ? lease_db : "", sizeof(d->lease_db_arg));
	pgl_timeouts_init(&d->tmo, &d->cfg);
	pgl_pg_set_bound(d->tmo.local_ms);
	pgl_log_set_node(d->cfg.node_name);
	if (read_password(d, err, errlen) < 0) {
		fprintf(stderr, "pglease: %s\n", err);
		return PGL_EXIT_USAGE;
	}
	return PGL_EXIT_OK;
}

/*
 * Is the store at path damaged in a way `pglease store rebuild` repairs:
 * refused as not (or no longer) a pglease store, while the node records
 * beside it show that agents used it?  A foreign file with no records is a
 * configuration error instead (exit 2).
 */
static bool
store_damaged(const char *path, int rc)
{
	char nodes[PGL_PATH_MAX + 16];
	size_t n = strlen(path);
	struct stat sb;

	if (rc != -PGL_EFOREIGN || pgl_store_is_url(path))
		return false;
	if (n > 3 && strcmp(path + n - 3, ".db") == 0)
		n -= 3;
	snprintf(nodes, sizeof(nodes), "%.*s.nodes", (int) n, path);
	return stat(nodes, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/*
 * A damaged store at startup: under a restart policy (Docker's
 * unless-stopped, systemd's on-failure) an agent that exits would be
 * started again and again.  So it says once what is wrong and what to do,
 * then waits, holding nothing (no alive lock yet, no server: so `pglease
 * store rebuild` may run meanwhile), and opens the store again every 5 s.
 * SIGTERM ends it (default action: nothing to clean up).  Returns the
 * open's last result.
 */
static int
wait_for_repair(struct pgl_daemon *d, char *err, size_t errlen)
{
	int rc;

	pgl_log_error("%s; waiting: with every agent stopped or waiting like this one, run "
				  "`pglease store rebuild --lease-db %s` (it keeps the damaged file and "
				  "re-forms the cluster on its most advanced node); re-checking every 5 s",
				  err, d->cfg.lease_db);
	pgl_notify("STATUS=waiting: the lease store is damaged (pglease store rebuild)");
	do {
		poll(NULL, 0, 5000);
		rc = pgl_store_open(d->cfg.lease_db, PGL_STORE_CREATE, &d->st, err, errlen);
	} while (store_damaged(d->cfg.lease_db, rc));
	if (rc == 0)
		pgl_log_info("the lease store %s can be used again; starting", d->cfg.lease_db);
	return rc;
}

/*
 * Opens (or creates) the store.  Busy: agents starting together on a new
 * store; tried for about 5 s.  etcd not answering yet (its members start
 * with the nodes): 60 s.  Damaged: waited for (wait_for_repair()).
 */
static int
open_store_retrying(struct pgl_daemon *d, char *err, size_t len)
{
	int rc;

	for (int i = 0; (rc = pgl_store_open(d->cfg.lease_db, PGL_STORE_CREATE, &d->st, err,
										  len)) == -PGL_EBUSY ||
		 (rc == -PGL_ESTORE && pgl_store_is_url(d->cfg.lease_db)); i++) {
		if (i >= (rc == -PGL_EBUSY ? 25 : 300))
			break;
		if (i == 0 && rc == -PGL_ESTORE)
			pgl_log_warn("%s; retrying for 60 s", err);
		poll(NULL, 0, 200);
	}
	return store_damaged(d->cfg.lease_db, rc) ? wait_for_repair(d, err, len) : rc;
}

static int
setup(struct pgl_daemon *d, const char *conf, const char *lease_db)
{
	char err[4096];
	int rc;

	if ((rc = setup_config(d, conf, lease_db, err, sizeof(err))) != PGL_EXIT_OK)
		return rc;
	umask(0007);
	if ((rc = open_store_retrying(d, err, sizeof(err))) < 0) {
		fprintf(stderr, "pglease: %s\n", err);
		return rc == -PGL_EFOREIGN || rc == -PGL_ENEWER || rc == -PGL_EINVAL ||
			rc == -PGL_ECONFIG ? PGL_EXIT_USAGE : PGL_EXIT_FAIL;
	}
	d->busy_ms = 500;
	pgl_store_set_busy_ms(d->st, d->busy_ms);
	remember_store_file(d);
	if (check_fence_lib(d) < 0)
		return PGL_EXIT_USAGE;
	if ((rc = take_alive_lock(d, err, sizeof(err))) < 0 ||
		(rc = pgl_server_check_identity(d, err, sizeof(err))) < 0 ||
		(rc = check_no_foreign_postmaster(d, err, sizeof(err))) < 0) {
		fprintf(stderr, "pglease: %s%s\n", err, rc == -PGL_EFOREIGN && strstr(err, "another "
				"cluster") ? " (to join this cluster as a new standby, move the data "
				"directory aside; if the store is left over from another cluster, give "
				"this one a lease directory of its own)" : "");
		return rc == -PGL_ESYS || rc == -PGL_ESTORE ? PGL_EXIT_FAIL : PGL_EXIT_USAGE;
	}
	if ((rc = pgl_store_watch_open(d->st, &d->watch)) < 0)
		return PGL_EXIT_FAIL;
	if (setup_signals(d) < 0 || watchdog_start() < 0) {
		fprintf(stderr, "pglease: cannot set up signals or the fence watchdog: %s\n",
				strerror(errno));
		return PGL_EXIT_FAIL;
	}
	if (programs_check(&d->cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "pglease: %s\n", err);
		return PGL_EXIT_USAGE;
	}
	/* After the watchdog's fork: no helper process keeps the listening socket. */
	if (d->cfg.http_listen[0] &&
		(rc = pgl_http_start(d->cfg.http_listen, d->cfg.lease_db, &d->http, err,
							 sizeof(err))) < 0) {
		fprintf(stderr, "pglease: %s\n", err);
		return rc == -PGL_EINVAL ? PGL_EXIT_USAGE : PGL_EXIT_FAIL;
	}
	pgl_log_info("agent started: store %s, data %s, port %d, ttl %d ms, renew %d ms",
				 d->cfg.lease_db, d->cfg.pgdata, d->cfg.pg_port, d->cfg.lease_ttl_ms,
				 d->cfg.renew_interval_ms);
	return PGL_EXIT_OK;
}

static void reload(struct pgl_daemon *d);

static void
read_signals(struct pgl_daemon *d)
{
	struct signalfd_siginfo si;

	while (read(d->sig_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			if (!d->stop) {
				pgl_log_info("received %s: stopping", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
				pgl_notify("STOPPING=1\nSTATUS=stopping");
			}
			d->stop = 1;
		} else if (si.ssi_signo == SIGHUP)
			reload(d);
	}
}

static void
append(char *out, size_t len, const char *s)
{
	size_t used = strlen(out);

	if (used < len)
		snprintf(out + used, len - used, "%s", s);
}

/* The keys a reload cannot change (the running value is kept). */
static void
restart_only(const struct pgl_config *a, const struct pgl_config *b, char *out, size_t len)
{
#define DIFF_S(k) if (strcmp(a->k, b->k) != 0) append(out, len, " " #k)
#define DIFF_I(k) if (a->k != b->k) append(out, len, " " #k)
	out[0] = '\0';
	DIFF_S(node_name);
	DIFF_S(lease_db);
	DIFF_S(pgdata);
	DIFF_S(pg_bindir);
	DIFF_I(pg_port);
	DIFF_S(advertise_host);
	DIFF_S(replication_user);
	DIFF_S(password_file);
	DIFF_S(allowed_network);
	DIFF_S(pg_socket_dir);
	DIFF_S(in_server_fence);
	DIFF_S(replication_sslmode);
	DIFF_S(replication_sslrootcert);
	DIFF_S(replication_channel_binding);
	DIFF_S(http_listen);
#undef DIFF_S
#undef DIFF_I
}

static bool
pg_settings_differ(const struct pgl_config *a, const struct pgl_config *b)
{
	if (a->n_pg != b->n_pg)
		return true;
	for (int i = 0; i < a->n_pg; i++)
		if (strcmp(a->pg[i].name, b->pg[i].name) != 0 ||
			strcmp(a->pg[i].value, b->pg[i].value) != 0)
			return true;
	return false;
}

static void decide_cfg(const struct pgl_config *cfg, struct pgl_decide_cfg *c);

/* Takes the reloadable keys of n (already checked) into the running agent. */
static void
apply_reload(struct pgl_daemon *d, const struct pgl_config *n)
{
	struct pgl_config *c = &d->cfg;

	pgl_strlcpy(c->log_level, n->log_level, sizeof(c->log_level));
	c->priority = n->priority;
	c->lease_ttl_ms = n->lease_ttl_ms;
	c->renew_interval_ms = n->renew_interval_ms;
	c->fence_margin_ms = n->fence_margin_ms;
	c->election_grace_ms = n->election_grace_ms;
	c->follow_timeout_ms = n->follow_timeout_ms;
	c->max_lag_on_failover = n->max_lag_on_failover;
	pgl_strlcpy(c->on_role_change, n->on_role_change, sizeof(c->on_role_change));
	pgl_strlcpy(c->bootstrap_program, n->bootstrap_program, sizeof(c->bootstrap_program));
	c->hook_timeout_ms = n->hook_timeout_ms;
	c->n_pg = n->n_pg;
	memcpy(c->pg, n->pg, sizeof(c->pg));
	/*
	 * New timings take effect at the next renewal (the deadline in force was
	 * computed with the old ones); observers judge by the larger of their
	 * own TTL and the one the holder's record announces, so a TTL changed on
	 * some nodes before others is never judged shorter than the holder's.
	 */
	decide_cfg(c, &d->dc.cfg);
	pgl_timeouts_init(&d->tmo, c);
	pgl_pg_set_bound(d->tmo.local_ms);
}

/*
 * SIGHUP: reads the configuration again (file and environment).  A file
 * with any error changes nothing; keys that need a restart are named in one
 * line and keep their running values; the others take effect now, pg.*
 * settings through pglease.node.conf and pg_reload_conf().
 */
static void
reload_config(struct pgl_daemon *d)
{
	struct pgl_config *n = calloc(1, sizeof(*n));
	int level = pgl_log_level;
	char err[4096], restart[512], pending[512];
	bool pg_changed;

	if (n == NULL) {
		pgl_log_error("reload: out of memory; configuration unchanged");
		return;
	}
	if (pgl_config_load(n, d->conf_path[0] ? d->conf_path : NULL, NULL, err,
						sizeof(err)) < 0) {
		pgl_log_level = level;
		for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
			pgl_log_error("reload: %s", line);
		pgl_log_error("reload: configuration unchanged");
		free(n);
		return;
	}
	if (d->lease_db_arg[0])
		pgl_strlcpy(n->lease_db, d->lease_db_arg, sizeof(n->lease_db));
	if (programs_check(n, err, sizeof(err)) < 0) {
		pgl_log_level = level;
		pgl_log_error("reload: %s; configuration unchanged", err);
		free(n);
		return;
	}
	restart_only(&d->cfg, n, restart, sizeof(restart));
	pg_changed = pg_settings_differ(&d->cfg, n);
	apply_reload(d, n);
	free(n);
	snprintf(err, sizeof(err), "configuration reloaded: priority %d, lease_ttl_ms %d, "
			 "renew_interval_ms %d, log_level %s%s%s", d->cfg.priority, d->cfg.lease_ttl_ms,
			 d->cfg.renew_interval_ms, d->cfg.log_level, restart[0] ? "; need a restart:" : "",
			 restart);
	pgl_log_info("reload: %s", err);
	agent_event(d, d->dc.term ? d->dc.term : d->dc.lease.term, "reloaded", err);
	if (restart[0])
		pgl_log_warn("reload: these keys need a restart and keep their running values:%s",
					 restart);
	if (pg_changed && pgl_server_reload_conf(d, pending, sizeof(pending)) < 0)
		pgl_log_warn("reload: pg.* settings written; postgres could not be asked to reload "
					 "(it reads them at its next start)");
	else if (pg_changed && pending[0])
		pgl_log_warn("reload: postgres needs a restart for: %s", pending);
}

/* systemd hears of a reload (ExecReload sends SIGHUP) and of its end. */
static void
reload(struct pgl_daemon *d)
{
	pgl_notify("RELOADING=1");
	reload_config(d);
	pgl_notify("READY=1");
}

/* Milliseconds until the next thing this node must do. */
static int
next_timeout(const struct pgl_daemon *d)
{
	int64_t w = d->dc.wake_ms, t;

	if (d->job.job != PGL_JOB_NONE) {
		/* The job's next look, the holder's renewal and deadline, the heartbeat. */
		w = pgl_job_wake_ms(d);
		if (d->dc.term) {
			int64_t r = d->dc.next_renew_ms > d->dc.renew_retry_ms ? d->dc.next_renew_ms
				: d->dc.renew_retry_ms;

			w = r < w ? r : w;
			w = d->dc.deadline_ms < w ? d->dc.deadline_ms : w;
		} else
			w = d->job.next_heartbeat_ms < w ? d->job.next_heartbeat_ms : w;
	}
	if (pgl_hook_wake_ms(d) < w)
		w = pgl_hook_wake_ms(d);
	t = w - pgl_mono_ms();

	return t < 0 ? 0 : t > INT32_MAX ? INT32_MAX : (int) t;
}

/* The decision module's view of the configuration. */
/* The decision module's view of a configuration. */
static void
decide_cfg(const struct pgl_config *cfg, struct pgl_decide_cfg *c)
{
	memset(c, 0, sizeof(*c));
	pgl_strlcpy(c->node_name, cfg->node_name, sizeof(c->node_name));
	c->priority = cfg->priority;
	c->lease_ttl_ms = cfg->lease_ttl_ms;
	c->renew_interval_ms = cfg->renew_interval_ms;
	c->fence_margin_ms = cfg->fence_margin_ms;
	c->election_grace_ms = cfg->election_grace_ms;
	c->follow_timeout_ms = cfg->follow_timeout_ms;
	c->max_lag_on_failover = cfg->max_lag_on_failover;
	for (int i = 0; i < cfg->n_pg; i++)
		if (strcmp(cfg->pg[i].name, "synchronous_standby_names") == 0)
			c->sync_replication = strcmp(cfg->pg[i].value, "") != 0 &&
				strcmp(cfg->pg[i].value, "''") != 0;
}

static void
decide_init(struct pgl_daemon *d)
{
	struct pgl_decide_cfg c;

	decide_cfg(&d->cfg, &c);
	pgl_decide_init(&d->dc, &c);
}

/*
 * inotify reports a commit's write of its WAL frames before the commit is
 * visible to readers (the -shm index is written through mmap, never
 * reported): a pass run at once may read the store as it was, and nothing
 * would wake the agent again until its timer (a switchover request or a
 * release seen up to a renew interval late).  So after a wake by the watch,
 * the store's data_version is looked at again a few times, RECHECK_MS
 * apart, and one more pass runs if it moved.
 */
#define RECHECK_MS 5
#define RECHECKS 6

/*
 * Which node records wake this agent at once: a node following a holder
 * only the holder's (its renewals decide the expiry); the holder, a
 * candidate (it steps every 100 ms anyway) or a node with no holder to
 * follow, none.  Never its own: each heartbeat would wake it.  Every record
 * is still read on each pass, and a pass runs at least every renew interval.
 */
static void
watch_focus(struct pgl_daemon *d)
{
	const char *h = d->dc.lease.holder;

	pgl_watch_focus(d->watch, d->dc.term == 0 && h[0] && strcmp(h, d->cfg.node_name) != 0
					? h : "");
}

/* The loop: one pass per wake (inotify on the store, a signal, or the timer). */
static void
run_loop(struct pgl_daemon *d)
{
	bool pass = true;
	int rechecks = 0;
	int64_t seen = -1, dv;

	while (!d->exit) {
		struct pollfd p[2] = {
			{ .fd = pgl_watch_fd(d->watch), .events = POLLIN },
			{ .fd = d->sig_fd, .events = POLLIN },
		};
		int timeout, n;
		bool capped;

		if (rechecks > 0) {
			rechecks--;
			if (pgl_store_data_version(d->st, &dv) == 0 && dv != seen)
				pass = true;
		}
		if (pass) {
			if (pgl_store_data_version(d->st, &dv) == 0)
				seen = dv;
			tick(d);
			watch_focus(d);
		}
		timeout = next_timeout(d);
		capped = rechecks > 0 && timeout > RECHECK_MS;
		n = poll(p, 2, capped ? RECHECK_MS : timeout);
		pass = n == 0 && !capped;		/* the agent's own timer */
		if (n > 0) {
			if (p[0].revents && pgl_watch_drain(d->watch)) {
				rechecks = RECHECKS;
				pass = true;
			}
			if (p[1].revents) {
				read_signals(d);
				pass = true;
			}
		}
	}
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
	if (d == NULL) {
		fprintf(stderr, "pglease run: out of memory\n");
		return PGL_EXIT_FAIL;
	}
	d->lock_fd = d->sig_fd = d->job.worker_fd = -1;
	rc = setup(d, conf, lease_db);
	if (rc == PGL_EXIT_OK) {
		decide_init(d);
		pgl_notify("READY=1\nSTATUS=running (role not decided yet)");
		run_loop(d);
	}
	pgl_job_abandon(d);
	if (rc == PGL_EXIT_OK)
		shutdown_node(d);
	pgl_hook_finish(d, 5000);	/* the last role change's program, e.g. "released" */
	if (rc == PGL_EXIT_OK && d->fatal)
		rc = PGL_EXIT_FAIL;
	pgl_http_stop(d->http);
	watch_stop(d);
	pgl_server_disconnect(d);
	pgl_watch_close(d->watch);
	pgl_store_close(d->st);
	pgl_decide_free(&d->dc);
	free(d);
	return rc;
}
