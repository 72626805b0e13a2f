"""009: proof of death.  The agent holds flock(LOCK_EX) on
<store dir>/alive/<node>.lock and the postmaster and every backend inherit
it, so an observer that can take the lock knows no process of the old
primary can write any more and may claim before the TTL; a frozen holder
keeps its lock, so the TTL decides."""
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg2
import pytest

FENCE_LIB = "/usr/lib/postgresql/15/lib/pglease_fence.so"

from conftest import (FAST, children, iso_to_epoch, measure, open_files, pid_can_run,
                      poll_until, started_cluster)
from conftest import first_write


def test_orphan_backend_delays_claim(make_cluster):
    """a) kill -9 of agent and postmaster while a backend still runs a long
    INSERT: no claim until that backend has exited, then a claim at once."""
    # A TTL far longer than the orphan can live (about 50 s on a busy machine),
    # so a claim before the TTL can only come from the lock.
    c, p = started_cluster(make_cluster, 3, lease_ttl_ms=120000, renew_interval_ms=1000,
                           fence_margin_ms=1000)
    p.query("CREATE TABLE big (g int)")
    term = c.lease()["term"]
    conn = p.connect(options="-c statement_timeout=0")
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        bpid = cur.fetchone()[0]
    result = {}

    def long_insert():
        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO big SELECT g FROM generate_series(1, 12000000) g")
            result["done"] = time.monotonic()
        except psycopg2.Error as e:
            result["error"] = str(e)
    th = threading.Thread(target=long_insert, daemon=True)
    th.start()
    poll_until(lambda: p.scalar("SELECT state FROM pg_stat_activity WHERE pid = %s",
                                (bpid,)) == "active", 30, "the INSERT to be active", interval=0.05)
    time.sleep(1.0)
    pm = p.postmaster_pid()
    assert bpid in children(pm), "backend %d is not a child of the postmaster %d" % (bpid, pm)
    lock = str(c.lease_dir / "alive" / ("%s.lock" % p.name))
    assert lock in open_files(bpid), "backend %d does not hold %s open: %s" % (
        bpid, lock, open_files(bpid))

    p.kill9()                       # agent and postmaster, not the backend
    t_kill = time.monotonic()
    t_exit = w_exit = None
    claim_while_alive = None
    while time.monotonic() - t_kill < 300:
        l = c.lease()
        alive = pid_can_run(bpid)     # read after the lease: a claim seen before an exit
        if l["term"] != term and alive:
            claim_while_alive = l
            break
        if not alive and t_exit is None:
            t_exit, w_exit = time.monotonic(), time.time()
        if t_exit is not None and l["term"] != term:
            break
        time.sleep(0.02)
    assert claim_while_alive is None, (
        "term %d was claimed (%r) while backend %d of the killed primary was still running"
        % (claim_while_alive["term"], claim_while_alive["holder"], bpid))
    assert t_exit is not None, "backend %d still alive 300 s after the kill" % bpid
    measure("009a kill -> orphan backend exit", t_exit - t_kill)
    assert t_exit - t_kill > 1.0, ("the backend exited %.2f s after the kill: too soon for "
                                   "the test to mean anything" % (t_exit - t_kill))
    newp = c.wait_for_primary(timeout=30, min_term=term + 1)
    t_claim_seen = time.monotonic()
    measure("009a orphan backend exit -> new primary %s" % newp.name, t_claim_seen - t_exit)
    assert t_claim_seen - t_kill < 110, "the claim waited for the TTL, not for the lock"
    acq = c.events("acquired", term=term + 1)
    assert len(acq) == 1 and "holder's processes gone" in acq[0]["detail"], acq
    assert iso_to_epoch(acq[0]["at"]) >= w_exit - 0.05, (
        "claimed at %s, before the backend exited (%.3f)" % (acq[0]["at"], w_exit))
    print("INSERT outcome on the dead primary:", result)
    th.join(timeout=10)
    try:
        conn.close()
    except psycopg2.Error:
        pass
    c.sampler.check()


def test_whole_node_killed(make_cluster):
    """b) kill -9 of every process of the primary: a standby takes over well
    under the TTL, on the proof of death."""
    c, p = started_cluster(make_cluster, 3, lease_ttl_ms=5000, renew_interval_ms=1000,
                           fence_margin_ms=1000)
    c.insert(p, range(1, 101))
    for s in c.others(p):
        c.wait_for_catchup(s, p)
    term = c.lease()["term"]
    t_kill = time.monotonic()
    p.kill9(whole=True)
    new, t_write = first_write(c.others(p), 100001, 30)
    dt = t_write - t_kill
    measure("009b kill -9 of the whole primary node (ttl 5 s) -> first write on %s" % new.name, dt)
    assert dt < 4.0, "took %.2f s: the TTL decided, not the proof of death" % dt
    acq = c.events("acquired", term=term + 1)
    assert len(acq) == 1 and acq[0]["node"] == new.name, acq
    assert "holder's processes gone" in acq[0]["detail"], acq[0]["detail"]
    assert set(range(1, 101)) <= c.ids(new)
    c.sampler.check()


