"""docker-compose.etcd.yml, the multi-host shape: three etcd containers, three
PostgreSQL containers with no shared volume (the lease on etcd), HAProxy.
Taken through, in order: bootstrap; etcd refusing a client without a
certificate of the example's CA, or over plain http (TLS with client
certificates on the client and peer ports); docker kill of the primary (etcd's TTL
decides: no proof of death across hosts) and its return as a standby;
docker stop of the next primary (released at once); the primary's container
cut off from the network (it fences, a standby takes over, it rejoins when
reconnected); one etcd container killed (no failover).  A sampler of every
node checks throughout that two primaries never overlap."""
import json
import os
import shutil
import tempfile
import time

import pytest

from conftest import (FAILOVER_TIMEOUT, REJOIN_TIMEOUT, ROOT, SERVICES, UP_TIMEOUT, Cluster,
                      Sampler, Writers, measure, poll, sh)

COMPOSE_ETCD = str(ROOT / "docker-compose.etcd.yml")
ETCDS = ("etcd1", "etcd2", "etcd3")


class EtcdCompose(Cluster):
    """A compose project of docker-compose.etcd.yml; the store read through the CLI."""

    def __init__(self, label):
        self.secret_dir = tempfile.mkdtemp(prefix="pglease-etcd-secret.", dir="/var/tmp")
        secret = os.path.join(self.secret_dir, "replication-password")
        with open(secret, "w") as f:
            f.write(os.urandom(18).hex() + "\n")
        os.chmod(secret, 0o644)
        os.chmod(self.secret_dir, 0o755)
        super().__init__(label, env=dict(PGLEASE_SECRET_FILE=secret,
                                         PGLEASE_CLUSTER_NAME="it"))

    def compose(self, *args, timeout=180, check=True):
        return sh(["docker-compose", "-f", COMPOSE_ETCD, "-p", self.project] + list(args),
                  timeout=timeout, check=check, env=self.env)

    def down(self):
        super().down()
        shutil.rmtree(self.secret_dir, ignore_errors=True)

    def cli_json(self, *args):
        """`pglease ARGS --json` in the first running node (it reads etcd)."""
        for s in SERVICES:
            if self.running(s):
                p = self.pglease(s, *args, "--json")
                if p.returncode == 0:
                    return json.loads(p.stdout)
        raise AssertionError("pglease %s: no node could read etcd" % " ".join(args))

    def lease(self):
        return self.cli_json("lease")

    def events(self, after=0):
        return [e for e in self.cli_json("events", "-n", "100000") if e["id"] > after]

    def healthy(self, services=SERVICES, primary=None):
        roles = self.roles(services)
        prims = [s for s, (r, _) in roles.items() if r == "primary"]
        if len(prims) != 1 or (primary and prims[0] != primary):
            return None
        p = prims[0]
        try:
            if self.lease()["holder"] != p:
                return None
        except AssertionError:
            return None
        for s, (r, wr) in roles.items():
            if s != p and (r != "standby" or wr != "streaming:%s" % p):
                return None
        return p

    def report(self):
        out = ["docker-compose logs --tail=80:", self.logs(80)]
        try:
            out.append("lease: %s" % self.lease())
            out += ["  %(id)s %(at)s term %(term)s %(node)s %(kind)s %(detail)s" % e
                    for e in self.events()]
        except Exception as e:  # noqa: BLE001
            out.append("etcd unreadable: %r" % e)
        return "\n".join(out)


@pytest.fixture(scope="module")
def c():
    cl = EtcdCompose("etcd")
    yield cl
    cl.down()


def others(p):
    return [s for s in SERVICES if s != p]


