"""024: reload (issue 12): `pglease reload` (SIGHUP) makes the agent read its
configuration again.  A new priority decides the next election; a file with
an error changes nothing; keys that need a restart are named and keep their
running values; pg.* settings that PostgreSQL reloads take effect at once."""
import os
import signal
import time

from conftest import FAST, poll_until, started_cluster


def reload(c, node):
    r = c.cli("reload", "-c", str(node.conf))
    assert r.returncode == 0 and "sent SIGHUP to the agent of %s" % node.name in r.stdout, \
        r.stdout + r.stderr
    return r


def test_reload_priority_changes_the_next_election(make_cluster):
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    s1, s2 = sorted(c.others(p), key=lambda n: n.name)   # s1 would win a tie by name
    for s in (s1, s2):
        c.wait_for_catchup(s, p)
    s1.settings["priority"] = 0
    s1.write_conf()
    reload(c, s1)
    poll_until(lambda: "reload: configuration reloaded: priority 0" in s1.log_text(), 15,
               "%s to log the reload" % s1.name)
    poll_until(lambda: c.node_record(s1.name)["priority"] == 0, 15,
               "%s's record to say priority 0" % s1.name)
    assert [e for e in c.events("reloaded") if e["node"] == s1.name], c.events()
    p.kill9()
    newp = c.wait_for_primary(timeout=60, exclude=[p], min_term=term + 1)
    assert newp is s2, "%s won term %d with priority 0" % (newp.name, term + 1)
    c.wait_for_streaming(s1, s2, timeout=120)
    c.sampler.check()


def test_bad_reload_changes_nothing(make_cluster):
    c, p = started_cluster(make_cluster, 2, **FAST)
    s = c.others(p)[0]
    # An error anywhere in the file: `pglease reload` says so and signals nothing;
    # the agent, sent SIGHUP anyway, changes nothing, not even the valid lines.
    s.write_conf(extra_lines=["log_level = debug", "priority = lots"])
    r = c.cli("reload", "-c", str(s.conf))
    assert r.returncode == 2 and "%s:" % s.conf in r.stderr and "priority" in r.stderr, \
        r.stderr
    assert "reload:" not in s.log_text()
    os.kill(s.agent_pid, signal.SIGHUP)
    poll_until(lambda: "reload: configuration unchanged" in s.log_text(), 15,
               "%s to refuse the reload" % s.name)
    text = s.log_text()
    assert "reload: %s:" % s.conf in text and "priority" in text, text[-2000:]
    time.sleep(1.5)
    tail = s.log_text()[len(text):]
    assert " DEBUG " not in tail.upper().replace("DEBUG:", ""), tail
    assert c.node_record(s.name)["priority"] == 100
    assert not [e for e in c.events("reloaded") if e["node"] == s.name]
    # A key that needs a restart is named and kept; a pg.* setting is reloaded.
    s.write_conf(extra_lines=["pg.work_mem = 8MB"], pg_port=s.port + 1)
    reload(c, s)
    poll_until(lambda: "need a restart and keep their running values: pg_port" in
               s.log_text(), 15, "%s to name pg_port" % s.name)
    poll_until(lambda: s.scalar("SHOW work_mem") == "8MB", 15, "work_mem to be 8MB on " + s.name)
    assert s.is_primary() is False and c.lease()["holder"] == p.name
    s.write_conf(extra_lines=["pg.shared_buffers = 64MB"])
    reload(c, s)
    poll_until(lambda: "postgres needs a restart for: shared_buffers" in s.log_text(), 15,
               "%s to name shared_buffers" % s.name)
    c.sampler.check()


def test_reload_without_an_agent(make_cluster):
    c = make_cluster(1, **FAST)
    n = c.nodes[0]
    r = c.cli("reload", "-c", str(n.conf))
    assert r.returncode == 1 and "pglease: reload:" in r.stderr, r.stderr
