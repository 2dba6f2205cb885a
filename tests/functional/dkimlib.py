"""dkimlib.py - helpers of the DKIM/DMARC tests: a loopback DNS server with
the test's records (dnsserver.DnsServer), `mailwarden scan` runs, Authentication-Results parsing,
test keys, and the independent verifiers (dkimpy, opendkim-testmsg).

Nothing here touches the system resolver: mailwarden gets
dns_forwarder=127.0.0.1@PORT, dkimpy a dnsfunc over the same records, and
opendkim-testmsg (which only knows libresolv and /etc/resolv.conf) runs in
a private user+network+mount namespace where its own unbound answers on
127.0.0.1:53 and /etc/resolv.conf is a bind mount."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import mwlib
from dnsserver import DnsServer

DKIMPY_DATA = "/usr/lib/python3/dist-packages/dkim/tests/data"
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "dkim")
UNBOUND = "/usr/sbin/unbound"


class TxtServer:
    """The project's loopback DNS server (dnsserver.DnsServer: unbound,
    authoritative only) serving TXT records {name: [value, ...]}, one zone
    per name; the same records as a dnsfunc for dkimpy."""

    def __init__(self, tmpdir, records):
        self.records = {k.rstrip(".").lower(): list(v) for k, v in records.items()}
        self.srv = DnsServer(tempfile.mkdtemp(dir=str(tmpdir), prefix="dns"))
        for name, values in self.records.items():
            self.srv.add_zone(name, [("@", "TXT", v, 60) for v in values])
        self.srv.start()

    @property
    def forwarder(self):
        return self.srv.forwarder

    def stop(self):
        self.srv.stop()

    def dnsfunc(self, name, timeout=5):
        """dkimpy's dnsfunc: the TXT value of name from the same records."""
        if isinstance(name, bytes):
            name = name.decode()
        v = self.records.get(name.rstrip(".").lower())
        return v[0].encode() if v else None


