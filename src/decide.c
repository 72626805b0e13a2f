/*
 * decide.c — the agent's decisions as one pure state machine (DESIGN.md
 * sections 2 and 3).
 *
 * Every safety rule lives here: when the holder renews and when it fences,
 * when the lease is claimable as seen from this node, which candidate claims,
 * when a standby clones, rewinds or re-clones, when a crashed primary is
 * restarted under its term, and how a clean stop releases.  The agent
 * (agent.c) observes and carries out; this file never does I/O, never reads
 * a clock and keeps no global, so test/unit/test_decide.c runs the same code
 * on a fake clock.
 *
 * A step runs in a fixed order: store faults, the holder's duties, a clean
 * stop, the server's exit, the lease reading, then the role's own rules,
 * then the heartbeat.  Safety (fencing) always comes first.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pglease/decide.h"
#include "pglease/log.h"

/* Observers look at the holder's lock this often when nothing wakes them. */
#define OBSERVE_MS 100			/* a candidate's step interval */
/* A failed claim (store locked or full) is retried after this. */
#define CLAIM_RETRY_MS 250
/* A failed renewal is retried after this, until the deadline. */
#define RENEW_RETRY_MS 100
/* A switchover waits this long at most for its target to catch up. */
#define SWITCHOVER_LAG_BYTES (16 * 1024 * 1024)
/* A failed standby start, clone or rewind is retried after this. */
#define START_RETRY_MS 1000
/* The primary re-checks its replication slots this often. */
#define SLOTS_MS 5000

const char *
pgl_role_name(enum pgl_role r)
{
	static const char *const names[] = {
		"standby", "candidate", "promoting", "primary", "fenced", "stopping", "stopped",
	};

	return (unsigned) r < PGL_ARRAY_LEN(names) ? names[r] : "?";
}

const char *
pgl_job_name(enum pgl_job j)
{
	static const char *const names[] = {
		"none", "bootstrap", "clone", "rewind", "start", "promote", "stop", "handover",
	};

	return (unsigned) j < PGL_ARRAY_LEN(names) ? names[j] : "?";
}

void
pgl_decide_init(struct pgl_decider *dc, const struct pgl_decide_cfg *cfg)
{
	memset(dc, 0, sizeof(*dc));
	dc->cfg = *cfg;
	dc->role = PGL_ROLE_STANDBY;
}

void
pgl_decide_free(struct pgl_decider *dc)
{
	if (dc == NULL)
		return;
	free(dc->hb);
	dc->hb = NULL;
	dc->n_hb = 0;
}

/* ---- building actions ---- */

/*
 * Appends an action of type t.  No step asks for more than a handful; were
 * the list full, the last action (never a fence: fencing comes first) would
 * be replaced.
 */
static struct pgl_action *
add(struct pgl_actions *out, enum pgl_act t)
{
	struct pgl_action *a;

	assert(out->n < PGL_MAX_ACTIONS);
	if (out->n == PGL_MAX_ACTIONS)
		out->n--;
	a = &out->a[out->n++];
	memset(a, 0, sizeof(*a));
	a->type = t;
	return a;
}

static void __attribute__((format(printf, 3, 4)))
say(struct pgl_actions *out, int level, const char *fmt, ...)
{
	struct pgl_action *a = add(out, PGL_ACT_LOG);
	va_list ap;

	a->level = level;
	va_start(ap, fmt);
	vsnprintf(a->text, sizeof(a->text), fmt, ap);
	va_end(ap);
}

/* An event; its log line (may be NULL) is set by the caller through the return. */
static struct pgl_action * __attribute__((format(printf, 4, 5)))
event(struct pgl_actions *out, int64_t term, const char *kind, const char *fmt, ...)
{
	struct pgl_action *a = add(out, PGL_ACT_EVENT);
	va_list ap;

	a->term = term;
	a->level = PGL_ALOG_INFO;
	pgl_strlcpy(a->kind, kind, sizeof(a->kind));
	va_start(ap, fmt);
	vsnprintf(a->detail, sizeof(a->detail), fmt, ap);
	va_end(ap);
	return a;
}

static void
job(struct pgl_actions *out, enum pgl_job j, enum pgl_server_mode mode, const struct pgl_node *n)
{
	struct pgl_action *a = add(out, PGL_ACT_JOB);

	a->job = j;
	a->mode = mode;
	if (n) {
		a->node = *n;
		a->has_node = true;
	}
}

/* ---- the holder ---- */

/* Gives up the term at once: the server is killed before anything else. */
static void
fence(struct pgl_decider *dc, const char *why, struct pgl_actions *out)
{
	struct pgl_action *a = add(out, PGL_ACT_FENCE);

	a->term = dc->term;
	pgl_strlcpy(a->detail, why, sizeof(a->detail));
	snprintf(a->text, sizeof(a->text), "fenced: %s (gave up term %" PRId64
			 "; postgres stopped immediately)", why, dc->term);
	dc->term = 0;
	dc->role = PGL_ROLE_FENCED;
	dc->following[0] = '\0';
}

void
pgl_decide_holder(struct pgl_decider *dc, int64_t now, struct pgl_actions *out)
{
	if (dc->term == 0)
		return;
	if (now >= dc->deadline_ms) {
		fence(dc, "deadline passed without a successful renewal", out);
		return;
	}
	if (now >= dc->next_renew_ms && now >= dc->renew_retry_ms)
		add(out, PGL_ACT_RENEW)->term = dc->term;
}

void
pgl_decide_renewed(struct pgl_decider *dc, int rc, int64_t t0, int64_t deadline,
				   const char *why, int64_t now, struct pgl_actions *out)
{
	int64_t iv = dc->cfg.renew_interval_ms;
	int64_t late = dc->last_renew_ms ? t0 - (dc->last_renew_ms + iv) : 0;

	if (dc->term == 0)
		return;
	if (rc == 0) {
		if (late > iv / 2) {
			say(out, PGL_ALOG_WARN, "renewal late by %" PRId64 " ms", late);
			if (late >= iv)
				event(out, dc->term, "renewed-late", "late by %" PRId64 " ms", late);
		}
		dc->deadline_ms = deadline;
		dc->last_renew_ms = t0;
		dc->next_renew_ms = t0 + iv;
		dc->renew_retry_ms = 0;
		return;
	}
	if (rc == -PGL_ENOTHOLDER) {
		fence(dc, "higher term seen: the lease is no longer ours", out);
		return;
	}
	say(out, PGL_ALOG_WARN, "renewal failed: %s (%s); fencing in %" PRId64 " ms unless a "
		"renewal succeeds", pgl_strerror(rc), why ? why : "", dc->deadline_ms - now);
	dc->renew_retry_ms = now + RENEW_RETRY_MS;
}

/* Releases the held term (lsn "" for none) and forgets it. */
static void
release(struct pgl_decider *dc, const char *lsn, const char *why, struct pgl_actions *out)
{
	struct pgl_action *a = add(out, PGL_ACT_RELEASE);

	a->term = dc->term;
	pgl_strlcpy(a->lsn, lsn ? lsn : "", sizeof(a->lsn));
	pgl_strlcpy(a->detail, why, sizeof(a->detail));
	dc->term = 0;
	dc->following[0] = '\0';
}

/* ---- liveness of the other nodes ---- */

static int
track_heartbeats(struct pgl_decider *dc, const struct pgl_node *nodes, int n, int64_t now)
{
	for (int i = 0; i < n; i++) {
		int j;

		for (j = 0; j < dc->n_hb; j++)
			if (strcmp(dc->hb[j].name, nodes[i].name) == 0)
				break;
		if (j == dc->n_hb) {
			struct pgl_hb_seen *hb = realloc(dc->hb, (dc->n_hb + 1) * sizeof(*hb));

			if (hb == NULL)
				return -PGL_ENOMEM;
			dc->hb = hb;
			pgl_strlcpy(hb[j].name, nodes[i].name, sizeof(hb[j].name));
			hb[j].heartbeat = -1;
			hb[j].first_ms = now;
			dc->n_hb++;
		}
		if (dc->hb[j].heartbeat != nodes[i].heartbeat) {
			dc->hb[j].heartbeat = nodes[i].heartbeat;
			dc->hb[j].changed_ms = now;
		}
	}
	return 0;
}

