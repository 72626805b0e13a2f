"""sys_repmgr.py — repmgr 5.3 (Debian postgresql-15-repmgr): repmgr + repmgrd.

Set up as the repmgr documentation's quickstart says
(https://www.repmgr.org/docs/current/quickstart.html): a primary with
shared_preload_libraries = 'repmgr', a superuser 'repmgr' with its database,
`repmgr primary register`, then per standby `repmgr standby clone`, start,
`repmgr standby register`; repmgrd on every node with failover = automatic,
promote_command and follow_command as in
https://www.repmgr.org/docs/current/repmgrd-automatic-failover.html.

default: repmgr's defaults: monitor_interval_secs = 2, reconnect_attempts = 6,
         reconnect_interval = 10 (about 60 s before a failover starts).
fast:    monitor_interval_secs = 1, reconnect_attempts = 1, reconnect_interval = 1:
         the smallest positive values of the settings documented in
         https://www.repmgr.org/docs/current/repmgrd-basic-configuration.html
         (repmgr.conf.sample gives no lower bound).
Ports 15101-15103.  Trust authentication on 127.0.0.1 (a benchmark only).
A node's manager is its repmgrd.  A restarted old primary is not rejoined by
repmgrd: the documented way is the manual `repmgr node rejoin`.
"""
import os
import signal

from common import (System, PGBIN, initdb, append_conf, pg_ctl, as_pg, spawn_pg, q,
                    pg_conf_common, pids_named, alive, end_pids, wait_until)

REPMGR = PGBIN + "/repmgr"
REPMGRD = PGBIN + "/repmgrd"
FAST = {"monitor_interval_secs": "1", "reconnect_attempts": "1", "reconnect_interval": "1"}


class Repmgr(System):
    name = "repmgr"
    base_port = 15101

    def __init__(self, variant="default"):
        super().__init__(variant)
        self.ports = [self.base_port + i for i in range(self.n)]
        self.settings = FAST if variant == "fast" else {}

    def pgdata(self, i):
        return os.path.join(self.base, "n%d" % (i + 1))

    def conf(self, i):
        return os.path.join(self.base, "n%d.repmgr.conf" % (i + 1))

    def version(self):
        return as_pg([REPMGR, "--version"]).strip()

    def write_conf(self, i):
        c = self.conf(i)
        lines = {
            "node_id": str(i + 1),
            "node_name": "'n%d'" % (i + 1),
            "conninfo": "'host=127.0.0.1 port=%d user=repmgr dbname=repmgr connect_timeout=2'"
                        % self.ports[i],
            "data_directory": "'%s'" % self.pgdata(i),
            "pg_bindir": "'%s'" % PGBIN,
            "log_file": "'%s'" % os.path.join(self.base, "n%d.repmgrd.log" % (i + 1)),
            "repmgrd_pid_file": "'%s'" % os.path.join(self.base, "n%d.repmgrd.pid" % (i + 1)),
            "failover": "'automatic'",
            "promote_command": "'%s standby promote -f %s --log-to-file'" % (REPMGR, c),
            "follow_command": "'%s standby follow -f %s --log-to-file --upstream-node-id=%%n'"
                              % (REPMGR, c),
        }
        lines.update(self.settings)
        with open(c, "w") as f:
            for k, v in lines.items():
                f.write("%s=%s\n" % (k, v))
        os.chmod(c, 0o644)

    def pgconf(self, i):
        conf = pg_conf_common(self.ports[i], self.base)
        conf.update({"shared_preload_libraries": "'repmgr'", "wal_log_hints": "on",
                     "max_wal_senders": "10", "max_replication_slots": "10",
                     "hot_standby": "on"})
        return conf

    def start_pg(self, i):
        pg_ctl(self.pgdata(i), "start", "-l", os.path.join(self.base, "n%d.pg.log" % (i + 1)))

    def start_repmgrd(self, i):
        self.procs[i] = spawn_pg([REPMGRD, "-f", self.conf(i), "--daemonize=false"],
                                 os.path.join(self.base, "n%d.repmgrd.out" % (i + 1)))

    def setup(self):
        for i in range(self.n):
            self.write_conf(i)
        initdb(self.pgdata(0), self.pgconf(0))
        self.start_pg(0)
        su = dict(user="postgres", password=None)
        q(self.ports[0], "CREATE ROLE repmgr SUPERUSER LOGIN", **su)
        q(self.ports[0], "CREATE DATABASE repmgr OWNER repmgr", **su)
        q(self.ports[0], "ALTER ROLE repmgr SET search_path TO repmgr, \"$user\", public", **su)
        as_pg([REPMGR, "-f", self.conf(0), "primary", "register"])
        self.create_bench_role(self.ports[0], **su)
        for i in range(1, self.n):
            as_pg([REPMGR, "-h", "127.0.0.1", "-p", str(self.ports[0]), "-U", "repmgr",
                   "-d", "repmgr", "-f", self.conf(i), "standby", "clone", "--fast-checkpoint"])
            append_conf(self.pgdata(i), {"port": str(self.ports[i])})
            self.start_pg(i)
            as_pg([REPMGR, "-f", self.conf(i), "standby", "register"])
        for i in range(self.n):
            self.start_repmgrd(i)
        return self.wait_healthy(120)

    def manager_pids(self, i):
        p = self.procs.get(i)
        return pids_named([p.pid], ["repmgrd"]) if p else []

    def stop_primary(self):
        """repmgr has no node-stop of its own: stop repmgrd, then PostgreSQL
        the documented way (`repmgr node service --action=stop`, pg_ctl -m fast)."""
        p = self.primary()
        end_pids(self.manager_pids(p))
        as_pg([REPMGR, "-f", self.conf(p), "node", "service", "--action=stop", "--checkpoint"])
        return p

    def start_node(self, i):
        """PostgreSQL and repmgrd started again, as an init system would."""
        if not alive(self.postmaster_pid(i)):
            try:
                self.start_pg(i)
            except RuntimeError:
                pass
        if not self.manager_pids(i):
            self.start_repmgrd(i)

    def stop_all(self):
        for i in range(self.n):
            end_pids(self.manager_pids(i))
        for i in range(self.n):
            pm = self.postmaster_pid(i)
            if pm and alive(pm):
                try:
                    pg_ctl(self.pgdata(i), "stop", "-m", "immediate")
                except RuntimeError:
                    end_pids([pm])


DRIVER = Repmgr
