"""XFORWARD from a trusted peer (xforward_from): Postfix's smtpd_proxy_filter
(README "As Postfix's smtpd_proxy_filter") hands each session to mailwarden
from 127.0.0.1 and says with XFORWARD who the client is.  Without it every
check judged Postfix (127.0.0.1: SPF skipped by spf_skip_networks' default,
a forged -all sender delivered), and the 51st concurrent session hit
max_connections_per_ip.

The first tests speak XFORWARD themselves to a listener with a scripted
upstream that offers XFORWARD (fast); the last ones run the README's recipe
with a real Postfix on loopback ports."""
import smtplib
import socket
import subprocess
import os

import pytest

import mwlib
import postfixlib
from mwlib import free_port, make_msg, wait_until

XF_CAPS = [b"PIPELINING", b"SIZE 104857600", b"8BITMIME", b"ENHANCEDSTATUSCODES",
           b"XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE LOGIN"]


@pytest.fixture
def raw_up():
    up = mwlib.RawUpstream(script={"OTHER": b"250 2.0.0 Ok\r\n"}, caps=XF_CAPS).start()
    yield up
    up.stop()


def pf_listener(mw_factory, up, xforward_from="127.0.0.1", opts=()):
    port = free_port()
    o = [("listener.pf.xforward_from", xforward_from)] if xforward_from is not None else []
    return mw_factory(up, listeners=[("pf", "127.0.0.1:%d" % port, up.addr, None)],
                      opts=o + list(opts), wait_probe=False)


def connect(mw):
    c = smtplib.SMTP("127.0.0.1", mw.port, timeout=10)
    c.ehlo("postfix.mx.example")
    return c


def xforward_lines(up, session=-1):
    return [l.decode() for l in up.sessions[session] if l.upper().startswith(b"XFORWARD")]


def test_trusted_peer_names_the_client(mw_factory, raw_up):
    mw = pf_listener(mw_factory, raw_up)
    c = connect(mw)
    assert c.has_extn("xforward")
    assert "ADDR" in c.esmtp_features["xforward"].split()
    code, _ = c.docmd("XFORWARD", "NAME=mail.example.net ADDR=203.0.113.5 PORT=4242 PROTO=ESMTP")
    assert code == 250
    # a second command adds to the first; names are case-insensitive; xtext
    code, _ = c.docmd("XFORWARD", "helo=stranger+2Eexample.net IDENT=4XyZ12 SOURCE=REMOTE")
    assert code == 250
    c.sendmail("a@example.org", ["b@example.net"], make_msg(subject="hello"))
    c.quit()
    rec = mw.audit(1)[-1]
    assert rec["client_ip"] == "203.0.113.5", rec
    assert rec["client_port"] == 4242
    assert rec["helo"] == "stranger.example.net"
    assert rec["client_name"] == "mail.example.net"
    assert rec["xforward_peer"] == "127.0.0.1"
    assert rec["direction"] == "inbound" and rec["auth_user"] == ""
    # passed on once, as our own XFORWARD naming the client (never the
    # peer's line relayed): the address part, then HELO and IDENT
    lines = xforward_lines(raw_up)
    assert len(lines) == 2, raw_up.sessions[-1]
    assert "NAME=mail.example.net" in lines[0] and "ADDR=203.0.113.5" in lines[0]
    assert "PORT=4242" in lines[0] and "SOURCE=REMOTE" in lines[0]
    assert "HELO=stranger.example.net" in lines[1] and "IDENT=4XyZ12" in lines[1]


