"""avlib.py - what the antivirus tests are made of: the test signature
database (tests/data/av/db, copied into a temporary directory so a test
may change it), messages that wrap EICAR, the custom pattern and the files
of Debian's clamav-testfiles in the ways mail carries malware, clamscan as
the reference, and Debian's clamd run as a test process (own config, unix
socket in the test's directory, foreground)."""

import base64
import binascii
import gzip
import io
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import zipfile

from mwlib import CRLF, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
DB_SRC = os.path.normpath(os.path.join(HERE, "..", "data", "av", "db"))
TESTFILES = "/usr/share/clamav-testfiles"
CLAMD = "/usr/sbin/clamd"
CLAMSCAN = "/usr/bin/clamscan"

# The EICAR test string (68 bytes), built so this file itself is no sample.
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
CUSTOM = b"MAILFILTER-CUSTOM-AV-TEST-PATTERN-0123456789-NOT-A-VIRUS"
EICAR_NAME = "Custom.EICAR.NDB-1.UNOFFICIAL"
CLAM_NAME = "Custom.ClamAVTestFile.HDB-1.UNOFFICIAL"
CUSTOM_NAME = "Custom.TestPattern.NDB-1.UNOFFICIAL"


def copy_db(dest):
    os.makedirs(dest, exist_ok=True)
    for f in os.listdir(DB_SRC):
        shutil.copy(os.path.join(DB_SRC, f), os.path.join(dest, f))
    return dest


def ndb_line(name, pattern):
    """A .ndb signature matching pattern (bytes) anywhere in any file."""
    return "%s:0:*:%s\n" % (name, binascii.hexlify(pattern).decode())


# --- messages --------------------------------------------------------------

def _hdr(subject, extra=()):
    h = ["From: sender@example.org", "To: rcpt@example.net", "Subject: " + subject,
         "Message-ID: <%08x@av.test>" % random.getrandbits(32),
         "Date: Mon, 02 Jan 2023 10:00:00 +0000", "MIME-Version: 1.0"]
    return [x.encode() for x in h + list(extra)]


def _b64(data):
    s = base64.b64encode(data)
    return CRLF.join(s[i:i + 76] for i in range(0, len(s), 76))


def crlf(data):
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def plain(subject="clean", body=b"Hello,\r\n\r\nnothing to see here.\r\n", extra=()):
    return CRLF.join(_hdr(subject, extra)) + CRLF + CRLF + body


def with_attachment(data, filename, ctype="application/octet-stream", subject="attachment",
                    encoding="base64"):
    """A multipart/mixed message: a text part, then data as an attachment."""
    b = ("b%08x" % random.getrandbits(32)).encode()
    if encoding == "base64":
        enc = _b64(data)
    elif encoding == "uuencode":
        enc = b"begin 644 " + filename.encode() + CRLF
        for i in range(0, len(data), 45):
            enc += binascii.b2a_uu(data[i:i + 45]).rstrip(b"\n") + CRLF
        enc += b"`" + CRLF + b"end"
    else:
        raise ValueError(encoding)
    head = _hdr(subject, ['Content-Type: multipart/mixed; boundary="%s"' % b.decode()])
    parts = [
        b"--" + b, b"Content-Type: text/plain; charset=us-ascii", b"",
        b"See the attachment.", b"",
        b"--" + b,
        b"Content-Type: " + ctype.encode() + b'; name="' + filename.encode() + b'"',
        b'Content-Disposition: attachment; filename="' + filename.encode() + b'"',
        b"Content-Transfer-Encoding: " + (b"base64" if encoding == "base64" else b"x-uuencode"),
        b"", enc, b"--" + b + b"--", b""]
    return CRLF.join(head) + CRLF + CRLF + CRLF.join(parts)


def uuencoded_body(data, filename, subject="uuencoded"):
    """The old way: a uuencoded block inside a plain text body."""
    enc = b"begin 644 " + filename.encode() + CRLF
    for i in range(0, len(data), 45):
        enc += binascii.b2a_uu(data[i:i + 45]).rstrip(b"\n") + CRLF
    enc += b"`" + CRLF + b"end" + CRLF
    return plain(subject, b"Here it is:" + CRLF + CRLF + enc)


