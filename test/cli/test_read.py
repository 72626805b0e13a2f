"""status, lease, events and primary against prepared stores."""
import json
import re

from conftest import age, mk, pgl

NODE_KEYS = {"name", "role", "state", "upstream", "timeline", "receive_lsn", "replay_lsn",
             "lag_bytes", "heartbeat_age_s", "priority", "holds_lease", "host", "port",
             "reachable", "reported_role", "reported_state", "alive_lock", "progress"}
LEASE_KEYS = {"holder", "term", "renewals", "ttl_ms", "acquired_at", "renewed_at",
              "renewed_age_s", "released_lsn", "holder_expired"}


def table_rows(out):
    """{name: [cells]} from the status table."""
    rows = {}
    for line in out.splitlines():
        if "|" in line and not line.startswith(" Name"):
            cells = [c.strip() for c in line.split("|")]
            rows[cells[0]] = cells
    return rows


def test_status_table(store):
    r = pgl("status", "--lease-db", store)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    head = r.stdout.splitlines()[0]
    assert re.fullmatch(r"Cluster demo  lease: n1 term 1 \(renewed \d+\.\ds ago\)", head), head
    assert "PAUSED" not in head
    header = [c.strip() for c in r.stdout.splitlines()[2].split("|")]
    assert header == ["Name", "Role", "State", "Upstream", "Timeline", "Lag", "Heartbeat",
                      "Lease"]
    rows = table_rows(r.stdout)
    assert set(rows) == {"n1", "n2", "n3"}
    assert rows["n1"][1:6] == ["primary", "running", "-", "1", "0 B"]
    assert rows["n2"][1:6] == ["standby", "streaming", "n1", "1", "16 kB"]
    assert rows["n3"][5] == "1.0 kB"
    assert re.fullmatch(r"\d+\.\ds ago", rows["n2"][6])
    assert [n for n, c in rows.items() if c[7] == "*"] == ["n1"]


def test_status_marks_silent_nodes_unreachable(store):
    """A node silent for longer than the TTL (5 s here) is not shown as what it last said."""
    age(store, "nodes", "updated_at", 30, "name = 'n1'")
    rows = table_rows(pgl("status", "--lease-db", store).stdout)
    assert rows["n1"][1:3] == ["?", "unreachable"], rows["n1"]
    assert rows["n2"][1:3] == ["standby", "streaming"], rows["n2"]
    doc = json.loads(pgl("status", "--json", "--lease-db", store).stdout)
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert nodes["n1"]["reachable"] is False and nodes["n1"]["role"] is None
    assert (nodes["n1"]["state"], nodes["n1"]["reported_role"]) == ("unreachable", "primary")
    assert nodes["n2"]["reachable"] is True and nodes["n2"]["role"] == "standby"


def test_primary_uri(store):
    r = pgl("primary", "--uri", "--lease-db", store)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == ("postgresql://pg1:5432,pg2:5432,pg3:5432/postgres"
                        "?target_session_attrs=read-write\n")
    # Whether or not a primary is live: libpq finds it.
    age(store, "lease", "renewed_at", 60)
    assert pgl("primary", "--uri", "--lease-db", store).returncode == 0
    r = pgl("primary", "--uri", "--json", "--lease-db", store)
    assert r.returncode == 2 and "--uri cannot be combined" in r.stderr, r.stderr


def test_primary_uri_no_nodes(empty_store):
    r = pgl("primary", "--uri", "--lease-db", empty_store)
    assert r.returncode == 1 and "no node has reported an address" in r.stderr, r.stderr


