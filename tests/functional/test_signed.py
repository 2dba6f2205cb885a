"""test_signed.py - what the attachment "replace" action does to signed and
encrypted mail.  A replaced leaf inside a multipart/signed (S/MIME, RFC
5751; PGP/MIME, RFC 3156), or an opaque S/MIME signed-data part replaced
whole, would reach the recipient with a signature that no longer verifies:
such a message is quarantined instead ("..., signed message, not
replaceable").  A banned part outside the signed part (a list's
multipart/mixed around it) is still replaced, and the inner signature still
verifies.

The signed messages are made at test time with Debian's openssl (`openssl
cms -sign`, a throwaway self-signed certificate in the test's directory)
and gpg (a throwaway key in its own home directory), and checked with
`openssl cms -verify` / `gpg --verify` before and after mailwarden."""

import json
import os
import re
import shutil
import subprocess

import pytest

import attachlib as L
from attachlib import attach_symbols
from mwlib import run_mw
from test_milter_postfix import site  # noqa: F401  (fixture: Postfix with mailwarden as its milter)

CRLF = b"\r\n"
REPLACE = "attach_inbound_extension_action=replace"
PAYLOAD = b"not an executable, but named like one\r\n" * 4
NOT_REPLACEABLE = ("Banned attachment invoice.pdf.exe (double extension .pdf.exe), "
                   "signed message, not replaceable")


def crlf(b):
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def inner_entity(boundary="=_inner_1"):
    """the MIME entity a sender signs: a text part and a banned attachment"""
    return crlf(b"Content-Type: multipart/mixed; boundary=\"" + boundary.encode() + b"\"\r\n\r\n"
                b"--" + boundary.encode() + b"\r\n" +
                L.part("text/plain; charset=us-ascii", b"The invoice is attached.\r\n", cte="7bit") +
                b"\r\n--" + boundary.encode() + b"\r\n" +
                L.part("application/octet-stream", PAYLOAD, "attachment; filename=\"invoice.pdf.exe\"") +
                b"\r\n--" + boundary.encode() + b"--\r\n")


@pytest.fixture
def smime(tmp_path):
    """(key, cert) of a throwaway S/MIME identity"""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=Alice/emailAddress=alice@example.org"],
                   check=True, capture_output=True)
    return key, cert


def smime_sign(tmp_path, ident, entity, opaque=False):
    """a whole message: entity signed by ident (multipart/signed, or
    application/pkcs7-mime signed-data when opaque), CRLF lines"""
    key, cert = ident
    src = tmp_path / "entity.mime"
    src.write_bytes(entity)
    p = subprocess.run(["openssl", "cms", "-sign", "-in", str(src), "-signer", str(cert), "-inkey", str(key),
                        "-from", "alice@example.org", "-to", "rcpt@example.net", "-subject", "invoice"]
                       + (["-nodetach"] if opaque else []), check=True, capture_output=True)
    return crlf(p.stdout)


def smime_verifies(tmp_path, ident, msg):
    """openssl cms -verify of an S/MIME message (its signature and the
    content it covers)"""
    f = tmp_path / "verify.eml"
    f.write_bytes(msg)
    p = subprocess.run(["openssl", "cms", "-verify", "-in", str(f), "-CAfile", str(ident[1]),
                        "-out", os.devnull], capture_output=True)
    return p.returncode == 0


def scan(tmp_path, msg, *opts):
    """(result JSON, message as it would leave or None) of `mailwarden scan --output`"""
    f, out = tmp_path / "in.eml", tmp_path / "out.eml"
    f.write_bytes(msg)
    if out.exists():
        out.unlink()
    args = ["scan", "-o", "filters=attachments", "--output", str(out)]
    for o in opts:
        args += ["-o", o]
    p = run_mw(args + [str(f)])
    assert p.returncode == 0, p.stderr.decode("utf-8", "replace")
    return json.loads(p.stdout), (out.read_bytes() if out.exists() else None)


def boundary_of(head):
    return re.search(rb"boundary=\"?([^\";\r\n]+)", head, re.I).group(1)


def raw_parts(msg):
    """the body parts of a multipart message (or entity), byte for byte as
    they are between its delimiter lines (RFC 2046: the CRLF before a
    delimiter belongs to it)"""
    head, body = msg.split(CRLF + CRLF, 1)
    b = boundary_of(head)
    segs = (CRLF + body).split(CRLF + b"--" + b)
    return [s.split(CRLF, 1)[1] for s in segs[1:-1]]


