"""014: node records the primary does not trust (issue #8).  A record that never
heartbeated (heartbeat 0) or whose name is not a valid node name gets no
replication slot; a record with a valid name that heartbeated does (the
positive control: slot sync ran)."""
from conftest import FAST, poll_until, started_cluster


def test_slots_only_for_heartbeated_nodes(make_cluster):
    c, p = started_cluster(make_cluster, 2, sampler=False, **FAST)
    # Records written by hand into the node directory, as a node would write its own.
    c.write_node_record("ghost", dict(name="ghost", conninfo="host=127.0.0.1 port=1",
                                      role="unknown", heartbeat=0))
    c.write_node_record("seen-once", dict(name="seen-once", conninfo="host=127.0.0.1 port=2",
                                          role="unknown", heartbeat=3))
    c.write_node_record("Bad_Name", dict(name="Bad_Name", conninfo="host=127.0.0.1 port=3",
                                         role="unknown", heartbeat=3))

    def slots():
        return {r[0] for r in p.query("SELECT slot_name FROM pg_replication_slots")}
    poll_until(lambda: "seen_once" in slots(), 30, "the slot of the heartbeated row")
    got = slots()
    assert "ghost" not in got, got
    assert not any(s.lower() == "bad_name" for s in got), got