def test_attributes_end_with_the_transaction(mw_factory, raw_up):
    """Postfix's semantics: XFORWARD is for the next transaction; after it
    (and after RSET, EHLO) the client is the peer again, and the upstream
    connection whose XFORWARD the MTA has forgotten is not reused."""
    mw = pf_listener(mw_factory, raw_up)
    c = connect(mw)
    assert c.docmd("XFORWARD", "ADDR=203.0.113.5 HELO=one.example PROTO=ESMTP")[0] == 250
    c.sendmail("a@example.org", ["b@example.net"], make_msg(subject="one"))
    c.sendmail("a@example.org", ["b@example.net"], make_msg(subject="two"))
    assert c.docmd("XFORWARD", "ADDR=198.51.100.7 HELO=three.example")[0] == 250
    assert c.rset()[0] == 250
    c.sendmail("a@example.org", ["b@example.net"], make_msg(subject="three"))
    c.quit()
    recs = mw.audit(3)
    got = [(r["subject"], r["client_ip"], r["helo"]) for r in recs]
    assert got == [("one", "203.0.113.5", "one.example"), ("two", "127.0.0.1", "postfix.mx.example"),
                   ("three", "127.0.0.1", "postfix.mx.example")], got
    assert all("xforward_peer" not in r for r in recs[1:])
    # the second transaction went on a new upstream connection, which named
    # the peer itself, not the first client
    mails = [i for i, s in enumerate(raw_up.sessions) if any(l.startswith(b"MAIL") for l in s)]
    assert len(mails) >= 2
    second = " ".join(xforward_lines(raw_up, mails[1]))
    assert "ADDR=127.0.0.1" in second and "203.0.113.5" not in second, raw_up.sessions


@pytest.mark.parametrize("args", [
    "FOO=1",                         # unknown attribute
    "ADDR",                          # no value
    "ADDR=",                         # empty value
    "ADDR=not-an-address",
    "ADDR=203.0.113.5 PORT=65536",   # all or nothing: ADDR is not taken either
    "PORT=12a",
    "HELO=a+zz",                     # xtext: "+" and two upper-case hex digits
    "HELO=a+0a",
    "HELO=a+0Ab",                    # a decoded LF
    "HELO=a+20b",                    # a space in a HELO name
    "HELO=a+00b",                    # NUL
    "HELO=" + "h" * 256,             # longer than 255 octets
    "NAME=bad/name",
    "SOURCE=ELSEWHERE",
    "PROTO=E+20SMTP",
    "LOGIN=a+C3+28",                 # not UTF-8
])
def test_malformed_xforward_refused(mw_factory, raw_up, args):
    mw = pf_listener(mw_factory, raw_up)
    c = connect(mw)
    code, text = c.docmd("XFORWARD", args)
    assert code == 501, (args, code, text)
    c.sendmail("a@example.org", ["b@example.net"], make_msg())
    c.quit()
    rec = mw.audit(1)[-1]
    assert rec["client_ip"] == "127.0.0.1" and "xforward_peer" not in rec


def test_xforward_order_and_unavailable(mw_factory, raw_up):
    mw = pf_listener(mw_factory, raw_up)
    c = connect(mw)
    assert c.docmd("XFORWARD")[0] == 501
    assert c.mail("a@example.org")[0] == 250
    assert c.docmd("XFORWARD", "ADDR=203.0.113.5")[0] == 503      # only before MAIL
    assert c.rset()[0] == 250
    # [UNAVAILABLE]: unknown; an unknown address stays the peer's own
    code, _ = c.docmd("XFORWARD", "NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] HELO=[UNAVAILABLE] "
                      "PORT=[UNAVAILABLE] PROTO=SMTP LOGIN=[UNAVAILABLE]")
    assert code == 250
    c.sendmail("a@example.org", ["b@example.net"], make_msg(subject="u"))
    assert c.docmd("XFORWARD", "ADDR=IPV6:2001:db8::5 NAME=[TEMPUNAVAIL]")[0] == 250
    c.sendmail("a@example.org", ["b@example.net"], make_msg(subject="v6"))
    # an IPv4-mapped address is the IPv4 client, as a direct one would be
    assert c.docmd("XFORWARD", "ADDR=::ffff:192.0.2.9")[0] == 250
    c.sendmail("a@example.org", ["b@example.net"], make_msg(subject="mapped"))
    c.quit()
    recs = {r["subject"]: r for r in mw.audit(3)}
    u = recs["u"]
    # the peer's address (and so its port): the checks need an address
    assert (u["client_ip"], u["helo"], u["protocol"]) == ("127.0.0.1", "", "SMTP"), u
    assert u["client_port"] != 0 and u["xforward_peer"] == "127.0.0.1"
    assert "client_name" not in u
    assert recs["v6"]["client_ip"] == "2001:db8::5"
    assert recs["mapped"]["client_ip"] == "192.0.2.9"


