"""The envelope when the upstream fails in its middle, and the audit
record's recipient list (session 19, review s19/rcpt).

An upstream that answers one RCPT with 421 (Postfix shutting down, or past
smtpd_hard_error_limit), closes, or answers out of protocol ends the
transaction on mailwarden's side, but the client still has it open: its
later RCPTs, DATA and BDAT used to get "503 5.5.1 need MAIL command", a
permanent reply that a relaying MTA takes as a refusal of those recipients
and bounces them.  Each gets the 4xx now, until RSET or MAIL.

The audit record's `rcpts` lists the recipients mailwarden refused itself
(452 past max_recipients, 555, 553, and the 451 of such a failed
transaction) besides those the upstream answered, the former up to 100,
the rest counted as `rcpts_unlisted`."""
import smtplib
import time

import pytest

import postfixlib
from mwlib import make_msg

FAILURES = {
    "421": b"421 4.3.0 upstream shutting down\r\n",
    "closed": "close",
    "garbage": b"hello there\r\n",
}


def fail_second_rcpt(answer):
    n = {"rcpt": 0}

    def rcpt(up, st):
        n["rcpt"] += 1
        return answer if n["rcpt"] == 2 else None
    return rcpt


@pytest.mark.parametrize("how", sorted(FAILURES))
def test_rcpts_after_an_upstream_failure_get_4xx(mw_factory, raw_upstream, how):
    up = raw_upstream(script={"RCPT": fail_second_rcpt(FAILURES[how])})
    m = mw_factory(up)
    c = m.client()
    c.ehlo()
    # a pipelining client sends its envelope in one batch
    batch = ["MAIL FROM:<a@example.org>", "RCPT TO:<b1@example.net>", "RCPT TO:<b2@example.net>",
             "RCPT TO:<b3@example.net>", "RCPT TO:<b4@example.net>", "DATA"]
    c.send(("\r\n".join(batch) + "\r\n").encode())
    replies = c.replies(len(batch))
    for cmd, r in zip(batch, replies):
        print(cmd, "->", r)
    assert replies[0].code == 250 and replies[1].code == 250, replies
    assert all(r.code // 100 == 4 for r in replies[2:]), replies
    # a syntax error in the failed transaction is no permanent refusal either
    assert c.cmd("RCPT TO:<bad address@example.net>").code // 100 == 4
    # a new transaction after RSET goes to a new upstream connection
    assert c.cmd("RSET").code == 250
    t = c.transaction("a@example.org", ["c@example.net"], make_msg(subject="again"))
    assert t["final"].code == 250, t
    c.quit()
    recs = m.audit(2)
    failed = [r for r in recs if r["action"] == "tempfail"]
    assert len(failed) == 1, recs
    listed = {r["address"]: (r["reply"][:3], r["accepted"]) for r in failed[0]["rcpts"]}
    print(listed)
    assert listed == {"b1@example.net": ("250", True), "b2@example.net": ("451", False),
                      "b3@example.net": ("451", False), "b4@example.net": ("451", False)}
    assert failed[0]["reply"].startswith("451 4.4.")


def test_mail_after_a_failed_envelope_starts_a_new_transaction(mw_factory, raw_upstream):
    up = raw_upstream(script={"RCPT": fail_second_rcpt(FAILURES["421"])})
    m = mw_factory(up)
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b1@example.net>").code == 250
    assert c.cmd("RCPT TO:<b2@example.net>").code == 451
    t = c.transaction("a@example.org", ["c@example.net"], make_msg())
    assert t["final"].code == 250, t
    c.quit()


def test_bdat_after_an_upstream_failure_gets_4xx(mw_factory, raw_upstream):
    up = raw_upstream(script={"RCPT": fail_second_rcpt(FAILURES["421"])})
    m = mw_factory(up)
    c = m.client()
    c.ehlo()
    body = make_msg()
    batch = ("MAIL FROM:<a@example.org>\r\nRCPT TO:<b1@example.net>\r\nRCPT TO:<b2@example.net>\r\n"
             "BDAT %d LAST\r\n" % len(body)).encode() + body + b"NOOP\r\n"
    c.send(batch)
    replies = c.replies(5)
    print(replies)
    assert [r.code for r in replies] == [250, 250, 451, 451, 250], replies
    c.quit()


def test_upstream_gone_between_rcpts(mw_factory, raw_upstream):
    """The upstream closes after answering a RCPT; the next RCPT finds it
    gone (cmd_rcpt's own check)."""
    def rcpt(up, st):
        st["sock"].sendall(b"250 2.1.5 Ok\r\n")
        return "close"
    up = raw_upstream(script={"RCPT": rcpt})
    m = mw_factory(up)
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b1@example.net>").code == 250
    time.sleep(0.5)               # the proxy sees the upstream's EOF
    assert c.cmd("RCPT TO:<b2@example.net>").code // 100 == 4
    assert c.cmd("RCPT TO:<b3@example.net>").code // 100 == 4
    assert c.cmd("DATA").code // 100 == 4
    c.quit()
    rec = m.audit(1)[-1]
    assert rec["action"] == "tempfail", rec
    assert [r["reply"][:3] for r in rec["rcpts"]] == ["250", "451", "451"], rec["rcpts"]


@pytest.mark.skipif(not postfixlib.available(), reason="needs root and Debian's postfix")
def test_postfix_client_defers_recipients_after_an_upstream_421(mw_factory, raw_upstream, tmp_path):
    """A real Postfix as the client (relayhost = the proxy): the recipients
    after the upstream's 421 are deferred, none bounced."""
    up = raw_upstream(script={"RCPT": fail_second_rcpt(FAILURES["421"])})
    m = mw_factory(up)
    pf = postfixlib.Postfix(tmp_path / "pf", relayhost="127.0.0.1:%d" % m.port,
                            main={"smtp_destination_recipient_limit": "50",
                                  "notify_classes": "", "bounce_queue_lifetime": "0"}).start()
    try:
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as c:
            c.sendmail("a@example.org", ["b%d@example.net" % i for i in range(1, 5)], make_msg())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and pf.log().count("status=") < 4:
            time.sleep(0.3)
        log = pf.log()
    finally:
        pf.stop()
    lines = [l for l in log.splitlines() if "status=" in l]
    print("\n".join(lines))
    assert "status=bounced" not in log, "\n".join(lines)
    assert sum("status=deferred" in l for l in lines) >= 3, "\n".join(lines)


def test_own_refusals_are_in_the_audit_record(mw_factory, upstream):
    m = mw_factory(upstream, opts=[("max_recipients", "2")])
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    got = {}
    for r in ["b1@example.net", "dsn@example.net NOTIFY=NEVER", "\u00fc@example.net",
              "b2@example.net", "b3@example.net"]:
        a, _, params = r.partition(" ")
        got[a] = c.cmd("RCPT TO:<%s>%s" % (a, " " + params if params else "")).code
    assert c.cmd("DATA").code == 354
    c.send(make_msg() + b".\r\n")
    assert c.reply().code == 250
    c.quit()
    rec = m.audit(1)[-1]
    listed = [(r["address"], int(r["reply"][:3]), r["accepted"]) for r in rec["rcpts"]]
    print(got, listed)
    assert listed == [("b1@example.net", 250, True), ("dsn@example.net", 555, False),
                      ("\u00fc@example.net", 553, False), ("b2@example.net", 250, True),
                      ("b3@example.net", 452, False)], listed
    assert [x[1] for x in listed] == list(got.values())
    assert "rcpts_unlisted" not in rec


def test_thousands_of_own_refusals_keep_the_record_bounded(mw_factory, upstream):
    m = mw_factory(upstream, opts=[("max_recipients", "1")])
    c = m.client()
    c.ehlo()
    n = 3000
    batch = ["MAIL FROM:<a@example.org>"] + ["RCPT TO:<r%05d@example.net>" % i for i in range(n)]
    c.send(("\r\n".join(batch) + "\r\n").encode())
    replies = c.replies(len(batch), timeout=30)
    assert replies[1].code == 250 and all(r.code == 452 for r in replies[2:])
    c.quit()
    rec = m.audit(1)[-1]
    assert len(rec["rcpts"]) == 1 + 100, len(rec["rcpts"])
    assert rec["rcpts"][-1]["address"] == "r00100@example.net"
    assert rec["rcpts_unlisted"] == n - 1 - 100
    with open(m.audit_path, "rb") as f:
        size = len(f.read())
    print("record size", size)
    assert size < 32 * 1024, size
