"""046: a standby being cloned shows the clone's progress (issue 24, "The
operator's view"): `pglease status` (State "cloning N%" and a line below the
table), `status --json` (nodes[].progress) and /metrics
(pglease_node_copy_*), with figures that grow as pg_basebackup goes on; the
"cloned" event says how much was copied and how long it took.

pg_basebackup over loopback copies the test's data in well under a second,
so the test slows it down: it stops the real pg_basebackup with SIGSTOP for
most of each 0.4 s (its progress report is timed by the clock, once a
second while it runs)."""
import http.client
import json
import os
import re
import shutil
import signal
import threading
import time

from conftest import FAST, PGLEASE, free_port, pid_alive, run_pg, wait_for_descendant


def throttle(pid, stop):
    """Runs pid 0.05 s in every 0.4 s until it exits or stop is set."""
    while not stop.is_set() and pid_alive(pid):
        try:
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.35)
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def metrics(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    except OSError:
        return ""
    finally:
        conn.close()


def test_clone_progress_is_shown(make_cluster):
    c = make_cluster(2, **FAST)
    taken = {x.port for x in c.nodes}
    for node in c.nodes:
        node.http_port = free_port(taken)
        taken.add(node.http_port)
        node.settings["http_listen"] = "127.0.0.1:%d" % node.http_port
        node.write_conf()
    c.start()
    p = c.wait_healthy(timeout=240)
    c.create_table(p)
    c.start_sampler()
    http_port = p.http_port
    s = c.others(p)[0]
    # About 150 MB that does not compress: the clone takes a while when slowed down.
    p.query("CREATE TABLE big AS SELECT g, md5(random()::text) || md5(random()::text) || "
            "md5(random()::text) AS x FROM generate_series(1, 1200000) g", timeout=300)

    s.stop()
    shutil.rmtree(s.pgdata)
    s.start()
    bb = wait_for_descendant(s.agent_pid, "pg_basebackup")
    stop = threading.Event()
    t = threading.Thread(target=throttle, args=(bb, stop), daemon=True)
    t.start()
    seen, table_line, metric = [], None, None
    try:
        deadline = time.monotonic() + 240
        while pid_alive(bb) and time.monotonic() < deadline:
            r = run_pg([PGLEASE, "status", "--json", "--lease-db", str(c.lease_db)])
            n = {x["name"]: x for x in json.loads(r.stdout)["nodes"]}[s.name]
            if n["progress"] and n["progress"]["operation"] == "clone":
                seen.append(n["progress"])
            if table_line is None and seen and seen[-1]["done_bytes"] > 0:
                out = run_pg([PGLEASE, "status", "--lease-db", str(c.lease_db)]).stdout
                m = re.search(r"^%s: cloning, .*$" % s.name, out, re.M)
                if m and re.search(r"\| cloning \d+% +\|", out):
                    table_line = m.group(0)
            if metric is None:
                m = re.search(r'^pglease_node_copy_done_bytes\{node="%s",operation="clone"\} '
                              r'([1-9]\d*)$' % s.name, metrics(http_port), re.M)
                metric = int(m.group(1)) if m else None
            time.sleep(0.3)
    finally:
        stop.set()
        t.join(timeout=5)
        try:
            os.kill(bb, signal.SIGCONT)
        except ProcessLookupError:
            pass
    c.wait_for_streaming(s, p, timeout=180)

    done = [x["done_bytes"] for x in seen]
    print("progress samples:", [(x["done_bytes"] >> 20, x["percent"], x["eta_s"]) for x in seen])
    print("status line:", table_line, "| metric:", metric)
    assert len(set(done)) >= 3, "the clone's progress did not grow in status: %r" % seen
    assert done == sorted(done), done
    last = seen[-1]
    assert last["total_bytes"] and last["total_bytes"] >= 100 << 20, last
    assert all(0 <= x["percent"] <= 100 for x in seen if x["percent"] is not None)
    assert any(x["eta_s"] is not None and x["eta_s"] > 0 for x in seen), seen
    assert table_line and re.search(r"of [\d.]+ MB \(\d+%\), [\d.]+s so far", table_line), \
        table_line
    assert metric and metric > 0
    ev = [e for e in c.events("cloned") if e["node"] == s.name]
    assert ev, c.events()
    m = re.search(r"copied ([\d.]+) (MB|GB) in ([\d.]+) s", ev[-1]["detail"])
    assert m, ev[-1]["detail"]
    mb = float(m.group(1)) * (1024 if m.group(2) == "GB" else 1)
    assert mb >= 100 and float(m.group(3)) >= 1.0, ev[-1]["detail"]
    # The clone is over: the record carries no progress any more.
    r = run_pg([PGLEASE, "status", "--json", "--lease-db", str(c.lease_db)])
    assert {x["name"]: x for x in json.loads(r.stdout)["nodes"]}[s.name]["progress"] is None
    c.sampler.check()
