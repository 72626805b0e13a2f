"""001: three nodes started at the same moment on an empty store bootstrap
one cluster: exactly one primary (term 1, one 'bootstrap' event), two
streaming standbys cloned from it, and `pglease status --json` agrees."""
import json

from conftest import FAST, poll_until


def test_concurrent_bootstrap(make_cluster):
    c = make_cluster(3, **FAST)
    assert not c.lease_db.exists()
    c.start()                      # all three agents launched back to back
    c.start_sampler()
    p = c.wait_healthy(timeout=240)
    standbys = c.others(p)

    # Roles as postgres sees them.
    assert p.is_primary() is True
    for s in standbys:
        assert s.is_primary() is False, "%s should be in recovery" % s.name
        st, host, port, _tli = s.wal_receiver()
        assert st == "streaming" and port == p.port, (s.name, st, host, port)

    # The lease: term 1, held by the primary.
    lease = c.lease()
    assert lease["term"] == 1, lease
    assert lease["holder"] == p.name

    # Events: one bootstrap (by the primary, term 1), one acquired (term 1),
    # each standby cloned.
    boots = c.events("bootstrap")
    assert len(boots) == 1, boots
    assert boots[0]["node"] == p.name and boots[0]["term"] == 1, boots
    acq = c.events("acquired")
    assert [(e["node"], e["term"]) for e in acq] == [(p.name, 1)], acq
    cloned = {e["node"] for e in c.events("cloned")}
    assert cloned == {s.name for s in standbys}, c.events()

    # The store knows the cluster's system identifier, equal to the data's.
    sysid = c.cluster_row()["system_identifier"]
    assert sysid and sysid == str(p.scalar("SELECT system_identifier FROM pg_control_system()"))
    for s in standbys:
        assert str(s.scalar("SELECT system_identifier FROM pg_control_system()")) == sysid

    # Data written on the primary reaches both standbys.
    c.create_table(p)
    c.insert(p, range(1, 101))
    for s in standbys:
        c.wait_for_catchup(s, p)
        assert c.ids(s) == set(range(1, 101))

    # The CLI sees the same picture (heartbeats may lag by one interval).
    def status_agrees():
        r = c.cli("status", "--json", "--lease-db", c.lease_db)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        roles = {n["name"]: n["role"] for n in doc["nodes"]}
        want = {n.name: ("primary" if n is p else "standby") for n in c.nodes}
        if roles != want:
            return None
        return doc
    doc = poll_until(status_agrees, 30, "pglease status --json to show one primary, two standbys")
    assert doc["lease"]["holder"] == p.name and doc["lease"]["term"] == 1, doc["lease"]
    assert doc["cluster"]["system_identifier"] == sysid
    holds = [n["name"] for n in doc["nodes"] if n["holds_lease"]]
    assert holds == [p.name], doc["nodes"]
    for n in doc["nodes"]:
        if n["name"] != p.name:
            assert n["upstream"] == p.name, n

    c.sampler.check()
