"""test_direction.py - who is outbound, and what that grants (README
"Direction: who is outbound").  Outbound mail skips SPF, DKIM verification,
DMARC and greylisting and gets the site's DKIM signature (dkim_sign), so a
stranger treated as outbound could send mail signed as the site.  Each case
goes through the real proxy (aiosmtpd or raw-socket upstreams checking the
credentials) or the real milter (the MTA's side on a raw socket); whether a
message was signed is read from what reached the upstream or from the
milter's header insertions, the direction from the audit log."""

import base64
import re

import pytest

import attachlib as L
import dkimlib as dl
import mwlib
from milterlib import RawMilter, wait_records
from mwlib import RawUpstream, dot_stuff, header_block
from storelib import store_opts
from tlslib import TLSUpstream

DOMAIN = "sign.test"
USERS = {"alice": "s3cret-Pa55"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return dl.make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def auth_upstream():
    u = TLSUpstream(users=USERS).start()
    yield u
    u.stop()


def sign_opts(keys, filters="dkim_sign"):
    return [("filters", filters), ("dkim_sign_key", "%s rsa1 %s" % (DOMAIN, keys["rsa"][0]))]


def b64(s):
    return base64.b64encode(s.encode()).decode()


def plain(frm="CEO <ceo@sign.test>", extra=b""):
    head = b"" if frm is None else b"From: " + frm.encode() + b"\r\n"
    return (head + b"To: staff@sign.test\r\nSubject: wire the money\r\n"
            b"Message-ID: <d1@sign.test>\r\n" + extra + b"\r\nToday, please.\r\n")


def signatures(content):
    """The DKIM-Signature fields of a message, unfolded."""
    return [v for n, v in header_block(content) if n.lower() == "dkim-signature"]


def send(c, frm, content, rcpt="staff@sign.test"):
    r = c.transaction(frm, [rcpt], content)
    assert r["final"].code == 250, r
    return r


# --- the proxy ----------------------------------------------------------------------------


def test_submission_listener_needs_auth_before_outbound(mw_factory, auth_upstream, keys, tmp_path):
    """An outbound listener that relays AUTH: a client that has not
    authenticated is inbound (greylisted, never signed); after its 235 it
    is outbound (not greylisted) and signed.  Before the fix, the
    unauthenticated forgery of ceo@sign.test to a local recipient skipped
    greylisting (and SPF, DMARC) and went out DKIM-signed as sign.test.  An
    outbound listener without AUTH still trusts every client (the site's
    choice, e.g. an internal port): its mail is signed."""
    sub = "127.0.0.1:%d" % mwlib.free_port()
    internal = "127.0.0.1:%d" % mwlib.free_port()
    opts = sign_opts(keys, "greylist dkim_sign") + store_opts("lmdb", tmp_path) + [
        ("greylist_delay", "1h"), ("greylist_whitelist", "to:staff@sign.test"),
        ("listener.sub.auth", "relay"), ("listener.sub.auth_plaintext", "yes")]
    m = mw_factory(auth_upstream, opts=opts, listeners=[("sub", sub, auth_upstream.addr, "outbound"),
                                                          ("int", internal, auth_upstream.addr, "outbound")])
    c = m.client("sub")
    c.ehlo()
    r = c.transaction("ceo@sign.test", ["boss@sign.test"], plain())        # a stranger
    assert r["final"].code == 451 and "Greylisted" in r["final"].text, r
    send(c, "ceo@sign.test", plain())                   # to a recipient never greylisted
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 235
    send(c, "alice@sign.test", plain("Alice <alice@sign.test>"), rcpt="boss@sign.test")
    c.quit()
    c = m.client("int")
    c.ehlo()
    send(c, "app@sign.test", plain("App <app@sign.test>"), rcpt="boss@sign.test")
    c.quit()
    got = auth_upstream.wait_messages(3)
    assert [len(signatures(x.content)) for x in got] == [0, 1, 1]
    recs = m.audit(4)
    assert [(r["listener"], r["direction"], r["auth_user"], r["action"]) for r in recs] == \
        [("sub", "inbound", "", "tempfail"), ("sub", "inbound", "", "accept"),
         ("sub", "outbound", "alice", "accept"), ("int", "outbound", "", "accept")]


def test_inbound_listener_failed_forged_or_pipelined_auth_stays_inbound(mw_factory, auth_upstream, keys):
    """Only the upstream's 235 to AUTH authenticates: a refused password, a
    client answering a 334 with "235 ...", a transaction pipelined behind a
    refused AUTH, and XCLIENT/XFORWARD from the client all leave the
    session inbound and its mail unsigned."""
    listen = "127.0.0.1:%d" % mwlib.free_port()
    opts = sign_opts(keys) + [("listener.mx.auth", "relay"), ("listener.mx.auth_plaintext", "yes")]
    m = mw_factory(auth_upstream, opts=opts, listeners=[("mx", listen, auth_upstream.addr, None)])
    c = m.client()
    c.ehlo()
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0wrong")).code == 535
    send(c, "ceo@sign.test", plain())
    assert c.cmd("AUTH LOGIN").code == 334
    assert c.cmd(b64("alice")).code == 334
    r = c.cmd("235 2.7.0 Authentication successful")          # a "password"
    assert r.code // 100 == 5, r
    for verb in ("XCLIENT LOGIN=alice ADDR=127.0.0.1", "XFORWARD ADDR=127.0.0.1"):
        assert c.cmd(verb).code == 502
    send(c, "ceo@sign.test", plain())
    # a whole transaction pipelined behind a refused AUTH
    c.send(("AUTH PLAIN %s\r\nMAIL FROM:<ceo@sign.test>\r\nRCPT TO:<staff@sign.test>\r\nDATA\r\n"
            % b64("\0alice\0guess")).encode())
    assert [x.code for x in c.replies(4)] == [535, 250, 250, 354]
    c.send(dot_stuff(plain()))
    assert c.reply().code == 250
    c.quit()
    got = auth_upstream.wait_messages(3)
    assert [len(signatures(x.content)) for x in got] == [0, 0, 0]
    assert auth_upstream.auth_logins == []
    recs = m.audit(3)
    assert [(r["direction"], r["auth_user"], r["protocol"]) for r in recs] == [("inbound", "", "ESMTP")] * 3


def test_bare_lf_answer_to_334_cancels_the_exchange(mw_factory, auth_upstream):
    """An answer to a 334 ending in a bare LF gets 500 (bare_newline =
    reject) and ends the AUTH exchange upstream too ("*"), as an overlong
    one does.  Before, the upstream still waited for an answer and the
    client's next command (NOOP) went to it as a credential."""
    listen = "127.0.0.1:%d" % mwlib.free_port()
    opts = [("listener.mx.auth", "relay"), ("listener.mx.auth_plaintext", "yes")]
    m = mw_factory(auth_upstream, opts=opts, listeners=[("mx", listen, auth_upstream.addr, None)])
    c = m.client()
    c.ehlo()
    assert c.cmd("AUTH PLAIN").code == 334
    c.send(b64("\0alice\0" + USERS["alice"]) + "\n")
    assert c.reply().code == 500
    assert c.cmd("NOOP").code == 250
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 235
    send(c, "alice@sign.test", plain("Alice <alice@sign.test>"))
    c.quit()
    assert m.audit(1)[-1]["direction"] == "outbound"


def test_upstream_2xx_other_than_235_does_not_authenticate(mw_factory, keys):
    """An upstream answering AUTH with 250 (not 235): 454 to the client,
    and the session stays inbound."""
    up = RawUpstream(script={"OTHER": b"250 2.0.0 Ok\r\n"},
                     caps=RawUpstream.CAPS + [b"AUTH PLAIN LOGIN"]).start()
    try:
        listen = "127.0.0.1:%d" % mwlib.free_port()
        opts = sign_opts(keys) + [("listener.mx.auth", "relay"), ("listener.mx.auth_plaintext", "yes")]
        m = mw_factory(up, opts=opts, listeners=[("mx", listen, up.addr, "outbound")])
        c = m.client()
        c.ehlo()
        assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 454
        send(c, "ceo@sign.test", plain())
        c.quit()
        assert mwlib.wait_until(lambda: len(up.messages) == 1)
        assert signatures(up.messages[0].content) == []
        assert m.audit(1)[-1]["direction"] == "inbound"
    finally:
        up.stop()


def test_dkim_sign_only_a_single_from_of_a_signing_domain(mw_factory, upstream, keys):
    """Outbound mail is signed only when its From holds exactly one address
    of a configured domain (any case); other domains, several addresses or
    From fields, none, or the domain only in a display name: unsigned (and
    relayed).  A signature already present is kept, ours goes on top.
    The over-signed fields are in h= once more than in the message."""
    m = mw_factory(upstream, opts=sign_opts(keys), direction="outbound")
    c = m.client()
    c.ehlo()
    cases = [
        ("Alice <alice@SIGN.Test>", b"", 1),
        ("Mallory <m@other.test>", b"", 0),
        ("alice@sign.test, bob@sign.test", b"", 0),
        ("alice@sign.test", b"From: bob@sign.test\r\n", 0),
        (None, b"", 0),
        ('"alice@sign.test" <m@other.test>', b"", 0),
        ("alice@sign.test.other.test", b"", 0),
        ("Alice <alice@sign.test>", b"DKIM-Signature: v=1; a=rsa-sha256; d=sign.test; s=old; "
                                    b"h=from; bh=AAAA; b=BBBB\r\n", 2),
    ]
    for frm, extra, _ in cases:
        send(c, "alice@sign.test", plain(frm, extra), rcpt="bob@example.net")
    c.quit()
    got = upstream.wait_messages(len(cases))
    assert [len(signatures(x.content)) for x in got] == [n for _, _, n in cases]
    # From, To and Subject signed once more than present: none can be added
    h = re.search(r"\bh=([^;]+)", signatures(got[0].content)[0]).group(1).replace(" ", "").lower().split(":")
    assert [h.count(f) for f in ("from", "to", "subject")] == [2, 2, 2], h
    assert "s=rsa1" in signatures(got[-1].content)[0]      # ours on top of the old one
    assert "s=old" in signatures(got[-1].content)[1]


def test_outbound_checks_still_apply_to_authenticated_mail(mw_factory, auth_upstream, keys):
    """Authenticated (outbound) mail is not waved through: the attachment
    rules of the outbound direction still refuse a .exe."""
    listen = "127.0.0.1:%d" % mwlib.free_port()
    opts = sign_opts(keys, "attachments dkim_sign") + [("listener.sub.auth", "relay"),
                                                      ("listener.sub.auth_plaintext", "yes")]
    m = mw_factory(auth_upstream, opts=opts, listeners=[("sub", listen, auth_upstream.addr, "outbound")])
    c = m.client()
    c.ehlo()
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])).code == 235
    msg = L.message([L.part("application/octet-stream", b"MZ\x90\x00", 'attachment; filename="tool.exe"')])
    msg = msg.replace(b"From: sender@example.org", b"From: Alice <alice@sign.test>")
    r = c.transaction("alice@sign.test", ["bob@example.net"], msg)
    assert r["final"].code == 550, r
    c.quit()
    rec = m.audit(1)[-1]
    assert rec["direction"] == "outbound" and rec["action"] == "reject"
    assert auth_upstream.messages == []


