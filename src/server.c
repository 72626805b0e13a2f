/*
 * server.c — the life cycle of the local PostgreSQL: initdb at bootstrap,
 * clone with pg_basebackup, rewind with pg_rewind, start as the agent's
 * child, stop, promote, point at a new primary, and the primary's slots.
 *
 * Node-specific settings (port, listen address, socket directory, pg.*) live
 * in pglease.node.conf inside the data directory, rewritten before every
 * start, because pg_basebackup and pg_rewind copy postgresql.conf from
 * another node.  primary_conninfo and primary_slot_name live in
 * postgresql.auto.conf, where ALTER SYSTEM changes them without a restart.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pglease/daemon.h"
#include "pglease/log.h"
#include "pglease/pgconf.h"
#include "pglease/pgctl.h"

static void warn_replication_auth(struct pgl_daemon *d);

#define NODE_CONF "pglease.node.conf"
#define HBA_CONF "pglease.hba.conf"
#define IDENT_CONF "pglease.ident.conf"

/* <pgdata>.cloning: present from before pg_basebackup until the clone is complete. */
static void
clone_marker(const struct pgl_daemon *d, char *out, size_t len)
{
	snprintf(out, len, "%s.cloning", d->cfg.pgdata);
}

/*
 * True when the data directory holds a cluster.  A clone interrupted by a
 * crash or a kill leaves PG_VERSION and much else behind, but not a server
 * that can ever become consistent: its marker says so, and it counts as no
 * data (the next clone empties it).  Only a directory known to hold no
 * PG_VERSION is empty: one that cannot be looked into (made unreadable, an
 * I/O error) counts as holding data, since "no data" leads to a clone that
 * empties it.
 */
bool
pgl_server_has_data(const struct pgl_daemon *d)
{
	char p[PGL_PATH_MAX + 16];

	clone_marker(d, p, sizeof(p));
	if (access(p, F_OK) == 0)
		return false;
	snprintf(p, sizeof(p), "%s/PG_VERSION", d->cfg.pgdata);
	if (access(p, F_OK) == 0)
		return true;
	return errno != ENOENT && errno != ENOTDIR;
}

bool
pgl_node_addr(const struct pgl_node *n, char *host, size_t len, int *port)
{
	/* Logged once per refused row, not on every tick that reads it. */
	static char refused[PGL_NAME_MAX + sizeof(n->conninfo)];
	char key[sizeof(refused)];

	if (pgl_conninfo_host_port(n->conninfo, host, len, port) == 0)
		return true;
	snprintf(key, sizeof(key), "%s\n%s", n->name, n->conninfo);
	if (strcmp(key, refused) != 0) {
		pgl_log_error("node %s: refusing its conninfo from the store (only host=NAME "
					  "port=N is accepted, with a plain host name or address)", n->name);
		pgl_strlcpy(refused, key, sizeof(refused));
	}
	return false;
}

/*
 * Makes sure the socket directory exists (created 0700 when it does not) and
 * is safe: nobody but this user (or root) can create files in it.
 */
static int
prepare_socket_dir(const struct pgl_config *cfg, char *err, size_t errlen)
{
	const char *dir = cfg->pg_socket_dir;
	struct stat st;
	char why[256];

	if (stat(dir, &st) != 0 && errno == ENOENT) {
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			snprintf(err, errlen, "pg_socket_dir %s: cannot create it: %s", dir,
					 strerror(errno));
			return -PGL_ESYS;
		}
		if (chmod(dir, 0700) != 0) {
			snprintf(err, errlen, "pg_socket_dir %s: %s", dir, strerror(errno));
			return -PGL_ESYS;
		}
	}
	if (stat(dir, &st) != 0) {
		snprintf(err, errlen, "pg_socket_dir %s: %s", dir, strerror(errno));
		return -PGL_ECONFIG;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "pg_socket_dir %s is not a directory", dir);
		return -PGL_ECONFIG;
	}
	if (pgl_socket_dir_unsafe(st.st_mode, st.st_uid, st.st_gid, geteuid(), getegid(), why,
							  sizeof(why))) {
		snprintf(err, errlen, "pg_socket_dir %s refused: %s; use a directory only this user "
				 "can write to (it is created with mode 0700 when missing)", dir, why);
		return -PGL_ECONFIG;
	}
	return 0;
}

int
pgl_server_check_identity(struct pgl_daemon *d, char *err, size_t errlen)
{
	struct pgl_controldata cd;
	struct pgl_cluster c;
	int rc;

	/* Startup is the one place with a way to refuse cleanly (exit 2). */
	pgl_pg_set_remote_config(&d->cfg);
	warn_replication_auth(d);
	if ((rc = prepare_socket_dir(&d->cfg, err, errlen)) < 0)
		return rc;
	if (!pgl_server_has_data(d))
		return 0;
	if ((rc = pgl_pg_controldata(&d->cfg, &cd)) < 0) {
		snprintf(err, errlen, "%s: cannot read pg_controldata (%s)", d->cfg.pgdata,
				 pgl_strerror(rc));
		return -PGL_EFOREIGN;
	}
	if ((rc = pgl_store_read_cluster(d->st, &c)) < 0) {
		snprintf(err, errlen, "%s: cannot read cluster row: %s", pgl_store_path(d->st),
				 pgl_strerror(rc));
		return rc;
	}
	if (c.system_identifier[0] && strcmp(c.system_identifier, cd.sysid) != 0) {
		snprintf(err, errlen, "%s belongs to another cluster: system identifier %s, but the "
				 "lease store %s is for %s; refusing to start", d->cfg.pgdata, cd.sysid,
				 pgl_store_path(d->st), c.system_identifier);
		return -PGL_EFOREIGN;
	}
	return 0;
}

/*
 * Writes text to path atomically (a new file, fsync, rename).  The temporary
 * file is created with O_EXCL | O_NOFOLLOW: a planted symlink is never
 * followed, and rename() replaces a symlink at path, not its target.
 */
static int
write_file(const char *path, const char *text, int mode)
{
	char tmp[PGL_PATH_MAX + 16];
	int fd;
	size_t n = strlen(text);

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0 || write(fd, text, n) != (ssize_t) n || fsync(fd) != 0) {
		pgl_log_error("cannot write %s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -PGL_ESYS;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		pgl_log_error("cannot rename %s: %s", tmp, strerror(errno));
		return -PGL_ESYS;
	}
	return 0;
}

/* Reads a whole file into *out (caller frees; NULL and 0 when it does not exist). */
static int
read_file(const char *path, char **out, size_t *len)
{
	struct pgl_buf b = { 0 };
	char chunk[8192];
	size_t n;
	FILE *f = fopen(path, "re");

	*out = NULL;
	*len = 0;
	if (f == NULL)
		return errno == ENOENT ? 0 : -PGL_ESYS;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		pgl_buf_append(&b, chunk, n);
	if (ferror(f)) {
		pgl_log_error("cannot read %s: %s", path, strerror(errno));
		fclose(f);
		pgl_buf_free(&b);
		return -PGL_ESYS;
	}
	fclose(f);
	n = b.len;
	if (pgl_buf_finish(&b, out) < 0)
		return -PGL_ESYS;
	*len = n;
	return 0;
}

