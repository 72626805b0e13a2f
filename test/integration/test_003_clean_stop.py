"""003: SIGTERM to the primary's agent hands the lease over: the primary
shuts down fast, releases the lease with its final LSN, a standby that has
that LSN claims at once (no TTL wait), and no acknowledged commit is lost."""
import threading
import time

import psycopg2

from conftest import FAST, measure, poll_until, started_cluster


class Writer(threading.Thread):
    """Commits one row at a time to node until an error; keeps the ids acknowledged."""

    def __init__(self, node, start_id=1):
        super().__init__(daemon=True)
        self.node = node
        self.next_id = start_id
        self.acked = []
        self.error = None
        self.stop_ev = threading.Event()

    def run(self):
        try:
            conn = self.node.connect()
            with conn.cursor() as cur:
                while not self.stop_ev.is_set():
                    cur.execute("INSERT INTO t (id) VALUES (%s)", (self.next_id,))
                    self.acked.append(self.next_id)
                    self.next_id += 1
        except psycopg2.Error as e:
            self.error = e


def test_clean_stop_handoff(make_cluster):
    c, p = started_cluster(make_cluster, 3, **FAST)
    ttl_s = FAST["lease_ttl_ms"] / 1000.0
    term = c.lease()["term"]

    w = Writer(p)
    w.start()
    poll_until(lambda: len(w.acked) >= 200, 60, "the writer to commit 200 rows")
    time.sleep(1.0)

    t_stop = time.monotonic()
    rc = p.stop(timeout=60)
    t_exit = time.monotonic()
    w.join(timeout=30)
    assert not w.is_alive(), "the writer did not notice the shutdown"
    assert w.error is not None
    assert rc == 0, "agent exit status %r after SIGTERM" % rc
    acked = set(w.acked)
    print("rows acknowledged before the stop: %d" % len(acked))

    def someone_writes():
        for n in c.others(p):
            try:
                n.query("INSERT INTO t (id) VALUES (%s)", (10 ** 9,), timeout=1)
                return n, time.monotonic()
            except psycopg2.Error:
                pass
        return None
    new, t_write = poll_until(someone_writes, 60, "a standby to accept a write", interval=0.05)
    measure("003 SIGTERM of the primary's agent -> first write accepted by %s" % new.name,
            t_write - t_stop)
    measure("003 primary's agent exit -> first write", t_write - t_exit)
    assert t_write - t_stop < ttl_s, (
        "handoff took %.2f s, not less than the TTL (%.1f s): the release was not used"
        % (t_write - t_stop, ttl_s))

    # The release: an event with the final LSN, and the claim cites it.
    rel = c.events("released", node=p.name, term=term)
    assert rel, c.events()
    acq = c.events("acquired", term=term + 1)
    assert len(acq) == 1 and acq[0]["node"] == new.name, acq
    assert "lease released at" in acq[0]["detail"], acq[0]["detail"]
    lease = c.lease()
    assert lease["term"] == term + 1 and lease["holder"] == new.name, lease

    # Zero acknowledged commits lost.
    got = c.ids(new)
    lost = acked - got
    assert not lost, "%d acknowledged rows lost, e.g. %s" % (len(lost), sorted(lost)[:10])

    # The other standby follows the new primary and has every row.
    r = [n for n in c.others(p) if n is not new][0]
    c.wait_for_streaming(r, new, timeout=90)
    c.wait_for_catchup(r, new)
    assert acked <= c.ids(r)

    # The stopped primary comes back as a standby of the new primary with no
    # data to discard: it stopped at the released LSN.
    p.start()
    c.wait_for_streaming(p, new, timeout=120)
    c.insert(new, [10 ** 9 + 1])
    c.wait_for_catchup(p, new)
    assert acked | {10 ** 9, 10 ** 9 + 1} <= c.ids(p)
    assert p.is_primary() is False
    assert not c.events("recloned", node=p.name), c.events("recloned")
    c.sampler.check()
