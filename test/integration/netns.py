"""Hosts simulated with network namespaces, for the partition tests.

Lab() makes a private /24 on a bridge that lives in a namespace of its own
(so the host's firewall, which may drop forwarded traffic, never sees the
lab's packets), plus a veth from the root namespace onto it (the tests'
own tools reach every lab host).  add_host(name) makes a namespace with one
interface on the bridge.  cut(name) takes that interface down (the host is
cut off from everything); block(name, ips) drops its packets to some
addresses (cut off from etcd only); heal and unblock undo them.  Clients on
the host itself (Unix sockets, the sampler) keep working while it is cut.
"""
import random
import subprocess


def ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


class Lab:
    def __init__(self):
        self.tag = "pl%04x" % random.getrandbits(16)
        self.net = "10.213.%d" % random.randint(1, 250)
        self.sw = self.tag + "sw"
        self.hosts = {}          # name -> (namespace, address)
        self.blocked = {}        # name -> [addresses]
        self.next = 10
        try:
            ip("netns", "add", self.sw)
            ip("-n", self.sw, "link", "add", "br0", "type", "bridge")
            ip("-n", self.sw, "link", "set", "br0", "up")
            ip("-n", self.sw, "link", "set", "lo", "up")
            # the root namespace's leg: 10.213.N.1
            ip("link", "add", self.tag + "r", "type", "veth", "peer", "name", "root",
               "netns", self.sw)
            ip("-n", self.sw, "link", "set", "root", "master", "br0", "up")
            ip("addr", "add", self.net + ".1/24", "dev", self.tag + "r")
            ip("link", "set", self.tag + "r", "up")
        except Exception:
            self.destroy()
            raise

    @property
    def subnet(self):
        return self.net + ".0/24"

    def add_host(self, name):
        ns = "%s%s" % (self.tag, name)
        addr = "%s.%d" % (self.net, self.next)
        self.next += 1
        ip("netns", "add", ns)
        self.hosts[name] = (ns, addr)
        ip("link", "add", "%s-%s" % (self.tag, name)[:15], "type", "veth", "peer", "name",
           "eth0", "netns", ns)
        ip("link", "set", "%s-%s" % (self.tag, name)[:15], "netns", self.sw)
        ip("-n", self.sw, "link", "set", "%s-%s" % (self.tag, name)[:15], "master", "br0", "up")
        ip("-n", ns, "addr", "add", addr + "/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        return ns, addr

    def ns(self, name):
        return self.hosts[name][0]

    def addr(self, name):
        return self.hosts[name][1]

    def cut(self, name):
        """The host loses every link to the others."""
        ip("-n", self.ns(name), "link", "set", "eth0", "down")

    def heal(self, name):
        ip("-n", self.ns(name), "link", "set", "eth0", "up")

    def block(self, name, others):
        """Packets from host `name` to the hosts `others` are dropped."""
        for o in others:
            ip("-n", self.ns(name), "route", "add", "blackhole", self.addr(o) + "/32")
            self.blocked.setdefault(name, []).append(o)

    def unblock(self, name):
        for o in self.blocked.pop(name, []):
            ip("-n", self.ns(name), "route", "del", "blackhole", self.addr(o) + "/32",
               check=False)

    def destroy(self):
        for ns, _ in self.hosts.values():
            ip("netns", "del", ns, check=False)
        ip("link", "del", self.tag + "r", check=False)
        ip("netns", "del", self.sw, check=False)
        self.hosts = {}