def assert_quarantined_as_signed(out, got, verifies=None):
    """not delivered with a broken signature (verifies: got -> bool, the
    check a recipient's program makes), but quarantined"""
    if got is not None and verifies is not None:
        assert verifies(got), "delivered with a signature that does not verify: %r" % out
    assert out["action"] == "quarantine", out
    assert out["new_body"] is False
    assert out["reply"].endswith(NOT_REPLACEABLE), out["reply"]
    assert "ATTACH_REPLACED" not in attach_symbols(out)
    assert got is None


# --- S/MIME multipart/signed ---------------------------------------------------------

def test_smime_detached_signed_is_quarantined_not_broken(tmp_path, smime):
    msg = smime_sign(tmp_path, smime, inner_entity())
    assert b"multipart/signed" in msg and smime_verifies(tmp_path, smime, msg)
    out, got = scan(tmp_path, msg, REPLACE)
    # before: delivered with the banned leaf replaced, and openssl said
    # "digest failure" on it, as the recipient's program would
    assert_quarantined_as_signed(out, got, lambda m: smime_verifies(tmp_path, smime, m))
    # the same entity unsigned is still replaced
    unsigned = crlf(b"From: alice@example.org\r\nTo: rcpt@example.net\r\nSubject: invoice\r\n"
                    b"MIME-Version: 1.0\r\n") + inner_entity()
    out, got = scan(tmp_path, unsigned, REPLACE)
    assert out["action"] == "accept" and out["new_body"] is True, out
    assert b"mailwarden removed an attachment" in got and L.b64(PAYLOAD)[:60] not in got


def test_smime_signature_part_itself_is_not_replaced(tmp_path, smime):
    """a rule that matches the signature part (here its type) would strip
    the signature off a message that claims one"""
    msg = smime_sign(tmp_path, smime, crlf(b"Content-Type: text/plain\r\n\r\nhello\r\n"))
    out, got = scan(tmp_path, msg, "attach_inbound_banned_types=application/pkcs7-signature",
                    "attach_inbound_type_action=replace")
    assert out["action"] == "quarantine", out
    assert out["reply"].endswith("type application/pkcs7-signature), signed message, not replaceable"), out


def list_wrapped(tmp_path, ident):
    """(message, its signed part): a list's multipart/mixed around an
    S/MIME signed text, with a banned file of the list's own"""
    signed = smime_sign(tmp_path, ident, crlf(b"Content-Type: text/plain\r\n\r\nsigned words\r\n"))
    shead, sbody = signed.split(CRLF + CRLF, 1)
    ctype = re.search(rb"^Content-Type: .*?\r\n(?![ \t])", shead + CRLF, re.M | re.S).group(0)
    signed_part = ctype + CRLF + sbody
    msg = (b"From: list@example.org\r\nTo: rcpt@example.net\r\nSubject: [list] invoice\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_list_1\"\r\n\r\n"
           b"--=_list_1\r\n" + signed_part + b"\r\n--=_list_1\r\n" +
           L.part("application/octet-stream", PAYLOAD, "attachment; filename=\"invoice.pdf.exe\"") +
           b"\r\n--=_list_1--\r\n")
    return msg, signed_part


def test_banned_part_outside_the_signed_part_is_replaced(tmp_path, smime):
    """a mailing list's multipart/mixed around a signed message, with a
    banned file of its own: the signature covers only its part, so the
    outer file is replaced and the signature still verifies"""
    msg, signed_part = list_wrapped(tmp_path, smime)
    assert smime_verifies(tmp_path, smime, b"MIME-Version: 1.0\r\n" + raw_parts(msg)[0])
    out, got = scan(tmp_path, msg, REPLACE)
    assert out["action"] == "accept" and out["new_body"] is True, out
    assert "ATTACH_REPLACED" in attach_symbols(out)
    assert b"mailwarden removed an attachment" in got and L.b64(PAYLOAD)[:60] not in got
    parts = raw_parts(got)
    assert parts[0] == signed_part
    assert smime_verifies(tmp_path, smime, b"MIME-Version: 1.0\r\n" + parts[0])
    # the same banned file inside the signed part as well: not replaceable
    signed = smime_sign(tmp_path, smime, inner_entity())
    shead, sbody = signed.split(CRLF + CRLF, 1)
    ctype = re.search(rb"^Content-Type: .*?\r\n(?![ \t])", shead + CRLF, re.M | re.S).group(0)
    msg2 = msg.replace(signed_part, ctype + CRLF + sbody)
    out, got = scan(tmp_path, msg2, REPLACE)
    assert_quarantined_as_signed(out, got, lambda m: smime_verifies(
        tmp_path, smime, b"MIME-Version: 1.0\r\n" + raw_parts(m)[0]))


