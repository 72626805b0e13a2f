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
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "pglease/log.h"
#include "pglease/store.h"
#include "pglease/watch.h"

struct sqlite_store {
	struct pgl_store base;	/* first: the interface's handle points here */
	sqlite3 *db;
	char path[1024];
	bool rdonly;
	int busy_ms;			/* lock wait of writes other than renew */
	int64_t schema_ok;		/* PRAGMA schema_version last verified; -1: none */
	int bad_nodes;			/* invalid node rows last reported */
	char errmsg[512];		/* why the last call failed, kept past ROLLBACK */
};

/* The backend's handle behind the interface's (NULL stays NULL). */
static struct sqlite_store *
sq(struct pgl_store *base)
{
	assert(base == NULL || base->ops == &pgl_store_sqlite_ops);
	return (struct sqlite_store *) base;
}

static const char schema_v1[] =
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
	"CREATE TABLE nodes ("
	"  name TEXT PRIMARY KEY,"
	"  conninfo TEXT,"
	"  role TEXT NOT NULL DEFAULT 'unknown' CHECK (role IN ('primary', 'standby', 'unknown')),"
	"  state TEXT,"
	"  upstream TEXT,"
	"  timeline INTEGER,"
	"  receive_lsn TEXT,"
	"  receive_lsn_int INTEGER,"
	"  replay_lsn TEXT,"
	"  replay_lsn_int INTEGER,"
	"  priority INTEGER NOT NULL DEFAULT 100,"
	"  heartbeat INTEGER NOT NULL DEFAULT 0,"
	"  updated_at TEXT);"
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
	"  BEGIN SELECT RAISE(ABORT, 'lease term may only grow'); END;"
	"CREATE VIEW lease_status AS"
	"  SELECT holder, term, renewals, ttl_ms, acquired_at, renewed_at,"
	"         round((julianday('now') - julianday(renewed_at)) * 86400, 1)"
	"           AS seconds_since_renewal,"
	"         released_lsn"
	"  FROM lease WHERE id = 1;"
	"CREATE VIEW cluster_status AS"
	"  SELECT n.name, n.role, n.state, n.upstream, n.timeline,"
	"         n.receive_lsn, n.replay_lsn,"
	"         CASE WHEN n.name = l.holder THEN 0"
	"              WHEN p.receive_lsn_int IS NULL OR n.replay_lsn_int IS NULL THEN NULL"
	"              ELSE max(p.receive_lsn_int - n.replay_lsn_int, 0) END AS lag_bytes,"
	"         round((julianday('now') - julianday(n.updated_at)) * 86400, 1)"
	"           AS seconds_since_heartbeat,"
	"         n.priority,"
	"         (n.name IS l.holder) AS holds_lease,"
	"         l.term AS term"
	"  FROM nodes n JOIN lease l ON l.id = 1"
	"  LEFT JOIN nodes p ON p.name = l.holder"
	"  ORDER BY n.name;";

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
		(rc = exec_sql(db, schema_v1)) != SQLITE_OK)
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
			exec_sql(mem, schema_v1) != SQLITE_OK || schema_text(mem, &text) != SQLITE_OK) {
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
 * Checks an open store of our schema version: SQLite's quick_check, our four
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
					"('cluster', 'lease', 'nodes', 'events')", &ok_tables);
	if (rc != SQLITE_OK || ok_tables != 4) {
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
	/* Migrations from older versions go here, each in its own transaction. */
	(void) flags;
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
	if (!s->rdonly && (rc = configure_writer(s, err, errlen)) < 0)
		goto fail;
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
	else if (!lsn_pair_valid(st, 6, 7))
		why = "released_lsn is not a valid LSN matching released_lsn_int";
	if (why == NULL)
		return 0;
	snprintf(s->errmsg, sizeof(s->errmsg), "the lease row is invalid: %s", why);
	return -PGL_EFOREIGN;
}

