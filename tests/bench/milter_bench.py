#!/usr/bin/python3
"""milter_bench.py - Postfix with mailwarden as its milter against Postfix
alone, in the same run (issue 7).  A benchmark: it prints figures, and
fails only when something does not work.

Both Postfix instances relay to Postfix's smtp-sink on loopback; the client
is Postfix's smtp-source (10 KB messages, concurrency 10, one message per
session).  The rate is what smtp-source sees: messages accepted by Postfix
per second (with the milter, each message is scanned before Postfix's 250).
mailwarden runs with the example plugin loaded and the audit log on.

Environment: MW_BIN, MW_PLUGIN, BENCH_MESSAGES (default 3000),
BENCH_CONCURRENCY (default 10), BENCH_SIZE (default 10240), BENCH_ROUNDS
(default 2, best of)."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))
import mwlib        # noqa: E402
import postfixlib   # noqa: E402

MW_BIN = os.environ.get("MW_BIN", os.path.join(ROOT, "build", "mailwarden"))
MW_PLUGIN = os.environ.get("MW_PLUGIN", os.path.join(ROOT, "build", "tests", "example_plugin.so"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "3000"))
CONC = int(os.environ.get("BENCH_CONCURRENCY", "10"))
SIZE = int(os.environ.get("BENCH_SIZE", "10240"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


def rate(port):
    t0 = time.monotonic()
    r = subprocess.run([SMTP_SOURCE, "-c", "-l", str(SIZE), "-m", str(MESSAGES), "-s", str(CONC),
                        "-f", "sender@example.org", "-t", "rcpt@example.net",
                        "127.0.0.1:%d" % port], capture_output=True, text=True, timeout=600)
    dt = time.monotonic() - t0
    if r.returncode != 0 or "error" in r.stderr.lower():
        raise SystemExit("smtp-source failed: %s %s" % (r.stdout[-500:], r.stderr[-500:]))
    return MESSAGES / dt


def main():
    if not postfixlib.available():
        raise SystemExit("milter_bench: needs root and Debian's postfix")
    tmp = tempfile.mkdtemp(prefix="mw-milter-bench-")
    procs, postfixes = [], []
    try:
        sink_port = mwlib.free_port()
        sink = subprocess.Popen([SMTP_SINK, "-u", "nobody", "-c", "127.0.0.1:%d" % sink_port, "1000"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        procs.append(sink)
        mport = mwlib.free_port()
        mw = subprocess.Popen([MW_BIN, "-f", "-o", "milter_listen=inet:%d@127.0.0.1" % mport,
                               "-o", "plugin=%s" % MW_PLUGIN, "-o", "log_level=warning",
                               "-o", "audit_log=%s/audit.log" % tmp, "-o", "stats_file=%s/stats" % tmp,
                               "-o", "quarantine_dir=%s/q" % tmp],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
        procs.append(mw)
        if not mwlib.wait_until(lambda: mwlib._port_open("127.0.0.1", mport), 10.0):
            raise SystemExit("mailwarden's milter did not start")
        common = {"default_process_limit": "200", "smtpd_client_connection_count_limit": "0",
                  "smtpd_client_connection_rate_limit": "0", "in_flow_delay": "0"}
        alone = postfixlib.Postfix(os.path.join(tmp, "alone"), relayhost="127.0.0.1:%d" % sink_port,
                                   main=common).start()
        postfixes.append(alone)
        milter = dict(common, smtpd_milters="inet:127.0.0.1:%d" % mport,
                      milter_default_action="tempfail")
        with_milter = postfixlib.Postfix(os.path.join(tmp, "milter"),
                                         relayhost="127.0.0.1:%d" % sink_port, main=milter).start()
        postfixes.append(with_milter)
        best = {"alone": 0.0, "milter": 0.0}
        for _ in range(ROUNDS):
            best["alone"] = max(best["alone"], rate(alone.port))
            best["milter"] = max(best["milter"], rate(with_milter.port))
        print("milter bench: %d messages of %d bytes, concurrency %d, best of %d rounds"
              % (MESSAGES, SIZE, CONC, ROUNDS))
        print("  Postfix alone            %8.0f msg/s" % best["alone"])
        print("  Postfix + mailwarden     %8.0f msg/s" % best["milter"])
        print("  ratio (milter / alone)   %8.2f" % (best["milter"] / best["alone"]))
    finally:
        for pf in postfixes:
            pf.stop()
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