/* Writes a text built by a pgconf.h function (rc < 0: out of memory), then frees it. */
static int
write_built(const char *path, int rc, char *text, int mode)
{
	if (rc < 0) {
		pgl_log_error("cannot build %s: %s", path, pgl_strerror(rc));
		return rc;
	}
	rc = write_file(path, text, mode);
	free(text);
	return rc;
}

/*
 * "<pgdata>/<name>" with pgdata made absolute (hba_file must not depend on a
 * working directory).  -PGL_EINVAL (logged) if it does not fit.
 */
static int
pgdata_file(const struct pgl_daemon *d, const char *name, char *out, size_t len)
{
	char abs[PATH_MAX];

	if (realpath(d->cfg.pgdata, abs) == NULL)
		pgl_strlcpy(abs, d->cfg.pgdata, sizeof(abs));
	if (snprintf(out, len, "%s/%s", abs, name) >= (int) len) {
		pgl_log_error("path of %s in %s is too long", name, abs);
		return -PGL_EINVAL;
	}
	return 0;
}

/*
 * The node-local pgpass file, beside the data directory (pg_basebackup needs
 * it while pgdata is still empty, and a base backup must not carry it).
 */
static void
passfile_path(const struct pgl_daemon *d, char *out, size_t len)
{
	size_t n = strlen(d->cfg.pgdata);
	char cwd[PGL_PATH_MAX];

	while (n > 1 && d->cfg.pgdata[n - 1] == '/')
		n--;
	/* Absolute: the walreceiver reads it from the data directory. */
	if (d->cfg.pgdata[0] != '/' && getcwd(cwd, sizeof(cwd)) != NULL) {
		if (snprintf(out, len, "%s/%.*s.pgpass", cwd, (int) n, d->cfg.pgdata) >= (int) len)
			pgl_log_warn("pgpass path truncated: %s", out);
	} else if (snprintf(out, len, "%.*s.pgpass", (int) n, d->cfg.pgdata) >= (int) len)
		pgl_log_warn("pgpass path truncated: %s", out);
}

/* Writes the pgpass file (mode 0600) with the replication role's password. */
static int
write_passfile(struct pgl_daemon *d)
{
	char path[PGL_PATH_MAX + 16], *text = NULL;
	int rc;

	passfile_path(d, path, sizeof(path));
	rc = pgl_pgpass_text(d->cfg.replication_user, d->password, &text);
	return write_built(path, rc, text, 0600);
}

/* The name of this process's OS user (for the ident map); "" if unknown. */
static void
agent_user(char *out, size_t len)
{
	struct passwd *pw = getpwuid(geteuid());

	pgl_strlcpy(out, pw && pw->pw_name ? pw->pw_name : "", len);
}

/*
 * Before every start: pglease.node.conf (included by postgresql.conf), and
 * the node's own pglease.hba.conf and pglease.ident.conf it points at.  All
 * three are node-local and rewritten each time, because pg_basebackup and
 * pg_rewind copy files from other nodes (and an older pglease left
 * `local all all trust` in pg_hba.conf, which is no longer read).
 */
static int
write_node_conf(struct pgl_daemon *d)
{
	char path[PGL_PATH_MAX + 32], hba[PGL_PATH_MAX + 32], ident[PGL_PATH_MAX + 32];
	char user[256], *text = NULL;
	struct pgl_node_conf_in in = { .cfg = &d->cfg, .fence_on = d->srv.fence_on,
		.hba_file = hba, .ident_file = ident };
	int rc;

	if ((rc = pgdata_file(d, HBA_CONF, hba, sizeof(hba))) < 0 ||
		(rc = pgdata_file(d, IDENT_CONF, ident, sizeof(ident))) < 0)
		return rc;
	rc = pgl_conf_hba_text(&d->cfg, &text);
	if (rc == -PGL_EINVAL) {
		pgl_log_error("cannot write %s: allowed_network '%s' or replication_user '%s' cannot "
					  "be written to pg_hba", hba, d->cfg.allowed_network,
					  d->cfg.replication_user);
		return rc;
	}
	if ((rc = write_built(hba, rc, text, 0600)) < 0)
		return rc;
	agent_user(user, sizeof(user));
	rc = pgl_conf_ident_text(user, &text);
	if ((rc = write_built(ident, rc, text, 0600)) < 0)
		return rc;
	snprintf(path, sizeof(path), "%s/pg_hba.conf", d->cfg.pgdata);
	if ((rc = write_file(path, "# Not used: pglease points hba_file at " HBA_CONF
						 " (rewritten before every start).\n", 0600)) < 0)
		return rc;
	snprintf(path, sizeof(path), "%s/" NODE_CONF, d->cfg.pgdata);
	rc = pgl_conf_node_text(&in, &text);
	return write_built(path, rc, text, 0600);
}

