"""test_soak.py - the daemon under load must give back what each session,
reload and scanner restart took: hundreds of sessions of a mix (normal,
pipelined, RSET, BDAT, STARTTLS, a filter reject, a quarantined message, a
greylisted sender, client hang-ups at every stage, upstreams that refuse,
tempfail, close mid-DATA or tempfail the end of data) through the proxy,
a mix through the milter front end, then SIGHUP reloads and a killed
scanner under load; afterwards every process's descriptors are back at
their baseline, no spool is left, no child is a zombie, memory grew
little, every client got an answer and every accepted message reached the
upstream.  The long version with the figures is tests/bench/soak.py."""
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

import soaklib
from mwlib import MW_BIN, free_port, plugin_opt, wait_until
from tlslib import PKI

FD_SLACK = 2            # descriptors a process may hold above its baseline
RSS_SLACK_KB = 6144     # generous: allocator noise, not growth per session


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def soak_mw(mw_factory, smtp_sink, raw_upstream, tmp_path, pki):
    sink = smtp_sink()
    listeners, opts = soaklib.proxy_setup(tmp_path, sink.addr, raw_upstream, pki=pki)
    milter_port = free_port()
    opts = [(k, v + " reject_rcpt=refuse-me" if k == "plugin" else v) for k, v in opts]
    opts += [("milter_listen", "inet:%d@127.0.0.1" % milter_port), ("milter_early", "yes")]
    m = mw_factory(listeners=listeners, opts=opts)
    m.sink = sink
    m.milter_port = milter_port
    m.tls_ctx = pki.client_context()
    # warm-up: caches, TLS contexts, the store, allocator pools
    soaklib.run_mix(m, 2 * len(soaklib.PROXY_MIX), tls_ctx=m.tls_ctx)
    soaklib.run_milter_mix(milter_port, 2 * len(soaklib.MILTER_MIX))
    yield m
    assert m.stop() == 0
    no_sanitizer_report(m)


def no_sanitizer_report(m):
    """A SANITIZE=1 build reports leaks when each process exits."""
    text = m.stderr_text()
    for what in ("LeakSanitizer", "AddressSanitizer", "runtime error"):
        i = text.find(what)
        assert i < 0, text[max(0, i - 200):i + 3000]


def sink_count(sink):
    return len(os.listdir(sink.dir))


def sink_subjects(sink, skip=0):
    """{scenario: messages} at smtp-sink, from their "Subject: soak NAME"."""
    out = {}
    for c in sink.messages[skip:]:
        for line in c.content.split(b"\n"):
            if line.startswith(b"Subject: soak "):
                name = line[14:].strip().decode()
                out[name] = out.get(name, 0) + 1
                break
    return out


def check_back_to(m, base, roles, what):
    after = soaklib.wait_settled(m, base, roles=roles, slack=FD_SLACK)
    for r in roles:
        assert after.get(r), "%s: no %s process after %s" % (what, r, soaklib.describe(after))
        assert after[r]["fds"] <= base[r]["fds"] + FD_SLACK, \
            "%s: %s holds %d descriptors, %d before (%s -> %s)" % (
                what, r, after[r]["fds"], base[r]["fds"], base[r]["fd_kinds"], after[r]["fd_kinds"])
        # (AddressSanitizer holds freed memory in its quarantine: no bound)
        assert soaklib.sanitized(m.pid) or after[r]["rss_kb"] <= base[r]["rss_kb"] + RSS_SLACK_KB, \
            "%s: %s RSS %d kB, %d before" % (what, r, after[r]["rss_kb"], base[r]["rss_kb"])
        assert after[r]["threads"] <= base[r]["threads"], "%s: %s threads %d, %d before" % (
            what, r, after[r]["threads"], base[r]["threads"])
    assert after["zombies"] == 0, "%s: %d zombie children" % (what, after["zombies"])
    assert after["proxy"]["memfds"] == 0, "%s: the proxy still holds %d spools" % (
        what, after["proxy"]["memfds"])
    return after


