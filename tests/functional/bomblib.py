"""bomblib.py - hostile messages that stay under message_size_limit but
try to make the scanner pay far more than their size: deep nesting, huge
counts, lines without end, archives that unpack to gigabytes.  Each
builder takes a scale (1.0 = the full bomb the benchmark measures; the
functional tests use smaller ones where that is enough to show the bound)
and returns the message as bytes, CRLF lines.  plain(size) is an ordinary
text message of a given size, the yardstick of the benchmark.

Also run_scan(): one `mailwarden scan` under /usr/bin/time -v, with wall
time, peak RSS and the JSON result."""

import base64
import gzip
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
import time
import zipfile
import zlib

CRLF = b"\r\n"


def _head(subject, extra=(), ctype=b"text/plain; charset=us-ascii", mime=True):
    h = [b"From: Bomb <bomb@example.org>", b"To: rcpt@example.net",
         b"Subject: " + (subject if isinstance(subject, bytes) else subject.encode()),
         b"Date: Mon, 02 Jan 2023 10:00:00 +0000", b"Message-ID: <bomb.1@example.org>"]
    if mime:
        h += [b"MIME-Version: 1.0"]
        if ctype is not None:
            h += [b"Content-Type: " + ctype]
    return CRLF.join(h + list(extra)) + CRLF


def _n(x, scale, lo=1):
    return max(lo, int(x * scale))


def _b64lines(data):
    s = base64.b64encode(data)
    return CRLF.join(s[i:i + 76] for i in range(0, len(s), 76))


# --- the yardstick -----------------------------------------------------

