/*
 * daemon.h — the agent's state, shared by agent.c (the lease loop and the
 * election) and server.c (the local PostgreSQL's life cycle).  Internal.
 */
#ifndef PGLEASE_DAEMON_H
#define PGLEASE_DAEMON_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

#include "pglease/config.h"
#include "pglease/decide.h"
#include "pglease/hook.h"
#include "pglease/http.h"
#include "pglease/server.h"
#include "pglease/store.h"
#include "pglease/timing.h"
#include "pglease/watch.h"

/* An event that could not be written yet (the store was locked or full). */
struct pgl_pending_event {
	int64_t term;
	char kind[32];
	char detail[600];
};

#define PGL_MAX_PENDING 32

/* The job under way (job.c): a few steps, in the loop or in a worker process. */
struct pgl_jobrun {
	enum pgl_job job;			/* PGL_JOB_NONE when there is none */
	int step;					/* where the job is (job.c) */
	struct pgl_action a;		/* as asked: upstream node, mode */
	struct pgl_job_result r;	/* filled as it goes; final when it is done */
	int64_t until_ms;			/* end of the current wait */
	pid_t worker;				/* the worker process, 0 when none */
	int worker_fd;				/* read end of its result pipe, -1 when none */
	bool worker_exited;			/* reaped (pgl_server_reap): worker_status is set */
	int worker_status;
	int64_t cancel_ms;			/* when the worker was told to stop, 0 if not */
	int64_t next_heartbeat_ms;	/* this node's row while the job runs */
	const char *state;			/* what it put in the daemon's state, NULL if nothing */
	char sysid[32];				/* BOOTSTRAP: the new system identifier */
	int progress_fd;			/* the worker's progress pipe (the agent reads, the
								 * worker writes its end as 4); -1 when none */
	struct pgl_progress progress;	/* the last copy progress the worker reported */
};

struct pgl_daemon {
	struct pgl_config cfg;
	char conf_path[PGL_PATH_MAX];	/* -c, for a reload ("" none) */
	char lease_db_arg[PGL_PATH_MAX];	/* --lease-db ("" none) */
	struct pgl_timeouts tmo;		/* every operation bound (timing.c) */
	struct pgl_store *st;
	dev_t store_dev;			/* identity of the store file opened at startup */
	ino_t store_ino;
	int64_t store_checked_ms;
	char lease_read_err[256];	/* last reason a lease read failed, logged once */
	struct pgl_watch *watch;
	int sig_fd;
	int lock_fd;				/* alive/<node>.lock, inherited by the postmaster */
	char lock_dir[PGL_PATH_MAX];
	char password[256];

	/* The local server (server.c). */
	struct pgl_server srv;
	char state[32];				/* for the nodes row: running, streaming, cloning, ... */
	uint64_t last_lsn;			/* WAL on disk as last seen by a status query, 0 if unknown */
	struct pgl_jobrun job;

	/* Death seen at once: a child blocked in flock() on the holder's alive lock. */
	pid_t watch_pid;			/* 0 when none */
	char watch_name[PGL_NAME_MAX];	/* the holder it watches ... */
	int64_t watch_term;			/* ... at this term */
	bool watch_gone;			/* it got the lock: that holder's processes are gone */

	/* The decisions: role, term, deadline, the lease as seen, following. */
	struct pgl_decider dc;
	int64_t last_removed_event;	/* newest "removed" event whose slot was dropped */
	int busy_ms;				/* the store's normal lock wait */
	bool exit;					/* the decision said: leave the loop */

	struct pgl_pending_event pending[PGL_MAX_PENDING];
	int n_pending;

	struct pgl_hooks hooks;		/* on_role_change (hook.c) */

	/* The HTTP API (http.c): NULL when http_listen is empty. */
	struct pgl_http *http;
	struct pgl_http_state hs;	/* what the next publish says; counters accumulate */
	bool hs_status_ok;			/* the last status query answered */
	uint64_t hs_replay_lsn;		/* ... and the replay position it gave */
	uint64_t holder_lsn;		/* the holder's position, from its record */
	int64_t last_term_seen;

	volatile sig_atomic_t stop;	/* SIGTERM/SIGINT seen */
	bool fatal;					/* stopping because of an error */
};

/*
 * job.c: starts the job a decision asked for.  The loop then calls
 * pgl_job_poll() on every wake until it returns true: the result is in
 * d->job.r, and d->job.job is PGL_JOB_NONE again.  Never blocks for long.
 */
void pgl_job_begin(struct pgl_daemon *d, const struct pgl_action *a);
bool pgl_job_poll(struct pgl_daemon *d);
/* When the job needs to be polled next (monotonic ms); a worker's exit wakes the loop too. */
int64_t pgl_job_wake_ms(const struct pgl_daemon *d);
/* After the loop: a worker still running is killed and reaped. */
void pgl_job_abandon(struct pgl_daemon *d);
/*
 * In the agent: the copy progress (clone or rewind) of the job under way,
 * after reading what its worker reported since the last call; op NONE when
 * no copy runs.
 */
void pgl_job_progress(struct pgl_daemon *d, struct pgl_progress *out);
/*
 * In a worker: reports progress to the agent, without ever waiting (a full
 * pipe drops the report; the next one follows within a second).
 */
void pgl_job_report_progress(struct pgl_daemon *d, const struct pgl_progress *p);

/* Parses "host=.. port=.." of a node row into host and port. */
bool pgl_node_addr(const struct pgl_node *n, char *host, size_t len, int *port);

#endif
