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

	/* The local server (server.c). */
	struct pgl_server srv;
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

/* Parses "host=.. port=.." of a node row into host and port. */
bool pgl_node_addr(const struct pgl_node *n, char *host, size_t len, int *port);

#endif
