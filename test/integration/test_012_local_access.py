"""012: local access (issue #8).  The Unix socket is 0700 and authenticated
by peer through the pglease ident map: another local OS user (nobody) cannot
connect as postgres over the socket or without a password over 127.0.0.1;
root and the postgres OS user can; root cannot pick another role; no pg_hba
rule says trust.  A world-writable pg_socket_dir (like /tmp) is refused at
startup with one line naming the key and the directory, and a missing one is
created with mode 0700."""
import os
import stat
import subprocess

from conftest import FAST, clean_env, poll_until, require_root, started_cluster


def psql(argv_user, node, host, user, extra_env=None):
    """psql -c 'select 1' as OS user argv_user (None: root itself)."""
    argv = ["psql", "-X", "-w", "-At", "-h", str(host), "-p", str(node.port), "-U", user,
            "-d", "postgres", "-c", "select 1"]
    if argv_user:
        argv = ["runuser", "-u", argv_user, "--"] + argv
    env = clean_env(**(extra_env or {}))
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env,
                          stdin=subprocess.DEVNULL, cwd="/")


def test_local_access(make_cluster):
    require_root()
    c, p = started_cluster(make_cluster, 2, sampler=False, **FAST)
    s = c.others(p)[0]

    # Let nobody reach the sockets: the refusal must come from PostgreSQL's
    # socket permissions and authentication, not from directory modes.
    for d in [c.base] + [n.dir for n in c.nodes]:
        os.chmod(d, 0o711)
    for n in (p, s):
        sock = n.dir / (".s.PGSQL.%d" % n.port)
        mode = stat.S_IMODE(os.stat(sock).st_mode)
        assert mode == 0o700, "%s: socket mode %o" % (sock, mode)

        # nobody over the socket, as postgres: refused by the socket's permissions.
        r = psql("nobody", n, n.dir, "postgres")
        assert r.returncode != 0, "nobody connected to %s over the socket: %s" % (n.name, r.stdout)
        assert "Permission denied" in r.stderr, r.stderr
        assert "No such file" not in r.stderr, r.stderr

        # nobody over 127.0.0.1 without a password: SCRAM asks for one.
        r = psql("nobody", n, "127.0.0.1", "postgres")
        assert r.returncode != 0, "nobody connected to %s over TCP without a password" % n.name
        assert "password" in r.stderr, r.stderr

        # root and the postgres OS user connect as postgres over the socket.
        r = psql(None, n, n.dir, "postgres")
        assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
        r = psql("postgres", n, n.dir, "postgres")
        assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr

        # Peer authentication, not trust: root may not become another role.
        r = psql(None, n, n.dir, "pglease")
        assert r.returncode != 0, "root connected as role pglease over the socket"
        assert "Peer authentication failed" in r.stderr, r.stderr

        # The rules in force have no trust line.
        rules = n.query("SELECT type, auth_method, coalesce(error, '') FROM pg_hba_file_rules")
        assert rules and all(r[1] != "trust" and not r[2] for r in rules), rules
        assert n.scalar("SHOW hba_file") == str(n.pgdata / "pglease.hba.conf")
        assert n.scalar("SHOW unix_socket_permissions") == "0700"

    # The agents keep working over the socket: a write reaches the standby.
    c.insert(p, range(1, 11))
    c.wait_for_catchup(s, p)
    assert c.ids(s) == set(range(1, 11))


def test_socket_dir_refused_or_created(make_cluster):
    require_root()
    c = make_cluster(2, **FAST)
    bad = c.base / "world"
    bad.mkdir()
    os.chmod(bad, 0o1777)
    n1 = c.nodes[0]
    n1.write_conf(pg_socket_dir=bad)
    n1.start(wait=False)
    rc = n1.exit_code(timeout=30)
    log = n1.log_text()
    assert rc == 2, "agent with a world-writable socket dir exited %r: %s" % (rc, n1.log_tail())
    lines = [l for l in log.splitlines() if "pg_socket_dir" in l]
    assert len(lines) == 1 and str(bad) in lines[0] and "writable by every user" in lines[0], log
    assert not (n1.pgdata / "PG_VERSION").exists(), "it must change nothing"

    # A missing socket directory is created with mode 0700.
    n2 = c.nodes[1]
    fresh = n2.dir / "sock"
    n2.write_conf(pg_socket_dir=fresh)
    n2.start()
    poll_until(lambda: fresh.is_dir(), 30, "%s to be created" % fresh)
    st = os.stat(fresh)
    assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
    assert n2.stop() == 0