def plain(size):
    """an ordinary text/plain message of about size bytes"""
    line = b"The quarterly report is attached below; numbers as discussed in the meeting." + CRLF
    body = line * max(1, (size - 300) // len(line))
    return _head("report") + CRLF + body


# --- MIME structure ----------------------------------------------------

def nest_multipart(scale=1.0):
    """multiparts nested 10,000 deep"""
    depth = _n(10000, scale)
    out = [_head("nested", ctype=b'multipart/mixed; boundary="b0"'), CRLF]
    for i in range(1, depth):
        out.append(b"--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n" % (i - 1, i))
    out.append(b"--b%d\r\nContent-Type: text/plain\r\n\r\nbottom\r\n" % (depth - 1))
    for i in range(depth - 1, -1, -1):
        out.append(b"--b%d--\r\n" % i)
    return b"".join(out)


def nest_rfc822(scale=1.0):
    """message/rfc822 inside message/rfc822, 10,000 deep"""
    depth = _n(10000, scale)
    inner = b"Subject: level\r\nContent-Type: message/rfc822\r\n\r\n"
    return (_head("nested rfc822", ctype=b"message/rfc822") + CRLF + inner * depth +
            b"Subject: bottom\r\n\r\nbottom\r\n")


def many_parts(scale=1.0):
    """100,000 tiny parts in one multipart"""
    n = _n(100000, scale)
    p = b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return _head("parts", ctype=b'multipart/mixed; boundary="B"') + CRLF + p * n + b"--B--\r\n"


def tiny_parts(scale=1.0):
    """1,000,000 empty parts of 7 bytes each"""
    n = _n(1000000, scale)
    return _head("parts", ctype=b'multipart/mixed; boundary="B"') + CRLF + b"--B\r\n\r\n" * n + b"--B--\r\n"


def many_attachments(scale=1.0):
    """20,000 attachments, each with a 200-byte RFC 2231 filename"""
    n = _n(20000, scale)
    out = [_head("attachments", ctype=b'multipart/mixed; boundary="B"'), CRLF]
    for i in range(n):
        name = b"%08d-" % i + b"a" * 180 + b".pdf"
        out.append(b"--B\r\nContent-Type: application/octet-stream\r\n"
                   b"Content-Disposition: attachment;\r\n filename*=UTF-8''" + name +
                   b"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n")
    out.append(b"--B--\r\n")
    return b"".join(out)


def boundary_70(scale=1.0):
    """70-byte boundaries that differ in their last byte only, 100,000
    delimiter-like lines"""
    n = _n(100000, scale)
    b = b"=" * 69 + b"A"
    near = b"--" + b"=" * 69 + b"B\r\nx\r\n"
    return (_head("boundaries", ctype=b'multipart/mixed; boundary="' + b + b'"') + CRLF +
            b"--" + b + b"\r\nContent-Type: text/plain\r\n\r\n" + near * n + b"--" + b + b"--\r\n")


def ctype_params(scale=1.0):
    """a Content-Type with 100,000 parameters (RFC 2231 continuations)"""
    n = _n(100000, scale)
    params = b"".join(b";\r\n name*%d*=%%41%%42%%43" % i for i in range(n))
    return _head("params", ctype=b"application/octet-stream" + params +
                 b"\r\nContent-Disposition: attachment" + params.replace(b"name", b"filename")) + \
        CRLF + b"AAAA\r\n"


# --- header section ----------------------------------------------------

def many_headers(scale=1.0):
    """100,000 header fields"""
    n = _n(100000, scale)
    extra = [b"X-Filler-%d: value %d" % (i, i) for i in range(n)]
    return _head("headers", extra=extra) + CRLF + b"body\r\n"


def many_received(scale=1.0):
    """20,000 Received fields"""
    n = _n(20000, scale)
    extra = [b"Received: from h%d.example.org (h%d.example.org [192.0.2.%d])\r\n"
             b"\tby mx.example.net with ESMTP id %d; Mon, 02 Jan 2023 10:00:00 +0000"
             % (i, i, i % 250 + 1, i) for i in range(n)]
    return _head("received", extra=extra) + CRLF + b"body\r\n"


def rfc822_headers(scale=1.0):
    """a message/rfc822 part whose own header has 300,000 fields"""
    n = _n(300000, scale)
    inner = b"".join(b"X-F%d: v\r\n" % i for i in range(n)) + b"Subject: inner\r\n\r\nbody\r\n"
    return (_head("forward", ctype=b'multipart/mixed; boundary="B"') + CRLF +
            b"--B\r\nContent-Type: text/plain\r\n\r\nforwarded\r\n"
            b"--B\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"--B--\r\n")


def huge_header(scale=1.0):
    """one 10 MB header field folded into 78-byte lines"""
    size = _n(10 << 20, scale)
    line = b" " + b"word " * 15
    n = size // len(line)
    return _head("huge header", extra=[b"X-Huge:" + (CRLF.join([line] * n))]) + CRLF + b"body\r\n"


def huge_subject_2047(scale=1.0):
    """Subject and From made of 100,000 RFC 2047 encoded words"""
    n = _n(100000, scale)
    ew = b" =?UTF-8?B?w6nDqcOp?="
    subj = CRLF.join([ew] * n)
    frm = b"From: " + CRLF.join([b" =?ISO-8859-1?Q?=E9t=E9?="] * n) + b" <x@example.org>"
    h = _head(subj).replace(b"From: Bomb <bomb@example.org>", frm)
    return h + CRLF + b"body\r\n"


def address_flood(scale=1.0):
    """To: with 200,000 addresses and nested comments"""
    n = _n(200000, scale)
    to = b"To: " + b",\r\n ".join(b"u%d (c (c (c))) <u%d@example.net>" % (i, i) for i in range(n))
    return _head("addresses").replace(b"To: rcpt@example.net", to) + CRLF + b"body\r\n"


def nested_comments(scale=1.0):
    """From: with 200,000 nested comment parentheses"""
    n = _n(200000, scale)
    frm = b"From: " + b"(" * n + b")" * n + b" x@example.org"
    return _head("comments").replace(b"From: Bomb <bomb@example.org>", frm) + CRLF + b"body\r\n"


# --- bodies ------------------------------------------------------------

def long_line(scale=1.0):
    """a 40 MB text body without a newline"""
    size = _n(40 << 20, scale)
    return _head("long line") + CRLF + (b"abcdefgh" * (size // 8))


def long_word(scale=1.0):
    """a 40 MB text body of one token (no space, no newline)"""
    size = _n(40 << 20, scale)
    return _head("long word") + CRLF + (b"a" * size)


def base64_noline(scale=1.0):
    """a 30 MB (decoded) base64 attachment on one line"""
    size = _n(30 << 20, scale)
    data = base64.b64encode(os.urandom(1 << 20) * (size >> 20 or 1))
    return (_head("b64", ctype=b'multipart/mixed; boundary="B"') + CRLF +
            b"--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"data.bin\"\r\n\r\n" + data + b"\r\n--B--\r\n")


def qp_softbreaks(scale=1.0):
    """quoted-printable text of 10,000,000 soft line breaks"""
    n = _n(10000000, scale)
    return (_head("qp", extra=[b"Content-Transfer-Encoding: quoted-printable"]) + CRLF +
            b"a=\r\n" * n)


def charset_expand(scale=1.0):
    """40 MB of 0x80 bytes as windows-1252 HTML: 120 MB of euro signs in UTF-8"""
    n = _n(40_000_000 // 78, scale)
    return (_head("euro", ctype=b"text/html; charset=windows-1252",
                  extra=[b"Content-Transfer-Encoding: 8bit"]) + CRLF + (b"\x80" * 76 + CRLF) * n)


def text_uris(scale=1.0):
    """a text part with 1,000,000 distinct URIs"""
    n = _n(1000000, scale)
    body = b"".join(b"http://h%d.example.com/p%d\r\n" % (i, i) for i in range(n))
    return _head("uris") + CRLF + body


# --- HTML --------------------------------------------------------------

def _html(subject, body):
    return _head(subject, ctype=b"text/html; charset=utf-8") + CRLF + body


def html_nested(scale=1.0):
    """1,000,000 nested tags"""
    n = _n(1000000, scale)
    return _html("html nested", b"<html><body>" + b"<div><b>" * (n // 2) + b"deep" +
                 b"</b></div>" * (n // 2) + b"</body></html>\r\n")


def html_attr(scale=1.0):
    """one 20 MB attribute value, never closed"""
    size = _n(20 << 20, scale)
    return _html("html attr", b'<html><body><a title="' + b"x" * size + b'>t</a></body></html>\r\n')


def html_unclosed(scale=1.0):
    """1,000,000 '<' that open tags never closed"""
    n = _n(1000000, scale)
    return _html("html unclosed", b"<html><body>" + b"<a " * n + b"\r\n")


def html_comment(scale=1.0):
    """1,000,000 comment openers"""
    n = _n(1000000, scale)
    return _html("html comment", b"<html><body>" + b"<!-- x " * n + b"\r\n")


def html_decl(scale=1.0):
    """1,000,000 declaration and processing-instruction openers, no '>'"""
    n = _n(1000000, scale)
    return _html("html decl", b"<html><body>" + b"<!x <?y " * (n // 2) + b"\r\n")


def html_links(scale=1.0):
    """1,000,000 <a href> to distinct hosts (URI bomb)"""
    n = _n(1000000, scale)
    body = b"".join(b'<a href="http://h%d.example.com/">l</a>\r\n' % i for i in range(n))
    return _html("html links", b"<html><body>" + body + b"</body></html>\r\n")


def html_entities(scale=1.0):
    """5,000,000 character references"""
    n = _n(5000000, scale)
    return _html("html entities", b"<html><body>" + b"&amp;&#x41;" * (n // 2) + b"</body></html>\r\n")


def html_script(scale=1.0):
    """a <script> and a <style> never closed, 10 MB each"""
    size = _n(10 << 20, scale)
    return _html("html script", b"<html><body><script>" + b"var a=1;" * (size // 8) +
                 b"<style>" + b"p{x:y}" * (size // 6) + b"\r\n")


# --- archives ----------------------------------------------------------

def _attach(subject, name, data, ctype=b"application/octet-stream"):
    return (_head(subject, ctype=b'multipart/mixed; boundary="B"') + CRLF +
            b"--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            b"--B\r\nContent-Type: " + ctype + b"\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"" + name.encode() + b"\"\r\n\r\n" +
            _b64lines(data) + b"\r\n--B--\r\n")


class _Zeros(io.RawIOBase):
    """n zero bytes as a stream, without holding them"""

    def __init__(self, n):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def _zip_zeros(files):
    """a zip of (name, size) entries of zeros, deflated at level 9"""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, size in files:
            zi = zipfile.ZipInfo(name, date_time=(2023, 1, 2, 10, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            with z.open(zi, "w", force_zip64=True) as f:
                src = _Zeros(size)
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    f.write(chunk)
    return buf.getvalue()


def zip_zeros(scale=1.0):
    """a zip holding 4 GB of zeros in four entries (about 4 MB)"""
    gb = _n(1 << 30, scale)
    return _attach("zip bomb", "bomb.zip", _zip_zeros([("z%d.bin" % i, gb) for i in range(4)]))


def zip_nested(scale=1.0):
    """zips in zips, 10 deep, the innermost 1 GB of zeros"""
    size = _n(1 << 30, scale)
    data = _zip_zeros([("zeros.bin", size)])
    for i in range(9):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for k in range(4):
                z.writestr("l%d-%d.zip" % (i, k), data)
        data = buf.getvalue()
    return _attach("nested zip", "nested.zip", data)


def zip_entries(scale=1.0):
    """a zip with 200,000 empty entries"""
    n = _n(200000, scale)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i in range(n):
            z.writestr(zipfile.ZipInfo("%d" % i, date_time=(2023, 1, 2, 10, 0, 0)), b"")
    return _attach("zip entries", "many.zip", buf.getvalue())


def zip_overlap(scale=1.0, size=100 << 20, ext=""):
    """a non-recursive zip bomb: 20,000 central-directory entries (one name)
    that all point at the same deflated 100 MB of zeros"""
    n = _n(20000, scale, lo=2)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    kernel = b"".join(comp.compress(bytes(1 << 20)) for _ in range(size >> 20)) + comp.flush()
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(bytes(1 << 20), crc)
    import struct
    name = b"k" + ext.encode()    # libarchive wants the local name to match
    local = struct.pack("<IHHHHHIIIHH", 0x04034b50, 20, 0, 8, 0, 0, crc, len(kernel), size,
                        len(name), 0) + name + kernel
    cd = []
    for i in range(n):
        nm = name
        cd.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 20, 20, 0, 8, 0, 0, crc, len(kernel),
                              size, len(nm), 0, 0, 0, 0, 0, 0) + nm)
    cdb = b"".join(cd)
    eocd = struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, min(n, 0xffff), min(n, 0xffff), len(cdb),
                       len(local), 0)
    return _attach("overlap zip", "overlap.zip", local + cdb + eocd)


def zip_overlap_nested(scale=1.0):
    """the same with 10,000 entries named .zip of 20 MB each: every one is
    a nested archive small enough to be unpacked and looked into"""
    return zip_overlap(scale / 2, size=20 << 20, ext=".zip")


def _gz_member(data):
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def targz_zeros(scale=1.0):
    """a tar.gz of 20 entries of 1 GB of zeros each (about 20 MB): built
    of gzip members (a gzip stream may be several), the one of 64 MiB of
    zeros repeated, so it costs little to make"""
    size = max(1, _n(1 << 30, scale) >> 26) << 26
    zeros = _gz_member(bytes(64 << 20))
    out = []
    for i in range(20):
        ti = tarfile.TarInfo("z%d.bin" % i)
        ti.size = size
        out.append(_gz_member(ti.tobuf(tarfile.USTAR_FORMAT)))
        out.append(zeros * (size >> 26))
    out.append(_gz_member(bytes(1024)))        # end of archive
    return _attach("tgz bomb", "bomb.tar.gz", b"".join(out))


def gz_zeros(scale=1.0):
    """a bare .gz of 10 GB of zeros (about 10 MB)"""
    size = _n(10 << 30, scale)
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 22)
    parts = [comp.compress(chunk) for _ in range(size >> 22)]
    parts.append(comp.flush())
    return _attach("gz bomb", "zeros.gz", b"".join(parts))


def tar_entries(scale=1.0):
    """a tar of 20,000 empty entries with long names (PAX headers)"""
    n = _n(20000, scale)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for i in range(n):
            ti = tarfile.TarInfo("d/" + "n" * 150 + "%d" % i)
            t.addfile(ti, io.BytesIO(b""))
    return _attach("tar entries", "many.tar", buf.getvalue())



# --- formats read since session 16: compress (.Z), lz4, xar, rpm, LHA,
# cpio, ar.  Written here byte by byte (no tool has to be installed) ---

def _lzw_zeros(prefix, zeros):
    """a compress (.Z) stream (16-bit codes, block mode) of the bytes of
    prefix then zeros zero bytes.  Any code up to the next free one is a
    valid one for the decoder: after a literal 0, the next free code each
    time (the KwKwK case) stands for one zero more than the last, to 65,280;
    once the table is full that longest code is repeated: 2 bytes for
    65,280 zeros"""
    codes = list(prefix)
    lengths = {}                    # code -> run of zeros it stands for
    # each code after the first adds an entry: the prefix's took 257 on
    free, left, run = 257 + len(prefix), zeros, 0
    if left:
        codes.append(0)
        left -= 1
        run = 1
        while left > run and free < 65536:
            run += 1
            lengths[free] = run
            codes.append(free)
            free += 1
            left -= run
        longest = max(lengths) if lengths else None
        by_length = {v: k for k, v in lengths.items()}
        by_length[1] = 0
        if longest is not None:
            big = lengths[longest]
            codes.extend([longest] * (left // big))
            left %= big
        if left:
            codes.append(by_length[left])
    # the decoder's code width: 9 bits, one more each time the next free
    # code passes the width (libarchive skips no padding there)
    out, acc, nacc = bytearray(b"\x1f\x9d\x90"), 0, 0
    bits, section_end, free, old = 9, 511, 257, -1
    for c in codes:
        acc |= c << nacc
        nacc += bits
        while nacc >= 8:
            out.append(acc & 0xff)
            acc >>= 8
            nacc -= 8
        if free < 65536 and old >= 0:
            free += 1
        if free > section_end:
            bits += 1
            section_end = 65536 if bits == 16 else (1 << bits) - 1
        old = c
    if nacc:
        out.append(acc & 0xff)
    return bytes(out)


def _tar_head(name, size):
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 1672653600
    return ti.tobuf(tarfile.GNU_FORMAT)     # base-256 sizes past 8 GB


def tarz_zeros(scale=1.0):
    """a tar.Z (compress, LZW) of one entry of 512 GB of zeros (16 MB):
    LZW of 16-bit codes gives 65,280 zeros for 2 bytes"""
    size = _n(512 << 30, scale) // 512 * 512
    return _attach("tar.Z bomb", "bomb.tar.Z", _lzw_zeros(_tar_head("z.bin", size), size + 1024))


def _xxh32(data, seed=0):
    """xxHash32 of a few bytes (the LZ4 frame descriptor's checksum)"""
    p1, p2, p3, p4, p5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
    m = 0xffffffff

    def rotl(x, r):
        return ((x << r) | (x >> (32 - r))) & m
    assert len(data) < 16
    h = (seed + p5 + len(data)) & m
    i = 0
    while i + 4 <= len(data):
        h = (rotl((h + int.from_bytes(data[i:i + 4], "little") * p3) & m, 17) * p4) & m
        i += 4
    for b in data[i:]:
        h = (rotl((h + b * p5) & m, 11) * p1) & m
    h ^= h >> 15
    h = (h * p2) & m
    h ^= h >> 13
    h = (h * p3) & m
    return h ^ (h >> 16)


def _lz4_zeros(prefix, zeros):
    """an LZ4 frame: prefix as a stored block, then zeros in 4 MiB blocks
    (one literal, one match of offset 1: about 16 KB each), the rest stored"""
    import struct
    desc = bytes([0x60, 0x70])              # version 1, independent blocks; 4 MiB blocks
    out = [b"\x04\x22\x4d\x18", desc, bytes([(_xxh32(desc) >> 8) & 0xff])]

    def stored(b):
        return struct.pack("<I", len(b) | 0x80000000) + b
    if prefix:
        out.append(stored(prefix))
    blk = 4 << 20
    match = blk - 1 - 5 - 4                 # past the 4 the token's nibble counts
    seq = bytes([0x1f, 0]) + b"\x01\x00"
    seq += b"\xff" * ((match - 15) // 255) + bytes([(match - 15) % 255])
    seq += bytes([0x50]) + bytes(5)         # the last 5 bytes: literals
    one = struct.pack("<I", len(seq)) + seq
    out.append(one * (zeros // blk))
    if zeros % blk:
        out.append(stored(bytes(zeros % blk)))
    out.append(bytes(4))                    # end mark
    return b"".join(out)


def tarlz4_zeros(scale=1.0):
    """a tar.lz4 of one entry of 6 GB of zeros (25 MB: LZ4 matches are
    counted in bytes of 255, so zeros shrink 250 times at most)"""
    size = max(1, _n(6 << 30, scale) >> 22) << 22
    return _attach("tar.lz4 bomb", "bomb.tar.lz4", _lz4_zeros(_tar_head("z.bin", size), size + 1024))


def targz_entry(scale=1.0):
    """a tar.gz of one entry of 16 GB of zeros (16 MB): skipping the rest
    of an entry decompresses it"""
    size = max(1, _n(16 << 30, scale) >> 26) << 26
    zeros = _gz_member(bytes(64 << 20))
    return _attach("tgz entry", "one.tar.gz", _gz_member(_tar_head("z.bin", size)) + zeros * (size >> 26) +
                   _gz_member(bytes(1024)))


def _zlib_zeros(mib):
    """a zlib stream of mib MiB of zeros, made of one compressed MiB
    repeated (a full flush makes each the same bytes)"""
    c = zlib.compressobj(9)
    head = c.compress(b"")
    mid = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.flush()
    adler = (((mib << 20) % 65521) << 16) | 1       # zeros leave a at 1
    return head + mid * mib + tail[:-4] + adler.to_bytes(4, "big")


def _xar(toc, heap=b""):
    """a xar archive: the TOC (XML) zlib-compressed, no checksum, then heap"""
    import struct
    ztoc = zlib.compress(toc, 9)
    return struct.pack(">4sHHQQI", b"xar!", 28, 1, len(ztoc), len(toc), 0) + ztoc + heap


def _xar_file(i, name, data=b""):
    return (b'<file id="%d"><name>%s</name><type>file</type>%s</file>' % (i, name, data))


def xar_zeros(scale=1.0):
    """a xar whose 1,000 entries all point at one 4 GB zlib stream of zeros
    in the heap (4 MB): each is unpacked anew"""
    mib, n = _n(4096, scale), _n(1000, scale, lo=2)
    heap = _zlib_zeros(mib)
    data = (b'<data><length>%d</length><offset>0</offset><size>%d</size>'
            b'<encoding style="application/x-gzip"/></data>' % (len(heap), mib << 20))
    toc = (b'<?xml version="1.0" encoding="UTF-8"?><xar><toc>' +
           b"".join(_xar_file(i + 1, b"z%d.bin" % i, data) for i in range(n)) + b"</toc></xar>")
    return _attach("xar bomb", "bomb.xar", _xar(toc, heap))


def xar_toc_entries(scale=1.0):
    """a xar whose table of contents lists 1,000,000 empty files (50 MB of
    XML in 1 MB): libarchive reads the whole TOC before the first entry"""
    n = _n(1000000, scale)
    toc = (b'<?xml version="1.0" encoding="UTF-8"?><xar><toc>' +
           b"".join(_xar_file(i + 1, b"f%d.txt" % i) for i in range(n)) + b"</toc></xar>")
    return _attach("xar toc", "many.xar", _xar(toc))


def xar_toc_deep(scale=1.0):
    """a xar TOC of directories nested 100,000 deep"""
    n = _n(100000, scale)
    toc = (b'<?xml version="1.0" encoding="UTF-8"?><xar><toc>' +
           b"".join(b'<file id="%d"><name>d</name><type>directory</type>' % (i + 1) for i in range(n)) +
           b"</file>" * n + b"</toc></xar>")
    return _attach("xar deep", "deep.xar", _xar(toc))


def xar_toc_name(scale=1.0):
    """a xar TOC whose one file name is 200 MB long (in 0.2 MB)"""
    size = _n(200 << 20, scale)
    toc = (b'<?xml version="1.0" encoding="UTF-8"?><xar><toc>' +
           _xar_file(1, b"a" * size + b".exe") + b"</toc></xar>")
    return _attach("xar name", "name.xar", _xar(toc))


def xar_toc_claims(scale=1.0):
    """a xar whose TOC gives 50 files of 2**63 - 1 bytes (length and size)
    on a 64 MiB zlib stream of zeros, then evil.exe"""
    n = _n(50, scale)
    big = 2 ** 63 - 1
    data = (b'<data><length>%d</length><offset>0</offset><size>%d</size>'
            b'<encoding style="application/x-gzip"/></data>' % (big, big))
    toc = (b'<?xml version="1.0" encoding="UTF-8"?><xar><toc>' +
           b"".join(_xar_file(i + 1, b"z%d.bin" % i, data) for i in range(n)) +
           _xar_file(n + 1, b"evil.exe") + b"</toc></xar>")
    return _attach("xar claims", "claims.xar", _xar(toc, _zlib_zeros(64)))


def _cpio_newc(entries, nlink=1):
    """a cpio (newc) of (name, data) entries; nlink > 1 makes every entry
    a hard link libarchive has to remember"""
    out = []
    for i, (name, data) in enumerate(list(entries) + [("TRAILER!!!", b"")]):
        nm = name.encode() + b"\0"
        trailer = name == "TRAILER!!!"
        h = b"070701" + b"".join(b"%08X" % v for v in (
            0 if trailer else i + 1, 0o100644, 0, 0, 1 if trailer else nlink, 1672653600,
            len(data), 0, 0, 0, 0, len(nm), 0))
        pad = (-(len(h) + len(nm))) % 4
        out += [h, nm, bytes(pad), data, bytes((-len(data)) % 4)]
    return b"".join(out)


def cpio_entries(scale=1.0):
    """a cpio of 200,000 empty files, each a hard link (nlink 2) whose
    other name never comes: libarchive keeps a list of them"""
    n = _n(200000, scale)
    return _attach("cpio entries", "many.cpio",
                   _cpio_newc((("d/f%06d.txt" % i, b"") for i in range(n)), nlink=2))


def _rpm(payload):
    """an RPM: the lead, one empty header, the payload (compressed cpio)"""
    lead = b"\xed\xab\xee\xdb\x03\x00\x00\x00\x00\x01" + b"bomb-1-1".ljust(66, b"\0") + \
        b"\x00\x01\x00\x05" + bytes(16)
    return lead + b"\x8e\xad\xe8\x01" + bytes(12) + payload


def rpm_entries(scale=1.0):
    """an RPM whose gzipped cpio payload holds 200,000 files (the names
    of a big package, 1 MB)"""
    n = _n(200000, scale)
    cpio = _cpio_newc(("./usr/share/doc/f%06d.txt" % i, b"") for i in range(n))
    return _attach("rpm entries", "many.rpm", _rpm(_gz_member(cpio)), ctype=b"application/x-rpm")


def rpm_zeros(scale=1.0):
    """an RPM whose bzip2'd cpio payload holds one 4 GB file of zeros in
    50 KB (bzip2 streams of 64 MiB, one after the other)"""
    import bz2
    size = max(1, _n((4 << 30) - (64 << 20), scale) >> 26) << 26
    z = bz2.compress(bytes(64 << 20), 9)
    nm = b"./usr/bin/zeros\0"
    h = b"070701" + b"".join(b"%08X" % v for v in (1, 0o100755, 0, 0, 1, 1672653600, size,
                                                      0, 0, 0, 0, len(nm), 0))
    first = h + nm + bytes((-(len(h) + len(nm))) % 4)
    payload = bz2.compress(first) + z * (size >> 26) + bz2.compress(_cpio_newc([]))
    return _attach("rpm bomb", "zeros.rpm", _rpm(payload), ctype=b"application/x-rpm")


def _crc16_arc(data):
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xa001 if crc & 1 else crc >> 1
    return crc


def _lha0(name, data=b""):
    """one LHA level-0 entry, stored (-lh0-)"""
    import struct
    nm = name.encode()
    body = (b"-lh0-" + struct.pack("<IIIBBB", len(data), len(data), 0x56420000, 0x20, 0, len(nm)) +
            nm + struct.pack("<H", _crc16_arc(data)))
    return bytes([len(body), sum(body) & 0xff]) + body + data


def _lh5_spaces(blocks):
    """an lh5 stream of blocks of 65,535 symbols each, whose three Huffman
    tables are single codes (which then take no bit at all): every symbol
    is the match of 256 bytes at distance 1, of the spaces the window
    starts with: 7 bytes for 16 MB"""
    acc, n = 0, 0
    for _ in range(blocks):
        # block size; code-length table: none, one code (0); literal
        # table: none, one code (509: a match of 256); position: none, 0
        for v, w in ((65535, 16), (0, 5), (0, 5), (0, 9), (509, 9), (0, 4), (0, 4)):
            acc, n = acc << w | v, n + w
    acc <<= (-n) % 8
    return acc.to_bytes((n + 7) // 8, "big") + bytes(8)     # the decoder reads ahead


def lha_zeros(scale=1.0):
    """an LHA of 8 entries of 4 GB of spaces each (14 KB): lh5 with
    single-code tables decodes 2.5 million bytes per byte"""
    import struct
    n = _n(8, scale)
    comp = _lh5_spaces(255)
    out = []
    for i in range(n):
        nm = b"s%d.txt" % i
        body = (b"-lh5-" + struct.pack("<IIIBBB", len(comp), 255 * 65535 * 256, 0x56420000, 0x20, 0, len(nm)) +
                nm + struct.pack("<H", 0))
        out.append(bytes([len(body), sum(body) & 0xff]) + body + comp)
    return _attach("lha bomb", "bomb.lzh", b"".join(out) + b"\0")


def lha_entries(scale=1.0):
    """an LHA of 200,000 empty files"""
    n = _n(200000, scale)
    return _attach("lha entries", "many.lzh", b"".join(_lha0("f%06d.txt" % i) for i in range(n)) + b"\0")


def ar_entries(scale=1.0):
    """an ar (a .deb's container) of 200,000 two-byte members"""
    n = _n(200000, scale)
    out = [b"!<arch>\n"]
    for i in range(n):
        out.append(b"%-16s%-12d%-6d%-6d%-8s%-10d`\n" % (b"m%d/" % i, 1672653600, 0, 0, b"100644", 2) + b"x\n")
    return _attach("ar entries", "many.a", b"".join(out))


def nested_formats(scale=1.0):
    """the formats inside each other: an ar of 2 cpios, each of 2 xars,
    each listing 8 names of the one tar.Z in its heap, of 32 GB of zeros
    (3 levels are opened, attach_archive_depth: 32 tar.Z bombs)"""
    size = _n(32 << 30, scale) // 512 * 512
    tarz = _lzw_zeros(_tar_head("z.bin", size), size + 1024)
    toc = (b'<?xml version="1.0" encoding="UTF-8"?><xar><toc>' + b"".join(_xar_file(
        i + 1, b"t%d.tar.Z" % i,
        b'<data><length>%d</length><offset>0</offset><size>%d</size>'
        b'<encoding style="application/octet-stream"/></data>' % (len(tarz), len(tarz)))
        for i in range(8)) + b"</toc></xar>")
    xar = _xar(toc, tarz)
    cpio = _cpio_newc(("x%d.xar" % i, xar) for i in range(2))
    out = [b"!<arch>\n"]
    for i in range(2):
        out.append(b"%-16s%-12d%-6d%-6d%-8s%-10d`\n" % (b"c%d.cpio/" % i, 1672653600, 0, 0, b"100644",
                                                        len(cpio)) + cpio + b"\n" * (len(cpio) % 2))
    return _attach("nested formats", "nested.a", b"".join(out))


# name -> (builder, what it is); the order is the benchmark's
BOMBS = {
    "nest_multipart": nest_multipart,
    "nest_rfc822": nest_rfc822,
    "many_parts": many_parts,
    "tiny_parts": tiny_parts,
    "many_attachments": many_attachments,
    "boundary_70": boundary_70,
    "ctype_params": ctype_params,
    "many_headers": many_headers,
    "many_received": many_received,
    "rfc822_headers": rfc822_headers,
    "huge_header": huge_header,
    "huge_subject_2047": huge_subject_2047,
    "address_flood": address_flood,
    "nested_comments": nested_comments,
    "long_line": long_line,
    "long_word": long_word,
    "base64_noline": base64_noline,
    "qp_softbreaks": qp_softbreaks,
    "charset_expand": charset_expand,
    "text_uris": text_uris,
    "html_nested": html_nested,
    "html_attr": html_attr,
    "html_unclosed": html_unclosed,
    "html_comment": html_comment,
    "html_decl": html_decl,
    "html_links": html_links,
    "html_entities": html_entities,
    "html_script": html_script,
    "zip_zeros": zip_zeros,
    "zip_nested": zip_nested,
    "zip_entries": zip_entries,
    "zip_overlap": zip_overlap,
    "zip_overlap_nested": zip_overlap_nested,
    "targz_zeros": targz_zeros,
    "gz_zeros": gz_zeros,
    "tar_entries": tar_entries,
    "targz_entry": targz_entry,
    "tarz_zeros": tarz_zeros,
    "tarlz4_zeros": tarlz4_zeros,
    "xar_zeros": xar_zeros,
    "xar_toc_entries": xar_toc_entries,
    "xar_toc_deep": xar_toc_deep,
    "xar_toc_name": xar_toc_name,
    "xar_toc_claims": xar_toc_claims,
    "rpm_entries": rpm_entries,
    "rpm_zeros": rpm_zeros,
    "cpio_entries": cpio_entries,
    "lha_zeros": lha_zeros,
    "lha_entries": lha_entries,
    "ar_entries": ar_entries,
    "nested_formats": nested_formats,
}


# --- running one scan --------------------------------------------------

def scan_args(tmp, filters="attachments rules bayes", extra=()):
    """-o settings of a scan with the content filters, state under tmp"""
    here = os.path.dirname(os.path.abspath(__file__))
    shipped = os.path.abspath(os.path.join(here, "..", "..", "rules", "cf"))
    o = [("filters", filters), ("dns_forwarder", "127.0.0.1@9"), ("log", "stderr"),
         ("log_level", "notice"), ("rules_files", shipped),
         ("rules_cache_dir", os.path.join(tmp, "rules-cache")),
         ("store_path", os.path.join(tmp, "store.lmdb"))] + list(extra)
    args = []
    for k, v in o:
        args += ["-o", "%s=%s" % (k, v)]
    return args


_TIME_RSS = re.compile(rb"Maximum resident set size \(kbytes\): (\d+)")
_TIME_WALL = re.compile(rb"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([0-9:.]+)")


def run_scan(mw_bin, path, args, timeout=300):
    """`mailwarden scan` of path under /usr/bin/time -v: a dict with rc,
    wall (s), rss (bytes), result (parsed JSON or None), stderr"""
    t0 = time.monotonic()
    r = subprocess.run(["/usr/bin/time", "-v", mw_bin, "scan"] + args + [path],
                       capture_output=True, timeout=timeout)
    wall = time.monotonic() - t0
    m = _TIME_RSS.search(r.stderr)
    try:
        res = json.loads(r.stdout)
    except ValueError:
        res = None
    return {"rc": r.returncode, "wall": wall, "rss": int(m.group(1)) * 1024 if m else 0,
            "result": res, "stderr": r.stderr.decode(errors="replace")}


def write_tmp(data, d=None):
    fd, p = tempfile.mkstemp(suffix=".eml", dir=d)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return p
