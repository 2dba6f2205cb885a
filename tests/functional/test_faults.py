"""test_faults.py - what goes wrong: the upstream is unreachable, silent,
drops mid-DATA or says something malformed; the client drops mid-DATA; the
scanner misses its deadline or is killed with SIGKILL mid-scan; the master
gets SIGTERM or SIGHUP; the proxy process dies."""

import errno
import os
import random
import re
import resource
import socket
import threading
import signal
import time

import pytest

import audit_fields as A
from mwlib import (CRLF, RawUpstream, SMTPClient, Upstream, assert_same_bytes, cpu_seconds, dot_stuff, free_port,
                   make_msg, plugin_opt, preload_shim, wait_until)


def enhanced_class(r):
    w = r.first.split(" ", 1)[0]
    return w[0] if w.count(".") == 2 else None


# --- upstream faults ---------------------------------------------------------------

def test_upstream_unreachable_then_back(mw_factory, tmp_path):
    port = free_port()
    m = mw_factory("127.0.0.1:%d" % port, opts=[("upstream_connect_timeout", "1s")])
    c = m.client()
    c.ehlo()
    r = c.cmd("MAIL FROM:<a@example.org>")
    assert r.code == 451 and r.first.startswith("4.4.1"), r
    assert c.cmd("NOOP").code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 503       # no transaction open
    r = c.cmd("MAIL FROM:<a@example.org>")
    assert r.code == 451, r
    # the upstream comes up: the next MAIL reaches it
    up = Upstream(port=port).start()
    try:
        msg = make_msg(subject="upstream back")
        r = c.transaction("a@example.org", ["b@example.net"], msg)
        assert r["final"].code == 250, r
        assert_same_bytes(up.messages[0].content, msg)
    finally:
        up.stop()
    c.quit()


def test_upstream_never_greets(mw_factory, raw_upstream):
    up = raw_upstream(script={"GREETING": "silent"})
    m = mw_factory(up, opts=[("upstream_connect_timeout", "1s")], wait_probe=False)
    c = m.client()
    c.ehlo()
    t0 = time.monotonic()
    r = c.cmd("MAIL FROM:<a@example.org>", timeout=6)
    assert r.code == 451, r
    assert time.monotonic() - t0 < 4
    assert c.cmd("NOOP").code == 250
    c.quit()


def test_upstream_silent_after_mail(mw_factory, raw_upstream):
    up = raw_upstream(script={"MAIL": "silent"})
    m = mw_factory(up, opts=[("upstream_command_timeout", "1s")])
    c = m.client()
    c.ehlo()
    t0 = time.monotonic()
    r = c.cmd("MAIL FROM:<a@example.org>", timeout=6)
    assert r.code == 451, r
    assert time.monotonic() - t0 < 4
    assert c.cmd("NOOP").code == 250
    c.quit()


def test_upstream_closes_mid_data(mw_factory, raw_upstream):
    up = raw_upstream(script={"DATA": ("close_after", 3000)})
    m = mw_factory(up)
    c = m.client()
    c.ehlo()
    msg = make_msg(subject="dropped", body=(b"z" * 70 + CRLF) * 2000)
    r = c.transaction("a@example.org", ["b@example.net"], msg)
    assert r["data"].code == 354
    assert r["final"].code == 451, r["final"]
    assert up.messages == []
    assert c.cmd("NOOP").code == 250
    c.quit()
    rec = m.audit(1)[-1]
    assert str(A.field(rec, "reply")).startswith("451")


FAST_UPSTREAM = [("upstream_command_timeout", "2s"), ("upstream_eod_timeout", "3s"),
                 ("upstream_data_timeout", "3s")]


def big_transaction_lost(m, body_lines):
    """MAIL, RCPT, DATA and a message far past the relay's high-water mark
    (256 KiB in the upstream's output): the end of data's reply and how long
    it took (None, if there was none within 20 s)"""
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(dot_stuff(make_msg(subject="big", body=(b"z" * 70 + CRLF) * body_lines)))
    t0 = time.monotonic()
    try:
        r = c.reply(20)
    except (TimeoutError, socket.timeout, ConnectionError) as e:
        return c, e, time.monotonic() - t0
    return c, r, time.monotonic() - t0


def test_upstream_closes_mid_data_large_message(mw_factory, raw_upstream):
    """The upstream reads 3000 octets of a 4 MB message and closes.  While
    the body is written no reply is awaited, and the loss reached nobody:
    the client waited without end (no read deadline while busy), the spool
    stayed held.  Now it gets the 451 of a small message's loss at once."""
    up = raw_upstream(script={"DATA": ("close_after", 3000)})
    m = mw_factory(up, opts=FAST_UPSTREAM)
    c, r, took = big_transaction_lost(m, 60000)
    assert not isinstance(r, Exception), "no reply to the end of data after %.1fs: %r" % (took, r)
    assert r.code == 451 and r.first.startswith("4.4.2"), r
    assert took < 5, took
    assert up.messages == []
    assert c.cmd("NOOP").code == 250
    c.quit()
    rec = m.audit(1)[-1]
    assert A.field(rec, "action") == "tempfail" and str(A.field(rec, "reply")).startswith("451"), rec


def test_upstream_stops_reading_mid_data_large_message(mw_factory, raw_upstream):
    """The upstream answers 354 and reads nothing: the write deadline
    (upstream_data_timeout) fired, but the client got no reply, and the dead
    connection's write deadline fired again and again, each time logged.
    Now: 451 after upstream_data_timeout, one warning, the next transaction
    goes through."""
    release = threading.Event()

    def data(up, st):
        up._send(st, b"354 go ahead\r\n")
        release.wait(20)
        return "close"
    up = raw_upstream(script={"DATA": data})
    m = mw_factory(up, opts=FAST_UPSTREAM)
    try:
        c, r, took = big_transaction_lost(m, 120000)          # 8.6 MB
        assert not isinstance(r, Exception), "no reply to the end of data after %.1fs: %r" % (took, r)
        assert r.code == 451, r
        assert took < 8, took
        time.sleep(4)                   # past a second upstream_data_timeout
        assert m.stderr_text().count("timeout waiting for write") == 1, m.stderr_tail(20)
    finally:
        release.set()
    assert up.messages == []
    assert c.cmd("NOOP").code == 250
    c.quit()


def test_upstream_closes_mid_data_then_next_message(mw_factory, raw_upstream):
    """after the loss mid-body, the same session opens a new upstream
    connection for its next message"""
    lost = []

    def data(up, st):
        if not lost:
            lost.append(1)
            return ("close_after", 3000)
        return None
    up = raw_upstream(script={"DATA": data})
    m = mw_factory(up, opts=FAST_UPSTREAM)
    c, r, _ = big_transaction_lost(m, 60000)
    assert r.code == 451, r
    msg = make_msg(subject="second", body=(b"y" * 70 + CRLF) * 20000)
    assert c.transaction("a@example.org", ["b@example.net"], msg)["final"].code == 250
    c.quit()
    assert len(up.messages) == 1


