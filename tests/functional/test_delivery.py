"""test_delivery.py - what the client sends is what the upstream gets, byte
for byte: dot-stuffed lines, 8-bit and SMTPUTF8 content, a 30 MB message,
100 recipients, pipelined batches, several transactions per session, and
the upstream's own replies relayed to the client."""

import subprocess

from mwlib import CRLF, RawUpstream, assert_same_bytes, dot_stuff, make_msg, wait_until


def test_plain_message_byte_exact(mw, upstream):
    c = mw.client()
    assert c.greeting.code == 220
    c.ehlo()
    msg = make_msg(subject="plain")
    r = c.transaction("alice@example.org", ["bob@example.net"], msg)
    assert r["mail"].code == 250
    assert [x.code for x in r["rcpt"]] == [250]
    assert r["data"].code == 354
    assert r["final"].code == 250, r["final"]
    assert c.quit().code == 221
    assert len(upstream.messages) == 1
    m = upstream.messages[0]
    assert m.mail_from == "alice@example.org"
    assert m.rcpt_tos == ["bob@example.net"]
    assert_same_bytes(m.content, msg)
    # the client hears the upstream's own final reply (with its queue id)
    assert m.queue_id in r["final"].text, (r["final"], m.queue_id)


def test_dot_stuffed_lines(mw, upstream):
    body = (b".leading dot\r\n..two dots\r\n.\r\n...\r\n . space then dot\r\n"
            b"end with dot.\r\n.\r\n\r\n.x\r\n.")
    msg = make_msg(subject="dots", body=body)
    wire = dot_stuff(msg)
    assert b"\r\n..\r\n" in wire and b"\r\n...leading" not in wire
    c = mw.client()
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"], msg)
    assert r["final"].code == 250, r["final"]
    assert len(upstream.messages) == 1
    assert_same_bytes(upstream.messages[0].content, msg)


def test_message_ending_in_dot_line_and_empty_body(mw, upstream):
    c = mw.client()
    c.ehlo()
    headers_only = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: no body\r\n"
    msg2 = make_msg(subject="dot last", body=b"text\r\n.")
    for msg in (headers_only, msg2):
        r = c.transaction("a@example.org", ["b@example.net"], msg)
        assert r["final"].code == 250, r["final"]
    assert [m.content for m in upstream.messages] == [headers_only, msg2]


def test_8bit_body(mw, upstream):
    c = mw.client()
    ehlo = c.ehlo()
    assert "8BITMIME" in [l.split()[0].upper() for l in ehlo.lines[1:]], ehlo
    body = (bytes(range(0x80, 0x100)) + CRLF + "Grüße aus Köln, ½ € — ok\r\n".encode("utf-8") +
            "caf\xe9 latin-1\r\n".encode("latin-1") + b"\xff\xfe\xfd\r\n")
    msg = make_msg(subject="8bit", body=body,
                   headers=[("MIME-Version", "1.0"), ("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Transfer-Encoding", "8bit")])
    r = c.transaction("a@example.org", ["b@example.net"], msg, mail_params="BODY=8BITMIME")
    assert r["mail"].code == 250, r["mail"]
    assert r["final"].code == 250, r["final"]
    m = upstream.messages[0]
    assert "BODY=8BITMIME" in m.mail_options
    assert_same_bytes(m.content, msg)


def test_smtputf8_envelope_and_body(mw, upstream):
    c = mw.client()
    ehlo = c.ehlo()
    assert "SMTPUTF8" in [l.split()[0].upper() for l in ehlo.lines[1:]], ehlo
    frm, to = "jörg@exämple.org", "用户@例子.广告"
    msg = make_msg(subject="Grüße – 你好", frm=frm, to=to,
                   body="Здравствуйте, мир\r\nمرحبا\r\n.точка\r\n")
    r = c.transaction(frm, [to], msg, mail_params="SMTPUTF8 BODY=8BITMIME")
    assert r["mail"].code == 250, r["mail"]
    assert [x.code for x in r["rcpt"]] == [250]
    assert r["final"].code == 250, r["final"]
    m = upstream.messages[0]
    assert m.mail_from == frm
    assert m.rcpt_tos == [to]
    assert "SMTPUTF8" in m.mail_options
    assert_same_bytes(m.content, msg)


