/*
 * test_decide.c — the agent's decision module (decide.c) on a fake clock:
 * table-driven cases for each rule of DESIGN.md sections 2 and 3 and their
 * edges, then a randomized simulation of several agents running the real
 * decisions against a real SQLite store, with stalls, crashes, clean stops
 * and lost compare-and-swaps, asserting one holder per term and that every
 * holder's deadline passes before another node claims.
 *
 * Built twice: test_decide runs everything; test_decide_broken links a
 * decide.c built with PGL_DECIDE_BROKEN_FOR_TEST (observers wait half the
 * TTL) and passes only if the simulation catches it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "pglease/decide.h"
#include "pglease/store.h"

/* ---- helpers ---- */

static const struct pgl_decide_cfg base_cfg = {
	.node_name = "me", .priority = 100, .lease_ttl_ms = 5000, .renew_interval_ms = 1000,
	.fence_margin_ms = 1000, .election_grace_ms = 1000, .follow_timeout_ms = 10000,
};

static struct pgl_decider dc;
static struct pgl_actions acts;
static struct pgl_node rows[8];
static struct pgl_obs ob;

/* A fresh decider and an observation: a running standby with data, lease held by pg1. */
static void
reset(void)
{
	pgl_decide_free(&dc);
	pgl_decide_init(&dc, &base_cfg);
	memset(&acts, 0, sizeof(acts));
	memset(rows, 0, sizeof(rows));
	memset(&ob, 0, sizeof(ob));
	ob.now = 100000;
	ob.lease_ok = true;
	ob.nodes_ok = true;
	ob.nodes = rows;
	ob.server.has_data = ob.server.standby_signal = ob.server.running = true;
	ob.server.mode = PGL_SERVER_STANDBY;
	ob.server.status_ok = ob.server.in_recovery = true;
	ob.server.receive_lsn = 0x3000000;
	strcpy(ob.lease.holder, "pg1");
	ob.lease.term = 4;
	ob.lease.renewals = 10;
	ob.lease.ttl_ms = 5000;
}

/* Adds a node row. */
static struct pgl_node *
row(const char *name, const char *role, uint64_t lsn, int64_t prio, int64_t hb)
{
	struct pgl_node *n = &rows[ob.n_nodes++];

	memset(n, 0, sizeof(*n));
	strcpy(n->name, name);
	strcpy(n->role, role);
	strcpy(n->state, strcmp(role, "standby") == 0 ? "streaming" : "running");
	snprintf(n->conninfo, sizeof(n->conninfo), "host=10.0.0.%d port=5432", ob.n_nodes);
	n->receive_lsn_int = lsn;
	n->priority = prio;
	n->heartbeat = hb;
	return n;
}

static void
step(void)
{
	acts.n = 0;
	pgl_decide_step(&dc, &ob, &acts);
}

/* The first action of type t (and job j unless PGL_JOB_NONE), or NULL. */
static const struct pgl_action *
find(enum pgl_act t, enum pgl_job j)
{
	for (int i = 0; i < acts.n; i++)
		if (acts.a[i].type == t && (j == PGL_JOB_NONE || acts.a[i].job == j))
			return &acts.a[i];
	return NULL;
}

static bool
has(enum pgl_act t)
{
	return find(t, PGL_JOB_NONE) != NULL;
}

static bool
has_job(enum pgl_job j)
{
	return find(PGL_ACT_JOB, j) != NULL;
}

static bool
has_event(const char *kind)
{
	for (int i = 0; i < acts.n; i++)
		if (acts.a[i].type == PGL_ACT_EVENT && strcmp(acts.a[i].kind, kind) == 0)
			return true;
	return false;
}

/* Makes this node the holder of term 5, renewed at `at`. */
static void
hold_term(int64_t at)
{
	struct pgl_actions tmp = { 0 };

	dc.has_data = true;
	pgl_decide_claimed(&dc, 0, 5, at, NULL, &tmp);
	dc.job = PGL_JOB_NONE;
	dc.role = PGL_ROLE_PRIMARY;
	strcpy(ob.lease.holder, "me");
	ob.lease.term = 5;
	ob.server.mode = PGL_SERVER_PRIMARY;
	ob.server.in_recovery = false;
}

/* Feeds a job result. */
static void
job_done(enum pgl_job j, int rc)
{
	struct pgl_job_result r = { .job = j, .rc = rc, .timeline = 3 };

	acts.n = 0;
	pgl_decide_job_done(&dc, &r, ob.now, &acts);
}

/* ---- the holder: renew and fence ---- */

static void
test_holder_renew_and_deadline(void)
{
	/* t0 = 100000: deadline = t0 + 5000 - 1000, next renewal at t0 + 1000. */
	static const struct {
		int64_t at;
		bool renew, fence;
	} cases[] = {
		{ 100999, false, false },
		{ 101000, true, false },
		{ 103999, true, false },
		{ 104000, false, true },		/* the deadline exactly reached */
		{ 109000, false, true },
	};

	for (size_t i = 0; i < PGL_ARRAY_LEN(cases); i++) {
		reset();
		hold_term(100000);
		ob.now = cases[i].at;
		acts.n = 0;
		pgl_decide_holder(&dc, ob.now, &acts);
		CHECKF(has(PGL_ACT_RENEW) == cases[i].renew && has(PGL_ACT_FENCE) == cases[i].fence,
			   "at %" PRId64 ": renew %d fence %d", cases[i].at, has(PGL_ACT_RENEW),
			   has(PGL_ACT_FENCE));
		if (cases[i].fence)
			CHECK(dc.term == 0 && dc.role == PGL_ROLE_FENCED && acts.a[0].type == PGL_ACT_FENCE);
	}
}

static void
test_renew_results(void)
{
	reset();
	hold_term(100000);
	acts.n = 0;
	pgl_decide_renewed(&dc, 0, 101000, 105000, NULL, 101010, &acts);
	CHECK(dc.deadline_ms == 105000 && dc.next_renew_ms == 102000 && acts.n == 0);
	/* Late by more than half an interval: a warning; by a whole one: an event. */
	pgl_decide_renewed(&dc, 0, 102600, 106600, NULL, 102600, &acts);
	CHECK(acts.n == 1 && acts.a[0].type == PGL_ACT_LOG && !has_event("renewed-late"));
	acts.n = 0;
	pgl_decide_renewed(&dc, 0, 104700, 108700, NULL, 104700, &acts);
	CHECK(has_event("renewed-late"));
	/* Locked store: keep the deadline, retry soon, no fence before it. */
	acts.n = 0;
	pgl_decide_renewed(&dc, -PGL_EBUSY, 105700, 0, "database is locked", 105800, &acts);
	CHECK(dc.term == 5 && dc.deadline_ms == 108700 && !has(PGL_ACT_FENCE));
	acts.n = 0;
	pgl_decide_holder(&dc, 105850, &acts);
	CHECK(!has(PGL_ACT_RENEW));					/* backs off 100 ms */
	pgl_decide_holder(&dc, 105900, &acts);
	CHECK(has(PGL_ACT_RENEW));
	/* Not the holder any more: fence at once. */
	acts.n = 0;
	pgl_decide_renewed(&dc, -PGL_ENOTHOLDER, 106000, 0, NULL, 106000, &acts);
	CHECK(dc.term == 0 && has(PGL_ACT_FENCE));
}

static void
test_higher_term_fences(void)
{
	reset();
	hold_term(100000);
	ob.now = 100500;
	ob.lease.term = 6;
	strcpy(ob.lease.holder, "pg2");
	step();
	CHECK(has(PGL_ACT_FENCE) && dc.term == 0);
	CHECK(strstr(find(PGL_ACT_FENCE, 0)->detail, "higher term") != NULL);
	/* Same term, another holder (cannot happen, but fences too). */
	reset();
	hold_term(100000);
	strcpy(ob.lease.holder, "pg2");
	step();
	CHECK(has(PGL_ACT_FENCE));
}

/* ---- claimability ---- */

static void
test_observer_expiry_edges(void)
{
	reset();
	row("pg1", "primary", 0x3000000, 100, 7);
	step();								/* first sight of version (4, 10, pg1) */
	CHECK(dc.expired_since_ms == 0 && !has(PGL_ACT_CLAIM));
	ob.now += 4999;
	step();
	CHECK(dc.expired_since_ms == 0);	/* one ms short of the TTL */
	ob.now += 1;
	step();
	CHECK(dc.expired_since_ms == ob.now && strstr(dc.expiry_rule, "unchanged for 5000 ms"));
	/* The holder's TTL in the row counts when longer than ours. */
	reset();
	ob.lease.ttl_ms = 9000;
	step();
	ob.now += 8999;
	step();
	CHECK(dc.expired_since_ms == 0);
	ob.now += 1;
	step();
	CHECK(dc.expired_since_ms != 0);
	/* A renewal (new version) restarts the wait. */
	reset();
	step();
	ob.now += 4000;
	ob.lease.renewals++;
	step();
	ob.now += 4000;
	step();
	CHECK(dc.expired_since_ms == 0);
}

static void
test_holder_gone_and_own_term(void)
{
	reset();
	ob.holder_gone = true;
	step();
	CHECK(dc.expired_since_ms != 0 && strcmp(dc.expiry_rule, "holder's processes gone") == 0);
	CHECK(has(PGL_ACT_CLAIM));
	CHECK(find(PGL_ACT_CLAIM, 0)->lease.term == 4);		/* a CAS over the version seen */
	/* A restarted former holder never resumes its term: it claims a new one over it. */
	reset();
	strcpy(ob.lease.holder, "me");
	step();
	CHECK(has(PGL_ACT_CLAIM) && strcmp(dc.expiry_rule, "own previous term is dead") == 0);
	CHECK(dc.term == 0);
	acts.n = 0;
	pgl_decide_claimed(&dc, 0, 5, ob.now, NULL, &acts);
	CHECK(dc.term == 5 && has_job(PGL_JOB_PROMOTE));
}

