"""Attachment policy (filters = attachments): a table of messages through
`mailwarden scan` with the expected action and symbol, per-rule actions and
directions from config, and end to end through the proxy (a banned file
gets a 5xx and nothing reaches the upstream; an encrypted archive arrives
tagged; a quarantined one is kept and not delivered)."""

import json
import os

import pytest

import attachlib as L
from attachlib import attach_symbols, scan
import audit_fields as A
from mwlib import run_mw

CRLF = b"\r\n"

EXE = L.pe_bytes()
ENC_ZIP = L.encrypted_zip({"report.txt": b"quarterly numbers\n"})
ENC_ZIP_EXE = L.encrypted_zip({"payload.exe": EXE})

# (id, parts, expected action, expected symbol (None = no ATTACH_ symbol),
#  text expected in that symbol's description)
CASES = [
    ("double_extension",
     [L.part("application/octet-stream", b"harmless bytes\n",
             "attachment; filename=\"invoice.pdf.exe\"")],
     "reject", "ATTACH_DOUBLE_EXT", "invoice.pdf.exe"),
    ("trailing_dots_spaces",
     [L.part("application/octet-stream", b"harmless bytes\n",
             "attachment; filename=\"report.scr. . \"")],
     "reject", "ATTACH_BANNED_EXT", "extension .scr"),
    ("spaces_before_extension",
     [L.part("application/octet-stream", b"harmless bytes\n",
             "attachment; filename=\"photo.jpg            .vbs\"")],
     "reject", "ATTACH_DOUBLE_EXT", ".jpg.vbs"),
    ("rfc2231_filename",
     [L.part("application/octet-stream", b"harmless bytes\n",
             "attachment; filename*=UTF-8''%E2%82%AC%20Rechnung.js")],
     "reject", "ATTACH_BANNED_EXT", "\u20ac Rechnung.js"),
    ("rfc2231_continuations",
     [L.part("application/octet-stream", b"harmless bytes\n",
             "attachment; filename*0*=UTF-8''Auftrag%C3%A4; filename*1=nderung.b; filename*2=at")],
     "reject", "ATTACH_BANNED_EXT", "Auftrag\u00e4nderung.bat"),
    ("rfc2047_filename",
     [L.part("application/octet-stream; name=\"=?UTF-8?B?UsOpc3Vtw6kuaHRh?=\"", b"harmless\n",
             "attachment")],
     "reject", "ATTACH_BANNED_EXT", "R\u00e9sum\u00e9.hta"),
    ("executable_as_text_plain",
     [L.part("text/plain; name=\"notes.txt\"", EXE, "attachment; filename=\"notes.txt\"")],
     "reject", "ATTACH_CONTENT_TYPE", "content application/vnd.microsoft.portable-executable"),
    ("elf_without_name",
     [L.part("application/octet-stream", L.elf_bytes())],
     "reject", "ATTACH_CONTENT_TYPE", "application/x-executable"),
    ("banned_declared_type",
     [L.part("application/x-msdownload", b"whatever\n", "attachment; filename=\"update.bin\"")],
     "reject", "ATTACH_BANNED_TYPE", "application/x-msdownload"),
    ("banned_name_in_zip",
     [L.part("application/zip", L.zip_bytes({"readme.txt": b"hi\n", "setup.exe": b"not really\n"}),
             "attachment; filename=\"docs.zip\"")],
     "reject", "ATTACH_ARCHIVE_BANNED", "contains setup.exe"),
    ("renamed_executable_in_zip",
     [L.part("application/zip", L.zip_bytes({"scan.pdf": EXE}),
             "attachment; filename=\"scans.zip\"")],
     "reject", "ATTACH_ARCHIVE_BANNED", "of type application/vnd.microsoft.portable-executable"),
    ("banned_name_in_tar_gz",
     [L.part("application/gzip", L.tar_gz_bytes({"docs/readme.txt": b"hi\n", "docs/start.vbs": b"x\n"}),
             "attachment; filename=\"docs.tar.gz\"")],
     "reject", "ATTACH_ARCHIVE_BANNED", "contains docs/start.vbs"),
    ("zip_in_zip",
     [L.part("application/zip", L.zip_bytes({"inner.zip": L.zip_bytes({"run.cmd": b"echo\n"})}),
             "attachment; filename=\"outer.zip\"")],
     "reject", "ATTACH_ARCHIVE_BANNED", "contains run.cmd"),
    ("encrypted_zip",
     [L.part("application/zip", ENC_ZIP, "attachment; filename=\"secret.zip\"")],
     "tag", "ATTACH_ENCRYPTED", "secret.zip: encrypted archive"),
    ("encrypted_zip_banned_name",
     [L.part("application/zip", ENC_ZIP_EXE, "attachment; filename=\"secret.zip\"")],
     "reject", "ATTACH_ARCHIVE_BANNED", "contains payload.exe"),
    ("nested_rfc822_banned",
     [L.rfc822_part(L.message([L.part("application/octet-stream", b"x\n",
                                      "attachment; filename=\"game.com\"")],
                              subject="inner", boundary="inner_b"))],
     "reject", "ATTACH_BANNED_EXT", "game.com"),
    ("text_that_looks_like_dos_com",
     # GB2312 text starting with 0xb8 (x86 "mov ax"): libmagic's DOS .COM guess
     [L.part("text/plain; charset=gb2312", b"\xb8\xe5\xbc\xfe\xa3\xba\xd2\xb0\xc2\xf9\n" * 20,
             "attachment; filename=\"notes.txt\"", cte="8bit")],
     "accept", None, None),
    ("clean_attachments",
     [L.part("application/pdf", L.PDF, "attachment; filename=\"invoice.pdf\""),
      L.part("image/png", L.PNG, "inline; filename=\"logo.png\""),
      L.part("text/plain; charset=utf-8", "Grüße\n".encode(), "attachment; filename=\"notes.txt\""),
      L.part("application/zip", L.zip_bytes({"a.txt": b"a\n", "b.pdf": L.PDF}),
             "attachment; filename=\"files.zip\""),
      L.part("application/octet-stream", b"1.2.3 release notes\n",
             "attachment; filename=\"setup-1.2.txt\"")],
     "accept", None, None),
]


