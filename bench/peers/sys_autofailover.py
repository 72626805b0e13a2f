"""sys_autofailover.py — pg_auto_failover 2.0 (Debian postgresql-15-auto-failover,
pg-auto-failover-cli): a monitor and 3 keeper nodes (pg_autoctl).

Set up as the tutorial says (https://pg-auto-failover.readthedocs.io/en/main/
tutorial.html): `pg_autoctl create monitor`, then per node
`pg_autoctl create postgres --monitor URI ... --run`, one after the other
(the first becomes the primary, the others clone from it).  The keeper's own
supervisor starts PostgreSQL.  Replication is what pg_auto_failover sets up
by default (with 2 standbys: synchronous_standby_names = ANY 1 (...)).

default: the monitor's defaults: health_check_period = 5000 ms,
         health_check_timeout = 5000 ms, health_check_max_retries = 2,
         health_check_retry_delay = 2000 ms,
         node_considered_unhealthy_timeout = 20000 ms, primary_demote_timeout =
         30000 ms (after a kill -9, the promotion waits this long for the old
         primary to demote itself: the bulk of the default failover time).
fast:    health_check_period = 1000, health_check_timeout = 1000,
         health_check_max_retries = 1, health_check_retry_delay = 500,
         node_considered_unhealthy_timeout = 2000, primary_demote_timeout = 1000
         (ms): the settings that
         https://pg-auto-failover.readthedocs.io/en/main/ref/configuration.html
         names for "deciding when to promote the secondary" and "time taken to
         promote the secondary"; primary_demote_timeout below the keeper's
         network_partition_timeout (20 s) gives up the wait that lets a
         partitioned old primary demote itself first.  The docs give no
         lower bound, these are our choice of aggressive values (set with
         ALTER SYSTEM on the monitor, as that page shows).
Monitor 15300, nodes 15301-15303.  --auth trust --no-ssl (a benchmark only).
A node's manager is its pg_autoctl processes (supervisor, node-active
service, postgres controller); the monitor is shared infrastructure.
"""
import os
import shutil
import time

from common import (System, PGBIN, log, spawn_pg, q, pids_named, alive, end_pids, wait_until,
                    as_pg, append_conf, pg_ctl)

MONITOR_PORT = 15300
FAST = {"pgautofailover.health_check_period": "1000",
        "pgautofailover.health_check_timeout": "1000",
        "pgautofailover.health_check_max_retries": "1",
        "pgautofailover.health_check_retry_delay": "500",
        "pgautofailover.node_considered_unhealthy_timeout": "2000",
        "pgautofailover.primary_demote_timeout": "1000"}
SU = dict(user="postgres", password=None)