/*
 * A lease the store expires itself (etcd): no observer's clock times it
 * out, however long it stays unchanged; the store's expiry, a release or
 * the holder's death seen here make it claimable.
 */
static void
test_store_expires(void)
{
	reset();
	ob.lease.store_expires = true;
	row("pg1", "primary", 0x3000000, 100, 7);
	step();
	ob.now += 60000;				/* a minute without a visible renewal */
	step();
	CHECK(dc.expired_since_ms == 0 && !has(PGL_ACT_CLAIM));
	/* and no busy loop: the next wake is the heartbeat's, not "now" */
	CHECKF(dc.wake_ms > ob.now, "wake at %lld, now %lld", (long long) dc.wake_ms,
		   (long long) ob.now);
	ob.lease.holder_expired = true;
	step();
	CHECK(dc.expired_since_ms == ob.now &&
		  strcmp(dc.expiry_rule, "holder's lease expired in the store") == 0);
	CHECK(has(PGL_ACT_CLAIM) && find(PGL_ACT_CLAIM, 0)->lease.term == 4);
	/* a release still hands over at once */
	reset();
	ob.lease.store_expires = true;
	ob.lease.holder[0] = '\0';
	step();
	CHECK(has(PGL_ACT_CLAIM) && strcmp(dc.expiry_rule, "lease released") == 0);
	/* proof of death (a holder on this host) still counts */
	reset();
	ob.lease.store_expires = true;
	ob.holder_gone = true;
	step();
	CHECK(has(PGL_ACT_CLAIM) && strcmp(dc.expiry_rule, "holder's processes gone") == 0);
}

/* The election: each case is this node ("me") and one rival "b". */
static void
test_election_table(void)
{
	static const struct {
		const char *what;
		uint64_t my_lsn, b_lsn;
		int64_t my_prio, b_prio;
		bool b_fresh;			/* b heartbeated after the expiry */
		bool b_live;			/* b heartbeated within the TTL at all */
		int64_t waited;			/* ms since the expiry was first seen */
		bool claim;
	} cases[] = {
		{ "best and all fresh", 0x5000, 0x4000, 100, 100, true, true, 0, true },
		{ "best, rival stale: waits", 0x5000, 0x4000, 100, 100, false, true, 0, false },
		{ "best, rival stale, grace over", 0x5000, 0x4000, 100, 100, false, true, 1000, true },
		{ "behind a fresh better rival", 0x4000, 0x5000, 100, 100, true, true, 1000, false },
		{ "behind it for 3 graces", 0x4000, 0x5000, 100, 100, true, true, 3000, true },
		{ "behind a stale better rival, grace", 0x4000, 0x5000, 100, 100, false, true, 1000, true },
		{ "equal LSN, higher priority", 0x5000, 0x5000, 200, 100, true, true, 0, true },
		{ "equal LSN, lower priority", 0x5000, 0x5000, 100, 200, true, true, 0, false },
		{ "equal LSN and priority: name", 0x5000, 0x5000, 100, 100, true, true, 0, false },
		{ "rival with priority 0", 0x4000, 0x5000, 100, 0, true, true, 0, true },
		{ "rival not live", 0x4000, 0x5000, 100, 100, false, false, 0, true },
		{ "me priority 0", 0x5000, 0x4000, 0, 100, true, true, 9000, false },
	};

	for (size_t i = 0; i < PGL_ARRAY_LEN(cases); i++) {
		struct pgl_decide_cfg c = base_cfg;
		struct pgl_node *b;
		bool claimed;

		reset();
		strcpy(c.node_name, "me");		/* "b" < "me" by name */
		c.priority = cases[i].my_prio;
		pgl_decide_init(&dc, &c);
		ob.server.receive_lsn = cases[i].my_lsn;
		b = row("b", "standby", cases[i].b_lsn, cases[i].b_prio, 1);
		row("pg1", "primary", 0x3000, 100, 1);
		if (!cases[i].b_live) {
			step();						/* b seen once ... */
			ob.now += 6000;				/* ... and never again: not live */
			ob.lease.renewals++;		/* while the holder renewed */
		}
		step();							/* the first sight of everyone */
		ob.holder_gone = true;
		ob.now += 10;
		step();							/* expired here: publishes its own LSN */
		claimed = has(PGL_ACT_CLAIM);	/* at once when nobody else stands */
		if (cases[i].b_fresh)
			b->heartbeat++;				/* b publishes after the expiry */
		ob.now += 5 + cases[i].waited;
		step();
		claimed |= has(PGL_ACT_CLAIM);
		CHECKF(claimed == cases[i].claim, "%s: claim %d", cases[i].what, claimed);
	}
}

static void
test_fresh_heartbeat_needed_before_best_claims(void)
{
	struct pgl_node *b;

	reset();
	b = row("b", "standby", 0x1000, 100, 1);
	row("pg1", "primary", 0x3000, 100, 1);
	step();
	ob.holder_gone = true;
	ob.now += 10;
	step();
	/* Publishes its own LSN at once, and waits for b's fresh one. */
	CHECK(has(PGL_ACT_HEARTBEAT) && !has(PGL_ACT_CLAIM));
	b->heartbeat++;
	ob.now += 50;
	step();
	CHECK(has(PGL_ACT_CLAIM));
}

/*
 * A better candidate whose server is down (crashed, restarting, stopped for
 * a rewind) still ranks by the LSN it published: the others wait for it to
 * run again, for at most 2 TTLs.  Found by the nemesis: a behind standby won
 * while the one holding an acknowledged commit was restarting.
 */
static struct pgl_node *
expire_with(const struct pgl_decide_cfg *c, uint64_t my_lsn, const char *b_role, uint64_t b_lsn,
			const char *b_state)
{
	struct pgl_node *b;

	reset();
	pgl_decide_init(&dc, c);
	ob.server.receive_lsn = my_lsn;
	b = row("b", b_role, b_lsn, 100, 1);
	strcpy(b->state, b_state);
	row("pg1", "primary", 0x3000, 100, 1);
	step();
	ob.holder_gone = true;
	ob.now += 10;
	step();
	return b;
}

static struct pgl_node *
expire_with_down_rival(uint64_t b_lsn, const char *b_state)
{
	return expire_with(&base_cfg, 0x4000, "unknown", b_lsn, b_state);
}

/* Advances the clock by ms in 100 ms steps, b heartbeating; true if a claim was asked. */
static bool
run_for(struct pgl_node *b, int64_t ms)
{
	bool claimed = false;

	for (int64_t t = 0; t < ms && !claimed; t += 100) {
		ob.now += 100;
		b->heartbeat++;
		step();
		claimed = has(PGL_ACT_CLAIM);
	}
	return claimed;
}

static void
test_down_rival_defers(void)
{
	struct pgl_node *b;
	bool logged = false;

	/* Better and down: no claim within 3 graces (the old rule claimed here). */
	b = expire_with_down_rival(0x5000, "down");
	for (int i = 0; i < acts.n; i++)
		logged |= acts.a[i].type == PGL_ACT_LOG && strstr(acts.a[i].text, "deferring to b");
	CHECK(logged);
	CHECK(!run_for(b, 3500));
	/* It runs again: the better fresh rival gets 3 graces from then to claim. */
	strcpy(b->role, "standby");
	strcpy(b->state, "recovering");
	CHECK(!run_for(b, 2500));
	CHECK(run_for(b, 1000));

	/* Down for good: after 2 TTLs from the expiry, availability wins. */
	b = expire_with_down_rival(0x5000, "starting");
	CHECK(!run_for(b, 9800));
	CHECK(run_for(b, 400));

	/* A down rival that is behind, stopping for good, not live, or empty: no wait. */
	b = expire_with_down_rival(0x3000, "down");
	CHECK(has(PGL_ACT_CLAIM) || run_for(b, 200));
	b = expire_with_down_rival(0x5000, "stopped");
	CHECK(has(PGL_ACT_CLAIM) || run_for(b, 200));
	b = expire_with_down_rival(0, "cloning");
	CHECK(has(PGL_ACT_CLAIM) || run_for(b, 200));
	b = expire_with_down_rival(0x5000, "down");
	ob.now += 6000;				/* b's heartbeat stops: not live after a TTL */
	step();
	CHECK(has(PGL_ACT_CLAIM) || (ob.now += 100, step(), has(PGL_ACT_CLAIM)));
}

/*
 * With synchronous replication, a standby that was alive until the expiry and
 * is silent since (frozen right after acknowledging the last commits) holds
 * the others back for up to 2 TTLs; without, the best claims after a grace.
 * Found by the nemesis: the primary killed while the one standby that had
 * acknowledged its last commit was stopped.
 */
static void
test_silent_standby_sync(void)
{
	for (int sync = 0; sync <= 1; sync++) {
		struct pgl_decide_cfg c = base_cfg;
		bool claimed = false;
		int64_t t;

		c.sync_replication = sync;
		/* b's last published LSN is behind this node's. */
		expire_with(&c, 0x5000, "standby", 0x4000, "streaming");
		for (t = 0; t < 12000 && !claimed; t += 100) {
			ob.now += 100;				/* b stays silent: no heartbeat */
			step();
			claimed = has(PGL_ACT_CLAIM);
		}
		if (sync)
			CHECKF(claimed && t >= 9900, "sync: claimed %d after %" PRId64 " ms", claimed, t);
		else
			CHECKF(claimed && t <= 1100, "async: claimed %d after %" PRId64 " ms", claimed, t);
	}

	/* The silent standby speaks again, ahead: it is the better candidate. */
	{
		struct pgl_decide_cfg c = base_cfg;
		struct pgl_node *b;

		c.sync_replication = true;
		b = expire_with(&c, 0x5000, "standby", 0x4000, "streaming");
		ob.now += 3000;
		step();
		CHECK(!has(PGL_ACT_CLAIM));
		b->heartbeat++;
		b->receive_lsn_int = 0x6000;
		ob.now += 100;
		step();
		CHECK(!has(PGL_ACT_CLAIM));		/* defers to the fresher, better b */
	}
}