def case_msg(name):
    """the message of the table's case called name"""
    return L.message(next(c[1] for c in CASES if c[0] == name))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_attachment_table(tmp_path, case):
    name, parts, action, symbol, desc = case
    out = scan(tmp_path, L.message(parts))
    syms = attach_symbols(out)
    assert out["action"] == action, (out["action"], syms, out["reply"])
    if symbol is None:
        assert syms == {}, syms
    else:
        assert symbol in syms, syms
        assert desc in syms[symbol], syms
    if action == "reject":
        assert out["reply"].startswith("550 5.7.1 Banned attachment"), out["reply"]


def test_without_filter_nothing_is_checked(tmp_path):
    """the same banned file passes when the filter is not enabled"""
    f = tmp_path / "m.eml"
    f.write_bytes(case_msg("double_extension"))
    p = run_mw(["scan", str(f)])
    assert json.loads(p.stdout)["action"] == "accept"


@pytest.mark.parametrize("setting,expect", [("quarantine", "quarantine"), ("tag", "tag"),
                                            ("none", "accept")])
def test_action_per_rule(tmp_path, setting, expect):
    msg = case_msg("double_extension")
    out = scan(tmp_path, msg, "attach_inbound_extension_action=" + setting)
    assert out["action"] == expect
    assert ("ATTACH_DOUBLE_EXT" in attach_symbols(out)) == (setting != "none")


def test_hardest_rule_wins(tmp_path):
    """an encrypted zip (tag) and a banned name (quarantine): quarantine"""
    msg = L.message([L.part("application/zip", ENC_ZIP, "attachment; filename=\"s.zip\""),
                     L.part("application/octet-stream", b"x", "attachment; filename=\"a.exe\"")])
    out = scan(tmp_path, msg, "attach_inbound_extension_action=quarantine")
    assert out["action"] == "quarantine"
    assert set(attach_symbols(out)) == {"ATTACH_ENCRYPTED", "ATTACH_BANNED_EXT"}