/* Monotonic time this node last saw name's heartbeat change, 0 if never. */
static int64_t
hb_changed_at(const struct pgl_decider *dc, const char *name)
{
	for (int j = 0; j < dc->n_hb; j++)
		if (strcmp(dc->hb[j].name, name) == 0)
			return dc->hb[j].changed_ms;
	return 0;
}

bool
pgl_decide_node_live(const struct pgl_decider *dc, const char *name, int64_t now, int64_t ttl)
{
	int64_t at = hb_changed_at(dc, name);

	return at > 0 && now - at < ttl;
}

/* The TTL the CLI judges by: the lease row's, or the default. */
static double
cli_ttl_s(const struct pgl_lease *l)
{
	return (l->ttl_ms > 0 ? l->ttl_ms : 5000) / 1000.0;
}

bool
pgl_decide_primary_live(const struct pgl_lease *l, const struct pgl_node *h,
						char *why, size_t len)
{
	double ttl_s = cli_ttl_s(l);
	char name[4 * PGL_NAME_MAX];

	pgl_text_escape(name, sizeof(name), l->holder);
	if (!l->holder[0])
		snprintf(why, len, "the lease has no holder (term %" PRId64 ")", l->term);
	else if (h == NULL)
		snprintf(why, len, "holder %s has no node row", name);
	else if (h->age_s < 0 || h->age_s > 2 * ttl_s)
		snprintf(why, len, "holder %s's last heartbeat is %s", name,
				 h->age_s < 0 ? "unknown" : "stale");
	else if (l->store_expires && l->holder_expired)
		snprintf(why, len, "holder %s's lease expired in etcd", name);
	else if (!l->store_expires && (l->renewed_age_s < 0 || l->renewed_age_s > ttl_s))
		snprintf(why, len, "holder %s has not renewed the lease within its TTL", name);
	else
		return true;
	return false;
}

bool
pgl_decide_node_reachable(const struct pgl_lease *l, const struct pgl_node *n)
{
	return n->age_s >= 0 && n->age_s <= cli_ttl_s(l);
}

static void start_job(struct pgl_decider *dc, enum pgl_job j, enum pgl_server_mode mode,
					  const struct pgl_node *n, struct pgl_actions *out);

bool
pgl_decide_node_healthy(const struct pgl_lease *l, const struct pgl_node *n, char *msg,
						size_t len)
{
	double ttl_s = cli_ttl_s(l);
	bool holds = strcmp(l->holder, n->name) == 0;
	char name[4 * PGL_NAME_MAX], holder[4 * PGL_NAME_MAX], role[4 * sizeof(n->role)];

	pgl_text_escape(name, sizeof(name), n->name);
	pgl_text_escape(holder, sizeof(holder), l->holder);
	pgl_text_escape(role, sizeof(role), n->role);
	if (n->age_s < 0 || n->age_s >= 3 * ttl_s)
		snprintf(msg, len, "%s: no heartbeat for %s (limit %.1fs)", name,
				 n->age_s < 0 ? "ever" : "too long", 3 * ttl_s);
	else if (strcmp(n->role, "primary") == 0 && !holds)
		snprintf(msg, len, "%s: role primary but the lease is held by %s (term %" PRId64 ")",
				 name, l->holder[0] ? holder : "nobody", l->term);
	else if (strcmp(n->role, "primary") != 0 && strcmp(n->role, "standby") != 0)
		snprintf(msg, len, "%s: role is %s", name, n->role[0] ? role : "unknown");
	else {
		snprintf(msg, len, "%s: healthy %s%s, heartbeat %.1fs ago, term %" PRId64, name, role,
				 holds ? " holding the lease" : "", n->age_s, l->term);
		return true;
	}
	return false;
}

/* ---- claimability and the election ---- */

/* The TTL an observer waits: the longer of its own and the holder's. */
static int64_t
observer_ttl(const struct pgl_decider *dc)
{
	int64_t ttl = dc->lease.ttl_ms > dc->cfg.lease_ttl_ms ? dc->lease.ttl_ms
		: dc->cfg.lease_ttl_ms;

#ifdef PGL_DECIDE_BROKEN_FOR_TEST
	ttl /= 2;				/* a deliberately broken rule: the simulation must catch it */
#endif
	return ttl;
}

/* Is the lease claimable as seen from here?  Sets dc->expiry_rule. */
static bool
claimable(struct pgl_decider *dc, const struct pgl_obs *obs)
{
	const struct pgl_lease *l = &dc->lease;
	char *r = dc->expiry_rule;
	size_t rl = sizeof(dc->expiry_rule);

	if (l->holder[0] == '\0') {
		if (l->has_released_lsn)
			snprintf(r, rl, "lease released at %s", l->released_lsn);
		else
			snprintf(r, rl, l->term == 0 ? "no lease yet" : "lease released");
		return true;
	}
	if (strcmp(l->holder, dc->cfg.node_name) == 0) {
		/* This agent holds its own alive lock, so the previous incarnation is gone. */
		snprintf(r, rl, "own previous term is dead");
		return true;
	}
	if (obs->holder_gone) {
		snprintf(r, rl, "holder's processes gone");
		return true;
	}
	if (l->store_expires) {
		/* etcd: the store times the holder out; no observer's clock does */
		if (l->holder_expired)
			snprintf(r, rl, "holder's lease expired in the store");
		return l->holder_expired;
	}
	if (pgl_observer_expired(&dc->obs, obs->now, observer_ttl(dc))) {
		snprintf(r, rl, "lease unchanged for %" PRId64 " ms", obs->now - dc->obs.first_seen_ms);
		return true;
	}
	return false;
}

static const char *directed_to(const struct pgl_decider *dc, const struct pgl_obs *obs);

struct cand {
	const char *name;
	uint64_t lsn;
	int64_t priority;
	int64_t timeline;			/* set only when re-forming (else 0 for all) */
};

/*
 * True when a ranks before b: timeline (only when re-forming: the nodes may
 * come from different histories), received LSN, then priority, then name.
 */
static bool
ranks_before(const struct cand *a, const struct cand *b)
{
	if (a->timeline != b->timeline)
		return a->timeline > b->timeline;
	if (a->lsn != b->lsn)
		return a->lsn > b->lsn;
	if (a->priority != b->priority)
		return a->priority > b->priority;
	return strcmp(a->name, b->name) < 0;
}

/* How another node stands in this election. */
enum rival_kind { RIVAL_NONE = 0, RIVAL_UP, RIVAL_DOWN };

/*
 * May node row o stand in this election (other than this node)?  RIVAL_UP: a
 * running standby (or, at bootstrap, an empty node).  RIVAL_DOWN: a live node
 * whose server is down or starting (after a crash, a fence, a failed rewind)
 * and that publishes the LSN it had received: its WAL is still on its disk,
 * and with synchronous replication it may be the only copy of an
 * acknowledged commit.
 */
static enum rival_kind
rival(const struct pgl_decider *dc, const struct pgl_node *o, bool bootstrap, int64_t now)
{
	if (strcmp(o->name, dc->cfg.node_name) == 0 || o->priority <= 0 ||
		!pgl_decide_node_live(dc, o->name, now, observer_ttl(dc)))
		return RIVAL_NONE;
	if (strcmp(o->role, "standby") == 0)
		return RIVAL_UP;
	if (bootstrap && strcmp(o->state, "empty") == 0)
		return RIVAL_UP;
	if (strcmp(o->role, "primary") != 0 && o->receive_lsn_int > 0 &&
		strcmp(o->state, "stopping") != 0 && strcmp(o->state, "stopped") != 0)
		return RIVAL_DOWN;
	return RIVAL_NONE;
}

