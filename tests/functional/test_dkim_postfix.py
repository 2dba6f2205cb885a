"""test_dkim_postfix.py - mailwarden's outbound signatures after the Postfix
behind it, with the README's recipes as written (postfixlib.readme_service
reads their master.cf entries from README.md).

mailwarden signs; then Postfix's smtpd and cleanup take the message.  A
session from 127.0.0.1 matches Postfix's default local_header_rewrite_clients
(permit_inet_interfaces), so cleanup completed "To: bob" as
"To: bob@example.test" after the signature was made: dkim=fail, DMARC fail
at every receiver (session 19 review).  The recipes now say
`-o local_header_rewrite_clients=` (behind smtpd_proxy_filter on both
smtpds: the public one passes its verdict on in XFORWARD SOURCE), which
also keeps canonical_maps and masquerade_domains to the envelope (README
"DKIM signatures and the MTA behind").  dkimpy verifies what reaches the
sink behind Postfix."""

import smtplib

import pytest

import dkimlib as dl
import mwlib
import postfixlib
from mwlib import free_port, make_msg, wait_until

pytestmark = pytest.mark.skipif(not postfixlib.available(), reason="needs root and Debian's postfix")

PORT25 = "**As the listener on port 25**"
PROXY_FILTER = "**As Postfix's `smtpd_proxy_filter`**"
XCLIENT = "### In front of Postfix, with XCLIENT"


def unqualified_msg(frm="Alice <alice@sign.test>"):
    # "To: bob", "Cc: carol": what Postfix completes with @$myorigin in
    # the "local" rewriting context
    return make_msg(subject="internal", frm=frm, to="bob", headers=[("Cc", "carol")])


def check_signed(got, dns):
    assert b"\r\nTo: bob\r\n" in got and b"\r\nCc: carol\r\n" in got, \
        "Postfix rewrote the signed fields: %r" % got[:1500]
    assert len(dl.signatures(got)) == 2, got[:500]
    assert dl.dkimpy_verify_all(got, dns) == [True, True], got[:3000]


def send(port, frm="alice@sign.test", msg=None):
    c = mwlib.SMTPClient(port)
    c.ehlo()
    r = c.transaction(frm, ["bob@example.net"], msg or unqualified_msg())
    c.quit()
    assert r["final"].code == 250, r


@pytest.mark.parametrize("recipe", ["port25", "xclient"])
def test_recipe_smtpd_keeps_signed_header_fields(mw_factory, make_upstream, tmp_path, recipe):
    """mailwarden (an outbound listener) -> the README's smtpd -> sink"""
    keys = dl.make_keys(tmp_path)
    sign, dns = dl.sign_keys(keys)
    sink = make_upstream()
    sport = free_port()
    service = postfixlib.readme_service(PORT25 if recipe == "port25" else XCLIENT, "127.0.0.1:2525",
                                        "127.0.0.1:%d" % sport)
    pf = postfixlib.Postfix(tmp_path / "pf", relayhost=sink.addr, master=service,
                            main={"relay_domains": "example.net"}).start()
    try:
        mw = mw_factory("127.0.0.1:%d" % sport, opts=[("filters", "dkim_sign")] + sign,
                        direction="outbound", wait_probe=False)
        send(mw.port)
        assert wait_until(lambda: len(sink.messages) == 1, 20.0), pf.log()[-3000:]
        check_signed(sink.messages[0].content, dns)
    finally:
        pf.stop()


