/*
 * store_etcd.c — the lease store on etcd (store.h, DESIGN.md section 4b),
 * for nodes on more than one host.
 *
 * etcd's v3 API through its JSON gateway (POST /v3/...), with libcurl and
 * jansson.  Under the cluster's prefix P ("/pglease/main/"):
 *
 *   P state/cluster      {"pglease":1, "name", "system_identifier", "created_at", "paused"}
 *   P state/term         {"term", "holder", "ttl_ms", "acquired_at", "released",
 *                          "released_lsn"}: the last term granted, never deleted
 *   P state/leader       {"holder", "term"}, bound to the holder's etcd lease: it
 *                        exists exactly while that lease lives
 *   P state/switchover   the planned change of primary (struct pgl_switchover)
 *   P state/events/K     one event; its id is the key's create revision
 *   P nodes/NAME         one node row (heartbeats land here, outside state/)
 *
 * A claim is one transaction comparing the mod revisions of state/term and
 * state/leader with the versions this node read: it needs the leader key
 * absent (etcd expired or the holder released it) or this node's own.  A
 * renewal is a keepalive of the etcd lease, then a read of state/leader
 * that must still name this node, this term and this etcd lease.  The etcd
 * lease's TTL is lease_ttl_ms rounded up to whole seconds (at least 2), and
 * the holder's deadline is t0 + lease_ttl_ms - fence_margin_ms from a t0
 * taken before the keepalive was sent: the holder is fenced before etcd can
 * expire its key, and no other node can claim before the key is gone.
 *
 * Watchers of state/ (a thread per watch handle) wake the agent through a
 * pipe, as inotify does for the SQLite store.  A handle is used by one
 * thread at a time; the watch thread has its own curl handle.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "pglease/config.h"
#include "pglease/etcd.h"
#include "pglease/log.h"
#include "pglease/store.h"
#include "pglease/watch.h"

#define FORMAT_VERSION 1
#define EVENTS_KEPT 2000
#define MAX_BODY (32 << 20)

struct etcd_watch;

struct etcd_store {
	struct pgl_store base;
	char path[PGL_PATH_MAX];
	struct pgl_etcd_url u;
	CURL *curl;
	int ep;						/* the endpoint tried first */
	char token[512];			/* auth token, "" when none */
	char password[256];
	bool rdonly;
	int busy_ms;				/* each request's bound */
	int64_t until_ms;			/* and, when set, this monotonic deadline */
	char errmsg[640];
	/* the lease this handle holds (claim/renew) */
	int64_t lease_id, lease_term, renewals;
	int64_t heartbeat;			/* own node row's counter; -1: not read yet */
	char hb_name[PGL_NAME_MAX];
	int events_written;
	struct etcd_watch *watch;
};

static struct etcd_store *
es(struct pgl_store *base)
{
	return (struct etcd_store *) base;
}

static void
seterr(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void
seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

#define ERR(s, ...) seterr((s)->errmsg, sizeof((s)->errmsg), __VA_ARGS__)

/* ---- the URL ---- */

static bool
segment_ok(const char *p, size_t n)
{
	if (n == 0 || n > 100 || (n <= 2 && p[0] == '.'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char) p[i]) && p[i] != '_' && p[i] != '-' && p[i] != '.')
			return false;
	return true;
}

/*
 * Splits buf ("HOST", "HOST:PORT", "[V6]" or "[V6]:PORT") in place: *host
 * points into buf, *port_text at the port's digits or NULL.  False when the
 * brackets are unbalanced or something follows ']' that is not ":PORT".
 */
static bool
split_host_port(char *buf, char **host, char **port_text)
{
	char *colon;

	*port_text = NULL;
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');

		if (close == NULL || close == buf + 1 || (close[1] != '\0' && close[1] != ':'))
			return false;
		*close = '\0';
		*host = buf + 1;
		if (close[1] == ':')
			*port_text = close + 2;
		return true;
	}
	*host = buf;
	if ((colon = strrchr(buf, ':')) != NULL) {
		*colon = '\0';
		*port_text = colon + 1;
	}
	return true;
}

/*
 * One endpoint: "HOST[:PORT]" or "[IPV6][:PORT]" (an IPv6 address must be
 * in brackets: "::1" alone would read as host ":" port 1).
 */
static int
parse_endpoint(struct pgl_etcd_url *u, const char *p, size_t n, const char *url, char *err,
			   size_t errlen)
{
	char buf[300], *host, *pt;
	long port = 2379;
	int i = u->n_endpoints;
	bool split;

	if (i == PGL_ETCD_MAX_ENDPOINTS) {
		seterr(err, errlen, "%s: more than %d etcd endpoints", url, PGL_ETCD_MAX_ENDPOINTS);
		return -PGL_EINVAL;
	}
	if (n == 0 || n >= sizeof(buf)) {
		seterr(err, errlen, "%s: empty or overlong etcd endpoint", url);
		return -PGL_EINVAL;
	}
	memcpy(buf, p, n);
	buf[n] = '\0';
	if ((split = split_host_port(buf, &host, &pt)) && pt) {
		char *end;

		errno = 0;
		port = strtol(pt, &end, 10);
		if (*pt == '\0' || *end || errno || port < 1 || port > 65535 ||
			!isdigit((unsigned char) *pt)) {
			seterr(err, errlen, "%s: bad port in etcd endpoint '%.*s'", url, (int) n, p);
			return -PGL_EINVAL;
		}
	}
	if (!split || !pgl_host_valid(host) || strlen(host) >= sizeof(u->host[0]) ||
		(host != buf) != (strchr(host, ':') != NULL)) {
		seterr(err, errlen, "%s: bad host in etcd endpoint '%.*s' (an IPv6 address goes in "
			   "brackets: [::1]:2379)", url, (int) n, p);
		return -PGL_EINVAL;
	}
	pgl_strlcpy(u->host[i], host, sizeof(u->host[i]));
	u->port[i] = (int) port;
	u->n_endpoints++;
	return 0;
}

/* tls=0|1 and insecure=0|1 (a 1 is never undone); false when [p, p+kl)=val is neither. */
static bool
flag_param(struct pgl_etcd_url *u, const char *p, size_t kl, const char *val)
{
	bool *flag = kl == 3 && strncmp(p, "tls", 3) == 0 ? &u->tls :
		kl == 8 && strncmp(p, "insecure", 8) == 0 ? &u->insecure : NULL;

	if (flag == NULL || (strcmp(val, "0") != 0 && strcmp(val, "1") != 0))
		return false;
	*flag |= val[0] == '1';
	return true;
}

static int
parse_param(struct pgl_etcd_url *u, const char *p, size_t n, const char *url, char *err,
			size_t errlen)
{
	static const struct { const char *key; size_t off, len; } files[] = {
		{ "user", offsetof(struct pgl_etcd_url, user), sizeof(((struct pgl_etcd_url *) 0)->user) },
		{ "password_file", offsetof(struct pgl_etcd_url, password_file),
		  sizeof(((struct pgl_etcd_url *) 0)->password_file) },
		{ "cacert", offsetof(struct pgl_etcd_url, cacert), sizeof(((struct pgl_etcd_url *) 0)->cacert) },
		{ "cert", offsetof(struct pgl_etcd_url, cert), sizeof(((struct pgl_etcd_url *) 0)->cert) },
		{ "key", offsetof(struct pgl_etcd_url, key), sizeof(((struct pgl_etcd_url *) 0)->key) },
	};
	const char *eq = memchr(p, '=', n);
	size_t kl = eq ? (size_t) (eq - p) : n, vl = eq ? n - kl - 1 : 0;
	char val[1024];

	if (!eq || vl == 0 || vl >= sizeof(val)) {
		seterr(err, errlen, "%s: query parameter '%.*s' needs a value", url, (int) n, p);
		return -PGL_EINVAL;
	}
	memcpy(val, eq + 1, vl);
	val[vl] = '\0';
	for (size_t i = 0; i < vl; i++)
		if ((unsigned char) val[i] < 0x20 || val[i] == 0x7f) {
			seterr(err, errlen, "%s: control character in query parameter '%.*s'", url,
				   (int) kl, p);
			return -PGL_EINVAL;
		}
	for (size_t i = 0; i < PGL_ARRAY_LEN(files); i++)
		if (strlen(files[i].key) == kl && strncmp(files[i].key, p, kl) == 0) {
			if (!pgl_strlcpy((char *) u + files[i].off, val, files[i].len)) {
				seterr(err, errlen, "%s: query parameter %s is too long", url, files[i].key);
				return -PGL_EINVAL;
			}
			if (strcmp(files[i].key, "user") != 0)
				u->tls |= strcmp(files[i].key, "password_file") != 0;
			return 0;
		}
	if (flag_param(u, p, kl, val))
		return 0;
	if (kl == 10 && strncmp(p, "timeout_ms", 10) == 0) {
		char *end;
		long v;

		errno = 0;
		v = strtol(val, &end, 10);
		if (*end == '\0' && errno == 0 && v >= 100 && v <= 60000) {
			u->timeout_ms = (int) v;
			return 0;
		}
		seterr(err, errlen, "%s: timeout_ms must be 100..60000, not '%s'", url, val);
		return -PGL_EINVAL;
	}
	seterr(err, errlen, "%s: unknown query parameter '%.*s' (known: user, password_file, "
		   "cacert, cert, key, tls, insecure, timeout_ms)", url, (int) kl, p);
	return -PGL_EINVAL;
}

/*
 * The path [slash, end): segments, the last one the cluster's name; sets
 * u->prefix ("/a/b/cluster/") and u->cluster.
 */
static int
parse_path(struct pgl_etcd_url *u, const char *slash, const char *end, const char *url,
		   char *err, size_t errlen)
{
	const char *last = NULL;
	size_t plen = (size_t) (end - slash);

	for (const char *s = slash + 1; s < end;) {
		const char *e = memchr(s, '/', (size_t) (end - s));

		if (e == NULL)
			e = end;
		if (!segment_ok(s, (size_t) (e - s))) {
			seterr(err, errlen, "%s: bad path segment '%.*s' (letters, digits, '_', '-', "
				   "'.')", url, (int) (e - s), s);
			return -PGL_EINVAL;
		}
		last = s;
		s = e + (e < end);
		if (e < end && s == end) {
			seterr(err, errlen, "%s: the path ends with '/': the last segment names the "
				   "cluster", url);
			return -PGL_EINVAL;
		}
	}
	if (last == NULL || last == slash + 1) {
		seterr(err, errlen, "%s: write etcd://HOST:PORT/PREFIX/CLUSTER (a prefix and a "
			   "cluster name)", url);
		return -PGL_EINVAL;
	}
	if (plen + 2 > sizeof(u->prefix) || (size_t) (end - last) >= sizeof(u->cluster)) {
		seterr(err, errlen, "%s: the path is too long", url);
		return -PGL_EINVAL;
	}
	memcpy(u->cluster, last, (size_t) (end - last));
	u->cluster[end - last] = '\0';
	if (!pgl_name_valid(u->cluster)) {
		seterr(err, errlen, "%s: cluster name '%s' must be 1 to 63 of [a-z0-9_-]", url,
			   u->cluster);
		return -PGL_EINVAL;
	}
	memcpy(u->prefix, slash, plen);
	u->prefix[plen] = '/';
	u->prefix[plen + 1] = '\0';
	return 0;
}

