"""test_peers_hostile.py - mailwarden as a client of spamd, Redis and clamd
when they misbehave.  A real server cannot be made to stall mid-reply or
lie about a length, so these are small fake servers on 127.0.0.1 (port 0,
started and stopped by each test); test_spamd.py, test_greylist.py and
test_av.py keep the real servers for the normal paths.

For each peer: accept and never answer, one byte a second, close in the
middle of the reply, a 100 MB reply and a 10 MB line without its end,
a malformed reply, a well-formed one that does not fit the request
(spamd's Content-length lying, clamd answering for another stream, Redis
answering with the wrong type), connection refused.  What must hold: the
wait is bounded by the configured timeout, memory by a reply limit, a
log line says what happened, and the documented failure policy applies
(spamd: SPAMD_FAIL and the mail goes on; clamd: av_fail_action; Redis:
store_failure) - never a verdict read from a garbled or foreign reply.
For Redis, whose connections are pooled, also the pairing of replies with
requests on a reused connection: a reply that arrives late, or unasked
while the connection sits idle, must never answer the next message."""

import json
import os
import socket
import struct
import subprocess
import threading
import time

import pytest

from mwlib import free_port, make_msg, run_mw
from storelib import Redis

MB = 1 << 20


class FakePeer:
    """A TCP server on 127.0.0.1 that runs handler(peer, conn) in a thread
    for each connection; stop() closes everything (and tells the handlers
    through peer.stopping, which their sleeps watch)."""

    def __init__(self, handler):
        self.handler = handler
        self.stopping = threading.Event()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(32)
        self.port = self.lsock.getsockname()[1]
        self.conns = []
        self.accepted = 0
        self.requests = []          # what the handlers chose to record
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
                self.accepted += 1
                n = self.accepted
            threading.Thread(target=self._serve, args=(c, n), daemon=True).start()

    def _serve(self, c, n):
        try:
            self.handler(self, c, n)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def sleep(self, s):
        """False once the peer is being stopped."""
        return not self.stopping.wait(s)

    def drip(self, c, data, every):
        for i in range(len(data)):
            if not self.sleep(every):
                return
            c.sendall(data[i:i + 1])

    def flood(self, c, head, total, fill=b"x"):
        """head, then fill bytes up to total; stops when the client goes."""
        c.sendall(head)
        chunk = fill * (1 << 16)
        sent = 0
        while sent < total and not self.stopping.is_set():
            c.sendall(chunk)
            sent += len(chunk)

    def hold(self, c):
        """Keep the connection open and silent until stop()."""
        self.stopping.wait(30)

    def stop(self):
        self.stopping.set()
        self.lsock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()


@pytest.fixture
def fake_peer():
    made = []

    def make(handler):
        p = FakePeer(handler)
        made.append(p)
        return p
    yield make
    for p in made:
        p.stop()


def recv_until(c, marker, limit=1 << 20):
    buf = b""
    while marker not in buf:
        d = c.recv(65536)
        if not d:
            break
        buf += d
        if len(buf) > limit:
            break
    return buf


def reset(c):
    """Close with a RST instead of a FIN."""
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def scan(opts, msg=None, extra=()):
    """mailwarden scan of one message with -o opts; (result, seconds, stderr)."""
    args = ["scan", "-o", "dns_forwarder=127.0.0.1@%d" % free_port(), "-o", "dns_client_name=no"]
    for k, v in opts:
        args += ["-o", "%s=%s" % (k, v)]
    t0 = time.monotonic()
    r = run_mw(args + list(extra) + ["-"], input=msg or make_msg(subject="mwtest-spamd-marker"))
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), took, r.stderr.decode(errors="replace")


def names(res):
    return [s["name"] for s in res["symbols"]]


# --- spamd -------------------------------------------------------------------

SPAMD_GOOD = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 15\r\nSpam: True ; 7.5 / 5.0\r\n\r\nMW_SPAMD_MARKER"


def spamd_request(c):
    head = recv_until(c, b"\r\n\r\n")
    want = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            want = int(line.split(b":")[1])
    body = head.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in head else b""
    while len(body) < want:
        d = c.recv(65536)
        if not d:
            break
        body += d
    return head


