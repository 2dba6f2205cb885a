"""attachlib.py - test material for the attachment policy, made at test time:
tiny executables (a PE and an ELF header), zip archives (Python's zipfile),
encrypted zips (Debian's `zip -P`), and MIME messages written byte by byte so
that each filename parameter is exactly the encoding under test (RFC 2231,
RFC 2047, trailing dots and spaces)."""

import base64
import io
import json
import os
import struct
import subprocess
import tempfile
import zipfile

from mwlib import run_mw

CRLF = b"\r\n"


def pe_bytes():
    """A minimal PE: MZ header pointing at a PE signature and COFF header
    (libmagic: application/vnd.microsoft.portable-executable)."""
    mz = bytearray(b"MZ" + b"\x90\x00" + b"\x00" * 60)
    struct.pack_into("<I", mz, 0x3C, 0x40)
    coff = b"PE\x00\x00" + struct.pack("<HHIIIHH", 0x14C, 1, 0, 0, 0, 0xE0, 0x102)
    return bytes(mz) + coff + b"\x00" * 300


def elf_bytes():
    """A minimal 64-bit ELF executable header (application/x-executable)."""
    return (b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + struct.pack("<HHI", 2, 0x3E, 1)
            + b"\x00" * 100)


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02"
       b"\x00\x00\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00"
       b"\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")


def zip_bytes(files):
    """files: {name: bytes} -> a zip archive (deflated)."""
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return b.getvalue()


def tar_gz_bytes(files):
    """files: {name: bytes} -> a gzip-compressed tar archive."""
    import tarfile
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return b.getvalue()


def encrypted_zip(files, password="infected"):
    """files: {name: bytes} -> a zip whose entries are encrypted
    (PKWARE traditional encryption, with Debian's zip -P)."""
    with tempfile.TemporaryDirectory() as d:
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        out = os.path.join(d, "out.zip")
        subprocess.run(["zip", "-q", "-P", password, out] + list(files), cwd=d, check=True)
        with open(out, "rb") as f:
            return f.read()


def b64(data):
    s = base64.b64encode(data)
    return CRLF.join(s[i:i + 76] for i in range(0, len(s), 76))


def part(ctype, data, disposition=None, cte="base64"):
    """One MIME part.  ctype and disposition are the raw header values
    (parameters included), bytes or str."""
    h = [b"Content-Type: " + _b(ctype)]
    if disposition is not None:
        h.append(b"Content-Disposition: " + _b(disposition))
    if cte == "base64":
        h.append(b"Content-Transfer-Encoding: base64")
        body = b64(data)
    else:
        h.append(b"Content-Transfer-Encoding: " + _b(cte))
        body = data
    return CRLF.join(h) + CRLF + CRLF + body


def message(parts, subject="attachment test", boundary="=_mw_boundary_1"):
    """A multipart/mixed message: a text part, then the parts given."""
    head = [b"From: sender@example.org", b"To: rcpt@example.net",
            b"Subject: " + _b(subject), b"Message-ID: <att-%d@example.org>" % id(parts),
            b"MIME-Version: 1.0",
            b"Content-Type: multipart/mixed; boundary=\"" + _b(boundary) + b"\""]
    out = CRLF.join(head) + CRLF + CRLF
    for p in [part("text/plain; charset=us-ascii", b"Please see the attachment." + CRLF,
                   cte="7bit")] + list(parts):
        out += b"--" + _b(boundary) + CRLF + p + CRLF
    return out + b"--" + _b(boundary) + b"--" + CRLF


def rfc822_part(inner):
    """A message/rfc822 part carrying the message inner."""
    return b"Content-Type: message/rfc822" + CRLF + b"Content-Disposition: attachment; " \
        b"filename=\"forwarded.eml\"" + CRLF + CRLF + inner


def _b(x):
    return x.encode("utf-8") if isinstance(x, str) else x


# --- compressed files and 7z (test_attach_gaps.py) ----------------------------

COMPRESSORS = {          # suffix -> command line compressing stdin to stdout
    "gz": ["gzip", "-c", "-n"], "bz2": ["bzip2", "-c"], "xz": ["xz", "-c"],
    "zst": ["zstd", "-q", "-c"], "lz": ["lzip", "-c"], "lzma": ["xz", "--format=lzma", "-c"],
}


