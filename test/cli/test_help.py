"""--help, --version, and valgrind over the read commands."""
import shutil
import subprocess

import pytest

from conftest import PGLEASE, clean_env, pgl

COMMANDS = ["status", "lease", "events", "primary", "watch", "remove", "pause", "resume",
            "switchover", "failover", "reload", "health", "store"]
# Options each command's help must mention (its usage text is checked for truth).
OWN_OPTIONS = {"status": ["--json"], "lease": ["--json"], "events": ["-n N", "--json"],
               "primary": ["--conninfo", "--json", "--uri"], "watch": ["--json", "--count N"],
               "remove": ["NODE"], "pause": [], "resume": [], "health": [],
               "switchover": ["--to NODE", "--wait", "--timeout S", "--max-lag BYTES"],
               "failover": ["--to NODE", "--wait", "--timeout S"], "reload": [],
               "store": ["rebuild"]}


def test_version():
    r = pgl("--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, "pglease 0.1.0\n", "")


@pytest.mark.parametrize("arg", ["--help", "-h", "help"])
def test_global_help(arg):
    r = pgl(arg)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("usage: pglease <command>")
    listed = [l.split()[0] for l in r.stdout.splitlines() if l.startswith("  ") and
              not l.startswith("   ") and not l.lstrip().startswith("-")]
    assert listed[:len(COMMANDS) + 1] == ["run"] + COMMANDS
    assert "Exit codes: 0 ok, 1 runtime failure, 2 usage or config error, 3 no live primary" \
        in r.stdout


@pytest.mark.parametrize("cmd", COMMANDS)
@pytest.mark.parametrize("how", [["--help"], ["-h"], ["help-prefix"]])
def test_command_help(cmd, how):
    r = pgl("help", cmd) if how == ["help-prefix"] else pgl(cmd, *how)
    assert r.returncode == 0 and r.stderr == ""
    first = r.stdout.splitlines()[0]
    assert first.startswith("usage: pglease %s " % cmd)
    for opt in OWN_OPTIONS[cmd] + ["--lease-db PATH", "-c FILE"]:
        assert opt in first, (opt, first)
    for opt in ("--lease-db PATH", "-c, --config FILE", "-h, --help"):
        assert opt in r.stdout
    if "--json" not in OWN_OPTIONS[cmd]:
        assert "--json" not in r.stdout


def test_help_does_not_need_a_store(tmp_path):
    r = pgl("status", "--help", "--lease-db", tmp_path / "none.db")
    assert r.returncode == 0
    assert not (tmp_path / "none.db").exists()


VALGRIND_RUNS = [["status"], ["status", "--json"], ["lease"], ["lease", "--json"],
                 ["events", "-n", "5"], ["events", "--json"], ["primary"], ["primary", "--json"],
                 ["primary", "--conninfo"], ["status", "--help"], ["--help"],
                 ["events", "-n", "zero"], ["remove", "n9"], ["pause"], ["resume"],
                 ["switchover", "--to", "n9"], ["failover", "--to", "n2"],
                 ["switchover", "--to", "n3"], ["primary", "--uri"]]


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")
@pytest.mark.parametrize("args", VALGRIND_RUNS, ids=" ".join)
def test_valgrind_clean(store, args):
    full = args + (["--lease-db", str(store)] if args[0] != "--help" else [])
    r = subprocess.run(["valgrind", "-q", "--leak-check=full", "--error-exitcode=9",
                        PGLEASE, *full], capture_output=True, text=True, env=clean_env(),
                       timeout=120)
    assert r.returncode != 9, r.stderr
    assert "==" not in r.stderr, r.stderr
