"""045: what `pglease status` shows right after a kill -9 of the primary
(issue 24, "The operator's view").  The killed node's record still says
"primary running" for a TTL; status tests its alive lock (beside lease.db)
and shows it down the moment its last process is gone, and only the lease
holder of the current term is ever shown as primary: no sample, in the table
or in --json, shows two primaries, and none shows the killed node running
once its lock is free."""
import fcntl
import json
import os
import time

from conftest import FAST, run_pg, PGLEASE, started_cluster


def lock_free(c, node):
    """True when node's alive lock can be taken (probe: shared, dropped at once)."""
    try:
        fd = os.open(c.lease_dir / "alive" / ("%s.lock" % node.name), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def sample(c, json_doc):
    """{name: (role, state)} as status shows it now (table or --json)."""
    args = ["status", "--lease-db", str(c.lease_db)] + (["--json"] if json_doc else [])
    r = run_pg([PGLEASE] + args, timeout=30)
    assert r.returncode == 0, r.stderr
    if json_doc:
        return {n["name"]: (n["role"], n["state"]) for n in json.loads(r.stdout)["nodes"]}
    rows = {}
    for line in r.stdout.splitlines():
        cells = [x.strip() for x in line.split("|")]
        if len(cells) == 8 and cells[0] != "Name":
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_killed_primary_is_down_at_once(make_cluster):
    c, p = started_cluster(make_cluster, 3, **FAST)
    rows = sample(c, False)
    assert rows[p.name] == ("primary", "running"), rows
    assert lock_free(c, p) is False

    p.kill9()
    t_kill = time.monotonic()
    samples, t_free, t_down, new = 0, None, None, None
    while time.monotonic() - t_kill < 12:
        free_before = lock_free(c, p)
        if free_before and t_free is None:
            t_free = time.monotonic()
        for json_doc in (False, True):
            view = sample(c, json_doc)
            samples += 1
            primaries = [n for n, (role, _) in view.items() if role == "primary"]
            assert len(primaries) <= 1, "two primaries shown: %r" % view
            if free_before:
                assert view[p.name] != ("primary", "running"), \
                    "%s shown primary running %.2f s after its alive lock was free (%s)" % (
                        p.name, time.monotonic() - t_free, "json" if json_doc else "table")
                assert view[p.name][1] == "down", view
                t_down = t_down or time.monotonic()
            if primaries and primaries[0] != p.name:
                new = primaries[0]
        # Past the TTL the record itself goes stale: the window that matters is before.
        if new and t_down and time.monotonic() - t_kill > 1.5 * FAST["lease_ttl_ms"] / 1000:
            break
    assert t_free is not None, "the alive lock of %s never became free" % p.name
    assert t_down is not None and new is not None, "no new primary shown in 12 s"
    print("%d samples; lock free %.2f s after the kill; %s shown down %.2f s after; %s "
          "primary" % (samples, t_free - t_kill, p.name, t_down - t_kill, new))
    assert c.lease()["holder"] == new
    c.sampler.check()


ETCD_FAST = dict(lease_ttl_ms=2000, renew_interval_ms=500, fence_margin_ms=1000)


def test_etcd_killed_primary_never_one_of_two(etcd_cluster, make_cluster):
    """etcd: the alive locks are on each node's own host, so status cannot test
    them; the killed primary shows what its record says until etcd expires its
    lease or its heartbeat goes stale, but never beside the new primary."""
    c, p = started_cluster(make_cluster, 3, etcd=etcd_cluster, **ETCD_FAST)
    view = json_view(c)
    assert view[p.name][:2] == ("primary", "running") and view[p.name][2] is None, view

    p.kill9()
    t_kill = time.monotonic()
    new = None
    while time.monotonic() - t_kill < 20:
        view = json_view(c)
        primaries = [n for n, (role, _, _) in view.items() if role == "primary"]
        assert len(primaries) <= 1, "two primaries shown: %r" % view
        lease = c.lease()
        if lease and lease["holder"] and lease["holder"] != p.name:
            new = lease["holder"]
            assert view[p.name][0] != "primary", view
        if new and time.monotonic() - t_kill > 3 * ETCD_FAST["lease_ttl_ms"] / 1000:
            break
        time.sleep(0.05)
    assert new, "no new lease holder in 20 s"
    assert view[p.name][1] in ("stale primary", "unreachable"), view
    c.sampler.check()


def json_view(c):
    """{name: (role, state, alive_lock)} from status --json."""
    r = run_pg([PGLEASE, "status", "--json", "--lease-db", str(c.lease_db)], timeout=30)
    assert r.returncode == 0, r.stderr
    return {n["name"]: (n["role"], n["state"], n.get("alive_lock"))
            for n in json.loads(r.stdout)["nodes"]}
