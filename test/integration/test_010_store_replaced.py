"""010: the lease store file is deleted or replaced under running agents (an
operator's mistake).  The old file lives on for the agents that have it
open while new openers would see another store: two clusters in one.  Every
agent must notice, the primary must fence, and all must stop with an error
naming the file; nothing accepts writes afterwards."""
import os

import psycopg2

from conftest import FAST, started_cluster


def test_store_replaced_stops_everyone(make_cluster):
    c, p = started_cluster(make_cluster, 3, sampler=False, **FAST)
    c.insert(p, range(1, 11))
    moved = str(c.lease_db) + ".moved"
    os.rename(c.lease_db, moved)
    try:
        for n in c.nodes:
            rc = n.exit_code(timeout=30)
            assert rc is not None, "%s still running 30 s after its store was replaced" % n.name
            assert rc != 0, "%s exited 0 after its store was replaced" % n.name
            log = n.log_text()
            assert "was deleted or replaced while running" in log, n.log_tail()
            assert str(c.lease_db) in log
        assert "fenced: the lease store file was deleted or replaced" in p.log_text(), p.log_tail()
        # No node accepts writes any more.
        for n in c.nodes:
            try:
                conn = n.connect(timeout=2)
            except psycopg2.Error:
                continue
            with conn.cursor() as cur:
                cur.execute("SELECT pg_is_in_recovery()")
                assert cur.fetchone()[0] is True, "%s still accepts writes" % n.name
            conn.close()
    finally:
        os.rename(moved, c.lease_db)
