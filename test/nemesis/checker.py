"""checker.py — reads a nemesis history and says what went wrong.

Pure: no PostgreSQL, no clock.  The campaign (nemesis.py) records, for every
write attempt, the node it was sent to, its start and end on the monotonic
clock, its outcome and the timeline the node was on when it committed (read
in the same statement), and, at the end, the ids present on every node.

What a write proves.  An acknowledged write on node N, timeline T, between
`start` and `end`, proves that N was a primary on T at some instant inside
[start, end].  Nothing more: a write is not an instant.  From that:

* Provable primary window of (N, T): from the earliest `end` to the latest
  `start` of N's acknowledged writes on T.  N was primary on T for that
  whole span (it committed before the first end and again after the last
  start, and a server never goes back to recovery without a restart, which
  would give it a new timeline or no writes).  Two windows of different
  (node, timeline) pairs that overlap are a split brain.
* Stale write: an acknowledged write on timeline T that started after a
  write on a newer timeline T' > T had been acknowledged.  Once a newer
  term's primary acknowledged a write, nobody on an older timeline may.
* Lost write: an acknowledged id missing from the final primary or from any
  standby.  In sync mode every one is a violation; in async mode they are
  counted and attributed to the fault that lost them.
* Phantom write: an id whose attempt got a definite error, yet present at
  the end (the server said no and did it anyway).

A write whose connection broke mid-commit is "unknown": it may or may not be
present, and proves nothing.
"""
import bisect
import statistics

OK, ERROR, UNKNOWN = "ok", "error", "unknown"


def primary_windows(writes):
    """{(node, timeline): (first_end, last_start, count)} over acknowledged writes."""
    w = {}
    for x in writes:
        if x["outcome"] != OK or x.get("timeline") is None:
            continue
        k = (x["node"], x["timeline"])
        fe, ls, n = w.get(k, (float("inf"), float("-inf"), 0))
        w[k] = (min(fe, x["end"]), max(ls, x["start"]), n + 1)
    return w


def split_brains(writes):
    """Overlapping provable primary windows of different (node, timeline) pairs."""
    win = [(k, v) for k, v in primary_windows(writes).items() if v[0] < v[1]]
    out = []
    for i in range(len(win)):
        (ka, (a0, a1, _)) = win[i]
        for j in range(i + 1, len(win)):
            (kb, (b0, b1, _)) = win[j]
            if ka[0] == kb[0] and ka[1] == kb[1]:
                continue
            lo, hi = max(a0, b0), min(a1, b1)
            if lo < hi:
                out.append({"a": {"node": ka[0], "timeline": ka[1], "from": a0, "to": a1},
                            "b": {"node": kb[0], "timeline": kb[1], "from": b0, "to": b1},
                            "overlap_s": hi - lo})
    return out


def stale_writes(writes):
    """Acknowledged writes that started after a newer timeline acknowledged one."""
    first_end = {}
    for x in writes:
        if x["outcome"] == OK and x.get("timeline") is not None:
            t = x["timeline"]
            first_end[t] = min(first_end.get(t, float("inf")), x["end"])
    tls = sorted(first_end)
    # newer_end[i] = earliest acknowledgement on any timeline newer than tls[i]
    newer_end = [float("inf")] * len(tls)
    best = float("inf")
    for i in range(len(tls) - 1, -1, -1):
        newer_end[i] = best
        best = min(best, first_end[tls[i]])
    out = []
    for x in writes:
        if x["outcome"] != OK or x.get("timeline") is None:
            continue
        i = bisect.bisect_left(tls, x["timeline"])
        if x["start"] > newer_end[i]:
            out.append(dict(x, newer_acked_at=newer_end[i]))
    return out


def lost_and_phantom(writes, final):
    """final: {node: set(ids)} read at the end from the primary and every standby.
    Returns (lost, phantom): lost = [(write, [nodes missing it])], phantom = [(write, nodes)]."""
    lost, phantom = [], []
    for x in writes:
        if x["outcome"] == OK:
            missing = sorted(n for n, ids in final.items() if x["id"] not in ids)
            if missing:
                lost.append((x, missing))
        elif x["outcome"] == ERROR:
            has = sorted(n for n, ids in final.items() if x["id"] in ids)
            if has:
                phantom.append((x, has))
    return lost, phantom


def fault_for(t, faults):
    """The fault a write acknowledged at t was exposed to: the one whose window
    [injected, whole] holds t, else the next one injected after t."""
    for f in faults:
        if f["injected"] <= t <= (f.get("whole") or f["injected"]):
            return f
    nxt = [f for f in faults if f["injected"] >= t]
    return min(nxt, key=lambda f: f["injected"]) if nxt else None


