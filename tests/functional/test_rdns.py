"""test_rdns.py - the client's forward-confirmed reverse DNS, looked up by
the scanner through the DNS layer (unbound on loopback, dnsserver.py), seen
by a filter (mw_client_name, via tests/plugins/client_name_plugin.c built
here) and written to the audit log.  Clients connect from 127.0.0.2..4 (a
source address bound before connect) so that each has its own PTR."""

import os
import smtplib
import subprocess

import pytest

import audit_fields as A
from dnsserver import dns_server  # noqa: F401
from mwlib import make_msg, headers_named

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture
def client_name_plugin(tmp_path):
    so = str(tmp_path / "client_name.so")
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", "-shared", "-fPIC",
                    "-I", os.path.join(ROOT, "include"), "-o", so,
                    os.path.join(ROOT, "tests", "plugins", "client_name_plugin.c")], check=True)
    return so


def send_from(mw, source_ip, sender="a@example.org"):
    s = smtplib.SMTP("127.0.0.1", mw.port, source_address=(source_ip, 0), timeout=10)
    try:
        s.ehlo("client.example.org")
        s.sendmail(sender, ["rcpt@example.net"], make_msg())
    finally:
        s.quit()


def test_client_name_confirmed_unconfirmed_absent(dns_server, mw_factory, upstream,
                                                  client_name_plugin):
    dns_server.add_zone("0.0.127.in-addr.arpa", [
        "2 PTR mx.client.test.",            # confirmed by its A record
        "3 PTR liar.client.test.",          # A points elsewhere: not confirmed
        "3 PTR other.client.test.",         # neither
    ])                                      # 127.0.0.4: no PTR at all
    dns_server.add_zone("client.test", [
        "mx A 127.0.0.2",
        "liar A 192.0.2.66",
        "other A 192.0.2.67",
    ])
    dns_server.start()
    m = mw_factory(upstream, opts=[("dns_forwarder", dns_server.forwarder),
                                   ("plugin", client_name_plugin)])
    for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        send_from(m, ip)
    msgs = upstream.wait_messages(3)
    assert len(msgs) == 3
    seen = [headers_named(x.content, "X-Client-Name") for x in msgs]
    assert seen == [["mx.client.test"], ["(none)"], ["(none)"]], seen
    recs = m.audit(3)
    byip = {A.field(r, "client_ip"): r for r in recs}
    assert A.field(byip["127.0.0.2"], "client_name") == "mx.client.test"
    assert not A.has(byip["127.0.0.3"], "client_name")
    assert not A.has(byip["127.0.0.4"], "client_name")


def test_client_name_off(dns_server, mw_factory, upstream, client_name_plugin):
    dns_server.add_zone("0.0.127.in-addr.arpa", ["2 PTR mx.client.test."])
    dns_server.add_zone("client.test", ["mx A 127.0.0.2"])
    dns_server.start()
    m = mw_factory(upstream, opts=[("dns_forwarder", dns_server.forwarder),
                                   ("dns_client_name", "no"),
                                   ("plugin", client_name_plugin)])
    send_from(m, "127.0.0.2")
    msgs = upstream.wait_messages(1)
    assert headers_named(msgs[0].content, "X-Client-Name") == ["(none)"]
    assert not A.has(m.audit(1)[0], "client_name")
