"""test_ipv6.py - IPv6 client addresses end to end.  Sockets are only
127.0.0.1 and ::1; other client addresses come from a PROXY header (v1
TCP6, v2 AF_INET6), the milter's connect packet, or "scan --client-ip".

What a mail administrator expects: an IPv6 client is counted per /64 by
greylisting and ratelimit_ip; an IPv4-mapped address (::ffff:192.0.2.1) is
the IPv4 address everywhere (limits, lists, DNS names, audit log); DNSBL
queries for IPv6 use the RFC 5782 nibble form and skip loopback,
link-local and ULA; HELO [IPv6:...] literals and XCLIENT ADDR=IPV6:... go
through; CIDR settings take IPv6 networks and refuse bad prefixes."""

import json
import socket
import struct
import time

import pytest

import milterlib
from dnsserver import dns_server  # noqa: F401 (fixture)
from mwlib import (RawUpstream, SMTPClient, free_port, ipv6_available, make_msg, run_mw,
                   wait_until, _port_open)
from storelib import store_opts

V2SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def nibbles(ip, reverse=True):
    """RFC 5782 owner prefix of an IPv6 address: 32 reversed nibbles
    (reverse=False: RFC 7208's %{i}, the nibbles in order)."""
    h = socket.inet_pton(socket.AF_INET6, ip).hex()
    return ".".join(reversed(h) if reverse else h)


def mw_pp(mw_factory, up, opts=(), listen="127.0.0.1"):
    """A proxy whose listener takes PROXY headers from loopback."""
    port = free_port(listen)
    addr = "[%s]:%d" % (listen, port) if ":" in listen else "%s:%d" % (listen, port)
    m = mw_factory(up, opts=list(opts) + [("listener.pp.proxy_protocol", "yes")],
                   listeners=[("pp", addr, up.addr, None)], ready=False)
    fam = socket.AF_INET6 if ":" in listen else socket.AF_INET
    assert wait_until(lambda: _port_open(listen, port), 10), m.stderr_tail()
    m.pp_host, m.pp_family = listen, fam
    return m


def pp_client(m, header):
    s = socket.socket(m.pp_family)
    s.settimeout(10)
    s.connect((m.pp_host, m.port))
    s.sendall(header)
    c = SMTPClient.__new__(SMTPClient)
    c.sock, c.buf, c.eof, c.timeout = s, b"", False, 10
    assert c.reply().code == 220
    return c


def v1(ip, port=40000):
    fam = "TCP6" if ":" in ip else "TCP4"
    dst = "::1" if fam == "TCP6" else "127.0.0.1"
    return ("PROXY %s %s %s %d 25\r\n" % (fam, ip, dst, port)).encode()


def v2_inet6(ip, port=40000):
    addr = socket.inet_pton(socket.AF_INET6, ip) + socket.inet_pton(socket.AF_INET6, "::1")
    return V2SIG + b"\x21\x21" + struct.pack("!H", 36) + addr + struct.pack("!HH", port, 25)


def send_as(m, header, helo="client.example.org", frm="sender@example.org", rcpt="rcpt@example.net"):
    c = pp_client(m, header)
    assert c.ehlo(helo).code == 250
    r = c.transaction(frm, [rcpt], make_msg(frm=frm, to=rcpt))["final"]
    c.quit()
    return r


def scan(args, tmp_path, body=b"hello"):
    p = tmp_path / ("m%d.eml" % time.monotonic_ns())
    p.write_bytes(make_msg(body=body))
    r = run_mw(["scan", "-o", "dns_client_name=no"] + list(args) + [str(p)], timeout=60)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    return res, {s["name"]: s for s in res["symbols"]}


# --- rate limits and greylisting --------------------------------------------


def test_ratelimit_ip_counts_an_ipv6_client_per_64(mw_factory, upstream, tmp_path):
    """Rotating addresses inside one /64 does not escape ratelimit_ip
    (before: each address had its own counter, all 4 passed)."""
    m = mw_pp(mw_factory, upstream, store_opts("lmdb", tmp_path)
              + [("filters", "ratelimit"), ("ratelimit_ip", "2/1h")])
    assert send_as(m, v1("2001:db8:1:2::a")).code == 250
    assert send_as(m, v2_inet6("2001:db8:1:2:ffff::b")).code == 250
    r = send_as(m, v1("2001:DB8:1:2:0::c"))
    assert r.code == 451 and "Rate limit" in r.text, r
    # the next /64 is another client
    assert send_as(m, v1("2001:db8:1:3::1")).code == 250
    rec = m.audit(4)[2]
    assert rec["client_ip"] == "2001:db8:1:2::c", rec["client_ip"]
    assert any(s["name"] == "RATELIMIT_IP" for s in rec["symbols"]), rec