/*
 * With synchronous replication: was node row o a standby, alive within a TTL
 * before this node saw the lease expire, silent since?  It may be frozen or
 * cut off right after acknowledging the last commits, which the others may
 * lack (ANY 1 of several standbys): the others wait for it as for a better
 * candidate that is down.
 */
static bool
silent_standby(const struct pgl_decider *dc, const struct pgl_node *o, int64_t now)
{
	int64_t at = hb_changed_at(dc, o->name);

	return dc->cfg.sync_replication && strcmp(o->name, dc->cfg.node_name) != 0 &&
		o->priority > 0 && strcmp(o->role, "standby") == 0 && dc->lease.term > 0 &&
		at > 0 && at >= dc->expired_since_ms - observer_ttl(dc) && at < dc->expired_since_ms;
}

/* How long a better rival whose server is down holds up the election. */
static int64_t
down_wait_ms(const struct pgl_decider *dc)
{
	int64_t w = 2 * dc->cfg.lease_ttl_ms;

	return w > 3 * dc->cfg.election_grace_ms ? w : 3 * dc->cfg.election_grace_ms;
}

/*
 * Does node row o hold this node back for now: a silent standby (with
 * synchronous replication) or a better candidate whose server is down, for
 * at most down_wait_ms() after the expiry?  Says so once per election.
 */
static bool
held_back_by(struct pgl_decider *dc, const struct pgl_obs *obs, const struct pgl_node *o,
			 const struct cand *me, bool bootstrap, struct pgl_actions *out)
{
	struct cand c = { o->name, o->receive_lsn_int, o->priority, me->timeline ? o->timeline : 0 };
	char lsn[PGL_LSN_TEXT_MAX];

	if (obs->now - dc->expired_since_ms >= down_wait_ms(dc))
		return false;
	if (silent_standby(dc, o, obs->now)) {
		if (dc->rival_down_ms == 0)
			say(out, PGL_ALOG_INFO, "deferring to %s: it was a standby until the lease "
				"expired and has not reported since; with synchronous replication it may "
				"hold acknowledged commits; waiting up to %" PRId64 " ms for it", o->name,
				down_wait_ms(dc));
	} else if (rival(dc, o, bootstrap, obs->now) == RIVAL_DOWN && ranks_before(&c, me)) {
		pgl_lsn_format(c.lsn, lsn, sizeof(lsn));
		if (dc->rival_down_ms == 0)
			say(out, PGL_ALOG_INFO, "deferring to %s: its server is down (%s) but it "
				"had received up to %s; waiting up to %" PRId64 " ms for it", o->name,
				o->state[0] ? o->state : "unknown", lsn, down_wait_ms(dc));
	} else
		return false;
	dc->rival_down_ms = obs->now;
	return true;
}

/*
 * max_lag_on_failover: further behind the holder's last reported position
 * than that, this node does not stand (only a failover --to can name it).
 * Said once per term.
 */
static bool
too_far_behind(const struct pgl_decider *dc, const struct pgl_obs *obs, uint64_t lsn)
{
	const struct pgl_node *h = NULL;

	if (dc->cfg.max_lag_on_failover <= 0 || !dc->lease.holder[0])
		return false;
	for (int i = 0; i < obs->n_nodes; i++)
		if (strcmp(obs->nodes[i].name, dc->lease.holder) == 0)
			h = &obs->nodes[i];
	return h && h->receive_lsn_int > lsn &&
		h->receive_lsn_int - lsn > (uint64_t) dc->cfg.max_lag_on_failover;
}

/* Is this node a candidate now (named: by a request)?  Fills in its own LSN. */
static bool
standing(const struct pgl_decider *dc, const struct pgl_obs *obs, bool bootstrap,
		 bool released, bool named, struct cand *me)
{
	const struct pgl_server_obs *s = &obs->server;

	/* Paused: no election; an operator's failover --to still names a node. */
	if (dc->cfg.priority == 0 || (obs->paused && !named) || obs->now < dc->claim_retry_ms ||
		dc->claiming)
		return false;
	if (s->has_data) {
		if (!s->running || s->mode != PGL_SERVER_STANDBY || !s->status_ok)
			return false;		/* a candidate is a running standby */
		me->lsn = s->receive_lsn;
	} else if (!bootstrap)
		return false;			/* nothing to promote; wait for a primary to clone */
	if (!named && !released && too_far_behind(dc, obs, me->lsn))
		return false;
	/*
	 * released_lsn is the start of the old primary's shutdown checkpoint
	 * record; a candidate must have received past it, so that the new
	 * timeline forks after that record and the old primary can follow
	 * without a rewind.
	 */
	return !(released && me->lsn <= dc->lease.released_lsn_int);
}

/* Does node row o show a data directory (a position, or a state only a data directory has)? */
static bool
row_has_data(const struct pgl_node *o)
{
	return o->receive_lsn_int > 0 || o->timeline > 0 ||
		(o->state[0] && strcmp(o->state, "empty") != 0 && strcmp(o->state, "initdb") != 0 &&
		 strcmp(o->state, "cloning") != 0);
}

/*
 * Is the cluster re-forming?  The store has never granted a term (it is new,
 * or made by `pglease store rebuild`) while this node or another node's
 * record has data: the store was lost, not the cluster.  Then no node
 * bootstraps, and the first election goes to the most advanced node.
 */
static bool
reforming(const struct pgl_decider *dc, const struct pgl_obs *obs)
{
	const struct pgl_lease *l = &dc->lease;

	if (l->holder[0] || !(l->never_held || l->term == 0))
		return false;
	if (obs->server.has_data)
		return true;
	for (int i = 0; i < obs->n_nodes; i++)
		if (strcmp(obs->nodes[i].name, dc->cfg.node_name) != 0 && row_has_data(&obs->nodes[i]))
			return true;
	return false;
}

/* How long a re-formation waits for the nodes the records name. */
static int64_t
reform_wait_ms(const struct pgl_decider *dc)
{
	int64_t w = 3 * dc->cfg.lease_ttl_ms;

	return w > 6 * dc->cfg.election_grace_ms ? w : 6 * dc->cfg.election_grace_ms;
}

/* Has name's heartbeat changed since this node first read it (it runs now)? */
static bool
reported(const struct pgl_decider *dc, const char *name)
{
	for (int j = 0; j < dc->n_hb; j++)
		if (strcmp(dc->hb[j].name, name) == 0)
			return dc->hb[j].changed_ms > dc->hb[j].first_ms;
	return false;
}

/*
 * Re-forming: every node the records name (priority above 0) holds the
 * election back until it has reported since this node first read its record
 * and, when it has data, runs as a standby (so that it stands with its
 * position), for at most reform_wait_ms() after the election began; the
 * graces then count from the last hold.  A record may be far older than the
 * store, so a first reading proves nothing.  Says so once.
 */
static bool
reform_held(struct pgl_decider *dc, const struct pgl_obs *obs, struct pgl_actions *out)
{
	const struct pgl_node *w = NULL;

	if (obs->now - dc->expired_since_ms >= reform_wait_ms(dc))
		return false;
	for (int i = 0; i < obs->n_nodes && w == NULL; i++) {
		const struct pgl_node *o = &obs->nodes[i];

		if (strcmp(o->name, dc->cfg.node_name) == 0 || o->priority <= 0)
			continue;
		if (!reported(dc, o->name) ||
			(row_has_data(o) && rival(dc, o, false, obs->now) != RIVAL_UP))
			w = o;
	}
	if (w == NULL)
		return false;
	if (!(dc->said & PGL_SAID_REFORM_WAIT))
		say(out, PGL_ALOG_WARN, "the lease store is new or rebuilt (term %" PRId64 ", never "
			"held) and the nodes have data: re-forming the cluster; waiting up to %" PRId64
			" ms for %s and every other node the records name to report and run, so that "
			"the most advanced node becomes primary", dc->lease.term, reform_wait_ms(dc),
			w->name);
	dc->said |= PGL_SAID_REFORM_WAIT;
	dc->rival_down_ms = obs->now;
	return true;
}