def test_upstream_closes_at_end_of_data(mw_factory, raw_upstream):
    up = raw_upstream(script={"EOD": "close"})
    m = mw_factory(up)
    c = m.client()
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject="no final reply"))
    assert r["final"].code == 451, r["final"]
    assert c.cmd("NOOP").code == 250
    c.quit()


GARBAGE = {
    "no-code": b"GARBAGE without a code\r\n",
    "short-code": b"25 GARBAGE\r\n",
    "letters-in-code": b"2x0 GARBAGE\r\n",
    "out-of-range": b"999 9.9.9 GARBAGE\r\n",
    "code-changes": b"250-GARBAGE first\r\n550 5.0.0 GARBAGE second\r\n",
    "nul": b"250 GARBAGE\x00nul\r\n",
    "huge": b"250 GARBAGE" + b"A" * 40000 + b"\r\n",
    "bare-lf": b"250 GARBAGE bare LF\n",
    "no-space": b"250GARBAGE\r\n",
    "extra-reply": b"250 2.1.0 Ok\r\n250 GARBAGE unsolicited\r\n",
}


@pytest.mark.parametrize("verb", ["MAIL", "RCPT"])
@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_malformed_upstream_reply(mw_factory, raw_upstream, verb, kind):
    if kind == "extra-reply" and verb == "RCPT":
        up = raw_upstream(script={"RCPT": b"250 2.1.5 Ok\r\n250 GARBAGE unsolicited\r\n"})
    else:
        up = raw_upstream(script={verb: GARBAGE[kind]})
    m = mw_factory(up, opts=[("upstream_command_timeout", "1s")])
    c = m.client()
    c.ehlo()
    seen = []
    r = c.cmd("MAIL FROM:<a@example.org>", timeout=6)
    seen.append(r)
    if verb == "MAIL":
        if kind == "extra-reply":
            # the MAIL reply itself is fine; the stray line must not be the RCPT's reply
            assert r.code == 250, r
            r = c.cmd("RCPT TO:<b@example.net>", timeout=6)
            seen.append(r)
            assert r.code != 250 or b"GARBAGE" not in r.raw
        else:
            assert r.code == 451, r
    else:
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<b@example.net>", timeout=6)
        seen.append(r)
        if kind != "extra-reply":
            assert r.code == 451, r
        r = c.cmd("RCPT TO:<c@example.net>", timeout=6)
        seen.append(r)
    # whatever happened, the client never hears the garbage and the session lives
    seen.append(c.cmd("RSET", timeout=6))
    assert all(b"GARBAGE" not in x.raw for x in seen), seen
    assert b"GARBAGE" not in c.buf
    assert c.cmd("NOOP").code == 250
    c.quit()
    assert up.messages == []


def test_unsolicited_reply_never_answers_a_pipelined_command(mw_factory, raw_upstream):
    """An extra reply to MAIL already in the input when a pipelining
    client's RCPT is sent upstream (from inside the MAIL reply's callback)
    was taken as the RCPT's reply and relayed, though the upstream refused
    the recipient.  A reply that came before its command left is
    unsolicited: a protocol error, never relayed (451)."""
    up = raw_upstream(script={"MAIL": b"250 2.1.0 Ok\r\n250 2.1.5 GARBAGE unsolicited\r\n",
                              "RCPT": b"550 5.1.1 <b@example.net>: Recipient address rejected\r\n"})
    m = mw_factory(up, opts=[("upstream_command_timeout", "2s")])
    c = m.client()
    c.ehlo()
    c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n")
    r1 = c.reply(6)
    r2 = c.reply(6)
    assert r1.code == 250, r1
    assert r2.code == 451 and b"GARBAGE" not in r2.raw, r2
    assert "unsolicited reply" in m.stderr_text(), m.stderr_tail(10)
    assert c.cmd("RSET").code == 250
    c.quit()
    assert up.messages == []


def test_xclient_upstream_refusing_the_client_helo_is_relayed(mw_factory, raw_upstream):
    """After XCLIENT the EHLO carries the client's name.  An MTA that
    refused it got "HELO <mailwarden's hostname>" instead, in the client's
    XCLIENT session: the client passed the MTA's HELO checks under our name
    and its message was delivered.  Now the refusal is the client's: its
    MAIL gets the MTA's reply, no HELO is sent, nothing is delivered; a
    client with a good name is unaffected."""
    def ehlo(up, st):
        if b"bad_name" in st["lines"][-1]:
            return b"501 5.5.2 <bad_name!>: Helo command rejected: Invalid name\r\n"
        return None
    up = raw_upstream(caps=RawUpstream.CAPS + [b"XCLIENT ADDR PORT NAME HELO PROTO LOGIN"],
                      script={"OTHER": b"220 raw.upstream ESMTP\r\n", "EHLO": ehlo})
    m = mw_factory(up)
    c = m.client()
    c.ehlo("bad_name!")
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject="helo swap"))
    assert r["mail"].code == 501 and b"Helo command rejected" in r["mail"].raw, r
    assert c.cmd("NOOP").code == 250
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject="helo swap again"))
    assert r["mail"].code == 501, r
    c.quit()
    lines = [l for sess in up.sessions for l in sess]
    assert not any(l.startswith(b"HELO") for l in lines), lines
    assert up.messages == []
    rec = m.audit(1)[-1]
    assert A.field(rec, "action") == "rejected-by-upstream", rec
    good = m.client()
    good.ehlo("client.example.org")
    assert good.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    good.quit()
    assert len(up.messages) == 1


def test_new_helo_name_reopens_the_xclient_upstream(mw_factory, raw_upstream):
    """After RSET and an EHLO with another name, the upstream opened with
    XCLIENT HELO=<old name> was reused: the MTA checked the old name while
    the scan saw the new one.  Now a new connection names the new one."""
    up = raw_upstream(caps=RawUpstream.CAPS + [b"XCLIENT ADDR PORT NAME HELO PROTO LOGIN"],
                      script={"OTHER": b"220 raw.upstream ESMTP\r\n"})
    m = mw_factory(up)
    c = m.client()
    c.ehlo("first.example.org")
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    assert c.cmd("RSET").code == 250
    c.ehlo("first.example.org")                 # the same name: the connection stays
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.ehlo("second.example.org")
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()
    xclients = [l for sess in up.sessions for l in sess if l.startswith(b"XCLIENT")]
    assert len(xclients) == 2 and b"HELO=first.example.org" in xclients[0] and \
        b"HELO=second.example.org" in xclients[1], xclients
    assert "second.example.org" in up.ehlos, up.ehlos
    assert m.audit(3)[-1]["helo"] == "second.example.org"