def test_forwarded_signed_message_is_not_replaced_inside(tmp_path, smime):
    """a signed message attached as message/rfc822: replacing a leaf of it
    breaks its signature just the same"""
    signed = smime_sign(tmp_path, smime, inner_entity())
    msg = L.message([L.rfc822_part(signed)])
    out, got = scan(tmp_path, msg, REPLACE)
    assert_quarantined_as_signed(out, got)


# --- S/MIME opaque signed-data -------------------------------------------------------

def test_opaque_signed_data_is_not_replaced_whole(tmp_path, smime):
    """application/pkcs7-mime; smime-type=signed-data: the signed content is
    inside the part; replacing it takes the signed message away whole"""
    msg = smime_sign(tmp_path, smime, crlf(b"Content-Type: text/plain\r\n\r\nsigned words\r\n"),
                     opaque=True)
    assert b"smime-type=signed-data" in msg and smime_verifies(tmp_path, smime, msg)
    ban = ("attach_inbound_banned_extensions=p7m", "attach_inbound_extension_action=replace")
    out, got = scan(tmp_path, msg, *ban)
    if got is not None:
        assert smime_verifies(tmp_path, smime, got), "delivered without the signed content: %r" % out
    assert out["action"] == "quarantine", out
    assert out["reply"].endswith("(extension .p7m), signed message, not replaceable"), out
    assert got is None
    # told by its content, not by a parameter the sender writes
    mislabeled = msg.replace(b"smime-type=signed-data", b"smime-type=enveloped-data")
    out, got = scan(tmp_path, mislabeled, *ban)
    assert out["action"] == "quarantine" and out["reply"].endswith("signed message, not replaceable"), out


@pytest.mark.parametrize("stream", [False, True], ids=["der", "ber_stream"])
def test_opaque_signed_content_is_checked(tmp_path, smime, stream):
    """the signed message inside signed-data is in the clear and mail
    programs show its attachments: a banned file in it is found (it passed
    unseen before), rejected by default, and a replace quarantines"""
    key, cert = smime
    src = tmp_path / "entity.mime"
    src.write_bytes(inner_entity())
    p = subprocess.run(["openssl", "cms", "-sign", "-nodetach", "-in", str(src), "-signer", str(cert),
                        "-inkey", str(key), "-subject", "invoice"] + (["-stream"] if stream else []),
                       check=True, capture_output=True)
    msg = crlf(p.stdout)
    assert smime_verifies(tmp_path, smime, msg)
    out, got = scan(tmp_path, msg)
    assert out["action"] == "reject", out
    assert "invoice.pdf.exe" in attach_symbols(out)["ATTACH_DOUBLE_EXT"]
    out, got = scan(tmp_path, msg, REPLACE)
    assert_quarantined_as_signed(out, got, lambda m: smime_verifies(tmp_path, smime, m))
    # the same sent as application/octet-stream named smime.p7m, which
    # mail programs open as S/MIME too
    octet = re.sub(rb"Content-Type: application/(x-)?pkcs7-mime;[^\r]*",
                   b"Content-Type: application/octet-stream; name=\"smime.p7m\"", msg)
    assert octet != msg
    out, got = scan(tmp_path, octet)
    assert out["action"] == "reject", out
    out, got = scan(tmp_path, octet, REPLACE)
    assert_quarantined_as_signed(out, got)
    # a clean signed message stays clean
    src.write_bytes(crlf(b"Content-Type: text/plain\r\n\r\nsigned words\r\n"))
    p = subprocess.run(["openssl", "cms", "-sign", "-nodetach", "-in", str(src), "-signer", str(cert),
                        "-inkey", str(key)], check=True, capture_output=True)
    out, got = scan(tmp_path, crlf(p.stdout), REPLACE)
    assert out["action"] == "accept" and attach_symbols(out) == {}, out


