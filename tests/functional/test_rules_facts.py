"""test_rules_facts.py - the rules filter's eval: functions that other
filters answer (issue 6, rules/eval_facts.c + filters/rules_facts.c):
SPF and DKIM results of the real spf and dkim filters, run before the
rules filter in the same scan, against keys and SPF records served by
unbound on loopback; the order of the filters setting matters; the same
through the proxy.  Lists (welcomelist_from_spf/_dkim, freemail_domains)
come from the test's rule file."""

import os

import pytest

import audit_fields as A
import dkimlib as dl
from mwlib import headers_named

RULES = """
header T_SPF_PASS      eval:check_for_spf_pass()
header T_SPF_FAIL      eval:check_for_spf_fail()
header T_SPF_SOFTFAIL  eval:check_for_spf_softfail()
header T_SPF_HELO_PASS eval:check_for_spf_helo_pass()
full   T_DKIM_SIGNED   eval:check_dkim_signed()
full   T_DKIM_VALID    eval:check_dkim_valid()
full   T_DKIM_VALID_AU eval:check_dkim_valid_author_sig()
full   T_DKIM_VALID_SIGN eval:check_dkim_valid('sign.test')
header T_DKIM_WL       eval:check_for_dkim_welcomelist_from()
header T_SPF_WL        eval:check_for_spf_welcomelist_from()
header T_FREEMAIL_FROM eval:check_freemail_from()
header T_IN_BANKS      eval:check_from_in_list('BANKS')
meta   T_BOTH_AUTH     T_SPF_PASS && T_DKIM_VALID_AU
welcomelist_from_dkim  *@sign.test
welcomelist_from_spf   *@pass.test
freemail_domains       freemail.test
enlist_addrlist (BANKS) *@bank.test
"""
NAMES = ["T_SPF_PASS", "T_SPF_FAIL", "T_SPF_SOFTFAIL", "T_SPF_HELO_PASS", "T_DKIM_SIGNED",
         "T_DKIM_VALID", "T_DKIM_VALID_AU", "T_DKIM_VALID_SIGN", "T_DKIM_WL", "T_SPF_WL",
         "T_FREEMAIL_FROM", "T_IN_BANKS", "T_BOTH_AUTH"]
CLIENT = "192.0.2.10"       # what `mailwarden scan --client-ip` is told (dkimlib.scan)


@pytest.fixture
def setup(tmp_path):
    keys = dl.make_keys(tmp_path)
    dns = dl.TxtServer(tmp_path, {
        "rsa1._domainkey.sign.test": [keys["rsa"][1]],
        "pass.test": ["v=spf1 ip4:%s ip4:127.0.0.1 -all" % CLIENT],
        "fail.test": ["v=spf1 -all"],
        "soft.test": ["v=spf1 ~all"],
    })
    rules = tmp_path / "facts.cf"
    rules.write_text(RULES + "".join("score %s 0.5\n" % n for n in NAMES))
    yield keys, dns, str(rules)
    dns.stop()


def message(frm, extra=b""):
    return (("From: %s\r\nTo: Bob <bob@example.net>\r\nSubject: facts\r\n"
             "Date: Fri, 27 Nov 2026 04:00:00 +0000\r\nMessage-ID: <f1@sign.test>\r\n" % frm).encode()
            + extra + b"\r\nHello Bob,\r\nthe figures.\r\n")


def signed(keys, frm="Alice <alice@sign.test>"):
    return dl.dkimpy_sign(message(frm), "rsa1", "sign.test", keys["rsa"][0])


def hits(tmp_path, name, data, dns, rules, filters="spf dkim rules", mail_from="alice@pass.test"):
    p = tmp_path / name
    p.write_bytes(data)
    opts = [("filters", filters), ("rules_files", ""), ("rules_files", rules),
            ("rules_cache_dir", ""), ("authserv_id", "mx.facts.test")] + dl.dns_opts(dns.forwarder)
    res, _ = dl.scan(p, opts, mail_from=mail_from)
    return {n for n in dl.symbols(res) if n.startswith("T_")}


def test_spf_and_dkim_verdicts_answer_the_evals(tmp_path, setup):
    keys, dns, rules = setup
    got = hits(tmp_path, "good.eml", signed(keys), dns, rules)
    assert got == {"T_SPF_PASS", "T_DKIM_SIGNED", "T_DKIM_VALID", "T_DKIM_VALID_AU", "T_DKIM_VALID_SIGN",
                   "T_DKIM_WL", "T_SPF_WL", "T_BOTH_AUTH"}, got


def test_failures_and_forgeries(tmp_path, setup):
    keys, dns, rules = setup
    # the body changed after signing, the envelope domain allows no one
    bad = signed(keys).replace(b"the figures.", b"the figures!")
    got = hits(tmp_path, "bad.eml", bad, dns, rules, mail_from="alice@fail.test")
    assert got == {"T_SPF_FAIL", "T_DKIM_SIGNED"}, got
    # softfail; a valid signature of sign.test on mail from a bank address
    # is not the author's, and the author is not welcomelisted
    got = hits(tmp_path, "third.eml", signed(keys, frm="Info <info@bank.test>"), dns, rules,
               mail_from="x@soft.test")
    assert got == {"T_SPF_SOFTFAIL", "T_DKIM_SIGNED", "T_DKIM_VALID", "T_DKIM_VALID_SIGN", "T_IN_BANKS"}, got
    # the null sender: SPF of the HELO name (mx.example.org has no record: none)
    got = hits(tmp_path, "null.eml", message("Carl <carl@freemail.test>"), dns, rules, mail_from="")
    assert got == {"T_FREEMAIL_FROM"}, got


def test_rules_before_the_filters_see_no_verdict(tmp_path, setup):
    """The facts are what filters listed earlier recorded: with rules first,
    SPF and DKIM validity are unknown (no hit); a signature field is still
    seen in the message itself."""
    keys, dns, rules = setup
    got = hits(tmp_path, "early.eml", signed(keys), dns, rules, filters="rules spf dkim")
    assert got == {"T_DKIM_SIGNED"}, got
    got = hits(tmp_path, "nofilters.eml", signed(keys), dns, rules, filters="rules")
    assert got == {"T_DKIM_SIGNED"}, got


def test_through_the_proxy(tmp_path, setup, mw_factory, upstream):
    keys, dns, rules = setup
    m = mw_factory(upstream, opts={
        "filters": "spf dkim rules", "rules_files": rules, "rules_cache_dir": "",
        "dns_forwarder": dns.forwarder, "spf_skip_networks": "", "dns_client_name": "no",
        "authserv_id": "mx.facts.test"})
    c = m.client()
    c.ehlo("client.example.org")
    r = c.transaction("alice@pass.test", ["bob@example.net"], signed(keys))
    assert r["final"].code == 250, r["final"]
    c.quit()
    msg = upstream.wait_messages(1)[0]
    ar = headers_named(msg.content, "Authentication-Results")
    assert ar and "spf=pass" in ar[0] and "dkim=pass" in ar[0], ar
    syms = A.symbols(m.audit(1)[0])
    got = {n for n in syms if n.startswith("T_")}
    assert got == {"T_SPF_PASS", "T_DKIM_SIGNED", "T_DKIM_VALID", "T_DKIM_VALID_AU", "T_DKIM_VALID_SIGN",
                   "T_DKIM_WL", "T_SPF_WL", "T_BOTH_AUTH"}, syms
    assert syms["T_BOTH_AUTH"] == 0.5