static void
test_released_lsn(void)
{
	reset();
	ob.lease.holder[0] = '\0';
	ob.lease.has_released_lsn = true;
	ob.lease.released_lsn_int = 0x3000000;
	strcpy(ob.lease.released_lsn, "0/3000000");
	ob.server.receive_lsn = 0x3000000;		/* at it, not past it */
	step();
	CHECK(dc.expired_since_ms != 0 && !has(PGL_ACT_CLAIM));
	ob.now += 60000;
	step();
	CHECK(!has(PGL_ACT_CLAIM));
	ob.server.receive_lsn = 0x3000028;
	step();
	CHECK(has(PGL_ACT_CLAIM) && strstr(dc.expiry_rule, "released at 0/3000000"));
}

static void
test_paused_and_not_a_candidate(void)
{
	reset();
	ob.paused = true;
	ob.holder_gone = true;
	step();
	ob.now += 60000;
	step();
	CHECK(!has(PGL_ACT_CLAIM));
	/* Not running as a standby: not a candidate; a stopped data directory is started. */
	reset();
	ob.holder_gone = true;
	ob.server.running = false;
	ob.server.status_ok = false;
	step();
	CHECK(!has(PGL_ACT_CLAIM) && has_job(PGL_JOB_START));
	/* No data and a cluster that exists: wait for a primary to clone from. */
	reset();
	ob.holder_gone = true;
	ob.server.has_data = ob.server.running = ob.server.status_ok = false;
	step();
	CHECK(!has(PGL_ACT_CLAIM) && !has(PGL_ACT_JOB));
}

static void
test_bootstrap(void)
{
	reset();
	memset(&ob.lease, 0, sizeof(ob.lease));
	ob.server.has_data = ob.server.running = ob.server.status_ok = false;
	step();
	CHECK(has(PGL_ACT_CLAIM) && strcmp(dc.expiry_rule, "no lease yet") == 0);
	acts.n = 0;
	pgl_decide_claimed(&dc, 0, 1, ob.now, NULL, &acts);
	CHECK(has_job(PGL_JOB_BOOTSTRAP) && dc.role == PGL_ROLE_PROMOTING);
	job_done(PGL_JOB_BOOTSTRAP, 0);
	CHECK(has(PGL_ACT_ARM_FENCE) && has(PGL_ACT_SYNC_SLOTS) && dc.role == PGL_ROLE_PRIMARY);
	/* Another empty node at bootstrap is a rival; a stopped one is not. */
	reset();
	memset(&ob.lease, 0, sizeof(ob.lease));
	ob.server.has_data = ob.server.running = ob.server.status_ok = false;
	strcpy(row("a", "unknown", 0, 100, 1)->state, "empty");
	step();
	CHECK(!has(PGL_ACT_CLAIM));				/* "a" ranks first by name */
}

/* ---- a lost store: re-forming (issue 24) ---- */

static bool
logged(const char *what)
{
	for (int i = 0; i < acts.n; i++)
		if (acts.a[i].type == PGL_ACT_LOG && strstr(acts.a[i].text, what))
			return true;
	return false;
}

/*
 * A store that never granted a term (new after a loss, or rebuilt at term
 * 9) while nodes have data: "b", more advanced by its record, has not
 * reported yet (its record is older than the store).
 */
static struct pgl_node *
reform_setup(int64_t term)
{
	struct pgl_node *b;

	reset();
	memset(&ob.lease, 0, sizeof(ob.lease));
	ob.lease.term = term;
	ob.lease.never_held = true;
	ob.server.timeline = 3;
	b = row("b", "unknown", 0x9000000, 100, 7);
	strcpy(b->state, "stopped");
	b->timeline = 3;
	return b;
}

static void
test_reform_waits_for_the_most_advanced(void)
{
	struct pgl_node *b;
	bool said = false, claimed = false;
	int says = 0;

	for (int term = 0; term <= 9; term += 9) {
		b = reform_setup(term);
		step();
		said = logged("re-forming the cluster");
		claimed = has(PGL_ACT_CLAIM);
		CHECKF(said && !claimed, "term %d: first step waits and says so", term);
		/* Not reported: nobody claims, and it is said only once. */
		says = 0;
		for (int i = 0; i < 30 && !claimed; i++) {
			ob.now += 100;
			step();
			claimed = has(PGL_ACT_CLAIM);
			says += logged("re-forming the cluster");
		}
		CHECKF(!claimed && says == 0, "term %d: claimed %d says %d", term, claimed, says);
		/* b reports and runs as a standby, more advanced: this node leaves it to b. */
		b->heartbeat++;
		strcpy(b->role, "standby");
		strcpy(b->state, "recovering");
		for (int i = 0; i < 25 && !claimed; i++) {
			ob.now += 100;
			b->heartbeat++;
			step();
			claimed = has(PGL_ACT_CLAIM);
		}
		CHECKF(!claimed, "term %d: claimed over a better node that stands", term);
	}
	/* b is behind: once it reported and runs, this node claims at once. */
	b = reform_setup(9);
	b->receive_lsn_int = 0x1000;
	step();
	CHECK(!has(PGL_ACT_CLAIM));
	b->heartbeat++;
	strcpy(b->role, "standby");
	strcpy(b->state, "recovering");
	ob.now += 100;
	step();
	CHECK(has(PGL_ACT_CLAIM) && find(PGL_ACT_CLAIM, 0)->lease.term == 9);
	/* A higher timeline wins over a longer WAL when re-forming. */
	b = reform_setup(9);
	b->receive_lsn_int = 0x1000;
	b->timeline = 4;
	step();
	b->heartbeat++;
	strcpy(b->role, "standby");
	strcpy(b->state, "recovering");
	ob.now += 100;
	step();
	CHECK(!has(PGL_ACT_CLAIM));
	/* b never comes: after the window (3 TTLs here), availability wins. */
	b = reform_setup(0);
	claimed = false;
	for (int t = 0; t < 14900 && !claimed; t += 100) {
		ob.now += 100;
		step();
		claimed = has(PGL_ACT_CLAIM);
	}
	CHECKF(!claimed, "claimed inside the window");
	for (int t = 0; t < 3000 && !claimed; t += 100) {
		ob.now += 100;
		step();
		claimed = has(PGL_ACT_CLAIM);
	}
	CHECK(claimed);
}

static void
test_reform_without_data_never_bootstraps(void)
{
	bool claimed = false;
	int says = 0;

	reform_setup(0);
	ob.server.has_data = ob.server.running = ob.server.status_ok = false;
	for (int i = 0; i < 200 && !claimed; i++) {
		ob.now += 100;
		step();
		claimed = has(PGL_ACT_CLAIM);
		says += logged("waits for one of them to become primary");
	}
	CHECKF(!claimed && says == 1, "claimed %d says %d", claimed, says);
	/* No data, a store that was held, no holder: said once, with the fix. */
	reset();
	ob.lease.holder[0] = '\0';
	ob.server.has_data = ob.server.running = ob.server.status_ok = false;
	says = 0;
	for (int i = 0; i < 50; i++) {
		ob.now += 100;
		step();
		says += logged("no live holder to clone from");
		CHECK(!has(PGL_ACT_CLAIM));
	}
	CHECKF(says == 1, "said %d times", says);
	/* Empty nodes on a store that never held a term, with no data anywhere: a bootstrap. */
	reset();
	memset(&ob.lease, 0, sizeof(ob.lease));
	ob.lease.never_held = true;
	ob.server.has_data = ob.server.running = ob.server.status_ok = false;
	strcpy(row("x", "unknown", 0, 100, 1)->state, "empty");
	step();
	CHECK(has(PGL_ACT_CLAIM));
}

static void
test_term_limit_never_claimed(void)
{
	int says = 0;

	reset();
	ob.lease.holder[0] = '\0';
	ob.lease.term = PGL_TERM_MAX;
	for (int i = 0; i < 40; i++) {
		ob.now += 100;
		step();
		CHECK(!has(PGL_ACT_CLAIM));
		says += logged("at pglease's limit");
	}
	CHECKF(says == 1, "said %d times", says);
	reset();
	ob.lease.holder[0] = '\0';
	ob.lease.term = PGL_TERM_MAX - 1;		/* the last term that may still be granted */
	step();
	CHECK(has(PGL_ACT_CLAIM));
}

static void
test_holder_without_record_said_once(void)
{
	int says = 0;

	reset();
	for (int i = 0; i < 20; i++) {
		ob.now += 100;
		ob.lease.renewals++;
		step();
		says += logged("which has no node record");
	}
	CHECKF(says == 1, "said %d times", says);
}

/* ---- promotion and the primary ---- */

static void
test_promotion_results(void)
{
	reset();
	ob.holder_gone = true;
	step();
	acts.n = 0;
	pgl_decide_claimed(&dc, 0, 5, ob.now, NULL, &acts);
	CHECK(has_job(PGL_JOB_PROMOTE));
	job_done(PGL_JOB_PROMOTE, 0);
	CHECK(has_event("promoted") && has(PGL_ACT_ARM_FENCE) && dc.term == 5);
	/* A failed promotion kills the server and gives the term back. */
	reset();
	ob.holder_gone = true;
	step();
	pgl_decide_claimed(&dc, 0, 5, ob.now, NULL, &acts);
	job_done(PGL_JOB_PROMOTE, -PGL_ETIMEOUT);
	CHECK(has_event("promotion-failed") && has(PGL_ACT_KILL) && has(PGL_ACT_RELEASE));
	CHECK(dc.term == 0);
	/* Lost CAS and store errors: no term, a back-off after errors. */
	reset();
	pgl_decide_claimed(&dc, -PGL_ECONFLICT, 0, ob.now, NULL, &acts);
	CHECK(dc.term == 0 && dc.claim_retry_ms == 0);
	pgl_decide_claimed(&dc, -PGL_EBUSY, 0, ob.now, NULL, &acts);
	CHECK(dc.term == 0 && dc.claim_retry_ms == ob.now + 250);
}

