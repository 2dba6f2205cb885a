"""test_quarantine_release.py - `mailwarden quarantine release` delivers
once, as the client sent it, and says what it did (session 21, review
rv-life; every test here but
test_partial_releases_remove_the_entry_once_everyone_has_it, a guard,
fails on main 68d616e).

- a BODY=BINARYMIME message (taken by BDAT) goes with BDAT ... LAST and
  BODY=BINARYMIME, byte for byte; it went over DATA as BODY=8BITMIME,
  its bare CR and LF made CRLF (R1);
- a release goes only to recipients that have not got the message from
  an earlier release: a second release, or a retry after "released to 1
  of 2", delivered it again to everyone (R2); `--again` is the admin's
  explicit "deliver it again";
- a release whose record cannot be rewritten (full disk) exits 3 and says
  the message WAS delivered; it exited 0 with "released" while `list`
  said quarantined (R3);
- the client's SMTPUTF8 (UTF-8 header fields under an ASCII envelope) is
  kept; the release dropped it (R4).
The outcome-unknown case (an upstream silent after the final dot) is in
test_quarantine.py test_release_upstream_silent.

Review rv-today2 (these fail on main 3631b95): the outcome is recorded and
audited before QUIT, with SIGINT/SIGTERM held back from the record's
"pending" mark until then (R1); an unknown or interrupted outcome stays in
the record and a later release leaves its recipients out until --again
(R1b); a record that cannot be marked is not released.
"""

import signal
import subprocess
import time

import pytest

from mwlib import MW_BIN, RawUpstream, read_audit, wait_until
from quarantinelib import q, q_list, quarantine_opts, spam_msg
from test_bdat import bdat_send
from test_disk_full import small_fs  # noqa: F401  (the tmpfs fixture)

BINARY_TAIL = b"\r\n\x00\x01\xff\nraw\rbytes\r\n"


def audit_releases(m):
    return [r for r in read_audit(m.audit_path) if r.get("event") == "quarantine_release"]


def quarantine_binary(mw_factory, raw_upstream):
    """A BODY=BINARYMIME message, taken by BDAT and quarantined; (m, id)"""
    caps = RawUpstream.CAPS + [b"CHUNKING", b"BINARYMIME"]
    up = raw_upstream(caps=caps)
    m = mw_factory(up, opts=quarantine_opts())
    c = m.client()
    assert "BINARYMIME" in c.ehlo().text.upper()
    assert c.cmd("MAIL FROM:<a@example.org> BODY=BINARYMIME").code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    r = bdat_send(c, spam_msg().rstrip(b"\r\n") + BINARY_TAIL, chunks=2)[-1]
    c.quit()
    assert r.code == 250 and b"Held" in r.raw, r
    assert up.messages == []
    return m, q_list(m)[0]["id"]


def test_binarymime_message_released_with_bdat_byte_for_byte(mw_factory, raw_upstream):
    """The tag action relays a BINARYMIME message byte for byte with BDAT
    (test_bdat.py test_binarymime_only_with_upstream_support); the release
    sent it over DATA as BODY=8BITMIME: its bare LF and CR became CRLF and
    its NULs went inside DATA."""
    m, qid = quarantine_binary(mw_factory, raw_upstream)
    rel = raw_upstream(caps=RawUpstream.CAPS + [b"CHUNKING", b"BINARYMIME"])
    r = q(m, "release", qid, opts=[("quarantine_release_upstream", rel.addr)])
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: rel.messages, 5)
    got = rel.messages[0]
    assert getattr(got, "via", "DATA") == "BDAT", got
    assert b"BODY=BINARYMIME" in got.mail_line.upper(), got.mail_line
    assert got.content.endswith(BINARY_TAIL), got.content[-40:]
    assert not any(l.upper().startswith(b"DATA") for s in rel.sessions for l in s), rel.sessions
    assert audit_releases(m)[-1]["mail_params"].upper().find("BODY=BINARYMIME") >= 0


