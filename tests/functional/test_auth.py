"""SMTP AUTH relayed to the upstream (issue 3): PLAIN and LOGIN only over
TLS unless the listener allows plaintext, the upstream's 235 decides, the
user goes to the audit log, an authenticated session gets the outbound
policy, and credentials never reach the log."""

import base64
import smtplib

import pytest

import mwlib
from mwlib import make_msg, plugin_opt
from tlslib import PKI, TLSUpstream, listener_tls_opts, starttls

USERS = {"alice": "s3cret-Pa55"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def auth_upstream():
    u = TLSUpstream(users=USERS).start()
    yield u
    u.stop()


def mw_auth(mw_factory, up, pki, tls=True, extra=(), opts=()):
    chain, key = pki.cert("mx.example.test")
    listen = "127.0.0.1:%d" % mwlib.free_port()
    o = [("listener.sub.auth", "relay")] + [("listener.sub." + k, v) for k, v in extra] + list(opts)
    if tls:
        o += listener_tls_opts(chain, key, name="sub")
    return mw_factory(up, opts=o, listeners=[("sub", listen, up.addr, None)])


def b64(s):
    return base64.b64encode(s.encode()).decode()


def test_auth_only_over_tls(mw_factory, auth_upstream, pki):
    m = mw_auth(mw_factory, auth_upstream, pki)
    c = m.client()
    assert "AUTH" not in c.ehlo().text.upper()
    r = c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"]))
    assert r.code == 530
    starttls(c, pki.client_context())
    ehlo = c.ehlo().text.upper()
    assert "AUTH PLAIN LOGIN" in ehlo
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0wrong")).code == 535       # the upstream's answer
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 235
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 503
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    auth_upstream.wait_messages(1)
    assert auth_upstream.auth_logins == ["alice"]
    rec = m.audit(1)[-1]
    assert rec["auth_user"] == "alice"
    assert rec["protocol"] == "ESMTPSA"
    assert rec["direction"] == "outbound"
    log = m.stderr_text()
    for secret in (USERS["alice"], b64("\0alice\0" + USERS["alice"]), b64("\0alice\0wrong"), b64(USERS["alice"])):
        assert secret not in log


def test_auth_login_and_smtplib(mw_factory, auth_upstream, pki):
    m = mw_auth(mw_factory, auth_upstream, pki)
    c = m.client()
    c.ehlo()
    starttls(c, pki.client_context())
    c.ehlo()
    r = c.cmd("AUTH LOGIN")
    assert r.code == 334
    r = c.cmd(b64("alice"))
    assert r.code == 334
    r = c.cmd(b64(USERS["alice"]))
    assert r.code == 235, r
    c.quit()
    with smtplib.SMTP("127.0.0.1", m.port, timeout=10) as s:
        s.starttls(context=pki.client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("alice", "nope")
        s.login("alice", USERS["alice"])
        s.sendmail("alice@example.org", ["b@example.net"], make_msg())
    auth_upstream.wait_messages(1)
    assert m.audit(1)[-1]["auth_user"] == "alice"
    assert USERS["alice"] not in m.stderr_text()


def test_auth_plaintext_listener_option(mw_factory, auth_upstream, pki):
    m = mw_auth(mw_factory, auth_upstream, pki, tls=False)
    c = m.client()
    assert "AUTH" not in c.ehlo().text.upper()
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 538
    c.quit()
    m2 = mw_auth(mw_factory, auth_upstream, pki, tls=False, extra=[("auth_plaintext", "yes")])
    c = m2.client()
    assert "AUTH PLAIN LOGIN" in c.ehlo().text.upper()
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 235
    c.transaction("a@example.org", ["b@example.net"], make_msg())
    c.quit()
    assert m2.audit(1)[-1]["protocol"] == "ESMTPA"


def test_tls_required_wins_over_auth_plaintext(mw_factory, auth_upstream, pki):
    m = mw_auth(mw_factory, auth_upstream, pki, extra=[("auth_plaintext", "yes"), ("tls_required", "yes")])
    c = m.client()
    assert "AUTH" not in c.ehlo().text.upper()
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 530
    starttls(c, pki.client_context())
    c.ehlo()
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 235
    c.quit()


def test_starttls_forgets_plaintext_auth_and_upstream(mw_factory, auth_upstream, pki):
    """RFC 3207 4.2: an authentication made before STARTTLS does not
    survive it, nor the upstream session it was made on."""
    m = mw_auth(mw_factory, auth_upstream, pki, extra=[("auth_plaintext", "yes")])
    c = m.client()
    c.ehlo()
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 235
    starttls(c, pki.client_context())
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    auth_upstream.wait_messages(1)
    rec = m.audit(1)[-1]
    assert rec["auth_user"] == "" and rec["protocol"] == "ESMTPS" and rec["direction"] == "inbound"


def test_no_auth_without_setting(mw_factory, auth_upstream):
    m = mw_factory(auth_upstream)
    c = m.client()
    assert "AUTH" not in c.ehlo().text.upper()
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 502
    # and a MAIL AUTH= parameter is not passed on
    assert c.cmd("MAIL FROM:<a@example.org> AUTH=<>").code == 555
    c.quit()


def test_authenticated_session_uses_outbound_policy(mw_factory, auth_upstream, pki):
    """The listener is inbound (reject at 15); the plugin scores "viagra"
    at 6; outbound rejects at 5: only the authenticated message is refused."""
    m = mw_auth(mw_factory, auth_upstream, pki, opts=[plugin_opt(), ("inbound_reject_score", "15"),
                                                      ("outbound_reject_score", "5")])
    msg = make_msg(subject="buy viagra now")
    c = m.client()
    c.ehlo()
    starttls(c, pki.client_context())
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], msg)["final"].code == 250
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 235
    r = c.transaction("a@example.org", ["b@example.net"], msg)["final"]
    assert r.code == 550, r
    c.quit()
    recs = m.audit(2)
    assert recs[0]["direction"] == "inbound" and recs[1]["direction"] == "outbound"
    assert recs[1]["action"] == "reject"
