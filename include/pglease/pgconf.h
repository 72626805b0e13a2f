/*
 * pgconf.h — pure text builders for the files and strings the agent hands to
 * PostgreSQL: values quoted for postgresql.conf, libpq conninfo strings,
 * pgpass lines, pglease.node.conf, pglease.hba.conf, pglease.ident.conf and
 * the rewrite of postgresql.auto.conf.  No I/O, no fixed-size buffers: every
 * text grows as needed, so no input length can overrun anything.
 *
 * Every function that returns text returns it through an out-parameter as a
 * malloc'd string the caller frees with free(); the return value is 0, or
 * -PGL_ENOMEM when memory ran out (nothing is returned then).
 */
#ifndef PGLEASE_PGCONF_H
#define PGLEASE_PGCONF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "pglease/config.h"

/* A growing text buffer.  Zero-initialise it; failed stays set after OOM. */
struct pgl_buf {
	char *data;
	size_t len;
	size_t cap;
	bool failed;
};

void pgl_buf_append(struct pgl_buf *b, const char *s, size_t n);
void pgl_buf_puts(struct pgl_buf *b, const char *s);
void pgl_buf_printf(struct pgl_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/*
 * Hands the text to *out (never NULL on success, "" for an empty buffer) and
 * resets b.  Returns -PGL_ENOMEM (and frees the text) if any append failed.
 */
int pgl_buf_finish(struct pgl_buf *b, char **out);
/* Frees the buffer's text; the buffer may be reused. */
void pgl_buf_free(struct pgl_buf *b);

/*
 * Appends value quoted for postgresql.conf as ALTER SYSTEM writes it:
 * '...' with every ' and \ doubled (the GUC lexer reads \\ as \ and '' as ').
 * Newline, carriage return and tab become \n, \r, \t, which the lexer turns
 * back into those characters; so no value can end its line early.
 */
void pgl_conf_quote(struct pgl_buf *b, const char *value);

/*
 * Appends key='value' for a libpq conninfo string (a space first when b is
 * not empty), with ' and \ escaped by a backslash.  NULL or "" appends nothing.
 */
void pgl_conninfo_add(struct pgl_buf *b, const char *key, const char *value);

/* Appends one pgpass field, with ':' and '\' escaped by a backslash. */
void pgl_pgpass_escape(struct pgl_buf *b, const char *field);

/* A connection to another node of the cluster. */
struct pgl_remote {
	const char *host;
	int port;
	const char *user;				/* NULL: none */
	const char *dbname;				/* NULL: none */
	const char *passfile;			/* NULL: none (the password is given otherwise) */
	const char *application_name;	/* NULL: none */
	int connect_timeout;			/* seconds; 0: none */
	const struct pgl_config *cfg;	/* replication_ssl* and channel_binding; may be NULL */
	int libpq_version;				/* of the libpq that will read it (PQlibVersion() form,
									 * 150010, 170002); 0: unknown */
};

/* The first libpq with require_auth (PQlibVersion() form). */
#define PGL_LIBPQ_REQUIRE_AUTH 160000

/*
 * conninfo of a connection to another node: host, port, user, dbname,
 * passfile, application_name, connect_timeout, then sslmode, sslrootcert and
 * channel_binding from the replication_* keys of cfg, and, when the libpq
 * that reads it knows it (libpq_version >= PGL_LIBPQ_REQUIRE_AUTH),
 * require_auth=scram-sha-256: the password (or an MD5 of it) is then never
 * sent to a server that asks for it in clear, whatever sslmode and
 * channel_binding say.  Never a password.
 */
int pgl_conninfo_remote(const struct pgl_remote *r, char **out);

/*
 * The warning the agent logs once at start when a host that takes over a
 * node's address could be handed the replication password: the store spans
 * hosts (etcd), some libpq that uses the conninfo is older than 16 (so no
 * require_auth: it answers a cleartext or MD5 password request), and
 * neither replication_channel_binding = require nor replication_sslmode =
 * verify-full stops that.  NULL when none is due.  Static text.
 */
const char *pgl_replication_auth_warning(const struct pgl_config *cfg, bool several_hosts,
										 int libpq_version);

/* "*:*:*:user:password\n", both fields escaped for pgpass. */
int pgl_pgpass_text(const char *user, const char *password, char **out);

/*
 * postgresql.auto.conf rewritten for a new upstream: every line whose key is
 * primary_conninfo or primary_slot_name is dropped (whole lines, of any
 * length; a key is the first word of the line, so text inside another
 * setting's value never counts), every other line is kept byte for byte (a
 * last line without newline gets one), then primary_conninfo = conninfo and
 * primary_slot_name = slot are appended, quoted.  old may be NULL.
 */
int pgl_conf_auto_rewrite(const char *old, size_t oldlen, const char *conninfo,
						  const char *slot, char **out);

/* What pglease.node.conf needs besides the configuration. */
struct pgl_node_conf_in {
	const struct pgl_config *cfg;
	bool fence_on;				/* preload pglease_fence */
	const char *hba_file;		/* absolute path of pglease.hba.conf */
	const char *ident_file;		/* absolute path of pglease.ident.conf */
};

/*
 * pglease.node.conf: port, listen_addresses, unix_socket_directories,
 * unix_socket_permissions = 0700, hba_file, ident_file, cluster_name, then
 * every pg.* setting (shared_preload_libraries gets pglease_fence first when
 * fence_on), every value quoted with pgl_conf_quote().
 */
int pgl_conf_node_text(const struct pgl_node_conf_in *in, char **out);

/* The ident map used by the local lines of pglease.hba.conf. */
#define PGL_IDENT_MAP "pglease"

/*
 * pglease.hba.conf: peer authentication (map pglease) on the Unix socket,
 * scram-sha-256 for the replication user from allowed_network and for
 * everybody from allowed_network, 127.0.0.1/32 and ::1/128.  Nothing else.
 */
int pgl_conf_hba_text(const struct pgl_config *cfg, char **out);

/*
 * pglease.ident.conf: the agent's OS user and root connect as role postgres;
 * any OS user as the role of the same name.  agent_user may be NULL.
 */
int pgl_conf_ident_text(const char *agent_user, char **out);

/*
 * Why a Unix socket directory with this mode and owner is unsafe for a
 * server run by (euid, egid), in why; or false when it is safe: owned by
 * euid or root, not writable by other users, writable by its group only when
 * that group is egid.  A world-writable directory is refused even with the
 * sticky bit (/tmp): any local user could create the socket or its lock file
 * there first and impersonate or block the server.
 */
bool pgl_socket_dir_unsafe(mode_t mode, uid_t uid, gid_t gid, uid_t euid, gid_t egid,
						   char *why, size_t whylen);

#endif
