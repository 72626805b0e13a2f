/*
 * pgconf.c — pure text builders for PostgreSQL's files and conninfo strings
 * (see pgconf.h).  Nothing here touches a file, the network or the clock, so
 * every function is unit-tested directly (test/unit/test_pgconf.c).
 *
 * Three quoting rules meet here, and mixing them up was a bug (issue #8):
 *   postgresql.conf  '...', ' and \ doubled (what ALTER SYSTEM writes);
 *   libpq conninfo   '...', ' and \ preceded by a backslash;
 *   pgpass           no quotes, : and \ preceded by a backslash.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "pglease/common.h"
#include "pglease/pgconf.h"

/* Makes room for n more bytes plus a terminator; false (and failed) on OOM. */
static bool
buf_reserve(struct pgl_buf *b, size_t n)
{
	size_t want, cap;
	char *p;

	if (b->failed)
		return false;
	if (n > (size_t) -1 / 2 - b->len) {
		b->failed = true;
		return false;
	}
	want = b->len + n + 1;
	if (want <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap *= 2;
	p = realloc(b->data, cap);
	if (p == NULL) {
		b->failed = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void
pgl_buf_append(struct pgl_buf *b, const char *s, size_t n)
{
	if (!buf_reserve(b, n))
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
pgl_buf_puts(struct pgl_buf *b, const char *s)
{
	pgl_buf_append(b, s, strlen(s));
}

void
pgl_buf_printf(struct pgl_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if (!buf_reserve(b, (size_t) n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t) n;
}

int
pgl_buf_finish(struct pgl_buf *b, char **out)
{
	*out = NULL;
	if (!b->failed && b->data == NULL && buf_reserve(b, 0))
		b->data[0] = '\0';
	if (b->failed) {
		pgl_buf_free(b);
		return -PGL_ENOMEM;
	}
	*out = b->data;
	memset(b, 0, sizeof(*b));
	return 0;
}

void
pgl_buf_free(struct pgl_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void
pgl_conf_quote(struct pgl_buf *b, const char *value)
{
	pgl_buf_puts(b, "'");
	for (const char *s = value ? value : ""; *s; s++) {
		switch (*s) {
		case '\'': pgl_buf_puts(b, "''"); break;
		case '\\': pgl_buf_puts(b, "\\\\"); break;
		case '\n': pgl_buf_puts(b, "\\n"); break;
		case '\r': pgl_buf_puts(b, "\\r"); break;
		case '\t': pgl_buf_puts(b, "\\t"); break;
		default: pgl_buf_append(b, s, 1); break;
		}
	}
	pgl_buf_puts(b, "'");
}

void
pgl_conninfo_add(struct pgl_buf *b, const char *key, const char *value)
{
	if (value == NULL || *value == '\0')
		return;
	if (b->len)
		pgl_buf_puts(b, " ");
	pgl_buf_puts(b, key);
	pgl_buf_puts(b, "='");
	for (const char *s = value; *s; s++) {
		if (*s == '\'' || *s == '\\')
			pgl_buf_puts(b, "\\");
		pgl_buf_append(b, s, 1);
	}
	pgl_buf_puts(b, "'");
}

void
pgl_pgpass_escape(struct pgl_buf *b, const char *field)
{
	for (const char *s = field ? field : ""; *s; s++) {
		if (*s == ':' || *s == '\\')
			pgl_buf_puts(b, "\\");
		pgl_buf_append(b, s, 1);
	}
}

int
pgl_conninfo_remote(const struct pgl_remote *r, char **out)
{
	struct pgl_buf b = { 0 };
	char num[16];

	pgl_conninfo_add(&b, "host", r->host);
	snprintf(num, sizeof(num), "%d", r->port);
	pgl_conninfo_add(&b, "port", num);
	pgl_conninfo_add(&b, "user", r->user);
	pgl_conninfo_add(&b, "dbname", r->dbname);
	pgl_conninfo_add(&b, "passfile", r->passfile);
	pgl_conninfo_add(&b, "application_name", r->application_name);
	if (r->connect_timeout > 0) {
		snprintf(num, sizeof(num), "%d", r->connect_timeout);
		pgl_conninfo_add(&b, "connect_timeout", num);
	}
	if (r->cfg) {
		pgl_conninfo_add(&b, "sslmode", r->cfg->replication_sslmode);
		pgl_conninfo_add(&b, "sslrootcert", r->cfg->replication_sslrootcert);
		pgl_conninfo_add(&b, "channel_binding", r->cfg->replication_channel_binding);
	}
	/*
	 * libpq answers AuthenticationCleartextPassword (or MD5) with the
	 * password by default: any host that takes a node's address gets it.
	 * libpq 16 can refuse every method but SCRAM; older libpq rejects the
	 * keyword, so it is only written for a libpq known to be 16 or later.
	 */
	if (r->libpq_version >= PGL_LIBPQ_REQUIRE_AUTH)
		pgl_conninfo_add(&b, "require_auth", "scram-sha-256");
	return pgl_buf_finish(&b, out);
}

const char *
pgl_replication_auth_warning(const struct pgl_config *cfg, bool several_hosts,
							 int libpq_version)
{
	if (!several_hosts || libpq_version >= PGL_LIBPQ_REQUIRE_AUTH ||
		strcmp(cfg->replication_channel_binding, "require") == 0 ||
		strcmp(cfg->replication_sslmode, "verify-full") == 0)
		return NULL;
	return "replication connections would send the replication password to whoever answers "
		"at a node's address and asks for it in clear (libpq older than 16 cannot refuse; "
		"replication_channel_binding is not require, replication_sslmode is not verify-full):"
		" set replication_channel_binding = require (with pg.ssl = on) or "
		"replication_sslmode = verify-full with replication_sslrootcert";
}

int
pgl_pgpass_text(const char *user, const char *password, char **out)
{
	struct pgl_buf b = { 0 };

	pgl_buf_puts(&b, "*:*:*:");
	pgl_pgpass_escape(&b, user);
	pgl_buf_puts(&b, ":");
	pgl_pgpass_escape(&b, password);
	pgl_buf_puts(&b, "\n");
	return pgl_buf_finish(&b, out);
}

/* True if the line [s, s+n) sets the GUC named key (case-insensitive, as PostgreSQL). */
static bool
line_sets(const char *s, size_t n, const char *key)
{
	size_t i = 0, k = strlen(key);

	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (n - i < k || strncasecmp(s + i, key, k) != 0)
		return false;
	i += k;
	return i == n || s[i] == ' ' || s[i] == '\t' || s[i] == '=' || s[i] == '\r';
}

int
pgl_conf_auto_rewrite(const char *old, size_t oldlen, const char *conninfo, const char *slot,
					  char **out)
{
	struct pgl_buf b = { 0 };
	size_t pos = 0;

	while (old && pos < oldlen) {
		const char *s = old + pos, *nl = memchr(s, '\n', oldlen - pos);
		size_t n = nl ? (size_t) (nl - s) : oldlen - pos;

		if (!line_sets(s, n, "primary_conninfo") && !line_sets(s, n, "primary_slot_name")) {
			pgl_buf_append(&b, s, n);
			pgl_buf_puts(&b, "\n");
		}
		pos += n + (nl ? 1 : 0);
	}
	pgl_buf_puts(&b, "primary_conninfo = ");
	pgl_conf_quote(&b, conninfo);
	pgl_buf_puts(&b, "\nprimary_slot_name = ");
	pgl_conf_quote(&b, slot);
	pgl_buf_puts(&b, "\n");
	return pgl_buf_finish(&b, out);
}

/* One "name = 'value'" line. */
static void
conf_line(struct pgl_buf *b, const char *name, const char *value)
{
	pgl_buf_puts(b, name);
	pgl_buf_puts(b, " = ");
	pgl_conf_quote(b, value);
	pgl_buf_puts(b, "\n");
}

int
pgl_conf_node_text(const struct pgl_node_conf_in *in, char **out)
{
	const struct pgl_config *cfg = in->cfg;
	struct pgl_buf b = { 0 };
	bool preload_done = false;

	pgl_buf_printf(&b, "# Written by pglease before every start of %s; edits are lost.\n"
				   "port = %d\nlisten_addresses = '*'\n", cfg->node_name, cfg->pg_port);
	conf_line(&b, "unix_socket_directories", cfg->pg_socket_dir);
	/* Only the server's own OS user (and root) may even open the socket. */
	pgl_buf_puts(&b, "unix_socket_permissions = 0700\n");
	conf_line(&b, "hba_file", in->hba_file);
	conf_line(&b, "ident_file", in->ident_file);
	conf_line(&b, "cluster_name", cfg->node_name);
	for (int i = 0; i < cfg->n_pg; i++) {
		const char *name = cfg->pg[i].name, *v = cfg->pg[i].value;

		if (in->fence_on && strcmp(name, "shared_preload_libraries") == 0) {
			struct pgl_buf pre = { 0 };
			char *joined;

			pgl_buf_puts(&pre, "pglease_fence");
			if (*v) {
				pgl_buf_puts(&pre, ", ");
				pgl_buf_puts(&pre, v);
			}
			if (pgl_buf_finish(&pre, &joined) < 0) {
				pgl_buf_free(&b);
				return -PGL_ENOMEM;
			}
			conf_line(&b, name, joined);
			free(joined);
			preload_done = true;
		} else
			conf_line(&b, name, v);
	}
	if (in->fence_on && !preload_done)
		pgl_buf_puts(&b, "shared_preload_libraries = 'pglease_fence'\n");
	return pgl_buf_finish(&b, out);
}

/* True for an hba address field we can write unquoted: CIDR, host name or keyword. */
static bool
hba_address_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
			  *s == '.' || *s == ':' || *s == '/' || *s == '-' || *s == '_'))
			return false;
	return true;
}

/* True if s can be written as one "double-quoted" pg_hba/pg_ident token. */
static bool
hba_token_ok(const char *s)
{
	return s && *s && strpbrk(s, "\"\r\n") == NULL;
}

int
pgl_conf_hba_text(const struct pgl_config *cfg, char **out)
{
	struct pgl_buf b = { 0 };
	const char *net = cfg->allowed_network;

	*out = NULL;
	if (!hba_address_ok(net) || !hba_token_ok(cfg->replication_user))
		return -PGL_EINVAL;
	pgl_buf_printf(&b,
				   "# Written by pglease before every start; edits are lost.\n"
				   "# The Unix socket: peer authentication through the map in "
				   "pglease.ident.conf.\n"
				   "local all all peer map=" PGL_IDENT_MAP "\n"
				   "local replication all peer map=" PGL_IDENT_MAP "\n"
				   "# TCP: a password (SCRAM) always.\n"
				   "host replication \"%s\" %s scram-sha-256\n"
				   "host all all %s scram-sha-256\n"
				   "host all all 127.0.0.1/32 scram-sha-256\n"
				   "host all all ::1/128 scram-sha-256\n",
				   cfg->replication_user, net, net);
	return pgl_buf_finish(&b, out);
}

int
pgl_conf_ident_text(const char *agent_user, char **out)
{
	struct pgl_buf b = { 0 };

	pgl_buf_puts(&b, "# Written by pglease before every start; edits are lost.\n"
				 "# MAPNAME SYSTEM-USERNAME PG-USERNAME\n");
	if (hba_token_ok(agent_user) && agent_user[0] != '/' && strcmp(agent_user, "root") != 0)
		pgl_buf_printf(&b, PGL_IDENT_MAP " \"%s\" postgres\n", agent_user);
	pgl_buf_puts(&b, PGL_IDENT_MAP " root postgres\n"
				 "# Any other OS user connects as the role of the same name.\n"
				 PGL_IDENT_MAP " /^(.*)$ \\1\n");
	return pgl_buf_finish(&b, out);
}

bool
pgl_socket_dir_unsafe(mode_t mode, uid_t uid, gid_t gid, uid_t euid, gid_t egid, char *why,
					  size_t whylen)
{
	if (mode & S_IWOTH) {
		snprintf(why, whylen, "it is writable by every user (mode %04o)%s: any local user "
				 "could create the socket or its lock file there first and impersonate or "
				 "block the server", (unsigned) (mode & 07777),
				 (mode & S_ISVTX) ? ", even with the sticky bit" : "");
		return true;
	}
	if (uid != euid && uid != 0) {
		snprintf(why, whylen, "it belongs to uid %u, neither this user (uid %u) nor root",
				 (unsigned) uid, (unsigned) euid);
		return true;
	}
	if ((mode & S_IWGRP) && gid != egid) {
		snprintf(why, whylen, "it is writable by group %u (mode %04o), not this user's "
				 "group", (unsigned) gid, (unsigned) (mode & 07777));
		return true;
	}
	if (why && whylen)
		why[0] = '\0';
	return false;
}
