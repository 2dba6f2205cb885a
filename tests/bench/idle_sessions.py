#!/usr/bin/python3
"""idle_sessions.py - hold N idle SMTP client sessions open against one server.

Used by tests/bench/run.sh to measure what an idle session costs the proxy.
Opens the connections in batches (so the listen backlog never overflows),
reads the full 220 greeting on each, then prints "ready N" on stdout and
keeps every socket open, sending nothing, until SIGTERM or SIGINT.  Exit status 0 when all N greetings were read, 1 otherwise.

usage: idle_sessions.py HOST PORT COUNT [BATCH]
"""
import selectors
import signal
import socket
import sys
import time


def greet_batch(host, port, n, deadline):
    """Connect n sockets, return them once each has a complete greeting."""
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET,
                          socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((host, port))
        if err not in (0, 115):  # EINPROGRESS
            raise OSError(err, "connect failed")
        sel.register(s, selectors.EVENT_READ, bytearray())
        socks.append(s)
    waiting = len(socks)
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("%d sessions got no greeting" % waiting)
        for key, _ in sel.select(min(left, 1.0)):
            buf = key.data
            chunk = key.fileobj.recv(4096)
            if not chunk:
                raise ConnectionError("server closed a session before greeting: %r"
                                      % bytes(buf[:200]))
            buf += chunk
            # greeting complete: last line is "220 ..." CRLF (not "220-")
            lines = bytes(buf).split(b"\r\n")
            if len(lines) >= 2 and lines[-1] == b"" and lines[-2][3:4] == b" ":
                if not lines[-2].startswith(b"220"):
                    raise ConnectionError("unexpected greeting: %r" % lines[-2][:200])
                sel.unregister(key.fileobj)
                waiting -= 1
    sel.close()
    return socks


def main():
    if len(sys.argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 250
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    held = []
    deadline = time.monotonic() + 120
    try:
        while len(held) < count:
            held += greet_batch(host, port, min(batch, count - len(held)), deadline)
    except (OSError, TimeoutError, ConnectionError) as e:
        sys.stderr.write("idle_sessions: after %d sessions: %s\n" % (len(held), e))
        print("failed %d" % len(held), flush=True)
        return 1
    print("ready %d" % len(held), flush=True)
    while not stop:
        signal.pause()
    for s in held:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
