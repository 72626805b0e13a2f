/*
 * test_common.c — the shared helpers of common.c that guard what the store
 * reads and writes: a node's conninfo reduced to host and port by libpq's
 * own parser (pgl_conninfo_host_port), and the conninfo text written back
 * (pgl_conninfo_format), which must read back through PQconninfoParse to
 * exactly the host it was given.  Also the error table.
 */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "harness.h"
#include "pglease/common.h"

/* The value of keyword in conninfo as libpq parses it, copied into out ("" if absent). */
static bool
libpq_value(const char *conninfo, const char *keyword, char *out, size_t len)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	bool found = false;

	out[0] = '\0';
	if (opts == NULL)
		return false;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (strcmp(o->keyword, keyword) == 0 && o->val) {
			snprintf(out, len, "%s", o->val);
			found = true;
		}
	PQconninfoFree(opts);
	return found;
}

static void
test_conninfo_host_port(void)
{
	static const struct {
		const char *ci;
		const char *host;		/* NULL: must be refused */
		int port;
	} cases[] = {
		{ "host=pg1 port=5432", "pg1", 5432 },
		{ "host='pg-1.example' port='5433'", "pg-1.example", 5433 },
		{ "  host = pg1   port = 1  ", "pg1", 1 },
		{ "host=10.0.0.5 port=65535", "10.0.0.5", 65535 },
		{ "port=6000 host=::1", "::1", 6000 },
		{ "host=pg1 port=5432 password=x sslmode=disable dbname=y", "pg1", 5432 },
		{ "host=pg1 port=5432 host=pg2", "pg2", 5432 },		/* libpq: the last wins */
		{ "postgresql://pg1:5434/postgres", "pg1", 5434 },
		/* the port: digits only, 1..65535 */
		{ "host=pg1 port=abc", NULL, 0 },
		{ "host=pg1 port=99999", NULL, 0 },
		{ "host=pg1 port=65536", NULL, 0 },
		{ "host=pg1 port=0", NULL, 0 },
		{ "host=pg1 port=-5432", NULL, 0 },
		{ "host=pg1 port=+5432", NULL, 0 },
		{ "host=pg1 port=' 5432'", NULL, 0 },
		{ "host=pg1 port='5432 '", NULL, 0 },
		{ "host=pg1 port=5432,5433", NULL, 0 },
		{ "host=pg1 port=''", NULL, 0 },
		{ "host=pg1 port=99999999999999999999", NULL, 0 },
		{ "host=pg1", NULL, 0 },
		/* the host: a plain name or address */
		{ "port=5432", NULL, 0 },
		{ "host='' port=5432", NULL, 0 },
		{ "host='pg 1' port=5432", NULL, 0 },
		{ "host='pg\\'1' port=5432", NULL, 0 },
		{ "host=\"pg1\" port=5432", NULL, 0 },
		{ "host=/tmp port=5432", NULL, 0 },
		{ "host=pg1,pg2 port=5432", NULL, 0 },
		/* not a conninfo at all */
		{ "garbage '", NULL, 0 },
		{ "host='unterminated port=5432", NULL, 0 },
		{ "nokey=1 host=pg1 port=5432", NULL, 0 },
		{ "", NULL, 0 },
	};
	char host[256];
	int port;

	for (size_t i = 0; i < PGL_ARRAY_LEN(cases); i++) {
		int rc = pgl_conninfo_host_port(cases[i].ci, host, sizeof(host), &port);

		if (cases[i].host)
			CHECKF(rc == 0 && strcmp(host, cases[i].host) == 0 && port == cases[i].port,
				   "%s: rc %d host '%s' port %d", cases[i].ci, rc, host, port);
		else
			CHECKF(rc == -PGL_EINVAL && host[0] == '\0' && port == 0,
				   "%s accepted: rc %d host '%s' port %d", cases[i].ci, rc, host, port);
	}
	CHECK(pgl_conninfo_host_port(NULL, host, sizeof(host), &port) == -PGL_EINVAL);
	/* A host that does not fit the caller's buffer is refused, never truncated. */
	CHECK(pgl_conninfo_host_port("host=pg-long port=1", host, 4, &port) == -PGL_EINVAL);
	CHECK(host[0] == '\0' && port == 0);
	CHECK(pgl_conninfo_host_port("host=pg1 port=1", host, 4, &port) == 0);
}

/*
 * Every host, however odd, reads back through libpq exactly; a plain one is
 * written without quotes (the text people see in `pglease primary --conninfo`).
 */
static void
test_conninfo_format_round_trip(void)
{
	static const char *const hosts[] = {
		"pg1", "10.0.0.1", "::1", "pg-1.example", "a b", "o'brien", "back\\slash",
		"trail\\", "'", "x=y port=1", "tab\there", "",
	};
	char buf[256], got[256], port[16];

	for (size_t i = 0; i < PGL_ARRAY_LEN(hosts); i++) {
		CHECKF(pgl_conninfo_format(hosts[i], 5432, buf, sizeof(buf)) == 0, "%s", hosts[i]);
		CHECKF(libpq_value(buf, "host", got, sizeof(got)) && strcmp(got, hosts[i]) == 0,
			   "host '%s' written as [%s], read back as '%s'", hosts[i], buf, got);
		CHECKF(libpq_value(buf, "port", port, sizeof(port)) && strcmp(port, "5432") == 0,
			   "[%s]", buf);
	}
	CHECK(pgl_conninfo_format("pg1", 5432, buf, sizeof(buf)) == 0);
	CHECK(strcmp(buf, "host=pg1 port=5432") == 0);
	CHECK(pgl_conninfo_format("a b", 1, buf, sizeof(buf)) == 0);
	CHECKF(strcmp(buf, "host='a b' port=1") == 0, "%s", buf);
	/* What the store writes, read back, gives the same host and port. */
	{
		char host[256];
		int p;

		CHECK(pgl_conninfo_format("pg-1.example", 6543, buf, sizeof(buf)) == 0);
		CHECK(pgl_conninfo_host_port(buf, host, sizeof(host), &p) == 0);
		CHECK(strcmp(host, "pg-1.example") == 0 && p == 6543);
	}
	/* Bad port or no room: refused, and the buffer is empty. */
	CHECK(pgl_conninfo_format("pg1", 0, buf, sizeof(buf)) == -PGL_EINVAL && buf[0] == '\0');
	CHECK(pgl_conninfo_format("pg1", 65536, buf, sizeof(buf)) == -PGL_EINVAL);
	CHECK(pgl_conninfo_format("pg1", 5432, buf, 10) == -PGL_EINVAL && buf[0] == '\0');
	CHECK(pgl_conninfo_format("pg1", 5432, buf, 19) == 0);		/* exactly fits */
	CHECK(pgl_conninfo_format("pg1", 5432, buf, 18) == -PGL_EINVAL);
	CHECK(pgl_conninfo_format(NULL, 5432, buf, sizeof(buf)) == -PGL_EINVAL);
}

static void
test_strerror(void)
{
	CHECK(strcmp(pgl_strerror(-PGL_ENOMEM), "out of memory") == 0);
	for (int i = 0; i < PGL_E_COUNT; i++)
		CHECKF(strcmp(pgl_strerror(-i), "unknown error") != 0, "code %d has no text", i);
	CHECK(strcmp(pgl_strerror(-PGL_E_COUNT), "unknown error") == 0);
}

int
main(void)
{
	TEST(test_conninfo_host_port);
	TEST(test_conninfo_format_round_trip);
	TEST(test_strerror);
	return TEST_REPORT();
}
