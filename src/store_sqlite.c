/*
 * store_sqlite.c — the SQLite backend of the lease store (store.h): creation,
 * verification, migration, the lease protocol primitives (claim, renew,
 * release), node rows, events, and change notification through the inotify
 * watch of watch.c.  The only file that includes <sqlite3.h>; everything
 * else reaches it through pgl_store_sqlite_ops.
 *
 * Why WAL: in a rollback journal a reader (an operator's sqlite3 shell left
 * inside a transaction) would block the holder's commit and fence a healthy
 * primary.  In WAL mode readers never block the writer.
 *
 * Why BEGIN IMMEDIATE: a deferred transaction that upgrades to a write lock
 * fails with SQLITE_BUSY without calling the busy handler; IMMEDIATE takes
 * the write lock up front and waits for it under busy_timeout.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "pglease/config.h"
#include "pglease/log.h"
#include "pglease/store.h"
#include "pglease/watch.h"

/* A node's record: its row and, for the lease holder, its renewals. */
struct noderec {
	struct pgl_node n;
	int64_t lease_term;			/* the term these renewals are of; 0: none */
	int64_t renewals;
	int64_t ttl_ms;
	char renewed_at[PGL_TS_MAX];
	double renewed_age_s;
};

#define REC_MAX 16384			/* a node record is a few hundred bytes */

struct sqlite_store {
	struct pgl_store base;	/* first: the interface's handle points here */
	sqlite3 *db;
	char path[1024];
	bool rdonly;
	int busy_ms;			/* lock wait of writes other than renew */
	int64_t schema_ok;		/* PRAGMA schema_version last verified; -1: none */
	int bad_nodes;			/* invalid node records last reported */
	char nodes_dir[PGL_PATH_MAX + 16];	/* <store minus .db>.nodes */
	struct noderec self;	/* this node's own record as last written */
	bool self_loaded;
	char errmsg[PGL_PATH_MAX + 400];	/* why the last call failed, kept past ROLLBACK */
};

static void store_sibling(const char *path, const char *suffix, char *out, size_t len);
static int ensure_nodes_dir(struct sqlite_store *s, char *err, size_t errlen);
static void write_views(struct sqlite_store *s);
static int migrate_v1(struct sqlite_store *s, char *err, size_t errlen);
static int migrate_v2(struct sqlite_store *s, char *err, size_t errlen);

/* The backend's handle behind the interface's (NULL stays NULL). */
static struct sqlite_store *
sq(struct pgl_store *base)
{
	assert(base == NULL || base->ops == &pgl_store_sqlite_ops);
	return (struct sqlite_store *) base;
}

static const char schema_base[] =
	"CREATE TABLE cluster ("
	"  id INTEGER PRIMARY KEY CHECK (id = 1),"
	"  name TEXT NOT NULL,"
	"  system_identifier TEXT,"
	"  created_at TEXT NOT NULL,"
	"  paused INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)));"
	"CREATE TABLE lease ("
	"  id INTEGER PRIMARY KEY CHECK (id = 1),"
	"  holder TEXT,"
	"  term INTEGER NOT NULL DEFAULT 0 CHECK (term >= 0),"
	"  renewals INTEGER NOT NULL DEFAULT 0,"
	"  ttl_ms INTEGER NOT NULL,"
	"  acquired_at TEXT,"
	"  renewed_at TEXT,"
	"  released_lsn TEXT,"
	"  released_lsn_int INTEGER);"
	"CREATE TABLE events ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  at TEXT NOT NULL,"
	"  term INTEGER NOT NULL,"
	"  node TEXT,"
	"  kind TEXT NOT NULL,"
	"  detail TEXT);"
	"CREATE INDEX events_kind ON events (kind, id);"
	/* Terms only grow: refuse any update that lowers or reuses one. */
	"CREATE TRIGGER lease_term_grows BEFORE UPDATE OF term ON lease"
	"  WHEN NEW.term < OLD.term"
	"  BEGIN SELECT RAISE(ABORT, 'lease term may only grow'); END;";

/*
 * Schema version 3: the one planned change of primary (pglease switchover,
 * failover --to), a single row.  seq counts requests; term is the lease term
 * the request is for; target "" is "the best standby".
 */
static const char schema_switchover[] =
	"CREATE TABLE switchover ("
	"  id INTEGER PRIMARY KEY CHECK (id = 1),"
	"  seq INTEGER NOT NULL DEFAULT 0,"
	"  kind TEXT NOT NULL DEFAULT 'switchover' CHECK (kind IN ('switchover', 'failover')),"
	"  term INTEGER NOT NULL DEFAULT 0,"
	"  target TEXT,"
	"  requested_by TEXT,"
	"  requested_at TEXT,"
	"  timeout_ms INTEGER NOT NULL DEFAULT 0,"
	"  state TEXT NOT NULL DEFAULT 'none' CHECK (state IN "
	"    ('none', 'requested', 'handing-over', 'done', 'failed')),"
	"  detail TEXT);"
	"INSERT INTO switchover (id) VALUES (1);";

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

static void
now_iso(char *buf)
{
	pgl_wall_iso(buf, PGL_TS_MAX);
}

static int
exec_sql(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		pgl_log_debug("sqlite: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return rc;
	}
	return SQLITE_OK;
}

static int
pragma_int(sqlite3 *db, const char *sql, int64_t *out)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*out = sqlite3_column_int64(st, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

static int
map_rc(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
		return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -PGL_EBUSY;
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		return -PGL_EFOREIGN;
	case SQLITE_NOMEM:
		return -PGL_ENOMEM;
	default:
		return -PGL_ESTORE;
	}
}

/*
 * The cluster name a new store gets: the name of the store's directory,
 * else "pglease".  Returns 0, or -PGL_ENOMEM.
 */
static int
cluster_name(const char *path, char *name, size_t len)
{
	char *copy = strdup(path), *base;

	if (copy == NULL)
		return -PGL_ENOMEM;
	base = basename(dirname(copy));
	if (!pgl_strlcpy(name, base, len) || !*name || strcmp(name, "/") == 0)
		pgl_strlcpy(name, "pglease", len);
	free(copy);
	return 0;
}

/* Builds a fresh store at tmp_path; the caller links it into place. */
static int
build_fresh(const char *tmp_path, char *err, size_t errlen)
{
	sqlite3 *db = NULL;
	char ts[PGL_TS_MAX], sql[256], name[PGL_NAME_MAX];
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_open_v2(tmp_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	snprintf(sql, sizeof(sql),
			 "PRAGMA application_id = %d; PRAGMA journal_mode = WAL;"
			 "PRAGMA synchronous = FULL;", PGL_APPLICATION_ID);
	if ((rc = exec_sql(db, sql)) != SQLITE_OK ||
		(rc = exec_sql(db, "BEGIN")) != SQLITE_OK ||
		(rc = exec_sql(db, schema_base)) != SQLITE_OK ||
		(rc = exec_sql(db, schema_switchover)) != SQLITE_OK)
		goto fail;
	now_iso(ts);
	if (cluster_name(tmp_path, name, sizeof(name)) < 0) {
		rc = SQLITE_NOMEM;
		goto fail;
	}
	rc = sqlite3_prepare_v2(db, "INSERT INTO cluster (id, name, created_at) VALUES (1, ?1, ?2)",
							-1, &st, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, ts, -1, SQLITE_TRANSIENT);
	if ((rc = sqlite3_step(st)) != SQLITE_DONE)
		goto fail;
	sqlite3_finalize(st);
	st = NULL;
	rc = sqlite3_prepare_v2(db, "INSERT INTO lease (id, holder, term, renewals, ttl_ms) "
							"VALUES (1, NULL, 0, 0, 0)", -1, &st, NULL);
	if (rc != SQLITE_OK || (rc = sqlite3_step(st)) != SQLITE_DONE)
		goto fail;
	sqlite3_finalize(st);
	st = NULL;
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", PGL_SCHEMA_VERSION);
	if ((rc = exec_sql(db, sql)) != SQLITE_OK || (rc = exec_sql(db, "COMMIT")) != SQLITE_OK)
		goto fail;
	sqlite3_close(db);
	return 0;
fail:
	seterr(err, errlen, "%s: cannot create lease store: %s", tmp_path,
		   db && rc != SQLITE_NOMEM ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc == SQLITE_NOMEM ? -PGL_ENOMEM : -PGL_ESTORE;
}

/* Creates the store at path unless it exists; safe against concurrent creators. */
static int
create_atomically(const char *path, char *err, size_t errlen)
{
	char tmp[1100], side[1120], *copy, *dir;
	struct stat sb;
	int rc, fd;

	if ((copy = strdup(path)) == NULL) {
		seterr(err, errlen, "%s: cannot create lease store: out of memory", path);
		return -PGL_ENOMEM;
	}
	dir = dirname(copy);
	if (mkdir(dir, 0770) == 0)
		chmod(dir, 0770);
	else if (errno != EEXIST) {
		seterr(err, errlen, "%s: cannot create directory: %s", dir, strerror(errno));
		free(copy);
		return -PGL_ESYS;
	}
	free(copy);
	/*
	 * A name no other creator can share: containers on one volume often
	 * run their agents under the same pid.  mkstemp reserves it (O_EXCL);
	 * SQLite then builds the store in that empty file, and only a complete
	 * store is ever linked into place.
	 */
	snprintf(tmp, sizeof(tmp), "%s.init-XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0) {
		seterr(err, errlen, "%s: cannot create a temporary file: %s", tmp, strerror(errno));
		return -PGL_ESYS;
	}
	close(fd);				/* a private file: no lock of ours lives on it */
	rc = build_fresh(tmp, err, errlen);
	if (rc == 0) {
		chmod(tmp, 0660);
		if (link(tmp, path) != 0 && errno != EEXIST) {
			seterr(err, errlen, "%s: cannot create: %s", path, strerror(errno));
			rc = -PGL_ESYS;
		}
	}
	unlink(tmp);
	snprintf(side, sizeof(side), "%s-wal", tmp);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", tmp);
	unlink(side);
	if (rc == 0 && stat(path, &sb) != 0) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		rc = -PGL_ESYS;
	}
	return rc;
}

/*
 * Checks the first bytes of the file: refuses empty and non-SQLite files
 * before any SQL runs.  The bytes are read through SQLite's own descriptor.
 * Opening and closing a descriptor of our own would drop every POSIX lock
 * this process holds on the file, including the WAL-mode SHARED lock of
 * another handle still open in this process; another process closing its
 * connection would then checkpoint and delete the -wal and -shm files under
 * that handle, and its later commits would be lost.
 */
static int
check_header(struct sqlite_store *s, char *err, size_t errlen)
{
	sqlite3_file *f = NULL;
	sqlite3_int64 size = 0;
	unsigned char hdr[100];
	uint32_t appid;

	if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK ||
		f == NULL || f->pMethods == NULL || f->pMethods->xFileSize(f, &size) != SQLITE_OK) {
		seterr(err, errlen, "%s: cannot open lease store: %s", s->path, sqlite3_errmsg(s->db));
		return -PGL_ESTORE;
	}
	if (size < (sqlite3_int64) sizeof(hdr) ||
		f->pMethods->xRead(f, hdr, sizeof(hdr), 0) != SQLITE_OK) {
		seterr(err, errlen, "%s: not a pglease lease store (file is %s)", s->path,
			   size == 0 ? "empty" : "truncated");
		return -PGL_EFOREIGN;
	}
	if (memcmp(hdr, "SQLite format 3", 16) != 0) {
		seterr(err, errlen, "%s: not a pglease lease store (not an SQLite database)", s->path);
		return -PGL_EFOREIGN;
	}
	/*
	 * The application id (offset 68) is written before the store switches to
	 * WAL, so it is always in the file itself.  Refusing a foreign database
	 * here, before any SQL, keeps SQLite from creating -wal and -shm files
	 * beside it (a read-only connection could not remove them).
	 */
	appid = (uint32_t) hdr[68] << 24 | (uint32_t) hdr[69] << 16 | (uint32_t) hdr[70] << 8 | hdr[71];
	if (appid != PGL_APPLICATION_ID) {
		seterr(err, errlen, "%s: not a pglease lease store (SQLite application_id is %lld)",
			   s->path, (long long) (int32_t) appid);
		return -PGL_EFOREIGN;
	}
	return 0;
}

