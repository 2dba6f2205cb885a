"""HTML, image and link evals (issue 6, rules/eval_html.c) through
"mailwarden scan": the MIME layer's parts reach the evals the way
SpamAssassin sees them (HTML decoded from quoted-printable, lengths without
the CRs of the spooled CRLF message, base64 images measured from their
headers), on a spammy message and not on a plain HTML one."""
import base64
import json
import os
import struct
import subprocess

import mwlib

HERE = os.path.dirname(os.path.abspath(__file__))
MW = os.environ.get("MW_BIN", os.path.join(HERE, "..", "..", "build", "mailwarden"))

RULES = """
body H_MESSAGE        eval:html_test('html')
body H_LOW_CONTRAST   eval:html_test('font_low_contrast')
body H_SIZE_HUGE      eval:html_range('max_size', '6', 'inf')
body H_SAVED_URL      eval:html_text_match('comment', '<!-- saved from url=\\(\\d{4}\\)')
body H_TITLE_SUBJ     eval:html_title_subject_ratio('3.5')
body H_IFRAME         eval:check_iframe_src()
body H_IP_MISMATCH    eval:check_https_ip_mismatch()
body H_LINK_IMAGE     eval:html_text_match('anchor', '<img>')
body H_BAL_BODY       eval:html_tag_balance('body', '!= 0')
body H_LEN_1024       eval:html_range('length', '0', '1024')
body H_GIF_1          eval:image_count('gif', 1, 1)
body H_GIF_AREA       eval:pixel_coverage('gif', 100000, 200000)
meta H_META           H_IFRAME && H_GIF_1
score H_META 2.5
"""


def gif(w, h):
    return b"GIF89a" + struct.pack("<HH", w, h) + b"\x00\x00\x00" + b"\x2c" + b"\x00" * 20


def qp_lines(text):
    # quoted-printable (lines stay short enough): the rules see the decoded text
    return "\r\n".join(line.replace("=", "=3D") for line in text.split("\n"))


SPAM_HTML = (
    "<html><head><title>Your exclusive invitation to the best offer of the year</title></head>\n"
    "<body>\n"
    "<!-- saved from url=(0022)http://example.com/ -->\n"
    "<p>Dear friend, <font color=\"#fffffe\">lorem ipsum hidden words</font></p>\n"
    "<font size=\"7\">BIG OFFER</font>\n"
    "<a href=\"http://192.0.2.1/login\">https://bank.example/login</a>\n"
    "<a href=\"http://example.com/\"><img src=\"cid:pic\" width=\"400\" height=\"300\"></a>\n"
    "<iframe src=\"http://frame.example/\"></iframe>\n")

HAM_HTML = (
    "<html><head><title>Minutes</title></head><body>\n"
    "<p>Hello team, the minutes of today's meeting are below.</p>\n"
    "<p><a href=\"https://intranet.example/minutes\">https://intranet.example/minutes</a></p>\n"
    + "<p>Item: we discussed the schedule and the budget at length.</p>\n" * 20
    + "</body></html>\n")


def message(subject, html, image=None):
    parts = [b"From: a@example.com\r\nTo: b@example.org\r\nSubject: " + subject.encode() +
             b"\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/related; boundary=\"BND\"\r\n\r\n--BND\r\n"
             b"Content-Type: text/html; charset=us-ascii\r\n"
             b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + qp_lines(html).encode() + b"\r\n"]
    if image:
        b64 = base64.encodebytes(image).replace(b"\n", b"\r\n")
        parts.append(b"--BND\r\nContent-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n"
                     b"Content-ID: <pic>\r\n\r\n" + b64)
    parts.append(b"--BND--\r\n")
    return b"".join(parts)


def scan(tmp_path, msg):
    cf = tmp_path / "html.cf"
    cf.write_text(RULES)
    p = tmp_path / "m.eml"
    p.write_bytes(msg)
    r = subprocess.run([MW, "scan", "-o", "filters=rules", "-o", "rules_files=", "-o", "rules_files=%s" % cf,
                        "-o", "rules_cache_dir=%s" % (tmp_path / "cache"), "-o", "log=stderr",
                        "-o", "dns_forwarder=127.0.0.1@%d" % mwlib.free_port(), "-o", "dns_client_name=no",
                        str(p)], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return {s["name"] for s in json.loads(r.stdout)["symbols"] if s.get("filter") == "rules"}


def test_spammy_html_and_image(tmp_path):
    hits = scan(tmp_path, message("Hi", SPAM_HTML, gif(400, 300)))
    want = {"H_MESSAGE", "H_LOW_CONTRAST", "H_SIZE_HUGE", "H_SAVED_URL", "H_TITLE_SUBJ", "H_IFRAME",
            "H_IP_MISMATCH", "H_LINK_IMAGE", "H_BAL_BODY", "H_LEN_1024", "H_GIF_1", "H_GIF_AREA", "H_META"}
    assert want <= hits, sorted(want - hits)


def test_plain_html(tmp_path):
    hits = scan(tmp_path, message("Minutes of the weekly meeting", HAM_HTML))
    assert hits == {"H_MESSAGE"}, sorted(hits)


def test_length_counted_without_crs(tmp_path):
    # 1000 characters of HTML with LF line ends: 1040 in the CRLF spool,
    # 1000 for SpamAssassin, so under 1024
    html = "".join("<p>%s</p>\n" % ("x" * 17) for _ in range(40))
    assert len(html) == 1000
    hits = scan(tmp_path, message("s", html))
    assert "H_LEN_1024" in hits, sorted(hits)
    hits = scan(tmp_path, message("s", html + "<p>" + "y" * 40 + "</p>\n"))
    assert "H_LEN_1024" not in hits, sorted(hits)
