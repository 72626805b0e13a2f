/*
 * config.c — parse and validate the agent's configuration.
 *
 * Precedence: built-in defaults < the file < PGLEASE_<KEY> environment
 * variables.  The file is "key = value" with '#' comments and optional single
 * quotes around the value.  pg.<setting> = value lines pass through to
 * postgresql.conf.  Nothing questionable is accepted silently; each of these
 * is an error naming the file and line, or the variable:
 *
 *   - an unknown key, and a PGLEASE_* variable that is neither a key nor on
 *     the short list of variables the project's scripts use (env_not_keys);
 *   - a key (pg.* settings too) given twice in the file: both lines named;
 *   - a NUL byte in a line, a line longer than LINE_MAX_LEN;
 *   - an unquoted '#' inside a value ("a#b"): a comment starts only at the
 *     beginning of a line or after white space, so "a#b" would be ambiguous;
 *   - a control character (C0, DEL) in any value;
 *   - allowed_network other than samenet, samehost or a CIDR ADDRESS/PREFIX
 *     with no host bits set: the value is written into pg_hba.conf;
 *   - advertise_host other than a host name or IP address (pgl_host_valid):
 *     the value is written into the node's conninfo in the lease store.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pglease/config.h"
#include "pglease/http.h"
#include "pglease/log.h"

extern char **environ;

enum key_type { KEY_STR, KEY_INT, KEY_NAME, KEY_LEVEL, KEY_TRISTATE, KEY_CHOICE, KEY_NETWORK,
			   KEY_HOST, KEY_LISTEN, KEY_PROGRAM };

/* Longest line of a config file (without its newline). */
#define LINE_MAX_LEN 4095

struct conf_key {
	const char *name;
	enum key_type type;
	size_t off;
	size_t size;			/* for strings: buffer size */
	const char *def;
	long min, max;			/* ints: range; strings: min length */
	const char *help;
	const char *const *choices;	/* KEY_CHOICE: the allowed values, NULL-terminated */
};

static const char *const sslmodes[] = {
	"disable", "allow", "prefer", "require", "verify-ca", "verify-full", NULL
};
static const char *const channel_bindings[] = { "disable", "prefer", "require", NULL };

#define OFF(f) offsetof(struct pgl_config, f), sizeof(((struct pgl_config *) 0)->f)

