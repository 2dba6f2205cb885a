"""Reloads (SIGHUP): what a reload changes, what it cannot and says so,
and what a storm of them does under load (session 18)."""
import os
import re
import signal
import socket
import stat
import threading
import time

import pytest

from mwlib import MW_PLUGIN, Mailwarden, dot_stuff, free_port, make_msg, plugin_opt, wait_until


def start(tmp_path, upstream, conf, drop=("log_level",), opts=(), **kw):
    """a daemon whose settings named in drop come from the file only (mwlib
    otherwise passes log_level=debug as -o, which a reload cannot change)"""
    m = Mailwarden(tmp_path / "mw", upstream=upstream, config=str(conf), opts=list(opts), **kw)
    m.opts = [kv for kv in m.opts if kv[0] not in drop]
    return m.start()


def took_over(m, n):
    return wait_until(lambda: m.stderr_text().count("ready, taking over") >= n, 15)


def send_one(m, subject, rcpts=("b@example.net",)):
    c = m.client()
    c.ehlo()
    r = c.transaction("a@example.org", list(rcpts), make_msg(subject=subject))
    c.quit()
    return r["final"].code


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_hundred_reloads_under_load(tmp_path, upstream):
    """100 SIGHUPs 20 ms apart while 4 clients send: every message gets its
    250 (a reload drops no scan), the latest file is the one in effect, and
    the master, the proxy and the process count end where they were.
    Before, each SIGHUP started a scanner (a plugin-only one is ready in
    milliseconds) and past 16 old ones waiting to be retired the master
    told the next to drain at once, before the proxy had its successor's
    address: the proxy's scan on its way there was reset, 451 4.3.0; such
    an old scanner was no longer tracked, and a stop never reached it.
    Now reloads come at least 2 s apart (a burst is one reload, of the
    latest file) and an old scanner drains only 2 s after every front end
    was sent a newer address."""
    conf = tmp_path / "mw.conf"
    conf.write_text("plugin = %s\n" % MW_PLUGIN)
    m = start(tmp_path, upstream, conf, drop=())
    codes, stop = [], threading.Event()

    def sender():
        while not stop.is_set():
            try:
                codes.append(send_one(m, "load %d" % len(codes)))
            except Exception as e:  # noqa
                codes.append(repr(e))
    threads = [threading.Thread(target=sender) for _ in range(4)]
    def third_rcpt():
        c = m.client()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.org>").code == 250
        got = [c.cmd("RCPT TO:<r%d@example.net>" % i).code for i in range(3)]
        c.quit()
        return got[2]
    try:
        # one reload first: the master then holds the config it passes on
        # (a memfd) and the counts below are those of a daemon that reloads
        m.signal(signal.SIGHUP)
        assert took_over(m, 1), m.stderr_tail(20)
        assert wait_until(lambda: "old scanner pid=" in m.stderr_text(), 8), m.stderr_tail(20)
        assert send_one(m, "warm") == 250
        master, proxy = m.pid, m.child_pid("proxy")
        base = (fds(master), fds(proxy), len(m.children()))
        for t in threads:
            t.start()
        t0 = time.monotonic()
        for i in range(100):
            if i == 99:     # the last file of the burst: the one that counts
                conf.write_text("plugin = %s\nmax_recipients = 2\n" % MW_PLUGIN)
            m.signal(signal.SIGHUP)
            time.sleep(0.02)
        burst = time.monotonic() - t0
        # the latest file of the burst comes into effect (a third recipient: 452)
        assert wait_until(lambda: third_rcpt() == 452, 8), m.stderr_tail(20)
        stop.set()
        for t in threads:
            t.join(30)
        bad = [c for c in codes if c != 250]
        assert not bad, "%d of %d messages not 250 across 100 reloads: %r" % (len(bad), len(codes), bad[:10])
        takeovers = m.stderr_text().count("ready, taking over") - 1
        assert takeovers <= burst / 2 + 2, "a %.1f s burst of SIGHUPs made %d scanner generations" % (
            burst, takeovers)
        # a SIGHUP of the burst put off until after the file's last write
        # may still start one more reload (it reads the same file): the
        # counts settle once it has taken over and its old scanner ended
        def counts():
            return (fds(master), fds(m.child_pid("proxy")), len(m.children()))
        # no more descriptors than before the burst (a leak), and the same
        # children; the proxy may hold one fewer than at the start (an
        # upstream or scanner connection of the warm-up message, closed
        # meanwhile: seen once in a full run)
        def settled():
            now = counts()
            return now[0] <= base[0] and now[1] <= base[1] and now[2] == base[2]
        assert wait_until(settled, 10), (base, counts(), m.stderr_tail(20))
        assert m.alive()
    finally:
        stop.set()
        m.stop()