def test_binarymime_release_refused_without_chunking_binarymime(mw_factory, raw_upstream):
    """An upstream without CHUNKING+BINARYMIME gets nothing: the release
    fails with the reason (as for an envelope that needs SMTPUTF8), the
    entry stays quarantined."""
    m, qid = quarantine_binary(mw_factory, raw_upstream)
    for caps in (RawUpstream.CAPS, RawUpstream.CAPS + [b"CHUNKING"]):
        rel = raw_upstream(caps=caps)
        r = q(m, "release", qid, opts=[("quarantine_release_upstream", rel.addr)])
        assert r.returncode == 1 and b"BINARYMIME" in r.stderr, r.stderr
        assert b"does not offer" in r.stderr, r.stderr
        assert rel.messages == []
        assert not any(l.upper().startswith((b"MAIL", b"DATA")) for s in rel.sessions for l in s)
    assert q_list(m)[0]["status"] == "quarantined"
    assert audit_releases(m)[-1]["action"] == "release_failed"


def test_second_release_does_not_deliver_again(mw_factory, upstream):
    """`release ID` of an entry released already delivered it again, with
    exit 0 (the flock only stops two releases at once).  Now nothing is
    sent, exit 2 with the reason; `--again` delivers it again."""
    m = mw_factory(upstream, opts=quarantine_opts())
    c = m.client()
    c.ehlo()
    c.transaction("s@example.org", ["r@example.net"], spam_msg())
    c.quit()
    qid = q_list(m)[0]["id"]
    r1 = q(m, "release", qid)
    assert r1.returncode == 0, r1.stderr
    assert q_list(m)[0]["status"] == "released"
    assert upstream.wait_messages(1)
    n_audit = len(audit_releases(m))
    r2 = q(m, "release", qid)
    assert r2.returncode == 2, (r2.returncode, r2.stderr)
    assert b"released already" in r2.stderr and b"--again" in r2.stderr, r2.stderr
    wait_until(lambda: len(upstream.messages) >= 2, 1)
    assert len(upstream.messages) == 1, "released (delivered) %d times" % len(upstream.messages)
    assert len(audit_releases(m)) == n_audit         # nothing tried, nothing audited
    # the same for a --to recipient that had it
    r = q(m, "release", "--to", "r@example.net", qid)
    assert r.returncode == 2, r.stderr
    # the admin's explicit choice
    r3 = q(m, "release", "--again", qid)
    assert r3.returncode == 0, r3.stderr
    assert upstream.wait_messages(2) and len(upstream.messages) == 2
    a = audit_releases(m)[-1]
    assert a["again"] is True and a["action"] == "released" and a["recorded"] is True


def test_retry_after_partial_release_goes_to_the_refused_recipients_only(mw_factory, raw_upstream,
                                                                        upstream):
    """A release that one recipient refused exits 1 ("released to 1 of 2
    recipients"); running release again (what an exit 1 invites) sent to
    every recorded recipient again, the one that got it included.  Now
    the retry goes to the refused one only."""
    m = mw_factory(raw_upstream(), opts=quarantine_opts())   # takes every recipient
    c = m.client()
    c.ehlo()
    c.transaction("s@example.org", ["ok@example.net", "unknown@example.net"], spam_msg())
    c.quit()
    qid = q_list(m)[0]["id"]
    # the release smtpd (aiosmtpd: "unknown*" get 550) refuses one of them
    rel = [("quarantine_release_upstream", upstream.addr)]
    r1 = q(m, "release", qid, opts=rel)
    assert r1.returncode == 1 and b"1 of 2" in r1.stderr, r1.stderr
    assert upstream.wait_messages(1)[0].rcpt_tos == ["ok@example.net"]
    # still refused: the retry asks for unknown@ alone, and fails alone
    r2 = q(m, "release", qid, opts=rel)
    assert r2.returncode == 1, r2.stderr
    wait_until(lambda: len(upstream.messages) >= 2, 1)
    got = [x.rcpt_tos for x in upstream.messages]
    assert got == [["ok@example.net"]], got
    a = audit_releases(m)[-1]
    assert [x["address"] for x in a["rcpts"]] == ["unknown@example.net"], a
    assert a["rcpts_skipped"] == 1
    # a release smtpd that takes it: the rest gets it, once
    up2 = raw_upstream()
    r3 = q(m, "release", qid, opts=[("quarantine_release_upstream", up2.addr)])
    assert r3.returncode == 0, r3.stderr
    assert b"1 recipient that had it already left out" in r3.stdout, r3.stdout
    assert wait_until(lambda: up2.messages, 5)
    assert up2.messages[0].rcpt_tos == ["unknown@example.net"]
    # now every recipient has it
    r4 = q(m, "release", qid, opts=[("quarantine_release_upstream", up2.addr)])
    assert r4.returncode == 2 and b"released already" in r4.stderr, r4.stderr
    assert len(up2.messages) == 1