def test_encrypted_smime_is_left_as_it_was(tmp_path, smime):
    """enveloped-data: nothing of it can be seen; the policy passes it as
    before (no banned name or type shows) with a score-0 symbol saying so,
    and a replace of it (the site banned .p7m) carries no signature to
    break"""
    src = tmp_path / "entity.mime"
    src.write_bytes(inner_entity())
    enc = crlf(subprocess.run(["openssl", "cms", "-encrypt", "-aes256", "-in", str(src), "-from",
                               "alice@example.org", "-to", "rcpt@example.net", "-subject", "invoice",
                               str(smime[1])], check=True, capture_output=True).stdout)
    assert b"smime-type=enveloped-data" in enc
    out, got = scan(tmp_path, enc, REPLACE)
    assert out["action"] == "accept" and out["new_body"] is False, out
    # said in the result and the audit record, with no score and no action
    assert attach_symbols(out) == {"ATTACH_ENCRYPTED_MESSAGE":
                                   "smime.p7m: S/MIME enveloped data, its content is not checked"}, out
    assert out["score"] == 0
    assert got.endswith(enc.split(CRLF + CRLF, 1)[1])
    out, got = scan(tmp_path, enc, "attach_inbound_banned_extensions=p7m",
                    "attach_inbound_extension_action=replace")
    assert out["action"] == "accept" and out["new_body"] is True, out


# --- PGP/MIME ------------------------------------------------------------------------

def pgp_signed(entity, sig, boundary=b"=_pgp_1"):
    return (b"From: alice@example.org\r\nTo: rcpt@example.net\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/signed; micalg=pgp-sha256;\r\n"
            b" protocol=\"application/pgp-signature\"; boundary=\"" + boundary + b"\"\r\n\r\n"
            b"--" + boundary + b"\r\n" + entity.rstrip(CRLF) + b"\r\n--" + boundary + b"\r\n"
            b"Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n"
            b"Content-Disposition: attachment; filename=\"signature.asc\"\r\n\r\n" + crlf(sig) +
            b"\r\n--" + boundary + b"--\r\n")


@pytest.fixture
def gpg(tmp_path):
    """sign(data) -> armored detached signature, verify(data, sig) -> bool,
    with a throwaway key; None without gpg.  gpg starts a gpg-agent for
    the home directory that outlives gpg itself (it daemonizes, so it is no
    child of ours): gpgconf stops it at the end."""
    if shutil.which("gpg") is None:
        yield None
        return
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    base = ["gpg", "--homedir", str(home), "--batch", "--quiet", "--no-tty"]

    def sign(data):
        return subprocess.run(base + ["--armor", "--detach-sign"], input=data, check=True,
                              capture_output=True, timeout=30).stdout

    def verify(data, sig):
        d, s = tmp_path / "signed.data", tmp_path / "signed.asc"
        d.write_bytes(data)
        s.write_bytes(sig)
        return subprocess.run(base + ["--verify", str(s), str(d)], capture_output=True,
                              timeout=30).returncode == 0
    try:
        subprocess.run(base + ["--passphrase", "", "--quick-gen-key", "alice@example.org", "ed25519", "sign", "1d"],
                       check=True, capture_output=True, timeout=60)
        yield sign, verify
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, timeout=30)


def test_pgp_mime_signed_is_quarantined_not_broken(tmp_path, gpg):
    entity = inner_entity()
    # RFC 3156: the signature covers the first part as it stands between
    # the delimiters, CRLF line ends, the last CRLF excluded
    signed_bytes = entity.rstrip(CRLF)
    sig = gpg[0](signed_bytes) if gpg else (b"-----BEGIN PGP SIGNATURE-----\n\nnot a real one\n"
                                            b"-----END PGP SIGNATURE-----\n")
    msg = pgp_signed(entity, sig)
    if gpg:
        assert gpg[1](raw_parts(msg)[0], sig)
    out, got = scan(tmp_path, msg, REPLACE)
    assert_quarantined_as_signed(out, got, (lambda m: gpg[1](raw_parts(m)[0], sig)) if gpg else None)


