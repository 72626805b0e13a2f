"""sys_pglease.py — pglease, through scripts/local-cluster.sh.

default: pglease's own defaults (docs/cli.md, the settings table).
fast:    PGLEASE_LEASE_TTL_MS=2000 PGLEASE_RENEW_INTERVAL_MS=500.
Ports 15001-15003.  The binary: $PEERS_PGLEASE_BIN, else /tmp/peers-build/pglease
(built with make -C TOP BUILD=/tmp/peers-build /tmp/peers-build/pglease), else
TOP/pglease.
"""
import os
import signal
import subprocess

import psycopg2

from common import System, TOP, wait_until, signal_pids, alive, end_pids, pids_named, \
    thaw_parents, BENCH_PASSWORD

LC = os.path.join(TOP, "scripts", "local-cluster.sh")
FAST = {"PGLEASE_LEASE_TTL_MS": "2000", "PGLEASE_RENEW_INTERVAL_MS": "500"}


def pglease_bin():
    b = os.environ.get("PEERS_PGLEASE_BIN")
    if b:
        return b
    if os.access("/tmp/peers-build/pglease", os.X_OK):
        return "/tmp/peers-build/pglease"
    return os.path.join(TOP, "pglease")


class Pglease(System):
    name = "pglease"
    base_port = 15001

    def __init__(self, variant="default"):
        super().__init__(variant)
        self.dir = os.path.join(self.base, "c")
        self.ports = [self.base_port + i for i in range(self.n)]
        self.env = dict(os.environ, PGLEASE_CLUSTER_DIR=self.dir,
                        PGLEASE_BASE_PORT=str(self.base_port), PGLEASE_BIN=pglease_bin())
        if variant == "fast":
            self.env.update(FAST)
        self.settings = FAST if variant == "fast" else {}

    def lc(self, *args, check=True):
        return subprocess.run([LC] + list(args), env=self.env, check=check,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def node(self, i):
        return "pg%d" % (i + 1)

    def node_dir(self, i):
        return os.path.join(self.dir, "nodes", self.node(i))

    def pgdata(self, i):
        return os.path.join(self.node_dir(i), "data")

    def version(self):
        r = subprocess.run([pglease_bin(), "--version"], capture_output=True, text=True)
        return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr) else "?"

    def admin(self, i, sql):
        """As postgres over node i's Unix socket (peer map root -> postgres)."""
        c = psycopg2.connect(host=self.node_dir(i), port=self.ports[i], user="postgres",
                             dbname="postgres", connect_timeout=2)
        try:
            c.autocommit = True
            with c.cursor() as cur:
                cur.execute(sql)
        finally:
            c.close()

    def setup(self):
        self.lc("start", str(self.n))
        # The agents bootstrap one primary; the others clone from it.
        p = wait_until(self.primary_by_socket, 120, 0.2, "a pglease primary")
        for sql in ("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='bench') "
                    "THEN CREATE ROLE bench LOGIN PASSWORD '%s'; END IF; END$$" % BENCH_PASSWORD,
                    "GRANT pg_monitor TO bench",
                    "CREATE TABLE IF NOT EXISTS bench_probe (id bigint, src text, "
                    "at timestamptz DEFAULT clock_timestamp())",
                    "GRANT ALL ON bench_probe TO bench"):
            self.admin(p[0], sql)
        return self.wait_healthy(180)

    def primary_by_socket(self):
        for i in range(self.n):
            try:
                c = psycopg2.connect(host=self.node_dir(i), port=self.ports[i], user="postgres",
                                     dbname="postgres", connect_timeout=1)
                try:
                    with c.cursor() as cur:
                        cur.execute("SELECT NOT pg_is_in_recovery()")
                        if cur.fetchone()[0]:
                            return (i,)
                finally:
                    c.close()
            except psycopg2.Error:
                pass
        return None

    def agent_pid(self, i):
        try:
            with open(os.path.join(self.node_dir(i), "agent.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def manager_pids(self, i):
        """The agent and its helpers (fence watchdog, holder watch): not postgres."""
        a = self.agent_pid(i)
        return pids_named([a], ["pglease"]) if a else []

    def kill_node(self, i):
        self.lc("kill", self.node(i))

    def stop_primary(self):
        p = self.primary()
        self.lc("stop-node", self.node(p))
        return p

    def start_node(self, i):
        self.lc("start-node", self.node(i))

    def freeze_manager(self, i, on=True):
        # Only the agent's main process: its fence watchdog is a separate
        # process by design and keeps running, as it would on a real stall.
        a = self.agent_pid(i)
        if a:
            signal_pids([a], signal.SIGSTOP if on else signal.SIGCONT)
            if not on:
                thaw_parents([a])

    def stop_all(self):
        r = self.lc("stop", check=False)
        if r.returncode != 0:
            for i in range(self.n):
                self.lc("kill", self.node(i), check=False)
        for i in range(self.n):
            a = self.agent_pid(i)
            if a and alive(a):
                end_pids([a])


DRIVER = Pglease
