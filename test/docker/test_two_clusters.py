"""Two clusters from two compose projects (different project names, different
lease directories) on one host, same service and node names: each forms on
its own, and a failover in one leaves the other's lease alone."""
import time

from conftest import (FAILOVER_TIMEOUT, SERVICES, UP_TIMEOUT, Sampler, measure, poll,
                      print_events)


def test_06_two_clusters_are_independent(new_cluster):
    a = new_cluster("cluster A")
    b = new_cluster("cluster B")
    assert a.lease_dir != b.lease_dir and a.network != b.network
    t0 = time.monotonic()
    a.up()
    b.up()
    pa, _ = a.wait_healthy(UP_TIMEOUT, what="cluster A")
    pb, _ = b.wait_healthy(UP_TIMEOUT, what="cluster B")
    measure("two clusters up -> both healthy", time.monotonic() - t0)

    la, lb = a.lease(), b.lease()
    print("A:", la, "\nB:", lb)
    assert la["holder"] == pa and la["term"] >= 1
    assert lb["holder"] == pb and lb["term"] >= 1
    sa, sb = a.cluster_row()["system_identifier"], b.cluster_row()["system_identifier"]
    assert sa and sb and str(sa) != str(sb), (sa, sb)
    for cl, sysid in ((a, sa), (b, sb)):
        for s in SERVICES:
            assert cl.q(s, "select system_identifier from pg_control_system()") == str(sysid), \
                (cl.project, s)
    # Each store knows only its own three nodes, and each cluster's data is its own.
    assert sorted(a.status_rows()) == sorted(b.status_rows()) == list(SERVICES)
    a.q(pa, "create table only_a (x int)")
    a.wait_replayed(pa, [s for s in SERVICES if s != pa])
    for s in SERVICES:
        assert b.q(s, "select to_regclass('only_a') is null") == "t", s

    # Stop A's primary: A fails over, B's lease row does not change.
    ev_b = b.last_event_id()
    lease_b = b.lease()
    term_a = la["term"]
    with Sampler(b) as smp_b:
        time.sleep(1)
        t1 = time.monotonic()
        a.docker("stop", "-t", "30", a.container(pa))
        new_a, _ = a.wait_healthy(FAILOVER_TIMEOUT, services=[s for s in SERVICES if s != pa],
                                  what="cluster A after stop")
        measure("cluster A: docker stop -> new primary streaming to the third node",
                time.monotonic() - t1)
        la2 = a.lease()
        assert la2["holder"] == new_a != pa and la2["term"] == term_a + 1, la2
        # B keeps renewing the same lease: holder, term, acquired_at unchanged.
        poll("cluster B to renew", lambda: b.lease()["renewals"] > lease_b["renewals"] + 2, 30)
        time.sleep(1)
    smp_b.check()
    lb2 = b.lease()
    for k in ("holder", "term", "acquired_at", "released_lsn", "ttl_ms"):
        assert lb2[k] == lease_b[k], (k, lease_b, lb2)
    assert b.healthy() == pb
    print_events(b, ev_b)
    evb = [e for e in b.events(ev_b) if e["kind"] != "renewed-late"]
    assert evb == [], "cluster B logged events during A's failover"
    assert [e["kind"] for e in a.events() if e["term"] == term_a + 1 and e["kind"] == "acquired"] \
        == ["acquired"]
