"""End-to-end tests of pglease in real containers (docker-compose.yml as shipped).

Every Cluster is one compose project of the repository's docker-compose.yml,
named <run id>-<n> (run id pgl-t<pid>), with its own lease directory under
/var/tmp bind-mounted at /var/lib/pglease.  It is removed with
`docker-compose down -v` and its directory deleted, whatever happens.

Observation happens three ways, none of them through pglease itself:
  * psql inside each container (docker exec -u postgres, local socket, peer);
  * the lease store read on the host with Python's sqlite3, read-only;
  * a Sampler: one persistent `docker exec -i psql` session per container,
    asked `pg_is_in_recovery(), clock_timestamp(), pg_postmaster_start_time()`
    every 200 ms.  The containers share the host's kernel, hence its clock,
    so the server-side timestamps of different containers are comparable.
    A postmaster never goes back into recovery without a restart, so two
    "not in recovery" answers of one postmaster prove it was primary for the
    whole span between them.  Two such spans (or single answers) of two
    different containers that overlap fail the test: two primaries at once.
    A lease thread checks that the term never goes down.

On failure, `docker-compose logs --tail=80`, the lease row, cluster_status and
the events of every live cluster are attached to the test's report.
"""
import itertools
import json
import os
import select
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
COMPOSE_FILE = str(ROOT / "docker-compose.yml")
RUN_ID = os.environ.get("PGLEASE_DOCKER_RUN_ID") or "pgl-t%d" % os.getpid()
IMAGE_TAG = os.environ.get("PGLEASE_IMAGE_TAG", "dev")
TTL_MS = int(os.environ.get("PGLEASE_DOCKER_TTL_MS", "5000"))
RENEW_MS = int(os.environ.get("PGLEASE_DOCKER_RENEW_MS", "1000"))
TMP_BASE = os.environ.get("PGLEASE_DOCKER_TMP", "/var/tmp")
SERVICES = ("pg1", "pg2", "pg3")

# Generous bounds: a noisy 2-core machine.
UP_TIMEOUT = 240          # compose up -> 1 primary + 2 streaming
REJOIN_TIMEOUT = 120      # docker start of an old primary -> streaming standby
FAILOVER_TIMEOUT = 60     # stop/kill of the primary -> a write accepted elsewhere

MEASUREMENTS = []
ACTIVE = []               # live clusters, for failure reports
_counter = itertools.count(1)


def measure(what, seconds):
    line = "%s: %.2f s" % (what, seconds)
    MEASUREMENTS.append(line)
    print("measured " + line, flush=True)


def pytest_terminal_summary(terminalreporter):
    for line in MEASUREMENTS:
        terminalreporter.write_line("measured: " + line)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for cl in list(ACTIVE):
            try:
                rep.sections.append(("cluster %s (%s)" % (cl.project, cl.label), cl.report()))
            except Exception as e:  # noqa: BLE001
                rep.sections.append(("cluster %s" % cl.project, "report failed: %r" % e))


def sh(argv, timeout=60, check=False, env=None, input=None):
    """Runs argv; returns the CompletedProcess (text).  A timeout is returned as
    returncode 124, not raised."""
    try:
        p = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                           timeout=timeout, env=env, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        p = subprocess.CompletedProcess(e.cmd, 124, e.stdout or "", "timeout after %ss" % timeout)
        if isinstance(p.stdout, bytes):
            p.stdout = p.stdout.decode(errors="replace")
    if check and p.returncode != 0:
        raise AssertionError("%s: exit %d\nstdout: %s\nstderr: %s"
                             % (" ".join(map(str, argv)), p.returncode, p.stdout, p.stderr))
    return p


def poll(what, fn, timeout, interval=0.3):
    """Calls fn until it returns something truthy; returns (value, seconds).
    Fails with the last value / exception after timeout seconds."""
    t0 = time.monotonic()
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v, time.monotonic() - t0
            last = v
        except AssertionError as e:
            last = "AssertionError: %s" % e
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out after %.1f s waiting for %s; last: %s"
                                 % (timeout, what, last))
        time.sleep(interval)


