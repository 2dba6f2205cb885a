"""milterlib.py - the MTA's side of the milter protocol (version 6) on a
raw socket, for tests that must send what no well-behaved MTA sends:
oversized or truncated packets, commands out of order, huge macro lists,
hang-ups in the middle of a message.  Also what the milter process holds
(memfds, descriptors) and its audit records.

Talks to 127.0.0.1 only."""

import json
import os
import socket
import struct
import time

import mwlib

# steps the milter negotiates away: no reply is sent for them
SMFIP_NR = {"C": 0x1000, "H": 0x2000, "M": 0x4000, "R": 0x8000, "L": 0x80, "N": 0x40000, "B": 0x80000}
SMFIP_NO = {"C": 0x1, "H": 0x2, "M": 0x4, "R": 0x8, "B": 0x10, "L": 0x20, "N": 0x40}
SMFIP_HDR_LEADSPC = 0x100000
FINAL = (b"c", b"a", b"r", b"t", b"d", b"y")


class RawMilter:
    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        # the steps negotiated without reply go out back to back: without
        # this each would wait for the milter's delayed ACK (40 ms)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.pflags = 0

    def raw(self, data):
        self.sock.sendall(data)

    def send(self, cmd, data=b""):
        self.raw(struct.pack("!I", len(data) + 1) + cmd + data)

    def recv(self):
        """(cmd, data) of the milter's next packet; ConnectionError when it closed."""
        while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack("!I", self.buf[:4])[0]:
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("milter closed")
            self.buf += d
        n = struct.unpack("!I", self.buf[:4])[0]
        pkt, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return pkt[:1], pkt[1:]

    def closed(self, timeout=5.0):
        """Did the milter close the connection (nothing else came first)?"""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def negotiate(self):
        self.send(b"O", struct.pack("!III", 6, 0x1ff, 0x1fffff))
        cmd, data = self.recv()
        assert cmd == b"O", cmd
        self.pflags = struct.unpack("!III", data[:12])[2]
        return self

    def step(self, cmd, data=b""):
        """Send a command; its reply, or None where it was negotiated away."""
        self.send(cmd, data)
        c = cmd.decode()
        if self.pflags & SMFIP_NR.get(c, 0) or self.pflags & SMFIP_NO.get(c, 0):
            return None
        return self.recv()

    def connect(self, ip="192.0.2.10", helo="client.example.org"):
        self.step(b"C", b"client.example.org\0" + b"4" + struct.pack("!H", 40000) + ip.encode() + b"\0")
        self.step(b"H", helo.encode() + b"\0")
        return self

    def macros(self, stage, pairs):
        self.send(b"D", stage + b"".join(k + b"\0" + v + b"\0" for k, v in pairs))

    def mail(self, frm=b"<sender@example.org>", qid=b"QID1"):
        self.macros(b"M", [(b"i", qid)])
        return self.step(b"M", frm + b"\0")

    def rcpt(self, to=b"<rcpt@example.net>"):
        return self.step(b"R", to + b"\0")

    def header(self, name, value):
        return self.step(b"L", name + b"\0" + value + b"\0")

    def headers(self, content):
        """The header fields of content (CRLF, folded lines kept), then EOH;
        returns the body."""
        head, body = content.split(b"\r\n\r\n", 1)
        fields = []
        for line in head.split(b"\r\n"):
            if line[:1] in (b" ", b"\t") and fields:
                fields[-1][1] += b"\n" + line
            else:
                name, value = line.split(b":", 1)
                # with SMFIP_HDR_LEADSPC an MTA sends the value as it was,
                # its leading space included
                fields.append([name, value if self.pflags & SMFIP_HDR_LEADSPC else value.lstrip(b" ")])
        for name, value in fields:
            self.header(name, value)
        self.step(b"N")
        return body

    def body(self, data, chunk=65535):
        for i in range(0, len(data), chunk):
            self.step(b"B", data[i:i + chunk])

    def eom(self):
        """End of message: (verdict cmd, its data, [modifications]); the
        progress packets (SMFIR_PROGRESS) before the verdict are counted in
        self.progress, with the times they came in self.progress_at."""
        self.send(b"E")
        mods = []
        self.progress, self.progress_at = 0, []
        while True:
            cmd, data = self.recv()
            if cmd in FINAL:
                return cmd, data, mods
            if cmd == b"p":
                self.progress += 1
                self.progress_at.append(time.monotonic())
                continue
            mods.append((cmd, data))

    def message(self, content, rcpts=(b"<rcpt@example.net>",), qid=b"QID1"):
        """A whole transaction; (verdict, data, mods), or the refusal of MAIL."""
        r = self.mail(qid=qid)
        if r is not None and r[0] != b"c":
            return r[0], r[1], []
        for to in rcpts:
            self.rcpt(to)
        self.body(self.headers(content))
        return self.eom()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def milter_pid(mw):
    return mw.child_pid("milter")


def memfds(pid):
    """memfd descriptors a process holds (the message spools)."""
    n = 0
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("/memfd:mailwarden-spool"):
                    n += 1
            except OSError:
                pass
    except OSError:
        return None
    return n


def memfd_bytes(pid):
    """Bytes in the spools (memfds) a process holds."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        path = "/proc/%d/fd/%s" % (pid, fd)
        try:
            if os.readlink(path).startswith("/memfd:mailwarden-spool"):
                n += os.stat(path).st_size
        except OSError:
            pass
    return n


def milter_records(mw):
    try:
        with open(mw.audit_path, "rb") as f:
            recs = [json.loads(l) for l in f.read().splitlines() if l.strip()]
    except FileNotFoundError:
        return []
    return [r for r in recs if r.get("listener") == "milter"]


def wait_records(mw, n, timeout=5.0):
    assert mwlib.wait_until(lambda: len(milter_records(mw)) >= n, timeout), \
        "%d milter audit records, wanted %d:\n%s" % (len(milter_records(mw)), n, mw.stderr_tail())
    return milter_records(mw)


def wait_log(mw, text, timeout=5.0, count=1):
    return mwlib.wait_until(lambda: mw.stderr_text().count(text) >= count, timeout, 0.05)


def reply_text(data):
    return data.rstrip(b"\0").decode("latin-1")


def settle(seconds=0.2):
    time.sleep(seconds)
