"""test_auth_results.py - the Authentication-Results field end to end: the
inbound fields that carry our authserv-id are removed (whatever their
case, a leading comment, folding, their position among others), fields of
other authserv-ids stay byte for byte, and ours is one field on top."""

import re

from mwlib import make_msg

AUTHSERV = "mx.mw.test"


def header_fields(content):
    head = content.split(b"\r\n\r\n", 1)[0]
    return re.findall(rb"^([^ \t:]+):(.*?)(?=\r\n[^ \t]|\Z)", head + b"\r\nX", re.M | re.S)


def ar_fields(content):
    return [v for n, v in header_fields(content) if n.lower() == b"authentication-results"]


FORGED = [
    b"Authentication-Results: mx.mw.test; dkim=pass header.d=forged.example",
    b"Authentication-Results: (a comment) MX.MW.TEST;\r\n\tspf=pass smtp.mailfrom=forged.example",
    b"Authentication-Results:\r\n mx.mw.test 1; dmarc=pass header.from=forged.example",
    # RFC 8601's authserv-id is a "value": a quoted-string too; comments
    # (CFWS) nest and hold quoted-pairs.  Readers following the RFC take
    # each of these for ours; they were kept until session 16.
    b"Authentication-Results: \"mx.mw.test\"; dkim=pass header.d=forged.example",
    b"Authentication-Results: \"mx.\\mw.test\" 1; dkim=pass header.d=forged.example",
    b"Authentication-Results: (a (nested) comment) mx.mw.test; spf=pass smtp.mailfrom=forged.example",
    b"Authentication-Results: (a \\) quoted-pair) mx.mw.test; dmarc=pass header.from=forged.example",
]
KEPT = [
    b"Authentication-Results: other.example; spf=pass smtp.mailfrom=a@other.example",
    b"Authentication-Results: mx.mw.test.other.example; dkim=pass",
    b"Authentication-Results: mx.mw.testing; dkim=pass",
    b"Authentication-Results: \"mx.mw.test.other\"; dkim=pass",
    b"Authentication-Results: (mx.mw.test) other.example; dkim=pass",
]


def send(mw, upstream, headers):
    c = mw.client()
    c.ehlo()
    msg = make_msg(subject="ar", headers=None)
    head, body = msg.split(b"\r\n\r\n", 1)
    msg = head + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body
    r = c.transaction("a@example.org", ["b@example.net"], msg)
    assert r["final"].code == 250, r["final"]
    c.quit()
    return upstream.wait_messages(1)[0].content


def test_forged_removed_others_kept_without_filters(mw_factory, upstream):
    """No filter says anything: forged fields still go, and no empty field
    of ours is added."""
    mw = mw_factory(upstream, opts=[("authserv_id", AUTHSERV)])
    mixed = [KEPT[0], FORGED[0], KEPT[1], FORGED[1], FORGED[2], KEPT[2]] + FORGED[3:] + KEPT[3:]
    got = send(mw, upstream, mixed)
    ars = ar_fields(got)
    assert len(ars) == len(KEPT), ars
    for k in KEPT:
        assert k in got                      # byte for byte, in place
    assert b"forged.example" not in got
    assert got.index(KEPT[0]) < got.index(KEPT[1]) < got.index(KEPT[2])


def test_forged_removed_past_10000_fields(mw_factory, upstream):
    """The filters see the first 10,000 header fields; the forged field
    search used to look only at those, so one after them was delivered."""
    mw = mw_factory(upstream, opts=[("authserv_id", AUTHSERV)])
    pad = [b"X-Pad: %d" % i for i in range(10001)]
    got = send(mw, upstream, pad + [FORGED[0], KEPT[0]])
    assert b"forged.example" not in got
    assert ar_fields(got) == [KEPT[0].split(b":", 1)[1]], ar_fields(got)


def test_many_forged_all_removed(mw_factory, upstream):
    """80 forged fields (one removal edit each): the edits past the 64th
    did nothing, and 17 forged fields reached the upstream"""
    mw = mw_factory(upstream, opts=[("authserv_id", AUTHSERV)])
    forged = [b"Authentication-Results: mx.mw.test; dmarc=pass header.from=forged.example (%d)" % i
              for i in range(80)]
    mixed = forged[:40] + [KEPT[0]] + forged[40:] + [KEPT[2]]
    got = send(mw, upstream, mixed)
    assert b"forged.example" not in got, len(re.findall(rb"forged\.example", got))
    assert ar_fields(got) == [k.split(b":", 1)[1] for k in (KEPT[0], KEPT[2])], ar_fields(got)


def test_more_than_1000_refused(mw_factory, upstream):
    """1,000 such fields (999 forged): the forged ones removed; past that the message is
    refused (550): their removals did not fit the scanner's reply (4,096
    edits), and every try of such a message was answered 451"""
    mw = mw_factory(upstream, opts=[("authserv_id", AUTHSERV)])
    forged = [b"Authentication-Results: mx.mw.test; dmarc=pass header.from=forged.example (%d)" % i
              for i in range(999)]
    got = send(mw, upstream, forged + [KEPT[0]])
    assert b"forged.example" not in got and ar_fields(got) == [KEPT[0].split(b":", 1)[1]]
    c = mw.client()
    c.ehlo()
    msg = make_msg(subject="ar")
    head, body = msg.split(b"\r\n\r\n", 1)
    extra = [b"Authentication-Results: mx.mw.test; dkim=pass (%d)" % i for i in range(4100)]
    r = c.transaction("a@example.org", ["b@example.net"], head + b"\r\n" + b"\r\n".join(extra) +
                      b"\r\n\r\n" + body)
    c.quit()
    assert r["final"].code == 550 and "Too many Authentication-Results fields" in r["final"].text, r["final"]
    assert len(upstream.messages) == 1


def test_ours_is_one_field_with_every_entry(mw_factory, upstream, tmp_path):
    """With a filter that adds entries (dkim: a message without signature
    gets dkim=none), ours is the only field with our id, on top."""
    from dnsserver import DnsServer
    srv = DnsServer(tmp_path / "dns").start()
    try:
        mw = mw_factory(upstream, opts=[("authserv_id", AUTHSERV), ("filters", "dkim dmarc"),
                                        ("dns_forwarder", srv.forwarder)])
        got = send(mw, upstream, FORGED + KEPT)
    finally:
        srv.stop()
    ars = ar_fields(got)
    ours = [v for v in ars if re.match(rb"\s*mx\.mw\.test;", v, re.I)]
    assert len(ours) == 1, ars
    assert re.search(rb"dkim=none", ours[0]) and re.search(rb"dmarc=none header\.from=example\.org",
                                                              ours[0]), ours
    assert got.startswith(b"Authentication-Results: mx.mw.test;")
    assert b"forged.example" not in got
    for k in KEPT:
        assert k in got


def test_default_authserv_id_is_hostname(mw_factory, upstream):
    mw = mw_factory(upstream, opts=[("hostname", "relay.mw.test")])
    got = send(mw, upstream, [b"Authentication-Results: relay.mw.test; spf=pass",
                              b"Authentication-Results: mx.mw.test; spf=pass"])
    ars = ar_fields(got)
    assert ars == [b" mx.mw.test; spf=pass"], ars
