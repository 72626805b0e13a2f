/*
 * decide.h — the agent's decisions as one pure state machine (DESIGN.md
 * sections 2 and 3).
 *
 * The agent observes (the lease row, the node rows, the local server, the
 * holder's alive lock, the result of its last job, signals), hands what it
 * saw and the monotonic time to pgl_decide_step(), and carries out the
 * actions it gets back.  Results of actions (a claim won or lost, a renewal,
 * a finished job) come back through pgl_decide_done().  Nothing here does
 * I/O, reads a clock or keeps a global: the same code runs in the agent and
 * in the unit tests on a fake clock.
 */
#ifndef PGLEASE_DECIDE_H
#define PGLEASE_DECIDE_H

#include <stdbool.h>
#include <stdint.h>

#include "pglease/common.h"
#include "pglease/store.h"

/*
 * Wait states a node reports once, with what to do, until it leaves them
 * (struct pgl_decider.said).
 */
enum {
	PGL_SAID_REFORM_WAIT = 1 << 0,	/* re-forming: waiting for the nodes the records name */
	PGL_SAID_REFORM_EMPTY = 1 << 1,	/* re-forming without data: waiting for a primary */
	PGL_SAID_TERM_LIMIT = 1 << 2,	/* the lease's term is at PGL_TERM_MAX */
	PGL_SAID_NO_DATA = 1 << 3,		/* no data, no primary to clone, no bootstrap */
	PGL_SAID_NO_HOLDER_ROW = 1 << 4,	/* the holder has no node record to follow */
};

/* The node's role, as the decision sees it. */
enum pgl_role {
	PGL_ROLE_STANDBY = 0,		/* following the holder, or waiting for one */
	PGL_ROLE_CANDIDATE,			/* the lease is claimable as seen from here */
	PGL_ROLE_PROMOTING,			/* holds a term; bootstrap or promotion under way */
	PGL_ROLE_PRIMARY,			/* holds a term; the server runs as primary */
	PGL_ROLE_FENCED,			/* gave up a term without a clean stop */
	PGL_ROLE_STOPPING,			/* SIGTERM seen: clean stop under way */
	PGL_ROLE_STOPPED,			/* done: the agent exits */
};

const char *pgl_role_name(enum pgl_role r);

/* The timings and identity the decisions use (copied from the config). */
struct pgl_decide_cfg {
	char node_name[PGL_NAME_MAX];
	int64_t priority;
	int64_t lease_ttl_ms;
	int64_t renew_interval_ms;
	int64_t fence_margin_ms;
	int64_t election_grace_ms;
	int64_t follow_timeout_ms;
	bool sync_replication;		/* pg.synchronous_standby_names is set: wait for silent standbys */
	int64_t max_lag_on_failover;	/* bytes; 0: no bound */
};

/* How the local server was started (or none). */
enum pgl_server_mode { PGL_SERVER_NONE = 0, PGL_SERVER_STANDBY, PGL_SERVER_PRIMARY };

/* The local server as observed this step. */
struct pgl_server_obs {
	bool has_data;				/* pgdata holds a complete data directory */
	bool standby_signal;		/* standby.signal exists */
	bool running;				/* the postmaster is our live child */
	bool exited;				/* the postmaster exited since the last step */
	enum pgl_server_mode mode;	/* how it was started */
	bool status_asked;			/* the status query was sent this step */
	bool status_ok;				/* the status query below answered */
	bool unresponsive;			/* asked, and no answer within the local bound (hung) */
	bool in_recovery;
	bool streaming;
	int sender_port;			/* port of the walsender it streams from */
	int64_t timeline;
	uint64_t receive_lsn;		/* max(received, replayed) on a standby; current on a primary */
};