# ----------------------------------------------------------------- cluster

class Cluster:
    """One compose project of docker-compose.yml with its own lease directory."""

    def __init__(self, label, ttl_ms=TTL_MS, renew_ms=RENEW_MS, env=None):
        self.label = label
        self.project = "%s-%d" % (RUN_ID, next(_counter))
        self.lease_dir = tempfile.mkdtemp(prefix=self.project + ".", dir=TMP_BASE)
        os.chmod(self.lease_dir, 0o770)
        self.db = os.path.join(self.lease_dir, "lease.db")
        self.network = self.project + "_pglease"
        self.ttl_ms = ttl_ms
        self.env = dict(os.environ,
                        COMPOSE_PROJECT_NAME=self.project,
                        PGLEASE_LEASE_DIR=self.lease_dir,
                        PGLEASE_LEASE_TTL_MS=str(ttl_ms),
                        PGLEASE_RENEW_INTERVAL_MS=str(renew_ms),
                        PGLEASE_IMAGE_TAG=IMAGE_TAG,
                        # HAProxy's host ports: free ones, so clusters never collide.
                        PGLEASE_WRITE_PORT="", PGLEASE_READ_PORT="",
                        PGLEASE_HAPROXY_STATS_PORT="")
        self.env.update(env or {})
        self.notes = {}    # state handed from one test to the next
        self.restarts_expected = set()
        ACTIVE.append(self)

    # -- docker
    def container(self, svc):
        return "%s-%s" % (self.project, svc)

    def compose(self, *args, timeout=180, check=True):
        return sh(["docker-compose", "-f", COMPOSE_FILE, "-p", self.project] + list(args),
                  timeout=timeout, check=check, env=self.env)

    def up(self):
        self.compose("up", "-d", "--no-build", timeout=300)

    def down(self):
        if self in ACTIVE:
            ACTIVE.remove(self)
        p = self.compose("down", "-v", "--remove-orphans", "-t", "15", timeout=300, check=False)
        if p.returncode != 0:
            print("docker-compose down of %s: exit %d: %s" % (self.project, p.returncode, p.stderr))
        shutil.rmtree(self.lease_dir, ignore_errors=True)

    def logs(self, tail=80):
        p = self.compose("logs", "--no-color", "--tail=%d" % tail, timeout=60, check=False)
        return p.stdout + p.stderr

    def running(self, svc):
        p = sh(["docker", "inspect", "-f", "{{.State.Running}}", self.container(svc)], timeout=30)
        return p.stdout.strip() == "true"

    def exited(self, services=SERVICES):
        """{service: 'exit code N'} of containers that exited by themselves:
        down, or brought back by `restart: unless-stopped` (a restart count
        above zero) when nothing in the test stopped them."""
        out = {}
        for s in services:
            p = sh(["docker", "inspect", "-f",
                    "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}",
                    self.container(s)], timeout=30)
            st = p.stdout.split()
            if st and st[0] in ("exited", "dead"):
                out[s] = "exit code %s" % (st[1] if len(st) > 1 else "?")
            elif len(st) > 2 and st[2] != "0" and s not in self.restarts_expected:
                out[s] = "restarted %s times (last exit code %s)" % (st[2], st[1])
        return out

    def restart_count(self, svc):
        p = sh(["docker", "inspect", "-f", "{{.RestartCount}}", self.container(svc)], timeout=30)
        return int(p.stdout.strip() or "0")

    def host_port(self, svc, port):
        """The host port published for svc's container port."""
        p = sh(["docker", "port", self.container(svc), str(port)], timeout=30, check=True)
        return int(p.stdout.strip().splitlines()[0].rsplit(":", 1)[1])

    def docker(self, *args, timeout=120, check=True):
        return sh(["docker"] + list(args), timeout=timeout, check=check)

    def exec(self, svc, argv, timeout=30, user="postgres"):
        return sh(["docker", "exec", "-u", user, self.container(svc)] + list(argv), timeout=timeout)

    def psql(self, svc, sql, timeout=30):
        """(ok, stdout, stderr) of one psql -c in the container (local socket)."""
        p = self.exec(svc, ["psql", "-X", "-q", "-h", "/var/run/postgresql", "-v", "ON_ERROR_STOP=1",
                            "-Atc", sql], timeout=timeout)
        return p.returncode == 0, p.stdout.strip(), p.stderr.strip()

    def q(self, svc, sql, timeout=30):
        """stdout of psql; fails the test when the query fails."""
        ok, out, err = self.psql(svc, sql, timeout)
        assert ok, "%s: psql %r failed: %s" % (svc, sql, err)
        return out

    def probe(self, svc):
        """('primary', None) | ('standby', 'status:sender_host') | (None, error)."""
        ok, out, err = self.psql(
            svc, "select pg_is_in_recovery(), coalesce((select status || ':' || "
                 "coalesce(sender_host, '') from pg_stat_wal_receiver), '')", timeout=15)
        if not ok:
            return None, err
        rec, _, wr = out.partition("|")
        return ("standby" if rec == "t" else "primary"), (wr or None)

    def roles(self, services=SERVICES):
        return {s: self.probe(s) for s in services}

    def pglease(self, svc, *args, timeout=30):
        """`docker-compose exec -T SVC pglease ARGS` (the wrapper drops to postgres)."""
        return self.compose("exec", "-T", svc, "pglease", *args, timeout=timeout, check=False)

    # -- the store, read on the host
    def store(self):
        # Never let a root-owned -wal/-shm appear next to the store: open it
        # only once the agents have created both.
        for ext in ("-wal", "-shm"):
            assert os.path.exists(self.db + ext), "lease store %s%s does not exist yet" % (self.db, ext)
        con = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=10)
        con.row_factory = sqlite3.Row
        return con

    def sql(self, query, args=()):
        con = self.store()
        try:
            return [dict(r) for r in con.execute(query, args).fetchall()]
        finally:
            con.close()

    def shell(self, query):
        """Rows of QUERY as an operator reads them on the host: the sqlite3
        shell, read-only, after `.read` of the views file the agents keep beside
        the store (the views nodes, lease_status and cluster_status read the
        per-node records in lease.nodes/)."""
        for ext in ("-wal", "-shm"):
            assert os.path.exists(self.db + ext), "lease store %s%s does not exist yet" % (self.db, ext)
        views = self.db[:-len(".db")] + ".views.sql"
        r = subprocess.run(["sqlite3", "-readonly", "-json", self.db, "-cmd", ".read " + views,
                            query], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout or "[]")

    def lease(self):
        """The lease as observers see it: the row in lease.db with the holder's
        renewals merged from its own record (the lease_status view)."""
        rows = self.shell("select * from lease_status")
        assert len(rows) == 1, rows
        return rows[0]

    def cluster_row(self):
        return self.sql("select * from cluster where id = 1")[0]

    def status_rows(self):
        """cluster_status as an operator reads it on the host."""
        return {x["name"]: x for x in self.shell("select * from cluster_status")}

    def events(self, after=0):
        return self.sql("select id, at, term, node, kind, detail from events where id > ? "
                        "order by id", (after,))

    def last_event_id(self):
        return self.sql("select coalesce(max(id), 0) as m from events")[0]["m"]

    # -- waiting
    def healthy(self, services=SERVICES, primary=None):
        """The primary's name when exactly one of services is out of recovery,
        holds the lease, and every other one streams from it; else None."""
        roles = self.roles(services)
        prims = [s for s, (r, _) in roles.items() if r == "primary"]
        if len(prims) != 1 or (primary and prims[0] != primary):
            return None
        p = prims[0]
        if not os.path.exists(self.db + "-shm") or self.lease()["holder"] != p:
            return None
        for s, (r, wr) in roles.items():
            if s != p and (r != "standby" or wr != "streaming:%s" % p):
                return None
        return p

    def wait_healthy(self, timeout, services=SERVICES, primary=None, what=None):
        t0 = time.monotonic()
        while True:
            p = self.healthy(services, primary)
            if p:
                return p, time.monotonic() - t0
            gone = self.exited(services)
            if gone:
                raise AssertionError("%s: containers exited: %s" % (what or self.project, gone))
            if time.monotonic() - t0 > timeout:
                last = self.roles(services)
                lease = self.lease() if os.path.exists(self.db + "-shm") else None
                raise AssertionError("%s: not 1 primary%s + streaming standbys after %.0f s: "
                                     "roles %s, lease %s"
                                     % (what or self.project,
                                        " (%s)" % primary if primary else "",
                                        timeout, last, lease))
            time.sleep(0.5)

    def wait_replayed(self, primary, standbys, timeout=60):
        """Waits until every standby replayed the primary's current WAL position."""
        lsn = self.q(primary, "select pg_current_wal_lsn()")

        def done():
            for s in standbys:
                if self.q(s, "select pg_last_wal_replay_lsn() >= '%s'::pg_lsn" % lsn) != "t":
                    return False
            return True
        return poll("standbys %s to replay %s" % (standbys, lsn), done, timeout)

    def report(self):
        out = ["docker-compose logs --tail=80:", self.logs(80)]
        try:
            out.append("lease: %s" % self.lease())
            out.append("cluster_status:")
            out += ["  %s" % r for r in self.status_rows().values()]
            out.append("events:")
            out += ["  %(id)s %(at)s term %(term)s %(node)s %(kind)s %(detail)s" % e
                    for e in self.events()]
        except Exception as e:  # noqa: BLE001
            out.append("store unreadable: %r" % e)
        return "\n".join(out)


