/*
 * pgctl.c — the subprocess runner, the postmaster child and libpq probes.
 *
 * Every program is run from an argv array, never through a shell.  Children
 * start with every descriptor above 2 closed; only the postmaster keeps the
 * alive lock (DESIGN.md section 2, "Proof of death"), so that the lock is
 * released exactly when the last process of this node's server is gone.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pglease/common.h"
#include "pglease/log.h"
#include "pglease/pgconf.h"
#include "pglease/pgctl.h"

extern char **environ;

static sigset_t child_mask;
static bool child_mask_set;

void
pgl_proc_set_child_sigmask(const sigset_t *mask)
{
	child_mask = *mask;
	child_mask_set = true;
}

/* In a child: restore signals, close every descriptor above 2 except keep. */
static void
child_prepare(int keep_fd)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };

	for (int s = 1; s < NSIG; s++)
		sigaction(s, &sa, NULL);
	if (child_mask_set)
		sigprocmask(SIG_SETMASK, &child_mask, NULL);
	else {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
	}
	if (keep_fd > 3)
		close_range(3, keep_fd - 1, 0);
	if (keep_fd >= 3)
		close_range(keep_fd + 1, ~0U, 0);
	else
		close_range(3, ~0U, 0);
}

/*
 * In a child of parent: its own process group (killed as a group on timeout
 * or abort), dead with the agent (never writing on behind a dead one),
 * stdin /dev/null, stdout and stderr to out_fd, then argv[0] with env.
 */