def test_ratelimit_ip_counts_a_mapped_client_as_ipv4(tmp_path):
    """::ffff:192.0.2.1 and 192.0.2.1 share one counter (before: two)."""
    opts = ["-o", "filters=ratelimit", "-o", "ratelimit_ip=1/1h"]
    for k, v in store_opts("lmdb", tmp_path):
        opts += ["-o", "%s=%s" % (k, v)]
    res, _ = scan(opts + ["--client-ip", "192.0.2.1"], tmp_path)
    assert res["action"] == "accept"
    res, sym = scan(opts + ["--client-ip", "::ffff:192.0.2.1"], tmp_path)
    assert res["action"] == "tempfail" and "RATELIMIT_IP" in sym, res
    # and 2001:db8::1 / 2001:db8:0:0::2 (one /64) likewise
    res, _ = scan(opts + ["--client-ip", "2001:db8::1"], tmp_path)
    assert res["action"] == "accept"
    res, sym = scan(opts + ["--client-ip", "2001:db8:0:0::2"], tmp_path)
    assert res["action"] == "tempfail", res


def test_greylist_triplet_is_per_64_and_mapped_is_ipv4(mw_factory, upstream, tmp_path):
    """Checked, was fine: greylisting keys IPv6 on the /64 and a mapped
    address (PROXY v2 AF_INET6 ::ffff:a.b.c.d) on the IPv4 /24; an IPv6
    whitelist network."""
    m = mw_pp(mw_factory, upstream, store_opts("lmdb", tmp_path)
              + [("filters", "greylist"), ("greylist_delay", "1s"),
                 ("greylist_whitelist", "2001:db8:ffff::/48")])
    assert send_as(m, v1("2001:db8:5:6::1")).code == 451
    assert send_as(m, v1("192.0.2.7")).code == 451
    time.sleep(1.1)
    assert send_as(m, v1("2001:db8:5:6:1:2:3:4")).code == 250      # same /64
    assert send_as(m, v2_inet6("::ffff:192.0.2.200")).code == 250  # same /24
    assert send_as(m, v1("2001:db8:5:7::1")).code == 451            # another /64
    assert send_as(m, v1("2001:db8:ffff:1::9")).code == 250         # whitelisted /48
    recs = m.audit(6)
    assert recs[3]["client_ip"] == "192.0.2.200", recs[3]["client_ip"]


def test_mapped_networks_are_ipv4_networks(mw_factory, upstream, tmp_path):
    """A network written IPv4-mapped (::ffff:198.51.100.0/120) is the IPv4
    /24 in greylist_whitelist (before: refused at start-up) and in
    milter_internal_networks (before: never matched an IPv4 client)."""
    m = mw_pp(mw_factory, upstream, store_opts("lmdb", tmp_path)
              + [("filters", "greylist"), ("greylist_delay", "1h"),
                 ("greylist_whitelist", "::ffff:198.51.100.0/120")])
    assert send_as(m, v1("198.51.100.4")).code == 250
    assert send_as(m, v1("198.51.101.4")).code == 451
    # wider than the mapped space: no IPv4 meaning, refused
    for bad in ("::ffff:198.51.100.0/95", "::ffff:198.51.100.0/129"):
        for setting in ("greylist_whitelist", "milter_internal_networks", "spf_skip_networks"):
            r = run_mw(["-t", "-o", "filters=greylist spf", "-o", "%s=%s" % (setting, bad)]
                       + store_args(tmp_path))
            assert r.returncode != 0, (setting, bad)


# --- CIDR settings ------------------------------------------------------------


@pytest.mark.parametrize("setting,extra", [
    ("greylist_whitelist", ["-o", "filters=greylist"]),
    ("spf_skip_networks", ["-o", "filters=spf"]),
    ("milter_internal_networks", []),
    ("listener.x.proxy_protocol_from", ["-o", "listener.x.listen=127.0.0.1:2525",
                                        "-o", "listener.x.upstream=127.0.0.1:2526",
                                        "-o", "listener.x.proxy_protocol=yes"]),
])
def test_cidr_settings_take_ipv6_and_refuse_bad_prefixes(setting, extra, tmp_path):
    base = ["-t"] + extra + store_args(tmp_path)
    for good in ("::/0", "2001:db8::/64", "2001:db8::1/128", "::1", "fe80::/10 10.0.0.0/8"):
        r = run_mw(base + ["-o", "%s=%s" % (setting, good)])
        assert r.returncode == 0, (setting, good, r.stderr)
    for bad in ("2001:db8::/129", "2001:db8::/-1", "2001:db8::/", "2001:db8::/6x",
                "2001:db8::/ 64", "2001:db8:::1/64", "10.0.0.0/33"):
        r = run_mw(base + ["-o", "%s=%s" % (setting, bad)])
        assert r.returncode != 0, (setting, bad, r.stdout, r.stderr)


