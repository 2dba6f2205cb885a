"""test_config.py - `mailwarden -t` on good and bad configurations: exit
status, and "FILE:LINE: message" (or "-o NAME: message") on stderr."""

import os
import re
import subprocess
import time

import pytest

from mwlib import MW_BIN, MW_PLUGIN, free_port, preload_shim, run_mw

GOOD = """\
# a comment
; another comment
hostname = mx.test.example
message_size_limit = 10M
client_command_timeout = 5m
greet_pause = 250ms
bare_newline = normalize
reject_reply = 550 5.7.1 No thanks
subject_tag = [SPAM]

[listener in]
listen = 127.0.0.1:2525
upstream = 127.0.0.1:25
direction = inbound

[listener out6]
listen = [::1]:2587
upstream = [::1]:10025
direction = outbound
"""


def check(*args):
    p = run_mw(["-t"] + list(args))
    return p.returncode, p.stderr.decode("utf-8", "replace")


def test_defaults_are_valid():
    rc, err = check()
    assert rc == 0, err


def test_good_file(tmp_path):
    f = tmp_path / "good.conf"
    f.write_text(GOOD)
    rc, err = check("-c", str(f))
    assert rc == 0, err


def test_verbose_dump_reads_back(tmp_path):
    # -t -v prints every setting in effect, as a file that checks clean again
    p = run_mw(["-t", "-v", "-o", "message_size_limit=40M",
                "-o", "listener.x.listen=127.0.0.1:2525", "-o", "listener.x.upstream=127.0.0.1:25"])
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert re.search(r"^message_size_limit = 41943040$|^message_size_limit = 40M$", out, re.M), out
    assert "[listener x]" in out and re.search(r"^proxy_threads = ", out, re.M)
    dump = "\n".join(l for l in out.splitlines() if not l.endswith("configuration OK"))
    f = tmp_path / "dump.conf"
    f.write_text(dump + "\n")
    rc, err = check("-c", str(f))
    assert rc == 0, err


def test_milter_peer_timeout_in_dump():
    """The wait on the MTA (smfi_settimeout) has a default below
    libmilter's 7,210 s and a dump shows it."""
    out = run_mw(["-t", "-v"]).stdout.decode()
    assert re.search(r"^milter_peer_timeout = 600s$", out, re.M), out
    p = run_mw(["-t", "-v", "-o", "milter_peer_timeout=45m"])
    assert p.returncode == 0 and re.search(r"^milter_peer_timeout = 2700s$", p.stdout.decode(), re.M), p


def test_good_overrides():
    rc, err = check("-o", "message_size_limit=40M", "-o", "max_recipients=100",
                    "-o", "listener.x.listen=127.0.0.1:2525", "-o", "listener.x.upstream=127.0.0.1:25",
                    "-o", "listener.x.direction=outbound", "-o", "early_talker=reject")
    assert rc == 0, err