# --- the milter ---------------------------------------------------------------------------


def milter_message(r, content, macros, qid):
    r.macros(b"M", [(b"i", qid)] + macros)
    assert r.step(b"M", b"<alice@sign.test>\0")[0] == b"c"
    r.rcpt(b"<staff@sign.test>")
    r.body(r.headers(content))
    verdict, _, mods = r.eom()
    assert verdict == b"c", verdict
    return sum(1 for _, data in mods if b"DKIM-Signature" in data)


def test_milter_direction_per_message(mw_factory, upstream, keys):
    """{auth_authen} is read at each MAIL: after an authenticated message,
    the next one on the same connection without it (or with it empty) is
    inbound and unsigned, and one after a mid-session AUTH outbound; an
    internal-network client is outbound.  (libmilter keeps a stage's
    macros until the MTA sends that stage's again: Postfix and Sendmail
    send the MAIL macros with every MAIL.)"""
    port = mwlib.free_port()
    m = mw_factory(upstream, opts=sign_opts(keys) + [("milter_listen", "inet:%d@127.0.0.1" % port),
                                                     ("milter_internal_networks", "10.0.0.0/8")])
    msg = plain("Alice <alice@sign.test>")
    with RawMilter(port) as r:
        r.negotiate().connect(ip="192.0.2.10")
        signed = [milter_message(r, msg, [(b"{auth_authen}", b"alice")], b"Q1"),
                  milter_message(r, msg, [], b"Q2"),
                  milter_message(r, msg, [(b"{auth_authen}", b"")], b"Q3"),
                  milter_message(r, msg, [(b"{auth_authen}", b"bob")], b"Q4")]
    with RawMilter(port) as r:
        r.negotiate().connect(ip="10.1.2.3")
        signed.append(milter_message(r, msg, [], b"Q5"))
    assert signed == [1, 0, 0, 1, 1]
    recs = wait_records(m, 5)
    assert [(x["direction"], x["auth_user"]) for x in recs] == \
        [("outbound", "alice"), ("inbound", ""), ("inbound", ""), ("outbound", "bob"), ("outbound", "")]