def test_proxy_and_milter_mix_leave_nothing_behind(soak_mw):
    m = soak_mw
    base = soaklib.wait_settled(m, soaklib.snapshot(m), timeout=3)
    sunk = sink_count(m.sink)
    q0 = len([f for f in m.quarantine_files() if f.endswith(".eml")])
    o = soaklib.run_mix(m, 25 * len(soaklib.PROXY_MIX), tls_ctx=m.tls_ctx)
    assert o.counts.get("error", 0) == 0, o.errors
    check_back_to(m, base, ("master", "proxy", "scanner"), "proxy mix")
    # nothing lost: each 250 is a message at the upstream (or, for the
    # quarantined ones, in the quarantine); nothing refused or cut short got
    # there.  A client that hangs up right after its final dot may still
    # have its message delivered (the upstream had it whole: RFC 1047).
    held = o.counts.get("quarantine@ok:accepted", 0)
    assert held == 25
    want = {scen: o.counts.get("%s@%s:accepted" % (scen, ln), 0)
            for scen, ln in soaklib.PROXY_MIX if ln in ("ok", "tls") and scen != "quarantine"}

    def delivered():
        got = sink_subjects(m.sink, sunk)
        got.pop("drop_eod", None)
        return got
    wait_until(lambda: sum(delivered().values()) >= sum(want.values()), 5)
    got = delivered()
    assert got == {k: v for k, v in want.items() if v}, (got, want)
    files = m.quarantine_files()
    assert not [f for f in files if ".tmp-" in f], files
    assert len([f for f in files if f.endswith(".eml")]) - q0 == held, files

    o = soaklib.run_milter_mix(m.milter_port, 30 * len(soaklib.MILTER_MIX))
    assert o.counts.get("error", 0) == 0, o.errors
    # the milter keeps idle scanner connections for its workers (8 here),
    # and each is a socket in the scanner too: how many of the 8 the
    # warm-up left open depends on how the sessions overlapped
    base["milter"]["fds"] += 8
    base["scanner"]["fds"] += 8
    check_back_to(m, base, ("master", "proxy", "scanner", "milter"), "milter mix")


def test_reloads_and_scanner_kills_under_load(soak_mw):
    m = soak_mw
    base = soaklib.wait_settled(m, soaklib.snapshot(m), timeout=3)
    stop = threading.Event()
    o = soaklib.Outcome()
    load = threading.Thread(target=soaklib.run_mix, kwargs=dict(
        mw=m, n=10 ** 9, tls_ctx=m.tls_ctx, workers=4, outcome=o, stop=stop, tempfail_ok=True))
    load.start()
    try:
        for _ in range(10):
            m.signal(signal.SIGHUP)
            time.sleep(0.3)
        for _ in range(2):
            pid = m.child_pid("scanner")
            os.kill(pid, signal.SIGKILL)
            assert wait_until(lambda: m.child_pid("scanner") not in (None, pid), 10)
            time.sleep(0.5)
    finally:
        stop.set()
        load.join()
    # every client got an answer (a 4xx while the scanner was gone)
    assert o.counts.get("error", 0) == 0, o.errors
    assert o.counts.get("accepted", 0) > 20, o.counts
    time.sleep(2.5)              # the last old scanner retires 2 s after the switch
    check_back_to(m, base, ("master", "proxy", "scanner", "milter"), "reloads and kills")
    o = soaklib.run_mix(m, 2 * len(soaklib.PROXY_MIX), tls_ctx=m.tls_ctx)
    assert o.counts.get("error", 0) == 0, o.errors