static void
test_primary_crash_restart(void)
{
	reset();
	hold_term(ob.now);
	ob.server.running = false;
	ob.now += 10;
	step();
	CHECK(has_event("restarted") && has_job(PGL_JOB_START) && dc.term == 5);
	CHECK(find(PGL_ACT_JOB, PGL_JOB_START)->mode == PGL_SERVER_PRIMARY);
	job_done(PGL_JOB_START, 0);
	CHECK(has(PGL_ACT_ARM_FENCE) && dc.term == 5);
	/* Cannot restart: kill and release. */
	reset();
	hold_term(ob.now);
	ob.server.running = false;
	step();
	job_done(PGL_JOB_START, -PGL_EPG);
	CHECK(has(PGL_ACT_KILL) && has(PGL_ACT_RELEASE) && dc.term == 0);
	/* The primary re-checks its slots every 5 s. */
	reset();
	hold_term(ob.now);
	dc.deadline_ms = dc.next_renew_ms = ob.now + 100000;
	dc.slots_checked_ms = ob.now;
	ob.now += 5001;
	step();
	CHECK(has(PGL_ACT_SYNC_SLOTS));
}

/* A holder with a distant deadline whose server did not answer this step; returns now. */
static int64_t
hung_from_now(void)
{
	reset();
	hold_term(ob.now);
	dc.deadline_ms = dc.next_renew_ms = ob.now + 100000;
	ob.server.status_asked = true;
	ob.server.status_ok = false;
	ob.server.unresponsive = true;
	step();
	return ob.now;
}

/* A primary whose server does not answer for a whole TTL gives up its term; a slow answer does not. */
static void
test_hung_primary_fences(void)
{
	int64_t t0;

	t0 = hung_from_now();
	CHECK(!has(PGL_ACT_FENCE) && dc.term == 5 && dc.hung_since_ms == t0);
	ob.now = t0 + base_cfg.lease_ttl_ms - 1;
	step();
	CHECK(!has(PGL_ACT_FENCE) && dc.term == 5);
	/* A step that did not ask (between heartbeats) neither clears nor advances it. */
	ob.server.status_asked = false;
	ob.server.unresponsive = false;
	ob.now = t0 + base_cfg.lease_ttl_ms;
	step();
	CHECK(!has(PGL_ACT_FENCE) && dc.hung_since_ms == t0);
	ob.server.status_asked = ob.server.unresponsive = true;
	step();
	CHECK(has(PGL_ACT_FENCE) && dc.term == 0 && dc.role == PGL_ROLE_FENCED);
	CHECK(strstr(find(PGL_ACT_FENCE, PGL_JOB_NONE)->detail, "has not answered") != NULL);
	/* One answer in between starts the count again. */
	t0 = hung_from_now();
	ob.now = t0 + base_cfg.lease_ttl_ms / 2;
	ob.server.status_ok = true;
	ob.server.unresponsive = false;
	step();
	CHECK(dc.hung_since_ms == 0);
	ob.server.status_ok = false;
	ob.server.unresponsive = true;
	ob.now = t0 + base_cfg.lease_ttl_ms + 10;
	step();
	CHECK(!has(PGL_ACT_FENCE) && dc.term == 5);
	/* A refusal (an error that came back in time) is not a hang. */
	reset();
	hold_term(ob.now);
	dc.deadline_ms = dc.next_renew_ms = ob.now + 100000;
	ob.server.status_asked = true;
	ob.server.status_ok = false;
	ob.server.unresponsive = false;
	for (int i = 0; i < 20; i++) {
		ob.now += 1000;
		step();
		CHECK(!has(PGL_ACT_FENCE));
	}
	CHECK(dc.term == 5);
}

/* ---- following ---- */

static void
test_follow_rules(void)
{
	struct pgl_node *p;

	/* No data: clone from a running primary only. */
	reset();
	ob.server.has_data = ob.server.running = false;
	p = row("pg1", "unknown", 0, 100, 1);
	step();
	CHECK(!has(PGL_ACT_JOB));
	strcpy(p->role, "primary");
	step();
	CHECK(has_job(PGL_JOB_CLONE) && strcmp(find(PGL_ACT_JOB, PGL_JOB_CLONE)->node.name, "pg1") == 0);
	job_done(PGL_JOB_CLONE, 0);
	CHECK(has_event("cloned"));
	/*
	 * A running server whose data directory looks empty (made unreadable, a
	 * clone marker left behind) is never cloned over: the clone would empty
	 * the directory under it.  Found by the nemesis (standby_unreadable).
	 */
	reset();
	row("pg1", "primary", 0, 100, 1);
	ob.server.has_data = false;
	ob.server.running = true;
	for (int i = 0; i < 5; i++) {
		ob.now += 1000;
		step();
		CHECK(!has_job(PGL_JOB_CLONE) && !has_job(PGL_JOB_REWIND));
	}
	/* Stopped with standby.signal: start; without: rewind first, then start. */
	reset();
	row("pg1", "primary", 0, 100, 1);
	ob.server.running = false;
	step();
	CHECK(has_job(PGL_JOB_START));
	reset();
	row("pg1", "primary", 0, 100, 1);
	ob.server.running = ob.server.standby_signal = false;
	step();
	CHECK(has_job(PGL_JOB_REWIND));
	job_done(PGL_JOB_REWIND, 0);
	CHECK(has_event("rewound"));
	ob.now += 10;
	step();
	CHECK(has_job(PGL_JOB_START));
	/* Running: re-point once per holder and term. */
	reset();
	row("pg1", "primary", 0, 100, 1);
	step();
	CHECK(has(PGL_ACT_FOLLOW));
	acts.n = 0;
	pgl_decide_followed(&dc, &rows[0], 0, ob.now, &acts);
	CHECK(has_event("followed") && strcmp(dc.following, "pg1") == 0);
	step();
	CHECK(!has(PGL_ACT_FOLLOW));
	ob.lease.term++;
	step();
	CHECK(has(PGL_ACT_FOLLOW));
}

static void
test_start_failure_escalation(void)
{
	reset();
	row("pg1", "primary", 0, 100, 1);
	ob.server.running = false;
	for (int i = 0; i < 2; i++) {
		step();
		CHECKF(has_job(PGL_JOB_START), "start %d", i);
		job_done(PGL_JOB_START, -PGL_EPG);
		ob.now += 999;
		step();
		CHECK(!has(PGL_ACT_JOB));			/* retried after a second */
		ob.now += 1;
	}
	for (int i = 0; i < 2; i++) {
		step();
		CHECKF(has_job(PGL_JOB_REWIND), "rewind %d", i);
		job_done(PGL_JOB_REWIND, 0);
		step();
		CHECKF(has_job(PGL_JOB_START), "start after rewind %d", i);
		job_done(PGL_JOB_START, -PGL_EPG);
		ob.now += 1000;
	}
	step();
	CHECK(has_job(PGL_JOB_CLONE) && has_event("recloned"));
	job_done(PGL_JOB_CLONE, 0);
	CHECK(!has_event("cloned") && dc.start_failures == 0);
	/* A rewind that fails twice re-clones; one whose source is unreachable waits. */
	reset();
	row("pg1", "primary", 0, 100, 1);
	ob.server.running = ob.server.standby_signal = false;
	step();
	job_done(PGL_JOB_REWIND, -PGL_EPG);
	CHECK(!has(PGL_ACT_JOB));
	ob.now += 1000;
	step();
	job_done(PGL_JOB_REWIND, -PGL_EPG);
	CHECK(has_job(PGL_JOB_CLONE) && has_event("recloned"));
	reset();
	row("pg1", "primary", 0, 100, 1);
	ob.server.running = ob.server.standby_signal = false;
	for (int i = 0; i < 5; i++) {
		struct pgl_job_result r = { .job = PGL_JOB_REWIND, .rc = -PGL_EPG, .unreachable = true };

		step();
		CHECK(has_job(PGL_JOB_REWIND));
		acts.n = 0;
		pgl_decide_job_done(&dc, &r, ob.now, &acts);
		CHECK(!has(PGL_ACT_JOB) && dc.rewind_failures == 0);
		ob.now += 1000;
	}
}

static void
test_not_streaming_rewinds(void)
{
	reset();
	row("pg1", "primary", 0, 100, 1);
	step();
	pgl_decide_followed(&dc, &rows[0], 0, ob.now, &acts);
	ob.server.streaming = false;
	ob.now += 10001;
	ob.lease.renewals++;				/* the holder keeps renewing */
	step();
	CHECK(!has(PGL_ACT_JOB));				/* not streaming noticed now */
	ob.now += 5001;
	ob.lease.renewals++;
	step();
	CHECK(has_job(PGL_JOB_REWIND));
	/* The holder stopped renewing: no rewind (the server keeps running). */
	reset();
	row("pg1", "primary", 0, 100, 1);
	step();
	pgl_decide_followed(&dc, &rows[0], 0, ob.now, &acts);
	ob.server.streaming = false;
	ob.now += 10001;
	ob.lease.renewals++;
	step();								/* not streaming from now on */
	ob.now += 3000;
	ob.lease.renewals++;				/* the holder's last renewal */
	step();
	ob.now += 2600;						/* more than half the TTL since it */
	step();
	CHECK(!has(PGL_ACT_JOB) && dc.expired_since_ms == 0);
	/*
	 * On etcd the holder's renewals leave no trace: a standby whose timeline
	 * forked still rewinds while the holder's lease lives there, and not
	 * once etcd expired it.
	 */
	reset();
	ob.lease.store_expires = true;
	row("pg1", "primary", 0, 100, 1);
	step();
	pgl_decide_followed(&dc, &rows[0], 0, ob.now, &acts);
	ob.server.streaming = false;
	ob.now += 10001;
	step();
	CHECK(!has(PGL_ACT_JOB));
	ob.now += 5001;
	step();
	CHECK(has_job(PGL_JOB_REWIND));
	reset();
	ob.lease.store_expires = true;
	row("pg1", "primary", 0, 100, 1);
	step();
	pgl_decide_followed(&dc, &rows[0], 0, ob.now, &acts);
	ob.server.streaming = false;
	ob.now += 10001;
	step();
	ob.now += 5001;
	ob.lease.holder_expired = true;
	step();
	CHECK(!has_job(PGL_JOB_REWIND));
	/* Streaming from the holder's port: nothing to do. */
	reset();
	row("pg1", "primary", 0, 100, 1);
	step();
	pgl_decide_followed(&dc, &rows[0], 0, ob.now, &acts);
	ob.server.streaming = true;
	ob.server.sender_port = 5432;
	ob.now += 60000;
	ob.lease.renewals++;
	step();
	ob.now += 60000;
	ob.lease.renewals++;
	step();
	CHECK(!has(PGL_ACT_JOB));
}