def test_upstream_refusing_our_ehlo_gets_helo(mw_factory, raw_upstream):
    """the fallback that stays: an MTA without ESMTP refuses mailwarden's
    own EHLO (no XCLIENT yet), and gets HELO with our name, with the
    default upstream_xclient = yes too ("when offered": session 19's tls19
    made that 451, test_xclient_not_offered_relays_and_warns_once)"""
    up = raw_upstream(script={"EHLO": b"502 5.5.2 Error: command not recognized\r\n"})
    m = mw_factory(up, wait_probe=False)
    c = m.client()
    c.ehlo("client.example.org")
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject="plain smtp"))
    assert r["final"].code == 250, r
    c.quit()
    assert any(l.startswith(b"HELO ") for sess in up.sessions for l in sess), up.sessions


XCLIENT_OFFER = b"XCLIENT ADDR PORT NAME HELO PROTO LOGIN"
EHLO_REFUSED = {"EHLO": b"502 5.5.2 Error: command not recognized\r\n"}
NOT_OFFERED = {
    "ehlo": "offers neither XCLIENT nor XFORWARD: its sessions go on under mailwarden's address",
    "helo": "refused our EHLO, and HELO has no XCLIENT/XFORWARD: its sessions go on under mailwarden's address",
}


@pytest.mark.parametrize("case", sorted(NOT_OFFERED))
def test_xclient_not_offered_relays_and_warns_once(mw_factory, raw_upstream, case):
    """upstream_xclient = yes (the default) sends XCLIENT/XFORWARD "when
    offered".  One policy whatever the reason it is not: an EHLO reply
    without them (an MTA not configured for us, or a man in the middle who
    deletes the lines) and a refused EHLO (HELO: an MTA without ESMTP,
    smtp-sink -e, or the same man in the middle) both relay under
    mailwarden's address, and a WARNING says so once a minute per upstream,
    not once per connection (two event loops: one line still).  On main
    the first relayed without a word, the second failed every MAIL (451)."""
    opts = [("proxy_threads", "2")]
    if case == "helo":
        up = raw_upstream(script=EHLO_REFUSED, caps=RawUpstream.CAPS + [XCLIENT_OFFER])
    else:
        up = raw_upstream()
        opts.append(("log_level", "warning"))      # it is a WARNING
    m = mw_factory(up, wait_probe=False, opts=opts)
    n = 6
    for i in range(n):
        c = m.client()
        c.ehlo("client%d.example.org" % i)
        r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject="no xclient %d" % i))
        assert r["final"].code == 250, (r, m.stderr_tail(20))
        c.quit()
    assert len(up.messages) == n
    sent = [l for sess in up.sessions for l in sess if l.startswith((b"XCLIENT", b"XFORWARD"))]
    assert sent == [], sent
    want = NOT_OFFERED[case]
    assert wait_until(lambda: want in m.stderr_text(), 3), m.stderr_tail(30)
    time.sleep(0.3)
    err = m.stderr_text()
    assert err.count(want) == 1, err[-4000:]
    line = next(l for l in err.splitlines() if want in l)
    assert "upstream=%s " % up.addr in line, line
    if case == "helo":
        # the reply is logged without its line end (it ended in \x0d\x0a)
        tried = [l for l in err.splitlines() if "refused our EHLO, trying HELO" in l]
        assert len(tried) == n, tried
        assert all(l.endswith("trying HELO: 502 5.5.2 Error: command not recognized") for l in tried), tried


def test_xclient_offered_again_then_not_is_warned_at_once(mw_factory, raw_upstream):
    """the warning is once a minute per upstream *or on change*: an
    upstream that offers XCLIENT again ends it (one line), and the next
    session without it is warned of at once, not a minute later"""
    up = raw_upstream(script={"OTHER": b"220 raw.upstream ESMTP\r\n"})
    m = mw_factory(up, wait_probe=False)
    want = NOT_OFFERED["ehlo"]

    def one(i):
        c = m.client()
        c.ehlo("client%d.example.org" % i)
        assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
        c.quit()
    one(0)
    one(1)
    assert wait_until(lambda: want in m.stderr_text(), 3), m.stderr_tail(20)
    up.caps = RawUpstream.CAPS + [XCLIENT_OFFER]
    one(2)
    assert wait_until(lambda: "upstream=%s offers XCLIENT again" % up.addr in m.stderr_text(), 3), \
        m.stderr_tail(20)
    up.caps = RawUpstream.CAPS
    one(3)
    assert wait_until(lambda: m.stderr_text().count(want) == 2, 3), m.stderr_tail(20)
    assert len(up.messages) == 4
    assert sum(1 for sess in up.sessions for l in sess if l.startswith(b"XCLIENT")) == 1


# --- client faults -----------------------------------------------------------------

def test_client_disconnects_mid_data(mw, upstream):
    c = mw.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<gone@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: half\r\n\r\nthe first half of the message\r\n")
    c.close()
    time.sleep(0.5)
    assert upstream.messages == []
    assert mw.alive()
    c2 = mw.client()
    c2.ehlo()
    msg = make_msg(subject="next client")
    assert c2.transaction("a@example.org", ["b@example.net"], msg)["final"].code == 250
    c2.quit()
    assert [(x.mail_from, x.content) for x in upstream.messages] == [("a@example.org", msg)]


def test_client_disconnects_after_dot_before_reply(mw_factory, upstream):
    """a client gone while its message is being scanned: mailwarden must not crash"""
    m = mw_factory(upstream, opts=[plugin_opt()])
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(dot_stuff(make_msg(headers=[("X-Example-Sleep", "500")])))
    c.close()
    time.sleep(1.0)
    assert m.alive()
    c2 = m.client()
    c2.ehlo()
    assert c2.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c2.quit()


def half_closed(m, first, rest, pause=0.3):
    """send first, wait, send rest and shut our sending side down (as
    "nc -N" or a script does); then read everything until the proxy
    closes: (all it sent after the greeting, seconds it took)"""
    s = socket.create_connection(("127.0.0.1", m.port), timeout=15)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220")
    s.sendall(first)
    time.sleep(pause)
    s.sendall(rest)
    s.shutdown(socket.SHUT_WR)
    t0 = time.monotonic()
    data = b""
    while True:
        got = f.read1(65536)
        if not got:
            break
        data += got
    s.close()
    return data, time.monotonic() - t0


ENVELOPE = b"EHLO client.example.org\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"


def test_client_half_close_after_pipelined_quit(mw_factory, upstream):
    """A client sends its message, QUIT, and shuts its sending side down,
    then reads the replies.  The EOF freed the session at once, cancelling
    the scan: the message was lost, the client heard nothing.  Real Postfix
    answers 250 and 221; now so do we (the scan takes 300 ms here, so the
    EOF comes while the session waits for it)."""
    m = mw_factory(upstream, opts=[plugin_opt()])
    msg = make_msg(subject="half close", headers=[("X-Example-Sleep", "300")])
    data, _ = half_closed(m, ENVELOPE + b"DATA\r\n", dot_stuff(msg) + b"QUIT\r\n")
    assert b"queued as" in data and data.endswith(b"221 2.0.0 Bye\r\n"), data
    assert len(upstream.messages) == 1
    assert_same_bytes(upstream.messages[0].content, msg)
    assert "answering what it sent" in m.stderr_text()


