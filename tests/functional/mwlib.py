"""mwlib.py - the pieces the functional tests are made of: free loopback
ports, a raw-socket SMTP client, three capturing upstreams (aiosmtpd, a
scripted raw-socket server, Postfix's smtp-sink), the mailwarden daemon
under test, message builders, and the audit-log reader.

Everything listens on and connects to 127.0.0.1 or ::1 only."""

import asyncio
import glob
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import threading
import time

from aiosmtpd.controller import Controller

MW_BIN = os.environ.get("MW_BIN", "")
MW_PLUGIN = os.environ.get("MW_PLUGIN", "")
# the source tree, or its public copy made by a parent test process
# (pytest-xdist's workers inherit MW_BIN, MW_PLUGIN and this from it)
SOURCE_ROOT = os.environ.get("MW_PUBLIC_ROOT") or \
    os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def _reachable_by_others(path):
    """every directory above path lets other users through (o+x)"""
    d = os.path.dirname(os.path.abspath(path))
    while True:
        if not os.stat(d).st_mode & 0o001:
            return False
        if d == os.path.dirname(d):
            return True
        d = os.path.dirname(d)


def _public_copy():
    """Tests that start mailwarden as (or dropping to) an unprivileged user
    need the binary, the example plugin and the rules where that user can
    reach them.  A checkout under a private directory (mktemp -d is 0700)
    is not: then they are copied, once per test process, to a directory
    others may read, and MW_BIN, MW_PLUGIN and SOURCE_ROOT point there
    (for child processes too, through the environment)."""
    global MW_BIN, MW_PLUGIN, SOURCE_ROOT
    import atexit
    import shutil
    import tempfile
    if not MW_BIN or not os.path.exists(MW_BIN) or _reachable_by_others(MW_BIN):
        return
    pub = tempfile.mkdtemp(prefix="mw-public-")
    os.chmod(pub, 0o755)
    atexit.register(shutil.rmtree, pub, True)
    for var in ("MW_BIN", "MW_PLUGIN"):
        src = globals()[var]
        if src and os.path.exists(src):
            dst = os.path.join(pub, var.lower(), os.path.basename(src))
            os.makedirs(os.path.dirname(dst), mode=0o755)
            shutil.copy2(src, dst)
            globals()[var] = os.environ[var] = dst
    shutil.copytree(os.path.join(SOURCE_ROOT, "rules"), os.path.join(pub, "rules"))
    SOURCE_ROOT = os.environ["MW_PUBLIC_ROOT"] = pub


_public_copy()
CRLF = b"\r\n"


# --- ports ---------------------------------------------------------------

_used_ports = set()


def _port_range():
    """20000-32000, cut into disjoint slices when pytest-xdist runs the
    tests in several workers (make check's TEST_JOBS): a port picked here
    is only bound a moment later, by the daemon a test starts, and another
    worker must not pick it meanwhile"""
    lo, hi = 20000, 32000
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")       # gw0, gw1, ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker.startswith("gw") and worker[2:].isdigit() and count > 1:
        width = (hi - lo) // count
        lo += int(worker[2:]) * width
        hi = lo + width - 1
    return lo, hi


def preload_shim(monkeypatch, tmp_path, name, source):
    """the daemon started next runs with source (C) built as an LD_PRELOAD
    library (ASan, in a SANITIZE=1 build, must then not insist on coming
    first)"""
    src, shim = tmp_path / (name + ".c"), tmp_path / (name + ".so")
    src.write_text(source)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(shim), str(src), "-ldl"], check=True)
    monkeypatch.setenv("LD_PRELOAD", str(shim))
    monkeypatch.setenv("ASAN_OPTIONS", (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":"))


def free_port(host="127.0.0.1"):
    """A port that nobody listens on, outside the ephemeral range (so that
    no outgoing connection grabs it between here and the bind)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    lo, hi = _port_range()
    for _ in range(200):
        p = random.randint(lo, hi)
        if p in _used_ports:
            continue
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            s.bind((host, p))
        except OSError:
            continue
        finally:
            s.close()
        _used_ports.add(p)
        return p
    raise RuntimeError("no free port")


def ipv6_available():
    if not socket.has_ipv6:
        return False
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        s.bind(("::1", 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


def cpu_seconds(pid):
    """user + system CPU time of process pid so far, in seconds"""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(pred, timeout=3.0, step=0.02):
    """Poll pred() until it is true or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


