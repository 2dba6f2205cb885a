"""test_scanner_stale.py - the scanner does not scan a request its front
end has given up on (filters/scanstale.h).

A request can outlive the front end's wait unread: in the backlog of the
scanner socket while no scanner runs (a restarted scanner takes over the
dead one's socket since session 20, with what waits in it), or in a kept
connection while the scanner is stalled.  The front end answers 451 (the
milter its milter_default_action) at its deadline; a scan started later
took its side effects all the same: here the rate limit counted the
message the client was refused, so the client's retry of that very
message was refused "Rate limit exceeded" (ratelimit_sender 1/1h).

The first two tests are the reviewer's reproducers of session 20
(rv-today1, test_rv_today1_stale_scan.py); each test here fails on main
a50c115."""
import os
import signal
import socket
import time

from milterlib import RawMilter, milter_pid
from mwlib import free_port, make_msg, wait_until
from storelib import store_opts

STALE_LOG = "not scanned: its front end"


def test_request_given_up_is_not_scanned_later(mw_factory, upstream, tmp_path):
    m = mw_factory(upstream, opts=store_opts("lmdb", tmp_path) + [
        ("filters", "ratelimit"), ("ratelimit_sender", "1/1h"), ("scan_timeout", "400ms")])
    c = m.client(timeout=30)
    c.ehlo()
    # a first message from someone else: the proxy keeps a scanner connection
    assert c.transaction("other@example.org", ["b@example.net"], make_msg(subject="0"))["final"].code == 250
    pid = m.child_pid("scanner")
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: "scanner pid=%d killed by signal 9" % pid in m.stderr_text(), 10.0)
    # the scanner restarts 1 s later (it ran less than 10 s): this attempt
    # waits past scan_timeout and is refused with 451
    msg = make_msg(subject="the one message")
    r = c.transaction("a@example.org", ["b@example.net"], msg)["final"]
    assert r.code == 451, (r, m.stderr_tail())
    assert wait_until(lambda: m.child_pid("scanner") not in (None, pid), 10.0)
    time.sleep(2.0)
    # the sender's MTA retries its deferred message: its first delivery
    r = c.transaction("a@example.org", ["b@example.net"], msg)["final"]
    c.quit()
    assert r.code == 250, ("the retry of a refused message counted twice", r, m.stderr_tail())
    assert len(upstream.messages) == 2
    # the stale one was seen and dropped, and said so once
    assert m.stderr_text().count(STALE_LOG) == 1, m.stderr_tail()


def test_milter_request_given_up_is_not_scanned_later(mw_factory, upstream, tmp_path):
    """The same through the milter: its request, given up at milter_timeout
    (socket closed), was scanned by the restarted scanner and counted."""

    def listening(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    port = free_port()
    m = mw_factory(upstream, opts=store_opts("lmdb", tmp_path) + [
        ("milter_listen", "inet:%d@127.0.0.1" % port), ("milter_default_action", "tempfail"),
        ("milter_early", "no"), ("milter_timeout", "400ms"),
        ("filters", "ratelimit"), ("ratelimit_sender", "2/1h")])
    assert wait_until(lambda: milter_pid(m) is not None and listening(port), 10.0), m.stderr_tail()
    with RawMilter(port) as a:
        a.negotiate().connect()
        assert a.message(make_msg(subject="first"), qid=b"Q1")[0] == b"c"     # counts 1 of 2
        pid = m.child_pid("scanner")
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: "scanner pid=%d killed by signal 9" % pid in m.stderr_text(), 10.0)
        v, data, _ = a.message(make_msg(subject="second"), qid=b"Q2")     # given up: tempfail
        assert v in (b"t", b"y") and b"451" in data + v, (v, data)
        assert wait_until(lambda: m.child_pid("scanner") not in (None, pid), 10.0)
        time.sleep(2.0)
        v, data, _ = a.message(make_msg(subject="second"), qid=b"Q3")     # the MTA's retry: 2 of 2
    assert v == b"c", ("the retry of a refused message counted twice", v, data, m.stderr_tail())
    assert STALE_LOG in m.stderr_text(), m.stderr_tail()


def test_request_left_unread_by_a_stalled_scanner_is_not_scanned(mw_factory, upstream, tmp_path):
    """A scanner that reads nothing for longer than the front end waits
    (stopped here; overloaded, swapping, a filter's load at start): the
    proxy's request waits in its kept connection, which the proxy does not
    close when it gives up.  Read after scan_timeout, it was scanned with a
    full budget counted from when it was read.  Now its age is counted from
    when the proxy sent it (sent_ms on the wire), and it is not scanned."""
    m = mw_factory(upstream, opts=store_opts("lmdb", tmp_path) + [
        ("filters", "ratelimit"), ("ratelimit_sender", "1/1h"), ("scan_timeout", "400ms")])
    c = m.client(timeout=30)
    c.ehlo()
    assert c.transaction("other@example.org", ["b@example.net"], make_msg(subject="0"))["final"].code == 250
    pid = m.child_pid("scanner")
    msg = make_msg(subject="the one message")
    os.kill(pid, signal.SIGSTOP)
    try:
        r = c.transaction("a@example.org", ["b@example.net"], msg)["final"]
        assert r.code == 451, (r, m.stderr_tail())
        time.sleep(0.3)
    finally:
        os.kill(pid, signal.SIGCONT)
    # the scanner answers it (scanned, or dropped) to a proxy no longer
    # waiting for it
    assert wait_until(lambda: "no longer awaited" in m.stderr_text(), 5.0), m.stderr_tail()
    assert m.child_pid("scanner") == pid          # the same scanner, not a restart
    r = c.transaction("a@example.org", ["b@example.net"], msg)["final"]
    c.quit()
    assert r.code == 250, ("the retry of a refused message counted twice", r, m.stderr_tail())
    assert len(upstream.messages) == 2
    assert m.stderr_text().count(STALE_LOG) == 1, m.stderr_tail()