/* ---- stopping and store faults ---- */

static void
test_clean_stop(void)
{
	struct pgl_job_result r = { .job = PGL_JOB_STOP, .clean = true, .lsn = "0/5000028" };

	reset();
	hold_term(ob.now);
	ob.stop = true;
	step();
	CHECK(has_job(PGL_JOB_STOP) && dc.role == PGL_ROLE_STOPPING);
	acts.n = 0;
	pgl_decide_job_done(&dc, &r, ob.now, &acts);
	CHECK(has(PGL_ACT_RELEASE) && strcmp(find(PGL_ACT_RELEASE, 0)->lsn, "0/5000028") == 0);
	CHECK(has(PGL_ACT_EXIT) && !find(PGL_ACT_EXIT, 0)->fatal && dc.term == 0);
	/* Not clean: killed, released without an LSN. */
	reset();
	hold_term(ob.now);
	ob.stop = true;
	step();
	r.clean = false;
	acts.n = 0;
	pgl_decide_job_done(&dc, &r, ob.now, &acts);
	CHECK(has(PGL_ACT_KILL) && find(PGL_ACT_RELEASE, 0)->lsn[0] == '\0');
	/* A standby just stops. */
	reset();
	ob.stop = true;
	step();
	job_done(PGL_JOB_STOP, 0);
	CHECK(!has(PGL_ACT_RELEASE) && has(PGL_ACT_EXIT));
	/* While stopping, the holder still renews. */
	reset();
	hold_term(ob.now);
	ob.stop = true;
	step();
	ob.now += 1000;
	step();
	CHECK(has(PGL_ACT_RENEW) && !has(PGL_ACT_JOB));
}

static void
test_store_fault_fences_first(void)
{
	reset();
	hold_term(ob.now);
	ob.store_fault = PGL_STORE_REPLACED;
	strcpy(ob.store_why, "lease.db was deleted or replaced");
	step();
	CHECK(acts.n >= 3 && acts.a[0].type == PGL_ACT_FENCE && has_job(PGL_JOB_STOP));
	job_done(PGL_JOB_STOP, 0);
	CHECK(has(PGL_ACT_EXIT) && find(PGL_ACT_EXIT, 0)->fatal && !has(PGL_ACT_RELEASE));
}

static void
test_unreadable_lease_only_holder_duties(void)
{
	reset();
	hold_term(ob.now);
	ob.lease_ok = false;
	ob.now += 4000;
	step();
	CHECK(has(PGL_ACT_FENCE) && acts.n == 1);
	reset();
	ob.lease_ok = false;
	ob.holder_gone = true;
	step();
	CHECK(acts.n == 0);
}

static void
test_wake_time(void)
{
	reset();
	step();
	/* A standby: its next heartbeat (the lease was first seen just now). */
	CHECK(dc.wake_ms == ob.now + 1000);
	ob.now += 600;
	step();
	CHECK(dc.wake_ms == ob.now + 400);
	/* The holder's lease would expire here before the next heartbeat. */
	ob.now += 4300;
	step();
	CHECK(dc.wake_ms == ob.now + 100);
	ob.now += 100;
	step();						/* expired: a candidate steps every 100 ms */
	CHECK(dc.expired_since_ms != 0 && dc.wake_ms == ob.now + 100);
	hold_term(ob.now);
	step();
	CHECK(dc.wake_ms == ob.now + 1000);
}

static void
test_primary_live_rule(void)
{
	struct pgl_lease l = { .holder = "pg1", .term = 3, .ttl_ms = 2000, .renewed_age_s = 1.0 };
	struct pgl_node h = { .name = "pg1", .age_s = 3.9 };
	char why[256];

	CHECK(pgl_decide_primary_live(&l, &h, why, sizeof(why)));
	h.age_s = 4.1;
	CHECK(!pgl_decide_primary_live(&l, &h, why, sizeof(why)) && strstr(why, "stale"));
	h.age_s = 1;
	l.renewed_age_s = 2.1;
	CHECK(!pgl_decide_primary_live(&l, &h, why, sizeof(why)) && strstr(why, "within its TTL"));
	CHECK(!pgl_decide_primary_live(&l, NULL, why, sizeof(why)) && strstr(why, "no node row"));
	l.holder[0] = '\0';
	CHECK(!pgl_decide_primary_live(&l, &h, why, sizeof(why)) && strstr(why, "no holder"));
}

static void
test_node_healthy_rule(void)
{
	struct pgl_lease l = { .holder = "pg1", .term = 3, .ttl_ms = 2000 };
	struct pgl_node n = { .name = "pg2", .role = "standby", .age_s = 5.9 };
	char msg[256];

	CHECK(pgl_decide_node_healthy(&l, &n, msg, sizeof(msg)));
	CHECKF(strcmp(msg, "pg2: healthy standby, heartbeat 5.9s ago, term 3") == 0, "%s", msg);
	n.age_s = 6.0;
	CHECK(!pgl_decide_node_healthy(&l, &n, msg, sizeof(msg)) && strstr(msg, "too long"));
	n.age_s = 1;
	strcpy(n.role, "primary");
	CHECK(!pgl_decide_node_healthy(&l, &n, msg, sizeof(msg)) &&
		  strstr(msg, "role primary but the lease is held by pg1 (term 3)"));
	strcpy(n.name, "pg1");
	CHECK(pgl_decide_node_healthy(&l, &n, msg, sizeof(msg)) && strstr(msg, "holding the lease"));
	strcpy(n.role, "unknown\x1b");
	CHECK(!pgl_decide_node_healthy(&l, &n, msg, sizeof(msg)) && strstr(msg, "\\x1b"));
}

/* ---- randomized interleavings: several agents, the real decisions, a real store ---- */


/* Uniform in [lo, hi]. */
static int64_t
rr(int64_t lo, int64_t hi)
{
	return lo + (int64_t) (t_rnd() % (uint64_t) (hi - lo + 1));
}

enum { SIM_NODES = 3 };

/* What a node is doing between its steps. */
enum sim_busy { SIM_READY, SIM_RENEWING, SIM_CLAIMING, SIM_DOWN };

struct simnode {
	char name[16];
	struct pgl_store *st;		/* its own connection */
	struct pgl_decider dc;
	int64_t off;				/* its monotonic clock = true time + off */
	int64_t next;				/* true time of its next step */
	enum sim_busy busy;
	int64_t t0;					/* own clock when the pending renewal or claim began */
	struct pgl_action pending;	/* the claim in flight */
	bool primary;				/* its server runs as primary */
	bool stopping;
	int64_t writable_until;		/* true time its postgres may write until; INT64_MIN: never */
	uint64_t lsn;
};

struct simstats {
	long steps, renewals, claims, conflicts, fences, releases, stalls, crashes;
	long violations, unexpected;
	char first[300];
};

struct sim {
	struct simnode n[SIM_NODES];
	int64_t t, last_term;
	char term_holder[64];
	struct simstats ss;
	struct pgl_decide_cfg cfg;
};

static void __attribute__((format(printf, 2, 3)))
violation(struct sim *s, const char *fmt, ...)
{
	va_list ap;

	if (s->ss.violations++ == 0) {
		va_start(ap, fmt);
		vsnprintf(s->ss.first, sizeof(s->ss.first), fmt, ap);
		va_end(ap);
	}
}

/* At the claim's commit: may any other node still write? */
static void
check_claim(struct sim *s, int i, bool released)
{
	for (int j = 0; j < SIM_NODES; j++) {
		int64_t need = released ? 0 : s->cfg.fence_margin_ms;

		if (j != i && s->n[j].writable_until != INT64_MIN &&
			s->n[j].writable_until + need > s->t)
			violation(s, "%s claims at %" PRId64 " but %s may write until %" PRId64
					  " (margin %" PRId64 ")", s->n[i].name, s->t, s->n[j].name,
					  s->n[j].writable_until, need);
	}
}

static void
sim_fence(struct simnode *n, int64_t t)
{
	if (n->writable_until > t)
		n->writable_until = t;
	n->primary = false;
}

/* A job finishes at once; clean stops release at a checkpoint. */
static void
sim_job(struct sim *s, struct simnode *n, const struct pgl_action *a, struct pgl_actions *out)
{
	struct pgl_job_result r = { .job = a->job, .rc = 0, .timeline = 2 };

	if (a->job == PGL_JOB_PROMOTE || a->job == PGL_JOB_BOOTSTRAP ||
		(a->job == PGL_JOB_START && a->mode == PGL_SERVER_PRIMARY))
		n->primary = true;
	if (a->job == PGL_JOB_STOP) {
		sim_fence(n, s->t);			/* the server is down before the release */
		r.clean = true;
		snprintf(r.lsn, sizeof(r.lsn), "0/%" PRIX64, n->lsn);
	}
	pgl_decide_job_done(&n->dc, &r, s->t + n->off, out);
}