/* Appends the schema objects of db as text: one "type|name|tbl_name|sql" line each. */
static int
schema_text(sqlite3 *db, char **out)
{
	sqlite3_stmt *st = NULL;
	sqlite3_str *acc = sqlite3_str_new(db);
	int rc = sqlite3_prepare_v2(db, "SELECT type, name, tbl_name, coalesce(sql, '') "
								"FROM sqlite_master ORDER BY type, name", -1, &st, NULL);

	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		rc = SQLITE_OK, sqlite3_str_appendf(acc, "%s|%s|%s|%s\n", sqlite3_column_text(st, 0),
											sqlite3_column_text(st, 1),
											sqlite3_column_text(st, 2),
											sqlite3_column_text(st, 3));
	sqlite3_finalize(st);
	*out = sqlite3_str_finish(acc);
	/* SQLite's own sqlite_sequence comes and goes with AUTOINCREMENT: not ours to check. */
	if (*out) {
		static const char seq[] = "table|sqlite_sequence|sqlite_sequence|"
			"CREATE TABLE sqlite_sequence(name,seq)\n";
		char *p = strstr(*out, seq);

		if (p)
			memmove(p, p + strlen(seq), strlen(p + strlen(seq)) + 1);
	}
	if (rc != SQLITE_DONE) {
		sqlite3_free(*out);
		*out = NULL;
		return rc;
	}
	return *out ? SQLITE_OK : SQLITE_NOMEM;
}

/*
 * The store's schema must be exactly the one this binary creates: a trigger,
 * view, index or table added by hand could rewrite the lease behind a claim
 * or a remove, so anything extra (or missing, or altered) is refused.  The
 * expected text comes from building the schema in a private in-memory
 * database.  Cheap when PRAGMA schema_version has not moved since the last
 * check.  Returns 0, -PGL_EFOREIGN (with s->errmsg set) or an SQLite error.
 */
static int
check_schema(struct sqlite_store *s)
{
	static char *expected;			/* built once; the schema is a constant */
	sqlite3 *mem = NULL;
	char *have = NULL;
	int64_t cookie = -1;
	int rc;

	if ((rc = pragma_int(s->db, "PRAGMA schema_version", &cookie)) != SQLITE_OK)
		return map_rc(rc);
	if (cookie == s->schema_ok)
		return 0;
	if (expected == NULL) {
		char *text = NULL;

		if (sqlite3_open(":memory:", &mem) != SQLITE_OK ||
			exec_sql(mem, schema_base) != SQLITE_OK ||
			exec_sql(mem, schema_switchover) != SQLITE_OK ||
			schema_text(mem, &text) != SQLITE_OK) {
			sqlite3_close(mem);
			return -PGL_ESTORE;
		}
		sqlite3_close(mem);
		expected = strdup(text);
		sqlite3_free(text);
		if (expected == NULL)
			return -PGL_ENOMEM;
	}
	if ((rc = schema_text(s->db, &have)) != SQLITE_OK)
		return map_rc(rc);
	rc = strcmp(have, expected) == 0 ? 0 : -PGL_EFOREIGN;
	if (rc == 0)
		s->schema_ok = cookie;
	else {
		s->schema_ok = -1;
		snprintf(s->errmsg, sizeof(s->errmsg), "the store's schema differs from pglease's "
				 "(a table, index, trigger or view was added, removed or changed by hand)");
	}
	sqlite3_free(have);
	return rc;
}

/*
 * Checks an open store of our schema version: SQLite's quick_check, our three
 * tables, the exact schema (check_schema) and the lease row.
 */
static int
verify_contents(struct sqlite_store *s, char *err, size_t errlen)
{
	int64_t ok_tables = 0;
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(s->db, "PRAGMA quick_check", -1, &st, NULL);
	if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
		strcmp((const char *) sqlite3_column_text(st, 0), "ok") != 0) {
		seterr(err, errlen, "%s: lease store is corrupt: %s", s->path,
			   sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
		return -PGL_EFOREIGN;
	}
	rc = sqlite3_finalize(st);
	if (rc != SQLITE_OK) {
		seterr(err, errlen, "%s: lease store is unreadable or corrupt: %s", s->path,
			   sqlite3_errmsg(s->db));
		return map_rc(rc) == -PGL_EBUSY ? -PGL_EBUSY : -PGL_EFOREIGN;
	}
	rc = pragma_int(s->db,
					"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
					"('cluster', 'lease', 'events')", &ok_tables);
	if (rc != SQLITE_OK || ok_tables != 3) {
		seterr(err, errlen, "%s: not a pglease lease store (tables missing)", s->path);
		return -PGL_EFOREIGN;
	}
	if ((rc = check_schema(s)) < 0) {
		seterr(err, errlen, "%s: %s", s->path, rc == -PGL_EFOREIGN ? s->errmsg :
			   sqlite3_errmsg(s->db));
		return rc;
	}
	rc = pragma_int(s->db, "SELECT count(*) FROM lease WHERE id = 1", &ok_tables);
	if (rc != SQLITE_OK || ok_tables != 1) {
		seterr(err, errlen, "%s: lease store has no lease row", s->path);
		return -PGL_EFOREIGN;
	}
	return 0;
}

/* Verifies identity, version and integrity of an open store. */
static int
verify(struct sqlite_store *s, int flags, char *err, size_t errlen)
{
	int64_t appid = 0, version = 0;
	int rc;

	rc = pragma_int(s->db, "PRAGMA application_id", &appid);
	if ((rc & 0xff) == SQLITE_CANTOPEN) {
		/*
		 * The -wal or -shm could not be opened: another process may be
		 * creating or removing them at this instant (agents starting
		 * together on a new store), or they belong to another user.
		 * Reported as busy, so that a caller may try again.
		 */
		seterr(err, errlen, "%s: cannot open the lease store's -wal or -shm file: %s",
			   s->path, sqlite3_errmsg(s->db));
		return -PGL_EBUSY;
	}
	if (rc != SQLITE_OK) {
		seterr(err, errlen, "%s: not a pglease lease store (%s)", s->path,
			   sqlite3_errmsg(s->db));
		return map_rc(rc) == -PGL_EBUSY ? -PGL_EBUSY : -PGL_EFOREIGN;
	}
	if (appid != PGL_APPLICATION_ID) {
		seterr(err, errlen, "%s: not a pglease lease store (SQLite application_id is %lld)",
			   s->path, (long long) appid);
		return -PGL_EFOREIGN;
	}
	if ((rc = pragma_int(s->db, "PRAGMA user_version", &version)) != SQLITE_OK) {
		seterr(err, errlen, "%s: %s", s->path, sqlite3_errmsg(s->db));
		return map_rc(rc);
	}
	if (version > PGL_SCHEMA_VERSION) {
		seterr(err, errlen, "%s: lease store schema version %lld is newer than this pglease "
			   "understands (%d); upgrade pglease", s->path, (long long) version,
			   PGL_SCHEMA_VERSION);
		return -PGL_ENEWER;
	}
	if (version < 1) {
		seterr(err, errlen, "%s: not a pglease lease store (schema version %lld)", s->path,
			   (long long) version);
		return -PGL_EFOREIGN;
	}
	/* Migrations from older versions, each in its own transaction. */
	if (version < PGL_SCHEMA_VERSION && flags == PGL_STORE_RDONLY) {
		seterr(err, errlen, "%s: lease store schema version %lld is older than this pglease's "
			   "(%d): stop the older agents, then start one agent of this version to "
			   "migrate it", s->path, (long long) version, PGL_SCHEMA_VERSION);
		return -PGL_EFOREIGN;
	}
	if (version == 1 && (rc = migrate_v1(s, err, errlen)) < 0)
		return rc;
	if (version <= 2 && (rc = migrate_v2(s, err, errlen)) < 0)
		return rc;
	return verify_contents(s, err, errlen);
}

/*
 * Refuses a path that is not a regular file before SQLite opens it, with
 * stat(), never open() (see check_header()): a FIFO would hang SQLite's open
 * forever, a directory fail obscurely.
 */
static int
check_stat(const char *path, char *err, size_t errlen)
{
	struct stat sb;

	if (stat(path, &sb) != 0) {
		int e = errno;

		seterr(err, errlen, "%s: cannot open lease store: %s", path, strerror(e));
		return e == ENOENT ? -PGL_ENOENT : -PGL_ESYS;
	}
	if (!S_ISREG(sb.st_mode)) {
		seterr(err, errlen, "%s: not a regular file (%s); the lease store must be a file",
			   path, S_ISDIR(sb.st_mode) ? "a directory" : S_ISFIFO(sb.st_mode) ? "a FIFO" :
			   S_ISSOCK(sb.st_mode) ? "a socket" : "a device or special file");
		return -PGL_EFOREIGN;
	}
	return 0;
}

/* Per-connection settings of a writer; WAL is already persistent in the file. */
static int
configure_writer(struct sqlite_store *s, char *err, size_t errlen)
{
	int persist = 1;

	/*
	 * Keep lease.db-wal and -shm when the last connection closes: if they
	 * vanished, the next process to open the store would create them
	 * with its own owner (root, from a careless shell), locking the
	 * agents out.  journal_size_limit = 0 makes the last close truncate
	 * the kept -wal to zero bytes once checkpointed: a -wal left full of
	 * frames would be replayed into whatever file is next at this path
	 * (a store restored by rename), mixing the old store into it.
	 */
	sqlite3_file_control(s->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	if (exec_sql(s->db, "PRAGMA journal_mode = WAL") != SQLITE_OK ||
		exec_sql(s->db, "PRAGMA journal_size_limit = 0") != SQLITE_OK ||
		exec_sql(s->db, "PRAGMA synchronous = FULL") != SQLITE_OK) {
		seterr(err, errlen, "%s: cannot configure lease store: %s", s->path,
			   sqlite3_errmsg(s->db));
		return -PGL_ESTORE;
	}
	return 0;
}

/* The close op; NULL is a no-op. */
static void
sq_close(struct pgl_store *base)
{
	struct sqlite_store *s = sq(base);

	if (s == NULL)
		return;
	sqlite3_close(s->db);
	free(s);
}

/* The open op: see pgl_store_open() in store.h. */
static int
sq_open(const char *path, int flags, struct pgl_store **out, char *err, size_t errlen)
{
	struct sqlite_store *s;
	int rc, oflags;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (flags == PGL_STORE_CREATE && access(path, F_OK) != 0 && errno == ENOENT) {
		rc = create_atomically(path, err, errlen);
		if (rc < 0)
			return rc;
	}
	if ((rc = check_stat(path, err, errlen)) < 0)
		return rc;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		seterr(err, errlen, "%s: out of memory", path);
		return -PGL_ENOMEM;
	}
	s->base.ops = &pgl_store_sqlite_ops;
	s->schema_ok = -1;
	pgl_strlcpy(s->path, path, sizeof(s->path));
	s->rdonly = (flags == PGL_STORE_RDONLY);
	store_sibling(path, ".nodes", s->nodes_dir, sizeof(s->nodes_dir));
	oflags = s->rdonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
	rc = sqlite3_open_v2(path, &s->db, oflags | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		seterr(err, errlen, "%s: cannot open lease store: %s", path,
			   s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		rc = -PGL_ESTORE;
		goto fail;
	}
	/*
	 * The file is input, not truth: no writes to sqlite_master through SQL,
	 * and no functions with side effects from views or triggers.
	 */
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
	if ((rc = check_header(s, err, errlen)) < 0)
		goto fail;
	s->busy_ms = 1000;
	sqlite3_busy_timeout(s->db, s->busy_ms);
	if ((rc = verify(s, flags, err, errlen)) < 0)
		goto fail;
	if (!s->rdonly && ((rc = configure_writer(s, err, errlen)) < 0 ||
					   (rc = ensure_nodes_dir(s, err, errlen)) < 0))
		goto fail;
	if (!s->rdonly)
		write_views(s);
	*out = &s->base;
	return 0;
fail:
	sq_close(&s->base);
	return rc;
}

static const char *
sq_errmsg(struct pgl_store *base)
{
	struct sqlite_store *s = sq(base);

	return s->errmsg[0] ? s->errmsg : sqlite3_errmsg(s->db);
}

static const char *
sq_path(struct pgl_store *base)
{
	return sq(base)->path;
}

static void
sq_set_busy_ms(struct pgl_store *base, int ms)
{
	struct sqlite_store *s = sq(base);

	s->busy_ms = ms > 0 ? ms : 0;
	sqlite3_busy_timeout(s->db, s->busy_ms);
}

static void
col_text(sqlite3_stmt *st, int col, char *dst, size_t len)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	pgl_strlcpy(dst, t ? (const char *) t : "", len);
}