/*
 * Why a node that does not stand cannot proceed, once per state: no data to
 * promote while the cluster's data is elsewhere (re-forming), or no data and
 * no primary to clone from in a store that was held before (the store names
 * a cluster whose data no running node has).
 */
static void
say_not_standing(struct pgl_decider *dc, const struct pgl_obs *obs, bool reform,
				 bool bootstrap, struct pgl_actions *out)
{
	if (obs->server.has_data || bootstrap || dc->cfg.priority == 0)
		return;
	if (reform && !(dc->said & PGL_SAID_REFORM_EMPTY)) {
		dc->said |= PGL_SAID_REFORM_EMPTY;
		say(out, PGL_ALOG_WARN, "the lease store is new or rebuilt, and node records show "
			"the cluster's data on other nodes: this node has none, so it waits for one of "
			"them to become primary and then clones it; if those records are left over "
			"from another cluster, remove them (`pglease remove NAME`) or give this cluster "
			"a lease directory of its own");
	} else if (!reform && !(dc->said & PGL_SAID_NO_DATA)) {
		dc->said |= PGL_SAID_NO_DATA;
		say(out, PGL_ALOG_WARN, "this node has no data and lease term %" PRId64 " has no "
			"live holder to clone from: the store names a cluster whose data no running "
			"node has; start the nodes that have it, or, if this store is left over from "
			"another cluster (scripts/local-cluster.sh and docker-compose.yml both use "
			"volumes/lease), stop these agents and give them a lease directory of their "
			"own", dc->lease.term);
	}
}

/*
 * The lease's term is at PGL_TERM_MAX: no next term may be granted (checked
 * before any + 1).  Says so once.
 */
static bool
at_term_limit(struct pgl_decider *dc, struct pgl_actions *out)
{
	if (dc->lease.term < PGL_TERM_MAX)
		return false;
	if (!(dc->said & PGL_SAID_TERM_LIMIT))
		say(out, PGL_ALOG_ERROR, "lease term %" PRId64 " is at pglease's limit: no node "
			"can claim the next term; with every agent stopped, run `pglease store "
			"rebuild`", dc->lease.term);
	dc->said |= PGL_SAID_TERM_LIMIT;
	return true;
}

/* Says once per term that this node stands back for max_lag_on_failover. */
static void
say_too_far_behind(struct pgl_decider *dc, const struct pgl_obs *obs, struct pgl_actions *out)
{
	const struct pgl_lease *l = &dc->lease;

	if (dc->lag_said_term == l->term || !obs->server.status_ok ||
		!too_far_behind(dc, obs, obs->server.receive_lsn))
		return;
	say(out, PGL_ALOG_WARN, "not standing for term %" PRId64 ": more than "
		"max_lag_on_failover (%" PRId64 " bytes) behind %s's last reported "
		"position; `pglease failover --to %s` can still name this node",
		l->term + 1, dc->cfg.max_lag_on_failover, l->holder, dc->cfg.node_name);
	dc->lag_said_term = l->term;
}

/*
 * Decides whether this node claims the claimable lease now.
 *
 * Candidates rank by received LSN, priority, name.  The LSNs in the nodes
 * table are up to one heartbeat old, so every candidate publishes a fresh
 * heartbeat the moment it finds the lease claimable, and the best claims at
 * once only when every live candidate has published since then: with
 * synchronous replication, the standby holding an acknowledged commit is
 * never outranked by a stale reading.  Others wait election_grace_ms, and
 * even then defer to a fresher, better candidate until three graces pass.
 * A node that holds_back_by() (a better candidate whose server is down, a
 * silent standby with synchronous replication) holds everyone up first; the
 * graces then count from the last time it did.
 */
static bool
should_claim(struct pgl_decider *dc, const struct pgl_obs *obs, struct pgl_actions *out)
{
	const struct pgl_lease *l = &dc->lease;
	bool reform = reforming(dc, obs);
	bool bootstrap = !reform && l->term == 0 && l->holder[0] == '\0';
	bool released = (l->holder[0] == '\0' && l->has_released_lsn);
	struct cand me = { dc->cfg.node_name, 0, dc->cfg.priority, 0 };
	int64_t grace = dc->cfg.election_grace_ms, since;
	bool best = true, all_fresh = true, fresher_better = false;

	const char *to = directed_to(dc, obs);

	if (to && strcmp(to, dc->cfg.node_name) != 0) {
		if (dc->sw_waiting_seq != obs->sw.seq)
			say(out, PGL_ALOG_INFO, "leaving term %" PRId64 " to %s: %s %" PRId64
				" requested by %s names it", l->term + 1, to, obs->sw.failover ? "failover"
				: "switchover", obs->sw.seq, obs->sw.requested_by);
		dc->sw_waiting_seq = obs->sw.seq;
		return false;
	}
	if (at_term_limit(dc, out))
		return false;
	if (!standing(dc, obs, bootstrap, released, to != NULL, &me)) {
		say_not_standing(dc, obs, reform, bootstrap, out);
		if (!to && !released)
			say_too_far_behind(dc, obs, out);
		return false;
	}
	if (to) {
		dc->sw_claim_seq = obs->sw.seq;
		return true;			/* named: no election */
	}
	if (reform) {
		me.timeline = obs->server.timeline;
		if (reform_held(dc, obs, out))
			return false;
	}
	for (int i = 0; i < obs->n_nodes; i++) {
		const struct pgl_node *o = &obs->nodes[i];
		struct cand c = { o->name, o->receive_lsn_int, o->priority, reform ? o->timeline : 0 };
		bool fresh;

		if (!released && held_back_by(dc, obs, o, &me, bootstrap, out))
			return false;
		if (rival(dc, o, bootstrap, obs->now) != RIVAL_UP ||
			(released && c.lsn <= l->released_lsn_int))
			continue;
		fresh = hb_changed_at(dc, o->name) >= dc->expired_since_ms;
		all_fresh &= fresh;
		if (ranks_before(&c, &me)) {
			best = false;
			fresher_better |= fresh;
		}
	}
	since = obs->now - (dc->rival_down_ms > dc->expired_since_ms ? dc->rival_down_ms
						: dc->expired_since_ms);
	return (best && all_fresh) || (since >= grace && !fresher_better) || since >= 3 * grace;
}

/*
 * The node a switchover or failover --to names for the next term, while the
 * others leave it to that node: a switchover's target for one TTL after the
 * lease became claimable here (it claims within milliseconds when alive), a
 * failover's for the request's timeout (counted from the later of the expiry
 * and the moment this node first read the request).  NULL when there is no such request
 * for the lease's current term.
 */
static const char *
directed_to(const struct pgl_decider *dc, const struct pgl_obs *obs)
{
	const struct pgl_switchover *w = &obs->sw;
	int64_t bound, since;

	if (!obs->sw_ok || w->state != PGL_SW_HANDING_OVER || w->term != dc->lease.term ||
		!w->target[0])
		return NULL;
	bound = w->failover ? w->timeout_ms : dc->cfg.lease_ttl_ms;
	since = dc->sw_seen_ms > dc->expired_since_ms ? dc->sw_seen_ms : dc->expired_since_ms;
	return obs->now - since < bound ? w->target : NULL;
}

