"""032: hosts cut off for real.  Each PostgreSQL node and its agent, and each
etcd member, runs in a network namespace of its own on one bridge
(netns.py).  The primary's host cut off from everything: it stops accepting
writes before any standby claims (clients on each host, through Unix
sockets, never see two nodes accept writes), a standby takes over, and once
the link is back the old primary rewinds and streams from the new one.  The
primary cut off from etcd only (it still reaches the standbys): the same.
Proof of death does not reach across hosts: the TTL in etcd decides."""
import time

import psycopg2

from conftest import first_write, measure, started_lab_cluster, wait_fenced

ETCD_FAST = dict(lease_ttl_ms=2000, renew_interval_ms=500, fence_margin_ms=1000)


def last_write_ok(node, row_id):
    """True when node commits an INSERT (through its Unix socket, on its host)."""
    try:
        conn = node.connect(timeout=1, options="-c statement_timeout=1000")
    except psycopg2.Error:
        return False
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO t (id) VALUES (%s)", (row_id,))
        return True
    except psycopg2.Error:
        return False
    finally:
        conn.close()


def partition_and_heal(c, p, lab, cut, heal, what):
    pre = set(range(1, 301))
    c.insert(p, sorted(pre))
    for s in c.others(p):
        c.wait_for_catchup(s, p)
    term = c.lease()["term"]

    t_cut = time.monotonic()
    cut()
    # the cut-off primary stops accepting writes by its own deadline
    wait_fenced(p, 30)
    t_fenced = time.monotonic()
    new, t_write = first_write(c.others(p), 1000001, 90)
    measure("032 etcd: %s -> old primary stops writes" % what, t_fenced - t_cut)
    measure("032 etcd: %s -> first write on %s" % (what, new.name), t_write - t_cut)
    assert t_fenced <= t_write
    l = c.lease()
    assert l["holder"] == new.name and l["term"] == term + 1, l
    assert pre <= c.ids(new)
    # the old primary, still cut off, never takes writes again
    assert not last_write_ok(p, 2000001)

    heal()
    c.wait_for_streaming(p, new, timeout=180)
    c.insert(new, range(3001, 3101))
    c.wait_for_catchup(p, new)
    got = c.ids(p)
    assert pre | {1000001} | set(range(3001, 3101)) <= got
    assert 2000001 not in got
    assert sum(1 for n in c.nodes if n.is_primary()) == 1
    c.sampler.check()


def test_etcd_primary_host_cut_off(netns_etcd, make_cluster):
    lab, etcd = netns_etcd
    c, p = started_lab_cluster(make_cluster, lab, etcd, **ETCD_FAST)
    partition_and_heal(c, p, lab, lambda: lab.cut(p.name), lambda: lab.heal(p.name),
                       "primary's host cut off")


def test_etcd_primary_cut_off_from_etcd_only(netns_etcd, make_cluster):
    lab, etcd = netns_etcd
    c, p = started_lab_cluster(make_cluster, lab, etcd, **ETCD_FAST)
    partition_and_heal(c, p, lab, lambda: lab.block(p.name, ["e1", "e2", "e3"]),
                       lambda: lab.unblock(p.name), "primary cut off from etcd")
