"""CHUNKING / BDAT from clients (issue 3): spooled and scanned like DATA,
relayed as BDAT to an upstream that offers CHUNKING and as dot-stuffed
DATA to one that does not; the bare-LF rules of DATA; BINARYMIME only
where the upstream takes it."""

import socket
import threading
import time

import pytest

import mwlib
from mwlib import RawUpstream, make_msg, plugin_opt
from postfixlib import Postfix, available

# content with the traps of DATA: lines starting with ".", a lone "." line
# and a CRLF.CRLF in the middle, all plain content inside BDAT
TRICKY_BODY = "first line\r\n.starts with a dot\r\n.\r\nafter a lone dot\r\n..two dots\r\n"


def bdat_send(c, content, chunks=3, pipelined=True):
    """Send content as `chunks` BDAT chunks (the last with LAST); returns
    the replies."""
    size = max(1, len(content) // chunks)
    pieces = [content[i:i + size] for i in range(0, len(content), size)]
    wire = b""
    for i, p in enumerate(pieces):
        last = " LAST" if i == len(pieces) - 1 else ""
        wire += ("BDAT %d%s\r\n" % (len(p), last)).encode() + p
    if pipelined:
        c.send(wire)
        return [c.reply() for _ in pieces]
    out = []
    for i, p in enumerate(pieces):
        last = " LAST" if i == len(pieces) - 1 else ""
        c.send(("BDAT %d%s\r\n" % (len(p), last)).encode() + p)
        out.append(c.reply())
    return out


def start_txn(c, rcpt="b@example.net", params=""):
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>%s" % params).code == 250
    assert c.cmd("RCPT TO:<%s>" % rcpt).code == 250


def test_bdat_to_upstream_without_chunking_goes_as_data(mw_factory, upstream):
    m = mw_factory(upstream)
    c = m.client()
    ehlo = c.ehlo().text.upper()
    assert "CHUNKING" in ehlo and "BINARYMIME" not in ehlo
    msg = make_msg(subject="chunked", body=TRICKY_BODY)
    start_txn(c)
    replies = bdat_send(c, msg, chunks=4)
    assert [r.code for r in replies] == [250] * len(replies), replies
    assert "queued as" in replies[-1].text
    c.quit()
    got = upstream.wait_messages(1)
    assert got[0].content == msg               # dot-stuffed on the way, unstuffed by aiosmtpd
    rec = m.audit(1)[-1]
    assert rec["size"] == len(msg)


def test_bdat_to_upstream_with_chunking_goes_as_bdat(mw_factory, raw_upstream):
    up = raw_upstream(caps=RawUpstream.CAPS + [b"CHUNKING"])
    m = mw_factory(up)
    c = m.client()
    msg = make_msg(subject="chunked", body=TRICKY_BODY)
    start_txn(c)
    replies = bdat_send(c, msg, chunks=3, pipelined=False)
    assert replies[-1].code == 250
    c.quit()
    got = mwlib.wait_until(lambda: up.messages, 3)
    assert got and up.messages[0].via == "BDAT"
    assert up.messages[0].content == msg       # as it came, no stuffing
    assert not any(l.startswith(b"DATA") for l in up.sessions[-1])


def test_bdat_is_scanned_like_data(mw_factory, upstream):
    m = mw_factory(upstream, opts=[plugin_opt(), ("inbound_reject_score", "5")])
    c = m.client()
    start_txn(c)
    r = bdat_send(c, make_msg(subject="buy viagra now"), chunks=2)[-1]
    assert r.code == 550, r
    c.quit()
    assert upstream.messages == []
    assert m.audit(1)[-1]["action"] == "reject"


def test_bdat_bare_lf_rules(mw_factory, upstream):
    m = mw_factory(upstream)
    c = m.client()
    start_txn(c)
    bad = make_msg(body="line one\nbare lf\r\n")
    r = bdat_send(c, bad, chunks=2)[-1]
    assert r.code == 550 and "5.5.2" in r.text, r
    assert c.closed(3)                          # as in DATA: no more transactions
    assert upstream.messages == []

    m2 = mw_factory(upstream, opts=[("bare_newline", "normalize")])
    c = m2.client()
    start_txn(c)
    r = bdat_send(c, bad, chunks=2)[-1]
    assert r.code == 250, r
    got = upstream.wait_messages(1)
    assert b"line one\r\nbare lf\r\n" in got[0].content


def test_bdat_size_limit_and_sequence(mw_factory, upstream):
    m = mw_factory(upstream, opts=[("message_size_limit", "2k")])
    c = m.client()
    start_txn(c)
    r = bdat_send(c, make_msg(body="x" * 60 + "\r\n" * 1 + ("y" * 70 + "\r\n") * 60), chunks=3)[-1]
    assert r.code == 552, r
    # DATA after BDAT in one transaction, BDAT without MAIL: refused, in step
    start_txn(c)
    c.send(b"BDAT 4\r\nabcd")
    assert c.reply().code == 250
    assert c.cmd("DATA").code == 503
    assert c.cmd("RCPT TO:<late@example.net>").code == 503
    assert c.cmd("RSET").code == 250
    c.send(b"BDAT 3 LAST\r\nxyz")
    assert c.reply().code == 503
    assert c.cmd("NOOP").code == 250
    # a bad count: the session cannot stay in step and ends
    c.send(b"BDAT many\r\n")
    assert c.reply().code == 501
    assert c.closed(3)


def test_binarymime_only_with_upstream_support(mw_factory, raw_upstream, upstream):
    m = mw_factory(upstream)
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org> BODY=BINARYMIME").code == 555
    c.quit()

    up = raw_upstream(caps=RawUpstream.CAPS + [b"CHUNKING", b"BINARYMIME"])
    m2 = mw_factory(up)
    c = m2.client()
    assert "BINARYMIME" in c.ehlo().text.upper()
    start_txn(c, params=" BODY=BINARYMIME")
    assert c.cmd("DATA").code == 503
    binary = make_msg(subject="binary").rstrip(b"\r\n") + b"\r\n\x00\x01\xff\nraw\rbytes\r\n"
    r = bdat_send(c, binary, chunks=2)[-1]
    assert r.code == 250, r
    c.quit()
    mwlib.wait_until(lambda: up.messages, 3)
    assert up.messages[0].content == binary
    assert b"BODY=BINARYMIME" in up.messages[0].mail_line


@pytest.mark.skipif(not available(), reason="needs root and Debian's postfix")
def test_bdat_through_real_postfix(mw_factory, upstream, tmp_path):
    """Postfix offers CHUNKING: mailwarden relays BDAT; Postfix's log counts it."""
    pf = Postfix(tmp_path / "pf", relayhost=upstream.addr, main={"mynetworks": "127.0.0.0/8"}).start()
    try:
        m = mw_factory(pf.addr, wait_probe=False)
        c = m.client()
        msg = make_msg(subject="via postfix", body=TRICKY_BODY)
        start_txn(c)
        assert bdat_send(c, msg, chunks=3)[-1].code == 250
        c.quit()
        got = upstream.wait_messages(1, timeout=15)
        assert got, pf.log()
        assert got[0].content.endswith(TRICKY_BODY.encode())
        assert pf.wait_log("bdat=1"), pf.log()
    finally:
        pf.stop()


def spool_nearly_full(m):
    """a DATA of 150 KB held open, against spool_memory_max = 200k: a new
    message is refused (less than 64 KiB left).  Returns its client; close
    it and the room comes back."""
    a = m.client()
    start_txn(a)
    assert a.cmd("DATA").code == 354
    hold = make_msg(subject="hold", body=(b"h" * 98 + b"\r\n") * 1500)
    a.send(mwlib.dot_stuff(hold)[:-3])
    time.sleep(0.3)
    return a


def test_bdat_refused_chunk_fails_the_transaction(mw_factory, upstream):
    """A first chunk refused for a passing reason (452: spool_memory_max)
    was dropped, but the transaction went on as if no chunk had come: the
    next chunk opened the spool afresh and the message was delivered
    without its first chunk.  RFC 3030: after a refused chunk the
    transaction has failed; every later chunk is read and refused the same
    way (still temporary), until RSET starts again."""
    m = mw_factory(upstream, opts=[("spool_memory_max", "200k")])
    a = spool_nearly_full(m)
    b = m.client()
    start_txn(b)
    head = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: the real subject\r\n\r\nfirst chunk\r\n"
    tail = b"second chunk only\r\n"
    b.send(b"BDAT %d\r\n" % len(head) + head)
    r1 = b.reply()
    assert r1.code == 452, r1
    a.close()                                   # the room comes back
    time.sleep(0.3)
    b.send(b"BDAT %d LAST\r\n" % len(tail) + tail)
    r2 = b.reply()
    assert r2.code == 452 and r2.raw == r1.raw, (r1, r2)
    assert b.cmd("DATA").code == 503            # nor can DATA take it over
    assert upstream.messages == []
    # RSET: a new transaction, delivered whole
    assert b.cmd("RSET").code == 250
    start_txn(b)
    b.send(b"BDAT %d\r\n" % len(head) + head + b"BDAT %d LAST\r\n" % len(tail) + tail)
    assert [b.reply().code, b.reply().code] == [250, 250]
    b.quit()
    got = upstream.wait_messages(1)
    assert got[0].content == head + tail, got[0].content


def test_bdat_pipelined_chunks_after_a_refused_one(mw_factory, upstream):
    """the chunks a pipelining client sent behind the refused one are read
    to their end and refused, none is taken as a message"""
    m = mw_factory(upstream, opts=[("spool_memory_max", "200k")])
    a = spool_nearly_full(m)
    b = m.client()
    start_txn(b)
    replies = bdat_send(b, make_msg(subject="pipelined", body="z" * 300 + "\r\n"), chunks=3)
    a.close()
    assert [r.code for r in replies] == [452] * len(replies), replies
    assert b.cmd("NOOP").code == 250            # in step: the chunks were not read as commands
    b.quit()
    time.sleep(0.3)
    assert upstream.messages == []


def test_bdat_refused_chunks_count_towards_max_errors(mw_factory, upstream):
    """refused chunks counted as errors but never checked the limit: the
    421 came only at the next other command"""
    m = mw_factory(upstream, opts=[("max_errors", "3")])
    c = m.client()
    c.ehlo()
    c.send(b"BDAT 3\r\nabc" * 3)                 # no transaction: 503 each
    assert [c.reply().code for _ in range(3)] == [503, 503, 503]
    r = c.reply(3)
    assert r.code == 421, r
    assert c.closed(2)


class EarlyBdatUpstream:
    """An MTA that offers CHUNKING and answers a BDAT at once, before its
    chunk (it reads the chunk only a second later): what is left of it
    would be read as commands, or the proxy's next command as chunk.
    sessions: per connection, the lines before the BDAT, and whether the
    proxy closed it (eof)."""

    def __init__(self, reply=b"554 5.6.0 Refused before reading\r\n"):
        self.reply = reply
        self.port = mwlib.free_port()
        self.sessions = []
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(8)
        self.lsock.settimeout(0.2)
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        self.stopping = True
        self.lsock.close()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    def _session(self, c):
        st = {"lines": [], "eof": False, "after_bdat": 0}
        self.sessions.append(st)
        c.settimeout(10)
        buf = b""
        try:
            c.sendall(b"220 early.example ESMTP\r\n")
            while True:
                while b"\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        st["eof"] = True
                        return
                    buf += d
                line, buf = buf.split(b"\r\n", 1)
                st["lines"].append(line)
                verb = line.split(b" ", 1)[0].upper()
                if verb == b"EHLO":
                    c.sendall(b"250-early.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 CHUNKING\r\n")
                elif verb == b"BDAT":
                    c.sendall(self.reply)
                    time.sleep(1)
                    # then whatever comes, till the proxy closes
                    while True:
                        d = c.recv(1 << 20)
                        if not d:
                            st["eof"] = True
                            return
                        st["after_bdat"] += len(d)
                elif verb == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(b"250 2.0.0 Ok\r\n")
        except OSError:
            return
        finally:
            c.close()


@pytest.mark.parametrize("early", [b"554 5.6.0 Refused before reading\r\n", b"250 2.0.0 Ok: queued early\r\n"],
                         ids=["refusal", "acceptance"])
def test_bdat_answered_before_its_chunk_drops_the_upstream(mw_factory, early):
    """RFC 3030: the MTA reads a whole chunk, then answers.  One that
    answered early had the rest of the chunk withheld and the connection
    kept: the client's next MAIL went to an MTA still reading the chunk.
    Now the connection is dropped (no QUIT, no next command on it); a
    refusal is relayed, an early "accepted" is not believed (451)."""
    up = EarlyBdatUpstream(reply=early)
    try:
        m = mw_factory(up.addr)
        c = m.client()
        start_txn(c)
        body = ("x" * 998 + "\r\n") * 16000                 # 16 MB: more than the buffers hold
        msg = make_msg(subject="big", body=body)
        c.send(("BDAT %d LAST\r\n" % len(msg)).encode() + msg)
        r = c.reply(timeout=30)
        assert r.code == (554 if early.startswith(b"554") else 451), r
        mails = lambda: [st for st in up.sessions if any(l.startswith(b"MAIL") for l in st["lines"])]
        assert mwlib.wait_until(lambda: mails() and mails()[0]["eof"], 5), up.sessions
        first = mails()[0]
        assert first["lines"][-1].startswith(b"BDAT "), first["lines"]
        assert first["after_bdat"] < len(msg), first["after_bdat"]
        assert "answered BDAT with" in m.stderr_text()
        # the next transaction opens a connection of its own
        assert c.cmd("MAIL FROM:<a@example.org>").code == 250
        assert len(mails()) == 2, up.sessions
        c.quit()
    finally:
        up.stop()