def test_direction_lists_and_actions(tmp_path):
    """outbound has its own lists and actions: an encrypted zip passes
    outbound by default; a .exe allowed outbound only passes outbound"""
    enc = L.message([L.part("application/zip", ENC_ZIP, "attachment; filename=\"s.zip\"")])
    assert scan(tmp_path, enc)["action"] == "tag"
    assert scan(tmp_path, enc, direction="outbound")["action"] == "accept"
    exe = L.message([L.part("application/octet-stream", b"x", "attachment; filename=\"tool.exe\"")])
    opt = "attach_outbound_banned_extensions=scr com"
    assert scan(tmp_path, exe, opt, direction="outbound")["action"] == "accept"
    assert scan(tmp_path, exe, opt)["action"] == "reject"


def test_archive_scanning_off(tmp_path):
    msg = case_msg("banned_name_in_zip")
    assert scan(tmp_path, msg, "attach_scan_archives=no")["action"] == "accept"


def test_archive_depth(tmp_path):
    """zip in zip in zip: depth 1 opens only the outer archive, and the
    archive it holds, not opened, is unchecked (quarantined inbound, tagged
    outbound: a banned file could be in it)"""
    inner = L.zip_bytes({"deep.zip": L.zip_bytes({"evil.pif": b"x\n"})})
    msg = L.message([L.part("application/zip", L.zip_bytes({"mid.zip": inner}),
                            "attachment; filename=\"o.zip\"")])
    assert scan(tmp_path, msg)["action"] == "reject"
    out = scan(tmp_path, msg, "attach_archive_depth=1")
    assert out["action"] == "quarantine", out
    assert [s["name"] for s in out["symbols"]] == ["ATTACH_UNCHECKED"], out
    assert "mid.zip not opened (deeper than attach_archive_depth)" in out["symbols"][0]["desc"], out
    out = scan(tmp_path, msg, "attach_archive_depth=1", direction="outbound")
    assert out["action"] == "tag", out
    # a file of an archive's type under another name (a .docx is a zip) is
    # not an archive left unopened
    doc = L.message([L.part("application/zip", L.zip_bytes({"report.docx": L.zip_bytes({"a.xml": b"<a/>"})}),
                            "attachment; filename=\"o.zip\"")])
    assert scan(tmp_path, doc, "attach_archive_depth=1")["action"] == "accept"


def test_archive_max_entries(tmp_path):
    """entries past attach_archive_max_entries are not looked at: the
    message is unchecked, not clean (the banned file was padded out of
    sight)"""
    files = {"f%d.txt" % i: b"x\n" for i in range(5)}
    files["z_last.exe"] = b"x\n"
    msg = L.message([L.part("application/zip", L.zip_bytes(files), "attachment; filename=\"many.zip\"")])
    assert scan(tmp_path, msg)["action"] == "reject"
    out = scan(tmp_path, msg, "attach_archive_max_entries=3")
    assert out["action"] == "quarantine", out
    assert [s["name"] for s in out["symbols"]] == ["ATTACH_UNCHECKED"], out


def test_broken_mime_does_not_crash(tmp_path):
    """hostile structures: the scan completes (no banned file found; the
    structure nested past the parse's depth is quarantined as unchecked)"""
    msgs = [
        b"Content-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\nContent-Type: "
        b"multipart/mixed; boundary=b\r\n\r\n" * 3000,
        b"Content-Type: application/zip; name=x.zip\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + L.b64(b"PK\x03\x04" + os.urandom(3000)),
    ]
    for i, m in enumerate(msgs):
        out = scan(tmp_path, m)       # exits 0 with a result
        if i == 0:
            assert out["action"] == "accept", out
        if i == 1:
            assert out["action"] == "quarantine", out
            assert [s["name"] for s in out["symbols"]] == ["ATTACH_UNCHECKED"], out


