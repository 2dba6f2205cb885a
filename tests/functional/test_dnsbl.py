"""test_dnsbl.py - DNS blocklists against the loopback DNS server
(tests/functional/dnsserver.py) with test zones: a client-IP list in the
Spamhaus zen layout, a DBL-style domain list and a URIBL-style bit-mask
list; listed, not listed, the "query refused / blocked resolver" answers
(logged, never scored), and a forwarder that never answers."""

import json
import time

import pytest

from dnsserver import dead_dns, dns_server  # noqa: F401 (fixtures)
from mwlib import make_msg, run_mw

ZEN = ("zen.bl.test ip 127.0.0.2=RCVD_IN_SBL:3.5 127.0.0.4/30=RCVD_IN_XBL:3 "
       "127.0.0.10/31=RCVD_IN_PBL:1.5")
DBL = "dbl.bl.test domain 127.0.1.2=DBL_SPAM:2.5 127.0.1.4/30=DBL_BAD:4"
URIBL = "multi.uribl.test uri &2=URIBL_BLACK:3 &4=URIBL_GREY:1 error=127.0.0.1"


def zones(srv):
    srv.add_zone("zen.bl.test", [
        "99.2.0.192 A 127.0.0.2",                 # 192.0.2.99: SBL
        "98.2.0.192 A 127.0.0.4",                 # 192.0.2.98: XBL
        "98.2.0.192 A 127.0.0.10",                #             and PBL
        "97.2.0.192 A 127.255.255.254",           # 192.0.2.97: public resolver refused
        "96.2.0.192 A 192.0.2.1",                 # 192.0.2.96: not a 127/8 answer
        "2.1.64.100 A 127.0.0.2",                 # 100.64.1.2: carrier-grade NAT, never asked
    ])
    srv.add_zone("dbl.bl.test", [
        "spammer.example A 127.0.1.2",
        "malware.example A 127.0.1.5",
        "ipquery.example A 127.0.1.255",          # DBL: IP queries refused
    ])
    srv.add_zone("multi.uribl.test", [
        "spamlink.example A 127.0.0.2",
        "greylink.example A 127.0.0.4",
        "blocked.example A 127.0.0.1",            # URIBL: query blocked
    ])
    srv.start()


def scan(tmp_path, forwarder, body="no links here", client="192.0.2.50",
         frm="someone@clean.example", lists=(ZEN, DBL, URIBL), extra=()):
    p = tmp_path / ("m%d.eml" % time.monotonic_ns())
    p.write_bytes(make_msg(frm=frm, body=body.encode()))
    args = ["scan", "-o", "filters=dnsbl", "-o", "dns_forwarder=" + forwarder,
            "-o", "dns_client_name=no", "-o", "dnsbl_list="]
    for l in lists:
        args += ["-o", "dnsbl_list=" + l]
    for e in extra:
        args += ["-o", e]
    args += ["--client-ip", client, "--from", frm, str(p)]
    r = run_mw(args, timeout=60)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    return {s["name"]: s for s in res["symbols"]}, r.stderr.decode(), res


def test_client_ip_listed_and_not(dns_server, tmp_path):
    zones(dns_server)
    sym, _, res = scan(tmp_path, dns_server.forwarder, client="192.0.2.99")
    assert sym["RCVD_IN_SBL"]["score"] == 3.5 and "192.0.2.99" in sym["RCVD_IN_SBL"]["desc"]
    assert res["score"] == 3.5
    sym, _, _ = scan(tmp_path, dns_server.forwarder, client="192.0.2.98")
    assert set(sym) == {"RCVD_IN_XBL", "RCVD_IN_PBL"}
    sym, _, res = scan(tmp_path, dns_server.forwarder, client="192.0.2.50")
    assert sym == {} and res["score"] == 0
    sym, _, _ = scan(tmp_path, dns_server.forwarder, client="10.1.2.3")     # private: not asked
    assert sym == {}
    sym, _, _ = scan(tmp_path, dns_server.forwarder, client="100.64.1.2")   # shared (RFC 6598): not asked
    assert sym == {}, sym