static int
prepare(struct sqlite_store *s, const char *sql, sqlite3_stmt **st)
{
	int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);

	if (rc != SQLITE_OK)
		pgl_log_debug("sqlite prepare: %s", sqlite3_errmsg(s->db));
	return rc;
}

/* The raw text of a column, "" for NULL (borrowed until the next step). */
static const char *
col_raw(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return t ? (const char *) t : "";
}

/* True if the column holds an integer >= 0 (NULL allowed when nullable). */
static bool
col_count(sqlite3_stmt *st, int col, bool nullable)
{
	int t = sqlite3_column_type(st, col);

	if (t == SQLITE_NULL)
		return nullable;
	return t == SQLITE_INTEGER && sqlite3_column_int64(st, col) >= 0;
}

/* True if text is "" or a valid LSN whose value equals the integer column. */
static bool
lsn_pair_valid(sqlite3_stmt *st, int text_col, int int_col)
{
	const char *t = col_raw(st, text_col);
	uint64_t v;

	if (*t == '\0')
		return sqlite3_column_type(st, int_col) == SQLITE_NULL;
	return strlen(t) < PGL_LSN_TEXT_MAX && pgl_lsn_parse(t, &v) == 0 &&
		sqlite3_column_type(st, int_col) == SQLITE_INTEGER &&
		(uint64_t) sqlite3_column_int64(st, int_col) == v;
}

/* ---- the per-node directory, the sqlite3 views file, migration from version 1 ---- */

static void rec_path(const struct sqlite_store *s, const char *name, bool tmp, char *out,
					 size_t len);
static int put_record(struct sqlite_store *s, const char *name, const char *text, size_t len);
static int slurp(const char *path, char *buf, size_t cap, size_t *len);

/* "<store minus .db>" + suffix: lease.db -> lease.nodes, lease.views.sql. */
static void
store_sibling(const char *path, const char *suffix, char *out, size_t len)
{
	size_t n = strlen(path);

	if (n > 3 && strcmp(path + n - 3, ".db") == 0)
		n -= 3;
	snprintf(out, len, "%.*s%s", (int) n, path, suffix);
}

/* Creates the node directory if absent, owned like the store when root. */
static int
ensure_nodes_dir(struct sqlite_store *s, char *err, size_t errlen)
{
	struct stat sb;

	if (mkdir(s->nodes_dir, 0770) == 0) {
		chmod(s->nodes_dir, 0770);
		if (geteuid() == 0 && stat(s->path, &sb) == 0 && sb.st_uid != 0 &&
			chown(s->nodes_dir, sb.st_uid, sb.st_gid) != 0)
			pgl_log_warn("%s: cannot give it to the store's owner: %s", s->nodes_dir,
						 strerror(errno));
	} else if (errno != EEXIST) {
		seterr(err, errlen, "%s: cannot create directory: %s", s->nodes_dir, strerror(errno));
		return -PGL_ESYS;
	}
	return 0;
}

static const char views_sql[] =
	"-- pglease: the whole cluster in the sqlite3 shell.  Written by the agents; do not edit.\n"
	"--   sqlite3 -readonly DIR/lease.db -cmd '.read DIR/lease.views.sql'\n"
	"-- Temporary views, gone when the shell exits: nodes (one row per node, from its\n"
	"-- record in DIR/lease.nodes, found from the path of the database opened),\n"
	"-- lease_status, cluster_status.\n"
	"CREATE TEMP VIEW nodes AS\n"
	"  SELECT json_extract(j, '$.name') AS name, json_extract(j, '$.conninfo') AS conninfo,\n"
	"         json_extract(j, '$.role') AS role, json_extract(j, '$.state') AS state,\n"
	"         json_extract(j, '$.upstream') AS upstream,\n"
	"         json_extract(j, '$.timeline') AS timeline,\n"
	"         json_extract(j, '$.receive_lsn') AS receive_lsn,\n"
	"         json_extract(j, '$.receive_lsn_int') AS receive_lsn_int,\n"
	"         json_extract(j, '$.replay_lsn') AS replay_lsn,\n"
	"         json_extract(j, '$.replay_lsn_int') AS replay_lsn_int,\n"
	"         json_extract(j, '$.priority') AS priority,\n"
	"         json_extract(j, '$.heartbeat') AS heartbeat,\n"
	"         json_extract(j, '$.updated_at') AS updated_at,\n"
	"         json_extract(j, '$.lease_term') AS lease_term,\n"
	"         json_extract(j, '$.renewals') AS renewals,\n"
	"         json_extract(j, '$.ttl_ms') AS ttl_ms,\n"
	"         json_extract(j, '$.renewed_at') AS renewed_at\n"
	"  FROM (SELECT CAST(data AS TEXT) AS j\n"
	"        FROM fsdir((SELECT CASE WHEN file LIKE '%.db' THEN substr(file, 1, length(file) - 3)\n"
	"                                ELSE file END || '.nodes'\n"
	"                    FROM pragma_database_list WHERE name = 'main'))\n"
	"        WHERE name GLOB '*.json' AND name NOT GLOB '*/.*')\n"
	"  WHERE json_valid(j)\n"
	"  ORDER BY name;\n"
	"CREATE TEMP VIEW lease_status AS\n"
	"  SELECT l.holder, l.term, coalesce(n.renewals, l.renewals) AS renewals,\n"
	"         coalesce(n.ttl_ms, l.ttl_ms) AS ttl_ms, l.acquired_at,\n"
	"         coalesce(n.renewed_at, l.renewed_at) AS renewed_at,\n"
	"         round((julianday('now') - julianday(coalesce(n.renewed_at, l.renewed_at)))\n"
	"               * 86400, 1) AS seconds_since_renewal,\n"
	"         l.released_lsn\n"
	"  FROM main.lease l\n"
	"  LEFT JOIN temp.nodes n ON n.name = l.holder AND n.lease_term = l.term AND n.renewals > 0\n"
	"  WHERE l.id = 1;\n"
	"CREATE TEMP VIEW cluster_status AS\n"
	"  SELECT n.name, n.role, n.state, n.upstream, n.timeline, n.receive_lsn, n.replay_lsn,\n"
	"         CASE WHEN n.name = l.holder THEN 0\n"
	"              WHEN p.receive_lsn_int IS NULL OR n.replay_lsn_int IS NULL THEN NULL\n"
	"              ELSE max(p.receive_lsn_int - n.replay_lsn_int, 0) END AS lag_bytes,\n"
	"         round((julianday('now') - julianday(n.updated_at)) * 86400, 1)\n"
	"           AS seconds_since_heartbeat,\n"
	"         n.priority, (n.name IS l.holder) AS holds_lease, l.term AS term\n"
	"  FROM temp.nodes n JOIN main.lease l ON l.id = 1\n"
	"  LEFT JOIN temp.nodes p ON p.name = l.holder\n"
	"  ORDER BY n.name;\n";

/*
 * Keeps <store>.views.sql in place: `.read` it in the sqlite3 shell to see the
 * cluster.  It finds the records from the path of the database the shell
 * opened, so it works from the host and inside a container alike.  Best
 * effort: a failure is logged, nothing else depends on it.
 */
static void
write_views(struct sqlite_store *s)
{
	char vpath[PGL_PATH_MAX + 32], tmp[PGL_PATH_MAX + 48], *old;
	size_t len = 0;
	FILE *f;

	store_sibling(s->path, ".views.sql", vpath, sizeof(vpath));
	if ((old = malloc(REC_MAX)) == NULL)
		return;
	if (slurp(vpath, old, REC_MAX, &len) != 0 || strcmp(old, views_sql) != 0) {
		snprintf(tmp, sizeof(tmp), "%s.tmp-%d", vpath, (int) getpid());
		if ((f = fopen(tmp, "we")) == NULL || fputs(views_sql, f) < 0 || fclose(f) != 0 ||
			chmod(tmp, 0664) != 0 || rename(tmp, vpath) != 0) {
			pgl_log_warn("cannot write %s: %s", vpath, strerror(errno));
			unlink(tmp);
		}
	}
	free(old);
}

/*
 * Version 1 kept the node rows in lease.db, so every heartbeat took the
 * store's write lock.  Moves each row to its node's record (unless the node
 * has written one already) and drops the table and its views, in one
 * transaction.
 */
static int
migrate_v1(struct sqlite_store *s, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	char path[PGL_PATH_MAX + 96];
	int64_t tables = 0;
	int rc, moved = 0;

	rc = pragma_int(s->db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
					"('cluster', 'lease', 'nodes', 'events')", &tables);
	if (rc != SQLITE_OK || tables != 4) {
		seterr(err, errlen, "%s: not a pglease lease store (tables missing)", s->path);
		return -PGL_EFOREIGN;
	}
	if ((rc = ensure_nodes_dir(s, err, errlen)) < 0)
		return rc;
	s->errmsg[0] = '\0';
	if ((rc = exec_sql(s->db, "BEGIN IMMEDIATE")) != SQLITE_OK)
		goto fail;
	rc = prepare(s, "SELECT name, json_object('name', name, 'conninfo', conninfo, 'role', role, "
				 "'state', state, 'upstream', upstream, 'timeline', timeline, "
				 "'receive_lsn', receive_lsn, 'receive_lsn_int', receive_lsn_int, "
				 "'replay_lsn', replay_lsn, 'replay_lsn_int', replay_lsn_int, "
				 "'priority', priority, 'updated_at', updated_at, 'heartbeat', heartbeat) "
				 "FROM nodes", &st);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = col_raw(st, 0);

		rec_path(s, name, false, path, sizeof(path));
		if (!pgl_name_valid(name) || access(path, F_OK) == 0)
			rc = SQLITE_OK;
		else if (put_record(s, name, (const char *) sqlite3_column_text(st, 1),
							(size_t) sqlite3_column_bytes(st, 1)) < 0)
			rc = SQLITE_IOERR;
		else {
			moved++;
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE ||
		(rc = exec_sql(s->db, "DROP VIEW IF EXISTS cluster_status; "
					   "DROP VIEW IF EXISTS lease_status; DROP TABLE nodes; "
					   "PRAGMA user_version = 2; COMMIT")) != SQLITE_OK)
		goto fail;
	pgl_log_info("%s: migrated from schema version 1 to 2: %d node row%s moved to %s",
				 s->path, moved, moved == 1 ? "" : "s", s->nodes_dir);
	return 0;
fail:
	seterr(err, errlen, "%s: cannot migrate the lease store from schema version 1: %s",
		   s->path, s->errmsg[0] ? s->errmsg : sqlite3_errmsg(s->db));
	if (!sqlite3_get_autocommit(s->db))
		exec_sql(s->db, "ROLLBACK");
	return -PGL_ESTORE;
}

