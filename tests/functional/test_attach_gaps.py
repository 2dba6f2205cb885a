"""Gaps of the attachment policy against hostile messages, through
`mailwarden scan` (and the proxy for one): bare compressed files
(invoice.exe.gz, .bz2, .xz, .zst, .lz, .lzma) and the bombs among them, 7z
archives written by libarchive and Debian's 7zip (many entries, solid,
nested, encrypted, encrypted names), names the fields give more than once
or differently (Content-Type name= against Content-Disposition filename=,
filename= against filename*=), names with bidirectional controls, files
uuencoded in a text body, and what libclamav itself finds in 7z archives.
Material is made at test time (attachlib.py)."""

import os
import time

import pytest

import attachlib as L
from attachlib import attach_symbols as syms, scan
import audit_fields as A
import bomblib

CRLF = b"\r\n"
EXE = L.pe_bytes()
HARMLESS = b"harmless bytes\n"


def attached(name, data, ctype="application/octet-stream"):
    return L.message([L.part(ctype, data, "attachment; filename=\"%s\"" % name)])


def expect(out, action, symbol=None, desc=None):
    s = syms(out)
    assert out["action"] == action, (out["action"], s, out["reply"])
    if symbol is None:
        assert s == {}, s
    else:
        assert symbol in s, s
        if desc is not None:
            assert desc in s[symbol], s


# --- bare compressed files --------------------------------------------------------

@pytest.mark.parametrize("suffix", sorted(L.COMPRESSORS))
def test_compressed_file_banned_name(tmp_path, suffix):
    """invoice.exe.gz: the file inside is invoice.exe (the name without the
    suffix, as gunzip and the others name it); a clean one passes"""
    out = scan(tmp_path, attached("invoice.exe." + suffix, L.compressed(suffix, HARMLESS)))
    expect(out, "reject", "ATTACH_ARCHIVE_BANNED", "invoice.exe.%s: contains invoice.exe" % suffix)
    assert out["reply"].startswith("550 5.7.1 Banned attachment invoice.exe.%s" % suffix), out["reply"]
    out = scan(tmp_path, attached("notes.txt." + suffix, L.compressed(suffix, b"just text\n" * 50)))
    expect(out, "accept")


def test_gzip_header_name(tmp_path):
    """the name a gzip header carries (FNAME, used by 7-Zip and gunzip -N)
    is checked too, whatever the attachment is called"""
    out = scan(tmp_path, attached("report.pdf.gz", L.gzip_named("setup.scr", HARMLESS)))
    expect(out, "reject", "ATTACH_ARCHIVE_BANNED", "report.pdf.gz: contains setup.scr")
    assert "report.pdf" not in syms(out)["ATTACH_ARCHIVE_BANNED"].split(": ", 1)[1]
    out = scan(tmp_path, attached("report.pdf.gz", L.gzip_named("report.pdf", L.PDF)))
    expect(out, "accept")


@pytest.mark.parametrize("suffix", ["gz", "xz", "zst"])
def test_compressed_file_type_by_magic(tmp_path, suffix):
    """a program compressed under a harmless name: its type is found in
    what the stream decompresses to"""
    out = scan(tmp_path, attached("scan.pdf." + suffix, L.compressed(suffix, EXE)))
    expect(out, "reject", "ATTACH_ARCHIVE_BANNED",
           "contains scan.pdf of type application/vnd.microsoft.portable-executable")


def test_archive_in_compressed_file(tmp_path):
    """docs.zip.gz is a zip: opened as a nested archive, to attach_archive_depth;
    one level too deep it is unchecked, not clean"""
    z = L.zip_bytes({"readme.txt": b"hi\n", "run.cmd": b"echo\n"})
    msg = attached("docs.zip.gz", L.compressed("gz", z))
    expect(scan(tmp_path, msg), "reject", "ATTACH_ARCHIVE_BANNED", "contains run.cmd")
    # libarchive reads a zip through the gzip filter as one stream (as a
    # tar.gz): one level
    expect(scan(tmp_path, msg, "attach_archive_depth=1"), "reject", "ATTACH_ARCHIVE_BANNED",
           "docs.zip.gz: contains run.cmd")
    # a 7z it cannot seek in behind gzip: its names are read, then it
    # fails: what follows is unchecked
    out = scan(tmp_path, attached("docs.7z.gz", L.compressed("gz", L.bsdtar_archive({"a.txt": b"a\n"}))))
    expect(out, "quarantine", "ATTACH_UNCHECKED", "docs.7z.gz: unreadable after 1 entry")
    # an archive in a compressed file one level too deep is unchecked
    out = scan(tmp_path, attached("o.zip", L.zip_bytes({"docs.tar.gz.xz": L.compressed("xz", L.tar_gz_bytes(
        {"run.cmd": b"x"}))})), "attach_archive_depth=1")
    expect(out, "quarantine", "ATTACH_UNCHECKED", "not opened (deeper than attach_archive_depth)")
    # a zip under a name that does not say so: found by its type
    expect(scan(tmp_path, attached("backup.gz", L.compressed("gz", z))), "reject",
           "ATTACH_ARCHIVE_BANNED", "contains run.cmd")
    # and a compressed file inside an archive
    inner = L.zip_bytes({"invoice.exe.bz2": L.compressed("bz2", HARMLESS)})
    expect(scan(tmp_path, attached("outer.zip", inner)), "reject", "ATTACH_ARCHIVE_BANNED",
           "outer.zip/invoice.exe.bz2: contains invoice.exe")


