"""test_actions.py - the six actions end to end through the example plugin
(tests/plugins/example_plugin.c): accept, tag (X-Spam-* headers, Subject
tag), quarantine, discard, tempfail, reject; score thresholds per
direction; and `mailwarden scan` printing the same result as JSON."""

import json
import re
import time

import pytest

import audit_fields as A
from mwlib import (CRLF, assert_same_bytes, free_port, header_block, headers_named,
                   make_msg, plugin_opt, run_mw)

SPAM_SUBJECT = "buy viagra now"


def strip_spam_headers(content):
    """content without any X-Spam-* field (folded lines included)."""
    head, sep, body = content.partition(CRLF + CRLF)
    out, skipping = [], False
    for line in head.split(CRLF):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                out.append(line)
            continue
        skipping = line.lower().startswith(b"x-spam-")
        if not skipping:
            out.append(line)
    return CRLF.join(out) + sep + body


def send(m, msg, frm="a@example.org", rcpts=("b@example.net",), client=None):
    c = client or m.client()
    if client is None:
        c.ehlo()
    r = c.transaction(frm, list(rcpts), msg)
    if client is None:
        c.quit()
    return r["final"]


@pytest.fixture
def pmw(mw_factory, upstream):
    """mailwarden with the example plugin; tag at 5, reject at 15."""
    def make(*extra, up=None, **kw):
        return mw_factory(up or upstream, opts=[plugin_opt(), ("inbound_tag_score", "5"),
                                                ("inbound_reject_score", "15")] + list(extra), **kw)
    return make


def test_accept_clean_message_unchanged(pmw, upstream):
    m = pmw()
    msg = make_msg(subject="lunch on friday")
    r = send(m, msg)
    assert r.code == 250, r
    assert_same_bytes(upstream.messages[0].content, msg)
    rec = m.audit(1)[-1]
    assert A.field(rec, "action") == "accept"
    assert float(A.field(rec, "score")) == 0


def test_tag_adds_spamassassin_headers(pmw, upstream):
    m = pmw()
    msg = make_msg(subject=SPAM_SUBJECT)
    r = send(m, msg)
    assert r.code == 250, r
    got = upstream.messages[0].content
    assert headers_named(got, "X-Spam-Flag") == ["YES"], header_block(got)
    score = headers_named(got, "X-Spam-Score")
    assert len(score) == 1 and float(score[0]) == 6.0, score
    status = headers_named(got, "X-Spam-Status")
    assert len(status) == 1, header_block(got)
    st = re.match(r"Yes, score=([0-9.]+) required=([0-9.]+) tests=(\S+)", status[0])
    assert st, status[0]
    assert float(st.group(1)) == 6.0 and float(st.group(2)) == 5.0
    assert "EXAMPLE_SUBJECT_WORD" in st.group(3).split(",")
    # nothing else changed
    assert_same_bytes(strip_spam_headers(got), msg)
    rec = m.audit(1)[-1]
    assert A.field(rec, "action") == "tag"
    assert A.symbols(rec).get("EXAMPLE_SUBJECT_WORD") == 6


def test_tag_with_subject_prefix(pmw, upstream):
    m = pmw(("subject_tag", "[SPAM]"))
    msg = make_msg(subject=SPAM_SUBJECT)
    assert send(m, msg).code == 250
    got = upstream.messages[0].content
    subj = headers_named(got, "Subject")
    assert len(subj) == 1
    assert subj[0] in ("[SPAM] " + SPAM_SUBJECT, "[SPAM]" + SPAM_SUBJECT), subj
    # the rest is the message as sent
    want = msg.replace(b"Subject: " + SPAM_SUBJECT.encode(), b"Subject: " + subj[0].encode())
    assert_same_bytes(strip_spam_headers(got), want)


def test_clean_message_subject_untouched_with_subject_tag(pmw, upstream):
    m = pmw(("subject_tag", "[SPAM]"))
    msg = make_msg(subject="hello")
    assert send(m, msg).code == 250
    assert_same_bytes(upstream.messages[0].content, msg)


