"""test_dns.py - the scanner's DNS layer (filters/dns.c) against a real
unbound on loopback (dnsserver.py): runs the unit-test binary test_dns with
MW_DNS_FORWARDER pointing at the server, so its server tests run (types,
NXDOMAIN/NODATA, cache hits, negative caching, cache bound, TTL expiry,
a prefetched answer of TTL 0, threads); the zone below is what those tests expect."""

import os
import subprocess
import threading

from dnsserver import DnsServer, txt, dns_server  # noqa: F401

BUILD = os.environ.get("MW_BUILD", os.path.join(os.path.dirname(__file__), "../../build"))


def example_zone(short_ip):
    recs = [
        "@ MX 10 mx1.example.test.",
        "@ MX 20 mx2.example.test.",
        "@ TXT " + txt("v=spf1 ip4:192.0.2.0/24 -all"),
        "split TXT \"v=spf1\" \" -all\"",
        ("long", "TXT", "x" * 400),
        "www A 192.0.2.80",
        "www AAAA 2001:db8::80",
        "alias CNAME www.example.test.",
        "odd\\032name A 192.0.2.7",
        "dot\\046in PTR odd\\032name.example.test.",
        "short 1 A %s" % short_ip,
        "long-ttl 3600 A 192.0.2.1",
        "zero 0 A 192.0.2.9",
    ]
    recs += ["h%d A 198.51.100.%d" % (i, i) for i in range(40)]
    return recs


def test_dns_layer_against_unbound(dns_server, tmp_path):
    dns_server.add_zone("example.test", example_zone("192.0.2.1"))
    dns_server.add_zone("2.0.192.in-addr.arpa", ["10 PTR mail.example.test."])
    dns_server.add_zone("drop.test", [], drop_other=True)
    dns_server.start()
    flag = str(tmp_path / "restart")

    def swap_data():
        # test_ttl_expiry asks for new data by creating the flag file
        import time
        for _ in range(400):
            if os.path.exists(flag):
                dns_server.add_zone("example.test", example_zone("192.0.2.2"))
                dns_server.restart()
                open(flag + ".done", "w").close()
                return
            time.sleep(0.05)
    t = threading.Thread(target=swap_data, daemon=True)
    t.start()
    env = dict(os.environ, MW_DNS_FORWARDER=dns_server.forwarder, MW_DNS_RESTART_FILE=flag)
    p = subprocess.run([os.path.join(BUILD, "tests", "test_dns")], env=env,
                       capture_output=True, text=True, timeout=120)
    t.join(1)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out + dns_server.logs()
    assert "SKIPPED" not in out, out
    assert "12 test(s)" in out
