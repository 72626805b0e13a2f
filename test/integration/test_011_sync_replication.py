"""011: with synchronous replication on (pg.synchronous_standby_names =
'ANY 1 (*)'), no acknowledged transaction is lost by a crash failover
(DESIGN.md section 6, invariant 4): a writer commits rows one at a time to
the primary, the whole primary node is killed, and every row the writer saw
acknowledged is on the new primary and on the remaining standby."""
import time

from conftest import FAST, measure, poll_until, started_cluster
from conftest import first_write
from test_003_clean_stop import Writer


def test_sync_replication_loses_no_acknowledged_commit(make_cluster):
    c, p = started_cluster(make_cluster, 3, **dict(FAST, **{
        "pg.synchronous_standby_names": "'ANY 1 (*)'",
        "pg.synchronous_commit": "on"}))
    assert p.scalar("SHOW synchronous_standby_names") == "ANY 1 (*)"
    poll_until(lambda: p.scalar("SELECT count(*) FROM pg_stat_replication "
                                "WHERE sync_state = 'quorum'") >= 1, 60,
               "a quorum standby on the primary")
    term = c.lease()["term"]

    w = Writer(p)
    w.start()
    poll_until(lambda: len(w.acked) >= 300, 60, "the writer to commit 300 rows")
    t_kill = time.monotonic()
    p.kill9(whole=True)
    w.join(timeout=30)
    assert not w.is_alive(), "the writer did not notice the kill"
    acked = set(w.acked)
    print("rows acknowledged before the kill: %d" % len(acked))

    new, t_write = first_write(c.others(p), 10_000_001, 60)
    measure("011 kill -9 of a sync-replicated primary -> first write on %s" % new.name,
            t_write - t_kill)
    assert c.lease()["term"] == term + 1
    got = c.ids(new)
    lost = acked - got
    assert not lost, "%d acknowledged rows lost on %s, e.g. %s" % (
        len(lost), new.name, sorted(lost)[:10])
    other = [n for n in c.others(p) if n is not new][0]
    c.wait_for_streaming(other, upstream=new)
    c.wait_for_catchup(other, new)
    assert acked <= c.ids(other), "acknowledged rows missing on %s" % other.name