# --- messages ------------------------------------------------------------

def send_with_proxy_header(m, client, body, sender="a@fine.example", rcpt="b@example.net"):
    """one message (body text) through the proxy of m, which takes PROXY
    headers from 127.0.0.1, as if from client (a PROXY v1 header); the
    transaction must end in 250"""
    import socket
    s = socket.create_connection(("127.0.0.1", m.port), timeout=20)
    c = SMTPClient.__new__(SMTPClient)
    c.sock, c.buf, c.eof, c.timeout = s, b"", False, 20
    c.send(("PROXY TCP4 %s 127.0.0.1 4000 25\r\n" % client).encode())
    assert c.reply().code == 220
    c.ehlo()
    msg = make_msg(frm=sender, body=body.encode() if isinstance(body, str) else body)
    assert c.transaction(sender, [rcpt], msg)["final"].code == 250
    c.quit()


def make_msg(subject="test message", body=None, headers=None, frm="sender@example.org",
             to="rcpt@example.net", msgid=None):
    """An RFC 5322 message as bytes with CRLF line ends (ends with CRLF).
    body: str/bytes, lines joined by CRLF; headers: list of (name, value)."""
    if msgid is None:
        msgid = "<%08x.%d@test.example>" % (random.getrandbits(32), os.getpid())
    h = [b"From: " + _b(frm), b"To: " + _b(to), b"Subject: " + _b(subject),
         b"Message-ID: " + _b(msgid), b"Date: Mon, 02 Jan 2023 10:00:00 +0000"]
    for name, value in headers or []:
        h.append(_b(name) + b": " + _b(value))
    if body is None:
        body = "Hello,\r\n\r\nthis is a test.\r\n"
    body = _b(body)
    if not body.endswith(CRLF):
        body += CRLF
    return CRLF.join(h) + CRLF + CRLF + body


def _b(x):
    return x if isinstance(x, bytes) else x.encode("utf-8")


def dot_stuff(content):
    """Content (CRLF lines) -> what goes on the wire after DATA, with the
    final <CRLF>.<CRLF>."""
    if not content.endswith(CRLF):
        content += CRLF
    lines = content.split(CRLF)[:-1]
    out = [(b"." + l) if l.startswith(b".") else l for l in lines]
    return CRLF.join(out) + CRLF + b"." + CRLF


def header_block(content):
    """The header section of content, unfolded: list of (name, value)."""
    head = content.split(CRLF + CRLF, 1)[0]
    fields = []
    for line in head.split(CRLF):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1] += b" " + line.strip()
        elif b":" in line:
            n, v = line.split(b":", 1)
            fields.append([n.strip(), v.strip()])
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in fields]


def headers_named(content, name):
    return [v for n, v in header_block(content) if n.lower() == name.lower()]


# --- raw SMTP client ------------------------------------------------------

class ProtocolError(Exception):
    pass


class Reply:
    def __init__(self, code, lines, raw):
        self.code = code        # int
        self.lines = lines      # texts after "ddd-" / "ddd "
        self.raw = raw          # bytes as received

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def first(self):
        """the first line without the code, e.g. '5.1.1 <x>: unknown'"""
        return self.lines[0] if self.lines else ""

    def __repr__(self):
        return "Reply(%r)" % (self.raw,)


_reply_re = re.compile(rb"^([0-9]{3})([ -]?)(.*)$", re.S)