def test_status_json(store):
    r = pgl("status", "--json", "--lease-db", store)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"cluster", "lease", "nodes"}
    assert doc["cluster"] == {"name": "demo", "system_identifier": None, "paused": False}
    lease = doc["lease"]
    assert set(lease) == LEASE_KEYS
    assert lease["holder_expired"] is False     # SQLite: observers time the lease out
    assert (lease["holder"], lease["term"], lease["renewals"], lease["ttl_ms"]) == ("n1", 1, 0, 5000)
    assert lease["released_lsn"] is None and lease["acquired_at"].endswith("Z")
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert [n["name"] for n in doc["nodes"]] == ["n1", "n2", "n3"]
    for n in doc["nodes"]:
        assert set(n) == NODE_KEYS
        assert 0 <= n["heartbeat_age_s"] < 60
    assert nodes["n1"]["holds_lease"] is True
    assert not nodes["n2"]["holds_lease"] and not nodes["n3"]["holds_lease"]
    assert [nodes[x]["lag_bytes"] for x in ("n1", "n2", "n3")] == [0, 16384, 1024]
    assert [(nodes[x]["host"], nodes[x]["port"]) for x in ("n1", "n2", "n3")] == \
        [("pg1", 5432), ("pg2", 5432), ("pg3", 5432)]
    assert nodes["n1"]["upstream"] is None and nodes["n1"]["replay_lsn"] is None
    assert nodes["n2"]["receive_lsn"] == "0/3004000" and nodes["n2"]["replay_lsn"] == "0/3000000"
    assert nodes["n3"]["priority"] == 50 and nodes["n2"]["timeline"] == 1


def test_status_after_release_has_no_holder_and_unknown_lag(store):
    mk(store, "release", "n1", "0/3005000")
    r = pgl("status", "--lease-db", store)
    assert r.returncode == 0
    assert "lease: none (term 1, released at 0/3005000)" in r.stdout.splitlines()[0]
    rows = table_rows(r.stdout)
    assert all(c[5] == "-" and c[7] == "" for c in rows.values())
    doc = json.loads(pgl("status", "--json", "--lease-db", store).stdout)
    assert doc["lease"]["holder"] is None and doc["lease"]["released_lsn"] == "0/3005000"
    assert all(n["lag_bytes"] is None and n["holds_lease"] is False for n in doc["nodes"])


def test_status_lag_unknown_without_replay_position(store):
    mk(store, "node", "n4", "standby", "starting", "-", "-", "-", "-")
    doc = json.loads(pgl("status", "--json", "--lease-db", store).stdout)
    n4 = [n for n in doc["nodes"] if n["name"] == "n4"][0]
    assert n4["lag_bytes"] is None and n4["timeline"] is None and n4["state"] == "starting"
    assert table_rows(pgl("status", "--lease-db", store).stdout)["n4"][5] == "-"


def test_status_paused(store):
    mk(store, "pause")
    r = pgl("status", "--lease-db", store)
    assert r.stdout.splitlines()[0].endswith("  PAUSED")
    assert json.loads(pgl("status", "--json", "--lease-db", store).stdout)["cluster"]["paused"]


def test_status_fresh_store(empty_store):
    r = pgl("status", "--lease-db", empty_store)
    assert r.returncode == 0
    assert r.stdout.splitlines()[0] == "Cluster fresh  lease: none (term 0)"
    assert "(no nodes)" in r.stdout
    doc = json.loads(pgl("status", "--json", "--lease-db", empty_store).stdout)
    assert doc["nodes"] == [] and doc["lease"]["holder"] is None and doc["lease"]["term"] == 0
    assert doc["lease"]["renewed_at"] is None and doc["lease"]["renewed_age_s"] is None


def test_lease_human(store):
    r = pgl("lease", "--lease-db", store)
    assert r.returncode == 0
    fields = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert fields["holder"] == "n1" and fields["term"] == "1" and fields["ttl_ms"] == "5000"
    assert fields["released_lsn"] == "-"
    assert re.fullmatch(r"\S+Z \(\d+\.\ds ago\)", fields["renewed_at"])


def test_lease_json_matches_status(store):
    mk(store, "renew", "n1")
    lease = json.loads(pgl("lease", "--json", "--lease-db", store).stdout)
    status = json.loads(pgl("status", "--json", "--lease-db", store).stdout)["lease"]
    assert set(lease) == LEASE_KEYS
    assert lease["renewals"] == 1
    for k in LEASE_KEYS - {"renewed_age_s"}:
        assert lease[k] == status[k]


