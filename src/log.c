/*
 * log.c — the stderr logger.  Each message is formatted into one buffer and
 * written with a single write(2) so lines from the agent and its threads never
 * interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pglease/common.h"
#include "pglease/log.h"

int pgl_log_level = PGL_LOG_INFO;
static char log_node[PGL_NAME_MAX] = "-";
static volatile int64_t log_term = -1;

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

void
pgl_log_set_node(const char *node)
{
	pgl_strlcpy(log_node, node && *node ? node : "-", sizeof(log_node));
}

void
pgl_log_set_term(int64_t term)
{
	log_term = term;
}

int
pgl_log_parse_level(const char *s)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

void
pgl_log_emit(int lvl, const char *fmt, ...)
{
	char line[2048], ts[PGL_TS_MAX];
	va_list ap;
	int n;

	pgl_wall_iso(ts, sizeof(ts));
	if (log_term >= 0)
		n = snprintf(line, sizeof(line), "%s %s %s [term %lld] ", ts,
					 level_names[lvl], log_node, (long long) log_term);
	else
		n = snprintf(line, sizeof(line), "%s %s %s ", ts, level_names[lvl], log_node);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int) sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nowhere left to report it */
	}
}
