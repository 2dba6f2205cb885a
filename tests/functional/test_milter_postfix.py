"""test_milter_postfix.py - mailwarden as a milter of a real Postfix
(started by the test: own config directory, loopback ports,
smtpd_milters pointing at mailwarden, relaying to a capturing sink).
The client talks SMTP to Postfix; what Postfix refuses, and what reaches
the sink, is what a site running mailwarden as a milter would see."""
import os
import smtplib
import subprocess

import pytest

import postfixlib
from mwlib import free_port, make_msg, wait_until, header_block

PLUGIN = os.environ.get("MW_PLUGIN")

pytestmark = pytest.mark.skipif(not postfixlib.available(),
                                reason="needs root and Debian's postfix")


@pytest.fixture
def site(mw_factory, make_upstream, tmp_path):
    """(postfix, mailwarden, sink): client -> Postfix -(milter)-> mailwarden,
    Postfix -> sink."""
    made = []

    def make(opts=(), main=None, before=(), after=()):
        """before, after: ports of other milters listed before or after
        mailwarden in smtpd_milters"""
        sink = make_upstream()
        mport = free_port()
        o = [("milter_listen", "inet:%d@127.0.0.1" % mport),
             ("plugin", "%s word=viagra score=6 action_header=X-Action reject_rcpt=refuse-me" % PLUGIN),
             ("authserv_id", "mx.test.example"), ("subject_tag", "[SPAM]"),
             # the test client is 127.0.0.1: inbound unless said otherwise
             ("milter_internal_networks", "192.0.2.0/24")] + list(opts)
        mw = mw_factory(sink, opts=o)
        milters = ["inet:127.0.0.1:%d" % p for p in list(before) + [mport] + list(after)]
        m = {"smtpd_milters": ", ".join(milters), "milter_default_action": "tempfail",
             "milter_content_timeout": "120s"}
        m.update(main or {})
        pf = postfixlib.Postfix(tmp_path / "pf", relayhost=sink.addr, main=m).start()
        made.append(pf)
        return pf, mw, sink
    yield make
    for pf in made:
        pf.stop()