def test_compressed_bombs_are_bounded(tmp_path):
    """2 GiB of zeros as a bare .gz (2 MB): only its head is decompressed,
    accepted at once; the same named as a zip is an archive larger than
    attach_archive_max_size, left unopened (unchecked) after reading that
    much, not 2 GiB"""
    # concatenated members: 2 GiB (a head that is no tar header, or
    # libarchive's tar reader takes the zeros for an empty tar)
    zeros = bomblib._gz_member(b"no tar header " * 100) + bomblib._gz_member(bytes(64 << 20)) * 32
    t = time.monotonic()
    expect(scan(tmp_path, attached("zeros.bin.gz", zeros)), "accept")
    assert time.monotonic() - t < 5, time.monotonic() - t
    t = time.monotonic()
    out = scan(tmp_path, attached("big.zip.gz", zeros))
    expect(out, "quarantine", "ATTACH_UNCHECKED", "big.zip not opened (over attach_archive_max_size)")
    assert time.monotonic() - t < 10, time.monotonic() - t


def test_not_compressed_under_a_compressed_name(tmp_path):
    """a file called .gz that is no gzip stream is not read as one"""
    expect(scan(tmp_path, attached("notes.gz", b"plain text, not gzip\n" * 10)), "accept")


def test_non_ascii_names_in_archives(tmp_path):
    """libarchive converts entry names to the scanner's locale charset: in
    the C locale a name with one non-ASCII character came out empty and
    was never checked (a zip holding Rechnung\u00e4.exe passed)"""
    name = "Rechnung_\u00e4nderung.exe"
    expect(scan(tmp_path, attached("a.zip", L.zip_bytes({name: HARMLESS}))), "reject",
           "ATTACH_ARCHIVE_BANNED", "a.zip: contains Rechnung_?nderung.exe")
    expect(scan(tmp_path, attached("a.7z", L.bsdtar_archive({"\u6587\u4ef6.scr": HARMLESS}))), "reject",
           "ATTACH_ARCHIVE_BANNED", "contains ??.scr")
    expect(scan(tmp_path, attached("a.tar.gz", L.tar_gz_bytes({"d\u00e9j\u00e0/vu.js": HARMLESS}))),
           "reject", "ATTACH_ARCHIVE_BANNED", "contains d?j?/vu.js")
    expect(scan(tmp_path, attached("a.zip", L.zip_bytes({"\u00c4rger.txt": b"text\n"}))), "accept")


# --- 7z --------------------------------------------------------------------------

def test_7z_banned_name_among_many(tmp_path):
    """a solid 7z (bsdtar) of 3,000 files, the banned one last; past
    attach_archive_max_entries it is unchecked, not clean"""
    files = {"docs/f%04d.txt" % i: b"text %d\n" % i for i in range(3000)}
    files["zz/setup.exe"] = HARMLESS
    arc = L.bsdtar_archive(files)
    assert arc[:6] == b"7z\xbc\xaf\x27\x1c"
    expect(scan(tmp_path, attached("docs.7z", arc)), "reject", "ATTACH_ARCHIVE_BANNED",
           "docs.7z: contains zz/setup.exe")
    expect(scan(tmp_path, attached("docs.7z", arc), "attach_archive_max_entries=1000"),
           "quarantine", "ATTACH_UNCHECKED", "more than attach_archive_max_entries")


def test_7z_nested_and_by_type(tmp_path):
    """7z in zip, zip in 7z, a renamed program in a 7z"""
    inner7z = L.bsdtar_archive({"a.txt": b"a\n", "run.vbs": b"x\n"})
    expect(scan(tmp_path, attached("o.zip", L.zip_bytes({"in.7z": inner7z}))), "reject",
           "ATTACH_ARCHIVE_BANNED", "o.zip/in.7z: contains run.vbs")
    outer = L.bsdtar_archive({"in.zip": L.zip_bytes({"evil.pif": b"x\n"})})
    expect(scan(tmp_path, attached("o.7z", outer)), "reject", "ATTACH_ARCHIVE_BANNED",
           "o.7z/in.zip: contains evil.pif")
    expect(scan(tmp_path, attached("o.7z", L.bsdtar_archive({"scan.pdf": EXE}))), "reject",
           "ATTACH_ARCHIVE_BANNED", "of type application/vnd.microsoft.portable-executable")
    expect(scan(tmp_path, attached("o.7z", L.bsdtar_archive({"a.txt": b"a\n", "b.pdf": L.PDF}))), "accept")


