"""Relays and trust (issue 6, rules/eval_relay.c) through "mailwarden scan"
and through the proxy: the Received chain as SpamAssassin parses it in the
X-Spam-Relays-* pseudo-headers, the SMTP client's hop first when known
(untrusted from a public address, trusted from a private one or when
authenticated), trusted_networks from a rule file, and the relay eval
functions (ALL_TRUSTED, NO_RELAYS, helo_ip_mismatch, shifted dates)."""
import json
import os
import subprocess

from mwlib import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
MW = os.environ.get("MW_BIN", os.path.join(HERE, "..", "..", "build", "mailwarden"))

RULES = r"""
header T_ALL_TRUSTED   eval:check_all_trusted()
header T_NO_RELAYS     eval:check_no_relays()
header T_HELO_MISMATCH eval:helo_ip_mismatch()
header T_DATE_PAST_3_6 eval:check_for_shifted_date('-6', '-3')
header T_HOP_FIRST     X-Spam-Relays-Untrusted =~ /^\[ ip=198\.51\.100\.9 rdns= helo=out\.example\.net by=gw\.mailwarden\.test /
header T_SENDER_RELAY  X-Spam-Relays-Untrusted =~ /\[ ip=203\.0\.113\.5 rdns=mail\.sender\.example helo=mail\.sender\.example by=mx\.example\.org ident= envfrom= intl=0 id=4ABCD12345 auth= msa=0 \]/
header T_SENDER_TRUSTED X-Spam-Relays-Trusted =~ /ip=203\.0\.113\.5 /
header T_EXTERNAL_HELO X-Spam-Relays-External =~ /^\[ ip=203\.0\.113\.5 [^\]]*\] \[ ip=198\.51\.100\.70 rdns=pc\.sender\.example helo=192\.0\.2\.44 /
"""
for _n in ("T_ALL_TRUSTED", "T_NO_RELAYS", "T_HELO_MISMATCH", "T_DATE_PAST_3_6", "T_HOP_FIRST",
           "T_SENDER_RELAY", "T_SENDER_TRUSTED", "T_EXTERNAL_HELO"):
    RULES += "score %s 0.1\n" % _n

CHAIN = (b"Received: from mail.sender.example (mail.sender.example [203.0.113.5])\r\n"
         b"\tby mx.example.org (Postfix) with ESMTP id 4ABCD12345\r\n"
         b"\tfor <bob@example.org>; Mon, 1 Jun 2020 10:00:00 +0000\r\n"
         b"Received: from pc.sender.example (HELO 192.0.2.44) (198.51.100.70)\r\n"
         b"\tby mail.sender.example with SMTP; Mon, 1 Jun 2020 09:59:00 +0000\r\n"
         b"From: Alice <alice@sender.example>\r\nTo: bob@example.org\r\nSubject: hello\r\n"
         b"Date: Mon, 1 Jun 2020 05:00:00 +0000\r\nMessage-ID: <1@sender.example>\r\n\r\nhi\r\n")
INSIDE = (b"Received: from pc1.example.org (pc1.example.org [10.0.0.7])\r\n"
          b"\tby mx.example.org (Postfix) with ESMTP id 5ABCD\r\n"
          b"\tfor <bob@example.org>; Mon, 1 Jun 2020 10:00:00 +0000\r\n"
          b"From: Carol <carol@example.org>\r\nTo: bob@example.org\r\nSubject: lunch\r\n\r\nnoon?\r\n")
NONE = b"From: Dave <d@example.org>\r\nTo: bob@example.org\r\nSubject: x\r\n\r\nno relays\r\n"