def test_domains_of_uris_and_sender(dns_server, tmp_path):
    zones(dns_server)
    body = ("see http://www.spammer.example/offer and https://x.y.greylink.example/a?b "
            "and http://clean.example/")
    sym, _, res = scan(tmp_path, dns_server.forwarder, body=body)
    assert "DBL_SPAM" in sym and "spammer.example" in sym["DBL_SPAM"]["desc"]
    assert "URIBL_GREY" in sym and "URIBL_BLACK" not in sym
    # the sender's domain goes to "domain" lists, not to "uri" lists
    sym, _, _ = scan(tmp_path, dns_server.forwarder, frm="boss@malware.example")
    assert set(sym) == {"DBL_BAD"}, sym
    sym, _, _ = scan(tmp_path, dns_server.forwarder, body="go to http://spamlink.example/")
    assert set(sym) == {"URIBL_BLACK"}, sym


def test_blocked_resolver_answers_never_score(dns_server, tmp_path):
    zones(dns_server)
    for kw in (dict(client="192.0.2.97"), dict(client="192.0.2.96"),
               dict(frm="a@ipquery.example"), dict(body="http://blocked.example/")):
        sym, err, res = scan(tmp_path, dns_server.forwarder, **kw)
        assert res["score"] == 0, (kw, sym)
        assert set(sym) == {"DNSBL_BLOCKED"}, (kw, sym)
        assert "not a listing" in err, err


def test_dead_forwarder_times_out(dead_dns, tmp_path):
    t0 = time.monotonic()
    sym, err, res = scan(tmp_path, dead_dns.forwarder, client="192.0.2.99",
                         body="http://a.example/ http://b.example/ http://c.example/",
                         extra=("dnsbl_timeout=2s", "dns_timeout=2s"))
    took = time.monotonic() - t0
    assert res["score"] == 0 and "DNSBL_TIMEOUT" in sym, sym
    assert "timeout" in err
    # every list's names go out together, and each waits at most its
    # timeout from then: one deadline for the message (2 s), not one per
    # list (6 s) nor per domain
    assert took < 4.0, took


def test_bad_list_refused(tmp_path):
    r = run_mw(["-t", "-o", "filters=dnsbl", "-o", "dns_forwarder=127.0.0.1@9",
                "-o", "dnsbl_list=zen.bl.test ip 127.0.0.2=lower:1"])
    assert r.returncode != 0 and b"dnsbl_list" in r.stderr + r.stdout


# --- URI forms (review s16) ---------------------------------------------------
# The host of each href as a browser opens it is spammer.example (or its
# A-label): the uri lists read the URI as written and dropped a host with a
# byte outside [a-z0-9._-], so none but the first and the written A-label
# were looked up.  Now they take the hosts of the forms the uri rules see
# (rules/uri.c).

HREFS = [
    "http://spammer.example/x",                 # control
    "http:\\\\spammer.example\\x",              # backslashes (browsers: slashes)
    "http:spammer.example/x",                   # scheme without //
    "http://spammer.example\\@clean.example/",  # host is spammer.example for a browser
    "http://%73pammer.example/x",               # percent-encoded host
    "http://spammer%2Eexample/x",
    "http://SPAMMER.example./x",
    "http://sp&#x61;mmer.example/x",            # entity in the attribute
    "http://xn--spmmer-cua.example/x",          # control: the A-label written
    "http://sp\u00e4mmer.example/x",            # the same host in Unicode (IDN)
    "http://spammer\u3002example/x",            # ideographic full stop (IDNA: a dot)
    "http://spam\r\nmer.example/x",             # a line break inside the value
    "http://spam\tmer.example/x",               # a tab
]


def html_msg(path, html):
    path.write_bytes(make_msg(body=html.encode("utf-8"),
                              headers=[("MIME-Version", "1.0"),
                                       ("Content-Type", "text/html; charset=utf-8")]))


