/*
 * test_store.c — the SQLite lease store (DESIGN.md sections 2, 4 and 6) and
 * the inotify watcher, against real files in the scratch directory.
 *
 * Some tests fork.  SQLite connections must never cross a fork, so a parent
 * closes its handles before forking and children open their own; children
 * leave with _exit() and report through their exit status.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "harness.h"
#include "pglease/store.h"
#include "pglease/watch.h"

#define PATHLEN 1024

static char err[1024];

/*
 * The store keeps its sqlite3 handle private.  To inspect per-connection
 * settings (synchronous) the test interposes sqlite3_open_v2 and remembers
 * the last connection opened; store.o is linked into this executable, so its
 * calls resolve here.
 */
static sqlite3 *last_db;

/* Sanitizer builds run several times slower, on a machine that may be busy. */
#ifdef __SANITIZE_ADDRESS__
#define RENEW_BOUND_MS 1500
#else
#define RENEW_BOUND_MS 500
#endif

int
sqlite3_open_v2(const char *filename, sqlite3 **db, int flags, const char *vfs)
{
	static int (*real)(const char *, sqlite3 **, int, const char *);
	int rc;

	if (real == NULL)
		*(void **) &real = dlsym(RTLD_NEXT, "sqlite3_open_v2");
	rc = real(filename, db, flags, vfs);
	last_db = *db;
	return rc;
}

/* ---- helpers ---- */

/* out = <scratch>/<sub>/<file>; creates <scratch>/<sub> when mk. */
static void
path_in(char *out, const char *sub, const char *file, bool mk)
{
	char dir[PATHLEN / 2 + 100];

	snprintf(dir, sizeof(dir), "%s/%s", test_dir(), sub);
	if (mk && mkdir(dir, 0755) != 0 && errno != EEXIST) {
		perror(dir);
		exit(2);
	}
	snprintf(out, PATHLEN, "%s/%s", dir, file);
}

static struct pgl_store *
open_store(const char *path, int flags)
{
	struct pgl_store *st = NULL;
	int rc = pgl_store_open(path, flags, &st, err, sizeof(err));

	CHECKF(rc == 0 && st != NULL, "open %s: %s (%s)", path, pgl_strerror(rc), err);
	return st;
}

/* A fresh store in its own sub-directory. */
static struct pgl_store *
fresh_store(const char *sub, char *path)
{
	path_in(path, sub, "lease.db", true);
	return open_store(path, PGL_STORE_CREATE);
}

static int64_t
db_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = INT64_MIN;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void
db_text(sqlite3 *db, const char *sql, char *out, size_t len)
{
	sqlite3_stmt *st = NULL;

	out[0] = '\0';
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
		sqlite3_column_text(st, 0))
		snprintf(out, len, "%s", (const char *) sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
}

static sqlite3 *
raw_open(const char *path, int flags)
{
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
		fprintf(stderr, "raw open %s: %s\n", path, db ? sqlite3_errmsg(db) : "?");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	return db;
}

/* One integer from a raw read-only connection. */
static int64_t
raw_int(const char *path, const char *sql)
{
	sqlite3 *db = raw_open(path, SQLITE_OPEN_READONLY);
	int64_t v = db ? db_int(db, sql) : INT64_MIN;

	sqlite3_close(db);
	return v;
}

static int
raw_exec(const char *path, const char *sql, char *msg, size_t len)
{
	sqlite3 *db = raw_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	char *m = NULL;
	int rc = db ? sqlite3_exec(db, sql, NULL, NULL, &m) : SQLITE_CANTOPEN;

	if (msg)
		snprintf(msg, len, "%s", m ? m : "");
	sqlite3_free(m);
	sqlite3_close(db);
	return rc;
}

static bool
exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

static bool
exists_suffix(const char *path, const char *suffix)
{
	char p[PATHLEN + 16];

	snprintf(p, sizeof(p), "%s%s", path, suffix);
	return exists(p);
}

/* Whole file into a malloc'd buffer (NULL if unreadable). */
static unsigned char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	long n;

	*len = 0;
	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc(n > 0 ? n : 1);
	if (n > 0 && fread(buf, 1, n, f) != (size_t) n)
		n = 0;
	fclose(f);
	*len = (size_t) n;
	return buf;
}

static void
spit(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL || (len && fwrite(buf, 1, len, f) != len)) {
		perror(path);
		exit(2);
	}
	fclose(f);
}

/* Exit status of a child, or 128 + signal. */
static int
wait_child(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Files in dir whose name contains needle. */
static int
count_files(const char *dir, const char *needle)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		n += strstr(de->d_name, needle) != NULL;
	closedir(d);
	return n;
}

/* The node records' directory of the store at path (lease.db -> lease.nodes). */
static char *
records_dir(const char *path, char *out, size_t len)
{
	size_t n = strlen(path);

	if (n > 3 && strcmp(path + n - 3, ".db") == 0)
		n -= 3;
	snprintf(out, len, "%.*s.nodes", (int) n, path);
	return out;
}

static char *
views_file(const char *path, char *out, size_t len)
{
	size_t n = strlen(path) - 3;		/* every store here ends in .db */

	snprintf(out, len, "%.*s.views.sql", (int) n, path);
	return out;
}

/* Writes text as NAME.json in the store's record directory, as a node would. */
static void
put_record_text(const char *path, const char *name, const char *text)
{
	char dir[PATHLEN + 16], file[PATHLEN + 96];
	FILE *f;

	records_dir(path, dir, sizeof(dir));
	mkdir(dir, 0770);
	snprintf(file, sizeof(file), "%s/%s.json", dir, name);
	f = fopen(file, "w");
	CHECK(f != NULL && fputs(text, f) >= 0 && fclose(f) == 0);
}

/* A wait_until far in the future: the simulated clocks never busy-wait. */
static int64_t
far_ms(void)
{
	return pgl_mono_ms() + 3600 * 1000;
}

static bool
same_version(const struct pgl_lease *a, const struct pgl_lease *b)
{
	return a->term == b->term && a->renewals == b->renewals && strcmp(a->holder, b->holder) == 0;
}

static int
event_count(struct pgl_store *st)
{
	struct pgl_event *ev = NULL;
	int n = 0;

	pgl_store_list_events(st, 1000000, &ev, &n);
	free(ev);
	return n;
}

/* ---- creation and opening ---- */

static void
test_create_and_open(void)
{
	char path[PATHLEN], dir[PATHLEN], buf[64];
	struct pgl_store *st, *ro;
	struct pgl_lease l;
	struct pgl_cluster c;
	struct stat sb;
	sqlite3 *db;
	int rc;

	/* The directory does not exist yet: the store creates it 0770. */
	path_in(dir, "create", "", true);
	path_in(path, "create", "pgcluster/lease.db", false);
	st = open_store(path, PGL_STORE_CREATE);
	if (st == NULL)
		return;
	db = last_db;
	CHECK(strstr(sqlite3_db_filename(db, "main"), "pgcluster/lease.db") != NULL);
	db_text(db, "PRAGMA journal_mode", buf, sizeof(buf));
	CHECKF(strcmp(buf, "wal") == 0, "journal_mode %s", buf);
	CHECKF(db_int(db, "PRAGMA synchronous") == 2, "synchronous %" PRId64,
		   db_int(db, "PRAGMA synchronous"));		/* FULL */
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0660);
	path_in(dir, "create", "pgcluster", false);
	CHECKF(stat(dir, &sb) == 0 && (sb.st_mode & 0777) == 0770, "dir mode %o",
		   (unsigned) sb.st_mode & 0777);
	CHECK(count_files(dir, ".init-") == 0);		/* no private build file left */

	CHECK(raw_int(path, "PRAGMA application_id") == PGL_APPLICATION_ID);
	CHECK(raw_int(path, "PRAGMA user_version") == PGL_SCHEMA_VERSION);
	CHECK(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
				  "('cluster', 'lease', 'events')") == 3);
	CHECK(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name IN "
				  "('nodes', 'cluster_status', 'lease_status')") == 0);
	/* The node records' directory and the views file for the sqlite3 shell. */
	CHECK(stat(records_dir(path, buf, sizeof(buf)), &sb) == 0 && S_ISDIR(sb.st_mode) &&
		  (sb.st_mode & 0777) == 0770);
	CHECK(count_files(buf, ".json") == 0);
	CHECK(stat(views_file(path, buf, sizeof(buf)), &sb) == 0 && S_ISREG(sb.st_mode));
	CHECK(raw_int(path, "SELECT count(*) FROM events") == 0);

	rc = pgl_store_read_lease(st, &l);
	CHECK(rc == 0 && l.term == 0 && l.renewals == 0 && l.holder[0] == '\0' &&
		  !l.has_released_lsn);
	rc = pgl_store_read_cluster(st, &c);
	CHECKF(rc == 0 && strcmp(c.name, "pgcluster") == 0, "cluster name '%s'", c.name);
	CHECK(c.created_at[0] != '\0' && !c.paused && c.system_identifier[0] == '\0');
	CHECK(strcmp(pgl_store_path(st), path) == 0);
	pgl_store_close(st);
	pgl_store_close(NULL);

	/* Reopening: read/write and read-only; a read-only handle never writes. */
	st = open_store(path, PGL_STORE_RDWR);
	ro = open_store(path, PGL_STORE_RDONLY);
	if (st && ro) {
		int64_t term = -1;

		CHECK(pgl_store_read_lease(ro, &l) == 0 && l.term == 0);
		CHECK(pgl_store_claim(ro, &l, "n1", 5000, NULL, &term) == -PGL_EINVAL);
		CHECK(pgl_store_event(ro, 0, "n1", "x", "y") == -PGL_EINVAL);
		CHECK(pgl_store_set_paused(ro, true, "n1") == -PGL_EINVAL);
		CHECK(pgl_store_read_lease(st, &l) == 0 && l.term == 0);
	}
	pgl_store_close(ro);
	pgl_store_close(st);

	/* A missing store is not created unless asked. */
	path_in(path, "create", "absent.db", false);
	st = (struct pgl_store *) 1;
	rc = pgl_store_open(path, PGL_STORE_RDONLY, &st, err, sizeof(err));
	CHECKF(rc == -PGL_ENOENT && st == NULL && strstr(err, path), "rc %d err %s", rc, err);
	rc = pgl_store_open(path, PGL_STORE_RDWR, &st, err, sizeof(err));
	CHECKF(rc == -PGL_ENOENT && strstr(err, path), "rc %d err %s", rc, err);
	CHECK(!exists(path));
}

/* 8 processes create the same new store at once; all succeed on one store. */
static void
test_concurrent_create(void)
{
	enum { NPROC = 8, ROUNDS = 4 };

	for (int round = 0; round < ROUNDS; round++) {
		char sub[32], path[PATHLEN], dir[PATHLEN];
		int gate[2], bad = 0;
		pid_t pids[NPROC];
		struct pgl_store *st;
		struct pgl_node *nodes = NULL;
		int n = 0;

		snprintf(sub, sizeof(sub), "cc%d", round);
		path_in(path, sub, "new/lease.db", true);	/* "new" does not exist either */
		if (pipe(gate) != 0)
			return;
		for (int i = 0; i < NPROC; i++) {
			pids[i] = fork();
			if (pids[i] == 0) {
				struct pgl_store *cs = NULL;
				struct pgl_node nd = { .priority = 100 };
				char cerr[512], c;
				int rc;

				close(gate[1]);
				if (read(gate[0], &c, 1) < 0)	/* EOF when the parent opens the gate */
					_exit(99);
				rc = pgl_store_open(path, PGL_STORE_CREATE, &cs, cerr, sizeof(cerr));
				if (rc < 0) {
					fprintf(stderr, "child %d: %s\n", i, cerr);
					_exit(10 - rc);
				}
				pgl_store_set_busy_ms(cs, 10000);	/* 8 writers at once on a slow disk */
				snprintf(nd.name, sizeof(nd.name), "c%d", i);
				rc = pgl_store_node_upsert(cs, &nd);
				pgl_store_close(cs);
				_exit(rc == 0 ? 0 : 50 - rc);
			}
		}
		close(gate[0]);
		usleep(20000);
		close(gate[1]);
		for (int i = 0; i < NPROC; i++) {
			int code = wait_child(pids[i]);

			if (code != 0) {
				bad++;
				fprintf(stderr, "concurrent create: child %d exit %d\n", i, code);
			}
		}
		CHECKF(bad == 0, "round %d: %d creators failed", round, bad);
		st = open_store(path, PGL_STORE_RDWR);
		if (st == NULL)
			continue;
		CHECK(pgl_store_list_nodes(st, &nodes, &n) == 0 && n == NPROC);
		free(nodes);
		pgl_store_close(st);
		path_in(dir, sub, "new", false);
		CHECK(count_files(dir, ".init-") == 0);
	}
}

