"""020: a node stopped in the middle of its own write to the store delays
nobody (issue 11).  gdb stops an agent inside its record write (at the
rename() that puts the record in place) and keeps it stopped for longer than
the TTL.  A stopped standby: the primary neither fences nor stops accepting
writes.  A stopped primary agent: a standby claims and accepts writes within
the TTL plus a bound, and nobody ever finds the store locked.  Before the node
records, both were a write transaction on lease.db: the first fenced the
healthy primary, the second kept every standby from claiming until the thaw."""
import os
import shutil
import time

import pytest

from conftest import FAST, measure, poll_until, require_root, started_cluster

TTL = FAST["lease_ttl_ms"] / 1000.0
GDB = shutil.which("gdb")


def stop_inside_write(node, hold_s):
    g = node.stop_in_write(hold_s)
    return g, time.monotonic()


def locked_lines(c):
    return [(n.name, l) for n in c.nodes for l in n.log_text().splitlines()
            if "database is locked" in l or "store busy" in l]


@pytest.mark.skipif(GDB is None, reason="needs gdb")
def test_standby_stopped_in_its_write_costs_the_primary_nothing(make_cluster):
    require_root()
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    s = c.others(p)[0]
    hold = 2 * TTL
    g, t0 = stop_inside_write(s, hold)
    renewals0 = c.lease()["renewals"]
    i = c.keep_writing(p, t0 + hold - 0.5)
    lease = c.lease()
    assert lease["holder"] == p.name and lease["term"] == term, lease
    assert lease["renewals"] >= renewals0 + int(TTL / 0.5), (renewals0, lease)
    assert g.wait(timeout=30) == 0, g.stdout.read()
    assert p.is_primary() and not c.events("fenced"), c.events()
    # The standby goes on as if nothing happened: it heartbeats and catches up.
    hb = c.node_rows()[s.name]["heartbeat"]
    poll_until(lambda: c.node_rows()[s.name]["heartbeat"] > hb, 30,
               "%s to heartbeat again after the thaw" % s.name)
    for n in c.others(p):
        c.wait_for_catchup(n, p)
        assert set(range(1, i)) <= c.ids(n)
    assert not locked_lines(c), locked_lines(c)
    c.sampler.check()


@pytest.mark.skipif(GDB is None, reason="needs gdb")
def test_primary_stopped_in_its_write_is_replaced(make_cluster):
    require_root()
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    c.insert(p, range(1, 101))
    for n in c.others(p):
        c.wait_for_catchup(n, p)
    hold = 3 * TTL
    g, t0 = stop_inside_write(p, hold)
    newp = c.wait_for_primary(timeout=TTL + 15, exclude=[p], min_term=term + 1)
    c.insert(newp, [1001])
    dt = time.monotonic() - t0
    measure("020 primary's agent stopped inside its record write -> first write on %s"
            % newp.name, dt)
    assert dt <= TTL + 10, "a standby took over only after %.2f s" % dt
    assert time.monotonic() - t0 < hold, "took over only after the thaw"
    assert g.wait(timeout=60) == 0, g.stdout.read()
    # The old primary was fenced by its watchdog meanwhile and rejoins as a standby.
    c.wait_for_streaming(p, newp, timeout=120)
    c.wait_for_catchup(p, newp)
    assert set(range(1, 101)) | {1001} <= c.ids(p)
    assert not locked_lines(c), locked_lines(c)
    c.sampler.check()


def test_damaged_records_heal_and_change_nothing(make_cluster):
    """Each node's record overwritten in place with random bytes (the primary's
    too, and again and again for two TTLs): a record that does not parse is
    ignored, which only makes that node look silent, never expired.  Nobody
    claims or fences, and every node's next write puts a good record back."""
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 2 * TTL:
        i += 1
        for n in c.nodes:
            with open(c.nodes_dir / ("%s.json" % n.name), "r+b") as f:
                f.write(os.urandom(64))
        c.insert(p, [i])
        time.sleep(0.05)
    poll_until(lambda: all(c.node_record(n.name) for n in c.nodes), 10,
               "every node to write a good record again")
    lease = c.lease()
    assert lease["holder"] == p.name and lease["term"] == term, lease
    assert p.is_primary() and not c.events("fenced"), c.events()
    assert len(c.events("acquired")) == 1, c.events()
    c.sampler.check()


@pytest.mark.skipif(GDB is None, reason="needs gdb")
def test_holder_stopped_before_its_lease_read_claims_nothing_on_thaw(make_cluster):
    """The primary's agent stopped (gdb) in a pass after it read the clock and
    before it read the lease, for two TTLs: a standby claims the next term.  At
    the thaw the old holder reads the new holder's lease and fences; it must
    count that version as first seen after its read.  Stamped with the clock
    reading from before the stop, the new holder's fresh lease looked older than
    the TTL and the thawed node claimed the term after it at once: two primaries
    for an instant, and the new holder's writes lost (seen once in
    test_whole_node_frozen, whose SIGSTOP landed in that window)."""
    require_root()
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    g = p.stop_at(["pgl_store_read_lease"], 2 * TTL, "before its lease read")
    newp = c.wait_for_primary(timeout=60, exclude=[p], min_term=term + 1)
    c.insert(newp, range(1, 51))
    assert g.wait(timeout=30) == 0, g.stdout.read()
    t_thaw = time.monotonic()
    c.wait_for_streaming(p, newp, timeout=120)
    time.sleep(max(0.0, 2 * TTL - (time.monotonic() - t_thaw)))
    l = c.lease()
    assert l["holder"] == newp.name and l["term"] == term + 1, \
        "%s claimed after its thaw: %s\n%s" % (p.name, l, p.log_tail())
    assert not [e for e in c.events("acquired") if e["term"] > term + 1], c.events("acquired")
    c.insert(newp, range(51, 61))
    c.wait_for_catchup(p, newp)
    assert set(range(1, 61)) <= c.ids(p)
    c.sampler.check()
