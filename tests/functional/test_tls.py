"""TLS on both legs (issue 3): STARTTLS and implicit TLS towards clients,
certificate selection by SNI, versions and ciphers, plaintext injection
after STARTTLS, TLS before MAIL, STARTTLS towards the upstream with
verification, and what the audit log records."""

import smtplib
import socket
import ssl
import subprocess
import time

import pytest

import mwlib
from mwlib import SMTPClient, make_msg, wait_until
from tlslib import PKI, TLSUpstream, listener_tls_opts, starttls


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_upstream():
    made = []

    def make(**kw):
        u = TLSUpstream(**kw).start()
        made.append(u)
        return u
    yield make
    for u in made:
        u.stop()


def mw_tls(mw_factory, upstream, pki, mode="starttls", extra=(), opts=(), names=("mx.example.test",), **kw):
    chains, keys = zip(*[pki.cert(n) for n in names])
    listen = "127.0.0.1:%d" % mwlib.free_port()
    o = listener_tls_opts(" ".join(chains), " ".join(keys), mode=mode, name="tls", extra=extra) + list(opts)
    return mw_factory(upstream, opts=o, listeners=[("tls", listen, upstream.addr, None)],
                      ready=(mode != "implicit"), **kw)


def test_starttls_offered_only_when_configured(mw_factory, upstream, pki):
    plain = mw_factory(upstream)
    c = plain.client()
    assert "STARTTLS" not in c.ehlo().text.upper()
    assert c.cmd("STARTTLS").code == 502
    c.quit()

    m = mw_tls(mw_factory, upstream, pki)
    c = m.client()
    ehlo = c.ehlo().text.upper()
    assert "STARTTLS" in ehlo and "PIPELINING" in ehlo
    starttls(c, pki.client_context())
    # the session starts again: MAIL needs a new EHLO
    assert c.cmd("MAIL FROM:<a@example.org>").code == 503
    ehlo = c.ehlo().text.upper()
    assert "STARTTLS" not in ehlo          # not offered twice
    assert c.cmd("STARTTLS").code == 554
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    upstream.wait_messages(1)
    rec = m.audit(1)[-1]
    assert rec["protocol"] == "ESMTPS"
    assert rec["tls"].startswith("TLSv1.3 ")


def test_smtplib_and_swaks_deliver_over_starttls(mw_factory, upstream, pki):
    m = mw_tls(mw_factory, upstream, pki)
    with smtplib.SMTP("127.0.0.1", m.port, timeout=10) as s:
        s.starttls(context=pki.client_context())
        s.sendmail("a@example.org", ["b@example.net"], make_msg(subject="via smtplib"))
    r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(m.port), "--tls",
                        "--from", "c@example.org", "--to", "d@example.net",
                        "--header", "Subject: via swaks", "--timeout", "10"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    msgs = upstream.wait_messages(2)
    assert len(msgs) == 2
    recs = m.audit(2)
    assert all(x["protocol"] == "ESMTPS" and x["tls"] for x in recs)


def test_pipelined_plaintext_after_starttls_is_discarded(mw_factory, upstream, pki):
    """CVE-2011-0411 class: a command sent in plaintext in the same packet
    as STARTTLS must not be executed inside the TLS session."""
    m = mw_tls(mw_factory, upstream, pki)
    c = m.client()
    c.ehlo()
    c.send(b"STARTTLS\r\nEHLO injected.example\r\nMAIL FROM:<injected@example.org>\r\n")
    assert c.reply().code == 220
    c.sock = pki.client_context().wrap_socket(c.sock, server_hostname="mx.example.test")
    # if the injected commands had run, their replies would come first
    r = c.cmd("NOOP")
    assert r.code == 250 and r.lines == ["2.0.0 Ok"], r
    assert c.cmd("MAIL FROM:<a@example.org>").code == 503     # no EHLO in this session
    c.quit()
    assert "discarded (command injection)" in m.stderr_text()


