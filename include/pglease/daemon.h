/*
 * daemon.h — the agent's state, shared by agent.c (the lease loop and the
 * election) and pgnode.c (the local PostgreSQL's life cycle).  Internal.
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
#include "pglease/store.h"
#include "pglease/timing.h"
#include "pglease/watch.h"

/* How the local server was started: the decision module's names. */
#define pgl_pg_mode pgl_server_mode
#define PGL_PG_NONE PGL_SERVER_NONE
#define PGL_PG_STANDBY PGL_SERVER_STANDBY
#define PGL_PG_PRIMARY PGL_SERVER_PRIMARY

/* An event that could not be written yet (the store was locked or full). */
struct pgl_pending_event {
	int64_t term;
	char kind[32];
	char detail[600];
};

#define PGL_MAX_PENDING 32

struct pgl_daemon {
	struct pgl_config cfg;
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

	/* The local server. */
	pid_t pm_pid;				/* postmaster child, 0 when none */
	enum pgl_pg_mode pg_mode;	/* how it was started */
	PGconn *conn;				/* local connection, NULL when none */
	PGconn *fence_conn;			/* non-blocking connection that arms pglease_fence */
	bool fence_on;				/* the in-server fence extension is in use */
	int64_t pm_started_ms;
	char state[32];				/* for the nodes row: running, streaming, cloning, ... */
	uint64_t last_lsn;			/* WAL on disk as last seen by a status query, 0 if unknown */
	int64_t job_heartbeat_ms;	/* next heartbeat while a job runs (not holding a term) */

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
	bool in_keepalive;

	struct pgl_pending_event pending[PGL_MAX_PENDING];
	int n_pending;

	volatile sig_atomic_t stop;	/* SIGTERM/SIGINT seen */
	bool fatal;					/* stopping because of an error */
};

/* agent.c: renews when due (or fences); safe to call while waiting on a child program. */
void pgl_agent_keepalive(void *daemon);

/*
 * pgnode.c — the local server.  Functions return 0 or a negative PGL_E*
 * code, log their own failures, and call pgl_agent_keepalive() while they
 * wait, so a holder keeps renewing through long operations.
 */
/* True if pgdata holds a data directory (PG_VERSION exists). */
bool pgl_node_has_data(const struct pgl_daemon *d);
/* Refuses (-PGL_EFOREIGN, message in err) a data directory of another cluster. */
int pgl_node_check_identity(struct pgl_daemon *d, char *err, size_t errlen);
/*
 * Term-1 winner: initdb --data-checksums, start as primary, create the
 * role; copies the new system identifier into sysid.
 */
int pgl_node_bootstrap(struct pgl_daemon *d, char *sysid, size_t sysidlen);
/* Starts the postmaster as our child and waits until it accepts connections. */
int pgl_node_start(struct pgl_daemon *d, enum pgl_pg_mode mode, const char *upstream);
/* Fast (SIGINT) or immediate shutdown; immediate after timeout_ms. */
int pgl_node_stop(struct pgl_daemon *d, bool fast, int timeout_ms);
/* Immediate shutdown (SIGQUIT), then SIGKILL of the whole tree after 2 s. */
void pgl_node_kill(struct pgl_daemon *d);
/*
 * Reaps exited children; true if the postmaster was among them.  Notes the
 * holder watch's exit (watch_pid, watch_gone) too.
 */
bool pgl_node_reap(struct pgl_daemon *d);
/* pg_promote() and waits until the server is out of recovery. */
int pgl_node_promote(struct pgl_daemon *d);
/* Empties pgdata and runs pg_basebackup from `from` (through our slot if it exists). */
int pgl_node_clone(struct pgl_daemon *d, const struct pgl_node *from);
/*
 * Runs pg_rewind against `from` after stopping the server.  When `from`
 * does not answer, changes nothing and sets r->unreachable.  r->text gets
 * the "rewound" event's detail, or pg_rewind's error.
 */
int pgl_node_rewind(struct pgl_daemon *d, const struct pgl_node *from, struct pgl_job_result *r);
/* Running standby: ALTER SYSTEM primary_conninfo/primary_slot_name + reload. */
int pgl_node_follow(struct pgl_daemon *d, const struct pgl_node *from);
/* Primary: creates missing slots of known nodes, drops those of removed ones. */
int pgl_node_sync_slots(struct pgl_daemon *d);
/* The cached local connection, reconnecting if needed; NULL when down.  Borrowed. */
PGconn *pgl_node_conn(struct pgl_daemon *d);
void pgl_node_disconnect(struct pgl_daemon *d);
/* Path of pglease_fence.so beside the server's libraries. */
void pgl_node_fence_lib(const struct pgl_config *cfg, char *out, size_t len);
/* Primary: CREATE EXTENSION pglease_fence, connect, arm with the deadline. */
int pgl_node_fence_setup(struct pgl_daemon *d);
/* Sends the new deadline without waiting (skipped while the last is pending). */
void pgl_node_fence_arm(struct pgl_daemon *d);
void pgl_node_fence_close(struct pgl_daemon *d);
/* Parses "host=.. port=.." of a node row into host and port. */
bool pgl_node_addr(const struct pgl_node *n, char *host, size_t len, int *port);

#endif
