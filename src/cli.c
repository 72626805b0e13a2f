/*
 * cli.c — the operator's subcommands of the one pglease binary: status,
 * lease, events, primary, watch, remove, pause, resume, switchover, failover
 * and health.  `run`
 * is handed to the agent unchanged.
 *
 * Read commands open the lease store with PGL_STORE_RDONLY: they never
 * create or write lease.db and, the store being in WAL mode, never block the
 * holder's commit.  (As any WAL reader, SQLite may create the empty
 * lease.db-wal and lease.db-shm side files next to it.)  Output for people
 * goes to stdout; with --json every command prints one JSON document, except
 * watch, which prints one JSON object per line.  Errors are one line on
 * stderr starting "pglease: ".  Exit codes are PGL_EXIT_* (DESIGN.md
 * section 5): 0 ok, 1 runtime failure, 2 usage or config error, 3 no live
 * primary.
 *
 * The store path: --lease-db, else PGLEASE_LEASE_DB, else lease_db in the
 * config file (-c), else /var/lib/pglease/lease.db.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pglease/agent.h"
#include "pglease/cli.h"
#include "pglease/common.h"
#include "pglease/config.h"
#include "pglease/decide.h"
#include "pglease/log.h"
#include "pglease/store.h"
#include "pglease/watch.h"

/* What a command accepts besides --lease-db, -c and -h. */
enum {
	OPT_JSON = 1 << 0,
	OPT_N = 1 << 1,
	OPT_CONNINFO = 1 << 2,
	OPT_COUNT = 1 << 3,
	ARG_NODE = 1 << 4,
	OPT_TO = 1 << 5,
	OPT_WAIT = 1 << 6,
	OPT_MAXLAG = 1 << 7,
	OPT_URI = 1 << 8,
	ARG_SUB = 1 << 9,			/* store's subcommand (rebuild), kept in node */
};

/* switchover / failover: how long the primary may take, and the lag bound. */
#define DEFAULT_SW_TIMEOUT_S 60
#define DEFAULT_SW_MAX_LAG (16L * 1024 * 1024)

#define DEFAULT_EVENTS 20
/* watch: the store is re-read at least this often even without inotify. */
#define WATCH_FALLBACK_MS 1000

struct cli;

struct command {
	const char *name;
	int (*fn)(struct cli *c);
	unsigned opts;
	const char *synopsis;		/* after "pglease NAME" */
	const char *summary;		/* one line for `pglease --help` */
	const char *help;			/* description and own options for NAME --help */
};

/* One parsed command line. */
struct cli {
	const struct command *cmd;
	const char *lease_db_arg;	/* --lease-db, or NULL */
	const char *config;			/* -c, or NULL */
	const char *node;			/* remove's NODE */
	bool json, conninfo, help, uri;
	long n;						/* events -n */
	long count;					/* watch --count; 0 = until a signal */
	const char *to;				/* switchover/failover --to */
	bool wait;					/* --wait */
	long timeout_s;				/* --timeout */
	long max_lag;				/* switchover --max-lag */
	char path[PGL_PATH_MAX];	/* the resolved lease store */
};

/* A consistent-enough picture for status (each read is its own snapshot). */
struct snapshot {
	struct pgl_cluster cluster;
	struct pgl_lease lease;
	struct pgl_node *nodes;
	int n_nodes;
	char alive_dir[PGL_PATH_MAX];	/* status: the nodes' alive locks; "" when not testable */
};

static int cmd_status(struct cli *c);
static int cmd_lease(struct cli *c);
static int cmd_events(struct cli *c);
static int cmd_primary(struct cli *c);
static int cmd_watch(struct cli *c);
static int cmd_remove(struct cli *c);
static int cmd_pause(struct cli *c);
static int cmd_resume(struct cli *c);
static int cmd_health(struct cli *c);
static int cmd_switchover(struct cli *c);
static int cmd_failover(struct cli *c);
static int cmd_reload(struct cli *c);
static int cmd_store(struct cli *c);

static const struct command commands[] = {
	{ "status", cmd_status, OPT_JSON, "[--json]",
	  "the cluster: lease holder and term, one row per node",
	  "Shows the cluster like `repmgr cluster show`: a header with the cluster name, the\n"
	  "lease holder, its term and the time since its last renewal (PAUSED when automatic\n"
	  "failover is paused), then one row per node: name, role, state, upstream, timeline,\n"
	  "lag, heartbeat age and a '*' in the Lease column for the node holding the lease.\n"
	  "Lag is the holder's current WAL position minus the node's replay position; '-'\n"
	  "when unknown (no holder, or a position not reported yet).  A node whose alive lock\n"
	  "beside the store is free (nothing of it runs) is shown '-' 'down' at once; one\n"
	  "silent for longer than the TTL '?' 'unreachable'; only the lease holder is shown\n"
	  "as primary ('?' 'stale primary' for any other node reporting primary).  A clone\n"
	  "or rewind under way shows 'cloning 45%' and a line below the table with bytes,\n"
	  "time so far and time left.\n\n"
	  "  --json             one JSON document:\n"
	  "                     {\"cluster\": {...}, \"lease\": {...}, \"nodes\": [...]}\n" },
	{ "lease", cmd_lease, OPT_JSON, "[--json]",
	  "the lease row: holder, term, renewals, times, released LSN",
	  "Shows the lease row: holder, term, renewals in this term, TTL, when it was acquired\n"
	  "and last renewed, and the LSN recorded by the last clean release.\n\n"
	  "  --json             the lease as one JSON object (as in status --json)\n" },
	{ "events", cmd_events, OPT_JSON | OPT_N, "[-n N] [--json]",
	  "the newest entries of the event log, oldest first",
	  "Prints the newest N events of the log, oldest first, one per line:\n"
	  "time, term, node, kind, detail.\n\n"
	  "  -n N               how many events (a positive integer; default 20)\n"
	  "  --json             a JSON array of {id, at, term, node, kind, detail}\n" },
	{ "primary", cmd_primary, OPT_JSON | OPT_CONNINFO | OPT_URI, "[--conninfo] [--json] [--uri]",
	  "print the live primary's name (exit 3 when there is none)",
	  "Prints the name of the live primary and exits 0.  The primary is live when the\n"
	  "lease has a holder, the holder's node row exists, its heartbeat is at most twice\n"
	  "the lease TTL old and the lease was renewed within the TTL (5 s when unset; on\n"
	  "etcd: the holder's lease has not expired there).\n"
	  "Otherwise prints nothing on stdout, \"pglease: no live primary\" (and why) on\n"
	  "stderr, and exits 3.\n\n"
	  "  --conninfo         print the primary's connection string instead of its name\n"
	  "  --json             {\"primary\": name or null, \"conninfo\": ..., \"term\": N}\n"
	  "                     (printed with exit 3 too)\n"
	  "  --uri              print instead the libpq multi-host URI of the whole cluster,\n"
	  "                     every node that reported an address, with\n"
	  "                     target_session_attrs=read-write (libpq finds the primary);\n"
	  "                     exit 0 whether or not a primary is live\n" },
	{ "watch", cmd_watch, OPT_JSON | OPT_COUNT, "[--json] [--count N]",
	  "print lease, event and node changes as they happen",
	  "Prints the current lease, then one line per change until SIGINT or SIGTERM (exit 0):\n"
	  "a change of lease holder or term or a release, every new event, and every change of\n"
	  "a node's role or state (nodes added or removed too).  Renewals and heartbeats are\n"
	  "not printed.  Changes are seen through inotify on the store's directory, confirmed\n"
	  "with PRAGMA data_version, and the store is re-read at least once a second.\n\n"
	  "  --json             JSON Lines: one object per line with \"type\" lease, event or node\n"
	  "  --count N          exit 0 after N change lines (not counting the first lease line)\n" },
	{ "remove", cmd_remove, ARG_NODE, "NODE",
	  "forget a node for good: its row (the primary then drops its slot)",
	  "Deletes NODE's row from the lease store and records a 'removed' event; the\n"
	  "primary's agent drops the node's replication slot when it sees that event.\n"
	  "Refuses the node holding the lease (stop it or switch over first).  Opens the\n"
	  "store read-write.\n" },
	{ "pause", cmd_pause, 0, "",
	  "pause automatic failover (no elections until resume)",
	  "Marks the cluster paused: no standby claims the lease while paused.  The\n"
	  "current primary keeps its lease.  Records a 'paused' event.\n" },
	{ "resume", cmd_resume, 0, "",
	  "resume automatic failover",
	  "Clears the paused mark so elections happen again.  Records a 'resumed' event.\n" },
	{ "switchover", cmd_switchover, OPT_TO | OPT_WAIT | OPT_MAXLAG,
	  "[--to NODE] [--wait] [--timeout S] [--max-lag BYTES]",
	  "hand the primary role over to a standby, with nothing lost",
	  "Asks the live primary, through the lease store, to hand its role over: to NODE,\n"
	  "else to the best standby (most WAL received, then priority, then name).  The\n"
	  "primary's agent runs a CHECKPOINT, stops its server with a fast shutdown (its\n"
	  "walsenders send everything to the standbys first), releases the lease at the\n"
	  "shutdown checkpoint and rejoins as a standby; only the target may claim the next\n"
	  "term, which it does at once, and it is promoted.  Nothing acknowledged is lost.\n"
	  "Refused when the cluster is paused, there is no live primary, the target is not\n"
	  "a live standby streaming from the primary, lags more than --max-lag, has priority\n"
	  "0, or another switchover is under way.  If the target does not qualify within\n"
	  "--timeout, the request fails and the primary stays primary.  Events record who\n"
	  "asked and what happened (switchover-requested, -handing-over, -done, -failed).\n\n"
	  "  --to NODE          the standby to hand over to (default: the best one)\n"
	  "  --wait             wait for the outcome: exit 0 once the target is primary,\n"
	  "                     1 if the switchover failed or gave no result in time\n"
	  "  --timeout S        how long the primary waits for the target to qualify\n"
	  "                     (seconds, default 60)\n"
	  "  --max-lag BYTES    refuse a target further behind the primary than this\n"
	  "                     (default 16777216)\n" },
	{ "failover", cmd_failover, OPT_TO | OPT_WAIT, "--to NODE [--wait] [--timeout S]",
	  "when there is no live primary: name the node that takes over",
	  "For when there is no live primary and the operator picks the next one (an\n"
	  "election held back waiting for a node that will not come, for example).  Records\n"
	  "the request in the lease store: once the lease is claimable (expired or released,\n"
	  "as the agents judge it), NODE claims it at once and the other nodes leave it to\n"
	  "NODE for --timeout.  No lag bound applies: NODE may lack WAL that another node\n"
	  "has.  Works while the cluster is paused (the one claim it allows).  Refused when\n"
	  "a live primary exists (use switchover) or NODE is not a live standby of priority\n"
	  "above 0.\n\n"
	  "  --to NODE          the node to promote (required)\n"
	  "  --wait             wait until NODE is primary (exit 0) or the request ends\n"
	  "  --timeout S        how long the others leave the lease to NODE (seconds,\n"
	  "                     default 60)\n" },
	{ "reload", cmd_reload, 0, "",
	  "make this node's agent read its configuration again (SIGHUP)",
	  "Sends SIGHUP to the agent of the local node (node_name from the config file or\n"
	  "PGLEASE_NODE_NAME; its pid is in the alive lock file beside the store).  The agent\n"
	  "reads its file and environment again: with any error it changes nothing and logs\n"
	  "the lines; keys that need a restart are named in one log line and keep their\n"
	  "running values; the others (log_level, priority, the lease timings,\n"
	  "max_lag_on_failover, on_role_change, hook_timeout_ms, pg.* settings that\n"
	  "PostgreSQL reloads) take effect at once, and a 'reloaded' event records it.\n"
	  "Exit 0 once the signal is sent, 1 when no agent of this node runs.\n" },
	{ "health", cmd_health, 0, "",
	  "health check of this node, for a container HEALTHCHECK",
	  "Checks the local node (node_name from the config file or PGLEASE_NODE_NAME):\n"
	  "healthy when its row exists, its heartbeat is younger than 3 lease TTLs (5 s when\n"
	  "unset), and it is either a standby or a primary holding the lease.  Prints one\n"
	  "line and exits 0 when healthy, 1 otherwise.  Reads the whole configuration, so\n"
	  "a configuration error exits 2.\n" },
	{ "store", cmd_store, ARG_SUB, "rebuild",
	  "rebuild a damaged or lost lease store (every agent stopped)",
	  "`pglease store rebuild` replaces a lease store that no agent can use any more\n"
	  "(overwritten, truncated, a term at its limit) or that was lost, so that the\n"
	  "cluster forms again with nothing acknowledged lost.  Run it with every agent\n"
	  "stopped (or waiting, as agents do on a damaged store): it refuses, in one line,\n"
	  "while any agent holds its alive lock, and a store that reads as healthy.\n"
	  "It moves the damaged file aside, never deletes it (PATH, PATH-wal and PATH-shm\n"
	  "become PATH.damaged-STAMP...), and writes a fresh store whose term is above\n"
	  "every term the damaged store (what can still be read of it), the node records\n"
	  "beside it (PATH minus .db, plus .nodes/) and their timelines have seen; nobody\n"
	  "holds it.  The node records are kept: on the fresh store the agents wait for\n"
	  "the nodes they name and elect the most advanced one by its data (timeline, then\n"
	  "WAL position); the others follow it.  Start the agents again afterwards (agents\n"
	  "waiting on the damaged store continue by themselves).  SQLite stores only.\n" },
};

