/*
 * test_pgconf.c — the pure text builders of pgconf.c: postgresql.conf
 * quoting (as ALTER SYSTEM writes it), libpq conninfo and pgpass escaping,
 * the postgresql.auto.conf rewrite with inputs larger than any fixed buffer,
 * pglease.node.conf with 64 long settings, the hba/ident files, and the
 * socket directory rule.  Run under ASan/UBSan by `make sanitize`.
 */
#include <string.h>
#include <sys/stat.h>

#include <libpq-fe.h>

#include "harness.h"
#include "pglease/common.h"
#include "pglease/daemon.h"
#include "pglease/pgconf.h"

/*
 * Reads a postgresql.conf quoted value back the way PostgreSQL's GUC lexer
 * does (guc-file.l DeQuoteString): '' is a quote, \x is x, \n \r \t \b \f
 * are control characters.  Returns a malloc'd string, or NULL if q is not
 * one complete quoted token.
 */
static char *
dequote(const char *q)
{
	size_t n = strlen(q), j = 0;
	char *out = malloc(n + 1);

	if (n < 2 || q[0] != '\'' || q[n - 1] != '\'') {
		free(out);
		return NULL;
	}
	for (size_t i = 1; i < n - 1; i++) {
		if (q[i] == '\\') {
			i++;
			switch (q[i]) {
			case 'n': out[j++] = '\n'; break;
			case 'r': out[j++] = '\r'; break;
			case 't': out[j++] = '\t'; break;
			default: out[j++] = q[i]; break;
			}
		} else if (q[i] == '\'') {
			if (q[i + 1] != '\'' || i + 1 == n - 1) {
				free(out);
				return NULL;		/* a lone quote would end the token early */
			}
			out[j++] = q[++i];
		} else if (q[i] == '\n') {
			free(out);
			return NULL;
		} else
			out[j++] = q[i];
	}
	out[j] = '\0';
	return out;
}

static char *
quoted(const char *v)
{
	struct pgl_buf b = { 0 };
	char *out;

	pgl_conf_quote(&b, v);
	return pgl_buf_finish(&b, &out) == 0 ? out : NULL;
}

static void
test_conf_quote(void)
{
	static const char *const values[] = {
		"", "plain", "it's", "back\\slash", "'", "\\", "\\'", "''\\\\", "a b #c",
		"pw'with\\all #of them", "line\nbreak", "tab\there", "end\\",
	};

	for (size_t i = 0; i < PGL_ARRAY_LEN(values); i++) {
		char *q = quoted(values[i]), *back = q ? dequote(q) : NULL;

		CHECKF(back && strcmp(back, values[i]) == 0, "value %zu: %s -> %s", i, q ? q : "(null)",
			   back ? back : "(malformed)");
		CHECKF(q && strchr(q, '\n') == NULL, "value %zu has a raw newline", i);
		free(q);
		free(back);
	}
	/* What ALTER SYSTEM writes for the same values. */
	{
		char *q = quoted("a'b\\c");

		CHECK(q && strcmp(q, "'a''b\\\\c'") == 0);
		free(q);
	}
}

static void
test_buf_grows(void)
{
	struct pgl_buf b = { 0 };
	char *out;

	for (int i = 0; i < 100000; i++)
		pgl_buf_printf(&b, "%d,", i % 10);
	CHECK(b.len == 200000);
	CHECK(pgl_buf_finish(&b, &out) == 0 && strlen(out) == 200000);
	free(out);
	CHECK(pgl_buf_finish(&b, &out) == 0 && out && out[0] == '\0');
	free(out);
}

/* The value of keyword in conninfo, parsed by libpq itself (NULL if absent). */
static char *
ci_value(const char *ci, const char *keyword)
{
	PQconninfoOption *o = PQconninfoParse(ci, NULL), *p;
	char *v = NULL;

	for (p = o; o && p->keyword; p++)
		if (strcmp(p->keyword, keyword) == 0 && p->val)
			v = strdup(p->val);
	PQconninfoFree(o);
	return v;
}