def zip_of(files):
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(name, data)
    return bio.getvalue()


def targz_of(files):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w:gz") as t:
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
    return bio.getvalue()


def nested_rfc822(inner, subject="forwarded"):
    b = ("n%08x" % random.getrandbits(32)).encode()
    head = _hdr(subject, ['Content-Type: multipart/mixed; boundary="%s"' % b.decode()])
    parts = [b"--" + b, b"Content-Type: text/plain", b"", b"Forwarded message below.", b"",
             b"--" + b, b"Content-Type: message/rfc822", b"Content-Disposition: inline", b"",
             inner, b"--" + b + b"--", b""]
    return CRLF.join(head) + CRLF + CRLF + CRLF.join(parts)


def mbox_to_message(data):
    """An mbox file with one message -> the message, CRLF line ends."""
    if data.startswith(b"From "):
        data = data.split(b"\n", 1)[1]
    return crlf(data)


def built_cases():
    """{name: (message bytes, expected detection name or None)} built here."""
    eicar_zip = zip_of([("eicar.com", EICAR)])
    c = {
        "clean": (plain(), None),
        "clean-attachment": (with_attachment(b"just a report\r\n" * 40, "report.txt",
                                             "text/plain"), None),
        "eicar-inline-body": (plain("inline", b"Here:\r\n" + EICAR + b"\r\n"), EICAR_NAME),
        "eicar-base64": (with_attachment(EICAR, "eicar.com"), EICAR_NAME),
        "eicar-uuencoded-part": (with_attachment(EICAR, "eicar.com", encoding="uuencode"),
                                 EICAR_NAME),
        "eicar-uuencoded-body": (uuencoded_body(EICAR, "eicar.com"), EICAR_NAME),
        "eicar-zip": (with_attachment(eicar_zip, "files.zip", "application/zip"), EICAR_NAME),
        "eicar-targz": (with_attachment(targz_of([("dir/eicar.com", EICAR)]), "files.tar.gz",
                                        "application/gzip"), EICAR_NAME),
        "eicar-zip-in-zip": (with_attachment(zip_of([("inner.zip", eicar_zip)]), "outer.zip",
                                             "application/zip"), EICAR_NAME),
        "eicar-nested-rfc822": (nested_rfc822(with_attachment(EICAR, "eicar.com")), EICAR_NAME),
        "eicar-misleading-name": (with_attachment(EICAR, "quarterly-report.pdf",
                                                  "application/pdf"), EICAR_NAME),
        "custom-pattern": (with_attachment(b"header\r\n" + CUSTOM + b"\r\n", "notes.txt",
                                           "text/plain"), CUSTOM_NAME),
    }
    return c


def testfile_cases():
    """{name: message} for each file of Debian's clamav-testfiles: the mail
    files as they are, every other file as a base64 attachment."""
    out = {}
    for f in sorted(os.listdir(TESTFILES)):
        path = os.path.join(TESTFILES, f)
        with open(path, "rb") as fh:
            data = fh.read()
        if f in ("clam.mail", "clam.exe.mbox.base64", "clam.exe.mbox.uu"):
            out["testfiles/" + f] = mbox_to_message(data)
        else:
            out["testfiles/" + f] = with_attachment(data, f)
    return out


MAX_RECURSION = 25     # mailwarden's default av_max_recursion; clamd and clamscan get it too


def clamscan(db, paths):
    """{path: detection name or None} as clamscan says with database db and
    mailwarden's default limits."""
    r = subprocess.run([CLAMSCAN, "--no-summary", "--stdout", "--max-recursion=%d" % MAX_RECURSION,
                        "-d", db] + list(paths),
                       capture_output=True, timeout=120)
    out = {}
    for line in r.stdout.decode("utf-8", "replace").splitlines():
        path, _, verdict = line.rpartition(": ")
        if verdict.endswith(" FOUND"):
            out[path] = verdict[:-6]
        elif verdict == "OK":
            out[path] = None
    missing = [p for p in paths if p not in out]
    assert not missing, "clamscan gave no verdict for %s:\n%s" % (missing, r.stderr.decode())
    return out


# --- clamd -----------------------------------------------------------------

