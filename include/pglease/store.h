/*
 * store.h — the lease store (DESIGN.md sections 2 and 4): one interface,
 * one backend per kind of store.
 *
 * The store holds the cluster row, the lease row, one row per node and the
 * event log, shared by every node.  Callers use the pgl_store_* functions
 * below; each dispatches through the handle's struct pgl_store_ops.
 * pgl_store_open() picks the backend from the path: a plain path is the
 * SQLite backend (store_sqlite.c: one file on the shared volume, protocol
 * writes in single BEGIN IMMEDIATE transactions, every statement binding its
 * parameters); "etcd://host:port[,host:port...]/prefix/cluster" is the etcd
 * backend (store_etcd.c: etcd's v3 JSON gateway, the lease a key bound to an
 * etcd lease, every protocol write one etcd transaction; DESIGN.md section
 * 4b).  Time is passed in by the caller (monotonic ms), so the protocol can
 * be driven by a fake clock in tests.
 *
 * A store handle is used by one thread at a time.
 */
#ifndef PGLEASE_STORE_H
#define PGLEASE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "pglease/common.h"

#define PGL_SCHEMA_VERSION 3
#define PGL_APPLICATION_ID 0x70676c73	/* "pgls" */

/*
 * The highest term a store may hold.  Both backends refuse a lease row whose
 * term is above it (a row written by hand, a damaged file), and a claim never
 * grants a term above it, so that term + 1 can never overflow.  2^62 claims
 * are out of reach of any real cluster: only a store written by hand gets
 * here.
 */
#define PGL_TERM_MAX (INT64_C(1) << 62)

struct pgl_store;
struct pgl_watch;

/* Open flags. */
enum {
	PGL_STORE_RDONLY = 0,	/* never writes, never creates */
	PGL_STORE_RDWR = 1,		/* read/write; migrates an older schema forward */
	PGL_STORE_CREATE = 3,	/* as RDWR, and creates the store when absent */
};

/* The lease row.  holder[0] == '\0' means no holder. */
struct pgl_lease {
	char holder[PGL_NAME_MAX];
	int64_t term;
	int64_t renewals;
	int64_t ttl_ms;
	char acquired_at[PGL_TS_MAX];
	char renewed_at[PGL_TS_MAX];
	char released_lsn[PGL_LSN_TEXT_MAX];	/* "" when none */
	uint64_t released_lsn_int;
	bool has_released_lsn;
	double renewed_age_s;		/* seconds since renewed_at by the wall clock, for
								 * humans (read only); -1 when never renewed */
	bool store_expires;			/* the store expires the holder itself (etcd): an
								 * observer never times the lease out on its own
								 * clock, it waits for holder_expired */
	bool holder_expired;		/* store_expires and the store has expired the
								 * holder's lease (holder still names it) */
	bool never_held;			/* no term was ever granted in this store: it is new,
								 * or made by `pglease store rebuild` (its term is then
								 * above every term seen); set by the SQLite backend */
};

struct pgl_cluster {
	char name[PGL_NAME_MAX];
	char system_identifier[32];		/* "" until bootstrap */
	char created_at[PGL_TS_MAX];
	bool paused;
};

/*
 * A copy under way on a node, as the node last reported it: pg_basebackup
 * cloning its data directory, or pg_rewind rewinding it (their --progress
 * figures).  op PGL_PROGRESS_NONE: none, and every number is 0.  The
 * backends write these fields into the node's record and refuse, on
 * reading, a record whose values pgl_progress_valid() rejects.
 */
enum pgl_progress_op { PGL_PROGRESS_NONE = 0, PGL_PROGRESS_CLONE, PGL_PROGRESS_REWIND };

/* Bounds of the figures (a bound on input, not a limit of PostgreSQL's). */
#define PGL_PROGRESS_KB_MAX (INT64_C(1) << 40)			/* 1 PB in kB */
#define PGL_PROGRESS_MS_MAX (INT64_C(366) * 86400 * 1000)	/* a year */