def store_args(tmp_path):
    out = []
    for k, v in store_opts("lmdb", tmp_path):
        out += ["-o", "%s=%s" % (k, v)]
    return out


# --- DNSBL, rDNS, SPF ---------------------------------------------------------


ZEN = "zen.bl.test ip 127.0.0.2=RCVD_IN_SBL:3.5"


def dnsbl_scan(tmp_path, forwarder, client):
    _, sym = scan(["-o", "filters=dnsbl", "-o", "dns_forwarder=" + forwarder,
                   "-o", "dnsbl_list=", "-o", "dnsbl_list=" + ZEN, "--client-ip", client], tmp_path)
    return sym


def test_dnsbl_ipv6_nibbles_mapped_as_ipv4_private_skipped(dns_server, tmp_path):
    listed = ["2001:db8::99", "fd00::1", "fe80::1", "::1", "fc12:3456::7"]
    dns_server.add_zone("zen.bl.test", ["99.2.0.192 A 127.0.0.2", "3.2.1.10 A 127.0.0.2"]
                        + ["%s A 127.0.0.2" % nibbles(ip) for ip in listed])
    dns_server.start()
    fw = dns_server.forwarder
    # RFC 5782: the 32 nibbles under the zone (was fine)
    assert "RCVD_IN_SBL" in dnsbl_scan(tmp_path, fw, "2001:db8::99")
    assert "RCVD_IN_SBL" in dnsbl_scan(tmp_path, fw, "2001:DB8:0::99")
    # a mapped client is asked as IPv4 (before: its ip6.arpa nibbles)
    sym = dnsbl_scan(tmp_path, fw, "::ffff:192.0.2.99")
    assert "RCVD_IN_SBL" in sym and "192.0.2.99" in sym["RCVD_IN_SBL"]["desc"], sym
    # loopback, link-local, ULA and mapped private are never asked (was fine)
    for ip in ("fd00::1", "fe80::1", "::1", "fc12:3456::7", "::ffff:10.1.2.3"):
        assert dnsbl_scan(tmp_path, fw, ip) == {}, ip


def test_rdns_of_mapped_and_ipv6_clients(dns_server, tmp_path):
    """A mapped client's name is looked up in in-addr.arpa and confirmed by
    its A record (before: ip6.arpa of the mapped address, no name)."""
    dns_server.add_zone("2.0.192.in-addr.arpa", ["5 PTR mx4.client.test."])
    dns_server.add_zone("8.b.d.0.1.0.0.2.ip6.arpa",
                        ["%s. PTR mx6.client.test." % (nibbles("2001:db8::5") + ".ip6.arpa")])
    dns_server.add_zone("client.test", ["mx4 A 192.0.2.5", "mx6 AAAA 2001:db8::5"])
    dns_server.start()
    opts = ["-o", "filters=", "-o", "dns_forwarder=" + dns_server.forwarder,
            "-o", "dns_client_name=yes"]
    res, _ = scan(opts + ["--client-ip", "::ffff:192.0.2.5"], tmp_path)
    assert res["client_name"] == "mx4.client.test", res
    res, _ = scan(opts + ["--client-ip", "2001:db8::5"], tmp_path)
    assert res["client_name"] == "mx6.client.test", res


SPF_ZONES = {
    "six.test": ["@ TXT \"v=spf1 ip6:2001:db8:25::/48 -all\""],
    "mac.test": ["@ TXT \"v=spf1 exists:%{i}.ok.mac.test -all\"",
                 "%s.ok A 127.0.0.2" % nibbles("2001:db8::25", reverse=False)],
    "four.test": ["@ TXT \"v=spf1 ip4:192.0.2.0/24 -all\""],
}


def spf_scan(tmp_path, fw, client, frm, full=False):
    res, sym = scan(["-o", "filters=spf", "-o", "dns_forwarder=" + fw,
                     "-o", "spf_skip_networks=::ffff:192.0.2.128/121",
                     "--client-ip", client, "--from", frm, "--helo", "mx.example.org"], tmp_path)
    return (res, sym) if full else sym


def received_spf(res):
    return [e["value"] for e in res["edits"] if e["name"] == "Received-SPF" and e["op"] == "add"]


