"""025: bootstrap_program (issue 12): the node that bootstraps the cluster runs
the operator's program once, after initdb and before it serves as primary; the
other nodes get its work by cloning.  Exercised with the Docker image's own
program (docker/docker-init.sh: POSTGRES_USER, POSTGRES_PASSWORD_FILE,
POSTGRES_DB and the scripts of an initdb.d directory).  A failing program is
logged and recorded in the bootstrap event; the cluster still forms."""
import gzip
import lzma
import os
import shutil
import subprocess
from pathlib import Path

import psycopg2

from conftest import FAST, PGLEASE, as_pg, chown_pg, clean_env

ROOT = Path(__file__).resolve().parents[2]
DOCKER_INIT = ROOT / "docker" / "docker-init.sh"


def make_program(c, body):
    """An executable wrapper in the cluster's directory: logs its call to
    calls.log (node, PGHOST, PGPORT), then runs body."""
    calls = c.base / "calls.log"
    calls.touch()
    os.chmod(calls, 0o666)
    prog = c.base / "bootstrap.sh"
    prog.write_text("#!/bin/sh\necho \"$1 $PGHOST $PGPORT\" >> %s\n%s\n" % (calls, body))
    os.chmod(prog, 0o755)
    return prog, calls


def cluster_with_program(make_cluster, body):
    c = make_cluster(3, **FAST)
    prog, calls = make_program(c, body)
    for n in c.nodes:
        n.settings["bootstrap_program"] = str(prog)
        n.write_conf()
    c.start()
    p = c.wait_healthy(timeout=240)
    return c, p, calls


def bootstrap_detail(c):
    ev = c.events("bootstrap")
    assert len(ev) == 1, ev
    return ev[0]["detail"]


