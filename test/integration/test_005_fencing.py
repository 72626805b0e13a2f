"""005: the primary fences itself (its postgres stops accepting writes) for
each cause in DESIGN.md section 2, records a 'fenced' event, and never comes
back as primary on its old term; a primary is elected again under a newer
term once the cause is gone."""
import os
import subprocess
import time

import pytest

from conftest import (FAST, assert_never_primary_on_old_term, iso_to_epoch, measure, poll_until,
                      require_root, started_cluster, wait_fenced)

TTL = FAST["lease_ttl_ms"] / 1000.0
MARGIN = FAST["fence_margin_ms"] / 1000.0


def log_rate(node, needle, since_wall):
    """Lines of node's agent log containing needle, per second, since since_wall."""
    stamps = []
    for line in node.log_text().splitlines():
        if needle in line and line[:4].isdigit() and "Z " in line[:30]:
            try:
                t = iso_to_epoch(line.split()[0])
            except ValueError:
                continue
            if t >= since_wall:
                stamps.append(t)
    if len(stamps) < 2:
        return len(stamps), 0.0
    return len(stamps), len(stamps) / max(stamps[-1] - stamps[0], 1.0)


def wait_fenced_event(c, node, term, timeout=30):
    return poll_until(lambda: [e for e in c.events("fenced", node=node.name) if e["term"] == term],
                      timeout, "a 'fenced' event of %s for term %d (agent log: %s)" % (
                          node.name, term, [l for l in node.log_text().splitlines()
                                            if "fenced" in l][:3]))


def finish(c, old, term):
    """A primary under a newer term, every node back (the old one as a
    standby or as the new holder), and the old term never reused."""
    newp = c.wait_healthy(timeout=180, min_term=term + 1)
    lease = c.lease()
    assert lease["term"] > term and lease["holder"] == newp.name
    acq = c.events("acquired", node=newp.name, term=lease["term"])
    assert acq, c.events()
    assert_never_primary_on_old_term(c, old, term)
    terms = [t for t, _ in c.sampler.terms()]
    assert terms == sorted(terms), terms
    # Writes work and reach everyone.
    c.insert(newp, range(90001, 90011))
    for n in c.others(newp):
        c.wait_for_catchup(n, newp)
        assert set(range(90001, 90011)) <= c.ids(n)
    c.sampler.check()
    return newp


def test_store_locked_primary_keeps_its_lease(make_cluster):
    """a) another process holds lease.db's write lock for longer than the TTL
    (an operator's shell inside BEGIN IMMEDIATE, a node frozen inside a claim):
    renewals and heartbeats go to each node's own record, so the primary keeps
    renewing and accepting writes, the standbys keep heartbeating, and nobody
    claims (a claim needs the lock).  Before the node records, this fenced a
    healthy primary within the TTL."""
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    hold = 2 * TTL + 1.0
    renewals0 = c.lease()["renewals"]
    hb0 = {n: r["heartbeat"] for n, r in c.node_rows().items()}
    locker = c.store_write("", hold_s=hold)
    i = c.keep_writing(p, time.monotonic() + hold - 0.5)
    lease = c.lease()
    assert lease["term"] == term and lease["holder"] == p.name, lease
    assert lease["renewals"] >= renewals0 + int(TTL / 0.5), (renewals0, lease)
    hb = {n: r["heartbeat"] for n, r in c.node_rows().items()}
    assert all(hb[n] > hb0[n] for n in hb0), (hb0, hb)
    assert locker.wait(timeout=hold + 30) == 0, locker.stderr.read()
    assert p.is_primary() and c.lease()["term"] == term
    assert not c.events("fenced"), c.events()
    for n in c.others(p):
        c.wait_for_catchup(n, p)
        assert set(range(1, i)) <= c.ids(n)
    c.sampler.check()