/* The lease is claimable as seen from here: stand as a candidate. */
static void
candidate(struct pgl_decider *dc, const struct pgl_obs *obs, struct pgl_actions *out)
{
	struct pgl_action *a;

	if (dc->expired_since_ms == 0) {
		dc->expired_since_ms = obs->now;
		dc->role = PGL_ROLE_CANDIDATE;
		/* Publish a fresh LSN for the election right away. */
		add(out, PGL_ACT_HEARTBEAT);
		dc->next_heartbeat_ms = obs->now + dc->cfg.renew_interval_ms;
		if (dc->lease.holder[0])
			say(out, PGL_ALOG_INFO, "lease term %" PRId64 " of %s claimable as seen here: %s",
				dc->lease.term, dc->lease.holder, dc->expiry_rule);
	}
	/* A data directory without a primary runs as a standby, to be a candidate. */
	if (!obs->server.running && obs->server.has_data && obs->job == PGL_JOB_NONE) {
		job(out, PGL_JOB_START, PGL_SERVER_STANDBY, NULL);
		return;
	}
	if (obs->job != PGL_JOB_NONE || !should_claim(dc, obs, out))
		return;
	a = add(out, PGL_ACT_CLAIM);
	a->lease = dc->lease;
	if (dc->sw_claim_seq)
		snprintf(a->detail, sizeof(a->detail), "named by %s %" PRId64 " (requested by %s); "
				 "%s (previous holder %s, term %" PRId64 ")", obs->sw.failover ? "failover"
				 : "switchover", obs->sw.seq, obs->sw.requested_by, dc->expiry_rule,
				 dc->lease.holder[0] ? dc->lease.holder : "none", dc->lease.term);
	else
		snprintf(a->detail, sizeof(a->detail), "%s (previous holder %s, term %" PRId64 ")",
				 dc->expiry_rule, dc->lease.holder[0] ? dc->lease.holder : "none",
				 dc->lease.term);
	dc->claiming = true;
}

void
pgl_decide_claimed(struct pgl_decider *dc, int rc, int64_t new_term, int64_t t0,
				   const char *why, struct pgl_actions *out)
{
	dc->claiming = false;
	if (rc < 0)
		dc->sw_claim_seq = 0;
	if (rc == -PGL_ECONFLICT) {
		say(out, PGL_ALOG_INFO, "lost the claim for term %" PRId64 ": the lease changed",
			dc->lease.term + 1);
		return;
	}
	if (rc < 0) {
		/* Back off: a full or locked store must not turn every wake into a retry. */
		if (dc->claim_failures++ % 20 == 0)
			say(out, PGL_ALOG_WARN, "claim failed: %s (%s); retrying every %d ms",
				pgl_strerror(rc), why ? why : "", CLAIM_RETRY_MS);
		dc->claim_retry_ms = t0 + CLAIM_RETRY_MS;
		return;
	}
	dc->claim_failures = 0;
	dc->term = new_term;
	dc->deadline_ms = t0 + dc->cfg.lease_ttl_ms - dc->cfg.fence_margin_ms;
	dc->last_renew_ms = t0;
	dc->next_renew_ms = t0 + dc->cfg.renew_interval_ms;
	dc->renew_retry_ms = 0;
	dc->expired_since_ms = 0;
	dc->rival_down_ms = 0;
	dc->role = PGL_ROLE_PROMOTING;
	dc->following[0] = '\0';
	/* Bootstrap an empty node, promote a standby. */
	start_job(dc, dc->has_data ? PGL_JOB_PROMOTE : PGL_JOB_BOOTSTRAP, PGL_SERVER_PRIMARY, NULL,
			  out);
}

/* The term is ours and the server runs as primary. */
static void
primary_ready(struct pgl_decider *dc, int64_t now, struct pgl_actions *out)
{
	dc->role = PGL_ROLE_PRIMARY;
	dc->following[0] = '\0';
	add(out, PGL_ACT_ARM_FENCE);
	add(out, PGL_ACT_SYNC_SLOTS);
	dc->slots_checked_ms = now;
	dc->next_heartbeat_ms = 0;
	if (dc->sw_claim_seq) {
		struct pgl_action *a = add(out, PGL_ACT_SWITCHOVER);

		a->seq = dc->sw_claim_seq;
		a->sw_state = PGL_SW_DONE;
		snprintf(a->detail, sizeof(a->detail), "%s is primary on term %" PRId64,
				 dc->cfg.node_name, dc->term);
		dc->sw_claim_seq = 0;
	}
}

/* ---- switchover: the primary hands over ---- */

/* Why node o cannot take over from primary now; NULL when it can. */
static const char *
sw_unfit(const struct pgl_node *o, bool (*live)(const struct pgl_node *, const void *),
		 const void *ctx, const char *primary, uint64_t primary_lsn, int64_t max_lag,
		 bool *lasting)
{
	*lasting = true;
	if (strcmp(o->name, primary) == 0)
		return "it is the primary";
	if (o->priority <= 0)
		return "its priority is 0 (it never becomes primary)";
	*lasting = false;
	if (!live(o, ctx))
		return "it has not reported for longer than the lease TTL";
	if (strcmp(o->role, "standby") != 0 || strcmp(o->state, "streaming") != 0 ||
		strcmp(o->upstream, primary) != 0)
		return "it is not streaming from the primary";
	if (max_lag >= 0 && (o->receive_lsn_int == 0 ||
						 (primary_lsn > o->receive_lsn_int &&
						  primary_lsn - o->receive_lsn_int > (uint64_t) max_lag)))
		return "it lags too far behind";
	return NULL;
}

int
pgl_decide_switchover_target(const struct pgl_node *nodes, int n,
							 bool (*live)(const struct pgl_node *n, const void *ctx),
							 const void *ctx, const char *primary, uint64_t primary_lsn,
							 const char *want, int64_t max_lag, char *why, size_t len)
{
	struct cand best = { NULL, 0, 0, 0 };
	int found = -1;
	bool lasting;
	const char *r;

	if (want && *want) {
		for (int i = 0; i < n; i++) {
			if (strcmp(nodes[i].name, want) != 0)
				continue;
			if ((r = sw_unfit(&nodes[i], live, ctx, primary, primary_lsn, max_lag,
							  &lasting)) == NULL)
				return i;
			snprintf(why, len, "%s cannot take over: %s", want, r);
			return lasting ? -2 : -1;
		}
		snprintf(why, len, "no node named %s", want);
		return -2;
	}
	for (int i = 0; i < n; i++) {
		struct cand c = { nodes[i].name, nodes[i].receive_lsn_int, nodes[i].priority, 0 };

		if (sw_unfit(&nodes[i], live, ctx, primary, primary_lsn, max_lag, &lasting) == NULL &&
			(found < 0 || ranks_before(&c, &best))) {
			found = i;
			best = c;
		}
	}
	if (found < 0)
		snprintf(why, len, "no standby can take over: none is live, streaming from %s, "
				 "within the lag bound and of priority above 0", primary);
	return found;
}

struct live_ctx {
	const struct pgl_decider *dc;
	int64_t now;
};

static bool
agent_live(const struct pgl_node *n, const void *ctx)
{
	const struct live_ctx *c = ctx;

	return pgl_decide_node_live(c->dc, n->name, c->now, observer_ttl(c->dc));
}

/* Ends request seq as failed, saying why. */
static void
sw_fail(struct pgl_decider *dc, int64_t seq, const char *why, struct pgl_actions *out)
{
	struct pgl_action *a = add(out, PGL_ACT_SWITCHOVER);

	a->seq = seq;
	a->sw_state = PGL_SW_FAILED;
	pgl_strlcpy(a->detail, why, sizeof(a->detail));
	a->level = PGL_ALOG_WARN;
	snprintf(a->text, sizeof(a->text), "switchover %" PRId64 " failed: %s", seq, why);
	dc->sw_ended_seq = seq;
	dc->sw_seq = 0;
}

/*
 * A switchover asked of this primary (request for its term, not ended):
 * choose the target, wait for it to qualify until the request's timeout,
 * then name it in the store (HANDING_OVER) before anything else; the
 * hand-over job follows once that is written.  True while a request is
 * being handled.
 */
