"""spamdlib.py - Debian's SpamAssassin spamd started on a free loopback
port for the tests, with a small rule set of the test's own (local tests
only, no user config, no network tests), stopped afterwards."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

import mwlib
from mwlib import free_port, wait_until

RULES = """required_score 5.0
header MW_SPAMD_MARKER Subject =~ /mwtest-spamd-marker/
score MW_SPAMD_MARKER 7.5
describe MW_SPAMD_MARKER Subject carries the test marker
body MW_SPAMD_BODY /cheap pills/
score MW_SPAMD_BODY 1.25
"""


class Spamd:
    def __init__(self):
        # spamd drops to "nobody", which cannot enter pytest's 0700 tmp
        # dirs: the rules go to a world-readable dir of our own
        self.dir = tempfile.mkdtemp(prefix="mw-spamd-")
        os.chmod(self.dir, 0o755)
        mwlib.OUR_DIRS.append(self.dir)
        self.port = free_port()
        self.proc = None

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        exe = shutil.which("spamd") or "/usr/sbin/spamd"
        if not os.access(exe, os.X_OK):
            pytest.fail("spamd is not installed (scripts/install-deps installs spamassassin)")
        cfg = os.path.join(self.dir, "rules")
        site = os.path.join(self.dir, "site")
        os.makedirs(cfg, exist_ok=True)
        os.makedirs(site, exist_ok=True)
        with open(os.path.join(cfg, "init.pre"), "w") as f:
            f.write("loadplugin Mail::SpamAssassin::Plugin::Check\n")
        with open(os.path.join(cfg, "10_mwtest.cf"), "w") as f:
            f.write(RULES)
        self.log = open(os.path.join(self.dir, "spamd.log"), "wb")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "-i", "127.0.0.1", "-A", "127.0.0.1", "-L",
             "--configpath", cfg, "--siteconfigpath", site, "--nouser-config",
             "-u", "nobody", "--max-children", "2", "-s", "stderr",
             "--pidfile", os.path.join(self.dir, "spamd.pid")],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_until(self.ready, 30.0, 0.1):
            with open(os.path.join(self.dir, "spamd.log"), "rb") as f:
                log = f.read()[-2000:]
            self.stop()
            pytest.fail("spamd did not start on %s:\n%s" % (self.addr, log.decode(errors="replace")))
        return self

    def ready(self):
        if self.proc.poll() is not None:
            return False
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            s.sendall(b"PING SPAMC/1.5\r\n\r\n")
            ok = s.recv(100).startswith(b"SPAMD/")
            s.close()
            return ok
        except OSError:
            return False

    def stop(self):
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)   # spamd and its children
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            self.proc = None
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def spamd_server():
    s = Spamd().start()
    yield s
    s.stop()
