"""035: the lease store deleted under a running asynchronous cluster, the
agents restarted (issue 24).  One standby lags (its WAL receiver stopped
while the primary acknowledged more rows), and it is started first.  The
store the agents make again never granted a term while the nodes have data:
the cluster re-forms, and the first election must go to the most advanced
node by its data, not to the first to start.  No acknowledged row is lost."""
import glob
import os
import signal
import time

from conftest import FAST, poll_until, started_cluster


def test_store_deleted_reforms_on_the_most_advanced_node(make_cluster):
    c, p = started_cluster(make_cluster, 3, sampler=False, **FAST)
    lag, other = c.others(p)
    c.insert(p, range(1, 11))
    c.wait_for_catchup(lag, p)
    c.wait_for_catchup(other, p)
    wr = lag.scalar("SELECT pid FROM pg_stat_wal_receiver")
    assert wr, "no WAL receiver on %s" % lag.name
    os.kill(wr, signal.SIGSTOP)
    try:
        c.insert(p, range(11, 61))                 # acknowledged (asynchronous)
        c.wait_for_catchup(other, p)
        assert lag.scalar("SELECT count(*) FROM t") == 10
        for f in glob.glob(str(c.lease_db) + "*"):
            os.unlink(f)                            # the store is gone; records stay
        assert p.exit_code(timeout=60) is not None, p.log_tail()
    finally:
        # What the primary sent is still in the receiver's socket buffer: killed
        # (not continued), so the lagging standby's disk keeps lacking it.
        os.kill(wr, signal.SIGKILL)
    for n in c.nodes:
        assert n.exit_code(timeout=90) is not None, "%s still running" % n.name
        assert "was deleted or replaced" in n.log_text(), n.log_tail()
    # The lagging standby first; the others a moment later.
    lag.start()

    def lag_rows():
        try:
            return lag.scalar("SELECT count(*) FROM t", timeout=2)
        except Exception:
            return None
    assert poll_until(lag_rows, 30, "%s to answer" % lag.name) == 10, "the standby did not lag"
    time.sleep(0.5)
    c.start([p, other])
    newp = c.wait_for_primary(timeout=180)
    assert newp is not lag, "the lagging standby %s became primary: %s" % (
        lag.name, lag.log_tail(30))
    assert c.ids(newp) >= set(range(1, 61)), "acknowledged rows lost"
    assert "re-forming the cluster" in lag.log_text(), lag.log_tail(30)
    c.insert(newp, range(61, 71))
    c.wait_healthy(timeout=180)
    c.wait_for_catchup(lag, newp)
    assert c.ids(lag) >= set(range(1, 71))