def test_client_half_close_after_end_of_data_without_quit(mw_factory, upstream):
    """no QUIT: the message still goes through and is answered, then the
    connection closes"""
    m = mw_factory(upstream)
    msg = make_msg(subject="no quit")
    data, _ = half_closed(m, ENVELOPE + b"DATA\r\n", dot_stuff(msg), pause=0.3)
    assert b"queued as" in data, data
    assert len(upstream.messages) == 1


@pytest.mark.parametrize("how", ["DATA", "BDAT"])
def test_client_half_close_mid_content_aborts(mw_factory, raw_upstream, how):
    """A half-close in the middle of the content (no end of data, a chunk
    cut short), arriving while the session still waits for the upstream's
    reply to MAIL: the commands before it are answered, the partial message
    is never relayed, the transaction is audited as aborted, and the
    connection closes (nothing waits for input that cannot come)."""
    def mail(up, st):
        time.sleep(0.5)
        return None
    up = raw_upstream(script={"MAIL": mail}, caps=RawUpstream.CAPS + [b"CHUNKING"])
    m = mw_factory(up, opts=[("client_command_timeout", "30s"), ("client_data_timeout", "30s")])
    part = b"Subject: cut\r\n\r\nthe first half of the message\r\n"
    if how == "DATA":
        tail = b"DATA\r\n" + part
    else:
        tail = b"BDAT 1000 LAST\r\n" + part
    data, took = half_closed(m, ENVELOPE + tail, b"", pause=0)
    assert took < 5, (took, data)
    replies = [l for l in data.split(b"\r\n") if l[:3].isdigit() and l[3:4] == b" "]
    assert [l[:3] for l in replies][:3] == [b"250", b"250", b"250"], data
    if how == "DATA":
        assert b"354 " in data, data
    assert up.messages == []
    rec = m.audit(1)[-1]
    assert A.field(rec, "action") == "aborted", rec
    assert wait_until(lambda: "client input ended in the middle of" in m.stderr_text(), 3), m.stderr_tail(10)
    assert m.alive()


def test_client_half_close_idle_is_freed_at_once(mw_factory, upstream):
    """nothing sent and nothing owed: the session goes at the EOF"""
    m = mw_factory(upstream)
    data, took = half_closed(m, b"EHLO client.example.org\r\n", b"MAIL FROM:<a@exa", pause=0.3)
    assert data.startswith(b"250-") and took < 2, (data, took)
    assert "client disconnected" in m.stderr_text()


def test_binary_junk_from_client(mw, upstream):
    rnd = random.Random(5321)
    c = mw.client()
    junk = bytes(rnd.getrandbits(8) for _ in range(65536))
    try:
        c.send(junk + b"\r\nQUIT\r\n")
        c.closed(5)
    except OSError:
        pass
    c.close()
    assert mw.alive()
    c2 = mw.client()
    assert c2.greeting.code == 220
    c2.ehlo()
    assert c2.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c2.quit()


# --- scanner faults ------------------------------------------------------------------

def test_scan_deadline(mw_factory, upstream):
    m = mw_factory(upstream, opts=[plugin_opt(), ("scan_timeout", "1s")])
    c = m.client()
    c.ehlo()
    t0 = time.monotonic()
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(headers=[("X-Example-Sleep", "2500")]))
    dt = time.monotonic() - t0
    assert r["final"].code == 451 and enhanced_class(r["final"]) == "4", r["final"]
    assert dt < 3.5, dt
    assert upstream.messages == []
    msg = make_msg(subject="fast one")
    assert c.transaction("a@example.org", ["b@example.net"], msg)["final"].code == 250
    c.quit()
    assert_same_bytes(upstream.messages[0].content, msg)
    rec = m.audit(1)[0]
    assert str(A.field(rec, "reply")).startswith("451")


def scanner_pid(m, timeout=5.0):
    pid = wait_until(lambda: m.child_pid("scanner"), timeout)
    assert pid, "no child of the master titled 'scanner': %r" % (m.children(),)
    return pid


def test_scanner_out_of_descriptors(mw_factory, upstream):
    """The scanner's accept() failing with EMFILE left the front end's
    connection in the backlog and the socket readable: it spun on it and
    logged every turn (64 million lines, 2 GB, in two minutes).  Now it
    rests between tries and logs once; the message gets the scan
    deadline's 451, and once descriptors free the next one is scanned."""
    m = mw_factory(upstream, opts=[("scan_timeout", "2s")])
    scanner = m.child_pid("scanner")
    held = len(os.listdir("/proc/%d/fd" % scanner))
    hard = resource.prlimit(scanner, resource.RLIMIT_NOFILE)[1]
    resource.prlimit(scanner, resource.RLIMIT_NOFILE, (held, hard))
    cpu = cpu_seconds(scanner)
    c = m.client(timeout=10)
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"], make_msg())["final"]
    assert r.code == 451 and r.first.startswith("4.3.0"), r
    time.sleep(1)
    assert cpu_seconds(scanner) - cpu < 0.5          # was a whole core
    log = m.stderr_text()
    assert log.count("scanner: accept") == 1, log[-3000:]
    assert "front end connections wait until descriptors free" in log and "Too many open files" in log
    resource.prlimit(scanner, resource.RLIMIT_NOFILE, (held + 64, hard))
    r = c.transaction("a@example.org", ["b@example.net"], make_msg())["final"]
    assert r.code == 250, r
    c.quit()
    assert "scanner: accepting again" in m.stderr_text()


def test_kill9_scanner_mid_scan(mw_factory, upstream):
    m = mw_factory(upstream, opts=[plugin_opt(), ("scan_timeout", "20s")])
    old = scanner_pid(m)
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(dot_stuff(make_msg(subject="killed", headers=[("X-Example-Sleep", "5000")])))
    time.sleep(0.8)                     # the scanner is sleeping on it now
    assert not c.pending(0), "replied before the scan could finish: %r" % c.buf
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()
    r = c.reply(timeout=5)
    assert r.code == 451 and enhanced_class(r) == "4", r
    assert time.monotonic() - t0 < 3
    assert upstream.messages == []
    # the session is still up; the master restarts the scanner
    assert c.cmd("NOOP").code == 250
    new = wait_until(lambda: (m.child_pid("scanner") or old) != old and m.child_pid("scanner"), 5)
    assert new and new != old, "scanner not restarted: %r" % (m.children(),)
    msg = make_msg(subject="after the restart")
    r = c.transaction("a@example.org", ["b@example.net"], msg)
    assert r["final"].code == 250, r["final"]
    c.quit()
    assert [x.content for x in upstream.messages] == [msg]
    assert m.alive()


