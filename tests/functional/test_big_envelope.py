"""test_big_envelope.py - a transaction whose envelope does not fit one
scanner packet (SCANPROTO_MAX_PACKET, 256 KiB) within the default
max_recipients = 1000: 1000 legal, upstream-accepted recipients of 300
octets (the parser allows paths of 512) make a ~300 KB scan request.

Until session 19 the send failed (EMSGSIZE): the proxy's scanner client
then dropped its connection, tempfailing that message forever and every
other client's scan pending on it; the milter took it for "scanner
unavailable" and, with milter_default_action = accept, passed a message
its filters reject unscanned.  The request now goes whole in a sealed
memfd of its own (scanproto.h "Big envelopes"); the milter refuses, with
452 at RCPT, a recipient that would take it past what the scanner takes.
The same through a real Postfix: test_milter_postfix.py."""
import threading
import time

from milterlib import RawMilter
from mwlib import free_port, make_msg, plugin_opt


def big_rcpts(n=1000, last=None):
    """n recipients of 300 octets; the last one with `last` in it"""
    out = ["%s%04d@%s.example.net" % ("r" * 230, i, "d" * 53) for i in range(n)]
    if last:
        out[-1] = out[-1][:20] + last + out[-1][20 + len(last):]
    assert all(len(a) == 300 for a in out)
    return out


def send_pipelined(c, frm, rcpts, msg):
    """MAIL + all RCPTs + DATA in one batch (PIPELINING), then the content."""
    batch = ["MAIL FROM:<%s>" % frm] + ["RCPT TO:<%s>" % r for r in rcpts] + ["DATA"]
    c.send(("\r\n".join(batch) + "\r\n").encode())
    replies = c.replies(len(batch), timeout=60)
    assert replies[0].code == 250, replies[0]
    assert all(r.code == 250 for r in replies[1:-1]), [r for r in replies[1:-1] if r.code != 250][:3]
    assert replies[-1].code == 354, replies[-1]
    c.send(msg + b".\r\n")
    return c.reply(timeout=60)


def test_1000_long_recipients_are_scanned(mw_factory, upstream):
    m = mw_factory(upstream, opts=[plugin_opt()])
    c = m.client(timeout=60)
    c.ehlo()
    r = send_pipelined(c, "a@example.org", big_rcpts(), make_msg(subject="newsletter"))
    c.quit()
    rec = m.audit(1)[-1]
    assert r.code == 250, (r, rec.get("fault"))
    assert rec["action"] == "accept" and not rec.get("fault"), rec
    assert len(upstream.messages) == 1 and len(upstream.messages[0].rcpt_tos) == 1000


def test_big_envelope_reaches_the_filters_whole(mw_factory, upstream):
    """The 1000th recipient is one the example plugin refuses: the message
    is refused, so the scanner saw the envelope to its end."""
    m = mw_factory(upstream, opts=[plugin_opt(reject_rcpt="refuse-me")])
    c = m.client(timeout=60)
    c.ehlo()
    r = send_pipelined(c, "a@example.org", big_rcpts(last="refuse-me"), make_msg(subject="hi"))
    c.quit()
    assert r.code == 550, r
    assert not upstream.messages


def test_big_envelope_does_not_tempfail_other_clients(mw_factory, upstream):
    """Another client's message, being scanned on the same scanner
    connection (the example plugin sleeps 1.5 s on it) while the big one
    is sent, is not tempfailed."""
    m = mw_factory(upstream, opts=[plugin_opt(), ("proxy_threads", "1")])
    out = {}

    def victim():
        c = m.client(timeout=30)
        c.ehlo()
        msg = make_msg(subject="hello", headers=[("X-Example-Sleep", "1500")])
        out["victim"] = c.transaction("v@example.org", ["w@example.net"], msg)["final"]
        c.quit()

    t = threading.Thread(target=victim)
    t.start()
    time.sleep(0.7)          # the victim's scan is pending now
    c = m.client(timeout=60)
    c.ehlo()
    r = send_pipelined(c, "a@example.org", big_rcpts(), make_msg(subject="newsletter"))
    c.quit()
    t.join(30)
    assert out["victim"].code == 250, out["victim"]
    assert r.code == 250, r


def milter(mw_factory, upstream, opts=()):
    port = free_port()
    m = mw_factory(upstream, opts=[("milter_listen", "inet:%d@127.0.0.1" % port),
                                   plugin_opt(action_header="X-Action"),
                                   ("milter_default_action", "accept")] + list(opts))
    return m, port


def test_milter_big_envelope_is_not_passed_unscanned(mw_factory, upstream):
    """The end-of-message request of 1000 long recipients reaches the
    scanner, with the early checks at RCPT (the default) and without: a
    message the example plugin rejects (X-Action: reject) is refused, not
    accepted unscanned under milter_default_action = accept."""
    spam = make_msg(subject="x", headers=[("X-Action", "reject")])
    rcpts = [("<%s>" % a).encode() for a in big_rcpts()]
    for early in ("yes", "no"):
        m, port = milter(mw_factory, upstream, [("milter_early", early)])
        with RawMilter(port, timeout=60) as rm:
            rm.negotiate().connect()
            v, d, _ = rm.message(spam, rcpts=[b"<victim@example.net>"], qid=b"Q1")
            assert v == b"y", v                  # one recipient: refused (replycode)
            v2, d2, _ = rm.message(spam, rcpts=rcpts, qid=b"Q2")
        recs = [r for r in m.audit(2) if r.get("listener") == "milter"]
        assert v2 == b"y" and d2.startswith(b"550"), (early, v2, d2, recs[-1].get("fault"))
        assert recs[-1]["action"] == "reject" and not recs[-1].get("fault"), recs[-1]
        m.stop()


def test_milter_refuses_recipients_past_one_request(mw_factory, upstream):
    """The MTA chooses the recipients (Postfix's smtpd_recipient_limit, up
    to 10000 here): recipients of 65,000 octets pass what one scan request
    carries (SCANPROTO_MAX_REQUEST, 64 MiB) after about a thousand; from
    there each gets 452 4.5.3 (the MTA tells its client to send those
    again later), and the message to the others is scanned."""
    m, port = milter(mw_factory, upstream, [("milter_early", "no")])
    spam = make_msg(subject="x", headers=[("X-Action", "reject")])
    with RawMilter(port, timeout=120) as rm:
        rm.negotiate().connect()
        assert rm.mail(qid=b"Q3")[0] == b"c"
        first_refused = None
        for i in range(1100):
            addr = b"<" + b"%04d" % i + b"r" * 64990 + b"@example.net>"
            cmd, data = rm.rcpt(addr)
            if cmd != b"c":
                assert cmd == b"y" and data.startswith(b"452 4.5.3"), (i, cmd, data)
                first_refused = first_refused or i
        body = rm.headers(spam)
        rm.body(body)
        v, d, _ = rm.eom()
    assert first_refused is not None and 1000 <= first_refused < 1030, first_refused
    assert v == b"y" and d.startswith(b"550"), (v, d)
    rec = [r for r in m.audit(1) if r.get("listener") == "milter"][-1]
    assert rec["action"] == "reject", rec
