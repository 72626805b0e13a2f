/*
 * log.c — the stderr logger, and the one escaping of untrusted text for a
 * terminal (pgl_text_escape) that the logger, the CLI and the configuration
 * errors all use.  Each message is formatted into one buffer, escaped, and
 * written with a single write(2) so lines from the agent and its threads
 * never interleave.
 */
#include <assert.h>
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

/* Sets the node name every line carries ("-" for none); the caller validated it. */
void
pgl_log_set_node(const char *node)
{
	pgl_strlcpy(log_node, node && *node ? node : "-", sizeof(log_node));
}

/* Sets the term every line carries; -1 for none. */
void
pgl_log_set_term(int64_t term)
{
	log_term = term;
}

/* Parses "error|warn|info|debug"; returns the level or -1. */
int
pgl_log_parse_level(const char *s)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

/*
 * Formats one log line and writes it with one write(2).  The message may
 * carry text read from the store or from PostgreSQL (node names, event
 * details, server errors), so everything after the prefix goes through
 * pgl_text_escape(): a line never holds a control character, a newline or a
 * bidirectional override.  A trailing newline of the message (PQerrorMessage
 * ends with one) is dropped first.
 */
void
pgl_log_emit(int lvl, const char *fmt, ...)
{
	char msg[2048], line[2048 + PGL_NAME_MAX + 96], ts[PGL_TS_MAX];
	size_t n, mlen;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mlen = strlen(msg);
	while (mlen > 0 && (msg[mlen - 1] == '\n' || msg[mlen - 1] == '\r'))
		msg[--mlen] = '\0';
	pgl_wall_iso(ts, sizeof(ts));
	if (log_term >= 0)
		snprintf(line, sizeof(line), "%s %s %s [term %lld] ", ts,
				 level_names[lvl], log_node, (long long) log_term);
	else
		snprintf(line, sizeof(line), "%s %s %s ", ts, level_names[lvl], log_node);
	n = strlen(line);
	n += pgl_text_escape(line + n, sizeof(line) - n - 1, msg);
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nowhere left to report it */
	}
}

/* ---- text from untrusted sources, made safe for a terminal ---- */

int
pgl_text_decode(const char *s, uint32_t *cp)
{
	const unsigned char *p = (const unsigned char *) s;
	uint32_t c;
	int n, i;

	if (p[0] < 0x80) {
		*cp = p[0];
		return p[0] ? 1 : 0;
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		c = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		c = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		c = p[0] & 0x07;
	} else
		goto invalid;
	/* A NUL ends the loop too: it is not a continuation byte. */
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			goto invalid;
		c = c << 6 | (p[i] & 0x3f);
	}
	/* Overlong forms, UTF-16 surrogates and code points past U+10FFFF. */
	if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) || c > 0x10ffff ||
		(c >= 0xd800 && c <= 0xdfff))
		goto invalid;
	*cp = c;
	return n;
invalid:
	*cp = PGL_TEXT_INVALID;
	return 1;
}

bool
pgl_text_unsafe(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) ||	/* C0, DEL, C1 */
		cp == 0x061c || cp == 0x200e || cp == 0x200f ||	/* ALM, LRM, RLM */
		(cp >= 0x202a && cp <= 0x202e) ||					/* embeddings, overrides */
		(cp >= 0x2066 && cp <= 0x2069) ||					/* isolates */
		cp == 0x2028 || cp == 0x2029 ||						/* line, paragraph separator */
		cp == PGL_TEXT_INVALID;
}

size_t
pgl_text_escape(char *dst, size_t len, const char *src)
{
	size_t used = 0;

	assert(len > 0);
	while (*src) {
		char esc[16];
		uint32_t cp;
		int n = pgl_text_decode(src, &cp), m;

		if (cp == '\\')
			m = snprintf(esc, sizeof(esc), "\\\\");
		else if (!pgl_text_unsafe(cp))
			m = snprintf(esc, sizeof(esc), "%.*s", n, src);
		else if (cp == '\n' || cp == '\r' || cp == '\t')
			m = snprintf(esc, sizeof(esc), "\\%c", cp == '\n' ? 'n' : cp == '\r' ? 'r' : 't');
		else if (cp < 0x80 || cp == PGL_TEXT_INVALID)
			m = snprintf(esc, sizeof(esc), "\\x%02x", (unsigned char) *src);
		else
			m = snprintf(esc, sizeof(esc), "\\u%04x", (unsigned) cp);
		if (used + m + 1 > len)
			break;				/* truncated, never in the middle of an escape */
		memcpy(dst + used, esc, m);
		used += m;
		src += n;
	}
	dst[used] = '\0';
	return used;
}