/*
 * Version 2 to 3: the switchover table, added in one transaction.  A store
 * that another agent migrated meanwhile (its version read 3 under the write
 * lock) is left alone.
 */
static int
migrate_v2(struct sqlite_store *s, char *err, size_t errlen)
{
	int64_t version = 0;
	int rc;

	s->errmsg[0] = '\0';
	if ((rc = exec_sql(s->db, "BEGIN IMMEDIATE")) != SQLITE_OK ||
		(rc = pragma_int(s->db, "PRAGMA user_version", &version)) != SQLITE_OK)
		goto fail;
	if (version >= 3)
		return exec_sql(s->db, "COMMIT") == SQLITE_OK ? 0 : -PGL_ESTORE;
	if ((rc = exec_sql(s->db, schema_switchover)) != SQLITE_OK ||
		(rc = exec_sql(s->db, "PRAGMA user_version = 3; COMMIT")) != SQLITE_OK)
		goto fail;
	pgl_log_info("%s: migrated from schema version 2 to 3 (switchover table)", s->path);
	return 0;
fail:
	seterr(err, errlen, "%s: cannot migrate the lease store from schema version 2: %s",
		   s->path, sqlite3_errmsg(s->db));
	if (!sqlite3_get_autocommit(s->db))
		exec_sql(s->db, "ROLLBACK");
	return map_rc(rc) == -PGL_EBUSY ? -PGL_EBUSY : -PGL_ESTORE;
}

/*
 * The lease row is input, not truth: a holder that is not a valid node name
 * (it names a lock file: "../x" would be a path), a negative or non-integer
 * term, or a released_lsn that does not parse makes the row unusable.
 * Returns 0 or -PGL_EFOREIGN with s->errmsg set (the caller reports it).
 */
static int
check_lease_row(struct sqlite_store *s, sqlite3_stmt *st)
{
	const char *holder = col_raw(st, 0), *why = NULL;

	if (*holder && !pgl_name_valid(holder))
		why = "its holder is not a valid node name";
	else if (!col_count(st, 1, false) || !col_count(st, 2, false) || !col_count(st, 3, false))
		why = "term, renewals or ttl_ms is not a non-negative integer";
	else if (sqlite3_column_int64(st, 1) > PGL_TERM_MAX)
		why = "its term is above pglease's limit (2^62): no further term could be granted";
	else if (!lsn_pair_valid(st, 6, 7))
		why = "released_lsn is not a valid LSN matching released_lsn_int";
	if (why == NULL)
		return 0;
	snprintf(s->errmsg, sizeof(s->errmsg), "the lease row is invalid: %s", why);
	return -PGL_EFOREIGN;
}

static int
read_lease_row(struct sqlite_store *s, struct pgl_lease *l)
{
	sqlite3_stmt *st = NULL;
	int rc;

	s->errmsg[0] = '\0';		/* a reason from an earlier call is not this one's */
	if ((rc = check_schema(s)) < 0)
		return rc;
	rc = prepare(s, "SELECT holder, term, renewals, ttl_ms, acquired_at, renewed_at, "
				 "released_lsn, released_lsn_int, "
				 "coalesce((julianday('now') - julianday(renewed_at)) * 86400, -1) "
				 "FROM lease WHERE id = 1", &st);
	if (rc != SQLITE_OK)
		return map_rc(rc);
	memset(l, 0, sizeof(*l));
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && check_lease_row(s, st) < 0)
		rc = -PGL_EFOREIGN;
	else if (rc == SQLITE_ROW) {
		col_text(st, 0, l->holder, sizeof(l->holder));
		l->term = sqlite3_column_int64(st, 1);
		l->renewals = sqlite3_column_int64(st, 2);
		l->ttl_ms = sqlite3_column_int64(st, 3);
		col_text(st, 4, l->acquired_at, sizeof(l->acquired_at));
		col_text(st, 5, l->renewed_at, sizeof(l->renewed_at));
		col_text(st, 6, l->released_lsn, sizeof(l->released_lsn));
		l->has_released_lsn = sqlite3_column_type(st, 7) != SQLITE_NULL;
		l->released_lsn_int = (uint64_t) sqlite3_column_int64(st, 7);
		l->renewed_age_s = sqlite3_column_double(st, 8);
		/* Every claim sets acquired_at: none means no term was ever granted here. */
		l->never_held = sqlite3_column_type(st, 4) == SQLITE_NULL;
		rc = 0;
	} else if (rc != -PGL_EFOREIGN)
		rc = rc == SQLITE_DONE ? -PGL_EFOREIGN : map_rc(rc);
	sqlite3_finalize(st);
	return rc;
}

static void merge_renewals(struct sqlite_store *s, struct pgl_lease *l);

/* The lease row, with the holder's renewals from its own record. */
static int
read_lease_stmt(struct sqlite_store *s, struct pgl_lease *l)
{
	int rc = read_lease_row(s, l);

	if (rc == 0)
		merge_renewals(s, l);
	return rc;
}

static int
sq_read_lease(struct pgl_store *base, struct pgl_lease *out)
{
	return read_lease_stmt(sq(base), out);
}

static int
sq_read_cluster(struct pgl_store *base, struct pgl_cluster *c)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st = NULL;
	int rc;

	s->errmsg[0] = '\0';
	rc = prepare(s, "SELECT name, system_identifier, created_at, paused FROM cluster "
				 "WHERE id = 1", &st);
	if (rc != SQLITE_OK)
		return map_rc(rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		memset(c, 0, sizeof(*c));
		col_text(st, 0, c->name, sizeof(c->name));
		col_text(st, 1, c->system_identifier, sizeof(c->system_identifier));
		col_text(st, 2, c->created_at, sizeof(c->created_at));
		c->paused = sqlite3_column_int(st, 3) != 0;
		rc = 0;
		if (strlen(col_raw(st, 1)) >= sizeof(c->system_identifier) ||
			strspn(c->system_identifier, "0123456789") != strlen(c->system_identifier)) {
			snprintf(s->errmsg, sizeof(s->errmsg), "the cluster row is invalid: "
					 "system_identifier is not a decimal number");
			rc = -PGL_EFOREIGN;
		}
	} else
		rc = rc == SQLITE_DONE ? -PGL_EFOREIGN : map_rc(rc);
	sqlite3_finalize(st);
	return rc;
}

static int
sq_data_version(struct pgl_store *base, int64_t *out)
{
	struct sqlite_store *s = sq(base);
	struct stat sb;
	int rc = map_rc(pragma_int(s->db, "PRAGMA data_version", out));

	/* A record replaced changes the node directory's modification time. */
	if (rc == 0 && stat(s->nodes_dir, &sb) == 0)
		*out = *out * 1000003 + (int64_t) sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
	return rc;
}

/*
 * Starts a write transaction and, holding the write lock, re-checks the
 * schema: nobody can add a trigger between that check and our writes.
 */
static int
begin_immediate(struct sqlite_store *s)
{
	int rc;

	s->errmsg[0] = '\0';
	if ((rc = exec_sql(s->db, "BEGIN IMMEDIATE")) != SQLITE_OK) {
		snprintf(s->errmsg, sizeof(s->errmsg), "%s", sqlite3_errmsg(s->db));
		return map_rc(rc);
	}
	/*
	 * The header on disk too: a connection may still hold a good page 1 in
	 * its cache (or in the WAL) while the file itself was overwritten; it
	 * must not change hands on a store others can no longer read.
	 */
	if ((rc = check_schema(s)) < 0 || (rc = check_header(s, s->errmsg, sizeof(s->errmsg))) < 0) {
		if (rc == -PGL_EFOREIGN && s->errmsg[0] == '\0')
			snprintf(s->errmsg, sizeof(s->errmsg), "the lease store is corrupt");
		exec_sql(s->db, "ROLLBACK");
		return rc;
	}
	return 0;
}

static int
sq_check_file(struct pgl_store *base, char *err, size_t errlen)
{
	return check_header(sq(base), err, errlen);
}

static int
commit_or_rollback(struct sqlite_store *s, int rc)
{
	if (rc == 0) {
		int c = exec_sql(s->db, "COMMIT");

		if (c == SQLITE_OK)
			return 0;
		rc = map_rc(c);
	}
	/* Keep SQLite's reason: after ROLLBACK it would say "not an error". */
	if (s->errmsg[0] == '\0' && sqlite3_errcode(s->db) != SQLITE_OK)
		snprintf(s->errmsg, sizeof(s->errmsg), "%s", sqlite3_errmsg(s->db));
	if (!sqlite3_get_autocommit(s->db))
		exec_sql(s->db, "ROLLBACK");
	return rc;
}

static int
insert_event(struct sqlite_store *s, int64_t term, const char *node, const char *kind,
			 const char *detail)
{
	sqlite3_stmt *st = NULL;
	char ts[PGL_TS_MAX];
	int rc;

	now_iso(ts);
	rc = prepare(s, "INSERT INTO events (at, term, node, kind, detail) "
				 "VALUES (?1, ?2, ?3, ?4, ?5)", &st);
	if (rc != SQLITE_OK)
		return map_rc(rc);
	sqlite3_bind_text(st, 1, ts, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, term);
	if (node && *node)
		sqlite3_bind_text(st, 3, node, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, kind, -1, SQLITE_TRANSIENT);
	if (detail && *detail)
		sqlite3_bind_text(st, 5, detail, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : map_rc(rc);
}

static int
sq_claim(struct pgl_store *base, const struct pgl_lease *seen, const char *me,
		 int64_t ttl_ms, const char *detail, int64_t *new_term)
{
	struct sqlite_store *s = sq(base);
	struct pgl_lease cur;
	sqlite3_stmt *st = NULL;
	char ts[PGL_TS_MAX];
	int rc;

	if (s->rdonly || !pgl_name_valid(me))
		return -PGL_EINVAL;
	if ((rc = begin_immediate(s)) < 0)
		return rc;
	if ((rc = read_lease_stmt(s, &cur)) < 0)
		goto out;
	if (cur.term != seen->term || cur.renewals != seen->renewals ||
		strcmp(cur.holder, seen->holder) != 0) {
		rc = -PGL_ECONFLICT;
		goto out;
	}
	if (cur.term >= PGL_TERM_MAX) {		/* checked before the + 1 */
		snprintf(s->errmsg, sizeof(s->errmsg), "term %lld is at pglease's limit; no further "
				 "term can be granted", (long long) cur.term);
		rc = -PGL_EFOREIGN;
		goto out;
	}
	now_iso(ts);
	rc = prepare(s, "UPDATE lease SET holder = ?1, term = term + 1, renewals = 0, "
				 "ttl_ms = ?2, acquired_at = ?3, renewed_at = ?3, released_lsn = NULL, "
				 "released_lsn_int = NULL WHERE id = 1 AND term = ?4", &st);
	if (rc != SQLITE_OK) {
		rc = map_rc(rc);
		goto out;
	}
	sqlite3_bind_text(st, 1, me, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, ttl_ms);
	sqlite3_bind_text(st, 3, ts, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 4, cur.term);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		rc = map_rc(rc);
		goto out;
	}
	if (sqlite3_changes(s->db) != 1) {
		rc = -PGL_ECONFLICT;
		goto out;
	}
	rc = insert_event(s, cur.term + 1, me, "acquired", detail);
out:
	rc = commit_or_rollback(s, rc);
	if (rc == 0 && new_term)
		*new_term = cur.term + 1;
	return rc;
}