static void
test_conninfo_remote(void)
{
	struct pgl_config cfg;
	struct pgl_remote r = {
		.host = "pg1", .port = 5432, .user = "rep'l\\ user", .dbname = "postgres",
		.passfile = "/var/lib/x y/pg'data.pgpass", .application_name = "pg2",
		.connect_timeout = 2, .cfg = &cfg,
	};
	char *ci = NULL, *v;

	memset(&cfg, 0, sizeof(cfg));
	strcpy(cfg.replication_sslmode, "verify-full");
	strcpy(cfg.replication_sslrootcert, "/etc/ssl/ca.crt");
	strcpy(cfg.replication_channel_binding, "require");
	CHECK(pgl_conninfo_remote(&r, &ci) == 0 && ci);
	CHECK((v = ci_value(ci, "sslmode")) && strcmp(v, "verify-full") == 0);
	free(v);
	CHECK((v = ci_value(ci, "sslrootcert")) && strcmp(v, "/etc/ssl/ca.crt") == 0);
	free(v);
	CHECK((v = ci_value(ci, "channel_binding")) && strcmp(v, "require") == 0);
	free(v);
	CHECK((v = ci_value(ci, "user")) && strcmp(v, "rep'l\\ user") == 0);
	free(v);
	CHECK((v = ci_value(ci, "passfile")) && strcmp(v, "/var/lib/x y/pg'data.pgpass") == 0);
	free(v);
	CHECK((v = ci_value(ci, "port")) && strcmp(v, "5432") == 0);
	free(v);
	CHECK((v = ci_value(ci, "application_name")) && strcmp(v, "pg2") == 0);
	free(v);
	CHECK(ci_value(ci, "password") == NULL);
	free(ci);

	/* Defaults of config.c: prefer / prefer, no root certificate. */
	strcpy(cfg.replication_sslmode, "prefer");
	cfg.replication_sslrootcert[0] = '\0';
	strcpy(cfg.replication_channel_binding, "prefer");
	r.passfile = NULL;
	CHECK(pgl_conninfo_remote(&r, &ci) == 0);
	CHECK((v = ci_value(ci, "sslmode")) && strcmp(v, "prefer") == 0);
	free(v);
	CHECK((v = ci_value(ci, "channel_binding")) && strcmp(v, "prefer") == 0);
	free(v);
	CHECK(ci_value(ci, "sslrootcert") == NULL && ci_value(ci, "passfile") == NULL);
	free(ci);
}

/*
 * require_auth=scram-sha-256 exactly when the libpq that reads the conninfo
 * is 16 or later (the version injected; libpq 15, the host's, rejects the
 * keyword: PQconninfoParse() then fails, so it must never get it).
 */
static void
test_conninfo_require_auth(void)
{
	struct pgl_config cfg;
	struct pgl_remote r = { .host = "pg1", .port = 5432, .user = "pglease", .cfg = &cfg };
	static const struct { int version; bool want; } cases[] = {
		{ 0, false }, { 150010, false }, { 159999, false }, { 160000, true },
		{ 170002, true }, { 180000, true },
	};
	char *ci = NULL;

	memset(&cfg, 0, sizeof(cfg));
	strcpy(cfg.replication_sslmode, "prefer");
	strcpy(cfg.replication_channel_binding, "prefer");
	for (size_t i = 0; i < PGL_ARRAY_LEN(cases); i++) {
		r.libpq_version = cases[i].version;
		CHECK(pgl_conninfo_remote(&r, &ci) == 0 && ci);
		CHECKF((strstr(ci, " require_auth='scram-sha-256'") != NULL) == cases[i].want,
			   "libpq %d: %s", cases[i].version, ci);
		if (!cases[i].want || PQlibVersion() >= PGL_LIBPQ_REQUIRE_AUTH) {
			char *v = ci_value(ci, "host");

			CHECKF(v && strcmp(v, "pg1") == 0, "this libpq (%d) parses %s", PQlibVersion(), ci);
			free(v);
		}
		free(ci);
		ci = NULL;
	}
}