# --- an outbound listener anyone can reach ------------------------------------


def _listener(listen, *extra):
    out = ["-o", "listener.sub.listen=" + listen, "-o", "listener.sub.upstream=127.0.0.1:2588"]
    for kv in extra:
        out += ["-o", "listener.sub." + kv]
    return out


@pytest.mark.parametrize("listen,extra,warned", [
    ("0.0.0.0:2587", ("direction=outbound",), True),
    ("*:2587", ("direction=outbound",), True),
    ("[::]:2587", ("direction=outbound",), True),
    ("192.0.2.10:2587", ("direction=outbound",), True),
    ("[2001:db8::25]:2587", ("direction=outbound",), True),
    ("0.0.0.0:2587", ("direction=outbound", "auth=relay"), False),
    ("0.0.0.0:2587", ("direction=inbound",), False),
    ("127.0.0.1:2587", ("direction=outbound",), False),
    ("10.1.2.3:2587", ("direction=outbound",), False),
    ("172.16.0.1:2587", ("direction=outbound",), False),
    ("192.168.1.1:2587", ("direction=outbound",), False),
    ("[::1]:2587", ("direction=outbound",), False),
    ("[fd00::25]:2587", ("direction=outbound",), False),
    ("[fe80::1]:2587", ("direction=outbound",), False),
])
def test_check_warns_of_an_outbound_listener_open_to_anyone(listen, extra, warned):
    """direction = outbound without auth = relay makes everyone who
    reaches the listener a DKIM-signed sender that skips SPF, DMARC and
    greylisting: mailwarden -t warns when it listens on a public address or
    a wildcard (before: "configuration OK" and nothing else).  The
    configuration is still accepted."""
    r = mwlib.run_mw(["-t"] + _listener(listen, *extra))
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert ("warning: listener 'sub': direction = outbound without auth = relay" in err) == warned, err
    if warned:
        assert "anyone who reaches it" in err and listen in err, err