FORGED = [("X-Spam-Flag", "YES"), ("X-Spam-Status", "Yes, score=99.0 required=1.0 tests=FORGED"),
          ("X-Spam-Score", "99.0"), ("X-Spam-Level", "**********"),
          ("x-spam-checker-version", "SpamAssassin 3.4.6")]


def test_client_spam_headers_removed_on_accept(pmw, upstream):
    m = pmw()
    msg = make_msg(subject="ham", headers=FORGED)
    assert send(m, msg).code == 250
    got = upstream.messages[0].content
    assert not [n for n, _ in header_block(got) if n.lower().startswith("x-spam-")], header_block(got)
    assert_same_bytes(got, strip_spam_headers(msg))


def test_client_spam_headers_replaced_on_tag(pmw, upstream):
    m = pmw()
    msg = make_msg(subject=SPAM_SUBJECT, headers=FORGED)
    assert send(m, msg).code == 250
    got = upstream.messages[0].content
    assert headers_named(got, "X-Spam-Flag") == ["YES"]
    assert len(headers_named(got, "X-Spam-Status")) == 1
    assert "FORGED" not in headers_named(got, "X-Spam-Status")[0]
    assert headers_named(got, "X-Spam-Level") == [] or "**********" not in headers_named(got, "X-Spam-Level")
    assert headers_named(got, "X-Spam-Checker-Version") == []


def test_spam_headers_always(pmw, upstream):
    m = pmw(("spam_headers", "always"))
    msg = make_msg(subject="ham")
    assert send(m, msg).code == 250
    got = upstream.messages[0].content
    assert headers_named(got, "X-Spam-Flag") in ([], ["NO"]), header_block(got)
    status = headers_named(got, "X-Spam-Status")
    assert len(status) == 1 and status[0].startswith("No, score="), status
    assert_same_bytes(strip_spam_headers(got), msg)


def test_quarantine(pmw, upstream):
    m = pmw()
    msg = make_msg(subject="quarantine me", headers=[("X-Example-Action", "quarantine")])
    c = m.client()
    c.ehlo()
    r = send(m, msg, frm="q@example.org", rcpts=["q1@example.net", "q2@example.net"], client=c)
    assert r.code == 250, r
    assert upstream.messages == []
    files = m.quarantine_files()
    assert files, "nothing in quarantine_dir"
    blobs = [open(f, "rb").read() for f in files]
    assert any(msg in b for b in blobs), "the message is not stored intact in %s" % files
    assert any(b"q@example.org" in b for b in blobs), "the envelope sender is not stored"
    assert any(b"q2@example.net" in b for b in blobs), "the recipients are not stored"
    # upstream transaction reset, session goes on
    ok = make_msg(subject="next")
    assert send(m, ok, frm="n@example.org", rcpts=["n@example.net"], client=c).code == 250
    assert [(x.mail_from, x.rcpt_tos) for x in upstream.messages] == [("n@example.org", ["n@example.net"])]
    c.quit()
    recs = m.audit(2)
    assert A.field(recs[0], "action") == "quarantine"
    assert A.field(recs[0], "reply").startswith("250")


def test_quarantine_reply_configurable(pmw, upstream):
    m = pmw(("quarantine_reply", "250 2.0.0 Held for review"))
    r = send(m, make_msg(subject="q", headers=[("X-Example-Action", "quarantine")]))
    assert r.raw == b"250 2.0.0 Held for review\r\n", r
    assert upstream.messages == []


def test_quarantine_by_score(pmw, upstream):
    m = pmw(("inbound_quarantine_score", "5"), ("inbound_tag_score", "3"))
    msg = make_msg(subject=SPAM_SUBJECT)
    assert send(m, msg).code == 250
    assert upstream.messages == []
    assert any(msg in open(f, "rb").read() for f in m.quarantine_files())
    assert A.field(m.audit(1)[-1], "action") == "quarantine"


