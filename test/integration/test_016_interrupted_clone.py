"""016: a clone interrupted by a kill (found by the nemesis: the agent was
killed while pg_basebackup ran).  The half-copied data directory has
PG_VERSION and most files, but can never become consistent; the agent used to
take it for data, find "no rewind required", start a server that stayed in
"the database system is starting up" for good, and then wait forever.  Now
the clone leaves a marker until it is complete: the restarted agent clones
again and the node streams."""
import os
import shutil
import signal

from conftest import (FAST, descendants, poll_until, signal_pids, started_cluster,
                      wait_for_descendant)


def test_clone_killed_midway_is_redone(make_cluster):
    c, p = started_cluster(make_cluster, 2, **FAST)
    s = c.others(p)[0]
    # Enough incompressible data that pg_basebackup runs for a while.
    p.query("CREATE TABLE big AS SELECT g, md5(random()::text) || md5(random()::text) AS x "
            "FROM generate_series(1, 600000) g", timeout=300)
    c.insert(p, range(1, 11))

    s.stop()
    shutil.rmtree(s.pgdata)
    s.start()

    bb = wait_for_descendant(s.agent_pid, "pg_basebackup")
    poll_until(lambda: (s.pgdata / "PG_VERSION").exists(), 60,
               "pg_basebackup to have written PG_VERSION", interval=0.01)
    os.kill(bb, signal.SIGSTOP)               # the clone is certainly incomplete now
    assert not (s.pgdata / "backup_manifest").exists(), "the clone finished before the kill"
    signal_pids([s.agent_pid, bb] + descendants(s.agent_pid), signal.SIGKILL)
    os.kill(bb, signal.SIGCONT)
    s.exit_code(timeout=30)
    assert (s.pgdata / "PG_VERSION").exists()

    s.start()
    c.wait_for_streaming(s, p, timeout=180)
    assert "did not complete; cloning again" in s.log_text(), s.log_tail()
    c.insert(p, range(11, 21))
    c.wait_for_catchup(s, p)
    assert c.ids(s) == set(range(1, 21))
    assert s.scalar("SELECT count(*) FROM big") == 600000
    assert not os.path.exists(str(s.pgdata) + ".cloning")
    c.sampler.check()