static void
sim_claim_commit(struct sim *s, struct simnode *n, struct pgl_actions *out)
{
	int64_t term = 0;
	int rc = pgl_store_claim(n->st, &n->pending.lease, n->name, s->cfg.lease_ttl_ms, "sim", &term);

	n->busy = SIM_READY;
	if (rc == 0) {
		if (term != s->last_term + 1)
			violation(s, "%s won term %" PRId64 " after term %" PRId64, n->name, term,
					  s->last_term);
		s->last_term = term;
		check_claim(s, (int) (n - s->n), n->pending.lease.holder[0] == '\0' ||
					strstr(n->dc.expiry_rule, "gone") != NULL);
		n->writable_until = n->t0 - n->off + s->cfg.lease_ttl_ms - s->cfg.fence_margin_ms;
		s->ss.claims++;
	} else if (rc == -PGL_ECONFLICT)
		s->ss.conflicts++;
	else
		s->ss.unexpected++;
	pgl_decide_claimed(&n->dc, rc, term, n->t0, NULL, out);
}

static void
sim_renew_commit(struct sim *s, struct simnode *n, struct pgl_actions *out)
{
	int64_t dl = 0, ren = 0;
	const struct pgl_decide_cfg *c = &s->cfg;
	int rc = pgl_store_renew(n->st, n->name, n->dc.term, n->t0, c->lease_ttl_ms,
							 c->fence_margin_ms, INT64_MAX / 2, &dl, &ren);

	n->busy = SIM_READY;
	if (rc == 0) {
		s->ss.renewals++;
		if (n->primary && dl - n->off > n->writable_until)
			n->writable_until = dl - n->off;
	} else if (rc != -PGL_ENOTHOLDER)
		s->ss.unexpected++;
	pgl_decide_renewed(&n->dc, rc, n->t0, dl, NULL, s->t + n->off, out);
}

/* How long a renewal takes: mostly fast, sometimes a stall past the TTL. */
static int64_t
sim_delay(struct sim *s)
{
	int64_t r = rr(0, 999);

	if (r < 850)
		return rr(0, 30);
	if (r < 950)
		return rr(30, s->cfg.renew_interval_ms);
	if (r < 990)
		return rr(s->cfg.renew_interval_ms, s->cfg.lease_ttl_ms);
	s->ss.stalls++;
	return rr(s->cfg.lease_ttl_ms, 3 * s->cfg.lease_ttl_ms);
}

/* Carries out a node's actions; renewals and claims complete later. */
static void
sim_execute(struct sim *s, struct simnode *n, struct pgl_actions *acts)
{
	for (int i = 0; i < acts->n; i++) {
		const struct pgl_action *a = &acts->a[i];

		switch (a->type) {
		case PGL_ACT_RENEW:
			n->busy = SIM_RENEWING;
			n->t0 = s->t + n->off;
			n->next = s->t + sim_delay(s);
			break;
		case PGL_ACT_CLAIM:
			n->busy = SIM_CLAIMING;
			n->t0 = s->t + n->off;
			n->pending = *a;
			n->next = s->t + rr(0, 60);		/* may lose the CAS meanwhile */
			break;
		case PGL_ACT_FENCE:
		case PGL_ACT_KILL:
			s->ss.fences += a->type == PGL_ACT_FENCE;
			sim_fence(n, s->t);
			break;
		case PGL_ACT_RELEASE:
			sim_fence(n, s->t);
			if (pgl_store_release(n->st, n->name, a->term, a->lsn[0] ? a->lsn : NULL, "sim") != 0)
				s->ss.unexpected++;
			s->ss.releases++;
			break;
		case PGL_ACT_JOB:
			sim_job(s, n, a, acts);
			break;
		case PGL_ACT_HEARTBEAT: {
			struct pgl_node r = { .priority = 100 };

			strcpy(r.name, n->name);
			strcpy(r.role, n->primary ? "primary" : "standby");
			strcpy(r.conninfo, "host=h port=5432");
			r.receive_lsn_int = r.replay_lsn_int = n->lsn;
			pgl_lsn_format(n->lsn, r.receive_lsn, sizeof(r.receive_lsn));
			pgl_lsn_format(n->lsn, r.replay_lsn, sizeof(r.replay_lsn));
			if (pgl_store_node_upsert(n->st, &r) != 0)
				s->ss.unexpected++;
			break;
		}
		case PGL_ACT_EXIT:
			n->busy = SIM_DOWN;
			n->next = s->t + rr(1, 2 * s->cfg.lease_ttl_ms);
			break;
		default:
			break;
		}
	}
}

/* Builds what node n observes now. */
static void
sim_observe(struct sim *s, struct simnode *n, struct pgl_obs *o, struct pgl_node **rows_out)
{
	memset(o, 0, sizeof(*o));
	*rows_out = NULL;
	o->now = s->t + n->off;
	o->stop = n->stopping;
	o->lease_ok = pgl_store_read_lease(n->st, &o->lease) == 0;
	if (!o->lease_ok)
		s->ss.unexpected++;
	if (pgl_store_list_nodes(n->st, rows_out, &o->n_nodes) == 0) {
		o->nodes_ok = true;
		o->nodes = *rows_out;
	}
	for (int j = 0; j < SIM_NODES; j++)
		if (s->n[j].busy == SIM_DOWN && strcmp(s->n[j].name, o->lease.holder) == 0)
			o->holder_gone = true;			/* its alive lock is free */
	o->server.has_data = o->server.standby_signal = true;
	o->server.running = true;
	o->server.mode = n->primary ? PGL_SERVER_PRIMARY : PGL_SERVER_STANDBY;
	o->server.status_ok = true;
	o->server.in_recovery = !n->primary;
	o->server.receive_lsn = n->lsn;
}

/* Random trouble for a ready node: a crash, or a clean stop. */
static bool
sim_trouble(struct sim *s, struct simnode *n)
{
	int64_t r = rr(0, 9999);

	if (r < 15) {
		/* kill -9 of the whole node: postgres dies with it. */
		sim_fence(n, s->t);
		n->busy = SIM_DOWN;
		n->next = s->t + rr(1, 2 * s->cfg.lease_ttl_ms);
		s->ss.crashes++;
		return true;
	}
	if (r < 40 && n->dc.term)
		n->stopping = true;
	return false;
}

static void
sim_node_step(struct sim *s, struct simnode *n, struct pgl_actions *acts)
{
	struct pgl_node *rows_out = NULL;
	struct pgl_obs o;

	acts->n = 0;
	if (n->busy == SIM_DOWN) {
		/* Restarted with a fresh agent: a former holder never resumes its term. */
		pgl_decide_free(&n->dc);
		pgl_decide_init(&n->dc, &s->cfg);
		strcpy(n->dc.cfg.node_name, n->name);
		n->busy = SIM_READY;
		n->primary = n->stopping = false;
	} else if (n->busy == SIM_RENEWING)
		sim_renew_commit(s, n, acts);
	else if (n->busy == SIM_CLAIMING)
		sim_claim_commit(s, n, acts);
	else if (sim_trouble(s, n))
		return;
	n->lsn = (uint64_t) s->t / 10 + (uint64_t) rr(0, 50);
	sim_execute(s, n, acts);
	if (n->busy != SIM_READY)
		return;
	sim_observe(s, n, &o, &rows_out);
	acts->n = 0;
	pgl_decide_step(&n->dc, &o, acts);
	free(rows_out);
	n->next = n->dc.wake_ms - n->off + rr(0, 20);
	sim_execute(s, n, acts);
	if (n->next <= s->t)
		n->next = s->t + 1;
}

static struct pgl_store *
sim_store(const char *path, int flags)
{
	struct pgl_store *st = NULL;
	char err[512];

	if (pgl_store_open(path, flags, &st, err, sizeof(err)) != 0) {
		fprintf(stderr, "open %s: %s\n", path, err);
		return NULL;
	}
	pgl_store_set_busy_ms(st, 5000);
	return st;
}

static void
sim_run(uint64_t seed, long steps, struct simstats *out)
{
	static const int64_t params[][3] = {
		{ 5000, 1000, 1000 }, { 2000, 500, 500 }, { 1000, 200, 300 }, { 3000, 1000, 1000 },
	};
	struct sim *s = calloc(1, sizeof(*s));
	struct pgl_actions *acts = calloc(1, sizeof(*acts));
	char path[1024];

	if (s == NULL || acts == NULL)
		exit(2);
	t_rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
	s->cfg = base_cfg;
	s->cfg.lease_ttl_ms = params[seed % 4][0];
	s->cfg.renew_interval_ms = params[seed % 4][1];
	s->cfg.fence_margin_ms = params[seed % 4][2];
	s->cfg.election_grace_ms = s->cfg.renew_interval_ms;
	s->t = 1000000;
	/* Memory-backed when possible: the run is about decisions, not fsync. */
	snprintf(path, sizeof(path), "%s/pglease-sim-%d-%" PRIu64 ".db",
			 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : test_dir(), (int) getpid(), seed);
	unlink(path);
	for (int i = 0; i < SIM_NODES; i++) {
		struct simnode *n = &s->n[i];

		snprintf(n->name, sizeof(n->name), "n%d", i + 1);
		if ((n->st = sim_store(path, PGL_STORE_CREATE)) == NULL)
			exit(2);
		pgl_decide_init(&n->dc, &s->cfg);
		strcpy(n->dc.cfg.node_name, n->name);
		n->off = rr(-1000000000, 1000000000);
		n->writable_until = INT64_MIN;
		n->next = s->t + rr(0, 500);
	}
	for (s->ss.steps = 0; s->ss.steps < steps; s->ss.steps++) {
		int i = 0, writers = 0;

		for (int j = 1; j < SIM_NODES; j++)
			if (s->n[j].next < s->n[i].next)
				i = j;
		s->t = s->n[i].next;
		sim_node_step(s, &s->n[i], acts);
		for (int j = 0; j < SIM_NODES; j++)
			writers += s->n[j].writable_until > s->t;
		if (writers > 1)
			violation(s, "two nodes may write at %" PRId64, s->t);
	}
	{
		struct pgl_lease l;

		if (pgl_store_read_lease(s->n[0].st, &l) != 0 || l.term != s->last_term)
			s->ss.unexpected++;
	}
	for (int i = 0; i < SIM_NODES; i++) {
		pgl_store_close(s->n[i].st);
		pgl_decide_free(&s->n[i].dc);
	}
	unlink(path);
	*out = s->ss;
	free(s);
	free(acts);
}

