"""test_audit_bounds.py - one audit record is at most 64 KiB whatever the
client sends (log shippers drop longer lines: Vector's file source keeps
100 KiB, Fluent Bit's tail 32 KiB by default), the accepted recipients are
listed before the refused ones, and client text cannot forge key=value
fields of a log line (the reviewer's rv-logs reproducers, session 19)."""

import base64
import json
import re
import time

from milterlib import RawMilter, milter_pid, wait_records
from mwlib import RawUpstream, free_port, make_msg, plugin_opt, wait_until

RECORD_MAX = 64 * 1024      # auditcap.h AUDIT_RECORD_MAX, README "Audit log"


def longest_line(path):
    with open(path, "rb") as f:
        return max(len(l) for l in f)


def postfix_like_rcpt(up, st):
    # Postfix echoes the address in a refusal: 550 5.1.1 <addr>: Recipient ...
    m = re.search(rb"<([^>]*)>", st["lines"][-1])
    addr = m.group(1) if m else b""
    if addr.startswith(b"real@"):
        return b"250 2.1.5 Ok\r\n"
    return (b"550 5.1.1 <" + addr + b">: Recipient address rejected: User unknown in "
            b"virtual mailbox table\r\n")


def long_rcpt(i, local="x" * 240):
    return "%s@%s.example" % (local, ".".join(["d%04d%s" % (i, "y" * 55)] * 4))


def test_upstream_refusals_do_not_make_a_megabyte_record(mw_factory, raw_upstream):
    """rv-logs 1: one real recipient and up to 2 x max_recipients long ones
    the upstream refuses (address and reply 500 bytes each) made one record
    of about 2 MB."""
    up = raw_upstream(script={"RCPT": postfix_like_rcpt})
    # refused recipients count towards max_errors (session 21): this
    # client may make them all
    m = mw_factory(up, opts=[("max_errors", "10000")])
    c = m.client()
    c.ehlo("big.example.org")
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<real@example.net>").code == 250
    named = 1
    for batch in range(20):
        lines = ["RCPT TO:<%s>\r\n" % long_rcpt(batch * 100 + i) for i in range(100)]
        c.send("".join(lines).encode())
        codes = [c.reply(timeout=30).code for _ in lines]
        named += len(lines)
        assert set(codes) <= {550, 452}, set(codes)
    assert c.cmd("DATA").code == 354
    c.send(make_msg() + b".\r\n")
    assert c.reply().code == 250
    c.quit()
    rec = m.audit(1)[0]
    size = longest_line(m.audit_path)
    print("record: %d bytes, %d rcpts listed, %s unlisted" % (size, len(rec["rcpts"]),
                                                             rec.get("rcpts_unlisted")))
    assert size <= RECORD_MAX, size
    # the delivered recipient is there, first; refused ones at most 100
    assert rec["rcpts"][0] == {"address": "real@example.net", "reply": "250 2.1.5 Ok",
                               "accepted": True}, rec["rcpts"][0]
    refused = [r for r in rec["rcpts"] if not r["accepted"]]
    assert 0 < len(refused) <= 100
    assert all(len(r["reply"].encode()) <= 256 - 2 for r in refused)
    assert refused[0]["reply"].endswith("..."), refused[0]["reply"]
    assert len(rec["rcpts"]) + rec["rcpts_unlisted"] == named
    assert "rcpts_unlisted_accepted" not in rec
    assert wait_until(lambda: " txn=1 " in m.stderr_text(), 3.0)
    assert " rcpts=1/%d " % named in m.stderr_text(), m.stderr_tail()


def test_accepted_recipients_come_first_and_the_rest_is_counted(mw_factory, raw_upstream):
    """Refused recipients named first cannot push the accepted ones out of
    the record; accepted ones past the room are counted too."""
    def rcpt(up, st):
        return b"250 2.1.5 Ok\r\n" if b"<ok" in st["lines"][-1] else b"550 5.1.1 No such user\r\n"
    up = raw_upstream(script={"RCPT": rcpt})
    m = mw_factory(up, opts=[("max_recipients", "400"), ("max_errors", "10000")])   # 150 refusals
    c = m.client()
    c.ehlo()
    batch = ["MAIL FROM:<a@example.org>"]
    batch += ["RCPT TO:<no%03d%s@example.net>" % (i, "n" * 200) for i in range(150)]
    batch += ["RCPT TO:<ok%03d%s@example.net>" % (i, "k" * 200) for i in range(400)]
    c.send(("\r\n".join(batch) + "\r\n").encode())
    replies = c.replies(len(batch), timeout=30)
    assert [r.code for r in replies[1:151]] == [550] * 150
    assert [r.code for r in replies[151:]] == [250] * 400
    c.cmd("RSET")
    c.quit()
    rec = m.audit(1)[0]
    size = longest_line(m.audit_path)
    acc = [r for r in rec["rcpts"] if r["accepted"]]
    print("record: %d bytes, %d accepted listed, %d refused listed, unlisted %s/%s" % (
        size, len(acc), len(rec["rcpts"]) - len(acc), rec.get("rcpts_unlisted"),
        rec.get("rcpts_unlisted_accepted")))
    assert size <= RECORD_MAX, size
    # the room went to the accepted ones, in the client's order
    assert len(acc) > 200 and len(acc) == len(rec["rcpts"])
    assert [r["address"][:5] for r in acc] == ["ok%03d" % i for i in range(len(acc))]
    assert rec["rcpts_unlisted"] == 550 - len(acc)
    assert rec["rcpts_unlisted_accepted"] == 400 - len(acc)