/* Long operations, carried out by the agent; one at a time. */
enum pgl_job {
	PGL_JOB_NONE = 0,
	PGL_JOB_BOOTSTRAP,			/* initdb, start as primary, replication role */
	PGL_JOB_CLONE,				/* pg_basebackup from `node` */
	PGL_JOB_REWIND,				/* pg_rewind against `node` (stops the server first) */
	PGL_JOB_START,				/* start the server in `mode`, upstream `node` (may be "") */
	PGL_JOB_PROMOTE,			/* pg_promote() and wait until out of recovery */
	PGL_JOB_STOP,				/* clean stop: fast shutdown */
	PGL_JOB_HANDOVER,			/* switchover: CHECKPOINT, then fast shutdown (as STOP) */
};

const char *pgl_job_name(enum pgl_job j);

/* Why the store cannot be trusted any more (seen by the agent). */
enum pgl_store_fault { PGL_STORE_FINE = 0, PGL_STORE_REPLACED, PGL_STORE_CORRUPT };

/* Everything one step looks at.  Borrowed for the duration of the call. */
struct pgl_obs {
	int64_t now;				/* CLOCK_MONOTONIC ms */
	bool stop;					/* SIGTERM or SIGINT seen */
	enum pgl_store_fault store_fault;
	char store_why[4608];	/* the error line for a store fault */
	bool lease_ok;				/* the lease row below was read */
	struct pgl_lease lease;
	bool paused;				/* the cluster row says paused */
	bool nodes_ok;				/* the node rows below were read */
	const struct pgl_node *nodes;	/* every node row (NULL when there are none) */
	int n_nodes;
	bool holder_gone;			/* the lease holder's alive lock could be taken */
	bool sw_ok;					/* the switchover row below was read */
	struct pgl_switchover sw;
	struct pgl_server_obs server;
	enum pgl_job job;			/* the job running now, PGL_JOB_NONE when none */
};

/* What the agent is asked to do. */
enum pgl_act {
	PGL_ACT_LOG = 1,			/* log `text` at `level` */
	PGL_ACT_EVENT,				/* log `text` (when set) and record event `kind`/`detail` */
	PGL_ACT_RENEW,				/* renew `term`; report with pgl_decide_renewed() */
	PGL_ACT_FENCE,				/* kill the server now; record "fenced" with `detail` */
	PGL_ACT_CLAIM,				/* claim over `lease`; report with pgl_decide_claimed() */
	PGL_ACT_RELEASE,			/* release `term` at `lsn` ("" for none), reason `detail` */
	PGL_ACT_JOB,				/* start `job`; report with pgl_decide_job_done() */
	PGL_ACT_FOLLOW,				/* re-point the running standby at `node`; report */
	PGL_ACT_KILL,				/* immediate shutdown of the server */
	PGL_ACT_ARM_FENCE,			/* arm the in-server fence for the new primary */
	PGL_ACT_SYNC_SLOTS,			/* create missing slots, drop removed nodes' */
	PGL_ACT_HEARTBEAT,			/* write this node's row now */
	PGL_ACT_SWITCHOVER,			/* move request `seq` to `sw_state` (target `node` when
								 * has_node, reason `detail`); HANDING_OVER is reported
								 * with pgl_decide_switchover_set() */
	PGL_ACT_EXIT,				/* leave the loop; `fatal` for an error exit */
};

/* Log levels of actions (as log.h's). */
enum { PGL_ALOG_ERROR = 0, PGL_ALOG_WARN, PGL_ALOG_INFO, PGL_ALOG_DEBUG };

struct pgl_action {
	enum pgl_act type;
	int level;					/* for text */
	char text[600];				/* log line ("" for none) */
	char kind[32];				/* event kind */
	char detail[600];			/* event detail, fence or release reason */
	int64_t term;				/* the term the action is for (events, renew, release) */
	enum pgl_job job;
	enum pgl_server_mode mode;	/* PGL_JOB_START */
	struct pgl_node node;		/* the upstream of clone, rewind, start, follow */
	bool has_node;
	struct pgl_lease lease;		/* PGL_ACT_CLAIM: the version seen claimable */
	char lsn[PGL_LSN_TEXT_MAX];	/* PGL_ACT_RELEASE */
	int64_t seq;				/* PGL_ACT_SWITCHOVER */
	enum pgl_sw_state sw_state;
	bool fatal;					/* PGL_ACT_EXIT */
};