static const struct conf_key keys[] = {
	{ "node_name", KEY_NAME, OFF(node_name), "", 0, 0,
	  "this node's name, [a-z0-9_-]{1,63}; default: the host name", NULL },
	{ "lease_db", KEY_STR, OFF(lease_db), "/var/lib/pglease/lease.db", 1, 0,
	  "the lease store: the shared SQLite file's path, or "
	  "etcd://HOST:PORT[,HOST:PORT...]/PREFIX/CLUSTER[?user=&password_file=&cacert=&cert=&key="
	  "&tls=1&insecure=1&timeout_ms=] for etcd", NULL },
	{ "pgdata", KEY_STR, OFF(pgdata), "/var/lib/postgresql/data/pgdata", 1, 0,
	  "PostgreSQL data directory owned by this agent", NULL },
	{ "pg_bindir", KEY_STR, OFF(pg_bindir), "", 0, 0,
	  "directory of postgres, initdb, pg_rewind...; default: PATH, then /usr/lib/postgresql/*/bin", NULL },
	{ "pg_port", KEY_INT, OFF(pg_port), "5432", 1, 65535, "PostgreSQL port", NULL },
	{ "advertise_host", KEY_HOST, OFF(advertise_host), "", 0, 0,
	  "host name or address other nodes use to reach this one; default: the host name", NULL },
	{ "replication_user", KEY_NAME, OFF(replication_user), "pglease", 1, 0,
	  "role used for replication, pg_rewind and pg_basebackup", NULL },
	{ "password_file", KEY_STR, OFF(password_file), "", 0, 0,
	  "required: file whose first line is the replication role's password", NULL },
	{ "priority", KEY_INT, OFF(priority), "100", 0, 1000000,
	  "election priority; 0 = never becomes primary", NULL },
	{ "lease_ttl_ms", KEY_INT, OFF(lease_ttl_ms), "5000", 500, 600000,
	  "lease time to live", NULL },
	{ "renew_interval_ms", KEY_INT, OFF(renew_interval_ms), "1000", 50, 300000,
	  "how often the holder renews", NULL },
	{ "fence_margin_ms", KEY_INT, OFF(fence_margin_ms), "1000", 0, 300000,
	  "the holder fences this long before any observer may take over", NULL },
	{ "election_grace_ms", KEY_INT, OFF(election_grace_ms), "1000", 0, 300000,
	  "extra wait for a candidate that is not the best ranked", NULL },
	{ "follow_timeout_ms", KEY_INT, OFF(follow_timeout_ms), "15000", 1000, 3600000,
	  "a standby not streaming from the new primary after this long rewinds", NULL },
	{ "log_level", KEY_LEVEL, OFF(log_level), "info", 0, 0, "error, warn, info or debug", NULL },
	{ "allowed_network", KEY_NETWORK, OFF(allowed_network), "samenet", 1, 0,
	  "pg_hba address (CIDR, samenet or samehost) allowed to connect with a password", NULL },
	{ "pg_socket_dir", KEY_STR, OFF(pg_socket_dir), "/var/run/postgresql", 1, 0,
	  "directory of PostgreSQL's Unix socket (socket mode 0700, peer authentication)", NULL },
	{ "in_server_fence", KEY_TRISTATE, OFF(in_server_fence), "auto", 0, 0,
	  "pglease_fence extension refusing commits past the deadline: auto, on or off", NULL },
	{ "replication_sslmode", KEY_CHOICE, OFF(replication_sslmode), "prefer", 0, 0,
	  "sslmode of replication, pg_basebackup and pg_rewind connections (verify-full to "
	  "check the primary's certificate)", sslmodes },
	{ "replication_sslrootcert", KEY_STR, OFF(replication_sslrootcert), "", 0, 0,
	  "CA certificate file for replication_sslmode verify-ca or verify-full", NULL },
	{ "replication_channel_binding", KEY_CHOICE, OFF(replication_channel_binding), "prefer",
	  0, 0, "channel_binding of replication connections: disable, prefer or require",
	  channel_bindings },
	{ "max_lag_on_failover", KEY_INT, OFF(max_lag_on_failover), "0", 0, 2147483647,
	  "bytes: a standby further behind the primary's last reported position does not "
	  "claim (only pglease failover --to can name it); 0: no bound", NULL },
	{ "on_role_change", KEY_PROGRAM, OFF(on_role_change), "", 0, 0,
	  "absolute path of a program run as PROGRAM EVENT ROLE TERM NODE when this node's role "
	  "changes (asynchronously; its exit status is logged); empty: none", NULL },
	{ "bootstrap_program", KEY_PROGRAM, OFF(bootstrap_program), "", 0, 0,
	  "absolute path of a program run once, as PROGRAM NODE, by the node that bootstraps the "
	  "cluster, after initdb and before it serves as primary (creates roles, databases; "
	  "libpq environment set for the local superuser); empty: none", NULL },
	{ "hook_timeout_ms", KEY_INT, OFF(hook_timeout_ms), "30000", 100, 3600000,
	  "on_role_change's program is killed (its process group) after this long", NULL },
	{ "http_listen", KEY_LISTEN, OFF(http_listen), "", 0, 0,
	  "[ADDRESS]:PORT of the HTTP API (/primary, /replica, /health, /cluster, /metrics; "
	  "for example :8008); empty: off", NULL },
};

struct errbuf {
	char *buf;
	size_t len, used;
	int count;
};

/*
 * Records one error line.  The line quotes values from the file or the
 * environment, so it is escaped for a terminal (pgl_text_escape) here, once
 * for every caller that prints it: an error line never holds a newline, a
 * control character or a bidirectional override.
 */
static void
add_err(struct errbuf *e, const char *fmt, ...)
{
	char line[PGL_PATH_MAX + 1024];
	va_list ap;

	e->count++;
	if (e->used + 1 >= e->len)
		return;
	if (e->used > 0)
		e->buf[e->used++] = '\n';
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	e->used += pgl_text_escape(e->buf + e->used, e->len - e->used, line);
}