def listening_sockets(pid):
    """the abstract names of the unix sockets pid listens on"""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    names = []
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            col = line.split()
            # Flags __SO_ACCEPTCON (0x10000): listening
            if len(col) >= 8 and col[6] in inodes and int(col[3], 16) & 0x10000 and col[7].startswith("@"):
                names.append(col[7][1:])
    return names


def test_draining_scanner_refuses_new_connections(tmp_path, upstream):
    """A retired scanner that drains closes its listening socket: a front
    end still connecting to it (it has not read the new address yet) is
    refused at once, where before its connection sat in the backlog of a
    socket nobody accepted on and was reset when the old scanner ended
    (the scan on it a 451)."""
    conf = tmp_path / "mw.conf"
    conf.write_text("plugin = %s\nscan_timeout = 20s\n" % plugin_opt()[1])
    m = start(tmp_path, upstream, conf, drop=())
    try:
        old = m.child_pid("scanner")
        names = listening_sockets(old)
        assert len(names) == 1, names
        c = m.client(timeout=15)
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.org>").code == 250
        assert c.cmd("RCPT TO:<b@example.net>").code == 250
        assert c.cmd("DATA").code == 354
        # a scan the old scanner still works on while it drains
        c.send(dot_stuff(make_msg(subject="slow", headers=[("X-Example-Sleep", "5000")])))
        time.sleep(0.3)
        m.signal(signal.SIGHUP)
        assert wait_until(lambda: "scanner: retired, finishing scans in flight" in m.stderr_text(), 8), \
            m.stderr_tail(20)
        time.sleep(0.2)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.settimeout(2)
        try:
            s.connect("\0" + names[0])
            refused = False
        except ConnectionRefusedError:
            refused = True
        finally:
            s.close()
        assert refused, "the draining scanner pid=%d still takes connections on @%s" % (old, names[0])
        assert c.reply(timeout=15).code == 250
        c.quit()
    finally:
        m.stop()


def test_reload_log_level_reaches_the_new_scanner(tmp_path, upstream):
    """log_level raised to debug by a reload: the reload's scanner logs at
    debug at once.  It was forked while the master still had the old
    level and never set its own: it logged nothing at debug until the
    NEXT reload (or a crash restart)."""
    conf = tmp_path / "mw.conf"
    conf.write_text("log_level = info\n")
    m = start(tmp_path, upstream, conf)
    try:
        assert send_one(m, "before") == 250
        assert "scanner: conn=" not in m.stderr_text()
        conf.write_text("log_level = debug\n")
        m.signal(signal.SIGHUP)
        assert took_over(m, 1), m.stderr_tail(30)
        assert wait_until(lambda: "config reloaded (from the master)" in m.stderr_text(), 5)
        mark = len(m.stderr_text())
        assert send_one(m, "after the reload") == 250
        assert wait_until(lambda: "scanner: conn=" in m.stderr_text()[mark:], 2), \
            "the new scanner still logs at the old level after the reload:\n" + m.stderr_text()[mark:]
    finally:
        m.stop()


def proc_uid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])


@pytest.mark.parametrize("name,old,new", [
    ("proxy_threads", "1", "3"),
    ("user", "", "nobody"),
    ("upstream_probe_interval", "60s", "1s"),
    ("log", "stderr", "syslog"),
    ("syslog_facility", "mail", "local3"),
])
def test_reload_of_a_restart_only_setting_is_said(tmp_path, upstream, name, old, new):
    """A reload that changes a setting read only at the start logs "reload:
    NAME needs a restart" and keeps the running value in the config it
    takes (as for the listeners and milter_listen), so that a child
    restarted after a crash runs what the others run: the new scanner
    keeps the user of the start.  Before, nothing was said, and the
    setting went into the config of the next restarts."""
    if name == "user" and os.geteuid() != 0:
        pytest.skip("needs root")
    conf = tmp_path / "mw.conf"
    conf.write_text("%s = %s\n" % (name, old))
    m = start(tmp_path, upstream, conf, drop=(name,))
    try:
        uid = proc_uid(m.child_pid("scanner"))
        conf.write_text("%s = %s\n" % (name, new))
        m.signal(signal.SIGHUP)
        assert took_over(m, 1), m.stderr_tail(30)
        said = [l for l in m.stderr_text().splitlines() if re.search(r"reload: %s needs a restart" % name, l)]
        assert said, "reload changed %s from %r to %r: not said\n%s" % (name, old, new, m.stderr_tail(15))
        assert proc_uid(m.child_pid("scanner")) == uid
        assert send_one(m, "after") == 250
    finally:
        m.stop()