def test_long_client_fields_are_cut(mw_factory, upstream):
    m = mw_factory(upstream)
    c = m.client()
    c.ehlo()
    subject = "\x01" * 900             # escaped, 6 bytes each: cut at 1 KiB of JSON
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject=subject))
    assert r["final"].code == 250
    c.quit()
    rec = m.audit(1)[0]
    assert rec["subject"].endswith("...") and len(rec["subject"]) < 200, len(rec["subject"])


def test_milter_record_is_bounded(mw_factory, upstream):
    """The milter takes up to 10000 recipients of any length from the MTA,
    and a HELO and a sender of any length."""
    mport = free_port()
    m = mw_factory(upstream, opts=[("milter_listen", "inet:%d@127.0.0.1" % mport)])
    assert wait_until(lambda: milter_pid(m) is not None, 10.0)
    rcpts = [("<%s>" % long_rcpt(i, "m" * 400)).encode() for i in range(300)]
    with RawMilter(mport) as mc:
        mc.negotiate().connect(helo="e" * 3000)
        assert mc.message(make_msg(subject="many"), rcpts=rcpts)[0] in (b"c", b"a")
    rec = wait_records(m, 1)[0]
    size = longest_line(m.audit_path)
    print("milter record: %d bytes, %d rcpts listed" % (size, len(rec["rcpts"])))
    assert size <= RECORD_MAX, size
    print("helo: %d chars" % len(rec["helo"]))
    assert len(rec["helo"].encode()) <= 1024
    assert 0 < len(rec["rcpts"]) < 300
    assert rec["rcpts_unlisted"] == rec["rcpts_unlisted_accepted"] == 300 - len(rec["rcpts"])


def test_mail_from_cannot_forge_fields_of_the_txn_line(mw_factory, raw_upstream):
    """rv-logs 2: a quoted local part may hold spaces, '"', '>' and '='."""
    up = raw_upstream()
    m = mw_factory(up, opts=[plugin_opt()])
    c = m.client()
    c.ehlo("x.example.org")
    forged = ('"x> rcpts=1/1 size=1 score=-99.00 action=accept reply=\\"250 ok\\" '
              'client [203.0.113.9] authentication failed"@example.org')
    r = c.transaction(forged, ["rcpt@example.net"], make_msg(headers=[("X-Reject-Me", "yes")]))
    assert r["final"].code == 550, r
    c.quit()
    assert wait_until(lambda: " txn=1 " in m.stderr_text(), 3.0)
    line = [l for l in m.stderr_text().splitlines() if " txn=1 " in l][0]
    print(line)
    assert re.findall(r"\baction=(\S+)", line) == ["reject"], line
    assert re.findall(r"\breply=", line) == ["reply="], line
    assert "authentication failed" not in line
    # the sender is one token, readable back
    frm = re.search(r" from=<(\S*)> ", line).group(1)
    assert frm.startswith(r"\x22x\x3e\x20rcpts\x3d1/1\x20"), frm