static void __attribute__((noreturn))
child_exec(pid_t parent, int out_fd, char *const argv[], char *const env[])
{
	int devnull = open("/dev/null", O_RDONLY);

	setpgid(0, 0);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(127);
	dup2(devnull, 0);
	dup2(out_fd, 1);
	dup2(out_fd, 2);
	child_prepare(-1);
	execve(argv[0], argv, env);
	dprintf(2, "cannot execute %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/*
 * True when the "NAME=value" entry e sets a name that one of add sets, or
 * NOTIFY_SOCKET: systemd's socket is the agent's alone (PostgreSQL, built
 * with systemd support, would otherwise tell systemd it is "READY").
 */
static bool
overridden(const char *e, char *const *add)
{
	size_t len = strcspn(e, "=");

	if (strncmp(e, "NOTIFY_SOCKET=", 14) == 0)
		return true;
	for (size_t i = 0; add && add[i]; i++)
		if (strncmp(add[i], e, len) == 0 && add[i][len] == '=')
			return true;
	return false;
}

/*
 * True for the secrets a hook must not inherit: POSTGRES_PASSWORD and its
 * variants (POSTGRES_PASSWORD_FILE, ..., the Docker image's) and PGPASSWORD.
 */
static bool
secret(const char *e)
{
	return strncmp(e, "POSTGRES_PASSWORD", 17) == 0 || strncmp(e, "PGPASSWORD=", 11) == 0;
}

/*
 * environ (without the secrets when strip) plus add, an entry of add
 * replacing environ's of the same name (the strings are shared); caller
 * frees the array.  NULL: out of memory.
 */
static char **
build_env(char *const *add, bool strip)
{
	size_t n = 0, m = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	while (add && add[m])
		m++;
	env = calloc(n + m + 1, sizeof(char *));
	if (env == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!overridden(environ[i], add) && !(strip && secret(environ[i])))
			env[k++] = environ[i];
	if (m > 0)					/* add may be NULL: memcpy from NULL is undefined */
		memcpy(env + k, add, m * sizeof(char *));
	return env;
}

/* Where a program's output goes: out (truncated to outlen - 1), through opts->line if set. */
struct outbuf {
	const struct pgl_run_opts *opts;
	char *out;
	size_t outlen, used;
	char line[PGL_RUN_LINE_MAX];	/* the line being cut (opts->line only) */
	size_t linelen;
};

static void
out_append(struct outbuf *b, const char *text, size_t n)
{
	size_t k;

	if (b->out == NULL || b->used + 1 >= b->outlen)
		return;
	k = n < b->outlen - 1 - b->used ? n : b->outlen - 1 - b->used;
	memcpy(b->out + b->used, text, k);
	b->used += k;
	b->out[b->used] = '\0';
}

/* The line cut so far, to opts->line and, when it says so, into out. */
static void
line_flush(struct outbuf *b)
{
	b->line[b->linelen] = '\0';
	if (b->linelen && b->opts->line(b->line, b->opts->line_arg)) {
		out_append(b, b->line, b->linelen);
		out_append(b, "\n", 1);
	}
	b->linelen = 0;
}

/* n bytes of output: kept as they are, or cut into lines for opts->line. */
static void
out_feed(struct outbuf *b, const char *buf, size_t n)
{
	if (b->opts->line == NULL) {
		out_append(b, buf, n);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n' || buf[i] == '\r')
			line_flush(b);
		else {
			b->line[b->linelen++] = buf[i];
			if (b->linelen == sizeof(b->line) - 1)
				line_flush(b);
		}
	}
}

/*
 * Reads the child's output from fd into out (truncated to outlen - 1) until
 * EOF, calling opts->tick about every 100 ms and SIGKILLing pid once the
 * timeout passes or the abort flag is set.  Returns true if it killed pid.
 */
static bool
collect_output(pid_t pid, int fd, const struct pgl_run_opts *opts, char *out, size_t outlen)
{
	int64_t start = pgl_mono_ms();
	struct outbuf b = { .opts = opts, .out = out, .outlen = outlen };
	bool killed = false, eof = false;

	if (out && outlen)
		out[0] = '\0';
	while (!eof) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char buf[4096];
		int r = poll(&p, 1, 100);

		if (r > 0) {
			ssize_t n = read(fd, buf, sizeof(buf));

			if (n <= 0)
				eof = true;
			else
				out_feed(&b, buf, (size_t) n);
		}
		if (opts->tick)
			opts->tick(opts->tick_arg);
		if (!killed && ((opts->timeout_ms && pgl_mono_ms() - start > opts->timeout_ms) ||
						(opts->abort_flag && *opts->abort_flag))) {
			kill(-pid, SIGKILL);		/* the program and whatever it started */
			killed = true;
		}
	}
	if (opts->line)
		line_flush(&b);
	return killed;
}

int
pgl_run(char *const argv[], const struct pgl_run_opts *opts, char *out, size_t outlen,
		int *status)
{
	static const struct pgl_run_opts none;
	int pfd[2], wstatus = 0, rc = 0;
	bool killed;
	char **env;
	pid_t parent = getpid(), pid;

	if (opts == NULL)
		opts = &none;
	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -PGL_ESYS;
	if ((env = build_env(opts->env_add, false)) == NULL) {
		close(pfd[0]);
		close(pfd[1]);
		return -PGL_ENOMEM;
	}
	pid = fork();
	if (pid < 0) {
		free(env);
		close(pfd[0]);
		close(pfd[1]);
		return -PGL_ESYS;
	}
	if (pid == 0)
		child_exec(parent, pfd[1], argv, env);
	setpgid(pid, pid);			/* as the child does: no race with a kill */
	free(env);
	close(pfd[1]);
	killed = collect_output(pid, pfd[0], opts, out, outlen);
	close(pfd[0]);
	while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
		;
	if (status)
		*status = wstatus;
	if (killed)
		rc = -PGL_ETIMEOUT;
	else if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
		rc = -PGL_EPG;
	return rc;
}

pid_t
pgl_spawn_detached(char *const argv[])
{
	char **env = build_env(NULL, true);
	pid_t parent = getpid(), pid;

	if (env == NULL) {
		errno = ENOMEM;
		return -1;
	}
	pid = fork();
	if (pid == 0)
		child_exec(parent, 2, argv, env);
	if (pid > 0)
		setpgid(pid, pid);
	free(env);
	return pid;
}

pid_t
pgl_pg_spawn(const struct pgl_config *cfg, int keep_fd)
{
	char exe[PGL_PATH_MAX + 16];
	pid_t parent = getpid(), pid;

	char *const argv[] = { "postgres", "-D", (char *) cfg->pgdata, NULL };
	char **env = build_env(NULL, false);

	snprintf(exe, sizeof(exe), "%s/postgres", cfg->pg_bindir);
	if (env == NULL)
		return -1;
	pid = fork();
	if (pid != 0) {
		free(env);
		return pid;
	}
	/* Child: die (immediate shutdown) with the agent, keep only the lock. */
	child_prepare(keep_fd);
	if (prctl(PR_SET_PDEATHSIG, SIGQUIT) != 0 || getppid() != parent)
		_exit(1);
	{
		int devnull = open("/dev/null", O_RDONLY);

		dup2(devnull, 0);
		if (devnull > 2)
			close(devnull);
	}
	execve(exe, argv, env);
	dprintf(2, "cannot execute %s: %s\n", exe, strerror(errno));
	_exit(127);
}

/*
 * pgl_proc_kill_tree() collects at most this many processes (the postmaster,
 * its backends and whatever they started), and waits at most
 * KILL_TREE_STOP_MS in all for its SIGSTOPs to take effect: a bound on a
 * fencing path, not a limit of PostgreSQL's.
 */
#define KILL_TREE_MAX 4096
#define KILL_TREE_STOP_MS 200

/*
 * Reads the state letter and parent pid of pid from /proc/<pid>/stat with
 * read(2) (no stdio, no allocation).  False when it is gone.
 */
static bool
proc_stat(pid_t pid, char *state, pid_t *ppid)
{
	char path[64], buf[1024], *p;
	int fd, pp;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* "pid (comm) S ppid ...": comm may hold spaces and parentheses. */
	if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 1, " %c %d", state, &pp) != 2)
		return false;
	*ppid = (pid_t) pp;
	return true;
}

