"""test_auth_bombs.py - the sender-authentication path under hostile DNS.

The sender writes its own domain's DNS: every SPF record, DKIM key, DMARC
record and PTR answer here is the attacker's.  Each test serves such a
zone from the test's own unbound on loopback (dnsserver.DnsServer) and
runs the real pipeline (`mailwarden scan`, or the proxy): the scan must
end in bounded time and memory, and what DNS data reaches the
Authentication-Results field, Received-SPF, the SMTP reply and the audit
log must be clean.  Figures: tests/bench/auth_bombs.py; README "Hostile
DNS (sender authentication)"."""

import json
import time

import pytest

import audit_fields as A
import authbomblib as ab
import dkimlib as dl
from dnsserver import DnsServer

SANITIZED = ab.sanitized()
SLOW = 8.0 if SANITIZED else 1.0


@pytest.fixture
def dns(tmp_path):
    srv = DnsServer(tmp_path / "dns")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return dl.make_keys(tmp_path_factory.mktemp("keys"))


# --- DKIM -------------------------------------------------------------------------

def test_many_dkim_signature_fields_cost_little(dns, keys, tmp_path):
    """20,000 copies of one valid DKIM-Signature field (11 MB, under
    message_size_limit): libopendkim's end-of-header step is quadratic in
    the number of signature fields (5,000: 2 s, 20,000: over a minute), so
    only the first dkim_max_signatures are handed to it.  Before: over 60 s
    of one scanner thread; now well under a second, the first 8 pass."""
    dns.add_zone("s1._domainkey.d.test", [("@", "TXT", keys["rsa"][1])])
    dns.start()
    signed = dl.dkimpy_sign(ab.message(), "s1", "d.test", keys["rsa"][0])
    field = signed[:signed.index(b"\r\nFrom:") + 2]
    data = field * 20000 + ab.message()
    r = ab.run(data, ab.scan_args(dns.forwarder, "dkim", extra=[("dns_client_name", "no")]),
               tmp_path, timeout=120 * SLOW)
    assert r["rc"] == 0 and r["result"] is not None, r["stderr"][-2000:]
    assert r["wall"] < 10 * SLOW, r["wall"]
    ar = ab.auth_results(r["result"])
    assert ar.count("dkim=pass") == 8 and "dkim=fail" not in ar, ar


# --- the DNS layer's cache ------------------------------------------------------------

def test_dns_cache_memory_is_bounded(dns, mw_factory, upstream):
    """A sender's messages whose DKIM signatures name a new selector each
    (s=m1k1, s=m1k2, ...), every key name answering with a 60 KiB TXT
    RRset: the cache held up to dns_cache_size (20,000) such answers,
    1.3 GB; now dns_cache_memory bounds it.  100 messages of 8 signatures
    (48 MB of answers) with dns_cache_memory = 4M: the scanner grows by
    less than 30 MB (before: by about 60 MB, the answers kept)."""
    dns.add_zone("w.big.test", [("@", "TXT", ab.BIG_TXT)], redirect=True)
    dns.start()
    m = mw_factory(upstream, opts={"filters": "dkim", "dns_forwarder": dns.forwarder,
                                   "dns_client_name": "no", "dns_cache_memory": "4M",
                                   "scanner_threads": "1"})
    scanner = m.child_pid("scanner")
    assert scanner, m.children()
    c = m.client(timeout=30)
    c.ehlo("client.example.org")

    def send(i):
        sigs = b"".join(ab.fake_signature("w.big.test", "m%dk%d" % (i, k)) for k in range(8))
        r = c.transaction("a@w.big.test", ["rcpt@example.net"], ab.message(b"a@w.big.test", sigs))
        assert r["final"].code == 250, r["final"]

    for i in range(5):                       # the scanner's threads and buffers settle
        send(i)
    before = ab.rss_of(scanner)
    for i in range(5, 105):
        send(i)
    grown = ab.rss_of(scanner) - before
    c.quit()
    upstream.wait_messages(105, timeout=10)
    print("scanner RSS grew by %.1f MB over 100 messages" % (grown / 1e6))
    assert grown < 30e6, grown