def test_proxy_filter_recipe_keeps_signed_header_fields(mw_factory, make_upstream, tmp_path):
    """client -> Postfix (smtpd_proxy_filter) -> mailwarden (outbound
    listener, xforward_from) -> the README's second smtpd -> sink"""
    keys = dl.make_keys(tmp_path)
    sign, dns = dl.sign_keys(keys)
    sink = make_upstream()
    mport, second, public = free_port(), free_port(), free_port()
    service = (postfixlib.readme_service(PROXY_FILTER, "smtp", "127.0.0.1:%d" % public)
               .replace("127.0.0.1:10025", "127.0.0.1:%d" % mport)
               + postfixlib.readme_service(PROXY_FILTER, "127.0.0.1:10026", "127.0.0.1:%d" % second))
    pf = postfixlib.Postfix(tmp_path / "pf", relayhost=sink.addr, master=service,
                            main={"relay_domains": "example.net"}).start()
    try:
        mw_factory(None, listeners=[("pf", "127.0.0.1:%d" % mport, "127.0.0.1:%d" % second, "outbound")],
                   opts=[("listener.pf.xforward_from", "127.0.0.1"), ("filters", "dkim_sign")] + sign)
        assert wait_until(lambda: mwlib._port_open("127.0.0.1", public), 10.0)
        with smtplib.SMTP("127.0.0.1", public, timeout=30) as c:
            c.ehlo("client.example.org")
            c.sendmail("alice@sign.test", ["bob@example.net"], unqualified_msg())
        assert wait_until(lambda: len(sink.messages) == 1, 20.0), pf.log()[-3000:]
        check_signed(sink.messages[0].content, dns)
    finally:
        pf.stop()


@pytest.mark.parametrize("recipe", ["readme", "without-the-line"])
def test_address_mappings_stay_off_signed_fields(mw_factory, make_upstream, tmp_path, recipe):
    """canonical_maps and masquerade_domains: cleanup applies them to
    header addresses in the local context only, so the recipe maps the
    envelope and leaves the signed fields; the recipe without
    local_header_rewrite_clients= (as it was) had From and To rewritten
    after signing (the control case: the test sees the break)"""
    keys = dl.make_keys(tmp_path)
    sign, dns = dl.sign_keys(keys)
    sink = make_upstream()
    sport = free_port()
    service = postfixlib.readme_service(PORT25, "127.0.0.1:2525", "127.0.0.1:%d" % sport)
    if recipe != "readme":
        service = "".join(l + "\n" for l in service.splitlines()
                          if "local_header_rewrite_clients" not in l)
    canonical = tmp_path / "canonical"
    canonical.write_text("alice@sign.test alice.smith@sign.test\n")
    canonical.chmod(0o644)
    tmp_path.chmod(0o755)
    pf = postfixlib.Postfix(tmp_path / "pf", relayhost=sink.addr, master=service,
                            main={"relay_domains": "example.net, mail.example.net",
                                  "canonical_maps": "texthash:%s" % canonical,
                                  "masquerade_domains": "example.net"}).start()
    try:
        mw = mw_factory("127.0.0.1:%d" % sport, opts=[("filters", "dkim_sign")] + sign,
                        direction="outbound", wait_probe=False)
        msg = make_msg(subject="mapped", frm="alice@sign.test", to="bob@mail.example.net")
        c = mwlib.SMTPClient(mw.port)
        c.ehlo()
        r = c.transaction("alice@sign.test", ["bob@mail.example.net"], msg)
        c.quit()
        assert r["final"].code == 250, r
        assert wait_until(lambda: len(sink.messages) == 1, 20.0), pf.log()[-3000:]
        got = sink.messages[0]
        # the envelope is mapped either way: the maps still work
        assert got.mail_from == "alice.smith@sign.test", got.mail_from
        verified = dl.dkimpy_verify_all(got.content, dns)
        if recipe == "readme":
            assert b"\r\nFrom: alice@sign.test\r\n" in got.content, got.content.decode()
            assert b"\r\nTo: bob@mail.example.net\r\n" in got.content, got.content.decode()
            assert verified == [True, True], got.content.decode()
        else:
            assert b"\r\nFrom: alice.smith@sign.test\r\n" in got.content, got.content.decode()
            assert b"\r\nTo: bob@example.net\r\n" in got.content, got.content.decode()
            assert verified == [False, False], got.content.decode()
    finally:
        pf.stop()
