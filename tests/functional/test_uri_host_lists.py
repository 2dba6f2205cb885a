"""test_uri_host_lists.py - review rv-today4 (session 20): a link whose
host is in blocklist_uri_host, in the HTML alternative, after decoy hosts
in the text alternative.  uri_lists_compute read the first 200 distinct
URI hosts in message order, so 200 decoys (subdomains of one domain)
turned check_uri_host_in_blocklist off while the uri rule still hit.
Now links are looked at first, and every host the MIME layer keeps.
Failed on db8c651 for 200 decoys and more.
Review rv-today5: check_uri_host_listed(LIST), the same enlist_uri_host
lists, read a list of its own in rules/eval_net.c (the first 500 hosts in
message order): 500 decoys hid the link from it.  Both read one list now
(rules/uri_hosts.c).  Failed on d8f203d for 500 decoys and more."""
import json
import os

import pytest

from mwlib import run_mw

RULES = ("enlist_uri_host (BAD) evil.example\n"
         "body URI_LISTED eval:check_uri_host_listed('BAD')\nscore URI_LISTED 10\n"
         "blocklist_uri_host evil.example\n"
         "body URI_BL eval:check_uri_host_in_blocklist()\nscore URI_BL 10\n"
         "uri URI_EVIL /evil\\.example/\nscore URI_EVIL 10\n")


def msg(ndecoy):
    text = "\r\n".join("see http://h%d.decoy.example/x" % i for i in range(ndecoy))
    html = '<html><body><a href="http://www.evil.example/pay">pay here</a></body></html>'
    return ("From: a@sender.example\r\nTo: b@rcpt.example\r\nSubject: hi\r\nMessage-ID: <u@x>\r\n"
            "Date: Mon, 02 Jan 2023 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/alternative; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain\r\n\r\n" + text + "\r\n"
            "--B\r\nContent-Type: text/html\r\n\r\n" + html + "\r\n--B--\r\n").encode()


@pytest.mark.parametrize("ndecoy", [0, 199, 200, 499, 500, 899, 2000])
def test_listed_link_after_decoy_hosts(tmp_path, ndecoy):
    rules = tmp_path / "local.cf"
    rules.write_text(RULES)
    f = tmp_path / "m.eml"
    f.write_bytes(msg(ndecoy))
    p = run_mw(["scan", "-o", "filters=rules", "-o", "rules_files=", "-o", "rules_files=" + str(rules),
                "-o", "rules_cache_dir=" + str(tmp_path / "cache"), "-o", "rules_time_budget=0",
                "-o", "dns_forwarder=127.0.0.1@9", str(f)], timeout=120)
    assert p.returncode == 0, p.stderr
    names = {s["name"] for s in json.loads(p.stdout.decode())["symbols"]}
    assert {"URI_BL", "URI_EVIL", "URI_LISTED"} <= names, (ndecoy, sorted(names))


def test_mail_address_domain_is_no_uri_host(tmp_path):
    """both functions read the one list: a domain seen only in a mail
    address is in neither (SpamAssassin's WLBLEval looks at URI hosts)"""
    rules = tmp_path / "local.cf"
    rules.write_text(RULES)
    f = tmp_path / "m.eml"
    f.write_bytes(("From: a@sender.example\r\nTo: b@rcpt.example\r\nSubject: hi\r\nMessage-ID: <m@x>\r\n"
                   "Date: Mon, 02 Jan 2023 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
                   "Content-Type: text/html\r\n\r\n"
                   '<html><body><a href="mailto:pay@evil.example">write</a></body></html>\r\n').encode())
    p = run_mw(["scan", "-o", "filters=rules", "-o", "rules_files=", "-o", "rules_files=" + str(rules),
                "-o", "rules_cache_dir=" + str(tmp_path / "cache"), "-o", "rules_time_budget=0",
                "-o", "dns_forwarder=127.0.0.1@9", str(f)], timeout=120)
    assert p.returncode == 0, p.stderr
    names = {s["name"] for s in json.loads(p.stdout.decode())["symbols"]}
    assert not {"URI_BL", "URI_LISTED"} & names, sorted(names)
