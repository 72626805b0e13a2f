"""One three-node cluster (docker-compose.yml as shipped) taken through, in order:
bootstrap, docker stop of the primary, docker start of it, docker kill of the
next primary (and its return), a network partition of the primary that still
reaches the shared lease volume.  Each test leaves 1 primary + 2 streaming
standbys for the next, and checks that itself first."""
import http.client
import json
import os
import subprocess
import time

import pytest

from conftest import (FAILOVER_TIMEOUT, REJOIN_TIMEOUT, SERVICES, UP_TIMEOUT, Cluster,
                      Sampler, Writers, measure, poll, print_events)


@pytest.fixture(scope="module")
def c():
    cl = Cluster("failover")
    yield cl
    cl.down()


def count(c, svc, pattern):
    return int(c.q(svc, "select count(*) from dt where note like '%s'" % pattern))


def others(p):
    return [s for s in SERVICES if s != p]


def require_healthy(c, timeout=REJOIN_TIMEOUT):
    """The previous test's end state: 1 primary + 2 streaming (waits a little)."""
    p, secs = c.wait_healthy(timeout, what="precondition")
    return p


# ------------------------------------------------------------------ 1

def http_status(c, svc, path):
    """The status of GET path on svc's HTTP API (port 8008), from the host."""
    ip = c.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                  c.container(svc)).stdout.strip()
    conn = http.client.HTTPConnection(ip, 8008, timeout=3)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError as e:
        return "unreachable: %s" % e
    finally:
        conn.close()


def test_01_bootstrap(c):
    t0 = time.monotonic()
    c.up()
    p, _ = c.wait_healthy(UP_TIMEOUT, what="compose up")
    measure("compose up -> 1 primary + 2 streaming", time.monotonic() - t0)

    roles = c.roles()
    assert [s for s, r in roles.items() if r[0] == "primary"] == [p], roles
    for s in others(p):
        assert roles[s] == ("standby", "streaming:%s" % p), roles

    lease = c.lease()
    assert lease["holder"] == p and lease["term"] >= 1, lease
    assert lease["ttl_ms"] == c.ttl_ms, lease

    # pglease status --json (inside pg1, whatever its role) agrees; node rows
    # are written on heartbeats, so give them a moment to catch up.
    def status_agrees():
        r = c.pglease("pg1", "status", "--json")
        assert r.returncode == 0, (r.returncode, r.stderr)
        st = json.loads(r.stdout)
        assert st["lease"]["holder"] == p and st["lease"]["term"] == lease["term"], st["lease"]
        nodes = {n["name"]: n for n in st["nodes"]}
        assert sorted(nodes) == list(SERVICES), nodes
        assert nodes[p]["role"] == "primary" and nodes[p]["holds_lease"] is True, nodes[p]
        for s in others(p):
            n = nodes[s]
            assert n["role"] == "standby" and n["holds_lease"] is False, n
            assert n["upstream"] == p and n["state"] == "streaming", n
        return st
    st, _ = poll("pglease status --json to agree", status_agrees, 30, 1)
    print(json.dumps(st, indent=1))

    # The HTTP API (on in the image): /primary answers 200 on the primary only,
    # /replica on the standbys; asked from the host, as HAProxy would.
    def http_roles():
        got = {s: (http_status(c, s, "/primary"), http_status(c, s, "/replica"))
               for s in SERVICES}
        want = {s: (200, 503) if s == p else (503, 200) for s in SERVICES}
        assert got == want, got
        return got
    poll("the HTTP API to agree", http_roles, 30, 1)

    # sqlite3 on the host reads the views (read-only), and leaves no file
    # that the container's postgres user could not open.
    rows = c.status_rows()
    assert sorted(rows) == list(SERVICES), rows
    assert [n for n, r in rows.items() if r["holds_lease"]] == [p], rows
    assert rows[p]["role"] == "primary"
    assert all(rows[s]["role"] == "standby" for s in others(p)), rows
    assert all(r["term"] == lease["term"] for r in rows.values()), rows
    owners = {f: os.stat(os.path.join(c.lease_dir, f)).st_uid for f in os.listdir(c.lease_dir)}
    assert all(uid != 0 for f, uid in owners.items() if f.startswith("lease.db")), owners

    # One identity: the store's system identifier is every node's.
    sysid = c.cluster_row()["system_identifier"]
    for s in SERVICES:
        assert c.q(s, "select system_identifier from pg_control_system()") == str(sysid), s
    c.notes["sysid"] = str(sysid)

    ev = c.events()
    print_events(c)
    acq = [e for e in ev if e["kind"] == "acquired"]
    assert acq and acq[0]["node"] == p and acq[0]["term"] == 1, acq
    assert any(e["kind"] == "bootstrap" and e["node"] == p for e in ev), ev
    assert len(acq) == lease["term"], "one 'acquired' event per term: %s" % acq


