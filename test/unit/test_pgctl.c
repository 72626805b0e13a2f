/*
 * test_pgctl.c — pgl_proc_kill_tree(), the watchdog's and the fence's last
 * resort: every descendant of the postmaster must die, not only its direct
 * children (a backend's COPY TO PROGRAM shell, an archive_command and its
 * own children), and nothing outside the tree may be touched.  And the
 * agent's bounded queries: a query that times out with part of its answer
 * received leaves a connection that reads as broken (a fake server that
 * speaks just enough of the protocol).
 *
 * The test process makes itself a child subreaper, so a descendant whose
 * parent dies is re-parented here and its death can be checked with
 * waitpid().  Forked children leave with _exit() and never CHECK.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <libpq-fe.h>

#include "harness.h"
#include "pglease/common.h"
#include "pglease/config.h"
#include "pglease/pgctl.h"

#define MAX_PIDS 64

static int report_fd = -1;		/* a child writes its pid here once it is in place */

static void __attribute__((noreturn))
report_and_wait(void)
{
	pid_t me = getpid();

	if (write(report_fd, &me, sizeof(me)) != sizeof(me))
		_exit(3);
	for (;;)
		pause();
}

/* Forks a chain of depth more processes below the caller, each reporting. */
static void __attribute__((noreturn))
fork_chain(int depth)
{
	pid_t p;

	if (depth == 0)
		report_and_wait();
	p = fork();
	if (p < 0)
		_exit(2);
	if (p == 0)
		fork_chain(depth - 1);
	report_and_wait();
}

/* A thread of the tree's root that forks: its child is listed under the thread's tid. */
static void *
thread_forks(void *arg)
{
	pid_t p = fork();

	(void) arg;
	if (p == 0)
		report_and_wait();
	for (;;)
		pause();
	return NULL;
}

/*
 * The root of the test tree: a chain of grandchildren and great-grandchildren,
 * a second child, and a child forked by a second thread.
 */
static void __attribute__((noreturn))
root_main(int chain)
{
	pthread_t t;

	if (fork() == 0)
		fork_chain(chain - 1);
	if (fork() == 0)
		report_and_wait();
	if (pthread_create(&t, NULL, thread_forks, NULL) != 0)
		_exit(4);
	report_and_wait();
}

/* Reads want pids from fd within 5 s; returns how many arrived. */
static int
read_pids(int fd, pid_t *pids, int want)
{
	int64_t end = pgl_mono_ms() + 5000;
	int got = 0;

	while (got < want && pgl_mono_ms() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 100) > 0 && read(fd, &pids[got], sizeof(pid_t)) == sizeof(pid_t))
			got++;
	}
	return got;
}

/*
 * Reaps pids (our children by birth or, as subreaper, by re-parenting)
 * for up to ms; returns how many were reaped killed by SIGKILL.  Each pid
 * reaped is set to 0.
 */
static int
reap_killed(pid_t *pids, int n, int ms)
{
	int64_t end = pgl_mono_ms() + ms;
	int killed = 0, left = 0;

	for (int i = 0; i < n; i++)
		left += pids[i] > 0;

	while (left > 0 && pgl_mono_ms() < end) {
		int status;
		pid_t p = waitpid(-1, &status, WNOHANG);

		if (p <= 0) {
			usleep(2000);
			continue;
		}
		for (int i = 0; i < n; i++)
			if (pids[i] == p) {
				pids[i] = 0;
				left--;
				killed += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
			}
	}
	return killed;
}

/* Cleans up whatever survived a failed test. */
static void
kill_rest(pid_t *pids, int n)
{
	for (int i = 0; i < n; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGKILL);
	reap_killed(pids, n, 1000);
}

/*
 * Builds the tree (its root reports too), kills it from the root, and
 * checks that every process of it died of SIGKILL while a bystander (a
 * sibling of the root) lives on.
 */
static void
run_tree(int chain)
{
	pid_t pids[MAX_PIDS], root, bystander;
	int fds[2], want = 1 + chain + 1 + 1, got, killed;

	CHECK(pipe(fds) == 0);
	report_fd = fds[1];
	bystander = fork();
	if (bystander == 0) {
		for (;;)
			pause();
	}
	root = fork();
	if (root == 0) {
		close(fds[0]);
		root_main(chain);
	}
	close(fds[1]);
	got = read_pids(fds[0], pids, want);
	close(fds[0]);
	CHECKF(got == want, "%d of %d processes reported", got, want);
	pgl_proc_kill_tree(root);
	killed = reap_killed(pids, got, 5000);
	CHECKF(killed == got, "chain %d: %d of %d processes killed by SIGKILL", chain, killed, got);
	CHECKF(kill(bystander, 0) == 0, "a process outside the tree was killed");
	kill_rest(pids, got);
	kill(bystander, SIGKILL);
	waitpid(bystander, NULL, 0);
}

