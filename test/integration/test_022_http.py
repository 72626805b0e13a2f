"""022: the HTTP API (issue 12): what HAProxy and Prometheus read.

Each agent serves http_listen.  /primary answers 200 on the node that holds a
valid lease and is out of recovery, 503 elsewhere; /replica on a streaming
standby (?lag=BYTES bounds the lag); /read-only on both; /health where the
server runs; /cluster is `pglease status --json`; /metrics is Prometheus text.
?lag= takes Patroni's units (16MB, 1GB); a bad one gets 400 and one line.
Through a failover the 200 on /primary moves and two nodes never answer 200
at once.  Malformed, oversized and slow requests get an error or a timeout,
and the agent's renewals go on meanwhile."""
import http.client
import json
import re
import socket
import threading
import time

from conftest import FAST, ROOT, free_port, measure, poll_until, started_cluster

TTL = FAST["lease_ttl_ms"] / 1000.0


def http_cluster(make_cluster, n=3, **settings):
    s = dict(FAST)
    s.update(settings)
    c = make_cluster(n, **s)
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
    return c, p


def get(node, path, method="GET", timeout=5):
    """(status, body, headers) of one request; (None, error, {}) when refused."""
    conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=timeout)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read().decode(), dict(r.getheaders())
    except OSError as e:
        return None, str(e), {}
    finally:
        conn.close()