class StaticKeys:
    """The dnsfunc of dkimpy_verify_all over fixed TXT records, for tests
    that only verify (mailwarden signs without DNS): no server to start."""

    def __init__(self, records):
        self.records = {k.rstrip(".").lower(): v for k, v in records.items()}

    def dnsfunc(self, name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        v = self.records.get(name.rstrip(".").lower())
        return v.encode() if v else None


def sign_keys(keys, domain="sign.test"):
    """(dkim_sign_key settings, StaticKeys) of make_keys' two keys, at
    rsa1/ed1._domainkey.DOMAIN"""
    opts = [("dkim_sign_key", "%s rsa1 %s" % (domain, keys["rsa"][0])),
            ("dkim_sign_key", "%s ed1 %s" % (domain, keys["ed25519"][0]))]
    return opts, StaticKeys({"rsa1._domainkey." + domain: keys["rsa"][1],
                             "ed1._domainkey." + domain: keys["ed25519"][1]})


def signatures(msg):
    """The DKIM-Signature values of msg's header section (folding kept)."""
    head = msg.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    return re.findall(rb"^DKIM-Signature:(.*?\r\n)(?![ \t])", head, re.M | re.S | re.I)


def dns_opts(forwarder):
    return [("dns_forwarder", forwarder)]


def scan(path, opts=(), direction="inbound", timeout=30, mail_from="sender@example.org"):
    """mailwarden scan FILE with -o opts; (parsed JSON result, seconds)."""
    args = ["scan", "-o", "audit_log="]
    for k, v in opts:
        args += ["-o", "%s=%s" % (k, v)]
    args += ["--direction", direction, "--client-ip", "192.0.2.10", "--helo", "mx.example.org",
             "--from", mail_from, "--rcpt", "rcpt@example.net", str(path)]
    t0 = time.monotonic()
    p = mwlib.run_mw(args, timeout=timeout)
    took = time.monotonic() - t0
    assert p.returncode == 0, "scan failed: %s" % p.stderr.decode(errors="replace")
    return json.loads(p.stdout), took


def ar_value(result):
    """The value of the Authentication-Results field the scan adds."""
    for e in result.get("edits", []):
        if e["op"] == "add" and e["name"].lower() == "authentication-results":
            return e["value"]
    return None


def ar_entries(value, method=None):
    """[(method, result, props)] of an Authentication-Results value."""
    if value is None:
        return []
    out = []
    for part in re.sub(r"\r\n[ \t]", " ", value).split(";")[1:]:
        part = part.strip()
        m = re.match(r"([a-z0-9._-]+)=([a-z0-9._-]+)\s*(.*)$", part)
        if m and (method is None or m.group(1) == method):
            out.append((m.group(1), m.group(2), m.group(3)))
    return out


def prop(props, key):
    m = re.search(r"(?:^|\s)%s=(\S+)" % re.escape(key), props)
    return m.group(1) if m else None


def symbols(result):
    return {s["name"] for s in result.get("symbols", [])}


def apply_prepends(msg, result):
    """The message as it leaves: added fields on top (what the proxy does
    with the scan's "add" edits), for checking signatures offline."""
    top = b""
    for e in result.get("edits", []):
        if e["op"] == "add":
            top += ("%s: %s\r\n" % (e["name"], e["value"])).encode()
    return top + msg


# --- keys ---------------------------------------------------------------------

def make_keys(tmpdir):
    """An RSA-2048 and an Ed25519 key in PEM files; returns
    {"rsa": (pem_path, txt_value), "ed25519": (pem_path, txt_value)}."""
    d = str(tmpdir)
    rsa = os.path.join(d, "rsa.pem")
    ed = os.path.join(d, "ed25519.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", rsa], check=True, capture_output=True)
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", ed], check=True,
                   capture_output=True)
    import base64
    rsa_der = subprocess.run(["openssl", "pkey", "-in", rsa, "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
    ed_der = subprocess.run(["openssl", "pkey", "-in", ed, "-pubout", "-outform", "DER"],
                            check=True, capture_output=True).stdout
    ed_priv = subprocess.run(["openssl", "pkey", "-in", ed, "-outform", "DER"],
                             check=True, capture_output=True).stdout
    # dkimpy wants the Ed25519 private key as base64 of the raw 32-byte seed
    with open(ed + ".dkimpy", "wb") as f:
        f.write(base64.b64encode(ed_priv[-32:]))
    return {"rsa": (rsa, "v=DKIM1; k=rsa; p=" + base64.b64encode(rsa_der).decode()),
            "ed25519": (ed, "v=DKIM1; k=ed25519; p=" + base64.b64encode(ed_der[-32:]).decode())}


# --- independent verifiers ------------------------------------------------------

def dkimpy_verify_all(msg, server):
    """dkimpy's verdict for every DKIM-Signature of msg (list of bool)."""
    import dkim
    d = dkim.DKIM(msg)
    n = len([1 for (k, v) in d.headers if k.lower() == b"dkim-signature"])
    out = []
    for i in range(n):
        try:
            out.append(bool(d.verify(idx=i, dnsfunc=server.dnsfunc)))
        except dkim.ValidationError:       # e.g. body hash mismatch
            out.append(False)
    return out


def dkimpy_sign(msg, selector, domain, keyfile, **kw):
    import dkim
    if kw.get("signature_algorithm") == b"ed25519-sha256":
        keyfile += ".dkimpy"
    with open(keyfile, "rb") as f:
        key = f.read()
    sig = dkim.sign(msg, selector.encode(), domain.encode(), key, **kw)
    return sig + msg


def namespaces_usable():
    if shutil.which("unshare") is None:
        return False
    p = subprocess.run(["unshare", "-rnmp", "--fork", "true"], capture_output=True)
    return p.returncode == 0


def opendkim_testmsg_verify(msg, records, tmpdir):
    """opendkim-testmsg's verdict for msg: (returncode, stderr).  It runs in
    its own namespaces with an unbound on 127.0.0.1:53 of that namespace."""
    d = tempfile.mkdtemp(dir=str(tmpdir), prefix="ns")
    # the same server configuration as the other tests', on port 53
    srv = DnsServer(d, port=53)
    for name, values in records.items():
        srv.add_zone(name, [("@", "TXT", v, 60) for v in values])
    srv._write_conf()
    with open(os.path.join(d, "resolv.conf"), "w") as f:
        f.write("nameserver 127.0.0.1\n")
    # opendkim-testmsg's LF output convention: feed LF line ends
    with open(os.path.join(d, "msg.eml"), "wb") as f:
        f.write(msg.replace(b"\r\n", b"\n"))
    script = (
        "ip link set lo up && mount --bind {d}/resolv.conf /etc/resolv.conf && "
        "({ub} -d -p -c {conf} >/dev/null 2>&1 &) && "
        "i=0; while [ $i -lt 100 ] && ! grep -q 'start of service' {log}; do sleep 0.05; i=$((i+1)); done; "
        "/usr/sbin/opendkim-testmsg < {d}/msg.eml"
    ).format(d=d, ub=UNBOUND, conf=srv.conf, log=srv.log)
    # a pid namespace too: when its first process (sh) ends, the kernel
    # ends unbound with it
    p = subprocess.run(["unshare", "-rnmp", "--fork", "sh", "-c", script],
                       capture_output=True, timeout=30)
    return p.returncode, p.stderr.decode(errors="replace")
