"""postfixlib.py - a real Postfix as a test peer, started and stopped by
the test in its own config_directory, queue_directory and data_directory
under a temporary directory.

It listens on 127.0.0.1:PORT only, relays everything to relayhost (a
capture sink on loopback), looks up nothing in DNS and delivers nothing
locally.  Its log goes to DIR/maillog (postlogd).  Reusable by any test
that needs Postfix: pass extra main.cf settings in `main`, extra master.cf
lines in `master`.

    pf = Postfix(tmp_path / "pf", relayhost="127.0.0.1:2526",
                 main={"smtpd_authorized_xclient_hosts": "127.0.0.1"}).start()
    ... pf.port ...
    pf.stop()

Needs root (Postfix's master runs as root and drops to mail_owner) and
Debian's postfix package (users postfix, group postdrop)."""

import os
import shutil
import subprocess
import tempfile
import time

import mwlib

POSTFIX = "/usr/sbin/postfix"
DAEMON_DIR = "/usr/lib/postfix/sbin"

_MASTER = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def available():
    return os.geteuid() == 0 and os.path.exists(POSTFIX) and shutil.which("postconf") is not None


class Postfix:
    def __init__(self, tmpdir, relayhost, port=None, main=None, master=""):
        # Postfix's daemons run as the postfix user and must reach their
        # directories: pytest's tmp_path is mode 0700 (root only), so the
        # instance lives in a directory of its own under /tmp (tmpdir is
        # only its name prefix) and is removed by stop()
        self.dir = tempfile.mkdtemp(prefix="mw-postfix-%s-" % os.path.basename(str(tmpdir)))
        os.chmod(self.dir, 0o755)
        mwlib.OUR_DIRS.append(self.dir)
        self.final_log = None
        self.conf = os.path.join(self.dir, "conf")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "maillog")
        self.port = port or mwlib.free_port()
        self.relayhost = relayhost
        self.main = dict(main or {})
        self.master = master
        self.started = False

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def _main_cf(self):
        host, port = self.relayhost.rsplit(":", 1)
        cf = {
            "compatibility_level": "3.6",
            "config_directory": self.conf,
            "queue_directory": self.queue,
            "data_directory": self.data,
            "daemon_directory": DAEMON_DIR,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "pf.example.test",
            "mydomain": "example.test",
            "myorigin": "example.test",
            "mydestination": "",
            "local_recipient_maps": "",
            "local_transport": "error:5.1.1 no local delivery here",
            "alias_maps": "",
            "alias_database": "",
            "relayhost": "[%s]:%s" % (host, port),
            "relay_domains": "",
            "mynetworks": "127.0.0.1/32",
            "smtp_host_lookup": "native",
            "smtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            "biff": "no",
            "maillog_file": self.logfile,
            "maillog_file_prefixes": self.dir,     # the default allows only /var and /dev/stdout
            "smtputf8_enable": "no",
            "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "5s",
            "shlib_directory": "no",
            "meta_directory": self.conf,
            "smtpd_banner": "$myhostname ESMTP Postfix-under-test",
            "import_environment": "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C",
        }
        cf.update(self.main)
        return "".join("%s = %s\n" % kv for kv in cf.items())

    def start(self, timeout=15.0):
        """Starts the instance, or stops what did start and removes the
        directory before raising: a caller that gets no instance back has
        nothing to stop."""
        try:
            return self._start(timeout)
        except BaseException:
            self.started = True     # a master may be up though `postfix start` failed
            self.stop()
            raise

    def _start(self, timeout):
        os.makedirs(self.conf, exist_ok=True)
        os.makedirs(self.data, exist_ok=True)
        os.makedirs(self.queue, exist_ok=True)
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(self._main_cf())
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(_MASTER.format(listen=self.addr) + self.master)
        # postfix-files (post-install) is read from the meta directory
        for name in ("postfix-files", "dynamicmaps.cf"):
            src = os.path.join("/etc/postfix", name)
            if os.path.exists(src):
                shutil.copy(src, os.path.join(self.conf, name))
        os.makedirs(os.path.join(self.conf, "dynamicmaps.cf.d"), exist_ok=True)
        os.makedirs(os.path.join(self.conf, "postfix-files.d"), exist_ok=True)
        shutil.chown(self.data, "postfix", "postfix")
        r = subprocess.run([POSTFIX, "-c", self.conf, "start"], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, MAIL_CONFIG=self.conf))
        if r.returncode != 0:
            raise RuntimeError("postfix start failed: %s%s\n%s" % (r.stdout, r.stderr, self.log()))
        self.started = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if mwlib._port_open("127.0.0.1", self.port):
                return self
            time.sleep(0.1)
        raise RuntimeError("postfix did not listen on %s\n%s" % (self.addr, self.log()))

    def stop(self):
        """Stops the instance and removes its directory (also one never
        started: __init__ made it)."""
        if not self.started:
            if self.final_log is None:
                self.final_log = self.log()
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        subprocess.run([POSTFIX, "-c", self.conf, "stop"], capture_output=True, timeout=60,
                       env=dict(os.environ, MAIL_CONFIG=self.conf))
        # wait for the master to be gone (its pid file)
        pidfile = os.path.join(self.queue, "pid", "master.pid")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                pid = int(open(pidfile).read().strip())
                os.kill(pid, 0)
            except (OSError, ValueError):
                break
            time.sleep(0.1)
        self.started = False
        self.final_log = self.log()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        if self.final_log is not None:
            return self.final_log
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_log(self, text, timeout=10.0):
        return mwlib.wait_until(lambda: text in self.log(), timeout, 0.1)


README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")


def readme_service(marker, service, listen=None):
    """The master.cf entry of service (its line and the -o lines that
    continue it) in the first code block after marker in README.md, so
    that a test runs the README's recipe as written.  listen replaces the
    service's address (an inet service), and the chroot column is "n" (the
    test instance has no chroot)."""
    with open(README) as f:
        text = f.read()
    assert marker in text, marker
    block = text.split(marker, 1)[1].split("```", 2)[1]
    out, taking = [], False
    for line in block.splitlines():
        if line[:1] in (" ", "\t"):
            if taking and line.strip().startswith("-o"):
                out.append(line)
            continue
        taking = line.split()[:1] == [service]
        if taking:
            cols = line.split()
            if listen is not None:
                cols[0] = listen
            cols[4] = "n"
            out.append(" ".join(cols))
    assert out, "no %s in the README block after %r" % (service, marker)
    return "\n".join(out) + "\n"
