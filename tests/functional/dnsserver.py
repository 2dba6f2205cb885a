"""dnsserver.py - a real DNS server on loopback for the tests: Debian's
unbound, authoritative for the zones a test writes, never recursing or
forwarding anywhere.

    from dnsserver import DnsServer, dns_server, dead_dns   # fixtures too

    srv = DnsServer(tmp_path)                   # nothing runs yet
    srv.add_zone("example.test", [
        "@      A    192.0.2.1",                 # owner relative to the zone
        "@      TXT  " + txt("v=spf1 ip4:192.0.2.0/24 -all"),
        "mail   MX   10 mx.example.test.",
        "mx     300 A 192.0.2.25",               # an optional TTL
        ("sel._domainkey", "TXT", "v=DKIM1; k=rsa; p=MIIB..."),  # tuple: value quoted for you
    ])
    srv.add_zone("2.0.192.in-addr.arpa", ["1 PTR mail.example.test."])
    srv.add_zone("slow.test", [], drop_other=True)   # queries without data are dropped
    srv.add_zone("no.test", [], refuse=True)         # ... answered REFUSED (SERVFAIL for us)
    srv.start()                                 # unbound on 127.0.0.1:srv.port
    srv.forwarder                               # "127.0.0.1@PORT" for -o dns_forwarder=
    srv.add_zone(...); srv.restart()            # new data, same port
    srv.stop()

Records are "OWNER [TTL] TYPE RDATA" strings in zone-file syntax (owner
"@" = the zone itself, a name without a final dot is relative to the
zone, with one it is absolute and must lie in the zone), or tuples
(owner, type, value[, ttl]) where a TXT value is plain text that txt()
quotes and splits into 255-byte strings (a list of str gives the strings
one by one).  The default TTL is 300.

Every zone is an unbound local-zone of type static: a name in it without
data answers NXDOMAIN (NOERROR/NODATA if the name exists with other
types); with drop_other=True the zone is of type deny: queries that have
no data are silently dropped (a DNS timeout, as the RFC 7208 suite's
TIMEOUT needs); with refuse=True (type refuse) they are answered REFUSED,
which a resolver reports as a server failure.  A zone inside another one
(x.example.bl.test in bl.test) takes the names under it, so one name of a
list can time out or fail while the others answer.  Everything outside the zones answers NXDOMAIN ("." is a
static zone too), and no outgoing query is ever made, so a test can never
reach the real DNS.  unbound's own defaults for test., localhost. and the
private reverse zones stay, but a zone a test adds wins over them.

dead_dns() / DeadDns: a loopback UDP+TCP port that accepts queries and
never answers, for deadline tests (forwarder string in .forwarder).

Fixtures: dns_server (a started-later DnsServer in tmp_path, stopped at the
end of the test) and dead_dns (a DeadDns, closed at the end).  Import them
into a test file: `from dnsserver import dns_server, dead_dns  # noqa: F401`.
"""

import os
import socket
import subprocess
import time

import pytest

import mwlib

UNBOUND = "/usr/sbin/unbound"
DEFAULT_TTL = 300


def txt(value):
    """TXT rdata in zone-file syntax: value (str or bytes, or a list of them
    for explicit character-strings) quoted, backslash-escaped, split into
    strings of at most 255 bytes."""
    if isinstance(value, (list, tuple)):
        parts = [_b(v) for v in value]
    else:
        b = _b(value)
        parts = [b[i:i + 255] for i in range(0, len(b), 255)] or [b""]
    return " ".join('"%s"' % _escape(p) for p in parts)


def name_escape(name):
    """A domain name in zone-file syntax: bytes other than letters, digits,
    '-', '_', '*' and the dots between labels as \\DDD."""
    out = []
    for ch in _b(name):
        if chr(ch).isalnum() and ch < 0x80 or ch in b"-_*.":
            out.append(chr(ch))
        else:
            out.append("\\%03d" % ch)
    return "".join(out)


def _b(v):
    return v if isinstance(v, bytes) else v.encode("utf-8")


def _escape(b):
    out = []
    for ch in b:
        if ch in (0x22, 0x5c):                     # " and backslash
            out.append("\\" + chr(ch))
        elif ch < 0x20 or ch > 0x7e or ch == 0x27:  # ' would end unbound's quoting

            out.append("\\%03d" % ch)
        else:
            out.append(chr(ch))
    return "".join(out)


def _absolute(owner, zone):
    if owner == "@":
        return zone + "."
    if owner.endswith("."):
        return owner
    return owner + "." + zone + "."