def test_discard(pmw, upstream):
    m = pmw()
    c = m.client()
    c.ehlo()
    r = send(m, make_msg(subject="discard", headers=[("X-Example-Action", "discard")]),
             rcpts=["d1@example.net"], client=c)
    assert r.code == 250, r
    ok = make_msg(subject="after discard")
    assert send(m, ok, rcpts=["d2@example.net"], client=c).code == 250
    c.quit()
    assert [x.rcpt_tos for x in upstream.messages] == [["d2@example.net"]]
    assert_same_bytes(upstream.messages[0].content, ok)
    assert A.field(m.audit(2)[0], "action") == "discard"


def test_tempfail(pmw, upstream):
    m = pmw()
    r = send(m, make_msg(subject="tempfail", headers=[("X-Example-Action", "tempfail")]))
    assert r.code == 451, r
    assert upstream.messages == []
    rec = m.audit(1)[-1]
    assert A.field(rec, "action") == "tempfail"
    assert A.field(rec, "reply").startswith("451")


def test_reject_by_plugin_header(pmw, upstream):
    m = pmw()
    c = m.client()
    c.ehlo()
    r = send(m, make_msg(subject="hi", headers=[("X-Reject-Me", "please")]), rcpts=["r1@example.net"], client=c)
    assert r.code == 550, r
    assert "Message refused by example plugin" in r.text, r
    # the session goes on; the upstream transaction was reset
    ok = make_msg(subject="after reject")
    assert send(m, ok, rcpts=["r2@example.net"], client=c).code == 250
    c.quit()
    assert [x.rcpt_tos for x in upstream.messages] == [["r2@example.net"]]
    recs = m.audit(2)
    assert A.field(recs[0], "action") == "reject"
    assert A.field(recs[0], "reply").startswith("550")


def test_reject_by_score_with_configured_text(pmw, upstream):
    m = pmw(("inbound_reject_score", "5"), ("reject_reply", "550 5.7.1 Go away spammer"))
    r = send(m, make_msg(subject=SPAM_SUBJECT))
    assert r.raw == b"550 5.7.1 Go away spammer\r\n", r
    assert upstream.messages == []


@pytest.mark.parametrize("action,code,delivered", [
    ("accept", 250, True), ("tag", 250, True), ("quarantine", 250, False),
    ("discard", 250, False), ("tempfail", 451, False), ("reject", 550, False)])
def test_forced_action(pmw, upstream, action, code, delivered):
    m = pmw()
    msg = make_msg(subject="forced " + action, headers=[("X-Example-Action", action)])
    r = send(m, msg)
    assert r.code == code, r
    assert len(upstream.messages) == (1 if delivered else 0)
    if action == "accept":
        assert_same_bytes(upstream.messages[0].content, msg)
    if action == "tag":
        assert headers_named(upstream.messages[0].content, "X-Spam-Flag") == ["YES"]
    assert A.field(m.audit(1)[-1], "action") == action


def test_hardest_verdict_wins(pmw, upstream):
    m = pmw()
    r = send(m, make_msg(subject="x", headers=[("X-Example-Action", "tag"), ("X-Reject-Me", "1")]))
    assert r.code == 550, r
    # a forced "accept" does not lower a score that says tag
    r = send(m, make_msg(subject=SPAM_SUBJECT, headers=[("X-Example-Action", "accept")]))
    assert r.code == 250
    assert headers_named(upstream.messages[-1].content, "X-Spam-Flag") == ["YES"]


@pytest.mark.parametrize("tag,quarantine,reject,want", [
    ("5", "0", "15", "tag"),
    ("7", "0", "15", "accept"),
    ("6", "0", "15", "tag"),          # "score at which": 6 >= 6
    ("3", "0", "6", "reject"),
    ("3", "6", "10", "quarantine"),
    ("0", "0", "0", "accept"),        # 0 disables every threshold
])
def test_inbound_thresholds(mw_factory, upstream, tag, quarantine, reject, want):
    m = mw_factory(upstream, opts=[plugin_opt(), ("inbound_tag_score", tag),
                                   ("inbound_quarantine_score", quarantine), ("inbound_reject_score", reject)])
    r = send(m, make_msg(subject=SPAM_SUBJECT))
    assert r.code == {"accept": 250, "tag": 250, "quarantine": 250, "reject": 550}[want], r
    assert A.field(m.audit(1)[-1], "action") == want


