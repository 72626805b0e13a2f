/*
 * lease_bench.c — one run of the lease store micro-benchmark.
 *
 *   lease_bench DIR [RENEWALS [CYCLES]]
 *
 * Creates DIR/lease.db (synchronous = FULL, WAL, as in production), claims
 * the lease, then measures:
 *   - RENEWALS back-to-back pgl_store_renew() calls: latency median and p99,
 *     and renewals per second over the whole loop;
 *   - CYCLES claim/release cycles: pgl_store_claim() latency median and p99
 *     (the release is not timed).
 * Prints one line of key=value pairs (microseconds) for bench/lease to parse.
 * Built and driven by bench/lease; not part of make check.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pglease/store.h"

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

	return (x > y) - (x < y);
}

/* Sorts v and returns its q-quantile (nearest rank). */
static int64_t
quantile(int64_t *v, int n, double q)
{
	int i;

	qsort(v, n, sizeof(*v), cmp_i64);
	i = (int) (q * n + 0.999999) - 1;
	if (i < 0)
		i = 0;
	if (i >= n)
		i = n - 1;
	return v[i];
}

int
main(int argc, char **argv)
{
	char path[1024], err[1024];
	int renewals = argc > 2 ? atoi(argv[2]) : 2000;
	int cycles = argc > 3 ? atoi(argv[3]) : 500;
	int64_t *lat, term = 0, dl, ren, t_start, t_total;
	struct pgl_store *st = NULL;
	struct pgl_lease l;
	int rc;

	if (argc < 2 || renewals < 1 || cycles < 1) {
		fprintf(stderr, "usage: %s DIR [RENEWALS [CYCLES]]\n", argv[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/lease.db", argv[1]);
	rc = pgl_store_open(path, PGL_STORE_CREATE, &st, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	lat = calloc(renewals > cycles ? renewals : cycles, sizeof(*lat));
	if ((rc = pgl_store_read_lease(st, &l)) < 0 ||
		(rc = pgl_store_claim(st, &l, "bench", 5000, "bench", &term)) < 0)
		goto fail;

	/* Renewals, back to back, each bounded like the agent's (t0 + ttl - margin). */
	t_start = now_us();
	for (int i = 0; i < renewals; i++) {
		int64_t t0 = now_us();

		rc = pgl_store_renew(st, "bench", term, t0 / 1000, 5000, 1000, t0 / 1000 + 4000,
							 &dl, &ren);
		lat[i] = now_us() - t0;
		if (rc < 0)
			goto fail;
	}
	t_total = now_us() - t_start;
	printf("renew_median_us=%" PRId64 " renew_p99_us=%" PRId64 " renew_per_s=%.0f ",
		   quantile(lat, renewals, 0.5), quantile(lat, renewals, 0.99),
		   renewals * 1e6 / (double) t_total);

	/* Claim / release cycles: only the claim is timed. */
	for (int i = 0; i < cycles; i++) {
		int64_t t0;

		if ((rc = pgl_store_release(st, "bench", term, "0/3000148", NULL)) < 0 ||
			(rc = pgl_store_read_lease(st, &l)) < 0)
			goto fail;
		t0 = now_us();
		rc = pgl_store_claim(st, &l, "bench", 5000, NULL, &term);
		lat[i] = now_us() - t0;
		if (rc < 0)
			goto fail;
	}
	printf("claim_median_us=%" PRId64 " claim_p99_us=%" PRId64 "\n",
		   quantile(lat, cycles, 0.5), quantile(lat, cycles, 0.99));
	free(lat);
	pgl_store_close(st);
	return 0;
fail:
	fprintf(stderr, "lease_bench: %s (%s)\n", pgl_strerror(rc), pgl_store_errmsg(st));
	free(lat);
	pgl_store_close(st);
	return 1;
}
