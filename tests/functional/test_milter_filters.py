"""test_milter_filters.py - issue 7's end-to-end list with the real
filters: a real Postfix (own config, loopback, Cyrus SASL sasldb for
authenticated submission) with mailwarden as its milter, the loopback DNS
server for SPF/DKIM/DMARC, libclamav with the test signatures, and a
capturing sink behind Postfix.

  - a clean message arrives with Authentication-Results;
  - EICAR is rejected at end of data with the virus reply;
  - an SPF-failing sender is refused at RCPT (before DATA);
  - an authenticated (outbound) message arrives DKIM-signed and dkimpy
    verifies the signature;
  - the same messages through the proxy front end and through Postfix +
    milter give the same symbols and action."""
import base64
import json
import os
import shutil
import smtplib
import subprocess

import pytest

import avlib
import dkimlib
import postfixlib
from dnsserver import DnsServer
from mwlib import free_port, make_msg, wait_until, header_block

AUTHSERV = "mx.test.example"
PASSWORD = "Correct-Horse-7"

pytestmark = pytest.mark.skipif(
    not postfixlib.available() or shutil.which("saslpasswd2") is None
    or not os.access("/usr/bin/miltertest", os.X_OK),
    reason="needs root, Debian's postfix, sasl2-bin and miltertest")


