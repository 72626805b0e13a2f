/*
 * test_etcd.c — the etcd lease store (store_etcd.c).
 *
 * The URL parser; an endpoint that does not answer; a fake gateway that
 * answers garbage, wrong shapes and refusals (each one clear line, never a
 * lease read from half an answer); then the protocol against a real etcd
 * (Debian's etcd-server, started here on loopback ports of its own): claim
 * as compare-and-swap, renew, release, etcd's own expiry, nodes, events,
 * pause, system identifier, switchover, the watch and a foreign prefix.
 * Without the etcd binary the real-etcd part is reported and skipped (CI
 * installs it: scripts/install-deps.sh).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "pglease/etcd.h"
#include "pglease/store.h"
#include "pglease/watch.h"

static char err[2048];

/* ---- the URL ---- */

static void
test_url_good(void)
{
	struct pgl_etcd_url u;

	CHECKF(pgl_etcd_url_parse("etcd://127.0.0.1:2379/pglease/main", &u, err, sizeof(err)) == 0,
		   "%s", err);
	CHECK(u.n_endpoints == 1 && strcmp(u.host[0], "127.0.0.1") == 0 && u.port[0] == 2379);
	CHECK(strcmp(u.prefix, "/pglease/main/") == 0 && strcmp(u.cluster, "main") == 0);
	CHECK(!u.tls && u.timeout_ms == PGL_ETCD_DEFAULT_TIMEOUT_MS && !u.user[0]);

	CHECKF(pgl_etcd_url_parse("etcd://e1,e2:2380,10.0.0.3:12379/a/b.c/db-1?user=pgl&"
							  "password_file=/run/pw&cacert=/ca.pem&timeout_ms=500", &u, err,
							  sizeof(err)) == 0, "%s", err);
	CHECK(u.n_endpoints == 3 && strcmp(u.host[0], "e1") == 0 && u.port[0] == 2379 &&
		  strcmp(u.host[1], "e2") == 0 && u.port[1] == 2380 && u.port[2] == 12379);
	CHECK(strcmp(u.prefix, "/a/b.c/db-1/") == 0 && strcmp(u.cluster, "db-1") == 0);
	CHECK(strcmp(u.user, "pgl") == 0 && strcmp(u.password_file, "/run/pw") == 0);
	CHECK(u.tls && strcmp(u.cacert, "/ca.pem") == 0 && u.timeout_ms == 500);

	CHECK(pgl_etcd_url_parse("etcd://h/p/c?tls=1", &u, err, sizeof(err)) == 0 && u.tls);
	CHECK(pgl_etcd_url_parse("etcd://h/p/c?cert=/c.pem&key=/k.pem", &u, err, sizeof(err)) == 0
		  && u.tls && strcmp(u.key, "/k.pem") == 0);
	CHECK(pgl_store_is_url("etcd://h/p/c") && !pgl_store_is_url("/var/lib/pglease/lease.db"));
}

/* Bracketed IPv6 endpoints, with and without a port (once refused as "bad port"). */
static void
test_url_ipv6(void)
{
	struct pgl_etcd_url u;

	CHECKF(pgl_etcd_url_parse("etcd://[::1]:2379,[fe80::1:2],e3:2380/pglease/main", &u, err,
							  sizeof(err)) == 0, "%s", err);
	CHECK(u.n_endpoints == 3);
	CHECK(strcmp(u.host[0], "::1") == 0 && u.port[0] == 2379);
	CHECK(strcmp(u.host[1], "fe80::1:2") == 0 && u.port[1] == 2379);
	CHECK(strcmp(u.host[2], "e3") == 0 && u.port[2] == 2380);
}

/*
 * user= over plain http (the password, then the token, in clear on the
 * wire) is refused unless insecure=1 says so; https is fine.
 */
