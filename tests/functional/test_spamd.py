"""test_spamd.py - the spamd client filter against Debian's spamd started
by the test (spamdlib.py: local tests only, the test's own rules): score
and rule names become symbols, through the proxy and `mailwarden scan`;
spamd down or silent costs a deadline and a SPAMD_FAIL, never the mail."""

import json
import socket

from mwlib import free_port, headers_named, make_msg, run_mw
from spamdlib import spamd_server  # noqa: F401 (fixture)


def send(m, subject, body="hello"):
    c = m.client()
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject=subject, body=body.encode()))
    c.quit()
    return r["final"]


def test_spamd_score_and_rules_through_proxy(mw_factory, upstream, spamd_server):
    m = mw_factory(upstream, opts=[("filters", "spamd"), ("spamd_address", spamd_server.addr),
                                   ("inbound_tag_score", "5")])
    assert send(m, "lunch").code == 250
    assert send(m, "mwtest-spamd-marker", body="cheap pills today").code == 250
    msgs = upstream.wait_messages(2)
    assert headers_named(msgs[0].content, "X-Spam-Flag") == []
    status = " ".join(headers_named(msgs[1].content, "X-Spam-Status"))
    assert "SA_MW_SPAMD_MARKER" in status and "SA_MW_SPAMD_BODY" in status, status
    rec = m.audit(2)
    syms = {s["name"]: s for s in rec[-1]["symbols"]}
    assert abs(syms["SPAMD"]["score"] - 8.8) < 0.06, syms
    assert syms["SA_MW_SPAMD_MARKER"]["score"] == 0
    assert rec[-1]["action"] == "tag"
    clean = {s["name"]: s for s in rec[-2]["symbols"]}
    assert clean["SPAMD"]["score"] == 0 and rec[-2]["action"] == "accept"


def test_spamd_weight_and_scan(spamd_server, tmp_path):
    p = tmp_path / "m.eml"
    p.write_bytes(make_msg(subject="mwtest-spamd-marker"))
    r = run_mw(["scan", "-o", "filters=spamd", "-o", "spamd_address=" + spamd_server.addr,
                "-o", "spamd_weight=0.5", "-o", "dns_forwarder=127.0.0.1@9", str(p)])
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["score"] == 3.75, res


def test_spamd_down_or_silent(tmp_path):
    p = tmp_path / "m.eml"
    p.write_bytes(make_msg(subject="mwtest-spamd-marker"))
    dead = free_port()
    r = run_mw(["scan", "-o", "filters=spamd", "-o", "spamd_address=127.0.0.1:%d" % dead, str(p)])
    res = json.loads(r.stdout)
    assert res["action"] == "accept" and [s["name"] for s in res["symbols"]] == ["SPAMD_FAIL"]
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)                     # accepts (backlog), never answers
    try:
        r = run_mw(["scan", "-o", "filters=spamd", "-o", "spamd_timeout=500ms",
                    "-o", "spamd_address=127.0.0.1:%d" % silent.getsockname()[1], str(p)])
    finally:
        silent.close()
    res = json.loads(r.stdout)
    assert [s["name"] for s in res["symbols"]] == ["SPAMD_FAIL"], res
    assert "no answer within 500 ms" in res["symbols"][0]["desc"]
    r = run_mw(["scan", "-o", "filters=spamd", "-o", "spamd_max_size=1k",
                "-o", "spamd_address=127.0.0.1:%d" % dead, "-"], input=make_msg(body=b"x" * 3000))
    assert [s["name"] for s in json.loads(r.stdout)["symbols"]] == ["SPAMD_SKIPPED"]
