"""test_mime_qp_cost.py - the cost of telling whether QP-decoding a
multipart changes its split (filters/mime_qp.c), session 20 review
rv-today5: every line decoded inside a QP logical line ("=0D=0A") was
compared with every boundary of the multipart and of the multiparts in
it (up to 1000), each boundary measured again at each look.  A multipart
labelled quoted-printable holding 900 nested multiparts with 700-byte
boundaries and 10 MB of "y=0D=0A--x=0D=0A--x..." (raw lines that do not
start with "--": the parse's cap on boundary lines does not stop them)
took 8.9 s of one scanner thread.  Now the boundaries are measured once
and past 20,000 candidate lines the answer is "may change" (unchecked,
as a limit of the parse): well under a second."""
import json

from mwlib import run_mw


def msg(mb=10, nb=900, bl=700):
    parts = ["From: a@example.com\r\nTo: b@example.org\r\nSubject: qp\r\nMessage-ID: <qp1@example.com>\r\n"
             "Date: Sat, 29 Nov 2025 08:00:00 +0000\r\nMIME-Version: 1.0\r\n"
             "Content-Type: multipart/mixed; boundary=\"BND\"\r\n"
             "Content-Transfer-Encoding: quoted-printable\r\n\r\n"]
    for k in range(nb):
        b = (str(k) + "B" * bl)[:bl]
        parts.append("--BND\r\nContent-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n--%s\r\n"
                     "Content-Type: text/plain\r\n\r\nx\r\n--%s--\r\n" % (b, b, b))
    parts.append("--BND\r\nContent-Type: text/plain\r\n\r\n")
    line = "y" + "=0D=0A--x" * 8 + "=\r\n"
    parts.append(line * ((mb << 20) // len(line)))
    parts.append("\r\n--BND--\r\n")
    return "".join(parts).encode()


def test_many_decoded_lines_against_many_long_boundaries(tmp_path):
    f = tmp_path / "m.eml"
    f.write_bytes(msg())
    p = run_mw(["scan", "-o", "filters=attachments", "-o", "dns_forwarder=127.0.0.1@9", str(f)], timeout=600)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.decode())
    # 8.9 s before (0.12 s for the rest of the scan); a loaded machine
    # gets a wide margin
    assert out["scan_ms"] < 3000, out["scan_ms"]
    # a multipart labelled quoted-printable that this much decoding may
    # split is unchecked, as before the check's cost was bounded
    assert any(s["name"] == "ATTACH_UNCHECKED" for s in out["symbols"]), out["symbols"]