static int
sq_release(struct pgl_store *base, const char *me, int64_t term, const char *lsn_text,
		   const char *detail)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st = NULL;
	uint64_t lsn = 0;
	int rc;

	if (s->rdonly)
		return -PGL_EINVAL;
	if (lsn_text && pgl_lsn_parse(lsn_text, &lsn) < 0)
		return -PGL_EINVAL;
	if ((rc = begin_immediate(s)) < 0)
		return rc;
	rc = prepare(s, "UPDATE lease SET holder = NULL, released_lsn = ?1, released_lsn_int = ?2 "
				 "WHERE id = 1 AND holder = ?3 AND term = ?4", &st);
	if (rc != SQLITE_OK) {
		rc = map_rc(rc);
		goto out;
	}
	if (lsn_text) {
		sqlite3_bind_text(st, 1, lsn_text, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, (int64_t) lsn);
	}
	sqlite3_bind_text(st, 3, me, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 4, term);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		rc = map_rc(rc);
	else if (sqlite3_changes(s->db) != 1)
		rc = -PGL_ENOTHOLDER;
	else
		rc = insert_event(s, term, me, "released", detail);
out:
	return commit_or_rollback(s, rc);
}

/*
 * The conninfo a node row gets: "host=H port=P" written by
 * pgl_conninfo_format() (quoted for libpq) from the host and port of the
 * caller's text, or "" for "".  Other keywords (a password) never reach the
 * shared store.  Returns false when the text has no valid host and port: the
 * row then gets NULL, which every reader takes as no address, and the
 * heartbeat itself is still written.
 */
static bool
row_conninfo(const char *conninfo, char *out, size_t len)
{
	char host[256];
	int port;

	out[0] = '\0';
	if (conninfo[0] == '\0')
		return true;
	return pgl_conninfo_host_port(conninfo, host, sizeof(host), &port) == 0 &&
		pgl_conninfo_format(host, port, out, len) == 0;
}

/* Binds the parameters of the node upsert; NULL for what n leaves empty. */
static void
bind_node(sqlite3_stmt *st, const struct pgl_node *n, const char *ts)
{
	char ci[sizeof(n->conninfo)];

	sqlite3_bind_text(st, 1, n->name, -1, SQLITE_TRANSIENT);
	if (row_conninfo(n->conninfo, ci, sizeof(ci)))
		sqlite3_bind_text(st, 2, ci, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, n->role[0] ? n->role : "unknown", -1, SQLITE_TRANSIENT);
	if (n->state[0])
		sqlite3_bind_text(st, 4, n->state, -1, SQLITE_TRANSIENT);
	if (n->upstream[0])
		sqlite3_bind_text(st, 5, n->upstream, -1, SQLITE_TRANSIENT);
	if (n->timeline > 0)
		sqlite3_bind_int64(st, 6, n->timeline);
	if (n->receive_lsn[0]) {
		sqlite3_bind_text(st, 7, n->receive_lsn, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 8, (int64_t) n->receive_lsn_int);
	}
	if (n->replay_lsn[0]) {
		sqlite3_bind_text(st, 9, n->replay_lsn, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 10, (int64_t) n->replay_lsn_int);
	}
	sqlite3_bind_int64(st, 11, n->priority);
	sqlite3_bind_text(st, 12, ts, -1, SQLITE_TRANSIENT);
}

/* ---- per-node records: <store>.nodes/NAME.json, each written by its node only ---- */

/*
 * In steady state every agent writes only its own record (its heartbeat,
 * and the holder's renewals): a plain file replaced by rename(), so no lock
 * is ever shared, and a node stopped at any instant of that write holds
 * nothing another node needs.  lease.db is written only when something
 * changes hands or an operator acts.  The JSON is made and read by SQLite's
 * own json functions.  No fsync: a record lost in a machine crash only
 * looks older, and every agent restarts then anyway.
 */

/* The JSON of a record: NODE_COLS' order, then the renewal fields. */
static const char rec_json_sql[] =
	"SELECT json_object('name', ?1, 'conninfo', ?2, 'role', ?3, 'state', ?4, 'upstream', ?5, "
	"'timeline', ?6, 'receive_lsn', ?7, 'receive_lsn_int', ?8, 'replay_lsn', ?9, "
	"'replay_lsn_int', ?10, 'priority', ?11, 'updated_at', ?12, 'heartbeat', ?13, "
	"'lease_term', ?14, 'renewals', ?15, 'ttl_ms', ?16, 'renewed_at', ?17, "
	"'progress_op', ?18, 'progress_done_kb', ?19, 'progress_total_kb', ?20, "
	"'progress_elapsed_ms', ?21)";

#define J(k) "json_extract(?1, '$." k "')"
static const char rec_read_sql[] =
	"SELECT " J("name") ", " J("conninfo") ", coalesce(" J("role") ", 'unknown'), "
	J("state") ", " J("upstream") ", " J("timeline") ", " J("receive_lsn") ", "
	J("receive_lsn_int") ", " J("replay_lsn") ", " J("replay_lsn_int") ", "
	"coalesce(" J("priority") ", 100), coalesce(" J("heartbeat") ", 0), " J("updated_at") ", "
	"coalesce((julianday('now') - julianday(" J("updated_at") ")) * 86400, -1), "
	"coalesce(" J("lease_term") ", 0), coalesce(" J("renewals") ", 0), "
	"coalesce(" J("ttl_ms") ", 0), " J("renewed_at") ", "
	"coalesce((julianday('now') - julianday(" J("renewed_at") ")) * 86400, -1), "
	J("progress_op") ", " J("progress_done_kb") ", " J("progress_total_kb") ", "
	J("progress_elapsed_ms") " "
	"WHERE json_valid(?1) AND json_type(?1) = 'object'";
#undef J

static bool read_node_row(sqlite3_stmt *st, struct pgl_node *n);

static void
rec_path(const struct sqlite_store *s, const char *name, bool tmp, char *out, size_t len)
{
	snprintf(out, len, tmp ? "%s/.%s.json.tmp" : "%s/%s.json", s->nodes_dir, name);
}

/* Puts text in place as name's record (a temporary file, then rename()). */
static int
put_record(struct sqlite_store *s, const char *name, const char *text, size_t len)
{
	char tmp[PGL_PATH_MAX + 96], dst[PGL_PATH_MAX + 96];
	int fd, e = 0;

	rec_path(s, name, true, tmp, sizeof(tmp));
	rec_path(s, name, false, dst, sizeof(dst));
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0660);
	if (fd < 0 && errno == ENOENT && ensure_nodes_dir(s, NULL, 0) == 0)
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0660);
	if (fd < 0)
		e = errno;
	else {
		if (fchmod(fd, 0660) != 0 || write(fd, text, len) != (ssize_t) len)
			e = errno ? errno : EIO;
		if (close(fd) != 0 && e == 0)
			e = errno;
		if (e == 0 && rename(tmp, dst) != 0)
			e = errno;
		if (e)
			unlink(tmp);
	}
	if (e == 0)
		return 0;
	snprintf(s->errmsg, sizeof(s->errmsg), "cannot write %s: %s", dst, strerror(e));
	return -PGL_ESYS;
}

/*
 * Binds ?18..?21 of rec_json_sql: a copy under way, or nothing (NULLs, and
 * json_object() writes null) when there is none or it is out of bounds.
 */
static void
bind_progress(sqlite3_stmt *st, const struct pgl_progress *p)
{
	if (p->op == PGL_PROGRESS_NONE || !pgl_progress_valid(p))
		return;
	sqlite3_bind_text(st, 18, pgl_progress_op_name(p->op), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 19, p->done_kb);
	sqlite3_bind_int64(st, 20, p->total_kb);
	sqlite3_bind_int64(st, 21, p->elapsed_ms);
}

/*
 * Reads columns 19..22 of rec_read_sql into p: absent or null is no copy
 * under way; anything else must name an operation and stay within the
 * bounds of pgl_progress_valid().  False for a record that must not be used.
 */
static bool
read_progress(sqlite3_stmt *st, struct pgl_progress *p)
{
	int t = sqlite3_column_type(st, 19);

	memset(p, 0, sizeof(*p));
	if ((t != SQLITE_NULL && t != SQLITE_TEXT) || !pgl_progress_op_parse(col_raw(st, 19), &p->op) ||
		!col_count(st, 20, true) || !col_count(st, 21, true) || !col_count(st, 22, true))
		return false;
	p->done_kb = sqlite3_column_int64(st, 20);
	p->total_kb = sqlite3_column_int64(st, 21);
	p->elapsed_ms = sqlite3_column_int64(st, 22);
	return pgl_progress_valid(p);
}

