"""End to end with a real Postfix (issue 3): the client speaks STARTTLS to
mailwarden and authenticates; mailwarden speaks STARTTLS to Postfix
(verified against the test CA), sends XCLIENT, and relays AUTH PLAIN/LOGIN
to Postfix, whose Cyrus SASL (sasldb, made by the test with saslpasswd2)
decides.  Only the authenticated client may relay to a foreign domain."""

import base64
import os
import shutil
import smtplib
import subprocess

import pytest

import mwlib
from mwlib import make_msg
from postfixlib import Postfix, available
from tlslib import PKI, listener_tls_opts

pytestmark = pytest.mark.skipif(not available() or shutil.which("saslpasswd2") is None,
                                reason="needs root, Debian's postfix and sasl2-bin")

CLIENT_ADDR = "127.0.0.2"
PASSWORD = "Correct-Horse-7"


@pytest.fixture
def stack(request, tmp_path, upstream, mw_factory):
    pki = PKI(tmp_path / "pki")
    pf_chain, pf_key = pki.cert("pf.example.test")
    pf = Postfix(tmp_path / "pf", relayhost=upstream.addr)
    request.addfinalizer(pf.stop)      # also when the rest of the set-up fails
    # Debian's Postfix reads the SASL application config from
    # $config_directory/sasl/smtpd.conf; the sasldb lives apart, owned by
    # the postfix user that smtpd runs as
    confdir = os.path.join(pf.conf, "sasl")
    os.makedirs(confdir)
    sasldir = os.path.join(pf.dir, "sasldb")
    os.makedirs(sasldir)
    db = os.path.join(sasldir, "sasldb2")
    subprocess.run(["saslpasswd2", "-p", "-c", "-f", db, "-u", "pf.example.test", "alice"],
                   input=PASSWORD, text=True, check=True, capture_output=True)
    with open(os.path.join(confdir, "smtpd.conf"), "w") as f:
        f.write("pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: %s\n" % db)
    for p in (sasldir, db):
        shutil.chown(p, "postfix", "postfix")
    # the key must be readable by the smtpd processes (user postfix)
    pf_dir_key = os.path.join(pf.dir, "pf.key")
    shutil.copy(pf_key, pf_dir_key)
    shutil.chown(pf_dir_key, "postfix", "postfix")
    pf.main.update({
        "smtpd_authorized_xclient_hosts": "127.0.0.1",
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "cyrus",
        "smtpd_sasl_path": "smtpd",
        "smtpd_sasl_local_domain": "pf.example.test",
        "smtpd_tls_cert_file": pf_chain,
        "smtpd_tls_key_file": pf_dir_key,
        "smtpd_tls_security_level": "may",
        "smtpd_tls_auth_only": "yes",
        "smtpd_tls_received_header": "yes",
        "smtpd_tls_loglevel": "1",
    })
    pf.start()
    chain, key = pki.cert("mx.example.test")
    listen = "127.0.0.1:%d" % mwlib.free_port()
    m = mw_factory(pf.addr, wait_probe=False, listeners=[("sub", listen, pf.addr, None)],
                   opts=listener_tls_opts(chain, key, name="sub") + [
                       ("listener.sub.auth", "relay"),
                       ("listener.sub.upstream_tls", "required"),
                       ("listener.sub.upstream_tls_ca_file", pki.ca),
                       ("listener.sub.upstream_tls_name", "pf.example.test")])
    return pki, pf, m


def client(m, pki):
    s = smtplib.SMTP(timeout=20, source_address=(CLIENT_ADDR, 0))
    s.connect("127.0.0.1", m.port)
    s._host = "mx.example.test"
    s.starttls(context=pki.client_context())
    s.ehlo("client.example.org")
    return s


def test_auth_relay_through_postfix_sasl(stack, upstream):
    pki, pf, m = stack
    s = client(m, pki)
    # not authenticated: Postfix sees 127.0.0.2 (XCLIENT) and refuses to relay
    s.mail("a@example.org")
    code, text = s.rcpt("b@example.net")
    assert code == 554 and b"Relay access denied" in text, (code, text, pf.log())
    s.rset()
    with pytest.raises(smtplib.SMTPAuthenticationError):
        s.login("alice", "wrong")
    s.login("alice", PASSWORD)
    s.sendmail("alice@example.org", ["b@example.net"], make_msg(subject="authenticated"))
    s.quit()
    msgs = upstream.wait_messages(1, timeout=15)
    assert msgs, pf.log()
    received = mwlib.headers_named(msgs[0].content, "Received")
    # Postfix: TLS from mailwarden, authenticated, the real client address
    assert any("ESMTPSA" in r and "[127.0.0.2]" in r and "using TLS" in r for r in received), (received, pf.log())
    log = pf.log()
    assert "sasl_method=PLAIN, sasl_username=alice" in log, log
    assert "Trusted TLS connection established" in log or "TLS connection established" in log, log
    rec = m.audit(2)[-1]
    assert rec["auth_user"] == "alice" and rec["protocol"] == "ESMTPSA"
    assert PASSWORD not in m.stderr_text()
    assert base64.b64encode(("\0alice\0" + PASSWORD).encode()).decode() not in m.stderr_text()


def test_auth_login_through_postfix(stack, upstream):
    pki, pf, m = stack
    s = client(m, pki)
    code, _ = s.docmd("AUTH LOGIN")
    assert code == 334
    assert s.docmd(base64.b64encode(b"alice").decode())[0] == 334
    code, text = s.docmd(base64.b64encode(PASSWORD.encode()).decode())
    assert code == 235, (code, text, pf.log())
    s.sendmail("alice@example.org", ["c@example.net"], make_msg())
    s.quit()
    assert upstream.wait_messages(1, timeout=15), pf.log()
    assert "sasl_method=LOGIN, sasl_username=alice" in pf.log()
