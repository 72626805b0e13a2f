/*
 * test_config.c — configuration: defaults, the file format, environment
 * precedence, and every class of error (DESIGN.md section 5, STYLE.md
 * Config).  Every load passes an explicit envp so the process environment
 * cannot interfere, and sets pg_bindir so no PostgreSQL install is needed.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "pglease/config.h"
#include "pglease/log.h"

static struct pgl_config cfg;
static char err[8192];

/* Writes text to a file in the scratch directory; returns its path (static). */
static const char *
write_conf(const char *name, const char *text)
{
	static char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", test_dir(), name);
	f = fopen(path, "w");
	if (f == NULL) {
		perror(path);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
	return path;
}

static char *const base_env[] = { "PGLEASE_PG_BINDIR=/opt/pg/bin", "PGLEASE_NODE_NAME=n1", NULL };

static int
load(const char *path, char *const *envp)
{
	return pgl_config_load(&cfg, path, envp ? envp : base_env, err, sizeof(err));
}

static const char *
pg_value(const char *name)
{
	for (int i = 0; i < cfg.n_pg; i++)
		if (strcmp(cfg.pg[i].name, name) == 0)
			return cfg.pg[i].value;
	return NULL;
}

static void
test_defaults(void)
{
	int rc = load(NULL, NULL);

	CHECKF(rc == 0, "rc %d: %s", rc, err);
	CHECK(strcmp(cfg.node_name, "n1") == 0);
	CHECK(strcmp(cfg.pg_bindir, "/opt/pg/bin") == 0);
	CHECK(strcmp(cfg.lease_db, "/var/lib/pglease/lease.db") == 0);
	CHECK(strcmp(cfg.pgdata, "/var/lib/postgresql/data/pgdata") == 0);
	CHECK(cfg.pg_port == 5432);
	CHECK(strcmp(cfg.replication_user, "pglease") == 0);
	CHECK(cfg.priority == 100);
	CHECK(cfg.lease_ttl_ms == 5000);
	CHECK(cfg.renew_interval_ms == 1000);
	CHECK(cfg.fence_margin_ms == 1000);
	CHECK(cfg.election_grace_ms == 1000);
	CHECK(strcmp(cfg.log_level, "info") == 0);
	CHECK(strcmp(cfg.in_server_fence, "auto") == 0);
	CHECK(cfg.n_pg == 0);
	CHECK(cfg.advertise_host[0] != '\0');	/* the host name */
	CHECK(err[0] == '\0');
}

static void
test_file_parsing(void)
{
	const char *p = write_conf("good.conf",
		"# a comment line\n"
		"\n"
		"   node_name = pg-2   # trailing comment\n"
		"lease_db='/data/lease store/lease.db'\n"
		"pgdata = '/pg/data' # quoted, then a comment\n"
		"pg_bindir = /usr/lib/postgresql/15/bin\n"
		"pg_port=5433\n"
		"\tpriority\t=\t7\t\n"
		"lease_ttl_ms = 8000\n"
		"renew_interval_ms = 2000\n"
		"fence_margin_ms = 2000\n"
		"log_level = debug\n"
		"password_file = '#not-a-comment'\n"
		"pg.shared_buffers = 128MB\n"
		"pg.synchronous_standby_names = 'ANY 1 (*)'\n"
		"pg.max_wal_senders = 12\n"
		"pg.archive_command = 'test ! -f /a/%f && cp %p /a/%f' # = and # inside quotes\r\n");
	char *const env[] = { NULL };
	int rc = load(p, env);

	CHECKF(rc == 0, "rc %d: %s", rc, err);
	CHECK(strcmp(cfg.node_name, "pg-2") == 0);
	CHECK(strcmp(cfg.lease_db, "/data/lease store/lease.db") == 0);
	CHECK(strcmp(cfg.pgdata, "/pg/data") == 0);
	CHECK(strcmp(cfg.pg_bindir, "/usr/lib/postgresql/15/bin") == 0);
	CHECK(cfg.pg_port == 5433);
	CHECK(cfg.priority == 7);
	CHECK(cfg.lease_ttl_ms == 8000 && cfg.renew_interval_ms == 2000 &&
		  cfg.fence_margin_ms == 2000);
	CHECK(strcmp(cfg.log_level, "debug") == 0);
	CHECK(pgl_log_level == PGL_LOG_DEBUG);
	CHECK(strcmp(cfg.password_file, "#not-a-comment") == 0);
	CHECKF(cfg.n_pg == 4, "n_pg %d", cfg.n_pg);
	CHECK(pg_value("archive_command") &&
		  strcmp(pg_value("archive_command"), "test ! -f /a/%f && cp %p /a/%f") == 0);
	CHECK(pg_value("shared_buffers") && strcmp(pg_value("shared_buffers"), "128MB") == 0);
	CHECK(pg_value("synchronous_standby_names") &&
		  strcmp(pg_value("synchronous_standby_names"), "ANY 1 (*)") == 0);
	CHECK(pg_value("max_wal_senders") && strcmp(pg_value("max_wal_senders"), "12") == 0);
	pgl_log_level = PGL_LOG_INFO;
}

static void
test_env_overrides_file(void)
{
	const char *p = write_conf("env.conf",
		"node_name = from-file\npg_port = 5433\nlog_level = warn\npg_bindir = /file/bin\n");
	char *const env[] = {
		"PGLEASE_PG_PORT=6000", "PGLEASE_NODE_NAME=from-env", "PGLEASE_LEASE_DB=/env/lease.db",
		/* variables of the project's scripts that are not keys (the allow-list) */
		"PGLEASE_BIN=/not/a/config/key", "PGLEASE_MKSTORE=/x", "PGLEASE_IT_TIMEOUT=9",
		"PGLEASE_DOCKER_TTL_MS=1", "PGLEASE_CLUSTER_DIR=/c", "PGLEASE_BASE_PORT=1",
		"PGLEASE_LEASE_DIR=/l", "PGLEASE_PASSWORD_FILE_IN_CONTAINER=/p",
		"PGLEASE_LOG_LEVEL", "PATH=/nowhere", "pg_port=1", NULL
	};
	int rc = load(p, env);

	CHECKF(rc == 0, "rc %d: %s", rc, err);
	CHECK(cfg.pg_port == 6000);
	CHECK(strcmp(cfg.node_name, "from-env") == 0);
	CHECK(strcmp(cfg.lease_db, "/env/lease.db") == 0);
	CHECK(strcmp(cfg.log_level, "warn") == 0);		/* file value kept */
	CHECK(strcmp(cfg.pg_bindir, "/file/bin") == 0);
	pgl_log_level = PGL_LOG_INFO;

	/* The environment alone is enough: a container needs no file. */
	{
		char *const env2[] = { "PGLEASE_NODE_NAME=c1", "PGLEASE_PG_BINDIR=/b",
							   "PGLEASE_LEASE_TTL_MS=3000", "PGLEASE_RENEW_INTERVAL_MS=500",
							   "PGLEASE_FENCE_MARGIN_MS=500", NULL };

		rc = load(NULL, env2);
		CHECKF(rc == 0, "rc %d: %s", rc, err);
		CHECK(cfg.lease_ttl_ms == 3000 && cfg.renew_interval_ms == 500);
	}
	/* A bad environment value is an error naming the variable. */
	{
		char *const env3[] = { "PGLEASE_NODE_NAME=c1", "PGLEASE_PG_BINDIR=/b",
							   "PGLEASE_PG_PORT=http", NULL };

		rc = load(NULL, env3);
		CHECK(rc == -PGL_ECONFIG);
		CHECKF(strstr(err, "PGLEASE_PG_PORT") && strstr(err, "http"), "err: %s", err);
	}
}

/* Loads a one-line file and expects an error that names file:1 and `needle`. */
static void expect_ok(const char *text);

static void
expect_line_error(const char *text, const char *needle)
{
	char where[1100];
	const char *p = write_conf("bad.conf", text);
	int rc = load(p, NULL);

	snprintf(where, sizeof(where), "%s:1", p);
	CHECKF(rc == -PGL_ECONFIG, "'%s' accepted", text);
	CHECKF(strstr(err, where) != NULL, "'%s': error does not name %s: %s", text, where, err);
	CHECKF(strstr(err, needle) != NULL, "'%s': error does not mention '%s': %s", text,
		   needle, err);
}

static void
test_bad_values(void)
{
	expect_line_error("lease_ttl = 5000\n", "lease_ttl");		/* unknown key */
	expect_line_error("Node_Name = x\n", "Node_Name");
	expect_line_error("pg_port = 54x32\n", "pg_port");			/* bad int */
	expect_line_error("pg_port = \n", "pg_port");
	expect_line_error("pg_port = 99999\n", "pg_port");			/* out of range */
	expect_line_error("pg_port = 0\n", "out of range");
	expect_line_error("lease_ttl_ms = 99999999999999999999\n", "lease_ttl_ms");
	expect_line_error("priority = -1\n", "priority");
	expect_line_error("node_name = Pg1\n", "node_name");		/* bad names */
	expect_line_error("node_name = pg.1\n", "node_name");
	expect_line_error("node_name = 'a b'\n", "node_name");
	expect_line_error("node_name = "
		"a123456789012345678901234567890123456789012345678901234567890123\n", "node_name");
	expect_line_error("log_level = verbose\n", "log_level");	/* bad level */
	expect_line_error("log_level = INFO\n", "log_level");
	expect_line_error("in_server_fence = yes\n", "in_server_fence");	/* auto, on, off only */
	expect_line_error("just some words\n", "key = value");
	expect_line_error("lease_db = 'unterminated\n", "lease_db");
	expect_line_error("lease_db = 'a' b\n", "lease_db");
	expect_line_error("lease_db = 'it''s\n", "unterminated");
	expect_line_error("lease_db = 'a''' b\n", "after the closing quote");
	expect_line_error("replication_sslmode = on\n", "replication_sslmode");
	expect_line_error("lease_db =\n", "lease_db");				/* must not be empty */
	expect_line_error("pg.Bad-Name = 1\n", "Bad-Name");
	/* advertise_host goes into the node's conninfo: a host name or address only. */
	expect_line_error("advertise_host = 'evil port=1'\n", "advertise_host");
	expect_line_error("advertise_host = 'pg1 sslmode=disable'\n", "advertise_host");
	expect_line_error("advertise_host = /tmp\n", "advertise_host");
	expect_line_error("advertise_host = 'o''brien'\n", "advertise_host");
	expect_line_error("advertise_host = pg1,pg2\n", "advertise_host");
	expect_ok("advertise_host = pg-1.example\n");
	/* http_listen: [IPv4 ADDRESS]:PORT, or empty for off. */
	expect_ok("http_listen = :8008\n");
	expect_ok("http_listen = 127.0.0.1:8008\n");
	expect_ok("http_listen =\n");
	expect_line_error("http_listen = 8008\n", "http_listen");
	expect_line_error("http_listen = :0\n", "http_listen");
	expect_line_error("http_listen = :65536\n", "http_listen");
	expect_line_error("http_listen = localhost:8008\n", "http_listen");
	expect_line_error("http_listen = 1.2.3.4:80x\n", "http_listen");
	/* on_role_change: an absolute path; max_lag_on_failover and hook_timeout_ms in range. */
	expect_ok("on_role_change = /usr/local/bin/hook\n");
	expect_line_error("on_role_change = hook.sh\n", "on_role_change");
	expect_ok("bootstrap_program = /usr/local/lib/pglease/docker-init\n");
	CHECK(strcmp(cfg.bootstrap_program, "/usr/local/lib/pglease/docker-init") == 0);
	expect_line_error("bootstrap_program = docker-init\n", "bootstrap_program");
	expect_line_error("hook_timeout_ms = 50\n", "hook_timeout_ms");
	expect_ok("max_lag_on_failover = 1048576\n");
	expect_line_error("max_lag_on_failover = -1\n", "max_lag_on_failover");
	expect_ok("advertise_host = '::1'\n");
	expect_ok("advertise_host = 10.0.0.7\n");
	CHECK(strcmp(cfg.advertise_host, "10.0.0.7") == 0);
}

/* '' inside quotes is one quote, as in postgresql.conf: a value may hold ' and #. */
static void
test_doubled_quotes(void)
{
	const char *p = write_conf("quotes.conf",
		"password_file = '/run/it''s # here'  # a comment\n"
		"pg.application_name = 'a''b\\c #d'\n"
		"pg.x = ''''\n"
		"pg.y = ''\n");
	char *const env[] = { NULL };
	int rc = load(p, env);

	CHECKF(rc == 0, "rc %d: %s", rc, err);
	CHECK(strcmp(cfg.password_file, "/run/it's # here") == 0);
	CHECK(pg_value("application_name") && strcmp(pg_value("application_name"), "a'b\\c #d") == 0);
	CHECK(pg_value("x") && strcmp(pg_value("x"), "'") == 0);
	CHECK(pg_value("y") && strcmp(pg_value("y"), "") == 0);
}

static void
test_timing_rule(void)
{
	/* renew_interval_ms * 2 > lease_ttl_ms - fence_margin_ms is refused ... */
	const char *p = write_conf("timing.conf",
		"lease_ttl_ms = 5000\nrenew_interval_ms = 2001\nfence_margin_ms = 1000\n");
	int rc = load(p, NULL);

	CHECK(rc == -PGL_ECONFIG);
	CHECKF(strstr(err, "renew_interval_ms") && strstr(err, "lease_ttl_ms"), "err: %s", err);
	/* ... and the boundary (equal) is accepted. */
	p = write_conf("timing.conf",
		"lease_ttl_ms = 5000\nrenew_interval_ms = 2000\nfence_margin_ms = 1000\n");
	rc = load(p, NULL);
	CHECKF(rc == 0, "rc %d: %s", rc, err);
	/* The rule also applies to values from the environment. */
	{
		char *const env[] = { "PGLEASE_NODE_NAME=n1", "PGLEASE_PG_BINDIR=/b",
							  "PGLEASE_FENCE_MARGIN_MS=4000", NULL };

		rc = load(NULL, env);
		CHECK(rc == -PGL_ECONFIG);
		CHECKF(strstr(err, "fence_margin_ms"), "err: %s", err);
	}
}

static void
test_errors_collected(void)
{
	const char *p = write_conf("many.conf",
		"node_name = ok\n"
		"bogus = 1\n"
		"pg_port = abc\n"
		"# fine\n"
		"log_level = loud\n"
		"priority = 5\n"
		"node_name = BAD\n");
	char l2[1100], l3[1100], l5[1100], l7[1100];
	int rc = load(p, NULL), lines = 1;

	CHECK(rc == -PGL_ECONFIG);
	snprintf(l2, sizeof(l2), "%s:2", p);
	snprintf(l3, sizeof(l3), "%s:3", p);
	snprintf(l5, sizeof(l5), "%s:5", p);
	snprintf(l7, sizeof(l7), "%s:7", p);
	CHECKF(strstr(err, l2) && strstr(err, "bogus"), "err: %s", err);
	CHECKF(strstr(err, l3) && strstr(err, "pg_port"), "err: %s", err);
	CHECKF(strstr(err, l5) && strstr(err, "log_level"), "err: %s", err);
	CHECKF(strstr(err, l7) && strstr(err, "node_name"), "err: %s", err);
	for (const char *c = err; *c; c++)
		lines += *c == '\n';
	CHECKF(lines == 4, "expected 4 error lines, got %d: %s", lines, err);

	/* A tiny error buffer truncates but never overflows. */
	{
		char small[16];

		memset(small, 'x', sizeof(small));
		rc = pgl_config_load(&cfg, p, base_env, small, sizeof(small));
		CHECK(rc == -PGL_ECONFIG);
		CHECK(memchr(small, '\0', sizeof(small)) != NULL);
	}
}

static void
test_missing_file(void)
{
	char path[1024];
	int rc;

	snprintf(path, sizeof(path), "%s/does-not-exist.conf", test_dir());
	rc = load(path, NULL);
	CHECK(rc == -PGL_ECONFIG);
	CHECKF(strstr(err, path) != NULL, "err: %s", err);
}

/* Loads text as a file and expects success. */
static void
expect_ok(const char *text)
{
	const char *p = write_conf("ok.conf", text);
	int rc = load(p, NULL);

	CHECKF(rc == 0, "'%s' refused: %s", text, err);
}

static void
test_allowed_network(void)
{
	static const char *const good[] = {
		"samenet", "samehost", "10.0.0.0/8", "127.0.0.1/32", "192.168.1.0/24", "0.0.0.0/0",
		"::1/128", "fd00::/8", "::/0", "2001:db8::/32", "::ffff:10.0.0.0/104",
	};
	static const char *const bad[] = {
		"all", "10.0.0.0", "10.0.0.0/", "/8", "10.0.0.0/33", "10.0.0.1/8", "10.0.0.0/08",
		"10.0.0.0/8x", "10.0.0.0/-1", "10.0.0.0/+8", "1.2.3/24", "010.0.0.0/8", "::1/129",
		"fd00::1/8", "fe80::1%eth0/64", "pg1.example.com/32", "samenet trust",
		"0.0.0.0/0 trust", "10.0.0.0/8 ", "SameNet", "10.0.0.0/0008",
	};
	char line[256];

	for (size_t i = 0; i < PGL_ARRAY_LEN(good); i++) {
		snprintf(line, sizeof(line), "allowed_network = '%s'\n", good[i]);
		expect_ok(line);
		CHECKF(strcmp(cfg.allowed_network, good[i]) == 0, "%s: got %s", good[i],
			   cfg.allowed_network);
	}
	for (size_t i = 0; i < PGL_ARRAY_LEN(bad); i++) {
		snprintf(line, sizeof(line), "allowed_network = '%s'\n", bad[i]);
		expect_line_error(line, "allowed_network");
	}
	/* The issue's example, from the file (quoted and not) and from the environment. */
	expect_line_error("allowed_network = '0.0.0.0/0 trust #'\n", "allowed_network");
	expect_line_error("allowed_network = 0.0.0.0/0 trust # comment\n", "allowed_network");
	expect_line_error("allowed_network = 10.1.2.3/8\n", "10.0.0.0/8");
	{
		char *const env[] = { "PGLEASE_NODE_NAME=n1", "PGLEASE_PG_BINDIR=/b",
							  "PGLEASE_ALLOWED_NETWORK=0.0.0.0/0 trust #", NULL };
		int rc = load(NULL, env);

		CHECK(rc == -PGL_ECONFIG);
		CHECKF(strstr(err, "environment PGLEASE_ALLOWED_NETWORK: ") && strchr(err, '\n') == NULL,
			   "err: %s", err);
	}
}

static void
test_nul_byte(void)
{
	char path[1024], l1[1100], l2[1100];
	FILE *f;
	int rc;

	/* fgets would stop at the NUL and take the next line as the rest of this one. */
	snprintf(path, sizeof(path), "%s/nul.conf", test_dir());
	f = fopen(path, "w");
	{
		static const char text[] = "node_name = a\0b\npg_port = x\n";

		fwrite(text, 1, sizeof(text) - 1, f);
	}
	fclose(f);
	rc = load(path, NULL);
	snprintf(l1, sizeof(l1), "%s:1: NUL byte", path);
	snprintf(l2, sizeof(l2), "%s:2: key 'pg_port'", path);
	CHECK(rc == -PGL_ECONFIG);
	CHECKF(strstr(err, l1) != NULL, "err: %s", err);
	CHECKF(strstr(err, l2) != NULL, "line 2 not parsed: %s", err);
}

static void
test_unknown_env(void)
{
	char *const env[] = { "PGLEASE_NODE_NAME=n1", "PGLEASE_PG_BINDIR=/b",
						  "PGLEASE_NODENAME=n2", "PGLEASE_LEASEDB=/x", "PGLEASE_=1",
						  "PGLEASE_PG.SHARED_BUFFERS=1GB", "PGLEASE_BOGUS=1", NULL };
	int rc = load(NULL, env), lines = 1;

	CHECK(rc == -PGL_ECONFIG);
	CHECKF(strstr(err, "environment PGLEASE_NODENAME: not a pglease setting "
				  "(did you mean PGLEASE_NODE_NAME?)"), "err: %s", err);
	CHECKF(strstr(err, "PGLEASE_LEASEDB: not a pglease setting (did you mean PGLEASE_LEASE_DB?)"),
		   "err: %s", err);
	CHECKF(strstr(err, "environment PGLEASE_: not"), "err: %s", err);
	CHECKF(strstr(err, "environment PGLEASE_PG.SHARED_BUFFERS: not"), "err: %s", err);
	CHECKF(strstr(err, "environment PGLEASE_BOGUS: not"), "err: %s", err);
	for (const char *c = err; *c; c++)
		lines += *c == '\n';
	CHECKF(lines == 5, "expected 5 error lines: %s", err);
}

static void
test_duplicate_keys(void)
{
	const char *p = write_conf("dup.conf",
		"node_name = a\npg.work_mem = 4MB\n# x\nnode_name = a\npg.work_mem = 8MB\n");
	char l4[1100], l5[1100];
	int rc = load(p, NULL);

	snprintf(l4, sizeof(l4), "%s:4: key 'node_name' is set twice (first on line 1)", p);
	snprintf(l5, sizeof(l5), "%s:5: key 'pg.work_mem' is set twice (first on line 2)", p);
	CHECK(rc == -PGL_ECONFIG);
	CHECKF(strstr(err, l4) != NULL, "err: %s", err);
	CHECKF(strstr(err, l5) != NULL, "err: %s", err);
	/* The environment still overrides a key set once in the file. */
	p = write_conf("dup.conf", "pg_port = 5433\n");
	{
		char *const env[] = { "PGLEASE_NODE_NAME=n1", "PGLEASE_PG_BINDIR=/b",
							  "PGLEASE_PG_PORT=5434", NULL };

		rc = load(p, env);
		CHECKF(rc == 0 && cfg.pg_port == 5434, "rc %d: %s", rc, err);
	}
}

static void
test_hash_and_controls_in_values(void)
{
	expect_line_error("pgdata = /a#b\n", "unquoted '#'");
	expect_line_error("pg.archive_command = cp %p /a#b\n", "pg.archive_command");
	expect_line_error("pgdata = '/a\tb'\n", "control character");
	expect_line_error("pg.work_mem = '4\x1bMB'\n", "control character");
	expect_ok("pgdata = /a # a comment\n");
	CHECK(strcmp(cfg.pgdata, "/a") == 0);
	expect_ok("pgdata = '/a#b'\n");
	CHECK(strcmp(cfg.pgdata, "/a#b") == 0);
	expect_ok("pgdata = '/a'# comment\n");
	CHECK(strcmp(cfg.pgdata, "/a") == 0);
	expect_ok("password_file = # nothing\n");
	CHECK(strcmp(cfg.password_file, "") == 0);
	{
		char *const env[] = { "PGLEASE_NODE_NAME=n1", "PGLEASE_PG_BINDIR=/b",
							  "PGLEASE_PGDATA=/a\nb", NULL };

		CHECK(load(NULL, env) == -PGL_ECONFIG);
		CHECKF(strstr(err, "PGLEASE_PGDATA") && strchr(err, '\n') == NULL, "err: %s", err);
	}
}

static void
test_not_a_regular_file(void)
{
	char fifo[1024];
	int rc;

	snprintf(fifo, sizeof(fifo), "%s/fifo.conf", test_dir());
	unlink(fifo);
	CHECK(mkfifo(fifo, 0600) == 0);
	alarm(10);			/* a hang is a failure, not a stuck test run */
	rc = load(fifo, NULL);
	alarm(0);
	CHECK(rc == -PGL_ECONFIG);
	CHECKF(strstr(err, fifo) && strstr(err, "not a regular file"), "err: %s", err);
	rc = load(test_dir(), NULL);
	CHECK(rc == -PGL_ECONFIG);
	CHECKF(strstr(err, "not a regular file"), "err: %s", err);
}

static void
test_slot_name(void)
{
	char out[PGL_NAME_MAX];

	pgl_config_slot_name("pg-node-1", out, sizeof(out));
	CHECK(strcmp(out, "pg_node_1") == 0);
	pgl_config_slot_name("abc", out, 3);
	CHECK(strcmp(out, "ab") == 0);
}

int
main(void)
{
	TEST(test_defaults);
	TEST(test_file_parsing);
	TEST(test_env_overrides_file);
	TEST(test_bad_values);
	TEST(test_doubled_quotes);
	TEST(test_timing_rule);
	TEST(test_errors_collected);
	TEST(test_missing_file);
	TEST(test_allowed_network);
	TEST(test_nul_byte);
	TEST(test_unknown_env);
	TEST(test_duplicate_keys);
	TEST(test_hash_and_controls_in_values);
	TEST(test_not_a_regular_file);
	TEST(test_slot_name);
	return TEST_REPORT();
}
