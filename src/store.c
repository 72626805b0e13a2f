/*
 * store.c — the lease store's interface (store.h): the table of backends
 * that pgl_store_open() chooses from, the pgl_store_* functions that
 * dispatch through a handle's ops, and the observer's expiry tracker, which
 * is pure and the same for every backend.
 *
 * Nothing here knows how a backend keeps its rows; the SQLite backend is
 * store_sqlite.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pglease/store.h"

/*
 * The backends, by the scheme of the store's path.  A plain path (no
 * "scheme://") is the SQLite file; a backend for "etcd://host:port/prefix"
 * would be one more line here.
 */
static const struct backend {
	const char *scheme;			/* NULL: a plain path */
	const struct pgl_store_ops *ops;
} backends[] = {
	{ NULL, &pgl_store_sqlite_ops },
	{ "etcd", &pgl_store_etcd_ops },
};

/* Length of the scheme of "scheme://...", or 0 for a plain path (RFC 3986 letters). */
static size_t
scheme_len(const char *path)
{
	size_t n = 0;

	if (!((path[0] >= 'a' && path[0] <= 'z') || (path[0] >= 'A' && path[0] <= 'Z')))
		return 0;
	while ((path[n] >= 'a' && path[n] <= 'z') || (path[n] >= 'A' && path[n] <= 'Z') ||
		   (path[n] >= '0' && path[n] <= '9') || path[n] == '+' || path[n] == '-' ||
		   path[n] == '.')
		n++;
	return strncmp(path + n, "://", 3) == 0 ? n : 0;
}

bool
pgl_store_is_url(const char *path)
{
	return scheme_len(path) > 0;
}

/*
 * The backend for path, or NULL (and one line naming the path in err) when
 * its scheme has none.
 */
static const struct pgl_store_ops *
find_backend(const char *path, char *err, size_t errlen)
{
	size_t n = scheme_len(path);

	for (size_t i = 0; i < PGL_ARRAY_LEN(backends); i++) {
		const char *s = backends[i].scheme;

		if (n == 0 ? s == NULL : s != NULL && strlen(s) == n && strncmp(s, path, n) == 0)
			return backends[i].ops;
	}
	if (errlen)
		snprintf(err, errlen, "%s: cannot open lease store: no backend for %.*s:// "
				 "(a lease store is a file path or etcd://host:port/prefix/cluster)", path, (int) n, path);
	return NULL;
}

int
pgl_store_check_path(const char *path, char *err, size_t errlen)
{
	const struct pgl_store_ops *ops;

	if (errlen)
		err[0] = '\0';
	if ((ops = find_backend(path, err, errlen)) == NULL)
		return -PGL_EINVAL;
	return ops->check_path(path, err, errlen);
}

int
pgl_store_open(const char *path, int flags, struct pgl_store **out, char *err, size_t errlen)
{
	const struct pgl_store_ops *ops;

	*out = NULL;
	if (errlen)
		err[0] = '\0';
	if ((ops = find_backend(path, err, errlen)) == NULL)
		return -PGL_EINVAL;
	return ops->open(path, flags, out, err, errlen);
}

void
pgl_store_close(struct pgl_store *st)
{
	if (st != NULL)
		st->ops->close(st);
}

int
pgl_store_check_file(struct pgl_store *st, char *err, size_t errlen)
{
	return st->ops->check_file(st, err, errlen);
}

const char *
pgl_store_errmsg(struct pgl_store *st)
{
	return st->ops->errmsg(st);
}

const char *
pgl_store_path(struct pgl_store *st)
{
	return st->ops->path(st);
}

void
pgl_store_set_busy_ms(struct pgl_store *st, int ms)
{
	st->ops->set_busy_ms(st, ms);
}

int
pgl_store_read_lease(struct pgl_store *st, struct pgl_lease *out)
{
	return st->ops->read_lease(st, out);
}

int
pgl_store_read_cluster(struct pgl_store *st, struct pgl_cluster *out)
{
	return st->ops->read_cluster(st, out);
}

int
pgl_store_data_version(struct pgl_store *st, int64_t *out)
{
	return st->ops->data_version(st, out);
}

int
pgl_store_claim(struct pgl_store *st, const struct pgl_lease *seen, const char *me,
				int64_t ttl_ms, const char *detail, int64_t *new_term)
{
	return st->ops->claim(st, seen, me, ttl_ms, detail, new_term);
}

int
pgl_store_renew(struct pgl_store *st, const char *me, int64_t term, int64_t t0_ms,
				int64_t ttl_ms, int64_t margin_ms, int64_t wait_until_ms,
				int64_t *deadline_ms, int64_t *renewals)
{
	return st->ops->renew(st, me, term, t0_ms, ttl_ms, margin_ms, wait_until_ms,
						  deadline_ms, renewals);
}

int
pgl_store_release(struct pgl_store *st, const char *me, int64_t term, const char *lsn_text,
				  const char *detail)
{
	return st->ops->release(st, me, term, lsn_text, detail);
}

int
pgl_store_node_upsert(struct pgl_store *st, const struct pgl_node *n)
{
	return st->ops->node_upsert(st, n);
}

int
pgl_store_list_nodes(struct pgl_store *st, struct pgl_node **out, int *count)
{
	return st->ops->list_nodes(st, out, count);
}