/*
 * PGLEASE_* variables that are not config keys but are used by the project's
 * own scripts, compose file and test harnesses, so they may be present in an
 * agent's or a CLI's environment.  Any other PGLEASE_* variable that is not
 * a key is an error (a typo such as PGLEASE_NODENAME would otherwise be
 * ignored).  An entry ending in '_' is a prefix.  README.md lists them.
 */
static const char *const env_not_keys[] = {
	"PGLEASE_BIN",					/* entrypoint.sh, local-cluster.sh, tests */
	"PGLEASE_MKSTORE",				/* test/cli */
	"PGLEASE_CLUSTER_DIR",			/* local-cluster.sh, bench */
	"PGLEASE_BASE_PORT",			/* local-cluster.sh, bench */
	"PGLEASE_LEASE_DIR",			/* docker-compose.yml */
	"PGLEASE_PASSWORD_FILE_IN_CONTAINER",	/* docker-compose.yml */
	"PGLEASE_IMAGE_TAG",			/* docker-compose.yml, test/docker */
	"PGLEASE_BASE_IMAGE",			/* docker-compose.yml */
	"PGLEASE_BUILD_IMAGE",			/* docker-compose.yml */
	"PGLEASE_BASE_CACHE_DIR",		/* build-base-image.sh */
	"PGLEASE_IT_",					/* test/integration */
	"PGLEASE_DOCKER_",				/* test/docker */
	"PGLEASE_FUZZ_",				/* test/fuzz */
};

/* True when the variable named name (up to '=') is on env_not_keys. */
static bool
env_allowed(const char *name, size_t len)
{
	for (size_t i = 0; i < PGL_ARRAY_LEN(env_not_keys); i++) {
		const char *a = env_not_keys[i];
		size_t n = strlen(a);

		if (a[n - 1] == '_' ? len > n && strncmp(name, a, n) == 0
			: len == n && strncmp(name, a, n) == 0)
			return true;
	}
	return false;
}