static bool
hand_over(struct pgl_decider *dc, const struct pgl_obs *obs, struct pgl_actions *out)
{
	const struct pgl_switchover *w = &obs->sw;
	struct live_ctx lc = { dc, obs->now };
	struct pgl_action *a;
	char why[256];
	int i;

	if (!obs->sw_ok || w->failover || w->state != PGL_SW_REQUESTED || w->term != dc->term ||
		w->seq == dc->sw_ended_seq)
		return false;
	if (dc->sw_setting)
		return true;
	if (dc->sw_seq != w->seq) {
		dc->sw_seq = w->seq;
		dc->sw_since_ms = obs->now;
		say(out, PGL_ALOG_INFO, "switchover %" PRId64 " requested by %s (to %s)", w->seq,
			w->requested_by, w->target[0] ? w->target : "the best standby");
	}
	i = pgl_decide_switchover_target(obs->nodes, obs->n_nodes, agent_live, &lc,
									 dc->cfg.node_name, obs->server.receive_lsn, w->target,
									 SWITCHOVER_LAG_BYTES, why, sizeof(why));
	if (i < 0) {
		if (i == -2 || obs->now - dc->sw_since_ms >= w->timeout_ms)
			sw_fail(dc, w->seq, why, out);
		return i == -1 && dc->sw_seq != 0;
	}
	a = add(out, PGL_ACT_SWITCHOVER);
	a->seq = w->seq;
	a->sw_state = PGL_SW_HANDING_OVER;
	a->node = obs->nodes[i];
	a->has_node = true;
	snprintf(a->detail, sizeof(a->detail), "%s hands term %" PRId64 " over to %s: CHECKPOINT, "
			 "fast shutdown, release at the shutdown checkpoint", dc->cfg.node_name, dc->term,
			 obs->nodes[i].name);
	pgl_strlcpy(dc->sw_target, obs->nodes[i].name, sizeof(dc->sw_target));
	dc->sw_setting = true;
	return true;
}

void
pgl_decide_switchover_set(struct pgl_decider *dc, int rc, int64_t now,
						  struct pgl_actions *out)
{
	if (!dc->sw_setting)
		return;
	dc->sw_setting = false;
	if (rc == -PGL_ECONFLICT) {
		dc->sw_ended_seq = dc->sw_seq;		/* ended or replaced by someone else */
		dc->sw_seq = 0;
		return;
	}
	if (rc < 0 || dc->term == 0 || dc->role != PGL_ROLE_PRIMARY)
		return;					/* retried at the next step (or fenced meanwhile) */
	say(out, PGL_ALOG_INFO, "switchover %" PRId64 ": handing term %" PRId64 " over to %s",
		dc->sw_seq, dc->term, dc->sw_target);
	start_job(dc, PGL_JOB_HANDOVER, PGL_SERVER_NONE, NULL, out);
}

/*
 * The hand-over's shutdown finished: release at the shutdown checkpoint (the
 * target has received it: walsenders wait for that before they exit), and
 * stay on as a standby.  Without a clean checkpoint the request fails first,
 * so that nobody waits for the target, and the release carries no LSN, as
 * after any unclean stop.
 */
static void
handover_done(struct pgl_decider *dc, const struct pgl_job_result *r, struct pgl_actions *out)
{
	char why[256];

	if (dc->term == 0)
		return;					/* fenced meanwhile */
	dc->sw_ended_seq = dc->sw_seq;
	if (r->rc == 0 && r->clean) {
		snprintf(why, sizeof(why), "switchover %" PRId64 " to %s: fast shutdown; only %s may "
				 "claim the next term", dc->sw_seq, dc->sw_target, dc->sw_target);
		release(dc, r->lsn, why, out);
	} else {
		sw_fail(dc, dc->sw_seq, "the primary did not stop with a clean shutdown checkpoint; "
				"the lease is released without an LSN", out);
		add(out, PGL_ACT_KILL);
		release(dc, NULL, "switchover: stop without a clean shutdown checkpoint", out);
	}
	dc->sw_seq = 0;
	dc->role = PGL_ROLE_STANDBY;
	dc->rewound = r->rc == 0 && r->clean;	/* the next term forks after our checkpoint */
}

/* ---- following ---- */

/* Remembers the job about to start, so its result can be judged. */
static void
start_job(struct pgl_decider *dc, enum pgl_job j, enum pgl_server_mode mode,
		  const struct pgl_node *n, struct pgl_actions *out)
{
	dc->job = j;
	dc->job_mode = mode;
	dc->job_has_node = n != NULL;
	if (n)
		dc->job_node = *n;
	else
		memset(&dc->job_node, 0, sizeof(dc->job_node));
	job(out, j, mode, n);
}

/*
 * Starts the local server as a standby of h.  A data directory that was a
 * primary, or one that failed to start as a standby twice (e.g. "requested
 * timeline N is not a child of this server's history"), is rewound first;
 * one that failed twice more after that is re-cloned.  Only a running
 * primary is rewound or cloned from.
 */
static void
start_standby(struct pgl_decider *dc, const struct pgl_obs *obs, const struct pgl_node *h,
			  struct pgl_actions *out)
{
	bool primary = strcmp(h->role, "primary") == 0;

	if (obs->now < dc->start_retry_ms)
		return;
	if (dc->start_failures >= 4) {
		if (!primary)
			return;
		say(out, PGL_ALOG_WARN, "postgres failed to start as a standby %d times, also after "
			"pg_rewind; re-cloning from %s", dc->start_failures, h->name);
		event(out, dc->lease.term, "recloned", "postgres failed to start %d times, also after "
			  "pg_rewind; data directory re-cloned from %s", dc->start_failures, h->name);
		start_job(dc, PGL_JOB_CLONE, PGL_SERVER_STANDBY, h, out);
	} else if (!dc->rewound && (!obs->server.standby_signal || dc->start_failures >= 2)) {
		if (primary)
			start_job(dc, PGL_JOB_REWIND, PGL_SERVER_STANDBY, h, out);
	} else {
		dc->rewound = false;
		start_job(dc, PGL_JOB_START, PGL_SERVER_STANDBY, h, out);
	}
}

/*
 * Is the holder renewing, as seen from here?  On a file store its renewals
 * change the lease's version: renewed within half a TTL.  On etcd a renewal
 * leaves no trace; the lease lives until etcd expires it.
 */
static bool
holder_renewing(const struct pgl_decider *dc, int64_t now)
{
	if (dc->lease.store_expires)
		return dc->lease.holder[0] && !dc->lease.holder_expired;
	return now - dc->obs.first_seen_ms < observer_ttl(dc) / 2;
}

/* A running standby that has not streamed from h for long: a forked timeline? */
static void
check_streaming(struct pgl_decider *dc, const struct pgl_obs *obs, const struct pgl_node *h,
				struct pgl_actions *out)
{
	const struct pgl_server_obs *s = &obs->server;
	int64_t now = obs->now, ft = dc->cfg.follow_timeout_ms;
	char host[256];
	int port = 0;

	pgl_conninfo_host_port(h->conninfo, host, sizeof(host), &port);
	if (s->streaming && s->sender_port == port) {
		dc->not_streaming_since_ms = 0;
		return;
	}
	if (dc->not_streaming_since_ms == 0)
		dc->not_streaming_since_ms = now;
	/*
	 * Rewind only when the primary answers (the job checks first and changes
	 * nothing when it does not): a standby cut off from the network is not a
	 * forked timeline, and must keep its data.
	 */
	/*
	 * Nor while the holder's lease is not being renewed: a standby that stops
	 * its server during the holder's outage is no candidate in the election
	 * that follows, though it may hold the newest acknowledged commit.
	 */
	if (strcmp(h->role, "primary") == 0 && now - dc->follow_since_ms > ft &&
		now - dc->not_streaming_since_ms > ft / 2 && holder_renewing(dc, now)) {
		say(out, PGL_ALOG_INFO, "not streaming from %s after %" PRId64 " ms: timeline forked? "
			"rewinding if it answers", h->name, ft);
		dc->rewound = false;
		start_job(dc, PGL_JOB_REWIND, PGL_SERVER_STANDBY, h, out);
	}
}