class SMTPClient:
    """An SMTP client on a plain socket: sends exact bytes, reads replies."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, greeting=True):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_port = self.sock.getsockname()[1]
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.greeting = self.reply() if greeting else None

    def send(self, data):
        self.sock.sendall(_b(data))

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply within the timeout; buffered %r" % self.buf[-300:])
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no reply within the timeout; buffered %r" % self.buf[-300:])
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            raise ConnectionError("connection closed by mailwarden; buffered %r" % self.buf[-300:])
        self.buf += d

    def readline(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while CRLF not in self.buf:
            if len(self.buf) > 100000:
                raise ProtocolError("reply line too long: %r..." % self.buf[:200])
            self._fill(deadline)
        line, self.buf = self.buf.split(CRLF, 1)
        return line

    def reply(self, timeout=None):
        """One complete (possibly multi-line) reply.  Raises ProtocolError on
        anything that is not a well-formed SMTP reply."""
        lines, raw, code = [], b"", None
        while True:
            line = self.readline(timeout)
            raw += line + CRLF
            m = _reply_re.match(line)
            if not m or (m.group(2) == b"" and m.group(3) != b""):
                raise ProtocolError("malformed reply line %r (after %r)" % (line, raw))
            c = int(m.group(1))
            if code is not None and c != code:
                raise ProtocolError("reply code changed inside a multi-line reply: %r" % raw)
            code = c
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) != b"-":
                return Reply(code, lines, raw)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        self.send(_b(line) + CRLF)
        return self.reply(timeout)

    def ehlo(self, name="client.example.org"):
        r = self.cmd("EHLO " + name)
        assert r.code == 250, r
        return r

    def pending(self, wait=0.3):
        """True if mailwarden sent anything (or closed) within wait seconds."""
        if self.buf:
            return True
        r, _, _ = select.select([self.sock], [], [], wait)
        return bool(r)

    def closed(self, timeout=3.0):
        """True if mailwarden closes the connection within timeout (anything
        it sends before is kept in self.buf)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except ConnectionError:
                return True
            except TimeoutError:
                return False
            except OSError:
                return True

    def transaction(self, mail_from, rcpts, content, mail_params="", rcpt_params=""):
        """MAIL, RCPT..., DATA, content: returns dict of replies (each RCPT's
        reply in a list; 'data' None when no RCPT was accepted)."""
        out = {}
        out["mail"] = self.cmd("MAIL FROM:<%s>%s" % (mail_from, (" " + mail_params) if mail_params else ""))
        out["rcpt"] = []
        if out["mail"].code != 250:
            return out
        for r in rcpts:
            out["rcpt"].append(self.cmd("RCPT TO:<%s>%s" % (r, (" " + rcpt_params) if rcpt_params else "")))
        out["data"] = out["final"] = None
        if not any(r.code == 250 for r in out["rcpt"]):
            return out
        out["data"] = self.cmd("DATA")
        if out["data"].code != 354:
            return out
        self.send(dot_stuff(content))
        out["final"] = self.reply()
        return out

    def quit(self):
        try:
            r = self.cmd("QUIT")
        except (ConnectionError, OSError, TimeoutError):
            r = None
        self.close()
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --- upstream 1: aiosmtpd --------------------------------------------------

