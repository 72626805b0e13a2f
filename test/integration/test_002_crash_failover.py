"""002: kill -9 of the primary's agent and postmaster together: a standby
claims term + 1 and accepts writes; no replicated row is lost; the remaining
standby re-points to the new primary and streams from it."""
import time

from conftest import FAST, first_write, measure, poll_until, started_cluster


def test_crash_failover(make_cluster):
    c, p = started_cluster(make_cluster, 3, **FAST)
    pre = set(range(1, 501))
    c.insert(p, sorted(pre))
    for s in c.others(p):
        c.wait_for_catchup(s, p)
    term = c.lease()["term"]

    t_kill = time.monotonic()
    p.kill9()
    new, t_write = first_write(c.others(p), 1000001, 60)
    measure("002 kill -9 of the primary -> first write accepted by %s" % new.name,
            t_write - t_kill)

    lease = c.lease()
    assert lease["holder"] == new.name and lease["term"] == term + 1, lease
    acq = c.events("acquired", term=term + 1)
    assert len(acq) == 1 and acq[0]["node"] == new.name, acq
    assert ("holder's processes gone" in acq[0]["detail"]
            or "lease unchanged for" in acq[0]["detail"]), acq[0]["detail"]
    print("acquired:", acq[0]["detail"])
    # The server accepts writes a moment before the agent records the event.
    poll_until(lambda: c.events("promoted", node=new.name, term=term + 1), 10,
               "the 'promoted' event of %s" % new.name)

    # Every row committed (and replicated) before the kill is on the new primary.
    got = c.ids(new)
    assert pre <= got, "rows lost on %s: %s" % (new.name, sorted(pre - got)[:20])
    assert 1000001 in got

    # The other standby follows the new primary: streams from its port.
    rest = [n for n in c.others(p) if n is not new]
    assert len(rest) == 1
    r = rest[0]
    c.wait_for_streaming(r, new, timeout=90)
    c.insert(new, range(2001, 2101))
    c.wait_for_catchup(r, new)
    got = c.ids(r)
    assert pre | {1000001} | set(range(2001, 2101)) <= got
    assert r.is_primary() is False
    assert c.events("followed", node=r.name, term=term + 1), c.events()

    # The dead node stays dead (nothing restarts it here) and the term only grew.
    assert not p.agent_running() and p.postmaster_pid() is None
    assert [t for t, _ in c.sampler.terms()] == sorted(t for t, _ in c.sampler.terms())
    c.sampler.check()
