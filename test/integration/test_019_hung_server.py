"""019: a hung local server (the postmaster and every backend stopped with
SIGSTOP, the agent running) does not stall the agent.  Its calls to the
server are bounded, so its loop keeps renewing and writing its node row; a
primary whose server has not answered for a whole TTL gives up its term with
a 'fenced' event that says so (its server is killed), and writes resume
under a newer term.  Before, the
agent's status query blocked until its own fence watchdog killed the server
at the deadline."""
import signal
import time

from conftest import (FAST, descendants, measure, poll_until, signal_pids, started_cluster)

TTL = FAST["lease_ttl_ms"] / 1000.0


def test_hung_primary_steps_down(make_cluster):
    c, p = started_cluster(make_cluster, 3, **FAST)
    term = c.lease()["term"]
    c.sampler_pause(p)
    pm = p.postmaster_pid()
    assert pm, p.log_tail()
    signal_pids([pm], signal.SIGSTOP)
    pids = [pm] + [d for d in descendants(pm) if d != pm]
    signal_pids(pids, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        # The agent is not stuck behind its server: its row keeps changing and
        # it keeps renewing while the server does not answer.
        hb0 = c.node_rows()[p.name]["heartbeat"]
        renewals0 = c.lease()["renewals"]
        poll_until(lambda: c.node_rows()[p.name]["heartbeat"] >= hb0 + 2, TTL,
                   "%s's agent to keep writing its row while its server is hung" % p.name)
        assert c.lease()["term"] == term and c.lease()["renewals"] > renewals0, c.lease()

        ev = poll_until(lambda: [e for e in c.events("fenced", node=p.name)
                                 if e["term"] == term], TTL + 10,
                        "a 'fenced' event of %s for term %d" % (p.name, term))
        t_fenced = time.monotonic() - t0
        measure("019 server SIGSTOP -> primary gave up its term", t_fenced)
        assert "has not answered" in ev[0]["detail"], ev
        # Not before a whole TTL of silence (minus one status interval).
        assert t_fenced >= TTL - 1.0, "gave up after %.2f s only" % t_fenced
        # A newer term takes writes: a standby after the TTL, or the old node
        # itself once its killed server restarted (proof of its own death).
        newp = c.wait_for_primary(timeout=60, min_term=term + 1)
        measure("019 server SIGSTOP -> %s primary" % newp.name, time.monotonic() - t0)
    finally:
        signal_pids(pids, signal.SIGCONT)
    c.sampler_resume(p)
    newp = c.wait_healthy(timeout=180, min_term=term + 1)
    c.insert(newp, range(91001, 91011))
    for n in c.others(newp):
        c.wait_for_catchup(n, newp)
        assert set(range(91001, 91011)) <= c.ids(n)
    c.sampler.check()