def test_kill9_proxy_restarted(mw_factory, upstream):
    m = mw_factory(upstream)
    old = wait_until(lambda: m.child_pid("proxy"), 3)
    assert old, "no child of the master titled 'proxy': %r" % (m.children(),)
    os.kill(old, signal.SIGKILL)
    new = wait_until(lambda: (m.child_pid("proxy") or old) != old and m.child_pid("proxy"), 5)
    assert new and new != old, m.children()

    def greets():
        try:
            c = m.client(timeout=2)
            ok = c.greeting.code == 220
            c.quit()
            return ok
        except (OSError, ConnectionError, TimeoutError):
            return False
    assert wait_until(greets, 5, 0.1)
    c = m.client()
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()


# --- signals to the master -------------------------------------------------------------

def test_sigterm_lets_inflight_transaction_finish(mw_factory, upstream):
    m = mw_factory(upstream, opts=[plugin_opt(), ("shutdown_timeout", "6s")])
    idle = m.client()
    idle.ehlo()
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    assert c.cmd("DATA").code == 354
    msg = make_msg(subject="in flight", headers=[("X-Example-Sleep", "1500")])
    c.send(dot_stuff(msg))
    time.sleep(0.3)
    t0 = time.monotonic()
    m.signal(signal.SIGTERM)
    time.sleep(0.3)
    # no new sessions
    try:
        late = SMTPClient(m.port, timeout=2)
        assert late.greeting.code != 220, "a new session was greeted after SIGTERM"
    except (ConnectionError, OSError, TimeoutError):
        pass
    r = c.reply(timeout=8)
    assert r.code == 250, r
    assert [x.content for x in upstream.messages] == [msg]
    # then the sessions are closed with 421
    for s in (c, idle):
        try:
            r = s.reply(timeout=8)
            assert r.code == 421, r
        except ConnectionError:
            pass        # closed: acceptable only after the 421 was read
        assert s.closed(8)
    m.proc.wait(10)
    assert m.proc.returncode == 0
    assert time.monotonic() - t0 < 8


def test_sigterm_deadline(mw_factory, upstream):
    m = mw_factory(upstream, opts=[plugin_opt(), ("shutdown_timeout", "1s"), ("scan_timeout", "30s")])
    c = m.client()
    c.ehlo()
    r = c.cmd("MAIL FROM:<a@example.org>")
    assert r.code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(dot_stuff(make_msg(subject="too slow", headers=[("X-Example-Sleep", "8000")])))
    time.sleep(0.3)
    t0 = time.monotonic()
    m.signal(signal.SIGTERM)
    r = c.reply(timeout=6)
    assert r.code in (421, 451), r
    assert time.monotonic() - t0 < 4
    m.proc.wait(8)
    assert time.monotonic() - t0 < 5
    assert upstream.messages == []
    assert m.proc.returncode == 0


def _sigterm_while_upstream_holds(mw_factory, raw_upstream, answer_after):
    """SIGTERM once the upstream has the whole message and has not answered
    its end of data; shutdown_timeout 1 s: (the client's reply, the audit
    actions, seconds from the signal to the daemon's end)"""
    def slow_eod(up, st):
        time.sleep(answer_after)    # the MTA has it (in up.messages), answers late
        return None
    up = raw_upstream(script={"EOD": slow_eod})
    m = mw_factory(up, opts=[("shutdown_timeout", "1s")])
    c = m.client(timeout=15)
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(dot_stuff(make_msg(subject="held by a slow upstream")))
    assert wait_until(lambda: len(up.messages) == 1, 5)    # the upstream has it
    t0 = time.monotonic()
    m.signal(signal.SIGTERM)
    try:
        r = c.reply(timeout=12)
    except ConnectionError as e:
        r = e
    m.proc.wait(12)
    took = time.monotonic() - t0
    return r, [x.get("action") for x in m.audit(1)], took, m


def test_sigterm_deadline_waits_for_the_upstream_holding_the_message(mw_factory, raw_upstream):
    """Past shutdown_timeout the proxy closed every session with 421, and
    dropped the upstream connection: a message the upstream already held
    (a busy MTA answering its end of data late) was queued there, and the
    client, told to retry, sent it a second time (RFC 1047).  Such a
    session now gets 3 s more for the upstream's reply."""
    r, acts, took, m = _sigterm_while_upstream_holds(mw_factory, raw_upstream, 2.5)
    assert getattr(r, "code", None) == 250, (r, acts)
    assert acts == ["accept"], acts
    assert took < 6, took
    assert m.proc.returncode == 0
    assert "waiting for the upstream's reply to the messages it holds" in m.stderr_text()


def test_sigterm_deadline_hold_is_bounded(mw_factory, raw_upstream):
    """An upstream that does not answer in those 3 s: 421, the proxy ends
    before the master's kill (shutdown_timeout + 5 s)"""
    r, acts, took, m = _sigterm_while_upstream_holds(mw_factory, raw_upstream, 8)
    assert getattr(r, "code", None) == 421, (r, acts)
    assert acts == ["aborted"], acts
    assert took < 6, took
    assert m.proc.returncode == 0
    assert "no reply from the upstream in 3 s more" in m.stderr_text()


def test_client_gone_while_upstream_holds_the_message(mw_factory, raw_upstream):
    """The client goes right after its end of data; the scan accepts and
    the upstream takes the message, answering late.  The one audit record
    said "aborted", with no queue id, for a delivered message; the session
    now finishes the transaction (see the half-close tests) and records
    what happened."""
    def slow_eod(up, st):
        time.sleep(1.5)
        return None
    up = raw_upstream(script={"EOD": slow_eod})
    m = mw_factory(up)
    c = m.client(timeout=10)
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(dot_stuff(make_msg(subject="client gone")))
    assert wait_until(lambda: len(up.messages) == 1, 5)
    c.close()
    recs = m.audit(1)
    assert len(up.messages) == 1
    assert [(r["action"], r["queue_id"]) for r in recs] == [("accept", up.messages[0].queue_id)], recs


def write_conf(path, reject_score):
    path.write_text(
        "# written by test_faults\n"
        "plugin = %s\n"
        "inbound_tag_score = 5\n"
        "inbound_reject_score = %s\n" % (plugin_opt()[1], reject_score))