def test_encrypted_7z_as_encrypted_zip(tmp_path):
    """an encrypted 7z gets what an encrypted zip gets: its names are
    still checked (a banned one rejects), the archive is ATTACH_ENCRYPTED
    (tag inbound, nothing outbound); with encrypted names (7z -mhe),
    nothing is seen but that it is encrypted"""
    for arc, zipped in [(L.seven_zip_encrypted({"report.txt": b"numbers\n"}),
                         L.encrypted_zip({"report.txt": b"numbers\n"})),
                        (L.seven_zip_encrypted({"payload.exe": EXE}),
                         L.encrypted_zip({"payload.exe": EXE}))]:
        a = scan(tmp_path, attached("s.7z", arc))
        z = scan(tmp_path, attached("s.zip", zipped))
        assert a["action"] == z["action"], (a, z)
        assert set(syms(a)) == set(syms(z)), (a, z)
        assert "ATTACH_ENCRYPTED" in syms(a)
        assert scan(tmp_path, attached("s.7z", arc), direction="outbound")["action"] == \
            scan(tmp_path, attached("s.zip", zipped), direction="outbound")["action"]
    expect(scan(tmp_path, attached("s.7z", L.seven_zip_encrypted({"payload.exe": EXE})) ), "reject",
           "ATTACH_ARCHIVE_BANNED", "contains payload.exe")
    hidden = L.seven_zip_encrypted({"payload.exe": EXE}, headers=True)
    expect(scan(tmp_path, attached("s.7z", hidden)), "tag", "ATTACH_ENCRYPTED", "s.7z: encrypted archive")
    expect(scan(tmp_path, attached("s.7z", hidden), "attach_inbound_encrypted_action=reject"), "reject",
           "ATTACH_ENCRYPTED")


def test_clamav_scans_7z_entries(tmp_path):
    """libclamav looks into a solid 7z of many entries (EICAR as the last of
    2,000), and a 7z past av_max_files is a limit, not clean"""
    import avlib
    db = avlib.copy_db(str(tmp_path / "db"))
    files = {"f%04d.txt" % i: b"text %d\n" % i for i in range(2000)}
    files["zz_eicar.com"] = avlib.EICAR
    msg = attached("many.7z", L.bsdtar_archive(files))
    av = ["av_database=" + db, "av_db_check_interval=0", "filters=clamav"]
    out = scan(tmp_path, msg, *av)
    assert any(s["name"] == "VIRUS_FOUND" for s in out["symbols"]), out
    clean = {"f%04d.txt" % i: b"text %d\n" % i for i in range(300)}
    out = scan(tmp_path, attached("many.7z", L.bsdtar_archive(clean)), *av, "av_max_files=100")
    assert [s["desc"] for s in out["symbols"] if s["name"] == "AV_UNSCANNED"] == \
        ["limit: Heuristics.Limits.Exceeded.MaxFiles"], out


def test_zip_entries_bound_inside_other_containers(tmp_path):
    """av_max_zip_entries counted zips and zips in zips only: a zip of 5,000
    empty entries gzipped (libclamav gunzips it itself), bzip2'd, xz'd,
    in a tar.gz or a 7z, under any name, took libclamav 5 to 10 s (20,000:
    av_max_scantime) and was scanned; now each is the same limit hit as
    the bare zip, at once; a small zip in a tar.gz is still scanned"""
    import base64
    import avlib
    db = avlib.copy_db(str(tmp_path / "db"))
    av = ["av_database=" + db, "av_db_check_interval=0", "filters=clamav"]
    z = bomblib.zip_entries(0.025).split(b'filename="many.zip"\r\n\r\n')[1].split(b"\r\n--B--")[0]
    z = base64.b64decode(z.replace(b"\r\n", b""))
    for name, data in [("many.zip.gz", L.compressed("gz", z)), ("report.dat", L.compressed("gz", z)),
                       ("a.bz2", L.compressed("bz2", z)), ("a.xz", L.compressed("xz", z)),
                       ("a.tar.gz", L.tar_gz_bytes({"d/many.zip": z})),
                       ("a.7z", L.bsdtar_archive({"many.zip": z})),
                       ("a.tgz", L.tar_gz_bytes({"in.gz": L.compressed("gz", z)}))]:
        t = time.monotonic()
        out = scan(tmp_path, attached(name, data), *av)
        unscanned = [s["desc"] for s in out["symbols"] if s["name"] == "AV_UNSCANNED"]
        assert unscanned and "av_max_zip_entries" in unscanned[0], (name, out["symbols"])
        assert time.monotonic() - t < 4, (name, time.monotonic() - t)
    # what is read to count them is bounded: a tar.gz of 7.5 GB of zeros
    # is not unpacked whole (64 MiB at most; took 37 s before the bound)
    t = time.monotonic()
    out = scan(tmp_path, bomblib.targz_zeros(0.4), *av)
    assert time.monotonic() - t < 12, time.monotonic() - t
    files = {"f%d.txt" % i: b"x\n" for i in range(30)}
    files["eicar.com"] = avlib.EICAR
    out = scan(tmp_path, attached("a.tar.gz", L.tar_gz_bytes({"files.zip": L.zip_bytes(files)})), *av)
    assert [s["name"] for s in out["symbols"]] == ["VIRUS_FOUND"], out["symbols"]