def test_spf_ip6_macro_i_and_mapped_clients(dns_server, tmp_path):
    """Checked, was fine: ip6: mechanisms, %{i} in dot-format nibbles
    (RFC 7208 7.3), a mapped client checked as IPv4.  Fixed: a mapped
    network in spf_skip_networks (::ffff:192.0.2.128/121) covers the IPv4
    client 192.0.2.130 (before: entry kept as IPv6, never matched)."""
    for z, recs in SPF_ZONES.items():
        dns_server.add_zone(z, recs)
    dns_server.start()
    fw = dns_server.forwarder
    assert "SPF_PASS" in spf_scan(tmp_path, fw, "2001:db8:25::9", "a@six.test")
    assert "SPF_FAIL" in spf_scan(tmp_path, fw, "2001:db8:26::9", "a@six.test")
    assert "SPF_PASS" in spf_scan(tmp_path, fw, "2001:db8::25", "a@mac.test")
    assert "SPF_FAIL" in spf_scan(tmp_path, fw, "2001:db8::26", "a@mac.test")
    res, sym = spf_scan(tmp_path, fw, "::ffff:192.0.2.9", "a@four.test", full=True)
    assert "SPF_PASS" in sym, sym
    assert "client-ip=192.0.2.9;" in received_spf(res)[0], res
    res, sym = spf_scan(tmp_path, fw, "2001:DB8:25:0::9", "a@six.test", full=True)
    assert "client-ip=2001:db8:25::9;" in received_spf(res)[0], res
    sym = spf_scan(tmp_path, fw, "192.0.2.130", "a@elsewhere.test")
    assert not any(n.startswith("SPF_") for n in sym), sym


# --- transport: HELO literals, XCLIENT, PROXY, [::1] ---------------------------


def test_helo_ipv6_literal_and_xclient_ipv6(mw_factory, raw_upstream):
    """Checked, was fine: EHLO [IPv6:2001:db8::1] is accepted, goes to the
    upstream in XCLIENT HELO= and the EHLO after it; XCLIENT ADDR carries
    the IPV6: prefix (Postfix's syntax); a v4-mapped PROXY v2 client goes
    as plain IPv4."""
    up = raw_upstream(caps=RawUpstream.CAPS + [b"XCLIENT ADDR PORT NAME HELO PROTO LOGIN"],
                      script={"OTHER": b"220 raw.upstream ESMTP\r\n"})
    m = mw_pp(mw_factory, up)
    assert send_as(m, v1("2001:db8::7", 5555), helo="[IPv6:2001:db8::1]").code == 250
    assert send_as(m, v2_inet6("::ffff:192.0.2.44", 5556), helo="[192.0.2.44]").code == 250
    assert wait_until(lambda: len(up.messages) >= 2, 3)
    lines = [l for sess in up.sessions for l in sess]
    xc = [l for l in lines if l.startswith(b"XCLIENT")]
    assert any(b"ADDR=IPV6:2001:db8::7 " in l and b"HELO=[IPv6:2001:db8::1]" in l for l in xc), xc
    assert any(b"ADDR=192.0.2.44 " in l and b"PORT=5556" in l for l in xc), xc
    assert b"EHLO [IPv6:2001:db8::1]" in lines
    recs = m.audit(2)
    assert [(r["client_ip"], r["helo"]) for r in recs] == [
        ("2001:db8::7", "[IPv6:2001:db8::1]"), ("192.0.2.44", "[192.0.2.44]")], recs


@pytest.mark.skipif(not ipv6_available(), reason="no ::1")
def test_proxy_listening_on_ipv6_loopback(mw_factory, upstream):
    """Checked, was fine: a listener on [::1]:port, the PROXY header taken
    from ::1 (the default proxy_protocol_from), plain clients shown as ::1."""
    m = mw_pp(mw_factory, upstream, listen="::1")
    assert send_as(m, v1("2001:db8::abcd")).code == 250
    assert send_as(m, b"PROXY UNKNOWN\r\n").code == 250
    recs = m.audit(2)
    assert [r["client_ip"] for r in recs] == ["2001:db8::abcd", "::1"], recs


def test_rules_see_ipv6_client_and_helo_literal(tmp_path):
    """The rules' first relay (the SMTP client) carries the canonical
    address: a mapped one as IPv4 (before: ip=::ffff:203.0.113.9), an
    IPv6 one compressed (before: ip=2001:DB8:0::9).  The HELO literal's
    brackets are '!' as SpamAssassin writes them."""
    cf = tmp_path / "r.cf"
    cf.write_text("header T_V6 X-Spam-Relays-Untrusted"
                  " =~ /^\\[ ip=2001:db8::9 rdns= helo=!IPv6:2001:db8::1! /\n"
                  "header T_V4 X-Spam-Relays-Untrusted =~ /^\\[ ip=203\\.0\\.113\\.9 /\n"
                  "score T_V6 0.1\nscore T_V4 0.1\n")
    opts = ["-o", "filters=rules", "-o", "rules_files=", "-o", "rules_files=" + str(cf),
            "-o", "rules_cache_dir=" + str(tmp_path / "cache"),
            "-o", "dns_forwarder=127.0.0.1@%d" % free_port()]
    _, sym = scan(opts + ["--client-ip", "2001:DB8:0::9", "--helo", "[IPv6:2001:db8::1]"], tmp_path)
    assert "T_V6" in sym, sym
    _, sym = scan(opts + ["--client-ip", "::ffff:203.0.113.9"], tmp_path)
    assert "T_V4" in sym, sym


