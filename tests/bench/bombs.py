#!/usr/bin/python3
"""bombs.py - what each resource bomb of tests/functional/bomblib.py costs
`mailwarden scan` (filters attachments rules bayes, an empty LMDB store,
the shipped rules), as wall time and peak RSS, and as ratios against a
plain text message of the same size measured in the same run.

usage: tests/bench/bombs.py [--scale S] [--filters "attachments rules bayes"] [NAME...]
Not part of make check; prints one table (markdown) on stdout."""

import argparse
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "functional"))
import bomblib  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--filters", default="attachments rules bayes")
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "..", "build", "mailwarden"))
    ap.add_argument("-o", action="append", default=[], help="extra name=value setting")
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    names = a.names or list(bomblib.BOMBS)
    tmp = tempfile.mkdtemp(prefix="mw-bombs-")
    try:
        args = bomblib.scan_args(tmp, a.filters, [tuple(x.split("=", 1)) for x in a.o])
        # compile the rules once, so no row pays for it
        warm = bomblib.write_tmp(bomblib.plain(1000), tmp)
        bomblib.run_scan(a.bin, warm, args)
        print("| bomb | size | time s | x plain | peak RSS MB | x plain | action | symbols |")
        print("|---|---|---|---|---|---|---|---|")
        for name in names:
            data = bomblib.BOMBS[name](a.scale)
            path = bomblib.write_tmp(data, tmp)
            ref = bomblib.write_tmp(bomblib.plain(len(data)), tmp)
            del data
            size = os.path.getsize(path)
            p = bomblib.run_scan(a.bin, ref, args, timeout=900)
            b = bomblib.run_scan(a.bin, path, args, timeout=900)
            os.unlink(path)
            os.unlink(ref)
            res = b["result"] or {}
            syms = " ".join(sorted({s["name"] for s in res.get("symbols", [])
                                    if not s["name"].startswith("MW_")}))[:80]
            act = res.get("action", "rc=%d" % b["rc"])
            print("| %s | %.1f MB | %.2f | %.1f | %.0f | %.1f | %s | %s |" % (
                name, size / 1e6, b["wall"], b["wall"] / max(p["wall"], 0.01),
                b["rss"] / 1e6, b["rss"] / max(p["rss"], 1), act, syms), flush=True)
            if b["rc"] != 0:
                sys.stderr.write("%s: rc=%d\n%s\n" % (name, b["rc"], b["stderr"][-2000:]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