def scan_html(tmp_path, forwarder, html):
    p = tmp_path / ("m%d.eml" % time.monotonic_ns())
    html_msg(p, html)
    args = ["scan", "-o", "filters=dnsbl", "-o", "dns_forwarder=" + forwarder,
            "-o", "dns_client_name=no", "-o", "dnsbl_list=", "-o", "dnsbl_list=" + DBL,
            "--client-ip", "192.0.2.50", "--from", "a@clean.example", str(p)]
    r = run_mw(args, timeout=60)
    assert r.returncode == 0, r.stderr
    return {s["name"] for s in json.loads(r.stdout)["symbols"]}


@pytest.mark.parametrize("href", HREFS)
def test_uri_forms_looked_up(dns_server, tmp_path, href):
    dns_server.add_zone("dbl.bl.test", ["spammer.example A 127.0.1.2",
                                        "xn--spmmer-cua.example A 127.0.1.2"])
    dns_server.start()
    sym = scan_html(tmp_path, dns_server.forwarder,
                    "<html><body><p>hello <a href=\"%s\">click here</a></p></body></html>" % href)
    assert "DBL_SPAM" in sym, (href, sym)


# --- which URI domains are asked (review s16) ---------------------------------
# dnsbl_max_domains (20) took the first 20 domains in message order, images
# counting as links: 20 one-pixel images from throw-away domains before the
# link hid it.  Now classes as SpamAssassin's URIDNSBL: links, forms,
# images, other markup, text, mail addresses; the class that does not fit
# is chosen from pseudo-randomly, seeded by the message.

def test_listed_link_after_20_images(dns_server, tmp_path):
    dns_server.add_zone("dbl.bl.test", ["spammer.example A 127.0.1.2"])
    dns_server.start()
    imgs = "".join('<img src="http://img%d.example/p.gif" width=1 height=1>' % i for i in range(20))
    bgs = "".join('<td background="http://bg%d.example/p.gif">' % i for i in range(5))
    mails = "".join('write to a@m%d.example ' % i for i in range(5))
    for html in (imgs + bgs + mails + '<a href="http://spammer.example/x">click here</a>',
                 imgs + '<form action="http://spammer.example/f"><input type=submit></form>'):
        sym = scan_html(tmp_path, dns_server.forwarder, "<html><body>%s</body></html>" % html)
        assert "DBL_SPAM" in sym, (html[-80:], sym)


def test_domains_past_the_limit_chosen_by_message(dns_server, tmp_path):
    # 25 links, each domain listed with its own code: which 20 were asked
    n = 25
    dns_server.add_zone("dbl.bl.test", ["l%d.example A 127.0.1.%d" % (i, 10 + i) for i in range(n)])
    dns_server.start()
    lst = "dbl.bl.test domain " + " ".join("127.0.1.%d=L%d:0.1" % (10 + i, i) for i in range(n))
    html = "<html><body>%s</body></html>" % "".join(
        '<a href="http://www.l%d.example/">offer %d</a> ' % (i, i) for i in range(n))

    def asked():
        p = tmp_path / ("m%d.eml" % time.monotonic_ns())
        html_msg(p, html)
        r = run_mw(["scan", "-o", "filters=dnsbl", "-o", "dns_forwarder=" + dns_server.forwarder,
                    "-o", "dns_client_name=no", "-o", "dnsbl_list=", "-o", "dnsbl_list=" + lst,
                    "--client-ip", "192.0.2.50", "--from", "a@clean.example", str(p)], timeout=60)
        assert r.returncode == 0, r.stderr
        return {s["name"] for s in json.loads(r.stdout)["symbols"] if s["name"].startswith("L")}
    first = asked()
    assert len(first) == 20, first
    assert first != {"L%d" % i for i in range(20)}, "first come, first asked"
    assert asked() == first                     # the same message, the same choice


# --- failures and refusals of one list (review s17) ---------------------------

