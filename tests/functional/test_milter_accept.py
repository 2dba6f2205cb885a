"""test_milter_accept.py - the milter's accept() (proxy/milter_accept.c):
libmilter's listener spun when accept() failed for want of descriptors,
and served connections without bound.  Now, out of descriptors, it rests
100 ms per try and closes one waiting MTA connection through a reserved
descriptor each time; past milter_max_connections a new connection is
closed at once; each with one log line when it starts and one when it
ends, and counted in `mailwarden stats` (milter.connections_refused)."""
import os
import re
import resource
import signal
import socket
import time

import pytest

from milterlib import RawMilter, milter_pid, wait_log
from mwlib import cpu_seconds, free_port, make_msg, run_mw, wait_until

PLUGIN = os.environ.get("MW_PLUGIN")


@pytest.fixture
def milter(mw_factory, upstream):
    def make(opts=()):
        port = free_port()
        o = [("milter_listen", "inet:%d@127.0.0.1" % port),
             ("plugin", "%s word=viagra score=6" % PLUGIN)] + list(opts)
        m = mw_factory(upstream, opts=o)
        assert wait_log(m, "milter listening on inet:%d@127.0.0.1" % port, 10.0), m.stderr_tail()
        return m, port
    return make


def _served(port, subject="served"):
    """a whole message through a new connection: its verdict, or None when
    the milter closed the connection or did not answer"""
    try:
        with RawMilter(port, timeout=5) as c:
            c.negotiate().connect()
            return c.message(make_msg(subject=subject))[0]
    except (ConnectionError, OSError, AssertionError):
        return None


def _refused(m):
    """milter.connections_refused of `mailwarden stats`"""
    r = run_mw(["stats", "-o", "stats_file=%s" % m.stats_path])
    assert r.returncode == 0, r.stderr
    return int(float(re.search(r"^milter\.connections_refused (\S+)$", r.stdout.decode(), re.M).group(1)))


def _closed_at_once(port):
    """a new connection that the milter closes without a word"""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
    except OSError:
        return True
    try:
        s.settimeout(2)
        return s.recv(100) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    finally:
        s.close()


def test_milter_out_of_descriptors(milter):
    """with prlimit on the milter and 16 silent MTA connections: libmilter's
    listener used to spin (2.95 s of CPU in 3 s); now it rests, closes a
    waiting connection at each try (the MTA applies its
    milter_default_action at once, instead of waiting in the backlog), logs
    once, and serves mail again when the connections go"""
    m, port = milter()
    pid = milter_pid(m)
    held = len(os.listdir("/proc/%d/fd" % pid))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (held + 8, held + 8))
    silent = [socket.create_connection(("127.0.0.1", port), timeout=3) for _ in range(16)]
    try:
        assert wait_log(m, "new MTA connections are closed until descriptors free", 5.0), m.stderr_tail()
        cpu = cpu_seconds(pid)
        time.sleep(2)
        assert cpu_seconds(pid) - cpu < 0.5
        # the backlog is worked off, a connection at each pause
        assert _closed_at_once(port)
        log = m.stderr_text()
        start = [l for l in log.splitlines() if "new MTA connections are closed until" in l]
        assert len(start) == 1, start
        assert "Too many open files" in start[0] and "open files limit %d" % (held + 8) in start[0], start
        assert len([l for l in log.splitlines() if "milter: " in l and "descriptors" in l]) <= 2, log[-3000:]
    finally:
        for s in silent:
            s.close()
    assert wait_until(lambda: _served(port) == b"c", 10, 0.2), m.stderr_tail()
    assert wait_log(m, "closed unserved for lack of descriptors in the last", 2.0), m.stderr_tail()
    assert _refused(m) >= 1
    assert milter_pid(m) == pid, "the milter was restarted:\n" + m.stderr_tail()


def test_milter_max_connections(milter):
    """past milter_max_connections a new MTA connection is closed at once,
    with one log line; the ones held are served; one that ends makes room"""
    m, port = milter([("milter_max_connections", "3")])
    assert wait_log(m, "milter_max_connections 3)"), m.stderr_tail()
    held = [RawMilter(port, timeout=5).negotiate() for _ in range(3)]
    try:
        assert _closed_at_once(port)
        assert _closed_at_once(port)
        assert wait_log(m, "milter: 3 MTA connections open (milter_max_connections): "
                           "new ones are closed until some end"), m.stderr_tail()
        assert m.stderr_text().count("(milter_max_connections)") == 1, m.stderr_tail()
        assert wait_until(lambda: _refused(m) == 2, 5, 0.1), _refused(m)
        # the ones it holds are served all the same
        held[0].connect()
        assert held[0].message(make_msg(subject="held"))[0] == b"c"
        held.pop().close()
        assert wait_until(lambda: _served(port) == b"c", 5, 0.1), m.stderr_tail()
        # two, and any tried before libmilter saw the hang-up
        assert wait_log(m, "closed unserved at milter_max_connections in the last"), m.stderr_tail()
        closed = re.search(r"\((\d+) MTA connection\(s\) closed unserved at milter_max", m.stderr_text())
        assert int(closed.group(1)) >= 2, m.stderr_tail()
    finally:
        for c in held:
            c.close()


def test_milter_max_connections_reloaded(mw_factory, upstream, tmp_path):
    """the bound is read again on a reload, for the next connection"""
    port = free_port()
    conf = tmp_path / "mw.conf"

    def write(n):
        conf.write_text("milter_listen = inet:%d@127.0.0.1\nplugin = %s word=viagra score=6\n"
                        "milter_max_connections = %d\n" % (port, PLUGIN, n))
    write(1)
    m = mw_factory(upstream, config=str(conf))
    assert wait_log(m, "milter_max_connections 1)", 10.0), m.stderr_tail()
    first = RawMilter(port, timeout=5).negotiate()
    try:
        assert _closed_at_once(port)
        write(2)
        m.signal(signal.SIGHUP)
        assert wait_log(m, "milter: config reloaded", 10.0), m.stderr_tail()
        assert _served(port) == b"c", m.stderr_tail()
    finally:
        first.close()
