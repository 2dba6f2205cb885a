"""test_audit.py - the audit log: one JSON line per transaction with the
fields an administrator needs, correct; and any byte sequence in any field
(invalid UTF-8, control bytes, quotes, backslashes) still gives lines that
are valid UTF-8 and valid JSON.  Field names: audit_fields.py."""

import os
import re
import shutil
import signal
import subprocess
import time

import audit_fields as A
from mwlib import CRLF, dot_stuff, make_msg, plugin_opt, read_audit, wait_until


def num(x):
    assert isinstance(x, (int, float)) and not isinstance(x, bool), repr(x)
    return x


def test_audit_record_fields(mw_factory, upstream):
    m = mw_factory(upstream, opts=[plugin_opt(), ("inbound_tag_score", "5"), ("inbound_reject_score", "15")])
    c = m.client()
    c.ehlo("audit-client.example.org")
    msg = make_msg(subject="cheap viagra here", msgid="<abc123.audit@test.example>")
    r = c.transaction("alice@example.org", ["bob@example.net", "unknown-carol@example.net"], msg)
    assert r["final"].code == 250
    c.quit()
    recs = m.audit(1)
    assert len(recs) == 1, recs
    rec = recs[0]
    assert A.field(rec, "time")
    sid = A.field(rec, "session")
    assert isinstance(sid, str) and sid
    assert A.field(rec, "listener") == "default"
    assert A.field(rec, "direction") == "inbound"
    assert A.field(rec, "client_ip") == "127.0.0.1"
    assert int(A.field(rec, "client_port")) == c.local_port
    assert A.field(rec, "helo") == "audit-client.example.org"
    assert A.field(rec, "mail_from") == "alice@example.org"
    rc = A.rcpts(rec)
    assert [a for a, _ in rc] == ["bob@example.net", "unknown-carol@example.net"], rc
    assert rc[0][1].startswith("250"), rc
    assert rc[1][1].startswith("550 5.1.1"), rc
    assert A.field(rec, "message_id") in ("<abc123.audit@test.example>", "abc123.audit@test.example")
    assert A.field(rec, "subject") == "cheap viagra here"
    assert num(A.field(rec, "size")) == len(msg)
    assert A.symbols(rec) == {"EXAMPLE_SUBJECT_WORD": 6}
    assert float(A.field(rec, "score")) == 6.0
    assert A.field(rec, "action") == "tag"
    assert A.field(rec, "reply").rstrip("\r\n") == r["final"].raw.decode().rstrip("\r\n")
    assert A.field(rec, "queue_id") == upstream.messages[0].queue_id
    assert A.field(rec, "early_talker") is False
    scan_ms, total_ms = num(A.field(rec, "scan_ms")), num(A.field(rec, "total_ms"))
    assert 0 <= scan_ms <= total_ms < 60000, (scan_ms, total_ms)


def test_session_id_leads_log_lines(mw, upstream):
    c = mw.client()
    c.ehlo()
    c.transaction("a@example.org", ["b@example.net"], make_msg())
    c.quit()
    sid = A.field(mw.audit(1)[-1], "session")
    time.sleep(0.2)
    lines = [l for l in mw.stderr_text().splitlines() if sid in l]
    assert lines, "the session id %s is in no log line" % sid
    assert any(re.match(r"^\S*\s*" + re.escape(sid) + r"\b", l) or l.startswith(sid) for l in lines), lines[:5]


def test_one_line_per_transaction(mw_factory, upstream):
    m = mw_factory(upstream, opts=[plugin_opt(), ("message_size_limit", "10000")])
    c = m.client()
    c.ehlo()
    replies = []
    replies.append(c.transaction("a@example.org", ["b@example.net"], make_msg(subject="one"))["final"])
    replies.append(c.transaction("a@example.org", ["b@example.net"],
                                 make_msg(subject="two", headers=[("X-Reject-Me", "1")]))["final"])
    replies.append(c.transaction("a@example.org", ["b@example.net"],
                                 make_msg(subject="three", body=b"x" * 900 + CRLF + (b"y" * 900 + CRLF) * 20))["final"])
    # an aborted transaction
    assert c.cmd("MAIL FROM:<c@example.org>").code == 250
    assert c.cmd("RSET").code == 250
    # a bare LF: refused, and the session is closed after the reply
    replies.append(c.transaction("a@example.org", ["b@example.net"], make_msg(subject="four", body=b"bare\nLF\r\n"))["final"])
    c2 = m.client()
    c2.ehlo()
    replies.append(c2.transaction("a@example.org", ["b@example.net"], make_msg(subject="five"))["final"])
    c2.quit()
    assert [r.code for r in replies] == [250, 550, 552, 550, 250], replies
    recs = m.audit(5)
    time.sleep(0.3)
    recs = read_audit(m.audit_path)
    data_recs = [r for r in recs if A.has(r, "reply") and str(A.field(r, "reply"))[:3] in ("250", "550", "552")]
    assert len(data_recs) == 5, recs
    assert [str(A.field(r, "reply"))[:3] for r in data_recs] == ["250", "550", "552", "550", "250"]
    sids = [A.field(r, "session") for r in data_recs]
    assert len(set(sids[:4])) == 1 and sids[4] != sids[0], sids


