/*
 * test_pgctl.c — pgl_proc_kill_tree(), the watchdog's and the fence's last
 * resort: every descendant of the postmaster must die, not only its direct
 * children (a backend's COPY TO PROGRAM shell, an archive_command and its
 * own children), and nothing outside the tree may be touched.
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
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "pglease/common.h"
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
	return TEST_REPORT();
}
