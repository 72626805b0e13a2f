"""HAProxy's statistics page (port 7000) asks for a password (issue 24).

Only the haproxy service of docker-compose.yml is started (its servers stay
unresolved, which the page shows; no node is needed).  With
PGLEASE_HAPROXY_STATS_PASSWORD set: no credentials and wrong ones get 401,
the right ones the page.  With no password given, haproxy-start generates
one into /var/lib/haproxy/stats-password (mode 0600, haproxy's): the same
checks with that one.  Before the fix the page answered 200 to anyone."""
import base64
import http.client

import pytest

from conftest import Cluster, poll

PASSWORD = "st4ts: 'pw\" x"


def get(port, auth=None):
    """(status, body) of GET / on 127.0.0.1:port, with basic auth (user, password)."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(
                ("%s:%s" % auth).encode()).decode()
        con.request("GET", "/", headers=headers)
        r = con.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        con.close()


def stats_port(c):
    c.compose("up", "-d", "--no-build", "--no-deps", "haproxy", timeout=180)
    port = c.host_port("haproxy", 7000)

    def answers():
        try:
            return get(port)[0]
        except OSError:
            return None
    poll("HAProxy's statistics page to answer", answers, 60, 0.3)
    return port


def check(c, port, user, password):
    st, body = get(port)
    assert st == 401, "no credentials: %d %s" % (st, body[:200])
    st, _ = get(port, (user, password + "x"))
    assert st == 401, "a wrong password: %d" % st
    st, _ = get(port, ("", ""))
    assert st == 401, "an empty login: %d" % st
    st, body = get(port, (user, password))
    assert st == 200 and "Statistics Report" in body, "the right password: %d %s" % (st, body[:200])


@pytest.mark.parametrize("given", [True, False], ids=["password-given", "password-generated"])
def test_stats_page_needs_the_password(new_cluster, given):
    env = dict(PGLEASE_HAPROXY_STATS_PASSWORD=PASSWORD if given else "",
               PGLEASE_HAPROXY_STATS_USER="ops")
    c = new_cluster("haproxy stats", env=env)
    port = stats_port(c)
    if given:
        password = PASSWORD
    else:
        r = c.exec("haproxy", ["stat", "-c", "%a %U", "/var/lib/haproxy/stats-password"],
                   user="root")
        assert r.stdout.strip() == "600 haproxy", r.stdout + r.stderr
        r = c.exec("haproxy", ["cat", "/var/lib/haproxy/stats-password"], user="root")
        password = r.stdout.strip()
        assert len(password) >= 20, r.stdout
    check(c, port, "ops", password)
    logs = c.logs(50)
    assert password not in logs, "the password in the log"
    assert "statistics page on :7000, user ops" in logs, logs