def test_pgp_mime_encrypted_parts_are_not_replaced(tmp_path):
    """multipart/encrypted (RFC 3156): a part replaced leaves a message no
    program can decrypt; the site banned .asc here"""
    msg = (b"From: alice@example.org\r\nTo: rcpt@example.net\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"e\"\r\n\r\n"
           b"--e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
           b"--e\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n"
           b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA0xxxx\r\n-----END PGP MESSAGE-----\r\n--e--\r\n")
    out, got = scan(tmp_path, msg)
    assert out["action"] == "accept" and out["new_body"] is False, out   # unchanged by default
    assert attach_symbols(out) == {"ATTACH_ENCRYPTED_MESSAGE": "PGP/MIME encrypted: its content is not checked"}
    out, got = scan(tmp_path, msg, "attach_inbound_banned_extensions=asc", REPLACE)
    assert out["action"] == "quarantine", out
    assert out["reply"].endswith("encrypted message, not replaceable"), out


# --- through the proxy and through a real Postfix's milter ---------------------------

def check_front_end(tmp_path, smime, send, delivered, mw):
    """send(msg) -> None; delivered() -> the messages that reached the
    upstream so far; mw: the daemon (its log and audit records)"""
    signed = smime_sign(tmp_path, smime, inner_entity())
    send(signed)
    rec = mw.audit(1)[0]
    assert rec["action"] == "quarantine" and rec.get("quarantine_id"), rec
    assert rec["reply"].endswith(NOT_REPLACEABLE), rec    # the reason, in the audit record
    assert "cannot replace the banned attachment (part 2 is in a multipart/signed): quarantined" \
        in mw.stderr_tail(300)
    wrapped, signed_part = list_wrapped(tmp_path, smime)
    send(wrapped)
    got = delivered()
    assert len(got) == 1, got      # the signed one was not delivered
    assert L.b64(PAYLOAD)[:60] not in got[0] and b"mailwarden removed an attachment" in got[0]
    inner = [p for p in raw_parts(got[0].split(CRLF + CRLF, 1)[0] + CRLF + CRLF
                                  + got[0].split(CRLF + CRLF, 1)[1]) if b"multipart/signed" in p[:200]]
    assert inner == [signed_part]
    assert smime_verifies(tmp_path, smime, b"MIME-Version: 1.0\r\n" + inner[0])


def test_proxy_signed_quarantined_and_list_wrapper_replaced(tmp_path, smime, mw_factory, upstream):
    from mwlib import wait_until
    m = mw_factory(upstream, opts=[("filters", "attachments"), ("attach_inbound_extension_action", "replace")])

    def send(msg):
        c = m.client()
        c.ehlo()
        r = c.transaction("sender@example.org", ["rcpt@example.net"], msg)
        c.quit()
        assert r["final"].code == 250, r["final"]

    def delivered():
        wait_until(lambda: len(upstream.messages) >= 1, 5.0)
        return [x.content for x in upstream.messages]
    check_front_end(tmp_path, smime, send, delivered, m)
    assert [a["action"] for a in m.audit(2)] == ["quarantine", "accept"]


def test_milter_signed_quarantined_and_list_wrapper_replaced(tmp_path, smime, site):
    import smtplib
    from mwlib import wait_until
    pf, mw, sink = site(opts=[("filters", "attachments"), ("attach_inbound_extension_action", "replace")])

    def send(msg):
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as c:
            c.ehlo("client.example.org")
            assert not c.sendmail("sender@example.org", ["rcpt@example.net"], msg)

    def delivered():
        assert wait_until(lambda: len(sink.messages) >= 1, 20.0), pf.log()[-3000:]
        return [x.content for x in sink.messages]
    check_front_end(tmp_path, smime, send, delivered, mw)


def test_subject_tag_leaves_smime_signature_intact(tmp_path, smime):
    """the Subject tag edits the top-level header section, which an S/MIME
    signature does not cover: a tagged signed message still verifies"""
    from mwlib import MW_PLUGIN
    msg = smime_sign(tmp_path, smime, crlf(b"Content-Type: text/plain\r\n\r\nsigned words\r\n"))
    out, got = scan(tmp_path, msg, "subject_tag=[SPAM]", "plugin=%s word=invoice score=6" % MW_PLUGIN)
    assert out["action"] == "tag", out
    assert b"\r\nSubject: [SPAM] invoice\r\n" in got and b"X-Spam-Flag: YES\r\n" in got
    assert smime_verifies(tmp_path, smime, got)


# --- opaque OpenPGP signed messages ----------------------------------------------------
#
# gpg --sign puts the file (or, PGP/MIME, the MIME entity) into a compressed
# literal data packet: what the recipient's program shows or saves was not
# seen by the policy.

@pytest.fixture
def pgp(tmp_path):
    import avlib
    if shutil.which("gpg") is None:
        pytest.skip("gnupg not installed (scripts/install-deps)")
    g = avlib.Gpg(tmp_path)
    yield g
    g.close()


def pgp_attached(data, filename, ctype="application/octet-stream"):
    return L.message([L.part("text/plain", b"See the attachment.\r\n", cte="7bit"),
                      L.part(ctype + "; name=\"" + filename + "\"", data,
                             "attachment; filename=\"" + filename + "\"")])


def test_pgp_signed_banned_file_found(tmp_path, pgp):
    """the file inside: under the literal packet's name and the part's
    without its suffix, by its type, and in the archive it is"""
    out = L.scan(tmp_path, pgp_attached(pgp.sign(PAYLOAD, "payload.exe"), "report.gpg"))
    assert out["action"] == "reject", out
    assert attach_symbols(out) == {"ATTACH_ARCHIVE_BANNED": "report.gpg: contains payload.exe"}, out
    out = L.scan(tmp_path, pgp_attached(pgp.sign(PAYLOAD, "x", armor=True), "invoice.exe.asc", "application/pgp"))
    assert attach_symbols(out) == {"ATTACH_ARCHIVE_BANNED": "invoice.exe.asc: contains invoice.exe"}, out
    out = L.scan(tmp_path, pgp_attached(pgp.sign(L.pe_bytes(), "notes.txt"),
                                        "notes.gpg"))
    assert out["action"] == "reject" and \
        attach_symbols(out)["ATTACH_ARCHIVE_BANNED"].startswith("notes.gpg: contains notes.txt of type "), out
    import avlib
    z = avlib.zip_of([("evil.exe", PAYLOAD)])
    out = L.scan(tmp_path, pgp_attached(pgp.sign(z, "files.zip"), "files.zip.gpg"))
    assert attach_symbols(out) == {"ATTACH_ARCHIVE_BANNED": "files.zip.gpg/files.zip: contains evil.exe"}, out
    # a clean signed file passes
    out = L.scan(tmp_path, pgp_attached(pgp.sign(b"figures\n", "report.txt"), "report.txt.gpg"))
    assert out["action"] == "accept" and attach_symbols(out) == {}, out


def test_pgp_signed_message_inside(tmp_path, pgp):
    """inline armored, or the "encrypted" part of a PGP/MIME message that
    is only signed: the MIME entity inside checked as an attached message"""
    import avlib
    ent = inner_entity()
    arm = pgp.sign(ent, "msg.txt", armor=True)
    for msg in [avlib.pgp_mime_signed_only(arm), avlib.plain("inline", avlib.crlf(arm))]:
        out = L.scan(tmp_path, msg)
        assert out["action"] == "reject", out
        assert attach_symbols(out) == {"ATTACH_DOUBLE_EXT": "invoice.pdf.exe: double extension .pdf.exe"}, out


def test_pgp_unreadable_is_unchecked(tmp_path, pgp):
    """a decompression bomb, or a broken armored message: unchecked (the
    unchecked action), never a clean pass; an encrypted one is left alone"""
    import avlib
    out = L.scan(tmp_path, pgp_attached(avlib.pgp_bomb(), "bomb.gpg"))
    assert out["action"] == "quarantine", out
    assert attach_symbols(out) == {"ATTACH_UNCHECKED": "bomb.gpg: OpenPGP message not read "
                                   "(compression ratio over 1000:1)"}, out
    broken = avlib.plain("x", b"-----BEGIN PGP MESSAGE-----\r\n\nowGbwMvMwCHG2L/d\r\n-----END PGP MESSAGE-----\r\n")
    out = L.scan(tmp_path, broken)
    assert attach_symbols(out) == {"ATTACH_UNCHECKED": "part 1 (text/plain): OpenPGP message not read "
                                   "(compressed data truncated)"}, out
    enc = avlib.plain("x", b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA0xxxx\r\n-----END PGP MESSAGE-----\r\n")
    out = L.scan(tmp_path, enc)
    assert out["action"] == "accept" and attach_symbols(out) == {}, out
