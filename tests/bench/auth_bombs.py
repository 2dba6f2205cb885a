#!/usr/bin/python3
"""auth_bombs.py - figures for the sender-authentication path under hostile
DNS (README "Hostile DNS (sender authentication)"): each case of
tests/functional/authbomblib.py through `mailwarden scan` under
/usr/bin/time -v, with its zone served by unbound on loopback
(tests/functional/dnsserver.py); wall time, peak RSS and the
Authentication-Results / Received-SPF outcome.  Also the cost of a plain
message of the same size with the same filters, measured in the same run.

    /usr/bin/python3 tests/bench/auth_bombs.py [--sigs 1000,5000,20000]

Needs a build (make); MW_BIN overrides build/mailwarden."""

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "functional"))

import authbomblib as ab  # noqa: E402
import dkimlib as dl  # noqa: E402
from dnsserver import DnsServer  # noqa: E402


def row(name, size, r, outcome, plain=None):
    ratio = ""
    if plain is not None and plain["wall"] > 0:
        ratio = " (%.1fx plain, RSS %.1fx)" % (r["wall"] / plain["wall"], r["rss"] / max(plain["rss"], 1))
    print("%-44s %11s  %7.2f s  %6.1f MB%s  %s" % (name, "%d B" % size if size else "-", r["wall"],
                                                   r["rss"] / 1e6, ratio,
                                                  outcome[:110].replace("\r\n\t", " ")))
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sigs", default="1000,5000,20000")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="auth-bombs-")
    keys = dl.make_keys(tmp)
    srv = DnsServer(os.path.join(tmp, "dns"))
    srv.add_zone("s1._domainkey.d.test", [("@", "TXT", keys["rsa"][1])])
    long_rua = "v=DMARC1; rua=" + ",".join("mailto:r%d@rua.test" % i for i in range(60)) + "; p=reject"
    huge_rua = "v=DMARC1; p=reject; rua=" + ",".join("mailto:r%d@rua.test" % i for i in range(2500))
    srv.add_zone("long.test", [("_dmarc", "TXT", long_rua)])
    srv.add_zone("huge.test", [("_dmarc", "TXT", huge_rua)])
    ip4 = " ".join("ip4:10.0.%d.%d" % (i // 250, i % 250) for i in range(70))
    srv.add_zone("over.test", [("@", "TXT", "v=spf1 %s -all" % ip4)])
    srv.add_zone("big.test", [("@", "TXT", "v=spf1 -all"), ("@", "TXT", ab.BIG_TXT)])
    srv.add_zone("10.2.0.192.in-addr.arpa", ["@ PTR h%d.slow.test." % i for i in range(100)])
    srv.add_zone("slow.test", [("@", "TXT", "v=spf1 ptr include:i1.slow.test include:i2.slow.test -all")],
                 drop_other=True)
    srv.start()
    try:
        print("%-44s %11s  %9s  %9s  %s" % ("case", "size", "wall", "peak RSS", "outcome"))
        signed = dl.dkimpy_sign(ab.message(), "s1", "d.test", keys["rsa"][0])
        field = signed[:signed.index(b"\r\nFrom:") + 2]
        dkim_args = ab.scan_args(srv.forwarder, "dkim", extra=[("dns_client_name", "no")])
        for n in [int(x) for x in args.sigs.split(",")]:
            data = field * n + ab.message()
            plain = ab.message(body=(b"y" * 76 + b"\r\n") * (len(field) * n // 78))
            rp = ab.run(plain, dkim_args, tmp)
            r = ab.run(data, dkim_args, tmp, timeout=1200)
            ar = ab.auth_results(r["result"])
            row("DKIM: %d signature fields" % n, len(data), r,
                "%d x dkim=pass" % ar.count("dkim=pass"), rp)
        for names, fields in ((200, 200000), (999, 9980)):
            fake = ab.fake_signature("d.test", "s1").replace(
                b"h=from:to:subject", b"h=from:" + b":".join([b"x-b"] * names))
            data = fake * 8 + ab.message(b"a@d.test", b"X-B: 1\r\n" * fields)
            r = ab.run(data, dkim_args, tmp)
            ar = ab.auth_results(r["result"])
            row("DKIM: 8 x h= of %d names, %d fields" % (names + 1, fields), len(data), r,
                ar[ar.find("dkim="):])
        for dom in ("long.test", "huge.test"):
            frm = "a@" + dom
            r = ab.run(ab.message(frm), ab.scan_args(srv.forwarder, "dmarc", mail_from=frm,
                                                     extra=[("dns_client_name", "no")]), tmp)
            ar = ab.auth_results(r["result"])
            row("DMARC: %s (%s)" % (dom, "1.6 KB record" if dom == "long.test" else "50 KB rua="),
                0, r, ar[ar.find("dmarc="):])
        for dom, what in (("over.test", "SPF: 70 ip4 terms + -all"), ("big.test", "SPF: 60 KiB TXT RRset (TCP)")):
            frm = "a@" + dom
            r = ab.run(ab.message(frm), ab.scan_args(srv.forwarder, "spf", mail_from=frm,
                                                     extra=[("dns_client_name", "no")]), tmp)
            row(what, 0, r, ab.added(r["result"], "Received-SPF")[0])
        sigs = b"".join(ab.fake_signature("slow.test", "k%d" % k) for k in range(8))
        for label, t in (("defaults", []),
                         ("dns 0.5s spf 1.5s dkim 1s", [("dns_timeout", "500ms"), ("spf_timeout", "1500ms"),
                                                        ("dkim_timeout", "1s")])):
            r = ab.run(ab.message(b"a@slow.test", sigs),
                       ab.scan_args(srv.forwarder, "spf dkim dmarc", mail_from="a@slow.test",
                                    extra=t + [("dns_client_name", "yes")]), tmp, timeout=300)
            ar = ab.auth_results(r["result"])
            row("every lookup dropped, %s" % label, 0, r,
                " ".join(x.split()[0] for x in ar.split(";")[1:]))
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