int
pgl_server_reload_conf(struct pgl_daemon *d, char *pending, size_t len)
{
	PGconn *c;
	PGresult *res;
	int rc;

	pending[0] = '\0';
	if ((rc = write_node_conf(d)) < 0)
		return rc;
	if (d->srv.pm_pid <= 0)
		return 0;				/* read at the next start */
	if ((c = pgl_server_conn(d)) == NULL || pgl_pg_exec(c, "SELECT pg_reload_conf()", 0,
														  NULL) < 0)
		return -PGL_EPG;
	/* The postmaster reloads asynchronously: pending_restart shows a moment later. */
	usleep(100000);
	res = PQexecParams(c, "SELECT coalesce(string_agg(name, ', ' ORDER BY name), '') FROM "
					   "pg_settings WHERE pending_restart", 0, NULL, NULL, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		pgl_strlcpy(pending, PQgetvalue(res, 0, 0), len);
	PQclear(res);
	return 0;
}

/*
 * The libpq version (PQlibVersion() form) of the installed PostgreSQL's
 * programs: its walreceiver reads primary_conninfo, and pg_basebackup and
 * pg_rewind read their conninfo, with a libpq at least as new as the
 * server's major.  tool: also no newer than the agent's own libpq (the
 * system's libpq.so, which the programs load too), so that require_auth is
 * never handed to a library that rejects it.
 */
static int
server_libpq(struct pgl_daemon *d, bool tool)
{
	int v = pgl_pg_server_major(&d->cfg) * 10000;

	return tool && PQlibVersion() < v ? PQlibVersion() : v;
}

/*
 * Once, at start: on a store across hosts (etcd), warns when a replication
 * connection would answer an impersonator's cleartext password request
 * (pgl_replication_auth_warning): judged by the oldest libpq involved, the
 * agent's or the server's programs'.
 */
static void
warn_replication_auth(struct pgl_daemon *d)
{
	int server = server_libpq(d, false), lib = PQlibVersion();
	const char *w = pgl_replication_auth_warning(&d->cfg, pgl_store_is_url(d->cfg.lease_db),
												 server > 0 && server < lib ? server : lib);

	if (w)
		pgl_log_warn("%s", w);
}

/* primary_conninfo for following `from` (NULL: none).  Caller frees *out. */
static int
upstream_conninfo(struct pgl_daemon *d, const struct pgl_node *from, char **out)
{
	char host[256], pass[PGL_PATH_MAX + 16];
	struct pgl_remote r = {
		.host = host, .user = d->cfg.replication_user, .passfile = pass,
		/* application_name lets synchronous_standby_names list node names. */
		.application_name = d->cfg.node_name, .connect_timeout = 2, .cfg = &d->cfg,
		/* read by the walreceiver: the server's libpq, not the agent's */
		.libpq_version = server_libpq(d, false),
	};

	*out = NULL;
	if (from == NULL || !pgl_node_addr(from, host, sizeof(host), &r.port))
		return (*out = strdup("")) ? 0 : -PGL_ENOMEM;
	/* The password stays in the pgpass file: never in postgresql.auto.conf. */
	passfile_path(d, pass, sizeof(pass));
	return pgl_conninfo_remote(&r, out);
}

/* Rewrites postgresql.auto.conf's upstream settings while the server is down. */
static int
write_standby_conf(struct pgl_daemon *d, const struct pgl_node *from)
{
	char path[PGL_PATH_MAX + 32], sig[PGL_PATH_MAX + 32], slot[PGL_NAME_MAX];
	char *old = NULL, *ci = NULL, *text = NULL;
	size_t oldlen;
	int rc;

	snprintf(path, sizeof(path), "%s/postgresql.auto.conf", d->cfg.pgdata);
	if ((rc = read_file(path, &old, &oldlen)) < 0 || (rc = upstream_conninfo(d, from, &ci)) < 0)
		goto out;
	pgl_config_slot_name(d->cfg.node_name, slot, sizeof(slot));
	rc = pgl_conf_auto_rewrite(old, oldlen, ci, from ? slot : "", &text);
	if ((rc = write_built(path, rc, text, 0600)) < 0)
		goto out;
	snprintf(sig, sizeof(sig), "%s/standby.signal", d->cfg.pgdata);
	rc = write_file(sig, "", 0600);
out:
	free(old);
	free(ci);
	return rc;
}

PGconn *
pgl_server_conn(struct pgl_daemon *d)
{
	if (d->srv.conn && PQstatus(d->srv.conn) != CONNECTION_OK) {
		PQfinish(d->srv.conn);
		d->srv.conn = NULL;
	}
	/* After a local call timed out, the server gets a renewal interval to recover. */
	if (d->srv.conn == NULL && pgl_pg_timeout_at() &&
		pgl_mono_ms() - pgl_pg_timeout_at() < d->cfg.renew_interval_ms)
		return NULL;
	if (d->srv.conn == NULL && d->srv.pm_pid > 0)
		d->srv.conn = pgl_pg_connect_local(&d->cfg, d->tmo.connect_s);
	return d->srv.conn;
}

void
pgl_server_disconnect(struct pgl_daemon *d)
{
	PQfinish(d->srv.conn);
	d->srv.conn = NULL;
	pgl_server_fence_close(d);
	d->srv.fence_wanted = false;	/* armed again after the next start or promotion */
}

/* ---- the in-server fence (src/fence) ---- */

void
pgl_server_fence_lib(const struct pgl_config *cfg, char *out, size_t len)
{
	char *copy = strdup(cfg->pg_bindir);

	snprintf(out, len, "%s/lib/pglease_fence.so", dirname(copy));
	free(copy);
}

void
pgl_server_fence_close(struct pgl_daemon *d)
{
	PQfinish(d->srv.fence_conn);
	d->srv.fence_conn = NULL;
}

int
pgl_server_fence_setup(struct pgl_daemon *d)
{
	PGconn *c = pgl_server_conn(d);
	char dl[32];
	const char *params[1] = { dl };

	if (!d->srv.fence_on || c == NULL || d->dc.term == 0)
		return 0;
	if (pgl_pg_exec(c, "CREATE EXTENSION IF NOT EXISTS pglease_fence", 0, NULL) < 0)
		return -PGL_EPG;
	pgl_server_fence_close(d);
	d->srv.fence_conn = pgl_pg_connect_local(&d->cfg, d->tmo.connect_s);
	if (d->srv.fence_conn == NULL)
		return -PGL_EPG;
	snprintf(dl, sizeof(dl), "%lld", (long long) d->dc.deadline_ms);
	if (pgl_pg_exec(d->srv.fence_conn, "SELECT pglease_fence_arm($1)", 1, params) < 0) {
		pgl_server_fence_close(d);
		return -PGL_EPG;
	}
	/* From now on the deadline is sent without waiting for the answer. */
	PQsetnonblocking(d->srv.fence_conn, 1);
	d->srv.fence_wanted = true;
	pgl_log_info("in-server fence armed: commits are refused past the fence deadline");
	return 0;
}

int
pgl_server_fence_prearm(struct pgl_daemon *d)
{
	PGconn *c = pgl_server_conn(d);
	char dl[32], v[8];
	const char *params[1] = { dl };

	if (!d->srv.fence_on || c == NULL || d->dc.term == 0)
		return 0;
	/* The extension replicates: usable here once an earlier primary created it. */
	if (pgl_pg_scalar(c, "SELECT to_regproc('pglease_fence_arm') IS NOT NULL", 0, NULL, v,
					  sizeof(v)) < 0)
		return -PGL_EPG;
	if (strcmp(v, "t") != 0)
		return 0;
	snprintf(dl, sizeof(dl), "%lld", (long long) d->dc.deadline_ms);
	if (pgl_pg_exec(c, "SELECT pglease_fence_arm($1)", 1, params) < 0)
		return -PGL_EPG;
	/* Renewals set it up on its own connection if the setup after the promotion fails. */
	d->srv.fence_wanted = true;
	pgl_log_info("in-server fence armed before the promotion");
	return 0;
}

void
pgl_server_fence_arm(struct pgl_daemon *d)
{
	char dl[32];
	const char *params[1] = { dl };
	PGresult *res;

	if (d->srv.fence_conn == NULL) {
		/* Its connection was lost (the server lives on): arm on a new one. */
		if (d->srv.fence_wanted && d->srv.pm_pid > 0 && d->srv.mode == PGL_SERVER_PRIMARY &&
			pgl_server_fence_setup(d) < 0)
			pgl_log_warn("in-server fence not re-armed; will retry at the next renewal");
		return;
	}
	if (!PQconsumeInput(d->srv.fence_conn)) {
		pgl_log_warn("in-server fence connection lost: %s", PQerrorMessage(d->srv.fence_conn));
		pgl_server_fence_close(d);
		return;
	}
	while (!PQisBusy(d->srv.fence_conn) && (res = PQgetResult(d->srv.fence_conn)) != NULL) {
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			pgl_log_warn("arming the in-server fence failed: %s",
						 PQresultErrorMessage(res));
		PQclear(res);
	}
	if (PQisBusy(d->srv.fence_conn))
		return;					/* the server has not answered the last one yet */
	snprintf(dl, sizeof(dl), "%lld", (long long) d->dc.deadline_ms);
	if (!PQsendQueryParams(d->srv.fence_conn, "SELECT pglease_fence_arm($1)", 1, NULL, params,
						   NULL, NULL, 0))
		pgl_log_warn("arming the in-server fence failed: %s", PQerrorMessage(d->srv.fence_conn));
	PQflush(d->srv.fence_conn);
}

bool
pgl_server_reap(struct pgl_daemon *d)
{
	bool pm_gone = false;
	int status;
	pid_t pid;

	/* As PID 1 in a container the agent also reaps orphans it inherits. */
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == d->srv.pm_pid) {
			pm_gone = true;
			d->srv.pm_pid = 0;
			pgl_server_disconnect(d);
			if (WIFSIGNALED(status))
				pgl_log_info("postgres exited on signal %d", WTERMSIG(status));
			else
				pgl_log_info("postgres exited with status %d", WEXITSTATUS(status));
		} else if (pid == d->watch_pid) {
			d->watch_pid = 0;
			d->watch_gone = WIFEXITED(status) && WEXITSTATUS(status) == 0;
		} else if (pid == d->job.worker) {
			d->job.worker = 0;
			d->job.worker_exited = true;
			d->job.worker_status = status;
		} else if (pid == d->hooks.pid) {
			d->hooks.exited = true;		/* hook.c reports it */
			d->hooks.status = status;
		}
	}
	return pm_gone;
}