struct pgl_progress {
	enum pgl_progress_op op;
	int64_t done_kb;			/* copied so far: 0..total_kb (0..KB_MAX when total unknown) */
	int64_t total_kb;			/* the tool's estimate of the whole; 0 while unknown */
	int64_t elapsed_ms;			/* since the tool started, 0..PGL_PROGRESS_MS_MAX */
};

/* "clone", "rewind", or NULL for PGL_PROGRESS_NONE and anything else. */
const char *pgl_progress_op_name(enum pgl_progress_op op);
/* The op named by text ("" or NULL for none); false for any other text. */
bool pgl_progress_op_parse(const char *text, enum pgl_progress_op *op);
/* True when p is within the bounds above (and all 0 when op is NONE). */
bool pgl_progress_valid(const struct pgl_progress *p);

/* One node row. */
struct pgl_node {
	char name[PGL_NAME_MAX];
	char conninfo[512];
	char role[16];				/* primary, standby, unknown */
	char state[32];
	char upstream[PGL_NAME_MAX];
	int64_t timeline;
	char receive_lsn[PGL_LSN_TEXT_MAX];
	uint64_t receive_lsn_int;
	char replay_lsn[PGL_LSN_TEXT_MAX];
	uint64_t replay_lsn_int;
	int64_t priority;
	int64_t heartbeat;			/* counter bumped by every heartbeat */
	char updated_at[PGL_TS_MAX];
	double age_s;				/* seconds since updated_at (read only) */
	struct pgl_progress progress;	/* a clone or rewind under way, op NONE if none */
};

/* A planned change of primary: pglease switchover, or failover --to. */
enum pgl_sw_state {
	PGL_SW_NONE = 0,			/* never requested */
	PGL_SW_REQUESTED,			/* switchover asked; the primary has not acted yet */
	PGL_SW_HANDING_OVER,		/* target chosen: only it may claim the next term */
	PGL_SW_DONE,				/* the target holds the next term and is primary */
	PGL_SW_FAILED,				/* refused or timed out; detail says why */
};

const char *pgl_sw_state_name(enum pgl_sw_state s);

struct pgl_switchover;
/*
 * Is request w still under way for lease term `term` (requested or handing
 * over, for that term, younger than its timeout)?
 */
bool pgl_sw_pending(const struct pgl_switchover *w, int64_t term);

struct pgl_switchover {
	int64_t seq;				/* request number; 0 when never requested */
	bool failover;				/* failover --to: no primary hands over */
	int64_t term;				/* the lease term the request is for */
	char target[PGL_NAME_MAX];	/* "" for the best standby (switchover only) */
	char requested_by[128];
	char requested_at[PGL_TS_MAX];
	int64_t timeout_ms;
	enum pgl_sw_state state;
	char detail[256];
	double age_s;				/* seconds since requested_at (read only); -1 when none */
};

struct pgl_event {
	int64_t id;
	char at[PGL_TS_MAX];
	int64_t term;
	char node[PGL_NAME_MAX];
	char kind[32];
	char detail[512];
};

/*
 * A backend: the operations behind the pgl_store_* functions of the same
 * names, with the same contracts (see each function below), except that
 * event takes its detail already formatted.  check_path and open work on a
 * path (no handle yet); every other op gets a handle this backend's open
 * made.  Every op is set.
 */