def test_partial_releases_remove_the_entry_once_everyone_has_it(mw_factory, raw_upstream,
                                                                upstream):
    """quarantine_delete_released removes an entry once every original
    recipient took it, over several releases (the retry of a partial one
    included)."""
    opts = [("quarantine_delete_released", "yes")]
    m = mw_factory(raw_upstream(), opts=quarantine_opts(*opts))
    c = m.client()
    c.ehlo()
    c.transaction("s@example.org", ["ok@example.net", "unknown@example.net"], spam_msg())
    c.quit()
    qid = q_list(m)[0]["id"]
    r1 = q(m, "release", qid, opts=opts + [("quarantine_release_upstream", upstream.addr)])
    assert r1.returncode == 1 and b"1 of 2" in r1.stderr, r1.stderr
    assert [e["id"] for e in q_list(m)] == [qid]
    up2 = raw_upstream()
    r2 = q(m, "release", qid, opts=opts + [("quarantine_release_upstream", up2.addr)])
    assert r2.returncode == 0 and b"(removed)" in r2.stdout, (r2.stdout, r2.stderr)
    assert q_list(m) == []


def test_release_whose_record_cannot_be_updated_does_not_exit_0(small_fs, mw_factory, raw_upstream):
    """Full disk under quarantine_dir once the upstream took the message:
    it is delivered and its record cannot be rewritten.  The command
    printed "released" and exited 0 while the entry stayed "quarantined"
    in list (so the next release delivers it again).  Now: exit 3, and
    stderr says it WAS delivered and the record still says quarantined,
    with the release under way (session 21: marked before the message
    went), so that a plain release refuses it."""
    fs = small_fs("q", "256k")
    up = raw_upstream(script={"EOD": lambda u, st: fs.fill()})     # then the normal 250
    m = mw_factory(up, opts=quarantine_opts(("quarantine_dir", fs.path)))
    c = m.client()
    c.ehlo()
    c.transaction("s@example.org", ["r@example.net"], spam_msg())
    c.quit()
    qd = [("quarantine_dir", fs.path)]
    qid = q_list(m, opts=qd)[0]["id"]
    r = q(m, "release", qid, opts=qd + [("quarantine_release_upstream", up.addr)])
    fs.free()
    assert len(up.messages) == 1
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert b"WAS delivered" in r.stderr and b"record could not be updated" in r.stderr, r.stderr
    assert b"No space left" in r.stderr and b"twice" in r.stderr, r.stderr
    assert b"released to" not in r.stdout, r.stdout
    assert q_list(m, opts=qd)[0]["status"] == "quarantined"
    a = audit_releases(m)[-1]
    assert a["action"] == "released" and a["recorded"] is False, a
    again = raw_upstream()
    r = q(m, "release", qid, opts=qd + [("quarantine_release_upstream", again.addr)])
    assert r.returncode == 2 and not again.messages, (r.returncode, r.stderr)