def test_30mb_message(mw_factory, upstream):
    mw = mw_factory(upstream, opts=[("message_size_limit", "40M"), ("scan_timeout", "60s")])
    line = b"".join(bytes([0x41 + (i * 7) % 26]) for i in range(980))
    lines = []
    size = 0
    i = 0
    while size < 30 * 1024 * 1024:
        l = (b"." if i % 1000 == 0 else b"") + b"%08d " % i + line
        lines.append(l)
        size += len(l) + 2
        i += 1
    msg = make_msg(subject="thirty megabytes", body=CRLF.join(lines) + CRLF)
    assert len(msg) > 30 * 1024 * 1024
    c = mw.client(timeout=60)
    c.ehlo()
    assert c.cmd("MAIL FROM:<big@example.org> SIZE=%d" % len(msg)).code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(dot_stuff(msg))
    r = c.reply(timeout=90)
    assert r.code == 250, r
    assert len(upstream.messages) == 1
    got = upstream.messages[0].content
    assert len(got) == len(msg)
    assert_same_bytes(got, msg)


def test_100_recipients(mw_factory, upstream):
    mw = mw_factory(upstream, opts=[("max_recipients", "100")])
    rcpts = ["user%03d@example.net" % i for i in range(100)]
    c = mw.client()
    c.ehlo()
    msg = make_msg(subject="hundred")
    r = c.transaction("a@example.org", rcpts, msg)
    assert [x.code for x in r["rcpt"]] == [250] * 100
    assert r["final"].code == 250, r["final"]
    assert upstream.messages[0].rcpt_tos == rcpts
    assert_same_bytes(upstream.messages[0].content, msg)


def test_pipelined_batch_in_one_write(mw, upstream):
    c = mw.client()
    c.send(b"EHLO pipe.example\r\nMAIL FROM:<p@example.org>\r\nRCPT TO:<r1@example.net>\r\n"
           b"RCPT TO:<r2@example.net>\r\nDATA\r\n")
    rs = c.replies(5)
    assert [r.code for r in rs] == [250, 250, 250, 250, 354], rs
    assert "PIPELINING" in [l.split()[0].upper() for l in rs[0].lines[1:]]
    msg = make_msg(subject="pipelined")
    c.send(dot_stuff(msg))
    assert c.reply().code == 250
    assert len(upstream.messages) == 1
    assert upstream.messages[0].rcpt_tos == ["r1@example.net", "r2@example.net"]
    assert_same_bytes(upstream.messages[0].content, msg)


def test_pipelined_eod_with_next_transaction_and_quit(mw, upstream):
    """End of data, the next MAIL/RCPT/DATA, then the second message, the
    end of data and QUIT: each batch in one write; replies come in order."""
    m1 = make_msg(subject="first", body=b"one\r\n.\r\n")
    m2 = make_msg(subject="second", body=b"two\r\n")
    c = mw.client()
    c.ehlo()
    c.send(b"MAIL FROM:<p@example.org>\r\nRCPT TO:<r1@example.net>\r\nDATA\r\n")
    assert [r.code for r in c.replies(3)] == [250, 250, 354]
    c.send(dot_stuff(m1) + b"MAIL FROM:<q@example.org>\r\nRCPT TO:<r2@example.net>\r\n"
           b"RCPT TO:<unknown-9@example.net>\r\nDATA\r\n")
    rs = c.replies(5)
    assert [r.code for r in rs] == [250, 250, 250, 550, 354], rs
    c.send(dot_stuff(m2) + b"QUIT\r\n")
    rs = c.replies(2)
    assert [r.code for r in rs] == [250, 221], rs
    assert c.closed()
    assert [(m.mail_from, m.rcpt_tos) for m in upstream.messages] == [
        ("p@example.org", ["r1@example.net"]), ("q@example.org", ["r2@example.net"])]
    assert_same_bytes(upstream.messages[0].content, m1)
    assert_same_bytes(upstream.messages[1].content, m2)


def test_several_transactions_per_session(mw, upstream):
    c = mw.client()
    c.ehlo()
    sent = []
    for i in range(4):
        msg = make_msg(subject="msg %d" % i, body="body %d\r\n" % i)
        r = c.transaction("s%d@example.org" % i, ["r%d@example.net" % i], msg)
        assert r["final"].code == 250, r["final"]
        sent.append(("s%d@example.org" % i, ["r%d@example.net" % i], msg))
    assert c.cmd("NOOP").code == 250
    assert c.quit().code == 221
    got = [(m.mail_from, m.rcpt_tos, m.content) for m in upstream.messages]
    assert got == sent


def test_rset_between_transactions(mw, upstream):
    c = mw.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<dropped@example.org>").code == 250
    assert c.cmd("RCPT TO:<dropped@example.net>").code == 250
    assert c.cmd("RSET").code == 250
    msg = make_msg(subject="after rset")
    r = c.transaction("kept@example.org", ["kept@example.net"], msg)
    assert r["final"].code == 250, r["final"]
    assert [(m.mail_from, m.rcpt_tos) for m in upstream.messages] == [
        ("kept@example.org", ["kept@example.net"])]
    assert_same_bytes(upstream.messages[0].content, msg)