def test_reload_of_milter_socket_mode_is_said(tmp_path, upstream):
    """milter_socket_mode changed by a reload: said, and the running one
    kept, also by a milter restarted after a crash (before: nothing said;
    the socket kept its mode until a crash of the milter made it anew
    with the new one)."""
    sock = tmp_path / "milter.sock"
    conf = tmp_path / "mw.conf"
    conf.write_text("milter_listen = unix:%s\nmilter_socket_mode = 0660\n" % sock)
    m = Mailwarden(tmp_path / "mw", upstream=upstream, config=str(conf))
    m.start()
    try:
        assert wait_until(lambda: sock.exists(), 10), m.stderr_tail()
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
        conf.write_text("milter_listen = unix:%s\nmilter_socket_mode = 0600\n" % sock)
        m.signal(signal.SIGHUP)
        assert took_over(m, 1), m.stderr_tail(30)
        assert wait_until(lambda: "milter: config reloaded" in m.stderr_text(), 5)
        assert "reload: milter_socket_mode needs a restart" in m.stderr_text()
        mp = m.child_pid("milter")
        os.kill(mp, signal.SIGKILL)
        assert wait_until(lambda: m.child_pid("milter") not in (None, mp), 10)
        assert wait_until(lambda: m.stderr_text().count("milter listening on") >= 2, 5), m.stderr_tail(10)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
    finally:
        m.stop()


def test_reload_makes_new_directories(tmp_path, upstream):
    """A reload that moves audit_log and quarantine_dir to directories not
    made yet: the master makes them (and gives them to user) as at the
    start, and the proxy writes its audit log there.  Before, only the
    start did: the proxy logged "audit log ...: No such file or directory"
    and kept the old file."""
    conf = tmp_path / "mw.conf"
    conf.write_text("# start\n")
    m = start(tmp_path, upstream, conf, drop=("audit_log", "quarantine_dir"))
    try:
        new_audit = tmp_path / "new" / "log" / "audit.log"
        new_q = tmp_path / "new" / "q" / "store"
        conf.write_text("audit_log = %s\nquarantine_dir = %s\n" % (new_audit, new_q))
        m.signal(signal.SIGHUP)
        assert took_over(m, 1), m.stderr_tail(30)
        assert wait_until(lambda: "config reloaded (from the master)" in m.stderr_text(), 5)
        assert new_q.is_dir(), m.stderr_tail(10)
        assert send_one(m, "to the new audit log") == 250
        assert wait_until(lambda: new_audit.exists() and new_audit.stat().st_size > 0, 3), m.stderr_tail(10)
    finally:
        m.stop()


def test_reload_applies_tls_min_version_to_the_upstream_leg(tmp_path, pki_upstream):
    """tls_min_version (and the ciphers) hold on both legs: a reload
    raising it to TLSv1.3 reaches the upstream leg's context too, so an
    upstream that speaks TLS 1.2 only is refused (451) after the reload.
    Before, the upstream context was made once and kept the old
    settings until a restart."""
    up = pki_upstream
    listen = "127.0.0.1:%d" % free_port()
    conf = tmp_path / "mw.conf"
    conf.write_text("tls_min_version = TLSv1.2\n")
    m = Mailwarden(tmp_path / "mw", upstream=up, config=str(conf), listeners=[("tls", listen, up.addr, None)],
                   opts=[("listener.tls.upstream_tls", "required")])
    m.start()
    try:
        assert send_one(m, "over TLS 1.2") == 250
        conf.write_text("tls_min_version = TLSv1.3\n")
        m.signal(signal.SIGHUP)
        assert took_over(m, 1), m.stderr_tail(30)
        assert wait_until(lambda: "config reloaded (from the master)" in m.stderr_text(), 5)
        c = m.client()
        c.ehlo()
        r = c.cmd("MAIL FROM:<a@example.org>")
        c.quit()
        assert r.code == 451, "upstream leg still takes TLS 1.2 after tls_min_version = TLSv1.3: %r" % r
    finally:
        m.stop()


@pytest.fixture
def pki_upstream(tmp_path):
    """an upstream that offers STARTTLS with TLS 1.2 at most"""
    import ssl
    from tlslib import PKI, TLSUpstream
    ctx = PKI(tmp_path / "pki").server_context("upstream.example.test")
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    u = TLSUpstream(tls_context=ctx).start()
    yield u
    u.stop()