/*
 * Waits until pid is stopped (or dead), or until deadline_ms: once it is,
 * no fork of its own is still in flight, so its list of children is final.
 */
static void
wait_stopped(pid_t pid, int64_t deadline_ms)
{
	char state = '?';
	pid_t ppid;

	while (proc_stat(pid, &state, &ppid) && state != 'T' && state != 't' && state != 'Z' &&
		   state != 'X' && pgl_mono_ms() < deadline_ms)
		usleep(200);
}

/* Reads fd to its end or len bytes; returns the count (0 on error). */
static size_t
read_all(int fd, char *buf, size_t len)
{
	size_t used = 0;
	ssize_t n;

	while (used < len && (n = read(fd, buf + used, len - used)) > 0)
		used += (size_t) n;
	return used;
}

static bool
in_tree(const pid_t *tree, int n, pid_t pid)
{
	for (int i = 0; i < n; i++)
		if (tree[i] == pid)
			return true;
	return false;
}

/*
 * Appends to tree (n entries so far) every child of parent not in it yet,
 * from /proc/<parent>/task/<tid>/children of each of its threads, stopping
 * each with SIGSTOP as it is found.  A pid is taken only while /proc still
 * names parent as its parent: a pid reused by an unrelated process is
 * never signalled.  Returns the new count (at most KILL_TREE_MAX).
 */
static int
add_children(pid_t *tree, int n, pid_t parent)
{
	char path[64], file[340], buf[KILL_TREE_MAX * 8 + 1];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int) parent);
	if ((d = opendir(path)) == NULL)
		return n;
	while ((de = readdir(d)) != NULL && n < KILL_TREE_MAX) {
		char *save = NULL;
		size_t len;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s/children", path, de->d_name);
		if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		len = read_all(fd, buf, sizeof(buf) - 1);
		close(fd);
		buf[len] = '\0';
		for (char *t = strtok_r(buf, " \n", &save); t && n < KILL_TREE_MAX;
			 t = strtok_r(NULL, " \n", &save)) {
			pid_t c = (pid_t) strtol(t, NULL, 10), pp;
			char state;

			if (c > 1 && !in_tree(tree, n, c) && proc_stat(c, &state, &pp) && pp == parent) {
				kill(c, SIGSTOP);
				tree[n++] = c;
			}
		}
	}
	closedir(d);
	return n;
}

/*
 * Stops the tree top-down, then kills it.  A stopped process cannot fork,
 * and cannot reap a child, so the child's pid cannot be reused while the
 * walk looks at it; a child forked just before its parent stopped is found
 * once the parent is seen stopped.  Then SIGKILL goes to the root first and
 * on down (SIGKILL ends stopped processes too).  Bounded by KILL_TREE_MAX
 * processes and KILL_TREE_STOP_MS of waiting; a pid already collected is
 * never collected again, so a cycle (pid reuse) cannot loop.
 */
void
pgl_proc_kill_tree(pid_t pid)
{
	pid_t tree[KILL_TREE_MAX];
	int64_t deadline = pgl_mono_ms() + KILL_TREE_STOP_MS;
	int n = 1;

	if (pid <= 1)				/* never kill(0), kill(-1) or init */
		return;
	tree[0] = pid;
	kill(pid, SIGSTOP);
	for (int i = 0; i < n; i++) {
		wait_stopped(tree[i], deadline);
		n = add_children(tree, n, tree[i]);
	}
	for (int i = 0; i < n; i++)
		kill(tree[i], SIGKILL);
}