/* ---- the lease protocol ---- */

static void
test_claim_renew_release(void)
{
	char path[PATHLEN];
	struct pgl_store *st = fresh_store("proto", path);
	struct pgl_lease l0, l1, l2, cur;
	struct pgl_event *ev = NULL;
	int64_t term = -1, dl = -7, ren = -7;
	int rc, nev = 0;

	if (st == NULL)
		return;
	CHECK(pgl_store_read_lease(st, &l0) == 0);

	/* First claim: term 0 -> 1. */
	rc = pgl_store_claim(st, &l0, "n1", 5000, "bootstrap claim", &term);
	CHECKF(rc == 0 && term == 1, "rc %d term %" PRId64, rc, term);
	CHECK(pgl_store_read_lease(st, &l1) == 0);
	CHECK(strcmp(l1.holder, "n1") == 0 && l1.term == 1 && l1.renewals == 0 && l1.ttl_ms == 5000);
	CHECK(l1.acquired_at[0] != '\0' && l1.renewed_at[0] != '\0');

	/* A claim with a stale version loses and changes nothing. */
	term = -1;
	rc = pgl_store_claim(st, &l0, "n2", 5000, "stale", &term);
	CHECKF(rc == -PGL_ECONFLICT, "rc %d", rc);
	CHECK(term == -1);
	CHECK(pgl_store_read_lease(st, &cur) == 0 && same_version(&cur, &l1) &&
		  strcmp(cur.acquired_at, l1.acquired_at) == 0);
	CHECK(event_count(st) == 1);
	CHECK(pgl_store_claim(st, &l1, "N2", 5000, NULL, &term) == -PGL_EINVAL);
	CHECK(pgl_store_claim(st, &l1, "", 5000, NULL, &term) == -PGL_EINVAL);

	/* Renew: deadline = t0 + ttl - margin, renewals counted. */
	rc = pgl_store_renew(st, "n1", 1, 100000, 5000, 1000, far_ms(), &dl, &ren);
	CHECKF(rc == 0 && dl == 104000 && ren == 1, "rc %d dl %" PRId64 " ren %" PRId64, rc, dl, ren);
	rc = pgl_store_renew(st, "n1", 1, 777777, 3000, 500, far_ms(), &dl, &ren);
	CHECKF(rc == 0 && dl == 777777 + 3000 - 500 && ren == 2, "rc %d dl %" PRId64, rc, dl);
	CHECK(pgl_store_read_lease(st, &l2) == 0 && l2.renewals == 2 && l2.ttl_ms == 3000 &&
		  l2.term == 1);
	CHECK(pgl_store_renew(st, "n1", 1, 1, 5000, 1000, far_ms(), &dl, NULL) == 0 && dl == 4001);
	CHECK(pgl_store_read_lease(st, &l2) == 0 && l2.renewals == 3);

	/* Renew by a non-holder or at a wrong term: ENOTHOLDER, nothing changes. */
	dl = -7;
	CHECK(pgl_store_renew(st, "n2", 1, 1, 5000, 1000, far_ms(), &dl, &ren) == -PGL_ENOTHOLDER);
	CHECK(pgl_store_renew(st, "n1", 2, 1, 5000, 1000, far_ms(), &dl, &ren) == -PGL_ENOTHOLDER);
	CHECK(pgl_store_renew(st, "n1", 0, 1, 5000, 1000, far_ms(), &dl, &ren) == -PGL_ENOTHOLDER);
	CHECK(dl == -7);
	{
		struct pgl_node none;

		/* A non-holder's renewal writes nothing, not even a record of its own. */
		CHECK(pgl_store_get_node(st, "n2", &none) == -PGL_ENOENT);
	}
	/* A wait_until already past: ETIMEOUT without touching the store. */
	CHECK(pgl_store_renew(st, "n1", 1, 1, 5000, 1000, pgl_mono_ms() - 1, &dl, &ren) ==
		  -PGL_ETIMEOUT);
	CHECK(dl == -7);
	CHECK(pgl_store_read_lease(st, &cur) == 0 && same_version(&cur, &l2));

	/* The version seen before a renewal is stale: a claim with it loses. */
	CHECK(pgl_store_claim(st, &l1, "n2", 5000, NULL, &term) == -PGL_ECONFLICT);
	{
		struct pgl_lease other = l2;

		strcpy(other.holder, "n3");
		CHECK(pgl_store_claim(st, &other, "n2", 5000, NULL, &term) == -PGL_ECONFLICT);
		other = l2;
		other.term = 2;
		CHECK(pgl_store_claim(st, &other, "n2", 5000, NULL, &term) == -PGL_ECONFLICT);
	}
	CHECK(pgl_store_read_lease(st, &cur) == 0 && same_version(&cur, &l2));

	/* Release: only by the holder at its term; records the LSN. */
	CHECK(pgl_store_release(st, "n2", 1, "0/3000148", NULL) == -PGL_ENOTHOLDER);
	CHECK(pgl_store_release(st, "n1", 2, "0/3000148", NULL) == -PGL_ENOTHOLDER);
	CHECK(pgl_store_release(st, "n1", 1, "zz", NULL) == -PGL_EINVAL);
	CHECK(pgl_store_release(st, "n1", 1, "16/B374D848", "clean stop") == 0);
	CHECK(pgl_store_read_lease(st, &cur) == 0);
	CHECK(cur.holder[0] == '\0' && cur.term == 1 && cur.has_released_lsn &&
		  strcmp(cur.released_lsn, "16/B374D848") == 0 &&
		  cur.released_lsn_int == 0x16B374D848ULL);
	CHECK(raw_int(path, "SELECT count(*) FROM lease WHERE holder IS NULL") == 1);
	CHECK(pgl_store_renew(st, "n1", 1, 1, 5000, 1000, far_ms(), &dl, &ren) == -PGL_ENOTHOLDER);
	CHECK(pgl_store_release(st, "n1", 1, NULL, NULL) == -PGL_ENOTHOLDER);

	/* Claim after release: term + 1, never reused; released_lsn cleared. */
	rc = pgl_store_claim(st, &cur, "n2", 5000, NULL, &term);
	CHECK(rc == 0 && term == 2);
	CHECK(pgl_store_read_lease(st, &cur) == 0 && cur.term == 2 && strcmp(cur.holder, "n2") == 0 &&
		  !cur.has_released_lsn && cur.released_lsn[0] == '\0' && cur.renewals == 0);
	/* A release without an LSN. */
	CHECK(pgl_store_release(st, "n2", 2, NULL, NULL) == 0);
	CHECK(pgl_store_read_lease(st, &cur) == 0 && !cur.has_released_lsn && cur.holder[0] == '\0');
	/* The same node may claim again, but always at a new term. */
	CHECK(pgl_store_claim(st, &cur, "n2", 5000, NULL, &term) == 0 && term == 3);

	/* The event log: acquired, released, acquired, released, acquired. */
	CHECK(pgl_store_list_events(st, 100, &ev, &nev) == 0);
	CHECKF(nev == 5, "%d events", nev);
	if (nev == 5) {
		CHECK(strcmp(ev[0].kind, "acquired") == 0 && ev[0].term == 1 &&
			  strcmp(ev[0].node, "n1") == 0 && strcmp(ev[0].detail, "bootstrap claim") == 0);
		CHECK(strcmp(ev[1].kind, "released") == 0 && ev[1].term == 1 &&
			  strcmp(ev[1].node, "n1") == 0 && strcmp(ev[1].detail, "clean stop") == 0);
		CHECK(strcmp(ev[2].kind, "acquired") == 0 && ev[2].term == 2 &&
			  strcmp(ev[2].node, "n2") == 0);
		CHECK(strcmp(ev[3].kind, "released") == 0 && ev[3].term == 2);
		CHECK(strcmp(ev[4].kind, "acquired") == 0 && ev[4].term == 3);
		CHECK(ev[0].id < ev[1].id && ev[1].id < ev[2].id && ev[0].at[0] != '\0');
	}
	free(ev);
	pgl_store_close(st);
	/* After the last close every commit is in the file; no -wal keeps frames. */
	{
		char wal[PATHLEN + 8];
		struct stat sb;

		snprintf(wal, sizeof(wal), "%s-wal", path);
		CHECK(stat(wal, &sb) != 0 || sb.st_size == 0);
		CHECK(raw_int(path, "SELECT term FROM lease") == 3);
	}
}

/* The trigger refuses any update that lowers the term, even from raw SQL. */
static void
test_term_never_lowered(void)
{
	char path[PATHLEN], msg[256];
	struct pgl_store *st = fresh_store("trigger", path);
	struct pgl_lease l;
	int64_t term;
	int rc;

	if (st == NULL)
		return;
	for (int i = 0; i < 3; i++) {
		pgl_store_read_lease(st, &l);
		CHECK(pgl_store_claim(st, &l, "n1", 5000, NULL, &term) == 0 && term == i + 1);
	}
	pgl_store_close(st);
	rc = raw_exec(path, "UPDATE lease SET term = 2 WHERE id = 1", msg, sizeof(msg));
	CHECKF(rc != SQLITE_OK && strstr(msg, "only grow"), "rc %d msg %s", rc, msg);
	rc = raw_exec(path, "UPDATE lease SET term = 0, holder = 'n9' WHERE id = 1", msg, sizeof(msg));
	CHECK(rc != SQLITE_OK);
	rc = raw_exec(path, "UPDATE lease SET term = -1", msg, sizeof(msg));
	CHECK(rc != SQLITE_OK);
	CHECK(raw_int(path, "SELECT term FROM lease") == 3);
	CHECK(raw_int(path, "SELECT count(*) FROM lease WHERE holder = 'n1'") == 1);
	rc = raw_exec(path, "UPDATE lease SET term = 7 WHERE id = 1", msg, sizeof(msg));
	CHECK(rc == SQLITE_OK && raw_int(path, "SELECT term FROM lease") == 7);
}

/*
 * Terms have a ceiling (issue 24): a lease row above PGL_TERM_MAX is refused
 * on read (a term of INT64_MAX used to overflow on the next claim), a claim
 * at the ceiling is refused before its + 1, and never_held tells a store
 * that never granted a term.
 */
static void
test_term_limit(void)
{
	char path[PATHLEN], msg[256], sql[128];
	struct pgl_store *st = fresh_store("limit", path);
	struct pgl_lease l;
	int64_t term = 0;

	if (st == NULL)
		return;
	CHECK(pgl_store_read_lease(st, &l) == 0 && l.never_held && l.term == 0);
	CHECK(pgl_store_claim(st, &l, "n1", 5000, NULL, &term) == 0 && term == 1);
	CHECK(pgl_store_read_lease(st, &l) == 0 && !l.never_held);
	CHECK(pgl_store_release(st, "n1", 1, NULL, "test") == 0);
	CHECK(pgl_store_read_lease(st, &l) == 0 && !l.never_held);
	pgl_store_close(st);
	snprintf(sql, sizeof(sql), "UPDATE lease SET term = %lld", (long long) PGL_TERM_MAX);
	CHECK(raw_exec(path, sql, msg, sizeof(msg)) == SQLITE_OK);
	if ((st = open_store(path, PGL_STORE_RDWR)) == NULL)
		return;
	CHECK(pgl_store_read_lease(st, &l) == 0 && l.term == PGL_TERM_MAX);
	CHECK(pgl_store_claim(st, &l, "n2", 5000, NULL, &term) == -PGL_EFOREIGN);
	CHECK(strstr(pgl_store_errmsg(st), "limit") != NULL);
	CHECK(raw_int(path, "SELECT term FROM lease") == PGL_TERM_MAX);
	pgl_store_close(st);
	CHECK(raw_exec(path, "UPDATE lease SET term = 9223372036854775807", msg,
				   sizeof(msg)) == SQLITE_OK);
	if ((st = open_store(path, PGL_STORE_RDWR)) == NULL)
		return;
	CHECK(pgl_store_read_lease(st, &l) == -PGL_EFOREIGN);
	CHECKF(strstr(pgl_store_errmsg(st), "above pglease's limit") != NULL, "%s",
		   pgl_store_errmsg(st));
	CHECK(pgl_store_claim(st, &l, "n2", 5000, NULL, &term) < 0);
	CHECK(raw_int(path, "SELECT term FROM lease") == INT64_MAX);
	pgl_store_close(st);
}

/* ---- the observer's expiry tracker (pure, fake times) ---- */

