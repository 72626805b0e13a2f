"""Integration tests of pglease against real PostgreSQL 15 on loopback.

The Cluster helper follows the shape of PostgreSQL's PostgreSQL::Test::Cluster:
free ports, one temporary base directory per test with the shared store
directory (lease/) and one directory per node (config, agent.log, data/, the
Unix socket), start/stop/kill of a node's processes by pid, connections over
the node's Unix socket, poll_until with clear failure messages, and readers of
the lease store (Python's sqlite3, read-only).

A Sampler runs beside every failover test: one thread per node asks
`SELECT NOT pg_is_in_recovery()` every 50 ms over a persistent connection,
and one thread watches the lease row.  The test fails if two nodes were ever
out of recovery at the same instant (invariant 1) or if the term ever went
down (invariant 2).

As root (CI), agents and postgres run as the `postgres` OS user; otherwise as
the current user.  Every process is ended by its pid; nothing is killed by
name.
"""
import glob
import hashlib
import json
import os
import pwd
import random
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PGLEASE = os.environ.get("PGLEASE_BIN") or str(ROOT / "pglease")
IS_ROOT = os.geteuid() == 0
PG_USER = "postgres"
# Every test is aborted after this many seconds (raised in the main thread).
TEST_TIMEOUT = int(os.environ.get("PGLEASE_IT_TIMEOUT", "480"))
WORK = os.environ.get("PGLEASE_IT_DIR") or tempfile.gettempdir()
ARTIFACTS = os.environ.get("PGLEASE_IT_ARTIFACTS") or os.path.join(tempfile.gettempdir(),
                                                                   "pglease-it-artifacts")
# Short timings for tests whose scenario allows them.
FAST = dict(lease_ttl_ms=3000, renew_interval_ms=500, fence_margin_ms=1000)

MEASUREMENTS = []


def measure(what, seconds):
    """Records a measured figure: printed now and in pytest's summary."""
    line = "%s: %.2f s" % (what, seconds)
    MEASUREMENTS.append(line)
    print("measured " + line, flush=True)
    path = os.path.join(WORK, "measurements.txt")
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def pytest_terminal_summary(terminalreporter):
    for line in MEASUREMENTS:
        terminalreporter.write_line("measured: " + line)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


# ---------------------------------------------------------------- processes

def pg_ids():
    p = pwd.getpwnam(PG_USER)
    return p.pw_uid, p.pw_gid


def chown_pg(path):
    if IS_ROOT:
        uid, gid = pg_ids()
        os.chown(path, uid, gid)


def as_pg(argv):
    """argv run as the postgres user when we are root."""
    argv = [str(a) for a in argv]
    return ["runuser", "-u", PG_USER, "--"] + argv if IS_ROOT else argv


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PGLEASE_") and not k.startswith("PG")}
    env["LC_ALL"] = "C.UTF-8"
    env.update({k: str(v) for k, v in extra.items()})
    return env


# ---- a prompt reaper for orphans, like init or docker-init
#
# When a test kills an agent, its postmaster's (and backends') parent is gone
# and they are re-parented.  On a real host init reaps them at once; in a
# container they die with it.  Here pytest makes itself the child subreaper
# and reaps such orphans (and only them: never a child it started itself,
# whose exit status a test reads), so that a killed node leaves no zombie that
# postgres would take for a live postmaster (kill(pid, 0) succeeds on a zombie).

#
# Pids are reused: a child started here counts as the test's own only until
# its Popen has reaped it.  runuser stops itself when its child stops (job
# control) and stays stopped after the child is continued or killed, so a
# stopped runuser whose child no longer is stopped is continued: it then
# reaps its child and exits, leaving no zombie agent behind.

_REAP_LOCK = threading.Lock()
_OWN_CHILDREN = {}              # pid -> Popen
_REAP_COMMS = {"postgres", "pglease", "pglease-fence", "pglease-watch", "pg_rewind",
               "pg_basebackup", "initdb"}
_reaper_started = False


def spawn(argv, **kw):
    """subprocess.Popen, registered so the orphan reaper never takes its status."""
    with _REAP_LOCK:
        p = subprocess.Popen(argv, **kw)
        _OWN_CHILDREN[p.pid] = p
    return p


def _comm_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return st[st.index("(") + 1:st.rindex(")")], st[st.rindex(")") + 2]
    except (OSError, ValueError, IndexError):
        return "", ""


def _reap_orphans():
    me = os.getpid()
    while True:
        time.sleep(0.05)
        with _REAP_LOCK:
            for pid in children(me):
                own = _OWN_CHILDREN.get(pid)
                comm, state = _comm_state(pid)
                if own is not None and own.returncode is None:
                    if state == "Z":
                        own.poll()      # Popen keeps the status for its owner
                    elif comm == "runuser" and state == "T" and not any(
                            _comm_state(c)[1] == "T" for c in children(pid)):
                        os.kill(pid, signal.SIGCONT)
                    continue
                if state == "Z" and comm in _REAP_COMMS:
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass


def start_reaper():
    global _reaper_started
    if _reaper_started:
        return
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            return
    except OSError:
        return
    threading.Thread(target=_reap_orphans, daemon=True, name="orphan-reaper").start()
    _reaper_started = True


def pytest_configure(config):
    start_reaper()


