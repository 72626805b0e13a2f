"""benchlib.py — a local 3-node pglease cluster for the bench/ scripts.

Wraps scripts/local-cluster.sh (agents as the postgres user, ports from
PGLEASE_BASE_PORT) in a private directory under /var/tmp, and gives what the
benchmarks read: the lease holder, node health, a node's agent and postmaster
pids, the agent's processes (itself, its fence watchdog, its holder watch),
their CPU time and PSS.  Only processes this cluster started are signalled,
by pid.
"""
import ctypes
import glob
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LC = os.path.join(TOP, "scripts", "local-cluster.sh")
TICK = os.sysconf("SC_CLK_TCK")


def die(msg):
    print("%s: %s" % (os.path.basename(sys.argv[0]), msg), file=sys.stderr)
    sys.exit(1)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def p95(xs):
    """The nearest-rank 95th percentile."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[max(0, -(-95 * len(s) // 100) - 1)]


class Cluster:
    def __init__(self, n=3, base_port=55431, **settings):
        if os.geteuid() != 0:
            die("run as root (agents and postgres run as the postgres user)")
        # Agents started through setsid are orphans: become their reaper, so that
        # a killed agent is gone (not a zombie) when local-cluster.sh looks.
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER
        subprocess.run(["make", "-s", "-C", TOP, "pglease"], check=True,
                       stdout=subprocess.DEVNULL)
        self.base = tempfile.mkdtemp(prefix="pglease-bench.", dir="/var/tmp")
        shutil.chown(self.base, "postgres")
        self.dir = os.path.join(self.base, "c")
        self.n = n
        self.base_port = base_port
        self.env = dict(os.environ, PGLEASE_CLUSTER_DIR=self.dir,
                        PGLEASE_BASE_PORT=str(base_port))
        for k, v in settings.items():
            self.env["PGLEASE_" + k.upper()] = str(v)
        self.names = ["pg%d" % i for i in range(1, n + 1)]

    # ---- life cycle

    def lc(self, *args):
        return subprocess.run([LC, *args], env=self.env, check=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def start(self):
        self.lc("start", str(self.n))

    def start_node(self, name):
        """Starts name's agent again; dies unless a new agent process runs."""
        old = self.agent_pid(name)
        if old and alive(old):
            die("%s: the old agent (pid %d) is still there" % (name, old))
        r = subprocess.run([LC, "start-node", name], env=self.env, capture_output=True,
                           text=True)
        new = self.agent_pid(name)
        if r.returncode != 0 or not new or new == old or not alive(new):
            die("%s did not start again (pid %s -> %s): %s%s" % (
                name, old, new, r.stdout.strip(), r.stderr.strip()))

    def destroy(self):
        if os.environ.get("BENCH_KEEP"):
            print("kept (BENCH_KEEP): %s" % self.dir, file=sys.stderr)
            return
        try:
            self.lc("stop")
        except subprocess.CalledProcessError:
            for n in self.names:
                try:
                    self.lc("kill", n)
                except subprocess.CalledProcessError:
                    pass
        shutil.rmtree(self.base, ignore_errors=True)

    # ---- what the store says

    def query(self, sql):
        path = os.path.join(self.dir, "lease", "lease.db")
        try:
            c = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=1)
            try:
                return c.execute(sql).fetchall()
            finally:
                c.close()
        except sqlite3.Error:
            return []

    def holder(self):
        r = self.query("SELECT holder, term FROM lease")
        return (r[0][0], r[0][1]) if r and r[0][0] else (None, r[0][1] if r else 0)

    def healthy(self):
        h, _ = self.holder()
        if h is None:
            return False
        following = 0
        for f in glob.glob(os.path.join(self.dir, "lease", "lease.nodes", "*.json")):
            try:
                with open(f) as fh:
                    r = json.load(fh)
            except (OSError, ValueError):
                continue
            following += (r.get("role") == "standby" and r.get("state") == "streaming" and
                          r.get("upstream") == h)
        return following == self.n - 1 and self.is_primary(h)

    def wait_healthy(self, timeout=120):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.healthy():
                return self.holder()
            time.sleep(0.1)
        die("the cluster did not become healthy within %d s" % timeout)

    # ---- nodes

    def node_dir(self, name):
        return os.path.join(self.dir, "nodes", name)

    def port(self, name):
        return self.base_port + int(name[2:]) - 1

    def dsn(self, name, timeout=1):
        return ("host=%s port=%d user=postgres dbname=postgres connect_timeout=%d"
                % (self.node_dir(name), self.port(name), timeout))

    def psql(self, name, sql):
        r = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-At",
                            "-h", self.node_dir(name), "-p", str(self.port(name)),
                            "-U", "postgres", "-d", "postgres", "-c", sql],
                           capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    def is_primary(self, name):
        return self.psql(name, "SELECT NOT pg_is_in_recovery()") == "t"

    def agent_pid(self, name):
        try:
            with open(os.path.join(self.node_dir(name), "agent.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def postmaster_pid(self, name):
        try:
            with open(os.path.join(self.node_dir(name), "data", "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def log(self, name):
        try:
            with open(os.path.join(self.node_dir(name), "agent.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def agent_procs(self, name):
        """The agent and its own helper processes (not postgres)."""
        root = self.agent_pid(name)
        return [p for p in [root] + descendants(root) if p and comm(p).startswith("pglease")]


def reap():
    """Collects every exited child (this process is the cluster's subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def alive(pid):
    """pid exists, even as a zombie (reaping this process's own first):
    local-cluster.sh takes a zombie agent for a running one."""
    reap()
    return os.path.exists("/proc/%d" % pid)


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def descendants(pid):
    out, todo = [], [pid] if pid else []
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def parent(pid):
    """pid's parent pid, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def cpu_ticks(pid):
    """utime + stime of pid (and of its reaped children: cutime + cstime)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15])
    except (OSError, IndexError, ValueError):
        return 0


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            m = re.search(r"^Pss:\s+(\d+) kB", f.read(), re.M)
            return int(m.group(1)) if m else 0
    except OSError:
        return 0


def log_time(line):
    """Epoch seconds of an agent log line (2026-12-02T10:36:47.496Z ...)."""
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z", line)
    if not m:
        return None
    y, mo, d, h, mi, s, ms = (int(x) for x in m.groups())
    import calendar
    return calendar.timegm((y, mo, d, h, mi, s)) + ms / 1000.0
