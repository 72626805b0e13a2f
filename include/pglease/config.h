/*
 * config.h — the agent's configuration: a key = value file, then PGLEASE_<KEY>
 * environment variables, over built-in defaults (DESIGN.md section 5).
 *
 * Every key lives in one table in config.c with its type, default and range.
 * Errors name file:line and the key; all errors are collected before failing.
 */
#ifndef PGLEASE_CONFIG_H
#define PGLEASE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "pglease/common.h"

#define PGL_PATH_MAX 1024
#define PGL_MAX_PG_SETTINGS 64

struct pgl_pg_setting {
	char name[64];
	char value[256];
};

struct pgl_config {
	char node_name[PGL_NAME_MAX];
	char lease_db[PGL_PATH_MAX];
	char pgdata[PGL_PATH_MAX];
	char pg_bindir[PGL_PATH_MAX];
	int pg_port;
	char advertise_host[256];
	char replication_user[PGL_NAME_MAX];
	char password_file[PGL_PATH_MAX];
	int priority;
	int lease_ttl_ms;
	int renew_interval_ms;
	int fence_margin_ms;
	int election_grace_ms;
	int follow_timeout_ms;
	char log_level[16];
	char allowed_network[128];
	char pg_socket_dir[PGL_PATH_MAX];
	char in_server_fence[8];		/* auto, on, off */
	char replication_sslmode[16];	/* libpq sslmode for connections to other nodes */
	char replication_sslrootcert[PGL_PATH_MAX];
	char replication_channel_binding[16];
	char http_listen[80];			/* "" (off) or [ADDRESS]:PORT */
	int max_lag_on_failover;		/* bytes; 0: no bound */
	char on_role_change[PGL_PATH_MAX];	/* program run on role changes; "" none */
	int hook_timeout_ms;
	char bootstrap_program[PGL_PATH_MAX];	/* run once by the node that bootstraps; "" none */
	int n_pg;
	struct pgl_pg_setting pg[PGL_MAX_PG_SETTINGS];
};

/*
 * Loads defaults, then `path` (may be NULL: no file; it must be a regular
 * file), then the environment (`envp` NULL means the process environment).
 * On failure returns -PGL_ECONFIG and writes every problem, one per line,
 * escaped for a terminal, into err: "FILE:LINE: ..." or "environment
 * PGLEASE_X: ...".  A PGLEASE_* variable that is not a key and not one of
 * the project's own variables (config.c env_not_keys) is an error.
 * Fills node_name from the host name and pg_bindir from envp's PATH or
 * /usr/lib/postgresql/NN/bin when they are unset.
 */
int pgl_config_load(struct pgl_config *cfg, const char *path, char *const *envp,
					char *err, size_t errlen);

/*
 * Only the lease_db setting, for CLI commands: file, then env, then default.
 * Returns 0, -PGL_ECONFIG or -PGL_ENOMEM, with one line per error in err.
 */
int pgl_config_lease_db(const char *path, char *out, size_t len, char *err, size_t errlen);

/*
 * The directory of the node's alive lock (proof of death): "alive" beside a
 * lease store file, shared by every node of the volume; for a store on a
 * server (etcd://...) "pglease-alive" beside pgdata, this host's own (the
 * lock then only keeps two agents of one node name apart on one host).
 */
void pgl_config_alive_dir(const struct pgl_config *cfg, char *out, size_t len);

/* Prints the keys, their defaults and descriptions (for --help and docs). */
void pgl_config_print_keys(FILE *f);

/* Slot name for a node: the name with '-' turned into '_'. */
void pgl_config_slot_name(const char *node, char *out, size_t len);

#endif
