"""Local access in the image (issue #8).

* `docker-compose exec pg1 psql -U postgres` works as in the official image:
  the socket is in /var/run/postgresql and root maps to role postgres by peer
  authentication; another OS user of the container (nobody) is refused.
* The entrypoint never follows a symlink planted in the shared lease
  directory (root in another container can plant one): neither when it fixes
  ownership (a link to /etc/passwd) nor when it generates the password.
"""
import os
import tempfile

from conftest import IMAGE_TAG, SERVICES, TMP_BASE, UP_TIMEOUT, sh


def test_psql_as_root_like_the_official_image(new_cluster):
    c = new_cluster("local access")
    c.up()
    c.wait_healthy(UP_TIMEOUT)
    for s in SERVICES:
        r = c.compose("exec", "-T", s, "psql", "-U", "postgres", "-Atc", "select 1",
                      check=False, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == "1", (s, r.stdout, r.stderr)
        r = c.exec(s, ["psql", "-U", "postgres", "-Atc", "select current_user"], user="root")
        assert r.returncode == 0 and r.stdout.strip() == "postgres", (s, r.stderr)
        r = c.exec(s, ["psql", "-w", "-U", "postgres", "-Atc", "select 1"], user="nobody")
        assert r.returncode != 0, "%s: nobody connected as postgres" % s
        assert "Permission denied" in r.stderr, r.stderr
        r = c.exec(s, ["stat", "-c", "%a %U", "/var/run/postgresql/.s.PGSQL.5432"], user="root")
        assert r.stdout.strip() == "700 postgres", r.stdout


def test_entrypoint_does_not_follow_symlinks():
    lease = tempfile.mkdtemp(prefix="pgl-symlink.", dir=TMP_BASE)
    try:
        os.symlink("/etc/passwd", os.path.join(lease, "evil"))
        os.symlink("/etc", os.path.join(lease, "evil-dir"))
        os.symlink("/tmp/planted-password", os.path.join(lease, "password"))
        # The agent stops at once on a bad setting, after the entrypoint ran
        # as root; then the same container reports what the entrypoint did.
        script = ("/usr/local/bin/pglease run >/dev/null 2>&1; "
                  "stat -c '%U %a' /etc/passwd /etc/shadow /etc; "
                  "if [ -e /tmp/planted-password ]; then echo followed; else echo not-followed; fi")
        r = sh(["docker", "run", "--rm", "-v", "%s:/var/lib/pglease" % lease,
                "-e", "PGLEASE_LEASE_TTL_MS=bogus", "--entrypoint", "/bin/sh",
                "pglease:%s" % IMAGE_TAG, "-c", script], timeout=120)
        lines = r.stdout.split()
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert lines[:2] == ["root", "644"], "entrypoint gave /etc/passwd away: %s" % r.stdout
        assert lines[2] == "root", "entrypoint gave /etc/shadow away: %s" % r.stdout
        assert lines[4] == "root", "entrypoint gave /etc away: %s" % r.stdout
        assert lines[-1] == "not-followed", r.stdout
        assert os.path.islink(os.path.join(lease, "password"))
    finally:
        sh(["rm", "-rf", lease])