def test_bad_settings_refused():
    p = run_mw(["-t", "-o", "filters=attachments", "-o", "attach_inbound_banned_types=notatype"])
    assert p.returncode != 0
    assert b"attach_inbound_banned_types" in p.stderr, p.stderr
    p = run_mw(["-t", "-o", "attach_inbound_extension_action=drop"])
    assert p.returncode != 0
    p = run_mw(["-t", "-o", "filters=attachments"])
    assert p.returncode == 0, p.stderr


# --- through the proxy ----------------------------------------------------------------

def send(m, msg):
    c = m.client()
    c.ehlo()
    r = c.transaction("sender@example.org", ["rcpt@example.net"], msg)
    c.quit()
    return r["final"]


def test_proxy_reject_banned(mw_factory, upstream):
    m = mw_factory(upstream, opts=[("filters", "attachments")])
    r = send(m, case_msg("double_extension"))
    assert r.code == 550, r
    assert "Banned attachment invoice.pdf.exe" in r.text, r.text
    clean = case_msg("clean_attachments")
    assert send(m, clean).code == 250
    msgs = upstream.wait_messages(1)
    assert len(msgs) == 1 and b"invoice.pdf\"" in msgs[0].content
    rec = m.audit(2)
    assert "ATTACH_DOUBLE_EXT" in A.symbols(rec[0])
    assert 'banned attachment rule=extension file="invoice.pdf.exe"' in m.stderr_tail(200)
    assert A.field(rec[0], "action") == "reject"


def test_proxy_tag_encrypted(mw_factory, upstream):
    m = mw_factory(upstream, opts=[("filters", "attachments")])
    r = send(m, L.message([L.part("application/zip", ENC_ZIP, "attachment; filename=\"s.zip\"")]))
    assert r.code == 250, r
    msgs = upstream.wait_messages(1)
    assert len(msgs) == 1
    head = msgs[0].content.split(b"\r\n\r\n", 1)[0]
    assert b"X-Spam-Flag: YES" in head or b"X-Spam-Status: Yes" in head, head
    assert b"ATTACH_ENCRYPTED" in head, head


def test_proxy_quarantine(mw_factory, upstream):
    m = mw_factory(upstream, opts=[("filters", "attachments"),
                                   ("attach_inbound_content_action", "quarantine")])
    r = send(m, case_msg("executable_as_text_plain"))
    assert r.code == 250, r
    rec = m.audit(1)
    assert A.field(rec[0], "action") == "quarantine"
    assert "ATTACH_CONTENT_TYPE" in A.symbols(rec[0])
    assert upstream.messages == []


# --- replace: the banned part becomes a text part, the rest is delivered ----------------

REPLACE = "attach_inbound_extension_action=replace"


def replace_msg(tricky_text=b"Please see the attachment." + CRLF):
    """a text part (with DATA's traps: lines starting with a dot), a banned
    file, a clean PDF"""
    return L.message([L.part("text/plain; charset=us-ascii", tricky_text, cte="7bit"),
                      L.part("application/octet-stream", PAYLOAD, "attachment; filename=\"invoice.pdf.exe\""),
                      L.part("application/pdf", L.PDF, "attachment; filename=\"terms.pdf\"")])


PAYLOAD = b"not an executable, but named like one\r\n" * 4   # the content rule stays out
TRICKY = b"first line\r\n.starts with a dot\r\n.\r\n..two dots\r\n"


def check_replaced(sent, got, name="invoice.pdf.exe"):
    """got (as delivered) is sent with the banned part replaced: same
    header section, the other parts byte for byte, a text part naming the
    file where the banned one was, its content gone"""
    import email
    import email.policy
    head_sent, body_sent = sent.split(CRLF + CRLF, 1)
    head_got = got.split(CRLF + CRLF, 1)[0]
    for line in head_sent.split(CRLF):
        assert line in head_got.split(CRLF), (line, head_got)
    assert L.b64(PAYLOAD)[:60] not in got
    m = email.message_from_bytes(got, policy=email.policy.default)
    parts = [p for p in m.walk() if not p.is_multipart()]
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/plain", "text/plain",
                                                     "application/pdf"], parts
    assert parts[2].get_filename() is None
    note = parts[2].get_content()
    assert "mailwarden removed an attachment" in note and name in note, note
    assert parts[3].get_filename() == "terms.pdf"
    assert parts[3].get_content() == L.PDF
    assert TRICKY in got          # dot lines unstuffed again, byte for byte
    # the parts left alone come out exactly as they went in
    pdf_part = body_sent[body_sent.index(b"Content-Type: application/pdf"):]
    assert pdf_part in got