#define PGL_MAX_ACTIONS 24

struct pgl_actions {
	int n;
	struct pgl_action a[PGL_MAX_ACTIONS];
};

/* The result of a job. */
struct pgl_job_result {
	enum pgl_job job;
	int rc;						/* 0 or a negative PGL_E* code */
	bool unreachable;			/* REWIND: the source did not answer; nothing was changed */
	char text[512];				/* REWIND: what pg_rewind did; CLONE: what it copied */
	int64_t timeline;			/* PROMOTE: the new timeline */
	bool clean;					/* STOP: the server stopped with a shutdown checkpoint */
	char lsn[PGL_LSN_TEXT_MAX];	/* STOP: that checkpoint's LSN */
};

/* Liveness of another node: when its heartbeat counter last changed here. */
struct pgl_hb_seen {
	char name[PGL_NAME_MAX];
	int64_t heartbeat;
	int64_t changed_ms;
	int64_t first_ms;			/* when this node first read it: a change after it proves
								 * the node runs now (a record can be older than the store) */
};

/*
 * The decision state.  Initialise with pgl_decide_init(), free with
 * pgl_decide_free().  The agent may read every field; only this module
 * writes them.
 */
struct pgl_decider {
	struct pgl_decide_cfg cfg;
	enum pgl_role role;

	/* The lease as holder. */
	int64_t term;				/* held term, 0 when none */
	int64_t deadline_ms;		/* fence deadline */
	int64_t next_renew_ms;
	int64_t last_renew_ms;
	int64_t renew_retry_ms;		/* next renewal attempt after a failure */
	int64_t slots_checked_ms;
	int64_t hung_since_ms;		/* the running server first seen not answering, 0 if it does */

	/* The lease as observer. */
	struct pgl_observer obs;
	struct pgl_lease lease;		/* last read */
	int64_t seen_term;
	int64_t expired_since_ms;	/* when first judged claimable, 0 if not */
	int64_t rival_down_ms;		/* last seen deferring to a better node that is down */
	char expiry_rule[96];
	int64_t claim_retry_ms;
	int claim_failures;
	bool claiming;				/* a claim was asked for and not reported yet */

	/* Following. */
	char following[PGL_NAME_MAX];
	int64_t follow_term;
	int64_t follow_since_ms;
	int64_t not_streaming_since_ms;
	int rewind_failures;
	int start_failures;
	int64_t start_retry_ms;
	bool rewound;				/* the last job was a successful rewind: start next */

	/* The job asked for last (PGL_JOB_NONE once its result came back). */
	enum pgl_job job;
	enum pgl_server_mode job_mode;
	struct pgl_node job_node;
	bool job_has_node;
	bool has_data;				/* as seen by the last step */

	/* Liveness of the other nodes. */
	struct pgl_hb_seen *hb;
	int n_hb;
	int64_t next_heartbeat_ms;

	/* Switchover, as the primary handing over. */
	int64_t sw_seq;				/* the request being handled, 0 when none */
	int64_t sw_since_ms;		/* when it was first seen */
	int64_t sw_ended_seq;		/* the last request this node ended (handed over or failed) */
	bool sw_setting;			/* HANDING_OVER asked for and not reported yet */
	char sw_target[PGL_NAME_MAX];
	/* ... and as the node a switchover or failover --to names. */
	int64_t sw_claim_seq;		/* claimed because request sw_claim_seq named this node */
	int64_t sw_waiting_seq;		/* said once that another node was named */
	int64_t lag_said_term;		/* said for this term that it lags too far to stand */
	int said;					/* PGL_SAID_* bits: wait states already logged once */
	int64_t sw_seen_seq;		/* the newest request read, and when */
	int64_t sw_seen_ms;

