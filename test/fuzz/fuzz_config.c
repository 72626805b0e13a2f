/*
 * fuzz_config.c — libFuzzer target for the configuration parser.
 *
 * Input: the config file's bytes, optionally followed by "\0\0" and up to
 * 16 environment entries separated by "\0" (e.g. "PGLEASE_PG_PORT=1").  The
 * file is written to a private temporary file and loaded with
 * pgl_config_load() and an explicit envp (never the machine's environment:
 * PATH and pg_bindir are fixed first, and input entries come after them so
 * they may override).  Checks that every error line is escaped for a
 * terminal, and pgl_text_escape() on the whole input.
 */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pglease/config.h"
#include "pglease/log.h"

#define MAX_ENV 16

static char conf_path[64];

/* True when s holds nothing pgl_text_unsafe() names, besides the newlines between error lines. */
static bool
terminal_safe(const char *s, bool newlines_ok)
{
	while (*s) {
		uint32_t cp;
		int n = pgl_text_decode(s, &cp);

		if (pgl_text_unsafe(cp) && !(newlines_ok && cp == '\n'))
			return false;
		s += n;
	}
	return true;
}

/* Removes the private file at exit. */
static void
cleanup(void)
{
	unlink(conf_path);
}

/* Creates the private file the inputs are written to. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int fd;

	(void) argc;
	(void) argv;
	snprintf(conf_path, sizeof(conf_path), "/tmp/pglease-fuzz-conf.XXXXXX");
	fd = mkstemp(conf_path);
	if (fd < 0)
		abort();
	close(fd);
	atexit(cleanup);
	return 0;
}

/* One input: write the file, build envp, load, check the error text. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pgl_config cfg;
	static char err[8192];
	char *env[MAX_ENV + 4];
	char *copy = malloc(size + 1);
	const uint8_t *sep = NULL;
	size_t file_len = size, n = 0;
	FILE *f;

	memcpy(copy, data, size);
	copy[size] = '\0';
	for (size_t i = 0; i + 1 < size; i++) {
		if (data[i] == 0 && data[i + 1] == 0) {
			sep = data + i;
			break;
		}
	}
	env[n++] = "PATH=/nonexistent";
	env[n++] = "PGLEASE_PG_BINDIR=/fuzz/bin";
	env[n++] = "PGLEASE_NODE_NAME=fuzz";
	if (sep) {
		file_len = sep - data;
		for (char *p = copy + file_len + 2; p < copy + size && n < MAX_ENV + 3;
			 p += strlen(p) + 1)
			env[n++] = p;
	}
	env[n] = NULL;
	f = fopen(conf_path, "w");
	if (f == NULL)
		abort();
	fwrite(data, 1, file_len, f);
	fclose(f);
	if (pgl_config_load(&cfg, conf_path, env, err, sizeof(err)) < 0)
		assert(terminal_safe(err, true) && err[0] != '\0');
	else
		assert(err[0] == '\0' && cfg.n_pg <= PGL_MAX_PG_SETTINGS);
	pgl_log_level = PGL_LOG_ERROR;
	{
		char *out = malloc(PGL_TEXT_ESCAPED(size));

		pgl_text_escape(out, PGL_TEXT_ESCAPED(size), copy);
		assert(terminal_safe(out, false));
		free(out);
	}
	free(copy);
	return 0;
}