def test_startup_logs_the_open_outbound_listener(tmp_path):
    """The daemon logs the same warning at start-up, before it binds (here
    an address this host does not have, so the bind then fails and
    nothing is ever listening on a public address)."""
    r = mwlib.run_mw(["-f", "-o", "audit_log=%s" % (tmp_path / "audit.log"),
                      "-o", "quarantine_dir=%s" % (tmp_path / "q"),
                      "-o", "stats_file=%s" % (tmp_path / "stats")]
                     + _listener("192.0.2.10:%d" % mwlib.free_port(), "direction=outbound"))
    err = r.stderr.decode()
    assert r.returncode != 0 and "Cannot assign requested address" in err, err
    assert "listener 'sub': direction = outbound without auth = relay on 192.0.2.10:" in err, err


@pytest.mark.parametrize("pp,sources,warned", [
    ("yes", None, False),                          # default: 127.0.0.0/8 ::1
    ("yes", "10.0.0.5/32 10.0.0.6", False),
    ("yes", "10.0.0.0/8 2001:db8::/32", False),
    ("yes", "0.0.0.0/0", True),
    ("yes", "::/0", True),
    ("yes", "10.0.0.5 0.0.0.0/1", True),
    ("yes", "::ffff:0:0/96", True),                # 0.0.0.0/0 written mapped
    ("yes", "2000::/3", True),
    ("no", "0.0.0.0/0", False),                    # no PROXY headers taken at all
])
def test_check_warns_of_proxy_headers_from_anywhere(pp, sources, warned):
    """A PROXY header chooses the client address every check sees (SPF,
    DNS lists, limits, milter and pass lists): mailwarden -t warns when a
    listener takes it from a network wider than a /8 (IPv4) or /16 (IPv6)
    (before: "configuration OK" alone, for 0.0.0.0/0 as for ::/0)."""
    extra = ["proxy_protocol=" + pp] + (["proxy_protocol_from=" + sources] if sources else [])
    r = mwlib.run_mw(["-t"] + _listener("127.0.0.1:2525", *extra))
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert ("warning: listener 'sub': proxy_protocol_from holds" in err) == warned, err


