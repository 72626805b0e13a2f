/*
 * test_http.c — the HTTP API (http.c) without an agent.
 *
 * The ?lag= parser (a pure function); then the real server on a loopback
 * port with a published snapshot: slow clients from several addresses, more
 * than the caps, never delay /primary and are cut at the deadline; and a
 * store that cannot be reached (a fake etcd endpoint that counts its
 * connections) is tried again at most once a second, however many requests
 * ask for /cluster.  The end-to-end test with real agents is test_033.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "pglease/common.h"
#include "pglease/http.h"

/* ---- the ?lag= parser ---- */

static void
lag_ok(const char *s, int64_t want)
{
	char why[256] = "";
	int64_t got = -7;

	CHECKF(pgl_http_parse_lag(s, &got, why, sizeof(why)) && got == want,
		   "'%s': got %lld (wanted %lld) %s", s, (long long) got, (long long) want, why);
}

static void
lag_bad(const char *s, const char *says)
{
	char why[256] = "";
	int64_t got = -7;

	CHECKF(!pgl_http_parse_lag(s, &got, why, sizeof(why)) && got == -7 &&
		   strstr(why, says) && !strchr(why, '\n'), "'%s': %s", s, why);
}

static void
test_parse_lag(void)
{
	lag_ok("0", 0);
	lag_ok("1048576", 1048576);
	lag_ok("100B", 100);
	lag_ok("16kB", 16 * 1024);
	lag_ok("1024kB", 1048576);
	lag_ok("1MB", 1048576);
	lag_ok("64MB", 64LL << 20);
	lag_ok("1GB", 1LL << 30);
	lag_ok("2TB", 2LL << 40);
	lag_ok("1.5MB", 3LL << 19);
	lag_ok("0.5kB", 512);
	lag_ok("1.0001B", 1);		/* rounded to the nearest byte */
	lag_ok("1.5B", 2);
	lag_ok(" 16 MB ", 16LL << 20);
	lag_ok("9223372036854775807", INT64_MAX);
	lag_ok("8388607TB", 8388607LL << 40);
	lag_bad("", "must be a number");
	lag_bad("abc", "must be a number");
	lag_bad("-1", "must be a number");
	lag_bad("+1", "must be a number");
	lag_bad("MB", "must be a number");
	lag_bad(".5MB", "must be a number");
	lag_bad("1.MB", "must be a number");
	lag_bad("1mb", "unknown unit");		/* case matters, as in postgresql.conf */
	lag_bad("1Mb", "unknown unit");
	lag_bad("1KB", "unknown unit");
	lag_bad("1kb", "unknown unit");
	lag_bad("1MiB", "unknown unit");
	lag_bad("1PB", "unknown unit");
	lag_bad("1e6", "unknown unit");
	lag_bad("0x10", "unknown unit");
	lag_bad("1 2", "unknown unit");
	lag_bad("16MB!", "unknown unit");
	lag_bad("9223372036854775808", "too large");
	lag_bad("99999999999999999999", "too large");
	lag_bad("8388608TB", "too large");
	lag_ok("8388607.9999TB", (8388607LL << 40) + 1099401676613LL);
	lag_bad("8388607.999999999999999999TB", "too large");
}

/* ---- a server, and clients ---- */

/* A port nothing listens on (bound, read, closed). */
static int
free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *) &a, sizeof(a)) != 0 ||
		getsockname(fd, (struct sockaddr *) &a, &len) != 0) {
		perror("bind");
		exit(2);
	}
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* Starts the API on a free loopback port over store_path, publishing a primary. */
static struct pgl_http *
start_primary(const char *store_path, int *port)
{
	struct pgl_http_state st = { .term = 3, .held_term = 3, .running = true, .lag_bytes = 0 };
	struct pgl_http *h = NULL;
	char listen[64], err[512];

	*port = free_port();
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", *port);
	if (pgl_http_start(listen, store_path, &h, err, sizeof(err)) != 0) {
		fprintf(stderr, "pgl_http_start: %s\n", err);
		exit(2);
	}
	strcpy(st.node, "n1");
	strcpy(st.role, "primary");
	strcpy(st.holder, "n1");
	st.deadline_ms = pgl_mono_ms() + 3600 * 1000;
	pgl_http_publish(h, &st);
	return h;
}