static void
test_observer(void)
{
	struct pgl_observer o = { 0 };
	struct pgl_lease l = { .holder = "n1", .term = 4, .renewals = 10 };
	const int64_t ttl = 5000;

	CHECK(!pgl_observer_expired(&o, 1000000, ttl));
	CHECK(pgl_observer_remaining(&o, 1000000, ttl) == INT64_MAX);
	CHECK(!pgl_observer_matches(&o, &l));

	CHECK(pgl_observer_see(&o, &l, 1000));				/* first sight */
	CHECK(pgl_observer_matches(&o, &l));
	CHECK(!pgl_observer_see(&o, &l, 3000));				/* unchanged: keeps 1000 */
	CHECK(!pgl_observer_see(&o, &l, 5999));
	CHECK(!pgl_observer_expired(&o, 5999, ttl));
	CHECK(pgl_observer_remaining(&o, 5999, ttl) == 1);
	CHECK(pgl_observer_remaining(&o, 2500, ttl) == 3500);
	CHECK(pgl_observer_expired(&o, 6000, ttl));			/* exactly ttl unchanged */
	CHECK(pgl_observer_remaining(&o, 6000, ttl) == 0);
	CHECK(pgl_observer_remaining(&o, 90000, ttl) == 0);

	/* Any change of the version resets the clock: renewals, term, holder. */
	l.renewals++;
	CHECK(pgl_observer_see(&o, &l, 6500));
	CHECK(!pgl_observer_expired(&o, 11499, ttl) && pgl_observer_expired(&o, 11500, ttl));
	l.term++;
	l.renewals = 0;
	CHECK(pgl_observer_see(&o, &l, 11500));
	CHECK(!pgl_observer_expired(&o, 11500, ttl) && pgl_observer_remaining(&o, 11500, ttl) == ttl);
	strcpy(l.holder, "n2");
	CHECK(pgl_observer_see(&o, &l, 12000));
	CHECK(!pgl_observer_expired(&o, 16999, ttl) && pgl_observer_expired(&o, 17000, ttl));
	l.holder[0] = '\0';									/* released */
	CHECK(pgl_observer_see(&o, &l, 20000));
	CHECK(!pgl_observer_matches(&o, &(struct pgl_lease){ .holder = "n2", .term = 5 }));

	/* Negative clock values (a monotonic clock may start anywhere) work too. */
	memset(&o, 0, sizeof(o));
	CHECK(pgl_observer_see(&o, &l, -100000));
	CHECK(!pgl_observer_expired(&o, -95001, ttl) && pgl_observer_expired(&o, -95000, ttl));

	/* A lease renewed faster than the TTL never expires, however long it runs. */
	memset(&o, 0, sizeof(o));
	l.renewals = 0;
	{
		bool ever = false;

		for (int64_t t = 0; t < 1000000; t += 100) {
			if (t % 4000 == 0)
				l.renewals++;
			pgl_observer_see(&o, &l, t);
			ever |= pgl_observer_expired(&o, t, ttl);
		}
		CHECK(!ever);
	}
}

/*
 * The randomized interleavings of holders and observers on simulated clocks
 * run the agent's real decision module: test_decide.c.
 */


/* ---- a real race: forked processes claim the same version at once ---- */

enum { RACE_PROCS = 8, RACE_ROUNDS = 200 };

struct race_shm {
	pthread_barrier_t bar;
	volatile int stop;
	struct pgl_lease seen[RACE_PROCS];
	int rc[RACE_PROCS];
	int64_t term[RACE_PROCS];
};

static void
race_child(struct race_shm *sh, int i, const char *path)
{
	struct pgl_store *st = NULL;
	char name[16], cerr[512];
	int open_rc = pgl_store_open(path, PGL_STORE_RDWR, &st, cerr, sizeof(cerr));

	if (open_rc == 0)
		pgl_store_set_busy_ms(st, 10000);
	else
		fprintf(stderr, "race child %d: %s\n", i, cerr);
	snprintf(name, sizeof(name), "r%d", i);
	for (;;) {
		pthread_barrier_wait(&sh->bar);		/* A: the round is set up */
		if (sh->stop)
			break;
		if (open_rc != 0 || pgl_store_read_lease(st, &sh->seen[i]) != 0)
			sh->seen[i].term = -1;
		pthread_barrier_wait(&sh->bar);		/* B: everyone read the same version */
		sh->term[i] = -1;
		sh->rc[i] = open_rc ? open_rc
			: pgl_store_claim(st, &sh->seen[i], name, 5000, "race", &sh->term[i]);
		pthread_barrier_wait(&sh->bar);		/* C: everyone has claimed */
	}
	pgl_store_close(st);
	_exit(0);
}

static void
test_real_race(void)
{
	char path[PATHLEN], winner[16] = "";
	struct pgl_store *st = fresh_store("race", path);
	struct race_shm *sh;
	pthread_barrierattr_t ba;
	pid_t pids[RACE_PROCS];
	int wins[RACE_PROCS] = { 0 }, bad_rounds = 0, busy = 0, lost = 0, other = 0;
	int misread = 0, term_errors = 0, release_errors = 0, crashed = 0, nwinners = 0;
	int64_t wterm = 0, start;

	if (st == NULL)
		return;
	pgl_store_close(st);		/* no connection may cross the fork */
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return;
	memset(sh, 0, sizeof(*sh));
	pthread_barrierattr_init(&ba);
	pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
	pthread_barrier_init(&sh->bar, &ba, RACE_PROCS + 1);
	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < RACE_PROCS; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			race_child(sh, i, path);
	}
	st = open_store(path, PGL_STORE_RDWR);
	start = pgl_mono_ms();
	for (int r = 0; r < RACE_ROUNDS && st; r++) {
		struct pgl_lease before, after;
		int nwin = 0, idx = -1;

		/* Odd rounds race for a released lease, even ones for an expired one. */
		if (r % 2 == 1 && pgl_store_release(st, winner, wterm, "0/3000148", NULL) != 0)
			release_errors++;
		pgl_store_read_lease(st, &before);
		pthread_barrier_wait(&sh->bar);
		pthread_barrier_wait(&sh->bar);
		pthread_barrier_wait(&sh->bar);
		for (int i = 0; i < RACE_PROCS; i++) {
			if (!same_version(&sh->seen[i], &before))
				misread++;
			if (sh->rc[i] == 0) {
				nwin++;
				idx = i;
			} else if (sh->rc[i] == -PGL_EBUSY)
				busy++;				/* a loss, but counted */
			else if (sh->rc[i] == -PGL_ECONFLICT)
				lost++;
			else
				other++;
		}
		pgl_store_read_lease(st, &after);
		if (nwin != 1) {
			bad_rounds++;
			continue;
		}
		snprintf(winner, sizeof(winner), "r%d", idx);
		wterm = after.term;
		wins[idx]++;
		if (after.term != before.term + 1 || sh->term[idx] != before.term + 1 ||
			strcmp(after.holder, winner) != 0 || after.renewals != 0)
			term_errors++;
	}
	sh->stop = 1;
	pthread_barrier_wait(&sh->bar);
	for (int i = 0; i < RACE_PROCS; i++)
		crashed += wait_child(pids[i]) != 0;
	for (int i = 0; i < RACE_PROCS; i++)
		nwinners += wins[i] > 0;
	printf("race: %d processes x %d rounds in %" PRId64 " ms: %d CAS losses, %d busy, "
		   "%d distinct winners\n", RACE_PROCS, RACE_ROUNDS, pgl_mono_ms() - start, lost, busy,
		   nwinners);
	CHECKF(bad_rounds == 0, "%d rounds without exactly one winner", bad_rounds);
	CHECKF(term_errors == 0, "%d rounds where the term did not grow by exactly one", term_errors);
	CHECKF(misread == 0, "%d reads of a different version", misread);
	CHECK(other == 0 && release_errors == 0 && crashed == 0);
	CHECK(lost + busy == (RACE_PROCS - 1) * RACE_ROUNDS);
	if (st) {
		struct pgl_lease l;
		struct pgl_event *ev = NULL;
		int n = 0, acquired = 0;

		CHECK(pgl_store_read_lease(st, &l) == 0 && l.term == RACE_ROUNDS);
		CHECK(pgl_store_list_events(st, 100000, &ev, &n) == 0);
		for (int i = 0; i < n; i++)
			acquired += strcmp(ev[i].kind, "acquired") == 0 && ev[i].term == acquired + 1;
		CHECKF(acquired == RACE_ROUNDS, "%d acquired events in term order", acquired);
		free(ev);
	}
	pgl_store_close(st);
	pthread_barrier_destroy(&sh->bar);
	munmap(sh, sizeof(*sh));
}

/* ---- readers and writers holding the store ---- */