/* The query "k=v&k=v" (q: after the '?', or NULL), then the keys that go together. */
static int
parse_query(struct pgl_etcd_url *u, const char *q, const char *url, char *err, size_t errlen)
{
	int rc;

	for (const char *s = q; s && *s;) {
		const char *e = strchr(s, '&');
		size_t n = e ? (size_t) (e - s) : strlen(s);

		if ((rc = parse_param(u, s, n, url, err, errlen)) < 0)
			return rc;
		s = e ? e + 1 : NULL;
	}
	if (u->password_file[0] && !u->user[0]) {
		seterr(err, errlen, "%s: password_file without user", url);
		return -PGL_EINVAL;
	}
	if ((u->cert[0] != 0) != (u->key[0] != 0)) {
		seterr(err, errlen, "%s: cert and key go together", url);
		return -PGL_EINVAL;
	}
	if (u->user[0] && !u->tls && !u->insecure) {
		seterr(err, errlen, "%s: user= over plain http sends the etcd password in clear: use "
			   "https (cacert=... or tls=1), or add insecure=1 to accept that", url);
		return -PGL_EINVAL;
	}
	return 0;
}

void
pgl_etcd_url_shown(const char *url, char *out, size_t len)
{
	const char *at, *slash, *q;
	size_t n;

	if (len == 0)
		return;
	q = strchr(url, '?');
	n = q ? (size_t) (q - url) : strlen(url);
	slash = strncmp(url, "etcd://", 7) == 0 ? memchr(url + 7, '/', n - 7) : NULL;
	at = memchr(url, '@', slash ? (size_t) (slash - url) : n);
	if (at && strncmp(url, "etcd://", 7) == 0) {
		snprintf(out, len, "etcd://...@%.*s", (int) (n - (size_t) (at + 1 - url)), at + 1);
		return;
	}
	snprintf(out, len, "%.*s", (int) n, url);
}

/* pgl_etcd_url_parse() with the URL as errors show it (shown). */
static int
parse_url(const char *url, const char *shown, struct pgl_etcd_url *u, char *err, size_t errlen)
{
	const char *p, *slash, *q;
	int rc;

	if (strncmp(url, "etcd://", 7) != 0) {
		seterr(err, errlen, "%s: an etcd store's URL starts with etcd://", shown);
		return -PGL_EINVAL;
	}
	p = url + 7;
	if ((slash = strchr(p, '/')) == NULL) {
		seterr(err, errlen, "%s: no prefix: write etcd://HOST:PORT/PREFIX/CLUSTER", shown);
		return -PGL_EINVAL;
	}
	if (memchr(p, '@', (size_t) (slash - p))) {
		seterr(err, errlen, "%s: no credentials in the URL's host part: write "
			   "?user=NAME&password_file=FILE", shown);
		return -PGL_EINVAL;
	}
	for (const char *e = p; e <= slash; e++)
		if (e == slash || *e == ',') {
			if ((rc = parse_endpoint(u, p, (size_t) (e - p), shown, err, errlen)) < 0)
				return rc;
			p = e + 1;
		}
	q = strchr(slash, '?');
	if ((rc = parse_path(u, slash, q ? q : slash + strlen(slash), shown, err, errlen)) < 0)
		return rc;
	return parse_query(u, q ? q + 1 : NULL, shown, err, errlen);
}

int
pgl_etcd_url_parse(const char *url, struct pgl_etcd_url *u, char *err, size_t errlen)
{
	char shown[1024];

	memset(u, 0, sizeof(*u));
	u->timeout_ms = PGL_ETCD_DEFAULT_TIMEOUT_MS;
	pgl_etcd_url_shown(url, shown, sizeof(shown));
	return parse_url(url, shown, u, err, errlen);
}

/* ---- base64 (etcd's keys and values travel base64-encoded) ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *
b64_encode(const char *in, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t) (unsigned char) in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t) (unsigned char) in[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char) in[i + 2];
		*o++ = b64[(v >> 18) & 63];
		*o++ = b64[(v >> 12) & 63];
		*o++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		*o++ = i + 2 < n ? b64[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

static int
b64_val(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;

	return p ? (int) (p - b64) : -1;
}

/* Decodes in; NULL for text that is not base64.  *n gets the length. */
static char *
b64_decode(const char *in, size_t *n)
{
	size_t len = strlen(in), k = 0;
	char *out;

	if (len % 4 != 0 || (out = malloc(len / 4 * 3 + 1)) == NULL)
		return NULL;
	for (size_t i = 0; i < len; i += 4) {
		int a = b64_val(in[i]), b = b64_val(in[i + 1]);
		int c = in[i + 2] == '=' ? 0 : b64_val(in[i + 2]);
		int d = in[i + 3] == '=' ? 0 : b64_val(in[i + 3]);
		uint32_t v;

		if (a < 0 || b < 0 || c < 0 || d < 0 ||
			((in[i + 2] == '=' || in[i + 3] == '=') && i + 4 != len) ||
			(in[i + 2] == '=' && in[i + 3] != '=')) {
			free(out);
			return NULL;
		}
		v = (uint32_t) a << 18 | (uint32_t) b << 12 | (uint32_t) c << 6 | (uint32_t) d;
		out[k++] = (char) (v >> 16);
		if (in[i + 2] != '=')
			out[k++] = (char) (v >> 8);
		if (in[i + 3] != '=')
			out[k++] = (char) v;
	}
	out[k] = '\0';
	*n = k;
	return out;
}

/* ---- requests ---- */

struct buf {
	char *p;
	size_t n;
	bool too_big;
};

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t n = size * nmemb;
	char *grown;

	if (b->n + n > MAX_BODY) {
		b->too_big = true;
		return 0;
	}
	if ((grown = realloc(b->p, b->n + n + 1)) == NULL)
		return 0;
	b->p = grown;
	memcpy(b->p + b->n, data, n);
	b->n += n;
	b->p[b->n] = '\0';
	return n;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/*
 * Sets the options every request of handle c shares (TLS, no signals, no
 * proxy: the environment's http_proxy/https_proxy/all_proxy would route the
 * lease, and a token or password, through whatever they name).
 */
static void
curl_common(CURL *c, const struct pgl_etcd_url *u)
{
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(c, CURLOPT_PROXY, "");	/* never http_proxy & co. from the environment */
	if (u->cacert[0])
		curl_easy_setopt(c, CURLOPT_CAINFO, u->cacert);
	if (u->cert[0]) {
		curl_easy_setopt(c, CURLOPT_SSLCERT, u->cert);
		curl_easy_setopt(c, CURLOPT_SSLKEY, u->key);
	}
}

static int64_t
timeout_left(const struct etcd_store *s)
{
	int64_t t = s->busy_ms;

	if (s->until_ms) {
		int64_t left = s->until_ms - pgl_mono_ms();

		if (left < t)
			t = left;
	}
	return t;
}

/* The gateway's error: {"error": ..., "code": N, "message": ...}. */
static const char *
gw_message(json_t *j)
{
	const char *m = json_string_value(json_object_get(j, "message"));

	if (m == NULL)
		m = json_string_value(json_object_get(j, "error"));
	return m ? m : "";
}

static int authenticate(struct etcd_store *s, int ep);

/* "http[s]://HOST:PORT/v3/API" of endpoint ep (an IPv6 address in brackets). */
static void
endpoint_url(const struct pgl_etcd_url *u, int ep, const char *api, char *out, size_t len)
{
	bool v6 = strchr(u->host[ep], ':') != NULL;

	snprintf(out, len, "%s://%s%s%s:%d/v3/%s", u->tls ? "https" : "http", v6 ? "[" : "",
			 u->host[ep], v6 ? "]" : "", u->port[ep], api);
}

/* The request's headers: JSON, and the auth token when there is one. */
static struct curl_slist *
request_headers(const char *token)
{
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	char auth[600];

	if (token[0]) {
		snprintf(auth, sizeof(auth), "Authorization: %s", token);
		hdr = curl_slist_append(hdr, auth);
	}
	return hdr;
}

/*
 * An answer other than 200, {"error"|"message", "code"}: errmsg set;
 * -PGL_ECONFIG for refused credentials, -PGL_EINVAL for a refused request,
 * else -PGL_ESTORE (try another endpoint).
 */
static int
gw_refusal(struct etcd_store *s, int ep, json_t *j, long status)
{
	const char *m = gw_message(j);
	json_int_t code = json_integer_value(json_object_get(j, "code"));

	ERR(s, "etcd at %s:%d: %s (HTTP %ld)", s->u.host[ep], s->u.port[ep], m[0] ? m : "error",
		status);
	if (strstr(m, "authentication failed") || strstr(m, "permission denied") ||
		strstr(m, "user name is empty") || code == 7)
		return -PGL_ECONFIG;
	if (code == 3 || code == 11 || status == 400)
		return -PGL_EINVAL;
	return -PGL_ESTORE;
}

/*
 * One POST to one endpoint.  Returns 0 with *resp (an object), or
 * -PGL_ESTORE (unreachable, timed out, etcd refused; try another endpoint),
 * -PGL_ECONFIG (credentials refused), -PGL_EPROTO (not the JSON etcd
 * answers) or -PGL_EINVAL (the request itself was refused), errmsg set.
 */