def test_replace_cli(tmp_path):
    out = scan(tmp_path, replace_msg(TRICKY), REPLACE)
    syms = attach_symbols(out)
    assert out["action"] == "accept", out
    assert out["new_body"] is True
    assert "invoice.pdf.exe" in syms["ATTACH_DOUBLE_EXT"]
    assert syms["ATTACH_REPLACED"] == "1 part replaced by a text part"
    # another rule's action still applies: an encrypted archive tags it
    enc = L.message([L.part("application/zip", ENC_ZIP, "attachment; filename=\"s.zip\""),
                     L.part("application/octet-stream", b"x", "attachment; filename=\"a.exe\"")])
    out = scan(tmp_path, enc, REPLACE)
    assert out["action"] == "tag" and out["new_body"] is True, out
    # a harder one wins, and the message is not rewritten
    out = scan(tmp_path, enc, REPLACE, "attach_inbound_encrypted_action=reject")
    assert out["action"] == "reject" and out["new_body"] is False, out
    # nothing banned: nothing rewritten
    assert scan(tmp_path, case_msg("clean_attachments"), REPLACE)["new_body"] is False


def test_replace_cli_output(tmp_path):
    """scan --output writes the message as the proxy would relay it"""
    msg = replace_msg(TRICKY)
    (tmp_path / "in.eml").write_bytes(msg)
    out_file = tmp_path / "out.eml"
    p = run_mw(["scan", "-o", "filters=attachments", "-o", REPLACE, "--output", str(out_file),
                str(tmp_path / "in.eml")])
    assert p.returncode == 0, p.stderr
    check_replaced(msg, out_file.read_bytes())
    # without a replacement: the message as it came (plus the filters' fields)
    clean = case_msg("clean_attachments")
    (tmp_path / "in.eml").write_bytes(clean)
    p = run_mw(["scan", "-o", "filters=attachments", "--output", str(out_file), str(tmp_path / "in.eml")])
    assert p.returncode == 0, p.stderr
    assert out_file.read_bytes().endswith(clean.split(CRLF + CRLF, 1)[1])
    # not delivered: no file
    out_file.unlink()
    (tmp_path / "in.eml").write_bytes(case_msg("double_extension"))
    p = run_mw(["scan", "-o", "filters=attachments", "--output", str(out_file), str(tmp_path / "in.eml")])
    assert json.loads(p.stdout)["action"] == "reject"
    assert not out_file.exists()


def test_replace_not_possible_quarantines(tmp_path):
    """a structure GMime finds broken (no closing boundary): the banned
    file is not delivered, the message is quarantined instead"""
    broken = replace_msg().rsplit(b"--=_mw_boundary_1--", 1)[0]
    out = scan(tmp_path, broken, REPLACE)
    assert out["action"] == "quarantine", out
    assert out["new_body"] is False
    assert out["reply"].endswith("Banned attachment invoice.pdf.exe (double extension .pdf.exe), "
                                 "not replaceable"), out["reply"]
    assert "ATTACH_REPLACED" not in attach_symbols(out)


def test_replace_refused_by_the_rewrite_quarantines(tmp_path):
    """a part field with a NUL byte would come back cut from GMime's writer:
    the rewrite refuses (the message would not parse back the same) and
    the filter quarantines"""
    msg = (b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
           b"--b\r\nContent-Type: text/plain\r\n\r\ntext\r\n"
           b"--b\r\nContent-Type: text/pl\0ain\r\n\r\nhello\r\n"
           b"--b\r\nContent-Type: application/x-msdownload\r\n\r\nMZ\r\n--b--\r\n")
    out = scan(tmp_path, msg, "attach_inbound_type_action=replace")
    assert out["action"] == "quarantine", out
    assert out["new_body"] is False
    assert out["reply"].endswith("not replaceable"), out["reply"]


