"""014: node rows the primary does not trust (issue #8).  A row that never
heartbeated (heartbeat 0) or whose name is not a valid node name gets no
replication slot; a row with a valid name that heartbeated does (the
positive control: slot sync ran)."""
from conftest import FAST, poll_until, started_cluster


def test_slots_only_for_heartbeated_nodes(make_cluster):
    c, p = started_cluster(make_cluster, 2, sampler=False, **FAST)
    w = c.store_write(
        "INSERT INTO nodes (name, conninfo, role, heartbeat) VALUES "
        "('ghost', 'host=127.0.0.1 port=1', 'unknown', 0), "
        "('seen-once', 'host=127.0.0.1 port=2', 'unknown', 3), "
        "('Bad_Name', 'host=127.0.0.1 port=3', 'unknown', 3)")
    assert w.wait(timeout=30) == 0

    def slots():
        return {r[0] for r in p.query("SELECT slot_name FROM pg_replication_slots")}
    poll_until(lambda: "seen_once" in slots(), 30, "the slot of the heartbeated row")
    got = slots()
    assert "ghost" not in got, got
    assert not any(s.lower() == "bad_name" for s in got), got
