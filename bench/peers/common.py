"""common.py — what every system driver of the peer failover benchmark shares.

A driver (sys_<name>.py) subclasses System and builds a 3-node PostgreSQL 15
cluster on 127.0.0.1 under /var/tmp/pglease-peers-<name>.XXXX, with its own
manager, its own ports (15000-15499: below Linux's ephemeral range and the
integration tests' 20000-32000) and the postgres OS user.  The runner
(bench/peers/run) only uses the interface of System:

    s = Driver(variant)          # "default" or "fast"
    s.setup()                    # cluster up: one primary, 2 streaming standbys
    s.ports                      # [port of node 0, 1, 2]
    s.primary()                  # index of the node that is not in recovery
    s.upstream(i)                # port node i streams from, or None
    s.kill_primary()             # kill -9 the manager and postgres of the primary
    s.stop_primary()             # the system's own clean stop of the primary
    s.start_node(i)              # start node i again (the system's own way)
    s.freeze_manager(i, on)      # SIGSTOP / SIGCONT the manager of node i
    s.manager_pids(i)            # the manager's processes (idle cost)
    s.teardown()                 # stop everything started, remove the dir

Every process a driver starts is a descendant of the runner: the runner is
a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so daemons that double-fork
(pg_ctl's postmaster) are re-parented to it, and teardown() can end whatever
is left by pid, never by name.
"""
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The /proc helpers bench/ already has (bench/benchlib.py); alive() is ours:
# unlike benchlib's it does not count a zombie as alive.
from benchlib import (reap, children, descendants, parent, comm, cpu_ticks,  # noqa: E402,F401
                      pss_kib, TICK)

PGBIN = "/usr/lib/postgresql/15/bin"
HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
BENCH_USER, BENCH_PASSWORD = "bench", "bench"


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# Orphans re-parented to the runner (never its own Popen children, which are
# runuser, the probe, shells and make): reaped at once, as init would, so that a
# killed postmaster does not linger as a zombie whose pid still "exists" (a
# restarted postgres then refuses to start: "lock file ... already exists").
ORPHAN_COMMS = ("postgres", "postmaster", "pglease", "repmgr", "patroni", "pg_autoctl",
                "etcd", "pg_ctl", "pg_basebackup", "pg_rewind")


def _reap_orphans():
    me = os.getpid()
    while True:
        for z in children(me):
            try:
                with open("/proc/%d/stat" % z) as f:
                    st = f.read()
            except OSError:
                continue
            comm = st[st.index("(") + 1:st.rindex(")")]
            if st.rsplit(")", 1)[1].split()[0] == "Z" and comm.startswith(ORPHAN_COMMS):
                try:
                    os.waitpid(z, os.WNOHANG)
                except ChildProcessError:
                    pass
        time.sleep(0.05)


def become_subreaper():
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER
    import threading
    threading.Thread(target=_reap_orphans, daemon=True).start()


def alive(pid):
    reap()
    if not pid or not os.path.exists("/proc/%d" % pid):
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def signal_pids(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def end_pids(pids, grace=10.0):
    """SIGTERM the given pids, then SIGKILL what is left after grace seconds."""
    pids = [p for p in pids if alive(p)]
    signal_pids(pids, signal.SIGCONT)
    signal_pids(pids, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.1)
    signal_pids([p for p in pids if alive(p)], signal.SIGKILL)
    end = time.monotonic() + 5
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.05)


def thaw_parents(pids):
    """SIGCONT to the runuser above each pid: runuser stops itself when its
    child stops (job control, as su does) and waits for a SIGCONT that a
    thawed child does not send; a stopped runuser would never reap the
    manager when it exits later."""
    ups = {parent(p) for p in pids} - set(pids) - {None, 1, os.getpid()}
    signal_pids([u for u in ups if comm(u) == "runuser"], signal.SIGCONT)


def wait_until(fn, timeout, interval=0.1, what="condition"):
    end = time.monotonic() + timeout
    while True:
        try:
            r = fn()
        except Exception:
            r = None
        if r:
            return r
        if time.monotonic() >= end:
            raise TimeoutError("%s not reached within %.0f s" % (what, timeout))
        time.sleep(interval)


def as_pg(args, env=None, **kw):
    """Runs args as the postgres OS user, waits, raises on failure."""
    r = subprocess.run(["runuser", "-u", "postgres", "--"] + list(args), env=env,
                       capture_output=True, text=True, cwd="/tmp", **kw)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s%s" % (" ".join(args), r.returncode,
                                                     r.stdout[-2000:], r.stderr[-2000:]))
    return r.stdout


def spawn_pg(args, logfile, env=None):
    """Starts a long-running process as the postgres user in its own session;
    returns its pid (runuser execs nothing: the pid is runuser's, whose only
    child is the program; manager_pids() of drivers look below it)."""
    f = open(logfile, "ab")
    p = subprocess.Popen(["runuser", "-u", "postgres", "--", "setsid"] + list(args),
                         stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env=env, start_new_session=True, cwd="/tmp")
    f.close()
    return p


def conninfo(port, user=BENCH_USER, password=BENCH_PASSWORD, timeout=2, dbname="postgres"):
    s = "host=127.0.0.1 port=%d user=%s dbname=%s connect_timeout=%d" % (port, user, dbname,
                                                                        timeout)
    if password:
        s += " password=%s" % password
    return s