/* Waits for the postmaster to exit; true if it did within timeout_ms. */
static bool
wait_pm_exit(struct pgl_daemon *d, int64_t timeout_ms)
{
	int64_t end = pgl_mono_ms() + timeout_ms;

	while (d->srv.pm_pid > 0) {
		if (pgl_server_reap(d))
			return true;
		if (pgl_mono_ms() > end)
			return false;
		usleep(d->tmo.poll_ms * 1000);
	}
	return true;
}

void
pgl_server_kill(struct pgl_daemon *d)
{
	if (d->srv.pm_pid <= 0)
		return;
	pgl_server_disconnect(d);
	kill(d->srv.pm_pid, SIGQUIT);		/* immediate shutdown: backends get SIGQUIT too */
	if (!wait_pm_exit(d, d->tmo.quit_ms)) {
		pgl_proc_kill_tree(d->srv.pm_pid);
		wait_pm_exit(d, d->tmo.kill_ms);
	}
	d->srv.mode = PGL_SERVER_NONE;
}

void
pgl_server_stop_begin(struct pgl_daemon *d, bool fast)
{
	if (d->srv.pm_pid <= 0)
		return;
	pgl_server_disconnect(d);
	kill(d->srv.pm_pid, fast ? SIGINT : SIGQUIT);
}

int
pgl_server_stop_poll(struct pgl_daemon *d, int64_t deadline_ms)
{
	if (d->srv.pm_pid <= 0 || pgl_server_reap(d)) {
		d->srv.mode = PGL_SERVER_NONE;
		return 1;
	}
	if (pgl_mono_ms() < deadline_ms)
		return 0;
	pgl_log_warn("postgres did not stop in time; immediate shutdown");
	pgl_server_kill(d);
	return -PGL_ETIMEOUT;
}

int
pgl_server_stop(struct pgl_daemon *d, bool fast, int64_t timeout_ms)
{
	int64_t end = pgl_mono_ms() + timeout_ms;
	int rc;

	pgl_server_stop_begin(d, fast);
	while ((rc = pgl_server_stop_poll(d, end)) == 0)
		usleep(d->tmo.poll_ms * 1000);
	return rc < 0 ? rc : 0;
}

int
pgl_server_start_begin(struct pgl_daemon *d, enum pgl_server_mode mode, const char *upstream)
{
	char sig[PGL_PATH_MAX + 32], err[PGL_PATH_MAX + 512];

	if (prepare_socket_dir(&d->cfg, err, sizeof(err)) < 0) {
		pgl_log_error("%s", err);
		return -PGL_ECONFIG;
	}
	if (write_node_conf(d) < 0 || write_passfile(d) < 0)
		return -PGL_ESYS;
	snprintf(sig, sizeof(sig), "%s/standby.signal", d->cfg.pgdata);
	if (mode == PGL_SERVER_STANDBY && access(sig, F_OK) != 0 && write_file(sig, "", 0600) < 0)
		return -PGL_ESYS;
	if (mode == PGL_SERVER_PRIMARY)
		unlink(sig);
	pgl_log_info("starting postgres as %s%s%s", mode == PGL_SERVER_PRIMARY ? "primary" : "standby",
				 upstream && upstream[0] ? " of " : "", upstream ? upstream : "");
	d->srv.pm_pid = pgl_pg_spawn(&d->cfg, d->lock_fd);
	if (d->srv.pm_pid < 0) {
		d->srv.pm_pid = 0;
		return -PGL_ESYS;
	}
	d->srv.mode = mode;
	d->srv.started_ms = pgl_mono_ms();
	return 0;
}

int
pgl_server_start_poll(struct pgl_daemon *d, bool give_up)
{
	if (pgl_server_reap(d) || d->srv.pm_pid == 0) {
		pgl_log_error("postgres exited during startup");
		d->srv.mode = PGL_SERVER_NONE;
		return -PGL_EPG;
	}
	if (pgl_server_conn(d) != NULL)
		return 1;
	/* Crash recovery may take a while: the loop renews meanwhile. */
	if (!give_up && pgl_mono_ms() < d->srv.started_ms + d->tmo.start_ms)
		return 0;
	/* Never leave a server behind that the agent no longer waits for. */
	pgl_log_error("postgres did not accept connections in time; stopping it");
	pgl_server_kill(d);
	return -PGL_ETIMEOUT;
}

/* A copy by pg_basebackup or pg_rewind in this worker, and what it reported last. */
struct copy_watch {
	struct pgl_daemon *d;
	struct pgl_progress p;
	int64_t start_ms;
	bool seen;					/* a progress line was read */
};

/* Starts watching a copy of kind op: the agent hears of it at once (0 kB so far). */
static void
copy_watch_init(struct copy_watch *cw, struct pgl_daemon *d, enum pgl_progress_op op)
{
	memset(cw, 0, sizeof(*cw));
	cw->d = d;
	cw->p.op = op;
	cw->start_ms = pgl_mono_ms();
	pgl_job_report_progress(d, &cw->p);
}

/*
 * The runner's line callback.  A progress line of pg_basebackup --progress
 * ("  12345/678901 kB (1%), 0/1 tablespace") or of pg_rewind --progress
 * ("12345/678901 kB (1%) copied"), about one a second, updates the figures
 * and goes to the agent; it is not kept in the output, where it would
 * crowd out the error at the end.  Any other line is kept.
 */
static bool
copy_line(const char *text, void *arg)
{
	struct copy_watch *cw = arg;
	long long done, total;
	int64_t ms;
	int pct;

	if (sscanf(text, " %lld/%lld kB (%d%%)", &done, &total, &pct) != 3 || done < 0 ||
		total < 0 || done > PGL_PROGRESS_KB_MAX || total > PGL_PROGRESS_KB_MAX)
		return true;
	ms = pgl_mono_ms() - cw->start_ms;
	cw->p.done_kb = done;
	cw->p.total_kb = total && total < done ? done : total;	/* an estimate may fall short */
	cw->p.elapsed_ms = ms < 0 ? 0 : ms > PGL_PROGRESS_MS_MAX ? PGL_PROGRESS_MS_MAX : ms;
	cw->seen = true;
	pgl_job_report_progress(cw->d, &cw->p);
	return false;
}

