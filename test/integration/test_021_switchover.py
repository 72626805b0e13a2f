"""021: planned switchover and operator failover (issue 12).

`pglease switchover` goes through the store, with no SSH: the primary's agent
runs a CHECKPOINT, stops its server with a fast shutdown (its walsenders send
everything first), releases at the shutdown checkpoint, and only the target
may claim the next term.  A writer runs through it: every write it saw
acknowledged is on the new primary and on every standby afterwards, and the
old primary streams from the new one.  A request that cannot be carried out
in time leaves the old primary primary.  `pglease failover --to NODE` names
the next primary when there is none (here: the cluster paused, the primary
killed)."""
import threading
import time

import psycopg2

from conftest import FAST, measure, poll_until, require_root, started_cluster

TTL = FAST["lease_ttl_ms"] / 1000.0


class Writer(threading.Thread):
    """Inserts ids into t every 5 ms on whichever node takes them, one
    connection per node, the node that last took one first.  Records every
    acknowledged id and the monotonic time of each acknowledgement."""

    def __init__(self, c, first_id=100000):
        super().__init__(daemon=True)
        self.c = c
        self.next_id = first_id
        self.acked = []           # (id, node, mono)
        self.stop_ev = threading.Event()
        self.conns = {}

    def _conn(self, n):
        if n.name not in self.conns:
            self.conns[n.name] = n.connect(timeout=1, options="-c statement_timeout=5000")
        return self.conns[n.name]

    def _try(self, n, i):
        try:
            with self._conn(n).cursor() as cur:
                cur.execute("INSERT INTO t (id) VALUES (%s)", (i,))
            return True
        except psycopg2.Error:
            c = self.conns.pop(n.name, None)
            if c is not None:
                try:
                    c.close()
                except psycopg2.Error:
                    pass
            return False

    def run(self):
        order = list(self.c.nodes)
        while not self.stop_ev.is_set():
            i = self.next_id
            for n in list(order):
                if self._try(n, i):
                    self.acked.append((i, n.name, time.monotonic()))
                    order.remove(n)
                    order.insert(0, n)
                    break
            self.next_id += 1     # an id that failed everywhere is never reused
            self.stop_ev.wait(0.005)

    def stop(self):
        self.stop_ev.set()
        self.join(timeout=30)
        for c in self.conns.values():
            c.close()

    def ids(self):
        return {i for i, _, _ in self.acked}

    def max_gap(self):
        times = [t for _, _, t in self.acked]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def switchover(c, *args, timeout=120):
    return c.cli("switchover", "--lease-db", str(c.lease_db), *args, timeout=timeout)


def streaming_record(c, s, p):
    """Waits until s's record says it streams from p (the CLI checks the records)."""
    poll_until(lambda: (c.node_record(s.name) or {}).get("state") == "streaming" and
               c.node_record(s.name).get("upstream") == p.name, 30,
               "%s's record to say it streams from %s" % (s.name, p.name))


def kinds(c):
    return [e["kind"] for e in c.events()]


def check_switched(c, old, new, term, w):
    """new holds term + 1 and takes writes; every acknowledged write is on
    every node; old streams from new; nobody was fenced."""
    l = c.lease()
    assert l["holder"] == new.name and l["term"] == term + 1, l
    assert new.is_primary()
    assert {n for _, n, _ in w.acked} >= {old.name, new.name}, "the writer did not span it"
    c.wait_for_streaming(old, new, timeout=120)
    for n in c.others(new):
        c.wait_for_streaming(n, new, timeout=120)
        c.wait_for_catchup(n, new)
    for n in c.nodes:
        missing = w.ids() - c.ids(n)
        assert not missing, "%s lacks %d acknowledged writes: %s" % (
            n.name, len(missing), sorted(missing)[:10])
    assert not c.events("fenced"), c.events("fenced")
    assert not c.events("recloned"), c.events("recloned")
    k = kinds(c)
    for kind in ("switchover-requested", "switchover-handing-over", "switchover-done"):
        assert kind in k, k


def test_switchover_to_named_node_loses_nothing(make_cluster):
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    target = c.others(p)[-1]
    c.insert(p, range(1, 101))
    w = Writer(c)
    w.start()
    time.sleep(1)
    t0 = time.monotonic()
    r = switchover(c, "--to", target.name, "--wait", "--timeout", "30")
    took = time.monotonic() - t0
    time.sleep(1)
    w.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "switchover 1 requested: from %s to %s" % (p.name, target.name) in r.stdout, r.stdout
    assert "done" in r.stdout and "%s is primary on term %d" % (target.name, term + 1) \
        in r.stdout, r.stdout
    check_switched(c, p, target, term, w)
    assert set(range(1, 101)) <= c.ids(target)
    req = [e for e in c.events("switchover-requested")]
    assert len(req) == 1 and "pid" in req[0]["detail"] and target.name in req[0]["detail"], req
    acq = c.events("acquired", node=target.name)
    assert acq and "named by switchover 1" in acq[-1]["detail"], acq
    measure("switchover --wait (named target)", took)
    measure("switchover write gap (writer every 5 ms)", w.max_gap())
    c.sampler.check()