class Clamd:
    """Debian's clamd in the foreground with its own config: unix socket in
    tmpdir, the given database directory, no self-check, no TCP."""

    def __init__(self, tmpdir, db, extra=()):
        self.dir = str(tmpdir)
        os.makedirs(self.dir, exist_ok=True)
        self.db = db
        self.sock = os.path.join(self.dir, "clamd.sock")
        self.log = os.path.join(self.dir, "clamd.log")
        self.conf = os.path.join(self.dir, "clamd.conf")
        lines = ["LocalSocket %s" % self.sock, "Foreground yes",
                 "DatabaseDirectory %s" % db, "TemporaryDirectory %s" % self.dir,
                 "LogFile %s" % self.log, "LogTime yes", "SelfCheck 0",
                 "MaxThreads 4", "MaxRecursion %d" % MAX_RECURSION] + list(extra)
        if os.geteuid() == 0:
            lines.append("User root")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self, timeout=30):
        self.errf = open(os.path.join(self.dir, "clamd.out"), "wb")
        self.proc = subprocess.Popen([CLAMD, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self.errf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        ok = wait_until(lambda: self.proc.poll() is not None or self.ping(), timeout, 0.05)
        if not ok or self.proc.poll() is not None:
            log = self.log_text()
            self.stop()     # the caller gets no clamd to stop
            raise AssertionError("clamd did not start:\n%s" % log)
        return self

    def ping(self):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(1)
            s.connect(self.sock)
            s.sendall(b"zPING\0")
            r = s.recv(100)
            s.close()
            return r.startswith(b"PONG")
        except OSError:
            return False

    def log_text(self, tail=4000):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")[-tail:]
        except OSError:
            return ""

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self.errf.close()


def send(mw, content, rcpt="rcpt@example.net", timeout=15):
    """One transaction on a new connection; returns the final reply."""
    c = mw.client(timeout=timeout)
    try:
        c.ehlo()
        r = c.transaction("sender@example.org", [rcpt], content)
        return r["final"] if r.get("final") is not None else r["rcpt"][-1]
    finally:
        c.quit()


# --- signed messages (S/MIME made with Debian's openssl at test time) ------

def smime_identity(d):
    """(key, cert) of a throwaway self-signed S/MIME identity in directory d"""
    key, cert = os.path.join(str(d), "smime.key"), os.path.join(str(d), "smime.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=Alice/emailAddress=alice@example.org"],
                   check=True, capture_output=True, timeout=60)
    return key, cert


def smime_sign(d, ident, entity, opaque=True, stream=False):
    """a whole message: the MIME entity signed by ident with `openssl cms
    -sign`, as application/pkcs7-mime signed-data (opaque: the entity is
    inside the CMS object; stream: its BER form) or multipart/signed"""
    src = os.path.join(str(d), "entity-%08x.mime" % random.getrandbits(32))
    with open(src, "wb") as f:
        f.write(entity)
    p = subprocess.run(["openssl", "cms", "-sign", "-in", src, "-signer", ident[1], "-inkey", ident[0],
                        "-from", "alice@example.org", "-to", "rcpt@example.net", "-subject", "signed"]
                       + (["-nodetach"] if opaque else []) + (["-stream"] if stream else []),
                       check=True, capture_output=True, timeout=60)
    return crlf(p.stdout)


def entity(parts, boundary=None, text=b"Signed words." + CRLF):
    """a multipart/mixed MIME entity (no message header): a text part,
    then the parts given (each its header fields, a blank line, its body)"""
    b = (boundary or "e%08x" % random.getrandbits(32)).encode()
    out = b"Content-Type: multipart/mixed; boundary=\"" + b + b"\"" + CRLF + CRLF
    for p in [b"Content-Type: text/plain; charset=us-ascii" + CRLF + CRLF + text] \
            + list(parts):
        out += b"--" + b + CRLF + p + CRLF
    return out + b"--" + b + b"--" + CRLF


def file_part(data, filename, ctype="application/octet-stream"):
    return (b"Content-Type: " + ctype.encode() + b"; name=\"" + filename.encode() + b"\"" + CRLF +
            b"Content-Disposition: attachment; filename=\"" + filename.encode() + b"\"" + CRLF +
            b"Content-Transfer-Encoding: base64" + CRLF + CRLF + _b64(data) + CRLF)


def rfc822_part(inner, encoding=None, filename="forwarded.eml"):
    """a message/rfc822 part holding the message inner, as it is or (base64)
    encoded, which GMime then keeps as a leaf"""
    h = b"Content-Type: message/rfc822" + CRLF + \
        b"Content-Disposition: attachment; filename=\"" + filename.encode() + b"\"" + CRLF
    if encoding == "base64":
        return h + b"Content-Transfer-Encoding: base64" + CRLF + CRLF + _b64(inner) + CRLF
    return h + CRLF + inner + CRLF


def recase(msg, how, head_only=True):
    """msg with the names of its header fields recased by how (a function
    of the name): those of its own header section only, or of every
    header section in it (a line starting with a name and a colon)"""
    head, sep, body = msg.partition(b"\r\n\r\n")
    if not head_only:
        head, sep, body = msg, b"", b""
    head = re.sub(rb"(?m)^([A-Za-z][A-Za-z0-9-]*):", lambda m: how(m.group(1).decode()).encode() + b":", head)
    return head + sep + body


def alternate(name):
    """CoNtEnT-TyPe"""
    return "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(name))


def with_entity(ent, subject="wrapped"):
    """a message whose body is the MIME entity ent"""
    return CRLF.join(_hdr(subject)) + CRLF + ent


# --- OpenPGP signed messages (made with Debian's gpg at test time) --------

class Gpg:
    """a throwaway gpg home in directory d (under the test's tmp_path) with
    one ed25519 signing key; close() stops its agent"""

    def __init__(self, d):
        self.home = os.path.join(str(d), "gnupg")
        os.makedirs(self.home, mode=0o700, exist_ok=True)
        self.base = ["gpg", "--homedir", self.home, "--batch", "--quiet", "--no-tty"]
        subprocess.run(self.base + ["--passphrase", "", "--quick-gen-key", "alice@example.org",
                                    "ed25519", "sign", "1d"], check=True, capture_output=True, timeout=60)

    def sign(self, data, name="file", armor=False, algo=None):
        """`gpg --sign` of data as a file called name: an opaque signed
        message (a compressed packet holding the literal data, unless algo
        is "none"), armored or binary"""
        d = os.path.join(self.home, "..", "gpg-in-%08x" % random.getrandbits(32))
        os.makedirs(d)
        src = os.path.join(d, name)
        with open(src, "wb") as f:
            f.write(data)
        p = subprocess.run(self.base + ["--sign", "-o", "-"] + (["--armor"] if armor else [])
                           + (["--compress-algo", algo] if algo else []) + [src],
                           check=True, capture_output=True, timeout=60)
        shutil.rmtree(d)
        return p.stdout

    def close(self):
        subprocess.run(["gpgconf", "--homedir", self.home, "--kill", "all"], capture_output=True, timeout=30)


def pgp_mime_signed_only(armored, boundary="=_enc"):
    """a PGP/MIME multipart/encrypted message (RFC 3156) whose "encrypted"
    part is an armored message that is only signed"""
    b = boundary.encode()
    head = _hdr("pgp/mime", ['Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; '
                             'boundary="%s"' % boundary])
    body = (b"--" + b + CRLF + b"Content-Type: application/pgp-encrypted" + CRLF + CRLF + b"Version: 1" + CRLF +
            b"--" + b + CRLF + b"Content-Type: application/octet-stream; name=\"encrypted.asc\"" + CRLF + CRLF +
            crlf(armored) + b"--" + b + b"--" + CRLF)
    return CRLF.join(head) + CRLF + CRLF + body


def pgp_packet(tag, body):
    """a new-format OpenPGP packet (five-octet length)"""
    return bytes([0xC0 | tag, 255]) + len(body).to_bytes(4, "big") + body


def pgp_bomb(size=64 << 20):
    """a literal data packet of size zero bytes, zlib-compressed twice into
    compressed-data packets: about 200 bytes"""
    import zlib
    lit = pgp_packet(11, b"b\x08zero.bin\0\0\0\0" + bytes(size))
    inner = pgp_packet(8, b"\x02" + zlib.compress(lit, 9))
    return pgp_packet(8, b"\x02" + zlib.compress(inner, 9))
