"""006: a second agent started with a node_name already in use (another data
directory and port, the same store) refuses quickly, naming the node, and
the running node is not disturbed."""
import time

from conftest import FAST, started_cluster


def start_duplicate(c, victim, name):
    dup = c.add_node(name)
    dup.write_conf(node_name=victim.name)
    t0 = time.monotonic()
    dup.start(wait=False)
    rc = dup.exit_code(timeout=30)
    return dup, rc, time.monotonic() - t0


def test_duplicate_node_name(make_cluster):
    c, p = started_cluster(make_cluster, 3, **FAST)
    c.insert(p, range(1, 11))
    s = c.others(p)[0]
    term = c.lease()["term"]
    before = c.node_rows()
    pids = {n.name: (n.agent_pid, n.postmaster_pid()) for n in c.nodes}

    for victim, dupname in ((p, "dupa"), (s, "dupb")):
        dup, rc, dt = start_duplicate(c, victim, dupname)
        out = dup.log_text()
        assert rc is not None, "the duplicate agent for %s is still running after 30 s" % victim.name
        assert rc != 0, "the duplicate agent for %s exited 0: %s" % (victim.name, out)
        assert dt < 15, "refusal took %.1f s" % dt
        assert "already in use" in out and "'%s'" % victim.name in out, out
        # It touched nothing of its own: no data directory was created.
        assert not (dup.pgdata / "PG_VERSION").exists()

    # The cluster did not notice: same processes, same roles, same term,
    # the nodes rows still describe the real nodes.
    time.sleep(2)
    assert c.lease()["term"] == term and c.lease()["holder"] == p.name
    for n in c.nodes[:3]:
        assert (n.agent_pid, n.postmaster_pid()) == pids[n.name], n.name
    after = c.node_rows()
    for name in (p.name, s.name):
        assert after[name]["conninfo"] == before[name]["conninfo"], (before[name], after[name])
    assert set(after) == set(before), "the duplicate wrote a nodes row: %s" % set(after)
    assert p.is_primary() is True
    c.insert(p, range(11, 21))
    c.wait_for_catchup(s, p)
    assert c.ids(s) == set(range(1, 21))
    assert not c.events("fenced"), c.events("fenced")
    c.sampler.check()