static const uint64_t seeds[] = { 1, 2, 3, 42, 2024, 987654321 };

static void
test_random_interleavings(void)
{
	long total = 0, conflicts = 0;

	for (size_t k = 0; k < PGL_ARRAY_LEN(seeds); k++) {
		struct simstats ss;

		sim_run(seeds[k], 12000, &ss);
		total += ss.steps;
		conflicts += ss.conflicts;
		printf("sim seed %" PRIu64 ": %ld steps, %ld renewals, %ld claims, %ld CAS lost, "
			   "%ld fences, %ld releases, %ld crashes, %ld stalls\n", seeds[k], ss.steps,
			   ss.renewals, ss.claims, ss.conflicts, ss.fences, ss.releases, ss.crashes,
			   ss.stalls);
		CHECKF(ss.violations == 0, "seed %" PRIu64 ": %ld violations; first: %s", seeds[k],
			   ss.violations, ss.first);
		CHECKF(ss.unexpected == 0, "seed %" PRIu64 ": %ld unexpected results", seeds[k],
			   ss.unexpected);
		/* The run exercised every path. */
		CHECK(ss.claims > 10 && ss.renewals > 300 && ss.fences > 0 && ss.stalls > 0);
		CHECK(ss.releases > 0 && ss.crashes > 0);
	}
	CHECK(total >= 70000);
	CHECK(conflicts > 0);
}

#ifdef PGL_DECIDE_BROKEN_FOR_TEST
/* Built with PGL_DECIDE_BROKEN_FOR_TEST: the simulation must catch the broken rule. */
static void
test_broken_rule_caught(void)
{
	long found = 0;

	for (size_t k = 0; k < PGL_ARRAY_LEN(seeds); k++) {
		struct simstats ss;

		sim_run(seeds[k], 12000, &ss);
		found += ss.violations;
		if (ss.violations)
			printf("broken rule caught, seed %" PRIu64 ": %s\n", seeds[k], ss.first);
	}
	CHECKF(found > 0, "observers waiting half the TTL went unnoticed");
}
#else

#endif

/* ---- switchover and failover --to ---- */

static bool
always_live(const struct pgl_node *n, const void *ctx)
{
	(void) ctx;
	return strcmp(n->name, "dead") != 0;
}

static void
test_switchover_target_rule(void)
{
	char why[256];
	struct pgl_node *n;

	reset();
	row("me", "primary", 0x5000000, 100, 1);
	n = row("pg2", "standby", 0x4F00000, 100, 1);
	strcpy(n->upstream, "me");
	n = row("pg3", "standby", 0x5000000, 50, 1);
	strcpy(n->upstream, "me");
	n = row("pg4", "standby", 0x5000000, 0, 1);		/* priority 0 */
	strcpy(n->upstream, "me");
	n = row("dead", "standby", 0x5000000, 100, 1);
	strcpy(n->upstream, "me");
	n = row("pg5", "standby", 0x1000000, 100, 1);		/* 64 MiB behind */
	strcpy(n->upstream, "me");
	n = row("pg6", "standby", 0x5000000, 100, 1);		/* streams from another node */
	strcpy(n->upstream, "pg2");
#define TARGET(want, lag) pgl_decide_switchover_target(rows, ob.n_nodes, always_live, NULL, \
													   "me", 0x5000000, want, lag, why, \
													   sizeof(why))
	/* The best: most WAL (pg3 over pg2), priority 0, dead and pg6 never. */
	CHECK(TARGET(NULL, -1) == 2);
	CHECK(TARGET("", 16 << 20) == 2);
	CHECK(TARGET("pg2", 16 << 20) == 1);
	CHECK(TARGET("pg9", -1) == -2 && strstr(why, "no node named pg9"));
	CHECK(TARGET("me", -1) == -2 && strstr(why, "it is the primary"));
	CHECK(TARGET("pg4", -1) == -2 && strstr(why, "priority is 0"));
	CHECK(TARGET("dead", -1) == -1 && strstr(why, "has not reported"));
	CHECK(TARGET("pg5", 16 << 20) == -1 && strstr(why, "lags too far"));
	CHECK(TARGET("pg5", -1) == 5);
	CHECK(TARGET("pg6", -1) == -1 && strstr(why, "not streaming from the primary"));
	rows[2].receive_lsn_int = 0;		/* unknown position: no bound can be checked */
	CHECK(TARGET("pg3", 16 << 20) == -1 && TARGET("pg3", -1) == 2);
	rows[1].receive_lsn_int = rows[2].receive_lsn_int = 0;
	rows[5].receive_lsn_int = 0;
	CHECK(TARGET(NULL, 16 << 20) < 0 && strstr(why, "no standby can take over"));
#undef TARGET
}

/* This node holds term 5 with two streaming standbys; a request for term 5. */
static void
switchover_setup(const char *target)
{
	struct pgl_node *n;

	reset();
	hold_term(ob.now);
	ob.server.receive_lsn = 0x5000000;
	row("me", "primary", 0x5000000, 100, 1);
	n = row("pg2", "standby", 0x4000000, 100, 1);
	strcpy(n->upstream, "me");
	n = row("pg3", "standby", 0x5000000, 100, 1);
	strcpy(n->upstream, "me");
	ob.sw_ok = true;
	ob.sw.seq = 7;
	ob.sw.term = 5;
	ob.sw.state = PGL_SW_REQUESTED;
	ob.sw.timeout_ms = 10000;
	strcpy(ob.sw.requested_by, "op@host pid 1");
	strcpy(ob.sw.target, target);
}

static const struct pgl_action *
sw_action(enum pgl_sw_state st)
{
	for (int i = 0; i < acts.n; i++)
		if (acts.a[i].type == PGL_ACT_SWITCHOVER && acts.a[i].sw_state == st)
			return &acts.a[i];
	return NULL;
}

static void
test_switchover_primary(void)
{
	struct pgl_job_result r = { .job = PGL_JOB_HANDOVER, .clean = true, .lsn = "0/5000028" };
	const struct pgl_action *a;
	int i;

	/* The best standby is named first; the hand-over starts once that is written. */
	switchover_setup("");
	step();
	a = sw_action(PGL_SW_HANDING_OVER);
	CHECK(a && a->seq == 7 && a->has_node && strcmp(a->node.name, "pg3") == 0);
	CHECK(!has(PGL_ACT_JOB) && !has(PGL_ACT_RELEASE));
	acts.n = 0;
	pgl_decide_switchover_set(&dc, 0, ob.now, &acts);
	CHECK(has_job(PGL_JOB_HANDOVER) && dc.term == 5);
	/* The shutdown checkpoint: release at it, stay on as a standby. */
	acts.n = 0;
	pgl_decide_job_done(&dc, &r, ob.now, &acts);
	a = find(PGL_ACT_RELEASE, 0);
	CHECK(a && strcmp(a->lsn, "0/5000028") == 0 && a->term == 5 && strstr(a->detail, "pg3"));
	CHECK(!has(PGL_ACT_EXIT) && !has(PGL_ACT_KILL) && dc.term == 0);
	CHECK(dc.role == PGL_ROLE_STANDBY && dc.rewound);
	/* The same request is never handled twice. */
	ob.lease.holder[0] = '\0';
	step();
	CHECK(!sw_action(PGL_SW_HANDING_OVER) && !has(PGL_ACT_RELEASE));

	/* A named target. */
	switchover_setup("pg2");
	step();
	CHECK((a = sw_action(PGL_SW_HANDING_OVER)) && strcmp(a->node.name, "pg2") == 0);
	/* The store refused (another request replaced it): nothing happens. */
	acts.n = 0;
	pgl_decide_switchover_set(&dc, -PGL_ECONFLICT, ob.now, &acts);
	CHECK(!has(PGL_ACT_JOB) && dc.term == 5);
	step();
	CHECK(!sw_action(PGL_SW_HANDING_OVER));

	/* A target that cannot ever qualify fails at once; the primary stays. */
	switchover_setup("pg9");
	step();
	CHECK((a = sw_action(PGL_SW_FAILED)) && strstr(a->detail, "no node named pg9"));
	CHECK(!has(PGL_ACT_JOB) && !has(PGL_ACT_RELEASE) && dc.term == 5);
	rows[1].priority = 0;
	switchover_setup("pg2");
	rows[1].priority = 0;
	step();
	CHECK(sw_action(PGL_SW_FAILED) && dc.term == 5);

	/* One that may qualify later is waited for until the timeout, then fails. */
	switchover_setup("pg2");
	strcpy(rows[1].state, "recovering");
	for (i = 0; i < 9; i++) {
		step();
		CHECK(!sw_action(PGL_SW_HANDING_OVER) && !sw_action(PGL_SW_FAILED));
		ob.now += 1000;
		rows[0].heartbeat++, rows[1].heartbeat++, rows[2].heartbeat++;
		ob.lease.renewals++;
		if (has(PGL_ACT_RENEW))
			pgl_decide_renewed(&dc, 0, ob.now, ob.now + 4000, NULL, ob.now, &acts);
	}
	ob.now += 1000;
	rows[1].heartbeat++;
	pgl_decide_renewed(&dc, 0, ob.now, ob.now + 4000, NULL, ob.now, &acts);
	step();
	CHECK((a = sw_action(PGL_SW_FAILED)) && strstr(a->detail, "not streaming"));
	CHECK(dc.term == 5 && !has(PGL_ACT_JOB) && !has(PGL_ACT_RELEASE));
	/* Caught up meanwhile: handed over. */
	switchover_setup("pg2");
	strcpy(rows[1].state, "recovering");
	step();
	CHECK(!sw_action(PGL_SW_HANDING_OVER));
	strcpy(rows[1].state, "streaming");
	ob.now += 500;
	step();
	CHECK(sw_action(PGL_SW_HANDING_OVER));

	/* A request for another term, a failover, or an ended one: ignored. */
	switchover_setup("");
	ob.sw.term = 4;
	step();
	CHECK(!sw_action(PGL_SW_HANDING_OVER) && !sw_action(PGL_SW_FAILED));
	switchover_setup("");
	ob.sw.failover = true;
	step();
	CHECK(!sw_action(PGL_SW_HANDING_OVER));
	switchover_setup("");
	ob.sw.state = PGL_SW_FAILED;
	step();
	CHECK(!sw_action(PGL_SW_HANDING_OVER));

	/* No clean shutdown checkpoint: the request fails before the release. */
	switchover_setup("");
	step();
	acts.n = 0;
	pgl_decide_switchover_set(&dc, 0, ob.now, &acts);
	r.clean = false;
	acts.n = 0;
	pgl_decide_job_done(&dc, &r, ob.now, &acts);
	CHECK(sw_action(PGL_SW_FAILED) && has(PGL_ACT_KILL));
	for (i = 0; i < acts.n && acts.a[i].type != PGL_ACT_RELEASE; i++)
		CHECK(acts.a[i].type != PGL_ACT_RELEASE);
	CHECK(i < acts.n && acts.a[i].lsn[0] == '\0');
	for (int k = i; k < acts.n; k++)
		CHECK(acts.a[k].type != PGL_ACT_SWITCHOVER);
	/* Fenced during the hand-over: the job's end changes nothing. */
	switchover_setup("");
	step();
	acts.n = 0;
	pgl_decide_switchover_set(&dc, 0, ob.now, &acts);
	ob.now = dc.deadline_ms;
	acts.n = 0;
	pgl_decide_holder(&dc, ob.now, &acts);
	CHECK(has(PGL_ACT_FENCE) && dc.term == 0);
	r.clean = true;
	acts.n = 0;
	pgl_decide_job_done(&dc, &r, ob.now, &acts);
	CHECK(!has(PGL_ACT_RELEASE) && !sw_action(PGL_SW_FAILED));
}