def compressed(suffix, data):
    """data compressed as a bare .gz/.bz2/.xz/.zst/.lz/.lzma file (gzip
    without a name in its header)"""
    return subprocess.run(COMPRESSORS[suffix], input=data, capture_output=True, check=True).stdout


def gzip_named(name, data):
    """a gzip file whose header names the file inside (FNAME)"""
    import gzip
    b = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=b, mtime=0) as g:
        g.write(data)
    return b.getvalue()


def _write_tree(d, files):
    for name, data in files.items():
        p = os.path.join(d, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)


def bsdtar_archive(files, fmt="7zip", options=None, compress=None):
    """files: {name: bytes} -> an archive written by libarchive's bsdtar
    (Debian's libarchive-tools): fmt "7zip" (one solid LZMA block by
    default), "zip", "ustar", "cpio", "ar", "xar" ...; compress: a bsdtar
    option compressing it ("-Z", "--lz4" ...)"""
    with tempfile.TemporaryDirectory() as d:
        _write_tree(os.path.join(d, "t"), files)
        out = os.path.join(d, "out.arc")
        cmd = ["bsdtar", "--format", fmt]
        if compress:
            cmd.append(compress)
        if options:
            cmd += ["--options", options]
        subprocess.run(cmd + ["-cf", out, "-C", os.path.join(d, "t")] + sorted(files), check=True)
        with open(out, "rb") as f:
            return f.read()


def seven_zip_encrypted(files, password="infected", headers=False):
    """files: {name: bytes} -> a 7z archive with AES-encrypted content
    (Debian's 7zip, 7zz -p); headers=True encrypts the names too (-mhe)"""
    with tempfile.TemporaryDirectory() as d:
        _write_tree(os.path.join(d, "t"), files)
        out = os.path.join(d, "out.7z")
        cmd = ["7zz", "a", "-bd", "-bso0", "-p" + password] + (["-mhe=on"] if headers else [])
        subprocess.run(cmd + [out] + sorted(files), cwd=os.path.join(d, "t"), check=True)
        with open(out, "rb") as f:
            return f.read()


def _crc16(data, crc=0):
    for c in data:
        crc ^= c
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def lzh(files):
    """files: {name: bytes} -> an LHA archive (level 0 headers, -lh0-
    stored), as 7-Zip, WinRAR and libarchive read it"""
    out = b""
    for name, data in files.items():
        n = name.encode()
        body = (b"-lh0-" + struct.pack("<II", len(data), len(data)) + struct.pack("<I", 0x5a210000)
                + b"\x20\x00" + bytes([len(n)]) + n + struct.pack("<H", _crc16(data)))
        out += bytes([len(body), sum(body) & 0xFF]) + body + data
    return out + b"\x00"


def arj_head(name="files.arj"):
    """the main header of an ARJ archive (libmagic: application/x-arj),
    which libarchive does not read"""
    first = bytes([30, 11, 1, 0, 0, 0, 2, 0]) + bytes(22)
    hdr = first + name.encode() + b"\0\0"
    return b"\x60\xea" + struct.pack("<H", len(hdr)) + hdr + bytes(6) + b"x" * 100


def uuencoded(name, data, mode="644"):
    """data uuencoded as a block of a text body"""
    import binascii
    lines = [b"begin " + mode.encode() + b" " + _b(name)]
    for i in range(0, len(data), 45):
        lines.append(binascii.b2a_uu(data[i:i + 45]).rstrip(b"\n"))
    return CRLF.join(lines + [b"`", b"end"]) + CRLF


def yenc(name, data, line=128):
    """data as a yEnc block (=ybegin ... =yend) of a text body"""
    out, cur = [], bytearray()
    for c in data:
        e = (c + 42) & 0xFF
        if e in (0, 10, 13, 61):
            cur += b"=" + bytes([(e + 64) & 0xFF])
        else:
            cur.append(e)
        if len(cur) >= line:
            out.append(bytes(cur))
            cur = bytearray()
    if cur:
        out.append(bytes(cur))
    return CRLF.join([b"=ybegin line=%d size=%d name=%s" % (line, len(data), _b(name))] + out +
                     [b"=yend size=%d" % len(data)]) + CRLF


def _binhex_crc(data):
    crc = 0
    for c in data:
        crc ^= c << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return struct.pack(">H", crc)


