"""Bad arguments, bad stores and the promise that read commands change nothing."""
import os
import shutil
import sqlite3
import time

import pytest

from conftest import records_dir, clean_env, mk, pgl, sha256

READ_CMDS = [["status"], ["status", "--json"], ["lease"], ["lease", "--json"], ["events"],
             ["events", "--json"], ["primary"], ["primary", "--json"]]


@pytest.mark.parametrize("args, names", [
    (["events", "-n", "0"], "'0'"),
    (["events", "-n", "-3"], "'-3'"),
    (["events", "-n", "abc"], "'abc'"),
    (["events", "-n", "1.5"], "'1.5'"),
    (["events", "-n", ""], "''"),
    (["events", "-n", "99999999999"], "'99999999999'"),
    (["events", "-n"], "'-n'"),
    (["watch", "--count", "0"], "'0'"),
    (["watch", "--count=x"], "'x'"),
    (["status", "--bogus"], "'--bogus'"),
    (["status", "-x"], "'-x'"),
    (["status", "extra"], "'extra'"),
    (["status", "--json=yes"], "'--json'"),
    (["status", "-n", "3"], "'-n'"),
    (["lease", "--conninfo"], "'--conninfo'"),
    (["events", "--count", "2"], "'--count'"),
    (["remove"], "NODE"),
    (["remove", "n1", "n2"], "'n2'"),
    (["remove", "n1", "--json"], "'--json'"),
    (["pause", "--json"], "'--json'"),
    (["health", "now"], "'now'"),
    (["status", "--lease-db"], "'--lease-db'"),
    (["status", "--lease-db="], "--lease-db"),
    (["status", "-c"], "'-c'"),
])
def test_bad_arguments(store, args, names):
    r = pgl(args[0], "--lease-db", store, *args[1:]) if "--lease-db" not in " ".join(args) \
        else pgl(*args)
    assert r.returncode == 2, r
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("pglease %s: " % args[0])
    assert names in lines[0]


def test_help_wins_over_bad_arguments():
    r = pgl("events", "-n", "abc", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: pglease events")


@pytest.mark.parametrize("name", ["N1", "a b", "x" * 64, "n1;drop", "", "n\u00e9"])
def test_remove_invalid_name(store, name):
    before = sha256(store)
    r = pgl("remove", name, "--lease-db", store)
    assert r.returncode == 2
    assert "not a valid node name" in r.stderr and r.stderr.count("\n") == 1
    assert sha256(store) == before


def test_no_command_and_unknown_command():
    r = pgl()
    assert r.returncode == 2 and r.stdout == "" and "usage: pglease" in r.stderr
    r = pgl("frobnicate")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("pglease: unknown command 'frobnicate'\n")
    r = pgl("help", "frobnicate")
    assert r.returncode == 2 and "frobnicate" in r.stderr


# ---- stores that are missing, foreign or damaged ----

def make_bad(kind, path, good):
    if kind == "garbage":
        path.write_bytes(os.urandom(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:60])
    elif kind == "half":
        path.write_bytes(good.read_bytes()[:8192])
    elif kind == "foreign":
        c = sqlite3.connect(str(path))
        c.execute("CREATE TABLE lease (id INTEGER, holder TEXT)")
        c.execute("INSERT INTO lease VALUES (1, 'evil')")
        c.commit()
        c.close()
    elif kind == "newer":
        shutil.copy(good, path)
        c = sqlite3.connect(str(path))
        c.execute("PRAGMA user_version = 99")
        c.commit()
        c.close()


BAD_KINDS = {
    "garbage": "not an SQLite database",
    "empty": "file is empty",
    "truncated": "file is truncated",
    "half": "not a pglease lease store",
    "foreign": "application_id",
    "newer": "newer than this pglease",
}


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["lease"], ["events"],
                                  ["primary"], ["watch", "--count", "1"], ["remove", "n2"],
                                  ["pause"], ["resume"]])
def test_bad_store_refused_and_unchanged(tmp_path, store, kind, args):
    bad = tmp_path / ("bad-%s.db" % kind)
    make_bad(kind, bad, store)
    before = sha256(bad)
    r = pgl(*args, "--lease-db", bad, timeout=10)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("pglease: %s: " % bad)
    assert BAD_KINDS[kind] in r.stderr
    assert sha256(bad) == before
    if kind not in ("newer", "half"):           # refused before SQLite reads it
        assert not os.path.exists("%s-wal" % bad) and not os.path.exists("%s-shm" % bad)


def test_bad_store_health(tmp_path, store):
    bad = tmp_path / "bad.db"
    make_bad("foreign", bad, store)
    before = sha256(bad)
    r = pgl("health", env=clean_env(PGLEASE_NODE_NAME="n1", PGLEASE_LEASE_DB=bad,
                                    PGLEASE_PG_BINDIR="/usr/bin"))
    assert r.returncode == 1 and str(bad) in r.stderr
    assert sha256(bad) == before


