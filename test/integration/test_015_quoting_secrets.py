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
* A host that impersonates a node and asks for the password in clear
  (issue 24, M2): pg_basebackup with the conninfo the agent wrote for its
  standby hands it the password on libpq 15 with the defaults (libpq 16+
  gets require_auth=scram-sha-256 and does not); with
  replication_channel_binding = require (servers with ssl) nothing is sent.
  On etcd the agent warns at start when that setting is missing.
"""
import os
import random
import shutil
import socket
import ssl
import stat
import struct
import tempfile
import threading
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest

from conftest import FAST, WORK, chown_pg, pg_ids, poll_until, run_pg, wait_reaped
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


# ---- an impersonator that asks for the password in clear (issue 24, M2)

LIBPQ = psycopg2.__libpq_version__
SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104


def _recvn(c, n):
    b = b""
    while len(b) < n:
        chunk = c.recv(n - len(b))
        if not chunk:
            raise EOFError("peer closed")
        b += chunk
    return b


class Impersonator:
    """A loopback 'PostgreSQL' at a node's would-be address: TLS with a
    certificate of its own when the client asks (an impersonator's, from no
    CA the cluster trusts), 'N' to GSS encryption, reads the startup packet,
    then AuthenticationCleartextPassword ('R', code 3), and records the
    client's answer (a 'p' message carries the password)."""

    def __init__(self, certs=None):
        self.ctx = None
        if certs:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(certs["server_cert"], certs["server_key"])
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.answers, self.startups, self.tls_used = [], [], []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.settimeout(10)
            try:
                self._one(c)
            except (OSError, EOFError, ssl.SSLError):
                pass
            finally:
                c.close()

    def _one(self, c):
        tls = False
        while True:
            n = struct.unpack("!I", _recvn(c, 4))[0]
            body = _recvn(c, n - 4)
            code = struct.unpack("!I", body[:4])[0]
            if code == SSL_REQUEST and self.ctx:
                c.sendall(b"S")
                c = self.ctx.wrap_socket(c, server_side=True)
                tls = True
            elif code in (SSL_REQUEST, GSSENC_REQUEST):
                c.sendall(b"N")
            else:
                break
        self.startups.append(body)
        self.tls_used.append(tls)
        c.sendall(b"R" + struct.pack("!II", 8, 3))
        answer = b""
        try:
            answer = _recvn(c, 5)
            answer += _recvn(c, struct.unpack("!I", answer[1:5])[0] - 4)
        except (OSError, EOFError, ssl.SSLError):
            pass
        self.answers.append(answer)

    def close(self):
        self.sock.close()


def retarget(conninfo, port):
    """conninfo with host and port replaced by the impersonator's."""
    d = psycopg2.extensions.parse_dsn(conninfo)
    d.update(host="127.0.0.1", port=str(port))
    return psycopg2.extensions.make_dsn(**d)


def basebackup_against(c, node, conninfo, port):
    """The agent's pg_basebackup (as in server.c: -X stream -c fast -w), run as
    postgres with the conninfo the agent wrote for node, aimed at port."""
    parent = Path(tempfile.mkdtemp(prefix="bb-", dir=WORK))
    chown_pg(parent)
    target = parent / "data"
    bindir = node.scalar("SELECT setting FROM pg_config() WHERE name = 'BINDIR'")
    return run_pg([os.path.join(bindir, "pg_basebackup"), "-D", str(target), "-d",
                   retarget(conninfo, port), "-X", "stream", "-c", "fast", "-w"], timeout=60)


def standby_conninfo(c, p):
    s = c.others(p)[0]
    c.wait_for_streaming(s, p, timeout=120)
    return s, s.scalar("SHOW primary_conninfo")


def test_impersonator_gets_the_password_only_without_protection(etcd_cluster, make_cluster):
    """Defaults (sslmode and channel_binding prefer), on etcd: the agent warns
    at start; pg_basebackup with the standby's primary_conninfo answers the
    impersonator's cleartext request with the real password on libpq 15,
    and carries require_auth (and sends nothing) on libpq 16 or later."""
    from test_031_etcd import ETCD_FAST
    c = make_cluster(2, etcd=etcd_cluster, **ETCD_FAST)
    c.start()
    p = c.wait_healthy(timeout=240)
    s, ci = standby_conninfo(c, p)
    pw = c.password_file.read_text().strip()
    fake = Impersonator()
    try:
        r = basebackup_against(c, s, ci, fake.port)
        assert r.returncode != 0
        poll_until(lambda: fake.answers, 10, "the client's answer to the cleartext request")
    finally:
        fake.close()
    if LIBPQ >= 160000:
        assert "require_auth" in ci, ci
        assert not any(pw.encode() in a for a in fake.answers), fake.answers
    else:
        assert "require_auth" not in ci, ci     # libpq 15 would reject the keyword
        assert any(a[:1] == b"p" and pw.encode() in a for a in fake.answers), fake.answers
    for n in c.nodes:
        assert n.log_text().count("set replication_channel_binding = require") == 1, \
            n.log_tail()


def pg_ssl_settings(d):
    """pg.ssl = on with a certificate for 127.0.0.1 from a test CA in d."""
    from etcdharness import make_certs
    certs = make_certs(d)
    for f in d.iterdir():
        chown_pg(f)
        os.chmod(f, 0o600)
    return certs, {"pg.ssl": "on", "pg.ssl_cert_file": certs["server_cert"],
                   "pg.ssl_key_file": certs["server_key"]}


def test_channel_binding_require_sends_nothing(etcd_cluster, make_cluster):
    """replication_channel_binding = require (servers with ssl): the cluster
    clones and streams; the agent does not warn; and aimed at an impersonator
    (TLS with a certificate of its own, then a cleartext request) the same
    conninfo sends nothing: libpq refuses any request but SCRAM with channel
    binding, before a password could leave."""
    from test_031_etcd import ETCD_FAST
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed")
    d = Path(tempfile.mkdtemp(prefix="pg-ssl-", dir=WORK))
    os.chmod(d, 0o755)
    dfake = Path(tempfile.mkdtemp(prefix="fake-ssl-", dir=WORK))
    try:
        _certs, ssl_settings = pg_ssl_settings(d)
        from etcdharness import make_certs
        fake_certs = make_certs(dfake)          # the impersonator's own CA and certificate
        c = make_cluster(2, etcd=etcd_cluster, replication_channel_binding="require",
                         **ssl_settings, **ETCD_FAST)
        c.start()
        p = c.wait_healthy(timeout=240)
        c.create_table(p)
        c.insert(p, range(1, 11))
        s, ci = standby_conninfo(c, p)
        assert "channel_binding=require" in ci.replace("'", ""), ci
        c.wait_for_catchup(s, p)
        assert sorted(c.ids(s)) == list(range(1, 11))
        pw = c.password_file.read_text().strip()
        for certs in (fake_certs, None):        # with TLS of its own, and without TLS
            fake = Impersonator(certs)
            try:
                r = basebackup_against(c, s, ci, fake.port)
                assert r.returncode != 0
                assert "channel binding" in r.stderr, r.stderr
                poll_until(lambda: fake.answers, 10, "the connection to end")
            finally:
                fake.close()
            assert fake.startups, "pg_basebackup never reached the impersonator"
            assert fake.tls_used == [certs is not None], fake.tls_used
            assert not any(a[:1] == b"p" or pw.encode() in a for a in fake.answers), \
                fake.answers
        for n in c.nodes:
            assert "set replication_channel_binding = require" not in n.log_text()
    finally:
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(dfake, ignore_errors=True)