static void
test_url_credentials_need_tls(void)
{
	struct pgl_etcd_url u;

	CHECK(pgl_etcd_url_parse("etcd://h/p/c?user=pgl", &u, err, sizeof(err)) == -PGL_EINVAL);
	CHECKF(strstr(err, "in clear") && strstr(err, "insecure=1"), "%s", err);
	CHECKF(pgl_etcd_url_parse("etcd://h/p/c?user=pgl&password_file=/pw&insecure=1", &u, err,
							  sizeof(err)) == 0 && u.insecure && !u.tls, "%s", err);
	CHECKF(pgl_etcd_url_parse("etcd://h/p/c?user=pgl&password_file=/pw&tls=1", &u, err,
							  sizeof(err)) == 0 && !u.insecure && u.tls, "%s", err);
	CHECKF(pgl_etcd_url_parse("etcd://h/p/c?cacert=/ca&user=pgl", &u, err, sizeof(err)) == 0,
		   "%s", err);
	CHECK(pgl_etcd_url_parse("etcd://h/p/c?insecure=1", &u, err, sizeof(err)) == 0 && u.insecure);
}

/*
 * A misplaced secret is never echoed: errors show the URL without its query
 * and without a user:password@.
 */
static void
test_url_errors_hide_secrets(void)
{
	static const char *urls[] = {
		"etcd://h/pglease/main?password=hunter2",
		"etcd://h/pglease/main?user=pgl&password=hunter2",
		"etcd://h/pglease/Main?password=hunter2",
		"etcd://h/pglease/main?password_file=hunter2",
		"etcd://root:hunter2@h:2379/pglease/main",
		"etcd://root:hunter2@h:2379/pglease/main?user=x",
	};
	struct pgl_etcd_url u;
	struct pgl_store *st = NULL;
	char shown[256];

	for (size_t i = 0; i < PGL_ARRAY_LEN(urls); i++) {
		err[0] = '\0';
		CHECKF(pgl_etcd_url_parse(urls[i], &u, err, sizeof(err)) == -PGL_EINVAL, "%s", urls[i]);
		CHECKF(err[0] && !strstr(err, "hunter2"), "%s: '%s'", urls[i], err);
		err[0] = '\0';
		CHECK(pgl_store_open(urls[i], PGL_STORE_RDONLY, &st, err, sizeof(err)) < 0);
		CHECKF(err[0] && !strstr(err, "hunter2"), "%s: '%s'", urls[i], err);
	}
	pgl_etcd_url_shown("etcd://h/p/c?user=a&password_file=/x", shown, sizeof(shown));
	CHECKF(strcmp(shown, "etcd://h/p/c") == 0, "%s", shown);
	pgl_etcd_url_shown("etcd://a:b@h/p/c", shown, sizeof(shown));
	CHECKF(strcmp(shown, "etcd://...@h/p/c") == 0, "%s", shown);
	pgl_etcd_url_shown("/var/lib/pglease/lease.db", shown, sizeof(shown));
	CHECKF(strcmp(shown, "/var/lib/pglease/lease.db") == 0, "%s", shown);
}

/*
 * The etcd password_file a FIFO: refused at once in one line ("not a
 * regular file"), never a CLI hung in open() (it was fopen()ed).  Run in a
 * child so that a hang fails the check instead of the whole binary.
 */
static void
test_password_file_fifo(void)
{
	char fifo[1024], url[1200];
	int64_t until;
	pid_t pid;
	int st = -1;

	snprintf(fifo, sizeof(fifo), "%s/pw.fifo", test_dir());
	CHECK(mkfifo(fifo, 0600) == 0);
	snprintf(url, sizeof(url), "etcd://127.0.0.1:1/p/c?user=pgl&insecure=1&password_file=%s",
			 fifo);
	pid = fork();
	if (pid == 0) {
		struct pgl_store *s = NULL;
		int rc = pgl_store_open(url, PGL_STORE_RDONLY, &s, err, sizeof(err));

		fprintf(stderr, "fifo: %s\n", err);
		_exit(rc == -PGL_ECONFIG && strstr(err, "not a regular file") ? 0 : 1);
	}
	until = pgl_mono_ms() + 5000;
	while (waitpid(pid, &st, WNOHANG) == 0 && pgl_mono_ms() < until)
		usleep(20000);
	if (pgl_mono_ms() >= until) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the open hung or said something else "
		   "(wait status %d)", st);
}