def q(port, sql, args=None, user=BENCH_USER, password=BENCH_PASSWORD, timeout=2,
      dbname="postgres", host="127.0.0.1", fetch=True):
    c = psycopg2.connect(host=host, port=port, user=user, password=password or None,
                         dbname=dbname, connect_timeout=timeout,
                         options="-c statement_timeout=%d" % (timeout * 1000))
    try:
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if fetch and cur.description else None
    finally:
        c.close()


def pg_conf_common(port, sockdir):
    """postgresql.conf lines every system gets (they only touch what the
    system's docs ask for on top)."""
    return {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": "'%s'" % sockdir,
        "logging_collector": "on",
        "log_directory": "'log'",
        "max_connections": "50",
        "shared_buffers": "32MB",
    }


class System:
    name = "?"
    n = 3

    def __init__(self, variant="default"):
        if variant not in ("default", "fast"):
            raise ValueError("variant must be default or fast")
        self.variant = variant
        self.ports = []
        self.base = tempfile.mkdtemp(prefix="pglease-peers-%s." % self.name, dir="/var/tmp")
        os.chmod(self.base, 0o755)
        shutil.chown(self.base, "postgres", "postgres")
        self.procs = {}          # node index -> Popen of its manager
        self.extra = []          # other Popen we started (etcd, monitor)

    # ---- queries every driver can use (TCP, as the bench role)

    def is_primary(self, i):
        try:
            return q(self.ports[i], "SELECT NOT pg_is_in_recovery()", timeout=1)[0][0]
        except Exception:
            return None

    def primary(self):
        ps = [i for i in range(self.n) if self.is_primary(i)]
        return ps[0] if len(ps) == 1 else None

    def upstream(self, i):
        """Port node i streams WAL from (status streaming), else None."""
        try:
            r = q(self.ports[i], "SELECT status, sender_port FROM pg_stat_wal_receiver",
                  timeout=1)
        except Exception:
            return None
        return r[0][1] if r and r[0][0] == "streaming" else None

    def healthy(self):
        p = self.primary()
        if p is None:
            return None
        ok = all(self.upstream(i) == self.ports[p] for i in range(self.n) if i != p)
        return ok and p is not None and (p,)

    def wait_healthy(self, timeout=180):
        return wait_until(self.healthy, timeout, 0.2, "%s healthy" % self.name)[0]

    def create_bench_role(self, admin_port, **kw):
        """The probe's role and table, created on the primary (replicated)."""
        q(admin_port, "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='bench') "
          "THEN CREATE ROLE bench LOGIN PASSWORD 'bench'; END IF; END$$", **kw)
        q(admin_port, "GRANT pg_monitor TO bench", **kw)
        q(admin_port, "CREATE TABLE IF NOT EXISTS bench_probe (id bigint, src text, "
          "at timestamptz DEFAULT clock_timestamp())", **kw)
        q(admin_port, "GRANT ALL ON bench_probe TO bench", **kw)

    # ---- to be provided by the drivers

    def setup(self):
        raise NotImplementedError

    def manager_pids(self, i):
        raise NotImplementedError

    def postmaster_pid(self, i):
        try:
            with open(os.path.join(self.pgdata(i), "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def pgdata(self, i):
        raise NotImplementedError

    def kill_node(self, i):
        pids = self.manager_pids(i) + [self.postmaster_pid(i)]
        signal_pids([p for p in pids if p], signal.SIGKILL)

    def kill_primary(self):
        p = self.primary()
        self.kill_node(p)
        return p

    def freeze_manager(self, i, on=True):
        pids = self.manager_pids(i)
        signal_pids(pids, signal.SIGSTOP if on else signal.SIGCONT)
        if not on:
            thaw_parents(pids)

    def teardown(self):
        """Stops every process started under this system (by pid), removes its dir."""
        for i in range(self.n):
            signal_pids(self.manager_pids(i), signal.SIGCONT)
            thaw_parents(self.manager_pids(i))
        self.stop_all()
        mine = descendants(os.getpid())
        left = [p for p in mine if self.base in cmdline(p) or
                any(str(port) in cmdline(p) for port in self.ports)]
        if left:
            end_pids(left)
        for i in range(self.n):
            pm = self.postmaster_pid(i)
            if pm and alive(pm):
                end_pids([pm])
        if not os.environ.get("PEERS_KEEP"):
            shutil.rmtree(self.base, ignore_errors=True)

    def stop_all(self):
        raise NotImplementedError


def initdb(pgdata, extra_conf, hba_trust=True):
    """initdb as postgres (trust on the socket and 127.0.0.1), then append
    extra_conf (a dict) to postgresql.conf."""
    as_pg([PGBIN + "/initdb", "-D", pgdata, "-U", "postgres", "--auth=trust",
           "--no-instructions"])
    append_conf(pgdata, extra_conf)


def append_conf(pgdata, conf, fname="postgresql.conf"):
    path = os.path.join(pgdata, fname)
    with open(path, "a") as f:
        f.write("\n# bench/peers\n")
        for k, v in conf.items():
            f.write("%s = %s\n" % (k, v))


def pg_ctl(pgdata, action, *extra):
    return as_pg([PGBIN + "/pg_ctl", "-D", pgdata, "-w", "-t", "120", action] + list(extra))


def pids_named(root_pids, names):
    """root_pids and their descendants whose comm starts with one of names."""
    out = []
    for r in root_pids:
        if not r or not alive(r):
            continue
        for p in [r] + descendants(r):
            c = comm(p)
            if c and any(c.startswith(n) for n in names) and p not in out:
                out.append(p)
    return out