static const struct option long_opts[] = {
	{ "lease-db", required_argument, NULL, 'L' },
	{ "config", required_argument, NULL, 'c' },
	{ "json", no_argument, NULL, 'j' },
	{ "conninfo", no_argument, NULL, 'C' },
	{ "count", required_argument, NULL, 'N' },
	{ "to", required_argument, NULL, 'T' },
	{ "wait", no_argument, NULL, 'W' },
	{ "uri", no_argument, NULL, 'U' },
	{ "timeout", required_argument, NULL, 'O' },
	{ "max-lag", required_argument, NULL, 'M' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* ---- output helpers ---- */

/*
 * A JSON string (NULL prints null).  Invalid UTF-8 becomes U+FFFD; quote and
 * backslash are escaped, and every character pgl_text_unsafe() names (C0,
 * DEL, C1, bidirectional controls, U+2028/U+2029) becomes \uNNNN, so the
 * document is valid JSON, decodes to the stored text, and is safe to show
 * on a terminal as it is.
 */
static void
json_str(FILE *f, const char *s)
{
	if (s == NULL) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	while (*s) {
		uint32_t cp;
		int n = pgl_text_decode(s, &cp);

		if (cp == PGL_TEXT_INVALID)
			fputs("\\ufffd", f);
		else if (cp == '"' || cp == '\\')
			fprintf(f, "\\%c", (char) cp);
		else if (pgl_text_unsafe(cp))
			fprintf(f, "\\u%04x", (unsigned) cp);
		else
			fwrite(s, 1, n, f);
		s += n;
	}
	fputc('"', f);
}

/* A JSON string, or null when s is empty. */
static void
json_text(FILE *f, const char *s)
{
	json_str(f, s && *s ? s : NULL);
}

/* Seconds with 0.1 s precision, or null when unknown (negative). */
static void
json_age(FILE *f, double age_s)
{
	if (age_s < 0)
		fputs("null", f);
	else
		fprintf(f, "%.1f", age_s);
}

/* Rotating buffers of tty(): more than any one output line needs at once. */
#define TTY_SLOTS 8
#define TTY_MAX PGL_TEXT_ESCAPED(PGL_PATH_MAX + 512)

/*
 * s escaped for a terminal by pgl_text_escape() (log.h says how), in one of
 * TTY_SLOTS static buffers: borrowed, valid until TTY_SLOTS more calls.
 * Every text the CLI prints for people that it did not write itself (store
 * rows, paths, config values, arguments) goes through this one function.
 */
static const char *
tty(const char *s)
{
	static char buf[TTY_SLOTS][TTY_MAX];
	static unsigned next;
	char *b = buf[next++ % TTY_SLOTS];

	pgl_text_escape(b, TTY_MAX, s ? s : "");
	return b;
}

/* Copies s escaped for a terminal into dst (len bytes, truncating). */
static void
tty_copy(char *dst, const char *s, size_t len)
{
	pgl_text_escape(dst, len, s);
}

/* "0 B", "512 B", "1.5 kB", "16 kB", "3.2 MB" (powers of 1024, as pg_size_pretty). */
static void
fmt_bytes(int64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "kB", "MB", "GB", "TB", "PB" };
	double v = (double) bytes;
	size_t u = 0;

	if (bytes < 0) {
		snprintf(buf, len, "-");
		return;
	}
	while (v >= 1024 && u + 1 < PGL_ARRAY_LEN(units)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%lld B", (long long) bytes);
	else if (v < 10)
		snprintf(buf, len, "%.1f %s", v, units[u]);
	else
		snprintf(buf, len, "%.0f %s", v, units[u]);
}

static void
fmt_age(double age_s, char *buf, size_t len)
{
	if (age_s < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.1fs ago", age_s);
}

/* ---- usage ---- */

static const struct command *
find_command(const char *name)
{
	for (size_t i = 0; i < PGL_ARRAY_LEN(commands); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void
print_usage(FILE *f)
{
	fprintf(f, "usage: pglease <command> [options]\n\nCommands:\n");
	fprintf(f, "  %-10s  %s\n", "run", "run the agent that owns this node's PostgreSQL "
			"(see pglease run --help)");
	for (size_t i = 0; i < PGL_ARRAY_LEN(commands); i++)
		fprintf(f, "  %-10s  %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "  %-10s  %s\n", "help", "this text; `pglease help COMMAND` for one command");
	fprintf(f,
			"\nEvery command except run takes:\n"
			"  --lease-db PATH    the lease store; default: $PGLEASE_LEASE_DB, else lease_db\n"
			"                     in the config file, else /var/lib/pglease/lease.db\n"
			"  -c, --config FILE  the config file to find lease_db in\n"
			"  -h, --help         help for that command\n"
			"and status, lease, events, primary and watch take --json.\n"
			"\nExit codes: 0 ok, 1 runtime failure, 2 usage or config error, 3 no live primary.\n"
			"pglease --version prints the version.\n");
}

static void
print_command_help(const struct command *cmd)
{
	printf("usage: pglease %s%s%s [--lease-db PATH] [-c FILE]\n\n%s\n", cmd->name,
		   cmd->synopsis[0] ? " " : "", cmd->synopsis, cmd->help);
	printf("  --lease-db PATH    the lease store; default: $PGLEASE_LEASE_DB, else lease_db\n"
		   "                     in the config file, else /var/lib/pglease/lease.db\n"
		   "  -c, --config FILE  read %s from this config file\n"
		   "  -h, --help         show this help and exit\n\n",
		   cmd->fn == cmd_health || cmd->fn == cmd_reload ? "node_name, lease_db and the rest"
		   : "lease_db");
	printf("Exit codes: 0 ok, 1 runtime failure, 2 usage or config error%s.\n",
		   cmd->fn == cmd_primary ? ", 3 no live primary" : "");
}

/* ---- argument parsing ---- */

/* Parses a positive int; false if s is anything else. */
static bool
parse_positive(const char *s, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < 1 || v > INT_MAX)
		return false;
	*out = v;
	return true;
}

/* Records the first argument error; the caller prints it unless --help was given. */
static void
arg_error(char *err, size_t len, const char *cmd, const char *fmt, const char *arg)
{
	char msg[256];

	if (err[0])
		return;
	snprintf(msg, sizeof(msg), fmt, tty(arg));
	snprintf(err, len, "pglease %s: %s", cmd, msg);
}

/*
 * Handles the options only some commands take, with their values: -n,
 * --count, --to, --wait, --timeout, --max-lag.
 */
static void
take_command_option(struct cli *c, int ch, char *err, size_t len)
{
	const char *name = c->cmd->name;

	switch (ch) {
	case 'n':
	case 'N':
		if (!(c->cmd->opts & (ch == 'n' ? OPT_N : OPT_COUNT)))
			arg_error(err, len, name, "unknown option '%s'", ch == 'n' ? "-n" : "--count");
		else if (!parse_positive(optarg, ch == 'n' ? &c->n : &c->count))
			arg_error(err, len, name, ch == 'n' ? "-n: '%s' is not a positive integer"
					  : "--count: '%s' is not a positive integer", optarg);
		break;
	case 'T':
	case 'W':
		if (!(c->cmd->opts & (ch == 'T' ? OPT_TO : OPT_WAIT)))
			arg_error(err, len, name, "unknown option '%s'", ch == 'T' ? "--to" : "--wait");
		else if (ch == 'W')
			c->wait = true;
		else if (!pgl_name_valid(optarg))
			arg_error(err, len, name, "--to: '%s' is not a valid node name ([a-z0-9_-], 1 to "
					  "63 characters)", optarg);
		else
			c->to = optarg;
		break;
	case 'O':
	case 'M':
		if (!(c->cmd->opts & (ch == 'O' ? OPT_WAIT : OPT_MAXLAG)))
			arg_error(err, len, name, "unknown option '%s'", ch == 'O' ? "--timeout"
					  : "--max-lag");
		else if (ch == 'O' ? !parse_positive(optarg, &c->timeout_s) || c->timeout_s > 86400
				 : !parse_positive(optarg, &c->max_lag))
			arg_error(err, len, name, ch == 'O' ? "--timeout: '%s' is not a number of seconds "
					  "from 1 to 86400" : "--max-lag: '%s' is not a positive number of bytes",
					  optarg);
		break;
	}
}

/* Handles one option character from getopt_long. */
static void
take_option(struct cli *c, int ch, char **argv, char *err, size_t len)
{
	const char *name = c->cmd->name, *last = argv[optind - 1];
	char bad[64];

	/* The offending option as typed: "--name" (without "=value") or "-x". */
	if (strncmp(last, "--", 2) == 0)
		snprintf(bad, sizeof(bad), "%.*s", (int) strcspn(last, "="), last);
	else
		snprintf(bad, sizeof(bad), "-%c", optopt);

	switch (ch) {
	case 'h':
		c->help = true;
		break;
	case 'c':
		c->config = optarg;
		break;
	case 'L':
		c->lease_db_arg = optarg;
		if (!*optarg)
			arg_error(err, len, name, "%s: the lease store path must not be empty", "--lease-db");
		break;
	case 'j':
	case 'C':
		if (!(c->cmd->opts & (ch == 'j' ? OPT_JSON : OPT_CONNINFO)))
			arg_error(err, len, name, "unknown option '%s'", bad);
		else if (ch == 'j')
			c->json = true;
		else
			c->conninfo = true;
		break;
	case 'n':
	case 'N':
	case 'T':
	case 'W':
	case 'O':
	case 'M':
		take_command_option(c, ch, err, len);
		break;
	case 'U':
		if (!(c->cmd->opts & OPT_URI))
			arg_error(err, len, name, "unknown option '%s'", "--uri");
		c->uri = true;
		break;
	case ':':
		arg_error(err, len, name, "option '%s' needs a value", bad);
		break;
	default:
		/* A known long option given "=value" reports its val in optopt. */
		arg_error(err, len, name, optopt && strchr(last, '=') && last[1] == '-'
				  ? "option '%s' takes no value" : "unknown option '%s'", bad);
		break;
	}
}

/*
 * Parses argv (argv[0] is the command name) into c.  Returns 0, or
 * PGL_EXIT_USAGE after printing one line on stderr.  --help wins over errors.
 */
static int
parse_args(struct cli *c, int argc, char **argv)
{
	char err[512] = "";
	int ch;

	c->n = DEFAULT_EVENTS;
	c->timeout_s = DEFAULT_SW_TIMEOUT_S;
	c->max_lag = DEFAULT_SW_MAX_LAG;
	opterr = 0;
	optind = 1;
	while ((ch = getopt_long(argc, argv, ":hc:n:", long_opts, NULL)) != -1)
		take_option(c, ch, argv, err, sizeof(err));
	if (c->help)
		return 0;
	if (!err[0] && (c->cmd->opts & (ARG_NODE | ARG_SUB))) {
		if (optind >= argc)
			arg_error(err, sizeof(err), c->cmd->name, "missing %s argument",
					  c->cmd->opts & ARG_SUB ? "subcommand (rebuild)" : "NODE");
		else
			c->node = argv[optind++];
	}
	if (!err[0] && optind < argc)
		arg_error(err, sizeof(err), c->cmd->name, "unexpected argument '%s'", argv[optind]);
	if (!err[0] && c->uri && (c->json || c->conninfo))
		arg_error(err, sizeof(err), c->cmd->name, "%s cannot be combined with --json or "
				  "--conninfo", "--uri");
	if (!err[0] && c->cmd->fn == cmd_failover && c->to == NULL)
		arg_error(err, sizeof(err), c->cmd->name, "%s is required (the node to promote)",
				  "--to NODE");
	if (err[0]) {
		fprintf(stderr, "%s\n", err);
		return PGL_EXIT_USAGE;
	}
	return 0;
}

/* Prints each line of a config error, prefixed. */
static void
print_config_errors(const char *err)
{
	const char *p = err;

	while (*p) {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int) (nl - p) : (int) strlen(p);

		fprintf(stderr, "pglease: %.*s\n", n, p);	/* config.c escaped it */
		p += n + (nl ? 1 : 0);
	}
}

/* --lease-db, else PGLEASE_LEASE_DB, else the config file, else the default. */
static int
resolve_path(struct cli *c)
{
	char err[4096];
	int rc = pgl_config_lease_db(c->config, c->path, sizeof(c->path), err, sizeof(err));

	if (rc < 0) {
		print_config_errors(err);
		return rc == -PGL_ENOMEM ? PGL_EXIT_FAIL : PGL_EXIT_USAGE;
	}
	if (c->lease_db_arg && !pgl_strlcpy(c->path, c->lease_db_arg, sizeof(c->path))) {
		fprintf(stderr, "pglease %s: --lease-db: path too long\n", c->cmd->name);
		return PGL_EXIT_USAGE;
	}
	return 0;
}

/* ---- store access ---- */

/*
 * Opens c->path; on failure prints the store's one-line reason.  The path
 * is checked first without opening it (pgl_store_check_path): an SQLite
 * store or side file that is a FIFO would block the open forever, and watch
 * would then never see SIGTERM.
 */
static int
open_store(struct cli *c, const char *path, int flags, struct pgl_store **st)
{
	char err[PGL_PATH_MAX + 512];
	int rc;

	rc = pgl_store_check_path(path, err, sizeof(err));
	if (rc == 0)
		rc = pgl_store_open(path, flags, st, err, sizeof(err));
	if (rc == 0)
		return 0;
	if (rc == -PGL_ENOENT && c->cmd->fn == cmd_primary)
		fprintf(stderr, "pglease: no lease store at %s\n", tty(path));
	else
		fprintf(stderr, "pglease: %s\n", err[0] ? tty(err) : pgl_strerror(rc));
	/* a store URL that does not parse, or credentials etcd refuses: the input is wrong */
	return rc == -PGL_EINVAL || rc == -PGL_ECONFIG ? PGL_EXIT_USAGE : PGL_EXIT_FAIL;
}

/* Reports a failed read or write of an open store; returns PGL_EXIT_FAIL. */
static int
store_failed(struct pgl_store *st, const char *what, int rc)
{
	fprintf(stderr, "pglease: %s: cannot %s: %s (%s)\n", tty(pgl_store_path(st)), what,
			pgl_strerror(rc), tty(pgl_store_errmsg(st)));
	return PGL_EXIT_FAIL;
}

static int
read_snapshot(struct pgl_store *st, struct snapshot *s)
{
	int rc;

	memset(s, 0, sizeof(*s));
	if ((rc = pgl_store_read_cluster(st, &s->cluster)) < 0 ||
		(rc = pgl_store_read_lease(st, &s->lease)) < 0 ||
		(rc = pgl_store_list_nodes(st, &s->nodes, &s->n_nodes)) < 0)
		return store_failed(st, "read the lease store", rc);
	return 0;
}

static const struct pgl_node *
find_node(const struct snapshot *s, const char *name)
{
	for (int i = 0; i < s->n_nodes; i++)
		if (strcmp(s->nodes[i].name, name) == 0)
			return &s->nodes[i];
	return NULL;
}

/*
 * Bytes node n is behind the holder: the holder's current WAL position (its
 * row's receive_lsn) minus n's replay position.  0 for the holder itself,
 * -1 when unknown.
 */
static int64_t
node_lag(const struct snapshot *s, const struct pgl_node *n)
{
	const struct pgl_node *h = s->lease.holder[0] ? find_node(s, s->lease.holder) : NULL;

	if (h == NULL)
		return -1;
	if (h == n)
		return 0;
	if (!h->receive_lsn[0] || !n->replay_lsn[0])
		return -1;
	return h->receive_lsn_int > n->replay_lsn_int
		? (int64_t) (h->receive_lsn_int - n->replay_lsn_int) : 0;
}

/* ---- status ---- */

/*
 * How status judges a node (docs/cli.md "status").  A node's record says
 * what it last reported; status shows it only while it can still be true:
 *   - its alive lock is free (SQLite store: the lock file beside lease.db,
 *     held by the node's agent, postmaster and backends): nothing of the
 *     node runs, so it is "down" ("stopped" after a clean stop), at once;
 *   - its heartbeat is older than the TTL: "unreachable";
 *   - it reports itself primary but does not hold the lease (or etcd has
 *     expired its lease): "stale primary".  Only the holder of the current
 *     term is ever shown as primary.
 */
enum alive { ALIVE_UNKNOWN = 0, ALIVE_HELD, ALIVE_FREE };

struct node_view {
	const char *role;			/* as shown: the reported role, or "" (none vouched for) */
	const char *state;			/* as shown */
	char table_role[2];			/* the table's Role for role "": "-" (down) or "?" */
	enum alive lock;
	bool reachable;
	bool live;					/* what it reports is shown (its progress too) */
};

/* Where the nodes' alive locks are: "alive" beside an SQLite store; none for etcd. */
static void
snapshot_locks(struct pgl_store *st, struct snapshot *s)
{
	const char *path = pgl_store_path(st);
	struct pgl_config *cfg;

	s->alive_dir[0] = '\0';
	if (path == NULL || pgl_store_is_url(path) || (cfg = calloc(1, sizeof(*cfg))) == NULL)
		return;
	/* The agents' own rule (pgl_config_alive_dir), from the same store path. */
	if (pgl_strlcpy(cfg->lease_db, path, sizeof(cfg->lease_db)))
		pgl_config_alive_dir(cfg, s->alive_dir, sizeof(s->alive_dir));
	free(cfg);
}

/*
 * Tests node's alive lock without disturbing it.  Agents hold it with
 * flock(LOCK_EX) (agent.c take_alive_lock): a shared flock() that does not
 * wait either fails at once (held) or is taken and dropped at once (free).
 * A flock() on a descriptor of our own never touches a lock another open
 * file holds, so no agent can lose its lock to this probe (a POSIX fcntl()
 * lock could: closing any descriptor drops a process's POSIX locks, and the
 * HTTP thread runs inside an agent).  An agent starting during the instant
 * the probe holds the file retries (take_alive_lock); an observer's watch
 * waits on the lock and gets it a moment later.  The file is opened as the
 * agents open others' locks: no symlink, nothing that blocks, a regular
 * file, never created.
 */
static enum alive
alive_lock_state(const struct snapshot *s, const char *node)
{
	char file[PGL_NAME_MAX + 8];
	enum alive a = ALIVE_UNKNOWN;
	struct stat sb;
	int dfd, fd;

	if (s->alive_dir[0] == '\0' || !pgl_name_valid(node))
		return ALIVE_UNKNOWN;
	snprintf(file, sizeof(file), "%s.lock", node);
	if ((dfd = open(s->alive_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return ALIVE_UNKNOWN;
	fd = openat(dfd, file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	close(dfd);
	if (fd < 0)
		return ALIVE_UNKNOWN;	/* no lock file (yet): the heartbeat decides */
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
		if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
			flock(fd, LOCK_UN);
			a = ALIVE_FREE;
		} else if (errno == EWOULDBLOCK)
			a = ALIVE_HELD;
	}
	close(fd);
	return a;
}

/* True when n holds the lease status vouches for (etcd: not expired there). */
static bool
holds_live_lease(const struct snapshot *s, const struct pgl_node *n)
{
	return s->lease.holder[0] && strcmp(n->name, s->lease.holder) == 0 &&
		!(s->lease.store_expires && s->lease.holder_expired);
}

/* Judges node n of snapshot s (the rules above) into v. */
static void
judge_node(const struct snapshot *s, const struct pgl_node *n, struct node_view *v)
{
	memset(v, 0, sizeof(*v));
	v->lock = alive_lock_state(s, n->name);
	v->reachable = pgl_decide_node_reachable(&s->lease, n);
	v->role = "";
	strcpy(v->table_role, "?");
	if (v->lock == ALIVE_FREE) {
		strcpy(v->table_role, "-");
		v->state = strcmp(n->state, "stopped") == 0 ? "stopped" : "down";
	} else if (!v->reachable)
		v->state = "unreachable";
	else if (strcmp(n->role, "primary") == 0 && !holds_live_lease(s, n))
		v->state = "stale primary";
	else {
		v->role = n->role;
		v->state = n->state;
		v->live = true;
	}
}

/* The figures of a copy under way, for people and for JSON; false when none is shown. */
struct copy_view {
	const char *verb;			/* "cloning", "rewinding" */
	int64_t done, total;		/* bytes; total 0 when not known */
	int percent;				/* -1 when not known */
	double elapsed_s, eta_s;	/* eta_s -1 when not known */
};

/*
 * The copy progress of a live node, as of now: the tool's figures from the
 * record, its elapsed time moved on by the record's age, and the time left
 * at the rate so far.
 */
static bool
copy_view(const struct pgl_node *n, const struct node_view *v, struct copy_view *c)
{
	const struct pgl_progress *p = &n->progress;
	double age = n->age_s > 0 ? n->age_s : 0, el = (double) p->elapsed_ms / 1000.0;

	if (!v->live || p->op == PGL_PROGRESS_NONE)
		return false;
	c->verb = p->op == PGL_PROGRESS_CLONE ? "cloning" : "rewinding";
	c->done = p->done_kb * 1024;
	c->total = p->total_kb * 1024;
	c->percent = p->total_kb > 0 ? (int) (100 * p->done_kb / p->total_kb) : -1;
	c->elapsed_s = el + age;
	c->eta_s = -1;
	if (p->total_kb > 0 && p->done_kb > 0 && el > 0) {
		c->eta_s = el * (double) (p->total_kb - p->done_kb) / (double) p->done_kb - age;
		c->eta_s = c->eta_s < 0 ? 0 : c->eta_s;
	}
	return true;
}

static void
print_lease_json(FILE *f, const struct pgl_lease *l)
{
	fputs("{\"holder\":", f);
	json_text(f, l->holder);
	fprintf(f, ",\"term\":%lld,\"renewals\":%lld,\"ttl_ms\":%lld,\"acquired_at\":",
			(long long) l->term, (long long) l->renewals, (long long) l->ttl_ms);
	json_text(f, l->acquired_at);
	fputs(",\"renewed_at\":", f);
	json_text(f, l->renewed_at);
	fputs(",\"renewed_age_s\":", f);
	json_age(f, l->renewed_age_s);
	fputs(",\"released_lsn\":", f);
	json_text(f, l->has_released_lsn ? l->released_lsn : "");
	fprintf(f, ",\"holder_expired\":%s", l->holder_expired ? "true" : "false");
	fputc('}', f);
}

/* ,"host":...,"port":... from the node's conninfo (null when it has none). */
static void
print_address_json(FILE *f, const struct pgl_node *n)
{
	char host[256] = "";
	int port = 0;

	if (n->conninfo[0])
		pgl_conninfo_host_port(n->conninfo, host, sizeof(host), &port);
	fputs(",\"host\":", f);
	json_text(f, host);
	if (port > 0)
		fprintf(f, ",\"port\":%d", port);
	else
		fputs(",\"port\":null", f);
}

/* ,"alive_lock":...,"progress":... (null when not known, or no copy under way). */
static void
print_liveness_json(FILE *f, const struct pgl_node *n, const struct node_view *v)
{
	static const char *const locks[] = { [ALIVE_HELD] = "held", [ALIVE_FREE] = "free" };
	struct copy_view c;

	fputs(",\"alive_lock\":", f);
	json_str(f, v->lock == ALIVE_UNKNOWN ? NULL : locks[v->lock]);
	fputs(",\"progress\":", f);
	if (!copy_view(n, v, &c)) {
		fputs("null", f);
		return;
	}
	fputs("{\"operation\":", f);
	json_str(f, pgl_progress_op_name(n->progress.op));
	fprintf(f, ",\"done_bytes\":%lld,\"total_bytes\":", (long long) c.done);
	if (c.total > 0)
		fprintf(f, "%lld,\"percent\":%d", (long long) c.total, c.percent);
	else
		fputs("null,\"percent\":null", f);
	fprintf(f, ",\"elapsed_s\":%.1f,\"eta_s\":", c.elapsed_s);
	json_age(f, c.eta_s);
	fputc('}', f);
}

static void
print_node_json(FILE *f, const struct snapshot *s, const struct pgl_node *n)
{
	int64_t lag = node_lag(s, n);
	struct node_view v;

	judge_node(s, n, &v);
	fputs("{\"name\":", f);
	json_str(f, n->name);
	fputs(",\"role\":", f);
	json_text(f, v.role);
	fputs(",\"state\":", f);
	json_text(f, v.state);
	fputs(",\"reported_role\":", f);
	json_text(f, n->role);
	fputs(",\"reported_state\":", f);
	json_text(f, n->state);
	fputs(",\"upstream\":", f);
	json_text(f, n->upstream);
	fputs(",\"timeline\":", f);
	if (n->timeline > 0)
		fprintf(f, "%lld", (long long) n->timeline);
	else
		fputs("null", f);
	fputs(",\"receive_lsn\":", f);
	json_text(f, n->receive_lsn);
	fputs(",\"replay_lsn\":", f);
	json_text(f, n->replay_lsn);
	if (lag >= 0)
		fprintf(f, ",\"lag_bytes\":%lld", (long long) lag);
	else
		fputs(",\"lag_bytes\":null", f);
	fputs(",\"heartbeat_age_s\":", f);
	json_age(f, n->age_s);
	fprintf(f, ",\"priority\":%lld,\"holds_lease\":%s,\"reachable\":%s",
			(long long) n->priority, strcmp(n->name, s->lease.holder) == 0 ? "true" : "false",
			v.reachable ? "true" : "false");
	print_liveness_json(f, n, &v);
	print_address_json(f, n);
	fputc('}', f);
}

static void
print_status_json(FILE *f, const struct snapshot *s)
{
	fputs("{\"cluster\":{\"name\":", f);
	json_str(f, s->cluster.name);
	fputs(",\"system_identifier\":", f);
	json_text(f, s->cluster.system_identifier);
	fprintf(f, ",\"paused\":%s},\"lease\":", s->cluster.paused ? "true" : "false");
	print_lease_json(f, &s->lease);
	fputs(",\"nodes\":[", f);
	for (int i = 0; i < s->n_nodes; i++) {
		if (i)
			fputc(',', f);
		print_node_json(f, s, &s->nodes[i]);
	}
	fputs("]}\n", f);
}

int
pgl_cli_status_json(struct pgl_store *st, FILE *f)
{
	struct snapshot s;
	int rc;

	memset(&s, 0, sizeof(s));
	if ((rc = pgl_store_read_cluster(st, &s.cluster)) == 0 &&
		(rc = pgl_store_read_lease(st, &s.lease)) == 0 &&
		(rc = pgl_store_list_nodes(st, &s.nodes, &s.n_nodes)) == 0) {
		snapshot_locks(st, &s);
		print_status_json(f, &s);
	}
	free(s.nodes);
	return rc;
}

/* "lease: n1 term 3 (renewed 0.4s ago)" or "lease: none (term 3)". */
static void
format_lease(const struct pgl_lease *l, char *buf, size_t len)
{
	char lsn[PGL_TEXT_ESCAPED(PGL_LSN_TEXT_MAX) + 32] = "";

	if (l->has_released_lsn)
		snprintf(lsn, sizeof(lsn), ", released at %s", tty(l->released_lsn));
	if (!l->holder[0])
		snprintf(buf, len, "lease: none (term %lld%s)", (long long) l->term, lsn);
	else if (l->store_expires)
		snprintf(buf, len, "lease: %s term %lld (%s in etcd)", tty(l->holder),
				 (long long) l->term, l->holder_expired ? "expired" : "live");
	else if (l->renewed_age_s < 0)
		snprintf(buf, len, "lease: %s term %lld (never renewed)", tty(l->holder),
				 (long long) l->term);
	else
		snprintf(buf, len, "lease: %s term %lld (renewed %.1fs ago)", tty(l->holder),
				 (long long) l->term, l->renewed_age_s);
}

#define NCOLS 8
#define CELL_MAX PGL_TEXT_ESCAPED(PGL_NAME_MAX)
struct row {
	char cell[NCOLS][CELL_MAX];
};

/* One row of the status table: node n as judge_node() shows it. */
static void
fill_row(const struct snapshot *s, const struct pgl_node *n, struct row *r)
{
	struct node_view v;
	struct copy_view c;

	judge_node(s, n, &v);
	tty_copy(r->cell[0], n->name, CELL_MAX);
	/* What it last said is shown only while it can still be true (judge_node). */
	tty_copy(r->cell[1], !v.role[0] ? v.table_role : v.role, CELL_MAX);
	if (copy_view(n, &v, &c) && c.percent >= 0)
		snprintf(r->cell[2], CELL_MAX, "%s %d%%", c.verb, c.percent);
	else
		tty_copy(r->cell[2], v.state[0] ? v.state : "-", CELL_MAX);
	tty_copy(r->cell[3], n->upstream[0] ? n->upstream : "-", CELL_MAX);
	if (n->timeline > 0)
		snprintf(r->cell[4], CELL_MAX, "%lld", (long long) n->timeline);
	else
		strcpy(r->cell[4], "-");
	fmt_bytes(node_lag(s, n), r->cell[5], CELL_MAX);
	fmt_age(n->age_s, r->cell[6], CELL_MAX);
	strcpy(r->cell[7], strcmp(n->name, s->lease.holder) == 0 ? "*" : "");
}

/*
 * Below the table, one line per copy under way:
 * "pg3: cloning, 540 MB of 1.2 GB (45%), 6.0s so far, about 7s left".
 */
static void
print_progress_lines(const struct snapshot *s)
{
	bool first = true;

	for (int i = 0; i < s->n_nodes; i++) {
		const struct pgl_node *n = &s->nodes[i];
		char done[32], total[32], left[48] = "";
		struct node_view v;
		struct copy_view c;

		judge_node(s, n, &v);
		if (!copy_view(n, &v, &c))
			continue;
		fmt_bytes(c.done, done, sizeof(done));
		fmt_bytes(c.total, total, sizeof(total));
		if (c.eta_s >= 0)
			snprintf(left, sizeof(left), ", about %.0fs left", c.eta_s);
		if (first)
			fputc('\n', stdout);
		first = false;
		if (c.total > 0)
			printf("%s: %s, %s of %s (%d%%), %.1fs so far%s\n", tty(n->name), c.verb, done,
				   total, c.percent, c.elapsed_s, left);
		else
			printf("%s: %s, %s so far, %.1fs\n", tty(n->name), c.verb, done, c.elapsed_s);
	}
}

static void
print_rows(const struct row *rows, int n)
{
	static const char dashes[] = "------------------------------------------------------------------";
	int w[NCOLS] = { 0 };

	for (int i = 0; i < n; i++)
		for (int j = 0; j < NCOLS; j++)
			if ((int) strlen(rows[i].cell[j]) > w[j])
				w[j] = (int) strlen(rows[i].cell[j]);
	for (int i = 0; i < n; i++) {
		for (int j = 0; j < NCOLS - 1; j++)
			printf(" %-*s |", w[j], rows[i].cell[j]);
		if (rows[i].cell[NCOLS - 1][0])
			printf(" %s", rows[i].cell[NCOLS - 1]);
		fputc('\n', stdout);
		if (i > 0)
			continue;
		for (int j = 0; j < NCOLS; j++)
			printf("%s%.*s", j ? "+" : "", w[j] + 2, dashes);
		fputc('\n', stdout);
	}
}

/* The status table for people; 0, or PGL_EXIT_FAIL (reported) when out of memory. */
static int
print_status_table(const struct snapshot *s)
{
	static const struct row header = { { "Name", "Role", "State", "Upstream", "Timeline",
										 "Lag", "Heartbeat", "Lease" } };
	char lease[TTY_MAX];
	struct row *rows = calloc(s->n_nodes + 1, sizeof(*rows));

	if (rows == NULL) {
		fprintf(stderr, "pglease: status: %s\n", pgl_strerror(-PGL_ENOMEM));
		return PGL_EXIT_FAIL;
	}
	format_lease(&s->lease, lease, sizeof(lease));
	printf("Cluster %s  %s%s\n\n", tty(s->cluster.name), lease, s->cluster.paused ? "  PAUSED" : "");
	rows[0] = header;
	for (int i = 0; i < s->n_nodes; i++)
		fill_row(s, &s->nodes[i], &rows[i + 1]);
	if (s->n_nodes == 0)
		printf("(no nodes)\n");
	else
		print_rows(rows, s->n_nodes + 1);
	print_progress_lines(s);
	free(rows);
	return 0;
}

static int
cmd_status(struct cli *c)
{
	struct pgl_store *st = NULL;
	struct snapshot s = { 0 };
	int rc;

	if ((rc = open_store(c, c->path, PGL_STORE_RDONLY, &st)) != 0)
		goto out;
	if ((rc = read_snapshot(st, &s)) != 0)
		goto out;
	snapshot_locks(st, &s);
	if (c->json)
		print_status_json(stdout, &s);
	else
		rc = print_status_table(&s);
out:
	free(s.nodes);
	pgl_store_close(st);
	return rc;
}

/* ---- lease ---- */

static int
cmd_lease(struct cli *c)
{
	struct pgl_store *st = NULL;
	struct pgl_lease l;
	char renewed[64];
	int rc;

	if ((rc = open_store(c, c->path, PGL_STORE_RDONLY, &st)) != 0)
		goto out;
	if ((rc = pgl_store_read_lease(st, &l)) < 0) {
		rc = store_failed(st, "read the lease", rc);
		goto out;
	}
	if (c->json) {
		print_lease_json(stdout, &l);
		fputc('\n', stdout);
		goto out;
	}
	fmt_age(l.renewed_age_s, renewed, sizeof(renewed));
	printf("holder        %s\n", l.holder[0] ? tty(l.holder) : "none");
	printf("term          %lld\n", (long long) l.term);
	printf("renewals      %lld\n", (long long) l.renewals);
	printf("ttl_ms        %lld\n", (long long) l.ttl_ms);
	printf("acquired_at   %s\n", l.acquired_at[0] ? tty(l.acquired_at) : "-");
	printf("renewed_at    %s%s%s%s\n", l.renewed_at[0] ? tty(l.renewed_at) : "-",
		   l.renewed_age_s >= 0 ? " (" : "", l.renewed_age_s >= 0 ? renewed : "",
		   l.renewed_age_s >= 0 ? ")" : "");
	printf("released_lsn  %s\n", l.has_released_lsn ? tty(l.released_lsn) : "-");
	if (l.store_expires)
		printf("in etcd       %s\n", !l.holder[0] ? "-" : l.holder_expired
			   ? "expired (the holder's leader key is gone; claimable)"
			   : "live (the holder's leader key exists)");
out:
	pgl_store_close(st);
	return rc;
}

/* ---- events ---- */

static void
print_event_json(FILE *f, const struct pgl_event *e)
{
	fprintf(f, "{\"id\":%lld,\"at\":", (long long) e->id);
	json_text(f, e->at);
	fprintf(f, ",\"term\":%lld,\"node\":", (long long) e->term);
	json_text(f, e->node);
	fputs(",\"kind\":", f);
	json_str(f, e->kind);
	fputs(",\"detail\":", f);
	json_text(f, e->detail);
	fputc('}', f);
}

/*
 * "at  term N  node  kind  detail", node and kind padded to the given widths;
 * tag ("" or "event: ") goes after the time.
 */
static void
print_event_line(const struct pgl_event *e, int wnode, int wkind, const char *tag)
{
	const char *node = tty(e->node[0] ? e->node : "-"), *kind = tty(e->kind);

	if (e->detail[0])
		printf("%s  %sterm %lld  %-*s  %-*s  %s\n", tty(e->at), tag, (long long) e->term,
			   wnode, node, wkind, kind, tty(e->detail));
	else
		printf("%s  %sterm %lld  %-*s  %s\n", tty(e->at), tag, (long long) e->term, wnode,
			   node, kind);
}

static int
cmd_events(struct cli *c)
{
	struct pgl_store *st = NULL;
	struct pgl_event *ev = NULL;
	int n = 0, rc, wnode = 1, wkind = 1;

	if ((rc = open_store(c, c->path, PGL_STORE_RDONLY, &st)) != 0)
		goto out;
	if ((rc = pgl_store_list_events(st, (int) c->n, &ev, &n)) < 0) {
		rc = store_failed(st, "read the events", rc);
		goto out;
	}
	if (c->json) {
		fputc('[', stdout);
		for (int i = 0; i < n; i++) {
			if (i)
				fputc(',', stdout);
			print_event_json(stdout, &ev[i]);
		}
		fputs("]\n", stdout);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		int ln = ev[i].node[0] ? (int) strlen(tty(ev[i].node)) : 1;
		int lk = (int) strlen(tty(ev[i].kind));

		wnode = ln > wnode ? ln : wnode;
		wkind = lk > wkind ? lk : wkind;
	}
	for (int i = 0; i < n; i++)
		print_event_line(&ev[i], wnode, wkind, "");
out:
	free(ev);
	pgl_store_close(st);
	return rc;
}

/* ---- primary ---- */

static void
print_primary_json(bool live, const struct pgl_lease *l, const struct pgl_node *h)
{
	fputs("{\"primary\":", stdout);
	json_str(stdout, live ? l->holder : NULL);
	fputs(",\"conninfo\":", stdout);
	json_text(stdout, live ? h->conninfo : NULL);
	printf(",\"term\":%lld}\n", (long long) l->term);
}

/*
 * primary --uri: postgresql://HOST:PORT,.../postgres?target_session_attrs=
 * read-write from every node's record (names are host names or addresses:
 * nothing to escape but an IPv6 address's brackets).
 */
static int
print_uri(struct cli *c)
{
	struct pgl_store *st = NULL;
	struct pgl_node *nodes = NULL;
	int n = 0, rc, shown = 0;

	if ((rc = open_store(c, c->path, PGL_STORE_RDONLY, &st)) != 0)
		return rc;
	if ((rc = pgl_store_list_nodes(st, &nodes, &n)) < 0) {
		rc = store_failed(st, "read the node records", rc);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		char host[256] = "";
		int port = 0;
		bool v6;

		if (!nodes[i].conninfo[0] ||
			pgl_conninfo_host_port(nodes[i].conninfo, host, sizeof(host), &port) < 0 ||
			!host[0] || port <= 0)
			continue;
		v6 = strchr(host, ':') != NULL;
		printf("%s%s%s%s:%d", shown ? "," : "postgresql://", v6 ? "[" : "", tty(host),
			   v6 ? "]" : "", port);
		shown++;
	}
	if (shown)
		printf("/postgres?target_session_attrs=read-write\n");
	else
		fprintf(stderr, "pglease: no node has reported an address yet\n");
	rc = shown ? PGL_EXIT_OK : PGL_EXIT_FAIL;
out:
	free(nodes);
	pgl_store_close(st);
	return rc;
}

static int
cmd_primary(struct cli *c)
{
	struct pgl_store *st = NULL;
	struct pgl_lease l;
	struct pgl_node h = { 0 };
	char why[TTY_MAX];
	bool live, have_row = false;
	int rc;

	if (c->uri)
		return print_uri(c);
	if ((rc = open_store(c, c->path, PGL_STORE_RDONLY, &st)) != 0)
		goto out;
	if ((rc = pgl_store_read_lease(st, &l)) < 0) {
		rc = store_failed(st, "read the lease", rc);
		goto out;
	}
	if (l.holder[0]) {
		rc = pgl_store_get_node(st, l.holder, &h);
		if (rc < 0 && rc != -PGL_ENOENT) {
			rc = store_failed(st, "read the holder's node row", rc);
			goto out;
		}
		have_row = rc == 0;
	}
	live = pgl_decide_primary_live(&l, have_row ? &h : NULL, why, sizeof(why));
	if (live && c->conninfo && !c->json && !h.conninfo[0]) {
		fprintf(stderr, "pglease: primary %s has no conninfo recorded\n", tty(l.holder));
		rc = PGL_EXIT_FAIL;
		goto out;
	}
	if (c->json)
		print_primary_json(live, &l, &h);
	else if (live)
		printf("%s\n", tty(c->conninfo ? h.conninfo : l.holder));
	if (!live)
		fprintf(stderr, "pglease: no live primary: %s\n", why);
	rc = live ? PGL_EXIT_OK : PGL_EXIT_NOPRIMARY;
out:
	pgl_store_close(st);
	return rc;
}

/* ---- watch ---- */

/* Wait slices: short enough that SIGINT/SIGTERM stop watch promptly. */
#define WATCH_SLICE_MS 200
/*
 * inotify reports the write of the WAL frames, which comes before the commit
 * is published in the -shm index (written through mmap, so never reported).
 * A wake-up that finds no new data_version is therefore re-checked a few
 * times, RECHECK_MS apart, so a commit is printed within ~100 ms.
 */
#define WATCH_RECHECK_MS 20
#define WATCH_RECHECKS 5

static volatile sig_atomic_t watch_stop;

static void
on_stop_signal(int sig)
{
	(void) sig;
	watch_stop = 1;
}

struct watcher {
	struct cli *c;
	struct pgl_store *st;
	struct pgl_lease lease;
	struct pgl_node *nodes;
	int n_nodes;
	int64_t last_event;
	int64_t data_version;
	long printed;				/* change lines so far */
};

/* Counts one printed change line; true once --count is reached. */
static bool
counted(struct watcher *w)
{
	fflush(stdout);
	return w->c->count > 0 && ++w->printed >= w->c->count;
}

static void
emit_lease(struct watcher *w)
{
	char now[PGL_TS_MAX], text[TTY_MAX];

	pgl_wall_iso(now, sizeof(now));
	if (w->c->json) {
		fputs("{\"type\":\"lease\",\"at\":", stdout);
		json_str(stdout, now);
		fputs(",\"lease\":", stdout);
		print_lease_json(stdout, &w->lease);
		fputs("}\n", stdout);
		return;
	}
	format_lease(&w->lease, text, sizeof(text));
	printf("%s  %s\n", now, text);
}

static bool
emit_event(struct watcher *w, const struct pgl_event *e)
{
	if (w->c->json) {
		fputs("{\"type\":\"event\",\"event\":", stdout);
		print_event_json(stdout, e);
		fputs("}\n", stdout);
	} else
		print_event_line(e, 1, 1, "event: ");
	return counted(w);
}

/* change is "added" (old NULL), "removed" (cur NULL) or "changed". */
static bool
emit_node(struct watcher *w, const char *change, const struct pgl_node *old,
		  const struct pgl_node *cur)
{
	const struct pgl_node *n = cur ? cur : old;
	char now[PGL_TS_MAX];

	pgl_wall_iso(now, sizeof(now));
	if (w->c->json) {
		printf("{\"type\":\"node\",\"at\":\"%s\",\"change\":\"%s\",\"name\":", now, change);
		json_str(stdout, n->name);
		fputs(",\"role\":", stdout);
		json_text(stdout, cur ? cur->role : NULL);
		fputs(",\"state\":", stdout);
		json_text(stdout, cur ? cur->state : NULL);
		fputs(",\"previous_role\":", stdout);
		json_text(stdout, old ? old->role : NULL);
		fputs(",\"previous_state\":", stdout);
		json_text(stdout, old ? old->state : NULL);
		fputs("}\n", stdout);
	} else if (old == NULL)
		printf("%s  node: %s added as %s/%s\n", now, tty(n->name), tty(n->role),
			   tty(n->state[0] ? n->state : "-"));
	else if (cur == NULL)
		printf("%s  node: %s removed\n", now, tty(n->name));
	else
		printf("%s  node: %s %s/%s -> %s/%s\n", now, tty(n->name), tty(old->role),
			   tty(old->state[0] ? old->state : "-"), tty(cur->role),
			   tty(cur->state[0] ? cur->state : "-"));
	return counted(w);
}

/* Prints node rows added, removed or changed in role or state; true when done. */
static int
watch_nodes(struct watcher *w, bool *done)
{
	struct pgl_node *nn = NULL, *old = w->nodes;
	int n = 0, i = 0, j = 0, rc;

	if ((rc = pgl_store_list_nodes(w->st, &nn, &n)) < 0)
		return store_failed(w->st, "read the nodes", rc);
	while (!*done && (i < w->n_nodes || j < n)) {
		int cmp = i == w->n_nodes ? 1 : j == n ? -1 : strcmp(old[i].name, nn[j].name);

		if (cmp < 0)
			*done = emit_node(w, "removed", &old[i++], NULL);
		else if (cmp > 0)
			*done = emit_node(w, "added", NULL, &nn[j++]);
		else {
			if (strcmp(old[i].role, nn[j].role) != 0 || strcmp(old[i].state, nn[j].state) != 0)
				*done = emit_node(w, "changed", &old[i], &nn[j]);
			i++;
			j++;
		}
	}
	free(old);
	w->nodes = nn;
	w->n_nodes = n;
	return 0;
}

/* True when the lease changed in a way watch reports (not a mere renewal). */
static bool
lease_moved(const struct pgl_lease *a, const struct pgl_lease *b)
{
	return strcmp(a->holder, b->holder) != 0 || a->term != b->term ||
		a->has_released_lsn != b->has_released_lsn ||
		strcmp(a->released_lsn, b->released_lsn) != 0;
}

/*
 * Re-reads the store if another connection committed since the last look
 * and prints what changed.  Sets *changed when data_version moved and *done
 * when --count is reached.  Returns 0 or PGL_EXIT_FAIL.
 */
static int
watch_check(struct watcher *w, bool *changed, bool *done)
{
	struct pgl_lease l;
	struct pgl_event *ev = NULL;
	int64_t dv;
	int n = 0, rc;

	if ((rc = pgl_store_data_version(w->st, &dv)) < 0)
		return store_failed(w->st, "read the lease store", rc);
	*changed = dv != w->data_version;
	if (!*changed)
		return 0;
	w->data_version = dv;
	if ((rc = pgl_store_read_lease(w->st, &l)) < 0 ||
		(rc = pgl_store_events_after(w->st, w->last_event, &ev, &n)) < 0)
		return store_failed(w->st, "read the lease store", rc);
	if (lease_moved(&w->lease, &l)) {
		w->lease = l;
		emit_lease(w);
		*done = counted(w);
	}
	w->lease = l;
	for (int i = 0; i < n && !*done; i++) {
		w->last_event = ev[i].id;
		*done = emit_event(w, &ev[i]);
	}
	free(ev);
	return *done ? 0 : watch_nodes(w, done);
}

/* Reads the starting point: lease (printed), newest event id, node rows. */
static int
watch_start(struct watcher *w)
{
	struct pgl_event *ev = NULL;
	int n = 0, rc;

	if ((rc = pgl_store_data_version(w->st, &w->data_version)) < 0 ||
		(rc = pgl_store_read_lease(w->st, &w->lease)) < 0 ||
		(rc = pgl_store_list_events(w->st, 1, &ev, &n)) < 0 ||
		(rc = pgl_store_list_nodes(w->st, &w->nodes, &w->n_nodes)) < 0) {
		free(ev);
		return store_failed(w->st, "read the lease store", rc);
	}
	w->last_event = n > 0 ? ev[0].id : 0;
	free(ev);
	emit_lease(w);
	fflush(stdout);
	return 0;
}

static int
watch_loop(struct watcher *w, struct pgl_watch *pw)
{
	int64_t next_read = pgl_mono_ms() + WATCH_FALLBACK_MS;
	int rechecks = 0, rc;
	bool changed = false, done = false;

	while (!watch_stop && !done) {
		int r = pgl_watch_wait(pw, rechecks > 0 ? WATCH_RECHECK_MS : WATCH_SLICE_MS);

		if (r < 0) {
			fprintf(stderr, "pglease: watching %s: %s\n", tty(w->c->path), pgl_strerror(r));
			return PGL_EXIT_FAIL;
		}
		if (r == 0 && rechecks == 0 && pgl_mono_ms() < next_read)
			continue;
		if ((rc = watch_check(w, &changed, &done)) != 0)
			return rc;
		next_read = pgl_mono_ms() + WATCH_FALLBACK_MS;
		if (changed)
			rechecks = 0;
		else if (r == 1)
			rechecks = WATCH_RECHECKS;
		else if (rechecks > 0)
			rechecks--;
	}
	return PGL_EXIT_OK;
}

static int
cmd_watch(struct cli *c)
{
	struct watcher w = { .c = c };
	struct pgl_watch *pw = NULL;
	struct sigaction sa = { .sa_handler = on_stop_signal };
	int rc;

	/* No SA_RESTART: the signal cuts the current wait short. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if ((rc = open_store(c, c->path, PGL_STORE_RDONLY, &w.st)) != 0)
		goto out;
	if (pgl_store_watch_open(w.st, &pw) < 0) {
		fprintf(stderr, "pglease: %s: cannot watch the lease store's directory: %s\n",
				tty(c->path), strerror(errno));
		rc = PGL_EXIT_FAIL;
		goto out;
	}
	if ((rc = watch_start(&w)) == 0)
		rc = watch_loop(&w, pw);
out:
	free(w.nodes);
	pgl_watch_close(pw);
	pgl_store_close(w.st);
	return rc;
}

/* ---- remove, pause, resume ---- */

static int
cmd_remove(struct cli *c)
{
	struct pgl_store *st = NULL;
	struct pgl_lease l;
	int rc;

	if (!pgl_name_valid(c->node)) {
		fprintf(stderr, "pglease remove: '%s' is not a valid node name "
				"([a-z0-9_-], 1 to 63 characters)\n", tty(c->node));
		return PGL_EXIT_USAGE;
	}
	if ((rc = open_store(c, c->path, PGL_STORE_RDWR, &st)) != 0)
		goto out;
	if ((rc = pgl_store_read_lease(st, &l)) < 0) {
		rc = store_failed(st, "read the lease", rc);
		goto out;
	}
	if (strcmp(l.holder, c->node) == 0) {
		fprintf(stderr, "pglease: %s holds the lease at term %lld; stop it or switch over "
				"first\n", c->node, (long long) l.term);
		rc = PGL_EXIT_FAIL;
		goto out;
	}
	rc = pgl_store_remove_node(st, c->node, l.term);
	if (rc == -PGL_ENOENT) {
		fprintf(stderr, "pglease: no such node: %s\n", c->node);
		rc = PGL_EXIT_FAIL;
	} else if (rc < 0)
		rc = store_failed(st, "remove the node", rc);
	else
		printf("removed %s\n", c->node);
out:
	pgl_store_close(st);
	return rc;
}

static int
set_paused(struct cli *c, bool paused)
{
	struct pgl_store *st = NULL;
	struct pgl_cluster cl;
	int rc;

	if ((rc = open_store(c, c->path, PGL_STORE_RDWR, &st)) != 0)
		goto out;
	if ((rc = pgl_store_set_paused(st, paused, NULL)) < 0 ||
		(rc = pgl_store_read_cluster(st, &cl)) < 0) {
		rc = store_failed(st, paused ? "pause the cluster" : "resume the cluster", rc);
		goto out;
	}
	printf(cl.paused ? "cluster %s paused: no automatic failover until `pglease resume`\n"
		   : "cluster %s resumed: automatic failover is on\n", tty(cl.name));
out:
	pgl_store_close(st);
	return rc;
}

static int
cmd_pause(struct cli *c)
{
	return set_paused(c, true);
}

static int
cmd_resume(struct cli *c)
{
	return set_paused(c, false);
}

/* ---- switchover, failover ---- */

/* "user@host pid N": who asked, for the events. */
static void
requester(char *buf, size_t len)
{
	struct passwd *pw = getpwuid(geteuid());
	char host[256] = "";

	if (gethostname(host, sizeof(host) - 1) != 0)
		pgl_strlcpy(host, "?", sizeof(host));
	snprintf(buf, len, "%s@%s pid %d", pw ? pw->pw_name : "?", host, (int) getpid());
}

/* The CLI's liveness of a node: a heartbeat within two lease TTLs by the wall clock. */
static bool
cli_live(const struct pgl_node *n, const void *ctx)
{
	const struct pgl_lease *l = ctx;
	double ttl_s = l->ttl_ms > 0 ? l->ttl_ms / 1000.0 : 5.0;

	return n->age_s >= 0 && n->age_s <= 2 * ttl_s;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/*
 * --wait: polls the store until request seq is done (the target is primary)
 * or failed, or until its timeout plus 30 s passed.
 */
static int
wait_switchover(struct pgl_store *st, const char *what, int64_t seq, long timeout_s)
{
	int64_t t0 = pgl_mono_ms(), until = t0 + (timeout_s + 30) * 1000;
	struct pgl_switchover w = { 0 };
	int rc;

	while (pgl_mono_ms() < until) {
		if ((rc = pgl_store_read_switchover(st, &w)) < 0)
			return store_failed(st, "read the switchover row", rc);
		if (w.seq != seq) {
			fprintf(stderr, "pglease: %s %lld was replaced by request %lld\n", what,
					(long long) seq, (long long) w.seq);
			return PGL_EXIT_FAIL;
		}
		if (w.state == PGL_SW_DONE) {
			printf("%s %lld done in %.2f s: %s\n", what, (long long) seq,
				   (pgl_mono_ms() - t0) / 1000.0, tty(w.detail));
			return PGL_EXIT_OK;
		}
		if (w.state == PGL_SW_FAILED) {
			fprintf(stderr, "pglease: %s %lld failed: %s\n", what, (long long) seq,
					tty(w.detail));
			return PGL_EXIT_FAIL;
		}
		sleep_ms(50);
	}
	fprintf(stderr, "pglease: %s %lld: no outcome after %ld s (state %s); see `pglease "
			"events`\n", what, (long long) seq, timeout_s + 30, pgl_sw_state_name(w.state));
	return PGL_EXIT_FAIL;
}

/* Records the request; prints it, and with --wait its outcome. */
static int
submit_request(struct cli *c, struct pgl_store *st, struct pgl_switchover *req,
			   const char *from)
{
	const char *what = req->failover ? "failover" : "switchover";
	int64_t seq = 0;
	int rc;

	requester(req->requested_by, sizeof(req->requested_by));
	req->timeout_ms = c->timeout_s * 1000;
	rc = pgl_store_request_switchover(st, req, &seq);
	if (rc == -PGL_ECONFLICT) {
		fprintf(stderr, "pglease: %s refused: %s\n", what, tty(pgl_store_errmsg(st)));
		return PGL_EXIT_FAIL;
	}
	if (rc < 0)
		return store_failed(st, "record the request", rc);
	printf("%s %lld requested: from %s to %s (timeout %ld s)\n", what, (long long) seq,
		   tty(from), req->target[0] ? tty(req->target) : "the best standby", c->timeout_s);
	if (fflush(stdout) != 0)
		return PGL_EXIT_FAIL;
	return c->wait ? wait_switchover(st, what, seq, c->timeout_s) : PGL_EXIT_OK;
}

/* The store opened and read; a switchover (not a failover) refused while paused. */
static int
open_for_request(struct cli *c, struct pgl_store **st, struct snapshot *s)
{
	int rc;

	if ((rc = open_store(c, c->path, PGL_STORE_RDWR, st)) != 0 ||
		(rc = read_snapshot(*st, s)) != 0)
		return rc;
	if (s->cluster.paused && c->cmd->fn == cmd_switchover) {
		fprintf(stderr, "pglease: %s refused: cluster %s is paused (`pglease resume` "
				"first)\n", c->cmd->name, tty(s->cluster.name));
		return PGL_EXIT_FAIL;
	}
	return 0;
}

static int
cmd_switchover(struct cli *c)
{
	struct pgl_switchover req = { 0 };
	struct pgl_store *st = NULL;
	const struct pgl_node *h;
	struct snapshot s = { 0 };
	char why[TTY_MAX];
	int rc, i;

	if ((rc = open_for_request(c, &st, &s)) != 0)
		goto out;
	h = s.lease.holder[0] ? find_node(&s, s.lease.holder) : NULL;
	if (!pgl_decide_primary_live(&s.lease, h, why, sizeof(why))) {
		fprintf(stderr, "pglease: switchover refused: no live primary: %s (`pglease failover "
				"--to NODE` names the next one)\n", why);
		rc = PGL_EXIT_NOPRIMARY;
		goto out;
	}
	i = pgl_decide_switchover_target(s.nodes, s.n_nodes, cli_live, &s.lease, s.lease.holder,
									 h->receive_lsn_int, c->to, c->max_lag, why, sizeof(why));
	if (i < 0) {
		fprintf(stderr, "pglease: switchover refused: %s\n", tty(why));
		rc = PGL_EXIT_FAIL;
		goto out;
	}
	req.term = s.lease.term;
	if (c->to)
		pgl_strlcpy(req.target, c->to, sizeof(req.target));
	rc = submit_request(c, st, &req, s.lease.holder);
out:
	free(s.nodes);
	pgl_store_close(st);
	return rc;
}

static int
cmd_failover(struct cli *c)
{
	struct pgl_switchover req = { .failover = true };
	struct pgl_store *st = NULL;
	const struct pgl_node *h, *n;
	struct snapshot s = { 0 };
	char why[TTY_MAX];
	int rc;

	if ((rc = open_for_request(c, &st, &s)) != 0)
		goto out;
	h = s.lease.holder[0] ? find_node(&s, s.lease.holder) : NULL;
	if (pgl_decide_primary_live(&s.lease, h, why, sizeof(why))) {
		fprintf(stderr, "pglease: failover refused: %s is a live primary (term %lld); use "
				"`pglease switchover --to %s`\n", tty(s.lease.holder),
				(long long) s.lease.term, tty(c->to));
		rc = PGL_EXIT_FAIL;
		goto out;
	}
	n = find_node(&s, c->to);
	why[0] = '\0';
	if (n == NULL)
		snprintf(why, sizeof(why), "no node named %s", c->to);
	else if (n->priority <= 0)
		snprintf(why, sizeof(why), "%s has priority 0 (it never becomes primary)", c->to);
	else if (!cli_live(n, &s.lease))
		snprintf(why, sizeof(why), "%s has not reported for two lease TTLs", c->to);
	else if (strcmp(n->role, "standby") != 0)
		snprintf(why, sizeof(why), "%s is not a running standby (role %s, state %s)", c->to,
				 n->role, n->state);
	if (why[0]) {
		fprintf(stderr, "pglease: failover refused: %s\n", tty(why));
		rc = PGL_EXIT_FAIL;
		goto out;
	}
	req.term = s.lease.term;
	pgl_strlcpy(req.target, c->to, sizeof(req.target));
	rc = submit_request(c, st, &req, s.lease.holder[0] ? s.lease.holder : "no primary");
out:
	free(s.nodes);
	pgl_store_close(st);
	return rc;
}

/* ---- reload ---- */

/* The pid in NODE's alive lock file, when it names a running pglease process. */
static pid_t
agent_pid(const struct pgl_config *cfg, char *why, size_t len)
{
	char dir[PGL_PATH_MAX], path[PGL_PATH_MAX + 96], buf[32], comm[32] = "";
	ssize_t n;
	long pid;
	int fd;
	FILE *f;

	pgl_config_alive_dir(cfg, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%s.lock", dir, cfg->node_name);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, len, "%s: %s", path, strerror(errno));
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	pid = strtol(buf, NULL, 10);
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	if (pid > 0 && (f = fopen(path, "r")) != NULL) {
		if (fgets(comm, sizeof(comm), f) == NULL)
			comm[0] = '\0';
		fclose(f);
	}
	if (pid <= 0 || strcmp(comm, "pglease\n") != 0) {
		snprintf(why, len, "no agent of %s runs (its lock file names pid %ld)", cfg->node_name,
				 pid);
		return -1;
	}
	return (pid_t) pid;
}

static int
cmd_reload(struct cli *c)
{
	struct pgl_config *cfg = calloc(1, sizeof(*cfg));
	char err[4096];
	pid_t pid;
	int rc = PGL_EXIT_FAIL;

	if (cfg == NULL) {
		fprintf(stderr, "pglease: reload: %s\n", pgl_strerror(-PGL_ENOMEM));
		return PGL_EXIT_FAIL;
	}
	if (pgl_config_load(cfg, c->config, NULL, err, sizeof(err)) < 0) {
		print_config_errors(err);
		rc = PGL_EXIT_USAGE;
	} else {
		if (c->lease_db_arg)
			pgl_strlcpy(cfg->lease_db, c->lease_db_arg, sizeof(cfg->lease_db));
		if ((pid = agent_pid(cfg, err, sizeof(err))) < 0)
			fprintf(stderr, "pglease: reload: %s\n", tty(err));
		else if (kill(pid, SIGHUP) != 0)
			fprintf(stderr, "pglease: reload: cannot signal pid %d: %s\n", (int) pid,
					strerror(errno));
		else {
			printf("sent SIGHUP to the agent of %s (pid %d); its log says what changed\n",
				   tty(cfg->node_name), (int) pid);
			rc = PGL_EXIT_OK;
		}
	}
	free(cfg);
	return rc;
}

/* ---- store rebuild ---- */

/*
 * Is any agent of this store running?  Every agent holds its alive lock
 * (<store dir>/alive/NAME.lock) from start to exit, and its postmaster and
 * backends inherit it: a lock that cannot be taken names a live node.
 * Returns 0 when none is held, 1 with the node in who, -1 on an error (why).
 */
static int
agent_holds_lock(const char *lease_db, char *who, size_t wholen, char *why, size_t whylen)
{
	struct pgl_config *cfg = calloc(1, sizeof(*cfg));
	char dir[PGL_PATH_MAX];
	struct dirent *de;
	int found = 0;
	DIR *dp;

	if (cfg == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	pgl_strlcpy(cfg->lease_db, lease_db, sizeof(cfg->lease_db));
	pgl_config_alive_dir(cfg, dir, sizeof(dir));
	free(cfg);
	if ((dp = opendir(dir)) == NULL) {
		snprintf(why, whylen, "%s: %s", dir, strerror(errno));
		return errno == ENOENT ? 0 : -1;
	}
	while (found == 0 && (de = readdir(dp)) != NULL) {
		size_t n = strlen(de->d_name);
		int fd;

		if (n <= 5 || strcmp(de->d_name + n - 5, ".lock") != 0)
			continue;
		fd = openat(dirfd(dp), de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
			snprintf(who, wholen, "%s/%s", dir, de->d_name);
			found = 1;
		}
		close(fd);				/* drops the probe's lock, if it got it */
	}
	closedir(dp);
	return found;
}

/* pglease store rebuild: see its help above. */
static int
cmd_store(struct cli *c)
{
	char who[PGL_PATH_MAX + 300], err[PGL_PATH_MAX + 512];
	struct pgl_rebuild r;
	int rc;

	if (strcmp(c->node, "rebuild") != 0) {
		fprintf(stderr, "pglease store: unknown subcommand '%s' (only rebuild)\n", tty(c->node));
		return PGL_EXIT_USAGE;
	}
	if (pgl_store_is_url(c->path)) {
		fprintf(stderr, "pglease: %s: only an SQLite lease store (a file path) can be "
				"rebuilt\n", tty(c->path));
		return PGL_EXIT_USAGE;
	}
	if ((rc = agent_holds_lock(c->path, who, sizeof(who), err, sizeof(err))) != 0) {
		if (rc > 0)
			fprintf(stderr, "pglease: store rebuild: an agent is still running (its alive "
					"lock %s is held); stop every agent of this store first\n", tty(who));
		else
			fprintf(stderr, "pglease: store rebuild: cannot check for running agents: %s\n",
					tty(err));
		return PGL_EXIT_FAIL;
	}
	if ((rc = pgl_store_rebuild(c->path, &r, err, sizeof(err))) < 0) {
		fprintf(stderr, "pglease: %s\n", tty(err));
		return rc == -PGL_EINVAL ? PGL_EXIT_USAGE : PGL_EXIT_FAIL;
	}
	printf("rebuilt %s: term %lld (above the damaged store's %lld, the node records' %lld "
		   "and timeline %lld; %d node record%s kept)\n", tty(c->path), (long long) r.new_term,
		   (long long) r.old_term, (long long) r.record_term, (long long) r.max_timeline,
		   r.records, r.records == 1 ? "" : "s");
	if (r.moved_to[0])
		printf("the damaged file is kept as %s\n", tty(r.moved_to));
	else
		printf("there was no store file to keep\n");
	printf("start the agents: they elect the most advanced node by its data\n");
	return PGL_EXIT_OK;
}

/* ---- health ---- */

static int
cmd_health(struct cli *c)
{
	struct pgl_config *cfg = calloc(1, sizeof(*cfg));
	struct pgl_store *st = NULL;
	struct pgl_lease l;
	struct pgl_node n;
	char err[4096], msg[TTY_MAX];
	int rc;

	if (cfg == NULL) {
		fprintf(stderr, "pglease: health: %s\n", pgl_strerror(-PGL_ENOMEM));
		return PGL_EXIT_FAIL;
	}
	if (pgl_config_load(cfg, c->config, NULL, err, sizeof(err)) < 0) {
		print_config_errors(err);
		rc = PGL_EXIT_USAGE;
		goto out;
	}
	if (c->lease_db_arg)
		pgl_strlcpy(cfg->lease_db, c->lease_db_arg, sizeof(cfg->lease_db));
	if ((rc = open_store(c, cfg->lease_db, PGL_STORE_RDONLY, &st)) != 0)
		goto out;
	if ((rc = pgl_store_read_lease(st, &l)) < 0) {
		rc = store_failed(st, "read the lease", rc);
		goto out;
	}
	rc = pgl_store_get_node(st, cfg->node_name, &n);
	if (rc == -PGL_ENOENT) {
		fprintf(stderr, "pglease: unhealthy: %s has no node row in %s\n", cfg->node_name,
				tty(cfg->lease_db));
		rc = PGL_EXIT_FAIL;
	} else if (rc < 0)
		rc = store_failed(st, "read the node row", rc);
	else if (pgl_decide_node_healthy(&l, &n, msg, sizeof(msg))) {
		printf("%s\n", msg);
		rc = PGL_EXIT_OK;
	} else {
		fprintf(stderr, "pglease: unhealthy: %s\n", msg);
		rc = PGL_EXIT_FAIL;
	}
out:
	pgl_store_close(st);
	free(cfg);
	return rc;
}

/* ---- dispatch ---- */

static int
run_command(const struct command *cmd, int argc, char **argv)
{
	struct cli c = { .cmd = cmd };
	int rc;

	if ((rc = parse_args(&c, argc, argv)) != 0)
		return rc;
	if (c.help) {
		print_command_help(cmd);
		return PGL_EXIT_OK;
	}
	if (cmd->fn != cmd_health && cmd->fn != cmd_reload && (rc = resolve_path(&c)) != 0)
		return rc;
	rc = cmd->fn(&c);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "pglease: cannot write the output: %s\n", strerror(errno));
		return PGL_EXIT_FAIL;
	}
	return rc;
}

/*
 * The entry point of every pglease command line (argv[0] is the program).
 * `run` goes to the agent untouched; --help, -h, help [COMMAND] and
 * --version print to stdout and return 0; no or an unknown command prints
 * the usage on stderr and returns PGL_EXIT_USAGE.  Otherwise runs the
 * command and returns its PGL_EXIT_* code.  Never calls exit().
 */
int
pgl_cli_main(int argc, char **argv)
{
	const struct command *cmd;
	const char *name = argc > 1 ? argv[1] : NULL;

	if (name && strcmp(name, "run") == 0)
		return pgl_agent_main(argc - 1, argv + 1);
	if (name == NULL) {
		print_usage(stderr);
		return PGL_EXIT_USAGE;
	}
	if (strcmp(name, "--version") == 0) {
		printf("pglease %s\n", PGL_VERSION);
		return PGL_EXIT_OK;
	}
	if (strcmp(name, "help") == 0 && argc > 2) {
		char *run_help[] = { "run", "--help", NULL };

		if (strcmp(argv[2], "run") == 0)
			return pgl_agent_main(2, run_help);
		if ((cmd = find_command(argv[2])) == NULL) {
			fprintf(stderr, "pglease: unknown command '%s'\n", tty(argv[2]));
			return PGL_EXIT_USAGE;
		}
		print_command_help(cmd);
		return PGL_EXIT_OK;
	}
	if (strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
		print_usage(stdout);
		return PGL_EXIT_OK;
	}
	if ((cmd = find_command(name)) == NULL) {
		fprintf(stderr, "pglease: unknown command '%s'\n", tty(name));
		print_usage(stderr);
		return PGL_EXIT_USAGE;
	}
	return run_command(cmd, argc - 1, argv + 1);
}