/* A connection to the API from the loopback address src (127.0.0.X), or -1. */
static int
connect_from(const char *src, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET }, b = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, src, &a.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &b.sin_addr);
	b.sin_port = htons((uint16_t) port);
	if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof(a)) != 0 ||
		connect(fd, (struct sockaddr *) &b, sizeof(b)) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/*
 * One request for path from src; returns its HTTP status (0 when none came
 * within 2 s) and its time in *ms, the body in body (may be NULL).
 */
static int
request(const char *src, int port, const char *path, double *ms, char *body, size_t bodylen)
{
	char req[256], buf[32768];
	size_t got = 0;
	int64_t t0 = pgl_mono_ms();
	int fd = connect_from(src, port), status = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	if (fd < 0)
		return 0;
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
	if (write(fd, req, strlen(req)) < 0)
		goto out;
	while (got < sizeof(buf) - 1 && poll(&p, 1, (int) (t0 + 2000 - pgl_mono_ms())) > 0 &&
		   (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t) n;
	buf[got] = '\0';
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		status = 0;
	if (body && strstr(buf, "\r\n\r\n"))
		snprintf(body, bodylen, "%s", strstr(buf, "\r\n\r\n") + 4);
out:
	*ms = (double) (pgl_mono_ms() - t0);
	close(fd);
	return status;
}

/* Has the server closed fd (end of stream or reset)?  Drains what it sent. */
static bool
closed_by_server(int fd)
{
	char buf[512];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			return true;
		if (n < 0)
			return false;
	}
}

#define SLOW_MAX 400

struct slow {
	int fd[SLOW_MAX];
	int64_t opened[SLOW_MAX];
	int n;
};

/* Opens per_addr connections from each of n_addr addresses (127.0.B.1...), each half a header. */
static void
open_slow(struct slow *s, int port, int b, int n_addr, int per_addr)
{
	static const char half[] = "GET /primary HTTP/1.1\r\nHost: x\r\n";
	char src[32];

	for (int a = 1; a <= n_addr; a++)
		for (int i = 0; i < per_addr && s->n < SLOW_MAX; i++) {
			snprintf(src, sizeof(src), "127.0.%d.%d", b, a);
			if ((s->fd[s->n] = connect_from(src, port)) < 0)
				continue;
			if (write(s->fd[s->n], half, sizeof(half) - 1) < 0) {
				/* cut already: counted as closed below */
			}
			s->opened[s->n++] = pgl_mono_ms();
		}
}

/* Probes /primary from src k times; every answer 200 within max_ms.  Returns the worst time. */
static double
probe_primary(const char *src, int port, int k, double max_ms)
{
	double worst = 0, ms;

	for (int i = 0; i < k; i++) {
		int st = request(src, port, "/primary", &ms, NULL, 0);

		CHECKF(st == 200 && ms <= max_ms, "probe %d from %s: status %d after %.0f ms", i, src,
			   st, ms);
		worst = ms > worst ? ms : worst;
	}
	return worst;
}

