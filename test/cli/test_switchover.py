"""switchover and failover --to: what the CLI checks and writes (no agents run:
the requests stay in the store; test/integration/test_021 carries them out)."""
import sqlite3

import pytest

from conftest import age, pgl, set_node


def sw_row(db):
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    c.row_factory = sqlite3.Row
    try:
        return dict(c.execute("SELECT * FROM switchover").fetchone())
    finally:
        c.close()


def kinds(db):
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        return [r[0] for r in c.execute("SELECT kind FROM events ORDER BY id")]
    finally:
        c.close()


def refused(db, args, want, code=1):
    """The command fails with one line naming the problem, and writes nothing."""
    row, ev = sw_row(db), kinds(db)
    r = pgl(*args, "--lease-db", db)
    assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
    assert r.stdout == "" and len(r.stderr.splitlines()) == 1, r.stderr
    assert want in r.stderr, (want, r.stderr)
    assert sw_row(db) == row and kinds(db) == ev
    return r


def test_switchover_request_is_recorded(store):
    r = pgl("switchover", "--to", "n3", "--timeout", "30", "--lease-db", store)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "switchover 1 requested: from n1 to n3 (timeout 30 s)\n"
    row = sw_row(store)
    assert (row["seq"], row["kind"], row["term"], row["target"], row["state"],
            row["timeout_ms"]) == (1, "switchover", 1, "n3", "requested", 30000), row
    assert "pid" in row["requested_by"] and row["requested_at"], row
    assert kinds(store)[-1] == "switchover-requested"
    # One at a time: the second is refused, naming the first.
    refused(store, ["switchover", "--to", "n2"], "switchover 1 (requested by")


def test_switchover_to_the_best(store):
    r = pgl("switchover", "--lease-db", store)
    assert r.returncode == 0 and "from n1 to the best standby" in r.stdout, r.stdout
    assert sw_row(store)["target"] is None


@pytest.mark.parametrize("setup, args, want", [
    (None, ["--to", "n1"], "n1 cannot take over: it is the primary"),
    (None, ["--to", "n9"], "no node named n9"),
    (("n3", dict(priority=0)), ["--to", "n3"], "n3 cannot take over: its priority is 0"),
    (("n2", dict(state="recovering")), ["--to", "n2"], "n2 cannot take over: it is not streaming from the primary"),
    (("n2", dict(upstream="n3")), ["--to", "n2"], "n2 cannot take over: it is not streaming from the primary"),
    (("n2", dict(receive_lsn="0/1000000", receive_lsn_int=0x1000000)),
     ["--to", "n2", "--max-lag", "1000"], "n2 cannot take over: it lags too far behind"),
])
def test_switchover_refused(store, setup, args, want):
    if setup:
        set_node(store, setup[0], **setup[1])
    refused(store, ["switchover", *args], "pglease: switchover refused: " + want)


def test_switchover_refused_stale_target_paused_no_primary(store):
    age(store, "nodes", "updated_at", 30, "name = 'n2'")
    refused(store, ["switchover", "--to", "n2"], "n2 cannot take over: it has not reported")
    assert pgl("pause", "--lease-db", store).returncode == 0
    refused(store, ["switchover", "--to", "n3"], "cluster demo is paused")
    assert pgl("resume", "--lease-db", store).returncode == 0
    age(store, "lease", "renewed_at", 60)
    r = refused(store, ["switchover", "--to", "n3"], "no live primary", code=3)
    assert "failover --to NODE" in r.stderr


def test_failover_needs_no_live_primary(store):
    refused(store, ["failover", "--to", "n2"],
            "pglease: failover refused: n1 is a live primary (term 1); use `pglease "
            "switchover --to n2`")
    age(store, "lease", "renewed_at", 60)
    refused(store, ["failover", "--to", "n9"], "no node named n9")
    set_node(store, "n3", priority=0)
    refused(store, ["failover", "--to", "n3"], "n3 has priority 0")
    # Allowed while paused: the one claim a pause lets through.
    assert pgl("pause", "--lease-db", store).returncode == 0
    r = pgl("failover", "--to", "n2", "--lease-db", store)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "failover 1 requested: from n1 to n2 (timeout 60 s)\n"
    row = sw_row(store)
    assert (row["kind"], row["state"], row["target"], row["term"]) == \
        ("failover", "handing-over", "n2", 1), row
    assert kinds(store)[-1] == "failover-requested"


@pytest.mark.parametrize("args, want", [
    (["failover"], "--to NODE is required"),
    (["failover", "--to", "Bad"], "--to: 'Bad' is not a valid node name"),
    (["switchover", "--timeout", "0"], "--timeout: '0' is not a number of seconds"),
    (["switchover", "--timeout", "86401"], "--timeout: '86401'"),
    (["switchover", "--max-lag", "-5"], "--max-lag: '-5' is not a positive number"),
    (["failover", "--to", "n2", "--max-lag", "5"], "unknown option '--max-lag'"),
    (["status", "--to", "n2"], "unknown option '--to'"),
    (["switchover", "n2"], "unexpected argument 'n2'"),
])
def test_usage_errors(store, args, want):
    refused(store, args, want, code=2)