static bool
parse_line(const char *text, const char *key, char *val, size_t len)
{
	const char *p = strstr(text, key);
	const char *e;

	if (p == NULL)
		return false;
	p += strlen(key);
	while (*p == ' ' || *p == ':')
		p++;
	e = strchr(p, '\n');
	if (e == NULL)
		e = p + strlen(p);
	snprintf(val, len, "%.*s", (int) (e - p), p);
	return true;
}

int
pgl_pg_controldata(const struct pgl_config *cfg, struct pgl_controldata *cd)
{
	char exe[PGL_PATH_MAX + 32], out[16384], v[128];
	char *argv[] = { exe, (char *) cfg->pgdata, NULL };
	char *env_add[] = { "LC_ALL=C", NULL };
	struct pgl_run_opts o = { .timeout_ms = 10000, .env_add = env_add };
	int rc;

	memset(cd, 0, sizeof(*cd));
	snprintf(exe, sizeof(exe), "%s/pg_controldata", cfg->pg_bindir);
	rc = pgl_run(argv, &o, out, sizeof(out), NULL);
	if (rc < 0)
		return rc;
	if (!parse_line(out, "Database system identifier", cd->sysid, sizeof(cd->sysid)))
		return -PGL_EPROTO;
	parse_line(out, "Database cluster state", cd->state, sizeof(cd->state));
	if (parse_line(out, "Latest checkpoint location", v, sizeof(v)))
		pgl_lsn_parse(v, &cd->checkpoint_lsn);
	if (parse_line(out, "Latest checkpoint's REDO location", v, sizeof(v)))
		pgl_lsn_parse(v, &cd->redo_lsn);
	if (parse_line(out, "Minimum recovery ending location", v, sizeof(v)))
		pgl_lsn_parse(v, &cd->min_recovery_lsn);
	if (parse_line(out, "Latest checkpoint's TimeLineID", v, sizeof(v)))
		cd->timeline = atoll(v);
	return 0;
}

int
pgl_pg_server_major(const struct pgl_config *cfg)
{
	static char bindir[PGL_PATH_MAX];
	static int major;
	char exe[PGL_PATH_MAX + 16], out[256];
	const char *v;

	if (major > 0 && strcmp(bindir, cfg->pg_bindir) == 0)
		return major;
	snprintf(exe, sizeof(exe), "%s/postgres", cfg->pg_bindir);
	{
		char *const argv[] = { exe, "-V", NULL };
		struct pgl_run_opts o = { .timeout_ms = 10000 };

		if (pgl_run(argv, &o, out, sizeof(out), NULL) != 0)
			return 0;
	}
	/* "postgres (PostgreSQL) 15.10 (Debian 15.10-0+deb12u1)" */
	if ((v = strstr(out, ") ")) == NULL || !isdigit((unsigned char) v[2]))
		return 0;
	major = atoi(v + 2);
	pgl_strlcpy(bindir, cfg->pg_bindir, sizeof(bindir));
	return major;
}

/* Remote options (replication_ssl*) used by pgl_pg_ping_remote(); see pgctl.h. */
static const struct pgl_config *remote_cfg;

void
pgl_pg_set_remote_config(const struct pgl_config *cfg)
{
	remote_cfg = cfg;
}

/*
 * Local connections go through keyword arrays (no conninfo string to quote):
 * the socket directory, the port, role postgres (peer authentication maps
 * the agent's OS user to it, see pglease.ident.conf).
 */
static void
local_params(const struct pgl_config *cfg, int timeout_s, const char **kw, const char **vals,
			 char *port, size_t portlen, char *tmo, size_t tmolen)
{
	snprintf(port, portlen, "%d", cfg->pg_port);
	snprintf(tmo, tmolen, "%d", timeout_s < 2 ? 2 : timeout_s);
	kw[0] = "host"; vals[0] = cfg->pg_socket_dir;
	kw[1] = "port"; vals[1] = port;
	kw[2] = "user"; vals[2] = "postgres";
	kw[3] = "dbname"; vals[3] = "postgres";
	kw[4] = "connect_timeout"; vals[4] = tmo;
	kw[5] = NULL; vals[5] = NULL;
}