# --- archive formats libarchive reads, and those it does not -------------------------

ARCHIVES = {
    "lzh": lambda: ("files.lzh", L.lzh({"invoice.exe": EXE})),
    "lzh_named_zip": lambda: ("files.zip", L.lzh({"invoice.exe": EXE})),
    "cpio": lambda: ("files.cpio", L.bsdtar_archive({"invoice.exe": EXE}, "cpio")),
    "ar": lambda: ("files.deb", L.bsdtar_archive({"invoice.exe": EXE}, "ar")),
    "xar": lambda: ("files.xar", L.bsdtar_archive({"invoice.exe": EXE}, "xar")),
    "tar.Z": lambda: ("files.tar.Z", L.bsdtar_archive({"invoice.exe": EXE}, "ustar", compress="-Z")),
    "tar.lz4": lambda: ("files.tar.lz4", L.bsdtar_archive({"invoice.exe": EXE}, "ustar", compress="--lz4")),
    "tar_lz4_named_tar": lambda: ("files.tar", L.bsdtar_archive({"invoice.exe": EXE}, "ustar",
                                                                compress="--lz4")),
    "lz4_named_pdf": lambda: ("scan.pdf", L.bsdtar_archive({"invoice.exe": EXE}, "ustar", compress="--lz4")),
}


@pytest.mark.parametrize("kind", sorted(ARCHIVES))
def test_more_archive_formats(tmp_path, kind):
    """LHA, cpio, ar (.deb), xar, and tars behind compress (.Z) or lz4,
    also under a name of another archive format (7-Zip and WinRAR open a
    file by its signature) or none, were neither read nor unchecked: the
    program inside passed.  Now read: its name is found."""
    name, data = ARCHIVES[kind]()
    expect(scan(tmp_path, attached(name, data)), "reject", "ATTACH_ARCHIVE_BANNED",
           "%s: contains invoice.exe" % name)


def test_archive_no_reader_opens(tmp_path):
    """a file of an archive type libarchive does not read (ARJ), or named
    as an archive no reader opens, is unchecked: what it holds was not
    seen; a file named only as a bare compressed one that is none is
    still left alone (test_not_compressed_under_a_compressed_name)"""
    expect(scan(tmp_path, attached("files.arj", L.arj_head())), "quarantine", "ATTACH_UNCHECKED",
           "files.arj: not read as an archive (type application/x-arj)")
    expect(scan(tmp_path, attached("report.pdf", L.arj_head())), "quarantine", "ATTACH_UNCHECKED",
           "report.pdf: not read as an archive (type application/x-arj)")
    expect(scan(tmp_path, attached("files.zip", b"garbage, not an archive\n" * 10)), "quarantine",
           "ATTACH_UNCHECKED", "files.zip: not read as an archive")
    # inside a zip too, and a clean LHA passes
    expect(scan(tmp_path, attached("a.zip", L.zip_bytes({"b.arj": L.arj_head()}))), "quarantine",
           "ATTACH_UNCHECKED", "a.zip/b.arj: not read as an archive")
    expect(scan(tmp_path, attached("notes.lzh", L.lzh({"notes.txt": b"text\n"}))), "accept")


# --- names ------------------------------------------------------------------------

@pytest.mark.parametrize("ctype,disposition,banned", [
    # Content-Type name= against Content-Disposition filename=: both are checked
    ("application/octet-stream; name=\"evil.exe\"", "attachment; filename=\"doc.pdf\"", "evil.exe"),
    ("application/octet-stream; name=\"doc.pdf\"", "attachment; filename=\"evil.exe\"", "evil.exe"),
    # filename= and filename*= disagreeing, in either order
    ("application/octet-stream", "attachment; filename=\"doc.pdf\"; filename*=UTF-8''evil.scr", "evil.scr"),
    ("application/octet-stream", "attachment; filename*=UTF-8''doc.pdf; filename=\"evil.scr\"", "evil.scr"),
    # a parameter given twice
    ("application/octet-stream", "attachment; filename=\"doc.pdf\"; filename=\"evil.js\"", "evil.js"),
    # RFC 2231 continuations in name= behind a plain one
    ("application/octet-stream; name=\"a.pdf\"; name*0=\"b.s\"; name*1=\"cr\"", "attachment", "b.scr"),
])
def test_every_name_is_checked(tmp_path, ctype, disposition, banned):
    out = scan(tmp_path, L.message([L.part(ctype, HARMLESS, disposition)]))
    expect(out, "reject", "ATTACH_BANNED_EXT", banned)