struct pgl_store_ops {
	const char *name;			/* "sqlite", for messages */
	int (*check_path)(const char *path, char *err, size_t errlen);
	int (*open)(const char *path, int flags, struct pgl_store **out, char *err,
				size_t errlen);
	void (*close)(struct pgl_store *st);
	int (*check_file)(struct pgl_store *st, char *err, size_t errlen);
	const char *(*errmsg)(struct pgl_store *st);
	const char *(*path)(struct pgl_store *st);
	void (*set_busy_ms)(struct pgl_store *st, int ms);
	int (*read_lease)(struct pgl_store *st, struct pgl_lease *out);
	int (*read_cluster)(struct pgl_store *st, struct pgl_cluster *out);
	int (*data_version)(struct pgl_store *st, int64_t *out);
	int (*claim)(struct pgl_store *st, const struct pgl_lease *seen, const char *me,
				 int64_t ttl_ms, const char *detail, int64_t *new_term);
	int (*renew)(struct pgl_store *st, const char *me, int64_t term, int64_t t0_ms,
				 int64_t ttl_ms, int64_t margin_ms, int64_t wait_until_ms,
				 int64_t *deadline_ms, int64_t *renewals);
	int (*release)(struct pgl_store *st, const char *me, int64_t term,
				   const char *lsn_text, const char *detail);
	int (*node_upsert)(struct pgl_store *st, const struct pgl_node *n);
	int (*list_nodes)(struct pgl_store *st, struct pgl_node **out, int *count);
	int (*get_node)(struct pgl_store *st, const char *name, struct pgl_node *out);
	int (*remove_node)(struct pgl_store *st, const char *name, int64_t term);
	int (*event)(struct pgl_store *st, int64_t term, const char *node, const char *kind,
				 const char *detail);
	int (*list_events)(struct pgl_store *st, int n, struct pgl_event **out, int *count);
	int (*events_after)(struct pgl_store *st, int64_t after_id, struct pgl_event **out,
						int *count);
	int (*set_paused)(struct pgl_store *st, bool paused, const char *node);
	int (*set_sysid)(struct pgl_store *st, const char *sysid);
	int (*read_switchover)(struct pgl_store *st, struct pgl_switchover *out);
	int (*request_switchover)(struct pgl_store *st, const struct pgl_switchover *req,
							  int64_t *seq);
	int (*set_switchover)(struct pgl_store *st, int64_t seq, enum pgl_sw_state state,
						  const char *target, const char *node, const char *detail);
	int (*watch_open)(struct pgl_store *st, struct pgl_watch **out);
};

/*
 * A store handle.  A backend's own handle begins with this struct, and its
 * ops cast back to it; nothing else looks inside.
 */
struct pgl_store {
	const struct pgl_store_ops *ops;
};

/* The backends (store_sqlite.c, store_etcd.c); pgl_store_open() chooses among them. */
extern const struct pgl_store_ops pgl_store_sqlite_ops;
extern const struct pgl_store_ops pgl_store_etcd_ops;

/* True when path is a "scheme://" URL (not a file path). */
bool pgl_store_is_url(const char *path);

/*
 * Checks, without opening anything, that path can be opened as a store:
 * for SQLite, that neither it nor its -wal and -shm files exist as anything
 * but regular files (a FIFO would hang the open).  A missing path passes
 * (the open names it).  Returns 0, or a negative code with one line naming
 * the path in err: -PGL_EFOREIGN, or -PGL_EINVAL for an unknown scheme.
 */
int pgl_store_check_path(const char *path, char *err, size_t errlen);

/*
 * Opens (and with PGL_STORE_CREATE creates) the store at path.  Creation is
 * atomic: the schema is built in a private file which is then linked into
 * place, so concurrent creators never see a half-made store.  A file that is
 * not a pglease store (foreign application id or tables, truncated, garbage)
 * is refused with -PGL_EFOREIGN, a newer schema with -PGL_ENEWER; neither is
 * ever modified.  A path "scheme://..." with no backend for its scheme is
 * refused with -PGL_EINVAL.  err receives one line naming the path.
 * Caller frees with pgl_store_close(); pgl_store_close(NULL) is a no-op.
 */
int pgl_store_open(const char *path, int flags, struct pgl_store **out,
				   char *err, size_t errlen);
void pgl_store_close(struct pgl_store *st);

/*
 * Re-reads the store's header from disk through SQLite's own descriptor (no
 * POSIX lock is lost): -PGL_EFOREIGN with a reason naming the file when it
 * is no longer a pglease store (overwritten, truncated), else 0.  Every
 * write transaction does the same under the write lock.
 */
int pgl_store_check_file(struct pgl_store *st, char *err, size_t errlen);