static int
post_one(struct etcd_store *s, int ep, const char *api, const char *body, json_t **resp,
		 long *status)
{
	char url[400], cerr[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdr;
	struct buf b = { 0 };
	int64_t t = timeout_left(s);
	json_error_t je;
	json_t *j = NULL;
	CURLcode cc;
	int rc = 0;

	*resp = NULL;
	*status = 0;
	if (t <= 0) {
		ERR(s, "no time left for the request to etcd");
		return -PGL_ETIMEOUT;
	}
	endpoint_url(&s->u, ep, api, url, sizeof(url));
	hdr = request_headers(s->token);
	curl_easy_reset(s->curl);
	curl_common(s->curl, &s->u);
	curl_easy_setopt(s->curl, CURLOPT_URL, url);
	curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(s->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(s->curl, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(s->curl, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(s->curl, CURLOPT_TIMEOUT_MS, (long) t);
	curl_easy_setopt(s->curl, CURLOPT_CONNECTTIMEOUT_MS, (long) (t < 1000 ? t : 1000));
	cc = curl_easy_perform(s->curl);
	curl_slist_free_all(hdr);
	if (cc != CURLE_OK) {
		ERR(s, "etcd at %s:%d: %s", s->u.host[ep], s->u.port[ep],
			b.too_big ? "answer larger than 32 MB" : cerr[0] ? cerr : curl_easy_strerror(cc));
		rc = cc == CURLE_OPERATION_TIMEDOUT ? -PGL_ETIMEOUT : -PGL_ESTORE;
		goto out;
	}
	curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, status);
	j = b.p ? json_loadb(b.p, b.n, JSON_DISABLE_EOF_CHECK, &je) : NULL;
	if (!json_is_object(j)) {
		ERR(s, "etcd at %s:%d: malformed answer to /v3/%s (HTTP %ld, %s)", s->u.host[ep],
			s->u.port[ep], api, *status, b.p ? "not a JSON object" : "empty");
		rc = -PGL_EPROTO;
		goto out;
	}
	if (*status != 200) {
		rc = gw_refusal(s, ep, j, *status);
		goto out;
	}
	*resp = j;
	j = NULL;
out:
	json_decref(j);
	free(b.p);
	return rc;
}

/*
 * POSTs req to /v3/api, trying each endpoint once from the last that
 * answered, re-authenticating once when the token expired.  Returns 0 and
 * *resp, or as post_one().
 */
static int
call(struct etcd_store *s, const char *api, json_t *req, json_t **resp)
{
	char *body = json_dumps(req, JSON_COMPACT);
	int rc = -PGL_ESTORE, n = s->u.n_endpoints;
	bool reauth = false;
	long status;

	*resp = NULL;
	if (body == NULL) {
		ERR(s, "out of memory");
		return -PGL_ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		int ep = (s->ep + i) % n;

		rc = post_one(s, ep, api, body, resp, &status);
		if (rc == -PGL_ECONFIG && s->u.user[0] && !reauth && strcmp(api, "auth/authenticate")) {
			/* an expired token: authenticate again once, here */
			reauth = true;
			if ((rc = authenticate(s, ep)) == 0)
				rc = post_one(s, ep, api, body, resp, &status);
		}
		if (rc == 0) {
			s->ep = ep;
			break;
		}
		if (rc != -PGL_ESTORE && rc != -PGL_ETIMEOUT)
			break;
		if (timeout_left(s) <= 0)
			break;
	}
	free(body);
	return rc;
}

/* /v3/auth/authenticate with user and the password file's first line. */
static int
authenticate(struct etcd_store *s, int ep)
{
	json_t *req = json_pack("{ssss}", "name", s->u.user, "password", s->password), *resp;
	const char *tok;
	long status;
	char *body;
	int rc;

	s->token[0] = '\0';
	if (req == NULL || (body = json_dumps(req, JSON_COMPACT)) == NULL) {
		json_decref(req);
		return -PGL_ENOMEM;
	}
	json_decref(req);
	rc = post_one(s, ep, "auth/authenticate", body, &resp, &status);
	free(body);
	if (rc == -PGL_ECONFIG)
		ERR(s, "etcd at %s:%d refused user '%s': bad user name or password (password_file "
			"%s)", s->u.host[ep], s->u.port[ep], s->u.user, s->u.password_file[0] ?
			s->u.password_file : "not set");
	if (rc < 0)
		return rc;
	tok = json_string_value(json_object_get(resp, "token"));
	if (tok == NULL || !pgl_strlcpy(s->token, tok, sizeof(s->token)) ||
		strpbrk(tok, "\r\n")) {
		s->token[0] = '\0';
		ERR(s, "etcd at %s:%d: malformed answer to auth/authenticate (no token)",
			s->u.host[ep], s->u.port[ep]);
		rc = -PGL_EPROTO;
	}
	json_decref(resp);
	return rc;
}

/*
 * Reads the password_file's first line into s->password.  Opened as the
 * replication password is (agent.c): O_NONBLOCK so that a FIFO cannot hang
 * the open, then only a regular file is read (a FIFO or a device would
 * block the read forever).
 */
static int
read_password(struct etcd_store *s, char *err, size_t errlen)
{
	struct stat sb;
	FILE *f = NULL;
	int fd;

	if (!s->u.password_file[0])
		return 0;
	fd = open(s->u.password_file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0 && (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))) {
		close(fd);
		seterr(err, errlen, "%s: password_file %s: not a regular file", s->path,
			   s->u.password_file);
		return -PGL_ECONFIG;
	}
	if (fd >= 0) {
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		if ((f = fdopen(fd, "r")) == NULL)
			close(fd);
	}
	if (f == NULL) {
		seterr(err, errlen, "%s: password_file %s: %s", s->path, s->u.password_file,
			   strerror(errno));
		return -PGL_ECONFIG;
	}
	if (fgets(s->password, sizeof(s->password), f) == NULL)
		s->password[0] = '\0';
	fclose(f);
	s->password[strcspn(s->password, "\r\n")] = '\0';
	return 0;
}

/* ---- keys, values and transactions ---- */

/* base64 of the prefix + name (+ a byte added to the last one: a range's end). */
static char *
key64(const struct etcd_store *s, const char *name, bool range_end)
{
	char k[1024];
	size_t n = (size_t) snprintf(k, sizeof(k), "%s%s", s->u.prefix, name);

	if (n >= sizeof(k))
		return NULL;
	if (range_end)
		k[n - 1]++;
	return b64_encode(k, n);
}

/* An integer of etcd's JSON (int64 as a string, or a number); 0 when absent. */
static bool
jint(json_t *o, const char *k, int64_t *v)
{
	json_t *x = json_object_get(o, k);
	const char *t;
	char *end;

	*v = 0;
	if (x == NULL)
		return true;
	if (json_is_integer(x)) {
		*v = json_integer_value(x);
		return true;
	}
	if ((t = json_string_value(x)) == NULL || *t == '\0')
		return false;
	errno = 0;
	*v = strtoll(t, &end, 10);
	return *end == '\0' && errno == 0;
}

struct kv {
	bool exists;
	bool bad;					/* present, but the value is not a JSON object */
	int64_t create, mod, lease;
	char name[PGL_NAME_MAX + 32];	/* the key after the prefix */
	json_t *val;
};

static void
kv_clear(struct kv *k, int n)
{
	for (int i = 0; i < n; i++) {
		json_decref(k[i].val);
		memset(&k[i], 0, sizeof(k[i]));
	}
}

/* One element of a range's "kvs"; false for one etcd would never send. */
static bool
parse_kv(const struct etcd_store *s, json_t *o, struct kv *k)
{
	const char *key = json_string_value(json_object_get(o, "key"));
	const char *val = json_string_value(json_object_get(o, "value"));
	size_t kn = 0, vn = 0, pl = strlen(s->u.prefix);
	char *kd = key ? b64_decode(key, &kn) : NULL, *vd;
	bool ok = kd && kn == strlen(kd) && kn > pl && strncmp(kd, s->u.prefix, pl) == 0 &&
		kn - pl < sizeof(k->name) && jint(o, "create_revision", &k->create) &&
		jint(o, "mod_revision", &k->mod) && jint(o, "lease", &k->lease);

	memset(k, 0, sizeof(*k));
	if (ok) {
		jint(o, "create_revision", &k->create);
		jint(o, "mod_revision", &k->mod);
		jint(o, "lease", &k->lease);
		pgl_strlcpy(k->name, kd + pl, sizeof(k->name));
	}
	free(kd);
	if (!ok)
		return false;
	k->exists = true;
	vd = val ? b64_decode(val, &vn) : val == NULL ? strdup("") : NULL;
	if (vd == NULL)
		return false;
	k->val = json_loadb(vd, vn, 0, NULL);
	free(vd);
	if (!json_is_object(k->val)) {
		json_decref(k->val);
		k->val = NULL;
		k->bad = true;
	}
	return true;
}

static json_t *
range_op(const struct etcd_store *s, const char *name, bool prefix)
{
	char *k = key64(s, name, false), *e = prefix ? key64(s, name, true) : NULL;
	json_t *r = json_object();

	if (k)
		json_object_set_new(r, "key", json_string(k));
	if (e)
		json_object_set_new(r, "range_end", json_string(e));
	free(k);
	free(e);
	return r;
}

/*
 * Reads the keys names[0..n-1] in one snapshot (a transaction of ranges).
 * Returns 0, or as call(); -PGL_EPROTO for an answer of the wrong shape.
 */
static int
get_keys(struct etcd_store *s, const char *const *names, int n, struct kv *out)
{
	json_t *req = json_object(), *ops = json_array(), *resp = NULL, *rs;
	int rc;

	memset(out, 0, sizeof(*out) * (size_t) n);
	for (int i = 0; i < n; i++)
		json_array_append_new(ops, json_pack("{so}", "request_range", range_op(s, names[i],
																				 false)));
	json_object_set_new(req, "success", ops);
	rc = call(s, "kv/txn", req, &resp);
	json_decref(req);
	if (rc < 0)
		return rc;
	rs = json_object_get(resp, "responses");
	if (json_array_size(rs) != (size_t) n)
		rc = -PGL_EPROTO;
	for (int i = 0; rc == 0 && i < n; i++) {
		json_t *kvs = json_object_get(json_object_get(json_array_get(rs, i),
													  "response_range"), "kvs");

		if (json_array_size(kvs) > 1 || (kvs && !json_is_array(kvs)) ||
			(json_array_size(kvs) == 1 && (!parse_kv(s, json_array_get(kvs, 0), &out[i]) ||
										  strcmp(out[i].name, names[i]) != 0)))
			rc = -PGL_EPROTO;
	}
	if (rc == -PGL_EPROTO) {
		kv_clear(out, n);
		ERR(s, "malformed answer from etcd to a read of %s%s", s->u.prefix, names[0]);
	}
	json_decref(resp);
	return rc;
}

static int
get_key(struct etcd_store *s, const char *name, struct kv *out)
{
	return get_keys(s, &name, 1, out);
}

/* A transaction under construction. */
struct txn {
	json_t *cmp, *ops;
};

static void
txn_init(struct txn *t)
{
	t->cmp = json_array();
	t->ops = json_array();
}

static void
txn_free(struct txn *t)
{
	json_decref(t->cmp);
	json_decref(t->ops);
}

/* Requires name's mod revision to be rev (0: absent). */
static void
cmp_mod(const struct etcd_store *s, struct txn *t, const char *name, int64_t rev)
{
	char *k = key64(s, name, false), r[32];

	snprintf(r, sizeof(r), "%" PRId64, rev);
	json_array_append_new(t->cmp, json_pack("{ssssssss}", "key", k ? k : "", "target", "MOD",
											"result", "EQUAL", "mod_revision", r));
	free(k);
}

/* Puts val (consumed) at name, bound to lease when not 0. */
static void
op_put(const struct etcd_store *s, struct txn *t, const char *name, json_t *val, int64_t lease)
{
	char *text = json_dumps(val, JSON_COMPACT), *v = text ? b64_encode(text, strlen(text)) : NULL;
	char *k = key64(s, name, false);
	json_t *p = json_pack("{ssss}", "key", k ? k : "", "value", v ? v : "");

	if (lease) {
		char l[32];

		snprintf(l, sizeof(l), "%" PRId64, lease);
		json_object_set_new(p, "lease", json_string(l));
	}
	json_array_append_new(t->ops, json_pack("{so}", "request_put", p));
	free(text);
	free(v);
	free(k);
	json_decref(val);
}

static void
op_del(const struct etcd_store *s, struct txn *t, const char *name)
{
	char *k = key64(s, name, false);

	json_array_append_new(t->ops, json_pack("{s{ss}}", "request_delete_range", "key",
											k ? k : ""));
	free(k);
}

/* The time of day for humans. */
static void
now_iso(char *buf)
{
	pgl_wall_iso(buf, PGL_TS_MAX);
}

/* Adds an event put to t. */
static void
op_event(struct etcd_store *s, struct txn *t, int64_t term, const char *node, const char *kind,
		 const char *detail)
{
	static atomic_uint seq;
	char name[96], ts[PGL_TS_MAX];
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(name, sizeof(name), "state/events/%013lld-%08x-%06u",
			 (long long) now.tv_sec * 1000 + now.tv_nsec / 1000000, (unsigned) getpid(),
			 atomic_fetch_add(&seq, 1) % 1000000);
	now_iso(ts);
	op_put(s, t, name, json_pack("{sssIssssss}", "at", ts, "term", (json_int_t) term, "node",
								 node ? node : "", "kind", kind, "detail", detail ? detail : ""),
		   0);
	s->events_written++;
}

/*
 * Commits t: 0 when it applied, -PGL_ECONFLICT when a comparison failed,
 * else as call().  Consumes t.
 */
static int
txn_commit(struct etcd_store *s, struct txn *t)
{
	json_t *req = json_pack("{sOsO}", "compare", t->cmp, "success", t->ops), *resp = NULL;
	int rc = call(s, "kv/txn", req, &resp);

	json_decref(req);
	txn_free(t);
	if (rc == 0 && !json_is_true(json_object_get(resp, "succeeded")))
		rc = -PGL_ECONFLICT;
	json_decref(resp);
	return rc;
}

/* ---- records ---- */

/* Seconds since the ISO time ts by the wall clock; -1 when it does not parse. */
static double
age_of(const char *ts)
{
	struct tm tm = { 0 };
	struct timespec now;
	const char *rest = ts[0] ? strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	double ms = 0;

	if (rest == NULL)
		return -1;
	if (rest[0] == '.' && isdigit((unsigned char) rest[1]))
		ms = strtod(rest, NULL);
	clock_gettime(CLOCK_REALTIME, &now);
	return (double) (now.tv_sec - timegm(&tm)) + now.tv_nsec / 1e9 - ms;
}

static bool
jstr(json_t *o, const char *k, char *dst, size_t len)
{
	json_t *x = json_object_get(o, k);
	const char *v = json_string_value(x);

	dst[0] = '\0';
	if (x == NULL)
		return true;
	return v && strlen(v) == json_string_length(x) && pgl_strlcpy(dst, v, len);
}

static bool
name_or_empty(const char *n)
{
	return n[0] == '\0' || pgl_name_valid(n);
}

static bool
lsn_ok(const char *text, uint64_t *lsn)
{
	*lsn = 0;
	return text[0] == '\0' || pgl_lsn_parse(text, lsn) == 0;
}

/*
 * The lease from state/term and state/leader (see the file's head): the
 * holder is the term's unless it released; it is expired when its leader
 * key is gone.
 */
static int
decode_lease(struct etcd_store *s, const struct kv *term, const struct kv *leader,
			 struct pgl_lease *l)
{
	char lholder[PGL_NAME_MAX];
	int64_t lterm;

	memset(l, 0, sizeof(*l));
	l->store_expires = true;
	l->renewed_age_s = -1;
	if (!term->exists)
		return 0;
	if (term->bad || !jint(term->val, "term", &l->term) || l->term < 0 || l->term > PGL_TERM_MAX ||
		!jstr(term->val, "holder", l->holder, sizeof(l->holder)) || !name_or_empty(l->holder) ||
		!jint(term->val, "ttl_ms", &l->ttl_ms) || l->ttl_ms < 0 ||
		!jstr(term->val, "acquired_at", l->acquired_at, sizeof(l->acquired_at)) ||
		!jstr(term->val, "released_lsn", l->released_lsn, sizeof(l->released_lsn)) ||
		!lsn_ok(l->released_lsn, &l->released_lsn_int)) {
		ERR(s, "%sstate/term is not a pglease lease record", s->u.prefix);
		return -PGL_EPROTO;
	}
	l->has_released_lsn = l->released_lsn[0] != '\0';
	if (json_is_true(json_object_get(term->val, "released")))
		l->holder[0] = '\0';
	else
		l->has_released_lsn = false;
	pgl_strlcpy(l->renewed_at, l->acquired_at, sizeof(l->renewed_at));
	if (l->holder[0] == '\0')
		return 0;
	if (leader->exists && !leader->bad && jint(leader->val, "term", &lterm) &&
		jstr(leader->val, "holder", lholder, sizeof(lholder)) && lterm == l->term &&
		strcmp(lholder, l->holder) == 0)
		return 0;
	l->holder_expired = true;
	return 0;
}

static const char *const state_keys[] = { "state/term", "state/leader", "state/switchover",
	"state/cluster" };
enum { K_TERM, K_LEADER, K_SW, K_CLUSTER, K_N };

/* The lease's two keys (and the others of state_keys) in one snapshot. */
static int
read_state(struct etcd_store *s, struct kv k[K_N], struct pgl_lease *l)
{
	int rc = get_keys(s, state_keys, K_N, k);

	if (rc == 0 && (rc = decode_lease(s, &k[K_TERM], &k[K_LEADER], l)) < 0)
		kv_clear(k, K_N);
	return rc;
}

static int
et_read_lease(struct pgl_store *base, struct pgl_lease *out)
{
	struct kv k[K_N];
	int rc = read_state(es(base), k, out);

	kv_clear(k, K_N);
	return rc;
}

static int
decode_cluster(struct etcd_store *s, const struct kv *k, struct pgl_cluster *c)
{
	int64_t fmt = 0;

	memset(c, 0, sizeof(*c));
	if (!k->exists) {
		ERR(s, "%s: no pglease cluster under %s", s->path, s->u.prefix);
		return -PGL_ENOENT;
	}
	if (k->bad || !jint(k->val, "pglease", &fmt) || fmt < 1 ||
		!jstr(k->val, "name", c->name, sizeof(c->name)) ||
		!jstr(k->val, "system_identifier", c->system_identifier, sizeof(c->system_identifier)) ||
		!jstr(k->val, "created_at", c->created_at, sizeof(c->created_at))) {
		ERR(s, "%s: %sstate/cluster is not a pglease cluster record: the prefix holds a "
			"foreign cluster", s->path, s->u.prefix);
		return -PGL_EFOREIGN;
	}
	if (fmt > FORMAT_VERSION) {
		ERR(s, "%s: the cluster was written by a newer pglease (format %lld; this one "
			"knows %d)", s->path, (long long) fmt, FORMAT_VERSION);
		return -PGL_ENEWER;
	}
	if (strcmp(c->name, s->u.cluster) != 0) {
		ERR(s, "%s: %s holds cluster '%s', not '%s': a foreign cluster", s->path,
			s->u.prefix, c->name, s->u.cluster);
		return -PGL_EFOREIGN;
	}
	c->paused = json_is_true(json_object_get(k->val, "paused"));
	return 0;
}

static int
et_read_cluster(struct pgl_store *base, struct pgl_cluster *out)
{
	struct etcd_store *s = es(base);
	struct kv k;
	int rc = get_key(s, "state/cluster", &k);

	if (rc == 0)
		rc = decode_cluster(s, &k, out);
	kv_clear(&k, 1);
	return rc;
}

static json_t *
cluster_json(const struct pgl_cluster *c)
{
	return json_pack("{sisssssssb}", "pglease", FORMAT_VERSION, "name", c->name,
					 "system_identifier", c->system_identifier, "created_at", c->created_at,
					 "paused", c->paused);
}

static json_t *
term_json(int64_t term, const char *holder, int64_t ttl_ms, const char *acquired_at,
		  bool released, const char *lsn)
{
	return json_pack("{sIsssIsssbss}", "term", (json_int_t) term, "holder", holder, "ttl_ms",
					 (json_int_t) ttl_ms, "acquired_at", acquired_at, "released", released,
					 "released_lsn", lsn ? lsn : "");
}

/* ---- nodes ---- */

/*
 * A node's record; a copy under way adds progress_op, progress_done_kb,
 * progress_total_kb and progress_elapsed_ms (the keys of the SQLite
 * backend's records), none of them when there is none.
 */
static json_t *
node_json(const struct pgl_node *n)
{
	const struct pgl_progress *p = &n->progress;
	json_t *o = json_pack("{sssssssssssIsssssIsIss}", "name", n->name, "conninfo", n->conninfo,
						  "role", n->role, "state", n->state, "upstream", n->upstream,
						  "timeline", (json_int_t) n->timeline, "receive_lsn", n->receive_lsn,
						  "replay_lsn", n->replay_lsn, "priority", (json_int_t) n->priority,
						  "heartbeat", (json_int_t) n->heartbeat, "updated_at", n->updated_at);

	if (o == NULL || p->op == PGL_PROGRESS_NONE || !pgl_progress_valid(p))
		return o;
	if (json_object_set_new(o, "progress_op", json_string(pgl_progress_op_name(p->op))) != 0 ||
		json_object_set_new(o, "progress_done_kb", json_integer(p->done_kb)) != 0 ||
		json_object_set_new(o, "progress_total_kb", json_integer(p->total_kb)) != 0 ||
		json_object_set_new(o, "progress_elapsed_ms", json_integer(p->elapsed_ms)) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* A count of a record: absent or null is 0, else a JSON integer >= 0. */
static bool
jcount(json_t *o, const char *k, int64_t *v)
{
	json_t *x = json_object_get(o, k);

	*v = 0;
	if (x == NULL || json_is_null(x))
		return true;
	if (!json_is_integer(x) || json_integer_value(x) < 0)
		return false;
	*v = json_integer_value(x);
	return true;
}

/*
 * The copy progress of a node's record: absent (or null) is none; present,
 * it must name an operation, and its figures be integers within
 * pgl_progress_valid()'s bounds (as the SQLite backend reads them).
 */
static bool
decode_progress(json_t *o, struct pgl_progress *p)
{
	json_t *x = json_object_get(o, "progress_op");
	char op[16] = "";

	memset(p, 0, sizeof(*p));
	if (x != NULL && !json_is_null(x) && !jstr(o, "progress_op", op, sizeof(op)))
		return false;
	return pgl_progress_op_parse(op, &p->op) &&
		jcount(o, "progress_done_kb", &p->done_kb) &&
		jcount(o, "progress_total_kb", &p->total_kb) &&
		jcount(o, "progress_elapsed_ms", &p->elapsed_ms) && pgl_progress_valid(p);
}

/*
 * A node row from its key, validated as the SQLite backend validates its
 * rows (name, role, upstream, counters, LSNs; the conninfo reduced to host
 * and port).  False for one that must not be used.
 */
static bool
decode_node(const struct kv *k, struct pgl_node *n)
{
	json_t *o = k->val;
	char ci[512], host[256];
	int port;

	memset(n, 0, sizeof(*n));
	if (k->bad || strncmp(k->name, "nodes/", 6) != 0 ||
		!jstr(o, "name", n->name, sizeof(n->name)) || !pgl_name_valid(n->name) ||
		strcmp(k->name + 6, n->name) != 0 || !jstr(o, "conninfo", ci, sizeof(ci)) ||
		!jstr(o, "role", n->role, sizeof(n->role)) ||
		!jstr(o, "state", n->state, sizeof(n->state)) ||
		!jstr(o, "upstream", n->upstream, sizeof(n->upstream)) || !name_or_empty(n->upstream) ||
		!jint(o, "timeline", &n->timeline) || n->timeline < 0 ||
		!jstr(o, "receive_lsn", n->receive_lsn, sizeof(n->receive_lsn)) ||
		!lsn_ok(n->receive_lsn, &n->receive_lsn_int) ||
		!jstr(o, "replay_lsn", n->replay_lsn, sizeof(n->replay_lsn)) ||
		!lsn_ok(n->replay_lsn, &n->replay_lsn_int) ||
		!jint(o, "priority", &n->priority) || n->priority < 0 ||
		!jint(o, "heartbeat", &n->heartbeat) || n->heartbeat < 0 ||
		!jstr(o, "updated_at", n->updated_at, sizeof(n->updated_at)) ||
		!decode_progress(o, &n->progress))
		return false;
	if (strcmp(n->role, "primary") != 0 && strcmp(n->role, "standby") != 0 &&
		strcmp(n->role, "unknown") != 0)
		return false;
	if (pgl_conninfo_host_port(ci, host, sizeof(host), &port) == 0)
		pgl_conninfo_format(host, port, n->conninfo, sizeof(n->conninfo));
	n->age_s = age_of(n->updated_at);
	return true;
}

static int
et_node_upsert(struct pgl_store *base, const struct pgl_node *in)
{
	struct etcd_store *s = es(base);
	struct pgl_node n = *in;
	char name[PGL_NAME_MAX + 8], host[256];
	struct txn t;
	int port, rc;

	if (s->rdonly || !pgl_name_valid(in->name))
		return -PGL_EINVAL;
	s->errmsg[0] = '\0';
	if (in->role[0] && strcmp(in->role, "primary") != 0 && strcmp(in->role, "standby") != 0 &&
		strcmp(in->role, "unknown") != 0) {
		ERR(s, "invalid role '%s' for node %s", in->role, in->name);
		return -PGL_ESTORE;
	}
	if (!n.role[0])
		pgl_strlcpy(n.role, "unknown", sizeof(n.role));
	snprintf(name, sizeof(name), "nodes/%s", in->name);
	if (s->heartbeat < 0 || strcmp(s->hb_name, in->name) != 0) {
		struct kv k;
		struct pgl_node old;

		if ((rc = get_key(s, name, &k)) < 0)
			return rc;
		s->heartbeat = k.exists && decode_node(&k, &old) ? old.heartbeat : 0;
		pgl_strlcpy(s->hb_name, in->name, sizeof(s->hb_name));
		kv_clear(&k, 1);
	}
	n.conninfo[0] = '\0';
	if (pgl_conninfo_host_port(in->conninfo, host, sizeof(host), &port) == 0)
		pgl_conninfo_format(host, port, n.conninfo, sizeof(n.conninfo));
	n.heartbeat = s->heartbeat + 1;
	now_iso(n.updated_at);
	txn_init(&t);
	op_put(s, &t, name, node_json(&n), 0);
	if ((rc = txn_commit(s, &t)) == 0)
		s->heartbeat = n.heartbeat;
	return rc;
}

static int
cmp_node(const void *a, const void *b)
{
	return strcmp(((const struct pgl_node *) a)->name, ((const struct pgl_node *) b)->name);
}

/*
 * Reads every key under name (a prefix) into a fresh array of kvs, ordered
 * as opts asks ("sort_target"/"sort_order"/"limit"/"min_create_revision").
 */
static int
range_all(struct etcd_store *s, const char *name, json_t *opts, struct kv **out, int *count)
{
	json_t *req = range_op(s, name, true), *resp = NULL, *kvs;
	struct kv *arr;
	size_t n;
	int rc;

	*out = NULL;
	*count = 0;
	if (opts)
		json_object_update(req, opts);
	rc = call(s, "kv/range", req, &resp);
	json_decref(req);
	if (rc < 0)
		return rc;
	kvs = json_object_get(resp, "kvs");
	n = json_array_size(kvs);
	if (kvs && !json_is_array(kvs)) {
		json_decref(resp);
		ERR(s, "malformed answer from etcd to a read of %s%s", s->u.prefix, name);
		return -PGL_EPROTO;
	}
	if ((arr = calloc(n ? n : 1, sizeof(*arr))) == NULL) {
		json_decref(resp);
		return -PGL_ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		if (!parse_kv(s, json_array_get(kvs, i), &arr[i])) {
			kv_clear(arr, (int) n);
			free(arr);
			json_decref(resp);
			ERR(s, "malformed answer from etcd to a read of %s%s", s->u.prefix, name);
			return -PGL_EPROTO;
		}
	json_decref(resp);
	*out = arr;
	*count = (int) n;
	return 0;
}

static int
et_list_nodes(struct pgl_store *base, struct pgl_node **out, int *count)
{
	struct etcd_store *s = es(base);
	struct pgl_node *arr;
	struct kv *k;
	int n, m = 0, bad = 0, rc;

	*out = NULL;
	*count = 0;
	if ((rc = range_all(s, "nodes/", NULL, &k, &n)) < 0)
		return rc;
	if ((arr = calloc(n ? (size_t) n : 1, sizeof(*arr))) == NULL) {
		kv_clear(k, n);
		free(k);
		return -PGL_ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		if (decode_node(&k[i], &arr[m]))
			m++;
		else
			bad++;
	}
	kv_clear(k, n);
	free(k);
	if (bad)
		pgl_log_debug("%snodes/: ignoring %d invalid node key%s", s->u.prefix, bad,
					  bad == 1 ? "" : "s");
	if (m > 1)
		qsort(arr, (size_t) m, sizeof(*arr), cmp_node);
	*out = arr;
	*count = m;
	return 0;
}

static int
et_get_node(struct pgl_store *base, const char *name, struct pgl_node *out)
{
	struct etcd_store *s = es(base);
	char key[PGL_NAME_MAX + 8];
	struct kv k;
	int rc;

	if (!pgl_name_valid(name))
		return -PGL_EINVAL;
	snprintf(key, sizeof(key), "nodes/%s", name);
	if ((rc = get_key(s, key, &k)) < 0)
		return rc;
	rc = !k.exists ? -PGL_ENOENT : decode_node(&k, out) ? 0 : -PGL_EPROTO;
	if (rc == -PGL_EPROTO)
		ERR(s, "%s%s is not a valid node record", s->u.prefix, key);
	kv_clear(&k, 1);
	return rc;
}

/* ---- the lease ---- */

/* etcd's lease for ttl_ms: whole seconds, rounded up, at least 2. */
static int64_t
etcd_ttl_s(int64_t ttl_ms)
{
	int64_t s = (ttl_ms + 999) / 1000;

	return s < 2 ? 2 : s;
}

static int
lease_grant(struct etcd_store *s, int64_t ttl_ms, int64_t *id)
{
	json_t *req = json_pack("{sI}", "TTL", (json_int_t) etcd_ttl_s(ttl_ms)), *resp = NULL;
	const char *e;
	int rc = call(s, "lease/grant", req, &resp);

	json_decref(req);
	if (rc == 0 && (e = json_string_value(json_object_get(resp, "error"))) && *e) {
		ERR(s, "etcd refused a lease: %s", e);
		rc = -PGL_ESTORE;
	} else if (rc == 0 && (!jint(resp, "ID", id) || *id == 0)) {
		ERR(s, "malformed answer from etcd to lease/grant (no ID)");
		rc = -PGL_EPROTO;
	}
	json_decref(resp);
	return rc;
}

/* Best effort: a lease left behind expires by itself. */
static void
lease_revoke(struct etcd_store *s, int64_t id)
{
	json_t *req, *resp = NULL;

	if (id == 0)
		return;
	req = json_pack("{sI}", "ID", (json_int_t) id);
	if (call(s, "lease/revoke", req, &resp) < 0)
		pgl_log_debug("revoking etcd lease %" PRIx64 ": %s", (uint64_t) id, s->errmsg);
	json_decref(req);
	json_decref(resp);
}

/* One keepalive: 0 with *ttl_s (0: the lease is gone), or as call(). */
static int
lease_keepalive(struct etcd_store *s, int64_t id, int64_t *ttl_s)
{
	json_t *req = json_pack("{sI}", "ID", (json_int_t) id), *resp = NULL, *r;
	int rc = call(s, "lease/keepalive", req, &resp);

	json_decref(req);
	*ttl_s = 0;
	if (rc == 0) {
		r = json_object_get(resp, "result");
		if (!json_is_object(r) || !jint(r, "TTL", ttl_s)) {
			const char *m = gw_message(json_object_get(resp, "error"));

			ERR(s, "etcd keepalive failed: %s", m[0] ? m : "malformed answer");
			rc = m[0] ? -PGL_ESTORE : -PGL_EPROTO;
		}
	}
	json_decref(resp);
	return rc;
}

static int
et_claim(struct pgl_store *base, const struct pgl_lease *seen, const char *me, int64_t ttl_ms,
		 const char *detail, int64_t *new_term)
{
	struct etcd_store *s = es(base);
	struct pgl_lease cur;
	struct kv k[K_N];
	char ts[PGL_TS_MAX], lholder[PGL_NAME_MAX] = "";
	int64_t id = 0, old_id = 0;
	struct txn t;
	int rc;

	if (s->rdonly || !pgl_name_valid(me))
		return -PGL_EINVAL;
	if ((rc = read_state(s, k, &cur)) < 0)
		return rc;
	if (cur.term != seen->term || strcmp(cur.holder, seen->holder) != 0) {
		ERR(s, "the lease changed meanwhile (term %lld, holder %s)", (long long) cur.term,
			cur.holder[0] ? cur.holder : "none");
		rc = -PGL_ECONFLICT;
		goto out;
	}
	if (k[K_LEADER].exists) {
		if (!k[K_LEADER].bad)
			jstr(k[K_LEADER].val, "holder", lholder, sizeof(lholder));
		if (strcmp(lholder, me) != 0) {
			ERR(s, "the holder's lease is still alive in etcd (%sstate/leader exists)",
				s->u.prefix);
			rc = -PGL_ECONFLICT;
			goto out;
		}
		old_id = k[K_LEADER].lease;	/* this node's previous incarnation */
	}
	if ((rc = lease_grant(s, ttl_ms, &id)) < 0)
		goto out;
	now_iso(ts);
	txn_init(&t);
	cmp_mod(s, &t, "state/term", k[K_TERM].mod);
	cmp_mod(s, &t, "state/leader", k[K_LEADER].mod);
	op_put(s, &t, "state/leader", json_pack("{sssI}", "holder", me, "term",
											(json_int_t) (cur.term + 1)), id);
	op_put(s, &t, "state/term", term_json(cur.term + 1, me, ttl_ms, ts, false, NULL), 0);
	op_event(s, &t, cur.term + 1, me, "acquired", detail);
	if ((rc = txn_commit(s, &t)) < 0) {
		lease_revoke(s, id);
		if (rc == -PGL_ECONFLICT)
			ERR(s, "the lease changed meanwhile (another node claimed term %lld first)",
				(long long) cur.term + 1);
		goto out;
	}
	if (old_id && old_id != id)
		lease_revoke(s, old_id);
	s->lease_id = id;
	s->lease_term = cur.term + 1;
	s->renewals = 0;
	if (new_term)
		*new_term = cur.term + 1;
out:
	kv_clear(k, K_N);
	return rc;
}

/*
 * Reads state/leader: 0 and *lease (its etcd lease) when it names me at
 * term, -PGL_ENOTHOLDER (errmsg says whose it is) when not, or as get_key().
 */
static int
leader_lease(struct etcd_store *s, const char *me, int64_t term, int64_t *lease)
{
	char holder[PGL_NAME_MAX] = "";
	int64_t lterm = 0;
	struct kv k;
	int rc = get_key(s, "state/leader", &k);

	*lease = 0;
	if (rc < 0)
		return rc;
	if (k.exists && !k.bad) {
		jstr(k.val, "holder", holder, sizeof(holder));
		jint(k.val, "term", &lterm);
	}
	if (strcmp(holder, me) == 0 && lterm == term)
		*lease = k.lease;
	else {
		ERR(s, "the lease is no longer %s's at term %lld (leader key: %s, term %lld)", me,
			(long long) term, holder[0] ? holder : "none", (long long) lterm);
		rc = -PGL_ENOTHOLDER;
	}
	kv_clear(&k, 1);
	return rc;
}

/*
 * A keepalive of this term's etcd lease, then a read of state/leader: it
 * must still name me, term and that etcd lease.  Counts only when confirmed
 * before wait_until_ms (the current fence deadline).
 */
static int
et_renew(struct pgl_store *base, const char *me, int64_t term, int64_t t0_ms, int64_t ttl_ms,
		 int64_t margin_ms, int64_t wait_until_ms, int64_t *deadline_ms, int64_t *renewals)
{
	struct etcd_store *s = es(base);
	int64_t ttl_s = 0, lease = 0;
	int rc;

	if (s->rdonly || !pgl_name_valid(me))
		return -PGL_EINVAL;
	if (wait_until_ms - pgl_mono_ms() <= 0) {
		ERR(s, "no time left before the fence deadline");
		return -PGL_ETIMEOUT;
	}
	s->until_ms = wait_until_ms;
	if (s->lease_term != term || s->lease_id == 0) {
		/* a term claimed by another handle (or before a restart): find its etcd lease */
		rc = leader_lease(s, me, term, &s->lease_id);
		s->lease_term = term;
		if (rc < 0)
			goto out;
	}
	if ((rc = lease_keepalive(s, s->lease_id, &ttl_s)) < 0)
		goto out;
	if (ttl_s <= 0) {
		ERR(s, "etcd expired the lease of term %lld", (long long) term);
		rc = -PGL_ENOTHOLDER;
		goto out;
	}
	if ((rc = leader_lease(s, me, term, &lease)) == 0 && lease != s->lease_id) {
		ERR(s, "the leader key of term %lld is bound to another etcd lease", (long long) term);
		rc = -PGL_ENOTHOLDER;
	}
	if (rc == 0 && pgl_mono_ms() >= wait_until_ms) {
		ERR(s, "renewal confirmed only after the fence deadline; not counted");
		rc = -PGL_ETIMEOUT;
	}
	if (rc == 0) {
		*deadline_ms = t0_ms + ttl_ms - margin_ms;
		if (renewals)
			*renewals = ++s->renewals;
	}
out:
	s->until_ms = 0;
	return rc;
}

static int
et_release(struct pgl_store *base, const char *me, int64_t term, const char *lsn_text,
		   const char *detail)
{
	struct etcd_store *s = es(base);
	struct pgl_lease cur;
	struct kv k[K_N];
	char ts_holder[PGL_NAME_MAX] = "", acq[PGL_TS_MAX] = "";
	int64_t ttl_ms = 0, id;
	uint64_t lsn = 0;
	struct txn t;
	int rc;

	if (s->rdonly || (lsn_text && pgl_lsn_parse(lsn_text, &lsn) < 0))
		return -PGL_EINVAL;
	if ((rc = read_state(s, k, &cur)) < 0)
		return rc;
	if (k[K_TERM].val) {
		jstr(k[K_TERM].val, "holder", ts_holder, sizeof(ts_holder));
		jstr(k[K_TERM].val, "acquired_at", acq, sizeof(acq));
		jint(k[K_TERM].val, "ttl_ms", &ttl_ms);
	}
	if (cur.term != term || strcmp(cur.holder, me) != 0) {
		ERR(s, "the lease is no longer %s's at term %lld", me, (long long) term);
		rc = -PGL_ENOTHOLDER;
		goto out;
	}
	id = k[K_LEADER].lease;
	txn_init(&t);
	cmp_mod(s, &t, "state/term", k[K_TERM].mod);
	cmp_mod(s, &t, "state/leader", k[K_LEADER].mod);
	if (k[K_LEADER].exists)
		op_del(s, &t, "state/leader");
	op_put(s, &t, "state/term", term_json(term, me, ttl_ms, acq, true, lsn_text), 0);
	op_event(s, &t, term, me, "released", detail);
	rc = txn_commit(s, &t);
	if (rc == -PGL_ECONFLICT)
		rc = -PGL_ENOTHOLDER;
	if (rc == 0) {
		lease_revoke(s, id);
		s->lease_id = 0;
		s->lease_term = 0;
	}
out:
	kv_clear(k, K_N);
	return rc;
}

/* ---- node removal, events ---- */

static int
et_remove_node(struct pgl_store *base, const char *name, int64_t term)
{
	struct etcd_store *s = es(base);
	const char *names[K_N + 1];
	char key[PGL_NAME_MAX + 8];
	struct kv k[K_N + 1];
	struct pgl_lease l;
	struct txn t;
	int rc;

	if (s->rdonly || !pgl_name_valid(name))
		return -PGL_EINVAL;
	snprintf(key, sizeof(key), "nodes/%s", name);
	memcpy(names, state_keys, sizeof(state_keys));
	names[K_N] = key;
	if ((rc = get_keys(s, names, K_N + 1, k)) < 0)
		return rc;
	if ((rc = decode_lease(s, &k[K_TERM], &k[K_LEADER], &l)) < 0)
		goto out;
	/* the holder is never forgotten, expired or not */
	if (strcmp(l.holder, name) == 0) {
		rc = -PGL_ECONFLICT;
		goto out;
	}
	if (!k[K_N].exists) {
		rc = -PGL_ENOENT;
		goto out;
	}
	txn_init(&t);
	cmp_mod(s, &t, "state/term", k[K_TERM].mod);
	cmp_mod(s, &t, key, k[K_N].mod);
	op_del(s, &t, key);
	op_event(s, &t, term, name, "removed", "node forgotten; its slot is dropped");
	rc = txn_commit(s, &t);
out:
	kv_clear(k, K_N + 1);
	return rc;
}

/* Every 100 events written, the oldest beyond EVENTS_KEPT are deleted. */
static void
trim_events(struct etcd_store *s)
{
	json_t *opts, *req, *resp = NULL;
	int64_t total = 0;
	struct kv *k;
	int n;

	if (s->events_written < 100)
		return;
	s->events_written = 0;
	req = range_op(s, "state/events/", true);
	json_object_set_new(req, "count_only", json_true());
	if (call(s, "kv/range", req, &resp) == 0)
		jint(resp, "count", &total);
	json_decref(req);
	json_decref(resp);
	if (total <= EVENTS_KEPT)
		return;
	opts = json_pack("{sssssIsb}", "sort_target", "CREATE", "sort_order", "ASCEND", "limit",
					 (json_int_t) (total - EVENTS_KEPT), "keys_only", 1);
	if (range_all(s, "state/events/", opts, &k, &n) == 0) {
		struct txn t;

		txn_init(&t);
		for (int i = 0; i < n; i++)
			op_del(s, &t, k[i].name);
		if (txn_commit(s, &t) < 0)
			pgl_log_debug("trimming events: %s", s->errmsg);
		kv_clear(k, n);
		free(k);
	}
	json_decref(opts);
}

static int
et_event(struct pgl_store *base, int64_t term, const char *node, const char *kind,
		 const char *detail)
{
	struct etcd_store *s = es(base);
	struct txn t;
	int rc;

	if (s->rdonly)
		return -PGL_EINVAL;
	txn_init(&t);
	op_event(s, &t, term, node, kind, detail);
	if ((rc = txn_commit(s, &t)) == 0)
		trim_events(s);
	return rc;
}

static int
collect_events(struct etcd_store *s, json_t *opts, bool reverse, struct pgl_event **out,
			   int *count)
{
	struct pgl_event *arr;
	struct kv *k;
	int n, m = 0, rc;

	*out = NULL;
	*count = 0;
	rc = range_all(s, "state/events/", opts, &k, &n);
	json_decref(opts);
	if (rc < 0)
		return rc;
	if ((arr = calloc(n ? (size_t) n : 1, sizeof(*arr))) == NULL) {
		kv_clear(k, n);
		free(k);
		return -PGL_ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		struct kv *e = &k[reverse ? n - 1 - i : i];
		struct pgl_event *ev = &arr[m];

		if (e->bad || !jstr(e->val, "at", ev->at, sizeof(ev->at)) ||
			!jint(e->val, "term", &ev->term) ||
			!jstr(e->val, "node", ev->node, sizeof(ev->node)) ||
			!jstr(e->val, "kind", ev->kind, sizeof(ev->kind)) || !ev->kind[0])
			continue;
		if (!jstr(e->val, "detail", ev->detail, sizeof(ev->detail)))
			ev->detail[0] = '\0';
		ev->id = e->create;
		m++;
	}
	kv_clear(k, n);
	free(k);
	*out = arr;
	*count = m;
	return 0;
}

static int
et_list_events(struct pgl_store *base, int n, struct pgl_event **out, int *count)
{
	return collect_events(es(base), json_pack("{sssssI}", "sort_target", "CREATE",
											  "sort_order", "DESCEND", "limit",
											  (json_int_t) (n > 0 ? n : 1)), true, out, count);
}

static int
et_events_after(struct pgl_store *base, int64_t after_id, struct pgl_event **out, int *count)
{
	return collect_events(es(base), json_pack("{sssssI}", "sort_target", "CREATE",
											  "sort_order", "ASCEND", "min_create_revision",
											  (json_int_t) (after_id + 1)), false, out, count);
}

/* ---- the cluster key: pause, system identifier ---- */

/*
 * Rewrites state/cluster through fn (which may refuse with a code), with an
 * event when kind is set; retried while other writers win the race.
 */
static int
update_cluster(struct etcd_store *s, int (*fn)(struct pgl_cluster *c, const void *arg),
			   const void *arg, const char *node, const char *kind)
{
	for (int attempt = 0; attempt < 10; attempt++) {
		struct pgl_cluster c;
		struct pgl_lease l;
		struct kv k[K_N];
		struct txn t;
		int rc;

		if ((rc = read_state(s, k, &l)) < 0)
			return rc;
		if ((rc = decode_cluster(s, &k[K_CLUSTER], &c)) < 0 || (rc = fn(&c, arg)) != 0) {
			kv_clear(k, K_N);
			return rc < 0 ? rc : 0;
		}
		txn_init(&t);
		cmp_mod(s, &t, "state/cluster", k[K_CLUSTER].mod);
		op_put(s, &t, "state/cluster", cluster_json(&c), 0);
		if (kind)
			op_event(s, &t, l.term, node, kind, NULL);
		kv_clear(k, K_N);
		if ((rc = txn_commit(s, &t)) != -PGL_ECONFLICT)
			return rc;
	}
	ERR(s, "state/cluster kept changing; gave up");
	return -PGL_EBUSY;
}

static int
set_paused_fn(struct pgl_cluster *c, const void *arg)
{
	c->paused = *(const bool *) arg;
	return 0;
}

static int
et_set_paused(struct pgl_store *base, bool paused, const char *node)
{
	if (es(base)->rdonly)
		return -PGL_EINVAL;
	return update_cluster(es(base), set_paused_fn, &paused, node,
						  paused ? "paused" : "resumed");
}

/* 1: already set to this one (nothing to write). */
static int
set_sysid_fn(struct pgl_cluster *c, const void *arg)
{
	const char *sysid = arg;

	if (c->system_identifier[0])
		return strcmp(c->system_identifier, sysid) == 0 ? 1 : -PGL_ECONFLICT;
	return pgl_strlcpy(c->system_identifier, sysid, sizeof(c->system_identifier)) ? 0
		: -PGL_EINVAL;
}

static int
et_set_sysid(struct pgl_store *base, const char *sysid)
{
	if (es(base)->rdonly)
		return -PGL_EINVAL;
	return update_cluster(es(base), set_sysid_fn, sysid, NULL, NULL);
}

/* ---- switchover ---- */

static bool
sw_parse(const char *t, enum pgl_sw_state *st)
{
	for (int i = PGL_SW_NONE; i <= PGL_SW_FAILED; i++)
		if (strcmp(pgl_sw_state_name((enum pgl_sw_state) i), t) == 0) {
			*st = (enum pgl_sw_state) i;
			return true;
		}
	return false;
}

static int
decode_switchover(struct etcd_store *s, const struct kv *k, struct pgl_switchover *w)
{
	char state[32];

	memset(w, 0, sizeof(*w));
	w->age_s = -1;
	if (!k->exists)
		return 0;
	if (k->bad || !jint(k->val, "seq", &w->seq) || w->seq < 0 ||
		!jint(k->val, "term", &w->term) ||
		!jstr(k->val, "target", w->target, sizeof(w->target)) || !name_or_empty(w->target) ||
		!jstr(k->val, "requested_by", w->requested_by, sizeof(w->requested_by)) ||
		!jstr(k->val, "requested_at", w->requested_at, sizeof(w->requested_at)) ||
		!jint(k->val, "timeout_ms", &w->timeout_ms) ||
		!jstr(k->val, "state", state, sizeof(state)) || !sw_parse(state, &w->state) ||
		!jstr(k->val, "detail", w->detail, sizeof(w->detail))) {
		ERR(s, "%sstate/switchover is not a pglease switchover record", s->u.prefix);
		return -PGL_EPROTO;
	}
	w->failover = json_is_true(json_object_get(k->val, "failover"));
	if (w->seq > 0)
		w->age_s = age_of(w->requested_at);
	return 0;
}

static json_t *
switchover_json(const struct pgl_switchover *w)
{
	return json_pack("{sIsbsIsssssssIssss}", "seq", (json_int_t) w->seq, "failover",
					 w->failover, "term", (json_int_t) w->term, "target", w->target,
					 "requested_by", w->requested_by, "requested_at", w->requested_at,
					 "timeout_ms", (json_int_t) w->timeout_ms, "state",
					 pgl_sw_state_name(w->state), "detail", w->detail);
}

static int
et_read_switchover(struct pgl_store *base, struct pgl_switchover *out)
{
	struct etcd_store *s = es(base);
	struct kv k;
	int rc = get_key(s, "state/switchover", &k);

	if (rc == 0)
		rc = decode_switchover(s, &k, out);
	kv_clear(&k, 1);
	return rc;
}

static int
et_request_switchover(struct pgl_store *base, const struct pgl_switchover *req, int64_t *seq)
{
	struct etcd_store *s = es(base);
	struct pgl_switchover w, nw;
	struct pgl_lease l;
	struct kv k[K_N];
	char detail[512];
	struct txn t;
	int rc;

	if (s->rdonly)
		return -PGL_EINVAL;
	if ((rc = read_state(s, k, &l)) < 0)
		return rc;
	if ((rc = decode_switchover(s, &k[K_SW], &w)) < 0)
		goto out;
	if (l.term != req->term || (!req->failover && (!l.holder[0] || l.holder_expired))) {
		ERR(s, "the lease changed meanwhile (term %lld, holder %s)", (long long) l.term,
			l.holder[0] ? l.holder : "none");
		rc = -PGL_ECONFLICT;
		goto out;
	}
	if (pgl_sw_pending(&w, l.term)) {
		ERR(s, "%s %lld (requested by %s at %s) is still under way",
			w.failover ? "failover" : "switchover", (long long) w.seq, w.requested_by,
			w.requested_at);
		rc = -PGL_ECONFLICT;
		goto out;
	}
	nw = *req;
	nw.seq = w.seq + 1;
	nw.term = l.term;
	nw.state = req->failover ? PGL_SW_HANDING_OVER : PGL_SW_REQUESTED;
	nw.detail[0] = '\0';
	now_iso(nw.requested_at);
	snprintf(detail, sizeof(detail), "request %lld by %s: from %s to %s, timeout %lld ms",
			 (long long) nw.seq, req->requested_by, l.holder[0] ? l.holder : "no primary",
			 req->target[0] ? req->target : "the best standby", (long long) req->timeout_ms);
	txn_init(&t);
	cmp_mod(s, &t, "state/term", k[K_TERM].mod);
	cmp_mod(s, &t, "state/switchover", k[K_SW].mod);
	op_put(s, &t, "state/switchover", switchover_json(&nw), 0);
	op_event(s, &t, l.term, req->target, req->failover ? "failover-requested"
			 : "switchover-requested", detail);
	if ((rc = txn_commit(s, &t)) == 0)
		*seq = nw.seq;
	else if (rc == -PGL_ECONFLICT)
		ERR(s, "the lease or another request changed meanwhile; try again");
out:
	kv_clear(k, K_N);
	return rc;
}

static int
et_set_switchover(struct pgl_store *base, int64_t seq, enum pgl_sw_state state,
				  const char *target, const char *node, const char *detail)
{
	struct etcd_store *s = es(base);
	struct pgl_switchover w;
	struct pgl_lease l;
	struct kv k[K_N];
	char kind[48];
	struct txn t;
	int rc;

	if (s->rdonly || state < PGL_SW_NONE || state > PGL_SW_FAILED)
		return -PGL_EINVAL;
	if ((rc = read_state(s, k, &l)) < 0)
		return rc;
	if ((rc = decode_switchover(s, &k[K_SW], &w)) < 0)
		goto out;
	if (w.seq != seq || w.state == PGL_SW_DONE || w.state == PGL_SW_FAILED) {
		ERR(s, "request %lld is no longer current (the key holds request %lld, %s)",
			(long long) seq, (long long) w.seq, pgl_sw_state_name(w.state));
		rc = -PGL_ECONFLICT;
		goto out;
	}
	w.state = state;
	if (target && *target)
		pgl_strlcpy(w.target, target, sizeof(w.target));
	pgl_strlcpy(w.detail, detail ? detail : "", sizeof(w.detail));
	snprintf(kind, sizeof(kind), "%s-%s", w.failover ? "failover" : "switchover",
			 pgl_sw_state_name(state));
	txn_init(&t);
	cmp_mod(s, &t, "state/switchover", k[K_SW].mod);
	op_put(s, &t, "state/switchover", switchover_json(&w), 0);
	op_event(s, &t, l.term, node, kind, detail);
	rc = txn_commit(s, &t);
out:
	kv_clear(k, K_N);
	return rc;
}

/* ---- the watch: a thread streaming /v3/watch on state/ ---- */

struct etcd_watch {
	struct etcd_store *s;		/* the handle that opened the watch */
	struct etcd_store own;		/* the thread's own copy: URL, credentials, curl */
	pthread_t thread;
	int wfd;					/* the pipe's write end */
	atomic_bool stop;
	atomic_llong changes;		/* data_version: bumped by every message */
	int64_t last_data_ms;
	bool stream_error;			/* the stream carried an error (an expired token?) */
};

static void
wake(struct etcd_watch *w)
{
	atomic_fetch_add(&w->changes, 1);
	if (write(w->wfd, "x", 1) < 0) {
		/* a full pipe already wakes the reader */
	}
}

static size_t
on_watch_data(char *data, size_t size, size_t nmemb, void *arg)
{
	struct etcd_watch *w = arg;

	w->last_data_ms = pgl_mono_ms();
	if (memmem(data, size * nmemb, "\"error\"", 7) != NULL)
		w->stream_error = true;
	wake(w);
	return size * nmemb;
}

/* Ends the stream when asked to stop, or after 10 s without a message (a dead peer). */
static int
on_watch_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	struct etcd_watch *w = arg;

	return atomic_load(&w->stop) || pgl_mono_ms() - w->last_data_ms > 10000;
}

static void *
watch_main(void *arg)
{
	struct etcd_watch *w = arg;
	struct etcd_store *own = &w->own;
	const struct pgl_etcd_url *u = &own->u;
	CURL *c = curl_easy_init();
	char *k = key64(own, "state/", false), *e = key64(own, "state/", true), *body;
	json_t *req = json_pack("{s{ssss}}", "create_request", "key", k ? k : "", "range_end",
							e ? e : "");
	int ep = own->ep;
	long status = 0;

	body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	free(k);
	free(e);
	while (c && body && !atomic_load(&w->stop)) {
		struct curl_slist *hdr;
		char url[400];

		/* a new token when the last stream was refused (tokens expire) */
		if (u->user[0] && (w->stream_error || status != 200) && authenticate(own, ep) < 0)
			pgl_log_debug("watch: %s", own->errmsg);
		w->stream_error = false;
		hdr = request_headers(own->token);
		endpoint_url(u, ep, "watch", url, sizeof(url));
		curl_easy_reset(c);
		curl_common(c, u);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_watch_data);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, w);
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_watch_progress);
		curl_easy_setopt(c, CURLOPT_XFERINFODATA, w);
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
		w->last_data_ms = pgl_mono_ms();
		status = 0;
		curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);	/* 0: no answer */
		curl_slist_free_all(hdr);
		/* the stream ended: whatever changed meanwhile is read again */
		wake(w);
		ep = (ep + 1) % u->n_endpoints;
		for (int i = 0; i < 5 && !atomic_load(&w->stop); i++)
			poll(NULL, 0, 40);
	}
	free(body);
	curl_easy_cleanup(c);
	return NULL;
}