static void
test_slow_clients_never_starve_a_probe(void)
{
	struct slow s = { .n = 0 };
	int port, open_at_end = 0;
	struct pgl_http *h = start_primary("/nonexistent/lease.db", &port);
	double worst, ms;

	/* The report's reproduction: 8 slow connections from each of 4 addresses
	 * (the old caps were 32 and 8); the probe comes from one of them. */
	open_slow(&s, port, 0, 4, 8);
	worst = probe_primary("127.0.0.1", port, 20, 100);
	/* Past the whole cap: 300 more from 75 other addresses. */
	open_slow(&s, port, 1, 75, 4);
	ms = probe_primary("127.0.0.1", port, 20, 100);
	worst = ms > worst ? ms : worst;
	ms = probe_primary("127.0.2.9", port, 20, 100);
	worst = ms > worst ? ms : worst;
	fprintf(stderr, "   %d slow connections; slowest probe %.0f ms\n", s.n, worst);
	CHECK(s.n == 332);
	/* Every slow one is closed by the server within the deadline and a poll's slack. */
	while (pgl_mono_ms() - s.opened[s.n - 1] < PGL_HTTP_DEADLINE_MS + 600)
		usleep(50 * 1000);
	for (int i = 0; i < s.n; i++)
		if (!closed_by_server(s.fd[i]))
			open_at_end++;
	CHECKF(open_at_end == 0, "%d slow connections still open past the deadline", open_at_end);
	for (int i = 0; i < s.n; i++)
		close(s.fd[i]);
	/* And a connection that trickles a byte every 300 ms is cut all the same. */
	{
		int fd = connect_from("127.0.3.1", port);
		int64_t t0 = pgl_mono_ms();
		bool cut = false;

		while (!cut && pgl_mono_ms() - t0 < 5000) {
			if (write(fd, "X", 1) < 0 || closed_by_server(fd))
				cut = true;
			else
				usleep(300 * 1000);
		}
		CHECKF(cut && pgl_mono_ms() - t0 < PGL_HTTP_DEADLINE_MS + 700,
			   "a trickling client held on for %lld ms", (long long) (pgl_mono_ms() - t0));
		close(fd);
	}
	probe_primary("127.0.0.1", port, 5, 100);
	pgl_http_stop(h);
}

/* ---- a store that cannot be reached ---- */

/* A dead etcd: accepts, counts, closes at once. */
struct dead_etcd {
	int fd;
	atomic_int accepted;
};

static void *
dead_etcd_main(void *arg)
{
	struct dead_etcd *d = arg;
	int c;

	while ((c = accept(d->fd, NULL, NULL)) >= 0) {
		atomic_fetch_add(&d->accepted, 1);
		close(c);
	}
	return NULL;
}

static void
test_dead_store_is_not_hammered(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	struct dead_etcd d = { .fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) };
	char url[128], body[32768];
	pthread_t t;
	int port, n503 = 0, n = 0;
	struct pgl_http *h;
	int64_t t0;
	double ms;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(d.fd, (struct sockaddr *) &a, sizeof(a)) != 0 || listen(d.fd, 64) != 0 ||
		getsockname(d.fd, (struct sockaddr *) &a, &len) != 0) {
		perror("listen");
		exit(2);
	}
	pthread_create(&t, NULL, dead_etcd_main, &d);
	snprintf(url, sizeof(url), "etcd://127.0.0.1:%d/pglease/main?timeout_ms=300",
			 ntohs(a.sin_port));
	h = start_primary(url, &port);
	/* 2.5 s of /cluster and /metrics requests: every one answered at once, and
	 * the store tried at its first request and then after 1 s and 2 s more. */
	t0 = pgl_mono_ms();
	while (pgl_mono_ms() - t0 < 2500) {
		int st = request("127.0.0.1", port, n % 2 ? "/metrics" : "/cluster", &ms, body,
						 sizeof(body));

		if (n % 2 == 0 && st == 503 && strstr(body, "the lease store cannot be read"))
			n503++;
		CHECKF(n % 2 == 0 ? st == 503 : st == 200, "request %d: status %d", n, st);
		CHECKF(n % 2 == 0 || strstr(body, "pglease_http_store_readable 0"), "%.200s", body);
		n++;
		usleep(10 * 1000);
	}
	CHECKF(n >= 50 && n503 == (n + 1) / 2, "%d requests, %d answered 503", n, n503);
	CHECKF(atomic_load(&d.accepted) >= 1 && atomic_load(&d.accepted) <= 3,
		   "%d connections to the store for %d requests", atomic_load(&d.accepted), n);
	fprintf(stderr, "   %d requests, %d connections to the dead store\n", n,
			atomic_load(&d.accepted));
	/* The probe is not delayed meanwhile. */
	probe_primary("127.0.0.1", port, 5, 100);
	pgl_http_stop(h);
	shutdown(d.fd, SHUT_RDWR);
	close(d.fd);
	pthread_join(t, NULL);
}

int
main(void)
{
	TEST(test_parse_lag);
	TEST(test_slow_clients_never_starve_a_probe);
	TEST(test_dead_store_is_not_hammered);
	return TEST_REPORT();
}
