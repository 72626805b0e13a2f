#!/usr/bin/env python3
"""nemesis.py — a randomized fault campaign against a real pglease cluster.

Real PostgreSQL 15 nodes and real agents on loopback, built with the
integration tests' Cluster (test/integration/conftest.py).  While one writer
per node writes unique ids straight to that node (and one reader per node
reads), faults chosen at random from a seed are injected one or two at a
time, each followed by a recovery window.  Every write attempt is recorded:
node, start and end (monotonic), outcome (ok, error, unknown when the
connection broke mid-commit or the synchronous-replication wait was
cancelled), and the timeline the node committed on, read in the same
statement.  At the end the cluster is healed, every standby catches up, and
the ids present on every node are read.  checker.py then judges the history.

With --store etcd the lease store is a 3-member etcd cluster (Debian's
etcd-server), and every node and every etcd member runs in a network
namespace of its own (test/integration/netns.py): the SQLite store's faults
give way to partitions (a node's host cut off from everything, or from etcd
only), etcd members killed, and etcd's quorum lost for a while.

Usage (see test/nemesis/run.sh and `make nemesis`):
  nemesis.py --faults 500 --seed 1 --mode sync --nodes 3 --ttl-ms 2000 --out DIR
  nemesis.py ... --store etcd
  nemesis.py ... --bug split-brain | --bug lost-write   (the checker must fail)

Exit status: 0 when the checker finds no violation, 1 when it finds one,
2 on a usage or setup error.
"""
import argparse
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

import psycopg2  # noqa: E402

import checker  # noqa: E402
import conftest as it  # noqa: E402

FAULT_KINDS = {
    # kind: weight
    "kill9_node": 3,          # kill -9 of every process of a node
    "kill9_agent": 2,         # kill -9 of the agent only (its postgres follows it)
    "kill9_postmaster": 2,    # kill -9 of the postmaster only (the agent restarts it)
    "term_agent": 2,          # SIGTERM of the agent (clean stop)
    "stop_agent": 2,          # SIGSTOP of the agent, SIGCONT after < or > TTL
    "stop_node": 2,           # SIGSTOP of the whole node, SIGCONT after < or > TTL
    "stop_in_write": 2,       # the agent stopped inside its record write, < or > TTL
    "store_lock": 2,          # the store held write-locked by another process
    "store_full": 1,          # the store's filesystem full (a small tmpfs)
    "standby_unreadable": 1,  # a standby's data directory made unreadable
    "double": 2,              # the primary killed while a standby is stopped
    "restart_standby": 1,     # a clean restart of a standby
    "switchover": 2,          # a planned switchover under load, to a named or the best node
}

# --store etcd: the same process faults; partitions and etcd's own instead of the file's
FAULT_KINDS_ETCD = dict(
    {k: w for k, w in FAULT_KINDS.items()
     if k not in ("store_lock", "store_full", "stop_in_write")},
    partition=3,              # a node's host cut off from everything, < or > TTL
    etcd_partition=2,         # a node cut off from the etcd members only
    etcd_member_kill=1,       # kill -9 of one etcd member (restarted after the hold)
    etcd_quorum_loss=1,       # two of three etcd members killed for a while
)


def now():
    return time.monotonic()


