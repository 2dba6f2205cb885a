"""The MIME, body and header eval: functions and the mimeheader rule type
(issue 6) through "mailwarden scan": the rules filter's bridge hands the
real message (CRLF, as spooled), its GMime parts and the envelope to
rules/eval_mime.c and rules/eval_header.c; a multipart spam with an
attachment and an HTML part that says something else than its text part
hits them, a plain message does not."""
import json
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
MW = os.environ.get("MW_BIN", os.path.join(HERE, "..", "..", "build", "mailwarden"))

RULES = r"""
mimeheader T_MH_ZIP       Content-Type =~ m,\bapplication/(?:zip|x-zip-compressed)\b,i
mimeheader T_MH_CTE_RAW   Content-Transfer-Encoding:raw =~ /^base64$/
mimeheader T_MH_DESC      Content-Description =~ /^Facture d\xc3\xa9taill\xc3\xa9e$/
mimeheader T_MH_DESC_RAW  Content-Description:raw =~ /^=\?utf-8\?q\?Facture/
mimeheader T_MH_ALL_DESC  ALL =~ /^Content-Description: Facture d\xc3\xa9taill\xc3\xa9e$/m
rawbody    T_MIME_B64     eval:check_for_mime('mime_base64_count')
rawbody    T_MIME_QP      eval:check_for_mime('mime_qp_count')
body       T_MIME_ATTACH  eval:check_for_mime('mime_attachment')
body       T_MIME_HTML    eval:check_for_mime_html()
body       T_HTML_ONLY    eval:check_for_mime_html_only()
body       T_MA_DIFF      eval:multipart_alternative_difference('50', '100')
body       T_EPILOGUE     eval:check_msg_parse_flags('mime_epilogue_exists')
body       T_SHORT        eval:check_body_length('100')
body       T_STOCK        eval:check_stock_info('2')
header     T_SUBJ_CAPS    eval:subject_is_all_caps()
header     T_ENV_MATCH    eval:check_for_matching_env_and_hdr_from()
header     T_DIFF_DOM     eval:check_equal_from_domains()
header     T_TO_IN_SUBJ   eval:check_for_to_in_subject('user')
header     T_FROM_8BIT    eval:check_illegal_chars('From', '0.03', '2')
meta       T_META_ZIP     T_MH_ZIP && T_MIME_ATTACH
"""

SPAM = (b"From: Stock \xff\xfe Alert <alert@promo.example>\r\n"
        b"To: joe@example.net\r\n"
        b"Subject: RE: STOCKPICKS JOE\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"OUT\"\r\n"
        b"\r\n"
        b"--OUT\r\n"
        b"Content-Type: multipart/alternative; boundary=\"ALT\"\r\n"
        b"\r\n"
        b"--ALT\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"\r\n"
        b"Company: ACME Corp=2E\r\n"
        b"Symbol: ACMX\r\n"
        b"Current Price: 0.10\r\n"
        b"--ALT\r\n"
        b"Content-Type: text/html; charset=us-ascii\r\n"
        b"\r\n"
        b"<html><body><p>buy cheap pills tonight online</p></body></html>\r\n"
        b"--ALT--\r\n"
        b"--OUT\r\n"
        b"Content-Type: application/zip; name=\"report.zip\"\r\n"
        b"Content-Description: =?utf-8?q?Facture_d=C3=A9taill=C3=A9e?=\r\n"
        b"Content-Disposition: attachment; filename=\"report.zip\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n"
        b"UEsDBBQAAAAIAA==\r\n"
        b"--OUT--\r\n"
        b"trailing junk after the last boundary\r\n")

PLAIN = (b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: lunch tomorrow?\r\n"
         b"Date: Thu, 26 Nov 2026 10:00:00 +0100\r\nMessage-ID: <1234.5678@example.org>\r\n"
         b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
         b"See you at noon? We could try the new place near the station, "
         b"they have a lunch menu that changes every day.\r\n")

ALL = {"T_MH_ZIP", "T_MH_CTE_RAW", "T_MH_DESC", "T_MH_DESC_RAW", "T_MH_ALL_DESC", "T_MIME_B64", "T_MIME_QP", "T_MIME_ATTACH", "T_MIME_HTML",
       "T_HTML_ONLY", "T_MA_DIFF", "T_EPILOGUE", "T_SHORT", "T_STOCK", "T_SUBJ_CAPS", "T_ENV_MATCH",
       "T_DIFF_DOM", "T_TO_IN_SUBJ", "T_FROM_8BIT", "T_META_ZIP"}


def scan(tmp_path, msg, mail_from):
    (tmp_path / "mime.cf").write_text(RULES)
    p = tmp_path / "m.eml"
    p.write_bytes(msg)
    # no DNS is needed: a dead loopback forwarder makes sure none is asked
    r = subprocess.run([MW, "scan", "-o", "filters=rules", "-o", "rules_files=",
                        "-o", "rules_files=" + str(tmp_path / "mime.cf"),
                        "-o", "rules_cache_dir=" + str(tmp_path / "cache"), "-o", "log=stderr",
                        "-o", "dns_forwarder=127.0.0.1@9", "--from", mail_from, str(p)],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return {s["name"] for s in json.loads(r.stdout)["symbols"] if s.get("filter") == "rules"}


def test_mime_evals_hit_a_multipart_spam(tmp_path):
    hits = scan(tmp_path, SPAM, "bounce@bulk.example")
    want = {"T_MH_ZIP", "T_MH_CTE_RAW", "T_MH_DESC", "T_MH_DESC_RAW", "T_MH_ALL_DESC", "T_MIME_B64", "T_MIME_QP", "T_MIME_ATTACH", "T_MIME_HTML",
            "T_MA_DIFF", "T_EPILOGUE", "T_STOCK", "T_SUBJ_CAPS", "T_DIFF_DOM", "T_TO_IN_SUBJ",
            "T_FROM_8BIT", "T_META_ZIP"}
    assert want <= hits, sorted(want - hits)
    # there is a text part; the body is long; envelope and From differ
    assert not hits & {"T_HTML_ONLY", "T_SHORT", "T_ENV_MATCH"}, sorted(hits)


def test_mime_evals_quiet_on_a_plain_message(tmp_path):
    hits = scan(tmp_path, PLAIN, "alice@example.org")
    assert hits == {"T_ENV_MATCH"}, sorted(hits)
    # the envelope sender of the SMTP transaction is what is compared
    hits = scan(tmp_path, PLAIN, "list-bounces@lists.example.com")
    assert hits == {"T_DIFF_DOM"}, sorted(hits)