/* Finds a key by name; NULL when there is none. */
static const struct conf_key *
find_key(const char *name)
{
	for (size_t i = 0; i < PGL_ARRAY_LEN(keys); i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/*
 * Checks allowed_network, which is written into pg_hba.conf as the address
 * field: samenet, samehost, or ADDRESS/PREFIX where ADDRESS is an IPv4 or
 * IPv6 address inet_pton() accepts, PREFIX a decimal 0..32 (0..128 for IPv6)
 * without leading zeros, and no bit after the prefix is set (10.1.2.3/8 is
 * refused, naming 10.0.0.0/8: such a value is usually a mistake for /32).
 */
static bool
network_valid(const char *val, char *why, size_t whylen)
{
	char addr[INET6_ADDRSTRLEN + 1], net[INET6_ADDRSTRLEN];
	unsigned char bin[16];
	const char *slash = strchr(val, '/'), *p;
	int af, bits = 0, maxbits;

	if (strcmp(val, "samenet") == 0 || strcmp(val, "samehost") == 0)
		return true;
	if (slash == NULL || (size_t) (slash - val) >= sizeof(addr))
		goto bad;
	memcpy(addr, val, slash - val);
	addr[slash - val] = '\0';
	af = strchr(addr, ':') ? AF_INET6 : AF_INET;
	maxbits = af == AF_INET6 ? 128 : 32;
	if (inet_pton(af, addr, bin) != 1)
		goto bad;
	for (p = slash + 1; isdigit((unsigned char) *p) && p - slash <= 3; p++)
		bits = bits * 10 + (*p - '0');
	if (p == slash + 1 || *p != '\0' || (slash[1] == '0' && slash[2] != '\0')) 
		goto bad;
	if (bits > maxbits) {
		snprintf(why, whylen, "'%s': prefix length %d is out of range [0, %d]", val, bits,
				 maxbits);
		return false;
	}
	for (int i = bits; i < maxbits; i++) {
		if (bin[i / 8] & (0x80 >> (i % 8))) {
			for (int j = bits; j < maxbits; j++)
				bin[j / 8] &= (unsigned char) ~(0x80 >> (j % 8));
			inet_ntop(af, bin, net, sizeof(net));
			snprintf(why, whylen, "'%s' has bits set after the /%d prefix (the network "
					 "is %s/%d; for one host use /%d)", val, bits, net, bits, maxbits);
			return false;
		}
	}
	return true;
bad:
	snprintf(why, whylen, "'%s' is not samenet, samehost or an ADDRESS/PREFIX network "
			 "(such as 10.0.0.0/8, 127.0.0.1/32 or fd00::/8)", val);
	return false;
}

/* True if val is one of k's choices; else the reason, listing them, in why. */
static bool
choice_valid(const struct conf_key *k, const char *val, char *why, size_t whylen)
{
	size_t n = 0;

	for (const char *const *c = k->choices; *c; c++)
		if (strcmp(*c, val) == 0)
			return true;
	n += snprintf(why, whylen, "'%s' is not one of", val);
	for (const char *const *c = k->choices; *c && n < whylen; c++)
		n += snprintf(why + n, whylen - n, "%s %s", c == k->choices ? "" : ",", *c);
	return false;
}

/* Parses an integer key's value into *field, checking its range. */
static bool
int_value(const struct conf_key *k, const char *val, int *field, char *why, size_t whylen)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(val, &end, 10);
	if (errno || end == val || *end != '\0') {
		snprintf(why, whylen, "'%s' is not an integer", val);
		return false;
	}
	if (v < k->min || v > k->max) {
		snprintf(why, whylen, "%ld is out of range [%ld, %ld]", v, k->min, k->max);
		return false;
	}
	*field = (int) v;
	return true;
}

/* Checks a string value against the type of `k`; on error writes a reason. */
static bool
string_valid(const struct conf_key *k, const char *val, char *why, size_t whylen)
{
	switch (k->type) {
	case KEY_NAME:
		if (*val != '\0' && !pgl_name_valid(val)) {
			snprintf(why, whylen, "'%s' is not a valid name ([a-z0-9_-], 1 to 63 characters)", val);
			return false;
		}
		break;
	case KEY_LEVEL:
		if (pgl_log_parse_level(val) < 0) {
			snprintf(why, whylen, "'%s' is not one of error, warn, info, debug", val);
			return false;
		}
		break;
	case KEY_TRISTATE:
		if (strcmp(val, "auto") != 0 && strcmp(val, "on") != 0 && strcmp(val, "off") != 0) {
			snprintf(why, whylen, "'%s' is not one of auto, on, off", val);
			return false;
		}
		break;
	case KEY_CHOICE:
		if (!choice_valid(k, val, why, whylen))
			return false;
		break;
	case KEY_NETWORK:
		if (!network_valid(val, why, whylen))
			return false;
		break;
	case KEY_HOST:
		if (*val != '\0' && !pgl_host_valid(val)) {
			snprintf(why, whylen, "'%s' is not a host name or IP address", val);
			return false;
		}
		break;
	case KEY_LISTEN: {
		char addr[64];
		int port;

		if (*val != '\0' && !pgl_http_listen_parse(val, addr, sizeof(addr), &port, why,
													 whylen))
			return false;
		break;
	}
	case KEY_PROGRAM:
		if (*val != '\0' && *val != '/') {
			snprintf(why, whylen, "'%s' is not an absolute path", val);
			return false;
		}
		break;
	case KEY_INT:				/* set_value() parses it with int_value() */
	case KEY_STR:
		break;
	}
	return true;
}

/* Stores `val` into the field of `k`; on error writes a reason into why. */
static bool
set_value(struct pgl_config *cfg, const struct conf_key *k, const char *val,
		  char *why, size_t whylen)
{
	char *field = (char *) cfg + k->off;

	for (const char *c = val; *c; c++) {
		if ((unsigned char) *c < 0x20 || *c == 0x7f) {
			snprintf(why, whylen, "control character 0x%02x in the value",
					 (unsigned char) *c);
			return false;
		}
	}
	if (k->type == KEY_INT)
		return int_value(k, val, (int *) field, why, whylen);
	if (!string_valid(k, val, why, whylen))
		return false;
	if ((long) strlen(val) < k->min) {
		snprintf(why, whylen, "must not be empty");
		return false;
	}
	if (strlen(val) >= k->size) {
		snprintf(why, whylen, "value too long (max %zu bytes)", k->size - 1);
		return false;
	}
	strcpy(field, val);
	return true;
}

static bool
pg_setting_name_valid(const char *s)
{
	if (!*s || strlen(s) >= 64)
		return false;
	for (; *s; s++)
		if (!(islower((unsigned char) *s) || isdigit((unsigned char) *s) || *s == '_' || *s == '.'))
			return false;
	return true;
}

/* Where each key was set in the file (0: not set), to name both lines of a duplicate. */
struct seen {
	int key_line[PGL_ARRAY_LEN(keys)];
	int pg_line[PGL_MAX_PG_SETTINGS];
};

/* Records pg.<name> = val from line `lineno` of the file. */
static void
set_pg(struct pgl_config *cfg, struct seen *seen, const char *name, const char *val,
	   struct errbuf *e, const char *where, int lineno)
{
	int i;

	if (!pg_setting_name_valid(name)) {
		add_err(e, "%s: invalid PostgreSQL setting name 'pg.%s'", where, name);
		return;
	}
	for (const char *c = val; *c; c++) {
		if ((unsigned char) *c < 0x20 || *c == 0x7f) {
			add_err(e, "%s: key 'pg.%s': control character 0x%02x in the value", where, name,
					(unsigned char) *c);
			return;
		}
	}
	if (strlen(val) >= sizeof(cfg->pg[0].value)) {
		add_err(e, "%s: value of pg.%s too long", where, name);
		return;
	}
	for (i = 0; i < cfg->n_pg; i++) {
		if (strcmp(cfg->pg[i].name, name) == 0) {
			add_err(e, "%s: key 'pg.%s' is set twice (first on line %d)", where, name,
					seen->pg_line[i]);
			return;
		}
	}
	if (cfg->n_pg == PGL_MAX_PG_SETTINGS) {
		add_err(e, "%s: too many pg.* settings (max %d)", where, PGL_MAX_PG_SETTINGS);
		return;
	}
	seen->pg_line[i] = lineno;
	cfg->n_pg++;
	strcpy(cfg->pg[i].name, name);
	strcpy(cfg->pg[i].value, val);
}

/* Strips leading and trailing white space in place; returns the start. */
static char *
trim(char *s)
{
	char *end;

	while (isspace((unsigned char) *s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char) end[-1]))
		*--end = '\0';
	return s;
}