def test_failing_name_does_not_hide_the_listed_one(dns_server, tmp_path):
    """One name of a list that fails (SERVFAIL) or times out ended that
    list's lookups for the message: a link whose name fails, before the
    listed one, hid it.  Now the other names are still read, and the
    names' waits overlap (all sent at once): one timeout for the message."""
    dns_server.add_zone("dbl.bl.test", ["spammer.example A 127.0.1.2"])
    dns_server.add_zone("refused.example.dbl.bl.test", [], refuse=True)
    dns_server.add_zone("slow.example.dbl.bl.test", [], drop_other=True)
    dns_server.start()
    for first in ("http://refused.example/", "http://slow.example/",
                  "http://refused.example/ http://slow.example/"):
        t0 = time.monotonic()
        sym, err, res = scan(tmp_path, dns_server.forwarder, body=first + " http://spammer.example/",
                             lists=(DBL,), extra=("dnsbl_timeout=1s",))
        took = time.monotonic() - t0
        assert "DBL_SPAM" in sym and res["score"] == 2.5, (first, sym)
        assert "DNSBL_TIMEOUT" in sym, (first, sym)
        assert err.count("lookups unanswered") == 1, err
        assert took < 2.5, (first, took)


def test_dead_list_costs_one_timeout(dns_server, tmp_path):
    """A list whose server drops every query: 15 URI domains cost one
    dnsbl_timeout together (not 15), one log line, and the other list's
    listing still counts."""
    dns_server.add_zone("dbl.bl.test", ["spammer.example A 127.0.1.2"])
    dns_server.add_zone("dead.bl.test", [], drop_other=True)
    dns_server.start()
    body = " ".join("http://d%d.example/" % i for i in range(14)) + " http://spammer.example/"
    t0 = time.monotonic()
    sym, err, res = scan(tmp_path, dns_server.forwarder, body=body, extra=("dnsbl_timeout=1s",),
                         lists=("dead.bl.test uri 127.0.0.2=DEAD_LISTED:5", DBL))
    took = time.monotonic() - t0
    assert "DBL_SPAM" in sym and "DNSBL_TIMEOUT" in sym, sym
    assert "dead.bl.test: 15 of 15 lookups unanswered (timeout 15" in err, err
    assert err.count("lookups unanswered") == 1, err
    assert took < 2.5, took


def test_refusals_logged_once_per_list(dns_server, tmp_path):
    """A list that refuses us (URIBL's 127.0.0.1, DBL's 127.0.1.255) for
    each of a message's 30 URI domains: one log line per list with the
    count, not 30 identical warnings."""
    dns_server.add_zone("multi.uribl.test", ["@ A 127.0.0.1"], redirect=True)
    dns_server.add_zone("dbl.bl.test", ["@ A 127.0.1.255"], redirect=True)
    dns_server.start()
    body = " ".join("http://d%d.example/" % i for i in range(30))
    sym, err, res = scan(tmp_path, dns_server.forwarder, body=body, lists=(URIBL, DBL),
                         extra=("dnsbl_max_domains=30",))
    assert set(sym) == {"DNSBL_BLOCKED"} and res["score"] == 0, sym
    assert err.count("not a listing") == 2, err
    assert "multi.uribl.test answered 30 of 30 lookups with a refusal" in err, err
    assert "dbl.bl.test answered 31 of 31 lookups with a refusal" in err, err


def test_refusals_counted_per_lookup(dns_server, tmp_path):
    """A refusal counted per answer record: one lookup answered with two
    refusal records logged "answered 2 of 1 lookups".  Now a lookup,
    answered with any number of them, is one refusal (the first one named)."""
    dns_server.add_zone("zen.bl.test", ["97.2.0.192 A 127.255.255.254", "97.2.0.192 A 127.255.255.252"])
    dns_server.start()
    sym, err, res = scan(tmp_path, dns_server.forwarder, client="192.0.2.97", lists=(ZEN,))
    assert set(sym) == {"DNSBL_BLOCKED"} and res["score"] == 0, sym
    assert "zen.bl.test answered 1 of 1 lookups with a refusal (first 127.255.255.25" in err, err
    assert sym["DNSBL_BLOCKED"]["desc"].startswith("zen.bl.test refused 1 queries (first 127.255.255.25"), sym
