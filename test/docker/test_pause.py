"""docker pause of the primary (every process of the node frozen, its lock
still held): the TTL decides, a standby takes over, and when the old
primary is unpaused the write it was about to commit is refused by the
in-server fence (pglease_fence), or the server is killed by the agent's
fence watchdog first, instead of the write landing on a second primary.
The old node then rejoins as a standby by itself."""
import subprocess
import time

from conftest import FAILOVER_TIMEOUT, SERVICES, UP_TIMEOUT, measure, poll


def test_07_paused_primary_cannot_commit_on_thaw(new_cluster):
    c = new_cluster("pause")
    c.up()
    p, _ = c.wait_healthy(UP_TIMEOUT, what="pause cluster")
    term = c.lease()["term"]
    c.q(p, "create table paused (x int primary key)")
    # A session on the primary with a transaction that wrote, not yet committed.
    sess = subprocess.Popen(
        ["docker", "exec", "-i", "-u", "postgres", c.container(p),
         "psql", "-X", "-h", "/var/run/postgresql", "-v", "ON_ERROR_STOP=0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sess.stdin.write("BEGIN;\nINSERT INTO paused VALUES (1);\n")
    sess.stdin.flush()
    time.sleep(1)
    c.docker("pause", c.container(p))
    t0 = time.monotonic()
    try:
        # Queued while frozen: delivered when the node thaws.
        sess.stdin.write("COMMIT;\n")
        sess.stdin.flush()
        others = [s for s in SERVICES if s != p]

        def new_primary():
            l = c.lease()
            if l["holder"] in others and l["term"] > term:
                for s in others:
                    ok, out, _ = c.psql(s, "insert into paused values (2) returning x")
                    if ok and out == "2":
                        return s
            return None
        newp, _ = poll("a standby to take over and accept a write", new_primary, FAILOVER_TIMEOUT)
        dt = time.monotonic() - t0
        measure("docker pause of the primary -> write accepted on %s" % newp, dt)
        assert dt >= c.ttl_ms / 1000.0 - 1.0, "took over after %.2f s, before the TTL" % dt
        acq = [e for e in c.events() if e["kind"] == "acquired" and e["term"] > term]
        assert acq and "lease unchanged for" in acq[0]["detail"], acq
    finally:
        c.docker("unpause", c.container(p), check=False)
    out, _ = sess.communicate(timeout=60)
    print("old primary's session after the thaw:\n" + out)
    # Never committed: either the in-server fence refused the COMMIT, or the
    # agent's watchdog killed the server before the backend got to it.
    assert "\nCOMMIT\n" not in "\n" + out, out
    refused = "pglease: refusing to commit" in out
    killed = "server closed the connection unexpectedly" in out or "connection to server was lost" in out
    assert refused or killed, out
    print("thawed commit stopped by:", "the in-server fence" if refused else "the fence watchdog")
    # The old primary fences, rewinds and follows; the refused row is nowhere.
    p2, _ = c.wait_healthy(UP_TIMEOUT, primary=newp, what="after the thaw")
    assert p2 == newp
    for s in SERVICES:
        poll("%s to replay row 2" % s, lambda s=s: c.q(s, "select count(*) from paused where x = 2") == "1", 60)
        assert c.q(s, "select count(*) from paused where x = 1") == "0", s
