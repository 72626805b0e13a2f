"""026: systemd (issue 12).  The agent speaks systemd's notify protocol for a
Type=notify unit: READY=1 once it runs its loop, STATUS= on role changes,
RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 at a clean stop.  The
test plays systemd: a datagram socket in NOTIFY_SOCKET, as systemd gives
one.  The shipped unit file passes `systemd-analyze verify`."""
import os
import shutil
import signal
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import FAST, PGLEASE, as_pg, clean_env, poll_until, spawn

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "scripts" / "systemd" / "pglease@.service"


def built_with_systemd():
    r = subprocess.run(["nm", "-D", "--undefined-only", PGLEASE], capture_output=True,
                       text=True)
    return "sd_notify" in r.stdout


class FakeSystemd:
    """The notify socket: collects every message the agent sends."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.senders = set()
        os.chmod(self.path, 0o666)
        self.sock.settimeout(0.2)
        self.msgs = []

    def drain(self):
        while True:
            try:
                msg, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
                for level, kind, data in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                        self.senders.add(struct.unpack("iii", data[:12])[0])
                self.msgs.append(msg.decode())
            except socket.timeout:
                return self.msgs

    def seen(self, text):
        return any(text in m for m in self.drain())

    def close(self):
        self.sock.close()


@pytest.mark.skipif(not built_with_systemd(), reason="pglease built without libsystemd")
def test_notify_ready_status_reload_stopping(make_cluster):
    c = make_cluster(1, **FAST)
    n = c.nodes[0]
    sd = FakeSystemd(c.base / "notify.sock")
    log = open(n.log, "ab")
    # As Node.start() does, with the notify socket in the environment.
    proc = n.proc = spawn(as_pg(n.agent_argv()), stdout=log, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, env=clean_env(NOTIFY_SOCKET=sd.path))
    log.close()
    n.wait_pid()
    pid = n.agent_pid
    try:
        poll_until(lambda: sd.seen("READY=1"), 30, "READY=1")
        poll_until(lambda: sd.seen("STATUS=primary (bootstrap), term 1"), 120,
                   "the bootstrap STATUS")
        assert n.is_primary()
        k = len(sd.drain())

        def reloaded():
            after = sd.drain()[k:]
            return "RELOADING=1" in after and "READY=1" in after[after.index("RELOADING=1"):]
        os.kill(pid, signal.SIGHUP)
        poll_until(reloaded, 15, "RELOADING=1 then READY=1")
        os.kill(pid, signal.SIGTERM)
        poll_until(lambda: any("STOPPING=1" in m for m in sd.drain()[k:]), 15, "STOPPING=1")
        proc.wait(timeout=60)
        assert proc.returncode == 0, n.log_tail()
        # Only the agent speaks to systemd: its children (PostgreSQL, built
        # with systemd support, would say READY=1) get no NOTIFY_SOCKET.
        assert sd.senders == {pid}, (sd.senders, pid, sd.msgs)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sd.close()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_file_verifies(tmp_path):
    # verify insists that ExecStart exists: point it at this build.
    unit = tmp_path / "pglease@main.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/pglease", PGLEASE))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    text = UNIT.read_text()
    for line in ("Type=notify", "KillMode=mixed", "ExecReload=/bin/kill -HUP $MAINPID",
                 "User=postgres", "RestartPreventExitStatus=2"):
        assert line in text.splitlines(), line


SANDBOX = ("NoNewPrivileges=yes", "ProtectSystem=strict",
           "ReadWritePaths=/var/lib/postgresql -/var/lib/pglease", "ProtectHome=yes",
           "PrivateTmp=yes", "PrivateDevices=yes", "CapabilityBoundingSet=",
           "SystemCallFilter=@system-service", "RuntimeDirectory=postgresql")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_file_is_sandboxed(tmp_path):
    """issue 24: the unit runs the agent (and its PostgreSQL, tools and hooks)
    with a read-only system, writable only where the data, the lease store and
    the sockets live; `systemd-analyze security` rates it OK (it said 8.5
    EXPOSED); and it does not suggest a network file system for the lease
    directory (the SQLite store is for one host's local file system)."""
    text = UNIT.read_text()
    lines = text.splitlines()
    for line in SANDBOX:
        assert line in lines, line
    assert "MemoryDenyWriteExecute=yes" not in lines   # PostgreSQL's JIT
    assert "RemoveIPC=yes" not in lines                 # other instances' shared memory
    assert "NFS or" not in text and "an NFS" not in text, "the unit suggests NFS"
    unit = tmp_path / "pglease@main.service"
    unit.write_text(text.replace("/usr/local/bin/pglease", PGLEASE))
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                       capture_output=True, text=True, timeout=60)
    if "--offline" in r.stderr and r.returncode != 0:
        pytest.skip("systemd-analyze without --offline: " + r.stderr.strip())
    last = [l for l in r.stdout.splitlines() if "Overall exposure level" in l]
    assert last, r.stdout + r.stderr
    score = float(last[0].split(":", 1)[1].split()[0])
    print(last[0])
    assert score <= 2.5, last[0]