def test_whole_node_frozen(make_cluster):
    """c) SIGSTOP of every process of the primary: its lock stays held, so no
    claim before ~TTL; after SIGCONT it is not a second primary and rejoins."""
    ttl, margin = FAST["lease_ttl_ms"] / 1000.0, FAST["fence_margin_ms"] / 1000.0
    c, p = started_cluster(make_cluster, 3, **FAST)
    c.insert(p, range(1, 101))
    for s in c.others(p):
        c.wait_for_catchup(s, p)
    term = c.lease()["term"]
    t_stop = time.monotonic()
    p.sigstop(whole=True)
    try:
        newp = c.wait_for_primary(timeout=60, exclude=[p], min_term=term + 1)
        claim = c.sampler.wait_first_seen(lambda t, h: t == term + 1)
        assert claim is not None
        measure("009c whole primary node frozen -> claim seen", claim[0] - t_stop)
        assert claim[0] - t_stop >= ttl - margin, (
            "claimed %.2f s after the freeze: before ttl - margin" % (claim[0] - t_stop))
        acq = c.events("acquired", term=term + 1)
        assert len(acq) == 1 and "lease unchanged for" in acq[0]["detail"], acq
        c.insert(newp, range(101, 201))
        time.sleep(1.0)
    finally:
        p.sigcont()
    # The old primary must not answer as a primary next to the new one, and
    # comes back as its standby.
    c.wait_for_streaming(p, newp, timeout=180)
    c.wait_for_catchup(p, newp)
    assert set(range(1, 201)) <= c.ids(p)
    assert c.lease()["term"] == term + 1
    assert p.is_primary() is False
    c.sampler.check()


PROBE = r"""
import fcntl, os, sys, time
paths, end = sys.argv[1:-1], time.monotonic() + float(sys.argv[-1])
n = 0
got = {p: 0 for p in paths}
while time.monotonic() < end:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            got[p] += 1
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            pass
        os.close(fd)
        n += 1
    time.sleep(0.005)
print(n, " ".join(str(got[p]) for p in paths))
"""


def test_probes_in_steady_state(make_cluster):
    """d) a tight loop of lock probes on a healthy cluster changes nothing,
    not even for an agent restarting meanwhile."""
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    s, s2 = c.others(p)
    # The primary's lock, a standby's, and the lock of the standby restarted
    # meanwhile (that one is free while its agent is down).
    locks = [str(c.lease_dir / "alive" / ("%s.lock" % n.name)) for n in (p, s2, s)]
    for l in locks:
        assert os.path.exists(l), l
    prober = subprocess.Popen([sys.executable, "-c", PROBE, *locks, "20"],
                              stdout=subprocess.PIPE, text=True)
    c.extra_procs.append(prober)
    t0 = time.monotonic()
    i = 1
    restarted = False
    while prober.poll() is None:
        c.insert(p, range(i, i + 20))
        i += 20
        if not restarted and time.monotonic() - t0 > 5:
            # An agent restarting under the probes must still take its own lock.
            assert s.stop() == 0
            s.start()
            restarted = True
        time.sleep(0.2)
    out, _ = prober.communicate(timeout=30)
    n, got_p, got_s2, got_s = map(int, out.split())
    print("probes: %d, lock obtained: primary %d, standby %d, restarted standby %d"
          % (n, got_p, got_s2, got_s))
    assert n > 1000, "too few probes: %d" % n
    assert got_p == 0 and got_s2 == 0, (
        "a probe obtained the lock of a live node: primary %d, standby %d times" % (got_p, got_s2))
    assert c.lease()["term"] == term and c.lease()["holder"] == p.name
    assert [t for t, _ in c.sampler.terms()] == [term] * len(c.sampler.terms())
    assert len(c.events("acquired")) == 1 and not c.events("fenced")
    assert "already in use" not in s.log_text()
    c.wait_for_streaming(s, p, timeout=60)
    c.wait_for_catchup(s, p)
    assert set(range(1, i)) <= c.ids(s)
    c.sampler.check()


@pytest.mark.skipif(not os.path.exists(FENCE_LIB), reason=(
    "the in-server fence (src/fence, make install-fence) is not installed: without it a "
    "thawed primary can commit a write queued during the freeze"))
def test_frozen_primary_commits_nothing_on_thaw(make_cluster):
    """e) (stronger 009c) an INSERT sent to the old primary while it is frozen
    must not commit when the node is thawed after a new primary took over."""
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    oc = p.connect(options="-c statement_timeout=0")
    with oc.cursor() as cur:
        cur.execute("SELECT 1")
    p.sigstop(whole=True)
    result = {}
    try:
        newp = c.wait_for_primary(timeout=60, exclude=[p], min_term=term + 1)
        c.insert(newp, [1])
        t_new = time.monotonic()

        def stale_write():
            try:
                with oc.cursor() as cur:
                    cur.execute("INSERT INTO t (id) VALUES (777777)")
                result["committed"] = time.monotonic()
            except psycopg2.Error as e:
                result["error"] = str(e).strip()
        th = threading.Thread(target=stale_write, daemon=True)
        th.start()
        time.sleep(0.5)             # the INSERT is now in the frozen backend's socket
    finally:
        # A cgroup thaw resumes every process at once; postgres first is the worst case.
        pids = p.stopped_pids
        p.stopped_pids = []
        for pid in reversed(pids):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    th.join(timeout=30)
    print("stale write on the thawed old primary:", result)
    assert "committed" not in result, (
        "the old primary %s committed a write %.2f s after %s had accepted writes under "
        "term %d (an acknowledged commit that the new primary does not have)"
        % (p.name, result["committed"] - t_new, newp.name, term + 1))
    c.sampler.check()
