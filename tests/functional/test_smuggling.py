"""test_smuggling.py - SMTP smuggling: each fake end-of-data sequence of
tests/data/smuggling/eod-sequences.txt, followed by a smuggled transaction
from evil@x, sent in one go by a raw-socket client.

Only <CRLF>.<CRLF> ends DATA.  So mailwarden must answer the whole thing
with one reply (550 in reject mode; 250 in normalize mode, the smuggled text
then being content of the one real message), never run the smuggled
commands, and send upstream only canonical CRLF with correct dot-stuffing,
so that even an upstream that would fall for the sequence sees at most that
one message.  Three upstreams: aiosmtpd (strict), a deliberately lenient
raw-socket server (a line ends at CRLF, LF or CR, NULs ignored), and
Postfix's smtp-sink.

One listed sequence, "\\r\\r\\n.\\r\\n", holds a genuine <CRLF>.<CRLF>: there
the real message ends inside the sequence, on a line with a bare CR, and the
"smuggled" transaction is really pipelined after it.  mailwarden closes a
session after a message with bare line ends, so that one is not relayed
either: in no case does a message from evil@x reach the upstream."""

import os
import time

import pytest

from mwlib import CRLF, Mailwarden, RawUpstream, SmtpSink, Upstream, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
SEQ_FILE = os.path.join(HERE, "..", "data", "smuggling", "eod-sequences.txt")


def load_sequences():
    seqs = []
    try:
        with open(SEQ_FILE) as f:
            for line in f:
                if not line.strip() or line.startswith("#"):
                    continue
                hexs, rep = line.split("\t")[:2]
                seqs.append((bytes.fromhex(hexs), rep))
    except FileNotFoundError:
        pass
    return seqs


SEQUENCES = load_sequences()
REAL_FROM, REAL_TO = "real@example.org", "rcpt@example.net"
EVIL_FROM, VICTIM = "evil@x", "victim@y"
SMUGGLED_CMDS = ("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (EVIL_FROM, VICTIM)).encode()
SMUGGLED_MSG = ("From: %s\r\nTo: %s\r\nSubject: smuggled\r\n\r\nSMUGGLED-MARKER" % (EVIL_FROM, VICTIM)).encode()


def test_sequence_file_present():
    assert len(SEQUENCES) == 13, "expected 13 sequences in %s, found %d" % (SEQ_FILE, len(SEQUENCES))


def build(seq, tag):
    head = ("From: %s\r\nTo: %s\r\nSubject: smuggling %s\r\nMessage-ID: <%s@test>\r\n\r\n"
            % (REAL_FROM, REAL_TO, tag, tag)).encode()
    body = b"This is the real message.\r\n"
    return head + body + seq + SMUGGLED_CMDS + SMUGGLED_MSG + b"\r\n.\r\n"


def true_eod_inside(data):
    """RFC 5321 reading: does <CRLF>.<CRLF> occur before the final one?"""
    i = (CRLF + data).find(b"\r\n.\r\n")
    return i != len(data) - 3


def expected(seq, mode, data):
    """(the reply to the message, [(mail_from, must-contain)...] the upstream gets)"""
    refused = mode == "reject" or b"\x00" in seq
    if refused:
        return 550, []
    if true_eod_inside(data):
        # the real message ends inside the sequence (after a line holding
        # a bare CR, normalized); what the client pipelined after it must
        # not be relayed
        return 250, [(REAL_FROM, b"This is the real message.")]
    return 250, [(REAL_FROM, b"MAIL FROM:<evil@x>")]


class Stack:
    def __init__(self, tmp, mode, kind):
        if kind == "aiosmtpd":
            self.up = Upstream().start()
        elif kind == "lenient":
            self.up = RawUpstream(lenient=True).start()
        else:
            self.up = SmtpSink(tmp, ["-t", "5"]).start()
        opts = [("bare_newline", mode), ("client_data_timeout", "3s")]
        self.mw = Mailwarden(os.path.join(str(tmp), "mw-%s-%s" % (mode, kind)), upstream=self.up,
                             opts=opts, owner="smuggling")
        self.mw.start()

    def stop(self):
        rc = self.mw.stop()
        self.up.stop()
        return rc


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    made = {}

    def get(mode, kind):
        if (mode, kind) not in made:
            made[(mode, kind)] = Stack(tmp_path_factory.mktemp("smug"), mode, kind)
        return made[(mode, kind)]
    yield get
    bad = {k: s.stop() for k, s in made.items()}
    bad = {k: rc for k, rc in bad.items() if rc != 0}
    assert not bad, "mailwarden did not exit 0 on SIGTERM: %s" % bad


@pytest.mark.parametrize("kind", ["aiosmtpd", "lenient", "smtp-sink"])
@pytest.mark.parametrize("mode", ["reject", "normalize"])
@pytest.mark.parametrize("seq", SEQUENCES, ids=[s.hex() for s, _ in SEQUENCES])
def test_smuggling(stacks, mode, kind, seq):
    seq_bytes, rep = seq
    st = stacks(mode, kind)
    tag = "%s-%s-%s" % (seq_bytes.hex(), mode, kind)
    data = build(seq_bytes, tag)
    want_code, want_msgs = expected(seq_bytes, mode, data)

    before = list(st.up.messages)
    c = st.mw.client()
    c.ehlo()
    c.send(("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (REAL_FROM, REAL_TO)).encode())
    assert [r.code for r in c.replies(3)] == [250, 250, 354]
    c.send(data + b"QUIT\r\n")
    replies = []
    try:
        while len(replies) < 10:
            replies.append(c.reply(timeout=5))
    except (ConnectionError, TimeoutError, OSError):
        pass
    closed = c.eof or c.closed(3)
    c.close()
    codes = [r.code for r in replies]
    # one reply for the message; then QUIT's 221, or mailwarden closes the
    # session (a client that sent bare line ends): nothing else, above all
    # no reply to a smuggled command
    assert codes[:1] == [want_code] and codes[1:] in ([], [221], [421]), \
        "sequence %s: replies %r" % (rep, replies)
    assert closed, "session still open after QUIT"

    # what the upstream got in this test
    if kind == "smtp-sink":
        wait_until(lambda: len(st.up.messages) >= len(before) + len(want_msgs), 1.0)
        time.sleep(0.3)
        new = [m for m in st.up.messages if m.file not in {b.file for b in before}]
    else:
        time.sleep(0.2)
        new = st.up.messages[len(before):]
    got = [(m.mail_from, m.content) for m in new]
    assert len(got) == len(want_msgs), "sequence %s: upstream got %d messages: %r" % (rep, len(got), got)
    for (frm, content), (want_from, marker) in zip(got, want_msgs):
        assert frm == want_from, got
        assert marker in content, (marker, content)
    assert all(frm != EVIL_FROM for frm, _ in got), got
    if kind == "aiosmtpd":
        for _, content in got:
            stripped = content.replace(CRLF, b"")
            assert b"\n" not in stripped and b"\r" not in stripped, "non-canonical line end sent upstream: %r" % content
            assert b"\x00" not in content
