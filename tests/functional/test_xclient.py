"""XCLIENT / XFORWARD towards a real Postfix (issue 3).

Postfix runs with mynetworks = 127.0.0.1/32 (mailwarden's own address) and
trusts mailwarden for XCLIENT.  The test client connects from 127.0.0.2,
which is outside mynetworks: with XCLIENT, Postfix applies its rules to
127.0.0.2 and refuses to relay; without it, Postfix would see 127.0.0.1 and
relay anything (an open relay).  XCLIENT/XFORWARD sent by a client is never
honoured or passed on."""

import re
import smtplib

import pytest

import audit_fields as A
import mwlib
from mwlib import make_msg, wait_until
from postfixlib import Postfix, available

pytestmark = pytest.mark.skipif(not available(), reason="needs root and Debian's postfix")

CLIENT_ADDR = "127.0.0.2"


@pytest.fixture(scope="module")
def sink():
    """The capture sink behind Postfix, shared by the module's tests."""
    up = mwlib.Upstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def postfixes(tmp_path_factory, sink):
    """One Postfix per main.cf variant, started once for the module."""
    made = {}

    def get(**main):
        key = tuple(sorted(main.items()))
        if key not in made:
            cf = {"relay_domains": "relay.example.test"}
            cf.update(main)
            made[key] = Postfix(tmp_path_factory.mktemp("pf"), relayhost=sink.addr, main=cf).start()
        return made[key]
    yield get
    for pf in made.values():
        pf.stop()


@pytest.fixture
def upstream(sink):
    """The sink, emptied for this test (the name mw tests use)."""
    sink.messages.clear()
    return sink


@pytest.fixture
def postfix(postfixes, upstream):
    return postfixes


def client(m):
    s = smtplib.SMTP(timeout=15, source_address=(CLIENT_ADDR, 0))
    s.connect("127.0.0.1", m.port)
    return s


def mw(mw_factory, pf, opts=()):
    return mw_factory(pf.addr, opts=list(opts), wait_probe=False)


def test_xclient_carries_the_real_client(mw_factory, postfix, upstream):
    pf = postfix(smtpd_authorized_xclient_hosts="127.0.0.1")
    m = mw(mw_factory, pf)
    s = client(m)
    s.ehlo("client.example.org")
    assert s.mail("a@example.org")[0] == 250
    code, text = s.rcpt("b@example.net")                 # not Postfix's domain: relaying
    assert code == 554 and b"Relay access denied" in text, (code, text)
    assert s.rcpt("x@relay.example.test")[0] == 250
    code, _ = s.data(make_msg(to="x@relay.example.test", subject="via xclient"))
    assert code == 250
    s.quit()
    msgs = upstream.wait_messages(1, timeout=15)
    assert msgs, pf.log()
    received = mwlib.headers_named(msgs[0].content, "Received")
    # Postfix's own trace names the real client, its HELO and protocol
    assert any("client.example.org" in r and "[127.0.0.2]" in r and "with ESMTP" in r for r in received), \
        (received, pf.log())
    log = pf.log()
    assert re.search(r"client=unknown\[127\.0\.0\.2\]", log), log
    rec = m.audit(1)[-1]
    assert rec["client_ip"] == CLIENT_ADDR


def test_without_xclient_postfix_would_relay(mw_factory, postfix, upstream):
    """The control case: the same Postfix without XCLIENT from mailwarden
    sees 127.0.0.1 (in mynetworks) and relays: what XCLIENT prevents."""
    pf = postfix(smtpd_authorized_xclient_hosts="127.0.0.1")
    listen = "127.0.0.1:%d" % mwlib.free_port()
    m = mw_factory(pf.addr, opts=[("listener.plain.upstream_xclient", "no")],
                   listeners=[("plain", listen, pf.addr, None)], wait_probe=False)
    s = client(m)
    s.ehlo("client.example.org")
    s.mail("a@example.org")
    assert s.rcpt("b@example.net")[0] == 250
    s.quit()


def test_xforward_when_no_xclient(mw_factory, postfix, upstream):
    pf = postfix(smtpd_authorized_xforward_hosts="127.0.0.1")
    log_before = pf.log()
    m = mw(mw_factory, pf)
    s = client(m)
    s.ehlo("client.example.org")
    s.sendmail("a@example.org", ["x@relay.example.test"], make_msg(to="x@relay.example.test"))
    s.quit()
    msgs = upstream.wait_messages(1, timeout=15)
    assert msgs, pf.log()
    # XFORWARD is for the MTA's logging: the forwarded client is in its log
    assert wait_until(lambda: "127.0.0.2" in pf.log(), 5), pf.log()
    assert "127.0.0.2" not in log_before


def test_client_xclient_is_never_honoured(mw_factory, postfix, upstream):
    pf = postfix(smtpd_authorized_xclient_hosts="127.0.0.1")
    m = mw(mw_factory, pf)
    s = client(m)
    code, text = s.ehlo("client.example.org")
    assert b"XCLIENT" not in text.upper() and b"XFORWARD" not in text.upper()
    assert s.docmd("XCLIENT ADDR=127.0.0.1")[0] == 502
    assert s.docmd("XFORWARD ADDR=127.0.0.1")[0] == 502
    assert s.mail("a@example.org")[0] == 250
    assert s.rcpt("b@example.net")[0] == 554            # still the real client: no relaying
    s.quit()
    assert "XCLIENT ADDR=127.0.0.1 " not in pf.log()