def run_pg(argv, timeout=60, **kw):
    """Runs argv (as postgres when root); returns a CompletedProcess."""
    p = spawn(as_pg(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
              env=kw.pop("env", clean_env()), stdin=subprocess.DEVNULL, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def proc_state(pid):
    """The one-letter state of pid, or None if it does not exist."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return s[s.rindex(")") + 2]


def pid_alive(pid):
    """True if pid exists and is not a zombie (a zombie holds no files)."""
    st = proc_state(pid) if pid else None
    return st is not None and st not in "ZX"


def pid_can_run(pid):
    """True if pid is alive and still has its address space: a process in the
    middle of exit(2) loses its memory before its files (and so its flocks),
    and may still show as running for a moment after its files are closed."""
    if not pid_alive(pid):
        return False
    try:
        with open("/proc/%d/status" % pid) as f:
            return "\nVmSize:" in f.read()
    except OSError:
        return False


def open_files(pid):
    out = []
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                out.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
            except OSError:
                pass
    except OSError:
        pass
    return out


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def children(pid):
    """Direct children of pid (from /proc/PID/task/*/children, else a /proc scan)."""
    out = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    found_file = False
    for t in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                out += [int(x) for x in f.read().split()]
            found_file = True
        except OSError:
            pass
    if not found_file:
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    s = f.read()
            except OSError:
                continue
            if int(s[s.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(d))
    return out


def descendants(pid):
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children(p):
            if c not in seen:
                seen.append(c)
                todo.append(c)
    return seen


def wait_for_descendant(pid, name, timeout=60):
    """The pid of the first descendant of pid whose command line names name."""
    def find():
        for d in descendants(pid):
            if name in proc_cmdline(d):
                return d
        return None
    return poll_until(find, timeout, "%s started under pid %d" % (name, pid), interval=0.01)


def signal_pids(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def free_port(taken):
    """A port free on 127.0.0.1 (probed by bind), not in taken."""
    for _ in range(200):
        # below the kernel's ephemeral range (32768-60999): an outgoing
        # connection (etcd's, libpq's) never holds it when a server binds it
        port = random.randint(20000, 32000)
        if port in taken:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        return port
    raise RuntimeError("no free port found")


def poll_until(fn, timeout, what, interval=0.1):
    """Calls fn until it returns a true value; returns it.  Fails the test
    with `what` (and the last value or exception) after timeout seconds."""
    end = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v
            last = v
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last = "%s: %s" % (type(e).__name__, e)
        if time.monotonic() >= end:
            if callable(what):
                what = what()
            pytest.fail("timed out after %.0f s waiting for %s (last: %r)" % (timeout, what, last))
        time.sleep(interval)


def proc_info(pid):
    """(pid, state, ppid, comm) for messages."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return (pid, None)
    rest = st[st.rindex(")") + 2:].split()
    return (pid, rest[0], int(rest[1]), st[st.index("(") + 1:st.rindex(")")])


def wait_reaped(pids, timeout=30):
    """Waits until the killed pids are gone or zombies (a zombie holds no
    descriptor, so no lock; the agent removes a stale postmaster.pid)."""
    poll_until(lambda: all(proc_state(x) in (None, "Z") for x in pids), timeout,
               lambda: "the killed processes to be reaped: %s (pytest is %d)" % (
                   [proc_info(x) for x in pids], os.getpid()))


def iso_to_epoch(ts):
    """'2024-11-26T07:43:00.123Z' -> seconds since the epoch."""
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc).timestamp()


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- async queries

def _async_wait(conn, deadline):
    while True:
        st = conn.poll()
        if st == psycopg2.extensions.POLL_OK:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer in time")
        if st == psycopg2.extensions.POLL_READ:
            select.select([conn.fileno()], [], [], left)
        elif st == psycopg2.extensions.POLL_WRITE:
            select.select([], [conn.fileno()], [], left)
        else:
            raise psycopg2.OperationalError("bad poll state %r" % st)


# ---------------------------------------------------------------- nodes

class Node:
    def __init__(self, cluster, name, port):
        self.cluster = cluster
        self.name = name
        self.port = port
        self.dir = cluster.base / name
        self.conf = self.dir / "pglease.conf"
        self.log = self.dir / "agent.log"
        self.pidfile = self.dir / "agent.pid"
        self.pgdata = self.dir / "data"
        self.proc = None
        self.agent_pid = None
        self.stopped_pids = []
        self.settings = {}
        self.netns = None        # the network namespace the agent runs in (test_032)

    def __repr__(self):
        return "<Node %s port %d>" % (self.name, self.port)

    # ---- configuration

    def write_conf(self, extra_lines=(), **overrides):
        c = self.cluster
        s = dict(node_name=self.name, lease_db=c.lease_db, pgdata=self.pgdata,
                 pg_port=self.port, advertise_host="127.0.0.1", password_file=c.password_file,
                 pg_socket_dir=self.dir, allowed_network="127.0.0.1/32")
        s.update(c.settings)
        s.update(self.settings)
        s.update(overrides)
        text = "# pglease configuration of %s (written by the integration tests)\n" % self.name
        text += "".join("%s = %s\n" % (k, v) for k, v in s.items())
        text += "".join(line + "\n" for line in extra_lines)
        self.conf.write_text(text)
        chown_pg(self.conf)

    def agent_argv(self, conf=None):
        return ["setsid", "sh", "-c", 'echo $$ > "$1"; exec "$2" run -c "$3"', "sh",
                str(self.pidfile), PGLEASE, str(conf or self.conf)]

    # ---- processes

    def start(self, wait=True):
        """Starts the agent (as postgres when root) in its own session."""
        assert not self.agent_running(), "%s already running" % self.name
        if self.pidfile.exists():
            self.pidfile.unlink()
        logf = open(self.log, "ab")
        logf.write(("\n==== test: starting agent %s at %s ====\n"
                    % (self.name, time.strftime("%H:%M:%S"))).encode())
        logf.flush()
        argv = as_pg(self.agent_argv())
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns] + argv
        self.proc = spawn(argv, stdout=logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=clean_env())
        logf.close()
        self.agent_pid = None
        if wait:
            self.wait_pid()
        self.cluster.sampler_resume(self)
        return self

    def wait_pid(self):
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                txt = self.pidfile.read_text().strip()
                if txt:
                    self.agent_pid = int(txt)
                    return self.agent_pid
            except (FileNotFoundError, ValueError):
                pass
            if self.proc.poll() is not None:
                pytest.fail("agent %s exited at once with %s: %s" % (
                    self.name, self.proc.returncode, self.log_tail(20)))
            time.sleep(0.02)
        pytest.fail("agent %s wrote no pid file in 10 s" % self.name)

    def agent_running(self):
        return bool(self.agent_pid) and pid_alive(self.agent_pid)

    def postmaster_pid(self):
        """The pid in data/postmaster.pid, if that process is alive."""
        try:
            with open(self.pgdata / "postmaster.pid") as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError):
            return None
        if pid_alive(pid) and "postgres" in proc_cmdline(pid):
            return pid
        return None

    def backend_pids(self):
        pm = self.postmaster_pid()
        return children(pm) if pm else []

    def exit_code(self, timeout=30):
        """Waits for the agent wrapper to exit; returns its exit status."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=60, check=True):
        """SIGTERM to the agent; waits for it to exit.  Returns its exit code."""
        if not self.agent_running():
            # Already exited (a SIGTERM sent by the test): its wrapper may not have yet.
            return self.exit_code(timeout=30) if self.proc else None
        os.kill(self.agent_pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while pid_alive(self.agent_pid) and time.monotonic() < end:
            time.sleep(0.05)
        if pid_alive(self.agent_pid):
            if check:
                pytest.fail("agent %s (pid %d) did not stop within %d s after SIGTERM"
                            % (self.name, self.agent_pid, timeout))
            return None
        return self.exit_code()

    def kill9(self, whole=False, backends=False):
        """kill -9 of the agent and the postmaster together; with whole=True
        also every other process of the node (backends, the watchdog)."""
        self.cluster.sampler_pause(self)
        pm = self.postmaster_pid()
        first = [p for p in (self.agent_pid, pm) if p]
        # Stopped processes cannot fork: the set of descendants is then fixed.
        signal_pids(first, signal.SIGSTOP)
        pids = list(first)
        if whole:
            for p in first:
                pids += [d for d in descendants(p) if d not in pids]
        signal_pids(pids, signal.SIGKILL)
        return pids

    def stop_in_write(self, hold_s):
        """Stops the agent inside its next write of its own node record (gdb at
        the rename() that puts the record in place: the new record is written,
        not yet visible) for hold_s seconds, then lets it go on.  Returns the
        gdb Popen (exit 0 once detached) when the agent is stopped there."""
        return self.stop_at(["put_record", "rename"], hold_s, "inside its record write")

    def stop_at(self, functions, hold_s, what):
        """Stops the agent with gdb at the first call of functions[-1] after
        one of each earlier function, for hold_s seconds, then lets it go on.
        Returns the gdb Popen (exit 0 once detached) once the agent is stopped."""
        gdb = shutil.which("gdb")
        if gdb is None:
            pytest.fail("gdb is needed to stop an agent at a given point (scripts/install-deps.sh)")
        cmd = [gdb, "-p", str(self.agent_pid), "-batch", "-nx", "-ex", "set pagination off"]
        for f in functions:
            cmd += ["-ex", "break " + f, "-ex", "continue", "-ex", "delete"]
        cmd += ["-ex", "echo STOPPED-AT-POINT\\n", "-ex", "shell sleep %.2f" % hold_s,
                "-ex", "detach"]
        g = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = []
        end = time.monotonic() + 30
        while time.monotonic() < end:
            line = g.stdout.readline()
            if not line:
                break
            out.append(line)
            if "STOPPED-AT-POINT" in line:
                return g
        g.kill()
        g.wait()
        pytest.fail("gdb did not stop %s's agent %s:\n%s" % (self.name, what, "".join(out[-20:])))

    def sigstop(self, whole=False):
        """SIGSTOP of the agent only, or of every process of the node."""
        pm = self.postmaster_pid()
        pids = [self.agent_pid]
        signal_pids(pids, signal.SIGSTOP)
        if whole:
            if pm:
                signal_pids([pm], signal.SIGSTOP)
                pids.append(pm)
            for p in list(pids):
                for d in descendants(p):
                    if d not in pids:
                        os.kill(d, signal.SIGSTOP)
                        pids.append(d)
        self.stopped_pids = pids
        return pids

    def sigcont(self):
        """SIGCONT in the order stopped: the agent (and its watchdog) first."""
        agent_side = [self.agent_pid] + [p for p in self.stopped_pids
                                         if p != self.agent_pid and "pglease" in proc_cmdline(p)]
        signal_pids(agent_side, signal.SIGCONT)
        signal_pids([p for p in self.stopped_pids if p not in agent_side], signal.SIGCONT)
        self.stopped_pids = []

    # ---- SQL

    def dsn(self, **extra):
        d = dict(host=str(self.dir), port=self.port, user="postgres", dbname="postgres",
                 connect_timeout=5)
        d.update(extra)
        return d

    def connect(self, autocommit=True, timeout=5, options="-c statement_timeout=60000", **extra):
        c = psycopg2.connect(**self.dsn(connect_timeout=timeout, options=options, **extra))
        c.autocommit = autocommit
        return c

    def query(self, sql, params=None, timeout=5):
        c = self.connect(timeout=timeout)
        try:
            with c.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None
        finally:
            c.close()

    def scalar(self, sql, params=None, timeout=5):
        rows = self.query(sql, params, timeout)
        return rows[0][0] if rows else None

    def is_primary(self):
        """True if postgres answers and is out of recovery; None if unreachable."""
        try:
            return bool(self.scalar("SELECT NOT pg_is_in_recovery()", timeout=2))
        except psycopg2.Error:
            return None

    def wal_receiver(self):
        rows = self.query("SELECT status, sender_host, sender_port, received_tli "
                          "FROM pg_stat_wal_receiver")
        return rows[0] if rows else None

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])


# ---------------------------------------------------------------- sampler

class Sampler:
    """Watches invariants 1 and 2 while a test runs.

    One thread per node runs `SELECT NOT pg_is_in_recovery()` every `interval`
    over a persistent (async, time-bounded) connection.  Consecutive "primary"
    answers on one connection prove the server was out of recovery for the
    whole span between them (a server never goes back into recovery without
    a restart, which drops the connection).  A violation is an observation of
    one node as primary that lies inside another node's proven span, or two
    proven spans that overlap: two nodes accepting writes at one instant.
    A lease thread records (term, holder) and checks that the term never
    goes down."""

    def __init__(self, cluster, interval=0.05):
        self.cluster = cluster
        self.interval = interval
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.sessions = {n.name: [] for n in cluster.nodes}  # name -> [[(send, recv, wall)]]
        self.paused = {n.name: threading.Event() for n in cluster.nodes}
        self.lease_history = []  # (mono, wall, term, holder, renewals)
        self.errors = []
        self.threads = []

    def start(self):
        for n in self.cluster.nodes:
            t = threading.Thread(target=self._node_loop, args=(n,), daemon=True,
                                 name="sampler-" + n.name)
            t.start()
            self.threads.append(t)
        t = threading.Thread(target=self._lease_loop, daemon=True, name="sampler-lease")
        t.start()
        self.threads.append(t)
        return self

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=10)

    def pause(self, node):
        self.paused[node.name].set()

    def resume(self, node):
        self.paused[node.name].clear()

    def _node_loop(self, node):
        conn = cur = None
        session = None
        while not self.stop_ev.is_set():
            if self.paused[node.name].is_set():
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                    conn = cur = None
                    session = None
                self.stop_ev.wait(self.interval)
                continue
            send = time.monotonic()
            wall = time.time()
            try:
                if conn is None:
                    if not os.path.exists(os.path.join(node.dir, ".s.PGSQL.%d" % node.port)):
                        raise psycopg2.OperationalError("no socket")
                    conn = psycopg2.connect(async_=True, **node.dsn(connect_timeout=2))
                    _async_wait(conn, time.monotonic() + 1.0)
                    cur = conn.cursor()
                    session = None
                    send = time.monotonic()
                    wall = time.time()
                cur.execute("SELECT NOT pg_is_in_recovery()")
                _async_wait(conn, time.monotonic() + 1.0)
                prim = cur.fetchone()[0]
                recv = time.monotonic()
                if prim:
                    if session is None:
                        session = []
                        with self.lock:
                            self.sessions[node.name].append(session)
                    with self.lock:
                        session.append((send, recv, wall))
                else:
                    session = None
            except Exception:  # noqa: BLE001 - unreachable or frozen: a new connection next time
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                conn = cur = None
                session = None
            self.stop_ev.wait(self.interval)
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def _lease_loop(self):
        last = None
        while not self.stop_ev.is_set():
            try:
                l = self.cluster.lease()
            except Exception:  # noqa: BLE001 - store busy or missing: try again
                l = None
            if l is not None:
                key = (l["term"], l["holder"], l["renewals"])
                if key != last:
                    with self.lock:
                        if self.lease_history and l["term"] < self.lease_history[-1][2]:
                            self.errors.append("term went down: %r -> %r" % (
                                self.lease_history[-1][2:], key))
                        self.lease_history.append((time.monotonic(), time.time()) + key)
                    last = key
            self.stop_ev.wait(self.interval)

    def terms(self):
        with self.lock:
            return [(h[2], h[3]) for h in self.lease_history]

    def first_seen(self, pred):
        """(mono, wall, term, holder, renewals) of the first lease version matching pred."""
        with self.lock:
            for h in self.lease_history:
                if pred(h[2], h[3]):
                    return h
        return None

    def wait_first_seen(self, pred, timeout=5):
        """first_seen(pred), waiting for the lease thread to catch up."""
        return poll_until(lambda: self.first_seen(pred), timeout,
                          "the sampler to record a lease version matching the condition",
                          interval=0.02)

    def primary_observations(self, name):
        with self.lock:
            return [o for s in self.sessions[name] for o in s]

    def violations(self):
        with self.lock:
            spans = {}
            obs = {}
            for name, sess in self.sessions.items():
                spans[name] = [(s[0][1], s[-1][0]) for s in sess if len(s) >= 2
                               and s[0][1] < s[-1][0]]
                obs[name] = [(o[0], o[1], o[2]) for s in sess for o in s]
            out = list(self.errors)
        names = list(self.sessions)
        for x in names:
            for y in names:
                if x == y:
                    continue
                for (a, b) in spans[y]:
                    for (s, r, wall) in obs[x]:
                        if a <= s and r <= b:
                            out.append("two primaries: %s answered 'not in recovery' at %s "
                                       "while %s was out of recovery without a break for "
                                       "%.3f s around it" % (
                                           x, time.strftime("%H:%M:%S", time.localtime(wall))
                                           + ".%03d" % (int(wall * 1000) % 1000), y, b - a))
                            break
                    if x < y:
                        for (c, d) in spans[x]:
                            if c < b and a < d:
                                out.append("two primaries: %s and %s both out of recovery "
                                           "for %.3f s" % (x, y, min(b, d) - max(a, c)))
        return out

    def check(self):
        v = self.violations()
        assert not v, "invariant violated:\n  " + "\n  ".join(sorted(set(v))[:20])


# ---------------------------------------------------------------- cluster

class Cluster:
    """A pglease cluster of n nodes sharing one lease store."""

    def __init__(self, test_name, n=3, tmpfs_size=None, etcd=None, etcd_params=None,
                 **settings):
        short = re.sub(r"[^a-z0-9]+", "", test_name.lower())[:16]
        os.makedirs(WORK, exist_ok=True)
        self.base = Path(tempfile.mkdtemp(prefix="%s-" % short, dir=WORK))
        os.chmod(self.base, 0o755)
        self.test_name = test_name
        self.lease_dir = self.base / "lease"
        self.lease_dir.mkdir()
        self.tmpfs = None
        if tmpfs_size:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0770" % tmpfs_size,
                                "pglease-it", str(self.lease_dir)], capture_output=True, text=True)
            if r.returncode != 0:
                shutil.rmtree(self.base, ignore_errors=True)
                pytest.skip("cannot mount a tmpfs on the store directory: %s" % r.stderr.strip())
            self.tmpfs = self.lease_dir
        os.chmod(self.lease_dir, 0o770)
        chown_pg(self.lease_dir)
        self.lease_db = self.lease_dir / "lease.db"
        self.etcd = etcd
        if etcd is not None:
            # the lease store on etcd: every read goes through the CLI's --json
            self.lease_db = etcd.url("pglease", re.sub(r"[^a-z0-9]+", "", short) or "it",
                                     **(etcd_params or {}))
        self.password_file = self.base / "password"
        self.password_file.write_text("it-%08x%08x\n" % (random.getrandbits(32),
                                                         random.getrandbits(32)))
        os.chmod(self.password_file, 0o640)
        chown_pg(self.password_file)
        self.settings = dict(settings)
        self.nodes = []
        self.sampler = None
        self.extra_pids = []  # helper processes started by a test
        self.extra_procs = []
        for i in range(1, n + 1):
            self.add_node("pg%d" % i)

    def add_node(self, name, ports=None):
        taken = set(ports or ()) | {n.port for n in self.nodes}
        node = Node(self, name, free_port(taken))
        node.dir.mkdir()
        os.chmod(node.dir, 0o700)
        chown_pg(node.dir)
        node.log.touch()
        chown_pg(node.log)
        node.write_conf()
        self.nodes.append(node)
        if self.sampler is not None:
            self.sampler.sessions[name] = []
            self.sampler.paused[name] = threading.Event()
            self.sampler.paused[name].set()   # a late node is not sampled
        return node

    def node(self, name):
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def others(self, node):
        return [n for n in self.nodes if n is not node]

    # ---- sampler hooks

    def start_sampler(self, interval=0.05):
        self.sampler = Sampler(self, interval).start()
        return self.sampler

    def sampler_pause(self, node):
        if self.sampler is not None:
            self.sampler.pause(node)
            time.sleep(3 * self.sampler.interval)  # let the thread drop its connection

    def sampler_resume(self, node):
        if self.sampler is not None and node.name in self.sampler.paused:
            self.sampler.resume(node)

    # ---- the store (read-only)

    def _ro(self):
        c = sqlite3.connect("file:%s?mode=ro" % self.lease_db, uri=True, timeout=5,
                            isolation_level=None)
        c.row_factory = sqlite3.Row
        return c

    def _fix_store_owner(self):
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.lease_db) + suffix)
            try:
                if IS_ROOT and p.stat().st_uid == 0:
                    chown_pg(p)
            except OSError:
                pass

    def store_query(self, sql, params=()):
        c = self._ro()
        try:
            return [dict(r) for r in c.execute(sql, params).fetchall()]
        finally:
            c.close()
            self._fix_store_owner()

    @property
    def nodes_dir(self):
        """The node records: lease.db -> lease.nodes/NAME.json, one per node."""
        return self.lease_dir / "lease.nodes"

    def node_record(self, name):
        try:
            with open(self.nodes_dir / ("%s.json" % name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def write_node_record(self, name, rec):
        """Puts a node record in place by hand (as postgres), as a node would."""
        tmp = self.nodes_dir / (".%s.json.tmp" % name)
        with open(tmp, "w") as f:
            json.dump(rec, f)
        chown_pg(tmp)
        os.rename(tmp, self.nodes_dir / ("%s.json" % name))

    def _cli_json(self, *args):
        r = self.cli(*args, "--lease-db", str(self.lease_db), "--json", timeout=30)
        if r.returncode != 0:
            raise RuntimeError("pglease %s: %s" % (" ".join(args), r.stderr.strip()))
        return json.loads(r.stdout)

    def lease(self):
        """The lease row, with the holder's renewals from its record (as the agents read it)."""
        if self.etcd is not None:
            try:
                return self._cli_json("lease")
            except (RuntimeError, ValueError):
                return None
        rows = self.store_query("SELECT * FROM lease WHERE id = 1")
        if not rows:
            return None
        l = rows[0]
        r = self.node_record(l["holder"]) if l["holder"] else None
        if r and r.get("lease_term") == l["term"] and (r.get("renewals") or 0) > 0:
            l["renewals"], l["renewed_at"] = r["renewals"], r.get("renewed_at")
            l["ttl_ms"] = r.get("ttl_ms") or l["ttl_ms"]
        return l

    def cluster_row(self):
        if self.etcd is not None:
            return self._cli_json("status")["cluster"]
        rows = self.store_query("SELECT * FROM cluster WHERE id = 1")
        return rows[0] if rows else None

    def events(self, kind=None, node=None, term=None):
        if self.etcd is not None:
            evs = self._cli_json("events", "-n", "100000")
            return [e for e in evs if (not kind or e["kind"] == kind) and
                    (not node or e["node"] == node) and (term is None or e["term"] == term)]
        sql, params = "SELECT * FROM events WHERE 1", []
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        if node:
            sql += " AND node = ?"
            params.append(node)
        if term is not None:
            sql += " AND term = ?"
            params.append(term)
        return self.store_query(sql + " ORDER BY id", params)

    def node_rows(self):
        """Every node's record, by name (what `pglease status` reads)."""
        if self.etcd is not None:
            # the record as written: status --json's role and state are status's judgement
            return {n["name"]: dict(n, role=n["reported_role"] or "unknown",
                                    state=n["reported_state"])
                    for n in self._cli_json("status")["nodes"]}
        out = {}
        for f in glob.glob(str(self.nodes_dir / "*.json")):
            name = os.path.basename(f)[:-len(".json")]
            r = self.node_record(name)
            if r is not None:
                out[name] = r
        return out

    def store_write(self, sql, hold_s=0.0, begin="BEGIN IMMEDIATE", ready_timeout=30):
        """Runs sql in one transaction from a separate process (as postgres),
        holding it open for hold_s seconds before committing.  Returns the
        Popen after the transaction has begun (the process prints 'ready')."""
        script = ("import sqlite3, sys, time\n"
                  "c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)\n"
                  "c.execute(sys.argv[3])\n"
                  "if sys.argv[2]: c.execute(sys.argv[2])\n"
                  "print('ready', flush=True)\n"
                  "time.sleep(float(sys.argv[4]))\n"
                  "c.execute('COMMIT')\n"
                  "print('done', flush=True)\n")
        p = spawn(as_pg([sys.executable, "-c", script, self.lease_db, sql, begin,
                                    str(hold_s)]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=clean_env())
        self.extra_procs.append(p)
        r, _, _ = select.select([p.stdout], [], [], ready_timeout)
        line = p.stdout.readline() if r else ""
        if line.strip() != "ready":
            p.kill()
            pytest.fail("store writer did not begin its transaction: %r %s" % (
                line, p.stderr.read() if p.poll() is not None else ""))
        return p

    def cli(self, *args, timeout=30):
        return run_pg([PGLEASE, *args], timeout=timeout)

    # ---- life cycle

    def start(self, nodes=None):
        for n in nodes or self.nodes:
            n.start(wait=False)
        for n in nodes or self.nodes:
            n.wait_pid()
        return self

    def primary(self):
        """The node named by the lease, if it answers as primary."""
        l = self.lease()
        if not l or not l["holder"]:
            return None
        try:
            n = self.node(l["holder"])
        except KeyError:
            return None
        return n if n.is_primary() else None

    def wait_for_primary(self, timeout=120, exclude=(), min_term=None):
        excl = {getattr(x, "name", x) for x in exclude}

        def ok():
            l = self.lease()
            if not l or not l["holder"] or l["holder"] in excl:
                return None
            if min_term is not None and l["term"] < min_term:
                return None
            n = self.node(l["holder"]) if l["holder"] in {x.name for x in self.nodes} else None
            return n if n is not None and n.is_primary() else None
        return poll_until(ok, timeout, "a primary (lease holder out of recovery)%s%s" % (
            " other than %s" % sorted(excl) if excl else "",
            " with term >= %d" % min_term if min_term else ""))

    def wait_for_streaming(self, node, upstream=None, timeout=120):
        """node's WAL receiver streams (from upstream's port, on upstream's
        current timeline: a standby whose history forked off may stream the
        old timeline for an instant before giving up)."""
        def ok():
            r = node.wal_receiver()
            if not r or r[0] != "streaming":
                return None
            if upstream is not None:
                if r[2] != upstream.port:
                    return None
                tli = int(upstream.scalar("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), "
                                          "1, 8)"), 16)
                if r[3] != tli:
                    return None
            return r
        return poll_until(ok, timeout, "%s streaming%s" % (
            node.name, " from %s (port %d)" % (upstream.name, upstream.port) if upstream else ""),
            interval=0.2)

    def wait_for_catchup(self, standby, primary, timeout=120):
        lsn = primary.scalar("SELECT pg_current_wal_lsn()::text")
        poll_until(lambda: standby.scalar(
            "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)), timeout,
            "%s to replay up to %s of %s" % (standby.name, lsn, primary.name), interval=0.2)

    def wait_healthy(self, timeout=180, nodes=None, min_term=None):
        """One primary, every other (running) node streaming from it."""
        p = self.wait_for_primary(timeout, min_term=min_term)
        for n in nodes or self.nodes:
            if n is not p and n.agent_running():
                self.wait_for_streaming(n, p, timeout)
        return p

    # ---- data

    def create_table(self, primary, table="t"):
        primary.query("CREATE TABLE IF NOT EXISTS %s (id int PRIMARY KEY, "
                      "at timestamptz DEFAULT now())" % table)

    def insert(self, node, ids, table="t"):
        c = node.connect()
        try:
            with c.cursor() as cur:
                for i in ids:
                    cur.execute("INSERT INTO %s (id) VALUES (%%s)" % table, (i,))
        finally:
            c.close()

    def keep_writing(self, node, until, start=1):
        """Inserts batches of ids into node until the monotonic time until;
        fails the test as soon as one is refused.  Returns the next id."""
        i = start
        while time.monotonic() < until:
            self.insert(node, range(i, i + 10))
            i += 10
            time.sleep(0.2)
        return i

    def ids(self, node, table="t"):
        return {r[0] for r in node.query("SELECT id FROM %s" % table)}

    # ---- teardown

    def teardown(self, failed):
        if self.sampler is not None:
            self.sampler.stop()
        for p in self.extra_procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        signal_pids([p for p in self.extra_pids if pid_alive(p)], signal.SIGKILL)
        for n in self.nodes:
            if n.stopped_pids:
                n.sigcont()
        running = [n for n in self.nodes if n.agent_running()]
        for n in running:
            os.kill(n.agent_pid, signal.SIGCONT)
            os.kill(n.agent_pid, signal.SIGTERM)
        end = time.monotonic() + 30
        while any(pid_alive(n.agent_pid) for n in running) and time.monotonic() < end:
            time.sleep(0.1)
        for n in running:
            if pid_alive(n.agent_pid):
                print("teardown: agent %s did not stop within 30 s; SIGKILL" % n.name)
                n.kill9(whole=True)
        time.sleep(0.2)
        for n in self.nodes:
            pm = n.postmaster_pid()
            if pm:
                pids = [pm] + descendants(pm)
                print("teardown: postmaster of %s (pid %d) still running; SIGKILL" % (n.name, pm))
                signal_pids(pids, signal.SIGKILL)
            if n.proc is not None:
                try:
                    n.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        if failed or os.environ.get("PGLEASE_IT_KEEP"):
            self.report(verbose=failed)
        if self.tmpfs:
            for _ in range(50):
                r = subprocess.run(["umount", str(self.tmpfs)], capture_output=True, text=True)
                if r.returncode == 0:
                    break
                time.sleep(0.2)
            else:
                print("teardown: umount %s failed: %s" % (self.tmpfs, r.stderr))
        shutil.rmtree(self.base, ignore_errors=True)

    def report(self, verbose=True):
        dest = Path(ARTIFACTS) / (self.test_name + time.strftime("-%H%M%S"))
        try:
            dest.mkdir(parents=True, exist_ok=True)
            for n in self.nodes:
                if n.log.exists():
                    shutil.copy(n.log, dest / ("%s-agent.log" % n.name))
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(self.lease_db) + suffix)
                if p.exists():
                    shutil.copy(p, dest / p.name)
        except OSError as e:
            print("cannot keep artifacts: %s" % e)
        print("\n======== artifacts kept in %s" % dest)
        if not verbose:
            return
        for n in self.nodes:
            print("\n======== %s (port %d) agent.log, last 60 lines" % (n.name, n.port))
            print(n.log_tail(60))
        print("\n======== events")
        try:
            for e in self.events():
                print("%4d %s term %-3s %-6s %-13s %s" % (e["id"], e["at"], e["term"], e["node"],
                                                         e["kind"], e["detail"]))
            print("lease:", self.lease())
        except Exception as e:  # noqa: BLE001
            print("cannot read the store: %s" % e)
        if self.sampler is not None:
            print("lease history (term, holder):", _compress(self.sampler.terms()))


def _compress(seq):
    out = []
    for x in seq:
        if not out or out[-1] != x:
            out.append(x)
    return out


# ---------------------------------------------------------------- fixtures

@pytest.fixture(autouse=True)
def _test_timeout(request):
    """Aborts a test that runs longer than TEST_TIMEOUT (raised in the main thread)."""
    def on_alarm(signum, frame):
        raise TimeoutError("test exceeded %d s (PGLEASE_IT_TIMEOUT)" % TEST_TIMEOUT)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def make_cluster(request):
    """make_cluster(n=3, **settings) -> Cluster (not started)."""
    made = []

    def make(n=3, tmpfs_size=None, **settings):
        c = Cluster(request.node.name, n, tmpfs_size=tmpfs_size, **settings)
        made.append(c)
        return c
    yield make
    rep = getattr(request.node, "rep_call", None)
    failed = rep is None or rep.failed
    for c in made:
        try:
            if not failed and c.sampler is not None:
                c.sampler.stop()
                c.sampler.check()
        finally:
            c.teardown(failed)


@pytest.fixture
def etcd_cluster():
    """A 3-member etcd cluster on loopback ports of its own (skipped without etcd)."""
    from etcdharness import EtcdCluster, available
    if not available():
        pytest.skip("etcd and etcdctl are not installed (scripts/install-deps.sh)")
    ports = []
    for _ in range(6):
        ports.append(free_port(set(ports)))
    base = Path(tempfile.mkdtemp(prefix="etcd-", dir=WORK))
    e = EtcdCluster(base, ports)
    try:
        e.start()
        yield e
    finally:
        e.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def etcd_tls():
    """(etcd, certs): a 3-member etcd on loopback serving https only to clients
    with a certificate signed by a test CA (openssl); the files are postgres's."""
    from etcdharness import EtcdCluster, available, make_certs
    if not available() or shutil.which("openssl") is None:
        pytest.skip("etcd, etcdctl and openssl are needed (scripts/install-deps.sh)")
    d = Path(tempfile.mkdtemp(prefix="etcd-tls-", dir=WORK))
    os.chmod(d, 0o755)
    e = None
    try:
        certs = make_certs(d)
        for f in d.iterdir():
            chown_pg(f)
            os.chmod(f, 0o640)
        ports = []
        for _ in range(6):
            ports.append(free_port(set(ports)))
        e = EtcdCluster(d / "etcd", ports, tls=certs)
        e.start()
        yield e, certs
    finally:
        if e is not None:
            e.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def netns_etcd():
    """(lab, etcd): a network-namespace lab (netns.py) and a 3-member etcd
    cluster, each member on a lab host of its own (e1, e2, e3)."""
    from etcdharness import EtcdCluster, available
    from netns import Lab
    require_root()
    if not available():
        pytest.skip("etcd and etcdctl are not installed (scripts/install-deps.sh)")
    lab = Lab()
    base = Path(tempfile.mkdtemp(prefix="etcd-", dir=WORK))
    e = None
    try:
        for m in ("e1", "e2", "e3"):
            lab.add_host(m)
        e = EtcdCluster(base, [2379, 2380] * 3, hosts=[lab.addr(m) for m in ("e1", "e2", "e3")],
                        netns=[lab.ns(m) for m in ("e1", "e2", "e3")])
        e.start()
        yield lab, e
    finally:
        if e is not None:
            e.stop()
        lab.destroy()
        shutil.rmtree(base, ignore_errors=True)


def place_in_lab(c, lab):
    """Puts each node of c (not started) on a lab host of its own name."""
    for n in c.nodes:
        ns, addr = lab.add_host(n.name)
        n.netns = ns
        n.settings.update(advertise_host=addr, allowed_network=lab.subnet)
        n.write_conf()


def started_lab_cluster(make_cluster, lab, etcd, n=3, sampler=True, **settings):
    """As started_cluster, on etcd, each node on a lab host of its own."""
    c = make_cluster(n, etcd=etcd, **settings)
    place_in_lab(c, lab)
    c.start()
    p = c.wait_healthy(timeout=240)
    c.create_table(p)
    if sampler:
        c.start_sampler()
    return c, p


def started_cluster(make_cluster, n=3, sampler=True, **settings):
    """A cluster bootstrapped, healthy, with a table t; returns (cluster, primary)."""
    c = make_cluster(n, **settings)
    c.start()
    p = c.wait_healthy(timeout=240)
    c.create_table(p)
    if sampler:
        c.start_sampler()
    return c, p


def first_write(candidates, row_id, timeout, table="t"):
    """Tries an INSERT of row_id on every candidate until one commits; returns
    (node, monotonic time of the commit)."""
    def attempt():
        for n in candidates:
            try:
                conn = n.connect(timeout=1)
            except psycopg2.Error:
                continue
            try:
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO %s (id) VALUES (%%s)" % table, (row_id,))
                return n, time.monotonic()
            except psycopg2.Error:
                pass
            finally:
                conn.close()
        return None
    return poll_until(attempt, timeout, "a node to accept a write", interval=0.05)


def require_root():
    if not IS_ROOT:
        pytest.skip("needs root")


def wait_fenced(node, timeout, what=None):
    """Waits until node's postgres no longer accepts writes (unreachable or in recovery)."""
    return poll_until(lambda: not node.is_primary(), timeout,
                      what or "%s to stop accepting writes (fenced)" % node.name, interval=0.05)


def assert_never_primary_on_old_term(c, node, old_term):
    """The node, once fenced from old_term, only ever was primary again under a
    newer term it acquired itself."""
    fenced = [e for e in c.events("fenced", node=node.name) if e["term"] == old_term]
    since = iso_to_epoch(fenced[0]["at"]) if fenced else None
    l = c.lease()
    assert l["term"] >= old_term
    if since is None:
        return
    obs = [o for o in c.sampler.primary_observations(node.name) if o[2] > since + 0.5]
    if obs:
        acq = [e for e in c.events("acquired", node=node.name) if e["term"] > old_term]
        assert acq, ("%s answered as primary at %s after it was fenced from term %d, but it "
                     "never acquired a newer term" % (node.name, time.ctime(obs[0][2]), old_term))
        first_acq = min(iso_to_epoch(e["at"]) for e in acq)
        early = [o for o in obs if o[2] < first_acq - 0.2]
        assert not early, ("%s answered as primary after its fence (term %d) and before it "
                           "acquired term %d" % (node.name, old_term, acq[0]["term"]))