# --- milter -------------------------------------------------------------------


def milter_connect(c, family, ip, port=40000):
    data = b"client.example.org\0" + family
    if family in (b"4", b"6"):
        data += struct.pack("!H", port) + ip.encode() + b"\0"
    c.step(b"C", data)
    c.step(b"H", b"client.example.org\0")


def test_milter_ipv6_and_mapped_connect(mw_factory, upstream, tmp_path):
    """The milter's connect with family '6': plain IPv6 shown as is (was
    fine); a mapped address is the IPv4 one in the audit log and in
    milter_internal_networks (before: "::ffff:10.1.2.3", inbound); with no
    address but Sendmail's {client_addr} "IPv6:..." the prefix is dropped
    (before: "IPv6:2001:db8::5" in the audit log); a mapped network in
    milter_internal_networks is the IPv4 one (before: never matched)."""
    port = free_port()
    mw = mw_factory(upstream, opts=[("milter_listen", "inet:%d@127.0.0.1" % port),
                                    ("milter_internal_networks",
                                     "10.0.0.0/8 2001:db8:aaaa::/48 ::ffff:203.0.113.0/120")])
    assert wait_until(lambda: _port_open("127.0.0.1", port), 10)
    cases = [(b"6", "2001:db8:bbbb::1", "2001:db8:bbbb::1", "inbound"),
             (b"6", "IPv6:2001:db8:bbbb::2", "2001:db8:bbbb::2", "inbound"),   # libmilter strips it
             (b"6", "2001:db8:aaaa::1", "2001:db8:aaaa::1", "outbound"),
             (b"6", "::ffff:10.1.2.3", "10.1.2.3", "outbound"),
             (b"6", "::ffff:192.0.2.3", "192.0.2.3", "inbound"),
             (b"4", "203.0.113.5", "203.0.113.5", "outbound")]
    for fam, ip, _, _ in cases:
        c = milterlib.RawMilter(port).negotiate()
        milter_connect(c, fam, ip)
        verdict, _, _ = c.message(make_msg(subject="v6"))
        assert verdict in (b"a", b"c"), verdict
        c.close()
    c = milterlib.RawMilter(port).negotiate()
    c.macros(b"C", [(b"{client_addr}", b"IPv6:2001:db8:aaaa::5")])
    milter_connect(c, b"U", "")
    c.message(make_msg(subject="v6"))
    c.close()
    recs = milterlib.wait_records(mw, 7)
    got = [(r["client_ip"], r["direction"]) for r in recs]
    want = [(w, d) for _, _, w, d in cases] + [("2001:db8:aaaa::5", "outbound")]
    assert got == want, got


def test_connections_per_ip_count_an_ipv6_client_per_64(mw_factory, upstream):
    """max_connections_per_ip holds for a client rotating addresses in its
    /64 (before: each address had its own count, the third got 220)."""
    m = mw_pp(mw_factory, upstream, [("max_connections_per_ip", "2")])
    held = [pp_client(m, v1("2001:db8:7:7::1")), pp_client(m, v1("2001:db8:7:7::2"))]
    s = socket.socket(m.pp_family)
    s.settimeout(5)
    s.connect((m.pp_host, m.port))
    s.sendall(v1("2001:db8:7:7:abcd::3"))
    assert s.recv(200).startswith(b"421 4.7.0"), m.stderr_tail()
    s.close()
    other = pp_client(m, v1("2001:db8:7:8::1"))       # the next /64
    for c in held + [other]:
        c.quit()
    # a closed connection is given back to its /64
    assert wait_until(lambda: "disconnect [2001:db8:7:7::2]" in m.stderr_text(), 3)
    pp_client(m, v1("2001:db8:7:7::4")).quit()


def test_proxy_protocol_from_ipv6_networks_do_not_cover_ipv4(mw_factory, upstream):
    """proxy_protocol_from = ::/0 trusts IPv6 balancers, not IPv4 ones
    (before: IPv4 peers were matched as ::ffff:a.b.c.d, inside ::/0, and
    could send PROXY headers, i.e. choose their client address)."""
    m = mw_pp(mw_factory, upstream, [("listener.pp.proxy_protocol_from", "::/0")])
    s = socket.socket()
    s.settimeout(5)
    s.connect(("127.0.0.1", m.port))
    s.sendall(v1("192.0.2.1"))
    assert s.recv(200).startswith(b"421"), m.stderr_tail()
    s.close()
    assert "may not send PROXY headers" in m.stderr_text()
    r = run_mw(["-t", "-o", "listener.x.listen=127.0.0.1:2525", "-o", "listener.x.upstream=127.0.0.1:2526",
                "-o", "listener.x.proxy_protocol=yes", "-o", "listener.x.proxy_protocol_from=::ffff:0:0/95"])
    assert r.returncode != 0, r.stdout
    if ipv6_available():
        m6 = mw_pp(mw_factory, upstream, [("listener.pp.proxy_protocol_from", "::/0 10.0.0.0/8")],
                   listen="::1")
        assert send_as(m6, v1("2001:db8::1")).code == 250


