/*
 * watch.h — wakes the caller when the lease store changes.
 *
 * One inotify watch on the store's directory reports writes to lease.db and
 * lease.db-wal (in WAL mode commits land in the -wal file) and survives the
 * file being deleted, replaced or renamed over, because the directory itself
 * is watched.  inotify is only a hint: callers still re-read the store on a
 * timer no longer than renew_interval_ms, and confirm a change with
 * PRAGMA data_version.
 */
#ifndef PGLEASE_WATCH_H
#define PGLEASE_WATCH_H

#include <stdbool.h>

struct pgl_watch;

/*
 * Watches the directory of store_path (the SQLite backend's watch_open op;
 * others call pgl_store_watch_open()).  Returns 0, -PGL_ESYS or -PGL_ENOMEM,
 * with errno set.  Caller frees with pgl_watch_close().
 */
int pgl_watch_open(const char *store_path, const char *nodes_dir, struct pgl_watch **out);
/*
 * A watch over fd, the read end of a non-blocking pipe that a watcher
 * writes a byte to for each change (store_etcd.c's watch thread): drain
 * reports any byte read, focus does nothing.  pgl_watch_close() calls
 * stop(arg) first (to end the watcher), then closes fd.  Takes fd over.
 * Returns 0 or -PGL_ENOMEM (fd left open).
 */
int pgl_watch_open_fd(int fd, void (*stop)(void *), void *arg, struct pgl_watch **out);
void pgl_watch_close(struct pgl_watch *w);
/* A descriptor to poll(2) for POLLIN. */
int pgl_watch_fd(const struct pgl_watch *w);
/*
 * Narrows the node records that count as a change to NAME's (none for "";
 * NULL: every record again, the default).  An agent that follows a holder
 * needs only the holder's renewals at once; it reads the other records on
 * its timer.
 */
void pgl_watch_focus(struct pgl_watch *w, const char *name);
/* Reads all pending events; true if any concerned the store's files. */
bool pgl_watch_drain(struct pgl_watch *w);
/*
 * Waits up to timeout_ms for a change to the store.  Returns 1 on a change,
 * 0 on timeout, a negative PGL_E* code on error.
 */
int pgl_watch_wait(struct pgl_watch *w, int timeout_ms);

#endif
