"""015: quoting and secrets (issue #8).

* A replication password with a quote, a backslash, a space and '#'
  bootstraps, clones, fails over (kill -9) and the old primary rewinds and
  streams again; pg.* values with the same characters, and 60 more settings
  of 255 bytes of quotes and backslashes (beyond the old fixed buffer of
  pglease.node.conf), read back exactly with SHOW on every node.
* With pg.log_statement = 'all', after bootstrap, clones, a failover and a
  rejoin, the password appears in no agent log (which carries PostgreSQL's
  own log lines), no file of a node but its pgpass file (mode 0600), no
  event, no `pglease status/events --json` output and no process's cmdline.
"""
import os
import random
import stat

from conftest import FAST, pg_ids, poll_until, wait_reaped
from conftest import first_write

# The config file cannot hold ' and # in one value (an unquoted value ends at
# '#', a quoted one at the next quote): two values cover the four characters.
PG_A = "x'y\\ z"          # unquoted in the file: quote, backslash, space
PG_B = "p\\q #r s"        # quoted in the file: backslash, '#', spaces
LONG = "x" + "'\\" * 127  # 255 bytes, 509 once quoted


def long_name(i):
    name = "pglease_test.long_%02d_" % i
    return name + "x" * (63 - len(name))


def settings():
    s = {"pg.pglease_test.a": PG_A, "pg.pglease_test.b": "'%s'" % PG_B}
    for i in range(60):
        s["pg." + long_name(i)] = LONG
    return s


def set_password(c, pw):
    c.password_file.write_text(pw + "\n")


def assert_no_secret(c, pw):
    """The password is nowhere it must not be."""
    needle = pw.encode()
    uid, _ = pg_ids()
    for n in c.nodes:
        text = n.log_text()
        assert pw not in text, "password in %s's agent log" % n.name
        for root, _dirs, files in os.walk(n.dir):
            for f in files:
                path = os.path.join(root, f)
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    continue
                if path.endswith(".pgpass"):
                    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == uid, (
                        path, oct(st.st_mode), st.st_uid)
                    continue
                with open(path, "rb") as fh:
                    data = fh.read()
                assert needle not in data, "password in %s" % path
        assert (n.dir / "data.pgpass").exists(), "no pgpass file for %s" % n.name
    for e in c.events():
        assert pw not in repr(e), "password in event %r" % e
    for args in (["status", "--json"], ["events", "--json"], ["lease", "--json"]):
        r = c.cli(*args, "--lease-db", c.lease_db)
        assert pw not in r.stdout + r.stderr, "password in pglease %s" % " ".join(args)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        assert needle not in cmd, "password in the cmdline of pid %s" % pid


def crash_failover_and_rejoin(c, p):
    """kill -9 of p; returns the new primary once p streams from it again."""
    pids = p.kill9()
    new, _ = first_write(c.others(p), 1000001, 60)
    wait_reaped(pids)
    p.start()
    c.wait_for_streaming(p, new, timeout=120)
    for s in c.others(new):
        c.wait_for_streaming(s, new, timeout=120)
    c.insert(new, range(1000002, 1000011))
    for s in c.others(new):
        c.wait_for_catchup(s, new)
        assert set(range(1, 101)) | set(range(1000001, 1000011)) <= c.ids(s)
    return new


def test_quoted_password_and_settings(make_cluster):
    pw = "Pw'it\\h sp#ace-%08x" % random.getrandbits(32)
    c = make_cluster(3, **FAST, **settings())
    set_password(c, pw)
    c.start()
    p = c.wait_healthy(timeout=240)
    c.create_table(p)
    c.start_sampler()
    c.insert(p, range(1, 101))
    for n in c.nodes:
        assert n.scalar("SHOW pglease_test.a") == PG_A, n.name
        assert n.scalar("SHOW pglease_test.b") == PG_B, n.name
        for i in (0, 31, 59):
            assert n.scalar("SELECT current_setting(%s)", (long_name(i),)) == LONG, (n.name, i)

    new = crash_failover_and_rejoin(c, p)
    assert new is not p
    ev = c.events("rewound", node=p.name) + c.events("recloned", node=p.name)
    assert ev, "the old primary neither rewound nor re-cloned: %s" % c.events(node=p.name)
    assert p.scalar("SHOW pglease_test.a") == PG_A
    c.sampler.check()
    assert_no_secret(c, pw)


def test_no_secret_in_logs(make_cluster):
    pw = "SeKrEt-%016x" % random.getrandbits(64)
    c = make_cluster(3, **FAST, **{"pg.log_statement": "all", "pg.log_connections": "on"})
    set_password(c, pw)
    c.start()
    p = c.wait_healthy(timeout=240)
    c.create_table(p)
    c.start_sampler()
    c.insert(p, range(1, 101))
    poll_until(lambda: "statement: " in p.log_text(), 30, "log_statement = all to log statements")
    crash_failover_and_rejoin(c, p)
    # The third node re-pointed with ALTER SYSTEM, logged by log_statement.
    assert any("ALTER SYSTEM SET primary_conninfo" in n.log_text() for n in c.nodes)
    c.sampler.check()
    assert_no_secret(c, pw)
