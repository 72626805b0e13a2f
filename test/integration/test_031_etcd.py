"""031: the lease store on etcd (lease_db = etcd://...): a real 3-member etcd
cluster (Debian's etcd-server), real PostgreSQL nodes and agents; in the
failure scenarios each node and each etcd member runs on a host of its own
(a network namespace, netns.py), elsewhere on loopback ports.  Bootstrap and the CLI on etcd; kill -9 of the primary
(etcd expires its key, a standby takes over, the old primary rewinds and
rejoins); a clean stop (released at once); an etcd member killed and the
etcd leader moved under load (no failover); etcd's quorum lost and restored
(writes stop, then resume with one primary, nothing acknowledged lost);
bad URLs, unreachable endpoints, a foreign prefix and bad credentials (one
line, nothing written).  The host partitions are test_032 (namespaces)."""
import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (chown_pg, first_write, measure, poll_until, run_pg, started_cluster,
                      started_lab_cluster, wait_fenced, PGLEASE, WORK)

# etcd's lease TTL is lease_ttl_ms rounded up to whole seconds (at least 2 s)
ETCD_FAST = dict(lease_ttl_ms=2000, renew_interval_ms=500, fence_margin_ms=1000)


def cli(c, *args):
    return run_pg([PGLEASE, *args, "--lease-db", str(c.lease_db)], timeout=30)


def test_etcd_bootstrap_and_cli(netns_etcd, make_cluster):
    lab, etcd_cluster = netns_etcd
    c, p = started_lab_cluster(make_cluster, lab, etcd_cluster, **ETCD_FAST)
    c.insert(p, range(1, 101))
    for s in c.others(p):
        c.wait_for_catchup(s, p)
        assert set(range(1, 101)) <= c.ids(s)

    # each node's row says what it is once its next heartbeat lands
    want = {n.name: ("primary", None) if n is p else ("standby", p.name) for n in c.nodes}

    def status_as_wanted():
        st = json.loads(cli(c, "status", "--json").stdout)
        roles = {n["name"]: (n["role"], n["upstream"]) for n in st["nodes"]}
        return st if roles == want else None
    st = poll_until(status_as_wanted, 30, "status to show %s" % want, interval=0.2)
    assert st["cluster"]["name"] and st["cluster"]["system_identifier"]
    assert st["lease"]["holder"] == p.name and not st["lease"]["holder_expired"]
    r = cli(c, "lease")
    assert r.returncode == 0 and "live (the holder's leader key exists)" in r.stdout, r.stdout
    r = cli(c, "primary")
    assert r.returncode == 0 and r.stdout.strip() == p.name, r.stdout
    for n in c.nodes:
        r = run_pg([PGLEASE, "health", "-c", str(n.conf)], timeout=30)
        assert r.returncode == 0, (n.name, r.stdout, r.stderr)
    kinds = [e["kind"] for e in c.events()]
    assert "created" in kinds and "acquired" in kinds and "bootstrap" in kinds, kinds
    # the events' ids grow (etcd revisions)
    ids = [e["id"] for e in c.events()]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)

    # pause and resume: recorded in etcd, shown by status, with events
    assert cli(c, "pause").returncode == 0
    assert json.loads(cli(c, "status", "--json").stdout)["cluster"]["paused"] is True
    assert cli(c, "resume").returncode == 0
    assert json.loads(cli(c, "status", "--json").stdout)["cluster"]["paused"] is False
    assert [e["kind"] for e in c.events() if e["kind"] in ("paused", "resumed")] == [
        "paused", "resumed"]

    # the holder cannot be removed; a stopped standby can, and is gone from status
    r = cli(c, "remove", p.name)
    assert r.returncode != 0 and p.name in r.stderr, r.stderr
    s = c.others(p)[0]
    s.stop()
    poll_until(lambda: c.node_rows()[s.name]["state"] in ("stopped", "stopping"), 30,
               "%s to report stopped" % s.name)
    r = cli(c, "remove", s.name)
    assert r.returncode == 0, r.stderr
    assert s.name not in c.node_rows()
    assert c.events("removed", node=s.name)

    # the watch command streams from etcd too, in text and JSON
    w = run_pg(["timeout", "3", PGLEASE, "watch", "--lease-db", str(c.lease_db)], timeout=30)
    assert "lease:" in w.stdout and p.name in w.stdout, w.stdout
    w = run_pg(["timeout", "3", PGLEASE, "watch", "--json", "--lease-db", str(c.lease_db)],
               timeout=30)
    first = json.loads(w.stdout.splitlines()[0])
    assert first["type"] == "lease" and first["lease"]["holder"] == p.name, w.stdout
    pj = json.loads(cli(c, "primary", "--json").stdout)
    assert pj["primary"] == p.name and pj["term"] == st["lease"]["term"], pj