/* Not holding, the lease is held by h: clone, start, re-point, watch the stream. */
static void
follow(struct pgl_decider *dc, const struct pgl_obs *obs, const struct pgl_node *h,
	   struct pgl_actions *out)
{
	const struct pgl_server_obs *s = &obs->server;
	struct pgl_action *a;

	dc->role = PGL_ROLE_STANDBY;
	if (obs->job != PGL_JOB_NONE)
		return;
	if (!s->has_data) {
		/*
		 * A server that runs has its data, whatever the directory looked
		 * like just now: a clone would empty it under the server.
		 */
		if (!s->running && strcmp(h->role, "primary") == 0 && obs->now >= dc->start_retry_ms)
			start_job(dc, PGL_JOB_CLONE, PGL_SERVER_STANDBY, h, out);
		return;					/* else wait until it runs */
	}
	if (!s->running) {
		start_standby(dc, obs, h, out);
		return;
	}
	if (s->mode != PGL_SERVER_STANDBY)
		return;
	if (strcmp(dc->following, h->name) != 0 || dc->follow_term != dc->lease.term) {
		a = add(out, PGL_ACT_FOLLOW);
		a->node = *h;
		a->has_node = true;
		a->term = dc->lease.term;
		return;
	}
	if (s->status_ok)
		check_streaming(dc, obs, h, out);
}

void
pgl_decide_followed(struct pgl_decider *dc, const struct pgl_node *h, int rc, int64_t now,
					struct pgl_actions *out)
{
	struct pgl_action *a;

	if (rc < 0)
		return;
	a = event(out, dc->lease.term, "followed", "primary_conninfo now points at %s", h->name);
	snprintf(a->text, sizeof(a->text), "following %s (term %" PRId64 ")", h->name,
			 dc->lease.term);
	pgl_strlcpy(dc->following, h->name, sizeof(dc->following));
	dc->follow_term = dc->lease.term;
	dc->follow_since_ms = now;
	dc->not_streaming_since_ms = 0;
}

/* ---- results of jobs ---- */

/* Bootstrap or promotion failed: the term is given back. */
static void
promotion_failed(struct pgl_decider *dc, int rc, struct pgl_actions *out)
{
	struct pgl_action *a = event(out, dc->term, "promotion-failed", "%s", pgl_strerror(rc));

	a->level = PGL_ALOG_ERROR;
	snprintf(a->text, sizeof(a->text), "could not become primary (%s); releasing the lease",
			 pgl_strerror(rc));
	add(out, PGL_ACT_KILL);
	release(dc, NULL, "promotion failed", out);
	dc->role = PGL_ROLE_STANDBY;
}

static void
primary_job_done(struct pgl_decider *dc, const struct pgl_job_result *r, int64_t now,
				 struct pgl_actions *out)
{
	struct pgl_action *a;

	if (dc->term == 0)
		return;					/* fenced meanwhile */
	if (r->job == PGL_JOB_START) {
		/* A restart after a crash under the same term. */
		if (r->rc < 0) {
			add(out, PGL_ACT_KILL);
			release(dc, NULL, "postgres could not be restarted", out);
			dc->role = PGL_ROLE_STANDBY;
		} else
			add(out, PGL_ACT_ARM_FENCE);
		return;
	}
	if (r->rc < 0) {
		promotion_failed(dc, r->rc, out);
		return;
	}
	if (r->job == PGL_JOB_BOOTSTRAP)
		say(out, PGL_ALOG_INFO, "bootstrapped the cluster as primary");
	else {
		a = event(out, dc->term, "promoted", "pg_promote() done; timeline %" PRId64, r->timeline);
		snprintf(a->text, sizeof(a->text), "promoted: now primary on timeline %" PRId64,
				 r->timeline);
	}
	primary_ready(dc, now, out);
}

static void
rewind_done(struct pgl_decider *dc, const struct pgl_job_result *r, int64_t now,
			struct pgl_actions *out)
{
	const struct pgl_node *h = &dc->job_node;

	dc->follow_since_ms = now;
	if (r->rc == 0) {
		dc->rewind_failures = 0;
		dc->rewound = true;
		event(out, dc->lease.term, "rewound", "%s", r->text);
		return;
	}
	dc->start_retry_ms = now + START_RETRY_MS;
	if (r->unreachable)
		return;					/* not a fork: keep the data, try again later */
	/* One failure may be transient (the source restarting): retry once. */
	if (++dc->rewind_failures < 2) {
		say(out, PGL_ALOG_WARN, "pg_rewind against %s failed: %s; will retry", h->name, r->text);
		return;
	}
	say(out, PGL_ALOG_WARN, "pg_rewind against %s failed again: %s; re-cloning", h->name,
		r->text);
	event(out, dc->lease.term, "recloned", "pg_rewind against %s failed twice (%s); data "
		  "directory re-cloned", h->name, r->text);
	dc->rewind_failures = 0;
	dc->start_retry_ms = 0;
	start_job(dc, PGL_JOB_CLONE, PGL_SERVER_STANDBY, h, out);
}

static void
standby_job_done(struct pgl_decider *dc, const struct pgl_job_result *r, int64_t now,
				 struct pgl_actions *out)
{
	switch (r->job) {
	case PGL_JOB_CLONE:
		if (r->rc < 0) {
			dc->start_retry_ms = now + START_RETRY_MS;
			dc->next_heartbeat_ms = 0;
			return;
		}
		if (dc->start_failures < 4)		/* a re-clone was recorded when it began */
			event(out, dc->lease.term, "cloned", "pg_basebackup from %s%s%s",
				  dc->job_node.name, r->text[0] ? ": " : "", r->text);
		dc->start_failures = 0;
		break;
	case PGL_JOB_REWIND:
		rewind_done(dc, r, now, out);
		break;
	case PGL_JOB_START:
		if (!dc->job_has_node)
			break;				/* a candidate's start: no upstream to count against */
		if (r->rc < 0) {
			dc->start_failures++;
			dc->start_retry_ms = now + START_RETRY_MS;
		} else {
			dc->start_failures = 0;
			dc->following[0] = '\0';
		}
		break;
	default:
		break;
	}
}

/* The clean stop finished: release at the shutdown checkpoint, or without an LSN. */
static void
stop_done(struct pgl_decider *dc, const struct pgl_job_result *r, struct pgl_actions *out)
{
	if (dc->term) {
		if (r->rc == 0 && r->clean)
			release(dc, r->lsn, "clean stop: fast shutdown; standbys that reached the shutdown "
					"checkpoint may claim at once", out);
		else {
			add(out, PGL_ACT_KILL);
			release(dc, NULL, "stop without a clean shutdown checkpoint", out);
		}
	}
	dc->role = PGL_ROLE_STOPPED;
	add(out, PGL_ACT_EXIT)->fatal = dc->fatal;
}

void
pgl_decide_job_done(struct pgl_decider *dc, const struct pgl_job_result *r, int64_t now,
					struct pgl_actions *out)
{
	dc->job = PGL_JOB_NONE;
	if (r->job == PGL_JOB_STOP) {
		stop_done(dc, r, out);
		return;
	}
	if (r->job == PGL_JOB_HANDOVER) {
		handover_done(dc, r, out);
		return;
	}
	if (dc->stop_asked)
		return;
	if (r->job == PGL_JOB_BOOTSTRAP || r->job == PGL_JOB_PROMOTE ||
		(r->job == PGL_JOB_START && dc->job_mode == PGL_SERVER_PRIMARY))
		primary_job_done(dc, r, now, out);
	else
		standby_job_done(dc, r, now, out);
}

/* ---- one step ---- */