static void
sleep_ms(int64_t ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Not records either: a directory, a FIFO and a 20 KiB file named like one. */
static void
bad_record_files(const char *path)
{
	char dir[PATHLEN + 16], f[PATHLEN + 96], *big = malloc(20 * 1024);

	records_dir(path, dir, sizeof(dir));
	snprintf(f, sizeof(f), "%s/adir.json", dir);
	CHECK(mkdir(f, 0700) == 0);
	snprintf(f, sizeof(f), "%s/fifo.json", dir);
	CHECK(mkfifo(f, 0600) == 0);
	if (big) {
		memset(big, ' ', 20 * 1024 - 1);
		memcpy(big, "{\"name\": \"big\"}", 15);
		big[20 * 1024 - 1] = '\0';
		put_record_text(path, "big", big);
		free(big);
	}
}

/* One value from a node's record, through SQLite's json functions (expr uses ?1). */
static void
record_field(const char *path, const char *name, const char *expr, char *out, size_t len)
{
	char dir[PATHLEN + 16], file[PATHLEN + 96], *sql;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	unsigned char *text;
	size_t n = 0;

	out[0] = '\0';
	snprintf(file, sizeof(file), "%s/%s.json", records_dir(path, dir, sizeof(dir)), name);
	text = slurp(file, &n);
	sql = sqlite3_mprintf("SELECT %s", expr);
	if (text && sql && sqlite3_open(":memory:", &db) == SQLITE_OK &&
		sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, (const char *) text, (int) n, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
			pgl_strlcpy(out, (const char *) sqlite3_column_text(st, 0), len);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	sqlite3_free(sql);
	free(text);
}

/* An integer from the sqlite3 shell after `.read` of the store's views file. */
static int64_t
shell_int(const char *path, const char *sql)
{
	char views[PATHLEN + 32], cmd[PATHLEN + 48], buf[64] = "";
	int fd[2], status = 0;
	ssize_t n = 0;
	pid_t pid;

	snprintf(cmd, sizeof(cmd), ".read %s", views_file(path, views, sizeof(views)));
	if (pipe(fd) != 0)
		return -1;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		dup2(fd[1], 1);
		close(fd[0]);
		execl("/usr/bin/sqlite3", "sqlite3", "-readonly", path, "-cmd", cmd, sql, (char *) NULL);
		_exit(127);
	}
	close(fd[1]);
	if (pid > 0)
		n = read(fd[0], buf, sizeof(buf) - 1);
	close(fd[0]);
	if (pid > 0)
		waitpid(pid, &status, 0);
	buf[n > 0 ? n : 0] = '\0';
	return pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && n > 0 ? atoll(buf) : -1;
}

/* Claims the lease for "n1" in a fresh store and closes it; returns the term. */
static int64_t
store_with_holder(const char *sub, char *path)
{
	struct pgl_store *st = fresh_store(sub, path);
	struct pgl_lease l;
	int64_t term = -1;

	if (st == NULL)
		return -1;
	pgl_store_read_lease(st, &l);
	CHECK(pgl_store_claim(st, &l, "n1", 2000, NULL, &term) == 0);
	pgl_store_close(st);
	return term;
}

/* An operator's shell left inside a read transaction must not delay renewals. */
static void
test_reader_does_not_block_renew(void)
{
	char path[PATHLEN], c = 0;
	int64_t term = store_with_holder("reader", path), max_lat = 0, start, dl, ren;
	struct pgl_store *st;
	int ready[2], n = 0, fails = 0, code;
	pid_t pid;

	if (term < 0 || pipe(ready) != 0)
		return;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		sqlite3 *db = raw_open(path, SQLITE_OPEN_READWRITE);
		int64_t first, still, after;

		if (db == NULL || sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
			_exit(2);
		first = db_int(db, "SELECT count(*) FROM events");		/* the snapshot starts */
		if (write(ready[1], "r", 1) != 1)
			_exit(3);
		sleep_ms(3000);
		still = db_int(db, "SELECT count(*) FROM events");		/* same snapshot */
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
		after = db_int(db, "SELECT count(*) FROM events");
		sqlite3_close(db);
		_exit(still == first && after > first ? 0 : 1);
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		c = 0;
	close(ready[0]);
	CHECK(c == 'r');
	st = open_store(path, PGL_STORE_RDWR);
	/* A commit while the reader's snapshot is open: it sees it only after COMMIT. */
	if (st)
		CHECK(pgl_store_event(st, term, "n1", "note", "while a reader waits") == 0);
	start = pgl_mono_ms();
	while (st && pgl_mono_ms() - start < 3300) {
		int64_t t0 = pgl_mono_ms(), lat;
		int rc = pgl_store_renew(st, "n1", term, t0, 2000, 500, t0 + 1500, &dl, &ren);

		lat = pgl_mono_ms() - t0;
		if (lat > max_lat)
			max_lat = lat;
		fails += rc != 0;
		n++;
		if (pgl_mono_ms() < t0 + 100)
			sleep_ms(t0 + 100 - pgl_mono_ms());
	}
	code = wait_child(pid);
	printf("renew with a reader inside a 3 s read transaction: %d renewals, max latency %"
		   PRId64 " ms\n", n, max_lat);
	CHECKF(fails == 0, "%d of %d renewals failed", fails, n);
	CHECKF(max_lat < RENEW_BOUND_MS, "max renew latency %" PRId64 " ms", max_lat);
	CHECK(n >= 20);
	CHECKF(code == 0, "reader exit %d (its snapshot did not stay open)", code);
	pgl_store_close(st);
}

/*
 * Another process holding lease.db's write lock (an operator's shell inside
 * BEGIN IMMEDIATE, a node frozen inside a claim) delays neither renewals nor
 * heartbeats: they go to the node's own record.  A claim, which needs the
 * lock, gives up after the busy timeout with -PGL_EBUSY.
 */
static void
test_writer_lock_does_not_block_renew(void)
{
	char path[PATHLEN], c = 0;
	int64_t term = store_with_holder("writer", path), dl, ren, max_lat = 0;
	struct pgl_store *st, *other;
	struct pgl_lease before, after;
	struct pgl_node nd;
	int ready[2];
	pid_t pid;

	if (term < 0 || pipe(ready) != 0)
		return;
	st = open_store(path, PGL_STORE_RDWR);
	if (st == NULL)
		return;
	CHECK(pgl_store_renew(st, "n1", term, 0, 2000, 500, far_ms(), &dl, &ren) == 0);
	CHECK(pgl_store_read_lease(st, &before) == 0 && before.renewals == 1);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		sqlite3 *db = raw_open(path, SQLITE_OPEN_READWRITE);
		int ok = db && sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;

		if (write(ready[1], ok ? "w" : "x", 1) != 1)
			_exit(3);
		sleep_ms(2500);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		sqlite3_close(db);
		_exit(0);
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		c = 0;
	close(ready[0]);
	CHECK(c == 'w');
	memset(&nd, 0, sizeof(nd));
	strcpy(nd.name, "n1");
	strcpy(nd.role, "primary");
	for (int i = 0; i < 10; i++) {
		int64_t t0 = pgl_mono_ms(), lat;

		CHECKF(pgl_store_renew(st, "n1", term, t0, 2000, 500, t0 + 300, &dl, &ren) == 0,
			   "renewal %d under a held write lock: %s", i, pgl_store_errmsg(st));
		CHECK(pgl_store_node_upsert(st, &nd) == 0);
		lat = pgl_mono_ms() - t0;
		max_lat = lat > max_lat ? lat : max_lat;
	}
	printf("renew and heartbeat against a held write lock: max latency %" PRId64 " ms\n",
		   max_lat);
	CHECKF(max_lat < RENEW_BOUND_MS, "max latency %" PRId64 " ms", max_lat);
	CHECK(pgl_store_read_lease(st, &after) == 0 && after.renewals == before.renewals + 10);
	/* A claim needs the lock: bounded by the busy timeout. */
	other = open_store(path, PGL_STORE_RDWR);
	if (other) {
		int64_t t0 = pgl_mono_ms(), nt = -1;

		pgl_store_set_busy_ms(other, 200);
		CHECK(pgl_store_claim(other, &after, "n2", 2000, NULL, &nt) == -PGL_EBUSY && nt == -1);
		CHECK(pgl_mono_ms() - t0 < 1500);
		pgl_store_close(other);
	}
	CHECK(wait_child(pid) == 0);
	pgl_store_close(st);
}

/* A renewal must not undo the busy timeout set with pgl_store_set_busy_ms(). */
static void
test_busy_ms_survives_renew(void)
{
	char path[PATHLEN], c = 0;
	int64_t term = store_with_holder("busyms", path), dl, ren, t0, took;
	struct pgl_store *st;
	struct pgl_lease l;
	int go[2], ready[2], rc;
	pid_t pid;

	if (term < 0 || pipe(go) != 0 || pipe(ready) != 0)
		return;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		sqlite3 *db;
		char x;

		/* Wait for the parent's renewal, then hold the write lock for 1.5 s. */
		if (read(go[0], &x, 1) != 1)
			_exit(2);
		db = raw_open(path, SQLITE_OPEN_READWRITE);
		if (db == NULL || sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
			_exit(3);
		if (write(ready[1], "w", 1) != 1)
			_exit(4);
		sleep_ms(1500);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		sqlite3_close(db);
		_exit(0);
	}
	close(go[0]);
	close(ready[1]);
	st = open_store(path, PGL_STORE_RDWR);
	if (st != NULL) {
		pgl_store_set_busy_ms(st, 5000);
		CHECK(pgl_store_renew(st, "n1", term, 0, 2000, 500, far_ms(), &dl, &ren) == 0);
		CHECK(pgl_store_read_lease(st, &l) == 0);
	}
	if (write(go[1], "g", 1) != 1 || read(ready[0], &c, 1) != 1)
		c = 0;
	CHECK(c == 'w');
	if (st != NULL) {
		/* n2 takes over n1's lease; the lock frees after 1.5 s, within 5 s. */
		t0 = pgl_mono_ms();
		rc = pgl_store_claim(st, &l, "n2", 2000, NULL, &term);
		took = pgl_mono_ms() - t0;
		CHECKF(rc == 0, "claim behind a 1.5 s write lock with busy 5000 ms: %s after %"
			   PRId64 " ms", pgl_strerror(rc), took);
	}
	close(go[1]);
	close(ready[0]);
	CHECK(wait_child(pid) == 0);
	pgl_store_close(st);
}

/* A failed write is reported, not swallowed. */
static void
test_write_errors_reported(void)
{
	char path[PATHLEN];
	struct pgl_store *st = fresh_store("writeerr", path);
	struct pgl_cluster cl;

	if (st == NULL)
		return;
	/* A write that SQLite refuses: the error and SQLite's reason survive ROLLBACK. */
	CHECK(sqlite3_exec(last_db, "PRAGMA query_only = 1", NULL, NULL, NULL) == SQLITE_OK);
	CHECK(pgl_store_set_sysid(st, "7301234567890123456") == -PGL_ESTORE);
	CHECKF(strstr(pgl_store_errmsg(st), "readonly") != NULL, "errmsg '%s'",
		   pgl_store_errmsg(st));
	CHECK(pgl_store_set_paused(st, true, "n1") == -PGL_ESTORE);
	CHECKF(strstr(pgl_store_errmsg(st), "not an error") == NULL, "errmsg '%s'",
		   pgl_store_errmsg(st));
	CHECK(sqlite3_exec(last_db, "PRAGMA query_only = 0", NULL, NULL, NULL) == SQLITE_OK);
	CHECK(pgl_store_read_cluster(st, &cl) == 0 && cl.system_identifier[0] == '\0');
	CHECK(pgl_store_read_cluster(st, &cl) == 0 && !cl.paused);
	CHECK(event_count(st) == 0);		/* the failed transactions left no event */
	pgl_store_close(st);
}

/*
 * The schema is input too: a trigger added by hand (here one that would
 * hand the lease to another node whenever a node row is touched) is refused
 * at open, and one added under an open handle stops every later write
 * before it can fire.
 */
static void
test_schema_tampering(void)
{
	static const char *const extras[] = {
		"CREATE TRIGGER steal AFTER INSERT ON events BEGIN "
		"UPDATE lease SET holder = 'evil', term = term + 1; END;",
		"CREATE VIEW extra AS SELECT 1;",
		"CREATE INDEX events_node ON events (node);",
		"CREATE TABLE more (x);",
		"DROP TRIGGER lease_term_grows;",
	};
	char path[PATHLEN], sub[32];
	struct pgl_store *st, *ro;
	struct pgl_node n;
	struct pgl_lease l;
	int64_t dl = 0;
	int rc;

	for (size_t i = 0; i < PGL_ARRAY_LEN(extras); i++) {
		snprintf(sub, sizeof(sub), "schema%zu", i);
		st = fresh_store(sub, path);
		if (st == NULL)
			return;
		memset(&n, 0, sizeof(n));
		strcpy(n.name, "n2");
		strcpy(n.conninfo, "host=127.0.0.1 port=5433");
		CHECK(pgl_store_node_upsert(st, &n) == 0);
		/* Changed under an open handle: the next write is refused, nothing fires. */
		CHECK(raw_exec(path, extras[i], NULL, 0) == SQLITE_OK);
		rc = pgl_store_remove_node(st, "n2", 0);
		CHECKF(rc == -PGL_EFOREIGN, "%s: remove gave %s", extras[i], pgl_strerror(rc));
		CHECKF(strstr(pgl_store_errmsg(st), "schema") != NULL, "errmsg '%s'",
			   pgl_store_errmsg(st));
		CHECK(pgl_store_renew(st, "n2", 0, 0, 2000, 500, far_ms(), &dl, NULL) == -PGL_EFOREIGN);
		CHECK(pgl_store_event(st, 0, "n1", "note", "x") == -PGL_EFOREIGN);
		CHECK(pgl_store_read_lease(st, &l) == -PGL_EFOREIGN);
		CHECK(pgl_store_get_node(st, "n2", &n) == 0);		/* its record is untouched */
		CHECK(raw_int(path, "SELECT count(*) FROM events") == 0);
		CHECK(raw_int(path, "SELECT count(*) FROM lease WHERE holder IS NULL AND term = 0") == 1);
		pgl_store_close(st);
		/* And at open, read-only or not. */
		rc = pgl_store_open(path, PGL_STORE_RDWR, &st, err, sizeof(err));
		CHECKF(rc == -PGL_EFOREIGN && strstr(err, "schema") && strstr(err, path), "%s: %s",
			   extras[i], err);
		pgl_store_close(st);
		rc = pgl_store_open(path, PGL_STORE_RDONLY, &ro, err, sizeof(err));
		CHECK(rc == -PGL_EFOREIGN);
		pgl_store_close(ro);
	}
}

/*
 * A store of schema version 1 (node rows in a table of lease.db) is migrated
 * by the first read-write open: each row becomes its node's record, the
 * table and its views are dropped, then the switchover table of version 3
 * is added (user_version 3).  A read-only open
 * refuses it and says what to do.
 */
static void
test_migrate_v1(void)
{
	char path[PATHLEN], dir[PATHLEN + 16], text[128];
	struct pgl_store *st = fresh_store("migrate", path);
	struct pgl_node got;
	struct pgl_lease l;
	int rc;

	if (st == NULL)
		return;
	pgl_store_close(st);
	records_dir(path, dir, sizeof(dir));
	CHECK(rmdir(dir) == 0);
	CHECK(raw_exec(path, "CREATE TABLE nodes (name TEXT PRIMARY KEY, conninfo TEXT,"
				   " role TEXT NOT NULL DEFAULT 'unknown', state TEXT, upstream TEXT,"
				   " timeline INTEGER, receive_lsn TEXT, receive_lsn_int INTEGER,"
				   " replay_lsn TEXT, replay_lsn_int INTEGER, priority INTEGER NOT NULL"
				   " DEFAULT 100, heartbeat INTEGER NOT NULL DEFAULT 0, updated_at TEXT);"
				   "DROP TABLE switchover;"
				   "CREATE VIEW lease_status AS SELECT holder, term FROM lease;"
				   "CREATE VIEW cluster_status AS SELECT name FROM nodes;"
				   "INSERT INTO nodes (name, conninfo, role, state, receive_lsn, receive_lsn_int,"
				   " priority, heartbeat) VALUES ('pg1', 'host=pg1 port=5432', 'standby',"
				   " 'streaming', '0/10', 16, 50, 7), ('Bad Name', NULL, 'unknown', NULL, NULL,"
				   " NULL, 100, 1);"
				   "PRAGMA user_version = 1;", NULL, 0) == SQLITE_OK);
	rc = pgl_store_open(path, PGL_STORE_RDONLY, &st, err, sizeof(err));
	CHECKF(rc == -PGL_EFOREIGN && strstr(err, "schema version 1") && strstr(err, "agent"),
		   "%d: %s", rc, err);
	CHECK(access(dir, F_OK) != 0);			/* refused: nothing written */
	st = open_store(path, PGL_STORE_RDWR);
	if (st == NULL)
		return;
	CHECK(raw_int(path, "PRAGMA user_version") == PGL_SCHEMA_VERSION);
	CHECK(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name IN "
				  "('nodes', 'cluster_status', 'lease_status')") == 0);
	CHECK(pgl_store_get_node(st, "pg1", &got) == 0 && strcmp(got.role, "standby") == 0 &&
		  got.receive_lsn_int == 16 && got.priority == 50 && got.heartbeat == 7 &&
		  strcmp(got.conninfo, "host=pg1 port=5432") == 0);
	CHECK(count_files(dir, ".json") == 1);		/* the invalid row is not carried over */
	record_field(path, "pg1", "json_extract(?1, '$.state')", text, sizeof(text));
	CHECK(strcmp(text, "streaming") == 0);
	CHECK(pgl_store_read_lease(st, &l) == 0 && l.term == 0);
	/* Its next heartbeat continues the counter. */
	CHECK(pgl_store_node_upsert(st, &got) == 0);
	CHECK(pgl_store_get_node(st, "pg1", &got) == 0 && got.heartbeat == 8);
	pgl_store_close(st);
	st = open_store(path, PGL_STORE_RDWR);	/* a second open: nothing left to do */
	CHECK(st != NULL && raw_int(path, "PRAGMA user_version") == PGL_SCHEMA_VERSION);
	pgl_store_close(st);
}

/*
 * Version 2 (no switchover table) is migrated by a read-write open; a
 * read-only open refuses it and says what to do.
 */
static void
test_migrate_v2(void)
{
	char path[PATHLEN];
	struct pgl_store *st = fresh_store("migrate2", path);
	struct pgl_switchover w;
	int rc;

	if (st == NULL)
		return;
	pgl_store_close(st);
	CHECK(raw_exec(path, "DROP TABLE switchover; PRAGMA user_version = 2;", NULL, 0) ==
		  SQLITE_OK);
	rc = pgl_store_open(path, PGL_STORE_RDONLY, &st, err, sizeof(err));
	CHECKF(rc == -PGL_EFOREIGN && strstr(err, "schema version 2") && strstr(err, "agent"),
		   "%d: %s", rc, err);
	st = open_store(path, PGL_STORE_RDWR);
	if (st == NULL)
		return;
	CHECK(raw_int(path, "PRAGMA user_version") == 3);
	CHECK(pgl_store_read_switchover(st, &w) == 0 && w.seq == 0 && w.state == PGL_SW_NONE);
	pgl_store_close(st);
	st = open_store(path, PGL_STORE_RDONLY);
	CHECK(st != NULL);
	pgl_store_close(st);
}

/*
 * Switchover requests: one at a time per term, compare-and-set on the lease
 * term, moved along by seq only, each step an event.
 */
static void
test_switchover_requests(void)
{
	char path[PATHLEN];
	struct pgl_store *st = fresh_store("switchover", path);
	struct pgl_switchover req = { .timeout_ms = 60000 }, w;
	struct pgl_lease l;
	struct pgl_event *ev = NULL;
	int64_t term = 0, seq = 0;
	int n = 0;

	if (st == NULL)
		return;
	CHECK(pgl_store_read_switchover(st, &w) == 0 && w.seq == 0 && w.state == PGL_SW_NONE);
	CHECK(pgl_store_read_lease(st, &l) == 0);
	CHECK(pgl_store_claim(st, &l, "pg1", 5000, "test", &term) == 0 && term == 1);
	strcpy(req.requested_by, "op@host pid 1");
	/* For another term: refused, nothing written. */
	req.term = 0;
	CHECK(pgl_store_request_switchover(st, &req, &seq) == -PGL_ECONFLICT);
	CHECK(strstr(pgl_store_errmsg(st), "lease changed"));
	req.term = 1;
	strcpy(req.target, "pg2");
	CHECK(pgl_store_request_switchover(st, &req, &seq) == 0 && seq == 1);
	CHECK(pgl_store_read_switchover(st, &w) == 0 && w.seq == 1 && w.term == 1 &&
		  w.state == PGL_SW_REQUESTED && !w.failover && strcmp(w.target, "pg2") == 0 &&
		  strcmp(w.requested_by, "op@host pid 1") == 0 && w.timeout_ms == 60000 &&
		  w.age_s >= 0 && w.age_s < 60);
	/* A second one while it is under way: refused, naming the first. */
	CHECK(pgl_store_request_switchover(st, &req, &seq) == -PGL_ECONFLICT);
	CHECK(strstr(pgl_store_errmsg(st), "switchover 1") &&
		  strstr(pgl_store_errmsg(st), "under way"));
	/* Moved along by seq only; an ended request stays ended. */
	CHECK(pgl_store_set_switchover(st, 2, PGL_SW_FAILED, NULL, "pg1", "x") == -PGL_ECONFLICT);
	CHECK(pgl_store_set_switchover(st, 1, PGL_SW_HANDING_OVER, "pg3", "pg1", "to pg3") == 0);
	CHECK(pgl_store_read_switchover(st, &w) == 0 && w.state == PGL_SW_HANDING_OVER &&
		  strcmp(w.target, "pg3") == 0 && strcmp(w.detail, "to pg3") == 0);
	CHECK(pgl_store_set_switchover(st, 1, PGL_SW_DONE, NULL, "pg3", "pg3 is primary") == 0);
	CHECK(pgl_store_set_switchover(st, 1, PGL_SW_FAILED, NULL, "pg1", "late") ==
		  -PGL_ECONFLICT);
	CHECK(pgl_store_read_switchover(st, &w) == 0 && w.state == PGL_SW_DONE &&
		  strcmp(w.target, "pg3") == 0);
	/* Ended: the next may come.  A stale one (older than its timeout) does not block. */
	req.timeout_ms = 1;
	CHECK(pgl_store_request_switchover(st, &req, &seq) == 0 && seq == 2);
	usleep(5000);
	req.timeout_ms = 60000;
	req.target[0] = '\0';
	CHECK(pgl_store_request_switchover(st, &req, &seq) == 0 && seq == 3);
	CHECK(pgl_store_read_switchover(st, &w) == 0 && w.target[0] == '\0');
	/* A failover is stored as handing over to its target; allowed without a holder. */
	CHECK(pgl_store_set_switchover(st, 3, PGL_SW_FAILED, NULL, "pg1", "no") == 0);
	CHECK(pgl_store_release(st, "pg1", 1, NULL, "test") == 0);
	req.failover = true;
	strcpy(req.target, "pg2");
	CHECK(pgl_store_request_switchover(st, &req, &seq) == 0 && seq == 4);
	CHECK(pgl_store_read_switchover(st, &w) == 0 && w.failover &&
		  w.state == PGL_SW_HANDING_OVER);
	/* ... but a switchover needs a holder. */
	CHECK(pgl_store_set_switchover(st, 4, PGL_SW_FAILED, NULL, "pg1", "no") == 0);
	req.failover = false;
	CHECK(pgl_store_request_switchover(st, &req, &seq) == -PGL_ECONFLICT);
	/* Every step is an event. */
	CHECK(pgl_store_list_events(st, 50, &ev, &n) == 0);
	{
		int asked = 0, over = 0, done = 0, failed = 0, fasked = 0;

		for (int i = 0; i < n; i++) {
			asked += strcmp(ev[i].kind, "switchover-requested") == 0;
			over += strcmp(ev[i].kind, "switchover-handing-over") == 0;
			done += strcmp(ev[i].kind, "switchover-done") == 0;
			failed += strcmp(ev[i].kind, "switchover-failed") == 0;
			fasked += strcmp(ev[i].kind, "failover-requested") == 0;
		}
		CHECKF(asked == 3 && over == 1 && done == 1 && failed == 1 && fasked == 1,
			   "%d %d %d %d %d", asked, over, done, failed, fasked);
	}
	free(ev);
	/* An invalid target in the row (edited by hand) is refused as input. */
	CHECK(raw_exec(path, "UPDATE switchover SET target = '../x'", NULL, 0) == SQLITE_OK);
	CHECK(pgl_store_read_switchover(st, &w) == -PGL_EFOREIGN);
	pgl_store_close(st);
}

/* A FIFO or a directory at the store's path is refused at once, by name. */
static void
test_not_regular_file(void)
{
	char path[PATHLEN];
	struct pgl_store *st = NULL;
	int64_t t0;
	int rc;

	path_in(path, "fifo", "lease.db", true);
	CHECK(mkfifo(path, 0600) == 0);
	t0 = pgl_mono_ms();
	rc = pgl_store_open(path, PGL_STORE_CREATE, &st, err, sizeof(err));
	CHECKF(rc < 0 && strstr(err, "not a regular file") && strstr(err, path), "%s", err);
	CHECK(pgl_mono_ms() - t0 < 1000);
	rc = pgl_store_open(path, PGL_STORE_RDONLY, &st, err, sizeof(err));
	CHECK(rc < 0 && strstr(err, "FIFO"));
	path_in(path, "fifo", "", false);
	rc = pgl_store_open(path, PGL_STORE_RDONLY, &st, err, sizeof(err));
	CHECKF(rc < 0 && strstr(err, "not a regular file") && strstr(err, "directory"), "%s", err);
	CHECK(st == NULL);
}

/*
 * What a heartbeat writes as conninfo: host and port only, quoted for libpq
 * (a password in the caller's text never reaches the shared file), and
 * nothing at all for text without a valid host and port, while the
 * heartbeat itself still counts.
 */
static void
test_upsert_conninfo(void)
{
	static const struct {
		const char *given, *stored;	/* stored NULL: the column is NULL */
	} cases[] = {
		{ "host=pg1 port=5432", "host=pg1 port=5432" },
		{ "host=pg1 port=5432 password=secret sslmode=disable", "host=pg1 port=5432" },
		{ "host='pg-1.example' port='6543'", "host=pg-1.example port=6543" },
		{ "host=evil port=1 host=pg2 port=5433", "host=pg2 port=5433" },
		{ "host=my host port=5432", NULL },
		{ "host=pg1 port=' 5432'", NULL },
		{ "host=pg1", NULL },
		{ "", "" },
	};
	char path[PATHLEN], text[600];
	struct pgl_store *st = fresh_store("upsert-ci", path);
	struct pgl_node n = { .name = "n1", .role = "standby" }, got;

	if (st == NULL)
		return;
	for (size_t i = 0; i < PGL_ARRAY_LEN(cases); i++) {
		pgl_strlcpy(n.conninfo, cases[i].given, sizeof(n.conninfo));
		CHECKF(pgl_store_node_upsert(st, &n) == 0, "%s", cases[i].given);
		strcpy(text, "-");
		record_field(path, "n1", "coalesce(json_extract(?1, '$.conninfo'), '<null>')",
					 text, sizeof(text));
		CHECKF(strcmp(text, cases[i].stored ? cases[i].stored : "<null>") == 0,
			   "'%s' stored as '%s'", cases[i].given, text);
		record_field(path, "n1", "json_extract(?1, '$.heartbeat')", text, sizeof(text));
		CHECKF(atoll(text) == (int64_t) i + 1, "heartbeat %s", text);
		CHECK(pgl_store_get_node(st, "n1", &got) == 0);
		CHECKF(strcmp(got.conninfo, cases[i].stored ? cases[i].stored : "") == 0,
			   "'%s' read back as '%s'", cases[i].given, got.conninfo);
	}
	pgl_store_close(st);
}

/*
 * The interface: a plain path is the SQLite backend; a scheme with no
 * backend is refused in one line naming the path, before anything is
 * created; the watch comes from the handle.
 */
static void
test_backends(void)
{
	static const char *const unknown[] = {
		"zk://127.0.0.1:2181/pglease", "sqlite://x.db", "Foo+bar.1://x",
	};
	char path[PATHLEN], fifo[PATHLEN + 8];
	struct pgl_store *st = NULL;
	struct pgl_watch *w = NULL;

	for (size_t i = 0; i < PGL_ARRAY_LEN(unknown); i++) {
		CHECK(pgl_store_open(unknown[i], PGL_STORE_CREATE, &st, err, sizeof(err)) ==
			  -PGL_EINVAL && st == NULL);
		CHECKF(strncmp(err, unknown[i], strlen(unknown[i])) == 0 &&
			   strstr(err, "no backend") && strchr(err, '\n') == NULL, "%s", err);
		CHECK(pgl_store_check_path(unknown[i], err, sizeof(err)) == -PGL_EINVAL);
		CHECK(strstr(err, unknown[i]) != NULL);
	}
	CHECK(!exists("zk:"));
	/* "a:b" and "x:/y" have no "scheme://": plain paths, and simply missing. */
	CHECK(pgl_store_open("no-such-dir-x:/lease.db", PGL_STORE_RDONLY, &st, err,
						 sizeof(err)) == -PGL_ENOENT);
	st = fresh_store("backends", path);
	if (st == NULL)
		return;
	CHECK(st->ops == &pgl_store_sqlite_ops && strcmp(st->ops->name, "sqlite") == 0);
	CHECK(strcmp(pgl_store_path(st), path) == 0);
	CHECK(pgl_store_check_path(path, err, sizeof(err)) == 0 && err[0] == '\0');
	CHECK(pgl_store_watch_open(st, &w) == 0 && w != NULL);
	if (w) {
		CHECK(pgl_watch_wait(w, 0) == 0);
		CHECK(pgl_store_event(st, 0, "n1", "test", "detail %d", 7) == 0);
		CHECK(pgl_watch_wait(w, 2000) == 1);
	}
	pgl_watch_close(w);
	pgl_store_close(st);
	pgl_store_close(NULL);
	/* check_path: a side file that is not a regular file, named in one line. */
	snprintf(fifo, sizeof(fifo), "%s-shm", path);
	CHECK(unlink(fifo) == 0 || errno == ENOENT);
	CHECK(mkfifo(fifo, 0600) == 0);
	CHECK(pgl_store_check_path(path, err, sizeof(err)) == -PGL_EFOREIGN);
	CHECKF(strstr(err, path) == err && strstr(err, "its -shm file is not a regular file (a FIFO)"),
		   "%s", err);
	unlink(fifo);
}

/*
 * Rows are input, not truth: names are checked before any truncation (two
 * names that share 63 bytes must not look alike), holders and upstreams
 * must be node names (a holder names a lock file), conninfo carries host
 * and port only, LSNs and counters must parse.
 */
static void
test_row_validation(void)
{
	char path[PATHLEN], long1[80], long2[80], sql[512];
	struct pgl_store *st = fresh_store("rows", path);
	struct pgl_node *nodes = NULL, one;
	struct pgl_event *ev = NULL;
	struct pgl_lease l;
	struct pgl_cluster cl;
	int n = 0;
	static const struct {
		const char *ci, *want;
	} cis[] = {
		{ "host=10.0.0.5 port=5432", "host=10.0.0.5 port=5432" },
		{ "host='pg1' port='5433'", "host=pg1 port=5433" },
		{ "port=1 host=::1", "host=::1 port=1" },
		{ "host=pg1 port=5432 sslmode=disable", "host=pg1 port=5432" },
		{ "host=pg1 port=5432 password=x hostaddr=10.1.1.1", "host=pg1 port=5432" },
		{ "host=pg1 port='5432 '", "" },
		{ "host=/tmp port=5432", "" },
		{ "host=pg1 port=0", "" },
		{ "host=pg1 port=65536", "" },
		{ "host=pg1", "" },
		{ "host='pg1 x' port=5432", "" },
		{ "host=pg1 port=5432 host=pg2", "host=pg2 port=5432" },
		{ "garbage '", "" },
	};

	if (st == NULL)
		return;
	memset(long1, 'a', 70);
	long1[70] = '\0';
	memcpy(long2, long1, sizeof(long1));
	long2[69] = 'b';
	snprintf(sql, sizeof(sql), "{\"name\": \"%s\", \"conninfo\": \"host=a port=1\"}", long1);
	put_record_text(path, long1, sql);
	snprintf(sql, sizeof(sql), "{\"name\": \"%s\", \"conninfo\": \"host=b port=2\"}", long2);
	put_record_text(path, long2, sql);
	put_record_text(path, "UPPER", "{\"name\": \"UPPER\", \"conninfo\": \"host=c port=3\"}");
	put_record_text(path, "x", "{\"name\": \"../x\", \"conninfo\": \"host=d port=4\"}");
	put_record_text(path, "ok", "{\"name\": \"ok\", \"conninfo\": \"host=e port=5\"}");
	put_record_text(path, "badlsn", "{\"name\": \"badlsn\", \"receive_lsn\": \"zz/1\", "
					"\"receive_lsn_int\": 5}");
	put_record_text(path, "mismatch", "{\"name\": \"mismatch\", \"receive_lsn\": \"0/10\", "
					"\"receive_lsn_int\": 17}");
	put_record_text(path, "goodlsn", "{\"name\": \"goodlsn\", \"receive_lsn\": \"0/10\", "
					"\"receive_lsn_int\": 16}");
	put_record_text(path, "negprio", "{\"name\": \"negprio\", \"priority\": -1}");
	put_record_text(path, "texthb", "{\"name\": \"texthb\", \"heartbeat\": \"x\"}");
	put_record_text(path, "badup", "{\"name\": \"badup\", \"upstream\": \"../x\"}");
	/* Not records: bad JSON, not an object, another name inside, a temporary file. */
	put_record_text(path, "notjson", "{\"name\": \"notjson\"");
	put_record_text(path, "array", "[\"array\"]");
	put_record_text(path, "other", "{\"name\": \"ok2\"}");
	put_record_text(path, ".ok.json.tmp", "{\"name\": \"ok\"}");
	bad_record_files(path);
	CHECK(pgl_store_list_nodes(st, &nodes, &n) == 0);
	CHECKF(n == 2 && strcmp(nodes[0].name, "goodlsn") == 0 && strcmp(nodes[1].name, "ok") == 0,
		   "%d rows kept", n);
	if (n == 2)
		CHECK(nodes[0].receive_lsn_int == 16 && strcmp(nodes[1].conninfo, "host=e port=5") == 0);
	free(nodes);
	CHECK(pgl_store_get_node(st, "negprio", &one) == -PGL_EFOREIGN);
	CHECK(pgl_store_get_node(st, "ok", &one) == 0);

	CHECK(pgl_store_get_node(st, "notjson", &one) == -PGL_EFOREIGN);
	CHECK(pgl_store_get_node(st, "other", &one) == -PGL_EFOREIGN);
	CHECK(pgl_store_get_node(st, "big", &one) == -PGL_EFOREIGN);
	CHECK(pgl_store_get_node(st, "absent", &one) == -PGL_ENOENT);
	for (size_t i = 0; i < PGL_ARRAY_LEN(cis); i++) {
		snprintf(sql, sizeof(sql), "{\"name\": \"ok\", \"conninfo\": \"%s\"}", cis[i].ci);
		put_record_text(path, "ok", sql);
		CHECK(pgl_store_get_node(st, "ok", &one) == 0);
		CHECKF(strcmp(one.conninfo, cis[i].want) == 0, "conninfo %s read as '%s', want '%s'",
			   cis[i].ci, one.conninfo, cis[i].want);
	}

	/* The lease row: an invalid holder or term makes it unusable (fence, never claim). */
	CHECK(raw_exec(path, "UPDATE lease SET holder = '../../data/n1' WHERE id = 1", NULL, 0) == 0);
	CHECK(pgl_store_read_lease(st, &l) == -PGL_EFOREIGN);
	CHECKF(strstr(pgl_store_errmsg(st), "holder") != NULL, "%s", pgl_store_errmsg(st));
	CHECK(raw_exec(path, "UPDATE lease SET holder = 'n1', term = 3, released_lsn = '1/zz', "
				   "released_lsn_int = 1 WHERE id = 1", NULL, 0) == 0);
	CHECK(pgl_store_read_lease(st, &l) == -PGL_EFOREIGN);
	CHECK(raw_exec(path, "UPDATE lease SET released_lsn = '1/0', released_lsn_int = 4294967296 "
				   "WHERE id = 1", NULL, 0) == 0);
	CHECK(pgl_store_read_lease(st, &l) == 0 && l.term == 3 && l.released_lsn_int == 1ULL << 32);
	CHECK(raw_exec(path, "UPDATE lease SET term = 'x' WHERE id = 1", NULL, 0) == 0);
	CHECK(pgl_store_read_lease(st, &l) == -PGL_EFOREIGN);

	/* A cluster row whose system identifier is not a number. */
	CHECK(raw_exec(path, "UPDATE cluster SET system_identifier = '12; x' WHERE id = 1", NULL, 0) == 0);
	CHECK(pgl_store_read_cluster(st, &cl) == -PGL_EFOREIGN);

	/* Events: an invalid node is blanked, the rest is kept for display. */
	CHECK(raw_exec(path, "INSERT INTO events (at, term, node, kind, detail) VALUES "
				   "('t', 1, '../x', 'removed', 'd1'), ('t', 1, 'n1', 'Bad Kind', 'd2')",
				   NULL, 0) == 0);
	CHECK(pgl_store_list_events(st, 10, &ev, &n) == 0 && n == 2);
	if (n == 2) {
		CHECK(ev[0].node[0] == '\0' && strcmp(ev[0].kind, "removed") == 0);
		CHECK(strcmp(ev[1].node, "n1") == 0 && strcmp(ev[1].kind, "Bad Kind") == 0);
	}
	free(ev);
	pgl_store_close(st);
}

/* ---- bad input: refused with a clear error, and never modified ---- */

static void
make_big_store(const char *sub, char *path)
{
	struct pgl_store *st = fresh_store(sub, path);
	char detail[400];

	if (st == NULL)
		return;
	memset(detail, 'x', sizeof(detail) - 1);
	detail[sizeof(detail) - 1] = '\0';
	for (int i = 0; i < 300; i++)
		pgl_store_event(st, 0, "n1", "note", "%d %s", i, detail);
	pgl_store_close(st);	/* the last close checkpoints the WAL into the file */
}

static void
cleanup_side_files(const char *path)
{
	static const char *const sfx[] = { "-wal", "-shm", "-journal" };
	char p[PATHLEN + 16];

	for (size_t i = 0; i < PGL_ARRAY_LEN(sfx); i++) {
		snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
		unlink(p);
	}
}

static void
test_bad_input(void)
{
	struct badfile {
		const char *name;
		int expect;
		bool foreign;
	} files[] = {
		{ "garbage.db", -PGL_EFOREIGN, true }, { "empty.db", -PGL_EFOREIGN, true },
		{ "truncated.db", -PGL_EFOREIGN, false }, { "header-only.db", -PGL_EFOREIGN, false },
		{ "foreign-wal.db", -PGL_EFOREIGN, true }, { "foreign-plain.db", -PGL_EFOREIGN, true },
		{ "no-tables.db", -PGL_EFOREIGN, false }, { "newer.db", -PGL_ENEWER, false },
	};
	static const int flags[] = { PGL_STORE_RDONLY, PGL_STORE_RDWR, PGL_STORE_CREATE };
	char full[PATHLEN], p[PATHLEN];
	unsigned char *buf;
	size_t len;

	/* Build the bad files. */
	make_big_store("bad-src", full);
	buf = slurp(full, &len);
	CHECKF(len > 16 * 4096, "source store is only %zu bytes", len);
	path_in(p, "bad", "truncated.db", true);
	spit(p, buf, len / 2);
	path_in(p, "bad", "header-only.db", false);
	spit(p, buf, 100);
	free(buf);
	path_in(p, "bad", "garbage.db", false);
	{
		unsigned char junk[8192];

		t_rng_state = 77;
		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (unsigned char) t_rnd();
		spit(p, junk, sizeof(junk));
	}
	path_in(p, "bad", "empty.db", false);
	spit(p, "", 0);
	path_in(p, "bad", "foreign-wal.db", false);
	CHECK(raw_exec(p, "PRAGMA application_id = 4242; PRAGMA journal_mode = WAL;"
				   "CREATE TABLE lease (x); INSERT INTO lease VALUES (1);", NULL, 0) == SQLITE_OK);
	path_in(p, "bad", "foreign-plain.db", false);
	CHECK(raw_exec(p, "CREATE TABLE cluster (id); CREATE TABLE lease (id); CREATE TABLE nodes (id);"
				   "CREATE TABLE events (id); PRAGMA user_version = 1;", NULL, 0) == SQLITE_OK);
	path_in(p, "bad", "no-tables.db", false);
	{
		char sql[128];

		snprintf(sql, sizeof(sql), "PRAGMA application_id = %d; PRAGMA user_version = 1;"
				 "CREATE TABLE other (x);", PGL_APPLICATION_ID);
		CHECK(raw_exec(p, sql, NULL, 0) == SQLITE_OK);
	}
	make_big_store("bad-newer", full);
	CHECK(raw_exec(full, "PRAGMA user_version = 99", NULL, 0) == SQLITE_OK);
	path_in(p, "bad", "newer.db", false);
	buf = slurp(full, &len);
	spit(p, buf, len);
	free(buf);

	for (size_t k = 0; k < PGL_ARRAY_LEN(files); k++) {
		path_in(p, "bad", files[k].name, false);
		for (size_t f = 0; f < PGL_ARRAY_LEN(flags); f++) {
			struct pgl_store *st = (struct pgl_store *) 1;
			unsigned char *b0, *b1;
			size_t l0, l1;
			int rc;

			b0 = slurp(p, &l0);
			rc = pgl_store_open(p, flags[f], &st, err, sizeof(err));
			b1 = slurp(p, &l1);
			CHECKF(rc == files[k].expect, "%s flags %d: rc %d (%s), want %d; %s", files[k].name,
				   flags[f], rc, pgl_strerror(rc), files[k].expect, err);
			CHECK(st == NULL);
			CHECKF(strstr(err, p) != NULL && strchr(err, '\n') == NULL,
				   "%s: error does not name the file: %s", files[k].name, err);
			CHECKF(b0 && b1 && l0 == l1 && memcmp(b0, b1, l0) == 0, "%s flags %d: file changed",
				   files[k].name, flags[f]);
			/*
			 * Nothing appears beside a foreign file.  Beside a damaged or newer
			 * pglease store (a WAL-mode file) SQLite itself creates -wal and
			 * -shm, which a read-only connection cannot remove at close.
			 */
			if (files[k].foreign || flags[f] != PGL_STORE_RDONLY)
				CHECKF(!exists_suffix(p, "-wal") && !exists_suffix(p, "-shm") &&
					   !exists_suffix(p, "-journal"), "%s flags %d: side file left beside it",
					   files[k].name, flags[f]);
			cleanup_side_files(p);
			if (f == 0 && k < 3)
				printf("bad store %s: %s\n", files[k].name, err);
			free(b0);
			free(b1);
		}
	}
	/* A directory where the store should be. */
	{
		struct pgl_store *st = NULL;

		path_in(p, "bad", "", false);
		CHECK(pgl_store_open(p, PGL_STORE_CREATE, &st, err, sizeof(err)) < 0 && st == NULL);
	}
}

/*
 * A process that opens a second handle on the store must not drop the POSIX
 * locks of its first one: if it did, another process closing its connection
 * would find itself alone, checkpoint and delete the -wal and -shm files
 * under the first handle, and the first handle's next commits would go to an
 * unlinked file that no other node ever sees.
 */
static void
test_second_handle_keeps_locks(void)
{
	char path[PATHLEN];
	int64_t term = store_with_holder("locks", path), dl, ren = -1, seen = -2;
	struct pgl_store *a, *b;
	struct pgl_lease l;
	int go[2], back[2], code;
	pid_t pid;

	if (term < 0 || pipe(go) != 0 || pipe(back) != 0)
		return;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		/* Twice: open, read, close; the second time report the renewals seen. */
		for (int k = 0; k < 2; k++) {
			struct pgl_store *q = NULL;
			struct pgl_lease ql;
			char c, cerr[256];
			int64_t v = -1;

			if (read(go[0], &c, 1) != 1)
				_exit(2);
			if (pgl_store_open(path, PGL_STORE_RDWR, &q, cerr, sizeof(cerr)) == 0 &&
				pgl_store_read_lease(q, &ql) == 0)
				v = ql.renewals;
			pgl_store_close(q);
			if (write(back[1], &v, sizeof(v)) != sizeof(v))
				_exit(3);
		}
		_exit(0);
	}
	a = open_store(path, PGL_STORE_RDWR);
	if (a == NULL)
		return;
	CHECK(pgl_store_read_lease(a, &l) == 0);
	b = open_store(path, PGL_STORE_RDONLY);		/* e.g. the CLI inside the agent */
	if (b)
		CHECK(pgl_store_read_lease(b, &l) == 0);
	pgl_store_close(b);
	if (write(go[1], "1", 1) != 1 || read(back[0], &seen, sizeof(seen)) != sizeof(seen))
		seen = -3;
	for (int i = 0; i < 5; i++) {
		CHECK(pgl_store_renew(a, "n1", term, 0, 2000, 500, far_ms(), &dl, &ren) == 0);
		CHECK(pgl_store_event(a, term, "n1", "note", "a commit to lease.db") == 0);
	}
	if (write(go[1], "2", 1) != 1 || read(back[0], &seen, sizeof(seen)) != sizeof(seen))
		seen = -3;
	code = wait_child(pid);
	CHECKF(seen == ren, "another process sees renewals %" PRId64 ", the holder wrote %" PRId64,
		   seen, ren);
	CHECK(code == 0);
	pgl_store_close(a);
	CHECK(raw_int(path, "SELECT count(*) FROM events WHERE kind = 'note'") == 5);
}

