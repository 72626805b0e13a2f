"""A real etcd cluster for the integration tests (Debian's etcd-server).

EtcdCluster(base, n=3, host="127.0.0.1") starts n members, each on its own
client and peer port (or, in the network-namespace tests, each on its own
address inside a namespace: pass `netns` and `hosts`).  Members can be
killed, stopped and started again; the leader can be moved; authentication
can be turned on.  etcdctl (etcd-client) does the administrative calls.
"""
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


def available():
    return os.access(ETCD, os.X_OK) and os.access(ETCDCTL, os.X_OK)


class Member:
    def __init__(self, cluster, i, host, client_port, peer_port, netns=None):
        self.cluster = cluster
        self.name = "e%d" % i
        self.host = host
        self.client_port = client_port
        self.peer_port = peer_port
        self.netns = netns
        self.dir = cluster.base / self.name
        self.proc = None

    @property
    def client_url(self):
        return "%s://%s:%d" % ("https" if self.cluster.tls else "http", self.host,
                               self.client_port)

    @property
    def peer_url(self):
        return "http://%s:%d" % (self.host, self.peer_port)

    def argv(self, state):
        a = [ETCD, "--name", self.name, "--data-dir", str(self.dir / "data"),
             "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
             "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
             "--initial-cluster", self.cluster.initial_cluster, "--initial-cluster-state", state,
             "--initial-cluster-token", self.cluster.token,
             "--heartbeat-interval", "100", "--election-timeout", "1000"]
        t = self.cluster.tls
        if t:
            a += ["--cert-file", t["server_cert"], "--key-file", t["server_key"],
                  "--trusted-ca-file", t["ca"], "--client-cert-auth"]
        if self.netns:
            a = ["ip", "netns", "exec", self.netns] + a
        return a

    def start(self, state="new"):
        assert self.proc is None or self.proc.poll() is not None
        self.dir.mkdir(exist_ok=True)
        log = open(self.dir / "etcd.log", "ab")
        self.proc = subprocess.Popen(self.argv(state), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.running():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self):
        if self.running():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, n=30):
        try:
            return "\n".join((self.dir / "etcd.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class EtcdCluster:
    def __init__(self, base, ports, n=3, hosts=None, netns=None, tls=None):
        """ports: 2*n free ports; hosts/netns: per member (default loopback, no
        namespace); tls: make_certs()'s files: clients must then present a
        certificate signed by the CA."""
        self.tls = tls
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.token = "pglease-it-%d" % os.getpid()
        self.members = []
        for i in range(n):
            h = hosts[i] if hosts else "127.0.0.1"
            ns = netns[i] if netns else None
            self.members.append(Member(self, i + 1, h, ports[2 * i], ports[2 * i + 1], ns))
        self.initial_cluster = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)
        self.root_password = None

    @property
    def endpoints(self):
        return ",".join("%s:%d" % (m.host, m.client_port) for m in self.members)

    def url(self, prefix="pglease", cluster="it", **params):
        q = "&".join("%s=%s" % kv for kv in params.items())
        return "etcd://%s/%s/%s%s" % (self.endpoints, prefix, cluster, "?" + q if q else "")

    def start(self, timeout=60):
        for m in self.members:
            m.start()
        self.wait_healthy(timeout)
        return self

    def ctl(self, *args, timeout=15, endpoints=None, user=None, check=True):
        argv = [ETCDCTL, "--endpoints", endpoints or ",".join(
            m.client_url for m in self.members if m.running()), "--dial-timeout", "2s",
            "--command-timeout", "5s"]
        if self.tls:
            argv += ["--cacert", self.tls["ca"], "--cert", self.tls["client_cert"],
                     "--key", self.tls["client_key"]]
        if user:
            argv += ["--user", user]
        elif self.root_password:
            argv += ["--user", "root:%s" % self.root_password]
        env = dict(os.environ, ETCDCTL_API="3")
        r = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=timeout,
                           env=env)
        if check and r.returncode != 0:
            raise RuntimeError("etcdctl %s: %s" % (" ".join(args), r.stderr.strip()))
        return r

    def status(self):
        """{member name: {"leader": bool, ...}} for the running members."""
        r = self.ctl("endpoint", "status", "-w", "json", check=False)
        out = {}
        try:
            for s in json.loads(r.stdout or "[]"):
                ep = s["Endpoint"]
                m = next(m for m in self.members if m.client_url == ep)
                st = s["Status"]
                out[m.name] = dict(leader=st["leader"] == st["header"]["member_id"],
                                   member_id=st["header"]["member_id"])
        except (ValueError, KeyError, StopIteration):
            pass
        return out

    def leader(self):
        for name, s in self.status().items():
            if s["leader"]:
                return next(m for m in self.members if m.name == name)
        return None

    def wait_healthy(self, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.leader() is not None:
                r = self.ctl("endpoint", "health", check=False)
                if r.returncode == 0:
                    return
            time.sleep(0.2)
        raise AssertionError("etcd did not become healthy in %d s:\n%s" % (
            timeout, "\n".join(m.log_tail() for m in self.members)))

    def move_leader(self, to):
        """Moves the leadership to member `to` (etcdctl move-leader against the leader)."""
        ld = self.leader()
        assert ld is not None, "no etcd leader"
        target = self.status()[to.name]["member_id"]
        self.ctl("move-leader", "%x" % target, endpoints=ld.client_url)

    def enable_auth(self, user, password):
        """Creates root and user (read-write on every key), then turns auth on."""
        self.root_password = None
        root_pw = "root-%d" % os.getpid()
        self.ctl("user", "add", "root:%s" % root_pw)
        self.ctl("user", "add", "%s:%s" % (user, password))
        self.ctl("role", "add", "pglease")
        self.ctl("role", "grant-permission", "pglease", "--prefix=true", "readwrite", "/")
        self.ctl("user", "grant-role", user, "pglease")
        self.ctl("user", "grant-role", "root", "root")
        self.ctl("auth", "enable")
        self.root_password = root_pw

    def stop(self):
        for m in self.members:
            m.stop()


def make_certs(d, ip="127.0.0.1"):
    """A CA, a server certificate for ip and a client certificate, with
    openssl, in directory d: {"ca", "server_cert", "server_key", "client_cert",
    "client_key"} (paths)."""
    d = Path(d)

    def run(*args):
        r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60,
                           cwd=str(d))
        if r.returncode != 0:
            raise RuntimeError("openssl %s: %s" % (" ".join(args), r.stderr.strip()))

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=pglease-test-ca", "-keyout", "ca.key", "-out", "ca.pem")
    (d / "server.ext").write_text("subjectAltName=IP:%s\n" % ip)
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % who, "-keyout",
            who + ".key", "-out", who + ".csr")
        run("x509", "-req", "-in", who + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", who + ".ext", "-out", who + ".pem")
    return dict(ca=str(d / "ca.pem"), server_cert=str(d / "server.pem"),
                server_key=str(d / "server.key"), client_cert=str(d / "client.pem"),
                client_key=str(d / "client.key"))
