"""status judges what each node reports: a node whose alive lock is free is
down at once, only the lease holder is ever shown as primary, and a clone or
rewind under way shows its progress (table, --json)."""
import fcntl
import json
import os
import re

import pytest

from conftest import mk, node_record, pgl, put_record, set_node
from test_read import table_rows


def status(db):
    r = pgl("status", "--lease-db", db)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return r.stdout


def status_json(db):
    r = pgl("status", "--json", "--lease-db", db)
    assert r.returncode == 0, r.stderr
    return {n["name"]: n for n in json.loads(r.stdout)["nodes"]}


def lock_file(db, name):
    """The node's alive lock beside the store, as its agent creates it."""
    d = db.parent / "alive"
    d.mkdir(exist_ok=True)
    p = d / ("%s.lock" % name)
    p.write_text("12345\n")
    return p


@pytest.fixture
def held(store):
    """Holds n1's, n2's and n3's alive locks as their agents would (flock LOCK_EX)."""
    fds = {}
    for n in ("n1", "n2", "n3"):
        fds[n] = os.open(lock_file(store, n), os.O_RDWR)
        fcntl.flock(fds[n], fcntl.LOCK_EX | fcntl.LOCK_NB)
    yield fds
    for fd in fds.values():
        os.close(fd)


def test_held_locks_show_what_the_nodes_report(store, held):
    rows = table_rows(status(store))
    assert rows["n1"][1:3] == ["primary", "running"]
    assert rows["n2"][1:3] == ["standby", "streaming"]
    nodes = status_json(store)
    assert all(n["alive_lock"] == "held" for n in nodes.values())
    assert nodes["n1"]["role"] == "primary" and nodes["n1"]["state"] == "running"


def test_free_lock_is_down_at_once(store, held):
    """The holder's agent, postmaster and backends are gone: its lock is free.
    Its heartbeat is fresh and it still holds the lease: it is shown down."""
    os.close(held.pop("n1"))
    rows = table_rows(status(store))
    assert rows["n1"][1:3] == ["-", "down"], rows["n1"]
    assert rows["n1"][7] == "*"                 # it still holds the lease
    nodes = status_json(store)
    n1 = nodes["n1"]
    assert (n1["role"], n1["state"], n1["alive_lock"]) == (None, "down", "free")
    assert (n1["reported_role"], n1["reported_state"]) == ("primary", "running")
    assert n1["reachable"] is True and n1["holds_lease"] is True


def test_probe_never_takes_a_held_lock_away(store, held):
    """After many probes the holder still holds its lock: nobody else can take it."""
    for _ in range(20):
        assert status_json(store)["n1"]["alive_lock"] == "held"
    other = os.open(store.parent / "alive" / "n1.lock", os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
    finally:
        os.close(other)


def test_stopped_node_with_free_lock(store, held):
    set_node(store, "n3", state="stopped", role="standby")
    os.close(held.pop("n3"))
    assert table_rows(status(store))["n3"][1:3] == ["-", "stopped"]


def test_no_lock_file_falls_back_to_the_heartbeat(store):
    """No alive directory (another host's store copy, etcd): what the record says."""
    assert table_rows(status(store))["n1"][1:3] == ["primary", "running"]
    assert status_json(store)["n1"]["alive_lock"] is None


def test_lock_file_that_is_a_symlink_is_not_followed(store, tmp_path):
    target = tmp_path / "elsewhere.lock"
    target.write_text("")
    (store.parent / "alive").mkdir()
    os.symlink(target, store.parent / "alive" / "n1.lock")
    assert status_json(store)["n1"]["alive_lock"] is None


def test_only_the_holder_is_primary(store, held):
    """n2 reports itself primary but n1 holds the lease: n2 is a stale primary."""
    set_node(store, "n2", role="primary", state="running", upstream=None)
    out = status(store)
    rows = table_rows(out)
    assert rows["n2"][1:3] == ["?", "stale primary"], rows["n2"]
    assert [n for n, c in rows.items() if c[1] == "primary"] == ["n1"]
    nodes = status_json(store)
    assert [n for n, v in nodes.items() if v["role"] == "primary"] == ["n1"]
    assert nodes["n2"]["state"] == "stale primary" and nodes["n2"]["reported_role"] == "primary"


def test_no_holder_no_primary(store, held):
    mk(store, "release", "n1", "0/3005000")
    rows = table_rows(status(store))
    assert rows["n1"][1:3] == ["?", "stale primary"]
    assert not [v for v in status_json(store).values() if v["role"] == "primary"]


def progress(db, name, op, done_kb, total_kb, elapsed_ms, state):
    set_node(db, name, state=state, progress_op=op, progress_done_kb=done_kb,
             progress_total_kb=total_kb, progress_elapsed_ms=elapsed_ms)


def test_clone_progress(store, held):
    progress(store, "n3", "clone", 512 * 1024, 2048 * 1024, 4000, "cloning")
    out = status(store)
    rows = table_rows(out)
    assert rows["n3"][2] == "cloning 25%", rows["n3"]
    line = [l for l in out.splitlines() if l.startswith("n3: ")]
    assert len(line) == 1, out
    assert re.fullmatch(r"n3: cloning, 512 MB of 2\.0 GB \(25%\), \d+\.\ds so far, "
                        r"about \d+s left", line[0]), line[0]
    p = status_json(store)["n3"]["progress"]
    assert p["operation"] == "clone" and p["percent"] == 25
    assert (p["done_bytes"], p["total_bytes"]) == (512 << 20, 2048 << 20)
    assert 4.0 <= p["elapsed_s"] < 60 and 0 <= p["eta_s"] <= 12.0
    assert status_json(store)["n2"]["progress"] is None


def test_rewind_progress_total_unknown(store, held):
    progress(store, "n2", "rewind", 100, 0, 1500, "rewinding")
    out = status(store)
    assert table_rows(out)["n2"][2] == "rewinding"
    assert re.search(r"^n2: rewinding, 100 kB so far, \d+\.\ds$", out, re.M), out
    p = status_json(store)["n2"]["progress"]
    assert p["operation"] == "rewind" and p["total_bytes"] is None and p["percent"] is None
    assert p["eta_s"] is None


def test_progress_of_a_down_node_is_not_shown(store, held):
    progress(store, "n3", "clone", 10, 100, 1000, "cloning")
    os.close(held.pop("n3"))
    out = status(store)
    assert table_rows(out)["n3"][2] == "down" and "n3: " not in out
    assert status_json(store)["n3"]["progress"] is None


@pytest.mark.parametrize("bad", [
    {"progress_op": "copy"},
    {"progress_op": 7},
    {"progress_op": "clone", "progress_done_kb": -1},
    {"progress_op": "clone", "progress_done_kb": 1.5},
    {"progress_op": "clone", "progress_done_kb": "12"},
    {"progress_op": "clone", "progress_done_kb": 200, "progress_total_kb": 100},
    {"progress_op": "clone", "progress_total_kb": (1 << 40) + 1},
    {"progress_op": "clone", "progress_elapsed_ms": 366 * 86400 * 1000 + 1},
    {"progress_op": None, "progress_done_kb": 5},
])
def test_invalid_progress_refuses_the_record(store, bad):
    """A record whose progress is out of bounds is not used (as a bad LSN is not)."""
    rec = node_record(store, "n3")
    rec.update(bad)
    put_record(store, "n3", rec)
    r = pgl("status", "--json", "--lease-db", store)
    assert r.returncode == 0
    assert "n3" not in {n["name"] for n in json.loads(r.stdout)["nodes"]}
