#!/usr/bin/python3
"""soak.py - the long-running daemon under load (not part of make check).

Drives thousands of sessions of a mix (normal, pipelined, RSET, BDAT,
STARTTLS, a filter reject, a greylisted sender, client hang-ups at every
stage, upstreams that refuse, tempfail, close mid-DATA or tempfail the end
of data) through the proxy, and a mix of its own through the milter front
end; then SIGHUP reloads under load, the scanner killed (-9) under load,
and concurrent big messages while the scanner is slow.  Prints, per
process (master, proxy, scanner, milter), descriptors, RSS and threads
before and after each phase, growth per 1000 sessions, sessions/s and the
proxy's peak RSS per concurrent big message.

Run: make && MW_BIN=build/mailwarden MW_PLUGIN=build/tests/example_plugin.so \\
     /usr/bin/python3 tests/bench/soak.py [--sessions 5000] [--milter 2000] \\
     [--reloads 50] [--kills 5] [--big 100] [--big-mb 10]
"""
import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "functional"))

import mwlib  # noqa: E402
import soaklib  # noqa: E402
from mwlib import Mailwarden, RawUpstream, SmtpSink  # noqa: E402
from tlslib import PKI  # noqa: E402

ROLES = ("master", "proxy", "scanner", "milter")


def row(phase, n, before, after, secs=None):
    print("%-22s %6s %s" % (phase, n, "%.0f/s" % (n / secs) if secs else ""))
    for r in ROLES:
        b, a = before.get(r), after.get(r)
        if not b or not a:
            continue
        per = 1000.0 / n if n else 0
        print("    %-8s fds %4d -> %4d (%+.1f/1000)  rss %7d -> %7d kB (%+.0f kB/1000)  threads %3d -> %3d"
              % (r, b["fds"], a["fds"], (a["fds"] - b["fds"]) * per, b["rss_kb"], a["rss_kb"],
                 (a["rss_kb"] - b["rss_kb"]) * per, b["threads"], a["threads"]))
    print("    zombies %d, children %d, quarantine files %d, proxy memfds %d"
          % (after["zombies"], after["children"], after["quarantine_files"],
             (after.get("proxy") or {}).get("memfds", -1)))
    sys.stdout.flush()