def log(msg):
    print("%s nemesis: %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


# ------------------------------------------------------------------ clients

class Recorder:
    """The shared history: write attempts and reads, appended under a lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.writes = []
        self.reads = []
        self.next_id = 1

    def new_id(self):
        with self.lock:
            i = self.next_id
            self.next_id += 1
            return i

    def add_write(self, rec):
        with self.lock:
            self.writes.append(rec)

    def add_read(self, rec):
        with self.lock:
            self.reads.append(rec)


class Writer(threading.Thread):
    """Writes a new id to one node every `interval` seconds over the node's own
    socket (never a multi-host conninfo), recording every attempt."""

    SQL = ("INSERT INTO nemesis (id, node) VALUES (%s, %s) "
           "RETURNING ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")

    def __init__(self, node, rec, stop_ev, interval):
        super().__init__(daemon=True, name="writer-" + node.name)
        self.node, self.rec, self.stop_ev, self.interval = node, rec, stop_ev, interval
        self.conn = None
        self.busy = False

    def _connect(self):
        try:
            self.conn = self.node.connect(timeout=1, options="-c statement_timeout=0")
        except psycopg2.Error:
            self.conn = None

    def run(self):
        while not self.stop_ev.is_set():
            if self.conn is None or self.conn.closed:
                self._connect()
                if self.conn is None:
                    time.sleep(0.05)
                    continue
            i = self.rec.new_id()
            r = {"id": i, "node": self.node.name, "start": now(), "timeline": None}
            del self.conn.notices[:]
            self.busy = True
            try:
                with self.conn.cursor() as cur:
                    cur.execute(self.SQL, (i, self.node.name))
                    r["timeline"] = cur.fetchone()[0]
                r["outcome"] = checker.OK
                # A cancelled wait for synchronous replication still returns
                # success, with a warning: the commit is local only.
                if any("synchronous replication" in n for n in self.conn.notices):
                    r["outcome"] = checker.UNKNOWN
                    r["error"] = "sync replication wait cancelled"
            except psycopg2.Error as e:
                broke = self.conn.closed or isinstance(e, psycopg2.OperationalError)
                r["outcome"] = checker.UNKNOWN if broke else checker.ERROR
                r["error"] = (str(e).strip().splitlines() or [""])[0][:200]
                if broke:
                    try:
                        self.conn.close()
                    except psycopg2.Error:
                        pass
                    self.conn = None
            finally:
                self.busy = False
            r["end"] = now()
            self.rec.add_write(r)
            self.stop_ev.wait(self.interval)

    def cancel(self):
        c = self.conn
        if c is not None and self.busy:
            try:
                c.cancel()
            except psycopg2.Error:
                pass


class Reader(threading.Thread):
    """Reads count and max id on one node every `interval` seconds."""

    def __init__(self, node, rec, stop_ev, interval):
        super().__init__(daemon=True, name="reader-" + node.name)
        self.node, self.rec, self.stop_ev, self.interval = node, rec, stop_ev, interval

    def run(self):
        conn = None
        while not self.stop_ev.is_set():
            try:
                if conn is None or conn.closed:
                    conn = self.node.connect(timeout=1, options="-c statement_timeout=2000")
                t0 = now()
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*), coalesce(max(id), 0), pg_is_in_recovery() "
                                "FROM nemesis")
                    n, mx, rec = cur.fetchone()
                self.rec.add_read({"node": self.node.name, "start": t0, "end": now(),
                                   "count": n, "max": mx, "standby": rec})
            except psycopg2.Error:
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg2.Error:
                        pass
                conn = None
            self.stop_ev.wait(self.interval)
        if conn is not None:
            conn.close()


# ------------------------------------------------------------------ the campaign

class Campaign:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.rec = Recorder()
        self.stop_ev = threading.Event()
        self.faults = []
        self.cluster = None
        self.rogue = None            # --bug split-brain: (node, postmaster Popen)
        self.pending_heal = None     # the heal of the fault being held
        self.interrupted = None      # faults done when interrupted
        self.lab = None              # --store etcd: the namespaces (netns.Lab)
        self.etcd = None             # --store etcd: the etcd cluster
        self.kinds = FAULT_KINDS_ETCD if args.store == "etcd" else FAULT_KINDS
        ttl = args.ttl_ms
        self.ttl = ttl / 1000.0
        self.settings = dict(lease_ttl_ms=ttl, renew_interval_ms=max(50, ttl // 5),
                             fence_margin_ms=max(100, ttl // 4),
                             election_grace_ms=max(200, ttl // 4),
                             follow_timeout_ms=max(5000, 3 * ttl))
        if args.mode == "sync":
            self.settings["pg.synchronous_standby_names"] = "'ANY 1 (*)'"
            self.settings["pg.synchronous_commit"] = "on"

    # ---- cluster helpers

    def node_by(self, name):
        return self.cluster.node(name)

    def primary(self):
        """The lease holder, if it answers as primary."""
        try:
            return self.cluster.primary()
        except Exception:  # noqa: BLE001 - the store may be unreadable mid-fault
            return None

    def standbys(self, p=None):
        return [n for n in self.cluster.nodes if n is not p and n.agent_running()
                and not self.is_rogue(n)]

    def is_rogue(self, n):
        return self.rogue is not None and self.rogue[0] is n

    def whole(self):
        """True when one node holds the lease and is primary and every other
        running node streams from it on its timeline."""
        p = self.primary()
        if p is None:
            return False
        try:
            tli = int(p.scalar("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
                               timeout=2), 16)
            for n in self.cluster.nodes:
                if n is p or not n.agent_running() or self.is_rogue(n):
                    continue
                r = n.wal_receiver()
                if not r or r[0] != "streaming" or r[2] != p.port or r[3] != tli:
                    return False
        except psycopg2.Error:
            return False
        return True

    def wait_whole(self, bound):
        end = now() + bound
        while now() < end:
            if self.whole():
                return now()
            time.sleep(0.1)
        return None

    def start_down_nodes(self):
        for n in self.cluster.nodes:
            if not n.agent_running() and not self.is_rogue(n):
                if n.stopped_pids:
                    n.sigcont()
                self.restart(n)

    def restart(self, n):
        # The agent of a killed node may linger as a zombie for a moment.
        it.wait_reaped([p for p in (n.agent_pid,) if p], timeout=10)
        n.start(wait=True)

    # ---- faults: each returns a heal function

    def f_kill9_node(self, t):
        t.kill9(whole=True)
        return lambda: self.restart_later(t)

    def f_kill9_agent(self, t):
        it.signal_pids([t.agent_pid], signal.SIGKILL)
        return lambda: self.restart_later(t)

    def f_kill9_postmaster(self, t):
        pm = t.postmaster_pid()
        if pm:
            it.signal_pids([pm], signal.SIGKILL)
        return lambda: None

    def f_term_agent(self, t):
        os.kill(t.agent_pid, signal.SIGTERM)
        return lambda: (t.stop(timeout=60, check=False), self.restart_later(t))

    def pause_time(self):
        # Half of the pauses shorter than the TTL, half longer.
        if self.rng.random() < 0.5:
            return self.rng.uniform(0.2, 0.9) * self.ttl
        return self.rng.uniform(1.2, 3.0) * self.ttl

    def f_stop_agent(self, t):
        t.sigstop(whole=False)
        self.hold = self.pause_time()
        return lambda: t.sigcont()

    def f_stop_node(self, t):
        t.sigstop(whole=True)
        self.hold = self.pause_time()
        return lambda: t.sigcont()

    def f_stop_in_write(self, t):
        self.hold = self.pause_time()
        try:
            g = t.stop_in_write(self.hold)
        except it.pytest.fail.Exception as e:   # the agent exited meanwhile
            log("stop_in_write on %s not applied: %s" % (t.name, str(e).splitlines()[0]))
            return lambda: None
        return lambda: g.wait(timeout=60)

    def f_store_lock(self, t):
        self.hold = self.rng.uniform(0.3, 2.5) * self.ttl
        p = self.cluster.store_write("", hold_s=self.hold)
        return lambda: p.wait(timeout=60)

    def f_store_full(self, t):
        fill = self.cluster.lease_dir / "fill"
        subprocess.run(["dd", "if=/dev/zero", "of=%s" % fill, "bs=64k"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.hold = self.rng.uniform(0.5, 2.5) * self.ttl
        return lambda: fill.unlink()

    def f_standby_unreadable(self, t):
        os.chmod(t.pgdata, 0)
        self.hold = self.rng.uniform(1.0, 3.0) * self.ttl
        return lambda: os.chmod(t.pgdata, 0o700)

    def f_double(self, t):
        s = self.rng.choice(self.standbys(t) or [t])
        if s is not t:
            s.sigstop(whole=True)
        t.kill9(whole=True)
        self.hold = self.rng.uniform(0.5, 2.0) * self.ttl
        self.last_target = "%s+%s" % (t.name, s.name)
        return lambda: (s.sigcont() if s is not t else None, self.restart_later(t))

    def f_restart_standby(self, t):
        t.stop(timeout=60, check=False)
        return lambda: self.restart_later(t)

    def f_switchover(self, t):
        """A planned switchover in the middle of load: to a random standby or,
        half of the time, to whichever node the primary finds best.  Refused
        requests (nobody streaming yet, another one running) are fine; the
        checker judges what the writers saw."""
        args = ["switchover", "--lease-db", str(self.cluster.lease_db), "--wait",
                "--timeout", "%d" % max(5, int(4 * self.ttl))]
        cands = self.standbys(t)
        if cands and self.rng.random() < 0.5:
            to = self.rng.choice(cands)
            args += ["--to", to.name]
            self.last_target = "%s->%s" % (t.name, to.name)
        self.hold = 0.0
        r = self.cluster.cli(*args, timeout=120)
        out = (r.stdout + r.stderr).strip().splitlines()
        log("switchover: exit %d: %s" % (r.returncode, out[-1] if out else ""))
        return lambda: None

    def f_partition(self, t):
        self.lab.cut(t.name)
        self.hold = self.pause_time()
        return lambda: self.lab.heal(t.name)

    def f_etcd_partition(self, t):
        self.lab.block(t.name, [m.name for m in self.etcd.members])
        self.hold = self.pause_time()
        return lambda: self.lab.unblock(t.name)

    def f_etcd_member_kill(self, t):
        m = self.rng.choice(self.etcd.members)
        m.kill()
        self.last_target = "etcd " + m.name
        self.hold = self.rng.uniform(0.5, 3.0) * self.ttl
        return lambda: m.start(state="existing")

    def f_etcd_quorum_loss(self, t):
        ms = self.rng.sample(self.etcd.members, 2)
        for m in ms:
            m.kill()
        self.last_target = "etcd " + "+".join(m.name for m in ms)
        self.hold = self.rng.uniform(0.5, 3.0) * self.ttl
        return lambda: [m.start(state="existing") for m in ms]

    def restart_later(self, n):
        """Node restarts at random: at once, or after a random wait."""
        if self.rng.random() < 0.5:
            time.sleep(self.rng.uniform(0, 2 * self.ttl))
        if not n.agent_running():
            self.restart(n)

    def pick(self):
        kinds = list(self.kinds)
        kind = self.rng.choices(kinds, weights=[self.kinds[k] for k in kinds])[0]
        p = self.primary()
        running = [n for n in self.cluster.nodes if n.agent_running() and not self.is_rogue(n)]
        standbys = [n for n in running if n is not p]
        if kind in ("standby_unreadable", "restart_standby"):
            pool = standbys
        elif kind == "switchover":
            pool = [p] if p else running
        elif kind in ("store_lock", "store_full"):
            pool = [p] if p else running
        elif kind == "double":
            pool = [p] if p else running
        else:
            # Mostly the primary; sometimes anybody.
            pool = [p] if p and self.rng.random() < 0.7 else running
        if not pool:
            pool = running
        return kind, self.rng.choice(pool)

    def inject(self, i):
        kind, t = self.pick()
        self.hold = self.rng.uniform(0.2, 1.0) * self.ttl
        self.last_target = t.name
        f = {"id": i, "kind": kind, "target": t.name, "injected": now()}
        # Recorded at once: a campaign interrupted mid-fault still attributes
        # what happened during it.
        self.faults.append(f)
        heal = getattr(self, "f_" + kind)(t)
        self.pending_heal = heal
        f["target"] = self.last_target
        time.sleep(self.hold)
        f["heal_started"] = now()
        self.pending_heal = None
        heal()
        f["healed"] = now()
        self.start_down_nodes()
        f["whole"] = self.wait_whole(self.args.recovery_bound)
        f["hold_s"] = self.hold
        log("fault %d/%d %s on %s: held %.2f s, re-formed %s" % (
            i, self.args.faults, kind, f["target"], self.hold,
            "in %.2f s after healing" % (f["whole"] - f["healed"]) if f["whole"]
            else "NOT within %d s" % self.args.recovery_bound))
        if f["whole"] is None:
            # Keep going: the checker reports it, later faults still count.
            self.start_down_nodes()

    # ---- deliberate bugs (the checker must catch them)

    def bug_split_brain(self):
        """A second primary from a standby's data directory, started by hand
        behind its agent's back: the writer of that node then writes to it."""
        s = self.standbys(self.primary())[0]
        log("BUG: starting a second primary from %s's data directory" % s.name)
        s.kill9(whole=True)
        it.wait_reaped([s.agent_pid], timeout=10)
        time.sleep(0.5)
        pm = it.spawn(it.as_pg([os.path.join(self.bindir, "postgres"), "-D", str(s.pgdata),
                                "-c", "port=%d" % s.port,
                                "-c", "unix_socket_directories=%s" % s.dir,
                                "-c", "synchronous_standby_names=",
                                "-c", "primary_conninfo="]),
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.rogue = (s, pm)
        it.poll_until(lambda: s.is_primary() is not None, 60, "the rogue postgres to answer")
        s.query("SELECT pg_promote(true, 60)")
        log("BUG: %s promoted by hand" % s.name)

    def bug_lost_write(self, p):
        ok = [x["id"] for x in self.rec.writes if x["outcome"] == checker.OK]
        victim = ok[len(ok) // 2]
        log("BUG: deleting acknowledged id %d on %s" % (victim, p.name))
        p.query("DELETE FROM nemesis WHERE id = %s", (victim,))

    # ---- main

    def find_bindir(self):
        for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            if (d / "postgres").exists():
                return str(d)
        return os.path.dirname(shutil.which("postgres") or "/usr/bin/postgres")

    def run(self):
        a = self.args
        self.bindir = self.find_bindir()
        it.start_reaper()
        failed = True
        c = None
        try:
            if a.store == "etcd":
                self.setup_etcd()
            tmpfs = "16M" if "store_full" in self.kinds else None
            self.cluster = it.Cluster("nemesis-%s-%s" % (a.mode, a.seed), a.nodes,
                                      tmpfs_size=tmpfs, etcd=self.etcd, **self.settings)
            c = self.cluster
            if self.lab is not None:
                it.place_in_lab(c, self.lab)
            log("starting %d nodes (mode %s, ttl %d ms, seed %s, store %s)" % (
                a.nodes, a.mode, a.ttl_ms, a.seed, a.store))
            c.start()
            p = c.wait_healthy(timeout=240)
            p.query("CREATE TABLE IF NOT EXISTS nemesis (id bigint PRIMARY KEY, node text, "
                    "at timestamptz DEFAULT clock_timestamp())")
            for n in c.nodes:
                if n is not p:
                    c.wait_for_catchup(n, p)
            t_start = now()
            workers = []
            for n in c.nodes:
                workers.append(Writer(n, self.rec, self.stop_ev, a.interval))
                workers.append(Reader(n, self.rec, self.stop_ev, 0.1))
            for wk in workers:
                wk.start()
            time.sleep(1.0)
            try:
                for i in range(1, a.faults + 1):
                    if a.bug == "split-brain" and i == max(1, a.faults // 2):
                        self.bug_split_brain()
                    self.inject(i)
                    time.sleep(self.rng.uniform(0.2, 1.0))
            except KeyboardInterrupt:
                # The first interrupt ends the campaign early but still heals,
                # checks and reports what was injected; a second one aborts.
                self.interrupted = len(self.faults)
                log("interrupted after %d faults: healing, checking, reporting" %
                    self.interrupted)
                for n in c.nodes:
                    if n.stopped_pids:
                        n.sigcont()
                if self.pending_heal is not None:
                    self.pending_heal()
                if self.lab is not None:
                    for n in c.nodes:
                        self.lab.heal(n.name)
                        self.lab.unblock(n.name)
                    for m in self.etcd.members:
                        if not m.running():
                            m.start(state="existing")
                if self.cluster.lease_dir.joinpath("fill").exists():
                    self.cluster.lease_dir.joinpath("fill").unlink()
                for n in c.nodes:
                    if os.path.isdir(n.pgdata):
                        os.chmod(n.pgdata, 0o700)
            # Heal everything and let the cluster settle.
            self.start_down_nodes()
            t_final = self.wait_whole(a.recovery_bound)
            for f in self.faults:
                # The fault in progress when the campaign was interrupted.
                f.setdefault("heal_started", t_final or now())
                f.setdefault("healed", f["heal_started"])
                f.setdefault("whole", t_final)
                f.setdefault("hold_s", None)
            time.sleep(1.0)
            self.stop_ev.set()
            for wk in workers:
                if isinstance(wk, Writer):
                    wk.cancel()
            for wk in workers:
                wk.join(timeout=30)
            t_end = now()
            final = self.final_state(t_final)
            failed = False
        finally:
            self.stop_ev.set()
            if self.rogue is not None:
                it.signal_pids([self.rogue[1].pid] + it.descendants(self.rogue[1].pid),
                               signal.SIGKILL)
            if c is not None:
                if failed or a.keep:
                    c.report(verbose=failed)
                c.teardown(False)
            if self.etcd is not None:
                self.etcd.stop()
            if self.lab is not None:
                self.lab.destroy()
        return self.finish(t_start, t_end, final)

    def setup_etcd(self):
        """Three etcd members, each on a lab host of its own (e1, e2, e3)."""
        from etcdharness import EtcdCluster, available
        from netns import Lab
        if not available():
            raise SystemExit("nemesis: --store etcd needs etcd and etcdctl "
                             "(scripts/install-deps.sh)")
        self.lab = Lab()
        names = ("e1", "e2", "e3")
        for m in names:
            self.lab.add_host(m)
        base = Path(it.WORK) / "etcd"
        self.etcd = EtcdCluster(base, [2379, 2380] * 3, hosts=[self.lab.addr(m) for m in names],
                                netns=[self.lab.ns(m) for m in names])
        self.etcd.start()

    def final_state(self, t_final):
        """Every acknowledged id must now be on the final primary and every standby."""
        c = self.cluster
        if t_final is None:
            log("the cluster did not re-form at the end; reading what is there")
        # The primary, asked again for a while: one look can miss it (the store
        # busy for a moment), and without it nobody is waited for to catch up.
        end = now() + 30
        p = self.primary()
        while p is None and now() < end:
            time.sleep(0.2)
            p = self.primary()
        if p is None:
            log("no primary at the end: the standbys were not waited for")
        final = {}
        if p is not None:
            if self.args.bug == "lost-write":
                self.bug_lost_write(p)
            for n in c.nodes:
                if n is not p and n.agent_running() and not self.is_rogue(n):
                    try:
                        c.wait_for_catchup(n, p, timeout=120)
                    except BaseException as e:  # noqa: BLE001 - pytest.fail is a BaseException
                        if isinstance(e, KeyboardInterrupt):
                            raise
                        log("%s did not catch up: %s" % (n.name, e))
        for n in c.nodes:
            if self.is_rogue(n) or not n.agent_running():
                continue
            try:
                final[n.name] = sorted(r[0] for r in n.query("SELECT id FROM nemesis",
                                                            timeout=10))
                # What the checker's verdict rests on, for whoever reads the log.
                st = n.query("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
                             "pg_last_wal_receive_lsn()::text, "
                             "CASE WHEN pg_is_in_recovery() THEN NULL "
                             "ELSE pg_current_wal_lsn()::text END, "
                             "pg_postmaster_start_time()::text", timeout=10)[0]
                log("end: %s%s: %d ids (max %s); in recovery %s, replay %s, receive %s, "
                    "current %s, postmaster since %s" % (
                        n.name, " (primary)" if n is p else "", len(final[n.name]),
                        final[n.name][-1] if final[n.name] else None, *st))
            except psycopg2.Error as e:
                log("cannot read %s at the end: %s" % (n.name, e))
        return final

    def finish(self, t_start, t_end, final):
        a = self.args
        # Times relative to the start of the load, for people and plots.
        def rel(x):
            return None if x is None else round(x - t_start, 4)
        writes = [dict(x, start=rel(x["start"]), end=rel(x["end"])) for x in self.rec.writes]
        reads = [dict(x, start=rel(x["start"]), end=rel(x["end"])) for x in self.rec.reads]
        faults = [dict(f, injected=rel(f["injected"]), heal_started=rel(f["heal_started"]),
                       healed=rel(f["healed"]), whole=rel(f["whole"])) for f in self.faults]
        doc = {"args": {"faults": a.faults, "interrupted_after": self.interrupted,
                        "seed": a.seed, "mode": a.mode, "nodes": a.nodes, "store": a.store,
                        "ttl_ms": a.ttl_ms, "interval_s": a.interval, "bug": a.bug,
                        "recovery_bound_s": a.recovery_bound},
               "writes": writes, "reads": reads, "faults": faults, "final": final,
               "end": rel(t_end)}
        violations, report = checker.check(doc, a.mode)
        doc["violations"], doc["report"] = violations, report
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = "nemesis-%s%s-seed%s" % ("etcd-" if a.store == "etcd" else "", a.mode, a.seed)
        hist = out / (stem + ".json")
        if len(writes) > 100000:
            hist = out / (stem + ".json.gz")
            with gzip.open(hist, "wt") as f:
                json.dump(doc, f)
        else:
            hist.write_text(json.dumps(doc))
        plot(out / (stem + ".png"), report, "%smode %s, seed %s, %d faults" % (
            "etcd, " if a.store == "etcd" else "", a.mode, a.seed, len(faults)))
        for v in violations:
            print("VIOLATION: " + v)
        line = checker.summary_line(report, a.mode, a.seed)
        if self.interrupted is not None:
            line += " (interrupted after %d of %d faults)" % (self.interrupted, a.faults)
        print(line, flush=True)
        print("history: %s  plot: %s" % (hist, out / (stem + ".png")))
        return 1 if violations else 0


def plot(path, report, title):
    """A PNG of median and worst unavailability per fault kind (gnuplot)."""
    gp = shutil.which("gnuplot")
    if gp is None:
        print("no gnuplot: plot skipped (apt-get install gnuplot-nox)")
        return
    rows = list(report["unavailability_s"].items())
    if not rows:
        return
    data = "".join("%d %s %.3f %.3f\n" % (i, k, x["median"], x["worst"])
                   for i, (k, x) in enumerate(rows))
    dat = str(path) + ".dat"
    Path(dat).write_text(data)
    script = "\n".join([
        "set terminal png size 900,500 noenhanced",
        "set output '%s'" % path,
        "set title '%s: write unavailability per fault kind'" % title,
        "set ylabel 'seconds without an acknowledged write'",
        "set style data histograms", "set style histogram clustered gap 1",
        "set style fill solid 0.7 border -1", "set boxwidth 0.9",
        "set xtics rotate by -30", "set grid ytics", "set yrange [0:*]",
        "plot '%s' using 3:xtic(2) title 'median', '' using 4 title 'worst'" % dat,
    ])
    subprocess.run([gp], input=script, text=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    os.unlink(dat)


def on_term(signum, frame):
    """SIGTERM or SIGINT: the first ends the fault loop early (the campaign
    still heals, checks and reports); later ones unwind through the
    teardown, which resumes stopped nodes and ends every process it started."""
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_term)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faults", type=int, default=20, help="number of faults (default 20)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--mode", choices=("sync", "async"), default="sync",
                    help="sync: synchronous_standby_names = 'ANY 1 (*)'; async: none")
    ap.add_argument("--nodes", type=int, choices=(3, 5), default=3)
    ap.add_argument("--ttl-ms", type=int, default=2000, help="lease_ttl_ms (default 2000)")
    ap.add_argument("--interval", type=float, default=0.01,
                    help="seconds between writes of one writer (default 0.01)")
    ap.add_argument("--recovery-bound", type=float, default=90,
                    help="seconds a recovery window may take before 'not re-formed' (90)")
    ap.add_argument("--out", default="nemesis-out", help="directory for the JSON and PNG")
    ap.add_argument("--bug", choices=("split-brain", "lost-write"),
                    help="inject a deliberate bug; the checker must then fail")
    ap.add_argument("--keep", action="store_true", help="keep the agents' logs")
    ap.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite",
                    help="the lease store: the shared SQLite file (default), or a 3-member "
                    "etcd cluster with every node in a network namespace (partition faults)")
    a = ap.parse_args()
    if a.faults < 1:
        ap.error("--faults must be at least 1")
    return Campaign(a).run()


if __name__ == "__main__":
    sys.exit(main())