/*
 * Cuts the value part of a line (after '=') down to the value: the text
 * inside 'single quotes' (with '' for a quote), or the unquoted text before
 * a comment.  A comment
 * starts with '#' after white space (or right after the '='); an unquoted
 * '#' inside a word ("a#b") is refused.  Returns the value, or NULL after
 * writing the reason into why.
 */
static char *
cut_value(char *val, char *why, size_t whylen)
{
	char *hash;

	val = trim(val);
	if (*val == '\'') {
		char *in = val + 1, *out = val + 1, *rest;

		/* As in postgresql.conf: '' inside the quotes is one quote. */
		for (;;) {
			if (*in == '\0') {
				snprintf(why, whylen, "unterminated quoted value");
				return NULL;
			}
			if (*in == '\'' && in[1] == '\'') {
				*out++ = '\'';
				in += 2;
			} else if (*in == '\'')
				break;
			else
				*out++ = *in++;
		}
		rest = trim(in + 1);
		if (rest[0] != '\0' && rest[0] != '#') {
			snprintf(why, whylen, "malformed quoted value: text after the closing quote");
			return NULL;
		}
		*out = '\0';
		return val + 1;
	}
	for (hash = strchr(val, '#'); hash; hash = strchr(hash + 1, '#')) {
		if (hash == val || isspace((unsigned char) hash[-1])) {
			*hash = '\0';
			return trim(val);
		}
		snprintf(why, whylen, "unquoted '#' inside the value; quote the value ('...') "
				 "or put white space before a comment");
		return NULL;
	}
	return val;
}