def test_port_goes_with_the_address(mw_factory, raw_up):
    """PORT with ADDR [UNAVAILABLE]: the client is the peer's address, and
    its port with it, not the forwarded client's port paired with the
    peer's address (in the audit and upstream); a forwarded ADDR without
    PORT has port 0 (unknown), never the peer's"""
    mw = pf_listener(mw_factory, raw_up)
    c = connect(mw)
    peer_port = c.sock.getsockname()[1]
    assert c.docmd("XFORWARD", "ADDR=[UNAVAILABLE] PORT=4242 PROTO=ESMTP")[0] == 250
    c.sendmail("a@example.org", ["b@example.net"], make_msg(subject="unavailable"))
    assert c.docmd("XFORWARD", "ADDR=203.0.113.5")[0] == 250
    c.sendmail("a@example.org", ["b@example.net"], make_msg(subject="no port"))
    c.quit()
    recs = {r["subject"]: r for r in mw.audit(2)}
    u = recs["unavailable"]
    assert (u["client_ip"], u["client_port"]) == ("127.0.0.1", peer_port), u
    sent = [l for i in range(len(raw_up.sessions)) for l in xforward_lines(raw_up, i)]
    assert [l for l in sent if "ADDR=127.0.0.1 " in l] == \
        ["XFORWARD NAME=[UNAVAILABLE] ADDR=127.0.0.1 PORT=%d PROTO=ESMTP" % peer_port], sent
    assert (recs["no port"]["client_ip"], recs["no port"]["client_port"]) == ("203.0.113.5", 0)


def test_login_makes_it_outbound(mw_factory, raw_up):
    mw = pf_listener(mw_factory, raw_up)
    c = connect(mw)
    assert c.docmd("XFORWARD", "ADDR=198.51.100.20 PROTO=ESMTP LOGIN=alice+40example.org")[0] == 250
    c.sendmail("alice@example.org", ["b@example.net"], make_msg())
    c.quit()
    rec = mw.audit(1)[-1]
    assert rec["auth_user"] == "alice@example.org" and rec["direction"] == "outbound", rec
    assert rec["protocol"] == "ESMTPA"
    assert "LOGIN=alice@example.org" in " ".join(xforward_lines(raw_up))