static void
watch_stop(void *arg)
{
	struct etcd_watch *w = arg;

	atomic_store(&w->stop, true);
	pthread_join(w->thread, NULL);
	close(w->wfd);
	if (w->s && w->s->watch == w)
		w->s->watch = NULL;
	if (w->own.curl)
		curl_easy_cleanup(w->own.curl);
	explicit_bzero(w->own.password, sizeof(w->own.password));
	free(w);
}

static int
et_watch_open(struct pgl_store *base, struct pgl_watch **out)
{
	struct etcd_store *s = es(base);
	struct etcd_watch *w = calloc(1, sizeof(*w));
	sigset_t all, old;
	int p[2], rc;

	*out = NULL;
	if (w == NULL)
		return -PGL_ENOMEM;
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
		free(w);
		return -PGL_ESYS;
	}
	w->s = s;
	w->wfd = p[1];
	memcpy(&w->own, s, sizeof(*s));
	w->own.watch = NULL;
	if ((w->own.curl = curl_easy_init()) == NULL) {
		close(p[0]);
		close(p[1]);
		free(w);
		return -PGL_ENOMEM;
	}
	/* the agent takes its signals through a signalfd: none may land on this thread */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&w->thread, NULL, watch_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		close(p[0]);
		close(p[1]);
		curl_easy_cleanup(w->own.curl);
		free(w);
		errno = rc;
		return -PGL_ESYS;
	}
	if ((rc = pgl_watch_open_fd(p[0], watch_stop, w, out)) < 0) {
		watch_stop(w);
		close(p[0]);
		return rc;
	}
	s->watch = w;
	return 0;
}

