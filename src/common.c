/*
 * common.c — error names, clocks, LSN text and name validation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "pglease/common.h"

static const char *const err_names[PGL_E_COUNT] = {
	[PGL_OK] = "success",
	[PGL_EINVAL] = "invalid argument",
	[PGL_ESTORE] = "lease store error",
	[PGL_EFOREIGN] = "not a pglease lease store",
	[PGL_ENEWER] = "lease store schema is newer than this pglease",
	[PGL_EBUSY] = "lease store busy",
	[PGL_ECONFLICT] = "lease changed (compare-and-swap lost)",
	[PGL_ENOTHOLDER] = "not the lease holder at this term",
	[PGL_ENOENT] = "not found",
	[PGL_EPG] = "PostgreSQL error",
	[PGL_EPROTO] = "unexpected result",
	[PGL_ESYS] = "system error",
	[PGL_ETIMEOUT] = "timed out",
	[PGL_ECONFIG] = "configuration error",
	[PGL_EDUP] = "duplicate node name",
	[PGL_ENOMEM] = "out of memory",
};

const char *
pgl_strerror(int rc)
{
	if (rc < 0)
		rc = -rc;
	if (rc >= PGL_E_COUNT || err_names[rc] == NULL)
		return "unknown error";
	return err_names[rc];
}

int64_t
pgl_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
pgl_wall_iso(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char tmp[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03ldZ", tmp, ts.tv_nsec / 1000000);
}

int
pgl_lsn_parse(const char *text, uint64_t *lsn)
{
	unsigned int hi, lo;
	char tail;

	if (text == NULL || sscanf(text, "%X/%X%c", &hi, &lo, &tail) != 2)
		return -PGL_EINVAL;
	*lsn = ((uint64_t) hi << 32) | lo;
	return 0;
}

void
pgl_lsn_format(uint64_t lsn, char *buf, size_t len)
{
	snprintf(buf, len, "%X/%X", (unsigned int) (lsn >> 32), (unsigned int) lsn);
}

bool
pgl_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n < 1 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* True for a host name or an IPv4/IPv6 address: [A-Za-z0-9.:_-], 1 to 253 bytes. */
bool
pgl_host_valid(const char *host)
{
	size_t n = host ? strlen(host) : 0;

	if (n < 1 || n > 253 || host[0] == '-' || host[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = host[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '.' || c == '-' || c == ':' || c == '_'))
			return false;
	}
	return true;
}

/* A TCP port as libpq would use it, but strictly: 1 to 5 digits, no sign or space, 1..65535. */
static int
port_parse(const char *text)
{
	size_t n = strspn(text, "0123456789");
	long v;

	if (n == 0 || n > 5 || text[n] != '\0')
		return 0;
	v = strtol(text, NULL, 10);
	return v >= 1 && v <= 65535 ? (int) v : 0;
}

/*
 * libpq's own parser decides what the text means (quotes, backslashes,
 * spaces around '=', a URI, a keyword given twice), so the host and port
 * taken here are exactly those a connection would use.
 */
int
pgl_conninfo_host_port(const char *conninfo, char *host, size_t hostlen, int *port)
{
	PQconninfoOption *opts;
	const char *h = NULL, *p = NULL;
	char *why = NULL;
	int rc = -PGL_EINVAL;

	if (hostlen)
		host[0] = '\0';
	*port = 0;
	if (conninfo == NULL)
		return -PGL_EINVAL;
	if ((opts = PQconninfoParse(conninfo, &why)) == NULL) {
		/* NULL with no message is libpq's out of memory */
		rc = why ? -PGL_EINVAL : -PGL_ENOMEM;
		PQfreemem(why);
		return rc;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (o->val == NULL)
			continue;
		if (strcmp(o->keyword, "host") == 0)
			h = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			p = o->val;
		/* anything else (sslmode, password, hostaddr...) is not carried over */
	}
	if (h && p && pgl_host_valid(h) && strlen(h) < hostlen && (*port = port_parse(p)) > 0) {
		memcpy(host, h, strlen(h) + 1);
		rc = 0;
	}
	PQconninfoFree(opts);
	return rc;
}

/* True if a conninfo value needs no quotes: non-empty, [A-Za-z0-9._:-] only. */
static bool
conninfo_bare(const char *v)
{
	return *v && strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
						"0123456789._:-") == strlen(v);
}

/*
 * A host that needs them is quoted as libpq reads a conninfo value: in
 * single quotes, with ' and \ preceded by a backslash.  The length is
 * computed first, so the text is either complete or not written at all.
 */
int
pgl_conninfo_format(const char *host, int port, char *buf, size_t len)
{
	char tail[16];
	size_t need, used;
	bool bare;

	if (len)
		buf[0] = '\0';
	if (host == NULL || port < 1 || port > 65535)
		return -PGL_EINVAL;
	bare = conninfo_bare(host);
	snprintf(tail, sizeof(tail), " port=%d", port);
	need = strlen("host=") + strlen(host) + strlen(tail) + 1;
	if (!bare)
		for (const char *c = host; *c; c++)
			need += (*c == '\'' || *c == '\\') ? 1 : 0;
	need += bare ? 0 : 2;
	if (need > len)
		return -PGL_EINVAL;
	memcpy(buf, "host=", 5);
	used = 5;
	if (!bare)
		buf[used++] = '\'';
	for (const char *c = host; *c; c++) {
		if (!bare && (*c == '\'' || *c == '\\'))
			buf[used++] = '\\';
		buf[used++] = *c;
	}
	if (!bare)
		buf[used++] = '\'';
	memcpy(buf + used, tail, strlen(tail) + 1);
	return 0;
}

bool
pgl_strlcpy(char *dst, const char *src, size_t len)
{
	size_t n = strlen(src);

	if (len == 0)
		return false;
	if (n >= len) {
		memcpy(dst, src, len - 1);
		dst[len - 1] = '\0';
		return false;
	}
	memcpy(dst, src, n + 1);
	return true;
}
