#!/usr/bin/python3
"""auth_bench.py - scan throughput (messages/s) of the sender-authentication
filters over signed messages, with a warm DNS cache, single- and
multi-threaded; a benchmark, not a test (prints figures).

Messages: the signed messages of dkimpy's test data (Debian python3-dkim)
plus two signed here by dkimpy (RSA-2048 and Ed25519, with a DMARC record
that they pass).  Keys and records are served by the project's loopback
DNS server (tests/functional/dnsserver.py).  The C driver (auth_speed.c)
runs pipeline_scan() in-process on THREADS threads for BENCH_SECONDS.

Peer measured in the same run: dkimpy verifying the same messages (keys
from a dict, i.e. a perfectly warm cache) on one thread; the ratio
mailwarden/dkimpy is printed.

Usage: /usr/bin/python3 tests/bench/auth_bench.py   (after make)
Environment: MW_BUILD (default build), BENCH_SECONDS (default 3),
BENCH_THREADS (default "1 2 4"), AUTH_FILTERS (default "spf dkim dmarc"
if the spf built-in exists, else "dkim dmarc")."""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))
os.environ.setdefault("MW_BIN", os.path.join(ROOT, os.environ.get("MW_BUILD", "build"), "mailwarden"))

import dkimlib as dl            # noqa: E402
from dnsserver import DnsServer  # noqa: E402


def build_driver(build):
    out = os.path.join(build, "tests", "auth_speed")
    mk = open(os.path.join(ROOT, "Makefile")).read()
    pkgs = re.search(r"^PKGS\s*:=\s*((?:.*\\\n)*.*)$", mk, re.M).group(1).replace("\\\n", " ").split()
    cflags = subprocess.run(["pkg-config", "--cflags"] + pkgs, capture_output=True, text=True).stdout.split()
    libs = subprocess.run(["pkg-config", "--libs"] + pkgs, capture_output=True, text=True).stdout.split()
    cmd = (["cc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-g", "-I" + os.path.join(ROOT, "include"), "-I" + ROOT]
           + cflags + ["-o", out, os.path.join(ROOT, "tests", "bench", "auth_speed.c"),
                       os.path.join(build, "libmw.a")] + libs + ["-lspf2", "-lopendmarc", "-lpthread", "-ldl", "-lm"])
    subprocess.run(cmd, check=True)
    return out


def main():
    build = os.path.join(ROOT, os.environ.get("MW_BUILD", "build"))
    seconds = os.environ.get("BENCH_SECONDS", "3")
    threads = os.environ.get("BENCH_THREADS", "1 2 4").split()
    driver = build_driver(build)
    tmp = tempfile.mkdtemp(prefix="authbench")
    expected = json.load(open(os.path.join(dl.DATA, "expected-verify.json")))
    records = {k: [v] for k, v in expected["dns"].items()}
    files = [os.path.join(dl.DKIMPY_DATA, n) for n, v in expected["verify_results_dkimpy_1_1_4"].items()
             if all(x is True for x in v)]
    keys = dl.make_keys(tmp)
    records["rsa1._domainkey.sign.test"] = [keys["rsa"][1]]
    records["ed1._domainkey.sign.test"] = [keys["ed25519"][1]]
    records["_dmarc.sign.test"] = ["v=DMARC1; p=reject"]
    msg = (b"From: Alice <alice@sign.test>\r\nTo: bob@example.net\r\nSubject: bench\r\n"
           b"Message-ID: <b@sign.test>\r\n\r\n" + b"A line of text for the body hash.\r\n" * 100)
    for sel, kw in (("rsa1", {}), ("ed1", {"signature_algorithm": b"ed25519-sha256"})):
        p = os.path.join(tmp, sel + ".eml")
        with open(p, "wb") as f:
            f.write(dl.dkimpy_sign(msg, sel, "sign.test", keys["rsa" if sel == "rsa1" else "ed25519"][0], **kw))
        files.append(p)

    srv = DnsServer(os.path.join(tmp, "dns"))
    for name, values in records.items():
        srv.add_zone(name, [("@", "TXT", v) for v in values])
    srv.start()
    try:
        have_spf = subprocess.run([os.environ["MW_BIN"], "-t", "-o", "filters=spf"],
                                  capture_output=True).returncode == 0
        filters = os.environ.get("AUTH_FILTERS", "spf dkim dmarc" if have_spf else "dkim dmarc")
        print("auth filters \"%s\" over %d signed messages (%s), warm DNS cache, %ss per run"
              % (filters, len(files), ", ".join(os.path.basename(f) for f in files), seconds))

        # the peer, same messages, same machine, same run
        import dkim

        class Srv:
            def __init__(self, r):
                self.records = r
        ref = dl.TxtServer.dnsfunc.__get__(Srv({k.rstrip("."): v for k, v in records.items()}))
        blobs = [open(f, "rb").read() for f in files]
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < float(seconds):
            for b in blobs:
                d = dkim.DKIM(b)
                for i in range(len([1 for k, _ in d.headers if k.lower() == b"dkim-signature"])):
                    d.verify(idx=i, dnsfunc=ref)
                n += 1
        py_rate = n / (time.monotonic() - t0)
        print("dkimpy verify (1 thread):            %8.0f messages/s" % py_rate)

        for t in threads:
            out = subprocess.run([driver, "-t", t, "-s", seconds, "-o", "filters=" + filters,
                                  "-o", "dns_forwarder=" + srv.forwarder, "-o", "log_level=err"] + files,
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr)
                sys.exit(1)
            line = out.stdout.strip()
            rate = float(re.search(r"rate=(\d+)", line).group(1))
            print("mailwarden %-14s %2s thread(s): %8.0f messages/s  (%.1fx dkimpy)  [%s]"
                  % (filters, t, rate, rate / py_rate, line))
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