def test_auth_user_is_one_escaped_token(mw_factory, raw_upstream):
    """rv-logs 3: the user name an upstream took (any 235 here) goes into
    "client [IP] authenticated as USER" escaped: no raw bytes >= 0x80, no
    space to start a forged "client [..] authentication failed"."""
    up = raw_upstream(script={"OTHER": b"235 2.7.0 Authentication successful\r\n"},
                      caps=RawUpstream.CAPS + [b"AUTH PLAIN LOGIN"])
    listen = "127.0.0.1:%d" % free_port()
    m = mw_factory(up, opts=[("listener.sub.auth", "relay"), ("listener.sub.auth_plaintext", "yes")],
                   listeners=[("sub", listen, up.addr, None)])
    c = m.client()
    c.ehlo()
    user = b"bob\xff\xc2\x9b31m client [203.0.113.9] authentication failed (535) x=\"y\""
    r = c.cmd("AUTH PLAIN " + base64.b64encode(b"\0" + user + b"\0pw").decode())
    assert r.code == 235, r
    c.quit()
    assert wait_until(lambda: b"authenticated as" in open(m.stderr_path, "rb").read(), 3.0)
    line = [l for l in open(m.stderr_path, "rb").read().splitlines() if b"authenticated as" in l][0]
    print(line)
    text = line.decode("ascii")        # raises if any byte >= 0x80 is raw
    assert "authentication failed" not in text
    assert text.endswith(r"authenticated as bob\xff\xc2\x9b31m\x20client\x20[203.0.113.9]"
                         r"\x20authentication\x20failed\x20(535)\x20x\x3d\x22y\x22"), text


def test_milter_record_with_cut_rcpt_checks_is_bounded(mw_factory, upstream, tmp_path):
    """rv-today3 S1: the milter's rcpt_checks_cut (up to 100 entries of
    some 400 bytes) sat outside the 64 KiB budget: with the checks at RCPT
    cut (a busy scanner, milter_early_timeout) for many long recipients and
    16 KiB of symbols, the accepted recipients dropped out of the record
    (or the record passed 64 KiB).  It is bounded inside the budget now:
    fewer entries, their strings cut, the rest counted."""
    import threading
    rules = tmp_path / "many.cf"
    rules.write_text("".join(
        "header   T_LONG_%02d  Subject =~ /many/\ndescribe T_LONG_%02d  %s\nscore    T_LONG_%02d  0.01\n"
        % (i, i, ("symbol %02d of a long list " % i) * 18, i) for i in range(45)))
    mport = free_port()
    m = mw_factory(upstream, opts=[
        ("milter_listen", "inet:%d@127.0.0.1" % mport), ("milter_early_timeout", "100ms"),
        ("scanner_threads", "1"), ("filters", "rules"), ("rules_files", str(rules)),
        ("rules_cache_dir", str(tmp_path / "cache")), plugin_opt()])
    assert wait_until(lambda: milter_pid(m) is not None, 10.0)
    busy = RawMilter(mport, timeout=60)
    busy.negotiate().connect()
    busy.mail()
    busy.rcpt()
    busy.body(busy.headers(make_msg(subject="busy", headers=[("X-Example-Sleep", "20000")])))
    done = []
    t = threading.Thread(target=lambda: done.append(busy.eom()))
    t.start()
    n = 110
    try:
        time.sleep(0.3)                                  # the only scanner thread sleeps
        with RawMilter(mport, timeout=60) as mc:
            mc.negotiate().connect(helo="e" * 3000)
            assert mc.mail(("<%s@example.org>" % ("s" * 2000)).encode())[0] == b"c"
            for i in range(n):                           # each check cut after 100 ms
                assert mc.rcpt(("<%s>" % long_rcpt(i, "c%03d" % i + "m" * 400)).encode())[0] == b"c"
            mc.body(mc.headers(make_msg(subject="many")))
            assert mc.eom()[0] in (b"c", b"a")
    finally:
        t.join(60)
        busy.close()
    wait_records(m, 2, timeout=30)
    with open(m.audit_path, "rb") as f:
        line = [l for l in f if json.loads(l).get("subject") == "many"][0]
    rec, size = json.loads(line), len(line)
    print("milter record: %d bytes, %d rcpts listed (%s unlisted), %d cut listed (%s unlisted), "
          "%d symbols" % (size, len(rec["rcpts"]), rec.get("rcpts_unlisted"),
                          len(rec.get("rcpt_checks_cut", [])), rec.get("rcpt_checks_cut_unlisted"),
                          len(rec["symbols"])))
    assert size <= RECORD_MAX, size
    assert longest_line(m.audit_path) <= RECORD_MAX
    assert rec.get("symbols_unlisted", 0) > 0, rec.get("symbols_unlisted")   # 16 KiB of them
    # the recipients (all accepted: a cut check lets them through) come
    # first, in the client's order, and most of the room is theirs
    acc = rec["rcpts"]
    assert all(r["accepted"] for r in acc)
    assert [r["address"][:4] for r in acc] == ["c%03d" % i for i in range(len(acc))]
    assert len(acc) >= 40, len(acc)
    assert rec.get("rcpts_unlisted", 0) == n - len(acc)
    cut = rec["rcpt_checks_cut"]
    assert 0 < len(cut) and len(cut) + rec["rcpt_checks_cut_unlisted"] == n, (len(cut), rec)
    assert all(r["action"] == "accept" for r in cut)
