/*
 * probe.c — the one client every system in the peer benchmark is measured with.
 *
 *   probe write [-d SECONDS] [-r RETRY_MS] [-t TIMEOUT_MS] [-b FIRST_ID] CONNINFO
 *       Insert rows (id, 'w') into bench_probe through CONNINFO, normally
 *       libpq's multi-host form
 *         host=127.0.0.1,127.0.0.1,127.0.0.1 port=a,b,c
 *         target_session_attrs=read-write connect_timeout=2
 *       one at a time; on any failure drop the connection, wait RETRY_MS (5)
 *       and connect again.  Prints one CSV line per event on stdout:
 *         w,ID,T_NS,PORT      write ID acknowledged at monotonic time T_NS
 *                             by the server on PORT
 *         u,ID,T_NS,PORT      write ID sent, outcome unknown (error/timeout
 *                             after sending, e.g. the connection was reset)
 *         e,0,T_NS,-          first connect failure after a success
 *                             (not repeated until the next success)
 *   probe sample [-d SECONDS] [-i INTERVAL_MS] [-t TIMEOUT_MS] CONNINFO...
 *       Every INTERVAL_MS (50) try one write (src 's') on each node directly
 *       and print  s,NODE_INDEX,T_NS,STATE  with STATE
 *         W  the write was accepted (the node acts as a primary)
 *         R  refused: read-only transaction (SQLSTATE 25006, a standby)
 *         D  no connection (down, refusing, or not accepting connections)
 *         E  another error;  T  no answer within TIMEOUT_MS (1000)
 *
 * T_NS is CLOCK_MONOTONIC, the clock of Python's time.monotonic_ns(), so the
 * runner can line events up with the moment it injected a fault.
 * Stops after -d seconds (0: never) or on SIGTERM/SIGINT.
 * Build: cc -O2 -o probe probe.c -I$(pg_config --includedir) -lpq
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <libpq-fe.h>

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR && !stop)
		;
}

/* Outcome of one statement. */
enum { Q_OK, Q_READONLY, Q_ERROR, Q_TIMEOUT, Q_BROKEN };

/* Run an INSERT with a client-side deadline.  Q_BROKEN: connection lost. */
static int exec_insert(PGconn *c, long long id, const char *src, int timeout_ms)
{
	char idbuf[32];
	const char *vals[2] = { idbuf, src };
	int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
	PGresult *r;
	int rc = Q_OK, got = 0;

	snprintf(idbuf, sizeof idbuf, "%lld", id);
	if (!PQsendQueryParams(c, "INSERT INTO bench_probe(id, src) VALUES ($1, $2)",
			       2, NULL, vals, NULL, NULL, 0))
		return Q_BROKEN;
	for (;;) {
		if (!PQconsumeInput(c))
			return Q_BROKEN;
		if (!PQisBusy(c)) {
			while ((r = PQgetResult(c)) != NULL) {
				ExecStatusType st = PQresultStatus(r);
				got = 1;
				if (st != PGRES_COMMAND_OK) {
					const char *ss = PQresultErrorField(r, PG_DIAG_SQLSTATE);
					if (ss && strcmp(ss, "25006") == 0)
						rc = Q_READONLY;
					else if (rc == Q_OK)
						rc = Q_ERROR;
				}
				PQclear(r);
			}
			if (!got || PQstatus(c) != CONNECTION_OK)
				return rc == Q_OK ? Q_BROKEN : rc;
			return rc;
		}
		int left = (int)((deadline - now_ns()) / 1000000);
		if (left <= 0)
			return Q_TIMEOUT;
		struct pollfd p = { PQsocket(c), POLLIN, 0 };
		if (poll(&p, 1, left) < 0 && errno != EINTR)
			return Q_BROKEN;
		if (stop)
			return Q_TIMEOUT;
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: probe write [-d S] [-r MS] [-t MS] [-b ID] CONNINFO\n"
			"       probe sample [-d S] [-i MS] [-t MS] CONNINFO...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	double dur = 0;
	int retry_ms = 5, interval_ms = 50, timeout_ms = -1, opt;
	long long id = 1;
	const char *mode;

	if (argc < 2)
		usage();
	mode = argv[1];
	argv++; argc--;
	while ((opt = getopt(argc, argv, "d:r:t:b:i:")) != -1) {
		switch (opt) {
		case 'd': dur = atof(optarg); break;
		case 'r': retry_ms = atoi(optarg); break;
		case 't': timeout_ms = atoi(optarg); break;
		case 'b': id = atoll(optarg); break;
		case 'i': interval_ms = atoi(optarg); break;
		default: usage();
		}
	}
	if (optind >= argc)
		usage();
	signal(SIGTERM, on_sig);
	signal(SIGINT, on_sig);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	int64_t end = dur > 0 ? now_ns() + (int64_t)(dur * 1e9) : INT64_MAX;

	if (strcmp(mode, "write") == 0) {
		const char *ci = argv[optind];
		PGconn *c = NULL;
		int reported = 0;
		if (timeout_ms < 0)
			timeout_ms = 2000;
		while (!stop && now_ns() < end) {
			if (!c) {
				c = PQconnectdb(ci);
				if (PQstatus(c) != CONNECTION_OK) {
					if (!reported) {
						printf("e,0,%" PRId64 ",-\n", now_ns());
						fprintf(stderr, "probe: %s", PQerrorMessage(c));
						reported = 1;
					}
					PQfinish(c);
					c = NULL;
					sleep_ms(retry_ms);
					continue;
				}
				PQsetnonblocking(c, 0);
			}
			int rc = exec_insert(c, id, "w", timeout_ms);
			int64_t t = now_ns();
			if (rc == Q_OK) {
				printf("w,%lld,%" PRId64 ",%s\n", id, t, PQport(c));
				reported = 0;
			} else {
				/* Sent but not acknowledged: it may or may not have committed. */
				printf("u,%lld,%" PRId64 ",%s\n", id, t, PQport(c));
				PQfinish(c);
				c = NULL;
				sleep_ms(retry_ms);
			}
			id++;
		}
		if (c)
			PQfinish(c);
		return 0;
	}
	if (strcmp(mode, "sample") == 0) {
		int n = argc - optind, i;
		PGconn **cs = calloc(n, sizeof *cs);
		long long sid = 1;
		if (timeout_ms < 0)
			timeout_ms = 1000;
		while (!stop && now_ns() < end) {
			int64_t t0 = now_ns();
			for (i = 0; i < n && !stop; i++) {
				char st = 'W';
				if (!cs[i]) {
					cs[i] = PQconnectdb(argv[optind + i]);
					if (PQstatus(cs[i]) != CONNECTION_OK) {
						PQfinish(cs[i]);
						cs[i] = NULL;
						st = 'D';
					}
				}
				if (cs[i]) {
					switch (exec_insert(cs[i], sid++, "s", timeout_ms)) {
					case Q_OK: st = 'W'; break;
					case Q_READONLY: st = 'R'; break;
					case Q_ERROR: st = 'E'; break;
					case Q_TIMEOUT: st = 'T'; break;
					default: st = 'D'; break;
					}
					if (st != 'W' && st != 'R') {
						PQfinish(cs[i]);
						cs[i] = NULL;
					}
				}
				printf("s,%d,%" PRId64 ",%c\n", i, now_ns(), st);
			}
			int left = interval_ms - (int)((now_ns() - t0) / 1000000);
			if (left > 0)
				sleep_ms(left);
		}
		for (i = 0; i < n; i++)
			if (cs[i])
				PQfinish(cs[i]);
		return 0;
	}
	usage();
	return 2;
}