def test_master_leaves_its_stdin_alone(tmp_path, smtp_sink):
    """The master never writes to, or closes, descriptor 0: a stdin that is
    a socket (inetd-style supervisors, a test harness) gets nothing, with
    and without the milter, across a reload."""
    sink = smtp_sink()
    for milter in (False, True):
        ours, theirs = socket.socketpair()
        stdin = "socket:[%d]" % os.fstat(theirs.fileno()).st_ino
        port = free_port()
        cmd = [MW_BIN, "-f", "--listen", "127.0.0.1:%d" % port, "--upstream", sink.addr,
               "-o", "audit_log=" + str(tmp_path / "audit.log"), "-o", "stats_file=" + str(tmp_path / "stats"),
               "-o", "quarantine_dir=" + str(tmp_path / "q"),
               "-o", "dns_forwarder=127.0.0.1@%d" % free_port(), "-o", "dns_client_name=no",
               "-o", "%s=%s" % plugin_opt()]
        if milter:
            cmd += ["-o", "milter_listen=inet:%d@127.0.0.1" % free_port()]
        p = subprocess.Popen(cmd, stdin=theirs, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        try:
            assert wait_until(lambda: soaklib.children_of(p.pid) and len(
                [c for c in soaklib.children_of(p.pid) if c[1] != "?"]) == (3 if milter else 2), 10)
            time.sleep(0.5)
            p.send_signal(signal.SIGHUP)
            time.sleep(1.5)
            ours.settimeout(0.5)
            try:
                got = ours.recv(4096)
            except socket.timeout:
                got = b""
            assert got == b"", "the master wrote %d bytes to its stdin (milter=%s)" % (len(got), milter)
            fd0 = os.readlink("/proc/%d/fd/0" % p.pid)
            assert fd0 == stdin, "the master's stdin %s became %s (milter=%s)" % (stdin, fd0, milter)
        finally:
            p.terminate()
            p.wait(10)
            ours.close()


def test_upstream_garbling_its_quit_reply_leaks_nothing(mw_factory, raw_upstream):
    """An upstream that answers QUIT out of protocol (a bare LF here): the
    connection, which no session owns any more, is still closed."""
    up = raw_upstream(script={"QUIT": b"221 2.0.0 Bye\n"})
    m = mw_factory(up, opts=[plugin_opt(), ("log_level", "info")])
    base = soaklib.wait_settled(m, soaklib.snapshot(m), roles=("proxy",), timeout=3)
    o = soaklib.run_mix(m, 60, mix=[("normal", "default")], workers=4)
    assert o.counts.get("accepted") == 60, (o.counts, o.errors)
    after = soaklib.wait_settled(m, base, roles=("proxy",), slack=FD_SLACK)
    assert after["proxy"]["fds"] <= base["proxy"]["fds"] + FD_SLACK, \
        "the proxy holds %d descriptors, %d before: %s" % (
            after["proxy"]["fds"], base["proxy"]["fds"], after["proxy"]["fd_kinds"])
    assert m.stop() == 0
    no_sanitizer_report(m)


def test_reload_while_upstreams_say_goodbye(mw_factory, raw_upstream):
    """Sessions end, their upstream connections wait for the reply to QUIT,
    and a reload replaces the config meanwhile: the lingering connections
    keep what they need of it (the proxy used to read the freed config)."""
    def slow_quit(up, st):
        time.sleep(1.0)
        return b"221 2.0.0 Bye\r\n"
    up = raw_upstream(script={"QUIT": slow_quit})
    m = mw_factory(up, opts=[plugin_opt(), ("log_level", "info")])
    proxy = m.child_pid("proxy")
    for _ in range(3):
        o = soaklib.run_mix(m, 20, mix=[("normal", "default")], workers=10)
        assert o.counts.get("accepted") == 20, (o.counts, o.errors)
        m.signal(signal.SIGHUP)
        time.sleep(1.5)
    assert m.child_pid("proxy") == proxy, "the proxy died:\n" + m.stderr_tail(40)
    assert "killed by signal" not in m.stderr_text() and "exited with status" not in m.stderr_text()
    o = soaklib.run_mix(m, 10, mix=[("normal", "default")], workers=2)
    assert o.counts.get("accepted") == 10, (o.counts, o.errors)
    assert m.stop() == 0
    no_sanitizer_report(m)


def test_client_that_does_not_read_its_replies_is_held_back(mw_factory, smtp_sink):
    """A client pipelining commands without reading the replies: the proxy
    stops taking its input once the replies pile up (TCP pushes back on the
    client) instead of buffering them without end; once the client reads,
    every command is answered, in order, and the session goes on."""
    # its NOOPs are junk commands (session 21): let them all in
    m = mw_factory(smtp_sink(), opts=[plugin_opt(), ("log_level", "info"),
                                      ("junk_command_limit", "1000000000")])
    proxy = m.child_pid("proxy")
    rss0 = soaklib.proc_stat(proxy)["rss_kb"]
    s = socket.create_connection(("127.0.0.1", m.port))
    s.sendall(b"EHLO client.example.org\r\n")
    blob = b"NOOP\r\n" * (1 << 17)
    s.setblocking(False)
    sent, stalled_since = 0, None
    while sent < 40 * len(blob):          # 31 MB
        try:
            sent += s.send(blob[sent % len(blob):])
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.01)
    grown = soaklib.proc_stat(proxy)["rss_kb"] - rss0
    assert grown < 24 * 1024, "the proxy grew by %d kB for %d bytes of unread pipelining" % (grown, sent)
    assert sent < 40 * len(blob), "the client could pipeline %d bytes without reading" % sent
    # the rest of the last line, QUIT; then every reply, in order
    rest = (b"NOOP\r\n"[sent % 6:] if sent % 6 else b"") + b"QUIT\r\n"
    nnoop = (sent + len(rest)) // 6 - 1
    s.setblocking(True)
    s.settimeout(20)
    sender = threading.Thread(target=s.sendall, args=(rest,))
    sender.start()
    data = bytearray()
    while not data.endswith(b"221 2.0.0 Bye\r\n"):
        d = s.recv(1 << 20)
        assert d, "the proxy closed after %d bytes of replies" % len(data)
        data += d
    sender.join()
    s.close()
    lines = bytes(data).split(b"\r\n")
    assert lines[0].startswith(b"220 ") and sum(1 for l in lines if l.startswith(b"250 ")) == 1 + nnoop
    assert m.child_pid("proxy") == proxy