/* ---- nodes, events, cluster flags ---- */

static void
test_nodes_and_events(void)
{
	char path[PATHLEN], msg[64];
	struct pgl_store *st = fresh_store("nodes", path), *other;
	struct pgl_node a = {
		.name = "pg-b", .conninfo = "host=pg-b port=5432", .role = "standby",
		.state = "streaming", .upstream = "pg-a", .timeline = 3,
		.receive_lsn = "0/5000060", .receive_lsn_int = 0x5000060,
		.replay_lsn = "0/5000000", .replay_lsn_int = 0x5000000, .priority = 50,
	};
	struct pgl_node p = { .name = "pg-a", .role = "primary", .priority = 100,
						  .receive_lsn = "0/5000100", .receive_lsn_int = 0x5000100 };
	struct pgl_node c = { .name = "pg-c" }, got, *list = NULL;
	int64_t dl = 0;
	struct pgl_event *ev = NULL;
	struct pgl_cluster cl;
	struct pgl_lease l;
	int64_t term, dv1 = -1, dv2 = -1, id2;
	int n = 0;

	if (st == NULL)
		return;
	CHECK(pgl_store_node_upsert(st, &a) == 0);
	CHECK(pgl_store_get_node(st, "pg-b", &got) == 0);
	CHECK(strcmp(got.conninfo, a.conninfo) == 0 && strcmp(got.role, "standby") == 0 &&
		  strcmp(got.state, "streaming") == 0 && strcmp(got.upstream, "pg-a") == 0 &&
		  got.timeline == 3 && strcmp(got.receive_lsn, "0/5000060") == 0 &&
		  got.receive_lsn_int == 0x5000060 && strcmp(got.replay_lsn, "0/5000000") == 0 &&
		  got.replay_lsn_int == 0x5000000 && got.priority == 50);
	CHECK(got.heartbeat == 1 && got.updated_at[0] != '\0' && got.age_s >= -1 && got.age_s < 60);
	strcpy(a.state, "catchup");
	CHECK(pgl_store_node_upsert(st, &a) == 0);
	CHECK(pgl_store_node_upsert(st, &a) == 0);
	CHECK(pgl_store_get_node(st, "pg-b", &got) == 0 && got.heartbeat == 3 &&
		  strcmp(got.state, "catchup") == 0);
	CHECK(pgl_store_node_upsert(st, &p) == 0 && pgl_store_node_upsert(st, &c) == 0);
	CHECK(pgl_store_list_nodes(st, &list, &n) == 0 && n == 3);
	if (n == 3) {
		CHECK(strcmp(list[0].name, "pg-a") == 0 && strcmp(list[1].name, "pg-b") == 0 &&
			  strcmp(list[2].name, "pg-c") == 0);
		CHECK(strcmp(list[2].role, "unknown") == 0 && list[2].receive_lsn[0] == '\0' &&
			  list[2].timeline == 0 && list[2].heartbeat == 1 && list[2].priority == 0);
	}
	free(list);
	/* A rewind under way rides in the record; the next heartbeat without one clears it. */
	a.progress = (struct pgl_progress) { PGL_PROGRESS_REWIND, 100, 0, 250 };
	CHECK(pgl_store_node_upsert(st, &a) == 0 && pgl_store_get_node(st, "pg-b", &got) == 0 &&
		  got.progress.op == PGL_PROGRESS_REWIND && got.progress.done_kb == 100 &&
		  got.progress.total_kb == 0 && got.progress.elapsed_ms == 250);
	memset(&a.progress, 0, sizeof(a.progress));
	CHECK(pgl_store_node_upsert(st, &a) == 0 && pgl_store_get_node(st, "pg-b", &got) == 0 &&
		  got.progress.op == PGL_PROGRESS_NONE && got.progress.elapsed_ms == 0);
	CHECK(pgl_store_get_node(st, "pg-z", &got) == -PGL_ENOENT);
	strcpy(got.name, "Bad Name");
	CHECK(pgl_store_node_upsert(st, &got) == -PGL_EINVAL);
	{
		struct pgl_node bad = { .name = "pg-d", .role = "leader" };

		CHECK(pgl_store_node_upsert(st, &bad) == -PGL_ESTORE);
		CHECK(pgl_store_get_node(st, "pg-d", &got) == -PGL_ENOENT);
	}

	/* The cluster_status view: who holds the lease, lag in bytes. */
	pgl_store_read_lease(st, &l);
	CHECK(pgl_store_claim(st, &l, "pg-a", 5000, NULL, &term) == 0 && term == 1);
	CHECK(pgl_store_renew(st, "pg-a", term, 0, 5000, 1000, far_ms(), &dl, NULL) == 0);
	CHECK(pgl_store_renew(st, "pg-a", term, 0, 5000, 1000, far_ms(), &dl, NULL) == 0);
	if (access("/usr/bin/sqlite3", X_OK) == 0) {
		CHECK(shell_int(path, "SELECT holds_lease FROM cluster_status WHERE name = 'pg-a'") == 1);
		CHECK(shell_int(path, "SELECT holds_lease FROM cluster_status WHERE name = 'pg-b'") == 0);
		CHECK(shell_int(path, "SELECT lag_bytes FROM cluster_status WHERE name = 'pg-b'") == 256);
		CHECK(shell_int(path, "SELECT term FROM lease_status") == 1);
		CHECK(shell_int(path, "SELECT renewals FROM lease_status") == 2);
		CHECK(shell_int(path, "SELECT count(*) FROM nodes") == 3);
	} else
		printf("no /usr/bin/sqlite3: the views file is not checked here\n");

	/* remove_node forgets the row and says so in the event log. */
	CHECK(pgl_store_remove_node(st, "pg-c", term) == 0);
	CHECK(pgl_store_get_node(st, "pg-c", &got) == -PGL_ENOENT);
	CHECK(pgl_store_remove_node(st, "pg-c", term) == -PGL_ENOENT);
	CHECK(pgl_store_list_events(st, 1, &ev, &n) == 0 && n == 1 &&
		  strcmp(ev[0].kind, "removed") == 0 && strcmp(ev[0].node, "pg-c") == 0 &&
		  ev[0].term == term);
	free(ev);

	/* Pause and resume. */
	CHECK(pgl_store_set_paused(st, true, "pg-a") == 0);
	CHECK(pgl_store_read_cluster(st, &cl) == 0 && cl.paused);
	CHECK(pgl_store_list_events(st, 1, &ev, &n) == 0 && n == 1 &&
		  strcmp(ev[0].kind, "paused") == 0 && ev[0].term == term);
	free(ev);
	CHECK(pgl_store_set_paused(st, false, "pg-a") == 0);
	CHECK(pgl_store_read_cluster(st, &cl) == 0 && !cl.paused);
	CHECK(pgl_store_list_events(st, 1, &ev, &n) == 0 && n == 1 &&
		  strcmp(ev[0].kind, "resumed") == 0);
	free(ev);

	/* The system identifier is recorded once. */
	CHECK(pgl_store_set_sysid(st, "7301234567890123456") == 0);
	CHECK(pgl_store_set_sysid(st, "7301234567890123456") == 0);
	CHECK(pgl_store_set_sysid(st, "7309999999999999999") == -PGL_ECONFLICT);
	CHECK(pgl_store_read_cluster(st, &cl) == 0 &&
		  strcmp(cl.system_identifier, "7301234567890123456") == 0);

	/* Events: appended with a format, listed oldest first, limited to the newest n. */
	for (int i = 0; i < 10; i++)
		CHECK(pgl_store_event(st, term, "pg-b", "followed", "upstream %s #%d", "pg-a", i) == 0);
	CHECK(pgl_store_event(st, term, NULL, "note", "%s", "") == 0);
	CHECK(pgl_store_list_events(st, 3, &ev, &n) == 0 && n == 3);
	if (n == 3) {
		CHECK(ev[0].id < ev[1].id && ev[1].id < ev[2].id);
		CHECK(strcmp(ev[0].detail, "upstream pg-a #8") == 0 &&
			  strcmp(ev[1].detail, "upstream pg-a #9") == 0);
		CHECK(strcmp(ev[2].kind, "note") == 0 && ev[2].node[0] == '\0' && ev[2].detail[0] == '\0');
	}
	free(ev);
	CHECK(pgl_store_list_events(st, 1000, &ev, &n) == 0 && n == 15);
	for (int i = 1; i < n; i++)
		CHECK(ev[i - 1].id < ev[i].id);
	id2 = n > 2 ? ev[1].id : 0;
	free(ev);
	CHECK(pgl_store_events_after(st, id2, &ev, &n) == 0 && n == 13 && ev[0].id > id2);
	free(ev);
	CHECK(pgl_store_events_after(st, 1000000, &ev, &n) == 0 && n == 0);
	free(ev);
	CHECK(pgl_store_list_events(st, 0, &ev, &n) == 0 && n == 0);
	free(ev);

	/* data_version moves when another connection commits, not for our own commits. */
	CHECK(pgl_store_data_version(st, &dv1) == 0);
	CHECK(pgl_store_event(st, term, "pg-a", "note", "own") == 0);
	CHECK(pgl_store_data_version(st, &dv2) == 0 && dv2 == dv1);
	other = open_store(path, PGL_STORE_RDWR);
	if (other) {
		CHECK(pgl_store_event(other, term, "pg-b", "note", "theirs") == 0);
		CHECK(pgl_store_data_version(st, &dv2) == 0 && dv2 != dv1);
		snprintf(msg, sizeof(msg), "%s", pgl_store_errmsg(other));
		CHECK(msg[0] != '\0');
	}
	pgl_store_close(other);
	pgl_store_close(st);
}