/* "1.2 GB" for kb kilobytes. */
static void
format_kb(int64_t kb, char *buf, size_t len)
{
	static const char *const units[] = { "kB", "MB", "GB", "TB", "PB" };
	double v = (double) kb;
	size_t u = 0;

	while (v >= 1024 && u + 1 < PGL_ARRAY_LEN(units)) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

/* For the end event: "copied 1.2 GB in 14.0 s" (the tool's last figure, the time it took). */
static void
copy_summary(const struct copy_watch *cw, char *buf, size_t len)
{
	char size[32];
	double s = (double) (pgl_mono_ms() - cw->start_ms) / 1000.0;

	if (cw->seen) {
		format_kb(cw->p.done_kb, size, sizeof(size));
		snprintf(buf, len, "copied %s in %.1f s", size, s);
	} else
		snprintf(buf, len, "took %.1f s", s);
}

/*
 * Runs initdb, pg_basebackup or pg_rewind.  The password reaches them only
 * through the pgpass file (PGPASSFILE): never argv, never the environment.
 * With cw, the tool's progress lines go to the agent (copy_line) instead of
 * into out.
 */
static int
run_pg_tool(struct pgl_daemon *d, char *const argv[], int timeout_ms, char *out, size_t len,
			struct copy_watch *cw)
{
	char pf[PGL_PATH_MAX + 32];
	char *env_add[] = { pf, "LC_ALL=C", "PGCONNECT_TIMEOUT=5", NULL };
	struct pgl_run_opts o = {
		.timeout_ms = timeout_ms, .env_add = env_add, .abort_flag = &d->stop,
		.line = cw ? copy_line : NULL, .line_arg = cw,
	};

	if (write_passfile(d) < 0) {
		snprintf(out, len, "cannot write the pgpass file");
		return -PGL_ESYS;
	}
	pgl_strlcpy(pf, "PGPASSFILE=", sizeof(pf));
	passfile_path(d, pf + strlen(pf), sizeof(pf) - strlen(pf));
	return pgl_run(argv, &o, out, len, NULL);
}

/*
 * conninfo of the replication role on another node, for the agent's own
 * libpq or (tool) for pg_basebackup/pg_rewind's; caller frees.
 */
static char *
remote_conninfo(struct pgl_daemon *d, const char *host, int port, const char *dbname,
				int timeout_s, bool tool)
{
	struct pgl_remote r = {
		.host = host, .port = port, .user = d->cfg.replication_user, .dbname = dbname,
		.connect_timeout = timeout_s, .cfg = &d->cfg,
		.libpq_version = tool ? server_libpq(d, true) : PQlibVersion(),
	};
	char *ci = NULL;

	if (pgl_conninfo_remote(&r, &ci) < 0)
		pgl_log_error("out of memory building a conninfo");
	return ci;
}

/* Connects to another node as the replication role.  Caller PQfinish()es. */
static PGconn *
connect_remote(struct pgl_daemon *d, const char *host, int port)
{
	char *ci = remote_conninfo(d, host, port, "postgres", 3, false);
	const char *kw[] = { "dbname", "password", NULL };
	const char *vals[] = { ci ? ci : "", d->password, NULL };
	PGconn *c;

	/* The password goes to libpq in memory only. */
	c = PQconnectdbParams(kw, vals, 1);
	free(ci);
	return c;
}

/* Tells whether the server has a replication slot of that name. */
static bool
slot_exists_on(struct pgl_daemon *d, const char *host, int port, const char *slot)
{
	const char *params[1] = { slot };
	PGconn *c = connect_remote(d, host, port);
	bool found = false;
	char v[8];

	if (PQstatus(c) == CONNECTION_OK &&
		pgl_pg_scalar(c, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", 1,
					  params, v, sizeof(v)) == 0)
		found = strcmp(v, "1") == 0;
	PQfinish(c);
	return found;
}

static int
remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void) sb;
	(void) flag;
	if (ftw->level == 0)
		return 0;
	return remove(path) == 0 ? 0 : -1;
}

/* Empties the data directory (keeps the directory itself). */
static int
empty_pgdata(struct pgl_daemon *d)
{
	if (access(d->cfg.pgdata, F_OK) != 0)
		return 0;
	if (nftw(d->cfg.pgdata, remove_entry, 32, FTW_DEPTH | FTW_PHYS) != 0) {
		pgl_log_error("cannot empty %s: %s", d->cfg.pgdata, strerror(errno));
		return -PGL_ESYS;
	}
	return 0;
}

/*
 * Before pg_basebackup: the marker (kept until the clone is complete), then
 * an empty data directory.  Never under a server of ours that still runs.
 */
static int
clone_begin(struct pgl_daemon *d, char *marker, size_t len)
{
	if (d->srv.pm_pid > 0 && kill(d->srv.pm_pid, 0) == 0) {
		pgl_log_error("not cloning into %s: postgres (pid %d) still runs on it",
					  d->cfg.pgdata, (int) d->srv.pm_pid);
		return -PGL_EINVAL;
	}
	clone_marker(d, marker, len);
	if (access(marker, F_OK) == 0)
		pgl_log_warn("an earlier clone into %s did not complete; cloning again", d->cfg.pgdata);
	else {
		int fd = open(marker, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);

		if (fd < 0 || fsync(fd) != 0) {
			pgl_log_error("cannot create %s: %s", marker, strerror(errno));
			if (fd >= 0)
				close(fd);
			return -PGL_ESYS;
		}
		close(fd);
	}
	return empty_pgdata(d) < 0 ? -PGL_ESYS : 0;
}

int
pgl_server_clone(struct pgl_daemon *d, const struct pgl_node *from, struct pgl_job_result *r)
{
	char exe[PGL_PATH_MAX + 32], host[256], slot[PGL_NAME_MAX], out[8192];
	char marker[PGL_PATH_MAX + 16], *argv[20], *ci = NULL;
	struct copy_watch cw;
	int port, rc, i = 0;

	if (!pgl_node_addr(from, host, sizeof(host), &port))
		return -PGL_EINVAL;
	if ((rc = clone_begin(d, marker, sizeof(marker))) < 0)
		return rc;
	/* -d: host, port, user and the replication_ssl* options in one conninfo. */
	if ((ci = remote_conninfo(d, host, port, NULL, 0, true)) == NULL)
		return -PGL_ESYS;
	snprintf(exe, sizeof(exe), "%s/pg_basebackup", d->cfg.pg_bindir);
	pgl_config_slot_name(d->cfg.node_name, slot, sizeof(slot));
	argv[i++] = exe;
	argv[i++] = "-D";
	argv[i++] = d->cfg.pgdata;
	argv[i++] = "-d";
	argv[i++] = ci;
	argv[i++] = "-X";
	argv[i++] = "stream";
	argv[i++] = "-c";
	argv[i++] = "fast";
	argv[i++] = "-w";
	argv[i++] = "--progress";
	if (slot_exists_on(d, host, port, slot)) {
		argv[i++] = "-S";
		argv[i++] = slot;
	}
	argv[i] = NULL;
	pgl_log_info("cloning from %s (%s:%d) with pg_basebackup", from->name, host, port);
	copy_watch_init(&cw, d, PGL_PROGRESS_CLONE);
	rc = run_pg_tool(d, argv, d->tmo.clone_ms, out, sizeof(out), &cw);
	free(ci);
	if (rc < 0) {
		pgl_log_error("pg_basebackup from %s failed: %s", from->name, out);
		empty_pgdata(d);
		return rc;
	}
	copy_summary(&cw, r->text, sizeof(r->text));
	pgl_log_info("cloned from %s: %s", from->name, r->text);
	if (write_standby_conf(d, from) < 0)
		return -PGL_ESYS;
	if (unlink(marker) != 0)
		pgl_log_warn("cannot remove %s: %s", marker, strerror(errno));
	return 0;
}