def test_audit_log_rotation_reaches_both_front_ends(mw_factory, smtp_sink):
    """logrotate renames the audit log and sends SIGHUP: the proxy and the
    milter both write their next records into the new file (the milter
    used to go on writing into the rotated one for as long as it ran)."""
    port = free_port()
    m = mw_factory(smtp_sink(), opts=[plugin_opt(), ("milter_listen", "inet:%d@127.0.0.1" % port)])

    def records(path):
        try:
            with open(path, "rb") as f:
                return [l for l in f.read().splitlines() if l.strip()]
        except FileNotFoundError:
            return []
    assert soaklib.milter_session(port, "normal")[0] == "accepted"
    assert wait_until(lambda: len(records(m.audit_path)) == 1, 5)
    os.rename(m.audit_path, m.audit_path + ".1")
    m.signal(signal.SIGHUP)
    assert wait_until(lambda: "reload: scanner pid=" in m.stderr_text()
                      and "milter: scanner address updated" in m.stderr_text(), 10)
    time.sleep(0.3)
    assert soaklib.milter_session(port, "normal")[0] == "accepted"
    assert soaklib.smtp_session(m.port, "normal")[0] == "accepted"
    assert wait_until(lambda: len(records(m.audit_path)) == 2, 5), \
        "new log: %r\nrotated: %r" % (records(m.audit_path), records(m.audit_path + ".1"))
    assert len(records(m.audit_path + ".1")) == 1
    assert sorted(b'"listener":"milter"' in r for r in records(m.audit_path)) == [False, True]


