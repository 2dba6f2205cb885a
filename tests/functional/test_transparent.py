"""Transparent interception (issue 3): in a network namespace made by the
test (ip netns, Debian's iproute2), nftables redirects a client's
connection to "the MTA" at 127.0.0.2:25 to mailwarden, which relays to
that original destination (SO_ORIGINAL_DST).  Everything happens on the
namespace's own loopback; nothing leaves it.  The IPv6 cases do the same
with ULA addresses (fd00:6d77::2 the MTA, ::3 the client) put on the
namespace's loopback, ip6 nftables rules, and a Python client (swaks
needs IO::Socket::INET6 for IPv6, not installed here).

Skipped, with the reason, where namespaces cannot be made (not root, or a
sandbox that forbids them)."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

import mwlib
from mwlib import Mailwarden

MTA = "127.0.0.2"
CLIENT = "127.0.0.3"
MTA6 = "fd00:6d77::2"
CLIENT6 = "fd00:6d77::3"


def _run(*cmd, check=True):
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, check=check)


def _netns_possible():
    if os.geteuid() != 0:
        return "needs root for ip netns"
    for tool in ("ip", "nft", "swaks"):
        if shutil.which(tool) is None:
            return "%s is not installed" % tool
    name = "mwprobe%d" % random.getrandbits(20)
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return "network namespaces are not permitted here: %s" % r.stderr.strip()
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


_WHY = _netns_possible()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")

SINK = r'''
import asyncio, os, sys, time
from aiosmtpd.controller import Controller
out = sys.argv[1]
class H:
    async def handle_DATA(self, server, session, envelope):
        n = len(os.listdir(out))
        with open(os.path.join(out, "msg%d.eml" % n), "wb") as f:
            f.write(("X-Peer: %s\r\n" % session.peer[0]).encode() + envelope.original_content)
        return "250 2.0.0 Ok: captured"
c = Controller(H(), hostname=sys.argv[2], port=25, server_hostname="mta.example.test", decode_data=False)
c.start()
open(os.path.join(out, "..", "sink.ready"), "w").close()
try:
    while True:
        time.sleep(1)
finally:
    c.stop()
'''

# the client, for IPv6: prints the greeting, then "sent" or the error
CLIENT_PY = r'''
import smtplib, sys
host, port, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    s = smtplib.SMTP(timeout=10, source_address=(src, 0) if src else None)
    code, banner = s.connect(host, port)
    print(code, banner.decode())
    s.sendmail("a@example.org", ["b@example.net"],
               "From: a@example.org\r\nTo: b@example.net\r\nSubject: intercepted\r\n\r\nhi\r\n")
    s.quit()
    print("sent")
except (smtplib.SMTPException, OSError) as e:
    print("error", e)
'''


class NetNS:
    def __init__(self):
        self.name = "mwtp%d" % random.getrandbits(24)
        _run("ip", "netns", "add", self.name)
        try:
            _run("ip", "-n", self.name, "link", "set", "lo", "up")
            # the IPv6 MTA and client: ULA on the namespace's loopback (IPv6
            # has no 127/8 of its own); nodad, usable at once
            for a in (MTA6, CLIENT6):
                _run("ip", "-n", self.name, "addr", "add", a + "/128", "dev", "lo", "nodad")
        except BaseException:
            self.delete()       # the fixture never gets it to delete
            raise

    def cmd(self, *args):
        return ["ip", "netns", "exec", self.name] + list(args)

    def nft(self, ruleset):
        r = subprocess.run(self.cmd("nft", "-f", "-"), input=ruleset, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class NsMailwarden(Mailwarden):
    """The daemon started inside the namespace (ip netns exec execs it, so
    the pid is mailwarden's own)."""

    def __init__(self, ns, *a, **kw):
        self.ns = ns
        super().__init__(*a, **kw)

    def command(self):
        return self.ns.cmd(*super().command())


@pytest.fixture
def netns():
    ns = NetNS()
    yield ns
    ns.delete()


def swaks(ns, port, *extra):
    return subprocess.run(ns.cmd("swaks", "--server", MTA, "--port", str(port), "--local-interface", CLIENT,
                                 "--from", "a@example.org", "--to", "b@example.net",
                                 "--timeout", "10", *extra),
                          capture_output=True, text=True, timeout=60)


# nftables REDIRECT (a NAT: the original destination in SO_ORIGINAL_DST);
# only the client's own traffic: mailwarden's way out to the MTA is not
# redirected
REDIRECT = """
table ip mwtest {
    chain out {
        type nat hook output priority -100; policy accept;
        ip saddr %(client)s ip daddr %(mta)s tcp dport 25 redirect to :%(port)d
    }
}
"""

# TPROXY (no NAT: the connection keeps its addresses, the listening socket
# has IP_TRANSPARENT and the accepted one's local address is the original
# destination); the namespace's loopback packets pass prerouting too
TPROXY = """
table ip mwtest {
    chain pre {
        type filter hook prerouting priority mangle; policy accept;
        ip saddr %(client)s ip daddr %(mta)s tcp dport 25 tproxy to 127.0.0.1:%(port)d
    }
}
"""


REDIRECT6 = """
table ip6 mwtest {
    chain out {
        type nat hook output priority -100; policy accept;
        ip6 saddr %(client)s ip6 daddr %(mta)s tcp dport 25 redirect to :%(port)d
    }
}
"""

TPROXY6 = """
table ip6 mwtest {
    chain pre {
        type filter hook prerouting priority mangle; policy accept;
        ip6 saddr %(client)s ip6 daddr %(mta)s tcp dport 25 tproxy to [::1]:%(port)d
    }
}
"""

V4 = {"mta": MTA, "client": CLIENT, "lo": "127.0.0.1", "fmt": "%s:%d"}
V6 = {"mta": MTA6, "client": CLIENT6, "lo": "::1", "fmt": "[%s]:%d"}


def test_redirected_connection_reaches_the_original_destination(netns, tmp_path):
    intercepted(netns, tmp_path, REDIRECT)


def test_redirected_ipv6_connection_reaches_the_original_destination(netns, tmp_path):
    """nftables ip6 redirect: the original destination from
    IP6T_SO_ORIGINAL_DST (read in the code only until now)."""
    intercepted(netns, tmp_path, REDIRECT6, V6)


def test_tproxy_ipv6_connection_reaches_the_original_destination(netns, tmp_path):
    """ip6 TPROXY: the listening socket gets IPV6_TRANSPARENT, the accepted
    one's local address is the original destination."""
    probe = subprocess.run(netns.cmd("nft", "-c", "-f", "-"), capture_output=True, text=True,
                           input=TPROXY6 % {"client": CLIENT6, "mta": MTA6, "port": 1})
    if probe.returncode != 0:
        pytest.skip("this kernel's nftables has no tproxy: " + probe.stderr.strip())
    m = intercepted(netns, tmp_path, TPROXY6, V6)
    assert "IP_TRANSPARENT" not in m.stderr_text()


def test_tproxy_connection_reaches_the_original_destination(netns, tmp_path):
    probe = subprocess.run(netns.cmd("nft", "-c", "-f", "-"), capture_output=True, text=True,
                           input=TPROXY % {"client": CLIENT, "mta": MTA, "port": 1})
    if probe.returncode != 0:
        pytest.skip("this kernel's nftables has no tproxy: " + probe.stderr.strip())
    m = intercepted(netns, tmp_path, TPROXY)
    assert "IP_TRANSPARENT" not in m.stderr_text()       # the socket option took


def _client6(netns, host, port, src=""):
    return subprocess.run(netns.cmd(sys.executable, "-c", CLIENT_PY, host, str(port), src),
                          capture_output=True, text=True, timeout=60).stdout


def intercepted(netns, tmp_path, ruleset, fam=V4):
    """a message sent to the MTA's address, intercepted by ruleset, reaches
    the MTA through mailwarden; a connection made to the listener itself is
    refused.  Returns the stopped Mailwarden."""
    out = tmp_path / "sink"
    out.mkdir()
    mta, client, lo, fmt = fam["mta"], fam["client"], fam["lo"], fam["fmt"]
    sink = subprocess.Popen(netns.cmd(sys.executable, "-c", SINK, str(out), mta),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    m = None
    try:
        assert mwlib.wait_until(lambda: (tmp_path / "sink.ready").exists(), 15), sink.stderr.read1()
        port = mwlib.free_port()
        # the address the client dials is the MTA's; nftables hands it to mailwarden
        netns.nft(ruleset % {"client": client, "mta": mta, "port": port})
        # upstream= is only the capability probe's target here: a dead port,
        # so a message can reach the sink only through the original destination
        m = NsMailwarden(netns, tmp_path / "mw", opts=[("listener.tp.transparent", "yes")],
                         listeners=[("tp", fmt % (lo, port), fmt % (mta, 26), None)])
        m.start(ready=False)

        def up():
            if fam is V6:
                r = _client6(netns, lo, port)
                return r.startswith("220") or r.startswith("421")
            r = subprocess.run(netns.cmd("swaks", "--server", lo, "--port", str(port),
                                         "--quit-after", "CONNECT", "--timeout", "2"),
                               capture_output=True, text=True)
            return "220" in r.stdout or "421" in r.stdout
        assert mwlib.wait_until(up, 15, 0.2), m.stderr_tail()

        if fam is V6:
            r = _client6(netns, mta, 25, client)
            assert r.startswith("220 ") and r.rstrip().endswith("sent"), r + m.stderr_tail()
            assert "mailwarden" in r                  # the greeting came from the proxy
        else:
            r = swaks(netns, 25, "--header", "Subject: intercepted")
            assert r.returncode == 0, r.stdout + r.stderr + m.stderr_tail()
            assert "mailwarden" in r.stdout           # the greeting came from the proxy
        msgs = sorted(out.iterdir())
        assert len(msgs) == 1
        assert b"Subject: intercepted" in msgs[0].read_bytes()
        rec = m.audit(1)[-1]
        assert rec["client_ip"] == client
        assert rec["upstream"] == fmt % (mta, 25)
        assert "original destination %s" % (fmt % (mta, 25)) in m.stderr_text()

        # a connection made to the listener itself has no original
        # destination: refused, never relayed to ourselves
        if fam is V6:
            r = _client6(netns, lo, port)
            assert r.startswith("421 "), r
        else:
            r = subprocess.run(netns.cmd("swaks", "--server", lo, "--port", str(port),
                                         "--from", "a@example.org", "--to", "b@example.net",
                                         "--timeout", "5"),
                               capture_output=True, text=True, timeout=60)
            assert "421" in r.stdout, r.stdout
        assert len(list(out.iterdir())) == 1
        return m
    finally:
        # the sink first: a daemon that fails to stop must not leave it running
        sink.send_signal(signal.SIGTERM)
        try:
            sink.wait(10)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait()
        sink.stderr.close()
        if m is not None and m.proc is not None:
            rc = m.stop()
            left = m.leftovers()
            m.kill()
            assert rc == 0 and left == [], "status %r, left %r\n%s" % (rc, left, m.stderr_tail())


# a sink that offers STARTTLS and says whether the message came over it
SINK_TLS = r'''
import os, ssl, sys, time
from aiosmtpd.controller import Controller
out, host, chain, key = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(chain, key)
class H:
    async def handle_DATA(self, server, session, envelope):
        n = len(os.listdir(out))
        with open(os.path.join(out, "msg%d.eml" % n), "wb") as f:
            f.write(("X-TLS: %s\r\n" % (session.ssl is not None)).encode() + envelope.original_content)
        return "250 2.0.0 Ok: captured"
c = Controller(H(), hostname=host, port=25, server_hostname="mta.example.test", decode_data=False,
               tls_context=ctx, require_starttls=False)
c.start()
open(os.path.join(out, "..", "sink.ready"), "w").close()
try:
    while True:
        time.sleep(1)
finally:
    c.stop()
'''

# a client that says EHLO, then waits for the file argv[1] before its
# message: the test reloads in between
CLIENT_PAUSED = r'''
import os, smtplib, sys, time
go = sys.argv[1]
s = smtplib.SMTP(timeout=20, source_address=(sys.argv[2], 0))
s.connect(sys.argv[3], 25)
s.ehlo("client.example.org")
open(go + ".ehlo", "w").close()
deadline = time.time() + 30
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
try:
    s.sendmail("a@example.org", ["b@example.net"], "From: a@example.org\r\nSubject: across\r\n\r\nhi\r\n")
    print("sent")
except (smtplib.SMTPException, OSError) as e:
    print("error", repr(e))
'''


def test_session_open_across_a_reload_starts_upstream_tls(netns, tmp_path):
    """A transparent session copies its listener's upstream target; a
    reload replaces the listener's upstream TLS context and frees the old
    one.  The copy holds its own reference: a session open across the
    reload starts its upstream STARTTLS afterwards (signal 11 in the proxy
    when the copy was a bare pointer)."""
    from tlslib import PKI
    chain, key = PKI(tmp_path / "pki").cert("mta.example.test")
    out = tmp_path / "sink"
    out.mkdir()
    sink = subprocess.Popen(netns.cmd(sys.executable, "-c", SINK_TLS, str(out), MTA, chain, key),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    m = cl = None
    try:
        assert mwlib.wait_until(lambda: (tmp_path / "sink.ready").exists(), 15), sink.stderr.read1()
        port = mwlib.free_port()
        netns.nft(REDIRECT % {"client": CLIENT, "mta": MTA, "port": port})
        m = NsMailwarden(netns, tmp_path / "mw", opts=[("listener.tp.transparent", "yes"),
                                                       ("listener.tp.upstream_tls", "opportunistic")],
                         listeners=[("tp", "127.0.0.1:%d" % port, "%s:26" % MTA, None)])
        m.start(ready=False)
        assert mwlib.wait_until(lambda: "proxy ready" in m.stderr_text(), 15), m.stderr_tail()
        go = str(tmp_path / "go")
        cl = subprocess.Popen(netns.cmd(sys.executable, "-c", CLIENT_PAUSED, go, CLIENT, MTA),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert mwlib.wait_until(lambda: os.path.exists(go + ".ehlo"), 15), m.stderr_tail()
        m.signal(signal.SIGHUP)
        assert mwlib.wait_until(lambda: "config reloaded (from the master)" in m.stderr_text(), 20), \
            m.stderr_tail()
        time.sleep(0.5)         # the event loop takes the config (and its TLS contexts) after that line
        open(go, "w").close()
        o, e = cl.communicate(timeout=60)
        cl = None
        err = m.stderr_text()
        assert "killed by signal" not in err and "AddressSanitizer" not in err, err[-4000:]
        assert o.rstrip().endswith("sent"), o + e + m.stderr_tail(40)
        msgs = sorted(out.iterdir())
        assert len(msgs) == 1
        assert msgs[0].read_bytes().startswith(b"X-TLS: True\r\n")   # it went over the upstream TLS
    finally:
        if cl is not None:
            cl.kill()
            cl.wait()
        sink.send_signal(signal.SIGTERM)
        try:
            sink.wait(10)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait()
        sink.stderr.close()
        if m is not None and m.proc is not None:
            rc = m.stop()
            left = m.leftovers()
            m.kill()
            assert rc == 0 and left == [], "status %r, left %r\n%s" % (rc, left, m.stderr_tail())


def test_upstream_tls_verifies_each_destination_against_its_own_address(netns, tmp_path):
    """upstream_tls_ca_file on a transparent listener: each intercepted
    connection goes to its original destination, but its certificate was
    checked against the host of `upstream =` (only the probe's target,
    127.0.0.4 here) and the client got 451 for ever.  Now against the
    destination's own address (127.0.0.2, in the certificate's IP
    entries); a certificate without it still fails."""
    from tlslib import PKI
    pki = PKI(tmp_path / "pki")
    out = tmp_path / "sink"
    out.mkdir()
    port = mwlib.free_port()
    netns.nft(REDIRECT % {"client": CLIENT, "mta": MTA, "port": port})

    def run(cert_ips, tag):
        chain, key = pki.cert_dated("mta.example.test", -1, 30, ips=cert_ips)
        (tmp_path / "sink.ready").unlink(missing_ok=True)
        sink = subprocess.Popen(netns.cmd(sys.executable, "-c", SINK_TLS, str(out), MTA, chain, key),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        m = None
        try:
            assert mwlib.wait_until(lambda: (tmp_path / "sink.ready").exists(), 15), sink.stderr.read1()
            m = NsMailwarden(netns, tmp_path / ("mw" + tag),
                             opts=[("listener.tp.transparent", "yes"),
                                   ("listener.tp.upstream_tls", "required"),
                                   ("listener.tp.upstream_tls_ca_file", pki.ca)],
                             listeners=[("tp", "127.0.0.1:%d" % port, "127.0.0.4:26", None)])
            m.start(ready=False)
            assert mwlib.wait_until(lambda: "proxy ready" in m.stderr_text(), 15), m.stderr_tail()
            r = swaks(netns, 25, "--header", "Subject: " + tag)
            return r, m.stderr_text()
        finally:
            sink.send_signal(signal.SIGTERM)
            try:
                sink.wait(10)
            except subprocess.TimeoutExpired:
                sink.kill()
                sink.wait()
            sink.stderr.close()
            if m is not None and m.proc is not None:
                m.stop()
                m.kill()

    r, err = run([MTA], "own-address")
    assert r.returncode == 0 and len(list(out.iterdir())) == 1, (r.stdout[-1500:], err[-3000:])
    assert ("upstream=%s:25 TLS" % MTA) in err and " verified" in err
    assert list(out.iterdir())[0].read_bytes().startswith(b"X-TLS: True\r\n")
    r, err = run(["127.0.0.4"], "other-address")       # the probe target's: not this destination's
    assert r.returncode != 0 and len(list(out.iterdir())) == 1, r.stdout[-1500:]
    assert "certificate verify failed" in err, err[-3000:]