/* Why the last call of this handle failed (borrowed; valid until the next call). */
const char *pgl_store_errmsg(struct pgl_store *st);
/* The path the store was opened with (borrowed; valid until close). */
const char *pgl_store_path(struct pgl_store *st);

/* Sets the longest time a write may wait for the store's lock. */
void pgl_store_set_busy_ms(struct pgl_store *st, int ms);

/* Reads the lease row. */
int pgl_store_read_lease(struct pgl_store *st, struct pgl_lease *out);
int pgl_store_read_cluster(struct pgl_store *st, struct pgl_cluster *out);
int pgl_store_data_version(struct pgl_store *st, int64_t *out);

/*
 * Claims the lease: in one BEGIN IMMEDIATE transaction, re-reads the lease and
 * requires it to be exactly the version `seen` (term, renewals, holder), then
 * sets holder = me, term = seen->term + 1, renewals = 0, ttl_ms, and appends
 * an "acquired" event with `detail`.  Returns 0 and sets *new_term, or
 * -PGL_ECONFLICT when the lease changed, -PGL_EBUSY when locked.
 */
int pgl_store_claim(struct pgl_store *st, const struct pgl_lease *seen, const char *me,
					int64_t ttl_ms, const char *detail, int64_t *new_term);

/*
 * Renews: checks holder = me AND term = term, bumps renewals.  `t0_ms` is the
 * monotonic time taken before this call; on commit *deadline_ms becomes
 * t0_ms + ttl_ms - margin_ms.  Waits for the lock at most until
 * `wait_until_ms` (monotonic).  Returns -PGL_ENOTHOLDER when the lease is no
 * longer ours at that term (the caller must fence), -PGL_EBUSY or
 * -PGL_ESTORE when the store could not be written (the caller keeps its old
 * deadline).
 */
int pgl_store_renew(struct pgl_store *st, const char *me, int64_t term, int64_t t0_ms,
					int64_t ttl_ms, int64_t margin_ms, int64_t wait_until_ms,
					int64_t *deadline_ms, int64_t *renewals);

/*
 * Releases the lease held by me at term: holder = NULL, released_lsn = lsn
 * (NULL lsn_text for none), and a "released" event with detail.
 */
int pgl_store_release(struct pgl_store *st, const char *me, int64_t term,
					  const char *lsn_text, const char *detail);

/*
 * Inserts or updates a node row (heartbeat is bumped by the store).  Only
 * the host and port of n->conninfo are written, as "host=H port=P" quoted
 * for libpq (pgl_conninfo_format()); a conninfo without a valid host and
 * port is written as none, and the heartbeat still counts.
 */
int pgl_store_node_upsert(struct pgl_store *st, const struct pgl_node *n);
/* Reads all nodes ordered by name.  Caller frees *out with free(). */
int pgl_store_list_nodes(struct pgl_store *st, struct pgl_node **out, int *count);
int pgl_store_get_node(struct pgl_store *st, const char *name, struct pgl_node *out);
int pgl_store_remove_node(struct pgl_store *st, const char *name, int64_t term);

