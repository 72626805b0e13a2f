/*
 * pgctl.h — everything that touches PostgreSQL: one subprocess runner with a
 * timeout (initdb, pg_basebackup, pg_rewind, pg_controldata), the postmaster
 * as the agent's own child, and libpq probes of the local server.
 */
#ifndef PGLEASE_PGCTL_H
#define PGLEASE_PGCTL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

#include "pglease/config.h"

/* Options of pgl_run().  All fields may be zero. */
struct pgl_run_opts {
	int timeout_ms;					/* 0: no limit */
	char *const *env_add;			/* extra "KEY=value" entries, NULL-terminated */
	void (*tick)(void *arg);		/* called about every 100 ms while waiting */
	void *tick_arg;
	volatile sig_atomic_t *abort_flag;	/* child is killed when it becomes non-zero */
	/*
	 * When set, the output is cut into lines (at '\n' or '\r', at most
	 * PGL_RUN_LINE_MAX - 1 bytes each) and each is handed to line before it
	 * is kept: only those it returns true for go into out (each with a '\n').
	 */
	bool (*line)(const char *text, void *arg);
	void *line_arg;
};

#define PGL_RUN_LINE_MAX 1024

/*
 * The signal mask children must start with (the agent blocks the signals it
 * reads through signalfd; children must not inherit that).
 */
void pgl_proc_set_child_sigmask(const sigset_t *mask);

/*
 * Runs argv[0] (a path) with argv, no shell, every descriptor above 2 closed
 * (so the proof-of-death lock is never inherited), in its own process group
 * (killed as a group on timeout or abort) and with PR_SET_PDEATHSIG, so it
 * never outlives the agent.  Captures stdout and
 * stderr together into out (truncated to outlen - 1; may be NULL).  Returns 0
 * when the program exited 0, -PGL_EPG when it exited non-zero (*status gets
 * the wait status), -PGL_ETIMEOUT when killed on timeout or abort,
 * -PGL_ESYS or -PGL_ENOMEM when it could not be started.
 */
int pgl_run(char *const argv[], const struct pgl_run_opts *opts, char *out, size_t outlen,
			int *status);

/*
 * Starts `postgres -D pgdata` as a child that keeps `keep_fd` (the alive
 * lock) and dies with SIGQUIT (immediate shutdown) if the agent dies.
 * Returns the pid or -1.
 */
pid_t pgl_pg_spawn(const struct pgl_config *cfg, int keep_fd);

/*
 * SIGKILLs pid and every descendant of it (children, grandchildren, ... as
 * /proc/<pid>/task/<tid>/children lists them): the tree is stopped with
 * SIGSTOP from the top down while it is collected, so nothing forks away,
 * then killed root first.  Bounded (4096 processes, 200 ms of waiting);
 * pid <= 1 is ignored.
 */
void pgl_proc_kill_tree(pid_t pid);

/* What pg_controldata says about a data directory. */
struct pgl_controldata {
	char sysid[32];
	char state[64];					/* "shut down", "in production", ... */
	uint64_t checkpoint_lsn;		/* latest checkpoint location */
	uint64_t redo_lsn;
	uint64_t min_recovery_lsn;
	int64_t timeline;				/* latest checkpoint's TimeLineID */
};
int pgl_pg_controldata(const struct pgl_config *cfg, struct pgl_controldata *out);

/* Connects to the local server through its Unix socket.  NULL on failure. */
PGconn *pgl_pg_connect_local(const struct pgl_config *cfg, int timeout_s);
/*
 * Bounds every later connection attempt and query of this process (the
 * pgl_pg_* helpers) to ms, 0 for none: past it the call fails and a query's
 * connection is broken.  pgl_pg_timeout_at() is when one last timed out.
 */
void pgl_pg_set_bound(int64_t ms);
int64_t pgl_pg_timeout_at(void);
/*
 * True if the server at host:port answers (any authentication outcome), asked
 * with the replication_sslmode/sslrootcert/channel_binding of the config given
 * to pgl_pg_set_remote_config().
 */
bool pgl_pg_ping_remote(const char *host, int port);
/* The config whose replication_* options pgl_pg_ping_remote() uses (borrowed). */
void pgl_pg_set_remote_config(const struct pgl_config *cfg);

/* Runs a statement with text parameters; 0 or -PGL_EPG (logged at warn with the SQL). */
int pgl_pg_exec(PGconn *conn, const char *sql, int nparams, const char *const *params);
/*
 * The same for a statement that carries a secret: a failure is logged as
 * "<label> failed: <primary message>", never with the SQL text.
 */
int pgl_pg_exec_secret(PGconn *conn, const char *label, const char *sql, int nparams,
					   const char *const *params);
/* Runs a one-value query; copies the value into out. */
int pgl_pg_scalar(PGconn *conn, const char *sql, int nparams, const char *const *params,
				  char *out, size_t outlen);

struct pgl_pg_status {
	bool in_recovery;
	int64_t timeline;
	uint64_t receive_lsn;		/* primary: current WAL LSN; standby: received */
	uint64_t replay_lsn;
	bool streaming;				/* standby: walreceiver status is streaming */
	char sender_host[256];
	int sender_port;
};
int pgl_pg_status(PGconn *conn, struct pgl_pg_status *st);

/*
 * Starts argv[0] (an absolute path) with argv, without waiting: its own
 * process group, stdin /dev/null, stdout and stderr to ours, no other
 * descriptor, default signals, killed when the agent dies, the agent's
 * environment without POSTGRES_PASSWORD* and PGPASSWORD (the hooks').  Returns the
 * pid (the group's id too), or -1 when fork() failed.
 */
pid_t pgl_spawn_detached(char *const argv[]);

/*
 * The major version of cfg->pg_bindir's postgres (15, 17...), from
 * `postgres -V`, run once per bindir and remembered; 0 when it cannot be
 * told.  Its walreceiver (primary_conninfo), pg_basebackup and pg_rewind
 * use a libpq at least that new.
 */
int pgl_pg_server_major(const struct pgl_config *cfg);

#endif