def test_proxy_replace(mw_factory, upstream):
    m = mw_factory(upstream, opts=[("filters", "attachments"),
                                   ("attach_inbound_extension_action", "replace")])
    msg = replace_msg(TRICKY)
    r = send(m, msg)
    assert r.code == 250, r
    got = upstream.wait_messages(1)[0].content
    check_replaced(msg, got)
    rec = m.audit(1)[0]
    assert A.field(rec, "action") == "accept"
    assert {"ATTACH_DOUBLE_EXT", "ATTACH_REPLACED"} <= set(A.symbols(rec))
    assert "1 banned attachment replaced by a text part" in m.stderr_tail(200)


def test_proxy_replace_bdat(mw_factory, raw_upstream):
    """relayed as one BDAT chunk: the size counts the new body"""
    from mwlib import RawUpstream, wait_until
    from test_bdat import bdat_send, start_txn
    up = raw_upstream(caps=RawUpstream.CAPS + [b"CHUNKING"])
    m = mw_factory(up, opts=[("filters", "attachments"),
                             ("attach_inbound_extension_action", "replace")])
    msg = replace_msg(TRICKY)
    c = m.client()
    start_txn(c)
    assert bdat_send(c, msg, chunks=2, pipelined=False)[-1].code == 250
    c.quit()
    assert wait_until(lambda: up.messages, 5)
    assert up.messages[0].via == "BDAT"
    check_replaced(msg, up.messages[0].content)