def test_reload_picks_up_renewed_certificates(mw_factory, smtp_sink, pki, tmp_path):
    """A certificate renewed in place (same file names) is served after a
    SIGHUP; a session whose TLS started before goes on; a renewal that
    does not load keeps the running certificate; reloads leak nothing."""
    import hashlib
    import shutil
    from tlslib import listener_tls_opts
    sink = smtp_sink()
    a, b = pki.cert("mx.example.test"), pki.cert("renewed.example.test")
    chain, key = str(tmp_path / "chain.pem"), str(tmp_path / "key.pem")
    shutil.copy(a[0], chain)
    shutil.copy(a[1], key)
    port = free_port()
    m = mw_factory(listeners=[("t", "127.0.0.1:%d" % port, sink.addr, None)],
                   opts=[plugin_opt(), ("log_level", "info")] + listener_tls_opts(chain, key, name="t"))
    ctx = pki.client_context(verify=False)

    def tls_client():
        c = soaklib.Client(port)
        c.reply()
        c.cmd(b"EHLO client.example.org")
        c.starttls(ctx)
        c.cmd(b"EHLO client.example.org")
        return c, hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest()

    def fingerprint(path):
        import ssl as _ssl
        return hashlib.sha256(_ssl.PEM_cert_to_DER_cert(open(path).read().split("-----END CERTIFICATE-----")[0]
                                                        + "-----END CERTIFICATE-----\n")).hexdigest()

    def send(c):
        assert c.cmd(b"MAIL FROM:<sender@example.org>")[0] == 250
        assert c.cmd(b"RCPT TO:<rcpt@example.net>")[0] == 250
        assert c.cmd(b"DATA")[0] == 354
        c.send(mwlib_msg())
        return c.reply()[0]

    old, fp = tls_client()
    assert fp == fingerprint(a[0])
    shutil.copy(b[0], chain)
    shutil.copy(b[1], key)
    m.signal(signal.SIGHUP)
    assert wait_until(lambda: m.stderr_text().count("config reloaded") >= 1, 5)
    c, fp = tls_client()
    assert fp == fingerprint(b[0]), "the certificate in use is not the renewed one"
    assert send(c) == 250 and send(old) == 250
    c.close()
    old.close()
    with open(key, "w") as f:
        f.write("not a key\n")
    m.signal(signal.SIGHUP)
    assert wait_until(lambda: "keeps its TLS certificates" in m.stderr_text(), 5)
    c, fp = tls_client()
    assert fp == fingerprint(b[0])
    c.close()
    shutil.copy(b[1], key)
    base = soaklib.wait_settled(m, soaklib.snapshot(m), roles=("proxy",), timeout=2)
    for _ in range(20):
        m.signal(signal.SIGHUP)
        c, _ = tls_client()
        c.close()
        time.sleep(0.1)
    time.sleep(2.5)
    after = soaklib.wait_settled(m, base, roles=("proxy",), slack=FD_SLACK)
    assert after["proxy"]["fds"] <= base["proxy"]["fds"] + FD_SLACK
    assert m.stop() == 0
    no_sanitizer_report(m)


def mwlib_msg():
    from mwlib import dot_stuff, make_msg
    return dot_stuff(make_msg(subject="after the renewal")) + b".\r\n"


def test_antivirus_leaves_no_temporary_files(mw_factory, smtp_sink, tmp_path):
    """Archives with and without the EICAR string through the in-process
    engine: its temporary directory is empty afterwards, the scanner holds
    no more descriptors than before."""
    import avlib
    db = avlib.copy_db(str(tmp_path / "db"))
    avtmp = tmp_path / "avtmp"
    avtmp.mkdir()
    m = mw_factory(smtp_sink(), opts=[("filters", "clamav"), ("av_database", db),
                                      ("av_db_check_interval", "0"), ("av_tmpdir", str(avtmp)),
                                      ("log_level", "info")])
    msgs = [avlib.with_attachment(avlib.zip_of([("a.com", avlib.EICAR)]), "a.zip"),
            avlib.with_attachment(avlib.zip_of([("b.txt", b"hello " * 5000)]), "b.zip"),
            avlib.with_attachment(avlib.targz_of([("c.com", avlib.EICAR)]), "c.tar.gz"),
            avlib.plain()]
    assert avlib.send(m, msgs[1]).code == 250
    base = soaklib.snapshot(m)
    codes = [avlib.send(m, msgs[i % len(msgs)]).code for i in range(60)]
    assert codes.count(554) == 30 and codes.count(250) == 30, codes
    assert os.listdir(avtmp) == []
    after = soaklib.wait_settled(m, base, roles=("scanner", "proxy"), slack=FD_SLACK)
    assert after["scanner"]["fds"] <= base["scanner"]["fds"] + FD_SLACK, (base["scanner"], after["scanner"])