def test_postfix_helo_restriction_holds_through_xclient(mw_factory, postfix, upstream):
    """Postfix with reject_invalid_helo_hostname and smtpd_delay_reject = no
    refuses a client's bad EHLO name outright.  Through mailwarden, the
    EHLO after XCLIENT carrying that name was refused and mailwarden sent
    "HELO <its own hostname>" instead: the client passed Postfix's HELO
    restriction under mailwarden's name and the message was delivered.
    Now the client hears Postfix's refusal (at its MAIL: mailwarden answered
    the EHLO itself) and nothing reaches Postfix's queue."""
    pf = postfix(smtpd_authorized_xclient_hosts="127.0.0.1", smtpd_delay_reject="no",
                 smtpd_helo_restrictions="reject_invalid_helo_hostname")
    m = mw(mw_factory, pf)
    s = client(m)
    s.ehlo("bad_name!")
    code, text = s.mail("a@example.org")
    assert code == 501 and b"Helo command rejected" in text, (code, text)
    code, _ = s.rcpt("x@relay.example.test")
    assert code == 503, code                            # no transaction
    s.quit()
    assert not upstream.wait_messages(1, timeout=1), upstream.messages
    # a good name goes through the same Postfix
    s = client(m)
    s.ehlo("client.example.org")
    s.sendmail("a@example.org", ["x@relay.example.test"], make_msg(to="x@relay.example.test"))
    s.quit()
    assert upstream.wait_messages(1, timeout=15), pf.log()


def test_postfix_judges_the_whole_helo_name_over_255_octets(mw_factory, postfix, upstream):
    """A 327-octet HELO name is invalid (RFC 5321 4.5.3.1.2; Postfix's
    valid_hostname() takes 255).  mailwarden kept 255 octets of it, which
    end on a whole label ("...label31"): Postfix's
    reject_invalid_helo_hostname saw a valid name the client never gave,
    and the message went through (session 21, rv-smtp).  Now the EHLO after
    XCLIENT carries the whole name, and Postfix refuses it."""
    pf = postfix(smtpd_authorized_xclient_hosts="127.0.0.1", smtpd_delay_reject="no",
                 smtpd_helo_restrictions="reject_invalid_helo_hostname")
    m = mw(mw_factory, pf)
    s = client(m)
    helo = ".".join(["label%02d" % i for i in range(40)]) + ".example"     # 327 octets
    assert s.ehlo(helo)[0] == 250
    code, text = s.mail("a@example.org")
    assert code == 501 and b"Helo command rejected" in text, (code, text)
    s.quit()
    assert not upstream.wait_messages(1, timeout=1), upstream.messages


# A HELO name of 255 octets, all "+" and "=": 765 octets of xtext, three
# times what Postfix takes in an XCLIENT or XFORWARD value
LONG_HELO = ("+=" * 128)[:255]


def test_postfix_takes_a_helo_over_255_octets_of_xtext(mw_factory, postfix, upstream):
    """Postfix refuses an XCLIENT (and XFORWARD) attribute of more than 255
    octets of xtext, before decoding it ("501 5.5.4 Error: attribute value
    too long").  mailwarden sent such a HELO whole, Postfix refused the
    XCLIENT, and the client got 451 at its MAIL, on every retry, until its
    mail bounced days later.  Now the XCLIENT says HELO=[UNAVAILABLE], the
    EHLO after it still carries the whole name (Postfix takes an EHLO
    argument of any length), the message is delivered, and one line names
    the session and the attribute."""
    pf = postfix(smtpd_authorized_xclient_hosts="127.0.0.1")
    m = mw(mw_factory, pf)
    s = client(m)
    assert s.ehlo(LONG_HELO)[0] == 250
    code, text = s.mail("a@example.org")
    assert code == 250, (code, text, m.stderr_text()[-2000:])
    assert s.rcpt("b@example.net")[0] == 554             # still judged as 127.0.0.2
    assert s.rcpt("x@relay.example.test")[0] == 250
    assert s.data(make_msg(to="x@relay.example.test", subject="long helo"))[0] == 250
    s.quit()
    msgs = upstream.wait_messages(1, timeout=15)
    assert msgs, pf.log()
    received = mwlib.headers_named(msgs[0].content, "Received")
    # Postfix's own trace: the real client, and the HELO the EHLO carried
    assert any(LONG_HELO[:60] in r.replace("\r\n", "").replace("\n", "") and "[127.0.0.2]" in r
               for r in received), (received, pf.log())
    log = m.stderr_text()
    lines = [l for l in log.splitlines() if "XCLIENT HELO is 765 octets of xtext" in l]
    assert len(lines) == 1 and "[UNAVAILABLE]" in lines[0], log[-2000:]
    sid = A.field(m.audit(1)[-1], "session")
    assert sid in lines[0], (sid, lines[0])
    assert "attribute value too long" not in pf.log()


