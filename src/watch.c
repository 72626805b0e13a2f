/*
 * watch.c — inotify on the lease store's directory, or a pipe that another
 * backend's watcher (store_etcd.c's watch thread) writes a byte to per change.
 */
#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "pglease/common.h"
#include "pglease/log.h"
#include "pglease/watch.h"

struct pgl_watch {
	int fd;
	char base[256];		/* "lease.db" */
	char wal[270];		/* "lease.db-wal" */
	int nodes_wd;		/* the node records' directory; -1: none */
	bool focused;		/* only focus's record counts (pgl_watch_focus) */
	char focus[270];	/* "NAME.json", or "" for none */
	bool is_pipe;		/* pgl_watch_open_fd(): fd is a pipe's read end */
	void (*stop)(void *);	/* called first by pgl_watch_close() */
	void *stop_arg;
};

int
pgl_watch_open_fd(int fd, void (*stop)(void *), void *arg, struct pgl_watch **out)
{
	struct pgl_watch *w = calloc(1, sizeof(*w));

	*out = NULL;
	if (w == NULL)
		return -PGL_ENOMEM;
	w->fd = fd;
	w->nodes_wd = -1;
	w->is_pipe = true;
	w->stop = stop;
	w->stop_arg = arg;
	*out = w;
	return 0;
}

/*
 * Returns 0, or -PGL_ESYS / -PGL_ENOMEM after logging why; errno still says
 * why when it returns (the CLI prints it).
 */
int
pgl_watch_open(const char *store_path, const char *nodes_dir, struct pgl_watch **out)
{
	struct pgl_watch *w = calloc(1, sizeof(*w));
	char *c1 = strdup(store_path), *c2 = strdup(store_path);
	int rc = 0, e = 0;

	*out = NULL;
	if (w) {
		w->fd = -1;
		w->nodes_wd = -1;
	}
	if (w == NULL || c1 == NULL || c2 == NULL) {
		e = ENOMEM;
		pgl_log_error("inotify on %s: %s", store_path, strerror(e));
		rc = -PGL_ENOMEM;
		goto out;
	}
	pgl_strlcpy(w->base, basename(c1), sizeof(w->base));
	snprintf(w->wal, sizeof(w->wal), "%s-wal", w->base);
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0 ||
		inotify_add_watch(w->fd, dirname(c2),
						  IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE |
						  IN_MOVED_TO | IN_MOVED_FROM | IN_ATTRIB) < 0) {
		e = errno;
		pgl_log_error("inotify on %s: %s", store_path, strerror(e));
		rc = -PGL_ESYS;
	} else if (nodes_dir && (w->nodes_wd = inotify_add_watch(w->fd, nodes_dir,
															 IN_MOVED_TO | IN_DELETE |
															 IN_CLOSE_WRITE)) < 0 &&
			   errno != ENOENT) {
		e = errno;
		pgl_log_error("inotify on %s: %s", nodes_dir, strerror(e));
		rc = -PGL_ESYS;
	}
out:
	free(c1);
	free(c2);
	if (rc < 0) {
		pgl_watch_close(w);
		errno = e;
		return rc;
	}
	*out = w;
	return 0;
}

void
pgl_watch_close(struct pgl_watch *w)
{
	if (w == NULL)
		return;
	if (w->stop)
		w->stop(w->stop_arg);
	if (w->fd >= 0)
		close(w->fd);
	free(w);
}

int
pgl_watch_fd(const struct pgl_watch *w)
{
	return w->fd;
}

/* A node's record put in place or removed ("NAME.json", not a temporary file). */
static bool
is_record(const char *name)
{
	size_t n = strlen(name);

	return name[0] != '.' && n > 5 && strcmp(name + n - 5, ".json") == 0;
}

void
pgl_watch_focus(struct pgl_watch *w, const char *name)
{
	w->focused = name != NULL;
	if (name && *name)
		snprintf(w->focus, sizeof(w->focus), "%s.json", name);
	else
		w->focus[0] = '\0';
}

bool
pgl_watch_drain(struct pgl_watch *w)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool hit = false;
	ssize_t n;

	if (w->is_pipe) {
		while ((n = read(w->fd, buf, sizeof(buf))) > 0)
			hit = true;
		return hit;
	}
	while ((n = read(w->fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *) p;

			if (ev->mask & IN_Q_OVERFLOW)
				hit = true;
			else if (ev->len > 0 && ev->wd == w->nodes_wd)
				hit |= w->focused ? w->focus[0] && strcmp(ev->name, w->focus) == 0
					: is_record(ev->name);
			else if (ev->len > 0 &&
					 (strcmp(ev->name, w->base) == 0 || strcmp(ev->name, w->wal) == 0))
				hit = true;
			p += sizeof(*ev) + ev->len;
		}
	}
	return hit;
}

int
pgl_watch_wait(struct pgl_watch *w, int timeout_ms)
{
	struct pollfd pfd = { .fd = w->fd, .events = POLLIN };
	int64_t end = pgl_mono_ms() + timeout_ms;

	for (;;) {
		int64_t left = end - pgl_mono_ms();
		int r;

		if (left < 0)
			left = 0;
		r = poll(&pfd, 1, (int) left);
		if (r < 0 && errno != EINTR)
			return -PGL_ESYS;
		if (r > 0 && pgl_watch_drain(w))
			return 1;
		if (left == 0)
			return 0;
	}
}