def scan(tmp_path, msg, extra=(), rules=RULES):
    cf = tmp_path / "relay.cf"
    cf.write_text(rules)
    p = tmp_path / "m.eml"
    p.write_bytes(msg)
    args = [MW, "scan", "-o", "filters=rules", "-o", "rules_files=", "-o", "rules_files=" + str(cf),
            "-o", "rules_cache_dir=" + str(tmp_path / "cache"), "-o", "log=stderr",
            "-o", "dns_forwarder=127.0.0.1@%d" % free_port(),
            # the client's reverse lookup goes to the dead port: no need
            # to wait the default 5 s for it
            "-o", "dns_timeout=200ms"] + list(extra) + [str(p)]
    r = subprocess.run(args, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return {s["name"] for s in json.loads(r.stdout)["symbols"] if s.get("filter") == "rules"}


def test_received_chain_without_client(tmp_path):
    got = scan(tmp_path, CHAIN)
    # the sender's MX is public: nothing trusted, the relays as SpamAssassin writes them
    assert {"T_SENDER_RELAY", "T_HELO_MISMATCH", "T_DATE_PAST_3_6", "T_EXTERNAL_HELO"} <= got, got
    assert not got & {"T_ALL_TRUSTED", "T_NO_RELAYS", "T_HOP_FIRST", "T_SENDER_TRUSTED"}, got
    got = scan(tmp_path, INSIDE)
    assert "T_ALL_TRUSTED" in got and "T_NO_RELAYS" not in got, got
    got = scan(tmp_path, NONE)
    assert "T_NO_RELAYS" in got and "T_ALL_TRUSTED" not in got, got


def test_client_hop_comes_first(tmp_path):
    # its by= is our hostname, as in the Received field the MTA will add
    got = scan(tmp_path, CHAIN, ["--client-ip", "198.51.100.9", "--helo", "out.example.net",
                                 "-o", "hostname=gw.mailwarden.test"])
    assert {"T_HOP_FIRST", "T_SENDER_RELAY"} <= got, got
    # the hop from a public client is untrusted even for a message whose own
    # Received fields are all private
    got = scan(tmp_path, INSIDE, ["--client-ip", "198.51.100.9", "--helo", "out.example.net",
                                  "-o", "hostname=gw.mailwarden.test"])
    assert "T_ALL_TRUSTED" not in got and "T_HOP_FIRST" in got, got
    got = scan(tmp_path, INSIDE, ["--client-ip", "10.1.1.1", "--helo", "gw.example.org"])
    assert "T_ALL_TRUSTED" in got, got
    got = scan(tmp_path, NONE, ["--client-ip", "10.1.1.1"])
    assert "T_ALL_TRUSTED" in got and "T_NO_RELAYS" not in got, got


def test_trusted_networks_from_rule_file(tmp_path):
    rules = RULES + "trusted_networks 203.0.113.0/24\n"
    got = scan(tmp_path, CHAIN, rules=rules)
    assert "T_SENDER_TRUSTED" in got and "T_SENDER_RELAY" not in got, got
    assert "T_ALL_TRUSTED" not in got               # 198.51.100.70 is not ours
    rules = RULES + "trusted_networks 203.0.113.0/24 198.51.100.0/24\n"
    assert "T_ALL_TRUSTED" in scan(tmp_path, CHAIN, rules=rules)
    # a bad network stops the start with FILE:LINE
    cf = tmp_path / "bad.cf"
    cf.write_text("trusted_networks 10.0.0.300\n")
    p = tmp_path / "m.eml"
    p.write_bytes(NONE)
    r = subprocess.run([MW, "scan", "-o", "filters=rules", "-o", "rules_files=", "-o", "rules_files=" + str(cf),
                        "-o", "dns_forwarder=127.0.0.1@%d" % free_port(), str(p)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "bad.cf:1:" in r.stderr + r.stdout


def test_through_proxy(mw_factory, upstream, tmp_path):
    """the proxy's client (127.0.0.1, private) is the first, trusted hop; an
    AUTH-less session from loopback with only private Received fields is
    ALL_TRUSTED, one with the public chain is not"""
    cf = tmp_path / "relay.cf"
    cf.write_text(RULES + "header T_PROXY_HOP X-Spam-Relays-Trusted =~ /^\\[ ip=127\\.0\\.0\\.1 /\n"
                  "score T_PROXY_HOP 0.1\n")
    m = mw_factory(upstream, opts=[("filters", "rules"), ("rules_files", str(cf)),
                                   ("rules_cache_dir", str(tmp_path / "cache"))])
    c = m.client()
    c.ehlo()
    r1 = c.transaction("carol@example.org", ["bob@example.org"], INSIDE)
    r2 = c.transaction("alice@sender.example", ["bob@example.org"], CHAIN)
    c.quit()
    assert r1["final"].code == 250 and r2["final"].code == 250
    recs = m.audit(2)
    names = [{s["name"] for s in rec["symbols"]} for rec in recs[-2:]]
    assert {"T_ALL_TRUSTED", "T_PROXY_HOP"} <= names[0], names[0]
    assert "T_PROXY_HOP" in names[1] and "T_ALL_TRUSTED" not in names[1], names[1]
    assert "T_SENDER_RELAY" in names[1], names[1]