def test_unknown_recipient_gets_upstream_reply(mw, upstream):
    c = mw.client()
    c.ehlo()
    msg = make_msg(subject="mixed rcpts")
    r = c.transaction("a@example.org", ["good1@example.net", "unknown-user@example.net",
                                        "tempfail-x@example.net", "good2@example.net"], msg)
    codes = [x.code for x in r["rcpt"]]
    assert codes == [250, 550, 450, 250], r["rcpt"]
    # relayed as-is: the very line the upstream wrote
    assert r["rcpt"][1].raw == (b"550 5.1.1 <unknown-user@example.net>: Recipient address rejected: "
                                b"User unknown in local recipient table\r\n"), r["rcpt"][1]
    assert r["rcpt"][2].raw == (b"450 4.2.0 <tempfail-x@example.net>: Recipient address rejected: "
                                b"try again later\r\n"), r["rcpt"][2]
    assert r["final"].code == 250
    assert upstream.messages[0].rcpt_tos == ["good1@example.net", "good2@example.net"]
    assert_same_bytes(upstream.messages[0].content, msg)


def test_all_recipients_refused_then_data_refused(mw, upstream):
    c = mw.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<unknown1@example.net>").code == 550
    r = c.cmd("DATA")
    assert r.code in (503, 554), r
    assert c.cmd("RSET").code == 250
    assert upstream.messages == []


def test_upstream_final_reply_relayed(mw_factory, make_upstream):
    up = make_upstream(final_reply=lambda m: "554 5.7.1 upstream content policy says no")
    mw = mw_factory(up)
    c = mw.client()
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject="refused upstream"))
    assert r["final"].raw == b"554 5.7.1 upstream content policy says no\r\n", r["final"]
    assert len(up.refused) == 1 and up.messages == []
    # the session goes on
    up.final_reply = None
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject="accepted"))
    assert r["final"].code == 250
    assert len(up.messages) == 1


def test_mail_parameters_passed_upstream(mw, upstream):
    c = mw.client()
    c.ehlo()
    msg = make_msg(subject="params", body=b"caf\xc3\xa9\r\n")
    r = c.transaction("a@example.org", ["b@example.net"], msg, mail_params="SIZE=%d BODY=8BITMIME" % len(msg))
    assert r["final"].code == 250, r
    opts = upstream.messages[0].mail_options
    assert "BODY=8BITMIME" in opts
    # SIZE, if passed, must carry the client's value
    sizes = [o for o in opts if o.startswith("SIZE=")]
    assert sizes in ([], ["SIZE=%d" % len(msg)]), opts


def test_null_sender(mw, upstream):
    c = mw.client()
    c.ehlo()
    msg = make_msg(subject="bounce", frm="MAILER-DAEMON@example.org")
    assert c.cmd("MAIL FROM:<>").code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(dot_stuff(msg))
    assert c.reply().code == 250
    assert upstream.messages[0].mail_from in ("", "<>")
    assert_same_bytes(upstream.messages[0].content, msg)


def test_helo_client_and_lowercase_commands(mw, upstream):
    c = mw.client()
    r = c.cmd("helo old.example")
    assert r.code == 250
    assert c.cmd("mail from:<a@example.org>").code == 250
    assert c.cmd("rcpt to:<b@example.net>").code == 250
    assert c.cmd("data").code == 354
    msg = make_msg(subject="helo")
    c.send(dot_stuff(msg))
    assert c.reply().code == 250
    assert_same_bytes(upstream.messages[0].content, msg)


def _swaks(port, *args, data=None, timeout=30):
    cmd = ["swaks", "--server", "127.0.0.1", "--port", str(port), "--helo", "swaks.example",
           "--timeout", "20"] + list(args)
    return subprocess.run(cmd, capture_output=True, timeout=timeout)


def test_swaks_client(mw, upstream, tmp_path):
    # swaks ends the data with CRLF.CRLF itself: the file has no final newline
    body = "Subject: via swaks\nFrom: s@example.org\nTo: t@example.net\n\nline one\n.dot line\n..two\nlast"
    f = tmp_path / "m.eml"
    f.write_bytes(body.encode())
    p = _swaks(mw.port, "--from", "s@example.org", "--to", "t@example.net,unknown-z@example.net",
               "--data", "@%s" % f)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out + p.stderr.decode()
    assert "550 5.1.1" in out         # the unknown recipient's reply reached swaks
    assert len(upstream.messages) == 1
    m = upstream.messages[0]
    assert (m.mail_from, m.rcpt_tos) == ("s@example.org", ["t@example.net"])
    assert_same_bytes(m.content, body.replace("\n", "\r\n").encode() + CRLF)