/* Parses one line (NUL-free, no newline) of the file into cfg. */
static void
parse_line(struct pgl_config *cfg, struct seen *seen, char *line, const char *where,
		   int lineno, struct errbuf *e)
{
	char why[512], *key = trim(line), *val, *eq;
	const struct conf_key *k;

	if (*key == '\0' || *key == '#')
		return;
	eq = strchr(key, '=');
	if (eq == NULL) {
		add_err(e, "%s: expected 'key = value', got '%s'", where, key);
		return;
	}
	*eq = '\0';
	key = trim(key);
	if ((val = cut_value(eq + 1, why, sizeof(why))) == NULL) {
		add_err(e, "%s: key '%s': %s", where, key, why);
		return;
	}
	if (strncmp(key, "pg.", 3) == 0) {
		set_pg(cfg, seen, key + 3, val, e, where, lineno);
		return;
	}
	k = find_key(key);
	if (k == NULL) {
		add_err(e, "%s: unknown key '%s'", where, key);
		return;
	}
	if (seen->key_line[k - keys]) {
		add_err(e, "%s: key '%s' is set twice (first on line %d)", where, key,
				seen->key_line[k - keys]);
		return;
	}
	seen->key_line[k - keys] = lineno;
	if (!set_value(cfg, k, val, why, sizeof(why)))
		add_err(e, "%s: key '%s': %s", where, key, why);
}

/*
 * Opens the config file for reading.  O_NONBLOCK so that a FIFO cannot hang
 * the open, then a regular file is required (a FIFO or a device would block
 * the read or never end).  Returns the stream, or NULL after recording why.
 */
