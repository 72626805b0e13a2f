"""The image's bootstrap_program (docker/docker-init.sh) keeps POSTGRES_PASSWORD
off every command line (issue 24, M3).

Any local user reads a process's argv in /proc/PID/cmdline while it runs (the
environment, /proc/PID/environ, only the same user and root).  The test runs
the image's docker-init against a real PostgreSQL 15 in a container of the
image, with a `psql` first on PATH that appends its argv to a file (what
/proc/PID/cmdline shows for that psql) and execs the real one.  It asserts
that psql ran, that the password appears in no argv, and that the role logs
in with it over TCP (scram-sha-256), so the password did reach the server.
Before the fix, docker-init passed the password as `psql -v pw=...`."""
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import IMAGE_TAG, sh

PASSWORD = "s3cr'et \"pw\" $HOME \\n; pw=x"

SCRIPT = r"""
set -eu
real=$(command -v psql)
mkdir -p /tmp/wrap
printf '#!/bin/sh\nprintf "%%s\\n" "$*" >> /tmp/psql-argv.log\nexec %s "$@"\n' "$real" \
    > /tmp/wrap/psql
chmod 0755 /tmp/wrap/psql
touch /tmp/psql-argv.log; chmod 0666 /tmp/psql-argv.log
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
as_pg initdb -D /tmp/pgdata -U postgres --auth-local=peer --auth-host=scram-sha-256 >/dev/null
as_pg pg_ctl -D /tmp/pgdata -w -l /tmp/pg.log \
    -o "-c listen_addresses=127.0.0.1 -c port=5432 -c unix_socket_directories=/tmp" start >/dev/null
PATH=/tmp/wrap:$PATH PGHOST=/tmp PGPORT=5432 PGUSER=postgres \
    as_pg /usr/local/lib/pglease/docker-init
echo "--- login"
PGPASSWORD=$(cat /run/pw) psql -X -h 127.0.0.1 -p 5432 -U app -d appdb -Atc \
    "select current_user || ' ' || current_database()"
echo "--- argv"
cat /tmp/psql-argv.log
"""


@pytest.mark.parametrize("how", ["POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE"])
def test_password_never_on_psql_argv(how):
    d = tempfile.mkdtemp(prefix="pglease-init.", dir="/var/tmp")
    try:
        pwfile = os.path.join(d, "pw")
        with open(pwfile, "w") as f:
            f.write(PASSWORD)
        os.chmod(d, 0o755)
        os.chmod(pwfile, 0o644)
        envfile = os.path.join(d, "env")
        with open(envfile, "w") as f:
            f.write("POSTGRES_USER=app\nPOSTGRES_DB=appdb\n")
            if how == "POSTGRES_PASSWORD":
                f.write("POSTGRES_PASSWORD=%s\n" % PASSWORD)
            else:
                f.write("POSTGRES_PASSWORD_FILE=/run/pw\n")
        r = sh(["docker", "run", "--rm", "--env-file", envfile, "-v", pwfile + ":/run/pw:ro",
                "--entrypoint", "/bin/sh", "pglease:" + IMAGE_TAG, "-c", SCRIPT],
               timeout=180, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
        login, _, argv = out.partition("--- login\n")[2].partition("--- argv\n")
        assert login.strip() == "app appdb", out
        calls = [l for l in argv.splitlines() if l.strip()]
        assert calls, "docker-init ran no psql: %s" % out
        assert "docker-init: role app ready (with a password)" in out, out
        leaked = [c for c in calls if "s3cr" in c]
        assert not leaked, "the password on psql's command line: %s" % leaked
    finally:
        shutil.rmtree(d, ignore_errors=True)
