"""018: a standby whose server is down when the primary dies still ranks in
the election by the WAL on its disk (DESIGN.md section 3; found by the
nemesis, docs/reliability.md).

With synchronous replication (ANY 1), standby A acknowledges every commit
while standby B's WAL receiver is stopped, so B falls behind.  Then the
whole primary node is killed and, at once, A's postmaster, with one of A's
backends left stopped: it keeps the old shared memory attached, so A's
restarts fail ("pre-existing shared memory block is still in use") until the
test kills it a few seconds later, longer than three election graces.  B,
running and behind, must wait: A wins, and every acknowledged row is on it.
Before the fix, A's heartbeat said "unknown" with no LSN while its server
was down, B won and the rows B never received were lost."""
import os
import signal
import time

from conftest import FAST, measure, poll_until, started_cluster
from test_003_clean_stop import Writer


def test_down_standby_with_newest_wal_wins(make_cluster):
    c, p = started_cluster(make_cluster, 3, **dict(FAST, **{
        "pg.synchronous_standby_names": "'ANY 1 (*)'",
        "pg.synchronous_commit": "on"}))
    a, b = c.others(p)
    term = c.lease()["term"]
    for n in (a, b):
        c.wait_for_streaming(n, upstream=p)

    # B stops receiving: its WAL receiver is stopped, A acknowledges alone.
    b_recv = b.scalar("SELECT pid FROM pg_stat_wal_receiver")
    assert b_recv, "no WAL receiver on %s" % b.name
    os.kill(b_recv, signal.SIGSTOP)
    try:
        b_lsn = b.scalar("SELECT pg_last_wal_receive_lsn()::text")
        w = Writer(p)
        w.start()
        poll_until(lambda: len(w.acked) >= 200, 60, "the writer to commit 200 rows via %s"
                   % a.name)
        w.stop_ev.set()
        w.join(timeout=30)
        acked = set(w.acked)
        poll_until(lambda: a.scalar("SELECT pg_last_wal_receive_lsn() > %s::pg_lsn",
                                    (b_lsn,)), 30, "%s to be ahead of %s" % (a.name, b.name))
        # Let both standbys publish their LSNs in a heartbeat.
        time.sleep(2 * FAST["renew_interval_ms"] / 1000.0)

        # The primary node dies; A's server goes down and cannot restart for a while.
        hold = a.connect()
        with hold.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            leftover = cur.fetchone()[0]
        os.kill(leftover, signal.SIGSTOP)
        t_kill = time.monotonic()
        p.kill9(whole=True)
        os.kill(a.postmaster_pid(), signal.SIGKILL)
        down_s = 3 * 1.0 + 0.8      # three election graces (default 1000 ms) and more
        time.sleep(down_s)
        assert c.lease()["term"] == term, (
            "term %d claimed while %s, holding the newest WAL, was down; events:\n%s"
            % (c.lease()["term"], a.name, c.cli("events", "-n", "20").stdout))
        os.kill(leftover, signal.SIGKILL)
        hold.close()
        newp = c.wait_for_primary(timeout=60, exclude=[p], min_term=term + 1)
        measure("018 best standby down %.1f s when the primary dies -> %s primary"
                % (down_s, newp.name), time.monotonic() - t_kill)
        assert newp is a, ("%s (behind, WAL receiver stopped at %s) won the election "
                           "over %s, which holds the acknowledged commits; events:\n%s"
                           % (newp.name, b_lsn, a.name, c.cli("events", "-n", "20").stdout))
        assert any("deferring to %s" % a.name in line for line in b.log_text().splitlines()), \
            "%s did not log that it deferred to %s" % (b.name, a.name)
        lost = acked - c.ids(a)
        assert not lost, "%d acknowledged rows lost on %s, e.g. %s" % (
            len(lost), a.name, sorted(lost)[:10])
    finally:
        os.kill(b_recv, signal.SIGCONT)

    # B follows the new primary and gets every row.
    c.wait_for_streaming(b, upstream=a)
    c.wait_for_catchup(b, a)
    assert acked <= c.ids(b), "acknowledged rows missing on %s" % b.name
