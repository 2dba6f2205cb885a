"""test_spf.py - the spf filter end to end through the proxy, DNS served by
unbound on loopback (dnsserver.py).  The client is 127.0.0.1, so
spf_skip_networks is emptied (by default loopback clients are not checked):
a domain whose record does not list 127.0.0.1 fails, one that lists it
passes.  Also: the HELO identity for the null sender, a softfail scored
into a tag, and a dead DNS forwarder that must not stall messages past
the deadline."""

import time

import audit_fields as A
from dnsserver import dns_server, dead_dns  # noqa: F401
from mwlib import make_msg, headers_named

ZONES = {
    "fail.test": ["@ TXT \"v=spf1 ip4:192.0.2.0/24 -all\""],
    "pass.test": ["@ TXT \"v=spf1 a:mx.pass.test -all\"", "mx A 127.0.0.1"],
    "soft.test": ["@ TXT \"v=spf1 ip4:192.0.2.1 ~all\""],
}


def start(dns_server, mw_factory, upstream, **extra):
    for z, recs in ZONES.items():
        dns_server.add_zone(z, recs)
    dns_server.start()
    opts = {"filters": "spf", "dns_forwarder": dns_server.forwarder, "spf_skip_networks": "",
            "authserv_id": "mx.mailwarden.test", "dns_client_name": "no"}
    opts.update(extra)
    return mw_factory(upstream, opts=opts)


def test_fail_is_rejected_with_the_configured_text(dns_server, mw_factory, upstream):
    m = start(dns_server, mw_factory, upstream, spf_fail_action="reject",
              spf_reject_text="SPF refused %{i} for %{d}")
    c = m.client()
    c.ehlo("client.example.org")
    r = c.transaction("alice@fail.test", ["bob@example.net"], make_msg(frm="alice@fail.test"))
    assert r["final"].code == 550, r["final"]
    assert r["final"].first == "5.7.1 SPF refused 127.0.0.1 for fail.test", r["final"]
    c.quit()
    time.sleep(0.3)
    assert upstream.messages == []
    rec = m.audit(1)[0]
    assert A.field(rec, "action") == "reject"
    assert "SPF_FAIL" in A.symbols(rec)


def test_fail_scores_only_by_default(dns_server, mw_factory, upstream):
    m = start(dns_server, mw_factory, upstream)
    c = m.client()
    c.ehlo("client.example.org")
    r = c.transaction("alice@fail.test", ["bob@example.net"], make_msg(frm="alice@fail.test"))
    assert r["final"].code == 250, r["final"]
    c.quit()
    msg = upstream.wait_messages(1)[0]
    spf = headers_named(msg.content, "Received-SPF")
    assert len(spf) == 1 and spf[0].startswith("fail "), spf
    assert "client-ip=127.0.0.1;" in spf[0] and "envelope-from=alice@fail.test;" in spf[0]
    ar = headers_named(msg.content, "Authentication-Results")
    assert ar == ["mx.mailwarden.test; spf=fail smtp.mailfrom=alice@fail.test"], ar
    assert A.symbols(m.audit(1)[0]).get("SPF_FAIL") == 3.0


def test_pass_and_helo_identity(dns_server, mw_factory, upstream):
    m = start(dns_server, mw_factory, upstream, spf_fail_action="reject")
    c = m.client()
    c.ehlo("client.example.org")
    r = c.transaction("alice@pass.test", ["bob@example.net"], make_msg(frm="alice@pass.test"))
    assert r["final"].code == 250, r["final"]
    c.quit()
    c = m.client()
    c.ehlo("pass.test")                       # null sender: the HELO name is checked
    r = c.transaction("", ["bob@example.net"], make_msg(frm="mailer-daemon@pass.test"))
    assert r["final"].code == 250, r["final"]
    c.quit()
    c = m.client()
    c.ehlo("fail.test")
    r = c.transaction("", ["bob@example.net"], make_msg(frm="mailer-daemon@fail.test"))
    assert r["final"].code == 550, r["final"]
    c.quit()
    msgs = upstream.wait_messages(2)
    assert len(msgs) == 2
    spf = headers_named(msgs[0].content, "Received-SPF")
    assert len(spf) == 1 and spf[0].startswith("pass ("), spf
    assert "identity=mailfrom;" in spf[0]
    assert headers_named(msgs[0].content, "Authentication-Results") == [
        "mx.mailwarden.test; spf=pass smtp.mailfrom=alice@pass.test"]
    spf = headers_named(msgs[1].content, "Received-SPF")
    assert len(spf) == 1 and spf[0].startswith("pass (") and "identity=helo;" in spf[0], spf
    assert headers_named(msgs[1].content, "Authentication-Results") == [
        "mx.mailwarden.test; spf=pass smtp.helo=pass.test"]
    syms = [A.symbols(r) for r in m.audit(3)]
    assert [("SPF_PASS" in s, "SPF_FAIL" in s) for s in syms] == [(1, 0), (1, 0), (0, 1)]