def test_release_not_sent_when_its_record_cannot_be_marked(small_fs, mw_factory, upstream):
    """Full disk under quarantine_dir before the release: the record cannot
    say "release under way", and a release that could not be recorded is
    not made (session 21): nothing delivered, exit 1, said, audited as
    failed."""
    fs = small_fs("q", "256k")
    m = mw_factory(upstream, opts=quarantine_opts(("quarantine_dir", fs.path)))
    c = m.client()
    c.ehlo()
    c.transaction("s@example.org", ["r@example.net"], spam_msg())
    c.quit()
    qd = [("quarantine_dir", fs.path)]
    qid = q_list(m, opts=qd)[0]["id"]
    fs.fill()
    r = q(m, "release", qid, opts=qd)
    fs.free()
    assert r.returncode == 1 and b"could not be marked" in r.stderr, (r.returncode, r.stderr)
    assert b"No space left" in r.stderr, r.stderr
    assert not wait_until(lambda: upstream.messages, 1)
    assert q_list(m, opts=qd)[0]["status"] == "quarantined"
    assert audit_releases(m)[-1]["action"] == "release_failed"
    r = q(m, "release", qid, opts=qd)                      # space again: released
    assert r.returncode == 0, r.stderr
    assert upstream.wait_messages(1)


# an outcome not recorded: killed while QUIT waits, or never reported --------

def _release_proc(m, qid, upstream_addr, *extra):
    cmd = [MW_BIN, "quarantine", "-o", "quarantine_dir=%s" % m.quarantine_dir,
           "-o", "audit_log=%s" % m.audit_path, "-o", "log_level=warning",
           "-o", "quarantine_release_upstream=%s" % upstream_addr, "release", *extra, qid]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _one_quarantined(mw_factory, upstream):
    m = mw_factory(upstream, opts=quarantine_opts())
    c = m.client()
    c.ehlo()
    c.transaction("s@example.org", ["r@example.net"], spam_msg())
    c.quit()
    return m, q_list(m)[0]["id"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_release_recorded_before_quit(mw_factory, upstream, raw_upstream, sig):
    """rv-today2 R1: the record and the audit line were written only after
    QUIT's reply (upstream_command_timeout, 300 s): an upstream that said
    250 and was slow on QUIT, then Ctrl-C or SIGTERM, left the message
    delivered and recorded nowhere, and the next release sent it again,
    exit 0.  Now both are written right after the 250, before QUIT, and
    the signal (blocked from the record's "pending" mark until then) ends
    the wait for QUIT only."""
    m, qid = _one_quarantined(mw_factory, upstream)
    slow = raw_upstream(script={"QUIT": lambda up, st: time.sleep(20) or "silent"})
    p = _release_proc(m, qid, slow.addr)
    assert wait_until(lambda: slow.messages, 10), "not delivered"
    assert wait_until(lambda: audit_releases(m), 5), "no audit line before QUIT's reply"
    assert p.poll() is None, "release did not wait for QUIT"
    assert q_list(m)[0]["status"] == "released"
    p.send_signal(sig)
    out, err = p.communicate(timeout=10)
    assert b"released to 1 recipient" in out, (out, err)
    assert audit_releases(m)[-1]["action"] == "released"
    again = raw_upstream()
    r = q(m, "release", qid, opts=[("quarantine_release_upstream", again.addr)])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert not wait_until(lambda: again.messages, 1), "delivered twice"


def test_release_interrupted_before_its_outcome_is_remembered(mw_factory, upstream, raw_upstream):
    """A SIGINT while the upstream holds back its reply to the message waits
    until the reply is recorded; a SIGKILL there leaves the record's
    "pending" mark, and a later release leaves those recipients out
    (exit 2, said) until --again."""
    m, qid = _one_quarantined(mw_factory, upstream)
    slow = raw_upstream(script={"EOD": lambda up, st: time.sleep(2) or None})
    p = _release_proc(m, qid, slow.addr)
    assert wait_until(lambda: slow.messages, 10), "not delivered"
    p.send_signal(signal.SIGINT)                   # waits for the 250, recorded
    out, err = p.communicate(timeout=20)
    assert b"released to 1 recipient" in out, (p.returncode, out, err)
    assert q_list(m)[0]["status"] == "released"
    # killed outright while the reply is held back: the mark stays
    slow2 = raw_upstream(script={"EOD": lambda up, st: time.sleep(20) or None})
    p = _release_proc(m, qid, slow2.addr, "--to", "x@example.net")
    assert wait_until(lambda: slow2.messages, 10), "not delivered"
    p.kill()
    p.communicate(timeout=10)
    slow2.stop()
    rel = raw_upstream()
    r = q(m, "release", "--to", "other@example.net", "--to", "x@example.net", qid,
          opts=[("quarantine_release_upstream", rel.addr)])
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: rel.messages, 5)
    assert rel.messages[0].rcpt_tos == ["other@example.net"], rel.messages[0].rcpt_tos
    assert b"unfinished release left out" in r.stdout, r.stdout
    r = q(m, "release", "--to", "x@example.net", qid, opts=[("quarantine_release_upstream", rel.addr)])
    assert r.returncode == 2 and b"interrupted" in r.stderr, (r.returncode, r.stderr)
    assert len(rel.messages) == 1