/* The start-up warning: etcd, a libpq older than 16, neither channel binding nor verify-full. */
static void
test_replication_auth_warning(void)
{
	struct pgl_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	strcpy(cfg.replication_sslmode, "prefer");
	strcpy(cfg.replication_channel_binding, "prefer");
	CHECK(pgl_replication_auth_warning(&cfg, true, 150010) != NULL);
	CHECK(strstr(pgl_replication_auth_warning(&cfg, true, 150010),
				 "replication_channel_binding = require"));
	CHECK(pgl_replication_auth_warning(&cfg, false, 150010) == NULL);	/* one host */
	CHECK(pgl_replication_auth_warning(&cfg, true, 170002) == NULL);	/* require_auth */
	strcpy(cfg.replication_sslmode, "verify-ca");
	CHECK(pgl_replication_auth_warning(&cfg, true, 150010) != NULL);
	strcpy(cfg.replication_sslmode, "verify-full");
	CHECK(pgl_replication_auth_warning(&cfg, true, 150010) == NULL);
	strcpy(cfg.replication_sslmode, "require");
	strcpy(cfg.replication_channel_binding, "require");
	CHECK(pgl_replication_auth_warning(&cfg, true, 150010) == NULL);
}

static void
test_pgpass(void)
{
	char *t = NULL;

	CHECK(pgl_pgpass_text("pglease", "a:b\\c' #d", &t) == 0);
	CHECK(t && strcmp(t, "*:*:*:pglease:a\\:b\\\\c' #d\n") == 0);
	free(t);
}

/* Number of lines of text that begin with prefix. */
static int
count_lines(const char *text, const char *prefix)
{
	int n = 0;
	size_t k = strlen(prefix);

	for (const char *p = text; p && *p; ) {
		const char *nl = strchr(p, '\n');

		if (strncmp(p, prefix, k) == 0)
			n++;
		p = nl ? nl + 1 : NULL;
	}
	return n;
}

static void
test_auto_rewrite_big(void)
{
	struct pgl_buf b = { 0 };
	char *old, *out = NULL, *v;
	size_t oldlen;

	/* 100 KiB of settings, a line longer than 8 KiB whose 4097th byte starts
	 * "primary_conninfo", old upstream lines, and no final newline. */
	pgl_buf_puts(&b, "# Do not edit this file manually!\n");
	pgl_buf_puts(&b, "primary_conninfo = 'host=old port=1'\n");
	pgl_buf_puts(&b, "  PRIMARY_SLOT_NAME='old'\n");
	pgl_buf_puts(&b, "pg.long = '");
	for (int i = 0; i < 4096 - 11; i++)
		pgl_buf_puts(&b, "x");
	pgl_buf_puts(&b, "primary_conninfo = 'host=evil'");
	for (int i = 0; i < 5000; i++)
		pgl_buf_puts(&b, "y");
	pgl_buf_puts(&b, "'\n");
	pgl_buf_puts(&b, "primary_conninfo_extra = 'kept'\n");
	for (int i = 0; b.len < 100 * 1024; i++)
		pgl_buf_printf(&b, "custom.setting_%d = 'value %d'\n", i, i);
	pgl_buf_puts(&b, "work_mem = '4MB'");
	oldlen = b.len;
	CHECK(pgl_buf_finish(&b, &old) == 0);

	CHECK(pgl_conf_auto_rewrite(old, oldlen, "host=pg1 port=5432 passfile='/x'", "pg2",
								&out) == 0 && out);
	CHECK(count_lines(out, "primary_conninfo = ") == 1);
	CHECK(count_lines(out, "primary_slot_name = ") == 1);
	CHECK(count_lines(out, "  PRIMARY_SLOT_NAME") == 0);
	CHECK(count_lines(out, "pg.long = 'xxx") == 1);
	CHECK(strstr(out, "primary_conninfo = 'host=evil'yyy") != NULL);
	CHECK(count_lines(out, "primary_conninfo_extra = 'kept'") == 1);
	CHECK(count_lines(out, "work_mem = '4MB'") == 1);
	CHECK(strstr(out, "host=old") == NULL);
	CHECK(strstr(out, "custom.setting_1000 = 'value 1000'\n") != NULL);
	CHECK(strlen(out) > oldlen - 100);
	v = strstr(out, "\nprimary_conninfo = ");
	CHECK(v && strcmp(v, "\nprimary_conninfo = 'host=pg1 port=5432 passfile=''/x'''\n"
					   "primary_slot_name = 'pg2'\n") == 0);
	free(out);
	free(old);

	/* No old file; no upstream. */
	CHECK(pgl_conf_auto_rewrite(NULL, 0, "", "", &out) == 0);
	CHECK(out && strcmp(out, "primary_conninfo = ''\nprimary_slot_name = ''\n") == 0);
	free(out);
}