/* Finds "servers diverged at WAL location X on timeline N" in pg_rewind's output. */
static void
rewind_summary(const char *out, char *buf, size_t len)
{
	const char *p = strstr(out, "servers diverged at");
	const char *q = strstr(out, "no rewind required");

	if (q)
		snprintf(buf, len, "no rewind required");
	else if (p)
		snprintf(buf, len, "%.*s", (int) strcspn(p, "\n"), p);
	else
		snprintf(buf, len, "divergence point not reported");
}

/* The first error line of pg_rewind's output (or its last line). */
static void
rewind_error(const char *out, char *buf, size_t len)
{
	const char *p = strstr(out, "error:");
	const char *end;

	if (p == NULL)
		p = strstr(out, "FATAL:");
	if (p == NULL) {
		end = out + strlen(out);
		while (end > out && (end[-1] == '\n' || end[-1] == ' '))
			end--;
		p = end;
		while (p > out && p[-1] != '\n')
			p--;
		snprintf(buf, len, "%.*s", (int) (end - p), p);
		return;
	}
	snprintf(buf, len, "%.*s", (int) strcspn(p, "\n"), p);
}

/*
 * A CHECKPOINT on the local server, in a job's worker (unbounded there): a
 * switchover runs it before the fast shutdown, so that the shutdown
 * checkpoint, during which no write is accepted, has little left to flush.
 */
int
pgl_server_checkpoint(struct pgl_daemon *d)
{
	PGconn *c = pgl_pg_connect_local(&d->cfg, d->tmo.connect_s);
	int rc = 0;

	if (c == NULL || PQstatus(c) != CONNECTION_OK || pgl_pg_exec(c, "CHECKPOINT", 0, NULL) < 0) {
		pgl_log_warn("CHECKPOINT failed: %s", c ? PQerrorMessage(c) : "connection timed out");
		rc = -PGL_EPG;
	}
	PQfinish(c);
	return rc;
}

/*
 * The source's CHECKPOINT before pg_rewind.  A just-promoted source still
 * has the old timeline in its control file until its first checkpoint, and
 * pg_rewind would then wrongly find "no rewind required".  The replication
 * role is a member of pg_checkpoint, so it can force that checkpoint.
 */
static void
checkpoint_source(struct pgl_daemon *d, const struct pgl_node *from, const char *host, int port)
{
	PGconn *c = connect_remote(d, host, port);

	if (PQstatus(c) != CONNECTION_OK || pgl_pg_exec(c, "CHECKPOINT", 0, NULL) < 0)
		pgl_log_warn("CHECKPOINT on %s before pg_rewind failed: %s", from->name,
					 PQerrorMessage(c));
	PQfinish(c);
}

/* Runs pg_rewind against host:port; its output goes into out, its progress to cw. */
static int
run_rewind(struct pgl_daemon *d, const struct pgl_node *from, const char *host, int port,
		   char *out, size_t outlen, struct copy_watch *cw)
{
	char exe[PGL_PATH_MAX + 32], *src = NULL, *srcarg = NULL;
	int rc;

	snprintf(exe, sizeof(exe), "%s/pg_rewind", d->cfg.pg_bindir);
	src = remote_conninfo(d, host, port, "postgres", 5, true);
	if (src == NULL || asprintf(&srcarg, "--source-server=%s", src) < 0) {
		free(src);
		snprintf(out, outlen, "out of memory");
		return -PGL_ESYS;
	}
	free(src);
	{
		char *argv[] = { exe, "-D", d->cfg.pgdata, srcarg, "--progress", NULL };

		pgl_log_info("rewinding against %s (%s:%d)", from->name, host, port);
		copy_watch_init(cw, d, PGL_PROGRESS_REWIND);
		rc = run_pg_tool(d, argv, d->tmo.rewind_ms, out, outlen, cw);
	}
	free(srcarg);
	return rc;
}

/* The "rewound" event's detail: what pg_rewind did and what was discarded. */
static void
rewound_detail(const struct pgl_node *from, const char *out, const struct pgl_controldata *before,
			   char *buf, size_t len)
{
	char sum[256], a[PGL_LSN_TEXT_MAX];

	rewind_summary(out, sum, sizeof(sum));
	pgl_lsn_format(before->checkpoint_lsn, a, sizeof(a));
	pgl_log_info("rewound against %s: %s", from->name, sum);
	if (strstr(out, "no rewind required"))
		snprintf(buf, len, "against %s: no rewind required (timeline %lld, last checkpoint "
				 "%s); nothing discarded", from->name, (long long) before->timeline, a);
	else
		snprintf(buf, len, "against %s: %s; discarded this node's WAL from the divergence "
				 "point up to its old end (timeline %lld, last checkpoint %s)",
				 from->name, sum, (long long) before->timeline, a);
}

int
pgl_server_rewind_probe(struct pgl_daemon *d, const struct pgl_node *from,
						struct pgl_job_result *r)
{
	char host[256];
	int port;

	r->text[0] = '\0';
	if (!pgl_node_addr(from, host, sizeof(host), &port)) {
		snprintf(r->text, sizeof(r->text), "no address for %s", from->name);
		return -PGL_EINVAL;
	}
	/* A standby cut off from the network is not a fork: it keeps running and its data. */
	if (!pgl_pg_ping_remote(host, port)) {
		pgl_log_info("%s (%s:%d) does not answer; not rewinding", from->name, host, port);
		r->unreachable = true;
		return -PGL_EPG;
	}
	pgl_log_warn("rewinding against %s: not streaming from it, or postgres did not start "
				 "as its standby", from->name);
	return 0;
}

int
pgl_server_rewind(struct pgl_daemon *d, const struct pgl_node *from, struct pgl_job_result *r)
{
	char host[256], out[32768];
	struct pgl_controldata before;
	struct copy_watch cw;
	size_t used;
	int port, rc;

	r->text[0] = '\0';
	if (!pgl_node_addr(from, host, sizeof(host), &port)) {
		snprintf(r->text, sizeof(r->text), "no address for %s", from->name);
		return -PGL_EINVAL;
	}
	checkpoint_source(d, from, host, port);
	memset(&before, 0, sizeof(before));
	pgl_pg_controldata(&d->cfg, &before);
	rc = run_rewind(d, from, host, port, out, sizeof(out), &cw);
	if (rc < 0 && !pgl_pg_ping_remote(host, port)) {
		pgl_log_warn("pg_rewind against %s failed and %s:%d does not answer; will retry",
					 from->name, host, port);
		r->unreachable = true;
		return rc;
	}
	if (rc < 0) {
		rewind_error(out, r->text, sizeof(r->text));
		return rc;
	}
	rewound_detail(from, out, &before, r->text, sizeof(r->text));
	if (cw.seen && (used = strlen(r->text)) + 3 < sizeof(r->text)) {
		memcpy(r->text + used, "; ", 3);
		copy_summary(&cw, r->text + used + 2, sizeof(r->text) - used - 2);
	}
	return write_standby_conf(d, from);
}