def test_sighup_reloads_without_dropping_sessions(mw_factory, upstream, tmp_path):
    conf = tmp_path / "mailwarden.conf"
    write_conf(conf, "100")
    m = mw_factory(upstream, config=str(conf))
    master = m.pid
    old = scanner_pid(m)
    s1 = m.client()
    s1.ehlo()
    assert s1.cmd("MAIL FROM:<a@example.org>").code == 250
    assert s1.cmd("RCPT TO:<b@example.net>").code == 250
    write_conf(conf, "5")
    m.signal(signal.SIGHUP)
    new = wait_until(lambda: (m.child_pid("scanner") or old) != old and m.child_pid("scanner"), 5)
    assert new and new != old, "scanner not restarted on SIGHUP: %r" % (m.children(),)
    assert m.alive() and m.pid == master
    # the session opened before the reload goes on
    assert s1.cmd("DATA").code == 354
    clean = make_msg(subject="clean, across the reload")
    s1.send(dot_stuff(clean))
    assert s1.reply().code == 250
    assert s1.cmd("NOOP").code == 250
    s1.quit()
    # a new session sees the new settings
    s2 = m.client()
    s2.ehlo()
    r = s2.transaction("a@example.org", ["b@example.net"], make_msg(subject="buy viagra"))
    assert r["final"].code == 550, r["final"]
    s2.quit()
    assert [x.content for x in upstream.messages] == [clean]


# kill() failing as the master cannot make it fail for real (it runs as
# root, or as the user its children run as): MW_TEST_KILL_FAIL="SIG:ERRNO
# ..." makes a kill() of another process with that signal fail with that
# errno, and each such failure is written to MW_TEST_KILL_LOG
KILL_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

int kill(pid_t pid, int sig)
{
	int (*real)(pid_t, int) = (int (*)(pid_t, int))dlsym(RTLD_NEXT, "kill");
	const char *spec = getenv("MW_TEST_KILL_FAIL");
	int s, e, n;

	while (pid > 0 && pid != getpid() && spec != NULL && sscanf(spec, "%d:%d%n", &s, &e, &n) == 2) {
		if (s == sig) {
			FILE *f = fopen(getenv("MW_TEST_KILL_LOG"), "a");

			if (f != NULL) {
				fprintf(f, "%d %d %d\n", sig, (int)pid, e);
				fclose(f);
			}
			errno = e;
			return -1;
		}
		spec += n;
	}
	return real(pid, sig);
}
"""


def test_failed_kill_is_logged_once_but_a_gone_child_is_not(mw_factory, upstream, tmp_path,
                                                             monkeypatch):
    """A signal the master cannot send (EPERM) leaves a child without its
    SIGUSR1 (audit log reopen), SIGUSR2 (an old scanner's drain) or SIGTERM: the master says
    so, with the pid and errno, once.  ESRCH (the child already gone) is
    not a failure worth a line."""
    log = tmp_path / "kill.log"
    preload_shim(monkeypatch, tmp_path, "kill", KILL_SHIM)
    monkeypatch.setenv("MW_TEST_KILL_FAIL", "%d:%d %d:%d" % (signal.SIGUSR1, errno.EPERM,
                                                             signal.SIGUSR2, errno.ESRCH))
    monkeypatch.setenv("MW_TEST_KILL_LOG", str(log))
    m = mw_factory(upstream, opts=[plugin_opt()])
    proxy = wait_until(lambda: m.child_pid("proxy"), 5)
    assert proxy, m.children()
    said = "cannot send SIGUSR1 to the proxy pid=%d (errno %d): %s" % (
        proxy, errno.EPERM, os.strerror(errno.EPERM))
    m.signal(signal.SIGUSR1)
    assert wait_until(lambda: said in m.stderr_text(), 5), m.stderr_tail(20)
    m.signal(signal.SIGUSR1)
    assert wait_until(lambda: log.exists() and len(log.read_text().splitlines()) == 2, 5)
    # the old scanner's drain signal after a reload fails with ESRCH: nothing said
    old = scanner_pid(m)
    m.signal(signal.SIGHUP)
    assert wait_until(lambda: re.search(r"reload: scanner pid=(?!%d )\d+ ready, taking over" % old,
                                        m.stderr_text()), 10), m.stderr_tail(20)
    assert wait_until(lambda: len(log.read_text().splitlines()) == 3, 5)
    assert log.read_text().splitlines() == ["%d %d %d" % (signal.SIGUSR1, proxy, errno.EPERM)] * 2 \
        + ["%d %d %d" % (signal.SIGUSR2, old, errno.ESRCH)], log.read_text()
    assert m.stderr_text().count("cannot send") == 1, m.stderr_tail(20)
    assert m.alive()


FORK_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

/* fork() fails with EAGAIN while the file MW_TEST_FORK_FAIL names exists
 * (the process limit reached), each failure a line in it */
pid_t fork(void)
{
	pid_t (*real)(void) = (pid_t (*)(void))dlsym(RTLD_NEXT, "fork");
	const char *gate = getenv("MW_TEST_FORK_FAIL");
	FILE *f;

	if (gate != NULL && (f = fopen(gate, "r+")) != NULL) {
		fseek(f, 0, SEEK_END);
		fputs("fork\n", f);
		fclose(f);
		errno = EAGAIN;
		return -1;
	}
	return real();
}
"""


def test_failed_fork_is_retried_with_backoff(mw_factory, upstream, tmp_path, monkeypatch):
    """A child that cannot be forked (EAGAIN: the process limit) was tried
    again on every turn of the master's loop, each try a log line; now
    after 1, 2, 4 ... 30 s, and it comes back once fork works again."""
    gate = tmp_path / "fork.gate"
    preload_shim(monkeypatch, tmp_path, "fork", FORK_SHIM)
    monkeypatch.setenv("MW_TEST_FORK_FAIL", str(gate))
    m = mw_factory(upstream)
    proxy = wait_until(lambda: m.child_pid("proxy"), 5)
    assert proxy
    gate.write_text("")
    os.kill(proxy, signal.SIGKILL)
    time.sleep(6)
    tries = gate.read_text().count("fork")
    # at 0, 1 and 3 s (and perhaps 7): once a second before
    assert 2 <= tries <= 3, (tries, m.stderr_tail(20))
    assert m.stderr_text().count("fork proxy") == tries
    gate.unlink()
    assert wait_until(lambda: m.child_pid("proxy"), 6), m.stderr_tail(20)
    assert wait_until(lambda: m.client(timeout=3).greeting.code == 220, 5)


def test_sighup_with_bad_config_keeps_running(mw_factory, upstream, tmp_path):
    conf = tmp_path / "mailwarden.conf"
    write_conf(conf, "100")
    m = mw_factory(upstream, config=str(conf))
    conf.write_text("this_is_not_a_setting = 1\n")
    m.signal(signal.SIGHUP)
    time.sleep(1.0)
    assert m.alive()
    c = m.client()
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()


def test_sighup_keeps_command_line_overrides(mw_factory, upstream):
    """no -c: the reload rebuilds the config from the defaults and the same
    -o overrides, so the settings given on the command line stay"""
    m = mw_factory(upstream, opts=[plugin_opt(), ("inbound_reject_score", "5"),
                                   ("reject_reply", "550 5.7.1 still configured")])
    old = scanner_pid(m)
    m.signal(signal.SIGHUP)
    new = wait_until(lambda: (m.child_pid("scanner") or old) != old and m.child_pid("scanner"), 5)
    assert new and new != old, "scanner not restarted on SIGHUP: %r" % (m.children(),)
    c = m.client()
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject="buy viagra"))
    assert r["final"].raw == b"550 5.7.1 still configured\r\n", r["final"]
    c.quit()
    assert "reload failed" not in m.stderr_text()