/* A root with a child, a grandchild, and a child of one of its threads. */
static void
test_kill_tree_grandchild(void)
{
	run_tree(2);
}

/* Ten generations below the root's first child. */
static void
test_kill_tree_deep(void)
{
	run_tree(10);
}

/* pid 0 would be "my process group": ignored, not signalled. */
static void
test_kill_tree_bad_pid(void)
{
	pid_t p = fork();
	int status = 0;

	if (p == 0) {
		setpgid(0, 0);			/* a wrong kill(0) ends only this child */
		pgl_proc_kill_tree(0);
		pgl_proc_kill_tree(1);
		_exit(0);
	}
	CHECK(p > 0 && waitpid(p, &status, 0) == p);
	CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	/* A pid that no longer exists: nothing to do, nothing to crash on. */
	pgl_proc_kill_tree(p);
}

/* ---- a bounded query that times out halfway ---- */

static void
put_msg(int fd, char type, const void *body, uint32_t n)
{
	char buf[256];
	uint32_t len = htonl(n + 4);

	buf[0] = type;
	memcpy(buf + 1, &len, 4);
	memcpy(buf + 5, body, n);
	if (write(fd, buf, n + 5) != (ssize_t) (n + 5))
		_exit(4);
}

/*
 * The fake server: accepts one connection, says AuthenticationOk,
 * server_version and ReadyForQuery, then reads queries and never answers.
 */
static void __attribute__((noreturn))
silent_server(int lfd)
{
	char buf[4096];
	int c = accept(lfd, NULL, NULL);
	uint32_t zero = 0;

	if (c < 0 || read(c, buf, sizeof(buf)) <= 0)		/* the startup packet */
		_exit(3);
	put_msg(c, 'R', &zero, 4);
	put_msg(c, 'S', "server_version\0" "15.0\0", 20);
	put_msg(c, 'S', "client_encoding\0" "UTF8\0", 21);
	put_msg(c, 'Z', "I", 1);
	while (read(c, buf, sizeof(buf)) > 0)
		;
	_exit(0);
}

/*
 * A connection left with a command in progress and its socket still open
 * (an agent stopped mid-query and resumed past the query's deadline: the
 * answer it then read was never fetched) must be broken by the next bounded
 * query, never kept "OK" and refusing every query with "another command is
 * already in progress" (found by the nemesis on etcd, a stopped node).
 */
static void
test_wedged_connection_is_broken(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	char ci[128];
	PGconn *conn;
	pid_t srv;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *) &a, sizeof(a)) != 0 || listen(lfd, 1) != 0 ||
		getsockname(lfd, (struct sockaddr *) &a, &alen) != 0) {
		CHECKF(0, "listen: %s", strerror(errno));
		return;
	}
	srv = fork();
	if (srv == 0)
		silent_server(lfd);
	close(lfd);
	snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d user=x dbname=x sslmode=disable "
			 "gssencmode=disable connect_timeout=5", ntohs(a.sin_port));
	conn = PQconnectdb(ci);
	CHECKF(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
	CHECK(PQsendQuery(conn, "SELECT 1") == 1);		/* left in progress */
	pgl_pg_set_bound(300);
	CHECK(pgl_pg_exec(conn, "SELECT 2", 0, NULL) == -PGL_EPG);
	CHECKF(PQstatus(conn) == CONNECTION_BAD, "status %d, transaction status %d: %s",
		   (int) PQstatus(conn), (int) PQtransactionStatus(conn), PQerrorMessage(conn));
	PQfinish(conn);
	conn = NULL;
	pgl_pg_set_bound(0);
	kill(srv, SIGKILL);
	waitpid(srv, NULL, 0);
}

/* ---- the subprocess runner ---- */

/*
 * pgl_run() with no options (no env_add): the runner's environment copy
 * once did memcpy() from NULL, which a UBSan build (make sanitize) aborts
 * on; the agent's first postgres start takes this path.
 */
