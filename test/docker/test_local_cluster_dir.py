"""scripts/local-cluster.sh and docker-compose.yml never share a lease store
(issue 24).  Both used volumes/lease: after a local cluster, `docker-compose
up` started three nodes that found a store naming a cluster none of them had,
and stayed empty.  The test runs the script's `start` in a copy of the
checkout's layout (with /bin/true as the agent: only the directories matter)
and asserts that nothing lands in the compose file's lease directory."""
import os
import re
import shutil
import subprocess
import tempfile

from conftest import COMPOSE_FILE, ROOT


def compose_lease_dir():
    """The host directory docker-compose.yml mounts at /var/lib/pglease by default."""
    text = open(COMPOSE_FILE).read()
    m = re.search(r"\$\{PGLEASE_LEASE_DIR:-([^}]+)\}:/var/lib/pglease", text)
    assert m, "no lease directory in docker-compose.yml"
    return os.path.normpath(m.group(1))


def test_local_cluster_keeps_out_of_the_compose_store():
    top = tempfile.mkdtemp(prefix="pglease-lc.", dir="/var/tmp")
    try:
        os.chmod(top, 0o755)
        os.makedirs(os.path.join(top, "scripts"))
        shutil.copy(ROOT / "scripts" / "local-cluster.sh", os.path.join(top, "scripts"))
        lease = os.path.join(top, compose_lease_dir())
        os.makedirs(lease)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PGLEASE_")}
        env.update(PGLEASE_BIN="/bin/true", PGLEASE_BASE_PORT="54911")
        r = subprocess.run([os.path.join(top, "scripts", "local-cluster.sh"), "start", "1"],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        # the node's configuration, beside the log the script names
        log = re.search(r"^started pg1: .*, log (\S+)/agent\.log$", r.stdout, re.M)
        assert log, r.stdout
        conf = open(os.path.join(log.group(1), "pglease.conf")).read()
        db = re.search(r"^lease_db = (.*)$", conf, re.M).group(1)
        assert not os.path.normpath(db).startswith(lease + os.sep), \
            "local-cluster.sh puts its store in the compose file's lease directory: %s" % db
        assert os.listdir(lease) == [], "local-cluster.sh wrote into %s: %s" % (
            lease, os.listdir(lease))
        assert ("store %s" % db) in r.stdout, r.stdout
    finally:
        shutil.rmtree(top, ignore_errors=True)
