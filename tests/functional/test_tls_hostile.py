"""Hostile TLS and AUTH clients (issue 3's area, hardening audit): a TLS
handshake that never ends or trickles, renegotiation, STARTTLS misuse,
plaintext after the handshake began, a connection torn down in the middle
of DATA, close_notify, and AUTH abuse (oversized lines, bad base64,
cancel, password guessing, credentials in the logs)."""

import base64
import os
import socket
import ssl
import struct
import subprocess
import time

import pytest

import mwlib
from mwlib import SMTPClient, make_msg, wait_until
from tlslib import PKI, TLSUpstream, listener_tls_opts, starttls

USERS = {"alice": "Hostile-s3cret-PW"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def auth_upstream():
    u = TLSUpstream(users=USERS).start()
    yield u
    u.stop()


def mw_tls(mw_factory, up, pki, mode="starttls", extra=(), opts=(), auth=False):
    chain, key = pki.cert("mx.example.test")
    listen = "127.0.0.1:%d" % mwlib.free_port()
    o = listener_tls_opts(chain, key, mode=mode, name="tls", extra=extra) + list(opts)
    if auth:
        o.append(("listener.tls.auth", "relay"))
    m = mw_factory(up, opts=o, listeners=[("tls", listen, up.addr, None)], ready=(mode != "implicit"))
    if mode == "implicit":
        ctx = pki.client_context()

        def up_():
            try:
                with socket.create_connection(("127.0.0.1", m.port), timeout=2) as s:
                    with ctx.wrap_socket(s, server_hostname="mx.example.test") as t:
                        return t.recv(100).startswith(b"220")
            except OSError:
                return False
        assert wait_until(up_, 10), m.stderr_tail()
    return m


def client_hello(pki):
    """The bytes of a real ClientHello (Python's ssl, TLS 1.2 and 1.3)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = pki.client_context().wrap_bio(inc, out, server_hostname="mx.example.test")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def b64(s):
    return base64.b64encode(s.encode()).decode()


def tls_client(m, pki):
    c = m.client()
    c.ehlo()
    starttls(c, pki.client_context())
    c.ehlo()
    return c


# ---- the handshake ---------------------------------------------------------

def test_trickled_client_hello_meets_a_handshake_deadline(mw_factory, upstream, pki):
    """A ClientHello sent one byte at a time used to push the deadline back
    with every byte: the handshake now has one deadline from its start."""
    m = mw_tls(mw_factory, upstream, pki, opts=[("client_command_timeout", "1500ms")])
    hello = client_hello(pki)
    c = m.client()
    c.ehlo()
    assert c.cmd("STARTTLS").code == 220
    start = time.monotonic()
    closed_after = None
    c.sock.settimeout(0.25)
    for byte in hello[:40]:
        try:
            c.sock.sendall(bytes([byte]))
            if c.sock.recv(100) == b"":
                closed_after = time.monotonic() - start
                break
        except socket.timeout:
            pass
        except OSError:
            closed_after = time.monotonic() - start
            break
    c.close()
    assert closed_after is not None and closed_after < 3.5, closed_after
    assert wait_until(lambda: "timeout in the TLS handshake" in m.stderr_text())


def test_silent_implicit_tls_client_times_out(mw_factory, upstream, pki):
    m = mw_tls(mw_factory, upstream, pki, mode="implicit", opts=[("client_command_timeout", "1s")])
    s = socket.create_connection(("127.0.0.1", m.port), timeout=5)
    start = time.monotonic()
    assert s.recv(100) == b""            # no greeting in clear, closed at the deadline
    assert time.monotonic() - start < 3
    s.close()
    assert wait_until(lambda: "timeout in the TLS handshake" in m.stderr_text())


def test_plaintext_after_handshake_began_fails_it(mw_factory, upstream, pki):
    m = mw_tls(mw_factory, upstream, pki)
    c = m.client()
    c.ehlo()
    assert c.cmd("STARTTLS").code == 220
    c.send(b"MAIL FROM:<a@example.org>\r\n")
    assert c.closed(5)
    assert b"250" not in c.buf
    assert wait_until(lambda: "TLS handshake" in m.stderr_text())
    assert upstream.messages == []


def test_renegotiation_refused(mw_factory, upstream, pki):
    """openssl s_client -tls1_2, then R: the server answers no_renegotiation
    (SSL_OP_NO_RENEGOTIATION): no second handshake, no CPU spent on one."""
    m = mw_tls(mw_factory, upstream, pki)
    script = ("(printf 'EHLO x.example\\n'; sleep 0.7; printf 'R\\n'; sleep 0.7; printf 'NOOP\\n'; sleep 0.5)"
              " | openssl s_client -connect 127.0.0.1:%d -starttls smtp -tls1_2 -crlf -CAfile %s"
              " -servername mx.example.test" % (m.port, pki.ca))
    out = subprocess.run(["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=15).stdout.decode(errors="replace")
    assert "RENEGOTIATING" in out, out
    assert "no renegotiation" in out.split("RENEGOTIATING", 1)[1], out
    assert wait_until(lambda: "disconnect [127.0.0.1]" in m.stderr_text())
    assert m.stderr_text().count("TLSv1.2") == 1           # one handshake only


# ---- STARTTLS misuse -------------------------------------------------------

def test_starttls_misuse(mw_factory, upstream, pki):
    m = mw_tls(mw_factory, upstream, pki)
    c = m.client()
    c.ehlo()
    assert c.cmd("STARTTLS now").code == 501
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("STARTTLS").code == 503
    assert c.cmd("RSET").code == 250
    starttls(c, pki.client_context())
    c.ehlo()
    assert c.cmd("STARTTLS").code == 554
    c.quit()
    imp = mw_tls(mw_factory, upstream, pki, mode="implicit")
    with socket.create_connection(("127.0.0.1", imp.port), timeout=5) as s:
        with pki.client_context().wrap_socket(s, server_hostname="mx.example.test") as t:
            f = t.makefile("rb")
            assert f.readline().startswith(b"220")
            t.sendall(b"EHLO x.example\r\n")
            while f.readline()[3:4] == b"-":
                pass
            t.sendall(b"STARTTLS\r\n")
            assert f.readline().startswith(b"502")


@pytest.mark.parametrize("how", ["reset", "close_notify"])
def test_torn_down_in_the_middle_of_tls_data(mw_factory, upstream, pki, how):
    """A TCP reset, or a TLS alert (close_notify), mid-DATA over TLS: the
    transaction is audited as aborted, nothing reaches the upstream, the
    daemon goes on."""
    m = mw_tls(mw_factory, upstream, pki)
    c = tls_client(m, pki)
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: cut\r\n\r\n" + b"x" * 20000 + b"\r\n")
    time.sleep(0.2)
    if how == "reset":
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    else:
        c.sock.settimeout(3)
        c.sock.unwrap()              # our close_notify, and the server's back
    c.sock.close()
    rec = m.audit(1)[-1]
    assert rec["action"] == "aborted", rec
    assert wait_until(lambda: "in the middle of DATA" in m.stderr_text())
    time.sleep(0.3)
    assert upstream.messages == []
    c = tls_client(m, pki)
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()


def test_close_notify_and_truncation(mw_factory, upstream, pki):
    m = mw_tls(mw_factory, upstream, pki)
    # close_notify, then wait for the server's: it answers and closes
    c = tls_client(m, pki)
    start = time.monotonic()
    c.sock.settimeout(3)
    c.sock.unwrap()
    assert time.monotonic() - start < 2
    c.sock.close()
    # a TLS stream cut without close_notify in the middle of a command
    c = tls_client(m, pki)
    c.send(b"MAIL FROM:<a@exa")
    raw = c.sock.detach()
    socket.socket(fileno=raw).close()
    assert wait_until(lambda: m.stderr_text().count("client disconnected") >= 2, 3), m.stderr_tail()
    c = tls_client(m, pki)
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()


# ---- AUTH ------------------------------------------------------------------

def test_auth_hostile_lines(mw_factory, auth_upstream, pki):
    m = mw_tls(mw_factory, auth_upstream, pki, auth=True)
    c = m.client()
    c.ehlo()
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 530   # before STARTTLS
    starttls(c, pki.client_context())
    c.ehlo()
    # an initial response far longer than the command line limit
    assert c.cmd("AUTH PLAIN " + "QUFB" * 5000).code == 500
    # a continuation far longer: refused, and the exchange is over
    assert c.cmd("AUTH PLAIN").code == 334
    r = c.cmd("QUFB" * 5000)
    assert r.code in (500, 501), r
    assert c.cmd("NOOP").code == 250
    # invalid base64, and the cancel
    assert c.cmd("AUTH PLAIN").code == 334
    assert c.cmd("!!not*base64!!").code == 501
    assert c.cmd("AUTH LOGIN").code == 334
    assert c.cmd("*").code == 501
    assert c.cmd("NOOP").code == 250
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 235
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 503     # twice
    c.quit()
    log = m.stderr_text()
    if os.path.exists(m.audit_path):
        log += open(m.audit_path).read()
    for secret in (USERS["alice"], b64("\0alice\0" + USERS["alice"])):
        assert secret not in log


def test_auth_failures_count_towards_max_errors(mw_factory, auth_upstream, pki):
    """Each password the upstream refuses is an error: a guesser is cut off
    at max_errors instead of trying for ever on one connection."""
    m = mw_tls(mw_factory, auth_upstream, pki, auth=True, opts=[("max_errors", "3")])
    c = tls_client(m, pki)
    codes = []
    for i in range(6):
        try:
            codes.append(c.cmd("AUTH PLAIN " + b64("\0alice\0guess%d" % i)).code)
        except (OSError, mwlib.ProtocolError):
            break
        if codes[-1] == 421:
            break
    assert codes[:2] == [535, 535] and 421 in codes and len(codes) <= 4, codes
    assert c.closed(3)
    assert "too many errors" in m.stderr_text()
    assert "guess" not in m.stderr_text()


def test_auth_limits_hold_end_to_end(mw_factory, auth_upstream, pki, tmp_path):
    """test_authlimits' rules through the proxy: the user a real AUTH set
    is the one rate-limited (ratelimit_user), and greylisting skips an
    authenticated sender but not an anonymous one."""
    m = mw_tls(mw_factory, auth_upstream, pki, auth=True,
               opts=[("filters", "greylist ratelimit"), ("store_path", str(tmp_path / "s.lmdb")),
                     ("ratelimit_user", "1/1h"), ("greylist_delay", "1h")])
    c = tls_client(m, pki)
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code // 100 == 4  # greylisted
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 235
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code // 100 == 4  # 1/1h
    c.quit()
    recs = m.audit(3)
    assert [r["auth_user"] for r in recs] == ["", "alice", "alice"]
    assert recs[2]["action"] == "tempfail", recs[2]
    assert USERS["alice"] not in m.stderr_text() + open(m.audit_path).read()


def test_vrfy_before_starttls_on_a_tls_required_listener(mw_factory, upstream, pki):
    """RFC 3207 4: with TLS required, commands other than NOOP, EHLO,
    STARTTLS and QUIT get 530.  MAIL and AUTH did; VRFY (vrfy = relay) went
    to the upstream in plaintext."""
    m = mw_tls(mw_factory, upstream, pki, extra=[("tls_required", "yes")], opts=[("vrfy", "relay")])
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 530
    r = c.cmd("VRFY postmaster")
    assert r.code == 530, (r.code, r.text)
    starttls(c, pki.client_context())
    c.ehlo()
    assert c.cmd("VRFY postmaster").code // 100 == 2
    c.quit()


def test_auth_user_is_the_one_the_upstream_reads(mw_factory, auth_upstream, pki, tmp_path):
    """The initial response was the raw rest of the line: "AUTH PLAIN
    <2 spaces>cred" logged in at the upstream, which splits on blanks,
    while mailwarden read " cred" and found no user, so the session went
    past ratelimit_user and unnamed in the audit.  The line relayed is now
    rebuilt from the one token read; a response that names nobody is
    refused here (501), and a 235 to an AUTH whose user could not be read
    is not taken (454, the upstream session dropped)."""
    m = mw_tls(mw_factory, auth_upstream, pki, auth=True,
               opts=[("filters", "ratelimit"), ("store_path", str(tmp_path / "s.lmdb")),
                     ("ratelimit_user", "1/1h")])
    cred = b64("\0alice\0" + USERS["alice"])
    c = tls_client(m, pki)
    assert c.cmd("AUTH PLAIN " + cred).code == 235
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    c = tls_client(m, pki)
    assert c.cmd("AUTH PLAIN  " + cred).code == 235          # two spaces: the same user
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code // 100 == 4
    c.quit()
    assert [(r["auth_user"], r["action"]) for r in m.audit(2)] == [("alice", "accept"), ("alice", "tempfail")]
    c = tls_client(m, pki)
    # an '=' inside: OpenSSL decodes on past it, a server may stop there
    odd = cred[:4] + "=" + cred[5:]
    assert c.cmd("AUTH PLAIN " + odd).code == 501
    assert c.cmd("AUTH PLAIN " + cred + " x").code == 501    # more than one token
    assert c.cmd("AUTH LOGIN").code == 334
    assert c.cmd(b64("alice")[:2] + "=" + b64("alice")[3:]).code == 501   # an inner "=" in the user
    assert c.cmd("NOOP").code == 250
    c.quit()