/* ---- opening ---- */

static void
et_close(struct pgl_store *base)
{
	struct etcd_store *s = es(base);

	if (s->watch)
		s->watch->s = NULL;		/* a watch closed after its store */
	if (s->curl)
		curl_easy_cleanup(s->curl);
	explicit_bzero(s->password, sizeof(s->password));
	free(s);
}

static int
et_check_path(const char *path, char *err, size_t errlen)
{
	struct pgl_etcd_url u;

	return pgl_etcd_url_parse(path, &u, err, errlen);
}

/* Makes the cluster's keys under an empty prefix: one transaction, the first creator wins. */
static int
create_cluster(struct etcd_store *s)
{
	struct pgl_cluster c = { 0 };
	struct pgl_switchover w = { 0 };
	struct txn t;

	pgl_strlcpy(c.name, s->u.cluster, sizeof(c.name));
	now_iso(c.created_at);
	txn_init(&t);
	cmp_mod(s, &t, "state/cluster", 0);
	op_put(s, &t, "state/cluster", cluster_json(&c), 0);
	op_put(s, &t, "state/term", term_json(0, "", 0, "", true, NULL), 0);
	op_put(s, &t, "state/switchover", switchover_json(&w), 0);
	op_event(s, &t, 0, "", "created", "lease store created on etcd");
	return txn_commit(s, &t);
}

