#!/usr/bin/env python3
"""report.py — a campaign's history (JSON, optionally .gz) as the markdown
tables of docs/reliability.md.

Usage: test/nemesis/report.py HISTORY.json[.gz] [...]
"""
import gzip
import json
import sys


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)


def table(d):
    a, r = d["args"], d["report"]
    done = a.get("interrupted_after") or r["faults"]
    title = "### %s mode, seed %s: %d faults" % (a["mode"], a["seed"], done)
    if a.get("interrupted_after"):
        title += " (interrupted after %d of %d)" % (done, a["faults"])
    w = r["writes"]
    lost = str(r["lost_writes"])
    if r.get("lost_by_fault"):
        lost += " (" + ", ".join("%s: %d" % kv for kv in r["lost_by_fault"].items()) + ")"
    out = [title, "", "| | |", "|---|---|",
           "| writes acknowledged / refused / unknown | %d / %d / %d |"
           % (w["ok"], w["error"], w["unknown"]),
           "| split brains | %d |" % r["split_brains"],
           "| stale writes | %d |" % r["stale_writes"],
           "| lost acknowledged writes | %s |" % lost,
           "| phantom writes | %d |" % r["phantom_writes"],
           "| violations | %d |" % r["violations"],
           "| re-formed after healing, median / worst | %.1f s / %.1f s |"
           % (r["reform_s"]["median"], r["reform_s"]["worst"]),
           "", "| fault kind | count | unavailability median | worst |",
           "|---|---|---|---|"]
    for kind, n in sorted(r["by_kind"].items()):
        u = r["unavailability_s"].get(kind)
        if u:
            out.append("| %s | %d | %.2f s | %.2f s |" % (kind, n, u["median"], u["worst"]))
        else:
            out.append("| %s | %d | - | - |" % (kind, n))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for p in sys.argv[1:]:
        print(table(load(p)))