def test_outcome_unknown_is_remembered(mw_factory, upstream, raw_upstream):
    """rv-today2 R1b: after exit 3 "outcome unknown" (the upstream had the
    whole message and fell silent) the record kept nothing of it, and the
    next plain release exited 0 and delivered again without a word.  The
    record now says so; a later release leaves those recipients out, exit
    2 with the reason, and --again sends it anyway.  A record without the
    mark (older) releases as before."""
    m, qid = _one_quarantined(mw_factory, upstream)
    silent = raw_upstream(script={"EOD": "silent"})
    r1 = q(m, "release", qid, opts=[("quarantine_release_upstream", silent.addr),
                                    ("upstream_eod_timeout", "1s")])
    assert r1.returncode == 3 and silent.messages, r1.stderr
    rel = raw_upstream()
    r2 = q(m, "release", qid, opts=[("quarantine_release_upstream", rel.addr)])
    assert r2.returncode == 2, (r2.returncode, r2.stderr)
    assert b"did not finish" in r2.stderr and b"outcome unknown" in r2.stderr, r2.stderr
    assert b"--again" in r2.stderr, r2.stderr
    assert not wait_until(lambda: rel.messages, 1), "delivered again"
    assert q_list(m)[0]["status"] == "quarantined"
    show = q(m, "show", qid).stdout.decode()
    assert "Unfinished:" in show and "outcome unknown" in show, show
    r3 = q(m, "release", "--again", qid, opts=[("quarantine_release_upstream", rel.addr)])
    assert r3.returncode == 0 and wait_until(lambda: rel.messages, 5), r3.stderr


def test_smtputf8_message_with_ascii_envelope_released_with_smtputf8(mw_factory, raw_upstream):
    """RFC 6531/6532: a client sends MAIL ... SMTPUTF8 for a message whose
    header fields are UTF-8 (an ASCII envelope).  The tag action relays
    SMTPUTF8; the release dropped it (it looked at the envelope only), so
    UTF-8 header fields left without SMTPUTF8.  An upstream without
    SMTPUTF8 now gets nothing, with the reason, as for an envelope that
    needs it."""
    up = raw_upstream()                    # offers SMTPUTF8 (CAPS)
    m = mw_factory(up, opts=quarantine_opts())
    c = m.client()
    c.ehlo()
    msg = ("From: Jösé <s@example.org>\r\nTo: r@example.net\r\n"
           "Subject: buy viagra now — ünïcode\r\n\r\nbody\r\n").encode()
    c.transaction("s@example.org", ["r@example.net"], msg, mail_params="SMTPUTF8")
    c.quit()
    qid = q_list(m)[0]["id"]
    # the proxy's own upstream session (what tag/accept uses) carried it
    assert any(l.upper().startswith(b"MAIL") and b"SMTPUTF8" in l.upper()
               for sess in up.sessions for l in sess), up.sessions
    plain = raw_upstream(caps=[x for x in RawUpstream.CAPS if x != b"SMTPUTF8"])
    r = q(m, "release", qid, opts=[("quarantine_release_upstream", plain.addr)])
    assert r.returncode == 1 and b"came with SMTPUTF8" in r.stderr, r.stderr
    assert plain.messages == []
    rel = raw_upstream()
    r = q(m, "release", qid, opts=[("quarantine_release_upstream", rel.addr)])
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: rel.messages, 5)
    assert b"SMTPUTF8" in rel.messages[0].mail_line.upper(), rel.messages[0].mail_line
    assert rel.messages[0].mail_line.upper().count(b"SMTPUTF8") == 1
