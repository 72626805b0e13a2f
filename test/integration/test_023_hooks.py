"""023: on_role_change (issue 12): the operator's program runs with argv
(EVENT, ROLE, TERM, NODE) when a node's role changes, asynchronously; a hook
that hangs is killed at hook_timeout_ms and never delays a renewal.  What a
hook leaves running in the background dies soon after it returns, and at the
agent's exit (issue 24); hooks never see the agent's POSTGRES_PASSWORD*."""
import os
import time

from conftest import FAST, chown_pg, pid_alive, poll_until, started_cluster

TTL = FAST["lease_ttl_ms"] / 1000.0


def write_hook(c, body):
    """An executable hook script in the cluster's directory; its calls go to hooks.log."""
    log = c.base / "hooks.log"
    log.touch()
    os.chmod(log, 0o666)
    chown_pg(log)
    hook = c.base / "hook.sh"
    hook.write_text("#!/bin/sh\necho \"$1 $2 $3 $4 $$\" >> %s\n%s" % (log, body))
    os.chmod(hook, 0o755)
    return hook, log


def calls(log):
    return [l.split() for l in log.read_text().splitlines() if l.strip()]


def with_env(node, **env):
    """Starts node's agent with env added to its environment (as Docker's -e would)."""
    argv = node.agent_argv
    node.agent_argv = lambda conf=None: ["env"] + ["%s=%s" % kv for kv in env.items()] + argv(conf)


def hook_cluster(make_cluster, body="", env=None, **settings):
    s = dict(FAST)
    s.update(settings)
    c = make_cluster(3, **s)
    hook, log = write_hook(c, body)
    for n in c.nodes:
        n.settings["on_role_change"] = str(hook)
        n.write_conf()
        if env:
            with_env(n, **env)
    c.start()
    p = c.wait_healthy(timeout=240)
    c.create_table(p)
    c.start_sampler()
    return c, p, log


def test_hook_runs_on_every_role_change(make_cluster):
    c, p, log = hook_cluster(make_cluster)
    term = c.lease()["term"]
    poll_until(lambda: {(x[0], x[1], x[3]) for x in calls(log)} >=
               {("bootstrap", "primary", p.name)} |
               {("followed", "standby", s.name) for s in c.others(p)}, 30,
               "the bootstrap and followed calls")
    assert all(x[2] == str(term) for x in calls(log)), calls(log)
    n0 = len(calls(log))
    p.kill9()
    newp = c.wait_for_primary(timeout=60, exclude=[p], min_term=term + 1)
    other = [s for s in c.others(p) if s is not newp][0]
    want = {("promoted", "primary", str(term + 1), newp.name),
            ("followed", "standby", str(term + 1), other.name)}
    poll_until(lambda: {tuple(x[:4]) for x in calls(log)[n0:]} >= want, 30,
               "the promoted and followed calls of term %d" % (term + 1))
    poll_until(lambda: "on_role_change promoted primary %d: exit status 0" % (term + 1) in
               newp.log_text(), 15, "the promoted call's exit to be logged")
    c.sampler.resume(p)
    p.start()
    c.wait_for_streaming(p, newp, timeout=120)
    poll_until(lambda: ("followed", "standby", str(term + 1), p.name) in
               {tuple(x[:4]) for x in calls(log)}, 30, "the old primary's followed call")
    c.sampler.check()


def test_hanging_hook_is_killed_and_delays_nothing(make_cluster):
    c, p, log = hook_cluster(make_cluster, body="exec sleep 600\n", hook_timeout_ms=2000)
    term = c.lease()["term"]
    p.kill9()
    newp = c.wait_for_primary(timeout=60, exclude=[p], min_term=term + 1)
    poll_until(lambda: [x for x in calls(log) if x[0] == "promoted"], 30, "the promoted call")
    pid = int([x for x in calls(log) if x[0] == "promoted"][0][4])
    # While it hangs, the new primary renews as usual and takes writes.
    r0 = c.lease()["renewals"]
    c.insert(newp, range(1, 11))
    time.sleep(1.5)
    assert c.lease()["renewals"] > r0 and c.lease()["term"] == term + 1
    # Killed at the timeout, with a log line; the next call then runs.
    poll_until(lambda: "on_role_change promoted primary %d: killed after" % (term + 1)
               in newp.log_text(), 30, "the hung hook to be killed")
    poll_until(lambda: not os.path.exists("/proc/%d" % pid), 10, "the hook's process to be gone")
    assert not c.events("fenced"), c.events("fenced")
    c.sampler.check()


def test_hook_must_be_an_executable_absolute_path(make_cluster):
    c = make_cluster(1, **FAST)
    n = c.nodes[0]
    n.write_conf(on_role_change="hook.sh")
    n.start()
    assert n.exit_code(timeout=30) == 2
    assert "on_role_change" in n.log_text() and "not an absolute path" in n.log_text()
    n.write_conf(on_role_change=str(c.base / "missing.sh"))
    n.start()
    assert n.exit_code(timeout=30) == 2
    assert "missing.sh: No such file or directory" in n.log_text(), n.log_tail()


