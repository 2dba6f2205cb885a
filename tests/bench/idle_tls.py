#!/usr/bin/python3
"""idle_tls.py - hold N idle implicit-TLS SMTP sessions open against one
server and print what they cost the process PID: "sessions=N
rss_kib_per_session=X pss_kib_per_session=Y".

Each session completes its TLS handshake and reads the 220 greeting, then
stays idle.  Used by tests/bench/tls.sh.

usage: idle_tls.py HOST PORT COUNT PID
"""
import socket
import ssl
import sys
import time


def mem(pid):
    rss = pss = 0
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def main():
    host, port, count, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # warm up: the first sessions allocate what every later one reuses
    warm = []
    for _ in range(20):
        s = ctx.wrap_socket(socket.create_connection((host, port), timeout=10))
        s.recv(512)
        warm.append(s)
    time.sleep(0.5)
    rss0, pss0 = mem(pid)
    socks = []
    for _ in range(count):
        s = ctx.wrap_socket(socket.create_connection((host, port), timeout=10))
        if not s.recv(512).startswith(b"220"):
            raise SystemExit("no greeting")
        socks.append(s)
    time.sleep(1.0)
    rss1, pss1 = mem(pid)
    print("sessions=%d rss_kib_per_session=%.1f pss_kib_per_session=%.1f"
          % (count, (rss1 - rss0) / count, (pss1 - pss0) / count))
    for s in socks + warm:
        s.close()


if __name__ == "__main__":
    main()