/* Writes this node's own record (s->self). */
static int
write_self(struct sqlite_store *s)
{
	const struct noderec *r = &s->self;
	sqlite3_stmt *st = NULL;
	int rc = prepare(s, rec_json_sql, &st);

	if (rc != SQLITE_OK) {
		snprintf(s->errmsg, sizeof(s->errmsg), "%s", sqlite3_errmsg(s->db));
		return map_rc(rc);
	}
	bind_node(st, &r->n, r->n.updated_at[0] ? r->n.updated_at : NULL);
	sqlite3_bind_int64(st, 13, r->n.heartbeat);
	sqlite3_bind_int64(st, 14, r->lease_term);
	sqlite3_bind_int64(st, 15, r->renewals);
	sqlite3_bind_int64(st, 16, r->ttl_ms);
	if (r->renewed_at[0])
		sqlite3_bind_text(st, 17, r->renewed_at, -1, SQLITE_TRANSIENT);
	bind_progress(st, &r->n.progress);
	if (sqlite3_step(st) == SQLITE_ROW)
		rc = put_record(s, r->n.name, (const char *) sqlite3_column_text(st, 0),
						(size_t) sqlite3_column_bytes(st, 0));
	else {
		snprintf(s->errmsg, sizeof(s->errmsg), "%s", sqlite3_errmsg(s->db));
		rc = -PGL_ESTORE;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Reads a whole small regular file; -PGL_ENOENT when absent. */
static int
slurp(const char *path, char *buf, size_t cap, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct stat sb;
	ssize_t n;
	size_t got = 0;

	if (fd < 0)
		return errno == ENOENT ? -PGL_ENOENT : -PGL_EFOREIGN;
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size >= (off_t) cap) {
		close(fd);
		return -PGL_EFOREIGN;
	}
	while (got < cap - 1 && (n = read(fd, buf + got, cap - 1 - got)) > 0)
		got += (size_t) n;
	close(fd);
	buf[got] = '\0';
	*len = got;
	return 0;
}

/*
 * Reads name's record: 0, -PGL_ENOENT (none), -PGL_EFOREIGN (unreadable,
 * not a record, another name inside, or invalid as a node row is).
 */
static int
read_record(struct sqlite_store *s, const char *name, struct noderec *r)
{
	char path[PGL_PATH_MAX + 96], *buf;
	sqlite3_stmt *st = NULL;
	size_t len = 0;
	int rc;

	if (!pgl_name_valid(name))
		return -PGL_EINVAL;
	if ((buf = malloc(REC_MAX)) == NULL)
		return -PGL_ENOMEM;
	rec_path(s, name, false, path, sizeof(path));
	if ((rc = slurp(path, buf, REC_MAX, &len)) == 0 &&
		(rc = map_rc(prepare(s, rec_read_sql, &st))) == 0) {
		memset(r, 0, sizeof(*r));
		sqlite3_bind_text(st, 1, buf, (int) len, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_ROW || !read_node_row(st, &r->n) ||
			strcmp(r->n.name, name) != 0 || !col_count(st, 14, false) ||
			!col_count(st, 15, false) || !col_count(st, 16, false) ||
			!read_progress(st, &r->n.progress) ||
			sqlite3_column_int64(st, 14) > PGL_TERM_MAX)
			rc = -PGL_EFOREIGN;
		else {
			r->lease_term = sqlite3_column_int64(st, 14);
			r->renewals = sqlite3_column_int64(st, 15);
			r->ttl_ms = sqlite3_column_int64(st, 16);
			col_text(st, 17, r->renewed_at, sizeof(r->renewed_at));
			r->renewed_age_s = sqlite3_column_double(st, 18);
		}
		sqlite3_finalize(st);
	}
	free(buf);
	return rc;
}

/* The holder's renewals of the lease's term, from its record, into l. */
static void
merge_renewals(struct sqlite_store *s, struct pgl_lease *l)
{
	struct noderec r;

	if (l->holder[0] == '\0' || read_record(s, l->holder, &r) != 0 ||
		r.lease_term != l->term || r.renewals <= 0)
		return;
	l->renewals = r.renewals;
	if (r.ttl_ms > 0)
		l->ttl_ms = r.ttl_ms;
	pgl_strlcpy(l->renewed_at, r.renewed_at, sizeof(l->renewed_at));
	l->renewed_age_s = r.renewed_age_s;
}

/* This node's own record, once: counters continue across restarts. */
static void
load_self(struct sqlite_store *s, const char *name)
{
	if (s->self_loaded && strcmp(s->self.n.name, name) == 0)
		return;
	if (read_record(s, name, &s->self) != 0) {
		memset(&s->self, 0, sizeof(s->self));
		pgl_strlcpy(s->self.n.name, name, sizeof(s->self.n.name));
	}
	s->self_loaded = true;
}

static int
sq_node_upsert(struct pgl_store *base, const struct pgl_node *n)
{
	struct sqlite_store *s = sq(base);
	int64_t hb;

	if (s->rdonly || !pgl_name_valid(n->name))
		return -PGL_EINVAL;
	s->errmsg[0] = '\0';
	if (n->role[0] && strcmp(n->role, "primary") != 0 && strcmp(n->role, "standby") != 0 &&
		strcmp(n->role, "unknown") != 0) {
		snprintf(s->errmsg, sizeof(s->errmsg), "invalid role '%s' for node %s", n->role,
				 n->name);
		return -PGL_ESTORE;
	}
	load_self(s, n->name);
	hb = s->self.n.heartbeat + 1;
	s->self.n = *n;
	s->self.n.heartbeat = hb;
	now_iso(s->self.n.updated_at);
	return write_self(s);
}

static int
sq_renew(struct pgl_store *base, const char *me, int64_t term, int64_t t0_ms,
		 int64_t ttl_ms, int64_t margin_ms, int64_t wait_until_ms,
		 int64_t *deadline_ms, int64_t *renewals)
{
	struct sqlite_store *s = sq(base);
	int64_t wait = wait_until_ms - pgl_mono_ms();
	struct pgl_lease l;
	int rc;

	if (s->rdonly || !pgl_name_valid(me))
		return -PGL_EINVAL;
	if (wait <= 0) {
		snprintf(s->errmsg, sizeof(s->errmsg), "no time left before the fence deadline");
		return -PGL_ETIMEOUT;
	}
	/* Reads only (WAL readers take no lock a writer holds): bounded anyway. */
	sqlite3_busy_timeout(s->db, wait < INT_MAX ? (int) wait : INT_MAX);
	if ((rc = read_lease_row(s, &l)) == 0 && (strcmp(l.holder, me) != 0 || l.term != term))
		rc = -PGL_ENOTHOLDER;
	if (rc == 0) {
		load_self(s, me);
		if (s->self.lease_term != term)
			s->self.renewals = 0;
		s->self.lease_term = term;
		s->self.renewals++;
		s->self.ttl_ms = ttl_ms;
		now_iso(s->self.renewed_at);
		rc = write_self(s);
	}
	/* Still the holder after the write: a claim committed before it is seen now. */
	if (rc == 0 && (rc = read_lease_row(s, &l)) == 0 &&
		(strcmp(l.holder, me) != 0 || l.term != term))
		rc = -PGL_ENOTHOLDER;
	sqlite3_busy_timeout(s->db, s->busy_ms);
	/*
	 * It counts only when confirmed before the current deadline: a claimer
	 * checks the holder's record inside its transaction no earlier than one
	 * TTL after the record it timed appeared, which is later than this
	 * deadline (see DESIGN.md section 4).
	 */
	if (rc == 0 && pgl_mono_ms() >= wait_until_ms) {
		snprintf(s->errmsg, sizeof(s->errmsg), "renewal confirmed only after the fence "
				 "deadline; not counted");
		rc = -PGL_ETIMEOUT;
	}
	if (rc == 0) {
		*deadline_ms = t0_ms + ttl_ms - margin_ms;
		if (renewals)
			*renewals = s->self.renewals;
	}
	return rc;
}

/*
 * Reads one node row and validates it: the name (the same rule as the
 * config, checked before any truncation), role, upstream, counters and
 * LSNs.  The conninfo is reduced to "host=H port=P" through
 * pgl_conninfo_host_port(): nothing else is carried over, and one without a
 * valid host and port becomes "".
 * Returns false for a row that must not be used.
 */
static bool
read_node_row(sqlite3_stmt *st, struct pgl_node *n)
{
	const char *role = col_raw(st, 2), *up = col_raw(st, 4);
	char host[256];
	int port;

	memset(n, 0, sizeof(*n));
	if (!pgl_name_valid(col_raw(st, 0)) ||
		(strcmp(role, "primary") != 0 && strcmp(role, "standby") != 0 &&
		 strcmp(role, "unknown") != 0) ||
		(*up && !pgl_name_valid(up)) || !col_count(st, 5, true) || !col_count(st, 10, false) ||
		!col_count(st, 11, false) || !lsn_pair_valid(st, 6, 7) || !lsn_pair_valid(st, 8, 9))
		return false;
	col_text(st, 0, n->name, sizeof(n->name));
	if (pgl_conninfo_host_port(col_raw(st, 1), host, sizeof(host), &port) == 0)
		pgl_conninfo_format(host, port, n->conninfo, sizeof(n->conninfo));
	col_text(st, 2, n->role, sizeof(n->role));
	col_text(st, 3, n->state, sizeof(n->state));
	col_text(st, 4, n->upstream, sizeof(n->upstream));
	n->timeline = sqlite3_column_int64(st, 5);
	col_text(st, 6, n->receive_lsn, sizeof(n->receive_lsn));
	n->receive_lsn_int = (uint64_t) sqlite3_column_int64(st, 7);
	col_text(st, 8, n->replay_lsn, sizeof(n->replay_lsn));
	n->replay_lsn_int = (uint64_t) sqlite3_column_int64(st, 9);
	n->priority = sqlite3_column_int64(st, 10);
	n->heartbeat = sqlite3_column_int64(st, 11);
	col_text(st, 12, n->updated_at, sizeof(n->updated_at));
	n->age_s = sqlite3_column_double(st, 13);
	return true;
}

#define NODE_COLS \
	"name, conninfo, role, state, upstream, timeline, receive_lsn, receive_lsn_int, " \
	"replay_lsn, replay_lsn_int, priority, heartbeat, updated_at, " \
	"coalesce((julianday('now') - julianday(updated_at)) * 86400, -1) "


static int
cmp_node(const void *a, const void *b)
{
	return strcmp(((const struct pgl_node *) a)->name, ((const struct pgl_node *) b)->name);
}

/* Is d_name a record's file name ("NAME.json", NAME valid)?  Copies NAME. */
static bool
record_name(const char *file, char *name, size_t len)
{
	size_t n = strlen(file);

	if (n <= 5 || n - 5 >= len || file[0] == '.' || strcmp(file + n - 5, ".json") != 0)
		return false;
	memcpy(name, file, n - 5);
	name[n - 5] = '\0';
	return true;
}

static int
sq_list_nodes(struct pgl_store *base, struct pgl_node **out, int *count)
{
	struct sqlite_store *s = sq(base);
	struct pgl_node *arr = NULL;
	int n = 0, cap = 0, bad = 0, rc = 0;
	struct dirent *de;
	struct noderec r;
	char name[PGL_NAME_MAX + 8];
	DIR *dir;

	*out = NULL;
	*count = 0;
	s->errmsg[0] = '\0';
	if ((dir = opendir(s->nodes_dir)) == NULL) {
		if (errno == ENOENT)
			return 0;			/* no node has written yet */
		snprintf(s->errmsg, sizeof(s->errmsg), "%s: %s", s->nodes_dir, strerror(errno));
		return -PGL_ESYS;
	}
	while ((de = readdir(dir)) != NULL) {
		if (!record_name(de->d_name, name, sizeof(name)))
			continue;
		if (!pgl_name_valid(name) || read_record(s, name, &r) != 0) {
			bad++;
			continue;
		}
		if (n == cap) {
			struct pgl_node *grown = realloc(arr, (cap ? cap * 2 : 8) * sizeof(*arr));

			if (grown == NULL) {
				snprintf(s->errmsg, sizeof(s->errmsg), "out of memory");
				rc = -PGL_ENOMEM;
				break;
			}
			arr = grown;
			cap = cap ? cap * 2 : 8;
		}
		arr[n++] = r.n;
	}
	closedir(dir);
	if (rc < 0) {
		free(arr);
		return rc;
	}
	if (n > 1)
		qsort(arr, (size_t) n, sizeof(*arr), cmp_node);
	/* Reported when the number changes, not on every read. */
	if (bad != s->bad_nodes && bad > 0)
		pgl_log_warn("%s: ignoring %d node record%s with an invalid name, role, counter or "
					 "LSN (written by hand?)", s->nodes_dir, bad, bad == 1 ? "" : "s");
	s->bad_nodes = bad;
	*out = arr;
	*count = n;
	return 0;
}

static int
sq_get_node(struct pgl_store *base, const char *name, struct pgl_node *out)
{
	struct noderec r;
	int rc = read_record(sq(base), name, &r);

	if (rc == 0)
		*out = r.n;
	return rc;
}

static int
sq_remove_node(struct pgl_store *base, const char *name, int64_t term)
{
	struct sqlite_store *s = sq(base);
	char path[PGL_PATH_MAX + 96];
	struct pgl_lease l;
	int rc;

	if (s->rdonly || !pgl_name_valid(name))
		return -PGL_EINVAL;
	if ((rc = begin_immediate(s)) < 0)
		return rc;
	/* Checked inside the transaction: the holder is never forgotten. */
	if ((rc = read_lease_row(s, &l)) < 0)
		goto out;
	if (strcmp(l.holder, name) == 0) {
		rc = -PGL_ECONFLICT;
		goto out;
	}
	rec_path(s, name, false, path, sizeof(path));
	if (unlink(path) != 0) {
		rc = errno == ENOENT ? -PGL_ENOENT : -PGL_ESYS;
		if (rc == -PGL_ESYS)
			snprintf(s->errmsg, sizeof(s->errmsg), "cannot remove %s: %s", path,
					 strerror(errno));
		goto out;
	}
	rc = insert_event(s, term, name, "removed", "node forgotten; its slot is dropped");
out:
	return commit_or_rollback(s, rc);
}

static int
sq_event(struct pgl_store *base, int64_t term, const char *node, const char *kind,
		 const char *detail)
{
	struct sqlite_store *s = sq(base);
	int rc;

	if (s->rdonly)
		return -PGL_EINVAL;
	if ((rc = begin_immediate(s)) < 0)
		return rc;
	rc = insert_event(s, term, node, kind, detail);
	return commit_or_rollback(s, rc);
}

static int
collect_events(struct sqlite_store *s, sqlite3_stmt *st, struct pgl_event **out, int *count)
{
	struct pgl_event *arr = NULL;
	int n = 0, cap = 0, rc;

	s->errmsg[0] = '\0';
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct pgl_event *e;

		if (n == cap) {
			struct pgl_event *grown = realloc(arr, (cap ? cap * 2 : 16) * sizeof(*arr));

			if (grown == NULL) {
				snprintf(s->errmsg, sizeof(s->errmsg), "out of memory");
				rc = SQLITE_NOMEM;
				break;
			}
			arr = grown;
			cap = cap ? cap * 2 : 16;
		}
		e = &arr[n++];
		memset(e, 0, sizeof(*e));
		e->id = sqlite3_column_int64(st, 0);
		col_text(st, 1, e->at, sizeof(e->at));
		e->term = sqlite3_column_int64(st, 2);
		/* History is shown (escaped), rarely acted on: an invalid node is blanked. */
		if (pgl_name_valid(col_raw(st, 3)))
			col_text(st, 3, e->node, sizeof(e->node));
		col_text(st, 4, e->kind, sizeof(e->kind));
		col_text(st, 5, e->detail, sizeof(e->detail));
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(arr);
		return map_rc(rc);
	}
	*out = arr;
	*count = n;
	return 0;
}

