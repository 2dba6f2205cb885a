"""test_bombs.py - resource bombs through `mailwarden scan` with the
content filters (attachments, rules, bayes on an empty LMDB store): hostile
messages well under message_size_limit (bomblib.py, made at test time)
must give a verdict in seconds, with a peak RSS within 10 times their size
plus 100 MB, and a structure past the MIME parse's limits must not hide a
banned attachment (ATTACH_UNCHECKED, with its action per direction).
Timings are bounds far above what the scans take (see tests/bench/bombs.py
for the figures), far below what they took before the bounds."""

import base64
import os

import pytest

import audit_fields as A
import bomblib

HERE = os.path.dirname(os.path.abspath(__file__))
MW = os.environ.get("MW_BIN", os.path.join(HERE, "..", "..", "build", "mailwarden"))
CRLF = b"\r\n"


def _sanitized():
    with open(MW, "rb") as f:
        return b"libasan.so" in f.read()


# under SANITIZE=1 (AddressSanitizer) scans are several times slower and
# the shadow memory makes RSS meaningless: times scaled, RSS not checked
SANITIZED = _sanitized()
SLOW = 8.0 if SANITIZED else 1.0


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """a directory with the compiled rules cache (one compile for the module)"""
    d = str(tmp_path_factory.mktemp("bombs"))
    warm = bomblib.write_tmp(bomblib.plain(2000), d)
    r = bomblib.run_scan(MW, warm, bomblib.scan_args(d))
    assert r["rc"] == 0, r["stderr"]
    return d


def scan(work, data, extra=(), wall=20.0, grows=1):
    """scan data; the scan must finish with a result within wall seconds
    and 10x + 100 MB of memory (x the size its text decodes to: grows
    times the message); returns (result, measures)"""
    path = bomblib.write_tmp(data, work)
    try:
        r = bomblib.run_scan(MW, path, bomblib.scan_args(work, extra=extra), timeout=120 * SLOW)
    finally:
        os.unlink(path)
    assert r["rc"] == 0 and r["result"] is not None, r["stderr"][-2000:]
    assert r["wall"] < wall * SLOW, (r["wall"], len(data))
    assert SANITIZED or r["rss"] < 10 * grows * len(data) + 100e6, (r["rss"], len(data))
    return r["result"], r


def names(res):
    return {s["name"] for s in res["symbols"]}


def unchecked(res):
    return [s["desc"] for s in res["symbols"] if s["name"] == "ATTACH_UNCHECKED"]