# sendmsg of the master's control messages (ctlmsg.h: one struct ctl_msg a
# packet on a SOCK_SEQPACKET pair) fails while the file $MW_TEST_CTL_FAULT
# exists: "ENOBUFS" fails the next scanner address once (the file goes),
# "EAGAIN" every message (a front end that does not read its channel)
CTL_SHIM = r'''
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
struct ctl_msg { socklen_t len; struct sockaddr_un a; };
ssize_t sendmsg(int fd, const struct msghdr *mh, int flags)
{
    static ssize_t (*real)(int, const struct msghdr *, int);
    if (!real) real = (ssize_t (*)(int, const struct msghdr *, int))dlsym(RTLD_NEXT, "sendmsg");
    const char *path = getenv("MW_TEST_CTL_FAULT");
    int type = 0;
    socklen_t tl = sizeof type;
    if (path && mh->msg_iovlen == 1 && mh->msg_iov[0].iov_len == sizeof(struct ctl_msg) &&
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_SEQPACKET) {
        const struct ctl_msg *m = mh->msg_iov[0].iov_base;
        char mode[16] = "";
        FILE *f = fopen(path, "r");
        if (f) {
            if (!fgets(mode, sizeof mode, f)) mode[0] = 0;
            fclose(f);
        }
        if (strncmp(mode, "EAGAIN", 6) == 0) {
            errno = EAGAIN;
            return -1;
        }
        if (strncmp(mode, "ENOBUFS", 7) == 0 && m->len > 0 && m->len <= sizeof(struct sockaddr_un)) {
            unlink(path);
            errno = ENOBUFS;
            return -1;
        }
    }
    return real(fd, mh, flags);
}
'''


def _taken_over(m, n):
    """the pid of the scanner of the n-th takeover"""
    assert took_over(m, n), m.stderr_tail(30)
    return int(re.findall(r"reload: scanner pid=(\d+) ready, taking over", m.stderr_text())[n - 1])


def test_front_end_told_again_after_a_passing_send_error(tmp_path, upstream, monkeypatch):
    """A send of the new scanner's address that fails with ENOBUFS (the
    proxy is alive) is tried again: the proxy moves to the new scanner
    before the old one drains.  It was given up as if the proxy were gone,
    and once the old scanner ended every scan of the proxy failed (451)
    until it restarted."""
    from mwlib import preload_shim
    preload_shim(monkeypatch, tmp_path, "ctl", CTL_SHIM)
    fault = tmp_path / "ctl.fault"
    monkeypatch.setenv("MW_TEST_CTL_FAULT", str(fault))
    m = Mailwarden(tmp_path / "mw", upstream=upstream, opts=[plugin_opt()]).start()
    try:
        old = m.child_pid("scanner")
        fault.write_text("ENOBUFS")
        m.signal(signal.SIGHUP)
        _taken_over(m, 1)
        assert not fault.exists()                 # the fault was hit
        assert wait_until(lambda: "old scanner pid=%d finished" % old in m.stderr_text(), 8), \
            m.stderr_tail(20)
        assert send_one(m, "after") == 250, m.stderr_tail(30)
        assert "cannot tell the proxy (tried again): No buffer space available" in m.stderr_text()
    finally:
        m.stop()


def test_front_end_that_does_not_read_keeps_one_old_scanner(tmp_path, upstream, monkeypatch):
    """A proxy whose control channel stays full keeps the scanner whose
    address it has; the scanners of later reloads, whose address it was
    never sent, drain as usual.  Every one of them was kept while it did
    not read (each a scanner process, with ClamAV a whole engine, one more
    a reload).  Once it reads again it moves to the current scanner."""
    from mwlib import preload_shim
    preload_shim(monkeypatch, tmp_path, "ctl", CTL_SHIM)
    fault = tmp_path / "ctl.fault"
    monkeypatch.setenv("MW_TEST_CTL_FAULT", str(fault))
    m = Mailwarden(tmp_path / "mw", upstream=upstream, opts=[plugin_opt()]).start()
    try:
        first = m.child_pid("scanner")
        fault.write_text("EAGAIN")
        m.signal(signal.SIGHUP)
        second = _taken_over(m, 1)
        m.signal(signal.SIGHUP)                   # put off until 2 s after the takeover
        _taken_over(m, 2)
        assert wait_until(lambda: "old scanner pid=%d finished" % second in m.stderr_text(), 6), \
            m.stderr_tail(30)
        assert "old scanner pid=%d finished" % first not in m.stderr_text()
        assert send_one(m, "on the first scanner") == 250, m.stderr_tail(30)
        fault.unlink()
        assert wait_until(lambda: m.stderr_text().count("config reloaded (from the master)") >= 1, 5), \
            m.stderr_tail(30)
        assert send_one(m, "on the third scanner") == 250, m.stderr_tail(30)
    finally:
        m.stop()
