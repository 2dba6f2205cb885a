#!/usr/bin/python3
"""uri_forms.py - CPU cost of the URI canonical forms per message
(rules17).  Runs build/tests/rules_batch (the pipeline of "mailwarden
scan") over (a) one message with MIME_MAX_URIS (1000) distinct links, many
times, and (b) corpus messages, with the stock SpamAssassin rules, in two
setups: "local" (filters=rules, network tests off: the agreement test's
setup) and "net" (filters=dnsbl rules, rules_net_tests=yes, a dnsbl uri
list, a loopback unbound answering NXDOMAIN for everything).

usage (from the source tree, after make; a benchmark, not part of make check):
    nice -n 19 /usr/bin/python3 tests/bench/uri_forms.py [TREE [REPEAT]]
TREE: the source tree whose build/ to run (default: this one).
Prints user+sys CPU seconds of rules_batch per setup and per message.  With
a build instrumented to print "URISTATS calls=N sec=S" at exit (set
MW_URI_STATS=1), also the number of rules_uri_forms calls and their time."""
import glob
import os
import random
import resource
import subprocess
import sys
import tempfile

WT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))
REPEAT = int(sys.argv[2]) if len(sys.argv) > 2 else 20
sys.path.insert(0, os.path.join(WT, "tests", "functional"))
os.environ.setdefault("MW_BUILD", os.path.join(WT, "build"))
os.environ.setdefault("MW_BIN", os.path.join(WT, "build", "mailwarden"))
import dnsserver  # noqa: E402
import ruleslib  # noqa: E402

BUILD = os.path.join(WT, "build")
STOCK = ["/usr/share/spamassassin"] + sorted(glob.glob("/etc/spamassassin/*.cf"))


def many_links_msg(path, n=1000):
    rnd = random.Random(17)
    links = []
    for i in range(n):
        k = i % 4
        if k == 0:
            u = "http://www.site%d.example/path/%d?utm_source=x&id=%d" % (i, rnd.randrange(10**6), i)
        elif k == 1:
            u = "https://shop%d.example.com:443/a/b/c.html#top" % i
        elif k == 2:
            u = "http://click.example.net/r?u=http%%3A%%2F%%2Fland%d.example%%2Fx" % i
        else:
            u = "http://%d.%d.%d.%d/~user%d/" % (10 + i % 200, i % 250, (i * 7) % 250, 1 + i % 250, i)
        links.append('<a href="%s">link %d</a>' % (u, i))
    body = "<html><body>" + "<br>\n".join(links) + "</body></html>\n"
    with open(path, "w") as f:
        f.write("From: a@sender.example\nTo: b@rcpt.example\nSubject: many links\n"
                "Message-ID: <bench@x>\nDate: Sat, 28 Nov 2026 10:00:00 +0000\n"
                "MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n" + body)


def run(args, files):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = dict(os.environ, MW_URI_STATS="1")
    r = subprocess.run([os.path.join(BUILD, "tests", "rules_batch")] + args + files,
                       capture_output=True, text=True, timeout=3600, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert r.returncode == 0, r.stderr[-2000:]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stats = [l for l in r.stderr.splitlines() if l.startswith("URISTATS") or l.startswith("rules_batch:")]
    return cpu, stats, r.stdout


def main():
    tmp = tempfile.mkdtemp(prefix="uri-forms-")
    msg = os.path.join(tmp, "links1000.eml")
    many_links_msg(msg)
    corpus = ruleslib.corpus_even(BUILD)
    sample = ruleslib.sample(corpus, int(os.environ.get("BENCH_CORPUS", "400")))
    base = ruleslib.mw_rules_args(BUILD, STOCK)
    srv = dnsserver.DnsServer(os.path.join(tmp, "dns"))
    srv.add_zone("bl.test", [])
    srv.start()
    try:
        net = [a if a != "filters=rules" else "filters=dnsbl rules" for a in base] + [
            "-o", "rules_net_tests=yes", "-o", "dns_forwarder=" + srv.forwarder, "-o", "dns_client_name=no",
            "-o", "rules_dns_timeout=5s", "-o", "dnsbl_list=", "-o", "dnsbl_list=uri.bl.test uri 127.0.0.2=UBL:1"]
        outs = {}
        for name, args in (("local", base), ("net", net)):
            run(args, [msg])  # warm the rules cache
            for what, files in (("links1000 x%d" % REPEAT, [msg] * REPEAT), ("corpus %d" % len(sample), sample)):
                cpu, stats, out = run(args, files)
                outs[(name, what)] = out
                print("%-5s %-14s cpu %.3f s  %.2f ms/msg  %s" % (name, what, cpu, 1000 * cpu / len(files),
                                                                  " | ".join(stats)))
        with open(os.path.join(tmp, "hits.txt"), "w") as f:
            for k, v in sorted(outs.items()):
                f.write("== %s %s\n%s" % (k[0], k[1], v.replace(tmp, "TMP")))
        print("hits in", os.path.join(tmp, "hits.txt"))
    finally:
        srv.stop()


main()