# --- reloads: what the master keeps, and for whom ----------------------------------------

def listener_sections(path, sections):
    """a config of listeners only: (name, port, upstream, direction) each"""
    path.write_text("# written by test_faults\n" + "".join(
        "[listener %s]\nlisten = 127.0.0.1:%d\nupstream = %s\ndirection = %s\n" % s for s in sections))


def greets(port):
    try:
        c = SMTPClient(port, timeout=2)
        ok = c.greeting.code == 220
        c.close()
        return ok
    except (OSError, ConnectionError):
        return False


def took_over(m, n=1):
    """the nth reload's scanner is ready and serving"""
    return wait_until(lambda: m.stderr_text().count("ready, taking over") >= n, 10)


@pytest.mark.parametrize("change", ["removed", "added", "reordered"])
def test_listener_change_by_reload_waits_for_a_restart(mw_factory, make_upstream, tmp_path, change):
    """A reload that removes, adds or reorders listeners is logged as
    needing a restart, and the master keeps the running listeners in the
    config it adopts: a proxy restarted after a crash gets each socket with
    its own listener's settings.  Before, the master took the new listeners
    while the sockets stayed laid out by the old ones: with one removed,
    port a's mail went to b's upstream and port b was a dead backlog; with
    one added, the restarted proxy was handed fd 0 and restarted forever;
    reordered, the internet's mail ran as the outbound relay listener (no
    SPF, DMARC or greylisting; DKIM-signed as the site)."""
    ua, ub = make_upstream(), make_upstream()
    pa, pb = free_port(), free_port()
    a = ("mx", pa, ua.addr, "inbound")
    b = ("relay", pb, ub.addr, "outbound")
    before, after = {"removed": ([a, b], [b]), "added": ([a], [a, b]), "reordered": ([a, b], [b, a])}[change]
    conf = tmp_path / "mw.conf"
    listener_sections(conf, before)
    m = mw_factory(config=str(conf), file_ports={s[0]: s[1] for s in before},
                   opts=[("proxy_threads", "1")])
    listener_sections(conf, after)
    m.signal(signal.SIGHUP)
    assert took_over(m), m.stderr_tail(20)
    # some time later the proxy crashes; the master restarts it
    proxy = m.child_pid("proxy")
    os.kill(proxy, signal.SIGKILL)
    assert wait_until(lambda: m.child_pid("proxy") not in (None, proxy), 5), m.stderr_tail(20)
    for name, port, _, _ in before:
        assert wait_until(lambda: greets(port), 5), "listener %s not served:\n%s" % (name, m.stderr_tail(20))
    if change == "added":
        assert not greets(pb)
    for name, port, _, _ in before:
        c = SMTPClient(port, timeout=5)
        c.ehlo()
        assert c.transaction("a@example.org", ["b@example.net"],
                             make_msg(subject="to %s" % name))["final"].code == 250
        c.quit()
    recs = {r["subject"]: r for r in wait_audit(m, len(before))}
    for name, _, up, direction in before:
        r = recs["to %s" % name]
        assert (r["listener"], r["direction"], r["upstream"]) == (name, direction, up), r
    assert len(ua.messages) == 1 and len(ub.messages) == (len(before) - 1)
    assert "exited with status" not in m.stderr_text(), m.stderr_tail(20)
    assert "reload: listener changes need a restart of the daemon" in m.stderr_text()


def wait_audit(m, n):
    assert wait_until(lambda: len(m.audit(n, timeout=0.1)) >= n, 5)
    return m.audit(n)


def test_reload_whose_scanner_fails_keeps_the_config_for_restarts(mw_factory, upstream, tmp_path):
    """A reload whose new scanner fails before it is ready (a plugin that
    does not load; a broken antivirus database does the same) leaves the
    running config for everyone: the proxy keeps it (message_size_limit
    below is the bad config's too), and the next restart of the scanner
    after a crash runs it.  Before, the master had adopted the bad config
    anyway: the restarted scanner failed forever, every message got 451."""
    conf = tmp_path / "mw.conf"
    conf.write_text("# good\n")
    m = mw_factory(upstream, config=str(conf))
    bad = tmp_path / "not-a-plugin.so"
    bad.write_text("not an ELF file\n")
    conf.write_text("plugin = %s\nmessage_size_limit = 1k\n" % bad)
    old = scanner_pid(m)
    m.signal(signal.SIGHUP)
    assert wait_until(lambda: "failed before it was ready" in m.stderr_text(), 10), m.stderr_tail(20)
    big = make_msg(subject="5 KB", body=(b"x" * 76 + b"\r\n") * 70)
    c = m.client()
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], big)["final"].code == 250
    c.quit()
    # the running scanner dies some time later; the master restarts it
    os.kill(old, signal.SIGKILL)
    assert wait_until(lambda: m.child_pid("scanner") not in (None, old), 5), m.stderr_tail(20)
    c = m.client()
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"], big)["final"]
    c.quit()
    assert r.code == 250, "%r\n%s" % (r, m.stderr_tail(20))
    assert "failed before it was ready; keeping the running config" in m.stderr_text()
    # the config repaired: the next reload takes it, front ends included
    conf.write_text("message_size_limit = 1k\n")
    m.signal(signal.SIGHUP)
    assert took_over(m), m.stderr_tail(20)
    assert wait_until(lambda: "config reloaded" in m.stderr_text(), 5)
    c = m.client()
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], big)["final"].code == 552
    c.quit()


def test_reload_drains_a_scan_longer_than_shutdown_timeout(mw_factory, upstream):
    """A reload drops no scan: the old scanner is retired with SIGUSR2 and
    drains for as long as a front end waits (scan_timeout, milter_timeout),
    not for shutdown_timeout (the stop's budget, 30 s by default against
    150 s for scan_timeout): a 7 s scan across a reload with
    shutdown_timeout = 2s got 451 at 4 s."""
    m = mw_factory(upstream, opts=[plugin_opt(), ("shutdown_timeout", "2s"), ("scan_timeout", "30s")])
    c = m.client(timeout=20)
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(dot_stuff(make_msg(subject="slow scan across a reload", headers=[("X-Example-Sleep", "7000")])))
    time.sleep(0.5)
    old = scanner_pid(m)
    m.signal(signal.SIGHUP)
    r = c.reply(timeout=20)
    c.quit()
    assert r.code == 250, "%r\n%s" % (r, m.stderr_tail(12))
    assert "scanner: retired, finishing scans in flight (for 35 s at most)" in m.stderr_text()
    assert wait_until(lambda: "old scanner pid=%d finished" % old in m.stderr_text(), 5)