def test_names_past_sixteen(tmp_path):
    """16 names a part were kept: with 16 distinct filename= values the
    Content-Type name= was never looked at, nor a 17th filename= (which a
    program taking the last of repeated parameters uses).  Now 64 are;
    past that (or 16 Content-Type/-Disposition fields) the part is
    unchecked"""
    many = "attachment; " + "; ".join('filename="f%02d.txt"' % i for i in range(16))
    out = scan(tmp_path, L.message([L.part('application/octet-stream; name="invoice.exe"', HARMLESS, many)]))
    expect(out, "reject", "ATTACH_BANNED_EXT", "invoice.exe: extension .exe")
    out = scan(tmp_path, L.message([L.part("application/octet-stream", HARMLESS,
                                           many + '; filename="invoice.exe"')]))
    expect(out, "reject", "ATTACH_BANNED_EXT", "invoice.exe: extension .exe")
    expect(scan(tmp_path, L.message([L.part("application/octet-stream", HARMLESS, many)])), "accept")
    more = "attachment; " + "; ".join('filename="f%02d.txt"' % i for i in range(70))
    out = scan(tmp_path, L.message([L.part("application/octet-stream", HARMLESS, more)]))
    expect(out, "quarantine", "ATTACH_UNCHECKED", "more than 64 names")


def _raw_part(fields, body):
    return CRLF.join(fields) + CRLF + CRLF + body


@pytest.mark.parametrize("order", ["banned_first", "banned_last"])
def test_repeated_disposition_and_type_fields(tmp_path, order):
    """a Content-Disposition or Content-Type field given twice: GMime keeps
    the last, mail programs differ on which they use; the names of both
    are checked (a banned name in the first field passed)"""
    for field in (b"Content-Disposition: attachment; filename=", b"Content-Type: application/octet-stream; name="):
        a, b = field + b'"invoice.exe"', field + b'"invoice.txt"'
        fields = [a, b] if order == "banned_first" else [b, a]
        other = [b"Content-Type: application/octet-stream"] if field.startswith(b"Content-D") else []
        p = _raw_part(other + fields + [b"Content-Transfer-Encoding: base64"], L.b64(HARMLESS))
        expect(scan(tmp_path, L.message([p])), "reject", "ATTACH_BANNED_EXT", "invoice.exe: extension .exe")


def test_repeated_content_type_types(tmp_path):
    """two Content-Type fields declaring different types: each one is
    checked against the banned types (the type rule read the first, the
    content rule GMime's last)"""
    for fields in ([b"Content-Type: application/x-msdownload", b"Content-Type: application/pdf"],
                   [b"Content-Type: application/pdf", b"Content-Type: application/x-msdownload"]):
        p = _raw_part(fields + [b'Content-Disposition: attachment; filename="a.pdf"',
                                b"Content-Transfer-Encoding: base64"], L.b64(L.PDF))
        expect(scan(tmp_path, L.message([p]), "attach_inbound_banned_types=application/x-msdownload"),
               "reject", "ATTACH_BANNED_TYPE", "a.pdf: type application/x-msdownload")


def test_bidi_control_in_name(tmp_path):
    """U+202E (right-to-left override) makes invoice\u202efdp.html read
    "invoicelmth.pdf": a name with a bidi embedding, override or isolate
    is a disguise (extension rule); right-to-left names without them, and
    with the marks U+200F, pass"""
    for name in ["invoice\u202efdp.html", "photo\u2067gnp.js\u2069.txt"]:
        disp = "attachment; filename*=UTF-8''" + "".join(
            "%%%02X" % c if c > 0x7e or c < 0x21 else chr(c) for c in name.encode())
        out = scan(tmp_path, L.message([L.part("application/octet-stream", HARMLESS, disp)]))
        expect(out, "reject", "ATTACH_BIDI_NAME", "bidirectional control character")
    assert scan(tmp_path, L.message([L.part("application/octet-stream", HARMLESS, disp)]),
                "attach_inbound_extension_action=tag")["action"] == "tag"
    ok = "\u05d3\u05d5\u05d7 \u200f\u05e9\u05e0\u05ea\u05d9.pdf".encode()
    disp = "attachment; filename*=UTF-8''" + "".join("%%%02X" % c if c > 0x7e or c < 0x21 else chr(c) for c in ok)
    expect(scan(tmp_path, L.message([L.part("application/pdf", L.PDF, disp)])), "accept")
    # inside an archive too
    expect(scan(tmp_path, attached("a.zip", L.zip_bytes({"scan\u202efdp.hta.txt": b"x"}))), "reject",
           "ATTACH_ARCHIVE_BANNED", "bidirectional control character")


# --- uuencoded files in a text body -------------------------------------------

def uu_msg(*blocks):
    body = b"Hello,\r\n\r\nthe file is below.\r\n\r\n" + b"".join(blocks) + b"\r\nRegards\r\n"
    return L.message([L.part("text/plain; charset=us-ascii", body, cte="7bit")])