# --- translated IPv4 clients (nat64_prefixes, RFC 6052) --------------------------


def test_spf_of_a_translated_ipv4_client(dns_server, tmp_path):
    """An IPv4 client behind a stateless translator (SIIT-DC) or a reverse
    NAT64 arrives as 64:ff9b::192.0.2.9: SPF checks it as 192.0.2.9, so an
    ip4: record passes (before: SPF_FAIL, ip6: mechanisms against the IPv6
    form); a site's own prefix likewise; 6to4 (2002::/16) is not
    translated: its address is the relay's."""
    for z, recs in SPF_ZONES.items():
        dns_server.add_zone(z, recs)
    dns_server.start()
    fw = dns_server.forwarder
    res, sym = spf_scan(tmp_path, fw, "64:ff9b::c000:209", "a@four.test", full=True)
    assert "SPF_PASS" in sym, sym
    assert "client-ip=192.0.2.9;" in received_spf(res)[0], res
    assert "SPF_FAIL" in spf_scan(tmp_path, fw, "64:ff9b::c633:6409", "a@four.test")  # 198.51.100.9
    # 64:ff9b::/96 with the site's own network inside: not translated
    # (RFC 6052 3.1), so never a 192.0.2.128/25 of spf_skip_networks either
    assert "SPF_FAIL" in spf_scan(tmp_path, fw, "64:ff9b::c0a8:109", "a@four.test")
    # a network-specific prefix: the configured one, and no longer the default
    res, sym = scan(["-o", "filters=spf", "-o", "dns_forwarder=" + fw,
                     "-o", "nat64_prefixes=2001:db8:64::/96", "--client-ip", "2001:db8:64::c000:209",
                     "--from", "a@four.test", "--helo", "mx.example.org"], tmp_path)
    assert "SPF_PASS" in sym, sym
    res, sym = scan(["-o", "filters=spf", "-o", "dns_forwarder=" + fw,
                     "-o", "nat64_prefixes=2001:db8:64::/96", "--client-ip", "64:ff9b::c000:209",
                     "--from", "a@four.test", "--helo", "mx.example.org"], tmp_path)
    assert "SPF_FAIL" in sym, sym
    assert "SPF_FAIL" in spf_scan(tmp_path, fw, "2002:c000:209::1", "a@four.test")


def test_dnsbl_and_audit_of_a_translated_client_through_proxy(dns_server, mw_factory, upstream, tmp_path):
    """A PROXY header carrying 64:ff9b::192.0.2.99: the DNSBL is asked for
    99.2.0.192 and lists it (before: the ip6.arpa nibbles, not listed), the
    audit log, XCLIENT and the limits see 192.0.2.99; the log line keeps
    the IPv6 address that connected."""
    dns_server.add_zone("zen.bl.test", ["99.2.0.192 A 127.0.0.2"])
    dns_server.start()
    m = mw_pp(mw_factory, upstream, store_opts("lmdb", tmp_path)
              + [("filters", "dnsbl ratelimit"), ("dns_forwarder", dns_server.forwarder),
                 ("dnsbl_list", ""), ("dnsbl_list", ZEN), ("ratelimit_ip", "1/1h")])
    assert send_as(m, v2_inet6("64:ff9b::c000:263", 4711)).code == 250
    rec = m.audit(1)[-1]
    assert rec["client_ip"] == "192.0.2.99", rec["client_ip"]
    assert any(s["name"] == "RCVD_IN_SBL" for s in rec["symbols"]), rec["symbols"]
    assert "[64:ff9b::c000:263]:4711 is the IPv4 client 192.0.2.99" in m.stderr_text()
    # the same client written as IPv4 is the same client for ratelimit_ip
    r = send_as(m, v1("192.0.2.99"))
    assert r.code == 451 and "Rate limit" in r.text, r