def print_events(cluster, after=0):
    for e in cluster.events(after):
        print("  event %(id)s term %(term)s %(node)s %(kind)s: %(detail)s" % e)


# ----------------------------------------------------------------- writers

WRITER = r"""echo $$
end=$(( $(date +%%s) + %d ))
while [ "$(date +%%s)" -lt "$end" ]; do
  if psql -X -q -h /var/run/postgresql -v ON_ERROR_STOP=1 -Atc "insert into dt(note) values ('%s')" >/dev/null 2>&1; then
    date +%%s.%%N
    exit 0
  fi
  sleep 0.02
done
exit 1
"""


class Writers:
    """One shell loop inside each candidate container, trying an INSERT every
    20 ms until one is accepted; prints the wall time of the first success
    (the containers' clock is the host's)."""

    def __init__(self, cluster, services, note, deadline=FAILOVER_TIMEOUT):
        self.cluster = cluster
        self.procs = {}
        self.pids = {}
        for s in services:
            p = subprocess.Popen(["docker", "exec", "-u", "postgres", cluster.container(s),
                                  "sh", "-c", WRITER % (deadline, note + "-" + s)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, text=True)
            self.procs[s] = p
            self.pids[s] = p.stdout.readline().strip()

    def wait_first(self, timeout):
        """(service, wall time of its first accepted write) or fails."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for s, p in self.procs.items():
                if p.poll() is not None and p.returncode == 0:
                    return s, float(p.stdout.read().strip())
            if all(p.poll() is not None for p in self.procs.values()):
                break
            time.sleep(0.01)
        raise AssertionError("no write accepted on any of %s within %d s"
                             % (list(self.procs), timeout))

    def stop(self):
        """Ends the loops still running (by their pid inside the container);
        returns the services whose write succeeded."""
        won = []
        for s, p in self.procs.items():
            if p.poll() is None and self.pids[s].isdigit():
                self.cluster.exec(s, ["kill", self.pids[s]], timeout=15)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.returncode == 0:
                won.append(s)
        return won


# ----------------------------------------------------------------- sampler

QUERY = (b"select pg_is_in_recovery(), extract(epoch from clock_timestamp()), "
         b"pg_postmaster_start_time();\n")


class Sampler:
    def __init__(self, cluster, services=SERVICES, interval=0.2):
        self.cluster = cluster
        self.services = services
        self.interval = interval
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.samples = []        # (svc, server wall time, in_recovery, postmaster start)
        self.lease_hist = []     # (wall, term, holder)
        self.errors = []
        self.threads = []

    def __enter__(self):
        for s in self.services:
            t = threading.Thread(target=self._node, args=(s,), daemon=True, name="sampler-" + s)
            t.start()
            self.threads.append(t)
        t = threading.Thread(target=self._lease, daemon=True, name="sampler-lease")
        t.start()
        self.threads.append(t)
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=15)

    def _node(self, svc):
        proc = None
        buf = b""
        while not self.stop_ev.is_set():
            if proc is None:
                buf = b""
                proc = subprocess.Popen(
                    ["docker", "exec", "-i", "-u", "postgres", self.cluster.container(svc),
                     "psql", "-X", "-q", "-h", "/var/run/postgresql", "-At", "-F", "|"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, bufsize=0)
            line = None
            try:
                proc.stdin.write(QUERY)
                proc.stdin.flush()
                end = time.monotonic() + 5
                while b"\n" not in buf and time.monotonic() < end:
                    r, _, _ = select.select([proc.stdout], [], [], 0.5)
                    if r:
                        chunk = os.read(proc.stdout.fileno(), 4096)
                        if not chunk:
                            break
                        buf += chunk
                if b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
            except OSError:
                line = None
            if line is None:
                self._close(proc)
                proc = None
                self.stop_ev.wait(self.interval)
                continue
            parts = line.decode(errors="replace").split("|")
            if len(parts) == 3 and parts[0] in ("t", "f"):
                with self.lock:
                    self.samples.append((svc, float(parts[1]), parts[0] == "t", parts[2]))
            self.stop_ev.wait(self.interval)
        if proc is not None:
            self._close(proc)

    @staticmethod
    def _close(proc):
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _lease(self):
        while not self.stop_ev.is_set():
            try:
                l = self.cluster.lease()
                with self.lock:
                    if self.lease_hist and l["term"] < self.lease_hist[-1][1]:
                        self.errors.append("term went down: %s -> %s"
                                           % (self.lease_hist[-1], (l["term"], l["holder"])))
                    if not self.lease_hist or self.lease_hist[-1][1:] != (l["term"], l["holder"]):
                        self.lease_hist.append((time.time(), l["term"], l["holder"]))
            except Exception:  # noqa: BLE001  (a busy store is no finding here)
                pass
            self.stop_ev.wait(self.interval)

    def spans(self):
        """{(svc, postmaster start): [first, last]} of 'not in recovery' answers."""
        spans = {}
        with self.lock:
            for svc, t, rec, pm in self.samples:
                if rec:
                    continue
                sp = spans.setdefault((svc, pm), [t, t])
                sp[0] = min(sp[0], t)
                sp[1] = max(sp[1], t)
        return spans

    def check(self):
        """Fails on two primaries at once or a term going down; returns a summary."""
        spans = self.spans()
        bad = []
        keys = sorted(spans)
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                if a[0] == b[0]:
                    continue
                (a0, a1), (b0, b1) = spans[a], spans[b]
                if a0 <= b1 and b0 <= a1:
                    bad.append("%s primary %.3f..%.3f and %s primary %.3f..%.3f"
                               % (a[0], a0, a1, b[0], b0, b1))
        with self.lock:
            n = {s: sum(1 for x in self.samples if x[0] == s) for s in self.services}
            hist = list(self.lease_hist)
            errors = list(self.errors)
        summary = "samples %s; primary spans %s; lease history %s" % (
            n, {"%s@%s" % k: "%.2fs" % (v[1] - v[0]) for k, v in spans.items()},
            [(round(w, 2), t, h) for w, t, h in hist])
        print("sampler: " + summary)
        assert not bad, "two primaries at once: %s\n%s" % ("; ".join(bad), summary)
        assert not errors, "; ".join(errors)
        assert sum(n.values()) > 0, "sampler got no answer at all"
        return summary


# ----------------------------------------------------------------- fixtures

@pytest.fixture
def new_cluster():
    """Factory of clusters removed at the end of the test."""
    made = []

    def make(label, **kw):
        c = Cluster(label, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.down()
