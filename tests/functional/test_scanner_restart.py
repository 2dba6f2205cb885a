"""test_scanner_restart.py - the scanner dies between two messages (killed;
the master restarts it) and the next message is scanned, with
milter_default_action = accept: through the milter, on the same milter
connection, and through the proxy.  And the proxy's log says what
happened to a request that could not be sent for a reason of its own
instead of "scanner unavailable".

Until session 20 the milter's kept scanner connection, dead with the
scanner, failed the next request with EPIPE, taken for "scanner
unavailable": milter_default_action = accept passed the message unscanned
(a filter's reject never ran).  A new connection made before the master's
restart went to the dead scanner's socket and was reset when the restart
replaced it: unscanned again (the milter), 451 (the proxy).  Now a kept
connection found closed is replaced and the request sent once more
(proxy/scanconn.h), and the restarted scanner takes over its socket, so
that what waits in it is scanned (proxy/master.c start_scanner).

The second message comes while the master waits to restart the scanner
(it ran less than 10 s: 1 s), so the test is not a race against the
restart."""
import os
import signal
import time

from milterlib import RawMilter, milter_pid, milter_records, reply_text, wait_records
from mwlib import free_port, make_msg, plugin_opt, preload_shim, wait_until

ACCEPT_UNSCANNED = "accepting unscanned"


def kill_scanner(m):
    """SIGKILL the scanner; return once the master has reaped it (its
    restart comes 1 s later: it ran less than 10 s)"""
    pid = m.child_pid("scanner")
    assert pid is not None, m.stderr_tail()
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: "scanner pid=%d killed by signal 9" % pid in m.stderr_text(), 10.0), \
        m.stderr_tail()
    return pid


def _listening(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def milter_daemon(mw_factory, upstream, opts=()):
    port = free_port()
    m = mw_factory(upstream, opts=[("milter_listen", "inet:%d@127.0.0.1" % port), plugin_opt(),
                                   ("milter_default_action", "accept")] + list(opts))
    assert wait_until(lambda: milter_pid(m) is not None and _listening(port), 10.0), m.stderr_tail()
    return m, port


def test_milter_scans_the_message_after_a_scanner_restart(mw_factory, upstream):
    """One milter connection, two messages; the scanner killed between
    them: the second (the plugin rejects it) is refused, not accepted
    unscanned, at RCPT (milter_early) and at the end of the message."""
    m, port = milter_daemon(mw_factory, upstream)
    with RawMilter(port) as a:
        a.negotiate().connect()
        verdict, data, _ = a.message(make_msg(subject="first"), qid=b"QID1")
        assert verdict == b"c", (verdict, data)
        old = kill_scanner(m)
        t0 = time.monotonic()
        verdict, data, _ = a.message(make_msg(subject="second", headers=[("X-Reject-Me", "1")]),
                                     qid=b"QID2")
        took = time.monotonic() - t0
    assert verdict == b"y" and reply_text(data).startswith("5"), (verdict, data, m.stderr_tail())
    recs = wait_records(m, 2)
    assert recs[1]["queue_id"] == "QID2"
    assert recs[1]["action"] == "reject", recs[1]
    log = m.stderr_text()
    assert ACCEPT_UNSCANNED not in log, m.stderr_tail()
    assert "envelope check skipped" not in log, m.stderr_tail()
    assert "scanner connection kept from before found closed" in log, m.stderr_tail()
    new = m.child_pid("scanner")
    assert new not in (None, old)
    print("second message: %.2f s (waited for the restart)" % took)


def test_milter_new_connection_after_a_scanner_restart(mw_factory, upstream):
    """A new milter connection while the scanner is down: its request
    waits for the restarted scanner (not reset by the restart)."""
    m, port = milter_daemon(mw_factory, upstream, opts=[("milter_early", "no")])
    with RawMilter(port) as a:
        a.negotiate().connect()
        assert a.message(make_msg(subject="first"))[0] == b"c"
    kill_scanner(m)
    with RawMilter(port) as a:
        a.negotiate().connect()
        verdict, data, _ = a.message(make_msg(subject="x", headers=[("X-Reject-Me", "1")]))
    assert verdict == b"y", (verdict, data, m.stderr_tail())
    assert milter_records(m)[-1]["action"] == "reject"
    assert ACCEPT_UNSCANNED not in m.stderr_text(), m.stderr_tail()


def test_proxy_scans_the_message_after_a_scanner_restart(mw_factory, upstream):
    """The proxy: a message while the scanner is down is scanned by the
    restarted one (550 from the plugin), not 451."""
    m = mw_factory(upstream, opts=[plugin_opt()])
    c = m.client(timeout=30)
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg(subject="first"))["final"].code == 250
    kill_scanner(m)
    r = c.transaction("a@example.org", ["b@example.net"],
                      make_msg(subject="second", headers=[("X-Reject-Me", "1")]))["final"]
    c.quit()
    assert r.code == 550, (r, m.stderr_tail())
    assert "scanner unavailable" not in m.stderr_text()


# --- the proxy's log: a request's own failure is not "scanner unavailable" ---

# memfd_create fails for the spool's memfds (EMFILE, as with no descriptor
# left): a small message is spooled in memory, so the one it fails is the
# big envelope's own memfd (scanproto_send_big)
NO_MEMFD_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <string.h>
int memfd_create(const char *name, unsigned int flags)
{
    static int (*real)(const char *, unsigned int);
    if (strcmp(name, "mailwarden-spool") == 0) { errno = EMFILE; return -1; }
    if (real == NULL) real = (int (*)(const char *, unsigned int))dlsym(RTLD_NEXT, "memfd_create");
    return real(name, flags);
}
"""


def big_rcpts(n=1000):
    """n recipients of 300 octets: the request's envelope passes one packet"""
    return ["%s%04d@%s.example.net" % ("r" * 230, i, "d" * 53) for i in range(n)]


def test_proxy_logs_a_requests_own_failure_as_such(mw_factory, upstream, monkeypatch, tmp_path):
    preload_shim(monkeypatch, tmp_path, "nomemfd", NO_MEMFD_SHIM)
    m = mw_factory(upstream, opts=[plugin_opt()])
    c = m.client(timeout=60)
    c.ehlo()
    batch = ["MAIL FROM:<a@example.org>"] + ["RCPT TO:<%s>" % r for r in big_rcpts()] + ["DATA"]
    c.send(("\r\n".join(batch) + "\r\n").encode())
    replies = c.replies(len(batch), timeout=60)
    assert replies[-1].code == 354, replies[-1]
    c.send(make_msg(subject="hi") + b".\r\n")
    r = c.reply(timeout=60)
    # a small message goes as before: the scanner is there
    assert c.transaction("a@example.org", ["b@example.net"], make_msg(subject="small"))["final"].code == 250
    c.quit()
    assert r.code == 451 and "not scanned" in r.text, r
    log = m.stderr_text()
    assert "tempfail: scan request not sent: no memory or descriptor for its memfd (Too many open files)" \
        in log, m.stderr_tail()
    assert "scanner unavailable" not in log, m.stderr_tail()