def test_milter_translated_connect(mw_factory, upstream, tmp_path):
    """The milter's family-6 connect from a translator: the IPv4 client in
    the audit log and in milter_internal_networks (a network-specific
    prefix may carry the site's own 10.0.0.0/8); the well-known prefix
    never yields loopback or a private network, so 64:ff9b::127.0.0.1 is no
    internal client (the default list holds 127.0.0.0/8)."""
    port = free_port()
    mw = mw_factory(upstream, opts=[("milter_listen", "inet:%d@127.0.0.1" % port),
                                    ("nat64_prefixes", "64:ff9b::/96 2001:db8:64::/96"),
                                    ("milter_internal_networks", "127.0.0.0/8 10.0.0.0/8")])
    assert wait_until(lambda: _port_open("127.0.0.1", port), 10)
    cases = [("64:ff9b::c000:203", "192.0.2.3", "inbound"),
             ("2001:db8:64::a01:203", "10.1.2.3", "outbound"),
             ("64:ff9b::7f00:1", "64:ff9b::7f00:1", "inbound"),
             ("64:ff9b::a01:203", "64:ff9b::a01:203", "inbound")]
    for ip, _, _ in cases:
        c = milterlib.RawMilter(port).negotiate()
        milter_connect(c, b"6", ip)
        verdict, _, _ = c.message(make_msg(subject="xlat"))
        assert verdict in (b"a", b"c"), verdict
        c.close()
    recs = milterlib.wait_records(mw, len(cases))
    assert [(r["client_ip"], r["direction"]) for r in recs] == [(w, d) for _, w, d in cases]


@pytest.mark.parametrize("value,why", [
    ("2002::/16", "6to4"), ("2002:c000:201::/48", "6to4"), ("2001:db8::/72", "/96"),
    ("2001:db8::1/96", "bits set"), ("::ffff:0:0/96", "not an IPv6 prefix"),
    ("64:ff9b::", "not an IPv6 prefix"), ("192.0.2.0/24", "not an IPv6 prefix")])
def test_nat64_prefixes_refused_at_config_check(value, why):
    r = run_mw(["-t", "-o", "nat64_prefixes=" + value])
    assert r.returncode != 0 and why.encode() in r.stderr, (value, r.stderr)
    r = run_mw(["-t", "-o", "nat64_prefixes=64:ff9b::/96 2001:db8:64::/96 2001:db8:100::/40"])
    assert r.returncode == 0, r.stderr


# --- list entries written inside a translation prefix -----------------------------


def test_list_entries_inside_a_translation_prefix_are_ipv4(mw_factory, upstream, dns_server, tmp_path):
    """An administrator who writes a translated client as it connects
    (64:ff9b::192.0.2.0/120) means that client, but the client is its IPv4
    address from the listener on: the entry is taken as the IPv4 network
    (before: it stayed IPv6 and matched nothing translated, so the milter
    took such a client as inbound, greylisting held it, SPF checked it)."""
    # the milter: the well-known prefix and a site's /40 (u-octet skipped)
    port = free_port()
    mw = mw_factory(upstream, opts=[("milter_listen", "inet:%d@127.0.0.1" % port),
                                    ("nat64_prefixes", "64:ff9b::/96 2001:db8:100::/40"),
                                    ("milter_internal_networks",
                                     "127.0.0.1 64:ff9b::c000:200/120 2001:db8:1c6:3364::/64")])
    assert wait_until(lambda: _port_open("127.0.0.1", port), 10)
    cases = [("64:ff9b::c000:203", "192.0.2.3", "outbound"),
             ("64:ff9b::c000:303", "192.0.3.3", "inbound"),
             ("2001:db8:1c6:3364:7::", "198.51.100.7", "outbound"),
             ("2001:db8:1c6:3365:7::", "198.51.101.7", "inbound"),
             # u-octet set: a host of that /64, not a translation; the
             # entry holds it still
             ("2001:db8:1c6:3364:107::", "2001:db8:1c6:3364:107::", "outbound")]
    for ip, _, _ in cases:
        c = milterlib.RawMilter(port).negotiate()
        milter_connect(c, b"6", ip)
        verdict, _, _ = c.message(make_msg(subject="xlat entry"))
        assert verdict in (b"a", b"c"), verdict
        c.close()
    recs = milterlib.wait_records(mw, len(cases))
    assert [(r["client_ip"], r["direction"]) for r in recs] == [(w, d) for _, w, d in cases]
    # the start-up log says what became of them
    log = mw.stderr_text()
    assert ("-o milter_internal_networks: note: 64:ff9b::c000:200/120 is inside the translation "
            "prefix 64:ff9b::/96 (nat64_prefixes), whose clients are their IPv4 address: taken as "
            "192.0.2.0/24") in log, log
    assert "2001:db8:1c6:3364::/64 is inside the translation prefix 2001:db8:100::/40" in log, log

    # greylisting's pass list, through a PROXY header
    m = mw_pp(mw_factory, upstream, store_opts("lmdb", tmp_path)
              + [("filters", "greylist"), ("greylist_delay", "1h"),
                 ("greylist_whitelist", "@example.com 64:ff9b::198.51.100.0/120")])
    assert send_as(m, v2_inet6("64:ff9b::c633:6404")).code == 250
    assert send_as(m, v2_inet6("64:ff9b::c633:6504")).code == 451
    assert send_as(m, v1("198.51.100.5")).code == 250        # the same network written as IPv4

    # spf_skip_networks: six.test has no ip4:, so 192.0.2.9 fails unless skipped
    for z, recs in SPF_ZONES.items():
        dns_server.add_zone(z, recs)
    dns_server.start()
    for skip, want in (("::1", "SPF_FAIL"), ("64:ff9b::c000:200/120", None)):
        _, sym = scan(["-o", "filters=spf", "-o", "dns_forwarder=" + dns_server.forwarder,
                       "-o", "spf_skip_networks=" + skip, "--client-ip", "64:ff9b::c000:209",
                       "--from", "a@six.test", "--helo", "mx.example.org"], tmp_path)
        assert [s for s in sym if s.startswith("SPF_")] == ([want] if want else []), (skip, sym)


