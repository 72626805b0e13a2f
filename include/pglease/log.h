/*
 * log.h — one line per message on stderr: "timestamp level node [term N] message".
 *
 * The level check happens before formatting.  The node name and the current
 * term are process-wide context set once by the agent (pgl_log_set_node) and
 * updated when the term changes (pgl_log_set_term).
 */
#ifndef PGLEASE_LOG_H
#define PGLEASE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { PGL_LOG_ERROR = 0, PGL_LOG_WARN, PGL_LOG_INFO, PGL_LOG_DEBUG };

extern int pgl_log_level;

void pgl_log_emit(int lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pgl_log_set_node(const char *node);
void pgl_log_set_term(int64_t term);
/* Parses "error|warn|info|debug"; returns the level or -1. */
int pgl_log_parse_level(const char *s);

/*
 * Text for a terminal.  Anything that can come from outside (the lease store,
 * a config file, the environment, PostgreSQL) goes through pgl_text_escape()
 * before it is printed for people:
 *
 *   \\ for a backslash (so the result is unambiguous), \n \r \t, \xNN for any
 *   other C0 control, DEL and every byte that is not valid UTF-8 (so raw C1
 *   bytes 0x80-0x9f too), \uNNNN for the C1 controls U+0080-U+009F, the
 *   bidirectional marks, embeddings, overrides and isolates (U+061C, U+200E,
 *   U+200F, U+202A-U+202E, U+2066-U+2069) and the line and paragraph
 *   separators U+2028, U+2029.  Other valid UTF-8 passes unchanged.
 */
#define PGL_TEXT_INVALID 0xffffffffu

/*
 * Decodes the character at s.  Returns its length in bytes (0 at the NUL)
 * and sets *cp to the code point, or to PGL_TEXT_INVALID when s does not
 * start a valid UTF-8 sequence (overlong, surrogate, truncated): length 1.
 */
int pgl_text_decode(const char *s, uint32_t *cp);
/* True when code point cp must be escaped (see above). */
bool pgl_text_unsafe(uint32_t cp);
/*
 * Writes src escaped into dst (len > 0 bytes, always NUL-terminated) and
 * returns the length written.  Too small a dst truncates between whole
 * characters or escapes.  PGL_TEXT_ESCAPED(n) bytes always suffice for an
 * src of n bytes (the worst case is \xNN: 4 output bytes per input byte).
 */
#define PGL_TEXT_ESCAPED(n) (4 * (n) + 1)
size_t pgl_text_escape(char *dst, size_t len, const char *src);

#define pgl_log(lvl, ...) \
	do { if ((lvl) <= pgl_log_level) pgl_log_emit((lvl), __VA_ARGS__); } while (0)
#define pgl_log_error(...) pgl_log(PGL_LOG_ERROR, __VA_ARGS__)
#define pgl_log_warn(...)  pgl_log(PGL_LOG_WARN, __VA_ARGS__)
#define pgl_log_info(...)  pgl_log(PGL_LOG_INFO, __VA_ARGS__)
#define pgl_log_debug(...) pgl_log(PGL_LOG_DEBUG, __VA_ARGS__)

#endif