class Captured:
    """One message as the upstream received it."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self):
        return "Captured(from=%r rcpts=%r %d bytes)" % (self.mail_from, self.rcpt_tos, len(self.content))


class _Handler:
    def __init__(self, up):
        self.up = up

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.up.ehlos.append(hostname)
        return self.up._caps(responses)

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        self.up.ehlos.append(hostname)
        return "250 %s" % server.hostname

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.up.mails.append((address, list(mail_options)))
        r = self.up.mail_reply(address) if self.up.mail_reply else None
        if r:
            return r
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.rcpt_options_each = []
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        r = self.up.rcpt_reply(address)
        if not r.startswith("2"):
            return r
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        getattr(envelope, "rcpt_options_each", []).append(list(rcpt_options))
        return r

    async def handle_DATA(self, server, session, envelope):
        qid = "%010X" % random.getrandbits(40)
        msg = Captured(mail_from=envelope.mail_from, mail_options=list(envelope.mail_options),
                       rcpt_tos=list(envelope.rcpt_tos), rcpt_options=list(envelope.rcpt_options),
                       rcpt_options_each=list(getattr(envelope, "rcpt_options_each", [])),
                       content=bytes(envelope.original_content), helo=session.host_name,
                       peer=session.peer, queue_id=qid)
        if self.up.data_delay:
            await asyncio.sleep(self.up.data_delay)
        reply = self.up.final_reply(msg) if self.up.final_reply else None
        if reply is None:
            reply = "250 2.0.0 Ok: queued as %s" % qid
        msg.reply = reply
        if reply.startswith("2"):
            self.up.messages.append(msg)
        else:
            self.up.refused.append(msg)
        return reply


def default_rcpt_reply(address):
    local = address.split("@")[0].lower()
    if local.startswith("unknown"):
        return "550 5.1.1 <%s>: Recipient address rejected: User unknown in local recipient table" % address
    if local.startswith("tempfail"):
        return "450 4.2.0 <%s>: Recipient address rejected: try again later" % address
    return "250 2.1.5 Ok"


class Upstream:
    """A capturing upstream MTA: aiosmtpd on 127.0.0.1.

    messages: Captured objects the upstream accepted, in order.
    drop_caps/add_caps: EHLO keywords to hide or to add (to look like an MTA
    without 8BITMIME, or one with ENHANCEDSTATUSCODES)."""

    def __init__(self, port=None, drop_caps=(), add_caps=(), rcpt_reply=default_rcpt_reply,
                 final_reply=None, mail_reply=None, data_delay=0.0, host="127.0.0.1"):
        self.host = host
        self.port = port or free_port(host)
        self.drop_caps = {c.upper() for c in drop_caps}
        self.add_caps = list(add_caps)
        self.rcpt_reply = rcpt_reply
        self.final_reply = final_reply
        self.mail_reply = mail_reply
        self.data_delay = data_delay
        self.messages = []
        self.refused = []
        self.ehlos = []
        self.mails = []
        self.controller = Controller(_Handler(self), hostname=host, port=self.port,
                                     server_hostname="upstream.test", enable_SMTPUTF8=True,
                                     data_size_limit=64 * 1024 * 1024, decode_data=False)

    @property
    def addr(self):
        return ("[%s]:%d" if ":" in self.host else "%s:%d") % (self.host, self.port)

    def _caps(self, responses):
        body = [r[4:] for r in responses]
        first, rest = body[0], body[1:]
        rest = [r for r in rest if r.split(" ")[0].upper() not in self.drop_caps]
        rest = rest[:-1] + self.add_caps + rest[-1:] if rest else self.add_caps
        lines = [first] + rest
        return ["250-" + l for l in lines[:-1]] + ["250 " + lines[-1]]

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        try:
            self.controller.stop()
        except Exception:
            pass

    def wait_messages(self, n, timeout=3.0):
        wait_until(lambda: len(self.messages) >= n, timeout)
        return self.messages


# --- upstream 2: scripted raw socket server --------------------------------

class RawUpstream:
    """An SMTP server written on raw sockets, for what aiosmtpd cannot do:
    garbage replies, silence, dropping mid-DATA, and a deliberately lenient
    ("vulnerable") framing for smuggling tests.

    script: {VERB: action} where VERB is EHLO/HELO/MAIL/RCPT/DATA/EOD/RSET/
    NOOP/QUIT/GREETING and action is bytes (sent as is instead of the normal
    reply), "close" (close without a reply), "silent" (never answer), or
    ("close_after", N) for DATA: answer 354, read N bytes of content, close.
    lenient: a line ends at CRLF, bare LF or bare CR, NUL bytes are ignored,
    and a line "." ends DATA -- what a smuggling-prone MTA does."""

    CAPS = [b"PIPELINING", b"SIZE 104857600", b"8BITMIME", b"SMTPUTF8", b"ENHANCEDSTATUSCODES"]

    def __init__(self, script=None, lenient=False, caps=None):
        self.port = free_port()
        self.script = dict(script or {})
        self.lenient = lenient
        self.caps = self.CAPS if caps is None else caps
        self.messages = []      # Captured
        self.sessions = []      # list of lists of raw command lines
        self.ehlos = []
        self.lsock = None
        self.stopping = False
        self.conns = []

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self.stopping = True
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        if self.lsock:
            self.lsock.close()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    # line reading: strict or lenient
    def _readline(self, st):
        while True:
            if self.lenient:
                m = re.search(rb"\r\n|\n|\r", st["buf"])
                # a trailing bare CR might be the first half of a CRLF
                if m and not (m.group() == b"\r" and m.end() == len(st["buf"])):
                    line = st["buf"][:m.start()]
                    st["buf"] = st["buf"][m.end():]
                    return line
            else:
                i = st["buf"].find(CRLF)
                if i >= 0:
                    line = st["buf"][:i]
                    st["buf"] = st["buf"][i + 2:]
                    return line
            d = st["sock"].recv(65536)
            if not d:
                raise ConnectionError("eof")
            if self.lenient:
                d = d.replace(b"\x00", b"")
            st["buf"] += d

    def _send(self, st, data):
        st["sock"].sendall(data)

    def _act(self, st, verb, normal):
        """Send the scripted reply for verb, or normal. Returns False to end."""
        a = self.script.get(verb)
        if callable(a):
            a = a(self, st)
        if a is None:
            self._send(st, normal)
            return True
        if a == "close":
            st["sock"].close()
            return False
        if a == "silent":
            st["silent"] = True
            return True
        if isinstance(a, tuple):
            return a
        self._send(st, a)
        return True

    def _session(self, sock):
        st = {"sock": sock, "buf": b"", "lines": [], "env": None, "silent": False}
        self.sessions.append(st["lines"])
        try:
            if not self._act(st, "GREETING", b"220 raw.upstream ESMTP\r\n"):
                return
            while not self.stopping:
                line = self._readline(st)
                st["lines"].append(line)
                if st["silent"]:
                    continue
                verb = line.split(b" ", 1)[0].split(b":", 1)[0].upper()
                if verb == b"EHLO":
                    self.ehlos.append(line[5:].decode("latin-1"))
                    caps = [b"raw.upstream"] + list(self.caps)
                    normal = b"".join(b"250-" + c + CRLF for c in caps[:-1]) + b"250 " + caps[-1] + CRLF
                    ok = self._act(st, "EHLO", normal)
                elif verb == b"HELO":
                    self.ehlos.append(line[5:].decode("latin-1"))
                    ok = self._act(st, "HELO", b"250 raw.upstream\r\n")
                elif verb == b"MAIL":
                    st["env"] = {"mail": line, "rcpts": []}
                    ok = self._act(st, "MAIL", b"250 2.1.0 Ok\r\n")
                elif verb == b"RCPT":
                    if st["env"] is not None:
                        st["env"]["rcpts"].append(line)
                    ok = self._act(st, "RCPT", b"250 2.1.5 Ok\r\n")
                elif verb == b"DATA":
                    a = self._act(st, "DATA", b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    if isinstance(a, tuple) and a[0] == "close_after":
                        self._send(st, b"354 go ahead\r\n")
                        need = a[1] - len(st["buf"])
                        while need > 0:
                            d = sock.recv(min(need, 65536))
                            if not d:
                                break
                            need -= len(d)
                        sock.close()
                        return
                    if not a:
                        return
                    if st["silent"]:
                        continue
                    content = self._read_data(st)
                    env = st["env"] or {"mail": b"", "rcpts": []}
                    qid = "%010X" % random.getrandbits(40)
                    self.messages.append(Captured(
                        mail_from=_path(env["mail"]), rcpt_tos=[_path(r) for r in env["rcpts"]],
                        mail_line=env["mail"], rcpt_lines=list(env["rcpts"]),
                        content=content, queue_id=qid, helo=None, mail_options=None))
                    st["env"] = None
                    ok = self._act(st, "EOD", b"250 2.0.0 Ok: queued as " + qid.encode() + CRLF)
                elif verb == b"BDAT" and b"CHUNKING" in self.caps:
                    # RFC 3030: exactly N octets follow; LAST ends the message
                    parts = line.split()
                    chunk = self._read_exact(st, int(parts[1]))
                    st["bdat"] = st.get("bdat", b"") + chunk
                    if len(parts) > 2 and parts[2].upper() == b"LAST":
                        env = st["env"] or {"mail": b"", "rcpts": []}
                        qid = "%010X" % random.getrandbits(40)
                        self.messages.append(Captured(
                            mail_from=_path(env["mail"]), rcpt_tos=[_path(r) for r in env["rcpts"]],
                            mail_line=env["mail"], rcpt_lines=list(env["rcpts"]),
                            content=st.pop("bdat"), queue_id=qid, helo=None, mail_options=None,
                            via="BDAT"))
                        st["env"] = None
                        ok = self._act(st, "EOD", b"250 2.0.0 Ok: queued as " + qid.encode() + CRLF)
                    else:
                        ok = self._act(st, "BDAT", b"250 2.0.0 chunk ok\r\n")
                elif verb == b"RSET":
                    st["env"] = None
                    ok = self._act(st, "RSET", b"250 2.0.0 Ok\r\n")
                elif verb == b"NOOP":
                    ok = self._act(st, "NOOP", b"250 2.0.0 Ok\r\n")
                elif verb == b"QUIT":
                    self._act(st, "QUIT", b"221 2.0.0 Bye\r\n")
                    sock.close()
                    return
                else:
                    ok = self._act(st, "OTHER", b"502 5.5.2 Error: command not recognized\r\n")
                if not ok:
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _read_exact(self, st, n):
        while len(st["buf"]) < n:
            d = st["sock"].recv(65536)
            if not d:
                raise ConnectionError("closed in BDAT")
            st["buf"] += d
        out, st["buf"] = st["buf"][:n], st["buf"][n:]
        return out

    def _read_data(self, st):
        """Content up to the end of data, dot-unstuffed; lines joined with CRLF."""
        lines = []
        while True:
            line = self._readline(st)
            if line == b".":
                break
            if line.startswith(b"."):
                line = line[1:]
            lines.append(line)
        return b"".join(l + CRLF for l in lines)


def _path(line):
    m = re.search(rb"<([^>]*)>", line)
    return m.group(1).decode("utf-8", "surrogateescape") if m else None


# --- upstream 3: Postfix smtp-sink ------------------------------------------

class SmtpSink:
    """Postfix's smtp-sink capturing each transaction to a file.
    flags: extra options, e.g. ["-8"] (no 8BITMIME), ["-e"] (no ESMTP)."""

    def __init__(self, tmpdir, flags=()):
        self.port = free_port()
        self.dir = os.path.join(str(tmpdir), "sink-%d" % self.port)
        os.makedirs(self.dir, exist_ok=True)
        self.flags = list(flags)
        self.proc = None

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        self.proc = subprocess.Popen(
            ["smtp-sink", "-u", "root"] + self.flags +
            ["-d", os.path.join(self.dir, "%M."), "127.0.0.1:%d" % self.port, "100"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_until(lambda: _port_open("127.0.0.1", self.port), 5):
            self.stop()     # the caller gets no sink to stop
            raise AssertionError("smtp-sink did not start")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    @property
    def messages(self):
        out = []
        # in the order smtp-sink finished writing them; a file of a
        # transaction that is then aborted (RSET) vanishes at any time
        files = []
        for f in glob.glob(os.path.join(self.dir, "*")):
            try:
                with open(f, "rb") as fh:
                    files.append((os.fstat(fh.fileno()).st_mtime_ns, f, fh.read()))
            except FileNotFoundError:
                pass
        for _, f, data in sorted(files):
            meta = {"mail": None, "rcpts": [], "helo": None}
            for line in data.split(b"\n"):
                if line.startswith(b"X-Mail-Args: "):
                    meta["mail"] = line[13:].decode("latin-1")
                elif line.startswith(b"X-Rcpt-Args: "):
                    meta["rcpts"].append(line[13:].decode("latin-1"))
                elif line.startswith(b"X-Helo-Args: "):
                    meta["helo"] = line[13:].decode("latin-1")
                elif line.startswith(b"Received: "):
                    break
            # content: after the 3-line Received: header smtp-sink adds
            lines = data.split(b"\n")
            i = next((k for k, l in enumerate(lines) if l.startswith(b"Received: ")), None)
            body = b"\n".join(lines[i + 3:]) if i is not None else b""
            out.append(Captured(mail_from=_path(meta["mail"].encode()) if meta["mail"] else None,
                                mail_line=meta["mail"], rcpt_tos=[_path(r.encode()) for r in meta["rcpts"]],
                                content=body, helo=meta["helo"], file=f))
        return out


def _port_open(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# --- mailwarden ------------------------------------------------------------

DAEMONS = []    # every Mailwarden started, for the failure report
# directories of the tests outside pytest's tmp dirs (a peer that must reach
# them as another user): conftest's guard counts a process working in one,
# or naming one in its arguments, as the run's own
OUR_DIRS = []


def _addr(host, port):
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


class Mailwarden:
    """The daemon under test, in the foreground, in its own process group.

    opts: list of (name, value) or a dict, each given as -o name=value.
    listeners: if given, a list of (name, listen_addr, upstream_addr, direction)
    given as listener.NAME.* overrides; otherwise --listen/--upstream.
    file_ports: {name: port} of listeners that are in the config file only
    (a reload reads them from there): no --listen, no listener override."""

    def __init__(self, tmpdir, upstream=None, opts=(), listen_host="127.0.0.1", direction=None,
                 listeners=None, config=None, args=(), owner=None, wait_probe=True, file_ports=None):
        self.tmpdir = str(tmpdir)
        os.makedirs(self.tmpdir, exist_ok=True)
        self.upstream = upstream
        self.audit_path = os.path.join(self.tmpdir, "audit.log")
        self.quarantine_dir = os.path.join(self.tmpdir, "quarantine")
        os.makedirs(self.quarantine_dir, exist_ok=True)
        self.stderr_path = os.path.join(self.tmpdir, "mailwarden-%d.stderr" % random.getrandbits(24))
        self.stats_path = os.path.join(self.tmpdir, "stats")
        base = [("audit_log", self.audit_path), ("quarantine_dir", self.quarantine_dir),
                ("stats_file", self.stats_path), ("log_level", "debug"), ("shutdown_timeout", "3s")]
        o = list(opts.items()) if isinstance(opts, dict) else list(opts)
        names = {k for k, _ in o}
        if "dns_forwarder" not in names:
            # tests never use the system resolver: without a test DNS server,
            # mailwarden's resolver points at a dead loopback port, and the
            # client's reverse DNS (which would wait out dns_timeout) is off
            base += [("dns_forwarder", "127.0.0.1@%d" % free_port()), ("dns_client_name", "no")]
        self.opts = [kv for kv in base if kv[0] not in names] + o
        self.listen_host = listen_host
        self.direction = direction
        self.listeners = listeners
        self.config = config
        self.args = list(args)
        self.owner = owner
        self.wait_probe = wait_probe
        self.file_ports = file_ports
        self.proc = None
        self.rc = None
        self.ports = {}
        self.port = None

    def command(self):
        cmd = [MW_BIN, "-f"]
        if self.config:
            cmd += ["-c", self.config]
        for k, v in self.opts:
            cmd += ["-o", "%s=%s" % (k, v)]
        if self.listeners:
            for name, listen, up, direction in self.listeners:
                cmd += ["-o", "listener.%s.listen=%s" % (name, listen),
                        "-o", "listener.%s.upstream=%s" % (name, up)]
                if direction:
                    cmd += ["-o", "listener.%s.direction=%s" % (name, direction)]
                self.ports[name] = int(listen.rsplit(":", 1)[1])
            self.port = list(self.ports.values())[0]
        elif self.file_ports:
            self.ports = dict(self.file_ports)
            self.port = list(self.ports.values())[0]
        else:
            self.port = free_port(self.listen_host)
            self.ports["default"] = self.port
            cmd += ["--listen", _addr(self.listen_host, self.port)]
            if self.upstream is not None:
                cmd += ["--upstream", self.upstream if isinstance(self.upstream, str) else self.upstream.addr]
            if self.direction:
                cmd += ["--direction", self.direction]
        return cmd + self.args

    def start(self, ready=True):
        assert MW_BIN and os.access(MW_BIN, os.X_OK), "MW_BIN=%r is not an executable mailwarden" % MW_BIN
        self.cmd = self.command()
        probes_before = len(getattr(self.upstream, "ehlos", []) or [])
        self.errfile = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.errfile,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        DAEMONS.append(self)
        if ready:
            host = self.listen_host if not self.listeners else None
            for name, port in self.ports.items():
                h = host
                if h is None:
                    listen = [l for l in self.listeners if l[0] == name][0][1]
                    h = listen.rsplit(":", 1)[0].strip("[]")
                self._wait_ready(h, port)
            ehlos = getattr(self.upstream, "ehlos", None)
            if self.wait_probe and ehlos is not None:
                # the proxy learns the upstream's EHLO keywords by probing it
                self.probe_seen = wait_until(lambda: len(ehlos) > probes_before, 2.0)
                time.sleep(0.05)
        return self

    def _wait_ready(self, host, port, timeout=10.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("mailwarden exited with %s at start-up:\n%s\ncommand: %s"
                                     % (self.proc.returncode, self.stderr_tail(), self.cmd))
            try:
                c = SMTPClient(port, host=host, timeout=3.0)
                g = c.greeting
                c.quit()
                if g.code == 220:
                    return
                last = g
            except (OSError, ConnectionError, TimeoutError, ProtocolError) as e:
                last = e
            time.sleep(0.05)
        raise AssertionError("mailwarden did not greet on %s:%d (%r)\n%s" % (host, port, last, self.stderr_tail()))

    def client(self, name=None, **kw):
        port = self.ports[name] if name else self.port
        host = self.listen_host
        if self.listeners:
            listen = [l for l in self.listeners if l[0] == (name or self.listeners[0][0])][0][1]
            host = listen.rsplit(":", 1)[0].strip("[]")
        return SMTPClient(port, host=host, **kw)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def children(self):
        """[(pid, title)] of the master's children; title from cmdline/comm."""
        out = []
        try:
            pids = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        except OSError:
            pids = []
        for p in pids:
            title = ""
            for f in ("cmdline", "comm"):
                try:
                    with open("/proc/%s/%s" % (p, f), "rb") as fh:
                        title += fh.read().replace(b"\0", b" ").decode("latin-1") + " "
                except OSError:
                    pass
            out.append((int(p), " ".join(title.split())))
        return out

    def child_pid(self, role):
        for pid, title in self.children():
            if role in title:
                return pid
        return None

    def stop(self, timeout=10.0):
        """SIGTERM the master; returns its exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.rc = None
                return None
        self.rc = self.proc.returncode
        self.errfile.close()
        return self.rc

    def leftovers(self, timeout=2.0):
        """pids still in the daemon's process group after the master exited."""
        def left():
            try:
                out = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True,
                                     text=True).stdout.split()
            except OSError:
                return []
            return out
        wait_until(lambda: not left(), timeout)
        return left()

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            pass

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_tail(self, n=150):
        return "\n".join(self.stderr_text().splitlines()[-n:])

    # audit log
    def audit(self, n=1, timeout=3.0):
        """The audit records, waiting up to timeout for at least n."""
        recs = []

        def enough():
            nonlocal recs
            recs = read_audit(self.audit_path)
            return len(recs) >= n
        wait_until(enough, timeout)
        return recs

    def quarantine_files(self):
        out = []
        for root, _, files in os.walk(self.quarantine_dir):
            for f in files:
                out.append(os.path.join(root, f))
        return sorted(out)