def test_uuencoded_files_in_text(tmp_path):
    """mail programs show "begin 644 name" blocks of a text body as
    attachments: each one's name, content type and archive are checked"""
    expect(scan(tmp_path, uu_msg(L.uuencoded("evil.exe", HARMLESS))), "reject",
           "ATTACH_BANNED_EXT", "evil.exe: extension .exe")
    expect(scan(tmp_path, uu_msg(L.uuencoded("notes.txt", EXE))), "reject", "ATTACH_CONTENT_TYPE",
           "notes.txt (uuencoded in part 2): uuencoded, content application/vnd.microsoft.portable-executable")
    z = L.zip_bytes({"a.txt": b"a\n", "start.bat": b"x\n"})
    expect(scan(tmp_path, uu_msg(L.uuencoded("files.zip", z))), "reject", "ATTACH_ARCHIVE_BANNED",
           "contains start.bat")
    # clean ones pass; "begin 644" that starts no block is text
    expect(scan(tmp_path, uu_msg(L.uuencoded("notes.txt", b"just text\n" * 20),
                                 b"We begin 644 new projects.\r\nbegin 6 x.exe\r\n")), "accept")
    # a block left open does not hide the next one, and costs one pass
    opened = b"begin 644 a.txt\r\n" + b"M" + b"A" * 60 + b"\r\n"
    expect(scan(tmp_path, uu_msg(opened * 3, L.uuencoded("evil.exe", HARMLESS))), "reject",
           "ATTACH_BANNED_EXT", "evil.exe")
    big = uu_msg(b"begin 644 a.txt\r\n" * 100 + (b"M" + b"A" * 60 + b"\r\n") * 100000)
    t = time.monotonic()
    expect(scan(tmp_path, big), "accept")
    assert time.monotonic() - t < 5, time.monotonic() - t
    # more blocks than are looked at: unchecked
    many = uu_msg(*[L.uuencoded("n%d.txt" % i, b"text\n") for i in range(101)])
    expect(scan(tmp_path, many), "quarantine", "ATTACH_UNCHECKED", "more than 100 uuencoded files")


def text_msg(*blocks, cte="8bit"):
    body = b"Hello,\r\n\r\nthe file is below.\r\n\r\n" + b"".join(blocks) + b"\r\nRegards\r\n"
    return L.message([L.part("text/plain; charset=us-ascii", body, cte=cte)])


def test_yenc_files_in_text(tmp_path):
    """yEnc blocks (=ybegin ... name=) of a text body, which Thunderbird
    shows as attachments as it does uuencoded files, passed unread: each
    one's name, type and archive are now checked"""
    expect(scan(tmp_path, text_msg(L.yenc("invoice.exe", EXE))), "reject", "ATTACH_BANNED_EXT",
           "invoice.exe: extension .exe")
    expect(scan(tmp_path, text_msg(L.yenc("my invoice.pdf.exe", HARMLESS))), "reject", "ATTACH_DOUBLE_EXT",
           "my invoice.pdf.exe")
    expect(scan(tmp_path, text_msg(L.yenc("notes.txt", EXE))), "reject", "ATTACH_CONTENT_TYPE",
           "notes.txt (yEnc in part 2): yEnc, content application/vnd.microsoft.portable-executable")
    z = L.zip_bytes({"a.txt": b"a\n", "start.bat": b"x\n"})
    expect(scan(tmp_path, text_msg(L.yenc("files.zip", z))), "reject", "ATTACH_ARCHIVE_BANNED",
           "files.zip (yEnc in part 2): contains start.bat")
    expect(scan(tmp_path, text_msg(L.yenc("notes.txt", bytes(range(256)) * 4), L.yenc("b.png", L.PNG))),
           "accept")
    many = text_msg(*[L.yenc("n%d.txt" % i, b"text\n") for i in range(101)])
    expect(scan(tmp_path, many), "quarantine", "ATTACH_UNCHECKED", "more than 100 yEnc or BinHex files")