/* How many keys the prefix holds (0 when unreadable: the caller reads again). */
static int
prefix_count(struct etcd_store *s, int64_t *n)
{
	json_t *req = range_op(s, "", true), *resp = NULL;
	int rc;

	json_object_set_new(req, "count_only", json_true());
	rc = call(s, "kv/range", req, &resp);
	json_decref(req);
	if (rc == 0 && !jint(resp, "count", n))
		rc = -PGL_EPROTO;
	json_decref(resp);
	return rc;
}

/*
 * Finds (or with PGL_STORE_CREATE makes) the cluster under the prefix.  A
 * prefix holding keys but no cluster record is foreign; it is looked at
 * twice, since a concurrent creator's keys appear together.
 */
static int
find_cluster(struct etcd_store *s, int flags)
{
	struct pgl_cluster c;
	int64_t n = 0;
	int rc;

	for (int attempt = 0; attempt < 3; attempt++) {
		if ((rc = et_read_cluster(&s->base, &c)) != -PGL_ENOENT)
			return rc;
		if ((rc = prefix_count(s, &n)) < 0)
			return rc;
		if (n > 0 && attempt > 0) {
			ERR(s, "%s: %s holds %lld keys but no pglease cluster record (state/cluster): "
				"a foreign prefix", s->path, s->u.prefix, (long long) n);
			return -PGL_EFOREIGN;
		}
		if (n > 0)
			continue;
		if ((flags & PGL_STORE_CREATE) != PGL_STORE_CREATE) {
			ERR(s, "%s: no pglease cluster under %s (an agent creates it)", s->path,
				s->u.prefix);
			return -PGL_ENOENT;
		}
		if ((rc = create_cluster(s)) != -PGL_ECONFLICT)
			return rc;
	}
	return et_read_cluster(&s->base, &c);
}