/* ---- the watcher ---- */

struct watch_shm {
	volatile int64_t t_start, t_end;	/* monotonic ms around the commit */
};

/* Child: opens the store, then commits once for every byte read from go. */
static void
watch_writer(const char *path, int go, int ready, struct watch_shm *sh)
{
	struct pgl_store *st = NULL;
	struct pgl_node nd = { .name = "w1", .priority = 1 };
	char c, cerr[256];

	if (pgl_store_open(path, PGL_STORE_RDWR, &st, cerr, sizeof(cerr)) != 0)
		_exit(2);
	pgl_store_node_upsert(st, &nd);		/* -wal and -shm exist from here on */
	if (write(ready, "r", 1) != 1)
		_exit(3);
	while (read(go, &c, 1) == 1 && c == 'c') {
		sh->t_start = pgl_mono_ms();
		pgl_store_event(st, 0, "w1", "note", "a commit to lease.db");
		sh->t_end = pgl_mono_ms();
	}
	pgl_store_close(st);
	_exit(0);
}

/* Starts a writer child on path; returns its pid, fills go/ready descriptors. */
static pid_t
start_writer(const char *path, int *go_w, int *ready_r, struct watch_shm *sh)
{
	int go[2], ready[2];
	pid_t pid;
	char c;

	if (pipe(go) != 0 || pipe(ready) != 0)
		return -1;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		close(go[1]);
		close(ready[0]);
		watch_writer(path, go[0], ready[1], sh);
	}
	close(go[0]);
	close(ready[1]);
	*go_w = go[1];
	*ready_r = ready[0];
	if (read(ready[0], &c, 1) != 1)
		return -1;
	return pid;
}

