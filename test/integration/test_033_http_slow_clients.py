"""033: slow clients cannot starve the HTTP API (issue 24, M1).

Slow clients hold connections open by trickling one header byte at a time
and never finishing a request (slowclients.py).  The report's reproduction:
8 of them from each of 4 loopback addresses (127.0.0.1 to .4; the old caps
were 32 connections, 8 per address, and a 5 s *idle* timeout, so they were
never closed and every /primary probe went unanswered).  Beside them 192
more from 64 other addresses, each within the per-address cap.  For 10 s,
/primary on the primary is probed every 100 ms from 127.0.0.9 (HAProxy's
own address; a probe from a flooding address itself can be cut now and
then, see the report): every probe must be answered 200 within 100 ms, and no
slow connection may live more than about 2 s (the deadline from accept to
a complete request) plus slack; those within the caps live until that
deadline, the others are cut sooner (the oldest of their address goes when
a new one arrives).  The agent renews and never fences meanwhile.

And the HTTP thread's store handle against a dead etcd: a flood of /cluster
and /metrics requests makes it try etcd a few times (1 s, then doubling),
not once per request, and every /cluster gets 503 at once."""
import json
import socket
import subprocess
import sys
import time

from conftest import FAST, HERE, free_port, measure, poll_until

DURATION = 10.0
DEADLINE = 2.0          # PGL_HTTP_DEADLINE_MS
SLACK = 1.0             # the thread's 100 ms poll, the helper's own polling, a loaded host


def http_primary(make_cluster):
    c = make_cluster(1, **FAST)
    node = c.nodes[0]
    node.http_port = free_port({node.port})
    node.settings["http_listen"] = "127.0.0.1:%d" % node.http_port
    node.write_conf()
    c.start()
    p = c.wait_healthy(timeout=240)
    c.create_table(p)
    return c, p


def probe(port, path="/primary", src="127.0.0.1", timeout=1.0):
    """(status or None, seconds) of one GET from src: connect to the last byte."""
    t0 = time.monotonic()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    data = b""
    try:
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(("GET %s HTTP/1.0\r\n\r\n" % path).encode())
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else None
        return status, time.monotonic() - t0, data
    except (OSError, ValueError, IndexError) as e:
        return None, time.monotonic() - t0, repr(e).encode() + b" " + data[:100]
    finally:
        s.close()


def slow_clients(port, addresses, per_address, interval):
    return subprocess.Popen(
        [sys.executable, str(HERE / "slowclients.py"), "--port", str(port),
         "--addresses", ",".join(addresses), "--per-address", str(per_address),
         "--interval", str(interval), "--duration", str(DURATION)],
        stdout=subprocess.PIPE, text=True)