def test_binhex_files(tmp_path):
    """BinHex 4.0 in a text body, or an application/mac-binhex40 part
    named harmlessly, passed with a program inside: the name in its
    header, and the type and archive of its data fork, are now checked;
    one that does not decode is unchecked"""
    expect(scan(tmp_path, text_msg(L.binhex("invoice.exe", EXE), cte="7bit")), "reject",
           "ATTACH_BANNED_EXT", "invoice.exe: extension .exe")
    part = L.part('application/mac-binhex40; name="notes.hqx"', L.binhex("invoice.exe", EXE),
                  'attachment; filename="notes.hqx"', cte="7bit")
    expect(scan(tmp_path, L.message([part])), "reject", "ATTACH_BANNED_EXT", "invoice.exe: extension .exe")
    expect(scan(tmp_path, text_msg(L.binhex("notes.txt", EXE, rsrc=b"\x90" * 10), cte="7bit")), "reject",
           "ATTACH_CONTENT_TYPE",
           "notes.txt (BinHex in part 2): BinHex, content application/vnd.microsoft.portable-executable")
    # an archive past libmagic's 64 KiB head, runs of 255 and escaped 0x90 included
    z = L.zip_bytes({"pad.bin": os.urandom(70000), "run.js": b"x\n"})
    z_stored = L.bsdtar_archive({"pad.bin": bytes(70000) + b"\x90" * 300, "run.js": b"x"}, "zip",
                                options="zip:compression=store")
    for arc in (z, z_stored):
        expect(scan(tmp_path, text_msg(L.binhex("files.zip", arc), cte="7bit")), "reject",
               "ATTACH_ARCHIVE_BANNED", "files.zip (BinHex in part 2): contains run.js")
    expect(scan(tmp_path, text_msg(L.binhex("notes.txt", b"text\n" * 1000), cte="7bit")), "accept")
    expect(scan(tmp_path, text_msg(b"We do not use (This file must be converted with BinHex 4.0) here.\r\n")),
           "accept")
    # cut short, and a typed part with no BinHex in it
    expect(scan(tmp_path, text_msg(L.binhex("notes.txt", EXE, cut=40), cte="7bit")), "quarantine",
           "ATTACH_UNCHECKED", "notes.txt (BinHex in part 2): BinHex file not read")
    empty = L.part("application/mac-binhex40", b"nothing here\r\n", 'attachment; filename="a.hqx"', cte="7bit")
    expect(scan(tmp_path, L.message([empty])), "quarantine", "ATTACH_UNCHECKED", "a.hqx: BinHex part not read")
    # a header that does not decode: unchecked; the MIME layer does not count
    # such files with those the antivirus scans (session 18), this filter
    # does count them with the others, to 100
    bad = L.binhex("bad.txt", b"x")
    bad = bad[:bad.index(b":") + 1] + b"!" * 33 + b":\r\n"
    expect(scan(tmp_path, text_msg(bad, cte="7bit")), "quarantine", "ATTACH_UNCHECKED",
           "BinHex file not read (malformed header)")
    expect(scan(tmp_path, text_msg(bad * 99 + L.binhex("invoice.exe", EXE), cte="7bit")), "reject",
           "ATTACH_BANNED_EXT", "invoice.exe: extension .exe")
    out = scan(tmp_path, text_msg(bad * 150 + L.binhex("invoice.exe", EXE), cte="7bit"))
    expect(out, "quarantine", "ATTACH_UNCHECKED")
    assert "ATTACH_BANNED_EXT" not in syms(out), syms(out)


# --- messages the MIME tree does not descend into ---------------------------------

def inner_msg(name="game.exe", data=HARMLESS):
    return L.message([L.part("application/octet-stream", data, "attachment; filename=\"%s\"" % name)],
                     subject="inner", boundary="inner_b")


def test_encoded_and_attached_messages(tmp_path):
    """a message/rfc822 part sent base64 or quoted-printable (GMime keeps it
    a leaf) and a forwarded message attached as a file named .eml are
    parsed, and their parts checked as the message's own"""
    b64 = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n" + L.b64(inner_msg())
    expect(scan(tmp_path, L.message([b64])), "reject", "ATTACH_BANNED_EXT", "game.exe: extension .exe")
    qp = (b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
          inner_msg().replace(b"=", b"=3D"))
    expect(scan(tmp_path, L.message([qp])), "reject", "ATTACH_BANNED_EXT", "game.exe")
    z = L.zip_bytes({"setup.scr": b"x"})
    eml = L.part("application/octet-stream", inner_msg("files.zip", z), "attachment; filename=\"fwd.eml\"")
    expect(scan(tmp_path, L.message([eml])), "reject", "ATTACH_ARCHIVE_BANNED", "contains setup.scr")
    clean = L.part("application/octet-stream", inner_msg("notes.txt", b"text\n"), "attachment; filename=\"fwd.eml\"")
    expect(scan(tmp_path, L.message([clean])), "accept")
    # replace: the whole attached message goes, the rest is delivered
    out = scan(tmp_path, L.message([eml, L.part("application/pdf", L.PDF, "attachment; filename=\"a.pdf\"")]),
               "attach_inbound_archive_action=replace")
    assert out["action"] == "accept" and out["new_body"] is True, out
    assert syms(out)["ATTACH_REPLACED"] == "1 part replaced by a text part", out


def test_embedded_messages_are_bounded(tmp_path):
    """.eml in .eml, 10 levels: 8 are parsed, the rest is unchecked"""
    m = inner_msg()
    for i in range(10):
        m = L.message([L.part("application/octet-stream", m, "attachment; filename=\"l%d.eml\"" % i)],
                      boundary="b%d" % i)
    out = scan(tmp_path, m)
    expect(out, "quarantine", "ATTACH_UNCHECKED", "not opened (more than 8 levels)")


# --- TNEF (winmail.dat) ------------------------------------------------------------