def test_fence_agent_stalled(make_cluster):
    """b) the primary's agent is stopped (SIGSTOP) past the TTL, then resumed."""
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    t0 = time.monotonic()
    p.sigstop(whole=False)          # the agent process only
    try:
        wait_fenced(p, TTL + 5, "%s's postgres to stop accepting writes while its agent is "
                    "stopped" % p.name)
        measure("005b agent SIGSTOP -> its postgres stops accepting writes",
                time.monotonic() - t0)
        newp = c.wait_for_primary(timeout=60, exclude=[p], min_term=term + 1)
        measure("005b agent SIGSTOP -> %s primary" % newp.name, time.monotonic() - t0)
        time.sleep(1.0)
    finally:
        p.sigcont()
    wait_fenced_event(c, p, term)
    finish(c, p, term)


def test_fence_higher_term(make_cluster):
    """c) someone else's higher term appears in the store: fence at once."""
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    t0 = time.monotonic()
    w = c.store_write("UPDATE lease SET holder = 'ghost', term = term + 1 WHERE id = 1")
    assert w.wait(timeout=30) == 0, w.stderr.read()
    wait_fenced(p, 5)
    dt = time.monotonic() - t0
    measure("005c higher term written -> primary fenced", dt)
    assert dt < 2.5, "fenced only after %.2f s" % dt
    ev = wait_fenced_event(c, p, term)
    assert "higher term" in ev[0]["detail"], ev
    # 'ghost' never renews: after the TTL a real node claims term + 2.
    newp = c.wait_for_primary(timeout=60, min_term=term + 2)
    acq = c.events("acquired", term=term + 2)
    assert len(acq) == 1 and acq[0]["node"] == newp.name, acq
    assert "ghost" in acq[0]["detail"] and "lease unchanged for" in acq[0]["detail"], acq
    claimed = c.sampler.wait_first_seen(lambda t, h: t == term + 2)
    ghost = c.sampler.wait_first_seen(lambda t, h: t == term + 1)
    assert claimed and ghost and claimed[0] - ghost[0] >= TTL - 0.3, (
        "ghost's term was taken over %.2f s after it appeared, before the TTL"
        % (claimed[0] - ghost[0]))
    finish(c, p, term)


def test_fence_store_full(make_cluster):
    """d) the store's file system is full: commits fail, the holder fences at its
    deadline; once space is free a primary is elected under a newer term."""
    require_root()
    c = make_cluster(3, tmpfs_size="32m", **FAST)
    c.start()
    p = c.wait_healthy(timeout=240)
    c.create_table(p)
    c.start_sampler()
    term = c.lease()["term"]
    fill = c.lease_dir / "fill"
    t0 = time.monotonic()
    w0 = time.time()
    r = subprocess.run(["dd", "if=/dev/zero", "of=%s" % fill, "bs=64k"], capture_output=True,
                       text=True, timeout=120)
    assert "No space left" in r.stderr, r.stderr
    try:
        wait_fenced(p, TTL + 10, "%s to fence on a full store" % p.name)
        dt = time.monotonic() - t0
        measure("005d store full -> primary fenced", dt)
        assert dt <= TTL + 2.0, "fenced only after %.2f s" % dt
        assert "renewal failed" in p.log_text(), p.log_tail(30)
        # Nobody can claim while the store cannot be written.
        time.sleep(TTL)
        assert c.lease()["term"] == term
        assert not [n for n in c.nodes if n.is_primary()], "a primary on a full store"
    finally:
        os.unlink(fill)
    finish(c, p, term)
    problems = []
    # The fence happened while the store was full: its event must still be recorded.
    try:
        wait_fenced_event(c, p, term)
    except pytest.fail.Exception as e:
        problems.append(str(e).splitlines()[0])
    # A store that cannot be written is retried calmly, not in a tight loop.
    for n in c.nodes:
        count, rate = log_rate(n, "claim failed", w0)
        if rate > 20:
            problems.append("%s logged 'claim failed' %d times, %.0f per second, while the "
                            "store was full" % (n.name, count, rate))
    assert not problems, "\n".join(problems)