def read_audit(path):
    """Every complete line of the audit log, each checked to be UTF-8 and one
    JSON object."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    recs = []
    for raw in data.split(b"\n")[:-1]:        # the last piece is incomplete or ""
        if not raw.strip():
            continue
        text = raw.decode("utf-8")             # raises on invalid UTF-8
        rec = json.loads(text)
        assert isinstance(rec, dict), "audit line is not a JSON object: %r" % raw
        recs.append(rec)
    return recs


def run_mw(args, timeout=20, input=None):
    """Run mailwarden with args (no -f daemon); returns CompletedProcess (bytes)."""
    return subprocess.run([MW_BIN] + list(args), capture_output=True, timeout=timeout, input=input)


def plugin_opt(**kw):
    """The plugin= setting for the example plugin with the tests' headers."""
    assert MW_PLUGIN and os.path.exists(MW_PLUGIN), "MW_PLUGIN=%r does not exist" % MW_PLUGIN
    args = {"word": "viagra", "score": "6", "reject_header": "X-Reject-Me",
            "action_header": "X-Example-Action", "sleep_header": "X-Example-Sleep"}
    args.update(kw)
    return ("plugin", MW_PLUGIN + " " + " ".join("%s=%s" % (k, v) for k, v in args.items()))


def assert_same_bytes(got, want, what="content"):
    """Byte-exact comparison with a short report (no 30 MB diffs)."""
    if got == want:
        return
    n = min(len(got), len(want))
    i = 0
    while i < n and got[i:i + 65536] == want[i:i + 65536]:
        i += 65536
    i = next((k for k in range(i, min(n, i + 65536)) if got[k] != want[k]), min(n, i + 65536))
    raise AssertionError(
        "%s differs: %d bytes received, %d sent; first difference at offset %d:\n"
        "  received ...%r...\n  sent     ...%r..."
        % (what, len(got), len(want), i, got[max(0, i - 60):i + 60], want[max(0, i - 60):i + 60]))
