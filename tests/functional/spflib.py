"""spflib.py - run the RFC 7208 SPF test suite (tests/data/spf/
rfc7208-tests.yml) through mailwarden's "spf" filter.

Each scenario's zonedata is served by unbound (dnsserver.DnsServer), one
server per scenario (names repeat across scenarios with other data); each
test is one `mailwarden scan -o filters=spf` with the test's client
address, HELO and MAIL FROM, several at once.  The result is read from the
SPF_* symbol of the scan result, the explanation from its description.

How the suite's zone data becomes DNS data (as the suite's own drivers do):
an SPF entry is a TXT record unless the name has TXT entries of its own
("TXT: NONE" means no TXT at all); SPF type 99 is not served (RFC 7208
dropped it); TIMEOUT makes every query of that name without data go
unanswered (an unbound "deny" zone).  Names are grouped into one zone per
last two labels, so empty non-terminals answer NODATA as in real DNS.
"""

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import yaml

from dnsserver import DnsServer, name_escape, txt

SUITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "spf",
                     "rfc7208-tests.yml")
MESSAGE = (b"From: suite@example.org\r\nTo: rcpt@example.net\r\nSubject: spf suite\r\n"
           b"Message-ID: <spf-suite@example.org>\r\n\r\nbody\r\n")


def load_suite(path=SUITE):
    with open(path, "rb") as f:
        return [s for s in yaml.safe_load_all(f) if s]


def _bytes(v):
    if isinstance(v, bytes):
        return v
    v = str(v)
    try:
        return v.encode("latin-1")      # "\xEF\xBB\xBF" in the YAML means those bytes
    except UnicodeEncodeError:
        return v.encode("utf-8")


def _name(n):
    return name_escape(str(n).rstrip(".").lower())


def _zone_of(name):
    labels = name.split(".")
    return ".".join(labels[-2:]) if len(labels) >= 2 else name


def zones_for(zonedata):
    """zonedata -> {zone: {"records": [...], "deny": {name: records}}}.
    A TIMEOUT name gets a deny zone of its own; a name below a TIMEOUT name
    gets a static zone of its own (else the deny zone would drop it)."""
    zones = {}
    names = {_name(n): e for n, e in (zonedata or {}).items()}
    denied = [n for n, e in names.items() if "TIMEOUT" in (e or [])]
    for raw_name, entries in (zonedata or {}).items():
        name = _name(raw_name)
        entries = entries or []
        has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
        recs = []
        timeout = False
        for e in entries:
            if e == "TIMEOUT":
                timeout = True
                continue
            (rtype, value), = e.items()
            if rtype == "SPF" and has_txt:
                continue                 # type 99 only: not served
            if rtype in ("SPF", "TXT"):
                if value == "NONE":
                    continue
                if isinstance(value, list):
                    parts = [_bytes(p) for p in value] or [b""]
                else:
                    parts = _bytes(value)
                recs.append("%s. TXT %s" % (name, txt(parts)))
            elif rtype in ("A", "AAAA"):
                recs.append("%s. %s %s" % (name, rtype, value))
            elif rtype == "MX":
                pref, host = value
                host = name_escape(str(host).rstrip("."))
                recs.append("%s. MX %d %s." % (name, int(pref), host))
            elif rtype in ("PTR", "CNAME"):
                recs.append("%s. %s %s." % (name, rtype, name_escape(str(value).rstrip("."))))
            else:
                raise ValueError("unknown record type %r" % rtype)
        zone = _zone_of(name)
        if any(name != d and name.endswith("." + d) for d in denied):
            zone = name
        z = zones.setdefault(zone, {"records": [], "deny": {}})
        if timeout:
            z["deny"][name] = recs
        else:
            z["records"] += recs
    return zones


def serve(scenario, tmpdir, idx):
    srv = DnsServer(os.path.join(str(tmpdir), "dns%02d" % idx))
    for zone, z in zones_for(scenario.get("zonedata")).items():
        srv.add_zone(zone, z["records"])
        for name, recs in z["deny"].items():
            if name == zone:
                srv.add_zone(zone, z["records"] + recs, drop_other=True)
            else:
                srv.add_zone(name, recs, drop_other=True)
    return srv.start()


def scan(mw_bin, msgfile, forwarder, test, extra=()):
    """One test through `mailwarden scan`: (result, explanation, raw JSON)."""
    cmd = [mw_bin, "scan", "-o", "filters=spf", "-o", "dns_forwarder=" + forwarder,
           "-o", "dns_timeout=1s", "-o", "spf_skip_networks=", "-o", "dns_client_name=no",
           "-o", "hostname=receiver.example", "-o", "log_level=err"]
    cmd += list(extra)
    cmd += ["--client-ip", str(test["host"]), "--helo", str(test.get("helo", "")),
            "--from", str(test.get("mailfrom", "")), msgfile]
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    if p.returncode != 0:
        return "error(rc=%d: %s)" % (p.returncode, p.stderr.decode(errors="replace")[-300:]), "", None
    res = json.loads(p.stdout)
    for s in res["symbols"]:
        if s["name"].startswith("SPF_"):
            desc = s.get("desc") or s.get("description") or ""
            expl = ""
            marker = " from "
            if marker in desc and ": " in desc.split(marker, 1)[1]:
                expl = desc.split(marker, 1)[1].split(": ", 1)[1]
            return s["name"][4:].lower(), expl, res
    return "no-spf-symbol", "", res


def run_suite(mw_bin, tmpdir, workers=4):
    """Every test of the suite: list of dicts (scenario, name, want, got,
    explanation wanted/got, ok)."""
    msgfile = os.path.join(str(tmpdir), "suite.eml")
    with open(msgfile, "wb") as f:
        f.write(MESSAGE)
    out = []
    for idx, scenario in enumerate(load_suite()):
        srv = serve(scenario, tmpdir, idx)
        try:
            tests = sorted(scenario["tests"].items())
            with ThreadPoolExecutor(workers) as pool:
                got = list(pool.map(lambda t: scan(mw_bin, msgfile, srv.forwarder, t[1]), tests))
        finally:
            srv.stop()
        for (name, t), (result, expl, _) in zip(tests, got):
            want = t["result"] if isinstance(t["result"], list) else [t["result"]]
            want = [str(w).lower() for w in want]
            ok = result in want
            want_expl = t.get("explanation")
            if ok and want_expl not in (None, "DEFAULT") and result == "fail":
                # case-insensitive: the nibbles of %{ir} and the hex of a
                # %-escape (RFC 3986 2.1) have no set case
                ok = expl.lower() == str(want_expl).lower()
            out.append({"scenario": scenario["description"], "name": name, "want": want,
                        "got": result, "want_expl": want_expl, "got_expl": expl, "ok": ok,
                        "spec": t.get("spec")})
    return out