def test_injection_with_openssl_s_client(mw_factory, upstream, pki):
    """A stock client, openssl s_client -starttls smtp, verifying the chain
    against the test CA: the commands it writes after STARTTLS go through
    TLS and are answered (the plaintext-injection case itself, which
    s_client cannot produce, is the test above, on a raw socket)."""
    m = mw_tls(mw_factory, upstream, pki)
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", "127.0.0.1:%d" % m.port,
                        "-servername", "mx.example.test", "-CAfile", pki.ca, "-verify_return_error",
                        "-quiet"],
                       input="EHLO c.example\r\nMAIL FROM:<x@example.org>\r\nQUIT\r\n",
                       capture_output=True, text=True, timeout=30)
    out = r.stdout
    assert "250 2.1.0" in out or "250 " in out, out + r.stderr
    assert "221 2.0.0" in out


def test_implicit_tls_listener(mw_factory, upstream, pki):
    m = mw_tls(mw_factory, upstream, pki, mode="implicit")
    ctx = pki.client_context()

    def up():
        try:
            with smtplib.SMTP_SSL("127.0.0.1", m.port, timeout=3, context=ctx) as s:
                return s.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False
    assert wait_until(up, 10), m.stderr_tail()
    with smtplib.SMTP_SSL("127.0.0.1", m.port, timeout=10, context=ctx) as s:
        code, text = s.ehlo()
        assert b"STARTTLS" not in text.upper()
        s.sendmail("a@example.org", ["b@example.net"], make_msg(subject="implicit"))
    upstream.wait_messages(1)
    assert m.audit(1)[-1]["protocol"] == "ESMTPS"
    # a plaintext client gets no greeting in clear
    c = SMTPClient(m.port, greeting=False, timeout=2)
    c.send(b"EHLO plain.example\r\n")
    assert c.closed(5)
    assert b"220" not in c.buf and b"250" not in c.buf
    c.close()


def test_tls_required_before_mail(mw_factory, upstream, pki):
    m = mw_tls(mw_factory, upstream, pki, extra=[("tls_required", "yes")])
    c = m.client()
    c.ehlo()
    r = c.cmd("MAIL FROM:<a@example.org>")
    assert r.code == 530 and "5.7.0" in r.text
    starttls(c, pki.client_context())
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    assert len(upstream.wait_messages(1)) == 1


def test_tls_required_gates_every_command(mw_factory, upstream, pki):
    """RFC 3207 4: with TLS required, every command but those that carry
    and change nothing gets 530 5.7.0 before STARTTLS.  It was checked in
    MAIL, AUTH and VRFY only; RCPT, DATA, BDAT, EXPN, ETRN, HELP and the
    others got their usual answers in plaintext."""
    m = mw_tls(mw_factory, upstream, pki, extra=[("tls_required", "yes"), ("auth", "relay")])
    c = m.client()
    assert c.cmd("HELO client.example").code == 250
    assert c.ehlo().code == 250
    for line in ("NOOP", "RSET"):
        assert c.cmd(line).code == 250, line
    for line in ("MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>", "DATA", "VRFY postmaster",
                 "EXPN staff", "ETRN example.org", "TURN", "HELP", "AUTH PLAIN",
                 "XCLIENT ADDR=192.0.2.1", "XFORWARD ADDR=192.0.2.1"):
        r = c.cmd(line)
        assert (r.code, r.first.split()[0]) == (530, "5.7.0"), (line, r)
    # a chunk is read and refused after it, never taken as commands
    c.send(b"BDAT 10\r\nSTARTTLS\r\n")
    r = c.reply()
    assert (r.code, r.first.split()[0]) == (530, "5.7.0"), r
    assert c.cmd("NOOP").code == 250
    assert c.cmd("XYZZY").code == 500                  # unknown stays unknown
    starttls(c, pki.client_context())
    c.ehlo()
    assert c.cmd("HELP").code == 214
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    assert len(upstream.wait_messages(1)) == 1


