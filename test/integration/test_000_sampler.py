"""000: the harness itself.  The Sampler must notice two nodes out of
recovery at once; otherwise every "no two primaries" check in this suite
would pass vacuously.  A standby is promoted behind its agent's back."""
import time

from conftest import FAST, poll_until, started_cluster


def test_sampler_detects_two_primaries(make_cluster):
    c, p = started_cluster(make_cluster, 2, **FAST)
    s = c.others(p)[0]
    time.sleep(1.0)
    assert c.sampler.violations() == []
    s.query("SELECT pg_promote()")
    v = poll_until(c.sampler.violations, 15, "the sampler to report two primaries")
    assert any(p.name in x and s.name in x for x in v), v
    c.sampler.stop()
    c.sampler = None          # the violation was staged: do not fail the teardown on it
