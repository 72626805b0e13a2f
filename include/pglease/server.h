/*
 * server.h — the local PostgreSQL server: its state (owned by server.c) and
 * its life cycle.  Internal to the agent.
 */
#ifndef PGLEASE_SERVER_H
#define PGLEASE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

#include "pglease/config.h"
#include "pglease/decide.h"
#include "pglease/store.h"

struct pgl_daemon;

/* The local server as this agent runs it. */
struct pgl_server {
	pid_t pm_pid;				/* postmaster child, 0 when none */
	enum pgl_server_mode mode;	/* how it was started */
	PGconn *conn;				/* local connection, NULL when none */
	PGconn *fence_conn;			/* non-blocking connection that arms pglease_fence */
	bool fence_on;				/* the in-server fence extension is in use */
	bool fence_wanted;			/* armed for this server: re-arm if fence_conn is lost */
	int64_t started_ms;
};

/*
 * The local server's life cycle (server.c).  Functions return 0 or a
 * negative PGL_E* code and log their own failures.  None waits for long:
 * the agent's loop drives the waits through the begin/poll pairs (see
 * job.c), and runs initdb, pg_basebackup and pg_rewind in a worker process
 * (pgl_server_initdb, pgl_server_clone, pgl_server_rewind), so renewals and
 * fences never wait behind them.  The poll functions return 1 when done,
 * 0 while still waiting, or a negative code.
 */
/* True if pgdata holds a data directory (PG_VERSION exists). */
bool pgl_server_has_data(const struct pgl_daemon *d);
/* Refuses (-PGL_EFOREIGN, message in err) a data directory of another cluster. */
int pgl_server_check_identity(struct pgl_daemon *d, char *err, size_t errlen);
/* Worker: empties pgdata, runs initdb --data-checksums, appends the shared settings. */
int pgl_server_initdb(struct pgl_daemon *d);
/*
 * Worker, after the first start as primary: creates the replication role
 * (on a connection of its own) and copies the new system identifier into sysid.
 */
int pgl_server_bootstrap_finish(struct pgl_daemon *d, char *sysid, size_t sysidlen, char *note,
								size_t notelen);
/* Writes the node's settings and spawns the postmaster as our child. */
int pgl_server_start_begin(struct pgl_daemon *d, enum pgl_server_mode mode, const char *upstream);
/*
 * 1 once it accepts connections; kills it and fails after the start bound,
 * or at once when give_up (SIGTERM).
 */
int pgl_server_start_poll(struct pgl_daemon *d, bool give_up);
/* Asks for a fast (SIGINT) or immediate (SIGQUIT) shutdown. */
void pgl_server_stop_begin(struct pgl_daemon *d, bool fast);
/* 1 once it exited; at deadline_ms an immediate shutdown and -PGL_ETIMEOUT. */
int pgl_server_stop_poll(struct pgl_daemon *d, int64_t deadline_ms);
/* Both, waiting (only after the loop has ended). */
int pgl_server_stop(struct pgl_daemon *d, bool fast, int64_t timeout_ms);
/* Immediate shutdown (SIGQUIT), then SIGKILL of the whole tree after 2 s. */
void pgl_server_kill(struct pgl_daemon *d);
/*
 * Reaps exited children; true if the postmaster was among them.  Notes the
 * holder watch's exit (watch_pid, watch_gone) and the job worker's too.
 */
bool pgl_server_reap(struct pgl_daemon *d);
/* pg_promote() without waiting; then poll until out of recovery. */
int pgl_server_promote_begin(struct pgl_daemon *d);
int pgl_server_promote_poll(struct pgl_daemon *d, int64_t deadline_ms);
/*
 * Worker: empties pgdata and runs pg_basebackup from `from` (through our
 * slot if it exists), its progress reported to the agent as it goes
 * (pgl_job_report_progress); r->text gets "copied SIZE in SECONDS s" for
 * the "cloned" event.
 */
int pgl_server_clone(struct pgl_daemon *d, const struct pgl_node *from, struct pgl_job_result *r);
/*
 * Worker, before a rewind: does `from` answer?  When it does not, sets
 * r->unreachable and fails (a standby cut off from the network keeps its data).
 */
int pgl_server_rewind_probe(struct pgl_daemon *d, const struct pgl_node *from,
							struct pgl_job_result *r);
/*
 * Worker, with the server stopped: runs pg_rewind against `from`, its
 * progress reported to the agent as it goes.  r->text gets the "rewound"
 * event's detail (ending "; copied SIZE in SECONDS s" when pg_rewind copied
 * anything), or pg_rewind's error; r->unreachable when `from` stopped
 * answering.
 */
int pgl_server_rewind(struct pgl_daemon *d, const struct pgl_node *from, struct pgl_job_result *r);
/* Running standby: ALTER SYSTEM primary_conninfo/primary_slot_name + reload. */
/*
 * After a reload that changed pg.* settings: rewrites pglease.node.conf and,
 * when the server runs, asks it to reload; pending gets the names of the
 * settings that need a restart ("" when none).
 */
int pgl_server_reload_conf(struct pgl_daemon *d, char *pending, size_t len);
/* CHECKPOINT on the local server (in a worker: unbounded). */
int pgl_server_checkpoint(struct pgl_daemon *d);
int pgl_server_follow(struct pgl_daemon *d, const struct pgl_node *from);
/* Primary: creates missing slots of known nodes, drops those of removed ones. */
int pgl_server_sync_slots(struct pgl_daemon *d);
/* The cached local connection, reconnecting if needed; NULL when down.  Borrowed. */
PGconn *pgl_server_conn(struct pgl_daemon *d);
/* Closes both connections (the server stopped or is being stopped). */
void pgl_server_disconnect(struct pgl_daemon *d);
/* Path of pglease_fence.so beside the server's libraries. */
void pgl_server_fence_lib(const struct pgl_config *cfg, char *out, size_t len);
/* Primary: CREATE EXTENSION pglease_fence, connect, arm with the deadline. */
int pgl_server_fence_setup(struct pgl_daemon *d);
/*
 * Holder about to promote: arms the fence in shared memory over the status
 * connection, when an earlier primary created the extension (it replicates);
 * 0 and nothing done when none did.  The setup above follows the promotion.
 */
int pgl_server_fence_prearm(struct pgl_daemon *d);
/* Sends the new deadline without waiting (skipped while the last is pending). */
void pgl_server_fence_arm(struct pgl_daemon *d);
void pgl_server_fence_close(struct pgl_daemon *d);
#endif
