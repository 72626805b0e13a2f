"""004: after a crash failover the old primary's agent is restarted: it
rewinds (or re-clones) by itself and becomes a streaming standby of the new
primary, with the rows written since; it never becomes primary again."""
import time

from conftest import FAST, poll_until, started_cluster
from test_002_crash_failover import first_write_after_kill


def test_rejoin_after_crash(make_cluster):
    c, p = started_cluster(make_cluster, 3, **FAST)
    c.insert(p, range(1, 301))
    for s in c.others(p):
        c.wait_for_catchup(s, p)
    term = c.lease()["term"]

    p.kill9()
    new, _ = first_write_after_kill(c, c.others(p), 5000, 60)
    c.insert(new, range(301, 601))
    rest = [n for n in c.others(p) if n is not new][0]
    c.wait_for_streaming(rest, new, timeout=90)

    t_restart = time.time()
    p.start()
    c.wait_for_streaming(p, new, timeout=180)
    c.insert(new, range(601, 701))
    c.wait_for_catchup(p, new)
    assert set(range(1, 701)) | {5000} <= c.ids(p)
    assert p.is_primary() is False

    ev = [e for e in c.events(node=p.name) if e["kind"] in ("rewound", "recloned")]
    assert ev, "no 'rewound' or 'recloned' event for %s: %s" % (p.name, c.events())
    print("rejoin:", [(e["kind"], e["detail"]) for e in ev])
    assert c.events("followed", node=p.name, term=term + 1)
    # It never held the lease again, and nobody but the new primary did.
    assert c.lease()["term"] == term + 1 and c.lease()["holder"] == new.name
    assert not [e for e in c.events("acquired") if e["term"] > term + 1], c.events("acquired")
    assert not [o for o in c.sampler.primary_observations(p.name) if o[2] > t_restart]
    # Its status row says so too.
    poll_until(lambda: c.node_rows()[p.name]["role"] == "standby"
               and c.node_rows()[p.name]["upstream"] == new.name, 30,
               "%s's nodes row to show a standby of %s" % (p.name, new.name))
    c.sampler.check()