def test_switchover_to_best_standby(make_cluster):
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    w = Writer(c)
    w.start()
    time.sleep(1)
    r = switchover(c, "--wait")
    time.sleep(1)
    w.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "to the best standby" in r.stdout, r.stdout
    new = c.node(c.lease()["holder"])
    assert new in c.others(p)
    check_switched(c, p, new, term, w)
    ho = c.events("switchover-handing-over")
    assert len(ho) == 1 and new.name in ho[0]["detail"], ho
    measure("switchover write gap, best standby (writer every 5 ms)", w.max_gap())
    c.sampler.check()


def test_switchover_refused_changes_nothing(make_cluster):
    c, p = started_cluster(make_cluster, 3, **FAST)
    s = c.others(p)[0]
    term = c.lease()["term"]
    ev0 = len(c.events())

    def refused(args, *want, code=1):
        r = switchover(c, *args)
        assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        for x in want:
            assert x in r.stderr, (args, r.stderr)

    refused(["--to", p.name], "switchover refused", "%s cannot take over: it is the primary"
            % p.name)
    refused(["--to", "nosuch"], "no node named nosuch")
    refused(["--to", "Bad/Name"], "not a valid node name", code=2)
    refused(["--timeout", "0"], "--timeout", code=2)
    refused(["--max-lag", "x"], "--max-lag", code=2)
    r = c.cli("pause", "--lease-db", str(c.lease_db))
    assert r.returncode == 0, r.stderr
    refused(["--to", s.name], "is paused")
    assert c.cli("resume", "--lease-db", str(c.lease_db)).returncode == 0
    r = c.cli("failover", "--lease-db", str(c.lease_db), "--to", s.name)
    assert r.returncode == 1 and "%s is a live primary" % p.name in r.stderr, r.stderr
    r = c.cli("failover", "--lease-db", str(c.lease_db))
    assert r.returncode == 2 and "--to NODE is required" in r.stderr, r.stderr
    # A second request while one is under way: refused, naming the first.  (The
    # target's agent is stopped, so the primary waits for it until the timeout.)
    streaming_record(c, s, p)
    s.sigstop()
    try:
        time.sleep(TTL + 0.5)
        r = switchover(c, "--to", s.name, "--timeout", "3")
        assert r.returncode == 0, r.stderr
        refused(["--to", s.name], "switchover 1", "still under way")
        poll_until(lambda: c.events("switchover-failed"), 20, "switchover 1 to fail")
    finally:
        s.sigcont()
    l = c.lease()
    assert (l["holder"], l["term"]) == (p.name, term), l
    assert p.is_primary()
    assert [e["kind"] for e in c.events()[ev0:] if e["kind"].startswith("switchover")
            ] == ["switchover-requested", "switchover-failed"], c.events()[ev0:]
    c.sampler.check()


def test_switchover_that_times_out_keeps_the_primary(make_cluster):
    """The target's agent is stopped for longer than the TTL: the primary
    sees it silent, waits for it until the request's timeout, then fails the
    request and stays primary, taking writes throughout."""
    require_root()
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    s = c.others(p)[0]
    streaming_record(c, s, p)
    s.sigstop()
    try:
        time.sleep(TTL + 0.5)
        t0 = time.monotonic()
        r = switchover(c, "--to", s.name, "--timeout", "2", "--wait")
        took = time.monotonic() - t0
    finally:
        s.sigcont()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "switchover 1 failed" in r.stderr and "has not reported" in r.stderr, r.stderr
    assert 1.5 < took < 30, took
    l = c.lease()
    assert (l["holder"], l["term"]) == (p.name, term), l
    c.insert(p, range(1, 11))
    assert p.is_primary() and not c.events("fenced")
    assert len(c.events("switchover-failed")) == 1, c.events()
    assert not c.events("switchover-handing-over")
    c.sampler.check()


def test_failover_to_named_node_while_paused(make_cluster):
    """Paused, the primary killed: nobody claims.  The operator names a
    standby with failover --to: it alone claims and is promoted; the other
    standby follows it; the old node, restarted, rejoins."""
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    s1, s2 = c.others(p)
    c.insert(p, range(1, 51))
    for n in (s1, s2):
        c.wait_for_catchup(n, p)
    assert c.cli("pause", "--lease-db", str(c.lease_db)).returncode == 0
    p.kill9(whole=True)
    time.sleep(TTL + 1.5)
    l = c.lease()
    assert l["term"] == term and l["holder"] == p.name, "claimed while paused: %s" % l
    r = c.cli("failover", "--lease-db", str(c.lease_db), "--to", s2.name, "--wait",
              "--timeout", "30", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "failover 1 requested" in r.stdout and "done" in r.stdout, r.stdout
    l = c.lease()
    assert l["holder"] == s2.name and l["term"] == term + 1, l
    assert s2.is_primary() and set(range(1, 51)) <= c.ids(s2)
    c.wait_for_streaming(s1, s2, timeout=120)
    c.insert(s2, range(51, 61))
    c.wait_for_catchup(s1, s2)
    assert set(range(1, 61)) <= c.ids(s1)
    assert c.cli("resume", "--lease-db", str(c.lease_db)).returncode == 0
    p.start()
    c.wait_for_streaming(p, s2, timeout=180)
    k = kinds(c)
    assert "failover-requested" in k and "failover-done" in k, k
    poll_until(lambda: c.lease()["holder"] == s2.name, 5, "the lease to stay with %s" % s2.name)
    c.sampler.check()