def test_events_default_and_n(store):
    for i in range(25):
        mk(store, "event", "n2", "followed", "detail %d" % i)
    r = pgl("events", "--lease-db", store)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 20
    assert lines[-1].endswith("followed  detail 24") and lines[0].endswith("detail 5")
    assert re.match(r"\S+Z  term 1  n2  followed  detail 24$", lines[-1])
    r = pgl("events", "-n", "3", "--lease-db", store)
    assert [l.split()[-1] for l in r.stdout.splitlines()] == ["22", "23", "24"]
    r = pgl("events", "-n", "100", "--lease-db", store)
    kinds = [l.split()[4] for l in r.stdout.splitlines()]
    assert kinds[:2] == ["acquired", "promoted"] and len(kinds) == 27


def test_events_json(store):
    doc = json.loads(pgl("events", "--json", "--lease-db", store).stdout)
    assert [e["kind"] for e in doc] == ["acquired", "promoted"]
    assert all(set(e) == {"id", "at", "term", "node", "kind", "detail"} for e in doc)
    assert doc[0]["id"] < doc[1]["id"] and doc[1] == dict(doc[1], term=1, node="n1",
                                                          detail="timeline 1")
    one = json.loads(pgl("events", "--json", "-n", "1", "--lease-db", store).stdout)
    assert one == doc[1:]


def test_events_json_escaping(store):
    detail = 'say "hi" \\ back\nnew\tline \x01 end \u00fc'
    mk(store, "event", "-", 'odd"kind', detail)
    doc = json.loads(pgl("events", "--json", "-n", "1", "--lease-db", store).stdout)
    assert doc[0]["detail"] == detail and doc[0]["kind"] == 'odd"kind'
    assert doc[0]["node"] is None
    human = pgl("events", "-n", "1", "--lease-db", store).stdout
    assert len(human.splitlines()) == 1 and "\x01" not in human


def test_events_empty_store(empty_store):
    assert pgl("events", "--lease-db", empty_store).stdout == ""
    assert json.loads(pgl("events", "--json", "--lease-db", empty_store).stdout) == []


def test_primary_live(store):
    r = pgl("primary", "--lease-db", store)
    assert (r.returncode, r.stdout, r.stderr) == (0, "n1\n", "")
    r = pgl("primary", "--conninfo", "--lease-db", store)
    # Only host and port are carried over from the store (user=pglease is dropped).
    assert (r.returncode, r.stdout) == (0, "host=pg1 port=5432\n")
    r = pgl("primary", "--json", "--lease-db", store)
    assert json.loads(r.stdout) == {"primary": "n1", "conninfo": "host=pg1 port=5432",
                                    "term": 1}


def assert_no_primary(r):
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert r.stdout == ""
    assert r.stderr.startswith("pglease: no live primary")


def test_primary_after_release(store):
    mk(store, "release", "n1", "0/3005000")
    assert_no_primary(pgl("primary", "--lease-db", store))
    assert_no_primary(pgl("primary", "--conninfo", "--lease-db", store))
    r = pgl("primary", "--json", "--lease-db", store)
    assert r.returncode == 3
    assert json.loads(r.stdout) == {"primary": None, "conninfo": None, "term": 1}


def test_primary_stale_renewal(store):
    age(store, "lease", "renewed_at", 6)          # ttl is 5 s
    assert_no_primary(pgl("primary", "--lease-db", store))


def test_primary_stale_heartbeat(store):
    age(store, "nodes", "updated_at", 11, "name = 'n1'")   # more than 2 * ttl
    r = pgl("primary", "--lease-db", store)
    assert_no_primary(r)
    assert "heartbeat" in r.stderr
    age(store, "nodes", "updated_at", 8, "name = 'n1'")    # within 2 * ttl
    assert pgl("primary", "--lease-db", store).returncode == 0


def test_primary_holder_without_row(empty_store):
    mk(empty_store, "claim", "ghost")
    r = pgl("primary", "--lease-db", empty_store)
    assert_no_primary(r)
    assert "ghost" in r.stderr


def test_primary_new_term_after_failover(store):
    mk(store, "release", "n1", "0/3005000")
    mk(store, "claim", "n2")
    r = pgl("primary", "--json", "--lease-db", store)
    assert r.returncode == 0
    assert json.loads(r.stdout) == {"primary": "n2", "conninfo": "host=pg2 port=5432", "term": 2}