@pytest.mark.parametrize("args", [["status"], ["lease", "--json"], ["events"], ["remove", "n1"],
                                  ["pause"], ["watch"]])
def test_missing_store_not_created(tmp_path, args):
    path = tmp_path / "nowhere" / "lease.db"
    r = pgl(*args, "--lease-db", path)
    assert r.returncode == 1
    assert r.stderr == "pglease: %s: cannot open lease store: No such file or directory\n" % path
    assert not path.parent.exists()


def test_missing_store_primary(tmp_path):
    path = tmp_path / "lease.db"
    r = pgl("primary", "--lease-db", path)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "pglease: no lease store at %s\n" % path)
    assert not path.exists()


# ---- read commands change nothing ----

def wal_state(db):
    """(size, sha256) of lease.db-wal, or None when there is none."""
    wal = db.parent / (db.name + "-wal")
    return (wal.stat().st_size, sha256(wal)) if wal.exists() else None


@pytest.mark.parametrize("args", READ_CMDS + [["events", "-n", "1"], ["primary", "--conninfo"]])
def test_read_commands_change_nothing(store, args):
    before, wal_before, mtime = sha256(store), wal_state(store), store.stat().st_mtime_ns
    for _ in range(3):
        r = pgl(*args, "--lease-db", store)
        assert r.returncode == 0, r.stderr
    assert sha256(store) == before
    assert store.stat().st_mtime_ns == mtime
    wal_after = wal_state(store)
    # A WAL reader may create an empty -wal; it never writes one.
    assert wal_after == wal_before or (wal_before is None and wal_after[0] == 0)


def test_read_commands_do_not_block_a_writer(store, watch):
    """Writers commit at once while watch holds the store open for reading."""
    w = watch("--lease-db", store)
    assert w.readline() is not None
    t0 = time.monotonic()
    for i in range(5):
        mk(store, "event", "n2", "followed", str(i))
    assert time.monotonic() - t0 < 5
    w.proc.terminate()
    assert w.proc.wait(timeout=5) == 0


# ---- where the store is: --lease-db > PGLEASE_LEASE_DB > config file > default ----

def holder(r):
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def two_stores(tmp_path):
    a, b, c = (tmp_path / n for n in ("a.db", "b.db", "c.db"))
    for db, node in ((a, "na"), (b, "nb"), (c, "nc")):
        mk(db, "node", node, "primary", "running", "-", 1, "0/1000000", "-")
        mk(db, "claim", node)
    conf = tmp_path / "pglease.conf"
    conf.write_text("# test\nnode_name = x1\nlease_db = %s\n" % c)
    return a, b, c, conf


def test_store_path_precedence(two_stores):
    a, b, c, conf = two_stores
    assert holder(pgl("primary", "-c", conf)) == "nc"
    assert holder(pgl("primary", "--config", conf,
                      env=clean_env(PGLEASE_LEASE_DB=b))) == "nb"
    assert holder(pgl("primary", "-c", conf, "--lease-db", a,
                      env=clean_env(PGLEASE_LEASE_DB=b))) == "na"
    assert holder(pgl("primary", env=clean_env(PGLEASE_LEASE_DB=b))) == "nb"
    assert holder(pgl("primary", "--lease-db=%s" % a)) == "na"


def test_default_store_path():
    if os.path.exists("/var/lib/pglease/lease.db"):
        pytest.skip("a real store exists at the default path")
    r = pgl("status")
    assert r.returncode == 1 and "/var/lib/pglease/lease.db" in r.stderr


def test_config_errors(tmp_path, store):
    conf = tmp_path / "bad.conf"
    conf.write_text("lease_db = %s\nbogus_key = 1\npriority = many\n" % store)
    r = pgl("status", "-c", conf)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0] == "pglease: %s:2: unknown key 'bogus_key'" % conf
    assert "%s:3" % conf in lines[1] and "priority" in lines[1]
    r = pgl("status", "-c", tmp_path / "missing.conf")
    assert r.returncode == 2 and "missing.conf" in r.stderr
    r = pgl("lease", env=clean_env(PGLEASE_LEASE_TTL_MS="soon"))
    assert r.returncode == 2 and "PGLEASE_LEASE_TTL_MS" in r.stderr


# ---- paths that are not regular files; failed writes name SQLite's reason ----

NOT_FILE_CMDS = [["status"], ["lease", "--json"], ["events"], ["primary"], ["watch"],
                 ["remove", "n2"], ["pause"], ["resume"]]