SPAMD_CASES = {
    # name: (handler, what the SPAMD_FAIL description says)
    "silent": (lambda p, c, n: (spamd_request(c), p.hold(c)), "no answer within 1000 ms"),
    "one byte a second": (lambda p, c, n: (spamd_request(c), p.drip(c, SPAMD_GOOD, 1.0)),
                          "no answer within 1000 ms"),
    # the score line cut after "1" of "15.5": must not become a score of 1
    "closed in the score": (lambda p, c, n: (spamd_request(c), c.sendall(
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 15\r\nSpam: True ; 1")), "incomplete"),
    "closed in the headers": (lambda p, c, n: (spamd_request(c), c.sendall(
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 15\r\nSpam: True ; 15.5 / 5.0\r\n")), "incomplete"),
    "closed in the body": (lambda p, c, n: (spamd_request(c), c.sendall(SPAMD_GOOD[:-5])),
                           "Content-length"),
    "reset in the body": (lambda p, c, n: (spamd_request(c), c.sendall(SPAMD_GOOD[:-5]), reset(c)),
                          ""),
    "Content-length too short": (lambda p, c, n: (spamd_request(c), c.sendall(
        SPAMD_GOOD.replace(b"Content-length: 15", b"Content-length: 3"))), "Content-length"),
    "Content-length not a number": (lambda p, c, n: (spamd_request(c), c.sendall(
        SPAMD_GOOD.replace(b"Content-length: 15", b"Content-length: lots"))), "Content-length"),
    # spamd always sends a Content-length for SYMBOLS (protocol >= 1.3):
    # without one, a body cut short would be taken for all the rules hit
    "no Content-length, closed in the body": (lambda p, c, n: (spamd_request(c), c.sendall(
        SPAMD_GOOD.replace(b"Content-length: 15\r\n", b"")[:-5])), "no Content-length"),
    "no Content-length": (lambda p, c, n: (spamd_request(c), c.sendall(
        SPAMD_GOOD.replace(b"Content-length: 15\r\n", b""))), "no Content-length"),
    "two Content-length": (lambda p, c, n: (spamd_request(c), c.sendall(
        SPAMD_GOOD.replace(b"Content-length: 15\r\n", b"Content-length: 15\r\nContent-length: 10\r\n")[:-5])),
        "two Content-length"),
    "100 MB": (lambda p, c, n: (spamd_request(c), p.flood(c, SPAMD_GOOD, 100 * MB)), "longer than"),
    "10 MB line": (lambda p, c, n: (spamd_request(c), p.flood(c, b"SPAMD/1.1 0 EX_OK", 10 * MB)),
                   "longer than"),
    "not spamd": (lambda p, c, n: (spamd_request(c), c.sendall(b"HTTP/1.0 200 OK\r\n\r\n")),
                  "not a spamd answer"),
    "spamd error": (lambda p, c, n: (spamd_request(c), c.sendall(b"SPAMD/1.0 76 Bad header line\r\n")),
                    "spamd error"),
    "score nan": (lambda p, c, n: (spamd_request(c), c.sendall(
        SPAMD_GOOD.replace(b"7.5 /", b"nan /"))), "score"),
    "score inf": (lambda p, c, n: (spamd_request(c), c.sendall(
        SPAMD_GOOD.replace(b"7.5 /", b"-inf /"))), "score"),
    "score 1e300": (lambda p, c, n: (spamd_request(c), c.sendall(
        SPAMD_GOOD.replace(b"7.5 /", b"1e300 /"))), "score"),
    "no score": (lambda p, c, n: (spamd_request(c), c.sendall(
        SPAMD_GOOD.replace(b"Spam: True ; 7.5 / 5.0\r\n", b""))), "no score"),
}


@pytest.mark.parametrize("case", list(SPAMD_CASES))
def test_spamd_hostile(fake_peer, case):
    handler, why = SPAMD_CASES[case]
    p = fake_peer(handler)
    res, took, err = scan([("filters", "spamd"), ("spamd_address", p.addr), ("spamd_timeout", "1s")])
    assert names(res) == ["SPAMD_FAIL"], res
    assert res["action"] == "accept" and res["score"] == 0, res
    assert why in res["symbols"][0]["desc"], res
    assert "going on without it" in err, err
    assert took < 4, took


def test_spamd_fake_itself_and_refused(fake_peer):
    """The fake's good answer is taken (so the cases above test the
    damage, not the fake); a refused connection costs nothing."""
    p = fake_peer(lambda p, c, n: (spamd_request(c), c.sendall(SPAMD_GOOD)))
    res, _, _ = scan([("filters", "spamd"), ("spamd_address", p.addr), ("spamd_timeout", "1s")])
    assert names(res) == ["SPAMD", "SA_MW_SPAMD_MARKER"] and res["score"] == 7.5, res
    p = fake_peer(lambda p, c, n: (spamd_request(c), c.sendall(
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: False ; 0.0 / 5.0\r\n\r\n")))
    res, _, _ = scan([("filters", "spamd"), ("spamd_address", p.addr)])
    assert names(res) == ["SPAMD"] and res["score"] == 0, res
    res, took, _ = scan([("filters", "spamd"), ("spamd_address", "127.0.0.1:%d" % free_port())])
    assert names(res) == ["SPAMD_FAIL"] and "connect" in res["symbols"][0]["desc"], res
    assert took < 2


# --- clamd -------------------------------------------------------------------

def clamd_request(c):
    """Read zINSTREAM and its chunks up to the zero-length one."""
    buf = b""

    def need(n):
        nonlocal buf
        while len(buf) < n:
            d = c.recv(65536)
            if not d:
                raise OSError("client went away")
            buf += d
    need(10)
    assert buf[:10] == b"zINSTREAM\0", buf[:20]
    buf = buf[10:]
    while True:
        need(4)
        n = struct.unpack(">I", buf[:4])[0]
        need(4 + n)
        buf = buf[4 + n:]
        if n == 0:
            return


def clamd_opts(p, *extra):
    return [("filters", "clamd"), ("clamd_socket", p.addr), ("clamd_timeout", "1s"),
            ("clamd_connect_timeout", "1s")] + list(extra)


CLAMD_CASES = {
    "silent": (lambda p, c, n: (clamd_request(c), p.hold(c)), "timed out"),
    "never reads": (lambda p, c, n: p.hold(c), "timed out"),
    "one byte a second": (lambda p, c, n: (clamd_request(c), p.drip(c, b"stream: OK\0", 1.0)),
                          "timed out"),
    # "stream: OK" is all of a clean answer but its NUL: without the NUL
    # the line may as well have been "stream: OK.Exploit FOUND"
    "closed before the NUL": (lambda p, c, n: (clamd_request(c), c.sendall(b"stream: OK")),
                              "incomplete"),
    "reset before the NUL": (lambda p, c, n: (clamd_request(c), c.sendall(b"stream: OK"),
                                              time.sleep(0.1), reset(c)), "incomplete"),
    "closed mid-name": (lambda p, c, n: (clamd_request(c), c.sendall(b"stream: Eicar-Signature FOU")),
                        "incomplete"),
    "100 MB": (lambda p, c, n: (clamd_request(c), p.flood(c, b"stream: ", 100 * MB)), "longer than"),
    "10 MB line": (lambda p, c, n: (clamd_request(c), p.flood(c, b"stream: OK", 10 * MB, b" ")),
                   "longer than"),
    "another stream": (lambda p, c, n: (clamd_request(c), c.sendall(b"1: stream: OK\0")), "1: stream"),
    "a file's answer": (lambda p, c, n: (clamd_request(c), c.sendall(b"/tmp/x.eml: OK\0")), "/tmp/x.eml"),
    "empty answer": (lambda p, c, n: (clamd_request(c), c.sendall(b"\0")), "clamd"),
    "binary": (lambda p, c, n: (clamd_request(c), c.sendall(b"\xff\xfe\x01stream: OK\0")), "clamd"),
    "clamd error": (lambda p, c, n: (clamd_request(c), c.sendall(b"stream: Can't allocate memory ERROR\0")),
                    "ERROR"),
    # one verdict per INSTREAM: a clean one followed by another was read
    # as clean (session 16)
    "two answers": (lambda p, c, n: (clamd_request(c), c.sendall(b"stream: OK\0stream: Eicar FOUND\0")),
                    "more after the answer"),
}


def test_clamd_ok_for_part_of_the_message(fake_peer):
    """clamd answers OK after 10 bytes and reads no more: our send of a
    message larger than the socket buffers runs into clamd_timeout, and
    the OK that is there is about part of the message: no verdict."""
    p = fake_peer(lambda p, c, n: (c.recv(10), c.sendall(b"stream: OK\0"), p.hold(c)))
    res, took, err = scan(clamd_opts(p), msg=make_msg(body=b"x" * (16 * MB)))
    assert names(res) == ["AV_UNSCANNED"] and res["action"] == "tempfail", res
    assert "OK for part of the message" in res["symbols"][0]["desc"], res
    assert took < 5, took


@pytest.mark.parametrize("case", list(CLAMD_CASES))
def test_clamd_hostile(fake_peer, case):
    handler, why = CLAMD_CASES[case]
    p = fake_peer(handler)
    res, took, err = scan(clamd_opts(p), msg=make_msg(body=b"x" * 300000))
    assert names(res) == ["AV_UNSCANNED"], res
    assert res["action"] == "tempfail", res                # av_fail_action's default
    desc = res["symbols"][0]["desc"]
    assert desc.startswith("failure: clamd") and why in desc, res
    assert "not scanned (failure)" in err, err
    assert took < 4, took


def test_clamd_fake_itself_and_refused(fake_peer):
    p = fake_peer(lambda p, c, n: (clamd_request(c), c.sendall(b"stream: OK\0")))
    res, _, _ = scan(clamd_opts(p))
    assert names(res) == [] and res["action"] == "accept", res
    p = fake_peer(lambda p, c, n: (clamd_request(c), c.sendall(b"stream: Eicar-Test-Signature FOUND\0")))
    res, _, _ = scan(clamd_opts(p))
    assert names(res) == ["VIRUS_FOUND"] and res["action"] == "reject", res
    # a reset after the whole answer still counts (clamd closing hard)
    p = fake_peer(lambda p, c, n: (clamd_request(c), c.sendall(b"stream: OK\0"), reset(c)))
    res, _, _ = scan(clamd_opts(p))
    assert res["action"] == "accept", res
    res, took, _ = scan([("filters", "clamd"), ("clamd_socket", "127.0.0.1:%d" % free_port())])
    assert res["action"] == "tempfail" and "connect" in res["symbols"][0]["desc"], res
    assert took < 2
    # av_fail_action = accept: delivered, marked, never a silent pass
    p = fake_peer(lambda p, c, n: (clamd_request(c), c.sendall(b"stream: OK")))
    res, _, _ = scan(clamd_opts(p, ("av_fail_action", "accept")))
    assert res["action"] == "accept" and names(res) == ["AV_UNSCANNED"], res


# --- Redis -------------------------------------------------------------------

def resp_commands(c, buf=b""):
    """Yield (command args, ) from a RESP request stream, as bytes lists."""
    while True:
        while b"\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return
            buf += d
        line, buf = buf.split(b"\r\n", 1)
        assert line[:1] == b"*", line
        args = []
        for _ in range(int(line[1:])):
            while b"\r\n" not in buf:
                buf += c.recv(65536)
            ln, buf = buf.split(b"\r\n", 1)
            size = int(ln[1:])
            while len(buf) < size + 2:
                buf += c.recv(65536)
            args.append(buf[:size])
            buf = buf[size + 2:]
        yield args


def bulk(s):
    s = s if isinstance(s, bytes) else str(s).encode()
    return b"$%d\r\n%s\r\n" % (len(s), s)


def is_read(args):
    """A greylist read: GET, or (since session 21) the script that reads
    a key with Redis' clock (store_get_now: EVAL of GET and TIME)."""
    cmd = args[0].upper()
    return cmd == b"GET" or (cmd == b"EVAL" and b"'TIME'" in args[1])


def read_reply(value):
    """What a read answers: value (bytes, or None for nil), as GET or as
    store_get_now's {value, Redis time in ms}."""
    v = b"$-1\r\n" if value is None else bulk(value)
    return v, b"*2\r\n" + v + b":%d\r\n" % int(time.time() * 1000)


def normal_reply(args):
    """What a real Redis answers to mailwarden's greylist commands on an
    empty database (a read: nil; SET: OK)."""
    cmd = args[0].upper()
    if is_read(args):
        return read_reply(None)[cmd == b"EVAL"]
    if cmd == b"SET":
        return b"+OK\r\n"
    if cmd == b"EVAL":
        return b":1\r\n"
    return b"-ERR unknown command\r\n"


def redis_handler(first_get, conns=None):
    """Normal answers, except the first read (GET, or the get-with-time
    script) of each connection (or of the connections numbered in conns),
    which first_get(peer, conn, is_eval) answers (or not)."""
    def h(p, c, n):
        seen = conns is not None and n not in conns
        for args in resp_commands(c):
            with p.lock:
                p.requests.append((n, args))
            if is_read(args) and not seen:
                seen = True
                first_get(p, c, args[0].upper() == b"EVAL")
            else:
                c.sendall(normal_reply(args))
    return h


def grey_scan(addr, mode="open", rcpt="b@example.net", extra=()):
    return scan([("filters", "greylist"), ("store", "redis"), ("store_redis", addr),
                 ("store_timeout", "500ms"), ("store_failure", mode), ("greylist_delay", "1h")],
                msg=make_msg(), extra=["--client-ip", "192.0.2.1", "--from", "a@example.org",
                                       "--rcpt", rcpt] + list(extra))


REDIS_CASES = {
    "silent": (lambda p, c, ev: p.hold(c), "no complete reply within 500 ms"),
    # nil, one byte every 0.4 s: each byte within store_timeout of the last
    "one byte at a time": (lambda p, c, ev: p.drip(c, read_reply(None)[ev], 0.4), "no complete reply within 500 ms"),
    "closed mid-reply": (lambda p, c, ev: (c.sendall(b"$14\r\nP17"), c.shutdown(socket.SHUT_RDWR)),
                         "closed"),
    "100 MB": (lambda p, c, ev: p.flood(c, b"$104857600\r\n", 100 * MB), "longer than"),
    "10 MB line": (lambda p, c, ev: p.flood(c, b"+", 10 * MB), "longer than"),
    # hiredis 0.14 callocs the element pointers on reading the count
    "2e9 elements": (lambda p, c, ev: (c.sendall(b"*2000000000\r\n"), p.hold(c)), "elements"),
    "4e9 elements": (lambda p, c, ev: p.flood(c, b"*4000000000\r\n", 1 * MB, b":1\r\n"), "out of range"),
    "negative elements": (lambda p, c, ev: c.sendall(b"*-5\r\n:1\r\n:2\r\n"), "out of range"),
    "10M elements": (lambda p, c, ev: p.flood(c, b"*10000000\r\n", 40 * MB, b":1\r\n"), "elements"),
    "100k elements": (lambda p, c, ev: p.flood(c, b"*1000\r\n" + b"*100\r\n" + b":1\r\n" * 100, 1 * MB,
                                           b"*100\r\n" + b":1\r\n" * 100), "longer than"),
    "malformed": (lambda p, c, ev: c.sendall(b"?what\r\n"), "Protocol error"),
    "error": (lambda p, c, ev: c.sendall(b"-ERR out of luck\r\n"), "out of luck"),
    "integer for GET": (lambda p, c, ev: c.sendall(b":42\r\n"), "unexpected reply"),
    "array for GET": (lambda p, c, ev: c.sendall(b"*1\r\n$3\r\nP17\r\n"), "unexpected reply"),
}


@pytest.mark.parametrize("case", list(REDIS_CASES))
def test_redis_hostile(fake_peer, case):
    """A first read answered badly is a store failure: store_failure =
    closed tempfails the message within about store_timeout, with a log
    line; nothing is taken from the reply."""
    first_get, why = REDIS_CASES[case]
    p = fake_peer(redis_handler(first_get))
    res, took, err = grey_scan(p.addr, mode="closed")
    assert names(res) == ["GREYLIST_STORE_FAIL"] and res["action"] == "tempfail", (res, err)
    assert "store unavailable" in err and "store redis" in err, err
    if why:
        assert any(w in err for w in why.split("|")), err
    assert took < 3, took


def test_redis_fake_itself_and_refused(fake_peer):
    p = fake_peer(redis_handler(lambda p, c, ev: c.sendall(read_reply(None)[ev])))
    res, _, _ = grey_scan(p.addr, mode="closed")
    assert names(res) == ["GREYLIST"] and res["action"] == "tempfail", res
    # the client network's auto-whitelist mark (session 19), the triplet,
    # its key of before (an entry to move), the first attempt
    assert [b"read" if is_read(a) else a[0] for _, a in p.requests] == [b"read"] * 3 + [b"SET"], \
        p.requests
    # an answer with a second one stuck to it: the first is GET's, the
    # connection is not reused (each connection's first read is answered
    # so: the mark's GET, the triplet's and its old key's each drop
    # theirs, SET gets a fourth)
    p = fake_peer(redis_handler(lambda p, c, ev: c.sendall(read_reply(None)[ev] + b"+OK\r\n")))
    res, _, err = grey_scan(p.addr, mode="closed")
    assert names(res) == ["GREYLIST"], res
    assert "more data than the replies asked for; connection dropped" in err, err
    assert p.accepted == 4, p.accepted
    res, took, err = grey_scan("127.0.0.1:%d" % free_port(), mode="open")
    assert names(res) == ["GREYLIST_STORE_FAIL"] and res["action"] == "accept", res
    assert "cannot connect" in err and took < 2


def test_redis_bayes_pipeline_and_ratelimit_types(fake_peer):
    """Bayes reads its tokens as one pipelined batch of HMGETs: replies
    coming one every 0.2 s must not stretch it past store_timeout (no
    BAYES symbol then, mail goes on).  ratelimit's increment answered
    with a string is a logged store failure."""
    def bayes(p, c, n):
        for args in resp_commands(c):
            cmd = args[0].upper()
            if cmd == b"GET":
                c.sendall(bulk("1000"))             # bayes:nspam, bayes:nham
            elif cmd == b"HMGET":
                if not p.sleep(0.2):
                    return
                c.sendall(b"*2\r\n$1\r\n5\r\n$-1\r\n")
            else:
                c.sendall(normal_reply(args))
    p = fake_peer(bayes)
    res, took, err = scan([("filters", "bayes"), ("store", "redis"), ("store_redis", p.addr),
                           ("store_timeout", "500ms"), ("bayes_autolearn", "no")],
                          msg=make_msg(body=b" ".join(b"word%d" % i for i in range(40))))
    assert names(res) == [] and res["action"] == "accept", res
    assert "HMGET: no complete reply within 500 ms" in err, err
    assert took < 3, took
    p = fake_peer(lambda p, c, n: [c.sendall(bulk("12")) for _ in resp_commands(c)])
    res, took, err = scan([("filters", "ratelimit"), ("store", "redis"), ("store_redis", p.addr),
                           ("store_timeout", "500ms"), ("store_failure", "closed"),
                           ("ratelimit_ip", "10/1h")], extra=["--client-ip", "192.0.2.1"])
    assert names(res) == ["RATELIMIT_STORE_FAIL"] and res["action"] == "tempfail", res
    assert "unexpected reply of type 1" in err, err


def send(m, rcpt):
    c = m.client()
    c.ehlo()
    r = c.transaction("a@example.org", [rcpt], make_msg())
    c.quit()
    return r["final"]


def greylist_daemon(mw_factory, upstream, addr, mode="open", timeout="300ms"):
    # one scanner thread: every message takes the one pooled connection
    return mw_factory(upstream, opts=[
        ("filters", "greylist"), ("store", "redis"), ("store_redis", addr),
        ("store_timeout", timeout), ("store_failure", mode), ("greylist_delay", "1h"),
        ("scanner_threads", "1")])


def test_redis_late_reply_not_paired_with_next(mw_factory, upstream, fake_peer):
    """The first read's answer (a pass!) comes after store_timeout; the
    next message's GET must not read it on the same connection."""
    def late(p, c, ev):
        p.sleep(0.8)
        c.sendall(read_reply(b"P%d" % int(time.time() * 1000))[ev])
    p = fake_peer(redis_handler(late, conns=(1,)))
    m = greylist_daemon(mw_factory, upstream, p.addr, mode="closed")
    r = send(m, "one@example.net")
    assert r.code == 451 and "unavailable" in r.text, r
    time.sleep(1.0)                             # the late pass is on the wire
    r = send(m, "two@example.net")
    assert r.code == 451 and "Greylisted" in r.text, r
    assert "store redis" in m.stderr_text()


def test_redis_unasked_reply_on_idle_connection(mw_factory, upstream, fake_peer):
    """A reply nobody asked for, arriving while the connection is idle in
    the pool (a desynchronised proxy, a server bug), must not become the
    answer to the next message's first command."""
    def h(p, c, n):
        for args in resp_commands(c):
            with p.lock:
                p.requests.append((n, args))
            c.sendall(normal_reply(args))
            if args[0].upper() == b"SET" and n == 1:
                p.sleep(0.1)
                c.sendall(read_reply(b"P%d" % int(time.time() * 1000))[1])
    p = fake_peer(h)
    m = greylist_daemon(mw_factory, upstream, p.addr)
    assert send(m, "one@example.net").code == 451
    time.sleep(0.3)
    r = send(m, "two@example.net")
    assert r.code == 451 and "Greylisted" in r.text, r
    assert "unasked" in m.stderr_text() or "idle" in m.stderr_text()


def test_redis_idle_timeout_closes_pooled_connection(mw_factory, upstream, tmp_path):
    """Redis' own `timeout` closes idle clients: the next message must
    get a fresh connection, not a store failure (store_failure = closed
    would tempfail it)."""
    r = Redis(tmp_path / "redis")
    r.start()
    try:
        r.command("CONFIG", "SET", "timeout", "1")
        m = greylist_daemon(mw_factory, upstream, r.addr, mode="closed")
        assert send(m, "one@example.net").code == 451
        time.sleep(2.5)                         # Redis checks client timeouts about every 1 s
        res = send(m, "two@example.net")
        assert res.code == 451 and "Greylisted" in res.text, res
    finally:
        r.stop()


# A name resolved through this shim instead of the system resolver: each
# lookup of redis.mwtest is written to MW_TEST_GAI_LOG and takes
# MW_TEST_GAI_SLEEP seconds (a slow or dead DNS), then gives 127.0.0.1.
GAI_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
	int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
		(int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))
		dlsym(RTLD_NEXT, "getaddrinfo");

	if (node != NULL && strcmp(node, "redis.mwtest") == 0) {
		FILE *f = fopen(getenv("MW_TEST_GAI_LOG"), "a");

		if (f != NULL) {
			fprintf(f, "%d\n", (int)getpid());
			fclose(f);
		}
		usleep((useconds_t)(atof(getenv("MW_TEST_GAI_SLEEP")) * 1e6));
		node = "127.0.0.1";
	}
	return real(node, service, hints, res);
}
"""


def test_redis_host_name_resolved_once(mw_factory, upstream, tmp_path, monkeypatch):
    """store_redis given as a name: each new connection (here after
    Redis' idle timeout) must not wait for the resolver again, outside
    store_timeout; the name is resolved once, at start-up, like
    spamd_address and clamd_socket."""
    shim = tmp_path / "gai.so"
    src = tmp_path / "gai.c"
    src.write_text(GAI_SHIM)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(shim), str(src), "-ldl"], check=True)
    log = tmp_path / "gai.log"
    monkeypatch.setenv("LD_PRELOAD", str(shim))
    monkeypatch.setenv("MW_TEST_GAI_LOG", str(log))
    monkeypatch.setenv("MW_TEST_GAI_SLEEP", "1.5")
    # the sanitizer build wants its runtime first in the library list
    monkeypatch.setenv("ASAN_OPTIONS", (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":"))
    r = Redis(tmp_path / "redis")
    r.start()
    try:
        r.command("CONFIG", "SET", "timeout", "1")
        m = greylist_daemon(mw_factory, upstream, "redis.mwtest:%d" % r.port, mode="closed")
        assert send(m, "one@example.net").code == 451
        at_start = log.read_text().split()      # the lookups at start-up
        time.sleep(2.5)                         # Redis closes the idle connection
        t0 = time.monotonic()
        res = send(m, "two@example.net")
        took = time.monotonic() - t0
        assert res.code == 451 and "Greylisted" in res.text, res
        assert took < 1.0, took
        assert log.read_text().split() == at_start, (at_start, log.read_text())
    finally:
        r.stop()