HOSTILE_SUBJECT = (b'quote" back\\slash \\" \\\\ \xff\xfe invalid \xc0\xaf overlong \xed\xa0\x80 surrogate '
                   b'ctl\x01\x02\x1b[31m\x7f tab\there \xe2\x80\xa8 ls {"json":1} \\u0000 end')
HOSTILE_MSGID = b'<"id\\"x\xff\x01"@test.example>'


def test_hostile_bytes_give_valid_json(mw_factory, raw_upstream):
    up = raw_upstream()
    m = mw_factory(up, opts=[("bare_newline", "reject")])
    msg = (b"From: x@example.org\r\nTo: y@example.net\r\nSubject: " + HOSTILE_SUBJECT + b"\r\n"
           b"Message-ID: " + HOSTILE_MSGID + b"\r\n\r\nbody \xff\r\n")
    c = m.client()
    weird_helo = b'we"ird\\helo\xff\xfe\x01\x1b'
    helo_ok = c.cmd(b"EHLO " + weird_helo).code == 250
    if not helo_ok:
        c.ehlo("ok.example")
    # a valid but tricky envelope (quoted local part with quoted-pairs, UTF-8) ...
    assert c.cmd(b'MAIL FROM:<"q\\"uo\\\\te\xc3\xa9"@example.org> SMTPUTF8').code == 250
    assert c.cmd(b'RCPT TO:<"a\\"b"@example.net>').code == 250
    assert c.cmd(b"DATA").code == 354
    c.send(dot_stuff(msg))
    assert c.reply().code == 250
    # ... and hostile ones: mailwarden may refuse them, but if it takes them the log must hold up
    r = c.cmd(b"MAIL FROM:<\xff\xfe\x01\x1b\"\\@ex\xc3ample.org>")
    if r.code == 250:
        c.cmd(b"RCPT TO:<r\xfe\x1b\"@example.net>")
        r = c.cmd(b"DATA")
        if r.code == 354:
            c.send(dot_stuff(msg))
            c.reply()
        else:
            c.cmd(b"RSET")
    c.quit()
    time.sleep(0.3)
    raw = open(m.audit_path, "rb").read()
    raw.decode("utf-8")                      # strict: valid UTF-8
    recs = read_audit(m.audit_path)          # each line json.loads
    assert recs and raw.count(b"\n") == len(recs)
    rec = next(r for r in recs if 'quote"' in str(A.field(r, "subject")))
    subj = A.field(rec, "subject")
    assert 'quote" back\\slash \\" \\\\' in subj, subj
    assert "tab" in subj and subj.endswith("end"), subj
    assert '{"json":1} \\u0000 end' in subj, subj
    mid = A.field(rec, "message_id")
    assert "test.example" in mid
    assert '"q\\"uo\\\\te\u00e9"@example.org' in A.field(rec, "mail_from"), A.field(rec, "mail_from")
    if helo_ok:
        assert A.field(rec, "helo").startswith('we"ird\\helo'), A.field(rec, "helo")
    # no raw control byte from the network reaches the log on stderr either
    err = open(m.stderr_path, "rb").read()
    for b in (b"\x01", b"\x02", b"\x1b", b"\xff\xfe"):
        assert b not in err, "raw %r in mailwarden's log" % b


def send_one(m):
    """one accepted message through m"""
    c = m.client()
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    c.quit()


def test_usr1_reopens_the_audit_log_without_a_reload(mw_factory, upstream):
    """logrotate renames the file and sends SIGUSR1: the next records go to
    the new file, and no new scanner generation is started for it (SIGHUP
    would load a second antivirus engine just to reopen a file)."""
    m = mw_factory(upstream, opts=[plugin_opt()])

    send_one(m)
    assert wait_until(lambda: len(read_audit(m.audit_path)) == 1, 5)
    scanner = m.child_pid("scanner")
    os.rename(m.audit_path, m.audit_path + ".1")
    m.signal(signal.SIGUSR1)
    assert wait_until(lambda: "audit log reopened" in m.stderr_text(), 5), m.stderr_text()
    send_one(m)
    assert wait_until(lambda: os.path.exists(m.audit_path) and len(read_audit(m.audit_path)) == 1, 5)
    assert len(read_audit(m.audit_path + ".1")) == 1
    assert m.child_pid("scanner") == scanner and "reloading" not in m.stderr_text()
    assert m.alive()