	bool stop_asked;			/* clean stop under way */
	bool fatal;					/* stopping because of an error */
	int64_t wake_ms;			/* when the next step is due at the latest */
};

void pgl_decide_init(struct pgl_decider *dc, const struct pgl_decide_cfg *cfg);
void pgl_decide_free(struct pgl_decider *dc);

/*
 * One step: reads obs, updates dc and appends actions to out (which the
 * caller empties).  Sets dc->wake_ms.
 */
void pgl_decide_step(struct pgl_decider *dc, const struct pgl_obs *obs, struct pgl_actions *out);

/*
 * Only the holder's duties (renew when due, fence at the deadline): what may
 * run while the agent waits inside a job.
 */
void pgl_decide_holder(struct pgl_decider *dc, int64_t now, struct pgl_actions *out);

/* Results.  t0 is the monotonic time taken before the store transaction began. */
void pgl_decide_claimed(struct pgl_decider *dc, int rc, int64_t new_term, int64_t t0,
						const char *why, struct pgl_actions *out);
void pgl_decide_renewed(struct pgl_decider *dc, int rc, int64_t t0, int64_t deadline,
						const char *why, int64_t now, struct pgl_actions *out);
void pgl_decide_followed(struct pgl_decider *dc, const struct pgl_node *h, int rc, int64_t now,
						 struct pgl_actions *out);
void pgl_decide_job_done(struct pgl_decider *dc, const struct pgl_job_result *r, int64_t now,
						 struct pgl_actions *out);

void pgl_decide_switchover_set(struct pgl_decider *dc, int rc, int64_t now,
							   struct pgl_actions *out);

/* True when `name`'s heartbeat was seen changing within ttl_ms before now. */
bool pgl_decide_node_live(const struct pgl_decider *dc, const char *name, int64_t now,
						  int64_t ttl_ms);

/*
 * The CLI's rule for a live primary (see `pglease primary --help`): the
 * lease has a holder with a node row, its heartbeat is at most 2 TTLs old
 * and the lease was renewed within one TTL, by the wall-clock ages the
 * store reports (for people and scripts: the agents never use it).
 * Returns true, or false with the reason in why.
 */
bool pgl_decide_primary_live(const struct pgl_lease *l, const struct pgl_node *h,
							 char *why, size_t whylen);

/*
 * The CLI's rule for a reachable node (`pglease status`): its heartbeat is
 * at most one lease TTL old by the wall clock.
 */
bool pgl_decide_node_reachable(const struct pgl_lease *l, const struct pgl_node *n);

/*
 * The CLI's rule for a healthy node (`pglease health`): a heartbeat within
 * three TTLs, and a role that agrees with the lease.  Writes one line into
 * msg; true when healthy.
 */
bool pgl_decide_node_healthy(const struct pgl_lease *l, const struct pgl_node *n, char *msg,
							 size_t len);

/*
 * The standby a switchover hands over to (the agent's and the CLI's rule):
 * `want` when named, else the best (received LSN, priority, name) of the
 * nodes that qualify: live (as live() says), not the primary, priority > 0,
 * a standby streaming from `primary`, and at most max_lag bytes behind
 * primary_lsn (max_lag < 0: no bound; an unknown position never qualifies
 * then).  Returns the node's index; else -1 when that may change by itself
 * (lagging, not streaming yet), -2 when it cannot (unknown node, the
 * primary itself, priority 0), with one line in why.
 */
int pgl_decide_switchover_target(const struct pgl_node *nodes, int n,
								 bool (*live)(const struct pgl_node *n, const void *ctx),
								 const void *ctx, const char *primary, uint64_t primary_lsn,
								 const char *want, int64_t max_lag, char *why, size_t len);

#endif