static void
fill_config(struct pgl_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->node_name, "pg1");
	cfg->pg_port = 5432;
	strcpy(cfg->pg_socket_dir, "/var/run/postgresql");
	strcpy(cfg->allowed_network, "samenet");
	strcpy(cfg->replication_user, "pglease");
}

static void
test_node_conf_64_long(void)
{
	struct pgl_config *cfg = malloc(sizeof(*cfg));
	struct pgl_node_conf_in in = { .cfg = cfg, .fence_on = true,
		.hba_file = "/data/pg'1/pglease.hba.conf", .ident_file = "/data/pglease.ident.conf" };
	char *text = NULL;

	fill_config(cfg);
	cfg->n_pg = PGL_MAX_PG_SETTINGS;
	for (int i = 0; i < cfg->n_pg; i++) {
		/* 63-byte names, 255-byte values of quotes and backslashes: ~36 KiB quoted. */
		snprintf(cfg->pg[i].name, sizeof(cfg->pg[i].name), "custom.s%02u_%052u", (unsigned) i % 100, 0u);
		for (int j = 0; j < 255; j++)
			cfg->pg[i].value[j] = (j % 2) ? '\'' : '\\';
		cfg->pg[i].value[255] = '\0';
	}
	strcpy(cfg->pg[7].name, "shared_preload_libraries");
	strcpy(cfg->pg[7].value, "pg_stat_statements");
	CHECK(pgl_conf_node_text(&in, &text) == 0 && text);
	CHECK(strlen(text) > 32768);
	CHECK(count_lines(text, "custom.s") == PGL_MAX_PG_SETTINGS - 1);
	CHECK(count_lines(text, "unix_socket_permissions = 0700") == 1);
	CHECK(count_lines(text, "unix_socket_directories = '/var/run/postgresql'") == 1);
	CHECK(count_lines(text, "hba_file = '/data/pg''1/pglease.hba.conf'") == 1);
	CHECK(count_lines(text, "ident_file = '/data/pglease.ident.conf'") == 1);
	CHECK(count_lines(text, "shared_preload_libraries = 'pglease_fence, pg_stat_statements'")
		  == 1);
	/* Every setting's value reads back exactly. */
	for (const char *p = strstr(text, "custom.s"); p; p = strstr(p + 1, "\ncustom.s")) {
		const char *eq = strstr(p, " = "), *nl = strchr(eq, '\n');
		char *q = strndup(eq + 3, nl - eq - 3), *back = dequote(q);

		CHECKF(back && strcmp(back, cfg->pg[0].value) == 0, "setting at %.20s", p);
		free(q);
		free(back);
	}
	free(text);

	in.fence_on = false;
	cfg->n_pg = 0;
	CHECK(pgl_conf_node_text(&in, &text) == 0);
	CHECK(strstr(text, "pglease_fence") == NULL);
	free(text);
	cfg->n_pg = 0;
	in.fence_on = true;
	CHECK(pgl_conf_node_text(&in, &text) == 0);
	CHECK(count_lines(text, "shared_preload_libraries = 'pglease_fence'") == 1);
	free(text);
	free(cfg);
}