def test_proxy_replace_single_part(mw_factory, upstream):
    """the message's own body is the banned file: it leaves as a text/plain
    message with the note, its old Content-* fields gone"""
    m = mw_factory(upstream, opts=[("filters", "attachments"),
                                   ("attach_inbound_type_action", "replace")])
    msg = (b"From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: update\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: application/x-msdownload; name=\"update.bin\"\r\n"
           b"Content-Disposition: attachment; filename=\"update.bin\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + L.b64(EXE) + CRLF)
    assert send(m, msg).code == 250
    got = upstream.wait_messages(1)[0].content
    head, body = got.split(CRLF + CRLF, 1)
    assert b"Content-Type: text/plain; charset=us-ascii" in head.split(CRLF), head
    assert b"Content-Transfer-Encoding: 7bit" in head.split(CRLF), head
    assert b"x-msdownload" not in head and b"Content-Disposition" not in head and b"base64" not in head
    assert b"Subject: update" in head
    assert b"mailwarden removed an attachment" in body and b"update.bin" in body
    assert L.b64(PAYLOAD)[:60] not in got


def test_replace_then_quarantine_sends_no_body_to_the_front_end(tmp_path):
    """a message our store keeps gets the rewritten body stored beside it
    (the release sends it); the front end, which relays nothing, is not
    sent a sealed copy of it as well (the milter's hold in the MTA's queue
    still is: test_milter.py)"""
    msg = L.message([L.part("application/octet-stream", PAYLOAD, "attachment; filename=\"a.exe\""),
                     L.part("application/x-msdownload", b"x", "attachment; filename=\"b.bin\"")])
    out = scan(tmp_path, msg, REPLACE, "attach_inbound_type_action=quarantine")
    assert out["action"] == "quarantine", out
    assert attach_symbols(out)["ATTACH_REPLACED"] == "1 part replaced by a text part"
    assert out["new_body"] is False, out


def test_proxy_replace_then_quarantine_keeps_the_original(mw_factory, upstream):
    """a message quarantined for another reason is stored as it came; its
    release lets through what held it (b.bin, the admin's call), not the
    file a replace rule removes (a.exe), which it delivered until session
    18: the filter rewrites a message it holds too, for the release"""
    import quarantinelib as Q
    m = mw_factory(upstream, opts=[("filters", "attachments"),
                                   ("attach_inbound_extension_action", "replace"),
                                   ("attach_inbound_type_action", "quarantine")])
    msg = L.message([L.part("application/octet-stream", PAYLOAD, "attachment; filename=\"a.exe\""),
                     L.part("application/x-msdownload", b"x", "attachment; filename=\"b.bin\"")])
    assert send(m, msg).code == 250
    rec = m.audit(1)[0]
    assert A.field(rec, "action") == "quarantine"
    assert upstream.messages == []
    (qid, files), = Q.entry_files(m).items()
    eml = [f for f in files if f.endswith(".eml")]
    assert L.b64(PAYLOAD)[:60] in open(eml[0], "rb").read(), files
    Q.q_ok(m, "release", qid)
    got = upstream.wait_messages(1)[0].content
    assert L.b64(PAYLOAD)[:60] not in got, got[:3000]
    assert b"mailwarden removed an attachment" in got and b"a.exe" in got
    assert b"filename=\"b.bin\"" in got and b"Content-Type: application/x-msdownload" in got


# --- the log line's fields (session 20) -----------------------------------------------

def _fields(line):
    """key=value fields of a log line as a parser that knows quotes reads them"""
    import re
    return re.findall(r'(?:^|\s)([A-Za-z_]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)', line)


def test_attachment_name_cannot_forge_log_fields(mw_factory, upstream):
    """The attachment's name, the sender's, went into the filter's log line
    inside file="...", as it was: a name `x" action=accept verdict="clean.exe`
    ended the quoted value and added action= and verdict= fields of its own
    (a key=value reader, fail2ban, a grep for the first action= took them),
    and a banned name inside an archive did the same from the line's bare
    text.  Both are escaped as a quoted value now ('"' and '=' as \\xHH)."""
    m = mw_factory(upstream, opts=[("filters", "attachments")])
    msg = L.message([L.part("application/octet-stream", b"harmless\n",
                            'attachment; filename="x\\" action=accept verdict=\\"clean.exe"'),
                     L.part("application/zip", L.zip_bytes({'a" action="accept.exe': b"x"}),
                            'attachment; filename="b.zip"')])
    assert send(m, msg).code == 550
    lines = [ln for ln in m.stderr_tail(200).splitlines() if "banned attachment rule=" in ln]
    assert len(lines) == 2, lines
    for ln in lines:
        keys = [k for k, _ in _fields(ln)]
        assert keys == ["filter", "rule", "file", "detail", "action"], ("a field forged by a file name", ln)
        assert dict(_fields(ln))["action"] == "reject", ln
    assert 'file="x\\x22 action\\x3daccept verdict\\x3d\\x22clean.exe"' in lines[0], lines[0]
    assert 'detail="contains a\\x22 action\\x3d\\x22accept.exe"' in lines[1], lines[1]


def test_scan_output_carries_no_terminal_controls(tmp_path):
    """`mailwarden scan` printed its JSON with only json-c's escapes, which
    cover C0: a C1 CSI (U+009B) or a bidi override (U+202E) in an
    attachment's name went raw into the symbols' descriptions on the
    terminal of whoever scanned the message (root, an admin checking a
    complaint).  They are \\uXXXX now, as in `quarantine show --json`: the
    same strings to a JSON reader."""
    name = "\u009b2J\u202egpj.exe"
    msg = L.message([L.part("application/octet-stream", b"harmless\n",
                            "attachment; filename*=UTF-8''" + "".join("%%%02X" % b for b in name.encode()))])
    f = tmp_path / "m.eml"
    f.write_bytes(msg)
    p = run_mw(["scan", "-o", "filters=attachments", str(f)])
    assert p.returncode == 0, p.stderr
    for raw in (name.encode()[:2], "\u202e".encode()):
        assert raw not in p.stdout, ("a control character from the message reached the terminal", p.stdout)
    assert b"\\u009b2J\\u202egpj.exe" in p.stdout, p.stdout
    out = json.loads(p.stdout.decode("utf-8"))
    assert any(name in s["desc"] for s in out["symbols"]), out
