"""017: the tools the agent runs (pg_basebackup here) never outlive it, and
never hold up a stop.  A clone that hangs (pg_basebackup stopped with
SIGSTOP, as a stalled network would) used to keep the agent deaf to SIGTERM
until the clone's one-hour timeout, and a pg_basebackup whose agent was
killed kept running, writing into a data directory a new agent would use."""
import os
import shutil
import signal
import time

from conftest import (FAST, measure, pid_alive, poll_until, started_cluster,
                      wait_for_descendant)


def _hung_clone(c, s):
    """Restarts s with an empty data directory and stops its pg_basebackup."""
    s.stop()
    shutil.rmtree(s.pgdata)
    s.start()

    bb = wait_for_descendant(s.agent_pid, "pg_basebackup")
    os.kill(bb, signal.SIGSTOP)
    return bb


def test_sigterm_during_clone_stops_it(make_cluster):
    c, p = started_cluster(make_cluster, 2, **FAST)
    s = c.others(p)[0]
    bb = _hung_clone(c, s)
    time.sleep(1.0)
    t0 = time.monotonic()
    os.kill(s.agent_pid, signal.SIGTERM)
    rc = s.exit_code(timeout=30)
    took = time.monotonic() - t0
    measure("017 SIGTERM during a clone -> agent exited", took)
    assert took < 5.0, "the agent took %.1f s to stop during a clone" % took
    assert rc == 0, s.log_tail()
    poll_until(lambda: not pid_alive(bb), 10, "pg_basebackup to be gone")
    # The interrupted clone is redone on the next start.
    s.start()
    c.wait_for_streaming(s, p, timeout=180)
    c.sampler.check()


def test_tool_dies_with_its_agent(make_cluster):
    c, p = started_cluster(make_cluster, 2, **FAST)
    s = c.others(p)[0]
    bb = _hung_clone(c, s)
    os.kill(s.agent_pid, signal.SIGKILL)
    s.exit_code(timeout=30)
    poll_until(lambda: not pid_alive(bb), 10,
               "pg_basebackup (pid %d) to die with its agent" % bb)
    s.start()
    c.wait_for_streaming(s, p, timeout=180)
    c.sampler.check()
