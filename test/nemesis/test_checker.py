"""Unit tests of the nemesis checker on hand-made histories: it must flag a
split brain, a stale write, a lost and a phantom write and a cluster that did
not re-form, and must not flag an ordinary failover or a slow commit."""
import checker


def w(i, node, tl, start, end, outcome="ok"):
    return {"id": i, "node": node, "timeline": tl, "start": start, "end": end,
            "outcome": outcome}


def hist(writes, faults=(), final=None, bound=60):
    ids = {x["id"] for x in writes if x["outcome"] == "ok"}
    return {"writes": list(writes), "faults": list(faults),
            "final": final if final is not None else {"pg1": ids, "pg2": ids},
            "args": {"recovery_bound_s": bound}, "end": 100.0}


def fault(i, kind, injected, healed, whole, target="pg1"):
    return {"id": i, "kind": kind, "target": target, "injected": injected, "healed": healed,
            "whole": whole}


def failover_writes():
    """pg1 on timeline 1 until 10 s, then pg2 on timeline 2 from 11 s."""
    out = [w(i, "pg1", 1, i * 0.1, i * 0.1 + 0.01) for i in range(100)]
    out += [w(1000 + i, "pg2", 2, 11 + i * 0.1, 11 + i * 0.1 + 0.01) for i in range(50)]
    return out


def test_ordinary_failover_is_clean():
    v, rep = checker.check(hist(failover_writes(), [fault(1, "kill9_node", 10.0, 10.5, 12.0)]),
                           "sync")
    assert v == [] and rep["split_brains"] == 0 and rep["lost_writes"] == 0
    # No write acknowledged between 9.91 and 11.01: unavailability about 1.01 s.
    assert abs(rep["unavailability_s"]["kill9_node"]["worst"] - 1.01) < 0.02


def test_slow_commit_across_failover_is_not_a_split_brain():
    ws = failover_writes() + [w(5000, "pg1", 1, 9.95, 11.5)]
    v, _ = checker.check(hist(ws), "sync")
    assert v == []


def test_split_brain_detected():
    ws = failover_writes() + [w(6000 + i, "pg1", 1, 11 + i * 0.1, 11.05 + i * 0.1)
                              for i in range(20)]
    v, rep = checker.check(hist(ws), "sync")
    assert rep["split_brains"] >= 1
    assert any(x.startswith("split brain") for x in v), v


def test_stale_write_detected():
    ws = failover_writes() + [w(7000, "pg3", 1, 12.0, 12.01)]
    v, rep = checker.check(hist(ws), "sync")
    assert rep["stale_writes"] == 1 and any("stale write: id 7000" in x for x in v), v


def test_lost_write_sync_is_a_violation():
    ws = failover_writes()
    ids = {x["id"] for x in ws} - {55}
    v, rep = checker.check(hist(ws, [fault(1, "kill9_node", 10.0, 10.5, 12.0)],
                                final={"pg2": ids, "pg3": ids}), "sync")
    assert rep["lost_writes"] == 1 and any("lost write: id 55" in x for x in v), v


def test_lost_write_async_only_allowed_for_a_crash():
    ws = failover_writes()
    ids = {x["id"] for x in ws} - {99}
    crash = [fault(1, "kill9_node", 10.0, 10.5, 12.0)]
    v, rep = checker.check(hist(ws, crash, final={"pg2": ids}), "async")
    assert v == [] and rep["lost_writes"] == 1 and rep["lost_by_fault"] == {"kill9_node#1": 1}
    # A fence (agent stopped inside its write: immediate shutdown) is a crash too.
    frozen = [fault(1, "stop_in_write", 10.0, 10.5, 12.0)]
    v, rep = checker.check(hist(ws, frozen, final={"pg2": ids}), "async")
    assert v == [], v
    # The store locked no longer fences anybody (renewals do not need its lock).
    lock = [fault(1, "store_lock", 10.0, 10.5, 12.0)]
    v, rep = checker.check(hist(ws, lock, final={"pg2": ids}), "async")
    assert any("lost writes under store_lock#1" in x for x in v), v
    # A clean stop hands over with released_lsn: it must lose nothing.
    stop = [fault(1, "term_agent", 10.0, 10.5, 12.0)]
    v, rep = checker.check(hist(ws, stop, final={"pg2": ids}), "async")
    assert any("lost writes under term_agent#1" in x for x in v), v


def test_phantom_write_detected():
    ws = failover_writes() + [w(8000, "pg1", None, 9.0, 9.1, "error")]
    ids = {x["id"] for x in ws}
    v, rep = checker.check(hist(ws, final={"pg2": ids}), "sync")
    assert rep["phantom_writes"] == 1 and any("phantom write: id 8000" in x for x in v), v


def test_unknown_writes_prove_nothing():
    ws = failover_writes() + [w(9000, "pg1", None, 10.5, 30.0, "unknown")]
    ids = {x["id"] for x in ws}
    v, _ = checker.check(hist(ws, final={"pg2": ids}), "sync")
    assert v == []


def test_not_reformed_detected():
    v, _ = checker.check(hist(failover_writes(), [fault(1, "stop_node", 10.0, 11.0, None)]),
                         "sync")
    assert any(x.startswith("not re-formed") for x in v), v


def test_summary_line_names_everything():
    _, rep = checker.check(hist(failover_writes(), [fault(1, "kill9_node", 10.0, 10.5, 12.0)]),
                           "sync")
    line = checker.summary_line(rep, "sync", 7)
    for word in ("1 faults", "kill9_node=1", "split brains 0", "lost writes 0", "seed=7"):
        assert word in line, line
