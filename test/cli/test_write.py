"""remove, pause, resume and health."""
import json

import pytest

from conftest import age, clean_env, mk, pgl, sha256


def test_remove_node(store):
    r = pgl("remove", "n3", "--lease-db", store)
    assert (r.returncode, r.stdout, r.stderr) == (0, "removed n3\n", "")
    names = [n["name"] for n in json.loads(pgl("status", "--json", "--lease-db", store).stdout)["nodes"]]
    assert names == ["n1", "n2"]
    ev = json.loads(pgl("events", "--json", "-n", "1", "--lease-db", store).stdout)[0]
    assert (ev["kind"], ev["node"], ev["term"]) == ("removed", "n3", 1)


def test_remove_refuses_the_holder(store):
    before = sha256(store)
    r = pgl("remove", "n1", "--lease-db", store)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "pglease: n1 holds the lease at term 1; stop it or switch over first\n"
    assert sha256(store) == before


def test_remove_absent_node(store):
    r = pgl("remove", "n9", "--lease-db", store)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "pglease: no such node: n9\n")
    kinds = [e["kind"] for e in json.loads(pgl("events", "--json", "--lease-db", store).stdout)]
    assert "removed" not in kinds


def test_remove_former_holder_after_release(store):
    mk(store, "release", "n1", "0/3005000")
    assert pgl("remove", "n1", "--lease-db", store).returncode == 0


def test_pause_and_resume(store):
    r = pgl("pause", "--lease-db", store)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout == "cluster demo paused: no automatic failover until `pglease resume`\n"
    doc = json.loads(pgl("status", "--json", "--lease-db", store).stdout)
    assert doc["cluster"]["paused"] is True
    assert doc["lease"]["holder"] == "n1"          # the primary keeps its lease
    r = pgl("resume", "--lease-db", store)
    assert (r.returncode, r.stdout) == (0, "cluster demo resumed: automatic failover is on\n")
    assert not json.loads(pgl("status", "--json", "--lease-db", store).stdout)["cluster"]["paused"]
    kinds = [e["kind"] for e in json.loads(pgl("events", "--json", "-n", "2",
                                               "--lease-db", store).stdout)]
    assert kinds == ["paused", "resumed"]


def health(store, node, *args):
    return pgl("health", *args, env=clean_env(PGLEASE_NODE_NAME=node, PGLEASE_LEASE_DB=store,
                                              PGLEASE_PG_BINDIR="/usr/bin"))


def test_health_primary_holding_lease(store):
    r = health(store, "n1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("n1: healthy primary holding the lease")


def test_health_standby(store):
    r = health(store, "n2")
    assert r.returncode == 0 and r.stdout.startswith("n2: healthy standby")


def test_health_primary_without_lease(store):
    mk(store, "release", "n1", "0/3005000")
    r = health(store, "n1")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "lease" in r.stderr


def test_health_stale_heartbeat(store):
    age(store, "nodes", "updated_at", 16, "name = 'n2'")     # 3 * 5 s ttl
    r = health(store, "n2")
    assert r.returncode == 1 and "heartbeat" in r.stderr


def test_health_unknown_role(store):
    mk(store, "node", "n4", "unknown", "starting", "-", "-", "-", "-")
    r = health(store, "n4")
    assert r.returncode == 1 and "role" in r.stderr


def test_health_node_without_row(store):
    r = health(store, "n9")
    assert r.returncode == 1 and "n9" in r.stderr


def test_health_config_file_and_lease_db_flag(tmp_path, store):
    conf = tmp_path / "node.conf"
    conf.write_text("node_name = n2\nlease_db = /nonexistent/lease.db\npg_bindir = /usr/bin\n")
    assert pgl("health", "-c", conf).returncode == 1
    r = pgl("health", "-c", conf, "--lease-db", store)
    assert r.returncode == 0 and r.stdout.startswith("n2: healthy")


@pytest.mark.parametrize("env", [{"PGLEASE_NODE_NAME": "Not Valid"},
                                 {"PGLEASE_NODE_NAME": "n1", "PGLEASE_PRIORITY": "high"}])
def test_health_config_error(store, env):
    r = pgl("health", "--lease-db", store,
            env=clean_env(PGLEASE_PG_BINDIR="/usr/bin", **env))
    assert r.returncode == 2 and r.stdout == "" and "PGLEASE_" in r.stderr