static void
test_hba_ident(void)
{
	struct pgl_config cfg;
	char *t = NULL;

	fill_config(&cfg);
	strcpy(cfg.allowed_network, "10.0.0.0/8");
	CHECK(pgl_conf_hba_text(&cfg, &t) == 0 && t);
	CHECK(strstr(t, "trust") == NULL);
	CHECK(count_lines(t, "local all all peer map=pglease") == 1);
	CHECK(count_lines(t, "host replication \"pglease\" 10.0.0.0/8 scram-sha-256") == 1);
	CHECK(count_lines(t, "host all all 10.0.0.0/8 scram-sha-256") == 1);
	CHECK(count_lines(t, "host all all 127.0.0.1/32 scram-sha-256") == 1);
	CHECK(count_lines(t, "host all all ::1/128 scram-sha-256") == 1);
	free(t);
	strcpy(cfg.allowed_network, "10.0.0.0/8 trust\nlocal all all");
	CHECK(pgl_conf_hba_text(&cfg, &t) == -PGL_EINVAL && t == NULL);

	CHECK(pgl_conf_ident_text("alice", &t) == 0);
	CHECK(count_lines(t, "pglease \"alice\" postgres") == 1);
	CHECK(count_lines(t, "pglease root postgres") == 1);
	CHECK(count_lines(t, "pglease /^(.*)$ \\1") == 1);
	free(t);
	CHECK(pgl_conf_ident_text("bad\"user\n", &t) == 0);
	CHECK(strstr(t, "bad") == NULL);
	free(t);
}

static void
test_socket_dir_rule(void)
{
	char why[256];

	CHECK(!pgl_socket_dir_unsafe(S_IFDIR | 0700, 100, 100, 100, 100, why, sizeof(why)));
	CHECK(!pgl_socket_dir_unsafe(S_IFDIR | 02775, 100, 100, 100, 100, why, sizeof(why)));
	CHECK(!pgl_socket_dir_unsafe(S_IFDIR | 0755, 0, 0, 100, 100, why, sizeof(why)));
	CHECK(pgl_socket_dir_unsafe(S_IFDIR | 01777, 0, 0, 100, 100, why, sizeof(why)));
	CHECK(strstr(why, "every user") && strstr(why, "sticky"));
	CHECK(pgl_socket_dir_unsafe(S_IFDIR | 0777, 100, 100, 100, 100, why, sizeof(why)));
	CHECK(pgl_socket_dir_unsafe(S_IFDIR | 0770, 100, 50, 100, 100, why, sizeof(why)));
	CHECK(pgl_socket_dir_unsafe(S_IFDIR | 0700, 200, 100, 100, 100, why, sizeof(why)));
}

/*
 * Node rows from the store: a host name or address and a port are required;
 * any other keyword is ignored, never carried over (server.c).
 */
static void
test_node_addr(void)
{
	static const char *const bad[] = {
		"host=/tmp port=5432", "host=pg1", "host='pg1 x' port=5432", "port=5432",
		"host=pg1 port=0", "host=\"pg1\" port=5432", "host=pg1,pg2 port=5432", "",
	};
	static const char *const extra[] = {
		"host=pg1 port=5432 password=x", "host=pg1 port=5432 sslmode=disable",
		"host=pg1 port=5432 dbname=x",
	};
	struct pgl_node n;
	char host[256];
	int port;

	memset(&n, 0, sizeof(n));
	strcpy(n.name, "pg1");
	strcpy(n.conninfo, "host=10.0.0.1 port=5433");
	CHECK(pgl_node_addr(&n, host, sizeof(host), &port));
	CHECK(strcmp(host, "10.0.0.1") == 0 && port == 5433);
	strcpy(n.conninfo, "host='pg-1.example' port='5432'");
	CHECK(pgl_node_addr(&n, host, sizeof(host), &port) && strcmp(host, "pg-1.example") == 0);
	for (size_t i = 0; i < PGL_ARRAY_LEN(bad); i++) {
		strcpy(n.conninfo, bad[i]);
		CHECKF(!pgl_node_addr(&n, host, sizeof(host), &port), "accepted %s", bad[i]);
	}
	for (size_t i = 0; i < PGL_ARRAY_LEN(extra); i++) {
		strcpy(n.conninfo, extra[i]);
		CHECKF(pgl_node_addr(&n, host, sizeof(host), &port) && strcmp(host, "pg1") == 0 &&
			   port == 5432, "%s", extra[i]);
	}
}

int
main(void)
{
	TEST(test_conf_quote);
	TEST(test_buf_grows);
	TEST(test_conninfo_remote);
	TEST(test_conninfo_require_auth);
	TEST(test_replication_auth_warning);
	TEST(test_pgpass);
	TEST(test_auto_rewrite_big);
	TEST(test_node_conf_64_long);
	TEST(test_hba_ident);
	TEST(test_socket_dir_rule);
	TEST(test_node_addr);
	return TEST_REPORT();
}