def send(pf, content, frm="sender@example.org", rcpts=("rcpt@example.net",)):
    """(refused recipients, exception or None) of one SMTP transaction to Postfix."""
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as c:
        c.ehlo("client.example.org")
        try:
            refused = c.sendmail(frm, list(rcpts), content)
            return refused, None
        except (smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as e:
            return None, e


def test_clean_message_passes_postfix_and_spam_arrives_tagged(site):
    pf, mw, sink = site()
    refused, err = send(pf, make_msg(subject="hello there"))
    assert err is None and not refused
    refused, err = send(pf, make_msg(subject="cheap viagra",
                                     headers=[("X-Spam-Flag", "NO"), ("X-Spam-Score", "-50")]))
    assert err is None
    assert wait_until(lambda: len(sink.messages) >= 2, 20.0), pf.log()[-3000:]
    clean = header_block(sink.messages[0].content)
    assert "x-spam-flag" not in [n.lower() for n, _ in clean]
    tagged = header_block(sink.messages[1].content)
    assert ("X-Spam-Flag", "YES") in tagged
    assert ("X-Spam-Score", "-50") not in tagged   # the sender's own was removed
    assert ("Subject", "[SPAM] cheap viagra") in tagged


def test_reject_at_end_of_data_with_the_configured_text(site):
    pf, mw, sink = site()
    _, err = send(pf, make_msg(subject="x", headers=[("X-Reject-Me", "1")]))
    assert isinstance(err, smtplib.SMTPDataError)
    assert err.smtp_code == 550
    assert b"5.7.1 Message refused by example plugin" in err.smtp_error
    assert sink.messages == []


def test_recipient_refused_at_rcpt(site):
    pf, mw, sink = site()
    refused, err = send(pf, make_msg(subject="x"), rcpts=("good@example.net", "refuse-me@example.net"))
    assert err is None
    assert list(refused) == ["refuse-me@example.net"]
    assert refused["refuse-me@example.net"][0] == 550
    assert wait_until(lambda: len(sink.messages) == 1, 20.0)
    assert sink.messages[0].rcpt_tos == ["good@example.net"]


def test_quarantine_in_postfix_hold_queue(site):
    pf, mw, sink = site(opts=[("milter_quarantine", "mta")])
    refused, err = send(pf, make_msg(subject="x", headers=[("X-Action", "quarantine")]))
    assert err is None
    assert pf.wait_log("milter triggers HOLD action", 10.0), pf.log()[-3000:]
    assert sink.messages == []


def test_held_message_shows_why_in_postcat(site):
    """what the admin sees of a held message (postcat -h): our X-Spam-*
    fields, as on a tagged message, the sender's forged one gone"""
    import glob
    import subprocess
    pf, mw, sink = site(opts=[("milter_quarantine", "mta"), ("inbound_quarantine_score", "5")])
    refused, err = send(pf, make_msg(subject="cheap viagra", headers=[("X-Spam-Status", "No")]))
    assert err is None
    assert pf.wait_log("milter triggers HOLD action", 10.0), pf.log()[-3000:]
    def held():
        return glob.glob(os.path.join(pf.queue, "hold", "*"))
    assert wait_until(lambda: held(), 10.0), pf.log()[-3000:]
    shown = subprocess.run(["/usr/sbin/postcat", "-c", pf.conf, "-h", held()[0]],
                           capture_output=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    head = shown.stdout.decode("utf-8", "replace")
    assert "X-Spam-Flag: YES" in head, head
    assert "X-Spam-Status: Yes, score=6" in head and "EXAMPLE_SUBJECT_WORD" in head, head
    assert "X-Spam-Status: No" not in head, head
    assert "Subject: [SPAM] cheap viagra" in head, head
    assert sink.messages == []


def test_slow_scanner_gives_tempfail_before_postfix_gives_up(site):
    pf, mw, sink = site(opts=[("milter_timeout", "1s"),
                              ("plugin", "%s sleep_header=X-Sleep" % PLUGIN)])
    _, err = send(pf, make_msg(subject="x", headers=[("X-Sleep", "4000")]))
    assert isinstance(err, smtplib.SMTPDataError)
    assert err.smtp_code == 451
    assert b"4.3.0" in err.smtp_error
    refused, err = send(pf, make_msg(subject="x"))
    assert err is None


def test_banned_attachment_replaced_through_postfix(site):
    """attach_*_action = replace: Postfix delivers the message with the
    banned part made a text part (smfi_replacebody), every other part as
    it was sent"""
    import test_attachments as T
    pf, mw, sink = site(opts=[("filters", "attachments"),
                              ("attach_inbound_extension_action", "replace")])
    msg = T.replace_msg(T.TRICKY)
    refused, err = send(pf, msg)
    assert err is None and not refused
    assert wait_until(lambda: len(sink.messages) >= 1, 20.0), pf.log()[-3000:]
    T.check_replaced(msg, sink.messages[0].content)
    assert "1 banned attachment replaced by a text part" in mw.stderr_tail(300)


def test_single_part_banned_body_replaced_through_postfix(site):
    """the message's own body was the banned file: the MTA's copy gets the
    text part and the Content-* fields that describe it, the old ones gone"""
    import attachlib as L
    pf, mw, sink = site(opts=[("filters", "attachments"), ("attach_inbound_type_action", "replace")])
    msg = (b"From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: update\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: application/x-msdownload; name=\"update.bin\"\r\n"
           b"Content-Disposition: attachment; filename=\"update.bin\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + L.b64(b"payload " * 40) + b"\r\n")
    refused, err = send(pf, msg)
    assert err is None and not refused
    assert wait_until(lambda: len(sink.messages) >= 1, 20.0), pf.log()[-3000:]
    got = sink.messages[0].content
    head = [(n.lower(), v) for n, v in header_block(got)]
    ctypes = [v for n, v in head if n == "content-type"]
    assert ctypes == ["text/plain; charset=us-ascii"], head
    assert [v for n, v in head if n == "content-transfer-encoding"] == ["7bit"], head
    assert "content-disposition" not in [n for n, _ in head]
    assert b"mailwarden removed an attachment" in got and L.b64(b"payload " * 40)[:40] not in got


def test_postfix_waits_on_while_the_milter_reports_progress(site):
    """The milter sends a progress packet every 5 s while the scanner works;
    Postfix reads it and waits again (milter_content_timeout bounds each
    read), so a scan of 11 s gets its verdict with a 6 s timeout there.
    Without the packets Postfix gave up at 6 s with its own
    milter_default_action (tempfail), though mailwarden would have
    answered."""
    pf, mw, sink = site(opts=[("plugin", "%s sleep_header=X-Sleep" % PLUGIN)],
                        main={"milter_content_timeout": "6s"})
    refused, err = send(pf, make_msg(subject="slow", headers=[("X-Sleep", "11000")]))
    assert err is None and not refused, (err, pf.log()[-3000:])
    assert wait_until(lambda: len(sink.messages) == 1, 20.0), pf.log()[-3000:]


def test_outbound_message_held_then_released_arrives_signed(site, tmp_path):
    """milter_quarantine = mta: an outbound message held in Postfix's hold
    queue leaves it unchanged when the admin releases it (postsuper -H: no
    milter on that way), so it must be signed when held, as a tagged one
    is, over the fields it is held with (the Subject tag).  It was held
    unsigned, and so left unsigned and failed DMARC at the receiver."""
    import glob
    import subprocess
    import dkimlib
    keys = dkimlib.make_keys(tmp_path)
    sign, dns = dkimlib.sign_keys(keys)
    pf, mw, sink = site(opts=[("filters", "dkim_sign"), ("milter_quarantine", "mta"),
                              ("milter_internal_networks", "127.0.0.0/8"),
                              ("outbound_quarantine_score", "5")] + sign)
    msg = make_msg(subject="cheap viagra", frm="alice@sign.test")
    refused, err = send(pf, msg, frm="alice@sign.test")
    assert err is None and not refused
    assert pf.wait_log("milter triggers HOLD action", 10.0), pf.log()[-3000:]
    assert wait_until(lambda: glob.glob(os.path.join(pf.queue, "hold", "*")), 10.0), pf.log()[-3000:]
    assert sink.messages == []
    rec = [r for r in mw.audit(1) if r.get("listener") == "milter"][-1]
    assert rec["direction"] == "outbound" and rec["action"] == "quarantine", rec
    env = dict(os.environ, MAIL_CONFIG=pf.conf)
    for cmd in (["/usr/sbin/postsuper", "-c", pf.conf, "-H", "ALL"],
                ["/usr/sbin/postqueue", "-c", pf.conf, "-f"]):
        r = subprocess.run(cmd, capture_output=True, timeout=30, env=env)
        assert r.returncode == 0, (cmd, r.stderr)
    assert wait_until(lambda: len(sink.messages) == 1, 20.0), pf.log()[-3000:]
    got = sink.messages[0].content
    assert ("Subject", "[SPAM] cheap viagra") in header_block(got)
    assert len(dkimlib.signatures(got)) == 2, got[:2000]
    assert dkimlib.dkimpy_verify_all(got, dns) == [True, True]


def test_held_message_released_with_the_body_a_filter_rewrote(site, tmp_path):
    """milter_quarantine = mta, outbound: a message whose banned attachment
    the accept path replaces, held for its score.  It was held with the
    banned file and a signature over it, and postsuper -H delivered the
    file.  Now the body is replaced before the hold, and the signature made
    then verifies on what Postfix delivers once released."""
    import glob
    import subprocess
    import attachlib as L
    import dkimlib
    keys = dkimlib.make_keys(tmp_path)
    sign, dns = dkimlib.sign_keys(keys)
    pf, mw, sink = site(opts=[("filters", "dkim_sign attachments"), ("milter_quarantine", "mta"),
                              ("milter_internal_networks", "127.0.0.0/8"),
                              ("outbound_quarantine_score", "5"),
                              ("attach_outbound_extension_action", "replace")] + sign)
    banned = b"not an executable, but named like one\r\n" * 4
    msg = L.message([L.part("application/octet-stream", banned,
                            "attachment; filename=\"invoice.pdf.exe\"")],
                    subject="cheap viagra").replace(b"From: sender@example.org", b"From: alice@sign.test")
    refused, err = send(pf, msg, frm="alice@sign.test")
    assert err is None and not refused
    assert pf.wait_log("milter triggers HOLD action", 10.0), pf.log()[-3000:]
    assert wait_until(lambda: glob.glob(os.path.join(pf.queue, "hold", "*")), 10.0), pf.log()[-3000:]
    assert sink.messages == []
    env = dict(os.environ, MAIL_CONFIG=pf.conf)
    for cmd in (["/usr/sbin/postsuper", "-c", pf.conf, "-H", "ALL"],
                ["/usr/sbin/postqueue", "-c", pf.conf, "-f"]):
        r = subprocess.run(cmd, capture_output=True, timeout=30, env=env)
        assert r.returncode == 0, (cmd, r.stderr)
    assert wait_until(lambda: len(sink.messages) == 1, 20.0), pf.log()[-3000:]
    got = sink.messages[0].content
    assert L.b64(banned)[:60] not in got, got[:3000]
    assert b"mailwarden removed an attachment" in got and b"invoice.pdf.exe" in got
    assert len(dkimlib.signatures(got)) == 2, got[:2000]
    assert dkimlib.dkimpy_verify_all(got, dns) == [True, True]


def test_outbound_replaced_body_signed_through_postfix(site, tmp_path):
    """outbound, a single-part body that is a banned file replaced by a
    text part (smfi_replacebody, the Content-* fields removed and added
    again): what Postfix relays is what was signed, with dkim_sign listed
    before attachments.  Held already (the rewrite comes before the
    finalize step); through the milter it was not tested."""
    import attachlib as L
    import dkimlib
    keys = dkimlib.make_keys(tmp_path)
    sign, dns = dkimlib.sign_keys(keys)
    pf, mw, sink = site(opts=[("filters", "dkim_sign attachments"),
                              ("milter_internal_networks", "127.0.0.0/8"),
                              ("attach_outbound_type_action", "replace")] + sign)
    msg = (b"From: alice@sign.test\r\nTo: rcpt@example.net\r\nSubject: update\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: application/x-msdownload; name=\"update.bin\"\r\n"
           b"Content-Disposition: attachment; filename=\"update.bin\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + L.b64(b"payload " * 40) + b"\r\n")
    refused, err = send(pf, msg, frm="alice@sign.test")
    assert err is None and not refused
    assert wait_until(lambda: len(sink.messages) == 1, 20.0), pf.log()[-3000:]
    got = sink.messages[0].content
    assert b"mailwarden removed an attachment" in got and b"update.bin" in got
    assert [v for n, v in header_block(got) if n.lower() == "content-type"] == \
        ["text/plain; charset=us-ascii"]
    assert len(dkimlib.signatures(got)) == 2
    assert dkimlib.dkimpy_verify_all(got, dns) == [True, True]


def test_rejected_message_to_1000_long_recipients_is_scanned(site):
    """1000 recipients of 300 octets (Postfix's smtpd_recipient_limit is
    1000, and it relays such addresses) make the end-of-message scan
    request bigger than one scanner packet (256 KiB).  Until session 19
    the milter took the failed send for "scanner unavailable" and applied
    milter_default_action: with accept, a message the filters reject was
    relayed, unscanned, to all 1000.  It is refused now, and a clean one
    to the same 1000 is relayed (test_big_envelope.py: the same without
    Postfix)."""
    pf, mw, sink = site(opts=[("milter_default_action", "accept")])
    rcpts = ["%s%04d@%s.example.net" % ("r" * 230, i, "d" * 60) for i in range(1000)]
    bad = make_msg(subject="x", headers=[("X-Action", "reject")])
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=120) as c:
        c.ehlo("client.example.org")
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("s@example.org", rcpts, bad)
        assert e.value.smtp_code == 550, e.value
        c.rset()
        assert c.sendmail("s@example.org", rcpts, make_msg(subject="newsletter")) == {}
    recs = [r for r in mw.audit(2) if r.get("listener") == "milter"]
    assert [r["action"] for r in recs[-2:]] == ["reject", "accept"], recs[-2:]
    assert not any(r.get("fault") for r in recs[-2:]), recs[-2:]
    # Postfix relays to 50 recipients a transaction (its default)
    assert wait_until(lambda: sum(len(m.rcpt_tos) for m in sink.messages) >= 1000, 60.0), \
        pf.log()[-3000:]
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == sorted(rcpts)
    assert all(b"newsletter" in m.content for m in sink.messages)


@pytest.fixture
def other_milter():
    """make(insert=[(name, value)]) -> a second milter (othermilter.py)
    that inserts those fields on top at the end of each message, as
    OpenDKIM, OpenDMARC, spamass-milter and rspamd insert theirs"""
    from othermilter import OtherMilter
    made = []

    def make(**kw):
        m = OtherMilter(**kw)
        made.append(m)
        return m
    yield make
    for m in made:
        m.stop()


OTHERS = [("X-Spam-Score", "3.1 (other milter)"),
          ("Authentication-Results", "mx.test.example; dkim=pass (other milter)")]


@pytest.mark.parametrize("order", ["mailwarden first", "mailwarden after"])
def test_other_milters_fields_survive_when_mailwarden_is_listed_first(site, other_milter, order):
    """Postfix hands each milter of smtpd_milters the header as the
    milters before it left it, and says nothing of who wrote a field.
    Listed after OpenDKIM/OpenDMARC (whose authserv-id defaults to the
    host name, as mailwarden's does) or a SpamAssassin/rspamd milter,
    mailwarden takes their Authentication-Results and X-Spam-* for the
    sender's forgeries and removes them; listed first (README "Milter
    front end"), it removes the sender's, and the later milters' own
    fields reach the mailbox.  (Session 20 review: the README did not say.)"""
    other = other_milter(insert=OTHERS)
    where = {"after": [other.port]} if order == "mailwarden first" else {"before": [other.port]}
    pf, mw, sink = site(opts=[("filters", "spf dkim dmarc")], **where)
    forged = [("X-Spam-Score", "-50 (sender)"),
              ("Authentication-Results", "mx.test.example; dmarc=pass (sender)")]
    refused, err = send(pf, make_msg(subject="cheap viagra", headers=forged))
    assert err is None and not refused, err
    assert wait_until(lambda: len(sink.messages) >= 1, 20.0), pf.log()[-3000:]
    head = header_block(sink.messages[0].content)
    for f in forged:                  # the sender's: removed either way
        assert f not in head, head
    assert ("X-Spam-Flag", "YES") in head, head
    for f in OTHERS:
        assert (f in head) == (order == "mailwarden first"), (order, f, head)


def test_queue_id_of_a_transaction_ended_by_rset(site):
    """Postfix (smtpd_delay_open_until_valid_rcpt = yes, its default) has
    no queue id at MAIL nor at the first RCPT: it makes one once the first
    recipient is accepted, and sends {i} with the next RCPT and with the
    end of header.  The milter read {i} only at MAIL and at the end of
    the message, so the audit record of a transaction to two recipients
    ended by RSET had queue_id "" while Postfix logged "QUEUEID:
    client=..." for it (session 20 review).  With one recipient Postfix
    never sends the id before the end of header: nothing to read."""
    import re
    pf, mw, sink = site()
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as c:
        c.ehlo("client.example.org")
        c.mail("first@example.org")
        c.rcpt("r1@example.net")
        c.rcpt("r2@example.net")
        c.rset()

    def records():
        return [r for r in mw.audit(1) if r.get("listener") == "milter"]
    def qids():
        return re.findall(r"postfix/smtpd\[\d+\]: ([0-9A-F]{6,}): client=", pf.log())
    assert wait_until(lambda: len(records()) >= 1, 15.0), mw.stderr_tail()
    # Postfix's log line may come after the audit record (postlogd, a
    # loaded machine: CI saw it missing when read at once)
    assert wait_until(lambda: len(qids()) >= 1, 15.0), pf.log()[-3000:]
    qids = qids()
    rec = records()[-1]
    assert rec["fault"] == "no message", rec
    assert qids and rec["queue_id"] == qids[0], (rec, qids)


def readme_milter_main_cf(port):
    """the README's milter main.cf lines ("Milter front end"), read as
    postconf reads main.cf: a line starting with # is a comment, and a #
    anywhere else is part of the value"""
    readme = os.path.join(os.path.dirname(postfixlib.__file__), "..", "..", "README.md")
    with open(readme) as f:
        text = f.read()
    block = text.split("For sites that keep their MTA facing the world", 1)[1].split("```", 2)[1]
    main = {}
    for line in block.strip().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        k, v = line.split("=", 1)
        main[k.strip()] = v.strip().replace("10031", str(port))
    return main


def test_readme_milter_main_cf_lines_work_as_written(mw_factory, make_upstream, tmp_path):
    """session 21 (rv-docs): the README's lines carried end-of-line comments
    ("non_smtpd_milters = inet:127.0.0.1:10031   # local submission too"),
    which main.cf does not have: Postfix took "#", "local", ... as more
    milters, and local submission (sendmail, pickup, cleanup) failed"""
    sink = make_upstream()
    mport = free_port()
    mw_factory(sink, opts=[("milter_listen", "inet:%d@127.0.0.1" % mport),
                           ("plugin", "%s word=viagra score=6" % PLUGIN)])
    main = readme_milter_main_cf(mport)
    assert set(main) >= {"smtpd_milters", "non_smtpd_milters"}, main
    pf = postfixlib.Postfix(tmp_path / "pf", relayhost=sink.addr, main=main).start()
    try:
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as c:      # smtpd_milters
            c.ehlo("client.example.org")
            assert not c.sendmail("s@example.org", ["r@example.net"], make_msg(subject="viagra one"))
        assert wait_until(lambda: len(sink.messages) >= 1, 20.0), pf.log()[-3000:]
        assert b"X-Spam-Flag: YES" in sink.messages[0].content
        # local submission: non_smtpd_milters
        r = subprocess.run(["/usr/sbin/sendmail", "-C", pf.conf, "-f", "s@example.org", "r@example.net"],
                           input=make_msg(subject="viagra two"), capture_output=True, timeout=30,
                           env=dict(os.environ, MAIL_CONFIG=pf.conf))
        assert r.returncode == 0, r.stderr
        assert wait_until(lambda: len(sink.messages) >= 2, 20.0), \
            "local submission never delivered:\n" + pf.log()[-3000:]
        assert b"X-Spam-Flag: YES" in sink.messages[1].content
        assert "fatal" not in pf.log() and "warning" not in pf.log(), pf.log()[-3000:]
    finally:
        pf.stop()
