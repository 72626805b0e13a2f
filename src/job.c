/*
 * job.c — the agent's long operations, carried out without holding up its
 * loop (DESIGN.md section 1).
 *
 * A job is a few steps.  A step either does something quick in the loop
 * (send a signal, spawn the postmaster, send pg_promote()), waits for the
 * local server by looking at it on each wake of the loop (accepting
 * connections, out of recovery, exited), or runs in a worker: a fork of the
 * agent that runs initdb, pg_basebackup or pg_rewind and writes its result
 * into a pipe before it exits.  The loop renews and fences while any step
 * waits.
 *
 * A worker of pg_basebackup or pg_rewind also reports their progress into
 * a second pipe (never blocking on it); the agent reads it when it writes
 * its node record, which carries the figures to `pglease status`.
 *
 * A worker keeps only stderr (the log) and its pipes: never the alive lock,
 * the store or a connection of the agent's.  A SIGTERM of the agent is
 * passed on to it; the worker then kills its tool's process group and exits
 * at once, and one that does not is killed WORKER_GRACE_MS later.  It dies
 * with the agent (PR_SET_PDEATHSIG), and its tool dies with it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pglease/daemon.h"
#include "pglease/log.h"
#include "pglease/pgctl.h"

#define WORKER_GRACE_MS 2000

/* What a step returns: wait for the next wake, or the job is done (r.rc set). */
enum { STEP_WAIT = 0, STEP_DONE = 1 };

/* The work of a worker: returns 0 or a negative PGL_E* code; may fill r and sysid. */
typedef int (*worker_fn)(struct pgl_daemon *d, struct pgl_job_result *r, char *sysid,
						 size_t sysidlen);

/* What a worker writes into its pipe: less than PIPE_BUF, so written at once. */
struct worker_msg {
	struct pgl_job_result r;
	char sysid[32];
};

/* In a worker only: its copy of the agent's state, for the SIGTERM handler. */
static struct pgl_daemon *worker_self;

static void
worker_on_term(int sig)
{
	(void) sig;
	worker_self->stop = 1;		/* run_pg_tool() aborts its tool on this flag */
}

/*
 * In a worker: the result pipe as 3, the progress pipe as 4, nothing else
 * above 2.  Both are first copied above 4, so that neither dup2() can
 * replace the other (one of them may be 3 or 4 already).
 */
static void
worker_fds(int fd, int pfd)
{
	int a = fcntl(fd, F_DUPFD, 5), b = fcntl(pfd, F_DUPFD, 5);

	if (a < 0 || b < 0 || dup2(a, 3) < 0 || dup2(b, 4) < 0)
		_exit(1);
	close_range(5, ~0U, 0);
}

static void __attribute__((noreturn))
worker_main(struct pgl_daemon *d, worker_fn fn, int fd, int pfd, pid_t parent)
{
	struct sigaction sa = { .sa_handler = worker_on_term };
	struct worker_msg m;
	sigset_t term;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(1);
	prctl(PR_SET_NAME, "pglease-job");
	worker_fds(fd, pfd);
	d->job.progress_fd = 4;
	/* Closed above; nothing of the agent's may be used from here. */
	d->st = NULL;
	d->watch = NULL;
	d->srv.conn = d->srv.fence_conn = NULL;
	d->srv.pm_pid = 0;
	d->lock_fd = d->sig_fd = -1;
	d->stop = 0;
	pgl_pg_set_bound(0);		/* a remote CHECKPOINT may take long; the tools have bounds */
	worker_self = d;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_UNBLOCK, &term, NULL);	/* blocked in the agent: it uses a signalfd */
	memset(&m, 0, sizeof(m));
	m.r.job = d->job.job;
	m.r.rc = fn(d, &m.r, m.sysid, sizeof(m.sysid));
	if (write(3, &m, sizeof(m)) != (ssize_t) sizeof(m))
		_exit(1);
	_exit(0);
}

/*
 * The worker's pipes: pfd for its result, gfd for its progress reports
 * (non-blocking at both ends: the worker never waits on it, the agent reads
 * what is there).  0, or -1 with errno set and nothing left open.
 */
static int
job_pipes(int pfd[2], int gfd[2])
{
	int e;

	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -1;
	if (pipe2(gfd, O_CLOEXEC | O_NONBLOCK) == 0)
		return 0;
	e = errno;
	close(pfd[0]);
	close(pfd[1]);
	errno = e;
	return -1;
}

static void
progress_close(struct pgl_jobrun *j)
{
	if (j->progress_fd >= 0)
		close(j->progress_fd);
	j->progress_fd = -1;
}

