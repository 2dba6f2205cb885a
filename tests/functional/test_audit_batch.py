"""test_audit_batch.py - the audit lines as the proxy writes them now: built
by its own JSON writer and written in batches, one write per event-loop
iteration.  Many sessions ending transactions at the same time with hostile
bytes in every field still give one valid UTF-8 JSON line per transaction,
none lost, merged or cut; and the lines of transactions that end during a
SIGTERM shutdown (finished in time, or cut by the deadline) are in the file
when the process has exited."""

import signal
import threading
import time

import audit_fields as A
from mwlib import dot_stuff, make_msg, plugin_opt, read_audit

HOSTILE = (b'q" b\\s \xff\xfe \xc0\xaf \xed\xa0\x80 \x01\x1b[31m\x7f\t \xe2\x80\xa8 '
           b'{"j":1}\n} \\u0000 \xf0\x9f\x98\x80 \xe2\x82')


def test_concurrent_hostile_transactions(mw_factory, upstream):
    m = mw_factory(upstream, opts=[plugin_opt(), ("proxy_threads", "2")])
    nclients, per = 16, 6
    errors = []

    def run(k):
        try:
            c = m.client()
            c.ehlo("h%d.example" % k)
            for i in range(per):
                tag = b"TAG-%d-%d" % (k, i)
                msg = (b"From: x@example.org\r\nTo: y@example.net\r\nSubject: " + tag + b" " +
                       HOSTILE.replace(b"\n", b" ") + b"\r\nMessage-ID: <" + tag + b'"\xff@x>\r\n\r\nbody\r\n')
                assert c.cmd("MAIL FROM:<a%d@example.org>" % k).code == 250
                assert c.cmd("RCPT TO:<b@example.net>").code == 250
                assert c.cmd("DATA").code == 354
                c.send(dot_stuff(msg))
                assert c.reply().code == 250
            c.quit()
        except Exception as e:          # reported below, from the main thread
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(nclients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    recs = m.audit(nclients * per, timeout=10)
    raw = open(m.audit_path, "rb").read()
    raw.decode("utf-8")                                  # strict: valid UTF-8
    assert raw.endswith(b"\n")
    assert raw.count(b"\n") == len(recs) == nclients * per, (raw.count(b"\n"), len(recs))
    seen = {}
    for r in recs:
        subj = A.field(r, "subject")
        tag = subj.split(" ", 1)[0]
        seen[tag] = seen.get(tag, 0) + 1
        assert subj.endswith('{"j":1} } \\u0000 \U0001F600 \ufffd'), subj
        assert 'q" b\\s \ufffd\ufffd \ufffd\ufffd \ufffd\ufffd\ufffd \x01\x1b[31m\x7f\t \u2028' in subj, subj
        assert A.field(r, "action") == "accept"
        assert str(A.field(r, "reply")).startswith("250")
    assert sorted(seen) == sorted("TAG-%d-%d" % (k, i) for k in range(nclients) for i in range(per))
    assert set(seen.values()) == {1}


def test_sigterm_lines_written_before_exit(mw_factory, upstream):
    m = mw_factory(upstream, opts=[plugin_opt(), ("shutdown_timeout", "2s"), ("scan_timeout", "30s")])
    # one transaction that finishes during the shutdown, one cut by its deadline
    fin = m.client()
    fin.ehlo()
    slow = m.client()
    slow.ehlo()
    for c, subject, sleep_ms in ((fin, "finishes in time", "700"), (slow, "cut by the deadline", "8000")):
        assert c.cmd("MAIL FROM:<a@example.org>").code == 250
        assert c.cmd("RCPT TO:<b@example.net>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(make_msg(subject=subject, headers=[("X-Example-Sleep", sleep_ms)])))
    time.sleep(0.3)
    m.signal(signal.SIGTERM)
    assert fin.reply(timeout=6).code == 250
    assert slow.reply(timeout=6).code in (421, 451)
    m.proc.wait(10)
    assert m.proc.returncode == 0
    recs = read_audit(m.audit_path)                      # no waiting: the process is gone
    by_subject = {A.field(r, "subject"): r for r in recs}
    assert set(by_subject) == {"finishes in time", "cut by the deadline"}, recs
    assert str(A.field(by_subject["finishes in time"], "reply")).startswith("250")
    cut = by_subject["cut by the deadline"]
    assert A.field(cut, "action") in ("aborted", "tempfail"), cut
    assert str(A.field(cut, "reply"))[:3] in ("", "421", "451"), cut
    assert len(upstream.messages) == 1