static void
test_url_bad(void)
{
	static const struct { const char *url, *says; } bad[] = {
		{ "etcd://127.0.0.1:2379", "no prefix" },
		{ "etcd://127.0.0.1:2379/", "a prefix and a cluster name" },
		{ "etcd://127.0.0.1:2379/main", "a prefix and a cluster name" },
		{ "etcd://127.0.0.1:2379/pglease/main/", "ends with '/'" },
		{ "etcd://127.0.0.1:99999/pglease/main", "bad port" },
		{ "etcd://127.0.0.1:/pglease/main", "bad port" },
		{ "etcd://127.0.0.1:2x/pglease/main", "bad port" },
		{ "etcd://,h/pglease/main", "empty" },
		{ "etcd://h h/pglease/main", "bad host" },
		{ "etcd://h/pg lease/main", "bad path segment" },
		{ "etcd://h/pglease/../main", "bad path segment" },
		{ "etcd://h/pglease/Main", "cluster name 'Main'" },
		{ "etcd://h/pglease/main?colour=blue", "unknown query parameter 'colour'" },
		{ "etcd://h/pglease/main?user", "needs a value" },
		{ "etcd://h/pglease/main?timeout_ms=5", "timeout_ms must be" },
		{ "etcd://h/pglease/main?password_file=/pw", "password_file without user" },
		{ "etcd://h/pglease/main?cert=/c.pem", "cert and key go together" },
		{ "etcd://h/pglease/main?tls=2", "unknown query parameter 'tls'" },
		{ "etcd://a,b,c,d,e,f,g,h,i/pglease/main", "more than 8" },
		{ "etcd://[::1/pglease/main", "bad host" },
		{ "etcd://[::1]x/pglease/main", "bad host" },
		{ "etcd://[]:2379/pglease/main", "bad host" },
		{ "etcd://[etcd1]:2379/pglease/main", "bad host" },
		{ "etcd://::1/pglease/main", "in brackets" },
		{ "etcd://[::1]:/pglease/main", "bad port" },
		{ "etcd://[::1]:0/pglease/main", "bad port" },
		{ "etcd://h/pglease/main?insecure=yes", "unknown query parameter 'insecure'" },
		{ "etcd://h/pglease/main?user=pgl&password_file=/pw", "insecure=1" },
	};
	struct pgl_etcd_url u;
	struct pgl_store *st = (struct pgl_store *) &u;

	for (size_t i = 0; i < PGL_ARRAY_LEN(bad); i++) {
		err[0] = '\0';
		CHECKF(pgl_etcd_url_parse(bad[i].url, &u, err, sizeof(err)) == -PGL_EINVAL,
			   "%s accepted", bad[i].url);
		size_t n = strcspn(bad[i].url, "?");	/* the query is never echoed */

		CHECKF(strncmp(err, bad[i].url, n) == 0 && (err[n] == ':' || err[n] == '\0') &&
			   strstr(err, bad[i].says) && !strchr(err, '\n'), "%s: '%s' (wanted '%s')",
			   bad[i].url, err, bad[i].says);
		/* the store refuses it the same way, before any request */
		CHECK(pgl_store_check_path(bad[i].url, err, sizeof(err)) == -PGL_EINVAL);
		CHECK(pgl_store_open(bad[i].url, PGL_STORE_CREATE, &st, err, sizeof(err)) ==
			  -PGL_EINVAL && st == NULL);
	}
}

/* ---- endpoints that do not answer, and a fake gateway ---- */

static int
listen_loopback(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *) &a, sizeof(a)) != 0 || listen(fd, 16) != 0 ||
		getsockname(fd, (struct sockaddr *) &a, &len) != 0) {
		perror("listen");
		exit(2);
	}
	*port = ntohs(a.sin_port);
	return fd;
}

static void
test_unreachable(void)
{
	struct pgl_store *st = NULL;
	char url[128];
	int port, fd = listen_loopback(&port);
	int64_t t0;

	close(fd);					/* nothing listens there now */
	snprintf(url, sizeof(url), "etcd://127.0.0.1:%d/pglease/main?timeout_ms=300", port);
	t0 = pgl_mono_ms();
	CHECK(pgl_store_open(url, PGL_STORE_CREATE, &st, err, sizeof(err)) == -PGL_ESTORE &&
		  st == NULL);
	*strchr(url, '?') = '\0';	/* shown without its query */
	CHECKF(strstr(err, "cannot reach etcd") && strstr(err, url) && !strstr(err, "timeout_ms") &&
		   !strchr(err, '\n'), "%s", err);
	CHECK(pgl_mono_ms() - t0 < 3000);
}

