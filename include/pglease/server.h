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
	int64_t started_ms;
};

/*
 * The local server's life cycle (server.c).  Functions return 0 or a negative PGL_E*
 * code, log their own failures, and call pgl_agent_keepalive() while they
 * wait, so a holder keeps renewing through long operations.
 */
/* True if pgdata holds a data directory (PG_VERSION exists). */
bool pgl_server_has_data(const struct pgl_daemon *d);
/* Refuses (-PGL_EFOREIGN, message in err) a data directory of another cluster. */
int pgl_server_check_identity(struct pgl_daemon *d, char *err, size_t errlen);
/*
 * Term-1 winner: initdb --data-checksums, start as primary, create the
 * role; copies the new system identifier into sysid.
 */
int pgl_server_bootstrap(struct pgl_daemon *d, char *sysid, size_t sysidlen);
/* Starts the postmaster as our child and waits until it accepts connections. */
int pgl_server_start(struct pgl_daemon *d, enum pgl_server_mode mode, const char *upstream);
/* Fast (SIGINT) or immediate shutdown; immediate after timeout_ms. */
int pgl_server_stop(struct pgl_daemon *d, bool fast, int timeout_ms);
/* Immediate shutdown (SIGQUIT), then SIGKILL of the whole tree after 2 s. */
void pgl_server_kill(struct pgl_daemon *d);
/*
 * Reaps exited children; true if the postmaster was among them.  Notes the
 * holder watch's exit (watch_pid, watch_gone) too.
 */
bool pgl_server_reap(struct pgl_daemon *d);
/* pg_promote() and waits until the server is out of recovery. */
int pgl_server_promote(struct pgl_daemon *d);
/* Empties pgdata and runs pg_basebackup from `from` (through our slot if it exists). */
int pgl_server_clone(struct pgl_daemon *d, const struct pgl_node *from);
/*
 * Runs pg_rewind against `from` after stopping the server.  When `from`
 * does not answer, changes nothing and sets r->unreachable.  r->text gets
 * the "rewound" event's detail, or pg_rewind's error.
 */
int pgl_server_rewind(struct pgl_daemon *d, const struct pgl_node *from, struct pgl_job_result *r);
/* Running standby: ALTER SYSTEM primary_conninfo/primary_slot_name + reload. */
int pgl_server_follow(struct pgl_daemon *d, const struct pgl_node *from);
/* Primary: creates missing slots of known nodes, drops those of removed ones. */
int pgl_server_sync_slots(struct pgl_daemon *d);
/* The cached local connection, reconnecting if needed; NULL when down.  Borrowed. */
PGconn *pgl_server_conn(struct pgl_daemon *d);
void pgl_server_disconnect(struct pgl_daemon *d);
/* Path of pglease_fence.so beside the server's libraries. */
void pgl_server_fence_lib(const struct pgl_config *cfg, char *out, size_t len);
/* Primary: CREATE EXTENSION pglease_fence, connect, arm with the deadline. */
int pgl_server_fence_setup(struct pgl_daemon *d);
/* Sends the new deadline without waiting (skipped while the last is pending). */
void pgl_server_fence_arm(struct pgl_daemon *d);
void pgl_server_fence_close(struct pgl_daemon *d);
#endif
