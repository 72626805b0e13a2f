/*
 * etcd.h — the etcd lease store's URL (store_etcd.c; DESIGN.md section 4b).
 *
 *   etcd://HOST[:PORT][,HOST[:PORT]...]/PREFIX.../CLUSTER[?KEY=VALUE&...]
 *
 * Every key of the cluster lives under "/PREFIX.../CLUSTER/".  CLUSTER is a
 * node-name-like word ([a-z0-9_-]{1,63}); the port defaults to 2379.  Query
 * keys: user, password_file (the password is read from the file, never
 * written in the URL), cacert, cert, key (PEM files; any of them, or tls=1,
 * makes the endpoints https), timeout_ms (each request's bound, default
 * 2000), insecure=1 (user= over plain http: refused without it).  HOST is
 * a name, an IPv4 address or an IPv6 address in brackets ([::1]:2379).
 * Proxies from the environment are never used.  The parser is pure, for
 * the unit tests; its errors show the URL without its query.
 */
#ifndef PGLEASE_ETCD_H
#define PGLEASE_ETCD_H

#include <stdbool.h>
#include <stddef.h>

#include "pglease/common.h"

#define PGL_ETCD_MAX_ENDPOINTS 8
#define PGL_ETCD_DEFAULT_TIMEOUT_MS 2000

struct pgl_etcd_url {
	int n_endpoints;
	char host[PGL_ETCD_MAX_ENDPOINTS][256];
	int port[PGL_ETCD_MAX_ENDPOINTS];
	char prefix[512];			/* "/pglease/main/": ends with '/' */
	char cluster[PGL_NAME_MAX];	/* "main" */
	char user[128];
	char password_file[1024];
	char cacert[1024], cert[1024], key[1024];
	bool tls;
	bool insecure;				/* insecure=1: credentials over plain http accepted */
	int timeout_ms;
};

/*
 * Parses url into *out.  Returns 0, or -PGL_EINVAL with one line naming
 * the URL and what is wrong with it in err.
 */
int pgl_etcd_url_parse(const char *url, struct pgl_etcd_url *out, char *err, size_t errlen);

/*
 * url as messages show it: without its query (where a misplaced password=
 * would be) and without a user:password@ before the host.
 */
void pgl_etcd_url_shown(const char *url, char *out, size_t len);

#endif
