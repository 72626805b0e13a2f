/*
 * test_log.c — the logger's line format and pgl_text_escape(), the one
 * escaping of untrusted text for terminals (log.h).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pglease/log.h"

/* Escapes s and compares with want. */
static void
expect_escape(const char *s, const char *want)
{
	char out[256];

	pgl_text_escape(out, sizeof(out), s);
	CHECKF(strcmp(out, want) == 0, "escape(\"%s\"): got \"%s\", want \"%s\"", want, out, want);
}

static void
test_escape_classes(void)
{
	expect_escape("plain pg-1 0/3000148", "plain pg-1 0/3000148");
	expect_escape("caf\xc3\xa9 \xe6\x9d\xb1", "caf\xc3\xa9 \xe6\x9d\xb1");	/* valid UTF-8 kept */
	expect_escape("a\\b", "a\\\\b");
	expect_escape("\n\r\t", "\\n\\r\\t");
	expect_escape("\x1b[2J\x07\x7f\x01", "\\x1b[2J\\x07\\x7f\\x01");
	expect_escape("\xc2\x85\xc2\x9b", "\\u0085\\u009b");		/* C1 as characters */
	expect_escape("\x9b\x80\xff", "\\x9b\\x80\\xff");			/* raw C1 bytes, invalid UTF-8 */
	expect_escape("\xe2\x80\xae\xe2\x80\xaa\xe2\x81\xa6\xe2\x81\xa9",
				  "\\u202e\\u202a\\u2066\\u2069");			/* overrides, isolates */
	expect_escape("\xe2\x80\x8e\xe2\x80\x8f\xd8\x9c", "\\u200e\\u200f\\u061c");
	expect_escape("\xe2\x80\xa8\xe2\x80\xa9", "\\u2028\\u2029");
	expect_escape("\xc0\xaf", "\\xc0\\xaf");					/* overlong */
	expect_escape("\xed\xa0\x80", "\\xed\\xa0\\x80");			/* surrogate */
	expect_escape("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80");	/* past U+10FFFF */
	expect_escape("x\xe2\x80", "x\\xe2\\x80");				/* truncated sequence */
}

static void
test_escape_truncates_whole_escapes(void)
{
	char out[8];
	size_t n;

	memset(out, 'z', sizeof(out));
	n = pgl_text_escape(out, sizeof(out), "ab\x1b\x1b");
	CHECKF(strcmp(out, "ab\\x1b") == 0 && n == 6, "got \"%s\" (%zu)", out, n);
	n = pgl_text_escape(out, 1, "abc");
	CHECK(n == 0 && out[0] == '\0');
	n = pgl_text_escape(out, 4, "\xe2\x80\xae");
	CHECK(n == 0 && out[0] == '\0');
	{
		char big[PGL_TEXT_ESCAPED(4)];

		n = pgl_text_escape(big, sizeof(big), "\x80\x80\x80\x80");
		CHECK(n == 16 && strcmp(big, "\\x80\\x80\\x80\\x80") == 0);
	}
}

/* Runs one pgl_log_emit with stderr sent to a file; returns the line. */
static const char *
captured_log(const char *node, const char *fmt, const char *arg)
{
	static char buf[4096];
	char path[1024];
	int fd, saved;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/log.txt", test_dir());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	pgl_log_set_node(node);
	pgl_log_emit(PGL_LOG_WARN, fmt, arg);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
	return buf;
}

static void
test_log_line_escaped(void)
{
	const char *line = captured_log("n1", "claimed term 7 (previous holder %s)",
									"pg1\x1b[2J\xe2\x80\xae\nFAKE ERROR line");

	CHECKF(strstr(line, " WARN n1 claimed term 7 (previous holder "
				  "pg1\\x1b[2J\\u202e\\nFAKE ERROR line)\n") != NULL, "line: %s", line);
	CHECKF(strchr(line, '\n') == line + strlen(line) - 1, "one line: %s", line);
	/* PQerrorMessage's trailing newline is not shown as \n. */
	line = captured_log("n1", "query failed: %s", "FATAL: no\n");
	CHECKF(strstr(line, "query failed: FATAL: no\n") != NULL, "line: %s", line);
	/* A long message stays one line, truncated. */
	{
		static char big[5000];

		memset(big, '\x1b', sizeof(big) - 1);
		line = captured_log("n1", "%s", big);
		CHECK(strlen(line) < 4096 && strchr(line, '\n') == line + strlen(line) - 1);
		CHECK(strchr(line, '\x1b') == NULL);
	}
	pgl_log_set_node(NULL);
}

int
main(void)
{
	TEST(test_escape_classes);
	TEST(test_escape_truncates_whole_escapes);
	TEST(test_log_line_escaped);
	return TEST_REPORT();
}