/* Forks a worker running fn; STEP_DONE with r.rc set when that fails. */
static int
worker_start(struct pgl_daemon *d, worker_fn fn)
{
	struct pgl_jobrun *j = &d->job;
	pid_t parent = getpid(), pid;
	int pfd[2], gfd[2];

	if (job_pipes(pfd, gfd) != 0) {
		pgl_log_error("cannot start the %s job: pipe: %s", pgl_job_name(j->job), strerror(errno));
		j->r.rc = -PGL_ESYS;
		return STEP_DONE;
	}
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		close(gfd[0]);
		worker_main(d, fn, pfd[1], gfd[1], parent);
	}
	close(pfd[1]);
	close(gfd[1]);
	if (pid < 0) {
		pgl_log_error("cannot start the %s job: fork: %s", pgl_job_name(j->job), strerror(errno));
		close(pfd[0]);
		close(gfd[0]);
		j->r.rc = -PGL_ESYS;
		return STEP_DONE;
	}
	progress_close(j);
	j->progress_fd = gfd[0];
	j->worker = pid;
	j->worker_fd = pfd[0];
	j->worker_exited = false;
	j->cancel_ms = 0;
	return STEP_WAIT;
}

/* Reads the result of a worker that exited into j->r (and j->sysid). */
static void
worker_collect(struct pgl_jobrun *j)
{
	struct worker_msg m;
	ssize_t n;

	while ((n = read(j->worker_fd, &m, sizeof(m))) < 0 && errno == EINTR)
		;
	close(j->worker_fd);
	j->worker_fd = -1;
	j->worker_exited = false;
	progress_close(j);
	if (n != (ssize_t) sizeof(m)) {
		int st = j->worker_status;

		pgl_log_error("the %s job's worker ended without a result (%s %d)", pgl_job_name(j->job),
					  WIFSIGNALED(st) ? "signal" : "exit status",
					  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		j->r.rc = -PGL_ESYS;
		return;
	}
	m.r.job = j->job;
	j->r = m.r;
	pgl_strlcpy(j->sysid, m.sysid, sizeof(j->sysid));
}

/* STEP_DONE once the worker exited (j->r filled); passes a SIGTERM on meanwhile. */
static int
worker_poll(struct pgl_daemon *d)
{
	struct pgl_jobrun *j = &d->job;
	int64_t now = pgl_mono_ms();

	if (j->worker_exited) {
		worker_collect(j);
		return STEP_DONE;
	}
	if (d->stop && j->cancel_ms == 0) {
		pgl_log_info("stopping the %s job", pgl_job_name(j->job));
		kill(j->worker, SIGTERM);
		j->cancel_ms = now;
	} else if (j->cancel_ms && now - j->cancel_ms >= WORKER_GRACE_MS)
		kill(j->worker, SIGKILL);
	return STEP_WAIT;
}

/* ---- the workers' work ---- */

static int
w_initdb(struct pgl_daemon *d, struct pgl_job_result *r, char *sysid, size_t len)
{
	(void) r;
	(void) sysid;
	(void) len;
	return pgl_server_initdb(d);
}

static int
w_bootstrap_finish(struct pgl_daemon *d, struct pgl_job_result *r, char *sysid, size_t len)
{
	return pgl_server_bootstrap_finish(d, sysid, len, r->text, sizeof(r->text));
}

static int
w_clone(struct pgl_daemon *d, struct pgl_job_result *r, char *sysid, size_t len)
{
	(void) sysid;
	(void) len;
	return pgl_server_clone(d, &d->job.a.node, r);
}

static int
w_rewind_probe(struct pgl_daemon *d, struct pgl_job_result *r, char *sysid, size_t len)
{
	(void) sysid;
	(void) len;
	return pgl_server_rewind_probe(d, &d->job.a.node, r);
}

static int
w_checkpoint(struct pgl_daemon *d, struct pgl_job_result *r, char *sysid, size_t len)
{
	(void) r;
	(void) sysid;
	(void) len;
	return pgl_server_checkpoint(d);
}

static int
w_rewind(struct pgl_daemon *d, struct pgl_job_result *r, char *sysid, size_t len)
{
	(void) sysid;
	(void) len;
	return pgl_server_rewind(d, &d->job.a.node, r);
}

/* ---- the steps of each job ---- */

static int
done(struct pgl_jobrun *j, int rc)
{
	j->r.rc = rc;
	return STEP_DONE;
}

/* Only a holder may make its server writable: fenced meanwhile, it does not. */
static int
need_term(struct pgl_daemon *d)
{
	if (d->dc.term)
		return 0;
	pgl_log_warn("%s job given up: this node no longer holds a term", pgl_job_name(d->job.job));
	return -PGL_EPG;
}

/* Waits for the server to accept connections (the last step of a start). */
static int
start_wait(struct pgl_daemon *d)
{
	int rc = pgl_server_start_poll(d, d->stop);

	return rc == 0 ? STEP_WAIT : done(&d->job, rc < 0 ? rc : 0);
}

static int
clone_step(struct pgl_daemon *d, struct pgl_jobrun *j)
{
	if (j->step == 0) {
		j->step = 1;
		return worker_start(d, w_clone);
	}
	return worker_poll(d);
}

/* Probe the source (worker), stop the server, pg_rewind (worker). */
static int
rewind_step(struct pgl_daemon *d, struct pgl_jobrun *j)
{
	switch (j->step) {
	case 0:
		j->step = 1;
		return worker_start(d, w_rewind_probe);
	case 1:
		if (worker_poll(d) == STEP_WAIT)
			return STEP_WAIT;
		if (j->r.rc < 0)
			return STEP_DONE;
		pgl_server_stop_begin(d, true);
		j->until_ms = pgl_mono_ms() + d->tmo.stop_for_rewind_ms;
		j->step = 2;
		/* FALLTHROUGH */
	case 2:
		if (pgl_server_stop_poll(d, j->until_ms) == 0)
			return STEP_WAIT;
		if (d->stop)
			return done(j, -PGL_ETIMEOUT);	/* SIGTERM: not worth starting pg_rewind */
		j->step = 3;
		return worker_start(d, w_rewind);
	default:
		return worker_poll(d);
	}
}

static int
start_step(struct pgl_daemon *d, struct pgl_jobrun *j)
{
	int rc;

	if (j->step == 0) {
		j->step = 1;
		if (j->a.mode == PGL_SERVER_PRIMARY && (rc = need_term(d)) < 0)
			return done(j, rc);
		rc = pgl_server_start_begin(d, j->a.mode, j->a.has_node ? j->a.node.name : NULL);
		if (rc < 0)
			return done(j, rc);
	}
	return start_wait(d);
}

/* pg_promote(), then out of recovery: the new timeline goes into the result. */
static int
promote_step(struct pgl_daemon *d, struct pgl_jobrun *j)
{
	struct pgl_pg_status s;
	PGconn *c;
	int rc;

	if (j->step == 0) {
		j->step = 1;
		if ((rc = need_term(d)) < 0)
			return done(j, rc);
		/* Armed before the first write can commit; armed again once promoted. */
		if (pgl_server_fence_prearm(d) < 0)
			pgl_log_warn("in-server fence not armed before the promotion; arming it after");
		if ((rc = pgl_server_promote_begin(d)) < 0)
			return done(j, rc);
		j->until_ms = pgl_mono_ms() + d->tmo.promote_ms;
	}
	if (d->dc.term == 0)
		return done(j, -PGL_EPG);		/* fenced meanwhile */
	if ((rc = pgl_server_promote_poll(d, j->until_ms)) == 0)
		return STEP_WAIT;
	if (rc > 0 && (c = pgl_server_conn(d)) != NULL && pgl_pg_status(c, &s) == 0)
		j->r.timeline = s.timeline;
	return done(j, rc < 0 ? rc : 0);
}

/* Clean stop: fast shutdown; clean when pg_controldata says "shut down". */
/*
 * The clean stop, from step `first`: fast shutdown, then the shutdown
 * checkpoint's LSN from pg_controldata when this node still holds a term.
 */
static int
stop_from(struct pgl_daemon *d, struct pgl_jobrun *j, int first)
{
	struct pgl_controldata cd;
	int rc;

	if (j->step == first) {
		j->step = first + 1;
		pgl_server_stop_begin(d, true);
		j->until_ms = pgl_mono_ms() + d->tmo.stop_ms;
	}
	if ((rc = pgl_server_stop_poll(d, j->until_ms)) == 0)
		return STEP_WAIT;
	if (rc > 0 && d->dc.term && pgl_pg_controldata(&d->cfg, &cd) == 0 &&
		strcmp(cd.state, "shut down") == 0) {
		j->r.clean = true;
		pgl_lsn_format(cd.checkpoint_lsn, j->r.lsn, sizeof(j->r.lsn));
	}
	return done(j, rc < 0 ? rc : 0);
}

static int
stop_step(struct pgl_daemon *d, struct pgl_jobrun *j)
{
	return stop_from(d, j, 0);
}

/*
 * A switchover's hand-over: a CHECKPOINT first (worker), so that the
 * shutdown checkpoint, during which nothing is written, has little left to
 * do; then the clean stop.  A failed CHECKPOINT only makes the stop slower.
 */
static int
handover_step(struct pgl_daemon *d, struct pgl_jobrun *j)
{
	if (j->step == 0) {
		j->step = worker_start(d, w_checkpoint) == STEP_WAIT ? 1 : 2;
		if (j->step == 1)
			return STEP_WAIT;
	}
	if (j->step == 1 && worker_poll(d) == STEP_WAIT)
		return STEP_WAIT;
	if (j->step == 1) {
		if (j->r.rc < 0)
			pgl_log_warn("CHECKPOINT before the hand-over failed (%s); stopping anyway",
						 pgl_strerror(j->r.rc));
		memset(&j->r, 0, sizeof(j->r));
		j->r.job = PGL_JOB_HANDOVER;
		j->step = 2;
	}
	return stop_from(d, j, 2);
}

/* initdb (worker), start as primary, the replication role (worker). */
static int
bootstrap_step(struct pgl_daemon *d, struct pgl_jobrun *j)
{
	int rc;

	switch (j->step) {
	case 0:
		j->step = 1;
		return worker_start(d, w_initdb);
	case 1:
		if (worker_poll(d) == STEP_WAIT)
			return STEP_WAIT;
		if (j->r.rc < 0)
			return STEP_DONE;
		j->step = 2;
		if ((rc = need_term(d)) < 0 ||
			(rc = pgl_server_start_begin(d, PGL_SERVER_PRIMARY, NULL)) < 0)
			return done(j, rc);
		return STEP_WAIT;
	case 2:
		if (start_wait(d) == STEP_WAIT)
			return STEP_WAIT;
		if (j->r.rc < 0)
			return STEP_DONE;
		j->step = 3;
		return worker_start(d, w_bootstrap_finish);
	default:
		return worker_poll(d);
	}
}

/* ---- the job ---- */

void
pgl_job_begin(struct pgl_daemon *d, const struct pgl_action *a)
{
	struct pgl_jobrun *j = &d->job;

	memset(j, 0, sizeof(*j));
	j->job = a->job;
	j->a = *a;
	j->r.job = a->job;
	j->worker_fd = -1;
	j->progress_fd = -1;
	j->next_heartbeat_ms = pgl_mono_ms() + d->cfg.renew_interval_ms;
}

bool
pgl_job_poll(struct pgl_daemon *d)
{
	struct pgl_jobrun *j = &d->job;
	int st;

	if (j->job == PGL_JOB_NONE)
		return false;
	if (pgl_server_reap(d))
		d->srv.mode = PGL_SERVER_NONE;
	switch (j->job) {
	case PGL_JOB_BOOTSTRAP: st = bootstrap_step(d, j); break;
	case PGL_JOB_CLONE: st = clone_step(d, j); break;
	case PGL_JOB_REWIND: st = rewind_step(d, j); break;
	case PGL_JOB_START: st = start_step(d, j); break;
	case PGL_JOB_PROMOTE: st = promote_step(d, j); break;
	case PGL_JOB_STOP: st = stop_step(d, j); break;
	case PGL_JOB_HANDOVER: st = handover_step(d, j); break;
	default: st = done(j, -PGL_EINVAL); break;
	}
	if (st == STEP_WAIT)
		return false;
	j->job = PGL_JOB_NONE;
	return true;
}

int64_t
pgl_job_wake_ms(const struct pgl_daemon *d)
{
	const struct pgl_jobrun *j = &d->job;
	int64_t now = pgl_mono_ms();

	if (j->job == PGL_JOB_NONE)
		return INT64_MAX;
	if (j->step == 0 || j->worker_exited)
		return now;
	if (j->worker > 0)			/* its exit wakes the loop (SIGCHLD) */
		return j->cancel_ms ? j->cancel_ms + WORKER_GRACE_MS : d->stop ? now : INT64_MAX;
	return now + d->tmo.poll_ms;
}

void
pgl_job_abandon(struct pgl_daemon *d)
{
	struct pgl_jobrun *j = &d->job;

	if (j->worker > 0) {
		kill(j->worker, SIGKILL);
		while (waitpid(j->worker, NULL, 0) < 0 && errno == EINTR)
			;
		j->worker = 0;
	}
	if (j->worker_fd >= 0)
		close(j->worker_fd);
	j->worker_fd = -1;
	progress_close(j);
	j->job = PGL_JOB_NONE;
}

void
pgl_job_progress(struct pgl_daemon *d, struct pgl_progress *out)
{
	struct pgl_jobrun *j = &d->job;
	struct pgl_progress p;

	memset(out, 0, sizeof(*out));
	if (j->job != PGL_JOB_CLONE && j->job != PGL_JOB_REWIND)
		return;
	/* Each report is one write of less than PIPE_BUF: read whole, or not at all. */
	while (j->progress_fd >= 0 && read(j->progress_fd, &p, sizeof(p)) == (ssize_t) sizeof(p))
		if (pgl_progress_valid(&p))
			j->progress = p;
	*out = j->progress;
}

void
pgl_job_report_progress(struct pgl_daemon *d, const struct pgl_progress *p)
{
	ssize_t n;

	if (d->job.progress_fd < 0)
		return;
	n = write(d->job.progress_fd, p, sizeof(*p));
	(void) n;					/* full (EAGAIN): this report is dropped */
}