def _xtext_decode(v):
    out, i = bytearray(), 0
    while i < len(v):
        if v[i] == "+":
            out.append(int(v[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(ord(v[i]))
            i += 1
    return out.decode()


def _sent_attrs(lines):
    """{attribute: decoded value} of XCLIENT/XFORWARD lines, each attribute
    once, each value at most 255 octets of xtext (what Postfix takes)."""
    sent = {}
    for l in lines:
        for attr in l.split()[1:]:
            name, _, value = attr.partition("=")
            assert name not in sent, [x[:60] for x in lines]
            assert len(value) <= 255, (name, len(value))
            sent[name] = _xtext_decode(value)
    return sent


def test_long_values_in_xforward(mw_factory, raw_up):
    """HELO and IDENT of 255 octets each, the HELO all "+" (765 octets of
    xtext), and a LOGIN: a value over 255 octets of xtext goes as
    [UNAVAILABLE] (Postfix answers 501 to the whole command, and every
    transaction of the client was tempfailed), with one log line; the
    others go whole, LOGIN too (it was once dropped without a word while
    the audit said outbound), every command under 1200 octets."""
    mw = pf_listener(mw_factory, raw_up)
    c = connect(mw)
    helo, ident = "+" * 255, "Q" * 255
    login = ("firstname.lastname+newsletters@mail.subdomain.example-company.org" * 4)[:240]
    assert c.docmd("XFORWARD", "ADDR=203.0.113.5 PROTO=ESMTP HELO=%s" % helo.replace("+", "+2B"))[0] == 250
    assert c.docmd("XFORWARD", "IDENT=%s LOGIN=%s" % (ident, login.replace("+", "+2B")))[0] == 250
    c.sendmail("a@example.org", ["b@example.net"], make_msg(subject="x"))
    c.quit()
    rec = mw.audit(1)[-1]
    assert rec["auth_user"] == login and rec["direction"] == "outbound", rec
    assert rec["helo"] == helo, rec                       # mailwarden's own checks: the whole name
    lines = xforward_lines(raw_up)
    assert all(len(l) < 1200 for l in lines), [len(l) for l in lines]
    sent = _sent_attrs(lines)
    assert (sent.get("HELO"), sent.get("IDENT"), sent.get("LOGIN")) == ("[UNAVAILABLE]", ident, login), \
        [l[:60] + "..." for l in lines]
    assert sent["ADDR"] == "203.0.113.5"
    log = [l for l in mw.stderr_text().splitlines() if "octets of xtext, over the 255" in l]
    assert len(log) == 1 and "XFORWARD HELO is 765 octets" in log[0], log


def test_long_attributes_in_xclient(mw_factory):
    """Onward by XCLIENT, NAME, HELO and LOGIN of 255 octets each (the HELO
    all "+", the LOGIN with "+" in it: 765 and ~300 octets of xtext).  They
    went whole in several XCLIENT commands, and Postfix refused the first
    with a value over 255 octets of xtext.  Now NAME (255 octets of xtext)
    goes whole, HELO and LOGIN as [UNAVAILABLE] (never cut: a cut login is
    another user), all in one command, and the EHLO after it carries the
    whole HELO, so the next hop still judges the client's name."""
    up = mwlib.RawUpstream(script={"OTHER": b"220 raw.upstream ESMTP\r\n"},
                           caps=mwlib.RawUpstream.CAPS + [b"XCLIENT ADDR PORT NAME HELO PROTO LOGIN"]).start()
    try:
        mw = pf_listener(mw_factory, up)
        c = connect(mw)
        name = (("a" * 62 + ".") * 5)[:250] + ".test"
        helo = "+" * 255
        login = ("first.last+news@mail.example-company.org" * 7)[:255]
        assert c.docmd("XFORWARD", "NAME=%s ADDR=203.0.113.5 PORT=4242 PROTO=ESMTP" % name)[0] == 250
        assert c.docmd("XFORWARD", "HELO=%s LOGIN=%s" % (helo.replace("+", "+2B"),
                                                          login.replace("+", "+2B")))[0] == 250
        c.sendmail("a@example.org", ["b@example.net"], make_msg(subject="x"))
        c.quit()
        rec = mw.audit(1)[-1]
        assert (rec["helo"], rec["auth_user"], rec["client_name"]) == (helo, login, name), rec
        lines = [l.decode() for l in up.sessions[-1]]
        xc = [i for i, l in enumerate(lines) if l.startswith("XCLIENT")]
        assert len(xc) == 1 and len(lines[xc[0]]) < 1200, [len(lines[i]) for i in xc]
        assert lines[xc[-1] + 1] == "EHLO " + helo, lines[xc[-1] + 1][:80]
        sent = _sent_attrs([lines[i] for i in xc])
        assert (sent.get("NAME"), sent.get("HELO"), sent.get("LOGIN")) == (name, "[UNAVAILABLE]", "[UNAVAILABLE]"), \
            [lines[j][:60] + "..." for j in xc]
        assert sent["ADDR"] == "203.0.113.5" and sent["PORT"] == "4242" and sent["PROTO"] == "ESMTP"
        log = [l for l in mw.stderr_text().splitlines() if "octets of xtext, over the 255" in l]
        assert len(log) == 2 and "XCLIENT HELO is 765 octets" in log[0] and "XCLIENT LOGIN is" in log[1], log
    finally:
        up.stop()


@pytest.mark.parametrize("xforward_from", [None, "127.0.0.2", "10.0.0.0/8"])
def test_strangers_xforward_refused(mw_factory, raw_up, xforward_from):
    mw = pf_listener(mw_factory, raw_up, xforward_from=xforward_from)
    c = connect(mw)
    assert not c.has_extn("xforward")
    assert c.docmd("XFORWARD", "ADDR=203.0.113.5")[0] == 502
    c.sendmail("a@example.org", ["b@example.net"], make_msg())
    c.quit()
    assert mw.audit(1)[-1]["client_ip"] == "127.0.0.1"


def test_trusted_peer_not_limited_per_ip(mw_factory, raw_up):
    """max_connections_per_ip counts clients, not the MTA that speaks for
    them (Postfix counts its clients itself); max_connections still holds."""
    mw = pf_listener(mw_factory, raw_up, opts=[("max_connections_per_ip", "2"), ("max_connections", "6")])
    socks, greetings = [], []
    try:
        for _ in range(7):
            s = socket.create_connection(("127.0.0.1", mw.port), timeout=5)
            socks.append(s)
            greetings.append(s.recv(200)[:3])
        assert greetings[:6] == [b"220"] * 6, greetings
        assert greetings[6] == b"421"
    finally:
        for s in socks:
            s.close()


def test_untrusted_peer_still_limited_per_ip(mw_factory, raw_up):
    mw = pf_listener(mw_factory, raw_up, xforward_from="127.0.0.2", opts=[("max_connections_per_ip", "2")])
    socks, greetings = [], []
    try:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", mw.port), timeout=5)
            socks.append(s)
            greetings.append(s.recv(200)[:3])
        assert greetings == [b"220", b"220", b"421"], greetings
    finally:
        for s in socks:
            s.close()


def test_spf_judges_the_forwarded_client(mw_factory, raw_up, tmp_path):
    from dnsserver import DnsServer
    dns = DnsServer(str(tmp_path / "dns"))
    dns.add_zone("example.org", ['@ TXT "v=spf1 -all"'])
    dns.start()
    try:
        mw = pf_listener(mw_factory, raw_up, opts=[("filters", "spf"), ("spf_fail_action", "reject"),
                                                    ("dns_forwarder", dns.forwarder)])
        c = connect(mw)
        assert c.docmd("XFORWARD", "ADDR=203.0.113.5 HELO=stranger.example.net PROTO=ESMTP")[0] == 250
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("ceo@example.org", ["b@example.net"], make_msg(frm="ceo@example.org"))
        assert e.value.smtp_code == 550, e.value
        c.quit()
        rec = mw.audit(1)[-1]
        assert rec["client_ip"] == "203.0.113.5" and rec["action"] == "reject", rec
    finally:
        dns.stop()


def run_t(*opts):
    cmd = [os.environ["MW_BIN"], "-t", "-c", "/dev/null"]
    for o in opts:
        cmd += ["-o", o]
    return subprocess.run(cmd, capture_output=True, timeout=30)


def test_config_checks():
    base = ["listener.pf.listen=127.0.0.1:%d" % free_port(), "listener.pf.upstream=127.0.0.1:%d" % free_port()]
    r = run_t(*base, "listener.pf.xforward_from=127.0.0.0/8, ::1")
    assert r.returncode == 0 and b"warning" not in r.stderr, r.stderr
    r = run_t(*base, "listener.pf.xforward_from=localhost")
    assert r.returncode != 0 and b"xforward_from" in r.stderr
    r = run_t(*base, "listener.pf.xforward_from=0.0.0.0/0")
    assert r.returncode == 0 and b"xforward_from holds 0.0.0.0/0" in r.stderr, r.stderr
    r = run_t(*base, "listener.pf.xforward_from=127.0.0.1", "listener.pf.proxy_protocol=yes")
    assert r.returncode != 0 and b"exclude each other" in r.stderr, r.stderr


# --- the README's recipe, with a real Postfix --------------------------------

needs_postfix = pytest.mark.skipif(not postfixlib.available(), reason="needs root and Debian's postfix")

def second_smtpd(port):
    """the README's second smtpd (postfixlib.readme_service) on port"""
    return postfixlib.readme_service("**As Postfix's `smtpd_proxy_filter`**", "127.0.0.1:10026",
                                     "127.0.0.1:%d" % port)


@pytest.fixture
def recipe(mw_factory, make_upstream, tmp_path):
    """Postfix's public smtpd (smtpd_proxy_filter = mailwarden's listener pf,
    xforward_from = 127.0.0.1), then a second smtpd behind mailwarden; the
    test client plays a stranger on the internet with XCLIENT."""
    made = []

    def make(opts=()):
        sink = make_upstream()
        pport, mport, second = free_port(), free_port(), free_port()
        pf = postfixlib.Postfix(tmp_path / "pf", relayhost=sink.addr, port=pport, master=second_smtpd(second),
                                main={"smtpd_proxy_filter": "127.0.0.1:%d" % mport,
                                      "relay_domains": "example.net",
                                      "smtpd_authorized_xclient_hosts": "127.0.0.1"}).start()
        made.append(pf)
        mw = mw_factory(None, listeners=[("pf", "127.0.0.1:%d" % mport, "127.0.0.1:%d" % second, None)],
                        opts=[("listener.pf.xforward_from", "127.0.0.1")] + list(opts))
        return pf, mw, sink
    yield make
    for pf in made:
        pf.stop()



def as_stranger(pf, helo="stranger.example.net"):
    c = smtplib.SMTP("127.0.0.1", pf.port, timeout=30)
    c.ehlo("client.example.org")
    code, _ = c.docmd("XCLIENT", "ADDR=203.0.113.5 NAME=[UNAVAILABLE] HELO=%s" % helo)
    assert code == 220
    c.ehlo_resp = c.esmtp_features = None
    c.ehlo(helo)
    return c


@needs_postfix
def test_recipe_spf_sees_the_client(recipe, tmp_path):
    from dnsserver import DnsServer
    dns = DnsServer(str(tmp_path / "dns"))
    dns.add_zone("example.org", ['@ TXT "v=spf1 -all"'])
    dns.start()
    try:
        pf, mw, sink = recipe(opts=[("filters", "spf"), ("spf_fail_action", "reject"),
                                    ("dns_forwarder", dns.forwarder)])
        with as_stranger(pf) as c:
            with pytest.raises(smtplib.SMTPDataError) as e:
                c.sendmail("ceo@example.org", ["rcpt@example.net"], make_msg(frm="ceo@example.org"))
            assert e.value.smtp_code == 550, e.value
            c.sendmail("a@example.net", ["rcpt@example.net"], make_msg(subject="fine"))
        assert wait_until(lambda: len(sink.messages) == 1, 20.0), pf.log()[-3000:]
        assert b"Subject: fine" in sink.messages[0].content
        recs = mw.audit(2)
        assert [r["client_ip"] for r in recs] == ["203.0.113.5"] * 2, recs
        assert recs[0]["action"] == "reject" and recs[0]["helo"] == "stranger.example.net"
        # the second smtpd logs the client, not mailwarden (our XFORWARD)
        assert wait_until(lambda: "client=unknown[203.0.113.5]" in pf.log(), 5.0), pf.log()[-3000:]
    finally:
        dns.stop()


@needs_postfix
def test_recipe_concurrent_sessions_past_per_ip_limit(recipe):
    """55 concurrent sessions through Postfix (default_process_limit 100):
    all reach mailwarden from 127.0.0.1; none is refused for
    max_connections_per_ip (50)."""
    pf, mw, sink = recipe()
    clients, codes = [], []
    try:
        for i in range(55):
            c = smtplib.SMTP("127.0.0.1", pf.port, timeout=30)
            clients.append(c)
            c.ehlo("client%d.example.org" % i)
            c.mail("a%d@example.org" % i)
            codes.append(c.rcpt("rcpt@example.net"))
        assert all(code == 250 for code, _ in codes), [x for x in codes if x[0] != 250][:3]
    finally:
        for c in clients:
            try:
                c.close()
            except Exception:
                pass