/* Asks the writer to commit; returns the wake-up latency in ms, or -1. */
static int64_t
commit_and_wait(struct pgl_watch *w, int go_w, struct watch_shm *sh)
{
	int64_t woke;
	int rc;

	usleep(20000);
	pgl_watch_drain(w);
	sh->t_start = sh->t_end = 0;
	if (write(go_w, "c", 1) != 1)
		return -1;
	rc = pgl_watch_wait(w, 2000);
	woke = pgl_mono_ms();
	if (rc != 1 || sh->t_start == 0)
		return -1;
	return woke - sh->t_start;
}

static void
test_watch(void)
{
	char path[PATHLEN], newp[PATHLEN], other[PATHLEN];
	struct pgl_store *st = fresh_store("watch", path);
	struct pgl_watch *w = NULL;
	struct watch_shm *sh;
	int64_t t0, lat, max_lat = 0;
	int go_w = -1, ready_r = -1, rc;
	pid_t pid;

	if (st == NULL)
		return;
	pgl_store_close(st);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(pgl_watch_open(path, records_dir(path, newp, sizeof(newp)), &w) == 0 && w != NULL);
	if (w == NULL || sh == MAP_FAILED)
		return;
	CHECK(pgl_watch_fd(w) >= 0);

	/* Timeout: nothing happens, 0 after about the timeout. */
	pgl_watch_drain(w);
	t0 = pgl_mono_ms();
	rc = pgl_watch_wait(w, 300);
	CHECKF(rc == 0, "rc %d", rc);
	CHECKF(pgl_mono_ms() - t0 >= 290 && pgl_mono_ms() - t0 < 1500, "waited %" PRId64 " ms",
		   pgl_mono_ms() - t0);

	/* A commit by another process wakes the watcher. */
	pid = start_writer(path, &go_w, &ready_r, sh);
	CHECK(pid > 0);
	for (int i = 0; i < 5 && pid > 0; i++) {
		lat = commit_and_wait(w, go_w, sh);
		CHECKF(lat >= 0 && lat < 500, "commit %d: latency %" PRId64 " ms", i, lat);
		if (lat > max_lat)
			max_lat = lat;
	}
	printf("watch: woke within %" PRId64 " ms of another process's commit (max of 5)\n", max_lat);

	/* Writes to unrelated files in the directory are not changes. */
	usleep(100000);
	pgl_watch_drain(w);
	path_in(other, "watch", "unrelated.txt", false);
	spit(other, "x", 1);
	usleep(20000);
	spit(other, "y", 1);
	CHECK(pgl_watch_wait(w, 200) == 0);
	/* A node's record put in place wakes it; a temporary file beside it does not. */
	snprintf(other, sizeof(other), "%s/.w2.json.tmp", records_dir(path, newp, sizeof(newp)));
	spit(other, "{}", 2);
	CHECK(pgl_watch_wait(w, 200) == 0);
	st = open_store(path, PGL_STORE_RDWR);
	if (st) {
		struct pgl_node nd = { .name = "w2", .priority = 1 };

		pgl_watch_drain(w);
		CHECK(pgl_store_node_upsert(st, &nd) == 0);
		CHECK(pgl_watch_wait(w, 1000) == 1);
		/* Focused on another node's record: w2's does not count; that node's does. */
		pgl_watch_focus(w, "w3");
		CHECK(pgl_store_node_upsert(st, &nd) == 0);
		CHECK(pgl_watch_wait(w, 200) == 0);
		strcpy(nd.name, "w3");
		CHECK(pgl_store_node_upsert(st, &nd) == 0);
		CHECK(pgl_watch_wait(w, 1000) == 1);
		pgl_watch_focus(w, "");		/* none */
		CHECK(pgl_store_node_upsert(st, &nd) == 0);
		CHECK(pgl_watch_wait(w, 200) == 0);
		pgl_watch_focus(w, NULL);		/* every record again */
		CHECK(pgl_store_node_upsert(st, &nd) == 0);
		CHECK(pgl_watch_wait(w, 1000) == 1);
		pgl_store_close(st);
	}

	if (pid > 0) {
		close(go_w);
		close(ready_r);
		CHECK(wait_child(pid) == 0);
	}

	/* The store replaced by rename(): the watch follows the name. */
	path_in(newp, "watch", "lease.db.new", false);
	st = open_store(newp, PGL_STORE_CREATE);
	pgl_store_close(st);
	usleep(20000);
	pgl_watch_drain(w);
	CHECK(rename(newp, path) == 0);
	rc = pgl_watch_wait(w, 1000);
	CHECKF(rc == 1, "rename not seen: rc %d", rc);
	/* The replacement reads as itself: nothing of the old store's WAL mixes in. */
	st = open_store(path, PGL_STORE_RDWR);
	if (st) {
		struct pgl_event *ev = NULL;
		int n = -1;

		CHECKF(pgl_store_list_events(st, 100, &ev, &n) == 0 && n == 0,
			   "the new store shows %d events of the old one", n);
		free(ev);
	}
	pgl_store_close(st);
	usleep(20000);
	pgl_watch_drain(w);
	pid = start_writer(path, &go_w, &ready_r, sh);
	CHECK(pid > 0);
	if (pid > 0) {
		lat = commit_and_wait(w, go_w, sh);
		CHECKF(lat >= 0 && lat < 500, "after rename: latency %" PRId64 " ms", lat);
		printf("watch after rename(): woke within %" PRId64 " ms\n", lat);
		close(go_w);
		close(ready_r);
		CHECK(wait_child(pid) == 0);
	}
	pgl_watch_close(w);
	pgl_watch_close(NULL);
	munmap(sh, sizeof(*sh));

	/* A store in a directory that does not exist cannot be watched. */
	path_in(other, "watch", "no/such/dir/lease.db", false);
	w = NULL;
	CHECK(pgl_watch_open(other, NULL, &w) < 0 && w == NULL);
}

