"""test_milter_release.py - releasing what the milter quarantined (README
"Quarantine", "Milter front end"), with a real Postfix running our milter.

A milter-only site has no listener, so a release needs
quarantine_release_upstream, and the only MTA it has is the one that runs
the milter.  Released into it, the message came from 127.0.0.1 (in
milter_internal_networks' default) and was scanned again as outbound: a
message quarantined by content was quarantined anew while the release
printed "250 queued", and a stranger's spam with From: of the site's own
domain arrived signed with the site's DKIM keys (session 18 review).

Checked here: the README's release smtpd (no milters, mail for the site's
domains only) delivers a release once, unscanned; a release of an inbound
message that comes back through the milter anyway is taken as inbound
(X-Mailwarden-Released), never signed, and the milter says why it was
held again; the release's error without an upstream says what to set;
-t warns of milter_quarantine = store without quarantine_release_upstream."""

import os
import smtplib
import subprocess

import pytest

import dkimlib
import postfixlib
from mwlib import free_port, headers_named, make_msg, run_mw, wait_until

PLUGIN = os.environ.get("MW_PLUGIN")

pytestmark = pytest.mark.skipif(not postfixlib.available(),
                                reason="needs root and Debian's postfix")

# README "Quarantine": an smtpd for releases only
RELEASE_SMTPD = ("127.0.0.1:{port} inet n - n - - smtpd\n"
                 "    -o syslog_name=postfix/release\n"
                 "    -o smtpd_milters= -o non_smtpd_milters=\n"
                 "    -o mynetworks=127.0.0.1/32\n"
                 "    -o smtpd_client_restrictions=permit_mynetworks,reject\n"
                 "    -o smtpd_relay_restrictions=reject_unauth_destination\n"
                 "    -o smtpd_recipient_restrictions=\n"
                 "    -o smtpd_authorized_xclient_hosts= -o smtpd_authorized_xforward_hosts=\n")


@pytest.fixture
def site(mw_factory, make_upstream, tmp_path):
    """Postfix with our milter (smtpd_milters), relaying to a sink; its
    master.cf also has the README's release smtpd on release_port"""
    made = []

    def make(opts=()):
        sink = make_upstream()
        mport, rport = free_port(), free_port()
        o = [("milter_listen", "inet:%d@127.0.0.1" % mport),
             ("plugin", "%s word=viagra score=6 action_header=X-Action" % PLUGIN),
             ("authserv_id", "mx.test.example")] + list(opts)
        mw = mw_factory(sink, opts=o)
        m = {"smtpd_milters": "inet:127.0.0.1:%d" % mport, "milter_default_action": "tempfail",
             "milter_content_timeout": "120s",
             # the test client plays a stranger on the internet (XCLIENT)
             "smtpd_authorized_xclient_hosts": "127.0.0.1", "relay_domains": "example.net"}
        pf = postfixlib.Postfix(tmp_path / "pf", relayhost=sink.addr, main=m,
                                master=RELEASE_SMTPD.format(port=rport)).start()
        pf.release_addr = "127.0.0.1:%d" % rport
        made.append(pf)
        return pf, mw, sink
    yield make
    for pf in made:
        pf.stop()


def send_from_stranger(pf, content, frm):
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as c:
        c.ehlo("client.example.org")
        code, _ = c.docmd("XCLIENT", "ADDR=203.0.113.5 NAME=[UNAVAILABLE] HELO=stranger.example.net")
        assert code == 220, code
        c.ehlo_resp = c.esmtp_features = None
        c.ehlo("stranger.example.net")
        return c.sendmail(frm, ["rcpt@example.net"], content)


def release(mw, qid, upstream=None):
    args = [os.environ["MW_BIN"], "quarantine", "-o", "quarantine_dir=" + mw.quarantine_dir,
            "-o", "audit_log=" + mw.audit_path]
    if upstream:
        args += ["-o", "quarantine_release_upstream=" + upstream]
    return subprocess.run(args + ["release", qid], capture_output=True, timeout=60)