static int
read_lease_stmt(struct sqlite_store *s, struct pgl_lease *l)
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
		rc = 0;
	} else if (rc != -PGL_EFOREIGN)
		rc = rc == SQLITE_DONE ? -PGL_EFOREIGN : map_rc(rc);
	sqlite3_finalize(st);
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
	return map_rc(pragma_int(sq(base)->db, "PRAGMA data_version", out));
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

/*
 * Renewals and heartbeats commit without an fsync (synchronous = NORMAL):
 * SQLite's write lock is held only while the transaction runs, and a process
 * stopped inside it (SIGSTOP, docker pause, a frozen cgroup) keeps it, and
 * every other writer waits, for as long as it is stopped.  Without the fsync
 * the window is some 0.05 ms instead of one fsync (1 to 15 ms, more under
 * I/O load).  Such a commit can be lost only when the machine (not the
 * process) crashes, and then every agent restarts; a lost renewal or
 * heartbeat only makes the lease look older.  Claims, releases, events and
 * operator writes keep synchronous = FULL.
 */
static void
set_light(struct sqlite_store *s, bool light)
{
	exec_sql(s->db, light ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL");
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
sq_renew(struct pgl_store *base, const char *me, int64_t term, int64_t t0_ms,
		 int64_t ttl_ms, int64_t margin_ms, int64_t wait_until_ms,
		 int64_t *deadline_ms, int64_t *renewals)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st = NULL;
	char ts[PGL_TS_MAX];
	int64_t wait = wait_until_ms - pgl_mono_ms();
	int rc;

	if (s->rdonly)
		return -PGL_EINVAL;
	if (wait <= 0) {
		snprintf(s->errmsg, sizeof(s->errmsg), "no time left before the fence deadline");
		return -PGL_ETIMEOUT;
	}
	/* Never wait for the lock past the fence deadline. */
	sqlite3_busy_timeout(s->db, wait < INT_MAX ? (int) wait : INT_MAX);
	set_light(s, true);
	rc = begin_immediate(s);
	sqlite3_busy_timeout(s->db, s->busy_ms);
	if (rc < 0) {
		set_light(s, false);
		return rc;
	}
	now_iso(ts);
	rc = prepare(s, "UPDATE lease SET renewals = renewals + 1, renewed_at = ?1, ttl_ms = ?2 "
				 "WHERE id = 1 AND holder = ?3 AND term = ?4 RETURNING renewals", &st);
	if (rc != SQLITE_OK) {
		rc = map_rc(rc);
		goto out;
	}
	sqlite3_bind_text(st, 1, ts, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, ttl_ms);
	sqlite3_bind_text(st, 3, me, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 4, term);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (renewals)
			*renewals = sqlite3_column_int64(st, 0);
		rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -PGL_ESTORE;
	} else if (rc == SQLITE_DONE)
		rc = -PGL_ENOTHOLDER;
	else
		rc = map_rc(rc);
	sqlite3_finalize(st);
out:
	rc = commit_or_rollback(s, rc);
	set_light(s, false);
	if (rc == 0)
		*deadline_ms = t0_ms + ttl_ms - margin_ms;
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

static int upsert_node(struct sqlite_store *s, const struct pgl_node *n);

static int
sq_node_upsert(struct pgl_store *base, const struct pgl_node *n)
{
	struct sqlite_store *s = sq(base);
	int rc;

	if (s->rdonly || !pgl_name_valid(n->name))
		return -PGL_EINVAL;
	set_light(s, true);
	rc = upsert_node(s, n);
	set_light(s, false);
	return rc;
}

static int
upsert_node(struct sqlite_store *s, const struct pgl_node *n)
{
	sqlite3_stmt *st = NULL;
	char ts[PGL_TS_MAX];
	int rc;

	if ((rc = begin_immediate(s)) < 0)
		return rc;
	now_iso(ts);
	rc = prepare(s,
				 "INSERT INTO nodes (name, conninfo, role, state, upstream, timeline, "
				 "  receive_lsn, receive_lsn_int, replay_lsn, replay_lsn_int, priority, "
				 "  heartbeat, updated_at) "
				 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, ?12) "
				 "ON CONFLICT (name) DO UPDATE SET conninfo = excluded.conninfo, "
				 "  role = excluded.role, state = excluded.state, upstream = excluded.upstream, "
				 "  timeline = excluded.timeline, receive_lsn = excluded.receive_lsn, "
				 "  receive_lsn_int = excluded.receive_lsn_int, replay_lsn = excluded.replay_lsn, "
				 "  replay_lsn_int = excluded.replay_lsn_int, priority = excluded.priority, "
				 "  heartbeat = nodes.heartbeat + 1, updated_at = excluded.updated_at", &st);
	if (rc != SQLITE_OK)
		return commit_or_rollback(s, map_rc(rc));
	bind_node(st, n, ts);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return commit_or_rollback(s, rc == SQLITE_DONE ? 0 : map_rc(rc));
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
sq_list_nodes(struct pgl_store *base, struct pgl_node **out, int *count)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st = NULL;
	struct pgl_node *arr = NULL;
	int n = 0, cap = 0, bad = 0, rc;

	*out = NULL;
	*count = 0;
	s->errmsg[0] = '\0';
	rc = prepare(s, "SELECT " NODE_COLS "FROM nodes ORDER BY name", &st);
	if (rc != SQLITE_OK)
		return map_rc(rc);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			struct pgl_node *grown = realloc(arr, (cap ? cap * 2 : 8) * sizeof(*arr));

			if (grown == NULL) {
				snprintf(s->errmsg, sizeof(s->errmsg), "out of memory");
				rc = SQLITE_NOMEM;
				break;
			}
			arr = grown;
			cap = cap ? cap * 2 : 8;
		}
		if (read_node_row(st, &arr[n]))
			n++;
		else
			bad++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(arr);
		return map_rc(rc);
	}
	/* Reported when the number changes, not on every read. */
	if (bad != s->bad_nodes && bad > 0)
		pgl_log_warn("%s: ignoring %d node row%s with an invalid name, role, counter or "
					 "LSN (written by hand?)", s->path, bad, bad == 1 ? "" : "s");
	s->bad_nodes = bad;
	*out = arr;
	*count = n;
	return 0;
}