def test_postfix_xforward_takes_a_helo_over_255_octets_of_xtext(mw_factory, postfix, upstream):
    """The same through XFORWARD (Postfix trusts mailwarden for XFORWARD
    only): HELO=[UNAVAILABLE] for Postfix's log, the message delivered."""
    pf = postfix(smtpd_authorized_xforward_hosts="127.0.0.1")
    m = mw(mw_factory, pf)
    s = client(m)
    assert s.ehlo(LONG_HELO)[0] == 250
    code, text = s.mail("a@example.org")
    assert code == 250, (code, text, m.stderr_text()[-2000:])
    assert s.rcpt("x@relay.example.test")[0] == 250
    assert s.data(make_msg(to="x@relay.example.test", subject="long helo xforward"))[0] == 250
    s.quit()
    assert upstream.wait_messages(1, timeout=15), pf.log()
    assert wait_until(lambda: "127.0.0.2" in pf.log(), 5), pf.log()
    assert "XFORWARD HELO is 765 octets of xtext" in m.stderr_text()
    assert "attribute value too long" not in pf.log()


def test_postfix_takes_a_login_over_255_octets_of_xtext(mw_factory, postfix, upstream):
    """A login of 255 octets with "+" in it (here from a trusted XFORWARD
    peer) goes to Postfix as LOGIN=[UNAVAILABLE], never cut (a cut login
    names another user): Postfix judges the client unauthenticated, so it
    may not relay (554, a final answer the sender sees at once) and mail
    for Postfix's own domains is delivered, where every transaction was
    tempfailed (451) before."""
    pf = postfix(smtpd_authorized_xclient_hosts="127.0.0.1")
    listen = "127.0.0.1:%d" % mwlib.free_port()
    m = mw_factory(pf.addr, opts=[("listener.pf.xforward_from", "127.0.0.2")],
                   listeners=[("pf", listen, pf.addr, None)], wait_probe=False)
    login = ("first.last+news@mail.example-company.org" * 7)[:255]
    s = client(m)
    s.ehlo("client.example.org")
    code, _ = s.docmd("XFORWARD", "ADDR=127.0.0.3 PROTO=ESMTP HELO=peer.example.org LOGIN=%s"
                      % login.replace("+", "+2B"))
    assert code == 250
    code, text = s.mail("a@example.org")
    assert code == 250, (code, text, m.stderr_text()[-2000:])
    code, text = s.rcpt("b@example.net")
    assert code == 554 and b"Relay access denied" in text, (code, text)
    assert s.rcpt("x@relay.example.test")[0] == 250
    assert s.data(make_msg(to="x@relay.example.test", subject="long login"))[0] == 250
    s.quit()
    assert upstream.wait_messages(1, timeout=15), pf.log()
    assert "XCLIENT LOGIN is" in m.stderr_text()
    assert "attribute value too long" not in pf.log()


@pytest.mark.parametrize("via", ["xclient", "xforward"])
@pytest.mark.parametrize("name", ["-bad.example", "a..b.example", "x" * 64 + ".example", "good-name.example"])
def test_postfix_takes_every_name_a_trusted_peer_gives(mw_factory, postfix, upstream, via, name):
    """A trusted XFORWARD peer's NAME that mailwarden's parser takes but
    Postfix's valid_hostname() does not (a leading hyphen, an empty label,
    a label of 64 octets): Postfix answered 501 to our XCLIENT or
    XFORWARD, and the client got 451 on every retry.  Such a NAME now goes
    as [UNAVAILABLE] (one log line); a good one goes as it is."""
    pf = postfix(**{"smtpd_authorized_%s_hosts" % via: "127.0.0.1"})
    listen = "127.0.0.1:%d" % mwlib.free_port()
    m = mw_factory(pf.addr, opts=[("listener.pf.xforward_from", "127.0.0.2")],
                   listeners=[("pf", listen, pf.addr, None)], wait_probe=False)
    s = client(m)
    s.ehlo("client.example.org")
    assert s.docmd("XFORWARD", "NAME=%s ADDR=127.0.0.3 PROTO=ESMTP HELO=peer.example.org" % name)[0] == 250
    code, text = s.mail("a@example.org")
    assert code == 250, (code, text, m.stderr_text()[-2000:])
    assert s.rcpt("x@relay.example.test")[0] == 250
    assert s.data(make_msg(to="x@relay.example.test", subject="name " + name[:20]))[0] == 250
    s.quit()
    assert upstream.wait_messages(1, timeout=15), pf.log()
    good = name == "good-name.example"
    assert m.audit(1)[-1]["client_name"] == name            # mailwarden's own record keeps it
    shown = name if good else "unknown"
    assert wait_until(lambda: "client=%s[127.0.0.3]" % shown in pf.log(), 5), pf.log()[-2000:]
    assert "Bad NAME syntax" not in pf.log()
    replaced = "%s NAME %s is no host name the next hop takes" % (via.upper(), name)
    assert (replaced in m.stderr_text()) == (not good), m.stderr_text()[-2000:]
