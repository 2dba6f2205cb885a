"""test_big_envelope_memory.py - what big scan requests (a sealed memfd
named by a 12-byte packet, README "Big envelopes") may make the scanner
hold.  A peer the scanner admits (same uid or root: a compromised proxy or
milter child) used to make it read one copy and one decoded request per
packet and hold them all until scanned: one 16 MiB memfd named by 64
packets grew the scanner by 1 GiB, and the queue (scanner_queue = 256) of
64 MiB requests would be 16 GiB.  Now reading a big request must fit a
budget, per connection (160 MiB) and in total (320 MiB), and no request
held may be the same memfd; one that does not is answered "scanner busy"
(tempfail) unread, and the connection goes on being read.

The scanner is stopped (SIGSTOP) while the packets are queued on its
socket, only so that the tests do not depend on scheduling: a front end
sending faster than the workers scan gets the same."""
import fcntl
import os
import signal
import socket
import struct
import time

import pytest

from mwlib import make_msg, plugin_opt, wait_until
from test_big_envelope import big_rcpts, send_pipelined

MIB = 1 << 20
TEMPFAIL = 4         # enum mw_action: accept, tag, quarantine, discard, tempfail, reject


@pytest.fixture(autouse=True)
def no_asan_quarantine(monkeypatch):
    """Under the sanitizer build, freed memory waits in ASan's quarantine
    (256 MiB) before it is reused: the copies freed after decoding would
    count in VmHWM as if held.  What the budget bounds is what is held."""
    monkeypatch.setenv("ASAN_OPTIONS", (os.environ.get("ASAN_OPTIONS", "")
                                        + ":quarantine_size_mb=0").lstrip(":"))


def listening_sockets(pid):
    """the abstract unix socket names pid listens on"""
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
            if len(col) >= 8 and col[6] in inodes and int(col[3], 16) & 0x10000 and col[7].startswith("@"):
                names.append(col[7][1:])
    return names


def s32(b):
    return struct.pack("=I", len(b)) + b


def envelope_request(rid, rcpts):
    """scan_request_encode's layout (proxy/scanproto.c), stage envelope"""
    out = b"MWq1" + struct.pack("=Q", rid)
    out += s32(b"0123456789abcdef")          # session_id
    out += s32(b"in")                         # listener
    out += b"\0"                              # inbound
    out += s32(b"192.0.2.1") + struct.pack("=I", 2525)
    out += s32(b"client.example") + s32(b"helo.example")
    out += s32(b"a@example.org") + s32(b"")
    out += struct.pack("=I", len(rcpts)) + b"".join(s32(r) for r in rcpts)
    out += struct.pack("=Q", 0)               # size
    out += s32(b"") + s32(b"")                # auth_user, tls
    out += b"\1\0" + struct.pack("=I", 30000)  # envelope stage, no mta_quarantine, timeout
    out += struct.pack("=I", 0)               # no rcpt_dsn
    out += struct.pack("=Q", 0)               # sent_ms: unknown (never stale by time)
    return out


def sixteen_mib(rid):
    """a 16 MiB encoding: 256 recipients of 64,000 octets"""
    rcpts = [(b"%04d" % i) + b"r" * 63980 + b"@example.net" for i in range(256)]
    return envelope_request(rid, rcpts)


def sealed_memfd(data):
    fd = os.memfd_create("env", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                | fcntl.F_SEAL_SEAL)
    return fd


def vm_hwm(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def flood(m, sends):
    """connect to the scanner as a front end; with it stopped, queue one
    big packet per (length, memfd) of sends; then read the answers.
    Returns (VmHWM growth, {id: [(action, busy, names the budget)]}, answers)"""
    assert wait_until(lambda: m.child_pid("scanner") is not None, 10)
    scanner = m.child_pid("scanner")
    names = listening_sockets(scanner)
    assert len(names) == 1, names
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect("\0" + names[0])
    before = vm_hwm(scanner)
    os.kill(scanner, signal.SIGSTOP)
    try:
        for n, fd in sends:
            socket.send_fds(s, [b"MWqB" + struct.pack("=Q", n)], [fd])
    finally:
        os.kill(scanner, signal.SIGCONT)
    s.settimeout(30)
    answers = {}
    t0 = time.monotonic()
    got = 0
    try:
        while got < len(sends) and time.monotonic() - t0 < 30:
            pkt = s.recv(300000)
            if not pkt:
                break
            got += 1
            assert pkt[:4] == b"MWr1", pkt[:16]
            rid = struct.unpack("=Q", pkt[4:12])[0]
            answers.setdefault(rid, []).append((pkt[12], b"scanner busy" in pkt,
                                                b"past the scanner's memory for big requests" in pkt))
    except socket.timeout:
        pass
    peak = vm_hwm(scanner)
    s.close()
    print("scanner VmHWM %d MiB -> %d MiB (+%d MiB), %d answers"
          % (before // MIB, peak // MIB, (peak - before) // MIB, got))
    return peak - before, answers, got


def test_one_memfd_named_many_times_is_held_once(mw_factory, upstream):
    """The reviewer's case: one 16 MiB memfd, 64 packets naming it.  Until
    session 19 the scanner grew by ~1 GiB; now the same memfd is not read
    again while a request from it is held, and every packet is answered."""
    m = mw_factory(upstream)
    enc = sixteen_mib(1)
    efd = sealed_memfd(enc)
    try:
        grew, answers, got = flood(m, [(len(enc), efd)] * 64)
    finally:
        os.close(efd)
    assert m.alive()
    assert grew < 96 * MIB, "the scanner grew by %d MiB for one 16 MiB memfd named 64 times" % (grew // MIB)
    assert got == 64
    results = answers[1]
    busy = [r for r in results if r[1]]
    assert all(r[0] == TEMPFAIL for r in busy)
    # the answer says why (the front ends log it): the budget, not the queue
    assert all(r[2] for r in busy), busy
    assert len(results) - len(busy) >= 1, "none of them scanned"
    assert busy, "the same memfd read 64 times"
    with open(m.stderr_path, "rb") as f:
        assert b"same memfd as a request held" in f.read()


def test_big_requests_on_one_connection_are_bounded(mw_factory, upstream):
    """24 distinct memfds of 16 MiB (384 MiB) on one connection: what
    reading them holds stays within the connection's 160 MiB (and its
    reading's copy), the rest are answered busy at once; then the proxy's
    own big and small transactions go through as before."""
    m = mw_factory(upstream, opts=[plugin_opt()])
    encs = [sixteen_mib(i + 1) for i in range(24)]
    fds = [sealed_memfd(e) for e in encs]
    try:
        grew, answers, got = flood(m, [(len(e), fd) for e, fd in zip(encs, fds)])
    finally:
        for fd in fds:
            os.close(fd)
    assert m.alive()
    assert grew < 208 * MIB, "the scanner grew by %d MiB for 24 big requests on one connection" % (grew // MIB)
    assert got == 24 and sorted(answers) == list(range(1, 25))
    busy = [rid for rid, r in answers.items() if r[0][1]]
    assert all(answers[rid][0][0] == TEMPFAIL for rid in busy)
    assert busy and len(busy) < 24, busy
    # what they held is given back: legitimate traffic flows
    c = m.client(timeout=60)
    c.ehlo()
    r = send_pipelined(c, "a@example.org", big_rcpts(), make_msg(subject="newsletter"))
    assert r.code == 250, r
    t = c.transaction("b@example.org", ["c@example.net"], make_msg(subject="small"))
    assert t["final"].code == 250, t
    c.quit()
    assert len(upstream.wait_messages(2, timeout=10)) == 2