def test_thresholds_per_direction(mw_factory, upstream):
    pin, pout = free_port(), free_port()
    m = mw_factory(upstream, opts=[plugin_opt(), ("inbound_tag_score", "5"), ("inbound_reject_score", "100"),
                                   ("outbound_tag_score", "2"), ("outbound_reject_score", "5")],
                   listeners=[("in", "127.0.0.1:%d" % pin, upstream.addr, "inbound"),
                              ("out", "127.0.0.1:%d" % pout, upstream.addr, "outbound")])
    results = {}
    for name in ("in", "out"):
        c = m.client(name)
        c.ehlo()
        results[name] = c.transaction("a@example.org", ["b@example.net"], make_msg(subject=SPAM_SUBJECT))["final"]
        c.quit()
    assert results["in"].code == 250 and results["out"].code == 550, results
    assert len(upstream.messages) == 1
    assert headers_named(upstream.messages[0].content, "X-Spam-Flag") == ["YES"]


def test_plugin_symbols_in_audit(pmw, upstream):
    m = pmw()
    send(m, make_msg(subject=SPAM_SUBJECT))
    send(m, make_msg(subject="clean"))
    recs = m.audit(2)
    assert A.symbols(recs[0]) == {"EXAMPLE_SUBJECT_WORD": 6}
    assert float(A.field(recs[0], "score")) == 6.0
    assert "EXAMPLE_SUBJECT_WORD" not in A.symbols(recs[1])


def test_plugin_arguments(mw_factory, upstream):
    m = mw_factory(upstream, opts=[plugin_opt(word="casino", score="2.5"), ("inbound_tag_score", "2")])
    send(m, make_msg(subject="online casino"))
    send(m, make_msg(subject="viagra is not the word now"))
    recs = m.audit(2)
    assert A.symbols(recs[0]).get("EXAMPLE_SUBJECT_WORD") == 2.5
    assert A.field(recs[0], "action") == "tag"
    assert "EXAMPLE_SUBJECT_WORD" not in A.symbols(recs[1])
    assert A.field(recs[1], "action") == "accept"


# --- mailwarden scan -------------------------------------------------------------------

def scan(tmp_path, msg, *extra):
    f = tmp_path / "m.eml"
    f.write_bytes(msg)
    p = run_mw(["scan", "-o", "%s=%s" % plugin_opt(), "-o", "inbound_tag_score=5",
                "-o", "inbound_reject_score=15"] + list(extra) + [str(f)])
    assert p.returncode == 0, p.stderr.decode("utf-8", "replace")
    out = json.loads(p.stdout.decode("utf-8"))
    return out


def scan_symbols(out):
    return A.normalize_symbols(out["symbols"])


def test_scan_command_spam(tmp_path):
    out = scan(tmp_path, make_msg(subject=SPAM_SUBJECT), "--from", "a@example.org", "--rcpt", "b@example.net",
               "--client-ip", "192.0.2.1", "--helo", "mx.example.org")
    for k in ("symbols", "score", "action", "edits"):
        assert k in out, out
    assert scan_symbols(out) == {"EXAMPLE_SUBJECT_WORD": 6}
    assert float(out["score"]) == 6.0
    assert out["action"] == "tag"
    assert "X-Spam-Flag" in json.dumps(out["edits"]), out["edits"]


def test_scan_command_clean(tmp_path):
    out = scan(tmp_path, make_msg(subject="hello"))
    assert out["action"] == "accept"
    assert float(out["score"]) == 0
    assert scan_symbols(out).get("EXAMPLE_SUBJECT_WORD") is None