@pytest.mark.parametrize("milter,networks,warned", [
    (True, None, False),                           # default: 127.0.0.0/8 ::1/128
    (True, "10.0.0.0/8 192.168.0.0/16 fd00::/8 fc00::/7", False),   # all private
    (True, "fc00::/6", True),
    (True, "0.0.0.0/0", True),
    (True, "::/0", True),
    (True, "127.0.0.1 8.0.0.0/7", True),
    (True, "2001::/15", True),
    (True, "64:ff9b::/97", True),                  # 0.0.0.0/1 once translated
    (False, "0.0.0.0/0", False),                   # no milter: the list is not used
])
def test_check_warns_of_wide_milter_internal_networks(milter, networks, warned):
    """Every client in milter_internal_networks sends outbound mail (no
    SPF, DMARC or greylisting, DKIM-signed): mailwarden -t warns of a
    network wider than a /8 (IPv4) or /16 (IPv6) when the milter runs
    (before: 0.0.0.0/0 passed with "configuration OK" alone)."""
    args = ["-t"]
    if milter:
        args += ["-o", "milter_listen=inet:%d@127.0.0.1" % mwlib.free_port()]
    if networks:
        args += ["-o", "milter_internal_networks=" + networks]
    r = mwlib.run_mw(args)
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert ("warning: milter_internal_networks holds" in err) == warned, err
    if warned:
        assert "as outbound" in err, err


def test_startup_logs_proxy_and_milter_warnings(tmp_path):
    """The daemon logs both warnings at start-up, before it binds (the
    listener's address is not this host's, so it then exits)."""
    r = mwlib.run_mw(["-f", "-o", "audit_log=%s" % (tmp_path / "audit.log"),
                      "-o", "quarantine_dir=%s" % (tmp_path / "q"),
                      "-o", "stats_file=%s" % (tmp_path / "stats"),
                      "-o", "milter_listen=inet:%d@127.0.0.1" % mwlib.free_port(),
                      "-o", "milter_internal_networks=0.0.0.0/0"]
                     + _listener("192.0.2.10:%d" % mwlib.free_port(), "proxy_protocol=yes",
                                 "proxy_protocol_from=::/0"))
    err = r.stderr.decode()
    assert r.returncode != 0 and "Cannot assign requested address" in err, err
    assert "listener 'sub': proxy_protocol_from holds ::/0" in err, err
    assert "milter_internal_networks holds 0.0.0.0/0" in err, err