def metrics(port):
    st, _, data = probe(port, "/metrics")
    assert st == 200, data[:200]
    out = {}
    for line in data.split(b"\r\n\r\n", 1)[1].decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def test_slow_clients_never_starve_primary(make_cluster):
    c, p = http_primary(make_cluster)
    c.start_sampler()
    port = p.http_port
    poll_until(lambda: probe(port)[0] == 200, 30, "/primary to answer 200")
    renewals0 = c.lease()["renewals"]
    # The report's: 8 from each of 127.0.0.1..4, a byte every 2 s.
    over = slow_clients(port, ["127.0.0.%d" % i for i in range(1, 5)], 8, 2.0)
    # 192 more from 64 other addresses, a byte every 0.5 s.
    within = slow_clients(port, ["127.0.1.%d" % i for i in range(1, 65)], 3, 0.5)
    time.sleep(0.5)
    samples = []
    t_end = time.monotonic() + DURATION - 1.0
    while time.monotonic() < t_end:
        st, dt, data = probe(port, src="127.0.0.9")
        samples.append((st, dt))
        if st != 200:
            print("probe:", st, dt, data)
        time.sleep(0.1)
    res_over = json.loads(over.communicate(timeout=30)[0])
    res_within = json.loads(within.communicate(timeout=30)[0])
    bad = [(st, round(dt * 1000)) for st, dt in samples if st != 200 or dt > 0.1]
    worst = max(dt for _, dt in samples)
    measure("slowest /primary probe among %d under %d slow clients" %
            (len(samples), res_over["opened"] + res_within["opened"]), worst)
    assert len(samples) >= 40 and not bad, \
        "%d of %d probes not 200 within 100 ms: %s" % (len(bad), len(samples), bad[:20])
    # Nothing was held past the deadline: neither the closed ones nor those still open.
    for name, r in (("8 per address", res_over), ("within the caps", res_within)):
        lives = r["holds"] + r["open_ages"]
        assert r["closed"] > 0 and max(lives) <= DEADLINE + SLACK, \
            (name, max(lives), r["closed"], r["opened"], r["last_error"])
    # The ones within the caps lived until the deadline, not shorter: the
    # deadline cut them, and each was allowed its 2 s.
    holds = res_within["holds"]
    assert len(holds) >= 192 * 2 and min(holds) >= DEADLINE - 0.3, \
        (len(holds), min(holds))
    # 8 from an address with a cap of 4: the oldest ones were cut as new ones came.
    assert res_over["opened"] > 32 * 2, res_over["opened"]
    m = metrics(port)
    assert m['pglease_http_connections_cut_total{reason="deadline"}'] >= 192 * 2, m
    assert m['pglease_http_connections_cut_total{reason="per_address"}'] > 0, m
    assert m["pglease_http_connections"] <= 256, m
    # The agent renewed throughout and never fenced.
    lease = c.lease()
    assert lease["holder"] == p.name and lease["renewals"] >= renewals0 + 10, lease
    assert not c.events("fenced")
    poll_until(lambda: metrics(port)["pglease_http_connections"] <= 1, 10,
               "the slow connections to be gone")
    c.sampler.check()



def test_dead_etcd_is_not_reopened_per_request(etcd_cluster, make_cluster):
    """Issue 24: the HTTP thread reopened a failing store on every request.
    With etcd gone, a flood of /cluster and /metrics requests makes the HTTP
    thread try the store a few times (after 1 s, then 2 s, 4 s of backoff),
    not once per request; each try that fails is one "http:" line in the
    agent's log, the only place the HTTP thread opens the store.  Each
    /cluster is answered 503 at once with a clear body, /metrics says the
    store is unreadable, and /primary is not delayed."""
    c = make_cluster(1, etcd=etcd_cluster, lease_ttl_ms=2000, renew_interval_ms=500,
                     fence_margin_ms=1000)
    node = c.nodes[0]
    node.http_port = free_port({node.port} | {m.client_port for m in etcd_cluster.members})
    node.settings["http_listen"] = "127.0.0.1:%d" % node.http_port
    node.write_conf()
    c.start()
    p = c.wait_healthy(timeout=240)
    port = p.http_port
    poll_until(lambda: probe(port, "/cluster")[0] == 200, 30, "/cluster to answer 200")
    etcd_cluster.stop()
    time.sleep(1)
    log0 = len(p.log.read_bytes())
    t_end = time.monotonic() + 4
    answers = []
    while time.monotonic() < t_end:
        answers.append(probe(port, "/cluster", timeout=5))
        st_m, _, data_m = probe(port, "/metrics", timeout=5)
        assert st_m == 200, data_m[-300:]
    tries = [l for l in p.log.read_bytes()[log0:].decode(errors="replace").splitlines()
             if " http: " in l]
    print("the HTTP thread's tries of a dead etcd: %d for %d requests" %
          (len(tries), 2 * len(answers)))
    assert len(answers) >= 50, len(answers)
    # 4 s: a try at the first request, after 1 s, after 2 s more; 4 at most.
    assert 1 <= len(tries) <= 4, (len(tries), tries[:10])
    for st, dt, data in answers:
        assert st == 503 and b"the lease store cannot be read; the next try" in data, (st, data)
    assert b"pglease_http_store_readable 0" in data_m, data_m[-300:]
    assert any("no new try for" in l for l in tries), tries
    assert probe(port, "/health")[1] < 0.1
