"""test_stats.py - the daemon's counters (stats_file, "mailwarden stats"):
sessions, refused connections, transactions by direction and outcome,
bytes, scan times and failures, plain and in Prometheus' text format; a
second daemon on the same file; counts of a stopped daemon."""

import os
import re
import signal
import subprocess
import time

from mwlib import MW_BIN, make_msg, plugin_opt, run_mw, wait_until


def stats(m, *args):
    r = run_mw(["stats", "-o", "stats_file=%s" % m.stats_path] + list(args))
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def plain(m):
    """{name: number} of the plain output, and its first line"""
    out = stats(m)
    first, *rest = out.splitlines()
    return first, {k: float(v) for k, v in (line.split() for line in rest)}


def send(m, msg, frm="a@example.org", rcpts=("b@example.net",)):
    c = m.client()
    c.ehlo()
    r = c.transaction(frm, list(rcpts), msg)
    c.quit()
    return r["final"]


def test_counts_sessions_transactions_and_scans(mw_factory, upstream):
    m = mw_factory(upstream, opts=[plugin_opt(), ("inbound_reject_score", "15"),
                                   ("max_connections_per_ip", "2")])
    _, before = plain(m)
    sessions0 = before["proxy.sessions"]       # the start-up readiness probe is a session
    ok = make_msg(subject="lunch")
    assert send(m, ok).code == 250
    assert send(m, make_msg(subject="x", headers=[("X-Example-Action", "reject")])).code == 550
    assert send(m, make_msg(subject="y", headers=[("X-Example-Action", "quarantine")])).code == 250
    # an aborted transaction: MAIL, RCPT, then RSET
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    assert c.cmd("RSET").code == 250
    # two sessions open: the third connection from this address is refused
    c2 = m.client()
    c3 = m.client()
    assert c3.greeting.code == 421
    first, s = plain(m)
    assert first.startswith("daemon running, pid %d" % m.pid), first
    assert s["proxy.sessions_active"] == 2
    assert s["proxy.connections_refused"] == 1
    c.quit()
    c2.quit()
    assert wait_until(lambda: plain(m)[1]["proxy.sessions_active"] == 0, 5)
    first, s = plain(m)
    assert s["proxy.sessions"] == sessions0 + 5, s
    assert s["proxy.inbound.accept"] == 1
    assert s["proxy.inbound.reject"] == 1
    assert s["proxy.inbound.quarantine"] == 1
    assert s["proxy.inbound.aborted"] == 1
    assert s["proxy.outbound.accept"] == 0
    assert s["proxy.scanned"] == 3
    assert s["proxy.inbound.bytes"] >= len(ok)
    assert s["milter.sessions"] == 0
    # the same in Prometheus' text format
    prom = stats(m, "--prometheus")
    assert "# TYPE mailwarden_transactions_total counter" in prom
    assert 'mailwarden_transactions_total{frontend="proxy",direction="inbound",action="accept"} 1\n' in prom
    assert 'mailwarden_scan_duration_seconds_count{frontend="proxy"} 3\n' in prom
    assert 'mailwarden_scan_duration_seconds_bucket{frontend="proxy",le="+Inf"} 3\n' in prom
    buckets = [int(v) for v in re.findall(r'scan_duration_seconds_bucket\{frontend="proxy",le="[^"]+"\} (\d+)', prom)]
    assert buckets == sorted(buckets) and buckets[-1] == 3, buckets
    assert "mailwarden_up 1\n" in prom
    for line in prom.splitlines():       # every sample line is NAME{labels} NUMBER
        assert line.startswith("#") or re.fullmatch(r'mailwarden_\w+(\{[^}]*\})? [0-9.e+-]+', line), line


def test_reload_scan_failure_and_a_stopped_daemon(mw_factory, upstream):
    m = mw_factory(upstream, opts=[plugin_opt(), ("scan_timeout", "1s")])
    m.signal(signal.SIGHUP)
    assert wait_until(lambda: plain(m)[1] is not None and "1 reload(s)" in plain(m)[0], 10), plain(m)
    # a scan that outlasts scan_timeout: tempfailed, counted as a scan failure
    r = send(m, make_msg(subject="slow", headers=[("X-Example-Sleep", "3000")]))
    assert r.code == 451, r
    first, s = plain(m)
    assert s["proxy.scan_failures"] == 1 and s["proxy.inbound.tempfail"] == 1, s
    # a second daemon on the same file runs, without counters of its own
    other = mw_factory(upstream, opts=[("stats_file", m.stats_path)])
    assert "is in use by another mailwarden: running without counters" in other.stderr_text()
    assert send(other, make_msg(subject="elsewhere")).code == 250
    assert plain(m)[1]["proxy.inbound.accept"] == 0
    other.stop()
    assert m.stop() == 0
    first, s = plain(m)
    assert first.startswith("daemon not running"), first
    assert s["proxy.inbound.tempfail"] == 1



def test_upstream_tempfail_has_its_own_count(mw_factory, raw_upstream):
    """The upstream answers 451 to the end of data: the audit record says
    "tempfail-by-upstream", and so does its counter (it was counted as
    "other", where an alert on tempfails or on the upstream's refusals
    missed it)."""
    up = raw_upstream(script={"EOD": b"451 4.3.0 try later\r\n"})
    m = mw_factory(up)
    assert send(m, make_msg()).code == 451
    assert m.audit(1)[0]["action"] == "tempfail-by-upstream"
    _, s = plain(m)
    assert s["proxy.inbound.tempfail-by-upstream"] == 1, s
    assert s["proxy.inbound.other"] == 0 and s["proxy.inbound.tempfail"] == 0, s
    prom = stats(m, "--prometheus")
    assert 'mailwarden_transactions_total{frontend="proxy",direction="inbound",action="tempfail-by-upstream"} 1\n' \
        in prom