static int
et_open(const char *path, int flags, struct pgl_store **out, char *err, size_t errlen)
{
	struct etcd_store *s = calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (s == NULL)
		return -PGL_ENOMEM;
	s->base.ops = &pgl_store_etcd_ops;
	s->heartbeat = -1;
	pgl_etcd_url_shown(path, s->path, sizeof(s->path));	/* shown, in every message */
	if ((rc = pgl_etcd_url_parse(path, &s->u, err, errlen)) < 0 ||
		(rc = read_password(s, err, errlen)) < 0)
		goto fail;
	s->rdonly = (flags & PGL_STORE_RDWR) == 0;
	s->busy_ms = s->u.timeout_ms;
	pthread_once(&curl_once, curl_init_once);
	if ((s->curl = curl_easy_init()) == NULL) {
		rc = -PGL_ENOMEM;
		seterr(err, errlen, "%s: cannot start libcurl", s->path);
		goto fail;
	}
	if (s->u.user[0]) {
		for (int i = 0; i < s->u.n_endpoints; i++)
			if ((rc = authenticate(s, i)) == 0 || rc == -PGL_ECONFIG) {
				s->ep = i;
				break;
			}
		if (rc < 0) {
			seterr(err, errlen, "%s: %s", s->path, s->errmsg);
			goto fail;
		}
	}
	if ((rc = find_cluster(s, flags)) < 0) {
		if (rc == -PGL_ESTORE || rc == -PGL_ETIMEOUT)
			seterr(err, errlen, "%s: cannot reach etcd: %s", s->path, s->errmsg);
		else if (rc == -PGL_EPROTO)
			seterr(err, errlen, "%s: %s", s->path, s->errmsg);
		else
			seterr(err, errlen, "%s", s->errmsg);
		if (rc == -PGL_ETIMEOUT || rc == -PGL_EPROTO)
			rc = -PGL_ESTORE;
		goto fail;
	}
	*out = &s->base;
	return 0;
fail:
	et_close(&s->base);
	return rc;
}

