"""pglease store rebuild: a damaged or lost SQLite store replaced by a fresh
one whose term is above every term seen, the damaged file kept, refused
while an agent runs or when the store is healthy (issue 24)."""
import fcntl
import glob
import json
import os
import sqlite3

from conftest import build_cluster, mk, pgl, set_node, sha256


def lease_json(db):
    r = pgl("lease", "--json", "--lease-db", db)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def events(db):
    r = pgl("events", "--json", "-n", "50", "--lease-db", db)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def smash_first_page(db):
    with open(db, "r+b") as f:
        f.write(os.urandom(4096))


def test_healthy_store_refused_and_unchanged(store):
    before = sha256(store)
    r = pgl("store", "rebuild", "--lease-db", store)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and "healthy" in r.stderr and "nothing to rebuild" in r.stderr
    assert sha256(store) == before
    assert not glob.glob(str(store) + ".damaged-*")


def test_damaged_store_rebuilt_above_every_term(store):
    mk(store, "renew", "n1")
    set_node(store, "n2", lease_term=7)          # a term some earlier holder renewed
    set_node(store, "n3", timeline=9)
    smash_first_page(store)
    damaged = sha256(store)
    r = pgl("status", "--lease-db", store)
    assert r.returncode == 1 and "not a pglease lease store" in r.stderr
    r = pgl("store", "rebuild", "--lease-db", store)
    assert r.returncode == 0, r.stderr
    kept = glob.glob(str(store) + ".damaged-*")
    main = [k for k in kept if not k.endswith(("-wal", "-shm"))]
    assert len(main) == 1 and sha256(main[0]) == damaged, kept
    assert main[0] in r.stdout
    l = lease_json(store)
    assert l["holder"] is None and l["term"] == 10, l       # above timeline 9
    ev = [e for e in events(store) if e["kind"] == "rebuilt"]
    assert len(ev) == 1 and ev[0]["term"] == 10 and main[0] in ev[0]["detail"], ev
    # the node records are kept: status shows the nodes
    r = pgl("status", "--json", "--lease-db", store)
    assert r.returncode == 0, r.stderr
    assert {n["name"] for n in json.loads(r.stdout)["nodes"]} == {"n1", "n2", "n3"}
    # a second rebuild: the store is healthy now
    r = pgl("store", "rebuild", "--lease-db", store)
    assert r.returncode == 2 and "healthy" in r.stderr


def test_refused_while_an_agent_holds_its_alive_lock(store):
    smash_first_page(store)
    damaged = sha256(store)
    alive = store.parent / "alive"
    alive.mkdir()
    with open(alive / "n2.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        r = pgl("store", "rebuild", "--lease-db", store)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and "n2.lock" in r.stderr and "stop every agent" in r.stderr
    assert sha256(store) == damaged and not glob.glob(str(store) + ".damaged-*")
    # the lock released (the agent gone): the rebuild goes ahead
    r = pgl("store", "rebuild", "--lease-db", store)
    assert r.returncode == 0, r.stderr


def test_lost_store_made_again_above_the_records(tmp_path):
    d = tmp_path / "demo"
    d.mkdir()
    db = d / "lease.db"
    build_cluster(db)
    mk(db, "renew", "n1")
    set_node(db, "n1", lease_term=41)
    for p in glob.glob(str(db) + "*"):
        if not p.endswith(".nodes"):
            os.unlink(p)
    r = pgl("store", "rebuild", "--lease-db", db)
    assert r.returncode == 0, r.stderr
    assert "no store file to keep" in r.stdout
    assert lease_json(db)["term"] == 42


def test_term_at_the_limit_refused_then_rebuilt(store):
    """A term of INT64_MAX (written by hand) would overflow on the next claim:
    the lease row is refused as invalid, and rebuild replaces the store."""
    c = sqlite3.connect(str(store))
    c.execute("DROP TRIGGER lease_term_grows")
    c.execute("UPDATE lease SET term = 9223372036854775807")
    c.execute("CREATE TRIGGER lease_term_grows BEFORE UPDATE OF term ON lease"
              "  WHEN NEW.term < OLD.term"
              "  BEGIN SELECT RAISE(ABORT, 'lease term may only grow'); END")
    c.commit()
    c.close()
    r = pgl("lease", "--lease-db", store)
    assert r.returncode == 1 and "above pglease's limit" in r.stderr, r.stderr
    r = pgl("store", "rebuild", "--lease-db", store)
    assert r.returncode == 0, r.stderr
    assert 1 <= lease_json(store)["term"] < 2 ** 62


def test_bad_subcommand_and_url():
    r = pgl("store", "frob", "--lease-db", "/nonexistent/lease.db")
    assert r.returncode == 2 and "unknown subcommand" in r.stderr
    r = pgl("store")
    assert r.returncode == 2 and "missing subcommand" in r.stderr
    r = pgl("store", "rebuild", "--lease-db", "etcd://127.0.0.1:1/pglease/x")
    assert r.returncode == 2 and "only an SQLite lease store" in r.stderr