def test_etcd_kill9_failover_and_rejoin(netns_etcd, make_cluster):
    lab, etcd_cluster = netns_etcd
    c, p = started_lab_cluster(make_cluster, lab, etcd_cluster, **ETCD_FAST)
    pre = set(range(1, 501))
    c.insert(p, sorted(pre))
    for s in c.others(p):
        c.wait_for_catchup(s, p)
    term = c.lease()["term"]

    t_kill = time.monotonic()
    p.kill9(whole=True)
    new, t_write = first_write(c.others(p), 1000001, 60)
    took = t_write - t_kill
    measure("031 etcd: kill -9 of the primary -> first write accepted by %s" % new.name, took)
    # etcd expires the key after its TTL (2 s), never before: not earlier than
    # about the TTL, and well within TTL + a few seconds on a busy machine
    assert 1.0 <= took <= 20, took
    l = c.lease()
    assert l["holder"] == new.name and l["term"] == term + 1, l
    acq = c.events("acquired", term=term + 1)
    assert len(acq) == 1 and "expired in the store" in acq[0]["detail"], acq
    assert pre <= c.ids(new)

    rest = [n for n in c.others(p) if n is not new][0]
    c.wait_for_streaming(rest, new, timeout=90)

    # the old primary comes back: it rewinds and streams from the new primary
    p.start()
    c.wait_for_streaming(p, new, timeout=120)
    c.insert(new, range(2001, 2101))
    c.wait_for_catchup(p, new)
    assert pre | {1000001} | set(range(2001, 2101)) <= c.ids(p)
    assert not p.is_primary()
    assert c.lease()["term"] == term + 1
    c.sampler.check()


def test_etcd_clean_stop_hands_over(netns_etcd, make_cluster):
    lab, etcd_cluster = netns_etcd
    c, p = started_lab_cluster(make_cluster, lab, etcd_cluster, **ETCD_FAST)
    c.insert(p, range(1, 201))
    term = c.lease()["term"]
    t0 = time.monotonic()
    p.stop()
    new, t_write = first_write(c.others(p), 1000001, 60)
    measure("031 etcd: clean stop of the primary -> first write on %s" % new.name,
            t_write - t0)
    assert c.events("released", node=p.name, term=term)
    acq = c.events("acquired", term=term + 1)
    assert len(acq) == 1 and "released" in acq[0]["detail"], acq
    # every row acknowledged before the stop is there
    assert set(range(1, 201)) <= c.ids(new)
    c.sampler.check()


def test_etcd_member_lost_and_leader_moved(netns_etcd, make_cluster):
    lab, etcd_cluster = netns_etcd
    """Neither the loss of one etcd member nor a change of etcd leader costs a failover."""
    c, p = started_lab_cluster(make_cluster, lab, etcd_cluster, **ETCD_FAST)
    term = c.lease()["term"]
    follower = next(m for m in etcd_cluster.members if m is not etcd_cluster.leader())
    follower.kill()
    nxt = c.keep_writing(p, time.monotonic() + 8)    # fails the test on a refused write
    assert c.lease()["term"] == term and c.lease()["holder"] == p.name
    follower.start(state="existing")
    etcd_cluster.wait_healthy(60)

    # the leader moved under load, three times: no failover, no refused write
    moves, i = 0, nxt
    t_end = time.monotonic() + 8
    while time.monotonic() < t_end:
        c.insert(p, range(i, i + 10))
        i += 10
        if moves < 3:
            ld = etcd_cluster.leader()
            etcd_cluster.move_leader(next(m for m in etcd_cluster.members if m is not ld))
            moves += 1
        time.sleep(0.2)
    assert moves == 3
    l = c.lease()
    assert l["term"] == term and l["holder"] == p.name, l
    assert not c.events("fenced"), c.events("fenced")
    assert set(range(1, i)) <= c.ids(p)
    c.sampler.check()


def test_etcd_quorum_lost_and_restored(netns_etcd, make_cluster):
    lab, etcd_cluster = netns_etcd
    c, p = started_lab_cluster(make_cluster, lab, etcd_cluster, **ETCD_FAST)
    acked = set(range(1, 301))
    c.insert(p, sorted(acked))
    term = c.lease()["term"]
    lost = [m for m in etcd_cluster.members][:2]
    t0 = time.monotonic()
    for m in lost:
        m.kill()
    # no lease can be renewed: the primary stops accepting writes by its deadline
    wait_fenced(p, 30)
    measure("031 etcd: quorum lost -> primary stops accepting writes", time.monotonic() - t0)
    # and nobody else accepts writes while etcd has no quorum
    end = time.monotonic() + 5
    while time.monotonic() < end:
        assert not any(n.is_primary() for n in c.nodes), "a primary without etcd"
        time.sleep(0.2)
    t1 = time.monotonic()
    for m in lost:
        m.start(state="existing")
    etcd_cluster.wait_healthy(60)
    new = c.wait_for_primary(120)
    measure("031 etcd: quorum restored -> a primary again", time.monotonic() - t1)
    assert c.lease()["term"] >= term
    c.wait_healthy(180)
    assert acked <= c.ids(new)
    assert sum(1 for n in c.nodes if n.is_primary()) == 1
    c.sampler.check()


