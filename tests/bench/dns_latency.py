#!/usr/bin/python3
"""dns_latency.py - what a message's DNS round trips cost the scan, with a
resolver that takes DELAY ms per query (a recursive resolver asking the
sender's name servers: tens to hundreds of milliseconds a query).

The test's own unbound on loopback (tests/functional/dnsserver.py) serves
the sender's zone (PTR and A of the client, SPF record, DKIM key, DMARC
record) and a DNS blocklist; a UDP relay in front of it on loopback holds
every query DELAY ms before passing it on.  `mailwarden scan` (a new
process per message: a cold cache, as for a new sender) with
filters = spf dkim dmarc dnsbl and the client's reverse DNS on; the
figure is the scan's own time (scan_ms of its result), median of RUNS.
Give several binaries to compare them in the same run (e.g. one built
before the prefetch of session 10):

    /usr/bin/python3 tests/bench/dns_latency.py [--delay 50] [--runs 9] [BIN ...]

Only loopback addresses.  A benchmark, not a test."""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "functional"))
os.environ.setdefault("MW_BUILD", os.path.join(SRC, "build"))
import authbomblib as ab          # noqa: E402
from dnsserver import DnsServer   # noqa: E402


class SlowRelay:
    """UDP relay on 127.0.0.1 that holds each query delay seconds"""

    def __init__(self, upstream_port, delay):
        self.up = ("127.0.0.1", upstream_port)
        self.delay = delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self.stop = False
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while not self.stop:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return
            self.queries += 1
            threading.Thread(target=self.one, args=(data, peer), daemon=True).start()

    def one(self, data, peer):
        time.sleep(self.delay)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        try:
            s.sendto(data, self.up)
            reply, _ = s.recvfrom(65535)
            self.sock.sendto(reply, peer)
        except OSError:
            pass
        finally:
            s.close()

    def close(self):
        self.stop = True
        self.sock.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delay", type=float, default=50, help="ms per query (default 50)")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("bins", nargs="*", default=[os.path.join(SRC, "build", "mailwarden")])
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dns-latency-")
    srv = DnsServer(os.path.join(tmp, "dns"))
    srv.add_zone("10.2.0.192.in-addr.arpa", ["@ PTR mx.d.test."])
    srv.add_zone("d.test", [("@", "TXT", "v=spf1 ip4:192.0.2.10 -all"), "mx A 192.0.2.10",
                            ("_dmarc", "TXT", "v=DMARC1; p=none"),
                            ("s1._domainkey", "TXT", "v=DKIM1; k=rsa; p=MIIBIjANBgkq")])
    srv.add_zone("zen.bl.test", [])
    srv.start()
    relay = SlowRelay(int(srv.forwarder.split("@")[1]), a.delay / 1000.0)
    msg = ab.fake_signature("d.test", "s1") + ab.message(b"a@d.test")
    path = os.path.join(tmp, "m.eml")
    with open(path, "wb") as f:
        f.write(msg)
    extra = [("dns_client_name", "yes"), ("dnsbl_list", "zen.bl.test ip 127.0.0.2=RCVD_IN_SBL:3")]
    args = ab.scan_args("127.0.0.1@%d" % relay.port, "spf dkim dmarc dnsbl", mail_from="a@d.test",
                        extra=extra)
    print("scan time of one message (median of %d, cold cache), resolver delay %.0f ms per query"
          % (a.runs, a.delay))
    try:
        for b in a.bins:
            times, q0 = [], relay.queries
            for _ in range(a.runs):
                r = subprocess.run([b, "scan"] + args + [path], capture_output=True, timeout=120)
                if r.returncode != 0:
                    raise SystemExit("%s scan failed: %s" % (b, r.stderr.decode()[-2000:]))
                res = json.loads(r.stdout)
                times.append(res["scan_ms"])
                ar = ab.auth_results(res)
            print("  %-50s %7.1f ms  (%.1f queries/message; %s)"
                  % (b, statistics.median(times), (relay.queries - q0) / a.runs,
                     " ".join(x.split()[0] for x in ar.split(";")[1:])))
    finally:
        relay.close()
        srv.stop()


if __name__ == "__main__":
    main()