int
pgl_server_follow(struct pgl_daemon *d, const struct pgl_node *from)
{
	char slot[PGL_NAME_MAX];
	PGconn *c = pgl_server_conn(d);
	char *ci = NULL, *lit1 = NULL, *lit2 = NULL, *sql1 = NULL, *sql2 = NULL;
	int rc = -PGL_EPG;

	if (c == NULL)
		return -PGL_EPG;
	/* The password stays in the pgpass file; make sure it is current. */
	if (write_passfile(d) < 0 || upstream_conninfo(d, from, &ci) < 0)
		goto out;
	pgl_config_slot_name(d->cfg.node_name, slot, sizeof(slot));
	lit1 = PQescapeLiteral(c, ci, strlen(ci));
	lit2 = PQescapeLiteral(c, slot, strlen(slot));
	if (lit1 == NULL || lit2 == NULL)
		goto out;
	/* ALTER SYSTEM takes no parameters; the values are escaped literals. */
	if (asprintf(&sql1, "ALTER SYSTEM SET primary_conninfo = %s", lit1) < 0) {
		sql1 = NULL;
		goto out;
	}
	if (asprintf(&sql2, "ALTER SYSTEM SET primary_slot_name = %s", lit2) < 0) {
		sql2 = NULL;
		goto out;
	}
	if (pgl_pg_exec(c, sql1, 0, NULL) < 0 || pgl_pg_exec(c, sql2, 0, NULL) < 0 ||
		pgl_pg_exec(c, "SELECT pg_reload_conf()", 0, NULL) < 0)
		goto out;
	rc = 0;
out:
	free(ci);
	free(sql1);
	free(sql2);
	PQfreemem(lit1);
	PQfreemem(lit2);
	return rc;
}

int
pgl_server_promote_begin(struct pgl_daemon *d)
{
	PGconn *c = pgl_server_conn(d);

	if (c == NULL || pgl_pg_exec(c, "SELECT pg_promote(false)", 0, NULL) < 0)
		return -PGL_EPG;
	return 0;
}

int
pgl_server_promote_poll(struct pgl_daemon *d, int64_t deadline_ms)
{
	PGconn *c = pgl_server_conn(d);
	char v[8];

	if (c && pgl_pg_scalar(c, "SELECT pg_is_in_recovery()", 0, NULL, v, sizeof(v)) == 0 &&
		strcmp(v, "f") == 0) {
		d->srv.mode = PGL_SERVER_PRIMARY;
		return 1;
	}
	if (d->srv.pm_pid == 0)
		return -PGL_EPG;
	return pgl_mono_ms() < deadline_ms ? 0 : -PGL_ETIMEOUT;
}

static int
append_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "a");
	int rc = 0;

	if (f == NULL || fputs(text, f) < 0)
		rc = -PGL_ESYS;
	if (f && fclose(f) != 0)
		rc = -PGL_ESYS;
	if (rc < 0)
		pgl_log_error("cannot write %s: %s", path, strerror(errno));
	return rc;
}

/*
 * Settings every node shares, appended to postgresql.conf once after initdb.
 * Authentication is not here: pglease.hba.conf, written before every start.
 */