/* ---- bounded libpq calls ---- */

/*
 * The bound on every connection attempt and query of this process, in ms
 * (0: none).  The agent sets it, so that a hung local server cannot stall
 * its loop; its job workers and the CLI leave it unset.
 */
static int64_t bound_ms;
static int64_t timeout_at_ms;	/* when a bounded call last timed out, 0 never */

void
pgl_pg_set_bound(int64_t ms)
{
	bound_ms = ms;
}

int64_t
pgl_pg_timeout_at(void)
{
	return timeout_at_ms;
}

/* Waits until conn's socket is ready for reading (or writing); false at end_ms. */
static bool
wait_socket(PGconn *conn, bool for_write, int64_t end_ms)
{
	struct pollfd p = { .fd = PQsocket(conn), .events = for_write ? POLLOUT : POLLIN };

	for (;;) {
		int64_t left = end_ms - pgl_mono_ms();
		int r;

		if (left <= 0)
			return false;
		r = poll(&p, 1, (int) left);
		if (r > 0 || (r < 0 && errno != EINTR))
			return true;		/* ready, or an error libpq will report */
	}
}

static void
timed_out(const char *what)
{
	timeout_at_ms = pgl_mono_ms();
	pgl_log_warn("local server: %s did not complete within %lld ms", what, (long long) bound_ms);
}

/* PQconnectdbParams, bounded; NULL when it timed out. */
static PGconn *
connect_params(const char *const *kw, const char *const *vals)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	int64_t end = pgl_mono_ms() + bound_ms;
	PGconn *c;

	if (bound_ms <= 0)
		return PQconnectdbParams(kw, vals, 0);
	c = PQconnectStartParams(kw, vals, 0);
	if (c == NULL || PQstatus(c) == CONNECTION_BAD)
		return c;
	while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
		if (!wait_socket(c, st == PGRES_POLLING_WRITING, end)) {
			PQfinish(c);
			timed_out("connecting");
			return NULL;
		}
		st = PQconnectPoll(c);
	}
	return c;
}

/*
 * Breaks conn on purpose: shuts its socket and reads to the end, so that
 * libpq sees the end of the stream and marks it CONNECTION_BAD (the caller
 * then connects again).  Reading only once is not enough: a part of an
 * answer already received (a ParseComplete without the rest) is consumed,
 * the connection stays "OK" with a command in progress, and every later
 * query fails with "another command is already in progress" for good.
 */
static void
break_connection(PGconn *conn)
{
	shutdown(PQsocket(conn), SHUT_RDWR);
	for (int i = 0; i < 1000 && PQstatus(conn) == CONNECTION_OK; i++) {
		if (!PQconsumeInput(conn))
			break;
		while (!PQisBusy(conn)) {
			PGresult *r = PQgetResult(conn);

			if (r == NULL)
				break;
			PQclear(r);
		}
	}
}

/*
 * PQexecParams, bounded: NULL on a timeout, after which the connection is
 * broken on purpose (its next use fails and the caller connects again).
 */
static PGresult *
exec_params(PGconn *conn, const char *sql, int nparams, const char *const *params)
{
	int64_t end = pgl_mono_ms() + bound_ms;
	PGresult *res, *last = NULL;

	if (bound_ms <= 0 || PQisnonblocking(conn))
		return PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (!PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0)) {
		/* a connection left mid-command can never be used again: break it */
		if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_ACTIVE)
			break_connection(conn);
		return NULL;
	}
	for (;;) {
		while (PQisBusy(conn)) {
			if (!wait_socket(conn, false, end)) {
				break_connection(conn);
				PQclear(last);
				timed_out("a query");
				return NULL;
			}
			if (!PQconsumeInput(conn))
				break;
		}
		if ((res = PQgetResult(conn)) == NULL)
			return last;
		PQclear(last);
		last = res;
	}
}

