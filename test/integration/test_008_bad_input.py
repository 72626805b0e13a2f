"""008: bad input gets a clear error naming what is wrong and changes nothing:
an unknown config key (exit 2, file:line and the key), a bad value (names
the key), and a foreign data directory while the store already has a system
identifier (refused: "another cluster"; the store file is unchanged)."""
import glob
import os

from conftest import FAST, chown_pg, run_pg, sha256, started_cluster


def refused(node, timeout=60):
    node.start(wait=False)
    rc = node.exit_code(timeout=timeout)
    assert rc is not None, "agent %s still running after %d s: %s" % (
        node.name, timeout, node.log_tail(20))
    return rc, node.log_text()


def store_files(c):
    out = {}
    for suffix in ("", "-wal"):
        p = str(c.lease_db) + suffix
        if os.path.exists(p):
            out[os.path.basename(p)] = sha256(p)
    for p in glob.glob(str(c.nodes_dir / "*")):
        out["lease.nodes/" + os.path.basename(p)] = sha256(p)
    return out


def dump(c):
    return c.store_query("SELECT * FROM lease") + c.store_query("SELECT * FROM cluster") + \
        c.store_query("SELECT * FROM events") + sorted(c.node_rows().items())


def test_bad_input(make_cluster):
    c, p = started_cluster(make_cluster, 2, sampler=False, **FAST)
    sysid = c.cluster_row()["system_identifier"]
    assert sysid
    for n in list(c.nodes):
        assert n.stop() == 0
    before = store_files(c)
    before_dump = dump(c)
    listing = sorted(os.listdir(c.lease_dir))

    # a) unknown key: exit 2, names file:line and the key.
    bad = c.add_node("bada")
    bad.write_conf(extra_lines=["# a comment", "bogus_key = 1"])
    line = bad.conf.read_text().splitlines().index("bogus_key = 1") + 1
    rc, out = refused(bad)
    assert rc == 2, (rc, out)
    assert "%s:%d" % (bad.conf, line) in out and "bogus_key" in out, out

    # b) bad values: name the key (and the line).
    for key, val in (("lease_ttl_ms", "abc"), ("pg_port", "70000"), ("node_name", "Bad Name"),
                     ("log_level", "loud")):
        badv = c.add_node("bad%s" % key.replace("_", "")[:8])
        badv.write_conf(**{key: val})
        rc, out = refused(badv)
        assert rc == 2, (key, rc, out)
        assert key in out, (key, out)
        line = [i + 1 for i, l in enumerate(badv.conf.read_text().splitlines())
                if l.startswith(key + " ")][0]
        assert "%s:%d" % (badv.conf, line) in out, (key, out)
    # Inconsistent timings: renew_interval_ms * 2 > lease_ttl_ms - fence_margin_ms.
    badt = c.add_node("badtiming")
    badt.write_conf(lease_ttl_ms=3000, renew_interval_ms=1500, fence_margin_ms=1000)
    rc, out = refused(badt)
    assert rc == 2 and "renew_interval_ms" in out, (rc, out)

    # c) a data directory of another cluster.
    foreign = c.add_node("foreign")
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]
    os.makedirs(foreign.pgdata, mode=0o700)
    chown_pg(foreign.pgdata)
    r = run_pg([initdb, "-D", foreign.pgdata, "-U", "postgres", "--auth=trust"], timeout=180)
    assert r.returncode == 0, r.stderr
    control = sha256(foreign.pgdata / "global" / "pg_control")
    files = sorted(os.listdir(foreign.pgdata))
    rc, out = refused(foreign)
    assert rc not in (0, None), (rc, out)
    assert "another cluster" in out, out
    assert sysid in out, "the message should name the store's system identifier: %s" % out
    assert sha256(foreign.pgdata / "global" / "pg_control") == control
    assert sorted(os.listdir(foreign.pgdata)) == files, "the foreign data directory changed"

    # Nothing changed in the store: same bytes, same rows, same files.
    assert dump(c) == before_dump
    assert store_files(c) == before, "the lease store file changed"
    left = sorted(os.listdir(c.lease_dir))
    assert left == listing or set(left) - set(listing) <= {"lease.db-shm", "lease.db-wal"}, (
        listing, left)
    # (A refused agent may leave an empty alive/<name>.lock: harmless, not asserted.)
    print("alive/ after the refusals:", sorted(os.listdir(c.lease_dir / "alive")))