def test_list_entries_translated_at_config_check(tmp_path):
    """mailwarden -t notes each entry it takes as IPv4, with FILE:LINE, and
    -t -v shows the lists as in effect; entries outside a prefix, wider
    than one (::/0), or in a range never translated stay as written; an
    entry that is a whole prefix (every IPv4 client) is refused, naming
    the line."""
    conf = tmp_path / "mw.conf"
    conf.write_text("filters = greylist spf\n"
                    "spf_skip_networks = 127.0.0.0/8, 64:ff9b::c000:201 ::/0\n"
                    "greylist_whitelist = @example.com 64:ff9b::198.51.100.0/120 to:pm@example.org\n"
                    "milter_internal_networks = 10.0.0.0/8 64:ff9b::10.0.0.0/104 2001:db8::/32\n"
                    "[listener mx]\nlisten = 127.0.0.1:2525\nupstream = 127.0.0.1:2526\n"
                    "proxy_protocol = yes\nproxy_protocol_from = 127.0.0.1 64:ff9b::c000:205\n")
    r = run_mw(["-t", "-v", "-c", str(conf)] + store_args(tmp_path))
    assert r.returncode == 0, r.stderr
    err, out = r.stderr.decode(), r.stdout.decode()
    notes = [ln for ln in err.splitlines() if ": note: " in ln]
    assert len(notes) == 3, err
    assert "%s:2: note: spf_skip_networks: 64:ff9b::c000:201 is inside" % conf in err, err
    assert "%s:3: note: greylist_whitelist: 64:ff9b::198.51.100.0/120 is inside" % conf in err, err
    assert "%s:9: note: proxy_protocol_from: 64:ff9b::c000:205 is inside" % conf in err, err
    assert "spf_skip_networks = 127.0.0.0/8, 192.0.2.1 ::/0\n" in out, out
    assert "greylist_whitelist = @example.com 198.51.100.0/24 to:pm@example.org\n" in out, out
    # 10.0.0.0/8 is never translated from the well-known prefix (RFC 6052 3.1)
    assert "milter_internal_networks = 10.0.0.0/8 64:ff9b::10.0.0.0/104 2001:db8::/32\n" in out, out
    assert "proxy_protocol_from = 127.0.0.1 192.0.2.5\n" in out, out
    # with no prefixes, nothing is translated
    r = run_mw(["-t", "-v", "-c", str(conf), "-o", "nat64_prefixes="] + store_args(tmp_path))
    assert r.returncode == 0 and b": note: " not in r.stderr, r.stderr
    assert b"spf_skip_networks = 127.0.0.0/8, 64:ff9b::c000:201 ::/0\n" in r.stdout, r.stdout
    # the whole prefix
    bad = tmp_path / "bad.conf"
    bad.write_text("nat64_prefixes = 2001:db8:100::/40\nmilter_internal_networks = ::1\n"
                   "spf_skip_networks = 2001:db8:100::/40\n")
    r = run_mw(["-t", "-c", str(bad)])
    assert r.returncode != 0, r.stdout
    assert ("%s:3: spf_skip_networks: \"2001:db8:100::/40\" is the whole translation prefix "
            "2001:db8:100::/40" % bad).encode() in r.stderr, r.stderr
    r = run_mw(["-t", "-o", "listener.x.listen=127.0.0.1:2525", "-o", "listener.x.upstream=127.0.0.1:2526",
                "-o", "listener.x.proxy_protocol_from=64:ff9b::/96"])
    assert r.returncode != 0 and b"-o listener.x.proxy_protocol_from: \"64:ff9b::/96\" is the whole" \
        in r.stderr, r.stderr