def crlf(b):
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def eicar_msg(frm="sender@example.org"):
    return crlf(b"From: " + frm.encode() + b"\nTo: rcpt@example.net\nSubject: invoice\n"
                b"Message-ID: <eicar@example.org>\nMIME-Version: 1.0\n"
                b"Content-Type: multipart/mixed; boundary=BB\n\n--BB\nContent-Type: text/plain\n\n"
                b"see attached\n--BB\nContent-Type: application/octet-stream; name=a.bin\n"
                b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(avlib.EICAR)
                + b"--BB--\n")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return dkimlib.make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def stack(request, tmp_path, keys, make_upstream, mw_factory):
    dns = DnsServer(tmp_path / "dns")
    dns.add_zone("example.org", [("@", "TXT", "v=spf1 ip4:127.0.0.1 -all")])
    dns.add_zone("_dmarc.example.org", [("@", "TXT", "v=DMARC1; p=reject")])
    dns.add_zone("spf-fail.test", [("@", "TXT", "v=spf1 ip4:192.0.2.1 -all")])
    dns.add_zone("sign.test", [("@", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
                               ("rsa1._domainkey", "TXT", keys["rsa"][1])])
    dns.start()
    request.addfinalizer(dns.stop)     # also when the rest of the set-up fails
    db = str(tmp_path / "avdb")
    avlib.copy_db(db)
    sink = make_upstream()
    mport = free_port()
    mw = mw_factory(sink, opts=[
        ("milter_listen", "inet:%d@127.0.0.1" % mport),
        ("filters", "spf dkim dmarc clamav dkim_sign"),
        ("dns_forwarder", dns.forwarder), ("dns_client_name", "no"),
        ("spf_skip_networks", ""), ("spf_fail_action", "reject"),
        ("av_database", db), ("av_db_check_interval", "0"),
        ("dkim_sign_key", "sign.test rsa1 %s" % keys["rsa"][0]),
        ("authserv_id", AUTHSERV),
        # the test client is 127.0.0.1: inbound unless it authenticated
        ("milter_internal_networks", "192.0.2.0/24")]
        + list(getattr(request, "param", {}).items()))
    pf = postfixlib.Postfix(tmp_path / "pf", relayhost=sink.addr)
    request.addfinalizer(pf.stop)
    confdir = os.path.join(pf.conf, "sasl")
    os.makedirs(confdir)
    sasldir = os.path.join(pf.dir, "sasldb")
    os.makedirs(sasldir)
    db_path = os.path.join(sasldir, "sasldb2")
    subprocess.run(["saslpasswd2", "-p", "-c", "-f", db_path, "-u", "pf.example.test", "alice"],
                   input=PASSWORD, text=True, check=True, capture_output=True)
    with open(os.path.join(confdir, "smtpd.conf"), "w") as f:
        f.write("pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n"
                "sasldb_path: %s\n" % db_path)
    for p in (sasldir, db_path):
        shutil.chown(p, "postfix", "postfix")
    pf.main.update({
        "smtpd_milters": "inet:127.0.0.1:%d" % mport,
        "milter_default_action": "tempfail",
        "smtpd_sasl_auth_enable": "yes", "smtpd_sasl_type": "cyrus",
        "smtpd_sasl_path": "smtpd", "smtpd_sasl_local_domain": "pf.example.test",
        "smtpd_tls_auth_only": "no",
    })
    pf.start()
    return pf, mw, sink


def send_pf(pf, content, frm, rcpts=("rcpt@example.net",), login=False):
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as c:
        c.ehlo("client.example.org")
        if login:
            c.login("alice", PASSWORD)
        try:
            return c.sendmail(frm, list(rcpts), content), None
        except (smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused) as e:
            return None, e


def audit(mw):
    with open(mw.audit_path, "rb") as f:
        return [json.loads(l) for l in f.read().splitlines() if l.strip()]


def test_clean_message_arrives_with_authentication_results(stack):
    pf, mw, sink = stack
    refused, err = send_pf(pf, make_msg(subject="hello", frm="sender@example.org"),
                           "sender@example.org")
    assert err is None and not refused
    assert wait_until(lambda: len(sink.messages) == 1, 20.0), pf.log()[-2000:]
    hdrs = header_block(sink.messages[0].content)
    ar = [v for n, v in hdrs if n.lower() == "authentication-results"]
    assert len(ar) == 1 and ar[0].startswith(AUTHSERV + ";")
    assert "spf=pass" in ar[0] and "dmarc=pass" in ar[0] and "dkim=none" in ar[0]
    assert any(n.lower() == "received-spf" and v.startswith("pass") for n, v in hdrs)
    assert ("X-Virus-Status", "Clean") in hdrs


def test_inbound_dkim_signature_verifies_through_postfix(stack, keys):
    """Postfix hands header values to the milter with their leading space
    kept (SMFIP_HDR_LEADSPC), so the scanner sees the header bytes the
    signer signed, whatever the canonicalization."""
    pf, mw, sink = stack
    for canon in (b"simple/simple", b"relaxed/relaxed"):
        msg = make_msg(subject="signed  with   spaces", frm="alice@sign.test",
                       headers=[("X-Folded", "first\r\n\tsecond")])
        signed = dkimlib.dkimpy_sign(msg, "rsa1", "sign.test", keys["rsa"][0],
                                     canonicalize=tuple(canon.split(b"/")),
                                     include_headers=[b"from", b"to", b"subject", b"x-folded"])
        n = len(sink.messages)
        refused, err = send_pf(pf, signed, "alice@sign.test")
        assert err is None and not refused
        assert wait_until(lambda: len(sink.messages) == n + 1, 20.0), pf.log()[-2000:]
        ar = [v for k, v in header_block(sink.messages[-1].content)
              if k.lower() == "authentication-results"]
        assert len(ar) == 1 and "dkim=pass" in ar[0] and "header.d=sign.test" in ar[0], (canon, ar)


def test_eicar_is_rejected_at_end_of_data(stack):
    pf, mw, sink = stack
    _, err = send_pf(pf, eicar_msg(), "sender@example.org")
    assert isinstance(err, smtplib.SMTPDataError)
    assert err.smtp_code == 554
    assert b"5.7.1 Virus found: " + avlib.EICAR_NAME.encode() in err.smtp_error
    assert sink.messages == []


def test_eicar_in_message_read_as_text_is_rejected(stack):
    """libclamav reads a message whose field names are in upper case as
    text and never decodes its attachments (test_av.py's text-read cases
    through the proxy); through Postfix the milter rebuilds the message
    from the header fields the MTA hands it, so the same leaves must be
    found there, and the reply says where"""
    pf, mw, sink = stack
    fwd = avlib.recase(avlib.with_attachment(avlib.EICAR, "eicar.com", subject="forwarded"), str.upper)
    forwarded = avlib.with_entity(avlib.entity([avlib.rfc822_part(fwd)]))
    mixed = avlib.recase(forwarded, avlib.alternate)
    cases = {"forwarded-upper": (forwarded, " in eicar.com in message forwarded.eml"),
             "forwarded-upper-mixed-outer": (mixed, " in eicar.com in message forwarded.eml"),
             "upper": (fwd, " in eicar.com")}
    got = {}
    for name, (msg, _) in cases.items():
        _, err = send_pf(pf, crlf(msg), "sender@example.org")
        got[name] = (err.smtp_code, err.smtp_error) if isinstance(err, smtplib.SMTPDataError) else err
    assert got == {name: (554, b"5.7.1 Virus found: " + avlib.EICAR_NAME.encode() + where.encode())
                   for name, (_, where) in cases.items()}
    assert sink.messages == []
    recs = [r for r in audit(mw) if r["listener"] == "milter"]
    assert [r["action"] for r in recs] == ["reject"] * len(cases)


def test_spf_fail_is_refused_at_rcpt(stack):
    pf, mw, sink = stack
    refused, err = send_pf(pf, make_msg(subject="x", frm="a@spf-fail.test"), "a@spf-fail.test")
    assert isinstance(err, smtplib.SMTPRecipientsRefused)
    code, text = err.recipients["rcpt@example.net"]
    assert code == 550 and b"5.7.1" in text
    # no message: the record is written when the transaction ends
    assert wait_until(lambda: [r for r in audit(mw) if r["listener"] == "milter"], 10.0)
    rec = [r for r in audit(mw) if r["listener"] == "milter"][-1]
    assert rec["action"] == "reject"
    assert "SPF_FAIL" in [s["name"] for s in rec["symbols"]]


def test_authenticated_message_is_dkim_signed(stack, keys):
    pf, mw, sink = stack
    msg = make_msg(subject="from our user", frm="alice@sign.test")
    refused, err = send_pf(pf, msg, "alice@sign.test", login=True)
    assert err is None and not refused
    assert wait_until(lambda: len(sink.messages) == 1, 20.0), pf.log()[-2000:]
    got = sink.messages[0].content
    assert got.startswith(b"DKIM-Signature:") or b"\nDKIM-Signature:" in got
    import dkim
    records = {"rsa1._domainkey.sign.test": keys["rsa"][1].encode()}
    assert dkim.verify(got, dnsfunc=lambda name, timeout=5: records.get(
        (name.decode() if isinstance(name, bytes) else name).rstrip(".")))
    rec = [r for r in audit(mw) if r["listener"] == "milter"][-1]
    assert rec["direction"] == "outbound"
    assert rec["auth_user"] == "alice@pf.example.test"     # Postfix's {auth_authen}


# Envelope verdicts off: with them, the SPF-failing message is refused at
# RCPT and the milter never sees its headers, so DKIM and DMARC add nothing.
@pytest.mark.parametrize("stack", [{"milter_early": "no"}], indirect=True)
def test_same_symbols_and_action_through_proxy_and_milter(stack):
    pf, mw, sink = stack
    cases = [("sender@example.org", make_msg(subject="hello", frm="sender@example.org")),
             ("sender@example.org", eicar_msg()),
             ("a@spf-fail.test", make_msg(subject="x", frm="a@spf-fail.test"))]
    for frm, content in cases:
        send_pf(pf, content, frm)
        c = mw.client()
        c.ehlo()
        c.transaction(frm, ["rcpt@example.net"], content)
        c.quit()
    assert wait_until(lambda: len(audit(mw)) >= 6, 10.0)
    recs = audit(mw)
    via_milter = [r for r in recs if r["listener"] == "milter"]
    via_proxy = [r for r in recs if r["listener"] != "milter"]
    assert len(via_milter) == 3 and len(via_proxy) == 3
    for m, p in zip(via_milter, via_proxy):
        assert m["action"] == p["action"], (m, p)
        assert sorted(s["name"] for s in m["symbols"]) == sorted(s["name"] for s in p["symbols"]), (m, p)