static int
sq_list_events(struct pgl_store *base, int n, struct pgl_event **out, int *count)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st = NULL;
	int rc = prepare(s, "SELECT * FROM (SELECT id, at, term, node, kind, detail FROM events "
					 "ORDER BY id DESC LIMIT ?1) ORDER BY id", &st);

	*out = NULL;
	*count = 0;
	if (rc != SQLITE_OK)
		return map_rc(rc);
	sqlite3_bind_int(st, 1, n);
	return collect_events(s, st, out, count);
}

static int
sq_events_after(struct pgl_store *base, int64_t after_id, struct pgl_event **out,
				int *count)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st = NULL;
	int rc = prepare(s, "SELECT id, at, term, node, kind, detail FROM events WHERE id > ?1 "
					 "ORDER BY id", &st);

	*out = NULL;
	*count = 0;
	if (rc != SQLITE_OK)
		return map_rc(rc);
	sqlite3_bind_int64(st, 1, after_id);
	return collect_events(s, st, out, count);
}

static int
sq_set_paused(struct pgl_store *base, bool paused, const char *node)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st = NULL;
	struct pgl_lease l;
	int rc;

	if (s->rdonly)
		return -PGL_EINVAL;
	if ((rc = begin_immediate(s)) < 0)
		return rc;
	if ((rc = read_lease_stmt(s, &l)) < 0)
		goto out;
	rc = prepare(s, "UPDATE cluster SET paused = ?1 WHERE id = 1", &st);
	if (rc != SQLITE_OK) {
		rc = map_rc(rc);
		goto out;
	}
	sqlite3_bind_int(st, 1, paused ? 1 : 0);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	rc = rc == SQLITE_DONE ? insert_event(s, l.term, node, paused ? "paused" : "resumed", NULL)
		: map_rc(rc);
out:
	return commit_or_rollback(s, rc);
}

static int
sq_set_sysid(struct pgl_store *base, const char *sysid)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st = NULL;
	struct pgl_cluster c;
	int rc;

	if (s->rdonly)
		return -PGL_EINVAL;
	if ((rc = begin_immediate(s)) < 0)
		return rc;
	if ((rc = sq_read_cluster(&s->base, &c)) < 0)
		goto out;
	if (c.system_identifier[0]) {
		rc = strcmp(c.system_identifier, sysid) == 0 ? 0 : -PGL_ECONFLICT;
		goto out;
	}
	rc = prepare(s, "UPDATE cluster SET system_identifier = ?1 WHERE id = 1", &st);
	if (rc != SQLITE_OK) {
		rc = map_rc(rc);
		goto out;
	}
	sqlite3_bind_text(st, 1, sysid, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : map_rc(rc);
	sqlite3_finalize(st);
out:
	return commit_or_rollback(s, rc);
}

/*
 * The check_path op: refuses a store path (or its -wal/-shm side file) that
 * exists but is not a regular file: SQLite would block forever opening a
 * FIFO, and says "disk I/O error" for a directory.  stat() never opens the
 * file, so it cannot block.  A missing path is left to the open op, which
 * names it.
 */
static int
sq_check_path(const char *path, char *err, size_t errlen)
{
	static const char *const suffix[] = { "", "-wal", "-shm" };
	char p[PATH_MAX + 8];
	struct stat sb;

	for (size_t i = 0; i < PGL_ARRAY_LEN(suffix); i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
		if (stat(p, &sb) != 0 || S_ISREG(sb.st_mode))
			continue;
		seterr(err, errlen, "%s: cannot open lease store: %snot a regular file (%s)", path,
			   i == 0 ? "" : i == 1 ? "its -wal file is " : "its -shm file is ",
			   S_ISDIR(sb.st_mode) ? "a directory" : S_ISFIFO(sb.st_mode) ? "a FIFO"
			   : S_ISSOCK(sb.st_mode) ? "a socket" : S_ISCHR(sb.st_mode) ||
			   S_ISBLK(sb.st_mode) ? "a device" : "not a file");
		return -PGL_EFOREIGN;
	}
	return 0;
}

/*
 * The watch_open op: inotify on the store's directory, which reports commits
 * to lease.db and lease.db-wal and survives the file being replaced (see
 * watch.h).  A wake-up is a hint; the caller confirms it with data_version.
 */
static int
sq_watch_open(struct pgl_store *base, struct pgl_watch **out)
{
	return pgl_watch_open(sq(base)->path, sq(base)->nodes_dir, out);
}

/* ---- switchover ---- */

static const char *const sw_state_names[] = { "none", "requested", "handing-over", "done",
	"failed" };

static enum pgl_sw_state
sw_state_parse(const char *t)
{
	for (size_t i = 0; i < PGL_ARRAY_LEN(sw_state_names); i++)
		if (strcmp(t, sw_state_names[i]) == 0)
			return (enum pgl_sw_state) i;
	return PGL_SW_NONE;
}

static int
read_switchover_row(struct sqlite_store *s, struct pgl_switchover *w)
{
	sqlite3_stmt *st = NULL;
	int rc;

	s->errmsg[0] = '\0';
	rc = prepare(s, "SELECT seq, kind, term, coalesce(target, ''), coalesce(requested_by, ''), "
				 "coalesce(requested_at, ''), timeout_ms, state, coalesce(detail, ''), "
				 "coalesce((julianday('now') - julianday(requested_at)) * 86400, -1) "
				 "FROM switchover WHERE id = 1", &st);
	if (rc != SQLITE_OK)
		return map_rc(rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		memset(w, 0, sizeof(*w));
		w->seq = sqlite3_column_int64(st, 0);
		w->failover = strcmp(col_raw(st, 1), "failover") == 0;
		w->term = sqlite3_column_int64(st, 2);
		col_text(st, 3, w->target, sizeof(w->target));
		col_text(st, 4, w->requested_by, sizeof(w->requested_by));
		col_text(st, 5, w->requested_at, sizeof(w->requested_at));
		w->timeout_ms = sqlite3_column_int64(st, 6);
		w->state = sw_state_parse(col_raw(st, 7));
		col_text(st, 8, w->detail, sizeof(w->detail));
		w->age_s = sqlite3_column_double(st, 9);
		rc = 0;
		if (w->target[0] && !pgl_name_valid(w->target)) {
			snprintf(s->errmsg, sizeof(s->errmsg), "the switchover row is invalid: target "
					 "is not a valid node name");
			rc = -PGL_EFOREIGN;
		}
	} else
		rc = rc == SQLITE_DONE ? -PGL_EFOREIGN : map_rc(rc);
	sqlite3_finalize(st);
	return rc;
}

static int
sq_read_switchover(struct pgl_store *base, struct pgl_switchover *out)
{
	return read_switchover_row(sq(base), out);
}

/* A request for term that is neither ended nor older than its timeout. */
static int
sq_request_switchover(struct pgl_store *base, const struct pgl_switchover *req, int64_t *seq)
{
	struct sqlite_store *s = sq(base);
	const char *kind = req->failover ? "failover" : "switchover";
	struct pgl_switchover w;
	sqlite3_stmt *st = NULL;
	struct pgl_lease l;
	char ts[PGL_TS_MAX], detail[512];
	int rc;

	if (s->rdonly)
		return -PGL_EINVAL;
	if ((rc = begin_immediate(s)) < 0)
		return rc;
	if ((rc = read_lease_stmt(s, &l)) < 0 || (rc = read_switchover_row(s, &w)) < 0)
		goto out;
	if (l.term != req->term || (!req->failover && !l.holder[0])) {
		snprintf(s->errmsg, sizeof(s->errmsg), "the lease changed meanwhile (term %lld, "
				 "holder %s)", (long long) l.term, l.holder[0] ? l.holder : "none");
		rc = -PGL_ECONFLICT;
		goto out;
	}
	if (pgl_sw_pending(&w, l.term)) {
		snprintf(s->errmsg, sizeof(s->errmsg), "%s %lld (requested by %s at %s) is still "
				 "under way", w.failover ? "failover" : "switchover", (long long) w.seq,
				 w.requested_by, w.requested_at);
		rc = -PGL_ECONFLICT;
		goto out;
	}
	now_iso(ts);
	rc = prepare(s, "UPDATE switchover SET seq = seq + 1, kind = ?1, term = ?2, target = ?3, "
				 "requested_by = ?4, requested_at = ?5, timeout_ms = ?6, state = ?7, "
				 "detail = NULL WHERE id = 1", &st);
	if (rc != SQLITE_OK) {
		rc = map_rc(rc);
		goto out;
	}
	sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, l.term);
	if (req->target[0])
		sqlite3_bind_text(st, 3, req->target, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, req->requested_by, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 5, ts, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 6, req->timeout_ms);
	sqlite3_bind_text(st, 7, sw_state_names[req->failover ? PGL_SW_HANDING_OVER
											 : PGL_SW_REQUESTED], -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		rc = map_rc(rc);
		goto out;
	}
	*seq = w.seq + 1;
	snprintf(detail, sizeof(detail), "request %lld by %s: from %s to %s, timeout %lld ms",
			 (long long) *seq, req->requested_by, l.holder[0] ? l.holder : "no primary",
			 req->target[0] ? req->target : "the best standby", (long long) req->timeout_ms);
	rc = insert_event(s, l.term, req->target, req->failover ? "failover-requested"
					  : "switchover-requested", detail);
out:
	return commit_or_rollback(s, rc);
}

static int
sq_set_switchover(struct pgl_store *base, int64_t seq, enum pgl_sw_state state,
				  const char *target, const char *node, const char *detail)
{
	struct sqlite_store *s = sq(base);
	struct pgl_switchover w;
	sqlite3_stmt *st = NULL;
	struct pgl_lease l;
	char kind[32];
	int rc;

	if (s->rdonly || (unsigned) state >= PGL_ARRAY_LEN(sw_state_names))
		return -PGL_EINVAL;
	if ((rc = begin_immediate(s)) < 0)
		return rc;
	if ((rc = read_lease_stmt(s, &l)) < 0 || (rc = read_switchover_row(s, &w)) < 0)
		goto out;
	if (w.seq != seq || w.state == PGL_SW_DONE || w.state == PGL_SW_FAILED) {
		snprintf(s->errmsg, sizeof(s->errmsg), "request %lld is no longer current (the row "
				 "holds request %lld, %s)", (long long) seq, (long long) w.seq,
				 sw_state_names[w.state]);
		rc = -PGL_ECONFLICT;
		goto out;
	}
	rc = prepare(s, "UPDATE switchover SET state = ?1, target = coalesce(?2, target), "
				 "detail = ?3 WHERE id = 1", &st);
	if (rc != SQLITE_OK) {
		rc = map_rc(rc);
		goto out;
	}
	sqlite3_bind_text(st, 1, sw_state_names[state], -1, SQLITE_STATIC);
	if (target && *target)
		sqlite3_bind_text(st, 2, target, -1, SQLITE_TRANSIENT);
	if (detail && *detail)
		sqlite3_bind_text(st, 3, detail, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		rc = map_rc(rc);
		goto out;
	}
	snprintf(kind, sizeof(kind), "%s-%s", w.failover ? "failover" : "switchover",
			 sw_state_names[state]);
	rc = insert_event(s, l.term, node, kind, detail);
out:
	return commit_or_rollback(s, rc);
}