@pytest.mark.parametrize("kind", ["fifo", "directory"])
@pytest.mark.parametrize("args", NOT_FILE_CMDS)
def test_store_not_a_regular_file(tmp_path, kind, args):
    """A FIFO used to hang every command (and watch ignored SIGTERM)."""
    path = tmp_path / "lease.db"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    r = pgl(*args, "--lease-db", path, timeout=5)
    assert r.returncode == 1 and r.stdout == ""
    what = "a FIFO" if kind == "fifo" else "a directory"
    assert r.stderr == "pglease: %s: cannot open lease store: not a regular file (%s)\n" % (
        path, what)


def test_store_side_file_fifo(store):
    wal = store.parent / (store.name + "-wal")
    if wal.exists():
        wal.unlink()
    os.mkfifo(wal)
    r = pgl("status", "--lease-db", store, timeout=5)
    assert r.returncode == 1 and "its -wal file is not a regular file (a FIFO)" in r.stderr


def test_health_store_fifo(tmp_path):
    path = tmp_path / "lease.db"
    os.mkfifo(path)
    r = pgl("health", env=clean_env(PGLEASE_NODE_NAME="n1", PGLEASE_LEASE_DB=path,
                                    PGLEASE_PG_BINDIR="/usr/bin"), timeout=5)
    assert r.returncode == 1 and "not a regular file (a FIFO)" in r.stderr


def test_config_file_fifo(tmp_path, store):
    conf = tmp_path / "pglease.conf"
    os.mkfifo(conf)
    r = pgl("status", "-c", conf, "--lease-db", store, timeout=5)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "pglease: %s: cannot read the config file: not a regular file\n" % conf


@pytest.mark.parametrize("args", [["pause"], ["resume"], ["remove", "n3"]])
def test_failed_write_names_sqlite_reason(store, args):
    """The reason used to be lost in the rollback: 'lease store error (not an error)'.
    Here another process holds the store's write lock past the CLI's wait."""
    events = pgl("events", "--json", "--lease-db", store).stdout
    c = sqlite3.connect(str(store), isolation_level=None)
    c.execute("BEGIN IMMEDIATE")
    try:
        r = pgl(*args, "--lease-db", store)
    finally:
        c.execute("ROLLBACK")
        c.close()
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1
    assert "(database is locked)" in r.stderr and "not an error" not in r.stderr, r.stderr
    assert pgl("events", "--json", "--lease-db", store).stdout == events


@pytest.mark.parametrize("args, table", [(["pause"], "cluster"), (["resume"], "cluster"),
                                         (["remove", "n3"], "events")])
def test_trigger_added_by_hand_refused(store, args, table):
    """A trigger added to the store (it could rewrite the lease behind a write)
    makes every command refuse the store in one line, and nothing is written."""
    c = sqlite3.connect(str(store))
    for op in ("UPDATE", "DELETE"):
        c.execute("CREATE TRIGGER boom_%s BEFORE %s ON %s BEGIN "
                  "SELECT RAISE(ABORT, 'injected failure'); END" % (op, op, table))
    c.commit()
    c.close()
    before = sha256(store)
    r = pgl(*args, "--lease-db", store)
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.count("\n") == 1
    assert "schema differs" in r.stderr and "injected failure" not in r.stderr, r.stderr
    assert sha256(store) == before
    assert (records_dir(store) / "n3.json").exists()


@pytest.mark.parametrize("var, hint", [("PGLEASE_NODENAME", "PGLEASE_NODE_NAME"),
                                       ("PGLEASE_LEASEDB", "PGLEASE_LEASE_DB"),
                                       ("PGLEASE_LEASE_TTL", None)])
def test_mistyped_environment_variable(store, var, hint):
    before = sha256(store)
    r = pgl("status", "--lease-db", store, env=clean_env(**{var: "x"}))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("pglease: environment %s: " % var)
    if hint:
        assert "did you mean %s?" % hint in r.stderr
    assert sha256(store) == before


def test_project_variables_allowed(store):
    env = clean_env(PGLEASE_BIN="/x", PGLEASE_MKSTORE="/y", PGLEASE_IT_TIMEOUT="1",
                    PGLEASE_DOCKER_RUN_ID="z", PGLEASE_CLUSTER_DIR="/c", PGLEASE_BASE_PORT="1",
                    PGLEASE_LEASE_DIR="/l", PGLEASE_IMAGE_TAG="dev")
    assert pgl("status", "--lease-db", store, env=env).returncode == 0


def test_config_duplicate_and_allowed_network(tmp_path, store):
    conf = tmp_path / "dup.conf"
    conf.write_text("lease_db = %s\nallowed_network = '0.0.0.0/0 trust #'\nlease_db = /x\n"
                    % store)
    r = pgl("status", "-c", conf)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "pglease: %s:2: key 'allowed_network': '0.0.0.0/0 trust #' is not samenet, samehost "
        "or an ADDRESS/PREFIX network (such as 10.0.0.0/8, 127.0.0.1/32 or fd00::/8)" % conf,
        "pglease: %s:3: key 'lease_db' is set twice (first on line 1)" % conf]
