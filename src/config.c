/*
 * config.c — parse and validate the agent's configuration.
 *
 * Precedence: built-in defaults < the file < PGLEASE_<KEY> environment
 * variables.  The file is "key = value" with '#' comments and optional single
 * quotes around the value.  pg.<setting> = value lines pass through to
 * postgresql.conf.  Unknown keys are errors, never silently skipped.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pglease/config.h"
#include "pglease/log.h"

extern char **environ;

enum key_type { KEY_STR, KEY_INT, KEY_NAME, KEY_LEVEL, KEY_TRISTATE, KEY_CHOICE };

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
	  "path of the shared SQLite lease store", NULL },
	{ "pgdata", KEY_STR, OFF(pgdata), "/var/lib/postgresql/data/pgdata", 1, 0,
	  "PostgreSQL data directory owned by this agent", NULL },
	{ "pg_bindir", KEY_STR, OFF(pg_bindir), "", 0, 0,
	  "directory of postgres, initdb, pg_rewind...; default: PATH, then /usr/lib/postgresql/*/bin", NULL },
	{ "pg_port", KEY_INT, OFF(pg_port), "5432", 1, 65535, "PostgreSQL port", NULL },
	{ "advertise_host", KEY_STR, OFF(advertise_host), "", 0, 0,
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
	{ "allowed_network", KEY_STR, OFF(allowed_network), "samenet", 1, 0,
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
};

struct errbuf {
	char *buf;
	size_t len, used;
	int count;
};

static void
add_err(struct errbuf *e, const char *fmt, ...)
{
	va_list ap;
	int n;

	e->count++;
	if (e->used + 1 >= e->len)
		return;
	if (e->used > 0)
		e->buf[e->used++] = '\n';
	va_start(ap, fmt);
	n = vsnprintf(e->buf + e->used, e->len - e->used, fmt, ap);
	va_end(ap);
	if (n > 0)
		e->used += (size_t) n < e->len - e->used ? (size_t) n : e->len - e->used - 1;
}

static const struct conf_key *
find_key(const char *name)
{
	for (size_t i = 0; i < PGL_ARRAY_LEN(keys); i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* Stores `val` into the field of `k`; on error writes a reason into why. */
static bool
set_value(struct pgl_config *cfg, const struct conf_key *k, const char *val,
		  char *why, size_t whylen)
{
	char *field = (char *) cfg + k->off;

	switch (k->type) {
	case KEY_INT: {
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
		*(int *) field = (int) v;
		return true;
	}
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
	case KEY_CHOICE: {
		const char *const *c;

		for (c = k->choices; *c && strcmp(*c, val) != 0; c++)
			;
		if (*c == NULL) {
			size_t n = 0;

			n += snprintf(why + n, whylen - n, "'%s' is not one of", val);
			for (c = k->choices; *c && n < whylen; c++)
				n += snprintf(why + n, whylen - n, "%s %s", c == k->choices ? "" : ",", *c);
			return false;
		}
		break;
	}
	case KEY_STR:
		break;
	}
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

static void
set_pg(struct pgl_config *cfg, const char *name, const char *val, struct errbuf *e,
	   const char *where)
{
	int i;

	if (!pg_setting_name_valid(name)) {
		add_err(e, "%s: invalid PostgreSQL setting name 'pg.%s'", where, name);
		return;
	}
	if (strlen(val) >= sizeof(cfg->pg[0].value)) {
		add_err(e, "%s: value of pg.%s too long", where, name);
		return;
	}
	for (i = 0; i < cfg->n_pg; i++)
		if (strcmp(cfg->pg[i].name, name) == 0)
			break;
	if (i == cfg->n_pg) {
		if (cfg->n_pg == PGL_MAX_PG_SETTINGS) {
			add_err(e, "%s: too many pg.* settings (max %d)", where, PGL_MAX_PG_SETTINGS);
			return;
		}
		cfg->n_pg++;
	}
	strcpy(cfg->pg[i].name, name);
	strcpy(cfg->pg[i].value, val);
}

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

/* Parses one "key = value" file, collecting errors in e. */
static void
parse_file(struct pgl_config *cfg, const char *path, struct errbuf *e)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	int lineno = 0;

	if (f == NULL) {
		add_err(e, "%s: cannot open: %s", path, strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char where[PGL_PATH_MAX + 32], why[256];
		char *key, *val, *eq;
		const struct conf_key *k;

		lineno++;
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		if (strchr(line, '\n') == NULL && !feof(f)) {
			add_err(e, "%s: line too long", where);
			while (fgets(line, sizeof(line), f) && !strchr(line, '\n'))
				;
			continue;
		}
		key = trim(line);
		if (*key == '\0' || *key == '#')
			continue;
		eq = strchr(key, '=');
		if (eq == NULL) {
			add_err(e, "%s: expected 'key = value', got '%s'", where, key);
			continue;
		}
		*eq = '\0';
		key = trim(key);
		val = trim(eq + 1);
		if (*val == '\'') {
			char *close = strchr(val + 1, '\'');

			if (close == NULL || trim(close + 1)[0] != '\0' ) {
				if (close == NULL || trim(close + 1)[0] != '#') {
					add_err(e, "%s: key '%s': unterminated or malformed quoted value", where, key);
					continue;
				}
			}
			*close = '\0';
			val++;
		} else {
			char *hash = strchr(val, '#');

			if (hash) {
				*hash = '\0';
				val = trim(val);
			}
		}
		if (strncmp(key, "pg.", 3) == 0) {
			set_pg(cfg, key + 3, val, e, where);
			continue;
		}
		k = find_key(key);
		if (k == NULL) {
			add_err(e, "%s: unknown key '%s'", where, key);
			continue;
		}
		if (!set_value(cfg, k, val, why, sizeof(why)))
			add_err(e, "%s: key '%s': %s", where, key, why);
	}
	if (ferror(f))
		add_err(e, "%s: read error: %s", path, strerror(errno));
	fclose(f);
}

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
		if (n == 0 || n >= sizeof(name))
			continue;
		for (size_t i = 0; i < n; i++)
			name[i] = tolower((unsigned char) (*ep)[8 + i]);
		name[n] = '\0';
		k = find_key(name);
		if (k == NULL)
			continue;			/* other PGLEASE_* variables are not config keys */
		if (!set_value(cfg, k, eq + 1, why, sizeof(why)))
			add_err(e, "environment PGLEASE_%.*s: %s", (int) n, *ep + 8, why);
	}
}

/* Finds the directory of `initdb`: PATH first, then the newest /usr/lib/postgresql/N/bin. */
static bool
find_bindir(char *out, size_t len)
{
	const char *path = getenv("PATH");
	char buf[PGL_PATH_MAX];
	int best = -1;
	DIR *d;
	struct dirent *de;

	if (path) {
		char *copy = strdup(path), *save = NULL;

		for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
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

static void
validate(struct pgl_config *cfg, struct errbuf *e)
{
	char host[256];

	if (cfg->node_name[0] == '\0') {
		if (gethostname(host, sizeof(host)) != 0 || !pgl_name_valid(host))
			add_err(e, "node_name: not set, and the host name '%s' is not a valid node name",
					host);
		else
			strcpy(cfg->node_name, host);
	}
	if (cfg->advertise_host[0] == '\0') {
		if (gethostname(host, sizeof(host)) == 0)
			pgl_strlcpy(cfg->advertise_host, host, sizeof(cfg->advertise_host));
	}
	if ((long) cfg->renew_interval_ms * 2 > (long) cfg->lease_ttl_ms - cfg->fence_margin_ms)
		add_err(e, "lease timing: renew_interval_ms * 2 (%d) must not exceed "
				"lease_ttl_ms - fence_margin_ms (%d)",
				cfg->renew_interval_ms * 2, cfg->lease_ttl_ms - cfg->fence_margin_ms);
	if (cfg->pg_bindir[0] == '\0' && !find_bindir(cfg->pg_bindir, sizeof(cfg->pg_bindir)))
		add_err(e, "pg_bindir: not set, and no PostgreSQL binaries found in PATH or "
				"/usr/lib/postgresql/*/bin");
	pgl_log_level = pgl_log_parse_level(cfg->log_level);
}

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
	apply_env(cfg, envp ? envp : environ, &e);
	if (e.count == 0)
		validate(cfg, &e);
	return e.count ? -PGL_ECONFIG : 0;
}

int
pgl_config_lease_db(const char *path, char *out, size_t len, char *err, size_t errlen)
{
	struct pgl_config *cfg = calloc(1, sizeof(*cfg));
	struct errbuf e = { err, errlen, 0, 0 };
	int rc = 0;

	if (errlen)
		err[0] = '\0';
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

void
pgl_config_print_keys(FILE *f)
{
	for (size_t i = 0; i < PGL_ARRAY_LEN(keys); i++)
		fprintf(f, "  %-28s %-20s %s\n", keys[i].name,
				keys[i].def[0] ? keys[i].def : "-", keys[i].help);
	fprintf(f, "  %-28s %-20s %s\n", "pg.<setting>", "", "passed to postgresql.conf");
}

void
pgl_config_slot_name(const char *node, char *out, size_t len)
{
	size_t i;

	for (i = 0; node[i] && i + 1 < len; i++)
		out[i] = node[i] == '-' ? '_' : node[i];
	out[i] = '\0';
}