def test_swaks_pipelined(mw, upstream):
    p = _swaks(mw.port, "--pipeline", "--from", "s@example.org", "--to", "t1@example.net,t2@example.net",
               "--header", "Subject: swaks pipelined", "--body", "pipelined body")
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out + p.stderr.decode()
    assert len(upstream.messages) == 1
    m = upstream.messages[0]
    assert m.rcpt_tos == ["t1@example.net", "t2@example.net"]
    assert b"Subject: swaks pipelined" in m.content and b"pipelined body" in m.content


def test_smtplib_client(mw, upstream):
    import smtplib
    msg = make_msg(subject="smtplib", body=b"via smtplib\r\n..\r\n")
    with smtplib.SMTP("127.0.0.1", mw.port, timeout=10) as s:
        s.ehlo("smtplib.example")
        refused = s.sendmail("a@example.org", ["b@example.net", "unknown-q@example.net"], msg)
        assert list(refused) == ["unknown-q@example.net"] and refused["unknown-q@example.net"][0] == 550
        s.sendmail("c@example.org", ["d@example.net"], msg)
    assert [(m.mail_from, m.rcpt_tos) for m in upstream.messages] == [
        ("a@example.org", ["b@example.net"]), ("c@example.org", ["d@example.net"])]
    for m in upstream.messages:
        assert_same_bytes(m.content, msg)


def test_upstream_sees_one_session_per_client_session(mw, upstream):
    """The upstream session opens at the first MAIL FROM and serves the
    session's later transactions."""
    n_before = len(upstream.ehlos)
    c = mw.client()
    c.ehlo()
    assert c.cmd("NOOP").code == 250
    # no MAIL yet: the upstream has not been contacted for this session
    import time
    time.sleep(0.3)
    assert len(upstream.ehlos) == n_before
    for i in range(3):
        assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    peers = {m.peer for m in upstream.messages}
    assert len(peers) == 1, peers
    c.quit()


def _mail_lines(up):
    return [l.decode() for lines in up.sessions for l in lines if l.upper().startswith(b"MAIL")]


def test_parameters_checked_against_this_sessions_upstream(mw_factory, raw_upstream):
    """A session's first MAIL opens its upstream connection, and its
    parameters were checked against what an earlier connection (here the
    start-up probe) had offered: an upstream restarted without SMTPUTF8
    and 8BITMIME was sent them, and one that gained SIZE did not get it.
    The connection that carries the MAIL decides now."""
    up = raw_upstream()
    m = mw_factory(up, opts=[("proxy_threads", "1")])
    assert wait_until(lambda: len(up.ehlos) >= 1)          # the probe saw them all
    up.caps = [b"PIPELINING", b"ENHANCEDSTATUSCODES"]      # restarted without them
    c = m.client()
    c.ehlo()
    r = c.cmd("MAIL FROM:<a@example.org> SMTPUTF8")
    assert (r.code, r.first.split()[0]) == (555, "5.6.7"), r
    r = c.cmd("MAIL FROM:<a@example.org> BODY=8BITMIME")
    assert (r.code, r.first.split()[0]) == (555, "5.5.4"), r
    assert c.cmd("MAIL FROM:<a@example.org> SIZE=100").code == 250
    assert c.cmd("RSET").code == 250
    c.quit()
    assert _mail_lines(up) == ["MAIL FROM:<a@example.org>"], up.sessions
    up.caps = RawUpstream.CAPS                             # and back, with SIZE
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org> SIZE=100").code == 250
    assert c.cmd("RSET").code == 250
    c.quit()
    assert _mail_lines(up)[1:] == ["MAIL FROM:<a@example.org> SIZE=100"], up.sessions


def test_parameters_the_upstream_lacks_are_not_passed(mw_factory, make_upstream):
    """BODY=8BITMIME, SMTPUTF8 and unknown ESMTP parameters reach the
    upstream only if it advertised them: refused, or stripped."""
    up = make_upstream(drop_caps=["8BITMIME", "SMTPUTF8"])
    m = mw_factory(up)
    c = m.client()
    kw = [l.split()[0].upper() for l in c.ehlo().lines[1:]]
    assert "8BITMIME" not in kw and "SMTPUTF8" not in kw
    for params in ("BODY=8BITMIME", "SMTPUTF8", "XFOO=BAR"):
        r = c.cmd("MAIL FROM:<a@example.org> %s" % params)
        assert r.code in (250, 501, 504, 555), r
        if r.code == 250:
            assert c.cmd("RSET").code == 250
    c.quit()
    for addr, opts in up.mails:
        assert not {"BODY=8BITMIME", "SMTPUTF8", "XFOO=BAR"} & set(opts), up.mails