static int
sq_get_node(struct pgl_store *base, const char *name, struct pgl_node *out)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st = NULL;
	int rc = prepare(s, "SELECT " NODE_COLS "FROM nodes WHERE name = ?1", &st);

	if (rc != SQLITE_OK)
		return map_rc(rc);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rc = read_node_row(st, out) ? 0 : -PGL_EFOREIGN;
	else
		rc = rc == SQLITE_DONE ? -PGL_ENOENT : map_rc(rc);
	sqlite3_finalize(st);
	return rc;
}

static int
sq_remove_node(struct pgl_store *base, const char *name, int64_t term)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st = NULL;
	struct pgl_lease l;
	int rc;

	if (s->rdonly)
		return -PGL_EINVAL;
	if ((rc = begin_immediate(s)) < 0)
		return rc;
	/* Checked inside the transaction: the holder is never forgotten. */
	if ((rc = read_lease_stmt(s, &l)) < 0)
		goto out;
	if (strcmp(l.holder, name) == 0) {
		rc = -PGL_ECONFLICT;
		goto out;
	}
	rc = prepare(s, "DELETE FROM nodes WHERE name = ?1", &st);
	if (rc != SQLITE_OK) {
		rc = map_rc(rc);
		goto out;
	}
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		rc = map_rc(rc);
	else if (sqlite3_changes(s->db) != 1)
		rc = -PGL_ENOENT;
	else
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
	return pgl_watch_open(sq(base)->path, out);
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
	.watch_open = sq_watch_open,
};
