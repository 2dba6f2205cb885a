"""PROXY protocol v1/v2 on listeners (issue 3), behind a real HAProxy
(send-proxy / send-proxy-v2): the address in the header is the client
address everywhere (audit, XCLIENT); the header is accepted only from
proxy_protocol_from; a bad or missing header ends the connection."""

import os
import socket
import struct
import subprocess
import time

import pytest

import mwlib
from mwlib import RawUpstream, SMTPClient, make_msg, wait_until

HAPROXY = "/usr/sbin/haproxy"
CLIENT_ADDR = "127.0.0.2"


class HAProxy:
    def __init__(self, tmpdir, backend_port, send_proxy="send-proxy"):
        self.dir = str(tmpdir)
        os.makedirs(self.dir, exist_ok=True)
        self.port = mwlib.free_port()
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write("""global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend smtp
    bind 127.0.0.1:%d
    default_backend mw
backend mw
    server mw 127.0.0.1:%d %s
""" % (self.port, backend_port, send_proxy))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        if not wait_until(lambda: mwlib._port_open("127.0.0.1", self.port), 10):
            self.stop()     # the caller gets no haproxy to stop
            raise AssertionError("haproxy did not start")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def haproxy(tmp_path):
    made = []

    def make(port, send_proxy):
        h = HAProxy(tmp_path / ("hap%d" % len(made)), port, send_proxy).start()
        made.append(h)
        return h
    yield make
    for h in made:
        h.stop()


def mw_pp(mw_factory, up, frm="127.0.0.1/32"):
    listen = "127.0.0.1:%d" % mwlib.free_port()
    return mw_factory(up, opts=[("listener.pp.proxy_protocol", "yes"),
                                ("listener.pp.proxy_protocol_from", frm)],
                      listeners=[("pp", listen, up.addr, None)], ready=False)


def connect_from(port, src=CLIENT_ADDR, timeout=10):
    """An SMTPClient whose socket is bound to src first."""
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    c = SMTPClient.__new__(SMTPClient)
    c.sock = s
    c.buf = b""
    c.eof = False
    c.timeout = timeout
    c.local_port = s.getsockname()[1]
    return c


def wait_listening(port):
    assert wait_until(lambda: mwlib._port_open("127.0.0.1", port), 10)
    time.sleep(0.2)


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_client_address_from_haproxy(mw_factory, upstream, haproxy, send_proxy):
    m = mw_pp(mw_factory, upstream)
    wait_listening(m.port)
    h = haproxy(m.port, send_proxy)
    c = connect_from(h.port)
    assert c.reply().code == 220
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    rec = m.audit(1)[-1]
    assert rec["client_ip"] == CLIENT_ADDR
    assert rec["client_port"] == c.local_port
    assert "connect from [%s]:%d" % (CLIENT_ADDR, c.local_port) in m.stderr_text()


def test_header_only_from_configured_networks(mw_factory, upstream):
    m = mw_pp(mw_factory, upstream, frm="127.0.0.1/32")
    wait_listening(m.port)
    # 127.0.0.2 is not a trusted balancer: refused before any header is read
    c = connect_from(m.port, src=CLIENT_ADDR)
    c.send(b"PROXY TCP4 192.0.2.9 127.0.0.1 1234 25\r\n")
    r = c.reply()
    assert r.code == 421
    assert c.closed(3)
    assert "may not send PROXY headers" in m.stderr_text()


def test_handwritten_headers(mw_factory, upstream):
    m = mw_pp(mw_factory, upstream)
    wait_listening(m.port)
    # v1 with the header cut in two writes
    c = connect_from(m.port, src="127.0.0.1")
    c.send(b"PROXY TCP4 127.0.0.9 127.0.0.1 4")
    time.sleep(0.1)
    c.send(b"444 25\r\n")
    assert c.reply().code == 220
    c.ehlo()
    c.transaction("a@example.org", ["b@example.net"], make_msg())
    c.quit()
    rec = m.audit(1)[-1]
    assert rec["client_ip"] == "127.0.0.9" and rec["client_port"] == 4444
    # v2 LOCAL (a health check): the socket's own address stays
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    c = connect_from(m.port, src="127.0.0.1")
    c.send(sig + b"\x20\x00\x00\x00")
    assert c.reply().code == 220
    c.quit()
    # v2 TCP6
    c = connect_from(m.port, src="127.0.0.1")
    addr = socket.inet_pton(socket.AF_INET6, "2001:db8::7") + socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    c.send(sig + b"\x21\x21" + struct.pack("!H", 36) + addr + struct.pack("!HH", 5555, 25))
    assert c.reply().code == 220
    c.ehlo()
    c.transaction("a@example.org", ["b@example.net"], make_msg())
    c.quit()
    rec = m.audit(2)[-1]
    assert rec["client_ip"] == "2001:db8::7" and rec["client_port"] == 5555
    # no header at all: the connection ends without a greeting
    c = connect_from(m.port, src="127.0.0.1")
    c.send(b"EHLO no.header.example\r\n")
    assert c.closed(3)
    assert b"220" not in c.buf


def test_proxied_address_goes_to_xclient(mw_factory, raw_upstream):
    up = raw_upstream(caps=RawUpstream.CAPS + [b"XCLIENT ADDR PORT NAME HELO PROTO LOGIN"],
                      script={"OTHER": b"220 raw.upstream ESMTP\r\n"})
    m = mw_pp(mw_factory, up)
    wait_listening(m.port)
    c = connect_from(m.port, src="127.0.0.1")
    c.send(b"PROXY TCP4 127.0.0.77 127.0.0.1 4321 25\r\n")
    assert c.reply().code == 220
    c.ehlo("client.example.org")
    c.transaction("a@example.org", ["b@example.net"], make_msg())
    c.quit()
    wait_until(lambda: up.messages, 3)
    lines = [l for sess in up.sessions for l in sess]
    xc = [l for l in lines if l.startswith(b"XCLIENT")]
    assert xc and b"ADDR=127.0.0.77" in xc[0] and b"PORT=4321" in xc[0] and b"HELO=client.example.org" in xc[0], lines
    # after XCLIENT, the EHLO speaks for the client
    assert b"EHLO client.example.org" in lines


def test_xclient_values_are_xtext(mw_factory, raw_upstream):
    """XCLIENT attribute values go as xtext (RFC 3461: '+', '=' and
    non-printables as +HH), IPv6 addresses with the IPV6: prefix."""
    up = raw_upstream(caps=RawUpstream.CAPS + [b"XCLIENT ADDR PORT NAME HELO PROTO LOGIN"],
                      script={"OTHER": b"220 raw.upstream ESMTP\r\n"})
    m = mw_pp(mw_factory, up)
    wait_listening(m.port)
    c = connect_from(m.port, src="127.0.0.1")
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addr = socket.inet_pton(socket.AF_INET6, "2001:db8::7") + socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    c.send(sig + b"\x21\x21" + struct.pack("!H", 36) + addr + struct.pack("!HH", 5555, 25))
    assert c.reply().code == 220
    c.ehlo("we+ird=name")
    c.transaction("a@example.org", ["b@example.net"], make_msg())
    c.quit()
    wait_until(lambda: up.messages, 3)
    xc = [l for sess in up.sessions for l in sess if l.startswith(b"XCLIENT")]
    assert xc and b"ADDR=IPV6:2001:db8::7" in xc[0] and b"HELO=we+2Bird+3Dname" in xc[0], xc