class DnsServer:
    """unbound on 127.0.0.1, answering only from the zones added."""

    def __init__(self, tmpdir, port=None):
        self.dir = str(tmpdir)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or mwlib.free_port()
        self.zones = {}                 # name -> (type, [local-data lines])
        self.proc = None
        self.conf = os.path.join(self.dir, "unbound.conf")
        self.log = os.path.join(self.dir, "unbound.log")

    @property
    def forwarder(self):
        return "127.0.0.1@%d" % self.port

    def add_zone(self, name, records=(), drop_other=False, negative_ttl=60, redirect=False, refuse=False):
        """Add (or replace) zone name with records (see the module doc).
        Unless records hold one, an SOA whose minimum is negative_ttl is
        added (resolvers cache NXDOMAIN/NODATA that long, RFC 2308).
        redirect=True: every name under the zone answers with the zone's
        own records (unbound's redirect zone: a wildcard, which local-data
        has not).  Takes effect at start() / restart()."""
        name = name.rstrip(".").lower()
        lines = []
        for r in records:
            lines.append(self._record(r, name))
        if not any(l.split()[3] == "SOA" for l in lines):
            lines.insert(0, "%s. %d IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 %d"
                         % (name, negative_ttl, name, name, negative_ttl))
        self.zones[name] = ("deny" if drop_other else "redirect" if redirect else "refuse" if refuse
                            else "static", lines)
        return self

    def add_records(self, zone, records):
        """Append records to an existing zone (start() / restart() to apply)."""
        zone = zone.rstrip(".").lower()
        kind, lines = self.zones[zone]
        for r in records:
            lines.append(self._record(r, zone))
        return self

    @staticmethod
    def _record(r, zone):
        if isinstance(r, tuple):
            owner, rtype, value = r[0], r[1].upper(), r[2]
            ttl = r[3] if len(r) > 3 else DEFAULT_TTL
            rdata = txt(value) if rtype == "TXT" else value
            return "%s %d IN %s %s" % (_absolute(owner, zone), ttl, rtype, rdata)
        owner, rest = r.split(None, 1)
        first, _, tail = rest.partition(" ")
        ttl = DEFAULT_TTL
        if first.isdigit():
            ttl = int(first)
            rest = tail.lstrip()
        return "%s %d IN %s" % (_absolute(owner, zone), ttl, rest)

    def _write_conf(self):
        out = [
            "server:",
            "  interface: 127.0.0.1",
            "  port: %d" % self.port,
            "  do-ip6: no",
            "  do-daemonize: no",
            "  username: \"\"",
            "  chroot: \"\"",
            "  directory: \"%s\"" % self.dir,
            "  pidfile: \"\"",
            "  use-syslog: no",
            "  logfile: \"%s\"" % self.log,
            "  verbosity: 1",
            "  num-threads: 1",
            "  so-reuseport: no",
            "  access-control: 127.0.0.0/8 allow",
            "  module-config: \"iterator\"",
            "  trust-anchor-signaling: no",
            "  root-key-sentinel: no",
            # nothing leaves: "." answers locally, and no address may be queried
            "  local-zone: \".\" static",
            "  do-not-query-address: 0.0.0.0/0",
            "  do-not-query-address: ::/0",
            "  minimal-responses: no",
            "  rrset-roundrobin: no",
        ]
        for name, (kind, lines) in self.zones.items():
            out.append("  local-zone: \"%s.\" %s" % (name, kind))
            for l in lines:
                if "'" in l:
                    raise ValueError("a record may not hold ' (use a TXT tuple): %s" % l)
                out.append("  local-data: '%s'" % l)
        out += ["remote-control:", "  control-enable: no", ""]
        with open(self.conf, "w") as f:
            f.write("\n".join(out))

    def start(self, timeout=10.0):
        self._write_conf()
        chk = subprocess.run(["/usr/sbin/unbound-checkconf", self.conf],
                             capture_output=True, text=True)
        if chk.returncode != 0:
            raise RuntimeError("unbound config refused: %s%s" % (chk.stdout, chk.stderr))
        self.proc = subprocess.Popen([UNBOUND, "-d", "-p", "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log + ".stderr", "w"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("unbound exited %s: %s" % (self.proc.returncode, self.logs()))
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("unbound did not answer on port %d: %s" % (self.port, self.logs()))

    def _answers(self):
        """Does the server answer a query (any rcode)?"""
        q = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
             b"\x05probe\x07invalid\x00\x00\x01\x00\x01")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        try:
            s.sendto(q, ("127.0.0.1", self.port))
            data, _ = s.recvfrom(512)
            return data[:2] == b"\x12\x34"
        except OSError:
            return False
        finally:
            s.close()

    def restart(self):
        self.stop()
        return self.start()

    def logs(self):
        text = ""
        for p in (self.log, self.log + ".stderr"):
            try:
                with open(p, errors="replace") as f:
                    text += f.read()[-4000:]
            except OSError:
                pass
        return text

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class DeadDns:
    """A forwarder that never answers: UDP and TCP bound on a loopback port,
    nothing read (UDP) and connections left unanswered (TCP)."""

    def __init__(self):
        self.port = mwlib.free_port()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(64)

    @property
    def forwarder(self):
        return "127.0.0.1@%d" % self.port

    def close(self):
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def dns_server(tmp_path):
    """A DnsServer in tmp_path/dns (add zones, then .start()); stopped at the end."""
    srv = DnsServer(tmp_path / "dns")
    yield srv
    srv.stop()


@pytest.fixture
def dead_dns():
    """A DeadDns: a loopback forwarder that never answers."""
    d = DeadDns()
    yield d
    d.close()
