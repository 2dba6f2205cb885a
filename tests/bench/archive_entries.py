#!/usr/bin/python3
"""archive_entries.py - how libclamav's time grows with the entries of an
archive attachment, per format: `mailwarden scan` with filters = clamav
(the tests' signature database, av_tmpdir on /dev/shm when there is one)
of a message with one archive of N small distinct files, written by
libarchive's bsdtar (7zip: one solid LZMA block; ustar; zip) or, for
zip, Python's zipfile.  av_max_files is raised past N so that the growth
shows, and the av_max_zip_entries pre-check is raised for zip (it is what
bounds zip).  Prints user and system CPU seconds, wall time and the
microseconds per entry; a quadratic format shows as a per-entry cost that
doubles with N.  The attachments filter alone is timed on the same
messages for comparison.

usage: tests/bench/archive_entries.py [--formats 7zip,ustar,zip] [N...]
Not part of make check."""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "functional"))
import attachlib  # noqa: E402
import avlib  # noqa: E402
import bomblib  # noqa: E402

EXT = {"7zip": "7z", "ustar": "tar", "zip": "zip"}


def cpu(stderr, what):
    m = re.search(what + r" time \(seconds\): ([0-9.]+)", stderr)
    return float(m.group(1)) if m else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--formats", default="7zip,ustar,zip")
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "..", "build", "mailwarden"))
    ap.add_argument("n", nargs="*", type=int, default=[2500, 5000, 10000, 20000])
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mw-arc-")
    avtmp = tempfile.mkdtemp(prefix="mw-arc-av-", dir="/dev/shm" if os.path.isdir("/dev/shm") else tmp)
    try:
        db = avlib.copy_db(os.path.join(tmp, "db"))
        print("| format | entries | archive KB | filter | user s | sys s | wall s | us/entry (wall) | result |")
        print("|---|---:|---:|---|---:|---:|---:|---:|---|")
        for fmt in a.formats.split(","):
            for n in a.n:
                files = {"f%06d.txt" % i: b"text %d\n" % i for i in range(n)}
                arc = attachlib.bsdtar_archive(files, fmt)
                path = bomblib.write_tmp(bomblib._attach("entries", "many." + EXT[fmt], arc), tmp)
                for filters in ("clamav", "attachments"):
                    extra = [("av_database", db), ("av_db_check_interval", "0"), ("av_tmpdir", avtmp),
                             ("av_max_files", str(4 * n)), ("av_max_zip_entries", str(4 * n)),
                             ("av_max_scansize", "1G"), ("av_max_filesize", "1G"),
                             ("av_max_scantime", "600s"), ("attach_archive_max_entries", str(4 * n))]
                    r = bomblib.run_scan(a.bin, path, bomblib.scan_args(tmp, filters, extra), timeout=900)
                    res = r["result"] or {}
                    syms = ",".join(s["name"] for s in res.get("symbols", [])) or "-"
                    print("| %s | %d | %d | %s | %.2f | %.2f | %.2f | %.0f | %s %s |" % (
                        fmt, n, len(arc) >> 10, filters, cpu(r["stderr"], "User"),
                        cpu(r["stderr"], "System"), r["wall"], r["wall"] * 1e6 / n,
                        res.get("action", "error"), syms), flush=True)
                os.unlink(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(avtmp, ignore_errors=True)


if __name__ == "__main__":
    main()