/* Appends an event. */
int pgl_store_event(struct pgl_store *st, int64_t term, const char *node, const char *kind,
					const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The newest n events in ascending id order.  Caller frees *out with free(). */
int pgl_store_list_events(struct pgl_store *st, int n, struct pgl_event **out, int *count);
/* Events with id > after_id (for watch). */
int pgl_store_events_after(struct pgl_store *st, int64_t after_id, struct pgl_event **out,
						   int *count);

int pgl_store_set_paused(struct pgl_store *st, bool paused, const char *node);
/* Records the cluster's system identifier once; -PGL_ECONFLICT if another is set. */
int pgl_store_set_sysid(struct pgl_store *st, const char *sysid);

/* Reads the switchover row (seq 0 when none was ever asked for). */
int pgl_store_read_switchover(struct pgl_store *st, struct pgl_switchover *out);

/*
 * Records a request (pglease switchover or failover --to) in one
 * transaction: refused with -PGL_ECONFLICT when the lease is no longer at
 * req->term, or when an earlier request for this term is still pending
 * (requested or handing over, and younger than its timeout).  A switchover
 * is stored as requested, a failover as handing over to its target.  Writes
 * a "switchover-requested" or "failover-requested" event.  Sets *seq.
 */
int pgl_store_request_switchover(struct pgl_store *st, const struct pgl_switchover *req,
								 int64_t *seq);

/*
 * Moves request seq to state (with target when not NULL, and detail), by
 * node, and writes the event "switchover-" + state.  -PGL_ECONFLICT when
 * the row holds another request by now, or the request already ended (done
 * or failed).
 */
int pgl_store_set_switchover(struct pgl_store *st, int64_t seq, enum pgl_sw_state state,
							 const char *target, const char *node, const char *detail);

/*
 * Opens a change notification for the store: poll pgl_watch_fd(*out) for
 * POLLIN, or call pgl_watch_wait().  A wake-up is a hint, never the truth:
 * confirm a change with pgl_store_data_version(), and re-read on a timer
 * anyway.  Returns 0, or -PGL_ESYS (errno set) or -PGL_ENOMEM.
 * Caller frees *out with pgl_watch_close().
 */
int pgl_store_watch_open(struct pgl_store *st, struct pgl_watch **out);

/*
 * `pglease store rebuild` (SQLite only): what it found and did.
 */
struct pgl_rebuild {
	int64_t old_term;			/* the damaged store's highest term, -1 when unreadable */
	int64_t record_term;		/* the highest lease_term in the node records (0: none) */
	int64_t max_timeline;		/* the highest timeline in the node records (0: none) */
	int64_t new_term;			/* the term the fresh store holds (nobody holds it) */
	int records;				/* node records read */
	char moved_to[1100];		/* where the damaged file went; "" when none */
};

/*
 * Replaces a damaged or lost SQLite store at path with a fresh one whose
 * lease term is above every term the damaged store (when it can still be
 * read at all), the node records beside it (lease_term) and their timelines
 * have seen; nobody holds it, and the first election on it is a
 * re-formation (never_held): the agents elect the most advanced node by its
 * data.  The damaged file is moved aside, never deleted: path, path-wal and
 * path-shm become path.damaged-STAMP (STAMP: UTC time), -wal and -shm
 * first, so that the fresh store never meets the old -wal; the fresh store
 * then takes path's place by rename(), so path never stops existing while
 * it has been there.  Refuses (-PGL_EINVAL, nothing changed) a store that
 * opens and reads as healthy, and a URL.  The caller has checked that no
 * agent runs.  When root, the fresh file is given the damaged file's (else
 * the directory's) owner.  Fills *out; err receives one line on failure.
 */
int pgl_store_rebuild(const char *path, struct pgl_rebuild *out, char *err, size_t errlen);

/*
 * The observer's expiry tracker (DESIGN.md section 2).  It remembers the
 * lease version (term, renewals, holder) and the monotonic time this node
 * first saw it; the lease is expired for this observer only once that same
 * version has been seen unchanged for at least ttl_ms.  Pure: no I/O.
 */
struct pgl_observer {
	bool valid;
	int64_t term, renewals;
	char holder[PGL_NAME_MAX];
	int64_t first_seen_ms;
};

/* Feeds one reading.  Returns true when the version changed. */
bool pgl_observer_see(struct pgl_observer *o, const struct pgl_lease *l, int64_t now_ms);
/* True when the current version has been unchanged for ttl_ms on this clock. */
bool pgl_observer_expired(const struct pgl_observer *o, int64_t now_ms, int64_t ttl_ms);
/* Milliseconds until expiry (0 if expired, INT64_MAX if nothing seen). */
int64_t pgl_observer_remaining(const struct pgl_observer *o, int64_t now_ms, int64_t ttl_ms);
/* The lease as the observer saw it (for the claim's compare-and-swap). */
bool pgl_observer_matches(const struct pgl_observer *o, const struct pgl_lease *l);

#endif