def test_stats_without_a_daemon(tmp_path):
    r = run_mw(["stats", "-o", "stats_file=%s" % (tmp_path / "none")])
    assert r.returncode == 1 and b"No such file" in r.stderr
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"x" * 100)
    r = run_mw(["stats", "-o", "stats_file=%s" % bogus])
    assert r.returncode == 1 and b"not a stats file" in r.stderr
    r = run_mw(["stats", "-o", "stats_file="])
    assert r.returncode == 1 and b"no counters" in r.stderr
    r = run_mw(["stats", "--bogus"])
    assert r.returncode == 1 and b"usage" in r.stderr


def test_milter_counts_and_usr1_reopens_its_audit_log(mw_factory, upstream):
    """The milter adds to the same counters; SIGUSR1 reaches it down its
    control pipe (libmilter would not pass the signal on) and it writes
    its next record into the new audit log."""
    import os
    import soaklib
    from mwlib import free_port, read_audit
    port = free_port()
    m = mw_factory(upstream, opts=[plugin_opt(), ("milter_listen", "inet:%d@127.0.0.1" % port)])
    assert soaklib.milter_session(port, "normal")[0] == "accepted"
    assert wait_until(lambda: plain(m)[1]["milter.inbound.accept"] == 1, 5), plain(m)
    _, s = plain(m)
    assert s["milter.sessions"] == 1 and s["milter.scanned"] == 1
    assert wait_until(lambda: plain(m)[1]["milter.sessions_active"] == 0, 5)
    assert wait_until(lambda: len(read_audit(m.audit_path)) == 1, 5)
    os.rename(m.audit_path, m.audit_path + ".1")
    m.signal(signal.SIGUSR1)
    assert wait_until(lambda: "milter: audit log reopened" in m.stderr_text()
                      and "audit log reopened" in m.stderr_text().replace("milter: audit log reopened", ""),
                      5), m.stderr_text()
    assert soaklib.milter_session(port, "normal")[0] == "accepted"
    assert wait_until(lambda: len(read_audit(m.audit_path)) == 1, 5)
    assert len(read_audit(m.audit_path + ".1")) == 1
    assert "reloading" not in m.stderr_text()
    assert plain(m)[1]["milter.inbound.accept"] == 2


HELD_OUTPUT_SHIM = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* the first line printed waits (up to 5 s) for MW_TEST_GO, having created
 * MW_TEST_FLAG: "mailwarden stats" held in the middle of its output, as
 * by a slow pipe or a stopped terminal */
static void hold(void)
{
    static int held;

    if (held++)
        return;
    int f = open(getenv("MW_TEST_FLAG"), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (f >= 0) close(f);
    for (int i = 0; i < 500 && access(getenv("MW_TEST_GO"), F_OK) != 0; i++)
        usleep(10000);
}

int printf(const char *fmt, ...)
{
    va_list ap;
    int n;

    hold();
    va_start(ap, fmt);
    n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int __printf_chk(int flag, const char *fmt, ...)
{
    va_list ap;
    int n;

    (void)flag;
    hold();
    va_start(ap, fmt);
    n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}
"""


def test_a_reader_never_disables_the_counters(mw_factory, upstream, tmp_path):
    """"mailwarden stats" (from cron, say) running at the moment the daemon
    starts: it took a shared flock to tell whether a daemon held the file,
    and the starting master, whose exclusive flock then failed, logged "in
    use by another mailwarden" and ran without counters for its whole life.
    The command now tests for the daemon's lock without taking one; the
    daemon zeroes the counts in place (the reader's mapping stays whole:
    no SIGBUS)."""
    first = mw_factory(upstream)
    assert send(first, make_msg(subject="earlier run")).code == 250
    assert first.stop() == 0
    src, shim = tmp_path / "held.c", tmp_path / "held.so"
    src.write_text(HELD_OUTPUT_SHIM)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(shim), str(src), "-ldl"], check=True)
    flag, go = tmp_path / "reading", tmp_path / "go"
    env = dict(os.environ, LD_PRELOAD=str(shim), MW_TEST_FLAG=str(flag), MW_TEST_GO=str(go),
               ASAN_OPTIONS=(os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":"))
    reader = subprocess.Popen([MW_BIN, "stats", "-o", "stats_file=%s" % first.stats_path], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_until(flag.exists, 5.0)
        m = mw_factory(upstream, opts=[("stats_file", first.stats_path)])
        m.stats_path = first.stats_path
        go.write_text("")
        out, err = reader.communicate(timeout=10)
        assert reader.returncode == 0, (reader.returncode, out, err)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert "in use by another mailwarden" not in m.stderr_text(), m.stderr_tail()
    assert send(m, make_msg(subject="counted")).code == 250
    line, s = plain(m)
    assert line.startswith("daemon running, pid %d" % m.pid), line
    assert s["proxy.inbound.accept"] == 1, s      # this run's: the earlier one's were zeroed
