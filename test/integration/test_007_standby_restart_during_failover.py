"""007: the primary is killed (-9) while, at the same moment, one standby is
stopped (SIGTERM) and restarted 1.5 s later; the old primary is restarted
too.  The cluster ends with one primary, two streaming standbys, all rows."""
import os
import signal
import time

from conftest import FAST, poll_until, started_cluster


def test_standby_restart_during_failover(make_cluster):
    c, p = started_cluster(make_cluster, 3, **FAST)
    rows = set(range(1, 1001))
    c.insert(p, sorted(rows))
    s1, s2 = c.others(p)
    for s in (s1, s2):
        c.wait_for_catchup(s, p)
    term = c.lease()["term"]

    os.kill(s1.agent_pid, signal.SIGTERM)
    p.kill9()
    assert s1.stop(timeout=60) == 0
    time.sleep(1.5)
    s1.start()

    newp = c.wait_for_primary(timeout=90, exclude=[p], min_term=term + 1)
    c.insert(newp, range(1001, 1101))
    rows |= set(range(1001, 1101))
    p.start()

    final = c.wait_healthy(timeout=180, min_term=term + 1)
    for n in c.others(final):
        c.wait_for_catchup(n, final)
        got = c.ids(n)
        assert rows <= got, "%s misses %s" % (n.name, sorted(rows - got)[:10])
    assert rows <= c.ids(final)
    assert sum(1 for n in c.nodes if n.is_primary()) == 1
    assert [n for n in c.nodes if n.is_primary() is False] and len(c.others(final)) == 2
    # Exactly one new term was needed for one failover... at most a few, never reused.
    terms = [t for t, _ in c.sampler.terms()]
    assert terms == sorted(terms)
    acq = c.events("acquired")
    assert len({e["term"] for e in acq}) == len(acq), "a term acquired twice: %s" % acq
    poll_until(lambda: all(c.node_rows()[n.name]["role"] == "standby" and
                           c.node_rows()[n.name]["upstream"] == final.name
                           for n in c.others(final)), 30, "nodes rows to agree")
    c.sampler.check()
