"""The entrypoint's chown of the shared lease directory (issue 24, M4), raced
against a directory swapped for a symlink.

docker/entrypoint.sh starts as root and gives postgres what under the lease
directory is not postgres's (chown_tree: find ... chown -h).  The lease
directory is shared with every other node's container, whose root can swap a
directory of it for a symlink to anything in this container (say /etc) while
the chown runs: between find's listing of DIR/sub/shadow and chown's call,
DIR/sub becomes a symlink to a stand-in of /etc.  chown -h protects only the
last component of a path: a chown of DIR/sub/shadow through the swapped
parent changes the stand-in's shadow.  The fix runs chown with -execdir (in
the directory find entered, on ./NAME).

The test runs the entrypoint's own chown_tree (cut out of the script, no
Docker needed), as root, against a temporary tree, ITERATIONS times, while a
thread swaps the tree's directories for symlinks to a stand-in directory and
back as fast as it can.  The stand-in's files must keep their owner in every
iteration; the tree's own files must end up postgres's (the function still
does its job).  With `-exec` in place of `-execdir` the stand-in was chowned
in a few percent of the iterations."""
import os
import pwd
import shutil
import subprocess
import tempfile
import threading

import pytest

from conftest import ROOT

ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
ITERATIONS = int(os.environ.get("PGLEASE_CHOWN_RACE_ITERATIONS", "400"))
DIRS = 4          # swapped directories in the tree
FILES = 40        # files in each (a bigger batch widens the window)


def chown_tree_source():
    """The text of the chown_tree function in docker/entrypoint.sh."""
    lines = ENTRYPOINT.read_text().splitlines()
    start = lines.index("chown_tree() {")
    end = lines.index("}", start)
    return "\n".join(lines[start:end + 1])


def postgres_uid():
    try:
        return pwd.getpwnam("postgres").pw_uid
    except KeyError:
        pytest.skip("no postgres user on this host")


class Swapper(threading.Thread):
    """Swaps every TREE/dN for a symlink to the stand-in and back, in a loop:
    rename(dN, dN.real); rename(prepared symlink, dN); ...; and back."""

    def __init__(self, tree, standin):
        super().__init__(daemon=True)
        self.tree = tree
        self.standin = standin
        self.stop_ev = threading.Event()
        self.swaps = 0

    def run(self):
        names = [os.path.join(self.tree, "d%d" % i) for i in range(DIRS)]
        while not self.stop_ev.is_set():
            for d in names:
                link = d + ".link"
                try:
                    os.symlink(self.standin, link)
                    os.rename(d, d + ".real")
                    os.rename(link, d)
                    self.swaps += 1
                    os.rename(d, link)
                    os.rename(d + ".real", d)
                    os.unlink(link)
                except OSError:
                    pass


def make_tree(top):
    """TOP/tree/dN/shadow, fileK (root's) and TOP/standin/shadow, fileK (root's,
    the names a swapped dN leads to)."""
    tree = os.path.join(top, "tree")
    standin = os.path.join(top, "standin")
    os.mkdir(standin, 0o755)
    os.mkdir(tree, 0o770)
    for d in [standin] + [os.path.join(tree, "d%d" % i) for i in range(DIRS)]:
        os.makedirs(d, 0o755, exist_ok=True)
        for name in ["shadow"] + ["file%d" % k for k in range(FILES)]:
            with open(os.path.join(d, name), "w") as f:
                f.write("x\n")
            os.chmod(os.path.join(d, name), 0o640)
    return tree, standin


def reset_owner(tree):
    """Gives the whole tree back to root (each iteration has work to do)."""
    for dirpath, dirnames, filenames in os.walk(tree):
        for n in dirnames + filenames:
            try:
                os.lchown(os.path.join(dirpath, n), 0, 0)
            except FileNotFoundError:
                pass          # renamed by the swapper meanwhile
    os.lchown(tree, 0, 0)


def owners(d):
    return {n: os.lstat(os.path.join(d, n)).st_uid for n in sorted(os.listdir(d))}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown)")
def test_chown_tree_never_follows_a_swapped_directory():
    uid = postgres_uid()
    top = tempfile.mkdtemp(prefix="pglease-chown-race.", dir="/var/tmp")
    os.chmod(top, 0o755)
    script = chown_tree_source() + '\nchown_tree "$1"\n'
    env = dict(PATH="/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL="C")
    try:
        tree, standin = make_tree(top)
        sw = Swapper(tree, standin)
        sw.start()
        hit = []
        try:
            for i in range(ITERATIONS):
                reset_owner(tree)
                subprocess.run(["sh", "-c", script, "sh", tree], env=env, timeout=60,
                               capture_output=True)
                bad = {n: u for n, u in owners(standin).items() if u != 0}
                if bad:
                    hit.append((i, bad))
                    for n in bad:
                        os.lchown(os.path.join(standin, n), 0, 0)
        finally:
            sw.stop_ev.set()
            sw.join(timeout=30)
        print("chown race: %d iterations, %d swaps, stand-in chowned in %d"
              % (ITERATIONS, sw.swaps, len(hit)))
        assert sw.swaps > ITERATIONS, "the swapper hardly ran: %d swaps" % sw.swaps
        assert not hit, ("chown_tree chowned the stand-in (through a directory swapped "
                         "for a symlink) in %d of %d iterations, e.g. %s"
                         % (len(hit), ITERATIONS, hit[:3]))
        # With no swapper running, the function does its job: everything postgres's.
        reset_owner(tree)
        r = subprocess.run(["sh", "-c", script, "sh", tree], env=env, timeout=60,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        for dirpath, dirnames, filenames in os.walk(tree):
            for n in [dirpath] + [os.path.join(dirpath, x) for x in dirnames + filenames]:
                assert os.lstat(n).st_uid == uid, "%s not chowned to postgres" % n
        assert set(owners(standin).values()) == {0}
    finally:
        shutil.rmtree(top, ignore_errors=True)