def milter_records(mw, n):
    return [x for x in mw.audit(n) if x.get("listener") == "milter" and "event" not in x]


def quarantined_inbound(mw):
    rec = milter_records(mw, 1)[-1]
    assert rec["action"] == "quarantine" and rec["direction"] == "inbound", rec
    return rec["quarantine_id"]


def test_release_without_upstream_says_what_to_set(site):
    """before: "no upstream known (its listener is gone)" (a milter has
    no listener to be gone)"""
    pf, mw, sink = site()
    send_from_stranger(pf, make_msg(subject="hello", headers=[("X-Action", "quarantine")]),
                       "someone@example.org")
    qid = quarantined_inbound(mw)
    r = release(mw, qid)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "listener is gone" not in err, err
    assert "quarantined by the milter" in err and "quarantine_release_upstream" in err \
        and "smtpd_milters=" in err, err


def test_release_through_the_release_smtpd_is_delivered_once(site):
    """the README's recipe: the release reaches the sink, with the
    release's edits, and the milter never sees it again"""
    pf, mw, sink = site()
    send_from_stranger(pf, make_msg(subject="hello", headers=[("X-Action", "quarantine")]),
                       "someone@example.org")
    qid = quarantined_inbound(mw)
    r = release(mw, qid, pf.release_addr)
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: len(sink.messages) == 1, 20.0), pf.log()[-3000:]
    got = sink.messages[0].content
    assert headers_named(got, "X-Spam-Flag") == ["YES"], got[:800]
    assert headers_named(got, "X-Mailwarden-Released") == [qid], got[:800]
    assert len(milter_records(mw, 1)) == 1, "the release went through the milter again"


def test_release_into_the_milters_mta_is_not_taken_for_ours(site, tmp_path):
    """the trap itself: quarantine_release_upstream = the MTA that runs
    the milter.  A stranger's spam with From: ceo@sign.test (a domain
    dkim_sign signs), quarantined inbound by score, comes back from
    127.0.0.1.  Before: outbound, signed with the site's key, delivered
    (the stranger's message verified as ours).  Now: inbound, held again,
    and the milter's log says why; nothing signed reaches the sink."""
    keys = dkimlib.make_keys(tmp_path)
    sign, _dns = dkimlib.sign_keys(keys)
    pf, mw, sink = site(opts=[("filters", "dkim_sign"), ("inbound_quarantine_score", "5")] + sign)
    send_from_stranger(pf, make_msg(subject="cheap viagra", frm="ceo@sign.test"), "ceo@sign.test")
    qid = quarantined_inbound(mw)
    r = release(mw, qid, pf.addr)
    assert r.returncode == 0, r.stderr          # Postfix queued it: the release cannot know
    recs = milter_records(mw, 2)
    assert len(recs) == 2, recs
    assert recs[-1]["direction"] == "inbound", recs[-1]
    assert recs[-1]["action"] == "quarantine", recs[-1]
    assert wait_until(lambda: "came back through the milter" in mw.stderr_text(), 5.0), \
        mw.stderr_tail()
    wait_until(lambda: len(sink.messages) > 0, 2.0)
    for m in sink.messages:
        assert dkimlib.signatures(m.content) == [], m.content[:1500]


def test_config_check_warns_of_a_store_quarantine_without_release_upstream():
    port = free_port()
    base = ["-t", "-o", "milter_listen=inet:%d@127.0.0.1" % port, "-o", "dns_client_name=no",
            "-o", "filters=spf"]
    r = run_mw(base)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    w = [l for l in err.splitlines() if "warning" in l and "quarantine_release_upstream" in l]
    assert len(w) == 1 and "smtpd_milters=" in w[0], err
    for extra in (["-o", "quarantine_release_upstream=127.0.0.1:10027"],
                  ["-o", "milter_quarantine=mta"]):
        r = run_mw(base + extra)
        assert r.returncode == 0 and "quarantine_release_upstream" not in r.stderr.decode(), r.stderr