static FILE *
open_config(const char *path, struct errbuf *e)
{
	struct stat sb;
	FILE *f;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		add_err(e, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		add_err(e, "%s: cannot read the config file: not a regular file", path);
		close(fd);
		return NULL;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	if ((f = fdopen(fd, "r")) == NULL) {
		add_err(e, "%s: cannot open: %s", path, strerror(errno));
		close(fd);
	}
	return f;
}

/* Parses one "key = value" file, collecting errors in e. */
static void
parse_file(struct pgl_config *cfg, const char *path, struct errbuf *e)
{
	struct seen *seen = calloc(1, sizeof(*seen));
	FILE *f = seen ? open_config(path, e) : NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0;

	if (seen == NULL) {
		add_err(e, "%s: cannot read the config file: out of memory", path);
		goto out;
	}
	if (f == NULL)
		goto out;
	/* getline, not fgets: a NUL byte must not hide the rest of a line. */
	while ((n = getline(&line, &cap, f)) >= 0) {
		char where[PGL_PATH_MAX + 32];

		lineno++;
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		if (memchr(line, '\0', n) != NULL)
			add_err(e, "%s: NUL byte in the line", where);
		else if (n > LINE_MAX_LEN)
			add_err(e, "%s: line too long (max %d bytes)", where, LINE_MAX_LEN);
		else
			parse_line(cfg, seen, line, where, lineno, e);
	}
	if (ferror(f))
		add_err(e, "%s: read error: %s", path, strerror(errno));
	fclose(f);
out:
	free(line);
	free(seen);
}

/*
 * Reports a PGLEASE_* variable that is no key and not on env_not_keys,
 * suggesting the key it most likely meant (the same letters without '_').
 */
static void
unknown_env(const char *var, size_t len, struct errbuf *e)
{
	const char *hint = NULL;

	for (size_t i = 0; i < PGL_ARRAY_LEN(keys) && hint == NULL; i++) {
		const char *a = var + 8, *b = keys[i].name;

		while (a < var + len || *b) {
			if (*a == '_' && a < var + len)
				a++;
			else if (*b == '_')
				b++;
			else if (a < var + len && *b && tolower((unsigned char) *a) == *b)
				a++, b++;
			else
				break;
		}
		if (a == var + len && *b == '\0')
			hint = keys[i].name;
	}
	if (hint) {
		char up[64];
		size_t i;

		for (i = 0; hint[i] && i + 1 < sizeof(up); i++)
			up[i] = toupper((unsigned char) hint[i]);
		up[i] = '\0';
		add_err(e, "environment %.*s: not a pglease setting (did you mean PGLEASE_%s?)",
				(int) len, var, up);
	} else
		add_err(e, "environment %.*s: not a pglease setting (see the keys in "
				"pglease run --help; pg.* settings only in the file)", (int) len, var);
}

/* Applies every PGLEASE_<KEY> variable of envp; others named PGLEASE_* are errors. */
static void
apply_env(struct pgl_config *cfg, char *const *envp, struct errbuf *e)
{
	for (char *const *ep = envp; *ep; ep++) {
		char name[128], why[256];
		const char *eq;
		const struct conf_key *k;
		size_t n;

		if (strncmp(*ep, "PGLEASE_", 8) != 0 || (eq = strchr(*ep, '=')) == NULL)
			continue;
		n = eq - (*ep + 8);
		if (n == 0 || n >= sizeof(name)) {
			unknown_env(*ep, eq - *ep, e);
			continue;
		}
		for (size_t i = 0; i < n; i++)
			name[i] = tolower((unsigned char) (*ep)[8 + i]);
		name[n] = '\0';
		k = find_key(name);
		if (k == NULL) {
			if (!env_allowed(*ep, eq - *ep))
				unknown_env(*ep, eq - *ep, e);
			continue;
		}
		if (!set_value(cfg, k, eq + 1, why, sizeof(why)))
			add_err(e, "environment PGLEASE_%.*s: %s", (int) n, *ep + 8, why);
	}
}

/* The value of variable name in envp, or NULL. */
static const char *
env_get(char *const *envp, const char *name)
{
	size_t n = strlen(name);

	for (char *const *ep = envp; *ep; ep++)
		if (strncmp(*ep, name, n) == 0 && (*ep)[n] == '=')
			return *ep + n + 1;
	return NULL;
}

/*
 * Finds the directory of `initdb`: PATH (from the same envp as the
 * PGLEASE_* variables) first, then the newest /usr/lib/postgresql/N/bin.
 */
static bool
find_bindir(char *const *envp, char *out, size_t len)
{
	const char *path = env_get(envp, "PATH");
	char buf[PGL_PATH_MAX];
	int best = -1;
	DIR *d;
	struct dirent *de;

	/* Out of memory for the copy of PATH: look in /usr/lib/postgresql only. */
	if (path) {
		char *copy = strdup(path), *save = NULL;
		char *dir = copy ? strtok_r(copy, ":", &save) : NULL;

		for (; dir; dir = strtok_r(NULL, ":", &save)) {
			snprintf(buf, sizeof(buf), "%s/pg_rewind", dir);
			if (access(buf, X_OK) == 0) {
				snprintf(out, len, "%s", dir);
				free(copy);
				return true;
			}
		}
		free(copy);
	}
	d = opendir("/usr/lib/postgresql");
	if (d == NULL)
		return false;
	while ((de = readdir(d)) != NULL) {
		int v = atoi(de->d_name);

		snprintf(buf, sizeof(buf), "/usr/lib/postgresql/%s/bin/postgres", de->d_name);
		if (v > best && access(buf, X_OK) == 0)
			best = v;
	}
	closedir(d);
	if (best < 0)
		return false;
	snprintf(out, len, "/usr/lib/postgresql/%d/bin", best);
	return true;
}

/* Resets cfg to the built-in defaults of the key table. */
static void
set_defaults(struct pgl_config *cfg)
{
	char why[256];

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < PGL_ARRAY_LEN(keys); i++) {
		if (!set_value(cfg, &keys[i], keys[i].def, why, sizeof(why)))
			abort();		/* a default that fails its own check is a bug */
	}
}

