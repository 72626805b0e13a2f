"""004: after a crash failover the old primary's agent is restarted: it
rewinds (or re-clones) by itself and becomes a streaming standby of the new
primary, with the rows written since; it never becomes primary again.

The restart comes right after the failover, as a container restart would:
while the new primary's first checkpoint on its new timeline is still in
progress.  One rewind must be enough; a rewind that changes nothing ("no
rewind required") leaves a standby that cannot follow the new timeline."""
import time

import pytest

from conftest import FAST, poll_until, started_cluster, wait_reaped
from conftest import first_write

FOLLOW_TIMEOUT_MS = 15000


def test_rejoin_after_crash(make_cluster):
    c, p = started_cluster(make_cluster, 3, follow_timeout_ms=FOLLOW_TIMEOUT_MS, **FAST)
    # Enough dirty pages that the new primary's post-promotion (spread)
    # checkpoint takes a few seconds, as on any real database.
    p.query("INSERT INTO t (id) SELECT g FROM generate_series(1, 50000) g")
    for s in c.others(p):
        c.wait_for_catchup(s, p)
    term = c.lease()["term"]

    pids = p.kill9()
    new, _ = first_write(c.others(p), 100001, 60)
    c.insert(new, range(100002, 100301))
    # The killed processes are gone (reaped), as on a real host.
    wait_reaped(pids)

    t_restart = time.time()
    t0 = time.monotonic()
    p.start()
    try:
        c.wait_for_streaming(p, new, timeout=120)
    except pytest.fail.Exception as e:
        ev = [(x["at"], x["kind"], x["detail"]) for x in c.events(node=p.name)
              if x["kind"] in ("rewound", "recloned")]
        log = p.log_text()
        pytest.fail("%s did not rejoin as a standby of %s within 120 s of its restart.\n"
                    "its rewind/re-clone events: %s\npostgres start failures 'requested timeline "
                    "... is not a child of this server's history': %d\n(%s)" % (
                        p.name, new.name, ev, log.count("is not a child of this server's history"),
                        str(e).splitlines()[0]))
    rejoin_s = time.monotonic() - t0
    c.insert(new, range(100301, 100401))
    c.wait_for_catchup(p, new)
    assert set(range(1, 50001)) | set(range(100001, 100401)) <= c.ids(p)
    assert p.is_primary() is False

    ev = [e for e in c.events(node=p.name) if e["kind"] in ("rewound", "recloned")]
    assert ev, "no 'rewound' or 'recloned' event for %s: %s" % (p.name, c.events())
    print("rejoin in %.1f s:" % rejoin_s, [(e["kind"], e["detail"]) for e in ev])
    assert c.events("followed", node=p.name, term=term + 1)
    # It never held the lease again, and nobody but the new primary did.
    assert c.lease()["term"] == term + 1 and c.lease()["holder"] == new.name
    assert not [e for e in c.events("acquired") if e["term"] > term + 1], c.events("acquired")
    assert not [o for o in c.sampler.primary_observations(p.name) if o[2] > t_restart]
    poll_until(lambda: c.node_rows()[p.name]["role"] == "standby"
               and c.node_rows()[p.name]["upstream"] == new.name, 30,
               "%s's nodes row to show a standby of %s" % (p.name, new.name))
    c.sampler.check()
    # One rewind did it, without waiting out follow_timeout_ms.
    assert len(ev) == 1 and "no rewind required" not in ev[0]["detail"], (
        "the rejoin needed %d rewinds/re-clones and %.1f s (follow_timeout_ms %d): %s"
        % (len(ev), rejoin_s, FOLLOW_TIMEOUT_MS, [(e["at"], e["kind"], e["detail"]) for e in ev]))
    assert rejoin_s < FOLLOW_TIMEOUT_MS / 1000.0, "rejoin took %.1f s" % rejoin_s
