"""sys_patroni.py — Patroni 3.0.2 (Debian patroni) with one local etcd 3.4.

Set up as Patroni's documentation says (https://patroni.readthedocs.io/en/latest/
yaml_configuration.html, the shipped example /usr/share/doc/patroni/examples/
postgres0.yml): one YAML file per node, bootstrap.dcs for the cluster-wide
settings, Patroni starting PostgreSQL itself; DCS: a single-member etcd on
127.0.0.1:15379 (peer 15380), reached with Patroni's `etcd3:` section (etcd's
v3 API; etcd is started with --enable-v2=true too so `etcd:` also works:
PEERS_PATRONI_DCS=etcd).

default: ttl = 30, loop_wait = 10, retry_timeout = 10 (Patroni's defaults).
fast:    ttl = 20, loop_wait = 1, retry_timeout = 3: the minimum values that
         https://patroni.readthedocs.io/en/latest/dynamic_configuration.html
         allows (and loop_wait + 2 * retry_timeout <= ttl holds).
use_pg_rewind: true in both, as in the shipped example.
PostgreSQL 15201-15203, REST API 15211-15213.  Trust on 127.0.0.1 (benchmark).
A node's manager is its patroni process.
"""
import json
import os
import shutil
import urllib.request

from common import (System, PGBIN, spawn_pg, q, pids_named, alive, end_pids, wait_until,
                    as_pg)

ETCD_CLIENT, ETCD_PEER = 15379, 15380
DEFAULT = {"ttl": 30, "loop_wait": 10, "retry_timeout": 10}
FAST = {"ttl": 20, "loop_wait": 1, "retry_timeout": 3}
SU = dict(user="postgres", password="pg")


class Patroni(System):
    name = "patroni"
    base_port = 15201
    infra_name = "etcd"

    def __init__(self, variant="default"):
        super().__init__(variant)
        self.ports = [self.base_port + i for i in range(self.n)]
        self.settings = FAST if variant == "fast" else DEFAULT
        self.etcd = None

    def pgdata(self, i):
        return os.path.join(self.base, "n%d" % (i + 1))

    def conf(self, i):
        return os.path.join(self.base, "n%d.yml" % (i + 1))

    def version(self):
        return as_pg(["patroni", "--version"]).strip()

    def write_conf(self, i):
        dcs = os.environ.get("PEERS_PATRONI_DCS", "etcd3")
        c = {
            "scope": "peers",
            "namespace": "/pglease-peers/",
            "name": "n%d" % (i + 1),
            "restapi": {"listen": "127.0.0.1:%d" % (15211 + i),
                        "connect_address": "127.0.0.1:%d" % (15211 + i)},
            dcs: {"hosts": "127.0.0.1:%d" % ETCD_CLIENT},
            "bootstrap": {
                "dcs": dict(self.settings, maximum_lag_on_failover=1048576,
                            postgresql={"use_pg_rewind": True,
                                        "parameters": {"max_connections": 50}}),
                "initdb": [{"encoding": "UTF8"}],
                "pg_hba": ["local all all trust",
                           "host replication all 127.0.0.1/32 trust",
                           "host all all 127.0.0.1/32 trust"],
            },
            "postgresql": {
                "listen": "127.0.0.1:%d" % self.ports[i],
                "connect_address": "127.0.0.1:%d" % self.ports[i],
                "data_dir": self.pgdata(i),
                "bin_dir": PGBIN,
                "pgpass": os.path.join(self.base, "n%d.pgpass" % (i + 1)),
                "authentication": {
                    "superuser": {"username": "postgres", "password": "pg"},
                    "replication": {"username": "replicator", "password": "rep"},
                    "rewind": {"username": "rewinder", "password": "rw"},
                },
                "parameters": {"unix_socket_directories": self.base,
                               "logging_collector": "on", "log_directory": "log",
                               "shared_buffers": "32MB"},
            },
        }
        with open(self.conf(i), "w") as f:
            json.dump(c, f, indent=1)      # JSON is YAML
        os.chmod(self.conf(i), 0o644)

    def start_etcd(self):
        d = os.path.join(self.base, "etcd")
        os.makedirs(d, exist_ok=True)
        shutil.chown(d, "postgres", "postgres")
        url = "http://127.0.0.1:%d" % ETCD_CLIENT
        peer = "http://127.0.0.1:%d" % ETCD_PEER
        self.etcd = spawn_pg(["etcd", "--name", "peers", "--data-dir", d + "/data",
                              "--listen-client-urls", url, "--advertise-client-urls", url,
                              "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                              "--initial-cluster", "peers=" + peer,
                              "--initial-cluster-token", "pglease-peers",
                              "--enable-v2=true"],
                             os.path.join(self.base, "etcd.log"))
        self.extra.append(self.etcd)
        wait_until(lambda: b"true" in urllib.request.urlopen(url + "/health", timeout=1).read(),
                   30, 0.2, "etcd healthy")

    def infra_pids(self):
        return pids_named([self.etcd.pid], ["etcd"]) if self.etcd else []

    def start_patroni(self, i):
        self.procs[i] = spawn_pg(["patroni", self.conf(i)],
                                 os.path.join(self.base, "n%d.patroni.log" % (i + 1)))

    def setup(self):
        self.start_etcd()
        for i in range(self.n):
            self.write_conf(i)
        self.start_patroni(0)
        wait_until(lambda: q(self.ports[0], "SELECT NOT pg_is_in_recovery()", timeout=1,
                             **SU)[0][0], 120, 0.2, "patroni bootstrap")
        self.create_bench_role(self.ports[0], **SU)
        for i in range(1, self.n):
            self.start_patroni(i)
        return self.wait_healthy(180)

    def manager_pids(self, i):
        p = self.procs.get(i)
        return pids_named([p.pid], ["patroni"]) if p else []

    def stop_primary(self):
        """Patroni's own clean stop: SIGTERM to patroni (stops PostgreSQL,
        then deletes the leader key)."""
        p = self.primary()
        end_pids(self.manager_pids(p), grace=60)
        return p

    def start_node(self, i):
        if not self.manager_pids(i):
            self.start_patroni(i)

    def stop_all(self):
        for i in range(self.n):
            end_pids(self.manager_pids(i), grace=30)
        for i in range(self.n):
            pm = self.postmaster_pid(i)
            if pm and alive(pm):
                end_pids([pm])
        if self.etcd:
            end_pids(self.infra_pids() + [self.etcd.pid])


DRIVER = Patroni