def test_etcd_bad_input(etcd_cluster, make_cluster):
    c = make_cluster(1, etcd=etcd_cluster, **ETCD_FAST)
    n = c.nodes[0]
    # a URL that does not parse: one line naming it (without its query, where a
    # misplaced password= would be), exit 2, nothing started
    for url, says in (("etcd://127.0.0.1:2379/main", "a prefix and a cluster name"),
                      ("etcd://127.0.0.1:99999/p/c", "bad port"),
                      ("etcd://127.0.0.1:2379/p/c?colour=blue", "unknown query parameter"),
                      ("etcd://127.0.0.1:2379/p/c?password=hunter2", "unknown query parameter"),
                      ("etcd://127.0.0.1:2379/p/c?user=pgl", "insecure=1")):
        n.write_conf(lease_db=url)
        r = run_pg([PGLEASE, "run", "-c", str(n.conf)], timeout=60)
        err = r.stderr.strip().splitlines()
        shown = url.split("?")[0]
        assert r.returncode == 2 and len(err) == 1 and shown in err[0] and says in err[0], r.stderr
        assert "colour=blue" not in r.stderr and "hunter2" not in r.stderr, r.stderr
        r = run_pg([PGLEASE, "status", "--lease-db", url], timeout=30)
        assert r.returncode == 2 and says in r.stderr and "hunter2" not in r.stderr, r.stderr
    # an endpoint that does not answer: one line naming it
    r = run_pg([PGLEASE, "status", "--lease-db", "etcd://127.0.0.1:1/p/c?timeout_ms=300"],
               timeout=30)
    assert r.returncode == 1 and "cannot reach etcd" in r.stderr and "127.0.0.1:1" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    # a prefix that holds someone else's keys: refused, and left as it was
    etcd_cluster.ctl("put", "/foreign/db/config", "not pglease")
    url = "etcd://%s/foreign/db" % etcd_cluster.endpoints
    n.write_conf(lease_db=url)
    r = run_pg([PGLEASE, "run", "-c", str(n.conf)], timeout=60)
    assert r.returncode == 2 and "foreign prefix" in r.stderr, r.stderr
    keys = etcd_cluster.ctl("get", "--prefix", "--keys-only", "/foreign/").stdout.split()
    assert keys == ["/foreign/db/config"], keys
    assert not n.pgdata.exists() or not any(n.pgdata.iterdir())


def test_etcd_authentication(etcd_cluster, make_cluster):
    etcd_cluster.enable_auth("pgl", "s3cret-pw")
    d = Path(tempfile.mkdtemp(prefix="etcd-auth-", dir=WORK))
    os.chmod(d, 0o755)
    pw = d / "etcd-password"
    pw.write_text("s3cret-pw\n")
    os.chmod(pw, 0o640)
    chown_pg(pw)
    c, p = started_cluster(make_cluster, 2, etcd=etcd_cluster,
                           etcd_params=dict(user="pgl", password_file=str(pw), insecure=1),
                           **ETCD_FAST)
    c.insert(p, range(1, 11))
    assert c.lease()["holder"] == p.name
    # the same URL without credentials, or with a wrong password: refused in one line
    bad = d / "bad-password"
    bad.write_text("wrong\n")
    os.chmod(bad, 0o644)
    url_bad = str(c.lease_db).replace(str(pw), str(bad))
    r = run_pg([PGLEASE, "status", "--lease-db", url_bad], timeout=30)
    assert r.returncode == 2 and "refused user 'pgl'" in r.stderr, r.stderr
    url_none = str(c.lease_db).split("?")[0]
    r = run_pg([PGLEASE, "status", "--lease-db", url_none], timeout=30)
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    c.sampler.check()


def test_etcd_tls_client_certificates(etcd_tls, make_cluster):
    """etcd serving https and demanding a client certificate: the agents and the
    CLI connect with cacert/cert/key from the URL; without a certificate, or
    over plain http, the store is refused in one line."""
    e, certs = etcd_tls
    c, p = started_cluster(make_cluster, 2, etcd=e, etcd_params=dict(
        cacert=certs["ca"], cert=certs["client_cert"], key=certs["client_key"]), **ETCD_FAST)
    c.insert(p, range(1, 11))
    assert c.lease()["holder"] == p.name
    # no client certificate: the handshake is refused
    url_nocert = str(c.lease_db).split("?")[0] + "?cacert=" + certs["ca"]
    r = run_pg([PGLEASE, "status", "--lease-db", url_nocert], timeout=30)
    assert r.returncode == 1 and "cannot reach etcd" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    # plain http against an https endpoint: refused too
    url_plain = str(c.lease_db).split("?")[0]
    r = run_pg([PGLEASE, "status", "--lease-db", url_plain], timeout=30)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    c.sampler.check()
