"""soaklib.py - the long-running daemon under load: session mixes driven
through the proxy and the milter front end, and what each of mailwarden's
processes holds (descriptors, memory, threads, children) before and after.

Shared by tests/functional/test_soak.py (a short run that fails on a leak)
and tests/bench/soak.py (the long run that prints the figures).

Everything talks to 127.0.0.1 only."""

import os
import random
import socket
import ssl
import struct
import threading
import time

import mwlib
from milterlib import RawMilter
from mwlib import CRLF, make_msg

# --- what a process holds ----------------------------------------------------


def proc_stat(pid):
    """{fds, rss_kb, threads, memfds, fd_kinds} of one process, or None."""
    try:
        names = os.listdir("/proc/%d/fd" % pid)
        with open("/proc/%d/status" % pid) as f:
            status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    kinds = {}
    memfd_bytes = 0
    for n in names:
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, n))
        except OSError:
            continue
        k = t.split(":", 1)[0] if ":" in t and not t.startswith("/") else ("file" if t.startswith("/") else t)
        if t.startswith("/memfd:"):
            k = "memfd"
            try:
                memfd_bytes += os.stat("/proc/%d/fd/%s" % (pid, n)).st_size
            except OSError:
                pass
        kinds[k] = kinds.get(k, 0) + 1
    return {"fds": len(names), "rss_kb": int(status["VmRSS"].split()[0]),
            "threads": int(status["Threads"]), "fd_kinds": kinds, "memfds": kinds.get("memfd", 0),
            "memfd_bytes": memfd_bytes}


def sanitized(pid):
    """Is pid a SANITIZE=1 build (AddressSanitizer mapped in)?"""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