def sleepers(c):
    """The pids the hook's `sleep 1000 &` lines left in sleepers.log."""
    f = c.base / "sleepers.log"
    return [int(x) for x in f.read_text().split()] if f.exists() else []


def sleeper_hook(c, body):
    f = c.base / "sleepers.log"
    f.touch()
    os.chmod(f, 0o666)
    return body.replace("SLEEPERS", str(f))


def test_hook_background_children_do_not_outlive_it(make_cluster):
    """A hook that starts `sleep 1000 &` and returns: the sleeper is gone
    within a few seconds (SIGTERM to the hook's group when its leader exits,
    SIGKILL 1 s later); once lived 1000 s, whatever the README promised."""
    c = make_cluster(3, **FAST)
    hook, log = write_hook(c, sleeper_hook(c, "sleep 1000 &\necho $! >> SLEEPERS\n"))
    for n in c.nodes:
        n.write_conf(on_role_change=str(hook))
    c.start()
    p = c.wait_healthy(timeout=240)
    poll_until(lambda: len(sleepers(c)) >= 3 and len(calls(log)) >= 3, 30,
               "the bootstrap and followed calls' sleepers")
    pids = sleepers(c)
    poll_until(lambda: not any(pid_alive(x) for x in pids), 10,
               "the hooks' background sleepers %s to be killed" % pids)
    assert all("exit status 0" in n.log_text() for n in c.nodes), [n.log_tail() for n in c.nodes]


def test_hook_group_dies_with_the_agent(make_cluster):
    """A hook still running (with a background child) when the agent stops:
    the agent gives it its 5 s, then ends its group, SIGTERM then SIGKILL;
    nothing of it is left once the agent has exited."""
    c = make_cluster(1, **FAST)
    n = c.nodes[0]
    hook, log = write_hook(c, sleeper_hook(
        c, "sleep 1000 &\necho $! >> SLEEPERS\ntrap '' TERM\nsleep 1000 & wait\n"))
    n.write_conf(on_role_change=str(hook), hook_timeout_ms=600000)
    c.start()
    c.wait_for_primary(timeout=120)
    poll_until(lambda: sleepers(c) and calls(log), 30, "the bootstrap call's sleeper")
    leader = int(calls(log)[0][4])
    pids = sleepers(c) + [leader]
    assert all(pid_alive(x) for x in pids)
    t0 = time.monotonic()
    assert n.stop(timeout=60) is not None
    assert time.monotonic() - t0 < 30
    poll_until(lambda: not any(pid_alive(x) for x in pids), 10,
               "the hook %d and its sleeper to be gone with the agent" % leader)


def test_hook_environment_has_no_postgres_password(make_cluster):
    """The agent's POSTGRES_PASSWORD* (Docker's) is not handed to hooks;
    the rest of its environment is."""
    c = make_cluster(1, **FAST)
    n = c.nodes[0]
    out = c.base / "hook-env"
    out.touch()
    os.chmod(out, 0o666)
    hook, log = write_hook(c, 'env >> "%s"\n' % out)
    n.write_conf(on_role_change=str(hook))
    with_env(n, POSTGRES_PASSWORD="hook-must-not-see", POSTGRES_PASSWORD_FILE="/run/secrets/pw",
             PGL_TEST_KEPT="kept")
    c.start()
    c.wait_for_primary(timeout=120)
    poll_until(lambda: "PGL_TEST_KEPT=kept" in out.read_text(), 30, "the hook's environment")
    env = out.read_text()
    assert "POSTGRES_PASSWORD" not in env and "hook-must-not-see" not in env, env
    agent_env = open("/proc/%d/environ" % n.agent_pid, "rb").read().decode()
    assert "POSTGRES_PASSWORD=hook-must-not-see" in agent_env   # the agent had it


def test_released_hook_on_switchover_and_clean_stop(make_cluster):
    """The documented `released` event reaches the hook where the lease is
    given up: a switchover (the old primary stays on as a standby) and a
    clean stop of the primary (SIGTERM)."""
    c, p, log = hook_cluster(make_cluster)
    term = c.lease()["term"]
    target = c.others(p)[0]
    for s in c.others(p):
        c.wait_for_streaming(s, p)
    r = c.cli("switchover", "--lease-db", str(c.lease_db), "--to", target.name, "--wait",
              timeout=120)
    assert r.returncode == 0, r.stderr
    poll_until(lambda: ("released", "standby", str(term), p.name) in
               {tuple(x[:4]) for x in calls(log)}, 30, "the old primary's released call")
    newp = c.wait_for_primary(timeout=60, min_term=term + 1)
    assert newp is target
    t2 = c.lease()["term"]
    c.sampler.stop()
    assert newp.stop() == 0
    poll_until(lambda: [x for x in calls(log) if x[:2] == ["released", "stopped"] and
                        x[2:4] == [str(t2), newp.name]], 30,
               "the stopped primary's released call: %s" % calls(log))
    assert "on_role_change released stopped %d: exit status 0" % t2 in newp.log_text(), \
        newp.log_tail()