class AutoFailover(System):
    name = "autofailover"
    base_port = 15301
    infra_name = "pg_auto_failover monitor (pg_autoctl + its postgres)"

    def __init__(self, variant="default"):
        super().__init__(variant)
        self.ports = [self.base_port + i for i in range(self.n)]
        self.settings = FAST if variant == "fast" else {}
        self.monitor = None
        x = os.path.join(self.base, "xdg")
        for d in ("config", "data", "run"):
            os.makedirs(os.path.join(x, d), exist_ok=True)
        for root, dirs, _ in os.walk(x):
            for d in [root] + [os.path.join(root, e) for e in dirs]:
                shutil.chown(d, "postgres", "postgres")
        os.chmod(os.path.join(x, "run"), 0o700)
        self.env = dict(os.environ, HOME=self.base, XDG_CONFIG_HOME=x + "/config",
                        XDG_DATA_HOME=x + "/data", XDG_RUNTIME_DIR=x + "/run",
                        PG_CONFIG=PGBIN + "/pg_config", PGHOST="127.0.0.1")
        self.uri = ("postgres://autoctl_node@127.0.0.1:%d/pg_auto_failover?sslmode=disable"
                    % MONITOR_PORT)

    def pgdata(self, i):
        return os.path.join(self.base, "n%d" % (i + 1))

    def version(self):
        return as_pg(["pg_autoctl", "version"], env=self.env).strip().splitlines()[0]

    def ctl(self, *args):
        return as_pg(["pg_autoctl"] + list(args), env=self.env)

    def mdir(self):
        return os.path.join(self.base, "monitor")

    def setup(self):
        # On a busy machine `create monitor` can give up too (its PostgreSQL did
        # not answer within pg_autoctl's few seconds of retries): start afresh.
        for attempt in range(3):
            try:
                self.ctl("create", "monitor", "--pgdata", self.mdir(), "--pgport",
                         str(MONITOR_PORT), "--hostname", "127.0.0.1", "--auth", "trust",
                         "--no-ssl", "--pgctl", PGBIN + "/pg_ctl")
                break
            except RuntimeError as e:
                if attempt == 2:
                    raise
                log("pg_autoctl create monitor failed, again: %s" % str(e)[-200:])
                try:
                    pg_ctl(self.mdir(), "stop", "-m", "immediate")
                except RuntimeError:
                    pass
                shutil.rmtree(self.mdir(), ignore_errors=True)
                time.sleep(2)
        append_conf(self.mdir(), {"unix_socket_directories": "'%s'" % self.base,
                                  "listen_addresses": "'127.0.0.1'"})
        self.monitor = spawn_pg(["pg_autoctl", "run", "--pgdata", self.mdir()],
                                os.path.join(self.base, "monitor.log"), env=self.env)
        self.extra.append(self.monitor)
        wait_until(lambda: q(MONITOR_PORT, "SELECT 1", dbname="pg_auto_failover", **SU),
                   60, 0.2, "monitor up")
        if self.settings:
            for k, v in self.settings.items():
                q(MONITOR_PORT, "ALTER SYSTEM SET %s TO %s" % (k, v), dbname="pg_auto_failover",
                  **SU)
            q(MONITOR_PORT, "SELECT pg_reload_conf()", dbname="pg_auto_failover", **SU)
        for i in range(self.n):
            want = ("primary", "single") if i == 0 else ("secondary",)
            # "single" while alone, "primary" once a standby joined.  On a busy
            # machine `pg_autoctl create` can give up (e.g. the fresh standby
            # did not answer within its ~3 s of retries) and exit: it is
            # resumable, so it is started again, up to 3 times.
            for attempt in range(4):
                self.procs[i] = spawn_pg(
                    ["pg_autoctl", "create", "postgres", "--pgdata", self.pgdata(i),
                     "--pgport", str(self.ports[i]), "--listen", "127.0.0.1",
                     "--hostname", "127.0.0.1",
                     "--name", "n%d" % (i + 1), "--auth", "trust", "--no-ssl",
                     "--pgctl", PGBIN + "/pg_ctl", "--monitor", self.uri, "--run"],
                    os.path.join(self.base, "n%d.log" % (i + 1)), env=self.env)
                p = self.procs[i]
                ok = wait_until(lambda: self.state(i) in want or p.poll() is not None,
                                180, 0.5, "n%d %s" % (i + 1, want[0]))
                if p.poll() is None:
                    break
                log("n%d: pg_autoctl create exited (%s), again" % (i + 1, p.returncode))
            else:
                raise RuntimeError("n%d: pg_autoctl create failed 4 times" % (i + 1))
            del ok
            if i == 0:
                self.create_bench_role(self.ports[0], **SU)
        return self.wait_healthy(180)

    def state(self, i):
        r = q(MONITOR_PORT, "SELECT reportedstate FROM pgautofailover.node WHERE nodename = %s",
              ("n%d" % (i + 1),), dbname="pg_auto_failover", timeout=1, **SU)
        return r[0][0] if r else None

    def infra_pids(self):
        if not self.monitor:
            return []
        return pids_named([self.monitor.pid], ["pg_autoctl", "postgres", "postmaster"])

    def manager_pids(self, i):
        p = self.procs.get(i)
        return pids_named([p.pid], ["pg_autoctl"]) if p else []

    def stop_primary(self):
        """pg_auto_failover's own clean stop: pg_autoctl stop."""
        p = self.primary()
        self.ctl("stop", "--pgdata", self.pgdata(p))
        wait_until(lambda: not self.manager_pids(p), 60, 0.1, "pg_autoctl stopped")
        return p

    def start_node(self, i):
        if not self.manager_pids(i):
            self.procs[i] = spawn_pg(["pg_autoctl", "run", "--pgdata", self.pgdata(i)],
                                     os.path.join(self.base, "n%d.log" % (i + 1)),
                                     env=self.env)

    def stop_all(self):
        for i in range(self.n):
            end_pids(self.manager_pids(i)[:1], grace=30)   # the supervisor first
            end_pids(self.manager_pids(i), grace=5)
        for i in range(self.n):
            pm = self.postmaster_pid(i)
            if pm and alive(pm):
                end_pids([pm])
        if self.monitor:
            end_pids(pids_named([self.monitor.pid], ["pg_autoctl"])[:1], grace=30)
            end_pids(self.infra_pids())


DRIVER = AutoFailover