def test_scan_command_reject(tmp_path):
    out = scan(tmp_path, make_msg(subject="hi", headers=[("X-Reject-Me", "yes")]))
    assert out["action"] == "reject"


def test_scan_command_lf_file(tmp_path):
    """a .eml with LF line ends (as files usually are) scans the same"""
    msg = make_msg(subject=SPAM_SUBJECT).replace(CRLF, b"\n")
    out = scan(tmp_path, msg)
    assert out["action"] == "tag"


def test_scan_command_missing_file(tmp_path):
    p = run_mw(["scan", str(tmp_path / "nonexistent.eml")])
    assert p.returncode != 0
    assert p.stderr.strip(), "no reason given"


# --- the Subject tag (session 16 review) ---

@pytest.fixture
def tag_mw(mw_factory, upstream):
    def make(*extra):
        return mw_factory(upstream, opts=[plugin_opt(action_header="X-Action"),
                                          ("inbound_tag_score", "5"), ("inbound_reject_score", "15"),
                                          ("subject_tag", "[SPAM]")] + list(extra))
    return make


def send_one(m, msg):
    c = m.client()
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"], msg)
    c.quit()
    return r["final"]


def test_subject_past_10000_fields_tagged_once(tag_mw, upstream):
    """A tagged message whose Subject comes after 10,000 other fields: the
    pipeline did not see its Subject (the filters' fields stop at 10,000),
    so the policy added a new "Subject: [SPAM]" on top and the original
    stayed: two Subject fields (RFC 5322 3.6: at most one).  The first
    Subject is kept wherever it stands now, as the first From is."""
    m = tag_mw()
    hdr = [b"X-Action: tag"] + [b"X-Filler: %d" % i for i in range(10001)]
    msg = (b"From: a@example.org" + CRLF + b"To: b@example.net" + CRLF + CRLF.join(hdr) + CRLF
           + b"Subject: cheap pills" + CRLF + CRLF + b"body" + CRLF)
    r = send_one(m, msg)
    assert r.code == 250, r
    got = upstream.messages[0].content
    subj = headers_named(got, "Subject")
    assert A.field(m.audit(1)[-1], "action") == "tag"
    assert subj == ["[SPAM] cheap pills"], subj


def test_subject_tag_keeps_lines_within_998(tag_mw, upstream):
    """A Subject line of 998 octets (legal) became a line of 998 +
    len(tag) + 1 with the tag, past RFC 5322's limit, and the next hop
    refused the message; the tag now gets a line of its own then."""
    m = tag_mw()
    subject = "x" * (998 - len("Subject: "))       # a line of exactly 998 octets
    msg = make_msg(subject=subject, headers=[("X-Action", "tag")])
    r = send_one(m, msg)
    assert r.code == 250, r
    got = upstream.messages[0].content
    head = got.split(CRLF + CRLF, 1)[0]
    longest = max(len(l) for l in head.split(CRLF))
    assert longest <= 998, "header line of %d octets: %r" % (longest, [l[:40] for l in head.split(CRLF) if len(l) > 998])


def test_long_folded_subject_tagged(tag_mw, upstream):
    """A Subject folded past 8 KiB was left untagged, although the message
    was tagged: a sender picked which of his messages carry the tag that
    users filter on.  Now only one past 60,000 bytes (what the scanner's
    reply and libmilter carry) is."""
    m = tag_mw()
    words = CRLF.join(b" cheap pills %d" % i for i in range(700))     # ~10 KB, lines of ~16 octets
    msg = (b"From: a@example.org" + CRLF + b"To: b@example.net" + CRLF + b"X-Action: tag" + CRLF
           + b"Subject: buy now" + CRLF + words + CRLF + CRLF + b"body" + CRLF)
    r = send_one(m, msg)
    assert r.code == 250, r
    got = upstream.messages[0].content
    assert headers_named(got, "X-Spam-Flag") == ["YES"]
    subj = [v for n, v in header_block(got) if n.lower() == "subject"]
    assert len(subj) == 1
    assert subj[0].startswith("[SPAM]"), subj[0][:60]