# (file text, line of the error, a word the message must hold)
BAD_FILES = {
    "unknown-key": ("hostname = a.example\n\nno_such_setting = 1\n", 3, "no_such_setting"),
    "bad-size": ("# c\nmessage_size_limit = lots\n", 2, "lots"),
    "bad-number": ("max_recipients = ten\n", 1, "ten"),
    "below-minimum": ("\n\n\n\nmax_recipients = 0\n", 5, "max_recipients|minimum|0"),
    "above-maximum": ("scanner_threads = 100000\n", 1, "scanner_threads|maximum|100000"),
    "command-line-too-small": ("command_line_limit = 100\n", 1, "command_line_limit|minimum|100"),
    "milter-peer-timeout-too-small": ("milter_peer_timeout = 500ms\n", 1, "milter_peer_timeout|minimum|500ms"),
    "bad-enum": ("log_level = info\nbare_newline = sometimes\n", 2, "sometimes"),
    "bad-duration": ("client_command_timeout = 5 fortnights\n", 1, "fortnights"),
    "bad-reply-code": ("reject_reply = 250 2.0.0 fine\n", 1, "250"),
    "relative-path": ("audit_log = relative/audit.log\n", 1, "relative"),
    "no-equals": ("hostname = a.example\nthis line has no equals sign\n", 2, ""),
    "listener-bad-port": ("[listener in]\nlisten = 127.0.0.1:99999\nupstream = 127.0.0.1:25\n", 2, "99999|port"),
    "listener-bad-direction": ("[listener in]\nlisten = 127.0.0.1:2525\nupstream = 127.0.0.1:25\n"
                               "direction = sideways\n", 4, "sideways"),
    "listener-unknown-key": ("[listener in]\nlisten = 127.0.0.1:2525\ncolour = blue\n", 3, "colour"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file(tmp_path, case):
    text, line, word = BAD_FILES[case]
    f = tmp_path / "bad.conf"
    f.write_text(text)
    rc, err = check("-c", str(f))
    assert rc == 1, "exit %d for %s\n%s" % (rc, case, err)
    m = re.search(re.escape(str(f)) + r":(\d+): (.+)", err)
    assert m, "no '%s:LINE: message' in stderr: %r" % (f, err)
    assert int(m.group(1)) == line, err
    if word:
        assert re.search(word, m.group(2)), err


BAD_OVERRIDES = {
    "unknown": ("no_such_setting=1", "no_such_setting"),
    "bad-number": ("max_recipients=abc", "max_recipients"),
    "out-of-bounds": ("max_recipients=0", "max_recipients"),
    "bad-duration": ("scan_timeout=forever", "scan_timeout"),
    "bad-listener-key": ("listener.x.colour=blue", "listener.x.colour"),
    "bad-listener-direction": ("listener.x.direction=up", "listener.x.direction"),
}


@pytest.mark.parametrize("case", sorted(BAD_OVERRIDES))
def test_bad_override(case):
    arg, name = BAD_OVERRIDES[case]
    rc, err = check("-o", arg)
    assert rc == 1, "exit %d for -o %s\n%s" % (rc, arg, err)
    assert re.search(r"-o " + re.escape(name) + r": \S", err), err


def test_override_without_equals():
    rc, err = check("-o", "justaname")
    assert rc == 1, err
    assert "justaname" in err


def test_file_error_not_hidden_by_override(tmp_path):
    f = tmp_path / "bad.conf"
    f.write_text("max_recipients = 0\n")
    # the file's value is checked as read: still an error
    rc, err = check("-c", str(f), "-o", "max_recipients=10")
    assert rc == 1 and "%s:1:" % f in err, err


def test_missing_config_file(tmp_path):
    rc, err = check("-c", str(tmp_path / "nope.conf"))
    assert rc != 0
    assert "nope.conf" in err


def test_plugin_that_does_not_load(tmp_path):
    rc, err = check("-o", "plugin=%s word=x" % (tmp_path / "missing.so"))
    assert rc == 1, err
    assert "missing.so" in err


def test_plugin_that_loads():
    assert MW_PLUGIN, "MW_PLUGIN not set"
    rc, err = check("-o", "plugin=%s word=viagra score=6" % MW_PLUGIN)
    assert rc == 0, err


def test_plugin_bad_argument():
    rc, err = check("-o", "plugin=%s notkeyvalue" % MW_PLUGIN)
    assert rc == 1, err
    assert "-o plugin:" in err, err


def test_daemon_refuses_bad_config(tmp_path):
    t0 = time.monotonic()
    p = subprocess.run([MW_BIN, "-f", "-o", "max_recipients=0", "--listen", "127.0.0.1:%d" % free_port(),
                        "--upstream", "127.0.0.1:25"], capture_output=True, timeout=10)
    assert p.returncode == 1
    assert b"-o max_recipients:" in p.stderr, p.stderr
    assert time.monotonic() - t0 < 5


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (user = nobody)")
def test_tls_key_only_root_may_read(tmp_path):
    """The proxy loads the listeners' certificates as "user": a key only
    root may read fails -t and the start, naming the user.  Before, -t
    (which loaded them as root) said "configuration OK" and the proxy,
    as user, died at every start with OpenSSL's "system lib"; the master
    stayed up and no listener ever answered."""
    import shutil
    import tempfile
    from tlslib import PKI
    # a directory anybody may pass through (pytest's are root's, 0700):
    # only the key's own mode keeps nobody out
    pub = tempfile.mkdtemp(prefix="mw-tlskey-", dir="/tmp")
    try:
        os.chmod(pub, 0o755)
        chain, key = PKI(os.path.join(pub, "pki")).cert("mx.test")
        os.chmod(os.path.join(pub, "pki"), 0o755)
        os.chmod(chain, 0o644)
        os.chmod(key, 0o600)
        tls_key_only_root_may_read(tmp_path, chain, key)
    finally:
        shutil.rmtree(pub)


def tls_key_only_root_may_read(tmp_path, chain, key):
    conf = tmp_path / "mw.conf"
    conf.write_text("user = nobody\naudit_log =\nstats_file =\nquarantine_dir = %s\n"
                    "dns_forwarder = 127.0.0.1@%d\ndns_client_name = no\n"
                    "[listener mx]\nlisten = 127.0.0.1:%d\nupstream = 127.0.0.1:25\n"
                    "tls = starttls\ntls_cert = %s\ntls_key = %s\n" % (tmp_path / "q", free_port(), free_port(),
                                                               chain, key))
    rc, err = check("-c", str(conf))
    assert rc == 1 and "not readable by user nobody" in err and key in err, (rc, err)
    p = subprocess.run([MW_BIN, "-f", "-c", str(conf)], capture_output=True, timeout=15)
    assert p.returncode == 1 and b"not readable by user nobody" in p.stderr, p


def test_tls_key_missing_is_named(tmp_path):
    """a key that is not there: the setting and the path, not OpenSSL's
    "system lib" """
    from tlslib import PKI
    chain, _ = PKI(tmp_path / "pki").cert("mx.test")
    rc, err = check("-o", "listener.mx.listen=127.0.0.1:%d" % free_port(), "-o", "listener.mx.upstream=127.0.0.1:25",
                    "-o", "listener.mx.tls=starttls", "-o", "listener.mx.tls_cert=%s" % chain,
                    "-o", "listener.mx.tls_key=%s" % (tmp_path / "gone.key"))
    assert rc == 1 and "tls_key %s: No such file or directory" % (tmp_path / "gone.key") in err, err


PROXY_ONLY = [("max_recipients", "2"), ("greet_pause", "2s"), ("early_talker", "reject"),
              ("max_connections_per_ip", "1"), ("bare_newline", "normalize")]


def test_check_warns_of_proxy_settings_a_milter_only_config_ignores(tmp_path):
    """A milter-only config (milter_listen, no listener) with settings only
    the SMTP proxy reads: -t names each, FILE:LINE, and still passes.
    Before: "configuration OK" and not a word (the milter took 5
    recipients with max_recipients = 2)."""
    conf = tmp_path / "mw.conf"
    conf.write_text("milter_listen = inet:%d@127.0.0.1\naudit_log =\nstats_file =\nquarantine_dir = %s\n"
                    % (free_port(), tmp_path / "q") + "".join("%s = %s\n" % kv for kv in PROXY_ONLY))
    rc, err = check("-c", str(conf))
    assert rc == 0, err
    for line, (name, _) in enumerate(PROXY_ONLY, start=5):
        assert "%s:%d: %s is read only by the proxy; ignored" % (conf, line, name) in err, err


def test_check_warns_of_milter_settings_a_proxy_only_config_ignores(tmp_path):
    """The other way: milter settings without milter_listen; nothing said
    of a setting both front ends read"""
    conf = tmp_path / "mw.conf"
    conf.write_text("milter_early = no\nmilter_default_action = accept\nmax_recipients = 5\n"
                    "milter_timeout = 150s\n"
                    "audit_log =\nstats_file =\nquarantine_dir = %s\n"
                    "[listener mx]\nlisten = 127.0.0.1:%d\nupstream = 127.0.0.1:%d\n"
                    % (tmp_path / "q", free_port(), free_port()))
    rc, err = check("-c", str(conf))
    assert rc == 0, err
    assert "%s:1: milter_early is read only by the milter; ignored" % conf in err, err
    assert "%s:2: milter_default_action is read only by the milter; ignored" % conf in err, err
    # a default written out (as in the dump of -t -v) is no news, nor a
    # setting both front ends read
    assert "milter_timeout" not in err and "max_recipients" not in err, err


def test_check_without_filters_for_systemctl_reload(tmp_path):
    """-t --no-filters (the unit's ExecReload) checks the file but sets up
    no filter: a full -t loads every filter, a whole antivirus engine
    included, at each "systemctl reload", beside the reload's own new
    scanner.  A bad file still fails it; a filter that would not load is
    the reload's scanner's to find (the running config stays)."""
    bad_plugin = "plugin=%s word=x" % (tmp_path / "missing.so")
    rc, err = check("--no-filters", "-o", bad_plugin)
    assert rc == 0, err
    rc, err = check("-o", bad_plugin)
    assert rc == 1 and "missing.so" in err, err
    rc, err = check("--no-filters", "-o", "max_recipients=0")
    assert rc == 1 and "-o max_recipients:" in err, err
    unit = open(os.path.join(os.path.dirname(__file__), "..", "..", "etc", "mailwarden.service")).read()
    reload_check = [l for l in unit.splitlines() if l.startswith("ExecReload=") and " -t " in l]
    assert reload_check and all("--no-filters" in l for l in reload_check), reload_check


# --- a listener relaying to one of our own listeners ---------------------------

def _listeners(*specs):
    """-o settings of listeners given as (name, listen, upstream[, extra...])"""
    args = ["-c", "/dev/null"]
    for name, listen, upstream, *extra in specs:
        args += ["-o", "listener.%s.listen=%s" % (name, listen), "-o", "listener.%s.upstream=%s" % (name, upstream)]
        args += [a for e in extra for a in ("-o", "listener.%s.%s" % (name, e))]
    return args


def _host_address():
    """An address of this host's other than loopback (for a wildcard listen)."""
    out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) > 3 and f[1] != "lo" and f[2] == "inet":
            return f[3].split("/")[0]
    return None


# counts getaddrinfo calls of names (not numbers) and prints them at exit
GAI_COUNT = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long nnamed, nnumeric;
static void report(void) { fprintf(stderr, "gai_count: named=%lu numeric=%lu\n", nnamed, nnumeric); }

int getaddrinfo(const char *node, const char *svc, const struct addrinfo *h, struct addrinfo **res)
{
	static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
	if (real == NULL) { real = dlsym(RTLD_NEXT, "getaddrinfo"); atexit(report); }
	if (node && strspn(node, "0123456789.:abcdefABCDEF[]*") != strlen(node)) nnamed++;
	else nnumeric++;
	return real(node, svc, h, res);
}
"""


def test_listener_loop_check_looks_each_name_up_once(monkeypatch, tmp_path):
    """The loop check resolved every upstream again for each listener and
    parsed every listen address for each pair: N listeners cost N^2
    lookups of upstream names and N^3 parses (16 listeners: 256 lookups,
    -t took 5.2 s with a 20 ms resolver; minutes with one that times out,
    for `systemctl reload`'s check too).  Now each name once per pass."""
    preload_shim(monkeypatch, tmp_path, "gai_count", GAI_COUNT)
    counts = {}
    for n in (4, 16):
        specs = [("l%d" % i, "127.0.0.1:%d" % (30000 + i), "localhost:%d" % (31000 + i)) for i in range(n)]
        rc, err = check("--no-filters", *_listeners(*specs))
        m = re.search(r"gai_count: named=(\d+) numeric=(\d+)", err)
        assert rc == 0 and m, err
        counts[n] = (int(m.group(1)), int(m.group(2)))
    assert counts[16][0] <= 4 * counts[4][0] and counts[16][0] <= 2 * 16, counts
    assert counts[16][1] <= 4 * counts[4][1] + 8, counts


def test_listener_relaying_to_itself_is_an_error():
    """A listener whose upstream is its own address (or, for a wildcard
    listen, any address of this host, on its port) would send each message
    back to itself: -t passed it, and so did the start."""
    p, q = free_port(), free_port()
    for listen, upstream in [("127.0.0.1:%d" % p, "127.0.0.1:%d" % p),
                             ("*:%d" % p, "127.0.0.1:%d" % p),
                             ("0.0.0.0:%d" % p, "127.0.0.9:%d" % p),       # all of 127/8 is ours
                             ("*:%d" % p, "[::1]:%d" % p),
                             ("[::]:%d" % p, "127.0.0.1:%d" % p),          # "::" takes IPv4 too
                             ("127.0.0.1:%d" % p, "0.0.0.0:%d" % p)]:      # connect(0.0.0.0) is loopback
        rc, err = check(*_listeners(("a", listen, upstream)))
        assert rc != 0 and "listener 'a': upstream %s is its own listen address" % upstream in err, \
            (listen, upstream, rc, err)
    addr = _host_address()
    if addr:
        # an interface's address on a wildcard listen: a warning, not an
        # error (a VIP served by IPVS, or a local DNAT to a remote MTA, is
        # on an interface too, and its connections never reach us)
        for listen in ("*:%d" % p, "0.0.0.0:%d" % p):
            rc, err = check(*_listeners(("a", listen, "%s:%d" % (addr, p))))
            assert rc == 0 and "warning" in err and "its own listen address" in err \
                and "IPVS" in err, (listen, err)
        # ... but the listen address itself is surely a loop
        rc, err = check(*_listeners(("a", "%s:%d" % (addr, p), "%s:%d" % (addr, p))))
        assert rc != 0 and "its own listen address" in err and "IPVS" not in err, err
    # not ours: another port, another loopback address, IPv6 on an IPv4 wildcard
    for listen, upstream in [("*:%d" % p, "127.0.0.1:%d" % q),
                             ("127.0.0.1:%d" % p, "127.0.0.2:%d" % p),
                             ("0.0.0.0:%d" % p, "[::1]:%d" % p),
                             ("127.0.0.1:%d" % p, "192.0.2.200:%d" % p)]:
        rc, err = check(*_listeners(("a", listen, upstream)))
        assert rc == 0 and "listen address" not in err, (listen, upstream, err)


def test_listeners_relaying_in_a_circle_is_an_error_a_chain_a_warning():
    p, q, r = free_port(), free_port(), free_port()
    rc, err = check(*_listeners(("a", "127.0.0.1:%d" % p, "127.0.0.1:%d" % q),
                                ("b", "127.0.0.1:%d" % q, "127.0.0.1:%d" % p)))
    assert rc != 0 and "'a' -> 'b' -> 'a'" in err and "loop" in err, err
    # a chain that ends at an MTA: plausible (scanned twice), a warning
    rc, err = check(*_listeners(("a", "127.0.0.1:%d" % p, "127.0.0.1:%d" % q),
                                ("b", "127.0.0.1:%d" % q, "127.0.0.1:%d" % r)))
    assert rc == 0, err
    assert "warning: listener 'a': upstream 127.0.0.1:%d is the listen address 127.0.0.1:%d of " \
           "listener 'b'" % (q, q) in err and "passes mailwarden twice" in err, err
    assert "listener 'b'" not in err.replace("of listener 'b'", ""), err
    # a transparent listener refuses a connection to its own address
    rc, err = check(*_listeners(("a", "127.0.0.1:%d" % p, "127.0.0.1:%d" % q),
                                ("t", "127.0.0.1:%d" % q, "127.0.0.1:%d" % r, "transparent=yes")))
    assert rc != 0 and "transparent listener 't'" in err and "421" in err, err


def test_start_refuses_a_loop_and_logs_a_chain(mw_factory, upstream):
    p = free_port()
    d = subprocess.Popen([MW_BIN, "-f"] + _listeners(("a", "127.0.0.1:%d" % p, "127.0.0.1:%d" % p)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = d.communicate(timeout=10)
    except subprocess.TimeoutExpired:          # it started: stop it and its children
        os.killpg(d.pid, 9)
        _, err = d.communicate()
    assert d.returncode not in (None, 0, -9) and b"its own listen address" in err, (d.returncode, err)
    a, b = "127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()
    m = mw_factory(upstream, listeners=[("a", a, b, None), ("b", b, upstream.addr, None)], wait_probe=False)
    assert "upstream %s is the listen address %s of listener 'b'" % (b, b) in m.stderr_text()