/* Fills node_name, advertise_host and pg_bindir when unset, and checks the timing rule. */
static void
validate(struct pgl_config *cfg, char *const *envp, struct errbuf *e)
{
	char host[256] = "";

	if (cfg->node_name[0] == '\0') {
		if (gethostname(host, sizeof(host)) != 0 || !pgl_name_valid(host))
			add_err(e, "node_name: not set, and the host name '%s' is not a valid node name",
					host);
		else
			strcpy(cfg->node_name, host);
	}
	if (cfg->advertise_host[0] == '\0') {
		if (gethostname(host, sizeof(host)) != 0 || !pgl_host_valid(host))
			add_err(e, "advertise_host: not set, and the host name '%s' is not a host name "
					"or IP address", host);
		else
			pgl_strlcpy(cfg->advertise_host, host, sizeof(cfg->advertise_host));
	}
	if ((long) cfg->renew_interval_ms * 2 > (long) cfg->lease_ttl_ms - cfg->fence_margin_ms)
		add_err(e, "lease timing: renew_interval_ms * 2 (%d) must not exceed "
				"lease_ttl_ms - fence_margin_ms (%d)",
				cfg->renew_interval_ms * 2, cfg->lease_ttl_ms - cfg->fence_margin_ms);
	if (cfg->pg_bindir[0] == '\0' && !find_bindir(envp, cfg->pg_bindir, sizeof(cfg->pg_bindir)))
		add_err(e, "pg_bindir: not set, and no PostgreSQL binaries found in PATH or "
				"/usr/lib/postgresql/*/bin");
	pgl_log_level = pgl_log_parse_level(cfg->log_level);
}

/* Defaults, then the file, then envp; see config.h. */
int
pgl_config_load(struct pgl_config *cfg, const char *path, char *const *envp,
				char *err, size_t errlen)
{
	struct errbuf e = { err, errlen, 0, 0 };

	if (errlen)
		err[0] = '\0';
	set_defaults(cfg);
	if (path)
		parse_file(cfg, path, &e);
	if (envp == NULL)
		envp = environ;
	apply_env(cfg, envp, &e);
	if (e.count == 0)
		validate(cfg, envp, &e);
	return e.count ? -PGL_ECONFIG : 0;
}

/* lease_db as the CLI resolves it (file, then the process environment); see config.h. */
int
pgl_config_lease_db(const char *path, char *out, size_t len, char *err, size_t errlen)
{
	struct pgl_config *cfg = calloc(1, sizeof(*cfg));
	struct errbuf e = { err, errlen, 0, 0 };
	int rc = 0;

	if (errlen)
		err[0] = '\0';
	if (cfg == NULL) {
		add_err(&e, "cannot resolve lease_db: out of memory");
		return -PGL_ENOMEM;
	}
	set_defaults(cfg);
	if (path)
		parse_file(cfg, path, &e);
	apply_env(cfg, environ, &e);
	if (e.count)
		rc = -PGL_ECONFIG;
	else
		snprintf(out, len, "%s", cfg->lease_db);
	free(cfg);
	return rc;
}

/* Where the node's alive lock lives (see config.h). */
void
pgl_config_alive_dir(const struct pgl_config *cfg, char *out, size_t len)
{
	char dir[PGL_PATH_MAX];
	char *slash;
	bool url = strstr(cfg->lease_db, "://") != NULL;

	pgl_strlcpy(dir, url ? cfg->pgdata : cfg->lease_db, sizeof(dir));
	while ((slash = strrchr(dir, '/')) != NULL && slash > dir && slash[1] == '\0')
		*slash = '\0';			/* "/a/b/" is "/a/b" */
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	snprintf(out, len, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/",
			 url ? "pglease-alive" : "alive");
}

/* One line per key for --help: name, default, description. */
void
pgl_config_print_keys(FILE *f)
{
	for (size_t i = 0; i < PGL_ARRAY_LEN(keys); i++)
		fprintf(f, "  %-28s %-20s %s\n", keys[i].name,
				keys[i].def[0] ? keys[i].def : "-", keys[i].help);
	fprintf(f, "  %-28s %-20s %s\n", "pg.<setting>", "", "passed to postgresql.conf");
}

/* The node's replication slot name: '-' becomes '_'. */
void
pgl_config_slot_name(const char *node, char *out, size_t len)
{
	size_t i;

	for (i = 0; node[i] && i + 1 < len; i++)
		out[i] = node[i] == '-' ? '_' : node[i];
	out[i] = '\0';
}