/* The bounds every backend checks a record's copy progress against. */
static void
test_progress_bounds(void)
{
	static const struct {
		struct pgl_progress p;
		bool ok;
	} cases[] = {
		{ { PGL_PROGRESS_NONE, 0, 0, 0 }, true },
		{ { PGL_PROGRESS_NONE, 1, 0, 0 }, false },
		{ { PGL_PROGRESS_NONE, 0, 0, 5 }, false },
		{ { PGL_PROGRESS_CLONE, 0, 0, 0 }, true },
		{ { PGL_PROGRESS_CLONE, 10, 0, 0 }, true },			/* total not known yet */
		{ { PGL_PROGRESS_CLONE, 10, 10, 0 }, true },
		{ { PGL_PROGRESS_CLONE, 11, 10, 0 }, false },
		{ { PGL_PROGRESS_REWIND, -1, 10, 0 }, false },
		{ { PGL_PROGRESS_REWIND, 0, -1, 0 }, false },
		{ { PGL_PROGRESS_REWIND, 0, 0, -1 }, false },
		{ { PGL_PROGRESS_CLONE, PGL_PROGRESS_KB_MAX, PGL_PROGRESS_KB_MAX, 0 }, true },
		{ { PGL_PROGRESS_CLONE, 0, PGL_PROGRESS_KB_MAX + 1, 0 }, false },
		{ { PGL_PROGRESS_CLONE, PGL_PROGRESS_KB_MAX + 1, 0, 0 }, false },
		{ { PGL_PROGRESS_CLONE, 0, 0, PGL_PROGRESS_MS_MAX }, true },
		{ { PGL_PROGRESS_CLONE, 0, 0, PGL_PROGRESS_MS_MAX + 1 }, false },
		{ { (enum pgl_progress_op) 3, 0, 0, 0 }, false },
	};
	enum pgl_progress_op op;

	for (size_t i = 0; i < PGL_ARRAY_LEN(cases); i++)
		CHECKF(pgl_progress_valid(&cases[i].p) == cases[i].ok, "case %zu", i);
	CHECK(pgl_progress_op_parse("clone", &op) && op == PGL_PROGRESS_CLONE);
	CHECK(pgl_progress_op_parse("rewind", &op) && op == PGL_PROGRESS_REWIND);
	CHECK(pgl_progress_op_parse("", &op) && op == PGL_PROGRESS_NONE);
	CHECK(!pgl_progress_op_parse("Clone", &op) && !pgl_progress_op_parse("clone ", &op));
	CHECK(strcmp(pgl_progress_op_name(PGL_PROGRESS_REWIND), "rewind") == 0 &&
		  pgl_progress_op_name(PGL_PROGRESS_NONE) == NULL);
}

int
main(void)
{
	alarm(900);		/* a hung child or barrier ends the run as a crash */
	TEST(test_create_and_open);
	TEST(test_concurrent_create);
	TEST(test_claim_renew_release);
	TEST(test_term_never_lowered);
	TEST(test_term_limit);
	TEST(test_observer);
	TEST(test_real_race);
	TEST(test_reader_does_not_block_renew);
	TEST(test_writer_lock_does_not_block_renew);
	TEST(test_busy_ms_survives_renew);
	TEST(test_write_errors_reported);
	TEST(test_schema_tampering);
	TEST(test_migrate_v1);
	TEST(test_migrate_v2);
	TEST(test_switchover_requests);
	TEST(test_not_regular_file);
	TEST(test_row_validation);
	TEST(test_upsert_conninfo);
	TEST(test_backends);
	TEST(test_bad_input);
	TEST(test_second_handle_keeps_locks);
	TEST(test_nodes_and_events);
	TEST(test_progress_bounds);
	TEST(test_watch);
	return TEST_REPORT();
}