def test_01_bootstrap(c):
    t0 = time.monotonic()
    c.up()
    p, _ = c.wait_healthy(UP_TIMEOUT, what="compose up (etcd)")
    measure("etcd compose up -> 1 primary + 2 streaming", time.monotonic() - t0)
    c.q(p, "create table dt (id bigserial primary key, note text, at timestamptz default now())")
    c.q(p, "insert into dt(note) select 'boot' from generate_series(1, 100)")
    st = c.cli_json("status")
    assert st["cluster"]["name"] == "it" and st["lease"]["holder"] == p
    assert {n["name"] for n in st["nodes"]} == set(SERVICES)
    # the keys are in etcd, under the cluster's prefix, and no node has a lease directory
    keys = c.exec("etcd1", ["etcdctl", "get", "--prefix", "--keys-only", "/pglease/it/"],
                  user="root").stdout.split()
    assert "/pglease/it/state/leader" in keys and "/pglease/it/nodes/%s" % p in keys, keys
    for s in SERVICES:
        assert c.exec(s, ["test", "-e", "/var/lib/pglease/lease.db"]).returncode != 0


TLS = "/etc/pglease/tls"


def test_01b_etcd_refuses_clients_without_a_certificate(c):
    """etcd serves TLS only and asks every client for a certificate of the
    example's CA: a pglease CLI with the CA but no client certificate, or over
    plain http, is refused; etcdctl likewise, on the client and the peer
    port; with the nodes' certificate the same CLI reads the cluster."""
    base = "etcd://etcd1:2379,etcd2:2379,etcd3:2379/pglease/it"
    plain = c.pglease("pg1", "lease", "--json", "--lease-db", base)
    assert plain.returncode != 0, "etcd answered plain http: %s" % plain.stdout
    assert "cannot reach etcd" in plain.stderr, plain.stderr
    no_cert = c.pglease("pg1", "lease", "--json", "--lease-db", "%s?cacert=%s/ca.pem" % (base, TLS))
    assert no_cert.returncode != 0, "etcd answered a client without a certificate: %s" % no_cert.stdout
    assert "cannot reach etcd" in no_cert.stderr, no_cert.stderr
    ok = c.pglease("pg1", "lease", "--json", "--lease-db",
                   "%s?cacert=%s/ca.pem&cert=%s/client.pem&key=%s/client.key" % (base, TLS, TLS, TLS))
    assert ok.returncode == 0 and json.loads(ok.stdout)["term"] >= 1, ok.stdout + ok.stderr
    # the same from etcdctl in a member's container: the member's own
    # certificate works; without it, or over http, nothing is served
    etcdctl = ["env", "-u", "ETCDCTL_ENDPOINTS", "etcdctl", "--dial-timeout", "3s",
               "--command-timeout", "5s"]
    no = ["env", "-u", "ETCDCTL_CERT", "-u", "ETCDCTL_KEY"]
    for ep, argv, works in (("https://etcd2:2379", [], True),
                            ("https://etcd2:2379", no, False),
                            ("http://etcd2:2379", [], False),
                            ("https://etcd2:2380", no, False)):
        r = c.exec("etcd1", argv + etcdctl + ["--endpoints", ep, "get", "--prefix",
                                              "--keys-only", "/pglease/it/"],
                   user="root", timeout=60)
        assert (r.returncode == 0) == works, (ep, argv, r.returncode, r.stdout, r.stderr)
        if works:
            assert "/pglease/it/state/leader" in r.stdout.split(), r.stdout
    # and the members are started that way: TLS on both ports, certificates required
    args = c.docker("inspect", "-f", "{{json .Config.Entrypoint}}", c.container("etcd1")).stdout
    for flag in ("--client-cert-auth", "--peer-client-cert-auth", "--listen-client-urls https://",
                 "--listen-peer-urls https://"):
        assert flag in args, (flag, args)
    assert "http://" not in args, args


