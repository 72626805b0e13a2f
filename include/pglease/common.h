/*
 * common.h — error codes, limits and clock helpers shared by every module.
 *
 * Functions return 0 on success or a negative PGL_E* code; results travel
 * through out-parameters.  pgl_strerror() names a code for humans.
 */
#ifndef PGLEASE_COMMON_H
#define PGLEASE_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PGL_VERSION "0.1.0"

/* Node names: [a-z0-9_-]{1,63}; they are also slot names (with '-' as '_'). */
#define PGL_NAME_MAX 64
#define PGL_LSN_TEXT_MAX 24
#define PGL_TS_MAX 32

/* Error codes (negated on return). */
enum {
	PGL_OK = 0,
	PGL_EINVAL = 1,     /* bad argument or input */
	PGL_ESTORE,         /* SQLite error */
	PGL_EFOREIGN,       /* file is not a pglease store, or is corrupt */
	PGL_ENEWER,         /* store schema newer than this binary */
	PGL_EBUSY,          /* store locked past the allowed wait */
	PGL_ECONFLICT,      /* compare-and-swap lost: lease changed */
	PGL_ENOTHOLDER,     /* renew/release by a node that does not hold the term */
	PGL_ENOENT,         /* no such row or file */
	PGL_EPG,            /* PostgreSQL error */
	PGL_EPROTO,         /* unexpected result shape */
	PGL_ESYS,           /* system call failed (errno is set) */
	PGL_ETIMEOUT,       /* deadline passed */
	PGL_ECONFIG,        /* configuration error */
	PGL_EDUP,           /* duplicate node name */
	PGL_ENOMEM,         /* out of memory */
	PGL_E_COUNT
};

/* Process exit codes of the CLI (DESIGN.md section 5). */
enum {
	PGL_EXIT_OK = 0,
	PGL_EXIT_FAIL = 1,
	PGL_EXIT_USAGE = 2,
	PGL_EXIT_NOPRIMARY = 3,
};

const char *pgl_strerror(int rc);

/* Milliseconds on CLOCK_MONOTONIC.  The only clock safety decisions use. */
int64_t pgl_mono_ms(void);

/* Wall clock as ISO 8601 UTC text with milliseconds, for humans only. */
void pgl_wall_iso(char *buf, size_t len);

/* LSN helpers: "16/B374D848" <-> integer.  Return 0 or PGL_EINVAL. */
int pgl_lsn_parse(const char *text, uint64_t *lsn);
void pgl_lsn_format(uint64_t lsn, char *buf, size_t len);

/* True if name matches [a-z0-9_-]{1,63}. */
bool pgl_name_valid(const char *name);

/* True if host is a plain host name or IP address (no socket path, quotes, spaces). */
bool pgl_host_valid(const char *host);

/*
 * Parses a node's conninfo as read from the store with PQconninfoParse and
 * returns its host and port; every other keyword is ignored, never carried
 * over.  The host must pass pgl_host_valid() and fit hostlen, the port be
 * 1 to 5 digits (no sign, no space) worth 1..65535.
 * Returns 0, or -PGL_EINVAL for anything else, -PGL_ENOMEM when libpq ran
 * out of memory (host "" and port 0 then).
 */
int pgl_conninfo_host_port(const char *conninfo, char *host, size_t hostlen, int *port);

/*
 * Writes the conninfo "host=H port=P" into buf (len bytes) for libpq, so
 * that PQconninfoParse() reads back exactly host and port.
 * Returns 0, or -PGL_EINVAL (buf "") for a port outside 1..65535, a NULL
 * host, or text that does not fit.
 */
int pgl_conninfo_format(const char *host, int port, char *buf, size_t len);

/* Copies src into a fixed buffer; returns false (and truncates) if too long. */
bool pgl_strlcpy(char *dst, const char *src, size_t len);

#define PGL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