int
pgl_store_get_node(struct pgl_store *st, const char *name, struct pgl_node *out)
{
	return st->ops->get_node(st, name, out);
}

int
pgl_store_remove_node(struct pgl_store *st, const char *name, int64_t term)
{
	return st->ops->remove_node(st, name, term);
}

/* Formats the detail here, so a backend only ever stores text. */
int
pgl_store_event(struct pgl_store *st, int64_t term, const char *node, const char *kind,
				const char *fmt, ...)
{
	char detail[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	return st->ops->event(st, term, node, kind, detail);
}

int
pgl_store_list_events(struct pgl_store *st, int n, struct pgl_event **out, int *count)
{
	return st->ops->list_events(st, n, out, count);
}

int
pgl_store_events_after(struct pgl_store *st, int64_t after_id, struct pgl_event **out,
					   int *count)
{
	return st->ops->events_after(st, after_id, out, count);
}

int
pgl_store_set_paused(struct pgl_store *st, bool paused, const char *node)
{
	return st->ops->set_paused(st, paused, node);
}

int
pgl_store_set_sysid(struct pgl_store *st, const char *sysid)
{
	return st->ops->set_sysid(st, sysid);
}

const char *
pgl_sw_state_name(enum pgl_sw_state s)
{
	static const char *const names[] = { "none", "requested", "handing-over", "done", "failed" };

	return (unsigned) s < PGL_ARRAY_LEN(names) ? names[s] : "?";
}

int
pgl_store_read_switchover(struct pgl_store *st, struct pgl_switchover *out)
{
	return st->ops->read_switchover(st, out);
}

int
pgl_store_request_switchover(struct pgl_store *st, const struct pgl_switchover *req,
							 int64_t *seq)
{
	return st->ops->request_switchover(st, req, seq);
}

int
pgl_store_set_switchover(struct pgl_store *st, int64_t seq, enum pgl_sw_state state,
						 const char *target, const char *node, const char *detail)
{
	return st->ops->set_switchover(st, seq, state, target, node, detail);
}

int
pgl_store_watch_open(struct pgl_store *st, struct pgl_watch **out)
{
	*out = NULL;
	return st->ops->watch_open(st, out);
}

/* ---- the observer's expiry tracker ---- */

bool
pgl_observer_matches(const struct pgl_observer *o, const struct pgl_lease *l)
{
	return o->valid && o->term == l->term && o->renewals == l->renewals &&
		strcmp(o->holder, l->holder) == 0;
}

bool
pgl_observer_see(struct pgl_observer *o, const struct pgl_lease *l, int64_t now_ms)
{
	if (pgl_observer_matches(o, l))
		return false;
	o->valid = true;
	o->term = l->term;
	o->renewals = l->renewals;
	pgl_strlcpy(o->holder, l->holder, sizeof(o->holder));
	o->first_seen_ms = now_ms;
	return true;
}

int64_t
pgl_observer_remaining(const struct pgl_observer *o, int64_t now_ms, int64_t ttl_ms)
{
	int64_t left;

	if (!o->valid)
		return INT64_MAX;
	left = o->first_seen_ms + ttl_ms - now_ms;
	return left > 0 ? left : 0;
}

bool
pgl_observer_expired(const struct pgl_observer *o, int64_t now_ms, int64_t ttl_ms)
{
	return o->valid && now_ms - o->first_seen_ms >= ttl_ms;
}

bool
pgl_sw_pending(const struct pgl_switchover *w, int64_t term)
{
	return (w->state == PGL_SW_REQUESTED || w->state == PGL_SW_HANDING_OVER) &&
		w->term == term && w->age_s >= 0 && w->age_s * 1000 < (double) w->timeout_ms;
}

/* ---- a node's copy progress (store.h) ---- */

static const char *const progress_ops[] = {
	[PGL_PROGRESS_CLONE] = "clone",
	[PGL_PROGRESS_REWIND] = "rewind",
};

const char *
pgl_progress_op_name(enum pgl_progress_op op)
{
	if ((unsigned) op >= PGL_ARRAY_LEN(progress_ops))
		return NULL;
	return progress_ops[op];
}

bool
pgl_progress_op_parse(const char *text, enum pgl_progress_op *op)
{
	*op = PGL_PROGRESS_NONE;
	if (text == NULL || text[0] == '\0')
		return true;
	for (size_t i = 1; i < PGL_ARRAY_LEN(progress_ops); i++)
		if (strcmp(text, progress_ops[i]) == 0) {
			*op = (enum pgl_progress_op) i;
			return true;
		}
	return false;
}

bool
pgl_progress_valid(const struct pgl_progress *p)
{
	if (p->op == PGL_PROGRESS_NONE)
		return p->done_kb == 0 && p->total_kb == 0 && p->elapsed_ms == 0;
	if (pgl_progress_op_name(p->op) == NULL)
		return false;
	return p->total_kb >= 0 && p->total_kb <= PGL_PROGRESS_KB_MAX && p->done_kb >= 0 &&
		p->done_kb <= (p->total_kb ? p->total_kb : PGL_PROGRESS_KB_MAX) &&
		p->elapsed_ms >= 0 && p->elapsed_ms <= PGL_PROGRESS_MS_MAX;
}