def test_shipped_logrotate_file_rotates_the_audit_log(mw_factory, upstream, tmp_path):
    """etc/mailwarden.logrotate run by the real logrotate, its path and its
    signal pointed at this daemon: the old records end in audit.log.1, the
    next ones in a new audit.log."""
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    assert os.path.exists(logrotate), "logrotate is not installed (scripts/install-deps installs it)"
    m = mw_factory(upstream, opts=[plugin_opt()])

    send_one(m)
    assert wait_until(lambda: len(read_audit(m.audit_path)) == 1, 5)
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "etc", "mailwarden.logrotate")) as f:
        conf = f.read()
    assert "/var/log/mailwarden/audit.log {" in conf and "systemctl kill" in conf
    conf = conf.replace("/var/log/mailwarden/audit.log", m.audit_path)
    conf = "\n".join("\t\tkill -USR1 %d" % m.pid if "systemctl kill" in line else line
                     for line in conf.splitlines()) + "\n"
    (tmp_path / "lr.conf").write_text(conf)
    r = subprocess.run([logrotate, "-f", "-s", str(tmp_path / "lr.state"), str(tmp_path / "lr.conf")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert len(read_audit(m.audit_path + ".1")) == 1       # delaycompress: .1 stays plain
    assert wait_until(lambda: "audit log reopened" in m.stderr_text(), 5), m.stderr_text()
    send_one(m)
    assert wait_until(lambda: len(read_audit(m.audit_path)) == 1, 5)


# --- a log that cannot be opened ---------------------------------------------

def test_unopenable_audit_log_tempfail_both_front_ends(mw_factory, upstream, tmp_path):
    """audit_failure = tempfail with an audit_log that cannot be opened (a
    directory where the file should be): a log that cannot be opened cannot
    be written, so new messages get 452 4.3.1 from both front ends.  Before,
    the milter logged one line at start and then accepted every message
    with no record anywhere (nothing counted as lost, so audit_failing()
    never said so), and the proxy exited 1 and was restarted by the master
    in a loop, its clients unanswered.  Once the file can be made, the
    refusals' records open it (tried again each second) and mail flows."""
    from milterlib import RawMilter, milter_pid, reply_text
    from mwlib import free_port
    audit = tmp_path / "logs" / "audit.log"
    os.makedirs(str(audit))
    mport = free_port()
    m = mw_factory(upstream, opts=[("audit_log", str(audit)), ("audit_failure", "tempfail"),
                                   ("milter_listen", "inet:%d@127.0.0.1" % mport)])
    assert wait_until(lambda: milter_pid(m) is not None, 10.0), m.stderr_tail()
    proxy = m.child_pid("proxy")

    def send(subject):
        c = m.client()
        c.ehlo()
        r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject=subject))
        c.quit()
        return r

    r = send("one")
    assert r["data"].code == 452 and r["data"].first.startswith("4.3.1"), r
    with RawMilter(mport) as mc:
        mc.negotiate().connect()
        cmd, data = mc.mail(qid=b"Q1")
        assert cmd == b"y" and reply_text(data).startswith("452 4.3.1"), (cmd, data)
    assert wait_until(lambda: "audit log %s: cannot open it" % audit in m.stderr_text()
                      and "milter: audit log %s: cannot open it" % audit in m.stderr_text()), \
        m.stderr_tail()
    os.rmdir(str(audit))
    time.sleep(1.1)
    # each front end's next refusal writes its record, and opens the log for it
    assert send("two")["data"].code == 452
    with RawMilter(mport) as mc:
        mc.negotiate().connect()
        assert mc.mail(qid=b"Q2")[0] == b"y"
    assert wait_until(lambda: m.stderr_text().count("audit log %s: opened now" % audit) == 2), \
        m.stderr_tail()
    assert send("three")["final"].code == 250
    with RawMilter(mport) as mc:
        mc.negotiate().connect()
        assert mc.message(make_msg(subject="four"), qid=b"Q3")[0] == b"c"
    assert wait_until(lambda: {"three", "four"} <= {x.get("subject") for x in read_audit(str(audit))})
    assert m.child_pid("proxy") == proxy, "the proxy was restarted"
    assert "exited with status" not in m.stderr_text(), m.stderr_tail()
    assert len(upstream.messages) == 1