def unavailability(writes, faults, end_of_run):
    """For each fault: the longest span with no write acknowledged anywhere,
    among the spans that begin inside [injected, whole] (whole: the cluster
    re-formed; else the next fault's injection, else the end of the run).
    The first span begins at the injection; a span that begins inside the
    window may end after it (clients reconnecting).  Seconds."""
    acks = sorted(x["end"] for x in writes if x["outcome"] == OK)
    out = {}
    for i, f in enumerate(faults):
        lo = f["injected"]
        hi = f.get("whole") or (faults[i + 1]["injected"] if i + 1 < len(faults) else end_of_run)
        j = bisect.bisect_left(acks, lo)
        prev, worst = lo, 0.0
        while prev <= hi:
            nxt = acks[j] if j < len(acks) else max(end_of_run, prev)
            worst = max(worst, nxt - prev)
            if j >= len(acks):
                break
            prev = nxt
            j += 1
        out[f["id"]] = worst
    return out


def check(history, mode):
    """Returns (violations, report) for a history document (see nemesis.py)."""
    writes, faults, final = history["writes"], history["faults"], history["final"]
    final_sets = {n: set(ids) for n, ids in final.items()}
    v = []
    for sb in split_brains(writes):
        v.append("split brain: %s on timeline %d and %s on timeline %d both acknowledged "
                 "writes during %.3f s" % (sb["a"]["node"], sb["a"]["timeline"],
                                           sb["b"]["node"], sb["b"]["timeline"], sb["overlap_s"]))
    stale = stale_writes(writes)
    for x in stale[:20]:
        v.append("stale write: id %d acknowledged by %s on timeline %d, started %.3f s after a "
                 "newer timeline had acknowledged one" % (x["id"], x["node"], x["timeline"],
                                                          x["start"] - x["newer_acked_at"]))
    lost, phantom = lost_and_phantom(writes, final_sets) if final_sets else ([], [])
    lost_by_fault = {}
    for x, missing in lost:
        f = fault_for(x["end"], faults)
        key = "%s#%d" % (f["kind"], f["id"]) if f else "no fault"
        lost_by_fault.setdefault(key, []).append(x["id"])
    if mode == "sync":
        for x, missing in lost[:20]:
            v.append("lost write: id %d acknowledged by %s (timeline %s) is missing on %s" % (
                x["id"], x["node"], x.get("timeline"), ", ".join(missing)))
    else:
        # Only a crash of the primary may lose acknowledged writes: a kill, or
        # a fence (a frozen agent or node, an agent stopped inside its write, a
        # store full: the primary is stopped immediately, like a crash, by
        # design).  A clean stop, the store locked (renewals do not need its
        # lock), a standby's trouble or no fault at all must lose nothing.
        crash = {"kill9_node", "kill9_agent", "kill9_postmaster", "double", "stop_agent",
                 "stop_node", "stop_in_write", "store_full"}
        for key, ids in lost_by_fault.items():
            if key.split("#")[0] not in crash:
                v.append("lost writes under %s (not a crash of the primary): %d ids, first %s"
                         % (key, len(ids), ids[:5]))
    for x, has in phantom[:20]:
        v.append("phantom write: id %d was refused by %s (%s) yet is present on %s" % (
            x["id"], x["node"], x.get("error", "")[:80], ", ".join(has)))
    for f in faults:
        if f.get("whole") is None:
            v.append("not re-formed: after fault #%d (%s on %s) the cluster had no single "
                     "primary with every running node streaming from it within %.0f s" % (
                         f["id"], f["kind"], f["target"], history["args"]["recovery_bound_s"]))
    unavail = unavailability(writes, faults, history.get("end", 0))
    per_kind = {}
    for f in faults:
        per_kind.setdefault(f["kind"], []).append(unavail.get(f["id"], 0.0))
    reform = [f["whole"] - f["healed"] for f in faults if f.get("whole") is not None]
    report = {
        "faults": len(faults),
        "by_kind": {k: len(x) for k, x in sorted(per_kind.items())},
        "writes": {o: sum(1 for x in writes if x["outcome"] == o) for o in (OK, ERROR, UNKNOWN)},
        "split_brains": len(split_brains(writes)),
        "stale_writes": len(stale),
        "lost_writes": len(lost),
        "lost_by_fault": {k: len(x) for k, x in lost_by_fault.items()},
        "phantom_writes": len(phantom),
        "unavailability_s": {k: {"median": statistics.median(x), "worst": max(x), "n": len(x)}
                             for k, x in sorted(per_kind.items())},
        "reform_s": {"median": statistics.median(reform) if reform else None,
                     "worst": max(reform) if reform else None},
        "violations": len(v),
    }
    return v, report


def summary_line(report, mode, seed):
    kinds = " ".join("%s=%d" % kv for kv in report["by_kind"].items())
    un = " ".join("%s=%.2f/%.2f" % (k, x["median"], x["worst"])
                  for k, x in report["unavailability_s"].items())
    return ("nemesis mode=%s seed=%s: %d faults (%s); writes ok=%d error=%d unknown=%d; "
            "split brains %d; stale writes %d; lost writes %d; phantom writes %d; "
            "unavailability median/worst s: %s; re-formed within %s s (worst); %d violations"
            % (mode, seed, report["faults"], kinds, report["writes"]["ok"],
               report["writes"]["error"], report["writes"]["unknown"], report["split_brains"],
               report["stale_writes"], report["lost_writes"], report["phantom_writes"], un,
               "%.1f" % report["reform_s"]["worst"] if report["reform_s"]["worst"] is not None
               else "-", report["violations"]))