def _binhex_rle(raw):
    """BinHex's run-length coding: 0x90 escaped as 0x90 0x00, a run of 3 to
    255 bytes c as c 0x90 n"""
    out, i = bytearray(), 0
    while i < len(raw):
        c, n = raw[i], 1
        while i + n < len(raw) and raw[i + n] == c and n < 255:
            n += 1
        out += b"\x90\x00" if c == 0x90 else bytes([c])
        if n >= 3:
            out += bytes([0x90, n])
        else:
            n = 1
        i += n
    return bytes(out)


def binhex(name, data, rsrc=b"", cut=0, claim=None):
    """data as a BinHex 4.0 file (its name in the encoded header), the
    "(This file must be converted ..." line first; cut: characters taken
    off the end (a file cut short); claim: the data fork length the
    header gives, if not len(data)"""
    n = _b(name)
    hdr = bytes([len(n)]) + n + b"\x00" + b"APPL" + b"????" + b"\x00\x00" + \
        struct.pack(">II", len(data) if claim is None else claim, len(rsrc))
    raw = hdr + _binhex_crc(hdr) + data + _binhex_crc(data) + rsrc + _binhex_crc(rsrc)
    alpha = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
    bits, nbits, enc = 0, 0, bytearray()
    for c in _binhex_rle(raw):
        bits = (bits << 8) | c
        nbits += 8
        while nbits >= 6:
            nbits -= 6
            enc.append(alpha[(bits >> nbits) & 0x3F])
    if nbits:
        enc.append(alpha[(bits << (6 - nbits)) & 0x3F])
    body = b":" + bytes(enc[:len(enc) - cut]) + (b":" if not cut else b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"(This file must be converted with BinHex 4.0)" + CRLF + CRLF.join(lines) + CRLF


# --- TNEF (winmail.dat) -------------------------------------------------------------

def _tnef_attr(level, attr_id, data):
    return struct.pack("<BII", level, attr_id, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def _mapi_string_prop(prop_id, value, unicode=False):
    """one MAPI property of type PT_STRING8 (0x001E) or PT_UNICODE (0x001F)"""
    data = value.encode("utf-16-le") + b"\0\0" if unicode else value.encode("latin-1") + b"\0"
    pad = b"\0" * (-len(data) % 4)
    return struct.pack("<HHII", 0x001F if unicode else 0x001E, prop_id, 1, len(data)) + data + pad


def tnef(attachments):
    """a TNEF stream (winmail.dat, as Outlook sends it) holding files:
    attachments is a list of (title, data, long_name or None); the title is
    attAttachTitle, the long name PR_ATTACH_LONG_FILENAME (Unicode) in
    attAttachment, after a PT_LONG property (PR_ATTACH_METHOD)."""
    out = struct.pack("<IH", 0x223E9F78, 1)
    out += _tnef_attr(1, 0x00089006, struct.pack("<I", 0x00010000))     # attTnefVersion
    out += _tnef_attr(1, 0x00069007, struct.pack("<II", 1252, 0))        # attOemCodepage
    for title, data, long_name in attachments:
        out += _tnef_attr(2, 0x00069002, struct.pack("<HiHHI", 1, -1, 0, 0, 0))   # attAttachRendData
        out += _tnef_attr(2, 0x00018010, title.encode("latin-1") + b"\0")       # attAttachTitle
        out += _tnef_attr(2, 0x0006800F, data)                                   # attAttachData
        if long_name is not None:
            props = [struct.pack("<HHI", 0x0003, 0x3705, 1),                       # PR_ATTACH_METHOD
                     _mapi_string_prop(0x3707, long_name, unicode=True)]
            out += _tnef_attr(2, 0x00069005, struct.pack("<I", len(props)) + b"".join(props))
    return out


def scan(tmp_path, msg, *opts, direction=None):
    """`mailwarden scan` with the attachments filter over msg; its JSON."""
    f = tmp_path / "m.eml"
    f.write_bytes(msg)
    args = ["scan", "-o", "filters=attachments"]
    for o in opts:
        args += ["-o", o]
    if direction:
        args += ["--direction", direction]
    p = run_mw(args + [str(f)])
    assert p.returncode == 0, p.stderr.decode("utf-8", "replace")
    return json.loads(p.stdout.decode("utf-8"))


def attach_symbols(out):
    """{ATTACH_* symbol: description} of a scan's result"""
    return {s["name"]: s.get("desc", "") for s in out["symbols"] if s["name"].startswith("ATTACH_")}
