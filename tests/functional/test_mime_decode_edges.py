"""test_mime_decode_edges.py - review rv-today4 (session 20): two decodings
that hid content from the antivirus after mime20b (both failed on db8c651,
passed on 10aa7f9 before it, and pass since today4fix20).

A. A file sent base64 without its last quartet's '=' padding, behind a
   TAB-padded delimiter (libclamav's own parse does not split there: only
   the decoded-leaf scan sees the file).  mime20b writes the cut quartet
   raw ("AA" -> the bytes "AA==", as Thunderbird saves it), so the leaf
   scanned differs from the file in its last byte(s) and every whole-file
   hash signature (.hdb/.hsb, most of ClamAV's daily db) misses it, while
   Python's email package, GMime-based and most other clients decode the
   real file.  Before: found.
B. A multipart labelled quoted-printable whose body, decoded, holds a
   delimiter after an encoded line break (=0D=0A--BND=0D=0A...) in a
   content line: mime_qp_changes_split looks at the start of each decoded
   logical line only, says "no change", and the message is no longer
   unchecked/limit (before: ATTACH_UNCHECKED + AV_UNSCANNED, quarantined).

Run:
    cp /work/brief/s20/rv-today4/test_mime_decode_edges.py tests/functional/ && cd tests/functional && \
    MW_BUILD=$PWD/../../build MW_BIN=$PWD/../../build/mailwarden \
    MW_PLUGIN=$PWD/../../build/tests/example_plugin.so \
    /usr/bin/python3 -B -m pytest -q -p no:cacheprovider test_mime_decode_edges.py
"""
import base64
import email
import email.policy
import json
import os

import pytest

import avlib
from avlib import EICAR
from mwlib import run_mw

CLAM = "/usr/share/clamav-testfiles/clam.exe"
pytestmark = pytest.mark.skipif(not os.path.exists(CLAM), reason="clamav-testfiles not installed")


def scan(tmp_path, msg, filters):
    db = avlib.copy_db(str(tmp_path / "db"))
    f = tmp_path / "m.eml"
    f.write_bytes(msg)
    p = run_mw(["scan", "-o", "filters=" + filters, "-o", "av_database=" + db, "-o", "av_db_check_interval=0",
                "-o", "dns_forwarder=127.0.0.1@9", str(f)], timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.decode())
    return out, {s["name"]: s.get("desc", "") for s in out["symbols"]}


def tab_delimited(enc):
    CRLF = b"\r\n"
    h = [b"From: sender@example.org", b"To: rcpt@example.net", b"Subject: invoice",
         b"Message-ID: <unpadded@x.test>", b"Date: Mon, 02 Jan 2023 10:00:00 +0000",
         b"MIME-Version: 1.0", b'Content-Type: multipart/mixed; boundary="BND"', b"",
         b"--BND", b"Content-Type: text/plain", b"", b"see attached",
         b"--BND\t", b'Content-Type: application/octet-stream; name="doc.bin"',
         b'Content-Disposition: attachment; filename="doc.bin"', b"Content-Transfer-Encoding: base64", b""]
    return CRLF.join(h + [enc[i:i + 76] for i in range(0, len(enc), 76)] + [b"--BND--", b""])


def test_unpadded_tail_hides_a_hash_signature(tmp_path):
    data = open(CLAM, "rb").read()
    enc = base64.b64encode(data)
    assert enc.endswith(b"=")
    msg = tab_delimited(enc.rstrip(b"="))
    # witness: other parsers see the file whole
    m = email.message_from_bytes(msg, policy=email.policy.default)
    assert [p.get_payload(decode=True) == data for p in m.walk() if p.get_filename()] == [True]
    out, syms = scan(tmp_path, msg, "clamav")
    assert syms.get("VIRUS_FOUND", "").startswith(avlib.CLAM_NAME), out


def test_qp_multipart_delimiter_after_encoded_crlf(tmp_path):
    e = base64.b64encode(EICAR).decode().replace("=", "=3D")
    hidden = ("=0D=0A--BND=0D=0AContent-Type: application/octet-stream; name=3D\"doc.bin\"=0D=0A"
              "Content-Transfer-Encoding: base64=0D=0A=0D=0A" + e + "\r\n")
    msg = ("From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: offers\r\nMessage-ID: <qp@x>\r\n"
           "Date: Mon, 02 Jan 2023 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/mixed; boundary=\"BND\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
           "--BND\r\nContent-Type: text/plain; charset=\"iso-8859-1\"\r\n"
           "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
           "Dear customer, our offers =E0 la carte." + hidden + "--BND--\r\n").encode()
    out, syms = scan(tmp_path, msg, "attachments clamav")
    assert "ATTACH_UNCHECKED" in syms and "AV_UNSCANNED" in syms, out
