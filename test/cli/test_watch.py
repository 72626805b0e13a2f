"""pglease watch: first line, change lines, latency, JSON Lines, signals."""
import json
import re
import signal
import subprocess
import time

import pytest

from conftest import MEASUREMENTS, MKSTORE, mk, pgl


def test_watch_prints_a_claim_within_a_second(store, watch):
    mk(store, "release", "n1", "0/3005000")
    w = watch("--count", "1", "--lease-db", store)
    first = w.readline()
    assert first is not None and first.endswith("lease: none (term 1, released at 0/3005000)")
    time.sleep(0.2)
    t0 = time.monotonic()
    subprocess.run([MKSTORE, str(store), "claim", "n2"], check=True)
    committed = time.monotonic()
    line = w.readline(timeout=5)
    seen = time.monotonic()
    assert line is not None, "watch printed nothing within 5 s of the claim"
    assert re.fullmatch(r"\S+Z  lease: n2 term 2 \(renewed \d+\.\ds ago\)", line), line
    latency = max(0.0, seen - committed)
    MEASUREMENTS.append("watch latency after commit %.1f ms (%.1f ms including the "
                        "writer's own run)" % (latency * 1000, (seen - t0) * 1000))
    assert seen - t0 < 1.0
    assert w.proc.wait(timeout=5) == 0
    assert w.readline(timeout=1) is None


def test_watch_lines_for_events_nodes_not_renewals(store, watch):
    w = watch("--count", "4", "--lease-db", store)
    assert "  lease: n1 term 1 (renewed " in w.readline()
    for _ in range(3):
        mk(store, "renew", "n1")                       # not printed
    mk(store, "node", "n2", "standby", "streaming", "n1", 1, "0/3005000", "0/3005000")  # heartbeat only
    mk(store, "node", "n2", "standby", "stopped", "n1", 1, "0/3005000", "0/3005000")
    mk(store, "event", "n2", "fenced", "because")
    mk(store, "node", "n5", "standby", "cloning", "-", "-", "-", "-")
    assert pgl("remove", "n3", "--lease-db", store).returncode == 0
    lines = [w.readline(timeout=5) for _ in range(5)]
    assert lines[4] is None, lines              # --count 4 stopped it
    body = [re.sub(r"^\S+Z  ", "", l) for l in lines[:4]]
    assert body[0] == "node: n2 standby/streaming -> standby/stopped"
    assert body[1] == "event: term 1  n2  fenced  because"
    assert body[2] == "node: n5 added as standby/cloning"
    assert body[3] in ("event: term 1  n3  removed  node forgotten; its slot is dropped",
                       "node: n3 removed")
    assert w.proc.wait(timeout=5) == 0


def test_watch_json_lines(store, watch):
    w = watch("--json", "--count", "4", "--lease-db", store)
    first = json.loads(w.readline())
    assert first["type"] == "lease" and first["lease"]["holder"] == "n1"
    assert first["lease"]["term"] == 1
    mk(store, "release", "n1", "0/3006000")
    mk(store, "node", "n1", "standby", "stopped", "-", 1, "0/3006000", "0/3006000")
    mk(store, "claim", "n2")
    docs = [json.loads(w.readline(timeout=5)) for _ in range(4)]
    assert [d["type"] for d in docs] == ["lease", "event", "node", "lease"]
    assert docs[0]["lease"]["holder"] is None
    assert docs[0]["lease"]["released_lsn"] == "0/3006000"
    assert docs[1]["event"]["kind"] == "released" and docs[1]["event"]["node"] == "n1"
    assert set(docs[1]["event"]) == {"id", "at", "term", "node", "kind", "detail"}
    assert {k: docs[2][k] for k in ("change", "name", "role", "state", "previous_role",
                                    "previous_state")} == {
        "change": "changed", "name": "n1", "role": "standby", "state": "stopped",
        "previous_role": "primary", "previous_state": "running"}
    assert docs[3]["lease"]["holder"] == "n2" and docs[3]["lease"]["term"] == 2
    assert w.proc.wait(timeout=5) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_watch_stops_cleanly_on_signal(store, watch, sig):
    w = watch("--lease-db", store)
    assert w.readline() is not None
    t0 = time.monotonic()
    w.proc.send_signal(sig)
    assert w.proc.wait(timeout=5) == 0
    assert time.monotonic() - t0 < 1.0
    assert w.proc.stderr.read() == b""


def test_watch_sees_changes_without_inotify_hint(store, watch):
    """Even a change inotify cannot report is seen by the periodic re-read."""
    w = watch("--count", "1", "--lease-db", store)
    assert w.readline() is not None
    mk(store, "event", "n1", "checkpoint", "x")
    assert w.readline(timeout=3).endswith("event: term 1  n1  checkpoint  x")
