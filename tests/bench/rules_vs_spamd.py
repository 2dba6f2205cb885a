#!/usr/bin/python3
"""rules_vs_spamd.py - rules throughput (issue 6): messages/s of mailwarden's
pipeline with the rules filter and Debian's stock SpamAssassin rules
(tests/rules_batch: the same code path as "mailwarden scan", one setup)
against SpamAssassin's spamd/spamc with the same rules, network tests and
Bayes off, over the same sample of the corpus' training half, in the same
run; prints both rates and the ratio (target: >= 20x).  A benchmark: it
fails only when something does not work.

Both sides get one stream of messages: spamd with one child, spamc one
message after another; rules_batch on one thread.  The compiled rule
databases come from build/cache/rules-db (a cold start compiles them once
first, not timed).

Environment: MW_BUILD (default <repo>/build), RULES_BENCH_MESSAGES
(default 300)."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "functional"))
import ruleslib  # noqa: E402

BUILD = os.path.abspath(os.environ.get("MW_BUILD", os.path.join(HERE, "..", "..", "build")))
N = int(os.environ.get("RULES_BENCH_MESSAGES", "300"))
RULES = [ruleslib.SA_RULES, "/etc/spamassassin/*.cf"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    try:
        groups = ruleslib.corpus_even(BUILD)
    except ruleslib.Unreachable as e:
        print("rules bench: skipped, corpus not available (%s)" % e)
        return 0
    files = ruleslib.sample(groups, N)
    batch = [os.path.join(BUILD, "tests", "rules_batch")] + ruleslib.mw_rules_args(BUILD, RULES)
    # warm: compile (or load) the databases once, untimed
    subprocess.run(batch + files[:1], capture_output=True, check=True)
    t = time.monotonic()
    r = subprocess.run(batch + files, capture_output=True, text=True, check=True)
    mw_s = time.monotonic() - t
    mw_line = r.stderr.strip().splitlines()[-1]

    site = tempfile.mkdtemp(prefix="mw-spamd-")
    os.chmod(site, 0o755)     # spamd reads it as nobody
    for f in os.listdir("/etc/spamassassin"):
        if f.endswith((".pre", ".cf")):
            shutil.copy(os.path.join("/etc/spamassassin", f), site)
    with open(os.path.join(site, "zz_bench.cf"), "w") as f:
        f.write("use_bayes 0\nbayes_auto_learn 0\nuse_auto_whitelist 0\nskip_rbl_checks 1\n")
    port = free_port()
    spamd = subprocess.Popen(["/usr/sbin/spamd", "--local", "--listen=127.0.0.1:%d" % port,
                              "--allowed-ips=127.0.0.1", "--max-children=1", "--min-children=1",
                              "--siteconfigpath=" + site, "--nouser-config", "--username=nobody",
                              "--syslog=stderr", "--pidfile=" + os.path.join(site, "pid")],
                             stdout=subprocess.DEVNULL, stderr=open(os.path.join(site, "log"), "w"))
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline or spamd.poll() is not None:
                    print(open(os.path.join(site, "log")).read()[-2000:])
                    raise SystemExit("rules bench: spamd did not start")
                time.sleep(0.5)
        spamc = ["/usr/bin/spamc", "-d", "127.0.0.1", "-p", str(port), "-c"]
        with open(files[0], "rb") as f:      # warm the child
            subprocess.run(spamc, stdin=f, capture_output=True)
        t = time.monotonic()
        for path in files:
            with open(path, "rb") as f:
                subprocess.run(spamc, stdin=f, capture_output=True)
        sa_s = time.monotonic() - t
    finally:
        spamd.terminate()
        try:
            spamd.wait(30)
        except subprocess.TimeoutExpired:
            spamd.kill()
            spamd.wait()
        shutil.rmtree(site, ignore_errors=True)
    mw_rate, sa_rate = len(files) / mw_s, len(files) / sa_s
    print("rules bench: %d messages of the corpus' training half, stock SpamAssassin rules, no network tests"
          % len(files))
    print("  mailwarden (rules_batch, 1 thread): %8.1f msg/s  [%s]" % (mw_rate, mw_line))
    print("  spamd/spamc (1 child):              %8.1f msg/s" % sa_rate)
    print("  ratio: %.1fx (target >= 20x)%s" % (mw_rate / sa_rate, "" if mw_rate / sa_rate >= 20 else "  NOT MET"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