def winmail(*files):
    return L.message([L.part("application/ms-tnef; name=\"winmail.dat\"", L.tnef(list(files)),
                             "attachment; filename=\"winmail.dat\"")])


def test_tnef_files(tmp_path):
    """Outlook opens the files of a winmail.dat as attachments: their
    names (attAttachTitle and the long name among the MAPI properties),
    types and archives are checked as an archive's entries"""
    expect(scan(tmp_path, winmail(("INVOIC~1.PDF", HARMLESS, "invoice.pdf.exe"))), "reject",
           "ATTACH_ARCHIVE_BANNED", "winmail.dat: contains invoice.pdf.exe")
    expect(scan(tmp_path, winmail(("notes.txt", b"a\n", None), ("setup.scr", HARMLESS, None))), "reject",
           "ATTACH_ARCHIVE_BANNED", "winmail.dat: contains setup.scr")
    expect(scan(tmp_path, winmail(("scan.pdf", EXE, None))), "reject", "ATTACH_ARCHIVE_BANNED",
           "contains scan.pdf of type application/vnd.microsoft.portable-executable")
    expect(scan(tmp_path, winmail(("files.zip", L.zip_bytes({"run.js": b"x"}), None))), "reject",
           "ATTACH_ARCHIVE_BANNED", "winmail.dat/files.zip: contains run.js")
    expect(scan(tmp_path, winmail(("notes.txt", b"a\n", "meeting notes.txt"), ("logo.png", L.PNG, None))),
           "accept")
    # cut short: what follows the cut is not seen
    cut = L.tnef([("notes.txt", b"a\n" * 100, None), ("setup.scr", HARMLESS, None)])[:-40]
    out = scan(tmp_path, L.message([L.part("application/ms-tnef", cut, "attachment; filename=\"winmail.dat\"")]))
    expect(out, "quarantine", "ATTACH_UNCHECKED", "TNEF stream truncated or malformed")


# --- the MIME parse's 64 MiB of decoded content ------------------------------------

def cp1252_filler(mb=23):
    """mb MB of 0x80 as windows-1252 text: three times that in UTF-8 (U+20AC)"""
    line = b"\x80" * 990 + CRLF
    return L.part("text/plain; charset=windows-1252", line * (mb * 1000 * 1000 // len(line)),
                  "inline", cte="8bit")


def test_converted_text_leaves_room_for_later_parts(tmp_path):
    """23 MB of windows-1252 text is 69 MB of UTF-8: counted with its bytes
    as sent against the 64 MiB, it left the zip after it kept empty, only
    its name looked at, and the message passed clean.  The converted text
    now counts apart: the zip is read."""
    z = L.zip_bytes({"invoice.exe": EXE})
    zpart = L.part("application/zip", z, "attachment; filename=\"invoice.zip\"")
    msg = L.message([cp1252_filler(), zpart])
    assert len(msg) < 50 * 1000 * 1000         # under message_size_limit
    expect(scan(tmp_path, msg), "reject", "ATTACH_ARCHIVE_BANNED", "invoice.zip: contains invoice.exe")
    clean = L.part("application/zip", L.zip_bytes({"notes.txt": b"text\n"}),
                   "attachment; filename=\"notes.zip\"")
    expect(scan(tmp_path, L.message([cp1252_filler(), clean])), "accept")


def test_decoded_budget_cut_is_unchecked(tmp_path):
    """past 64 MiB of content as decoded (a message over 64 MiB: a raised
    message_size_limit, the milter, mailwarden scan), the parts cut or kept
    empty are unchecked, not passed on their names"""
    big = L.part("text/plain; charset=us-ascii", (b"a" * 998 + CRLF) * (67 * 1024 * 1024 // 1000),
                 "inline", cte="8bit")
    zpart = L.part("application/zip", L.zip_bytes({"notes.txt": b"text\n"}),
                   "attachment; filename=\"notes.zip\"")
    out = scan(tmp_path, L.message([big, zpart]))
    expect(out, "quarantine", "ATTACH_UNCHECKED", "message: decoded content over 64 MiB")


# --- through the proxy ------------------------------------------------------------

def test_proxy_rejects_compressed_banned(mw_factory, upstream):
    m = mw_factory(upstream, opts=[("filters", "attachments")])
    c = m.client()
    c.ehlo()
    r = c.transaction("sender@example.org", ["rcpt@example.net"],
                      attached("invoice.exe.zst", L.compressed("zst", HARMLESS)))["final"]
    ok = c.transaction("sender@example.org", ["rcpt@example.net"],
                       attached("notes.txt.xz", L.compressed("xz", b"text\n")))["final"]
    c.quit()
    assert r.code == 550 and "Banned attachment invoice.exe.zst" in r.text, r
    assert ok.code == 250, ok
    assert len(upstream.wait_messages(1)) == 1
    assert "ATTACH_ARCHIVE_BANNED" in A.symbols(m.audit(2)[0])
