"""034: random bytes over the lease store's first page under a running
cluster (issue 24).  Every agent stops (safe) and its error line names the
one step that re-forms the cluster, once; an agent started on the damaged
store waits instead of exiting (no restart loop under Docker), saying so
once.  `pglease store rebuild` refuses while an agent runs, then keeps the
damaged file and writes a fresh store above every term seen; the restarted
agents elect a primary that has every acknowledged row and takes writes."""
import glob
import os
import time

from conftest import FAST, poll_until, sha256, started_cluster


def test_store_rebuilt_after_random_bytes(make_cluster):
    c, p = started_cluster(make_cluster, 3, sampler=False, **FAST)
    c.insert(p, range(1, 51))
    term = c.lease()["term"]
    with open(c.lease_db, "r+b") as f:
        f.write(os.urandom(4096))
        f.flush()
        os.fsync(f.fileno())
    hint = "pglease store rebuild --lease-db %s" % c.lease_db
    for n in c.nodes:
        rc = n.exit_code(timeout=60)
        assert rc is not None and rc != 0, "%s did not stop on a corrupt store" % n.name
        assert n.log_text().count(hint) == 1, n.log_tail()
    # (the last agent to close the store may have checkpointed into it: hashed now)
    damaged = sha256(c.lease_db)

    # Started on the damaged store, an agent waits (no exit, no loop) and says so once.
    w = c.nodes[1]
    w.start()
    time.sleep(12)
    assert w.agent_running(), w.log_tail()
    assert w.log_text().count("waiting: with every agent stopped or waiting") == 1, w.log_tail()
    assert w.log_text().count(hint) == 2, w.log_tail()
    assert w.postmaster_pid() is None

    # Refused while an agent holds its alive lock (a stand-in: the lock of a live process).
    import fcntl
    lock = c.lease_dir / "alive" / "intruder.lock"
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        r = c.cli("store", "rebuild", "--lease-db", str(c.lease_db))
    os.unlink(lock)
    assert r.returncode == 1 and "intruder.lock" in r.stderr, (r.returncode, r.stderr)
    assert sha256(c.lease_db) == damaged

    r = c.cli("store", "rebuild", "--lease-db", str(c.lease_db))
    assert r.returncode == 0, r.stderr
    kept = [k for k in glob.glob(str(c.lease_db) + ".damaged-*") if not k.endswith(("-wal", "-shm"))]
    assert len(kept) == 1 and sha256(kept[0]) == damaged, kept
    new = c.lease()
    assert new["term"] > term and not new["holder"], new

    # The waiting agent continues by itself; the others are started again.
    poll_until(lambda: "can be used again; starting" in w.log_text(), 30,
               "the waiting agent to see the rebuilt store")
    c.start([n for n in c.nodes if n is not w])
    newp = c.wait_healthy(timeout=240, min_term=new["term"] + 1)
    assert c.lease()["term"] > term
    assert c.ids(newp) >= set(range(1, 51)), "acknowledged rows lost"
    c.insert(newp, range(51, 61))
    for n in c.nodes:
        if n is not newp:
            c.wait_for_catchup(n, newp)
            assert c.ids(n) >= set(range(1, 61))
    assert c.events("rebuilt"), c.events()
