/*
 * fuzz_store.c — libFuzzer target for the lease store reader and the CLI
 * read commands on top of it.
 *
 * Built twice (Makefile `fuzz`):
 *   fuzz_store         the input is the whole store file;
 *   fuzz_store_mutate  (-DPGL_FUZZ_MUTATE) the input is a list of 4-byte
 *                      patches (3-byte offset, 1 byte value) applied to a
 *                      valid store made by test/cli/mkstore.c
 *                      ($PGLEASE_FUZZ_BASE), so mutations reach deep into
 *                      pages SQLite accepts.
 *
 * Each input is written as lease.db in a private directory (its -wal and
 * -shm removed first), opened with PGL_STORE_RDONLY, and every reader is
 * called: lease, cluster, data_version, nodes, the holder's row, events.
 * Every text read is checked to escape to terminal-safe text.  Then one CLI
 * read command (status, status --json, lease, events, primary --conninfo;
 * picked by the input's size) runs on it with stdout sent to /dev/null.
 */
#include <assert.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pglease/cli.h"
#include "pglease/log.h"
#include "pglease/store.h"

extern char **environ;

static char dir[64], db[96], wal[96], shm[96];
#ifdef PGL_FUZZ_MUTATE
static uint8_t *base;
static size_t base_len;
#endif

/* Checks that text escapes to something a terminal can show safely. */
static void
check_text(const char *s)
{
	char out[PGL_TEXT_ESCAPED(1024)];
	const char *p = out;

	pgl_text_escape(out, sizeof(out), s);
	while (*p) {
		uint32_t cp;
		int n = pgl_text_decode(p, &cp);

		assert(!pgl_text_unsafe(cp));
		p += n;
	}
}

/* Removes the store and its side files. */
static void
cleanup(void)
{
	unlink(db);
	unlink(wal);
	unlink(shm);
}

/* At exit: the private directory too. */
static void
cleanup_dir(void)
{
	cleanup();
	rmdir(dir);
}

/* Reads the base store for the mutating variant. */
#ifdef PGL_FUZZ_MUTATE
static void
load_base(void)
{
	const char *path = getenv("PGLEASE_FUZZ_BASE");
	FILE *f = fopen(path ? path : "test/fuzz/corpus/store/cluster.db", "rb");
	struct stat sb;

	if (f == NULL || fstat(fileno(f), &sb) != 0 || sb.st_size <= 0) {
		fprintf(stderr, "fuzz_store_mutate: cannot read the base store "
				"($PGLEASE_FUZZ_BASE or test/fuzz/corpus/store/cluster.db)\n");
		abort();
	}
	base_len = (size_t) sb.st_size;
	base = malloc(base_len);
	if (fread(base, 1, base_len, f) != base_len)
		abort();
	fclose(f);
}
#endif

/* Private directory, a quiet stdout, no PGLEASE_* variables from the machine. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int fd;

	(void) argc;
	(void) argv;
	snprintf(dir, sizeof(dir), "/tmp/pglease-fuzz-store.XXXXXX");
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(db, sizeof(db), "%s/lease.db", dir);
	snprintf(wal, sizeof(wal), "%s/lease.db-wal", dir);
	snprintf(shm, sizeof(shm), "%s/lease.db-shm", dir);
	atexit(cleanup_dir);
	fd = open("/dev/null", O_WRONLY);
	if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
		abort();
	close(fd);
	for (int i = 0; environ[i];) {
		if (strncmp(environ[i], "PGLEASE_", 8) == 0) {
			char name[128];

			snprintf(name, sizeof(name), "%.*s", (int) strcspn(environ[i], "="), environ[i]);
#ifdef PGL_FUZZ_MUTATE
			if (strcmp(name, "PGLEASE_FUZZ_BASE") == 0 && base == NULL)
				load_base();
#endif
			unsetenv(name);
		} else
			i++;
	}
#ifdef PGL_FUZZ_MUTATE
	if (base == NULL)
		load_base();
#endif
	pgl_log_level = -1;		/* store.c's debug logs: not wanted */
	return 0;
}

/* Calls every reader of an open store. */
static void
read_all(struct pgl_store *st)
{
	struct pgl_lease l;
	struct pgl_cluster c;
	struct pgl_node *nodes = NULL, one;
	struct pgl_event *ev = NULL;
	int64_t dv;
	int n = 0;

	if (pgl_store_read_lease(st, &l) == 0) {
		check_text(l.holder);
		check_text(l.acquired_at);
		check_text(l.released_lsn);
		if (l.holder[0] && pgl_store_get_node(st, l.holder, &one) == 0)
			check_text(one.conninfo);
	}
	if (pgl_store_read_cluster(st, &c) == 0)
		check_text(c.name);
	pgl_store_data_version(st, &dv);
	if (pgl_store_list_nodes(st, &nodes, &n) == 0)
		for (int i = 0; i < n; i++) {
			check_text(nodes[i].name);
			check_text(nodes[i].state);
			check_text(nodes[i].upstream);
		}
	free(nodes);
	n = 0;
	if (pgl_store_list_events(st, 50, &ev, &n) == 0)
		for (int i = 0; i < n; i++) {
			check_text(ev[i].kind);
			check_text(ev[i].detail);
		}
	free(ev);
	ev = NULL;
	if (pgl_store_events_after(st, 0, &ev, &n) == 0)
		free(ev);
}

/* One input: write the store, read it through the API, then through the CLI. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *const cmds[][5] = {
		{ "pglease", "status", "--lease-db", db, NULL },
		{ "pglease", "status", "--json", "--lease-db", db },
		{ "pglease", "lease", "--lease-db", db, NULL },
		{ "pglease", "events", "--lease-db", db, NULL },
		{ "pglease", "primary", "--conninfo", "--lease-db", db },
	};
	struct pgl_store *st = NULL;
	char err[1200];
	const uint8_t *bytes = data;
	size_t len = size;
	FILE *f;

#ifdef PGL_FUZZ_MUTATE
	uint8_t *m = malloc(base_len);

	memcpy(m, base, base_len);
	for (size_t i = 0; i + 4 <= size; i += 4)
		m[((size_t) data[i] << 16 | (size_t) data[i + 1] << 8 | data[i + 2]) % base_len] =
			data[i + 3];
	bytes = m;
	len = base_len;
#endif
	cleanup();
	f = fopen(db, "wb");
	if (f == NULL)
		abort();
	fwrite(bytes, 1, len, f);
	fclose(f);
#ifdef PGL_FUZZ_MUTATE
	free(m);
#endif
	if (pgl_store_open(db, PGL_STORE_RDONLY, &st, err, sizeof(err)) == 0) {
		read_all(st);
		pgl_store_close(st);
	} else
		check_text(err);
	{
		char *const *cmd = cmds[size % PGL_ARRAY_LEN(cmds)];
		int argc = cmd[4] ? 5 : 4;
		char *argv[6];

		memcpy(argv, cmd, sizeof(char *) * 5);
		argv[5] = NULL;
		pgl_cli_main(argc, argv);
	}
	return 0;
}
