/*
 * harness.h — a tiny CHECK() harness in the style of redis testhelp.h.
 *
 *   CHECK(cond)        counts a pass, or a failure printed with file:line,
 *                      the running test and the expression;
 *   CHECKF(cond, ...)  the same, with a printf-style explanation on failure;
 *   TEST(fn)           runs one test function, naming it in failures;
 *   TEST_REPORT()      prints exactly "N passed, M failed" on stdout and
 *                      yields main()'s exit status (non-zero if M > 0).
 *
 * Forked children must leave with _exit() and must not CHECK (their
 * counters die with them); they report through their exit status.
 * test_dir() is the scratch directory run-all.sh passes in PGL_TEST_DIR.
 */
#ifndef PGLEASE_TEST_HARNESS_H
#define PGLEASE_TEST_HARNESS_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int t_passed, t_failed;
static const char *t_current = "-";

static inline void __attribute__((format(printf, 4, 5)))
t_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
	char why[1024];
	va_list ap;

	t_failed++;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	fprintf(stderr, "FAIL %s:%d [%s]: %s\n", file, line, t_current, expr);
	if (why[0])
		fprintf(stderr, "     %s\n", why);
}

#define CHECKF(cond, ...) do { if (cond) t_passed++; \
	else t_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); } while (0)
#define CHECK(cond) CHECKF(cond, "%s", "")
#define TEST(fn) do { t_current = #fn; fprintf(stderr, "-- %s\n", #fn); fn(); \
	fflush(stdout); fflush(stderr); } while (0)
#define TEST_REPORT() \
	(printf("%d passed, %d failed\n", t_passed, t_failed), fflush(stdout), t_failed > 0)

/* A seeded xorshift64* generator for randomized tests: set t_rng_state, call t_rnd(). */
static uint64_t t_rng_state;

static inline uint64_t
t_rnd(void)
{
	t_rng_state ^= t_rng_state >> 12;
	t_rng_state ^= t_rng_state << 25;
	t_rng_state ^= t_rng_state >> 27;
	return t_rng_state * 2685821657736338717ULL;
}

/* The scratch directory of this test binary. */
static inline const char *
test_dir(void)
{
	static char dir[512];
	const char *d = getenv("PGL_TEST_DIR");

	if (dir[0])
		return dir;
	snprintf(dir, sizeof(dir), "%s", d && *d ? d : "/tmp/pglease-unit-XXXXXX");
	if (!(d && *d) && mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	return dir;
}

#endif