def test_sni_picks_the_certificate(mw_factory, upstream, pki):
    m = mw_tls(mw_factory, upstream, pki, names=("mx.example.test", "other.example.test"))
    for name in ("mx.example.test", "other.example.test"):
        c = m.client()
        c.ehlo()
        starttls(c, pki.client_context(), server_hostname=name)   # verifies the name too
        cert = c.sock.getpeercert()
        assert dict(x[0] for x in cert["subject"])["commonName"] == name
        c.quit()
    # no SNI (or an unknown name): the first certificate
    c = m.client()
    c.ehlo()
    ctx = pki.client_context(verify=False)
    starttls(c, ctx, server_hostname=None)
    der = c.sock.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem, capture_output=True, text=True).stdout
    assert "mx.example.test" in out
    c.quit()


def test_min_version_and_ciphers(mw_factory, upstream, pki):
    m = mw_tls(mw_factory, upstream, pki, opts=[("tls_min_version", "TLSv1.3")])
    c = m.client()
    c.ehlo()
    with pytest.raises((ssl.SSLError, OSError)):
        starttls(c, pki.client_context(max_version=ssl.TLSVersion.TLSv1_2))
        c.cmd("EHLO x")
    c.close()

    m2 = mw_tls(mw_factory, upstream, pki, opts=[("tls_ciphers", "ECDHE-RSA-AES128-GCM-SHA256")])
    c = m2.client()
    c.ehlo()
    starttls(c, pki.client_context(max_version=ssl.TLSVersion.TLSv1_2))
    assert c.sock.version() == "TLSv1.2"
    assert c.sock.cipher()[0] == "ECDHE-RSA-AES128-GCM-SHA256"
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    rec = m2.audit(1)[-1]
    assert rec["tls"].startswith("TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256")
    # a client that offers only ciphers outside the list is refused
    c = m2.client()
    c.ehlo()
    with pytest.raises((ssl.SSLError, OSError)):
        starttls(c, pki.client_context(max_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES256-GCM-SHA384"))
        c.cmd("EHLO x")
    c.close()


def test_bad_certificate_config_is_refused(tmp_path, pki):
    chain, _ = pki.cert("mx.example.test")
    _, other_key = pki.cert("other.example.test")
    r = subprocess.run([mwlib.MW_BIN, "-t", "-o", "listener.a.listen=127.0.0.1:2525",
                        "-o", "listener.a.upstream=127.0.0.1:2526", "-o", "listener.a.tls=starttls",
                        "-o", "listener.a.tls_cert=" + chain, "-o", "listener.a.tls_key=" + other_key],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "tls_key" in r.stderr
    r = subprocess.run([mwlib.MW_BIN, "-t", "-o", "listener.a.listen=127.0.0.1:2525",
                        "-o", "listener.a.upstream=127.0.0.1:2526", "-o", "listener.a.tls=starttls"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "tls_cert" in r.stderr


def test_large_message_over_tls(mw_factory, upstream, pki):
    m = mw_tls(mw_factory, upstream, pki)
    body = ("x" * 70 + "\r\n") * 60000          # ~4 MB, many TLS records both ways
    msg = make_msg(body=body)
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.starttls(context=pki.client_context())
        s.sendmail("a@example.org", ["b@example.net"], msg)
    got = upstream.wait_messages(1, timeout=10)
    assert got and got[0].content.endswith(body.encode()[-1000:])


# --- the upstream leg ---------------------------------------------------------

def up_opts(mode, ca=None, name=None):
    o = [("listener.tls.upstream_tls", mode)]
    if ca:
        o.append(("listener.tls.upstream_tls_ca_file", ca))
    if name:
        o.append(("listener.tls.upstream_tls_name", name))
    return o


def mw_up(mw_factory, up, opts):
    listen = "127.0.0.1:%d" % mwlib.free_port()
    return mw_factory(up, opts=opts, listeners=[("tls", listen, up.addr, None)])


def test_upstream_tls_opportunistic_and_verified(mw_factory, tls_upstream, pki):
    up = tls_upstream(tls_context=pki.server_context("upstream.example.test"))
    m = mw_up(mw_factory, up, up_opts("opportunistic"))
    c = m.client()
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    up.wait_messages(1)
    assert up.session_tls[-1] is not None            # the message travelled in TLS

    m2 = mw_up(mw_factory, up, up_opts("required", ca=pki.ca, name="upstream.example.test"))
    c = m2.client()
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    up.wait_messages(2)
    assert up.session_tls[-1] is not None
    assert "verified" in m2.stderr_text()


def test_upstream_tls_verification_failure(mw_factory, tls_upstream, pki):
    up = tls_upstream(tls_context=pki.server_context("upstream.example.test"))
    m = mw_up(mw_factory, up, up_opts("required", ca=pki.ca, name="wrong.example.test"))
    c = m.client()
    c.ehlo()
    r = c.cmd("MAIL FROM:<a@example.org>")
    assert r.code == 451
    c.quit()
    assert up.messages == []
    assert "certificate verify failed" in m.stderr_text()


def test_upstream_tls_required_but_not_offered(mw_factory, upstream, pki):
    m = mw_up(mw_factory, upstream, up_opts("required"))
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 451
    c.quit()
    assert upstream.mails == []
    # opportunistic: plaintext when the upstream has no STARTTLS
    m2 = mw_up(mw_factory, upstream, up_opts("opportunistic"))
    c = m2.client()
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    assert len(upstream.wait_messages(1)) == 1


def test_upstream_response_injection_is_dropped(mw_factory, pki, tmp_path):
    """An upstream (or a man in the middle) that sends a reply in plaintext
    right behind its 220 to STARTTLS: those bytes must never be read as a
    reply inside the TLS session."""
    import threading
    ctx = pki.server_context("upstream.example.test")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    seen = []
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                s, _ = srv.accept()
            except socket.timeout:
                continue
            threading.Thread(target=session, args=(s,), daemon=True).start()

    def session(s):
        s.settimeout(10)
        f = s.makefile("rb")
        s.sendall(b"220 up ESMTP\r\n")
        try:
            line = f.readline()
            s.sendall(b"250-up\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
            line = f.readline()
            if line.strip().upper() != b"STARTTLS":        # the capability probe
                s.sendall(b"221 bye\r\n")
                s.close()
                return
            # 220 and, in the same write, a forged reply to the next command
            s.sendall(b"220 go ahead\r\n554 5.7.1 injected\r\n")
            t = ctx.wrap_socket(s, server_side=True)
            tf = t.makefile("rb")
            while True:
                line = tf.readline()
                if not line:
                    break
                seen.append(line)
                v = line[:4].upper()
                if v == b"EHLO":
                    t.sendall(b"250-up\r\n250 PIPELINING\r\n")
                elif v == b"QUIT":
                    t.sendall(b"221 bye\r\n")
                    break
                else:
                    t.sendall(b"250 2.0.0 ok\r\n")
        except (OSError, ssl.SSLError):
            pass
        finally:
            s.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        listen = "127.0.0.1:%d" % mwlib.free_port()
        m = mw_factory("127.0.0.1:%d" % port, opts=up_opts("opportunistic"),
                       listeners=[("tls", listen, "127.0.0.1:%d" % port, None)])
        c = m.client()
        c.ehlo()
        r = c.cmd("MAIL FROM:<a@example.org>")
        assert r.code == 250, r              # the upstream's answer inside TLS, not the injected 554
        c.quit()
        assert any(l.startswith(b"MAIL FROM") for l in seen)
        assert "response injection" in m.stderr_text()
    finally:
        stop.set()
        th.join(2)
        srv.close()


# --- session 19: review rv-tls ------------------------------------------------

EHLO_REFUSED = {"EHLO": b"502 5.5.2 Error: command not recognized\r\n"}


def test_upstream_tls_required_survives_a_refused_ehlo(mw_factory, raw_upstream):
    """upstream_tls = required and an upstream (or whoever is on the path to
    it) that answers 5xx to our EHLO: the HELO fallback went on without
    STARTTLS and the message went in plaintext, without a log line.  Now
    451, as when STARTTLS is not offered; opportunistic still relays after
    HELO, and says so."""
    up = raw_upstream(script=EHLO_REFUSED, caps=mwlib.RawUpstream.CAPS + [b"STARTTLS"])
    m = mw_up(mw_factory, up, up_opts("required"))
    c = m.client()
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject="must not go in clear"))
    c.quit()
    assert r["mail"].code == 451, r
    assert up.messages == [] and not any(l.startswith(b"MAIL") for s in up.sessions for l in s)
    assert wait_until(lambda: "refused our EHLO: no STARTTLS after HELO, and upstream_tls = required"
                      in m.stderr_text(), 3), m.stderr_tail(30)

    m2 = mw_up(mw_factory, up, up_opts("opportunistic"))
    c = m2.client()
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    assert len(up.messages) == 1
    assert "refused our EHLO: going on after HELO without TLS" in m2.stderr_text()


@pytest.mark.parametrize("offer", [b"XCLIENT NAME ADDR PORT PROTO HELO LOGIN", b"XFORWARD NAME ADDR PORT PROTO HELO"])
def test_refused_ehlo_relays_without_xclient_and_warns(mw_factory, raw_upstream, offer):
    """The same HELO fallback, TLS aside, with upstream_xclient = yes (the
    default) and an MTA that refuses our EHLO.  Session 19's tls19 made it
    451 (the MTA judges mailwarden's address, not the client's), but the
    man in the middle it was to stop gets the same by deleting the
    250-XCLIENT line instead (test_faults.py
    test_xclient_not_offered_relays_and_warns_once), and every HELO-only
    next hop lost all its mail.  One policy for both: "when offered", so
    the message is relayed after HELO, and a WARNING says the client was
    not named.  upstream_xclient = no relays without that line."""
    up = raw_upstream(script=EHLO_REFUSED, caps=mwlib.RawUpstream.CAPS + [offer])
    m = mw_factory(up)
    c = m.client()
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"], make_msg())
    c.quit()
    assert r["final"].code == 250, r
    assert len(up.messages) == 1
    assert not any(l.startswith((b"XCLIENT", b"XFORWARD")) for s in up.sessions for l in s)
    warned = "refused our EHLO, and HELO has no XCLIENT/XFORWARD: its sessions go on under mailwarden's address"
    assert wait_until(lambda: warned in m.stderr_text(), 3), m.stderr_tail(30)

    m2 = mw_up(mw_factory, up, [("listener.tls.upstream_xclient", "no")])
    c = m2.client()
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    assert len(up.messages) == 2
    assert "HELO has no XCLIENT" not in m2.stderr_text()


def test_upstream_tls_handshake_timeout_is_named(mw_factory, raw_upstream):
    """An upstream that says 220 to STARTTLS and then nothing: the
    handshake's deadline (upstream_connect_timeout) was logged as
    "timeout waiting for reply"."""
    def stall(up, st):
        st["sock"].sendall(b"220 2.0.0 go ahead\r\n")
        st["silent"] = True
        return b""
    up = raw_upstream(script={"OTHER": stall}, caps=mwlib.RawUpstream.CAPS + [b"STARTTLS"])
    m = mw_up(mw_factory, up, up_opts("opportunistic") + [("upstream_connect_timeout", "1s")])
    c = m.client()
    c.ehlo()
    t0 = time.monotonic()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 451
    assert time.monotonic() - t0 < 5
    c.quit()
    err = m.stderr_text()
    assert "timeout in the TLS handshake" in err and "timeout waiting for reply" not in err, m.stderr_tail(20)


def test_upstream_sni_is_a_name_never_an_address(mw_factory, tls_upstream, pki):
    """upstream = 127.0.0.1:PORT without upstream_tls_name: no SNI (RFC
    6066 3: no IP literal in HostName; it went as "127.0.0.1"), and the
    certificate is still verified, against its IP address entry.  With
    upstream_tls_name the name goes as SNI."""
    names = []
    ctx = pki.server_context("upstream.example.test")
    ctx.sni_callback = lambda sslobj, name, c: names.append(name)
    up = tls_upstream(tls_context=ctx)
    m = mw_up(mw_factory, up, up_opts("required", ca=pki.ca))
    c = m.client()
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250, m.stderr_tail(20)
    c.quit()
    assert names == [None], names
    assert up.session_tls[-1] is not None and " verified" in m.stderr_text()

    m2 = mw_up(mw_factory, up, up_opts("required", ca=pki.ca, name="upstream.example.test"))
    c = m2.client()
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    assert names == [None, "upstream.example.test"], names


def _t(chain, key):
    return subprocess.run([mwlib.MW_BIN, "-t", "--no-filters", "-o", "listener.x.listen=127.0.0.1:%d" % mwlib.free_port(),
                           "-o", "listener.x.upstream=127.0.0.1:9", "-o", "listener.x.tls=starttls",
                           "-o", "listener.x.tls_cert=" + chain, "-o", "listener.x.tls_key=" + key],
                          capture_output=True, text=True, timeout=30)


def test_expired_certificate_is_warned_of(mw_factory, upstream, pki, tmp_path):
    """An expired certificate (or one expiring within 14 days, or not valid
    yet): `mailwarden -t` passed it without a word, and a reload put it in
    service silently (a renewal that copied an old file in place).  Now -t
    warns (and still says OK: the certificate is served, as Postfix does,
    for the senders that do not verify), and so do the start and the
    reload, once each."""
    import shutil
    import signal
    expired = pki.cert_dated("mx.example.test", -10, -1)
    soon = pki.cert_dated("mx.example.test", -10, 5.5)   # "5 days", whatever the seconds
    early = pki.cert_dated("mx.example.test", 2, 30)
    good = pki.cert("mx.example.test")
    r = _t(*expired)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r
    assert "warning: listener x: tls_cert %s: expired on " % expired[0] in r.stderr, r.stderr
    r = _t(*soon)
    assert r.returncode == 0 and "warning: listener x: tls_cert %s: expires in 5 days, on " % soon[0] in r.stderr, r
    r = _t(*early)
    assert r.returncode == 0 and "tls_cert %s: not valid before " % early[0] in r.stderr, r
    r = _t(*good)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr

    chain, key = str(tmp_path / "chain.pem"), str(tmp_path / "key.pem")
    shutil.copy(expired[0], chain)
    shutil.copy(expired[1], key)
    listen = "127.0.0.1:%d" % mwlib.free_port()
    m = mw_factory(upstream, opts=listener_tls_opts(chain, key, name="tls") + [("proxy_threads", "2")],
                   listeners=[("tls", listen, upstream.addr, None)])
    assert wait_until(lambda: "listener tls: tls_cert %s: expired on" % chain in m.stderr_text(), 5)
    c = m.client()
    c.ehlo()
    starttls(c, pki.client_context(verify=False))          # served all the same
    c.ehlo()
    c.quit()
    shutil.copy(good[0], chain)
    shutil.copy(good[1], key)
    m.signal(signal.SIGHUP)
    assert wait_until(lambda: "config reloaded" in m.stderr_text(), 10)
    shutil.copy(soon[0], chain)
    shutil.copy(soon[1], key)
    m.signal(signal.SIGHUP)
    assert wait_until(lambda: "reload: listener tls: tls_cert %s: expires in 5 days" % chain in m.stderr_text(), 10)
    time.sleep(0.5)
    err = m.stderr_text()
    # one line each, not one per event loop
    assert err.count("tls_cert %s: expired on" % chain) == 1 and err.count("expires in 5 days") == 1, err[-3000:]
