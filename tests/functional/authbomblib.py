"""authbomblib.py - hostile DNS for the sender-authentication filters
(spf, dkim, dmarc, the client's reverse DNS): zones a sender could publish
for its own domain, messages that point at them, and `mailwarden scan`
runs measured with /usr/bin/time (bomblib.run_scan).

Used by tests/functional/test_auth_bombs.py (small scale, bounds) and
tests/bench/auth_bombs.py (figures).  Everything is served by
dnsserver.DnsServer on loopback; nothing asks the system resolver."""

import os

import bomblib

HERE = os.path.dirname(os.path.abspath(__file__))
MW = os.environ.get("MW_BIN", os.path.join(HERE, "..", "..", "build", "mailwarden"))
CRLF = b"\r\n"

# a TXT RRset of about 60 KiB: 240 strings of 250 bytes in one record, the
# most one DNS message holds (it comes over TCP)
BIG_TXT = ["x" * 250] * 240


def sanitized(mw=MW):
    with open(mw, "rb") as f:
        return b"libasan.so" in f.read()


def message(frm=b"a@d.test", extra=b"", body=b"hello\r\n"):
    frm = frm if isinstance(frm, bytes) else frm.encode()
    return (b"From: " + frm + b"\r\nTo: b@example.net\r\nSubject: auth bomb\r\n"
            b"Date: Fri, 27 Nov 2026 04:00:00 +0000\r\nMessage-ID: <ab.1@d.test>\r\n"
            + extra + CRLF + body)


def fake_signature(domain, selector):
    """a DKIM-Signature field well-formed enough for libopendkim to look up
    its key (the signature itself is junk)"""
    return ("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=%s; h=from:to:subject;"
            " bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=%s\r\n"
            % (domain, selector, "A" * 344)).encode()


def scan_args(forwarder, filters, client_ip="192.0.2.10", helo="mx.example.org",
              mail_from="a@d.test", extra=()):
    """arguments of `mailwarden scan` with filters, DNS from forwarder"""
    o = [("filters", filters), ("dns_forwarder", forwarder), ("spf_skip_networks", ""),
         ("authserv_id", "mx.mw.test"), ("log", "stderr"), ("log_level", "notice"),
         ("audit_log", "")] + list(extra)
    args = []
    for k, v in o:
        args += ["-o", "%s=%s" % (k, v)]
    return args + ["--client-ip", client_ip, "--helo", helo, "--from", mail_from,
                   "--rcpt", "rcpt@example.net"]


def run(data, args, tmpdir, timeout=300, mw=MW):
    """`mailwarden scan` of data: bomblib.run_scan's dict (rc, wall, rss,
    result, stderr)"""
    path = bomblib.write_tmp(data, str(tmpdir))
    try:
        return bomblib.run_scan(mw, path, args, timeout=timeout)
    finally:
        os.unlink(path)


def auth_results(result):
    """the value of the Authentication-Results field the scan adds ("" if none)"""
    for e in (result or {}).get("edits", []):
        if e["op"] == "add" and e["name"].lower() == "authentication-results":
            return e["value"]
    return ""


def added(result, name):
    return [e["value"] for e in (result or {}).get("edits", [])
            if e["op"] == "add" and e["name"].lower() == name.lower()]


def rss_of(pid):
    """resident memory of a process, bytes"""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