/* The lease of pg1 released at 0/3000000 after a switchover naming `to`. */
static void
named_setup(const char *to, bool failover)
{
	reset();
	ob.lease.holder[0] = '\0';
	ob.lease.has_released_lsn = !failover;
	ob.lease.released_lsn_int = failover ? 0 : 0x3000000;
	strcpy(ob.lease.released_lsn, failover ? "" : "0/3000000");
	ob.server.receive_lsn = 0x3000028;
	row("pg1", "unknown", 0x3000000, 100, 1);
	row("pg2", "standby", 0x4000000, 100, 1);		/* ranks before "me" */
	row("me", "standby", 0x3000028, 100, 1);
	ob.sw_ok = true;
	ob.sw.seq = 3;
	ob.sw.term = 4;
	ob.sw.failover = failover;
	ob.sw.state = PGL_SW_HANDING_OVER;
	ob.sw.timeout_ms = 20000;
	strcpy(ob.sw.requested_by, "op@host pid 1");
	strcpy(ob.sw.target, to);
}

static void
test_switchover_named_claims(void)
{
	const struct pgl_action *a;
	int i;

	/* Named: claims at once, though pg2 ranks before it. */
	named_setup("me", false);
	step();
	a = find(PGL_ACT_CLAIM, 0);
	CHECK(a && strstr(a->detail, "named by switchover 3") && dc.sw_claim_seq == 3);
	acts.n = 0;
	pgl_decide_claimed(&dc, 0, 5, ob.now, NULL, &acts);
	CHECK(has_job(PGL_JOB_PROMOTE));
	job_done(PGL_JOB_PROMOTE, 0);
	a = sw_action(PGL_SW_DONE);
	CHECK(a && a->seq == 3 && strstr(a->detail, "me is primary on term 5"));
	CHECK(dc.sw_claim_seq == 0);
	/* Named but not past the released LSN yet: waits. */
	named_setup("me", false);
	ob.server.receive_lsn = 0x3000000;
	step();
	CHECK(!has(PGL_ACT_CLAIM));
	/* A lost claim forgets the request. */
	named_setup("me", false);
	step();
	acts.n = 0;
	pgl_decide_claimed(&dc, -PGL_ECONFLICT, 0, ob.now, NULL, &acts);
	CHECK(dc.sw_claim_seq == 0);

	/* Another node named: this one leaves the term to it for one TTL. */
	named_setup("pg2", false);
	ob.server.receive_lsn = 0x5000000;		/* even ahead of pg2 */
	for (i = 0; i < 49; i++) {
		step();
		CHECK(!has(PGL_ACT_CLAIM));
		ob.now += 100;
		rows[1].heartbeat++;
		rows[2].heartbeat++;
	}
	ob.now += 200;
	step();
	CHECK(has(PGL_ACT_CLAIM));
	/* A request for another term names nobody. */
	named_setup("pg2", false);
	ob.sw.term = 3;
	ob.server.receive_lsn = 0x5000000;
	rows[1].receive_lsn_int = 0x2000000;
	step();
	CHECK(has(PGL_ACT_CLAIM));
}

static void
test_failover_named(void)
{
	/* Paused, the holder gone: only a failover --to's node claims. */
	named_setup("me", true);
	strcpy(ob.lease.holder, "pg1");
	ob.holder_gone = true;
	ob.paused = true;
	step();
	CHECK(has(PGL_ACT_CLAIM));
	named_setup("pg2", true);
	strcpy(ob.lease.holder, "pg1");
	ob.holder_gone = true;
	ob.paused = true;
	step();
	CHECK(!has(PGL_ACT_CLAIM));
	ob.sw_ok = false;
	step();
	CHECK(!has(PGL_ACT_CLAIM));
	/* Not paused: the others leave it to the named node for the request's timeout,
	 * counted from when they first read it (here long after the expiry). */
	named_setup("pg2", true);
	strcpy(ob.lease.holder, "pg1");
	ob.holder_gone = true;
	ob.sw_ok = false;
	ob.server.receive_lsn = 0x5000000;
	rows[1].receive_lsn_int = 0x1000000;
	ob.paused = true;
	step();
	ob.now += 60000;
	rows[1].heartbeat++;
	rows[2].heartbeat++;
	step();
	ob.sw_ok = true;
	ob.paused = false;
	step();
	CHECK(!has(PGL_ACT_CLAIM));
	ob.now += 19000;
	rows[1].heartbeat++;
	rows[2].heartbeat++;
	step();
	CHECK(!has(PGL_ACT_CLAIM));
	ob.now += 1000;
	rows[1].heartbeat++;
	rows[2].heartbeat++;
	step();
	CHECK(has(PGL_ACT_CLAIM));
	/* A node of priority 0 is never named into a claim. */
	named_setup("me", true);
	dc.cfg.priority = 0;
	strcpy(ob.lease.holder, "pg1");
	ob.holder_gone = true;
	step();
	CHECK(!has(PGL_ACT_CLAIM));
}

/* max_lag_on_failover: too far behind the holder's last reported position, no claim. */
static void
test_max_lag_on_failover(void)
{
	reset();
	dc.cfg.max_lag_on_failover = 1 << 20;
	row("pg1", "primary", 0x5000000, 100, 1);		/* the dead holder's last report */
	row("me", "standby", 0x3000000, 100, 1);
	ob.server.receive_lsn = 0x3000000;				/* 32 MiB behind */
	ob.holder_gone = true;
	step();
	ob.now += 60000;
	step();
	CHECK(!has(PGL_ACT_CLAIM) && dc.lag_said_term == 4);
	/* Within the bound: claims. */
	ob.server.receive_lsn = 0x4F80000;				/* 512 KiB behind */
	ob.now += 100;
	step();
	CHECK(has(PGL_ACT_CLAIM));
	/* No bound (0, the default): claims however far behind. */
	reset();
	row("pg1", "primary", 0x5000000, 100, 1);
	row("me", "standby", 0x3000000, 100, 1);
	ob.server.receive_lsn = 0x3000000;
	ob.holder_gone = true;
	step();
	CHECK(has(PGL_ACT_CLAIM));
	/* Too far behind, but named by failover --to: claims. */
	named_setup("me", true);
	dc.cfg.max_lag_on_failover = 1 << 20;
	strcpy(ob.lease.holder, "pg1");
	ob.holder_gone = true;
	rows[0].receive_lsn_int = 0x9000000;
	strcpy(rows[0].role, "primary");
	step();
	CHECK(has(PGL_ACT_CLAIM));
}

int
main(void)
{
#ifdef PGL_DECIDE_BROKEN_FOR_TEST
	TEST(test_broken_rule_caught);
#else
	TEST(test_holder_renew_and_deadline);
	TEST(test_renew_results);
	TEST(test_higher_term_fences);
	TEST(test_observer_expiry_edges);
	TEST(test_holder_gone_and_own_term);
	TEST(test_store_expires);
	TEST(test_election_table);
	TEST(test_fresh_heartbeat_needed_before_best_claims);
	TEST(test_down_rival_defers);
	TEST(test_silent_standby_sync);
	TEST(test_released_lsn);
	TEST(test_paused_and_not_a_candidate);
	TEST(test_bootstrap);
	TEST(test_reform_waits_for_the_most_advanced);
	TEST(test_reform_without_data_never_bootstraps);
	TEST(test_term_limit_never_claimed);
	TEST(test_holder_without_record_said_once);
	TEST(test_promotion_results);
	TEST(test_primary_crash_restart);
	TEST(test_hung_primary_fences);
	TEST(test_follow_rules);
	TEST(test_start_failure_escalation);
	TEST(test_not_streaming_rewinds);
	TEST(test_clean_stop);
	TEST(test_store_fault_fences_first);
	TEST(test_unreadable_lease_only_holder_duties);
	TEST(test_wake_time);
	TEST(test_primary_live_rule);
	TEST(test_node_healthy_rule);
	TEST(test_switchover_target_rule);
	TEST(test_switchover_primary);
	TEST(test_switchover_named_claims);
	TEST(test_failover_named);
	TEST(test_max_lag_on_failover);
	TEST(test_random_interleavings);
#endif
	pgl_decide_free(&dc);
	return TEST_REPORT();
}