def test_02_docker_kill_fails_over_and_rejoins(c):
    p, _ = c.wait_healthy(REJOIN_TIMEOUT, what="precondition")
    c.wait_replayed(p, others(p))
    term = c.lease()["term"]
    with Sampler(c) as smp:
        w = Writers(c, others(p), "kill")
        t0 = time.time()
        c.docker("kill", c.container(p))
        new, t_write = w.wait_first(FAILOVER_TIMEOUT)
        w.stop()
        measure("etcd compose: docker kill of the primary -> first write on %s" % new,
                t_write - t0)
        l = c.lease()
        assert l["holder"] == new and l["term"] == term + 1, l
        assert int(c.q(new, "select count(*) from dt where note = 'boot'")) == 100
        c.docker("start", c.container(p))
        c.wait_healthy(REJOIN_TIMEOUT, primary=new, what="the killed node rejoining")
    smp.check()
    assert c.probe(p)[0] == "standby"


def test_03_docker_stop_hands_over(c):
    p, _ = c.wait_healthy(REJOIN_TIMEOUT, what="precondition")
    c.q(p, "insert into dt(note) select 'stop' from generate_series(1, 100)")
    c.wait_replayed(p, others(p))
    term = c.lease()["term"]
    with Sampler(c) as smp:
        w = Writers(c, others(p), "stop")
        t0 = time.time()
        c.docker("stop", c.container(p), timeout=120)
        new, t_write = w.wait_first(FAILOVER_TIMEOUT)
        w.stop()
        measure("etcd compose: docker stop of the primary -> first write on %s" % new,
                t_write - t0)
        assert any(e["kind"] == "released" and e["node"] == p and e["term"] == term
                   for e in c.events())
        assert int(c.q(new, "select count(*) from dt where note = 'stop'")) == 100
        c.docker("start", c.container(p))
        c.wait_healthy(REJOIN_TIMEOUT, primary=new, what="the stopped node rejoining")
    smp.check()


def test_04_primary_cut_off_from_the_network(c):
    p, _ = c.wait_healthy(REJOIN_TIMEOUT, what="precondition")
    net = c.project + "_pglease"
    term = c.lease()["term"]
    with Sampler(c) as smp:
        w = Writers(c, others(p), "cut")
        t0 = time.time()
        c.docker("network", "disconnect", net, c.container(p))
        try:
            new, t_write = w.wait_first(FAILOVER_TIMEOUT)
            w.stop()
            measure("etcd compose: primary disconnected -> first write on %s" % new,
                    t_write - t0)
            # the cut-off node no longer accepts writes (it cannot renew)
            poll("%s to stop accepting writes" % p,
                 lambda: not c.psql(p, "insert into dt(note) values ('rogue')", timeout=10)[0],
                 30)
            assert c.lease()["term"] == term + 1
        finally:
            c.docker("network", "connect", "--alias", p, net, c.container(p), check=False)
        c.wait_healthy(REJOIN_TIMEOUT, primary=new, what="the cut-off node rejoining")
    smp.check()
    assert int(c.q(new, "select count(*) from dt where note = 'rogue'")) == 0


def test_05_one_etcd_member_killed(c):
    p, _ = c.wait_healthy(REJOIN_TIMEOUT, what="precondition")
    term = c.lease()["term"]
    c.docker("kill", c.container("etcd2"))
    end = time.monotonic() + 10
    while time.monotonic() < end:
        c.q(p, "insert into dt(note) values ('member-down')")
        time.sleep(0.2)
    l = c.lease()
    assert l["holder"] == p and l["term"] == term, l
    c.docker("start", c.container("etcd2"))
    c.wait_healthy(REJOIN_TIMEOUT, primary=p, what="after etcd2 restarted")


def test_06_second_up_keeps_the_certificates(c):
    """A second `up -d` runs etcd-certs again, which keeps what it made: the
    same CA, the cluster as it was."""
    p, _ = c.wait_healthy(REJOIN_TIMEOUT, what="precondition")
    ca = c.exec("pg1", ["sha256sum", TLS + "/ca.pem"]).stdout.split()[0]
    c.up()
    assert "nothing to do" in c.compose("logs", "--no-color", "etcd-certs", check=False).stdout
    assert c.exec("pg1", ["sha256sum", TLS + "/ca.pem"]).stdout.split()[0] == ca
    c.wait_healthy(REJOIN_TIMEOUT, primary=p, what="after a second up")