/* The fake gateway: answers every request with `answer` (full HTTP response). */
struct fake {
	int fd;
	const char *answer;
	int served;
};

static void *
fake_main(void *arg)
{
	struct fake *f = arg;
	char buf[8192];

	for (;;) {
		int c = accept(f->fd, NULL, NULL);

		if (c < 0)
			return NULL;
		/* read the request (headers and a small body) */
		struct pollfd p = { .fd = c, .events = POLLIN };

		while (poll(&p, 1, 100) > 0 && read(c, buf, sizeof(buf)) > 0)
			;
		if (write(c, f->answer, strlen(f->answer)) < 0) {
			/* the client went away */
		}
		f->served++;
		close(c);
	}
}

static void
fake_case(const char *answer, int want_rc, const char *says)
{
	struct fake f = { .answer = answer };
	struct pgl_store *st = NULL;
	pthread_t t;
	char url[128];
	int port, rc;

	f.fd = listen_loopback(&port);
	pthread_create(&t, NULL, fake_main, &f);
	snprintf(url, sizeof(url), "etcd://127.0.0.1:%d/pglease/main?timeout_ms=500", port);
	rc = pgl_store_open(url, PGL_STORE_CREATE, &st, err, sizeof(err));
	CHECKF(rc == want_rc && st == NULL, "rc %d (wanted %d): %s", rc, want_rc, err);
	CHECKF(strstr(err, says) && !strchr(err, '\n'), "'%s' (wanted '%s')", err, says);
	CHECK(f.served >= 1);
	shutdown(f.fd, SHUT_RDWR);
	close(f.fd);
	pthread_join(t, NULL);
	pgl_store_close(st);
}

#define HTTP200 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"

static void
test_malformed_answers(void)
{
	fake_case(HTTP200 "this is not JSON", -PGL_ESTORE, "malformed answer");
	fake_case(HTTP200 "[1,2,3]", -PGL_ESTORE, "malformed answer");
	fake_case(HTTP200, -PGL_ESTORE, "malformed answer");
	/* a range answer whose key is not base64, or is outside the prefix */
	fake_case(HTTP200 "{\"responses\":[{\"response_range\":{\"kvs\":[{\"key\":\"%%%\"}]}}]}",
			  -PGL_ESTORE, "malformed answer");
	fake_case(HTTP200 "{\"responses\":[{\"response_range\":{\"kvs\":[{\"key\":"
			  "\"L290aGVyL2tleQ==\",\"value\":\"e30=\"}]}}]}", -PGL_ESTORE, "malformed answer");
	/* the cluster key holding something that is not ours */
	fake_case(HTTP200 "{\"responses\":[{\"response_range\":{\"kvs\":[{\"key\":"
			  "\"L3BnbGVhc2UvbWFpbi9zdGF0ZS9jbHVzdGVy\",\"value\":\"eyJmb28iOjF9\"}]}}]}",
			  -PGL_EFOREIGN, "foreign cluster");
	/* refusals: bad credentials, a server error */
	fake_case("HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: "
			  "close\r\n\r\n{\"error\":\"etcdserver: authentication failed, invalid user ID or "
			  "password\",\"code\":3}", -PGL_ECONFIG, "authentication failed");
	fake_case("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
			  "Connection: close\r\n\r\n{\"error\":\"etcdserver: no leader\",\"code\":14}",
			  -PGL_ESTORE, "no leader");
	fake_case("HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n{",
			  -PGL_ESTORE, "cannot reach etcd");
}

/* ---- a real etcd ---- */

static pid_t etcd_pid;
static int etcd_port;