PGconn *
pgl_pg_connect_local(const struct pgl_config *cfg, int timeout_s)
{
	const char *kw[6], *vals[6];
	char port[16], tmo[16];
	PGconn *c;

	local_params(cfg, timeout_s, kw, vals, port, sizeof(port), tmo, sizeof(tmo));
	c = connect_params(kw, vals);
	if (c == NULL)
		return NULL;
	if (PQstatus(c) != CONNECTION_OK) {
		pgl_log_debug("local connection failed: %s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	/*
	 * A hung server must not hang the agent for long, and the agent's own
	 * commits (the replication role at bootstrap, CREATE EXTENSION) must not
	 * wait for a synchronous standby that may not exist yet.
	 */
	PQclear(exec_params(c, "SET statement_timeout = '5s'", 0, NULL));
	PQclear(exec_params(c, "SET synchronous_commit = local", 0, NULL));
	return c;
}

bool
pgl_pg_ping_remote(const char *host, int port)
{
	struct pgl_remote r = {
		.host = host, .port = port, .dbname = "postgres", .connect_timeout = 2,
		.cfg = remote_cfg, .libpq_version = PQlibVersion(),
	};
	char *ci = NULL;
	bool ok;

	if (pgl_conninfo_remote(&r, &ci) < 0)
		return false;
	ok = PQping(ci) == PQPING_OK;
	free(ci);
	return ok;
}

/* Runs sql; on failure logs label (or the SQL text when label is NULL). */
static int
exec_logged(PGconn *conn, const char *label, const char *sql, int nparams,
			const char *const *params)
{
	PGresult *res = exec_params(conn, sql, nparams, params);
	ExecStatusType s = PQresultStatus(res);
	int rc = 0;

	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		if (label) {
			/* Only the primary message: a syntax error's context quotes the text. */
			const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

			pgl_log_warn("%s failed: %s", label, m ? m : "connection lost");
		} else
			pgl_log_warn("query failed: %s: %s", sql, PQerrorMessage(conn));
		rc = -PGL_EPG;
	}
	PQclear(res);
	return rc;
}

int
pgl_pg_exec_secret(PGconn *conn, const char *label, const char *sql, int nparams,
				   const char *const *params)
{
	return exec_logged(conn, label, sql, nparams, params);
}

int
pgl_pg_exec(PGconn *conn, const char *sql, int nparams, const char *const *params)
{
	return exec_logged(conn, NULL, sql, nparams, params);
}

int
pgl_pg_scalar(PGconn *conn, const char *sql, int nparams, const char *const *params,
			  char *out, size_t outlen)
{
	PGresult *res = exec_params(conn, sql, nparams, params);
	int rc = -PGL_EPG;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pgl_log_debug("query failed: %s: %s", sql, PQerrorMessage(conn));
		goto out;
	}
	rc = -PGL_EPROTO;
	if (PQntuples(res) != 1 || PQnfields(res) < 1)
		goto out;
	pgl_strlcpy(out, PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0), outlen);
	rc = 0;
out:
	PQclear(res);
	return rc;
}

int
pgl_pg_status(PGconn *conn, struct pgl_pg_status *st)
{
	static const char sql[] =
		"SELECT pg_is_in_recovery(), "
		"  CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() "
		"       ELSE pg_current_wal_lsn() END, "
		"  CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
		"       ELSE pg_current_wal_lsn() END, "
		"  CASE WHEN pg_is_in_recovery() "
		"       THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver), "
		"                     (SELECT timeline_id FROM pg_control_checkpoint())) "
		"       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int "
		"  END, "
		"  (SELECT status FROM pg_stat_wal_receiver), "
		"  (SELECT sender_host FROM pg_stat_wal_receiver), "
		"  (SELECT sender_port FROM pg_stat_wal_receiver)";
	PGresult *res = exec_params(conn, sql, 0, NULL);
	int rc = -PGL_EPG;

	memset(st, 0, sizeof(*st));
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pgl_log_debug("status query failed: %s", PQerrorMessage(conn));
		goto out;
	}
	rc = -PGL_EPROTO;
	if (PQntuples(res) != 1 || PQnfields(res) != 7)
		goto out;
	st->in_recovery = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	if (!PQgetisnull(res, 0, 1))
		pgl_lsn_parse(PQgetvalue(res, 0, 1), &st->receive_lsn);
	if (!PQgetisnull(res, 0, 2))
		pgl_lsn_parse(PQgetvalue(res, 0, 2), &st->replay_lsn);
	st->timeline = atoll(PQgetvalue(res, 0, 3));
	st->streaming = strcmp(PQgetvalue(res, 0, 4), "streaming") == 0;
	pgl_strlcpy(st->sender_host, PQgetvalue(res, 0, 5), sizeof(st->sender_host));
	st->sender_port = atoi(PQgetvalue(res, 0, 6));
	rc = 0;
out:
	PQclear(res);
	return rc;
}