def report_errors(o, what):
    bad = o.counts.get("error", 0)
    print("    %s outcomes: %s" % (what, {k: v for k, v in o.counts.items() if ":" not in k}))
    if bad:
        print("    ERRORS (%d), first ones:" % bad)
        for e in o.errors[:8]:
            print("      " + e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--milter", type=int, default=2000)
    ap.add_argument("--reloads", type=int, default=50)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--big", type=int, default=100)
    ap.add_argument("--big-mb", type=int, default=10)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mw-soak-"))
    ups = []
    mw = None
    try:
        sink = SmtpSink(tmp, flags=[]).start()
        ups.append(sink)

        def raw(**kw):
            u = RawUpstream(**kw).start()
            ups.append(u)
            return u
        pki = PKI(tmp / "pki")
        ctx = pki.client_context()
        listeners, opts = soaklib.proxy_setup(tmp, sink.addr, raw, pki=pki)
        milter_port = mwlib.free_port()
        opts += [("milter_listen", "inet:%d@127.0.0.1" % milter_port), ("milter_early", "yes"),
                 ("scan_timeout", "60s")]
        plug = [v for k, v in opts if k == "plugin"][0]
        opts = [(k, v if k != "plugin" else plug + " reject_rcpt=refuse-me") for k, v in opts]
        mw = Mailwarden(tmp / "mw", opts=opts, listeners=listeners).start()

        soaklib.run_mix(mw, 200, tls_ctx=ctx, workers=args.workers)
        soaklib.run_milter_mix(milter_port, 50, workers=args.workers)
        base = soaklib.wait_settled(mw, soaklib.snapshot(mw), timeout=3)
        print("baseline: " + soaklib.describe(base))

        # 1. the proxy mix
        t0 = time.monotonic()
        o = soaklib.run_mix(mw, args.sessions, tls_ctx=ctx, workers=args.workers)
        secs = time.monotonic() - t0
        after = soaklib.wait_settled(mw, base)
        row("proxy mix", args.sessions, base, after, secs)
        report_errors(o, "proxy")

        # 2. the milter mix
        b2 = after
        t0 = time.monotonic()
        o = soaklib.run_milter_mix(milter_port, args.milter, workers=args.workers)
        secs = time.monotonic() - t0
        after = soaklib.wait_settled(mw, b2)
        row("milter mix", args.milter, b2, after, secs)
        report_errors(o, "milter")

        # 3. SIGHUP reloads under load
        b3 = after
        stop = threading.Event()
        o = soaklib.Outcome()
        load = threading.Thread(target=soaklib.run_mix, kwargs=dict(
            mw=mw, n=10 ** 9, tls_ctx=ctx, workers=4, outcome=o, stop=stop))
        load.start()
        for _ in range(args.reloads):
            mw.signal(signal.SIGHUP)
            time.sleep(0.3)
        stop.set()
        load.join()
        time.sleep(3)        # the last old scanners retire after 2 s
        after = soaklib.wait_settled(mw, b3)
        n = sum(v for k, v in o.counts.items() if ":" not in k)
        row("%d reloads, load" % args.reloads, n, b3, after)
        report_errors(o, "during reloads")
        print("    per reload: proxy fds %+.2f, rss %+.0f kB; master fds %+.2f"
              % ((after["proxy"]["fds"] - b3["proxy"]["fds"]) / max(1, args.reloads),
                 (after["proxy"]["rss_kb"] - b3["proxy"]["rss_kb"]) / max(1, args.reloads),
                 (after["master"]["fds"] - b3["master"]["fds"]) / max(1, args.reloads)))

        # 4. the scanner killed under load
        b4 = after
        stop = threading.Event()
        o = soaklib.Outcome()
        load = threading.Thread(target=soaklib.run_mix, kwargs=dict(
            mw=mw, n=10 ** 9, tls_ctx=ctx, workers=4, outcome=o, stop=stop, tempfail_ok=True))
        load.start()
        for _ in range(args.kills):
            time.sleep(1.0)
            pid = mw.child_pid("scanner")
            if pid:
                os.kill(pid, signal.SIGKILL)
            mwlib.wait_until(lambda: mw.child_pid("scanner") not in (None, pid), 10)
        time.sleep(1.0)
        stop.set()
        load.join()
        after = soaklib.wait_settled(mw, b4)
        n = sum(v for k, v in o.counts.items() if ":" not in k)
        row("%d scanner kills" % args.kills, n, b4, after)
        report_errors(o, "during kills (4xx expected, no drop)")

        # 5. concurrent big messages, slow scanner
        b5 = after
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                s = soaklib.proc_stat(b5["proxy"]["pid"])
                if s:
                    peak[0] = max(peak[0], s["rss_kb"])
                time.sleep(0.05)
        peak_memfd = [0]

        def sample_memfd():
            while not stop.is_set():
                s = soaklib.proc_stat(b5["proxy"]["pid"])
                if s:
                    peak_memfd[0] = max(peak_memfd[0], s["memfd_bytes"])
                time.sleep(0.2)
        threading.Thread(target=sample_memfd, daemon=True).start()
        sampler = threading.Thread(target=sample)
        sampler.start()
        o = soaklib.Outcome()
        t0 = time.monotonic()
        soaklib.run_mix(mw, args.big, mix=[("slow_big", "ok")], workers=args.big, outcome=o,
                        size=args.big_mb << 20)
        secs = time.monotonic() - t0
        stop.set()
        sampler.join()
        after = soaklib.wait_settled(mw, b5)
        row("%d x %d MB, slow scan" % (args.big, args.big_mb), args.big, b5, after, secs)
        report_errors(o, "big")
        print("    proxy peak RSS %d kB: %+.0f kB per concurrent message of %d kB"
              % (peak[0], (peak[0] - b5["proxy"]["rss_kb"]) / args.big, args.big_mb << 10))
        print("    proxy peak memfd (spool) bytes %d MB" % (peak_memfd[0] >> 20))
    finally:
        if mw is not None:
            rc = mw.stop()
            print("mailwarden exit status %s" % rc)
        for u in ups:
            u.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