def test_docker_init_runs_once_and_its_work_reaches_every_node(make_cluster):
    c = make_cluster(3, **FAST)
    init = c.base / "initdb.d"
    init.mkdir()
    (init / "01-schema.sql").write_text(
        "CREATE TABLE items (id int PRIMARY KEY, what text);\n"
        "INSERT INTO items VALUES (1, 'from 01-schema.sql');\n"
        "ALTER TABLE items OWNER TO app;\n")
    (init / "02-exec.sh").write_text(
        "#!/bin/sh\nset -e\npsql -X -v ON_ERROR_STOP=1 -c "
        "\"INSERT INTO items VALUES (2, 'from 02-exec.sh in ' || current_database())\"\n")
    os.chmod(init / "02-exec.sh", 0o755)
    # Not executable: sourced, so it sees the program's own variables.
    (init / "03-sourced.sh").write_text(
        "psql -X -v ON_ERROR_STOP=1 -c \"INSERT INTO items VALUES (3, 'sourced by $user')\"\n")
    (init / "README").write_text("not a script\n")
    sql = "INSERT INTO items VALUES ({0}, 'from 04-more.sql.{1}');\n"
    (init / "04-more.sql.gz").write_bytes(gzip.compress(sql.format(10, "gz").encode()))
    (init / "05-more.sql.xz").write_bytes(lzma.compress(sql.format(11, "xz").encode()))
    pwfile = c.base / "app.password"
    pwfile.write_text("s3cret 'quoted\"\n")
    os.chmod(pwfile, 0o600)
    for f in [init, *init.iterdir(), pwfile]:
        chown_pg(f)
    shutil.copy(DOCKER_INIT, c.base / "docker-init.sh")
    os.chmod(c.base / "docker-init.sh", 0o755)
    prog, calls = make_program(
        c, "POSTGRES_USER=app POSTGRES_DB=appdb POSTGRES_PASSWORD_FILE=%s "
           "PGLEASE_INITDB_DIR=%s exec %s \"$@\"" % (pwfile, init, c.base / "docker-init.sh"))
    for n in c.nodes:
        n.settings["bootstrap_program"] = str(prog)
        n.write_conf()
    c.start()
    p = c.wait_healthy(timeout=240)

    # Once, on the node that bootstrapped, on its own socket.
    lines = calls.read_text().splitlines()
    assert lines == ["%s %s %d" % (p.name, p.dir, p.port)], lines
    assert "bootstrap_program exit status 0" in bootstrap_detail(c), c.events("bootstrap")
    log = p.log_text()
    assert "docker-init: role app ready (with a password)" in log, p.log_tail()
    assert "docker-init: ignoring %s" % (init / "README") in log, p.log_tail()

    want = [(1, "from 01-schema.sql"), (2, "from 02-exec.sh in appdb"), (3, "sourced by app"),
            (10, "from 04-more.sql.gz"), (11, "from 04-more.sql.xz")]
    rows = query_db(p, "appdb", "SELECT id, what FROM items ORDER BY id")
    assert rows == want, rows
    assert query_db(p, "postgres", "SELECT rolsuper, rolcanlogin FROM pg_roles "
                    "WHERE rolname = 'app'") == [(False, True)]
    assert query_db(p, "postgres", "SELECT pg_get_userbyid(datdba) FROM pg_database "
                    "WHERE datname = 'appdb'") == [("app",)]
    for s in c.others(p):
        c.wait_for_catchup(s, p)
        assert query_db(s, "appdb", "SELECT id, what FROM items ORDER BY id") == want, s.name

    # The application's role logs in over TCP with its password (SCRAM) and
    # writes; a wrong password is refused.
    tcp = dict(host="127.0.0.1", port=p.port, dbname="appdb", user="app", connect_timeout=5)
    con = psycopg2.connect(password="s3cret 'quoted\"", **tcp)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute("INSERT INTO items VALUES (4, 'over tcp') RETURNING current_user")
        assert cur.fetchone() == ("app",)
    con.close()
    try:
        psycopg2.connect(password="wrong", **tcp).close()
        raise AssertionError("a wrong password was accepted")
    except psycopg2.OperationalError as e:
        assert "password authentication failed" in str(e), e

    # A failover does not run it again: only a bootstrap does.
    term = c.lease()["term"]
    p.kill9()
    newp = c.wait_for_primary(timeout=60, exclude=[p], min_term=term + 1)
    assert [r[0] for r in query_db(newp, "appdb", "SELECT id FROM items ORDER BY id")] == \
        [1, 2, 3, 4, 10, 11]
    p.start()
    c.wait_healthy(timeout=240)
    assert calls.read_text().splitlines() == lines


def query_db(node, db, sql):
    con = psycopg2.connect(**node.dsn(dbname=db))
    try:
        with con.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        con.close()


def test_failing_program_is_recorded_and_the_cluster_still_forms(make_cluster):
    c, p, calls = cluster_with_program(make_cluster, "echo boom: no such schema >&2\nexit 3")
    assert calls.read_text().split()[0] == p.name
    detail = bootstrap_detail(c)
    assert "bootstrap_program FAILED: exit status 3" in detail, detail
    assert "boom: no such schema" in p.log_text(), p.log_tail()
    # The cluster works: the primary takes writes and they replicate.
    c.create_table(p)
    c.insert(p, [1, 2, 3])
    for s in c.others(p):
        c.wait_for_catchup(s, p)
        assert s.scalar("SELECT count(*) FROM t") == 3


def test_missing_program_refuses_to_start(make_cluster):
    c = make_cluster(1, **FAST)
    n = c.nodes[0]
    n.settings["bootstrap_program"] = str(c.base / "does-not-exist")
    n.write_conf()
    r = subprocess.run(as_pg([PGLEASE, "run", "-c", str(n.conf)]), capture_output=True,
                       text=True, timeout=60, env=clean_env())
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.strip() == "pglease: bootstrap_program: %s: No such file or directory" % (
        c.base / "does-not-exist"), r.stderr
    assert not n.pgdata.exists() or not any(n.pgdata.iterdir())