# ------------------------------------------------------------------ 2

def test_02_docker_stop_hands_over(c):
    p = require_healthy(c)
    term = c.lease()["term"]
    c.q(p, "create table if not exists dt (id bigserial primary key, note text not null, "
           "at timestamptz default clock_timestamp())")
    # Committed, not waited for: a clean stop must ship them before releasing.
    c.q(p, "insert into dt(note) select 'stop-' || g from generate_series(1, 200) g")
    c.q(p, "insert into dt(note) values ('stop-last')")
    ev0 = c.last_event_id()

    with Sampler(c) as smp:
        time.sleep(1)
        w = Writers(c, others(p), "after-stop")
        t0 = time.time()
        stopper = subprocess.Popen(["docker", "stop", "-t", "30", c.container(p)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            winner, t1 = w.wait_first(FAILOVER_TIMEOUT)
        finally:
            won = w.stop()
            stopper.wait(timeout=60)
        t_stopped = time.time()
        measure("docker stop -> first write accepted on %s" % winner, t1 - t0)
        print("docker stop returned after %.2f s (rc %s)" % (t_stopped - t0, stopper.returncode))
        assert won == [winner], "writes accepted on %s" % won
        # the third node follows the new primary
        c.wait_healthy(FAILOVER_TIMEOUT, services=others(p), primary=winner, what="after stop")
        time.sleep(1)
    smp.check()
    c.notes["stopped"] = p

    assert not c.running(p)
    lease = c.lease()
    assert lease["holder"] == winner and lease["term"] == term + 1, lease
    assert count(c, winner, "stop-%") == 201, "rows lost by a clean stop"
    assert count(c, winner, "after-stop-%") == 1

    ev = c.events(ev0)
    print_events(c, ev0)
    rel = [e for e in ev if e["kind"] == "released"]
    acq = [e for e in ev if e["kind"] == "acquired"]
    assert len(rel) == 1 and rel[0]["node"] == p and rel[0]["term"] == term, rel
    assert len(acq) == 1 and acq[0]["node"] == winner and acq[0]["term"] == term + 1, acq
    assert rel[0]["id"] < acq[0]["id"], ev
    assert "lease released at" in (acq[0]["detail"] or ""), acq[0]
    assert not [e for e in ev if e["kind"] == "fenced"], ev


# ------------------------------------------------------------------ 3

def test_03_docker_start_rejoins(c):
    old = c.notes.get("stopped")
    if not old:
        pytest.fail("needs test_02 (no stopped primary)")
    lease = c.lease()
    new = lease["holder"]
    ev0 = c.last_event_id()
    t0 = time.monotonic()
    c.docker("start", c.container(old))
    p, _ = c.wait_healthy(REJOIN_TIMEOUT, primary=new, what="rejoin after docker start")
    measure("docker start of the stopped primary -> streaming from %s" % new,
            time.monotonic() - t0)
    assert c.probe(old) == ("standby", "streaming:%s" % new)
    assert c.lease()["term"] == lease["term"], "a rejoin must not change the term"

    c.q(new, "insert into dt(note) values ('after-rejoin')")
    c.wait_replayed(new, [old])
    assert count(c, old, "stop-%") == 201
    assert count(c, old, "after-stop-%") == 1
    assert count(c, old, "after-rejoin") == 1
    ev = c.events(ev0)
    print_events(c, ev0)
    assert not [e for e in ev if e["kind"] in ("acquired", "fenced", "recloned")], ev


# ------------------------------------------------------------------ 4

def test_04_docker_kill_fails_over(c):
    p = require_healthy(c)
    term = c.lease()["term"]
    c.q(p, "insert into dt(note) select 'kill-' || g from generate_series(1, 200) g")
    # Replication is asynchronous: a crash may lose what no standby received.
    # These rows are committed AND replayed everywhere: none may be lost.
    c.wait_replayed(p, others(p))
    ev0 = c.last_event_id()

    with Sampler(c) as smp:
        time.sleep(1)
        w = Writers(c, others(p), "after-kill")
        t0 = time.time()
        c.docker("kill", c.container(p))
        try:
            winner, t1 = w.wait_first(FAILOVER_TIMEOUT)
        finally:
            won = w.stop()
        secs = t1 - t0
        measure("docker kill -> first write accepted on %s" % winner, secs)
        assert won == [winner], "writes accepted on %s" % won
        c.wait_healthy(FAILOVER_TIMEOUT, services=others(p), primary=winner, what="after kill")
        time.sleep(1)
    smp.check()

    bound = c.ttl_ms / 1000 + 5
    assert secs < bound, "failover after docker kill took %.2f s (bound %.1f s)" % (secs, bound)
    lease = c.lease()
    assert lease["holder"] == winner and lease["term"] == term + 1, lease
    assert count(c, winner, "kill-%") == 200, "committed, replicated rows lost"
    ev = c.events(ev0)
    print_events(c, ev0)
    acq = [e for e in ev if e["kind"] == "acquired"]
    assert len(acq) == 1 and acq[0]["node"] == winner and acq[0]["term"] == term + 1, acq
    # docker kill ends every process of the container: proof of death, no TTL wait.
    assert "holder's processes gone" in (acq[0]["detail"] or ""), acq[0]
    assert not [e for e in ev if e["kind"] == "released"], ev

    # ... and the killed one comes back as a standby by itself.
    ev1 = c.last_event_id()
    t0 = time.monotonic()
    c.docker("start", c.container(p))
    c.wait_healthy(REJOIN_TIMEOUT, primary=winner, what="rejoin after docker kill + start")
    measure("docker start of the killed primary -> streaming from %s" % winner,
            time.monotonic() - t0)
    c.wait_replayed(winner, [p])
    assert count(c, p, "kill-%") == 200
    assert count(c, p, "after-kill-%") == 1
    assert c.lease()["term"] == term + 1
    print_events(c, ev1)


# ------------------------------------------------------------------ 5

def network_aliases(c, svc):
    p = c.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", c.container(svc))
    nets = json.loads(p.stdout)
    return nets[c.network].get("Aliases") or []


def test_05_partitioned_primary_keeps_lease(c):
    p = require_healthy(c)
    lease = c.lease()
    aliases = network_aliases(c, p)
    ev0 = c.last_event_id()
    c.q(p, "insert into dt(note) values ('before-partition')")

    with Sampler(c) as smp:
        time.sleep(1)
        t0 = time.monotonic()
        c.docker("network", "disconnect", c.network, c.container(p))
        try:
            # the partition is real: no standby reaches the primary over the network
            for s in others(p):
                r = c.exec(s, ["pg_isready", "-h", p, "-p", "5432", "-t", "3"], timeout=30)
                assert r.returncode != 0, "%s still reaches %s: %s" % (s, p, r.stdout)
            # 12 s > TTL + grace: a standby that took "no heartbeat over the
            # network" for a dead primary would have claimed by now.
            seen_cut = set()
            while time.monotonic() - t0 < 12:
                l = c.lease()
                assert (l["holder"], l["term"]) == (lease["holder"], lease["term"]), \
                    "lease moved during the partition: %s" % l
                for s in others(p):
                    r, wr = c.probe(s)
                    assert r == "standby", "%s left recovery during the partition" % s
                    if wr != "streaming:%s" % p:
                        seen_cut.add(s)
                time.sleep(1)
            assert c.probe(p)[0] == "primary"
            print("standbys seen not streaming during the partition: %s" % sorted(seen_cut))
            # still a primary: it renews through the shared volume and takes writes
            c.q(p, "insert into dt(note) values ('during-partition')")
            l = c.lease()
            assert l["holder"] == p and l["term"] == lease["term"] and \
                l["renewals"] > lease["renewals"], l
        finally:
            args = ["network", "connect"]
            for a in aliases:
                args += ["--alias", a]
            c.docker(*(args + [c.network, c.container(p)]))
        t1 = time.monotonic()
        for s in others(p):
            r = c.exec(s, ["pg_isready", "-h", p, "-p", "5432", "-t", "10"], timeout=30)
            assert r.returncode == 0, "%s cannot reach %s after connect: %s" % (s, p, r.stdout)
        c.wait_healthy(REJOIN_TIMEOUT, primary=p, what="after network connect")
        measure("docker network connect -> standbys streaming again", time.monotonic() - t1)
        c.wait_replayed(p, others(p))
        time.sleep(1)
    smp.check()

    for s in others(p):
        assert count(c, s, "during-partition") == 1
    assert c.lease()["term"] == lease["term"]
    ev = c.events(ev0)
    print_events(c, ev0)
    assert not [e for e in ev if e["kind"] in ("acquired", "fenced", "released", "recloned",
                                               "rewound")], ev