def test_stop_after_a_reload_replaced_a_dead_scanner(mw_factory, upstream):
    """The scanner dies while a reload's scanner gets ready (its restart put
    off 2 s: it died young twice), and the new one takes over: a stop then
    gives it SIGTERM.  Before, the time left of the put-off restart stayed
    in the field that also meant "SIGTERM sent": the stop never sent it,
    and waited shutdown_timeout + 5 s to SIGKILL the scanner."""
    m = mw_factory(upstream, opts=[("shutdown_timeout", "1s")])
    first = scanner_pid(m)
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: m.child_pid("scanner") not in (None, first) and m.child_pid("scanner"), 5)
    assert second, m.stderr_tail(20)
    m.signal(signal.SIGHUP)
    os.kill(second, signal.SIGKILL)
    assert took_over(m), m.stderr_tail(20)
    t0 = time.monotonic()
    assert m.stop(15) == 0
    took = time.monotonic() - t0
    assert took < 3 and "did not stop in time" not in m.stderr_text(), "%.1f s\n%s" % (took, m.stderr_tail(15))


# --- a client that stops reading while its message is being scanned ---------------------

def send_queue(local_port, remote_port):
    """bytes in the kernel's send queue of the TCP socket local_port ->
    remote_port on 127.0.0.1 (/proc/net/tcp: tx_queue)"""
    want = ("0100007F:%04X" % local_port, "0100007F:%04X" % remote_port)
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            t = line.split()
            if (t[1], t[2]) == want:
                return int(t[4].split(":")[0], 16)
    return -1


# stalled_client's NOOPs are junk commands (session 21): let them all in
NOOP_FLOOD = ("junk_command_limit", "1000000000")


def stalled_client(m):
    """a client that stopped reading: NOOPs until the kernel's buffers
    towards it are full (the proxy's send queue stops growing), so that the
    proxy's writes stall, but no more (over 256 KiB of replies waiting, the
    session would stop reading); then a transaction up to its 354"""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", m.port))
    s.settimeout(5)
    assert s.recv(512).startswith(b"220")
    s.sendall(b"EHLO client.example\r\n")
    time.sleep(0.2)
    local = s.getsockname()[1]
    last, still = -1, 0
    for _ in range(400):
        s.sendall(b"NOOP\r\n" * 3000)
        time.sleep(0.03)
        q = send_queue(m.port, local)
        still = still + 1 if q == last else 0
        last = q
        if still == 3:
            break
    assert still == 3, "the proxy's send queue kept growing: %d" % last
    s.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    time.sleep(0.3)
    return s


def assert_scan_after(m, event):
    log = m.stderr_text()
    at, scanned = log.find(event), log.find("scan id=1 action=accept")
    assert 0 <= at < scanned, "%r did not come during the scan: %s" % (event, m.stderr_tail(12))
    assert "signal" not in log, m.stderr_tail(40)


def test_write_timeout_during_scan_abandons_the_scan(mw_factory, upstream):
    """A client that stopped reading our replies hits the write deadline
    while its message is still with the scanner: the session answers 421
    and ends the transaction; the scan's late result must find nothing to
    act on (it found the transaction freed, and the proxy died)."""
    m = mw_factory(upstream, opts=[plugin_opt(), ("client_command_timeout", "2s"),
                                   ("scan_timeout", "20s"), NOOP_FLOOD])
    proxy_pid = wait_until(lambda: m.child_pid("proxy"), 5)
    assert proxy_pid
    s = stalled_client(m)
    # the scan ends between the first write deadline (about 2 s after the
    # 354, which went into the full buffers) and the second (2 s later)
    s.sendall(dot_stuff(make_msg(subject="slow", headers=[("X-Example-Sleep", "2500")])))
    time.sleep(4.5)
    s.close()
    assert_scan_after(m, "action=aborted")
    assert m.child_pid("proxy") == proxy_pid, "the proxy died: %s" % m.stderr_tail(40)
    c = m.client()
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()


def test_shutdown_deadline_during_scan_abandons_the_scan(mw_factory, upstream):
    """The same at the shutdown deadline: the 421 cannot leave, the proxy
    gives it a second, and the scan's result comes within it (the scan
    ends 0.6 s after the deadline)."""
    m = mw_factory(upstream, opts=[plugin_opt(), ("shutdown_timeout", "1s"), ("scan_timeout", "20s"),
                                   NOOP_FLOOD])
    s = stalled_client(m)
    s.sendall(dot_stuff(make_msg(subject="slow", headers=[("X-Example-Sleep", "1800")])))
    time.sleep(0.2)
    m.signal(signal.SIGTERM)
    m.proc.wait(10)
    s.close()
    assert_scan_after(m, "shutdown deadline")
    assert m.proc.returncode == 0, m.stderr_tail(20)


def relay_watcher():
    """a DATA action for the raw upstream: 354, then nothing read until
    told, then everything to EOF (or 5 s): what reached it and whether the
    proxy closed the connection"""
    relaying, go, seen = threading.Event(), threading.Event(), {}

    def data(up, st):
        up._send(st, b"354 go ahead\r\n")
        relaying.set()
        go.wait(15)
        got, eof = st["buf"], False
        st["sock"].settimeout(5)
        try:
            while True:
                d = st["sock"].recv(1 << 20)
                if not d:
                    eof = True
                    break
                got += d
        except OSError:
            pass
        seen.update(eof=eof, tail=got[-64:], size=len(got))
        return "close"
    return data, relaying, go, seen


def test_session_gone_mid_relay_drops_the_upstream(mw_factory, raw_upstream):
    """the session ends on the client's write deadline while its message
    is on its way upstream: the proxy drops that connection (the
    transaction ends undelivered at once) instead of writing QUIT into the
    message, which the upstream would read as a line of it and then wait
    for more until its own timeout"""
    data, relaying, go, seen = relay_watcher()
    up = raw_upstream(script={"DATA": data})
    m = mw_factory(up, opts=[("client_command_timeout", "2s"), NOOP_FLOOD])
    s = stalled_client(m)
    s.sendall(dot_stuff(make_msg(subject="big", body=(b"q" * 998 + CRLF) * 20000)))     # 20 MB
    assert relaying.wait(20), "the relay never started"
    assert wait_until(lambda: "action=aborted" in m.stderr_text(), 10), m.stderr_tail(10)
    go.set()
    assert wait_until(lambda: "size" in seen, 10), "the upstream's reader did not finish"
    s.close()
    assert seen["eof"], seen                        # not left waiting for a reply to QUIT
    assert not seen["tail"].endswith(b"QUIT\r\n") and not seen["tail"].endswith(b"\r\n.\r\n"), seen
    assert seen["size"] < 20000 * 1000, seen        # cut off mid-message
    assert up.messages == []
