"""Bootstrap of fresh clusters: every `docker-compose up -d` on an empty lease
directory must give three running agents sharing one store.  Four projects
are brought up at once (a race between the nodes of each cluster creating the
store is what this looks for: it does not show on every start)."""
import os
import time

from conftest import SERVICES, poll

N_CLUSTERS = int(os.environ.get("PGLEASE_DOCKER_BOOTSTRAPS", "4"))
ERRORS = ("cannot create lease store", "not a pglease lease store", "cannot open lease store")


def test_00_concurrent_fresh_bootstraps(new_cluster):
    cls = [new_cluster("bootstrap %d" % i) for i in range(N_CLUSTERS)]
    t0 = time.monotonic()
    for c in cls:
        c.up()
    problems = {}

    def settled():
        # every cluster logged its bootstrap, or some container died
        for c in cls:
            if c.exited():
                return True
            if not os.path.exists(c.db + "-shm"):
                return False
            if not [e for e in c.events() if e["kind"] == "bootstrap"]:
                return False
        return True
    poll("every cluster to bootstrap", settled, 180, 0.5)
    time.sleep(3)   # a node losing a creation race exits within this
    for c in cls:
        gone = c.exited()
        logs = c.logs(200)
        bad = [l for l in logs.splitlines() if any(e in l for e in ERRORS)]
        if gone or bad:
            last = {}
            for s in gone:
                r = c.docker("logs", "--tail", "3", c.container(s), check=False)
                last[s] = (r.stdout + r.stderr).strip()
            problems[c.project] = {"exited": gone, "last lines": last, "errors": bad,
                                   "lease dir": sorted(os.listdir(c.lease_dir))}
        else:
            l = c.lease()
            assert l["term"] == 1 and l["holder"] in SERVICES, (c.project, l)
            ev = c.events()
            boot = [e for e in ev if e["kind"] == "bootstrap"]
            acq = [e for e in ev if e["kind"] == "acquired"]
            assert len(boot) == 1 and boot[0]["node"] == l["holder"], (c.project, ev)
            assert len(acq) == 1 and acq[0]["node"] == l["holder"], (c.project, ev)
    print("%d fresh bootstraps settled in %.1f s" % (len(cls), time.monotonic() - t0))
    assert not problems, "fresh compose up lost nodes at store creation: %s" % problems