/* ---- pglease store rebuild ---- */

/*
 * The highest lease_term and timeline in the node records beside path (the
 * records outlive lease.db: each node writes only its own).  Records are
 * parsed as every reader parses them (read_record(), through a private
 * in-memory database); an invalid one is skipped.
 */
static int
scan_records(const char *path, struct pgl_rebuild *out)
{
	struct sqlite_store s;
	char name[PGL_NAME_MAX + 8];
	struct dirent *de;
	struct noderec r;
	DIR *dir;

	memset(&s, 0, sizeof(s));
	s.base.ops = &pgl_store_sqlite_ops;
	store_sibling(path, ".nodes", s.nodes_dir, sizeof(s.nodes_dir));
	if ((dir = opendir(s.nodes_dir)) == NULL)
		return 0;				/* no records: nothing to learn from */
	if (sqlite3_open(":memory:", &s.db) != SQLITE_OK) {
		closedir(dir);
		sqlite3_close(s.db);
		return -PGL_ENOMEM;
	}
	while ((de = readdir(dir)) != NULL) {
		if (!record_name(de->d_name, name, sizeof(name)) || read_record(&s, name, &r) != 0)
			continue;
		out->records++;
		if (r.lease_term > out->record_term)
			out->record_term = r.lease_term;
		if (r.n.timeline > out->max_timeline && r.n.timeline <= PGL_TERM_MAX)
			out->max_timeline = r.n.timeline;
	}
	closedir(dir);
	sqlite3_close(s.db);
	return 0;
}

/*
 * The damaged store's highest term (lease row and events), when SQLite can
 * still read that much of it; -1 otherwise.  Opened immutable and read-only:
 * nothing is written, no -wal or -shm is created or read.
 */
static int64_t
damaged_term(const char *path)
{
	char *uri = sqlite3_mprintf("file:%s?immutable=1", path);
	sqlite3 *db = NULL;
	int64_t term = -1;

	if (uri != NULL &&
		sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) == SQLITE_OK) {
		sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
		sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
		if (pragma_int(db, "SELECT max(coalesce((SELECT max(term) FROM lease), 0), "
					   "coalesce((SELECT max(term) FROM events), 0))", &term) != SQLITE_OK ||
			term < 0 || term > PGL_TERM_MAX)
			term = -1;
	}
	sqlite3_close(db);
	sqlite3_free(uri);
	return term;
}

/* Moves from to to without ever deleting it: link, then unlink.  ENOENT is fine. */
static int
move_aside(const char *from, const char *to, char *err, size_t errlen)
{
	if (link(from, to) != 0) {
		if (errno == ENOENT)
			return 0;
		seterr(err, errlen, "%s: cannot keep it as %s: %s; nothing changed", from, to,
			   strerror(errno));
		return -PGL_ESYS;
	}
	if (unlink(from) != 0) {
		seterr(err, errlen, "%s: cannot move it to %s: %s", from, to, strerror(errno));
		return -PGL_ESYS;
	}
	return 0;
}

/*
 * Writes into the fresh store at tmp the term nobody holds yet and the
 * "rebuilt" event.  The trigger lease_term_grows allows it (0 to term).
 */
static int
set_rebuilt_term(const char *tmp, const struct pgl_rebuild *r, char *err, size_t errlen)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char ts[PGL_TS_MAX], *detail;
	int rc = sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READWRITE, NULL);

	now_iso(ts);
	detail = sqlite3_mprintf("lease store rebuilt by `pglease store rebuild`: the damaged "
							 "file is kept as %s; term %lld is above every term seen (damaged "
							 "store: %lld, node records: %lld, timelines: %lld); the agents "
							 "elect the most advanced node", r->moved_to[0] ? r->moved_to :
							 "(none: the store was missing)", (long long) r->new_term,
							 (long long) r->old_term, (long long) r->record_term,
							 (long long) r->max_timeline);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "UPDATE lease SET term = ?1 WHERE id = 1; ", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, r->new_term);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
		sqlite3_finalize(st);
		st = NULL;
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "INSERT INTO events (at, term, node, kind, detail) "
								"VALUES (?1, ?2, NULL, 'rebuilt', ?3)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, ts, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, r->new_term);
		sqlite3_bind_text(st, 3, detail ? detail : "rebuilt", -1, SQLITE_TRANSIENT);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
	}
	if (rc != SQLITE_OK)
		seterr(err, errlen, "%s: cannot write the new term: %s", tmp,
			   db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	sqlite3_finalize(st);
	sqlite3_close(db);
	sqlite3_free(detail);
	return rc == SQLITE_OK ? 0 : -PGL_ESTORE;
}

/* Refuses a store that opens and reads as healthy: there is nothing to rebuild. */
static int
refuse_healthy(const char *path, char *err, size_t errlen)
{
	struct pgl_store *st = NULL;
	struct pgl_lease l;
	struct pgl_cluster c;
	char why[PGL_PATH_MAX + 400];
	int rc = sq_open(path, PGL_STORE_RDONLY, &st, why, sizeof(why));

	if (rc == 0 && sq_read_lease(st, &l) == 0 && sq_read_cluster(st, &c) == 0) {
		seterr(err, errlen, "%s: the lease store is healthy (term %lld, holder %s); nothing "
			   "to rebuild", path, (long long) l.term, l.holder[0] ? l.holder : "none");
		rc = -PGL_EINVAL;
	} else if (rc == -PGL_ENEWER || (rc < 0 && strstr(why, "is older than") != NULL)) {
		seterr(err, errlen, "%s; not rebuilding a store of another schema version", why);
		rc = -PGL_EINVAL;
	} else
		rc = 0;
	sq_close(st);
	return rc;
}

/*
 * Builds the fresh store in a private file beside path (as
 * create_atomically() does) and gives it the owner of `owner_of`.
 */
static int
build_rebuilt(const char *path, const char *owner_of, struct pgl_rebuild *out, char *tmp,
			  size_t tmplen, char *err, size_t errlen)
{
	struct stat sb;
	int fd, rc;

	snprintf(tmp, tmplen, "%s.init-XXXXXX", path);
	if ((fd = mkstemp(tmp)) < 0) {
		seterr(err, errlen, "%s: cannot create a temporary file: %s", tmp, strerror(errno));
		return -PGL_ESYS;
	}
	close(fd);
	if ((rc = build_fresh(tmp, err, errlen)) == 0)
		rc = set_rebuilt_term(tmp, out, err, errlen);
	if (rc == 0 && (chmod(tmp, 0660) != 0 ||
					(geteuid() == 0 && stat(owner_of, &sb) == 0 &&
					 chown(tmp, sb.st_uid, sb.st_gid) != 0))) {
		seterr(err, errlen, "%s: cannot set its mode or owner: %s", tmp, strerror(errno));
		rc = -PGL_ESYS;
	}
	if (rc < 0)
		unlink(tmp);
	return rc;
}

/* Moves path, path-wal and path-shm to path.damaged-STAMP* (the -wal and -shm first). */
static int
keep_damaged(const char *path, struct pgl_rebuild *out, char *err, size_t errlen)
{
	static const char *const sides[] = { "-wal", "-shm" };
	char stamp[32], from[PGL_PATH_MAX + 8], to[PGL_PATH_MAX + 80];
	time_t now = time(NULL);
	struct tm tm;
	int rc;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(out->moved_to, sizeof(out->moved_to), "%s.damaged-%s", path, stamp);
	if (access(out->moved_to, F_OK) == 0) {
		seterr(err, errlen, "%s already exists; try again in a second", out->moved_to);
		return -PGL_ESYS;
	}
	for (size_t i = 0; i < PGL_ARRAY_LEN(sides); i++) {
		snprintf(from, sizeof(from), "%s%s", path, sides[i]);
		snprintf(to, sizeof(to), "%s%s", out->moved_to, sides[i]);
		if ((rc = move_aside(from, to, err, errlen)) < 0)
			return rc;
	}
	/* A link only: path keeps naming the damaged file until the fresh one replaces it. */
	if (link(path, out->moved_to) != 0) {
		seterr(err, errlen, "%s: cannot keep it as %s: %s", path, out->moved_to,
			   strerror(errno));
		return -PGL_ESYS;
	}
	return 0;
}

int
pgl_store_rebuild(const char *path, struct pgl_rebuild *out, char *err, size_t errlen)
{
	char tmp[PGL_PATH_MAX + 32], *copy, *dir;
	bool exists = access(path, F_OK) == 0;
	int64_t seen;
	int rc;

	memset(out, 0, sizeof(*out));
	out->old_term = -1;
	if (errlen)
		err[0] = '\0';
	if (pgl_store_is_url(path) || strlen(path) >= PGL_PATH_MAX - 80) {
		seterr(err, errlen, "%s: only an SQLite lease store (a file path) can be rebuilt", path);
		return -PGL_EINVAL;
	}
	if (exists && ((rc = check_stat(path, err, errlen)) < 0 ||
				   (rc = refuse_healthy(path, err, errlen)) < 0))
		return rc;
	if (exists)
		out->old_term = damaged_term(path);
	if ((rc = scan_records(path, out)) < 0) {
		seterr(err, errlen, "%s: cannot read the node records: %s", path, pgl_strerror(rc));
		return rc;
	}
	seen = out->old_term > out->record_term ? out->old_term : out->record_term;
	seen = out->max_timeline > seen ? out->max_timeline : seen;
	if (seen >= PGL_TERM_MAX) {
		seterr(err, errlen, "%s: the highest term seen (%lld) is at pglease's limit", path,
			   (long long) seen);
		return -PGL_EINVAL;
	}
	out->new_term = seen + 1;
	if (exists && (rc = keep_damaged(path, out, err, errlen)) < 0)
		return rc;
	if ((copy = strdup(path)) == NULL)
		return -PGL_ENOMEM;
	dir = dirname(copy);
	rc = build_rebuilt(path, exists ? out->moved_to : dir, out, tmp, sizeof(tmp), err, errlen);
	free(copy);
	if (rc == 0 && rename(tmp, path) != 0) {
		seterr(err, errlen, "%s: cannot put the fresh store in place: %s", path, strerror(errno));
		unlink(tmp);
		rc = -PGL_ESYS;
	}
	if (rc == 0 || !exists)
		return rc;
	/* Failed after the link: the damaged file is still at path too; drop only the copy's name. */
	unlink(out->moved_to);
	out->moved_to[0] = '\0';
	return rc;
}

const struct pgl_store_ops pgl_store_sqlite_ops = {
	.name = "sqlite",
	.check_path = sq_check_path,
	.open = sq_open,
	.close = sq_close,
	.check_file = sq_check_file,
	.errmsg = sq_errmsg,
	.path = sq_path,
	.set_busy_ms = sq_set_busy_ms,
	.read_lease = sq_read_lease,
	.read_cluster = sq_read_cluster,
	.data_version = sq_data_version,
	.claim = sq_claim,
	.renew = sq_renew,
	.release = sq_release,
	.node_upsert = sq_node_upsert,
	.list_nodes = sq_list_nodes,
	.get_node = sq_get_node,
	.remove_node = sq_remove_node,
	.event = sq_event,
	.list_events = sq_list_events,
	.events_after = sq_events_after,
	.set_paused = sq_set_paused,
	.set_sysid = sq_set_sysid,
	.read_switchover = sq_read_switchover,
	.request_switchover = sq_request_switchover,
	.set_switchover = sq_set_switchover,
	.watch_open = sq_watch_open,
};
