/*
 * log.h — one line per message on stderr: "timestamp level node [term N] message".
 *
 * The level check happens before formatting.  The node name and the current
 * term are process-wide context set once by the agent (pgl_log_set_node) and
 * updated when the term changes (pgl_log_set_term).
 */
#ifndef PGLEASE_LOG_H
#define PGLEASE_LOG_H

#include <stdint.h>

enum { PGL_LOG_ERROR = 0, PGL_LOG_WARN, PGL_LOG_INFO, PGL_LOG_DEBUG };

extern int pgl_log_level;

void pgl_log_emit(int lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pgl_log_set_node(const char *node);
void pgl_log_set_term(int64_t term);
/* Parses "error|warn|info|debug"; returns the level or -1. */
int pgl_log_parse_level(const char *s);

#define pgl_log(lvl, ...) \
	do { if ((lvl) <= pgl_log_level) pgl_log_emit((lvl), __VA_ARGS__); } while (0)
#define pgl_log_error(...) pgl_log(PGL_LOG_ERROR, __VA_ARGS__)
#define pgl_log_warn(...)  pgl_log(PGL_LOG_WARN, __VA_ARGS__)
#define pgl_log_info(...)  pgl_log(PGL_LOG_INFO, __VA_ARGS__)
#define pgl_log_debug(...) pgl_log(PGL_LOG_DEBUG, __VA_ARGS__)

#endif
