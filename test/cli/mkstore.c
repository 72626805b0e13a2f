/*
 * mkstore.c — test-only fixture builder for the CLI tests.
 *
 * Builds and changes real lease stores through pglease's own store code
 * (src/store.c and its SQLite backend src/store_sqlite.c), so the CLI is
 * tested against exactly what the agent writes.
 * One command per invocation:
 *
 *   mkstore PATH create
 *   mkstore PATH claim NODE [TTL_MS]          claim the lease as it is now
 *   mkstore PATH renew NODE                   renew the current term
 *   mkstore PATH release NODE [LSN]           release the current term
 *   mkstore PATH node NAME ROLE STATE UPSTREAM TIMELINE RECEIVE REPLAY
 *                     [PRIORITY [CONNINFO]]   upsert a node row ("-" = empty)
 *   mkstore PATH event NODE KIND DETAIL       append an event at the current term
 *   mkstore PATH pause | resume
 *   mkstore PATH sysid ID
 *
 * Every command opens the store with PGL_STORE_CREATE.  Exit 0 on success,
 * 1 with a message on stderr otherwise.  Not installed; never shipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pglease/common.h"
#include "pglease/store.h"

/* "-" stands for an empty field on the command line. */
static const char *
field(const char *s)
{
	return strcmp(s, "-") == 0 ? "" : s;
}

static int
cmd_node(struct pgl_store *st, int argc, char **argv)
{
	struct pgl_node n;

	if (argc < 7)
		return -PGL_EINVAL;
	memset(&n, 0, sizeof(n));
	pgl_strlcpy(n.name, argv[0], sizeof(n.name));
	pgl_strlcpy(n.role, field(argv[1]), sizeof(n.role));
	pgl_strlcpy(n.state, field(argv[2]), sizeof(n.state));
	pgl_strlcpy(n.upstream, field(argv[3]), sizeof(n.upstream));
	n.timeline = atoll(field(argv[4]));
	pgl_strlcpy(n.receive_lsn, field(argv[5]), sizeof(n.receive_lsn));
	if (n.receive_lsn[0] && pgl_lsn_parse(n.receive_lsn, &n.receive_lsn_int) < 0)
		return -PGL_EINVAL;
	pgl_strlcpy(n.replay_lsn, field(argv[6]), sizeof(n.replay_lsn));
	if (n.replay_lsn[0] && pgl_lsn_parse(n.replay_lsn, &n.replay_lsn_int) < 0)
		return -PGL_EINVAL;
	n.priority = argc > 7 ? atoll(argv[7]) : 100;
	pgl_strlcpy(n.conninfo, argc > 8 ? argv[8] : "", sizeof(n.conninfo));
	return pgl_store_node_upsert(st, &n);
}

static int
run(struct pgl_store *st, const char *cmd, int argc, char **argv)
{
	struct pgl_lease l;
	int64_t v, deadline;
	int rc;

	if ((rc = pgl_store_read_lease(st, &l)) < 0)
		return rc;
	if (strcmp(cmd, "create") == 0)
		return 0;
	if (strcmp(cmd, "claim") == 0 && argc >= 1)
		return pgl_store_claim(st, &l, argv[0], argc > 1 ? atoll(argv[1]) : 5000,
							   "claimed by mkstore", &v);
	if (strcmp(cmd, "renew") == 0 && argc >= 1)
		return pgl_store_renew(st, argv[0], l.term, pgl_mono_ms(), l.ttl_ms, 0,
							   pgl_mono_ms() + 1000, &deadline, &v);
	if (strcmp(cmd, "release") == 0 && argc >= 1)
		return pgl_store_release(st, argv[0], l.term, argc > 1 ? argv[1] : NULL,
								 "released by mkstore");
	if (strcmp(cmd, "node") == 0)
		return cmd_node(st, argc, argv);
	if (strcmp(cmd, "event") == 0 && argc >= 3)
		return pgl_store_event(st, l.term, field(argv[0]), argv[1], "%s", argv[2]);
	if (strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0)
		return pgl_store_set_paused(st, cmd[0] == 'p', NULL);
	if (strcmp(cmd, "sysid") == 0 && argc >= 1)
		return pgl_store_set_sysid(st, argv[0]);
	return -PGL_EINVAL;
}

int
main(int argc, char **argv)
{
	struct pgl_store *st = NULL;
	char err[1024];
	int rc;

	if (argc < 3) {
		fprintf(stderr, "usage: mkstore PATH COMMAND [ARGS...]\n");
		return 2;
	}
	rc = pgl_store_open(argv[1], PGL_STORE_CREATE, &st, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "mkstore: %s\n", err);
		return 1;
	}
	rc = run(st, argv[2], argc - 3, argv + 3);
	if (rc < 0)
		fprintf(stderr, "mkstore: %s: %s (%s)\n", argv[2], pgl_strerror(rc),
				pgl_store_errmsg(st));
	pgl_store_close(st);
	return rc < 0 ? 1 : 0;
}
