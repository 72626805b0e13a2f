"""013: the shared volume is input, not truth.  A symlink planted in the
alive/ directory is refused (it once made an agent create a file in another
node's data directory); a trigger added to the store by hand stops every
write before it can fire (it once handed the lease to another node at the
same term), so the primary fences and nobody claims until it is gone; a
lease row naming an invalid holder is never acted on."""
import os
import time

from conftest import FAST, poll_until, started_cluster, wait_fenced

TTL = FAST["lease_ttl_ms"] / 1000.0


def test_symlink_in_alive_dir_refused(make_cluster):
    c, p = started_cluster(make_cluster, 1, **FAST)
    victim = p.pgdata / "recovery.signal"
    n2 = c.add_node("n2")
    n2.write_conf()
    link = os.path.join(os.path.dirname(str(c.lease_db)), "alive", "n2.lock")
    os.symlink(str(victim), link)

    n2.start(wait=False)
    rc = n2.exit_code(timeout=30)
    out = n2.log_text()
    assert rc is not None and rc != 0, "n2 started past a planted symlink: %s" % out
    assert "symlink" in out and "n2.lock" in out, out
    assert not victim.exists(), "the agent created %s through the symlink" % victim
    assert not (n2.pgdata / "PG_VERSION").exists()
    assert p.is_primary() is True
    c.insert(p, range(1, 6))

    # A password file planted as a symlink in the shared directory, and a FIFO.
    os.unlink(link)
    pw_link = os.path.join(os.path.dirname(str(c.lease_db)), "password")
    os.symlink(str(c.password_file), pw_link)
    fifo = str(n2.dir / "pw.fifo")
    os.mkfifo(fifo)
    for pw, needle in ((pw_link, "symlink"), (fifo, "not a regular file")):
        n2.write_conf(password_file=pw)
        n2.start(wait=False)
        rc = n2.exit_code(timeout=30)
        out = n2.log_text()
        assert rc is not None and rc != 0, "n2 started with password_file %s: %s" % (pw, out)
        assert needle in out and pw in out, out
    assert not (n2.pgdata / "PG_VERSION").exists()


def test_trigger_added_by_hand_stops_writes(make_cluster):
    c, p = started_cluster(make_cluster, 2, **FAST)
    s = c.others(p)[0]
    c.insert(p, range(1, 11))
    c.wait_for_catchup(s, p)
    term = c.lease()["term"]

    # Every event written would hand the lease to the standby at the same term.
    w = c.store_write("CREATE TRIGGER steal AFTER INSERT ON events BEGIN "
                      "UPDATE lease SET holder = '%s' WHERE id = 1; END" % s.name)
    w.wait(timeout=30)

    # The primary cannot renew any more: it fences within its deadline.
    wait_fenced(p, TTL + 10, "the primary fenced after the schema changed")
    out = c.cli("status", "--lease-db", str(c.lease_db))
    assert out.returncode != 0 and "schema" in out.stderr, (out.returncode, out.stdout, out.stderr)

    # Nobody claimed, the trigger never fired, nobody is writable.
    time.sleep(2 * TTL)
    l = c.lease()
    assert (l["holder"], l["term"]) == (p.name, term), l
    assert s.is_primary() is False and p.is_primary() is not True
    for n in (p, s):
        assert "schema differs" in n.log_text(), n.log_tail(10)

    # Once the operator removes it, the cluster elects again under a newer term.
    w = c.store_write("DROP TRIGGER steal")
    w.wait(timeout=30)
    new = c.wait_for_primary(timeout=120, min_term=term + 1)
    assert c.ids(new) == set(range(1, 11))
    c.sampler.check()


def test_invalid_holder_never_acted_on(make_cluster):
    c, p = started_cluster(make_cluster, 2, **FAST)
    s = c.others(p)[0]
    term = c.lease()["term"]
    lockdir = os.path.join(os.path.dirname(str(c.lease_db)), "alive")
    before = set(os.listdir(lockdir))

    w = c.store_write("UPDATE lease SET holder = '../%s/data/x' WHERE id = 1" % s.name)
    w.wait(timeout=30)
    wait_fenced(p, TTL + 10, "the primary fenced when the lease row became invalid")
    time.sleep(2 * TTL)
    assert c.lease()["term"] == term
    assert s.is_primary() is False
    assert set(os.listdir(lockdir)) == before
    assert not (s.pgdata / "x.lock").exists()
    for n in (p, s):
        assert "holder is not a valid node name" in n.log_text(), n.log_tail(10)


def test_store_overwritten_in_place(make_cluster):
    """The first 4 KiB of lease.db overwritten with random bytes (the nemesis
    lead): some agents still read a good page 1 from their cache, others the
    garbage from disk.  Nobody may act on that store: no claim, the primary
    fences, every agent stops with an error naming the file.  With the bytes
    put back, the agents start again and the cluster re-forms, data intact."""
    c, p = started_cluster(make_cluster, 3, sampler=True, lease_ttl_ms=2000,
                           renew_interval_ms=400, fence_margin_ms=500)
    c.insert(p, range(1, 21))
    term = c.lease()["term"]
    with open(c.lease_db, "r+b") as f:
        good = f.read(4096)
        f.seek(0)
        f.write(os.urandom(4096))
        f.flush()
        os.fsync(f.fileno())
    for n in c.nodes:
        rc = n.exit_code(timeout=30)
        assert rc is not None and rc != 0, "%s did not stop on a corrupt store" % n.name
        log = n.log_text()
        assert "not a pglease lease store" in log and str(c.lease_db) in log, n.log_tail()
        assert "claimed term %d" % (term + 1) not in log, n.log_tail()
    assert "fenced: the lease store file is corrupt" in p.log_text(), p.log_tail()
    out = c.cli("status", "--lease-db", str(c.lease_db))
    assert out.returncode != 0 and "not a pglease lease store" in out.stderr, out.stderr

    with open(c.lease_db, "r+b") as f:
        f.write(good)
        f.flush()
        os.fsync(f.fileno())
    l = c.lease()
    assert l["term"] == term, l
    c.start()
    new = c.wait_healthy(timeout=180, min_term=term + 1)
    assert c.ids(new) >= set(range(1, 21))
    c.sampler.check()
