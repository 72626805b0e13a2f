"""Fixtures and helpers for the pglease CLI tests (run by test/cli/run.sh).

Real lease stores are built by test/cli/mkstore.c, which uses pglease's own
store code.  Python's sqlite3 module is used only to age timestamps and to
make foreign or newer-schema files: fixture setup, never the code under test.
"""
import hashlib
import json
import os
import re
import select
import sqlite3
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

PGLEASE = os.environ.get("PGLEASE_BIN", "")
MKSTORE = os.environ.get("PGLEASE_MKSTORE", "")

# Measurements printed in the summary (e.g. watch latency).
MEASUREMENTS = []


def pytest_configure(config):
    if not (PGLEASE and MKSTORE):
        raise pytest.UsageError("run through test/cli/run.sh PATH/TO/pglease")


def pytest_terminal_summary(terminalreporter):
    for line in MEASUREMENTS:
        terminalreporter.write_line("measured: " + line)


def clean_env(**extra):
    """The process environment without PGLEASE_* variables, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGLEASE_")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def pgl(*args, env=None, timeout=20):
    """Runs pglease; returns the CompletedProcess (text mode)."""
    return subprocess.run([PGLEASE, *map(str, args)], capture_output=True, text=True,
                          env=env if env is not None else clean_env(), timeout=timeout)


def mk(db, *args):
    """Runs the fixture builder; fails the test if it fails."""
    r = subprocess.run([MKSTORE, str(db), *map(str, args)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0, "mkstore %s: %s" % (" ".join(map(str, args)), r.stderr)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def records_dir(db):
    """The node records of the store db: lease.db -> lease.nodes/NAME.json."""
    s = str(db)
    return Path((s[:-3] if s.endswith(".db") else s) + ".nodes")


def node_record(db, name):
    with open(records_dir(db) / ("%s.json" % name), "rb") as f:
        return json.loads(f.read().decode("utf-8", "surrogateescape"))


def put_record(db, name, rec):
    """Puts a node record in place (a dict, or raw bytes for malformed ones)."""
    d = records_dir(db)
    d.mkdir(exist_ok=True)
    data = rec if isinstance(rec, bytes) else json.dumps(rec, ensure_ascii=False).encode(
        "utf-8", "surrogateescape")
    tmp = d / (".%s.json.tmp" % name)
    tmp.write_bytes(data)
    os.rename(tmp, d / ("%s.json" % name))


def set_node(db, name, **fields):
    """Changes fields of a node's record (fixture setup), as if the node wrote them."""
    rec = node_record(db, name)
    rec.update(fields)
    put_record(db, name, rec)


def age(db, table, column, seconds, where="1"):
    """Sets table.column to the UTC time `seconds` ago (fixture setup).  For
    table "nodes", `where` is "name = 'X'" and the record of X is changed."""
    if table == "nodes":
        name = re.fullmatch(r"name = '([^']*)'", where).group(1)
        ts = (datetime.now(timezone.utc) - timedelta(seconds=seconds)).strftime(
            "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        set_node(db, name, **{column: ts})
        return
    c = sqlite3.connect(str(db))
    c.execute("UPDATE %s SET %s = strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now', '-%d seconds') "
              "WHERE %s" % (table, column, seconds, where))
    c.commit()
    c.close()


def build_cluster(db):
    """Three nodes: n1 holds the lease (term 1); n2 is 16 kB behind, n3 1 kB."""
    mk(db, "create")
    mk(db, "node", "n1", "primary", "running", "-", 1, "0/3004000", "-", 100,
       "host=pg1 port=5432 user=pglease")
    mk(db, "claim", "n1", 5000)
    mk(db, "node", "n2", "standby", "streaming", "n1", 1, "0/3004000", "0/3000000", 100,
       "host=pg2 port=5432")
    mk(db, "node", "n3", "standby", "streaming", "n1", 1, "0/3004000", "0/3003C00", 50,
       "host=pg3 port=5432")
    mk(db, "event", "n1", "promoted", "timeline 1")


@pytest.fixture
def store(tmp_path):
    """A prepared 3-node store at <tmp>/demo/lease.db (cluster name "demo")."""
    d = tmp_path / "demo"
    d.mkdir()
    db = d / "lease.db"
    build_cluster(db)
    return db


@pytest.fixture
def empty_store(tmp_path):
    """A fresh store: no nodes, term 0."""
    d = tmp_path / "fresh"
    d.mkdir()
    db = d / "lease.db"
    mk(db, "create")
    return db


class Watch:
    """`pglease watch` in the background, with line reads that time out."""

    def __init__(self, *args, env=None):
        self.proc = subprocess.Popen([PGLEASE, "watch", *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env if env is not None else clean_env())
        self.buf = b""

    def readline(self, timeout=5.0):
        """The next stdout line (str), or None on timeout or EOF."""
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if not r:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def watch():
    started = []

    def start(*args, env=None):
        w = Watch(*args, env=env)
        started.append(w)
        return w

    yield start
    for w in started:
        w.close()
