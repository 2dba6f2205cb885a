"""quarantinelib.py - helpers of the quarantine tests: run `mailwarden
quarantine ...` with the same store and audit log as a daemon under test,
and put a message into the quarantine through the proxy."""

import json
import os
import socket
import subprocess
import threading

from mwlib import MW_BIN, free_port, make_msg, plugin_opt, run_mw

CRLF = b"\r\n"


def q(m, *args, opts=(), timeout=30):
    """`mailwarden quarantine ARGS` against daemon m's store and audit log;
    returns CompletedProcess (bytes)."""
    cmd = ["quarantine", "-o", "quarantine_dir=%s" % m.quarantine_dir,
           "-o", "audit_log=%s" % m.audit_path, "-o", "log_level=warning"]
    for k, v in opts:
        cmd += ["-o", "%s=%s" % (k, v)]
    return run_mw(cmd + list(args), timeout=timeout)


def q_ok(m, *args, **kw):
    r = q(m, *args, **kw)
    assert r.returncode == 0, "quarantine %s: rc=%d\n%s" % (args, r.returncode, r.stderr.decode())
    return r


def q_list(m, *args, **kw):
    """The entries of `list --json`."""
    r = q_ok(m, "list", "--json", *args, **kw)
    return json.loads(r.stdout.decode("utf-8"))


def quarantine_opts(*extra):
    """Daemon options: the example plugin, quarantine at score 5."""
    return [plugin_opt(), ("inbound_tag_score", "3"), ("inbound_quarantine_score", "5"),
            ("inbound_reject_score", "15"), ("quarantine_reply", "250 2.0.0 Held for review")] \
        + list(extra)


def spam_msg(subject="buy viagra now", body=None, headers=None):
    """A message the example plugin scores 6 (its Subject holds "viagra")."""
    return make_msg(subject=subject, body=body, headers=headers)


def released(msg, score="6.0", required="3.0", tests="EXAMPLE_SUBJECT_WORD"):
    """msg as a release sends it when it came without X-Spam-* fields and
    no filter wrote Authentication-Results: the fields a tagged message
    gets, on top of it (the example plugin scores spam_msg 6)."""
    return (b"X-Spam-Flag: YES\r\nX-Spam-Score: %s\r\n"
            b"X-Spam-Status: Yes, score=%s required=%s tests=%s\r\n"
            % (score.encode(), score.encode(), required.encode(), tests.encode())) + msg


def quarantine_one(m, msg, frm="sender@example.org", rcpts=("rcpt@example.net",),
                   smtputf8=False):
    """Send msg through the proxy; returns the final reply."""
    c = m.client()
    c.ehlo()
    r = c.transaction(frm, list(rcpts), msg, mail_params="SMTPUTF8" if smtputf8 else "")
    c.quit()
    return r["final"]


def entry_files(m):
    """{id: [files]} of the store (recursively)."""
    out = {}
    for root, _, files in os.walk(m.quarantine_dir):
        for f in files:
            if f.startswith("."):
                continue
            out.setdefault(f.rsplit(".", 1)[0], []).append(os.path.join(root, f))
    return out


class GatedUpstream:
    """An SMTP server that, at the step named by hold ("GREETING", "DATA"
    or "EOD"), sets reached and waits for gate before it replies: a
    release held there while a test changes the entry's files as the
    daemon's user could, with no race (session 16 review)."""

    def __init__(self, hold):
        self.hold = hold
        self.gate = threading.Event()
        self.reached = threading.Event()
        self.port = free_port()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", self.port))
        self.ls.listen(4)
        self.data = b""
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def _wait(self, step):
        if self.hold == step:
            self.reached.set()
            self.gate.wait(20)

    def _run(self):
        try:
            c, _ = self.ls.accept()
        except OSError:
            return
        f = c.makefile("rb")
        try:
            self._wait("GREETING")
            c.sendall(b"220 gated ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"EHLO":
                    c.sendall(b"250-gated\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")
                elif verb == b"DATA":
                    self._wait("DATA")
                    c.sendall(b"354 go\r\n")
                    while True:
                        dl = f.readline()
                        if not dl or dl == b".\r\n":
                            break
                        self.data += dl[1:] if dl.startswith(b"..") else dl
                    self._wait("EOD")
                    self.done.set()
                    c.sendall(b"250 2.0.0 Ok: queued as GATED1\r\n")
                elif verb == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(b"250 ok\r\n")
        except OSError:
            return
        finally:
            c.close()

    def stop(self):
        self.gate.set()
        self.ls.close()


def q_popen(m, *args, opts=()):
    """`mailwarden quarantine ARGS` as q(), started in the background"""
    cmd = [MW_BIN, "quarantine", "-o", "quarantine_dir=%s" % m.quarantine_dir,
           "-o", "audit_log=%s" % m.audit_path, "-o", "log_level=warning"]
    for k, v in opts:
        cmd += ["-o", "%s=%s" % (k, v)]
    return subprocess.Popen(cmd + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