/* SIGTERM, or a fatal store fault: stop the server, release, exit. */
static void
begin_stop(struct pgl_decider *dc, struct pgl_actions *out)
{
	dc->stop_asked = true;
	dc->role = PGL_ROLE_STOPPING;
	if (dc->term)
		say(out, PGL_ALOG_INFO, "clean stop: fast shutdown, then releasing term %" PRId64,
			dc->term);
	start_job(dc, PGL_JOB_STOP, PGL_SERVER_NONE, NULL, out);
}

/* The store file was replaced or overwritten: fence, and stop with an error. */
static void
store_fault(struct pgl_decider *dc, const struct pgl_obs *obs, struct pgl_actions *out)
{
	if (dc->term)
		fence(dc, obs->store_fault == PGL_STORE_REPLACED ?
			  "the lease store file was deleted or replaced" :
			  "the lease store file is corrupt", out);
	say(out, PGL_ALOG_ERROR, "%s", obs->store_why);
	dc->fatal = true;
	begin_stop(dc, out);
}

/* Takes in the lease row; fences a holder that sees another term. */
static void
see_lease(struct pgl_decider *dc, const struct pgl_obs *obs, struct pgl_actions *out)
{
	dc->lease = obs->lease;
	if (pgl_observer_see(&dc->obs, &dc->lease, obs->now) && dc->lease.term > dc->seen_term) {
		if (dc->seen_term && dc->term == 0)
			say(out, PGL_ALOG_INFO, "lease term %" PRId64 " now held by %s", dc->lease.term,
				dc->lease.holder[0] ? dc->lease.holder : "nobody");
		dc->seen_term = dc->lease.term;
	}
	if (dc->term && (dc->lease.term != dc->term ||
					 strcmp(dc->lease.holder, dc->cfg.node_name) != 0))
		fence(dc, "higher term seen", out);
}

/*
 * A primary whose server does not answer at all (the status query and the
 * connection time out, as opposed to refusing) for a whole lease TTL is hung:
 * it takes no writes, so it gives up the term rather than keep the lease
 * from a standby that could.  True when it fenced.
 */
static bool
hung_primary(struct pgl_decider *dc, const struct pgl_server_obs *s, int64_t now,
			 struct pgl_actions *out)
{
	char why[128];

	if (!s->running || !s->status_asked || !s->unresponsive) {
		if (s->status_ok || !s->running)
			dc->hung_since_ms = 0;
		return false;
	}
	if (dc->hung_since_ms == 0)
		dc->hung_since_ms = now;
	if (now - dc->hung_since_ms < dc->cfg.lease_ttl_ms)
		return false;
	snprintf(why, sizeof(why), "postgres has not answered for %" PRId64 " ms (hung)",
			 now - dc->hung_since_ms);
	dc->hung_since_ms = 0;
	fence(dc, why, out);
	return true;
}

/* Holding a term: restart a crashed server under it, keep the slots. */
static void
hold(struct pgl_decider *dc, const struct pgl_obs *obs, struct pgl_actions *out)
{
	if (dc->role != PGL_ROLE_PRIMARY || obs->job != PGL_JOB_NONE)
		return;
	if (hung_primary(dc, &obs->server, obs->now, out))
		return;
	if (obs->server.running && hand_over(dc, obs, out))
		return;
	if (!obs->server.running) {
		struct pgl_action *a = event(out, dc->term, "restarted", "postgres exited; crash "
									 "recovery under the same term");

		a->level = PGL_ALOG_WARN;
		snprintf(a->text, sizeof(a->text), "postgres exited while primary; restarting it "
				 "under term %" PRId64 " (crash recovery)", dc->term);
		start_job(dc, PGL_JOB_START, PGL_SERVER_PRIMARY, NULL, out);
		return;
	}
	if (obs->now - dc->slots_checked_ms > SLOTS_MS) {
		add(out, PGL_ACT_SYNC_SLOTS);
		dc->slots_checked_ms = obs->now;
	}
}

static const struct pgl_node *
find_node(const struct pgl_obs *obs, const char *name)
{
	for (int i = 0; i < obs->n_nodes; i++)
		if (strcmp(obs->nodes[i].name, name) == 0)
			return &obs->nodes[i];
	return NULL;
}

/* When the next step is due at the latest. */
/*
 * When the next step is due at the latest.  A holder: its next renewal or
 * its deadline.  A candidate: soon (elections run on graces).  Any other
 * node waits for something to happen: inotify on the store, SIGCHLD (its
 * server, the holder's watch) or a signal wake the loop; the timer is only
 * for its next heartbeat and the moment the holder's lease, unchanged since
 * first seen, would expire here.  Never later than one renewal interval.
 */
static void
set_wake(struct pgl_decider *dc, int64_t now)
{
	int64_t t;

	if (dc->term) {
		t = dc->renew_retry_ms > dc->next_renew_ms ? dc->renew_retry_ms : dc->next_renew_ms;
		if (dc->deadline_ms < t)
			t = dc->deadline_ms;
	} else if (dc->expired_since_ms || dc->claiming)
		t = now + OBSERVE_MS;
	else {
		/* etcd expires the lease itself, and its watch wakes the agent then */
		int64_t rem = dc->lease.store_expires ? INT64_MAX
			: pgl_observer_remaining(&dc->obs, now, observer_ttl(dc));

		t = dc->next_heartbeat_ms;
		if (rem != INT64_MAX && now + rem < t)
			t = now + rem;
	}
	if (t > now + dc->cfg.renew_interval_ms)
		t = now + dc->cfg.renew_interval_ms;
	dc->wake_ms = t < now ? now : t;
}

void
pgl_decide_step(struct pgl_decider *dc, const struct pgl_obs *obs, struct pgl_actions *out)
{
	const struct pgl_node *h;

	dc->has_data = obs->server.has_data;
	if (dc->stop_asked) {
		pgl_decide_holder(dc, obs->now, out);	/* renew through a slow shutdown */
		set_wake(dc, obs->now);
		return;
	}
	if (obs->store_fault != PGL_STORE_FINE) {
		store_fault(dc, obs, out);
		return;
	}
	pgl_decide_holder(dc, obs->now, out);
	if (obs->stop) {
		begin_stop(dc, out);
		return;
	}
	set_wake(dc, obs->now);
	if (!obs->lease_ok)
		return;					/* the deadline fences a holder meanwhile */
	if (obs->sw_ok && obs->sw.seq != dc->sw_seen_seq) {
		dc->sw_seen_seq = obs->sw.seq;
		dc->sw_seen_ms = obs->now;
	}
	see_lease(dc, obs, out);
	if (!obs->nodes_ok || track_heartbeats(dc, obs->nodes, obs->n_nodes, obs->now) < 0)
		return;
	if (dc->term)
		hold(dc, obs, out);
	else if (claimable(dc, obs))
		candidate(dc, obs, out);
	else {
		dc->expired_since_ms = 0;
		dc->rival_down_ms = 0;
		dc->said &= ~(PGL_SAID_REFORM_WAIT | PGL_SAID_REFORM_EMPTY | PGL_SAID_NO_DATA |
					  PGL_SAID_TERM_LIMIT);
		if ((h = find_node(obs, dc->lease.holder)) != NULL) {
			dc->said &= ~PGL_SAID_NO_HOLDER_ROW;
			follow(dc, obs, h, out);
		} else if (!(dc->said & PGL_SAID_NO_HOLDER_ROW)) {
			dc->said |= PGL_SAID_NO_HOLDER_ROW;
			say(out, PGL_ALOG_WARN, "lease term %" PRId64 " is held by %s, which has no node "
				"record: nothing to follow; waiting for it to report, or for its lease to "
				"expire", dc->lease.term, dc->lease.holder);
		}
	}
	if (obs->now >= dc->next_heartbeat_ms) {
		add(out, PGL_ACT_HEARTBEAT);
		dc->next_heartbeat_ms = obs->now + dc->cfg.renew_interval_ms;
	}
	set_wake(dc, obs->now);		/* again: the role and the timers may have changed */
}