static bool
etcd_start(void)
{
	char dir[600], client[64], peer[64], cluster[96], logf[640];
	int cport, pport, fd;

	if (access("/usr/bin/etcd", X_OK) != 0)
		return false;
	fd = listen_loopback(&cport);
	close(fd);
	fd = listen_loopback(&pport);
	close(fd);
	snprintf(dir, sizeof(dir), "%s/etcd-XXXXXX", test_dir());
	if (mkdtemp(dir) == NULL)
		return false;			/* a fresh data directory: no cluster of an earlier run */
	snprintf(logf, sizeof(logf), "%s/etcd.log", test_dir());
	snprintf(client, sizeof(client), "http://127.0.0.1:%d", cport);
	snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", pport);
	snprintf(cluster, sizeof(cluster), "u=%s", peer);
	etcd_pid = fork();
	if (etcd_pid == 0) {
		int l = open(logf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (l >= 0) {
			dup2(l, 1);
			dup2(l, 2);
		}
		execl("/usr/bin/etcd", "etcd", "--name", "u", "--data-dir", dir,
			  "--listen-client-urls", client, "--advertise-client-urls", client,
			  "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			  "--initial-cluster", cluster, (char *) NULL);
		_exit(127);
	}
	etcd_port = cport;
	/* ready when a store opens */
	for (int i = 0; i < 100; i++) {
		struct pgl_store *st = NULL;
		char url[128];

		snprintf(url, sizeof(url), "etcd://127.0.0.1:%d/probe/x", cport);
		if (pgl_store_open(url, PGL_STORE_CREATE, &st, err, sizeof(err)) == 0) {
			pgl_store_close(st);
			return true;
		}
		usleep(100000);
	}
	fprintf(stderr, "etcd did not start: %s (log %s)\n", err, logf);
	return false;
}

static void
etcd_stop(void)
{
	if (etcd_pid > 0) {
		kill(etcd_pid, SIGTERM);
		waitpid(etcd_pid, NULL, 0);
	}
}

static struct pgl_store *
open_ok(const char *cluster, int flags)
{
	struct pgl_store *st = NULL;
	char url[160];

	snprintf(url, sizeof(url), "etcd://127.0.0.1:%d/t/%s", etcd_port, cluster);
	CHECKF(pgl_store_open(url, flags, &st, err, sizeof(err)) == 0, "%s", err);
	return st;
}

static void
test_create_and_claim(void)
{
	struct pgl_store *a = open_ok("c1", PGL_STORE_CREATE), *b = open_ok("c1", PGL_STORE_RDWR);
	struct pgl_store *ro = open_ok("c1", PGL_STORE_RDONLY), *none = NULL;
	struct pgl_lease l, seen;
	struct pgl_cluster c;
	int64_t term = 0, dl = 0, n = 0, t0;
	char url[160];

	if (!a || !b || !ro)
		return;
	snprintf(url, sizeof(url), "etcd://127.0.0.1:%d/t/missing", etcd_port);
	CHECK(pgl_store_open(url, PGL_STORE_RDONLY, &none, err, sizeof(err)) == -PGL_ENOENT);
	CHECKF(strstr(err, "no pglease cluster under /t/missing/"), "%s", err);
	CHECK(pgl_store_read_cluster(a, &c) == 0 && strcmp(c.name, "c1") == 0 && !c.paused);
	CHECK(pgl_store_read_lease(a, &l) == 0 && l.term == 0 && !l.holder[0] && l.store_expires);
	seen = l;
	CHECK(pgl_store_claim(ro, &seen, "n1", 5000, "x", &term) == -PGL_EINVAL);
	CHECKF(pgl_store_claim(a, &seen, "n1", 5000, "first", &term) == 0 && term == 1, "%s",
		   pgl_store_errmsg(a));
	/* the same version claimed again: lost */
	CHECK(pgl_store_claim(b, &seen, "n2", 5000, "late", &term) == -PGL_ECONFLICT);
	CHECK(pgl_store_read_lease(b, &l) == 0 && l.term == 1 && strcmp(l.holder, "n1") == 0 &&
		  !l.holder_expired && l.ttl_ms == 5000);
	/* the current version, but n1's etcd lease lives: refused */
	CHECK(pgl_store_claim(b, &l, "n2", 5000, "steal", &term) == -PGL_ECONFLICT);
	CHECKF(strstr(pgl_store_errmsg(b), "still alive in etcd"), "%s", pgl_store_errmsg(b));
	t0 = pgl_mono_ms();
	CHECKF(pgl_store_renew(a, "n1", 1, t0, 5000, 1000, t0 + 4000, &dl, &n) == 0 &&
		   dl == t0 + 4000 && n == 1, "%s", pgl_store_errmsg(a));
	/* another handle of the same holder finds the etcd lease through the leader key */
	CHECKF(pgl_store_renew(b, "n1", 1, t0, 5000, 1000, t0 + 4000, &dl, &n) == 0, "%s",
		   pgl_store_errmsg(b));
	CHECK(pgl_store_renew(b, "n2", 1, t0, 5000, 1000, t0 + 4000, &dl, &n) == -PGL_ENOTHOLDER);
	CHECK(pgl_store_renew(a, "n1", 2, t0, 5000, 1000, t0 + 4000, &dl, &n) == -PGL_ENOTHOLDER);
	CHECK(pgl_store_renew(a, "n1", 1, t0, 5000, 1000, pgl_mono_ms() - 1, &dl, &n) ==
		  -PGL_ETIMEOUT);
	/* release: no holder, the LSN kept; the next claim is term 2 */
	CHECK(pgl_store_release(b, "n2", 1, NULL, "no") == -PGL_ENOTHOLDER);
	CHECKF(pgl_store_release(a, "n1", 1, "0/3000060", "bye") == 0, "%s", pgl_store_errmsg(a));
	CHECK(pgl_store_read_lease(ro, &l) == 0 && l.term == 1 && !l.holder[0] &&
		  l.has_released_lsn && strcmp(l.released_lsn, "0/3000060") == 0 &&
		  l.released_lsn_int == 0x3000060);
	CHECK(pgl_store_renew(a, "n1", 1, t0, 5000, 1000, pgl_mono_ms() + 2000, &dl, &n) ==
		  -PGL_ENOTHOLDER);
	CHECK(pgl_store_claim(b, &l, "n2", 2000, "next", &term) == 0 && term == 2);
	pgl_store_close(a);
	pgl_store_close(b);
	pgl_store_close(ro);
}

/* Nobody renews: etcd deletes the leader key after its TTL; then, and only then, others claim. */
static void
test_etcd_expires(void)
{
	struct pgl_store *a = open_ok("c2", PGL_STORE_CREATE), *b = open_ok("c2", PGL_STORE_RDWR);
	struct pgl_lease l;
	int64_t term = 0, t0;
	bool expired = false;

	if (!a || !b)
		return;
	CHECK(pgl_store_read_lease(a, &l) == 0);
	CHECK(pgl_store_claim(a, &l, "n1", 2000, "x", &term) == 0 && term == 1);
	t0 = pgl_mono_ms();
	CHECK(pgl_store_read_lease(b, &l) == 0 && !l.holder_expired);
	while (pgl_mono_ms() - t0 < 10000) {
		CHECK(pgl_store_read_lease(b, &l) == 0);
		if ((expired = l.holder_expired))
			break;
		usleep(50000);
	}
	CHECK(expired && strcmp(l.holder, "n1") == 0 && l.term == 1);
	/* never before the TTL (2 s) */
	CHECKF(pgl_mono_ms() - t0 >= 1900, "expired after %lld ms", (long long) (pgl_mono_ms() - t0));
	CHECK(pgl_store_claim(b, &l, "n2", 2000, "after expiry", &term) == 0 && term == 2);
	/* the old holder's renewal now fails: not the holder */
	t0 = pgl_mono_ms();
	CHECK(pgl_store_renew(a, "n1", 1, t0, 2000, 500, t0 + 1500, &t0, NULL) == -PGL_ENOTHOLDER);
	pgl_store_close(a);
	pgl_store_close(b);
}

static void
test_nodes_events_flags(void)
{
	struct pgl_store *a = open_ok("c3", PGL_STORE_CREATE);
	struct pgl_node n = { .name = "n1", .conninfo = "host=10.0.0.1 port=5432 password=x",
		.role = "standby", .state = "streaming", .timeline = 1, .receive_lsn = "0/3000000",
		.priority = 100 }, got, *list = NULL;
	struct pgl_event *ev = NULL;
	struct pgl_switchover w, req = { .timeout_ms = 60000, .requested_by = "op" };
	struct pgl_cluster c;
	struct pgl_lease l;
	int64_t term, seq = 0, last;
	int count = 0;

	if (!a)
		return;
	CHECK(pgl_store_node_upsert(a, &n) == 0 && pgl_store_node_upsert(a, &n) == 0);
	CHECK(pgl_store_get_node(a, "n1", &got) == 0 && got.heartbeat == 2 &&
		  strcmp(got.conninfo, "host=10.0.0.1 port=5432") == 0 && got.receive_lsn_int ==
		  0x3000000 && got.age_s >= -1 && got.age_s < 60);
	pgl_strlcpy(n.name, "n2", sizeof(n.name));
	pgl_strlcpy(n.role, "boss", sizeof(n.role));
	CHECK(pgl_store_node_upsert(a, &n) == -PGL_ESTORE);
	pgl_strlcpy(n.role, "primary", sizeof(n.role));
	CHECK(pgl_store_node_upsert(a, &n) == 0);
	CHECK(pgl_store_list_nodes(a, &list, &count) == 0 && count == 2 &&
		  strcmp(list[0].name, "n1") == 0 && strcmp(list[1].name, "n2") == 0);
	free(list);
	CHECK(pgl_store_get_node(a, "n9", &got) == -PGL_ENOENT);
	/* a clone under way rides in the record; the next heartbeat without one clears it */
	n.progress = (struct pgl_progress) { PGL_PROGRESS_CLONE, 512, 2048, 1500 };
	CHECK(pgl_store_node_upsert(a, &n) == 0 && pgl_store_get_node(a, "n2", &got) == 0 &&
		  got.progress.op == PGL_PROGRESS_CLONE && got.progress.done_kb == 512 &&
		  got.progress.total_kb == 2048 && got.progress.elapsed_ms == 1500);
	memset(&n.progress, 0, sizeof(n.progress));
	CHECK(pgl_store_node_upsert(a, &n) == 0 && pgl_store_get_node(a, "n2", &got) == 0 &&
		  got.progress.op == PGL_PROGRESS_NONE && got.progress.done_kb == 0);
	/* the holder is never forgotten */
	CHECK(pgl_store_read_lease(a, &l) == 0 && pgl_store_claim(a, &l, "n2", 5000, "x", &term) == 0);
	CHECK(pgl_store_remove_node(a, "n2", term) == -PGL_ECONFLICT);
	CHECK(pgl_store_remove_node(a, "n1", term) == 0);
	CHECK(pgl_store_remove_node(a, "n1", term) == -PGL_ENOENT);
	/* events: created, acquired, removed, in order, by id */
	CHECK(pgl_store_event(a, term, "n2", "note", "hello %d", 42) == 0);
	CHECK(pgl_store_list_events(a, 10, &ev, &count) == 0 && count == 4);
	if (count == 4) {
		CHECK(strcmp(ev[0].kind, "created") == 0 && strcmp(ev[1].kind, "acquired") == 0 &&
			  strcmp(ev[2].kind, "removed") == 0 && strcmp(ev[3].kind, "note") == 0 &&
			  strcmp(ev[3].detail, "hello 42") == 0 && ev[3].term == term);
		CHECK(ev[0].id < ev[1].id && ev[1].id < ev[2].id && ev[2].id < ev[3].id);
	}
	last = count ? ev[count - 1].id : 0;
	free(ev);
	CHECK(pgl_store_list_events(a, 2, &ev, &count) == 0 && count == 2 &&
		  strcmp(ev[1].kind, "note") == 0);
	free(ev);
	CHECK(pgl_store_events_after(a, last, &ev, &count) == 0 && count == 0);
	free(ev);
	CHECK(pgl_store_set_paused(a, true, "op") == 0);
	CHECK(pgl_store_read_cluster(a, &c) == 0 && c.paused);
	CHECK(pgl_store_events_after(a, last, &ev, &count) == 0 && count == 1 &&
		  strcmp(ev[0].kind, "paused") == 0);
	free(ev);
	CHECK(pgl_store_set_sysid(a, "7300000000000000001") == 0);
	CHECK(pgl_store_set_sysid(a, "7300000000000000001") == 0);
	CHECK(pgl_store_set_sysid(a, "7300000000000000002") == -PGL_ECONFLICT);
	CHECK(pgl_store_read_cluster(a, &c) == 0 && c.paused &&
		  strcmp(c.system_identifier, "7300000000000000001") == 0);
	/* switchover: one request at a time, for the current term */
	CHECK(pgl_store_read_switchover(a, &w) == 0 && w.seq == 0 && w.state == PGL_SW_NONE);
	req.term = term - 1;
	CHECK(pgl_store_request_switchover(a, &req, &seq) == -PGL_ECONFLICT);
	req.term = term;
	CHECK(pgl_store_request_switchover(a, &req, &seq) == 0 && seq == 1);
	CHECK(pgl_store_request_switchover(a, &req, &seq) == -PGL_ECONFLICT);
	CHECKF(strstr(pgl_store_errmsg(a), "still under way"), "%s", pgl_store_errmsg(a));
	CHECK(pgl_store_read_switchover(a, &w) == 0 && w.seq == 1 && w.state == PGL_SW_REQUESTED &&
		  w.term == term && w.age_s >= -1 && w.age_s < 60);
	CHECK(pgl_store_set_switchover(a, 1, PGL_SW_HANDING_OVER, "n1", "n2", "to n1") == 0);
	CHECK(pgl_store_set_switchover(a, 1, PGL_SW_FAILED, NULL, "n2", "timed out") == 0);
	CHECK(pgl_store_set_switchover(a, 1, PGL_SW_DONE, NULL, "n2", NULL) == -PGL_ECONFLICT);
	CHECK(pgl_store_read_switchover(a, &w) == 0 && w.state == PGL_SW_FAILED &&
		  strcmp(w.target, "n1") == 0 && strcmp(w.detail, "timed out") == 0);
	pgl_store_close(a);
}

static void
test_watch_and_foreign(void)
{
	struct pgl_store *a = open_ok("c4", PGL_STORE_CREATE), *b = open_ok("c4", PGL_STORE_RDWR);
	struct pgl_store *st = NULL;
	struct pgl_watch *w = NULL;
	struct pgl_lease l;
	int64_t term, v1 = 0, v2 = 0;
	char url[160];

	if (!a || !b)
		return;
	CHECK(pgl_store_watch_open(a, &w) == 0);
	if (w) {
		pgl_watch_wait(w, 2000);	/* the stream's first message */
		while (pgl_watch_wait(w, 300) == 1)
			;
		CHECK(pgl_store_data_version(a, &v1) == 0);
		CHECK(pgl_store_read_lease(b, &l) == 0 && pgl_store_claim(b, &l, "n1", 5000, "x",
																   &term) == 0);
		CHECK(pgl_watch_wait(w, 3000) == 1);
		CHECK(pgl_store_data_version(a, &v2) == 0 && v2 != v1);
		pgl_watch_close(w);
	}
	/* a prefix that holds keys but no cluster record: foreign, in one line, nothing written */
	snprintf(url, sizeof(url), "etcd://127.0.0.1:%d/t/c4/state", etcd_port);
	CHECK(pgl_store_open(url, PGL_STORE_CREATE, &st, err, sizeof(err)) == -PGL_EFOREIGN &&
		  st == NULL);
	CHECKF(strstr(err, "foreign prefix") && strstr(err, url) && !strchr(err, '\n'), "%s", err);
	pgl_store_close(a);
	pgl_store_close(b);
}

/*
 * http_proxy/all_proxy in the environment (a dead port here) are ignored:
 * the store is reached directly, never through whatever they name.
 */
static void
test_proxy_env_ignored(void)
{
	char proxy[64];
	int port, fd = listen_loopback(&port);
	struct pgl_store *st;

	close(fd);
	snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%d", port);
	setenv("http_proxy", proxy, 1);
	setenv("all_proxy", proxy, 1);
	unsetenv("no_proxy");
	unsetenv("NO_PROXY");
	st = open_ok("px", PGL_STORE_CREATE);
	CHECK(st != NULL);
	pgl_store_close(st);
	unsetenv("http_proxy");
	unsetenv("all_proxy");
}

int
main(void)
{
	alarm(300);
	signal(SIGPIPE, SIG_IGN);
	TEST(test_url_good);
	TEST(test_url_bad);
	TEST(test_url_ipv6);
	TEST(test_url_credentials_need_tls);
	TEST(test_url_errors_hide_secrets);
	TEST(test_password_file_fifo);
	TEST(test_unreachable);
	TEST(test_malformed_answers);
	if (etcd_start()) {
		TEST(test_create_and_claim);
		TEST(test_etcd_expires);
		TEST(test_nodes_events_flags);
		TEST(test_watch_and_foreign);
		TEST(test_proxy_env_ignored);
	} else
		printf("no /usr/bin/etcd: the real-etcd checks are skipped\n");
	etcd_stop();
	return TEST_REPORT();
}