def test_softfail_score_tags(dns_server, mw_factory, upstream):
    m = start(dns_server, mw_factory, upstream, spf_softfail_score="6")
    c = m.client()
    c.ehlo("client.example.org")
    r = c.transaction("alice@soft.test", ["bob@example.net"], make_msg(frm="alice@soft.test"))
    assert r["final"].code == 250, r["final"]
    c.quit()
    msg = upstream.wait_messages(1)[0]
    assert headers_named(msg.content, "X-Spam-Flag") == ["YES"]
    assert headers_named(msg.content, "Received-SPF")[0].startswith("softfail ")
    assert A.field(m.audit(1)[0], "action") == "tag"


def test_dead_forwarder_is_a_bounded_temperror(dead_dns, mw_factory, upstream):
    m = mw_factory(upstream, opts={"filters": "spf", "dns_forwarder": dead_dns.forwarder,
                                   "spf_skip_networks": "", "dns_timeout": "1s",
                                   "dns_client_name": "no"})
    times = []
    for i in range(2):
        c = m.client(timeout=20)
        c.ehlo("client.example.org")
        t0 = time.monotonic()
        r = c.transaction("alice@slow.test", ["bob@example.net"], make_msg(frm="alice@slow.test"))
        times.append(time.monotonic() - t0)
        assert r["final"].code == 250, r["final"]
        c.quit()
    # the first waits out its deadline (1 s), not libunbound's 17 s; the
    # second finds that query still unanswered and does not wait again
    assert 0.9 <= times[0] < 4.0, times
    assert times[1] < 0.9, times
    msgs = upstream.wait_messages(2)
    for msg in msgs:
        assert headers_named(msg.content, "Received-SPF")[0].startswith("temperror "), msg.content
        assert "spf=temperror" in headers_named(msg.content, "Authentication-Results")[0]


def test_dead_forwarder_tempfail_action(dead_dns, mw_factory, upstream):
    m = mw_factory(upstream, opts={"filters": "spf", "dns_forwarder": dead_dns.forwarder,
                                   "spf_skip_networks": "", "dns_timeout": "500ms",
                                   "spf_temperror_action": "tempfail", "dns_client_name": "no"})
    c = m.client(timeout=20)
    c.ehlo("client.example.org")
    t0 = time.monotonic()
    r = c.transaction("alice@slow.test", ["bob@example.net"], make_msg(frm="alice@slow.test"))
    assert time.monotonic() - t0 < 3.0
    assert r["final"].code == 451, r["final"]
    c.quit()
    assert upstream.messages == []


def test_concurrent_checks_keep_their_results(dns_server, mw_factory, upstream):
    """Scanner threads share one libspf2 server and one DNS cache: 4 clients
    at once, pass and fail domains mixed, each message gets its own result."""
    import threading
    m = start(dns_server, mw_factory, upstream, scanner_threads="4")
    errors = []

    def client(k):
        try:
            for i in range(6):
                dom = "pass.test" if (i + k) % 2 == 0 else "fail.test"
                c = m.client(timeout=20)
                c.ehlo("client.example.org")
                r = c.transaction("u%d-%d@%s" % (k, i, dom), ["bob@example.net"],
                                  make_msg(frm="u@" + dom, subject="k%d i%d" % (k, i)))
                if r["final"].code != 250:
                    errors.append(r["final"])
                c.quit()
        except Exception as e:          # reported below
            errors.append(e)
    ts = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    msgs = upstream.wait_messages(24, timeout=10)
    assert len(msgs) == 24
    for msg in msgs:
        dom = msg.mail_from.rsplit("@", 1)[1]
        spf = headers_named(msg.content, "Received-SPF")
        want = "pass" if dom == "pass.test" else "fail"
        assert len(spf) == 1 and spf[0].startswith(want + " "), (msg.mail_from, spf)
        assert "envelope-from=%s;" % msg.mail_from in spf[0]


def test_helo_cannot_forge_fields_of_the_spf_log_line(mw_factory, upstream):
    """For the null sender the SPF identity is the HELO name, the client's
    word: the spf filter's line said it as domain=%s, quoted with \\" by
    kv_value when it was no domain, and mw_log's escape then doubled the
    backslash: `x"action=accept` gave `domain="x\\"action=accept"`, an
    action= field to a reader that splits on quotes or greps for
    `\\baction=`.  It is one token now (log_esc_word).  No DNS: a name with
    a '"' is no valid domain, checked without a lookup."""
    m = mw_factory(upstream, opts={"filters": "spf", "dns_forwarder": "127.0.0.1@9", "spf_skip_networks": "",
                                   "dns_client_name": "no"})
    c = m.client()
    c.ehlo('x"action=accept')
    r = c.transaction("", ["bob@example.net"], make_msg())
    c.quit()
    assert r["final"].code == 250, r["final"]
    lines = [ln for ln in m.stderr_tail(200).splitlines() if "filter=spf spf=" in ln]
    assert len(lines) == 1, m.stderr_tail(200)
    assert "identity=helo domain=x\\x22action\\x3daccept client=127.0.0.1" in lines[0], lines[0]
    assert "action=" not in lines[0], lines[0]
