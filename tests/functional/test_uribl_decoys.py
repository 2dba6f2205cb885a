"""test_uribl_decoys.py - review rv-today5 (session 20): a URI blocklist
(urirhssub, check_uridnsbl) and a listed link in the HTML alternative
after decoy hosts (subdomains of one domain) in the text alternative.
rules/eval_net.c kept the first MAX_HOSTS = 500 distinct hosts in message
order and walked them in that order: with test_rules_net.py's rules (a
notrim and a tflags-a list among them: queries per host) 200 decoys filled
the 300 DNS lookups of RULES_NET_MAX_QUERIES before the link was asked;
with a domains_only list alone, 500 decoys kept the link out of the 500.
Now the hosts are the shared list of rules/uri_hosts.c, links first.
Failed on d8f203d: full rules at 200 decoys and more, the list alone at
500 and more.  Uses test_rules_net.py's zones and rules and dnsserver.py's
loopback DNS server."""
import json
import time

import pytest

from dnsserver import dns_server  # noqa: F401 (fixture)
from mwlib import run_mw
from test_rules_net import rules_file, zones


def msg(ndecoy):
    text = "\r\n".join("see http://h%d.decoy.example/x" % i for i in range(ndecoy))
    html = '<html><body><a href="http://www.spammer.example/pay">pay here</a></body></html>'
    return ("From: someone@fine.example\r\nTo: b@rcpt.example\r\nSubject: hi\r\nMessage-ID: <u@x>\r\n"
            "Date: Mon, 02 Jan 2023 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/alternative; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain\r\n\r\n" + text + "\r\n"
            "--B\r\nContent-Type: text/html\r\n\r\n" + html + "\r\n--B--\r\n").encode()


DBL_ONLY = ("urirhssub T_DBL dbl.bl.test. A 127.0.1.2\nbody T_DBL eval:check_uridnsbl('T_DBL')\n"
            "tflags T_DBL net domains_only\nscore T_DBL 1.0\n")


@pytest.mark.parametrize("rules,ndecoy", [("full", 0), ("full", 100), ("full", 200), ("full", 499),
                                          ("full", 2000), ("dbl", 0), ("dbl", 499), ("dbl", 500),
                                          ("dbl", 900), ("dbl", 2000)])
def test_uridnsbl_link_after_decoy_hosts(dns_server, tmp_path, rules, ndecoy):  # noqa: F811
    zones(dns_server)
    p = tmp_path / ("m%d.eml" % time.monotonic_ns())
    p.write_bytes(msg(ndecoy))
    if rules == "full":
        rf = rules_file(tmp_path)
    else:
        rf = str(tmp_path / "dbl.cf")
        open(rf, "w").write(DBL_ONLY)
    args = ["scan", "-o", "filters=rules", "-o", "rules_files=", "-o", "rules_files=" + rf,
            "-o", "rules_cache_dir=", "-o", "dns_forwarder=" + dns_server.forwarder,
            "-o", "dns_client_name=no", "-o", "rules_net_tests=yes",
            "--client-ip", "192.0.2.50", "--from", "someone@fine.example", str(p)]
    r = run_mw(args, timeout=120)
    assert r.returncode == 0, r.stderr
    names = {s["name"] for s in json.loads(r.stdout)["symbols"]}
    assert "T_DBL" in names, (rules, ndecoy, sorted(names))
