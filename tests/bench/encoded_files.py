#!/usr/bin/python3
"""encoded_files.py - what files encoded in text parts cost `mailwarden
scan` (README "Resource bombs", session 18: they are decoded once per
message, by the MIME layer, for the attachments filter and the antivirus).

Two figures, each the user CPU and peak RSS of `mailwarden scan` (GNU time):
  uu30  - a text part carrying 30 MB of uuencoded random bytes, scanned by
          the attachments filter and the antivirus (RUNS runs, mean);
  memo  - ~45 MB of text as plain lines, as one yEnc block, and as a yEnc
          block inside a uuencoded block (each line decoded by both
          decoders): the decoded copies are kept to the end of the scan.

usage (from the source tree, after make):
    nice -n 19 /usr/bin/python3 tests/bench/encoded_files.py [MAILWARDEN] [RUNS]
A benchmark, not part of make check."""
import binascii
import os
import random
import subprocess
import sys
import tempfile

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build", "mailwarden")
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
HEAD = (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: t\r\n"
        b"Message-ID: <encoded@example.org>\r\nDate: Mon, 02 Jan 2023 10:00:00 +0000\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
# never the system resolver: a dead loopback port
OPTS = ["-o", "dns_forwarder=127.0.0.1@9", "-o", "message_size_limit=60M"]


def uu30():
    data = random.Random(1).randbytes(30 * 1000 * 1000 * 3 // 4 // 45 * 45)
    lines = [b"begin 644 data.bin"]
    lines += [binascii.b2a_uu(data[i:i + 45]).rstrip(b"\n") for i in range(0, len(data), 45)]
    lines += [b"`", b"end"]
    return HEAD + b"Hello,\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"


def memo_shapes():
    rnd = random.Random(1)
    # yEnc lines of 128 characters whose first one makes a uuencoded line
    # of 45 bytes ('M'), so that the uu decoder takes them too
    line = b"M" + bytes(rnd.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
                        for _ in range(127))
    n = 45 * 1000 * 1000 // 130
    ylines = b"\r\n".join([line] * n)
    ybegin = b"=ybegin line=128 size=%d name=b.bin\r\n" % (n * 128)
    yield "plain", HEAD + b"Plain\r\n" + ylines.replace(b"M", b"x") + b"\r\n"
    yield "yEnc", HEAD + ybegin + ylines + b"\r\n=yend\r\n"
    yield "yEnc in uu", HEAD + b"begin 644 a.bin\r\n" + ybegin + ylines + b"\r\n=yend\r\nend\r\n"


def scan(msg, filters, extra=()):
    with tempfile.NamedTemporaryFile(suffix=".eml") as f:
        f.write(msg)
        f.flush()
        p = subprocess.run(["/usr/bin/time", "-f", "%U %M", BIN, "scan", "-o", "filters=" + filters]
                           + OPTS + list(extra) + [f.name], capture_output=True, text=True)
    user, kb = p.stderr.strip().splitlines()[-1].split()
    return float(user), int(kb) // 1024


def main():
    msg = uu30()
    # the test signatures of tests/data/av (EICAR and the ClamAV test
    # files): the engine's work is its walk of the message, not its database
    av = ["-o", "av_database=" + os.path.join(SRC, "tests", "data", "av", "db"),
          "-o", "av_db_check_interval=0", "-o", "av_max_filesize=64M", "-o", "av_max_scansize=200M"]
    runs = [scan(msg, "attachments clamav", av) for _ in range(RUNS)]
    print("uu30: %.1f MB message, attachments + clamav: %.3f s user (mean of %d), peak RSS %d MB"
          % (len(msg) / 1e6, sum(r[0] for r in runs) / len(runs), len(runs), max(r[1] for r in runs)))
    for name, body in memo_shapes():
        user, mb = scan(body, "attachments")
        print("memo: %-10s %5.1f MB of text, attachments: %.2f s user, peak RSS %d MB"
              % (name, len(body) / 1e6, user, mb))


if __name__ == "__main__":
    main()