EXE_PART = (b"Content-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=\"evil.exe\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b"MZ" + bytes(200)) + b"\r\n")


def exe_after_parts(n):
    p = b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return (bomblib._head("parts", ctype=b'multipart/mixed; boundary="B"') + CRLF + p * n +
            b"--B\r\n" + EXE_PART + b"--B--\r\n")


def exe_nested(depth):
    out = [bomblib._head("nested", ctype=b'multipart/mixed; boundary="b0"'), CRLF]
    for i in range(1, depth):
        out.append(b"--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n" % (i - 1, i))
    out.append(b"--b%d\r\n" % (depth - 1) + EXE_PART)
    for i in range(depth - 1, -1, -1):
        out.append(b"--b%d--\r\n" % i)
    return b"".join(out)


# --- MIME structure: what GMime builds is bounded ----------------------------

@pytest.mark.parametrize("name,data,why", [
    ("tiny_parts", lambda: bomblib.tiny_parts(1.0), "boundary lines"),   # cost 1.3 GB
    ("many_parts", lambda: bomblib.many_parts(0.5), "boundary lines"),
    ("many_headers", lambda: bomblib.many_headers(2.0), "header "),
    ("huge_header", lambda: bomblib.huge_header(1.0), "header fields over 2 MiB"),
    ("address_flood", lambda: bomblib.address_flood(1.0), "header fields over 2 MiB"),
    ("nest_multipart", lambda: bomblib.nest_multipart(1.0), "nested deeper than 32"),
    ("nest_rfc822", lambda: bomblib.nest_rfc822(1.0), "nested deeper than 32"),
    ("rfc822_headers", lambda: bomblib.rfc822_headers(1.0), "header "),
    ("ctype_params", lambda: bomblib.ctype_params(0.6), "header "),
    ("huge_subject_2047", lambda: bomblib.huge_subject_2047(0.6), "header "),
])
def test_mime_structure_bombs(work, name, data, why):
    res, _ = scan(work, data())
    assert res["action"] == "quarantine", res
    assert len(unchecked(res)) == 1 and why in unchecked(res)[0], res["symbols"]


@pytest.mark.parametrize("name,data", [
    ("many_attachments", lambda: bomblib.many_attachments(0.04)),
    ("boundary_70", lambda: bomblib.boundary_70(1.0)),      # "--" lines, not boundaries
    ("ctype_params", lambda: bomblib.ctype_params(0.15)),
    ("many_received", lambda: bomblib.many_received(0.5)),
    ("huge_subject_2047", lambda: bomblib.huge_subject_2047(0.3)),
    ("nested_comments", lambda: bomblib.nested_comments(1.0)),
])
def test_header_and_part_floods_within_limits(work, name, data):
    """floods that stay under the parse's limits: parsed whole, bounded"""
    res, _ = scan(work, data())
    assert not unchecked(res), res["symbols"]


def test_text_that_looks_like_structure_is_not_cut(work):
    """"---" and "key: value" lines in a body (YAML, logs) are not header
    sections: a 6 MB inline YAML text is walked whole (and a banned file
    after it is found)"""
    yaml = b"".join(b"---\r\nkey%d: value\r\nother: %d\r\n" % (i, i) for i in range(200000))
    msg = (bomblib._head("config", ctype=b'multipart/mixed; boundary="B"') + CRLF +
           b"--B\r\nContent-Type: text/plain\r\n\r\n" + yaml + b"--B\r\n" + EXE_PART + b"--B--\r\n")
    res, _ = scan(work, msg)
    assert not unchecked(res), res["symbols"]
    assert "ATTACH_BANNED_EXT" in names(res) and res["action"] == "reject", res


def test_banned_file_behind_the_limits_is_not_passed(work):
    """a banned file after 1000 parts or 32 levels of nesting used to be
    accepted unseen: now the message is unchecked, with the action of its
    direction (quarantine inbound, tag outbound, or as set)"""
    assert "ATTACH_BANNED_EXT" in names(scan(work, exe_after_parts(10))[0])
    for msg in (exe_after_parts(1200), exe_nested(40)):
        res, _ = scan(work, msg)
        assert res["action"] == "quarantine" and unchecked(res), res
        assert res["reply"].startswith("250 2.0.0 Attachments not all checked ("), res["reply"]
        res, _ = scan(work, msg, extra=[("attach_inbound_unchecked_action", "reject")])
        assert res["action"] == "reject" and res["reply"].startswith("550 "), res
        res, _ = scan(work, msg, extra=[("attach_inbound_unchecked_action", "none")])
        assert not unchecked(res) and res["action"] != "quarantine", res
    path = bomblib.write_tmp(exe_nested(40), work)
    try:
        r = bomblib.run_scan(MW, path, bomblib.scan_args(work) + ["--direction", "outbound"])
    finally:
        os.unlink(path)
    assert unchecked(r["result"]) and r["result"]["action"] != "quarantine", r["result"]


# --- HTML and text ----------------------------------------------------------

@pytest.mark.parametrize("name,data", [
    ("html_comment", lambda: bomblib.html_comment(0.1)),     # took 35 s
    ("html_decl", lambda: bomblib.html_decl(0.5)),
    ("html_nested", lambda: bomblib.html_nested(0.3)),
    ("html_unclosed", lambda: bomblib.html_unclosed(0.5)),
    ("html_attr", lambda: bomblib.html_attr(0.25)),
    ("html_links", lambda: bomblib.html_links(0.1)),
    ("html_entities", lambda: bomblib.html_entities(0.1)),
    ("html_script", lambda: bomblib.html_script(0.25)),
    ("text_uris", lambda: bomblib.text_uris(0.1)),
    ("long_line", lambda: bomblib.long_line(0.25)),
    ("long_word", lambda: bomblib.long_word(0.25)),
    ("base64_noline", lambda: bomblib.base64_noline(0.25)),
    ("qp_softbreaks", lambda: bomblib.qp_softbreaks(0.25)),
    ("charset_expand", lambda: bomblib.charset_expand(0.25)),  # 3 bytes of UTF-8 per byte
])
def test_content_bombs(work, name, data):
    """the rules see the whole text within their time budget (2 s): no
    RULES_TIMEOUT, and the scan ends in seconds"""
    res, _ = scan(work, data(), wall=10.0, grows=3 if name == "charset_expand" else 1)
    assert "RULES_TIMEOUT" not in names(res), res["symbols"]
    assert res["action"] in ("accept", "tag"), res


# --- archives ----------------------------------------------------------------

# those that stop at a limit (the unpack budget, the depth, the entries)
# leave part of the archive unread: unchecked, quarantined inbound
@pytest.mark.parametrize("name,data,action", [
    ("targz_zeros", lambda: bomblib.targz_zeros(0.4), "quarantine"),   # 7.5 GB of zeros: took 20 s
    ("zip_zeros", lambda: bomblib.zip_zeros(0.05), "accept"),
    ("zip_nested", lambda: bomblib.zip_nested(0.01), "quarantine"),
    ("zip_entries", lambda: bomblib.zip_entries(0.1), "quarantine"),
    ("zip_overlap_nested", lambda: bomblib.zip_overlap_nested(0.1), "accept"),
    ("tar_entries", lambda: bomblib.tar_entries(0.5), "accept"),
])
def test_archive_bombs(work, name, data, action):
    res, _ = scan(work, data(), wall=8.0)
    assert res["action"] == action, res
    if action == "quarantine":
        assert [s["name"] for s in res["symbols"] if s["name"].startswith("ATTACH")] == ["ATTACH_UNCHECKED"], res


# --- through the proxy ---------------------------------------------------------

def test_worst_bombs_through_the_proxy(work, mw_factory, upstream, tmp_path):
    """the worst of each kind through a session: each gets its answer in
    seconds (scan_timeout at its lowest useful value, 20 s, never reached),
    the unchecked ones quarantined, the other delivered; a line without
    end is refused by the proxy before any scan"""
    args = bomblib.scan_args(work, extra=[("store_path", str(tmp_path / "s.lmdb")),
                                          ("scan_timeout", "%ds" % (20 * SLOW))])
    m = mw_factory(upstream, opts=[tuple(a.split("=", 1)) for a in args[1::2]])
    comments = bomblib.html_comment(0.1).replace(b" x <!--", b" x\r\n<!--")
    cases = [(bomblib.tiny_parts(1.0), 250, "quarantine"), (comments, 250, "accept"),
             (bomblib.targz_zeros(0.4), 250, "quarantine"), (bomblib.long_line(0.25), 550, None)]
    for i, (msg, code, action) in enumerate(cases):
        c = m.client(timeout=30 * SLOW)
        try:
            c.ehlo()
            r = c.transaction("sender@example.org", ["rcpt@example.net"], msg)["final"]
        finally:
            c.quit()
        assert r.code == code, (i, r)
        if action:
            rec = m.audit(i + 1, timeout=10 * SLOW)[i]
            assert A.field(rec, "action") == action, (i, rec)
    assert len(upstream.wait_messages(1, timeout=10)) == 1
    assert "ATTACH_UNCHECKED" in A.symbols(m.audit(1)[0])
    assert "ATTACH_UNCHECKED" in A.symbols(m.audit(3)[2])


# --- the antivirus filter ------------------------------------------------------

def test_zip_entries_bound_the_antivirus(work, tmp_path):
    """libclamav's time grows with the square of a zip's entries (10,000
    empty ones in 1 MB took 20 s, 20,000 hit av_max_scantime): a message
    whose zips list more than av_max_zip_entries is a scan limit and never
    reaches it; under the limit a zip is scanned as before"""
    import avlib
    db = avlib.copy_db(str(tmp_path / "db"))
    av = [("av_database", db), ("av_db_check_interval", "0")]
    res, r = scan(work, bomblib.zip_entries(0.1), extra=av + [("filters", "clamav attachments")], wall=15.0)
    unscanned = [s["desc"] for s in res["symbols"] if s["name"] == "AV_UNSCANNED"]
    assert unscanned and "av_max_zip_entries" in unscanned[0], res["symbols"]
    # the same entries one zip deeper, under an innocent name (took 16 s)
    inner = bomblib.zip_entries(0.05).split(b'filename="many.zip"\r\n\r\n')[1].split(b"\r\n--B--")[0]
    outer = avlib.zip_of([("report.dat", base64.b64decode(inner.replace(b"\r\n", b"")))])
    res, _ = scan(work, avlib.with_attachment(outer, "outer.zip"), extra=av + [("filters", "clamav")],
                  wall=8.0)
    assert "AV_UNSCANNED" in names(res), res["symbols"]
    files = {"f%d.txt" % i: b"x\n" for i in range(30)}
    files["eicar.com"] = avlib.EICAR
    msg = avlib.with_attachment(avlib.zip_of(list(files.items())), "files.zip")
    res, _ = scan(work, msg, extra=av + [("filters", "clamav")])
    assert "VIRUS_FOUND" in names(res), res["symbols"]
    res, _ = scan(work, msg, extra=av + [("filters", "clamav"), ("av_max_zip_entries", "20")])
    assert "VIRUS_FOUND" not in names(res) and "AV_UNSCANNED" in names(res), res["symbols"]


# --- the formats read since session 16: compress (.Z), lz4, xar, rpm, LHA,
# cpio, ar; each stopped by a limit, so unchecked ---------------------------

@pytest.mark.parametrize("name,data,why", [
    # one entry of 2 GB, 8 GB: drained to the budget, then skipped whole by
    # libarchive (decompressed: 10 s and 40 s), and accepted
    ("targz_entry", lambda: bomblib.targz_entry(0.125), "more than 256 MiB"),
    ("tarz_zeros", lambda: bomblib.tarz_zeros(1 / 64), "more than 256 MiB"),
    ("tarlz4_zeros", lambda: bomblib.tarlz4_zeros(0.17), "more than 256 MiB"),
    ("xar_zeros", lambda: bomblib.xar_zeros(0.05), "more than 256 MiB"),
    # 400,000 files in a xar TOC of 2.8 MB: libarchive parsed them all
    # before the first entry (230 MB)
    ("xar_toc_entries", lambda: bomblib.xar_toc_entries(0.4), "attach_archive_max_entries"),
    ("xar_toc_name", lambda: bomblib.xar_toc_name(0.1), "table of contents over 16 MiB"),
    # sizes of 2**63: libarchive stops at the end of the heap (as before)
    ("xar_toc_claims", lambda: bomblib.xar_toc_claims(1.0), "unreadable after 1 entry"),
    ("rpm_entries", lambda: bomblib.rpm_entries(0.06), "attach_archive_max_entries"),
    ("cpio_entries", lambda: bomblib.cpio_entries(0.06), "attach_archive_max_entries"),
    ("lha_entries", lambda: bomblib.lha_entries(0.06), "attach_archive_max_entries"),
    # 2 x 4 GB of lh5 in 3 KB: bounded before too (the LHA reader skips by seeking)
    ("lha_zeros", lambda: bomblib.lha_zeros(0.25), "more than 256 MiB"),
    ("nested_formats", lambda: bomblib.nested_formats(0.05), "deeper than attach_archive_depth"),
])
def test_format_bombs(work, name, data, why):
    res, _ = scan(work, data(), wall=8.0)
    assert res["action"] == "quarantine", res
    assert [s["name"] for s in res["symbols"] if s["name"].startswith("ATTACH")] == ["ATTACH_UNCHECKED"], res
    assert why in unchecked(res)[0], res["symbols"]


def _xar_exe(extra_files=0):
    """a xar of extra_files empty files then evil.exe (stored)"""
    exe = b"MZ" + bytes(200)
    files = b"".join(bomblib._xar_file(i + 1, b"f%d.txt" % i) for i in range(extra_files))
    files += bomblib._xar_file(extra_files + 1, b"evil.exe", (
        b'<data><length>%d</length><offset>0</offset><size>%d</size>'
        b'<encoding style="application/octet-stream"/></data>' % (len(exe), len(exe))))
    return bomblib._xar(b'<?xml version="1.0" encoding="UTF-8"?><xar><toc>' + files + b"</toc></xar>", exe)


def test_xar_toc_check_keeps_what_it_does_not_stop(work):
    """the TOC is looked at before libarchive parses it: a xar under the
    limits, bare or gzipped, is still read (its .exe found); one over them
    is unchecked also when gzipped"""
    for name, data in (("files.xar", _xar_exe(100)), ("files.xar.gz", bomblib._gz_member(_xar_exe(100)))):
        res, _ = scan(work, bomblib._attach("xar", name, data))
        assert res["action"] == "reject" and not unchecked(res), (name, res)
        assert "evil.exe" in " ".join(s["desc"] for s in res["symbols"]), (name, res["symbols"])
    res, _ = scan(work, bomblib._attach("xar", "files.xar.gz", bomblib._gz_member(_xar_exe(12000))))
    assert res["action"] == "quarantine", res
    assert "attach_archive_max_entries" in unchecked(res)[0], res["symbols"]


def _xar_exe_then(elements):
    """a xar whose TOC lists evil.exe, then the given elements (one
    namespace declared for the prefixes a and b)"""
    exe = b"MZ" + bytes(200)
    first = bomblib._xar_file(1, b"evil.exe", (
        b'<data><length>%d</length><offset>0</offset><size>%d</size>'
        b'<encoding style="application/octet-stream"/></data>' % (len(exe), len(exe))))
    return bomblib._xar(b'<?xml version="1.0" encoding="UTF-8"?><xar xmlns:a="urn:a" xmlns:b="urn:b"><toc>' +
                        first + b"".join(elements) + b"</toc></xar>", exe)


# long prefixes, with or without namespaces: libxml2 gives the local name
LONG = b"p" * 300


@pytest.mark.parametrize("label,element", [
    ("prefixed", lambda i: b'<a:file id="%d"/>' % i),
    # prefixes of 1 to 299 bytes: elements cut at every offset across the
    # inflate buffers, and past the longest prefix the count looks at
    ("prefix lengths", lambda i: b'<%s:file xmlns:%s="urn:x" id="%d"></%s:file>' % (
        (LONG[:1 + i % 299],) * 2 + (i,) + (LONG[:1 + i % 299],))),
    ("white space", lambda i: b'<b:file\n id="%d">\t</b:file>' % i),
])
def test_xar_toc_counts_prefixed_file_elements(work, label, element):
    """libarchive's xar reader takes <a:file> as a file (libxml2's local
    name): a TOC of 700,000 of them took 300 MB.  10,001 files after
    evil.exe: the xar is unchecked without being read (on main its TOC
    passed the count and evil.exe was found)"""
    res, _ = scan(work, bomblib._attach("xar", "ns.xar", _xar_exe_then(element(i + 2) for i in range(10000))))
    assert res["action"] == "quarantine", (label, res)
    assert [s["name"] for s in res["symbols"] if s["name"].startswith("ATTACH")] == ["ATTACH_UNCHECKED"], res
    assert "attach_archive_max_entries" in unchecked(res)[0], res["symbols"]


def test_xar_toc_count_takes_only_the_local_name_file(work):
    """elements whose local name only begins with "file", or whose prefix
    is "file", are not files: 10,000 of them and the xar is still read"""
    other = (lambda i: b'<a:files id="%d"/>' % i, lambda i: b'<file:name xmlns:file="urn:f" id="%d"/>' % i)
    res, _ = scan(work, bomblib._attach("xar", "ns.xar", _xar_exe_then(other[i % 2](i + 2) for i in range(10000))))
    assert res["action"] == "reject" and not unchecked(res), res
    assert "evil.exe" in " ".join(s["desc"] for s in res["symbols"]), res["symbols"]


def test_xar_toc_broken_at_its_end_is_still_counted(work):
    """a TOC of 400,000 files whose zlib checksum is wrong: libarchive
    parsed all of it before finding that out (216 MB on main); the count
    stops it long before the error (a TOC broken before the limits is
    within them for libarchive too, which stops at the same byte)"""
    import struct
    toc = (b'<?xml version="1.0" encoding="UTF-8"?><xar><toc>' +
           b"".join(bomblib._xar_file(i + 1, b"f%d.txt" % i) for i in range(400000)) + b"</toc></xar>")
    x = bytearray(bomblib._xar(toc))
    x[-1] ^= 0xff                          # the adler32 at the end of the TOC
    assert struct.unpack(">Q", x[8:16])[0] == len(x) - 28
    res, _ = scan(work, bomblib._attach("xar", "broken.xar", bytes(x)), wall=8.0)
    assert res["action"] == "quarantine", res
    assert "attach_archive_max_entries" in unchecked(res)[0], res["symbols"]