static int
configure_new_cluster(struct pgl_daemon *d)
{
	char path[PGL_PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/postgresql.conf", d->cfg.pgdata);
	if (append_file(path,
					"\n# --- pglease ---\n"
					"wal_level = replica\n"
					"hot_standby = on\n"
					"max_wal_senders = 16\n"
					"max_replication_slots = 16\n"
					"max_slot_wal_keep_size = '4GB'\n"
					"wal_keep_size = '256MB'\n"
					"wal_log_hints = on\n"
					"hot_standby_feedback = on\n"
					"wal_receiver_status_interval = 1s\n"
					"wal_receiver_timeout = 10s\n"
					"wal_sender_timeout = 10s\n"
					"wal_retrieve_retry_interval = 100ms\n"
					"password_encryption = 'scram-sha-256'\n"
					"log_line_prefix = '%m [%p] %q%a '\n"
					"include_if_exists = '" NODE_CONF "'\n") < 0)
		return -PGL_ESYS;
	return 0;
}

/*
 * What the replication role needs on a pg_rewind source, without superuser:
 * CHECKPOINT (pg_checkpoint) on a just-promoted source (see pgl_server_rewind)
 * and the file functions pg_rewind reads with.
 */
static int
grant_rewind_source(PGconn *c, const char *ident)
{
	static const char *const funcs[] = {
		"pg_catalog.pg_ls_dir(text, boolean, boolean)",
		"pg_catalog.pg_stat_file(text, boolean)",
		"pg_catalog.pg_read_binary_file(text)",
		"pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
	};
	char *sql = NULL;
	int rc = -PGL_EPG;

	if (asprintf(&sql, "GRANT pg_checkpoint TO %s", ident) < 0)
		return -PGL_ESYS;
	if (pgl_pg_exec(c, sql, 0, NULL) < 0)
		goto out;
	for (size_t i = 0; i < PGL_ARRAY_LEN(funcs); i++) {
		free(sql);
		if (asprintf(&sql, "GRANT EXECUTE ON FUNCTION %s TO %s", funcs[i], ident) < 0) {
			sql = NULL;
			rc = -PGL_ESYS;
			goto out;
		}
		if (pgl_pg_exec(c, sql, 0, NULL) < 0)
			goto out;
	}
	rc = 0;
out:
	free(sql);
	return rc;
}

/*
 * The replication role, created with a SCRAM verifier computed here
 * (PQencryptPasswordConn), so the plaintext password never reaches the
 * server; the statement is kept out of the server log (log_statement,
 * log_min_error_statement, log_min_duration_statement for this session) and
 * out of ours (pgl_pg_exec_secret logs a label).
 */
static int
create_replication_role(struct pgl_daemon *d, PGconn *c)
{
	char *ident = NULL, *lit = NULL, *verifier = NULL, *sql = NULL;
	int rc = -PGL_EPG;

	if (c == NULL)
		return -PGL_EPG;
	ident = PQescapeIdentifier(c, d->cfg.replication_user, strlen(d->cfg.replication_user));
	verifier = PQencryptPasswordConn(c, d->password, d->cfg.replication_user, "scram-sha-256");
	if (ident == NULL || verifier == NULL) {
		pgl_log_error("cannot prepare the replication role: %s", PQerrorMessage(c));
		goto out;
	}
	lit = PQescapeLiteral(c, verifier, strlen(verifier));
	if (lit == NULL || asprintf(&sql, "CREATE ROLE %s LOGIN REPLICATION PASSWORD %s",
								ident, lit) < 0) {
		sql = NULL;
		goto out;
	}
	if (pgl_pg_exec(c, "SET log_statement = 'none'", 0, NULL) < 0 ||
		pgl_pg_exec(c, "SET log_min_error_statement = 'panic'", 0, NULL) < 0 ||
		pgl_pg_exec(c, "SET log_min_duration_statement = -1", 0, NULL) < 0)
		goto out;
	rc = pgl_pg_exec_secret(c, "CREATE ROLE (replication role)", sql, 0, NULL);
	pgl_pg_exec(c, "RESET log_statement", 0, NULL);
	pgl_pg_exec(c, "RESET log_min_error_statement", 0, NULL);
	pgl_pg_exec(c, "RESET log_min_duration_statement", 0, NULL);
	if (rc < 0)
		goto out;
	rc = grant_rewind_source(c, ident);
	if (rc < 0)
		goto out;
	rc = 0;
out:
	free(sql);
	PQfreemem(ident);
	PQfreemem(lit);
	PQfreemem(verifier);
	return rc;
}

int
pgl_server_initdb(struct pgl_daemon *d)
{
	char exe[PGL_PATH_MAX + 32], out[16384];
	char *argv[] = { exe, "-D", d->cfg.pgdata, "-U", "postgres", "--data-checksums",
		"--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
		NULL };
	int rc;

	snprintf(exe, sizeof(exe), "%s/initdb", d->cfg.pg_bindir);
	if (empty_pgdata(d) < 0)
		return -PGL_ESYS;
	pgl_log_info("running initdb --data-checksums in %s", d->cfg.pgdata);
	rc = run_pg_tool(d, argv, d->tmo.initdb_ms, out, sizeof(out), NULL);
	if (rc < 0) {
		pgl_log_error("initdb failed: %s", out);
		return rc;
	}
	return configure_new_cluster(d);
}

/*
 * bootstrap_program, once, on the node that bootstraps: after the replication
 * role, before the node serves as primary.  It gets libpq's environment for
 * the local superuser (peer authentication on the socket); its commits do not
 * wait for a synchronous standby that cannot exist yet.  Its failure is
 * reported (log, and the bootstrap event through note) but does not undo the
 * bootstrap: the cluster is whole, only the program's work is missing.
 */
static void
run_bootstrap_program(struct pgl_daemon *d, char *note, size_t notelen)
{
	char host[PGL_PATH_MAX + 8], port[32], node[PGL_NAME_MAX + 16], out[2048];
	char *env_add[] = { host, port, "PGUSER=postgres", "PGDATABASE=postgres",
						"PGOPTIONS=-c synchronous_commit=local", node, NULL };
	char *argv[] = { d->cfg.bootstrap_program, d->cfg.node_name, NULL };
	struct pgl_run_opts o = { .env_add = env_add, .abort_flag = &d->stop };
	int64_t t0 = pgl_mono_ms();
	int status = 0, rc;

	snprintf(host, sizeof(host), "PGHOST=%s", d->cfg.pg_socket_dir);
	snprintf(port, sizeof(port), "PGPORT=%d", d->cfg.pg_port);
	snprintf(node, sizeof(node), "PGLEASE_NODE=%s", d->cfg.node_name);
	pgl_log_info("running bootstrap_program %s", d->cfg.bootstrap_program);
	rc = pgl_run(argv, &o, out, sizeof(out), &status);
	if (rc == 0) {
		for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
			pgl_log_info("bootstrap_program: %s", line);
		pgl_log_info("bootstrap_program %s: exit status 0 after %.2f s",
					 d->cfg.bootstrap_program, (pgl_mono_ms() - t0) / 1000.0);
		snprintf(note, notelen, "; bootstrap_program exit status 0");
		return;
	}
	if (rc == -PGL_EPG && WIFEXITED(status))
		snprintf(note, notelen, "; bootstrap_program FAILED: exit status %d",
				 WEXITSTATUS(status));
	else if (rc == -PGL_EPG && WIFSIGNALED(status))
		snprintf(note, notelen, "; bootstrap_program FAILED: signal %d", WTERMSIG(status));
	else
		snprintf(note, notelen, "; bootstrap_program FAILED: %s", pgl_strerror(rc));
	pgl_log_error("bootstrap_program %s%s; its output:", d->cfg.bootstrap_program, note + 1);
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
		pgl_log_error("bootstrap_program: %s", line);
}

int
pgl_server_bootstrap_finish(struct pgl_daemon *d, char *sysid, size_t sysidlen, char *note,
							size_t notelen)
{
	struct pgl_controldata cd;
	PGconn *c;
	int rc;

	/* In a worker: a connection of its own. */
	c = pgl_pg_connect_local(&d->cfg, d->tmo.connect_s);
	rc = create_replication_role(d, c);
	PQfinish(c);
	if (rc < 0)
		return rc;
	if (d->cfg.bootstrap_program[0])
		run_bootstrap_program(d, note, notelen);
	if ((rc = pgl_pg_controldata(&d->cfg, &cd)) < 0)
		return rc;
	pgl_strlcpy(sysid, cd.sysid, sysidlen);
	return 0;
}

static bool
node_listed(const struct pgl_node *nodes, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(nodes[i].name, name) == 0)
			return true;
	return false;
}

/*
 * On the primary: one physical slot per known node (valid name, heartbeat > 0), created before any
 * standby needs it; slots of nodes forgotten with `pglease remove` dropped.
 */
int
pgl_server_sync_slots(struct pgl_daemon *d)
{
	PGconn *c = pgl_server_conn(d);
	struct pgl_node *nodes = NULL;
	struct pgl_event *ev = NULL;
	int n = 0, ne = 0, rc;

	if (c == NULL)
		return -PGL_EPG;
	if ((rc = pgl_store_list_nodes(d->st, &nodes, &n)) < 0)
		return rc;
	for (int i = 0; i < n; i++) {
		char slot[PGL_NAME_MAX];
		const char *params[1] = { slot };

		/* Only real nodes: a valid name that has heartbeated at least once. */
		if (strcmp(nodes[i].name, d->cfg.node_name) == 0 || !pgl_name_valid(nodes[i].name) ||
			nodes[i].heartbeat <= 0)
			continue;
		pgl_config_slot_name(nodes[i].name, slot, sizeof(slot));
		pgl_pg_exec(c, "SELECT pg_create_physical_replication_slot($1, true) "
					"WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
					1, params);
	}
	if (pgl_store_events_after(d->st, d->last_removed_event, &ev, &ne) == 0) {
		for (int i = 0; i < ne; i++) {
			char slot[PGL_NAME_MAX];
			const char *params[1] = { slot };

			d->last_removed_event = ev[i].id;
			if (strcmp(ev[i].kind, "removed") != 0 || ev[i].node[0] == '\0' ||
				node_listed(nodes, n, ev[i].node))
				continue;			/* a node that came back keeps its slot */
			pgl_config_slot_name(ev[i].node, slot, sizeof(slot));
			if (pgl_pg_exec(c, "SELECT pg_drop_replication_slot(slot_name) "
							"FROM pg_replication_slots WHERE slot_name = $1 AND NOT active",
							1, params) == 0)
				pgl_log_info("dropped slot %s of removed node %s", slot, ev[i].node);
		}
		free(ev);
	}
	free(nodes);
	return 0;
}