static void
test_run_without_env_add(void)
{
	char *const argv[] = { "/bin/sh", "-c", "echo ran", NULL };
	char out[64];
	int st = -1;

	CHECK(pgl_run(argv, NULL, out, sizeof(out), &st) == 0);
	CHECKF(strcmp(out, "ran\n") == 0, "output '%s'", out);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/*
 * pgl_spawn_detached() (the hooks' starter) hands the program the
 * agent's environment without POSTGRES_PASSWORD* and PGPASSWORD.
 */
static void
test_spawn_detached_strips_secrets(void)
{
	char path[1024], env[4096] = "", *const argv[] = { "/bin/sh", "-c", "env > \"$OUT\"", NULL };
	FILE *f;
	size_t n = 0;
	pid_t pid;
	int st;

	snprintf(path, sizeof(path), "%s/env.out", test_dir());
	setenv("OUT", path, 1);
	setenv("POSTGRES_PASSWORD", "sekrit1", 1);
	setenv("POSTGRES_PASSWORD_FILE", "/run/secrets/x", 1);
	setenv("PGPASSWORD", "sekrit2", 1);
	setenv("PGL_KEPT", "kept", 1);
	pid = pgl_spawn_detached(argv);
	CHECK(pid > 0);
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if ((f = fopen(path, "r")) != NULL) {
		n = fread(env, 1, sizeof(env) - 1, f);
		fclose(f);
	}
	env[n] = '\0';
	CHECKF(strstr(env, "PGL_KEPT=kept") != NULL, "env: %s", env);
	CHECKF(strstr(env, "POSTGRES_PASSWORD") == NULL, "env: %s", env);
	CHECKF(strstr(env, "PGPASSWORD") == NULL, "env: %s", env);
	CHECKF(strstr(env, "sekrit") == NULL, "env: %s", env);
	unsetenv("POSTGRES_PASSWORD");
	unsetenv("POSTGRES_PASSWORD_FILE");
	unsetenv("PGPASSWORD");
}

/* pgl_pg_server_major(): the installed server's major, from `postgres -V`. */
static void
test_server_major(void)
{
	struct pgl_config cfg;
	char path[1100];
	FILE *f;

	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.pg_bindir, sizeof(cfg.pg_bindir), "%s", test_dir());
	snprintf(path, sizeof(path), "%s/postgres", cfg.pg_bindir);
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (f == NULL)
		return;
	fputs("#!/bin/sh\necho 'postgres (PostgreSQL) 17.2 (Debian 17.2-1.pgdg120+1)'\n", f);
	fclose(f);
	chmod(path, 0755);
	CHECK(pgl_pg_server_major(&cfg) == 17);
	CHECK(pgl_pg_server_major(&cfg) == 17);		/* remembered */
	if (access("/usr/lib/postgresql/15/bin/postgres", X_OK) == 0) {
		strcpy(cfg.pg_bindir, "/usr/lib/postgresql/15/bin");
		CHECK(pgl_pg_server_major(&cfg) == 15);
	}
	strcpy(cfg.pg_bindir, "/nonexistent");
	CHECK(pgl_pg_server_major(&cfg) == 0);
}

/* What the line callback saw: each line, and whether it said to keep it. */
struct lines {
	char seen[16][PGL_RUN_LINE_MAX];
	int n;
};

static bool
drop_progress(const char *text, void *arg)
{
	struct lines *l = arg;

	if (l->n < 16)
		pgl_strlcpy(l->seen[l->n++], text, sizeof(l->seen[0]));
	return strstr(text, " kB (") == NULL;
}

/*
 * pgl_run() with a line callback: output cut at '\n' and '\r' (a tool
 * writing to a terminal), an unfinished last line still handed over, and
 * only the lines kept reach out.
 */
static void
test_run_lines(void)
{
	char *argv[] = { "/bin/sh", "-c", "printf 'waiting for checkpoint\\n'; "
		"printf '  10/100 kB (10%%), 0/1 tablespace\\r 100/100 kB (100%%)\\n' >&2; "
		"printf 'error: boom'", NULL };
	char *env[] = { "LC_ALL=C", NULL };
	struct lines l = { .n = 0 };
	struct pgl_run_opts o = { .env_add = env, .line = drop_progress, .line_arg = &l };
	char out[256];

	CHECK(pgl_run(argv, &o, out, sizeof(out), NULL) == 0);
	CHECKF(strcmp(out, "waiting for checkpoint\nerror: boom\n") == 0, "%s", out);
	CHECKF(l.n == 4 && strcmp(l.seen[1], "  10/100 kB (10%), 0/1 tablespace") == 0 &&
		   strcmp(l.seen[2], " 100/100 kB (100%)") == 0 && strcmp(l.seen[3], "error: boom") == 0,
		   "%d lines", l.n);
	/* Without a callback the output is kept as it came. */
	o.line = NULL;
	CHECK(pgl_run(argv, &o, out, sizeof(out), NULL) == 0 && strstr(out, "\r 100/100 kB"));
}

int
main(void)
{
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
		perror("PR_SET_CHILD_SUBREAPER");
		return 2;
	}
	TEST(test_kill_tree_grandchild);
	TEST(test_kill_tree_deep);
	TEST(test_kill_tree_bad_pid);
	TEST(test_wedged_connection_is_broken);
	TEST(test_run_without_env_add);
	TEST(test_spawn_detached_strips_secrets);
	TEST(test_server_major);
	TEST(test_run_lines);
	return TEST_REPORT();
}