static int
et_check_file(struct pgl_store *base, char *err, size_t errlen)
{
	struct etcd_store *s = es(base);
	struct pgl_cluster c;
	int rc = et_read_cluster(base, &c);

	if (rc == -PGL_ENOENT || rc == -PGL_EFOREIGN || rc == -PGL_ENEWER) {
		seterr(err, errlen, "%s: the cluster's record in etcd is %s", s->path,
			   rc == -PGL_ENOENT ? "gone (state/cluster deleted)" : s->errmsg);
		return -PGL_EFOREIGN;
	}
	return 0;					/* unreachable: the protocol's own calls fail and fence */
}

static const char *
et_errmsg(struct pgl_store *base)
{
	return es(base)->errmsg;
}

static const char *
et_path(struct pgl_store *base)
{
	return es(base)->path;
}

static void
et_set_busy_ms(struct pgl_store *base, int ms)
{
	es(base)->busy_ms = ms > 0 ? ms : 1;
}

/* The watch's message count when one runs, else the etcd revision. */
static int
et_data_version(struct pgl_store *base, int64_t *out)
{
	struct etcd_store *s = es(base);
	json_t *req, *resp = NULL;
	int rc;

	if (s->watch) {
		*out = atomic_load(&s->watch->changes);
		return 0;
	}
	req = range_op(s, "state/", true);
	json_object_set_new(req, "count_only", json_true());
	rc = call(s, "kv/range", req, &resp);
	json_decref(req);
	if (rc == 0 && !jint(json_object_get(resp, "header"), "revision", out))
		rc = -PGL_EPROTO;
	json_decref(resp);
	return rc;
}

const struct pgl_store_ops pgl_store_etcd_ops = {
	.name = "etcd",
	.check_path = et_check_path,
	.open = et_open,
	.close = et_close,
	.check_file = et_check_file,
	.errmsg = et_errmsg,
	.path = et_path,
	.set_busy_ms = et_set_busy_ms,
	.read_lease = et_read_lease,
	.read_cluster = et_read_cluster,
	.data_version = et_data_version,
	.claim = et_claim,
	.renew = et_renew,
	.release = et_release,
	.node_upsert = et_node_upsert,
	.list_nodes = et_list_nodes,
	.get_node = et_get_node,
	.remove_node = et_remove_node,
	.event = et_event,
	.list_events = et_list_events,
	.events_after = et_events_after,
	.set_paused = et_set_paused,
	.set_sysid = et_set_sysid,
	.read_switchover = et_read_switchover,
	.request_switchover = et_request_switchover,
	.set_switchover = et_set_switchover,
	.watch_open = et_watch_open,
};