def children_of(pid):
    """[(pid, role, state)] of pid's children; role from the process title."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rindex(")") + 2:].split()
        if int(rest[1]) != pid:
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                title = f.read().replace(b"\0", b" ").decode("latin-1")
        except OSError:
            title = ""
        role = next((r for r in ("proxy", "scanner", "milter") if r in title), "?")
        out.append((int(p), role, rest[0]))
    return out


def snapshot(mw):
    """{role: proc_stat} for master, proxy, scanner(s), milter; plus the
    zombie count and the files in the quarantine directory."""
    snap = {"master": proc_stat(mw.pid)}
    kids = children_of(mw.pid)
    zombies = [k for k in kids if k[2] == "Z"]
    for pid, role, state in kids:
        if state == "Z":
            continue
        key = role if role not in snap else "%s.%d" % (role, pid)
        snap[key] = proc_stat(pid)
        if snap[key] is not None:
            snap[key]["pid"] = pid
    snap["zombies"] = len(zombies)
    snap["children"] = len(kids)
    snap["quarantine_files"] = len(mw.quarantine_files())
    return snap


def wait_settled(mw, base, roles=("master", "proxy", "scanner", "milter"), slack=3, timeout=10.0):
    """Wait until each role's descriptor count is back within slack of base
    and its thread count at base (the milter's per-connection threads end
    a moment after their connection is gone); returns the last snapshot."""
    last = None

    def ok():
        nonlocal last
        last = snapshot(mw)
        for r in roles:
            if r in base and base[r] is not None:
                if last.get(r) is None or last[r]["fds"] > base[r]["fds"] + slack:
                    return False
                if last[r].get("threads", 0) > base[r].get("threads", 0):
                    return False
        return True
    mwlib.wait_until(ok, timeout, 0.2)
    return last


def describe(snap, roles=("master", "proxy", "scanner", "milter")):
    parts = []
    for r in roles:
        s = snap.get(r)
        if s:
            parts.append("%s fds=%d rss=%dkB thr=%d" % (r, s["fds"], s["rss_kb"], s["threads"]))
    return "; ".join(parts) + "; zombies=%d" % snap["zombies"]


# --- an SMTP session on a raw socket --------------------------------------------


class Client:
    """Just enough SMTP: a reply reader with a deadline, and send()."""

    def __init__(self, port, timeout=20.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """(code, text) of the next reply; raises ConnectionError on EOF."""
        lines = []
        while True:
            while CRLF not in self.buf:
                d = self.sock.recv(65536)
                if not d:
                    raise ConnectionError("eof after %r" % lines)
                self.buf += d
            line, self.buf = self.buf.split(CRLF, 1)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), b"\n".join(lines)

    def cmd(self, line):
        self.send(line + CRLF)
        return self.reply()

    def starttls(self, ctx):
        code, _ = self.cmd(b"STARTTLS")
        assert code == 220, code
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mx.example.test")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _content(subject, size=0, headers=None, frm="sender@example.org"):
    body = None
    if size:
        line = b"x" * 76 + CRLF
        body = line * max(1, size // len(line))
    return make_msg(subject=subject, body=body, headers=headers, frm=frm)


def _stuffed(content):
    return mwlib.dot_stuff(content) + b".\r\n"


class Outcome:
    """What the client saw: 'accepted' (final 250), 'refused' (final 4xx/5xx
    or a refused envelope), 'dropped' (we hung up on purpose), or 'error'
    (the daemon closed on us or never answered: a defect)."""

    def __init__(self):
        self.counts = {}
        self.errors = []
        self.lock = threading.Lock()

    def add(self, kind, scenario, why=None):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.counts[scenario + ":" + kind] = self.counts.get(scenario + ":" + kind, 0) + 1
            if kind == "error" and len(self.errors) < 20:
                self.errors.append("%s: %s" % (scenario, why))


def smtp_session(port, scenario, tls_ctx=None, size=0, timeout=300.0):
    """One client session of the named scenario; returns (kind, why)."""
    c = Client(port, timeout=timeout)
    try:
        code, _ = c.reply()
        if scenario == "drop_greeting":
            return "dropped", None
        if code != 220:
            return "refused", code
        code, text = c.cmd(b"EHLO client.example.org")
        if scenario == "drop_ehlo":
            return "dropped", None
        if scenario == "starttls":
            c.starttls(tls_ctx)
            code, text = c.cmd(b"EHLO client.example.org")
        frm = b"sender@grey.example" if scenario == "greylist" else b"sender@example.org"
        # the greylist scenario's recipient is outside greylist_whitelist's
        # to:@example.net (a @domain sender entry needs SPF since session 19)
        rcpt = b"rcpt%d@%s" % (random.getrandbits(20),
                                b"grey.example.net" if scenario == "greylist" else b"example.net")
        headers = [("X-Reject-Me", "yes")] if scenario == "filter_reject" else []
        if scenario == "slow_big":
            headers = [("X-Example-Sleep", "1000")]
        # the example plugin scores "viagra" 6: held at quarantine score 5
        subject = "buy viagra now" if scenario == "quarantine" else "soak %s" % scenario
        msg = _content(subject, size=size, headers=headers, frm=frm.decode())
        if scenario == "pipelined":
            c.send(b"MAIL FROM:<" + frm + b">\r\nRCPT TO:<" + rcpt + b">\r\nDATA\r\n")
            codes = [c.reply()[0] for _ in range(3)]
            if codes[2] != 354:
                return "refused", codes
            c.send(_stuffed(msg) + b"QUIT\r\n")
            code, text = c.reply()
            return ("accepted" if code == 250 else "refused"), text
        if scenario == "rset":
            c.cmd(b"MAIL FROM:<" + frm + b">")
            c.cmd(b"RCPT TO:<" + rcpt + b">")
            code, _ = c.cmd(b"RSET")
            if code != 250:
                return "error", "RSET %d" % code
        code, text = c.cmd(b"MAIL FROM:<" + frm + b">")
        if scenario == "drop_mail":
            return "dropped", None
        if code != 250:
            return "refused", text
        code, text = c.cmd(b"RCPT TO:<" + rcpt + b">")
        if scenario == "drop_rcpt":
            return "dropped", None
        if code != 250:
            return "refused", text
        if scenario == "bdat":
            half = len(msg) // 2
            c.send(b"BDAT %d\r\n" % half + msg[:half])
            code, text = c.reply()
            if code != 250:
                return "refused", text
            c.send(b"BDAT %d LAST\r\n" % (len(msg) - half) + msg[half:])
            code, text = c.reply()
        else:
            code, text = c.cmd(b"DATA")
            if code != 354:
                return "refused", text
            if scenario == "drop_data":
                c.send(msg[:len(msg) // 2])
                return "dropped", None
            if scenario == "drop_eod":
                c.send(_stuffed(msg))
                return "dropped", None
            c.send(_stuffed(msg))
            code, text = c.reply()
        if scenario == "quit_after":
            c.send(b"QUIT\r\n")
            return ("accepted" if code == 250 else "refused"), text
        kind = "accepted" if code == 250 else "refused"
        c.cmd(b"QUIT")
        return kind, text
    except (ConnectionError, socket.timeout, OSError, ssl.SSLError) as e:
        return "error", repr(e)
    finally:
        c.close()


# every scenario of the proxy mix: (name, listener) -- the listener names
# the upstream behaviour (see proxy_setup)
PROXY_MIX = [
    ("normal", "ok"), ("pipelined", "ok"), ("rset", "ok"), ("bdat", "ok"),
    ("drop_greeting", "ok"), ("drop_ehlo", "ok"), ("drop_mail", "ok"), ("drop_rcpt", "ok"),
    ("drop_data", "ok"), ("drop_eod", "ok"), ("filter_reject", "ok"), ("greylist", "ok"),
    ("quit_after", "ok"), ("quarantine", "ok"), ("starttls", "tls"),
    ("normal", "refuse"), ("normal", "tempfail"), ("normal", "close"), ("normal", "eodfail"),
    ("normal", "nogreet"), ("normal", "silent"),
]

# what each scenario must end as (None: either)
EXPECT = {
    ("normal", "ok"): "accepted", ("pipelined", "ok"): "accepted", ("rset", "ok"): "accepted",
    ("bdat", "ok"): "accepted", ("quit_after", "ok"): "accepted", ("starttls", "tls"): "accepted",
    ("quarantine", "ok"): "accepted", ("filter_reject", "ok"): "refused", ("greylist", "ok"): "refused",
    ("normal", "refuse"): "refused", ("normal", "tempfail"): "refused",
    ("normal", "close"): "refused", ("normal", "eodfail"): "refused",
    ("normal", "nogreet"): "refused", ("normal", "silent"): "refused",
}


def proxy_setup(tmp_path, sink_addr, raw_upstream_factory, pki=None, extra_opts=()):
    """The listeners and options of the soak daemon: 'ok' in front of
    smtp-sink (Postfix's, in C: fast), the others in front of scripted raw
    upstreams that refuse the session (554 greeting), tempfail MAIL, close
    the connection in the middle of DATA, tempfail the end of data, never
    greet, or stop answering at RCPT.
    Returns (listeners, opts)."""
    from storelib import store_opts
    ups = {
        "refuse": raw_upstream_factory(script={"GREETING": b"554 5.3.2 go away\r\n"}),
        "tempfail": raw_upstream_factory(script={"MAIL": b"451 4.3.0 busy\r\n"}),
        "close": raw_upstream_factory(script={"DATA": ("close_after", 100)}),
        "eodfail": raw_upstream_factory(script={"EOD": b"452 4.3.1 out of space\r\n"}),
        # never greets / stops answering at RCPT: the upstream deadlines
        "nogreet": raw_upstream_factory(script={"GREETING": "silent"}),
        "silent": raw_upstream_factory(script={"RCPT": "silent"}),
    }
    listeners = [("ok", "127.0.0.1:%d" % mwlib.free_port(), sink_addr, None)]
    for name, up in ups.items():
        listeners.append((name, "127.0.0.1:%d" % mwlib.free_port(), up.addr, None))
    opts = [mwlib.plugin_opt(), ("log_level", "info"), ("max_connections_per_ip", "1000"),
            ("upstream_connect_timeout", "700ms"), ("upstream_command_timeout", "700ms"),
            ("inbound_tag_score", "3"), ("inbound_quarantine_score", "5"),
            ("inbound_reject_score", "15"), ("quarantine_reply", "250 2.0.0 Held for review"),
            ("filters", "greylist"), ("greylist_delay", "1h"),
            ("greylist_whitelist", "to:@example.net")] + store_opts("lmdb", tmp_path)
    if pki is not None:
        from tlslib import listener_tls_opts
        chain, key = pki.cert("mx.example.test")
        listeners.append(("tls", "127.0.0.1:%d" % mwlib.free_port(), sink_addr, None))
        opts += listener_tls_opts(chain, key, name="tls")
    return listeners, opts + list(extra_opts)


def run_pool(n, workers, one, stop=None):
    """one(i) for i in 0..n-1, workers threads at a time (until stop is set)"""
    idx = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if idx[0] >= n or (stop is not None and stop.is_set()):
                    return
                i = idx[0]
                idx[0] += 1
            one(i)
    ts = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def run_mix(mw, n, mix=PROXY_MIX, workers=8, tls_ctx=None, outcome=None, size=0, stop=None,
            tempfail_ok=False):
    """n sessions of the mix, workers at a time; returns the Outcome.  A
    session whose end differs from EXPECT is counted as an error (with
    tempfail_ok, a 4xx where a 250 was expected is not: the scanner was
    killed on purpose)."""
    outcome = outcome or Outcome()

    def one(i):
        scen, ln = mix[i % len(mix)]
        kind, why = smtp_session(mw.ports[ln], scen, tls_ctx=tls_ctx, size=size)
        want = EXPECT.get((scen, ln))
        if tempfail_ok and kind == "refused" and b" 4." in (why if isinstance(why, bytes) else b""):
            want = "refused"
        if kind == "error" or (want is not None and kind != want):
            outcome.add("error", "%s@%s" % (scen, ln), "%s (wanted %s): %r" % (kind, want, why))
        else:
            outcome.add(kind, "%s@%s" % (scen, ln))
    run_pool(n, workers, one, stop)
    return outcome


# --- a milter client (the MTA's side of the protocol, version 6) ---------------

def _reply(r):
    """a step's reply command, None where it was negotiated away"""
    return None if r is None else r[0]


def milter_session(port, scenario, size=0):
    """One MTA connection of the named scenario; returns (kind, why)."""
    m = RawMilter(port, timeout=20.0)
    try:
        m.negotiate()
        if scenario == "drop_negotiate":
            return "dropped", None
        m.step(b"C", b"client.example.org\0" + b"4" + struct.pack("!H", 40000 + random.getrandbits(12))
               + b"192.0.2.10\0")
        m.step(b"H", b"client.example.org\0")
        if scenario == "drop_helo":
            return "dropped", None
        for txn in range(2 if scenario == "abort_then_send" else 1):
            m.send(b"D", b"M" + b"i\0" + b"Q%08X\0" % random.getrandbits(32))
            r = _reply(m.step(b"M", b"<sender@example.org>\0SIZE=100\0"))
            if r not in (None, b"c"):
                return "refused", r
            if scenario == "drop_mail":
                return "dropped", None
            rcpt = b"<refuse-me@example.net>" if scenario == "rcpt_refused" else b"<rcpt@example.net>"
            r = _reply(m.step(b"R", rcpt + b"\0"))
            if scenario == "rcpt_refused":
                m.send(b"A")          # abort has no reply
                return ("refused" if r in (b"r", b"t", b"y") else "error"), r
            if scenario == "drop_rcpt":
                return "dropped", None
            msg = _content("milter soak %s" % scenario, size=size)
            head, body = msg.split(b"\r\n\r\n", 1)
            for line in head.split(b"\r\n"):
                name, value = line.split(b":", 1)
                m.step(b"L", name + b"\0" + value.lstrip() + b"\0")
            m.step(b"N")
            chunk = 65535
            for i in range(0, len(body), chunk):
                m.step(b"B", body[i:i + chunk])
                if scenario == "drop_body":
                    return "dropped", None
            if scenario == "abort_then_send" and txn == 0:
                m.send(b"A")
                continue
            if scenario == "drop_eom":
                m.send(b"E")
                return "dropped", None
            v = m.eom()[0]
            kind = "accepted" if v in (b"c", b"a") else "refused"
        m.send(b"Q")
        return kind, v
    except (ConnectionError, socket.timeout, OSError, AssertionError) as e:
        return "error", repr(e)
    finally:
        m.close()


MILTER_MIX = ["normal", "abort_then_send", "rcpt_refused", "drop_negotiate", "drop_helo",
              "drop_mail", "drop_rcpt", "drop_body", "drop_eom", "normal"]
MILTER_EXPECT = {"normal": "accepted", "abort_then_send": "accepted", "rcpt_refused": "refused"}


def run_milter_mix(port, n, workers=8, outcome=None, size=0):
    outcome = outcome or Outcome()

    def one(i):
        scen = MILTER_MIX[i % len(MILTER_MIX)]
        kind, why = milter_session(port, scen, size=size)
        want = MILTER_EXPECT.get(scen)
        if kind == "error" or (want is not None and kind != want):
            outcome.add("error", "milter-" + scen, "%s (wanted %s): %r" % (kind, want, why))
        else:
            outcome.add(kind, "milter-" + scen)
    run_pool(n, workers, one)
    return outcome
