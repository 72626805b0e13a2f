"""027: a standby's data directory made unreadable while its server runs.

Found by the nemesis (sync, seed 2026, fault standby_unreadable): the agent
took the unreadable directory for an empty one and started a clone; the
clone's marker then made it clone again once the directory was readable, and
pg_basebackup emptied the directory under the running standby, which went on
serving a mix of old and new files: 1005 acknowledged rows were missing on it
at the end although it reported the primary's replay position.  Now a
directory that cannot be looked into counts as holding data, the decision
never clones under a running server, and the clone refuses to start while
the agent's postmaster runs."""
import os
import time

from conftest import FAST, poll_until

TTL = FAST["lease_ttl_ms"] / 1000.0


def test_unreadable_standby_is_never_cloned_under_its_server(make_cluster):
    c = make_cluster(3, **FAST)
    c.start()
    p = c.wait_healthy(timeout=240)
    c.create_table(p)
    c.start_sampler()
    c.insert(p, range(1, 101))
    s = c.others(p)[0]
    c.wait_for_catchup(s, p)
    started = s.scalar("SELECT pg_postmaster_start_time()::text")
    log0 = len(s.log_text())
    ev0 = len(c.events())

    # No writes meanwhile: the standby's startup process waits for WAL and
    # touches no file, so its server keeps running, as in the nemesis run.
    os.chmod(s.pgdata, 0)
    try:
        time.sleep(3 * TTL)
    finally:
        os.chmod(s.pgdata, 0o700)
    # As long again with the directory readable (the old agent emptied it now).
    time.sleep(3 * TTL)
    assert s.scalar("SELECT pg_postmaster_start_time()::text") == started, \
        "the standby's server was restarted: " + s.log_text()[log0:][-3000:]
    c.insert(p, range(101, 201))
    i = 201
    c.wait_for_catchup(s, p)
    new_log = s.log_text()[log0:]
    assert "cloning from" not in new_log and "rewinding against" not in new_log, new_log[-3000:]
    assert not [e for e in c.events()[ev0:] if e["node"] == s.name and
                e["kind"] in ("cloned", "recloned")], c.events()[ev0:]
    assert s.scalar("SELECT pg_postmaster_start_time()::text") == started
    want = p.scalar("SELECT count(*) FROM t")
    assert want == i - 1
    assert s.scalar("SELECT count(*) FROM t") == want
    poll_until(lambda: (s.wal_receiver() or ("",))[0] == "streaming", 30,
               "%s to stream" % s.name)
    c.sampler.check()