def metrics(node):
    st, body, _ = get(node, "/metrics")
    assert st == 200, body
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def test_endpoints_in_every_role(make_cluster):
    c, p = http_cluster(make_cluster)
    term = c.lease()["term"]
    s1, s2 = c.others(p)
    poll_until(lambda: all(get(s, "/replica")[0] == 200 for s in (s1, s2)), 30,
               "both standbys to answer 200 on /replica")
    for path, want in (("/primary", {p: 200, s1: 503, s2: 503}),
                       ("/read-write", {p: 200, s1: 503, s2: 503}),
                       ("/replica", {p: 503, s1: 200, s2: 200}),
                       ("/read-only", {p: 200, s1: 200, s2: 200}),
                       ("/health", {p: 200, s1: 200, s2: 200})):
        for node, code in want.items():
            for method in ("GET", "HEAD", "OPTIONS"):
                st, body, hdr = get(node, path, method)
                assert st == code, (node.name, path, method, st, body)
                if method == "GET":
                    doc = json.loads(body)
                    assert doc["node"] == node.name and doc["term"] == term, doc
                    assert hdr.get("Content-Type") == "application/json"
                else:
                    assert body == "", (method, body)
    # ?lag=BYTES, bad requests, other methods, unknown paths
    c.insert(p, range(1, 11))
    c.wait_for_catchup(s1, p)
    poll_until(lambda: get(s1, "/replica?lag=100000000")[0] == 200, 10, "lag bound met")
    # units as Patroni reads them (B, kB, MB, GB, TB; case matters)
    for lag in ("100MB", "16384kB", "1GB", "1.5TB", "100000000B"):
        assert get(s1, "/replica?lag=" + lag)[0] == 200, lag
        assert get(s1, "/read-only?lag=" + lag)[0] == 200, lag
    # the primary is not a replica whatever the bound
    assert get(p, "/replica?lag=1GB")[0] == 503
    for lag, says in (("abc", "must be a number"), ("-1", "must be a number"),
                      ("1mb", "unknown unit"), ("16KB", "unknown unit"),
                      ("1e6", "unknown unit"), ("99999999999TB", "too large")):
        st, body, _ = get(s1, "/replica?lag=" + lag)
        assert st == 400 and says in body and body.count("\n") == 1, (lag, st, body)
    st, _, hdr = get(p, "/primary", "POST")
    assert st == 405 and "GET" in hdr.get("Allow", ""), hdr
    assert get(p, "/primary", "DELETE")[0] == 405
    assert get(p, "/nosuch")[0] == 404
    # /cluster: the status document, with each node's host and port
    st, body, _ = get(s2, "/cluster")
    assert st == 200, body
    doc = json.loads(body)
    assert doc["lease"]["holder"] == p.name and doc["lease"]["term"] == term, doc["lease"]
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert set(nodes) == {n.name for n in c.nodes}
    for n in c.nodes:
        assert (nodes[n.name]["host"], nodes[n.name]["port"]) == ("127.0.0.1", n.port), \
            nodes[n.name]
    # /metrics
    m = metrics(p)
    assert m["pglease_term"] == term and m["pglease_lease_holder"] == 1
    assert m['pglease_role{role="primary"}'] == 1
    r0 = m["pglease_renewals_total"]
    assert r0 > 0 and m["pglease_renewal_duration_seconds_count"] == r0
    buckets = [v for k, v in m.items() if k.startswith("pglease_renewal_duration_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == r0, buckets
    for n in c.nodes:
        assert 0 <= m['pglease_node_heartbeat_age_seconds{node="%s"}' % n.name] < 3 * TTL
    assert m["pglease_replication_lag_bytes"] == 0
    ms = metrics(s1)
    assert ms["pglease_lease_holder"] == 0 and ms['pglease_role{role="standby"}'] == 1
    assert ms["pglease_renewals_total"] == 0 and ms["pglease_replication_lag_bytes"] >= 0
    time.sleep(2 * FAST["renew_interval_ms"] / 1000.0 + 0.2)
    assert metrics(p)["pglease_renewals_total"] > r0
    c.sampler.check()
    # The Grafana dashboard (docs/) reads only series the agent exports, with
    # the labels it exports.
    exported = {k.split("{")[0] for k in m} | {k.split("{")[0] for k in ms}
    labels = {k.split("{")[0]: k.split("{")[1].split("=")[0] for k in list(m) + list(ms)
              if "{" in k}
    dash = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dash["panels"] for t in panel["targets"]]
    used = {x for e in exprs for x in re.findall(r"pglease_[a-z_]+", e)}
    assert used and used <= exported, used - exported
    for e in exprs:
        for label in re.findall(r"by \(([a-z_, ]+)\)", e):
            for lab in (x.strip() for x in label.split(",")):
                assert lab in ("instance", "le") or lab in labels.values(), (lab, e)


def test_primary_200_moves_and_is_never_doubled(make_cluster):
    c, p = http_cluster(make_cluster)
    term = c.lease()["term"]
    samples = []            # (node, send, recv, status)
    stop = threading.Event()

    def poll(node):
        while not stop.is_set():
            t0 = time.monotonic()
            st = get(node, "/primary", timeout=1)[0]
            samples.append((node.name, t0, time.monotonic(), st))
            stop.wait(0.02)

    threads = [threading.Thread(target=poll, args=(n,), daemon=True) for n in c.nodes]
    for t in threads:
        t.start()
    time.sleep(1)
    t_kill = time.monotonic()
    p.kill9()
    newp = c.wait_for_primary(timeout=60, exclude=[p], min_term=term + 1)
    # The pollers' own answers: a request of this thread may see the 200 first.
    poll_until(lambda: any(n == newp.name and st == 200 for n, _, _, st in list(samples)), 30,
               "/primary 200 on " + newp.name)
    t_new = min(t for n, t, _, st in list(samples) if n == newp.name and st == 200)
    measure("kill -9 of the primary -> /primary 200 on the new one", t_new - t_kill)
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    # Before: only p; after: only newp.  Never two 200s whose intervals overlap.
    oks = [(n, a, b) for n, a, b, st in samples if st == 200]
    assert {n for n, a, _ in oks if a < t_kill} == {p.name}, "before the kill"
    assert {n for n, a, _ in oks if a > t_new} == {newp.name}, "after the failover"
    for n1, a1, b1 in oks:
        for n2, a2, b2 in oks:
            assert n1 == n2 or b1 < a2 or b2 < a1, \
                "%s and %s both answered 200 on /primary at once" % (n1, n2)
    c.sampler.check()


def test_bad_and_slow_clients_delay_nothing(make_cluster):
    c, p = http_cluster(make_cluster)
    renewals0 = c.lease()["renewals"]
    # Garbage, an oversized header, a huge URL: an error answer or a closed socket.
    for payload in (b"GARBAGE\r\n\r\n", b"GET /primary HTTP/1.1\r\nX: " + b"a" * 100000 +
                    b"\r\n\r\n", b"GET /" + b"x" * 100000 + b" HTTP/1.1\r\n\r\n",
                    b"\x00\xff" * 1000 + b"\r\n\r\n"):
        s = socket.create_connection(("127.0.0.1", p.http_port), timeout=10)
        try:
            s.sendall(payload)
            data = s.recv(200)
        except OSError:
            data = b""
        finally:
            s.close()
        assert data == b"" or data.startswith(b"HTTP/1.1 4"), data[:100]
    # Slow clients: more than the connection limit, each sending half a header.
    slow = []
    for _ in range(40):
        try:
            s = socket.create_connection(("127.0.0.1", p.http_port), timeout=2)
            s.sendall(b"GET /primary HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        except OSError:
            break
    # They hold nothing (test_033 is the flood): /primary answers while they are open,
    # and the server has closed every one of them by the 2 s deadline.
    t0 = time.monotonic()
    st, body, _ = get(p, "/primary", timeout=1)
    assert st == 200, (st, body)
    time.sleep(2 * TTL)
    for s in slow:
        s.settimeout(0)
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        except BlockingIOError:
            data = None
        assert data == b"", "a slow client not closed after %.1f s: %r" % (
            time.monotonic() - t0, data)
        s.close()
    # Meanwhile the agent renewed, and it answers.
    lease = c.lease()
    assert lease["holder"] == p.name and lease["renewals"] >= renewals0 + int(TTL / 0.5), lease
    assert not c.events("fenced")
    poll_until(lambda: get(p, "/primary")[0] == 200, 15, "/primary to answer again")
    assert p.agent_running()
    c.sampler.check()
