"""test_redis_shared.py - several mailwarden machines sharing one Redis
(session 21, review rv-redis): one clock for the stamps and windows that
they compare, and a Redis that asks for a password.

Clock skew comes from an LD_PRELOAD shim (SKEW_SHIM, built by
mwlib.preload_shim) that shifts CLOCK_REALTIME, gettimeofday and time by
MW_SKEW_S seconds for one of two daemons sharing one redis-server on
loopback.  Before session 21 each machine stamped greylisting's first
attempts and numbered the rate limits' windows by its own clock:

- a first attempt stamped by a machine whose clock runs behind looked old
  to the others, and a retry there passed at once (skew >= greylist_delay)
  or after the delay less the skew;
- machines in different windows counted into different keys: a limit let
  about twice its count through.

Now both come from the store's clock (Redis' TIME inside the scripts,
store_get_now and store_take).

Redis with requirepass: mailwarden had no password setting (NOAUTH at
every call, so a shared Redis had to be open on the network), and logged
every error reply at LOG_ERR (60 lines for 20 messages).  Now
store_redis_password_file (and store_redis_user for an ACL user) AUTH at
every connect, and an error reply is logged once until a call is answered
again.
"""

import os
import random
import shutil
import socket
import subprocess
import time

import pytest

from mwlib import free_port, make_msg, preload_shim, run_mw, wait_until
from storelib import Redis, redis_server, store_opts  # noqa: F401 (fixtures)

# CLOCK_REALTIME shifted by MW_SKEW_S seconds (a machine whose clock is off)
SKEW_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <sys/time.h>
static long skew(void) { const char *s = getenv("MW_SKEW_S"); return s ? atol(s) : 0; }
int clock_gettime(clockid_t id, struct timespec *ts)
{
	static int (*real)(clockid_t, struct timespec *);
	if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
	int r = real(id, ts);
	if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) ts->tv_sec += skew();
	return r;
}
int gettimeofday(struct timeval *tv, void *tz)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (tv) { tv->tv_sec = ts.tv_sec; tv->tv_usec = ts.tv_nsec / 1000; }
	(void)tz;
	return 0;
}
time_t time(time_t *t) { struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts); if (t) *t = ts.tv_sec; return ts.tv_sec; }
"""


def send(m, frm="sender@example.org", rcpts=("rcpt@example.net",), subject="hello"):
    c = m.client()
    c.ehlo("client.example.org")
    r = c.transaction(frm, list(rcpts), make_msg(subject=subject, frm=frm, to=rcpts[0]))
    c.quit()
    return r["final"]


def start_skewed(mw_factory, upstream, opts, monkeypatch, tmp_path, skew_s):
    """a mailwarden whose wall clock is skew_s seconds off (LD_PRELOAD)"""
    preload_shim(monkeypatch, tmp_path, "skew", SKEW_SHIM)
    monkeypatch.setenv("MW_SKEW_S", str(skew_s))
    try:
        return mw_factory(upstream, opts=opts)
    finally:
        monkeypatch.delenv("LD_PRELOAD")
        monkeypatch.delenv("MW_SKEW_S")


# --- greylisting across machines with skewed clocks --------------------------

def test_clock_behind_lets_the_retry_through_at_once(mw_factory, upstream, redis_server,
                                                     monkeypatch, tmp_path):
    """Machine B's clock is 6 minutes behind A's (greylist_delay 5 min, the
    default).  The client's first attempt lands on B (451), its retry one
    second later on A: stamped with B's clock, A saw the first attempt 6
    minutes old and passed it.  Now it is greylisted still."""
    opts = store_opts("redis", tmp_path, redis_server) + [("filters", "greylist"),
                                                          ("greylist_delay", "5m")]
    a = mw_factory(upstream, opts=opts)
    b = start_skewed(mw_factory, upstream, opts, monkeypatch, tmp_path, -360)
    r = send(b)
    assert r.code == 451, r                        # first attempt, on B
    time.sleep(1)
    r = send(a)                                    # retry 1 s later, on A
    assert r.code == 451, ("retry 1 s after the first attempt passed greylisting "
                           "(greylist_delay 5m) because B's clock is 6 min behind: %r" % (r,))
    assert "try again in 3" in r.text or "try again in 29" in r.text, r   # ~299 s left


def test_clock_behind_shortens_the_delay(mw_factory, upstream, redis_server, monkeypatch, tmp_path):
    """The same with a skew smaller than the delay (10 s delay, B 8 s
    behind): the retry on A after 3 s was let through; it is held, and
    the retry after the delay (by either clock's reckoning) passes."""
    opts = store_opts("redis", tmp_path, redis_server) + [("filters", "greylist"),
                                                          ("greylist_delay", "10s")]
    a = mw_factory(upstream, opts=opts)
    b = start_skewed(mw_factory, upstream, opts, monkeypatch, tmp_path, -8)
    assert send(b).code == 451
    time.sleep(3)
    r = send(a)
    assert r.code == 451, "retry after 3 s of a 10 s greylist_delay passed (skew 8 s): %r" % (r,)
    time.sleep(7.5)
    assert send(b).code == 250                     # the delay is over, on B's side too


def test_clock_ahead_does_not_lengthen_the_delay(mw_factory, upstream, redis_server,
                                                 monkeypatch, tmp_path):
    """B's clock 30 s ahead: the first attempt on B, the retry on A after
    the delay (4 s) passes; with the machines' own clocks it had to wait
    out the skew as well (bounded since session 19 by taking such a stamp
    as now, which still made the retry wait one more delay)."""
    opts = store_opts("redis", tmp_path, redis_server) + [("filters", "greylist"),
                                                          ("greylist_delay", "4s")]
    a = mw_factory(upstream, opts=opts)
    b = start_skewed(mw_factory, upstream, opts, monkeypatch, tmp_path, 30)
    assert send(b).code == 451
    time.sleep(4.5)
    r = send(a)
    assert r.code == 250, "retry after the delay greylisted again (B 30 s ahead): %r" % (r,)


# --- rate limits across machines with skewed clocks ---------------------------

def test_ratelimit_skewed_machines_share_the_limit(mw_factory, upstream, redis_server,
                                                  monkeypatch, tmp_path):
    """ratelimit_sender 3/20s shared by two machines on one Redis, B's clock
    10 s ahead.  Each machine keyed its counters by ITS window number: while
    B was in window k+1 and A still in k, 3 via B and then 3 via A within a
    second all passed, 6 where the limit is 3 per 20 s."""
    opts = store_opts("redis", tmp_path, redis_server) + [("filters", "ratelimit"),
                                                          ("ratelimit_sender", "3/20s")]
    a = mw_factory(upstream, opts=opts)
    b = start_skewed(mw_factory, upstream, opts, monkeypatch, tmp_path, 10)
    # wait until A is 12 s into a 20 s window (B is then 2 s into the next)
    while True:
        into = time.time() % 20
        if 12.0 <= into < 13.0:
            break
        time.sleep(0.2)
    frm = "burst%x@example.org" % random.getrandbits(32)
    codes = [send(b, frm=frm).code for _ in range(3)] + [send(a, frm=frm).code for _ in range(3)]
    assert codes.count(250) <= 3, "ratelimit_sender 3/20s let %d of 6 through within a second: %r" % (
        codes.count(250), codes)
    assert codes[:3] == [250, 250, 250], codes


# --- a Redis that asks for a password ----------------------------------------

def start_redis(tmp_path, *extra):
    """a redis-server on loopback with extra arguments (requirepass...)"""
    r = Redis(tmp_path / "redis")
    exe = shutil.which("redis-server")
    os.makedirs(r.tmpdir, exist_ok=True)
    r.proc = subprocess.Popen([exe, "--port", str(r.port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", r.tmpdir] + list(extra),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)

    def up():
        try:
            return r.command("PING") != b""
        except OSError:
            return False
    if not wait_until(up, 5, 0.05):
        r.stop()
        pytest.fail("redis-server did not answer")
    return r


def command_as(r, auth, *args):
    """AUTH with auth (a tuple) then one command, on one connection: the
    last reply's raw bytes"""
    s = socket.create_connection(("127.0.0.1", r.port), timeout=2)
    try:
        out = b""
        for cmd in (("AUTH",) + auth, args):
            out += b"*%d\r\n" % len(cmd)
            for a in cmd:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        time.sleep(0.05)
        data = s.recv(65536)
        return data.split(b"\r\n", 1)[1]
    finally:
        s.close()


def password_file(tmp_path, text, mode=0o600):
    p = tmp_path / ("redis-pw-%x" % random.getrandbits(32))
    p.write_text(text)
    os.chmod(p, mode)
    return str(p)


def test_requirepass_store_failure_is_logged_once_per_outage(mw_factory, upstream, tmp_path):
    """Redis with requirepass and no password set here: every call is
    answered NOAUTH.  It was logged at LOG_ERR at every call (60+ lines for
    20 messages to 3 recipients); store.h promises once per burst."""
    r = start_redis(tmp_path, "--requirepass", "s3cret")
    try:
        assert b"NOAUTH" in r.command("GET", "x")
        opts = store_opts("redis", tmp_path, r) + [("filters", "greylist"),
                                                   ("store_failure", "open")]
        m = mw_factory(upstream, opts=opts)
        for i in range(20):
            assert send(m, rcpts=("a@example.net", "b@example.net", "c@example.net")).code == 250
        n = m.stderr_text().count("NOAUTH")
        assert n <= 2, "%d NOAUTH log lines for 20 messages (one outage)" % n
        assert n == 1, m.stderr_text()
    finally:
        r.stop()


def test_password_file_authenticates(mw_factory, upstream, tmp_path):
    """store_redis_password_file: AUTH at every connect; greylisting works
    against a Redis with requirepass (451, then the retry passes), and the
    triplet is in Redis.  A connection Redis closed (CLIENT KILL) is made
    again, with AUTH again."""
    r = start_redis(tmp_path, "--requirepass", "s3cret pw")
    try:
        opts = store_opts("redis", tmp_path, r) + [
            ("filters", "greylist"), ("greylist_delay", "1s"), ("store_failure", "closed"),
            ("store_redis_password_file", password_file(tmp_path, "s3cret pw\n"))]
        m = mw_factory(upstream, opts=opts)
        assert send(m).code == 451
        prefix = dict(opts)["store_prefix"]
        keys = command_as(r, ("s3cret pw",), "KEYS", prefix + "gl:*")
        assert prefix.encode() + b"gl:" in keys, keys
        command_as(r, ("s3cret pw",), "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        time.sleep(1.2)
        assert send(m).code == 250
        assert "NOAUTH" not in m.stderr_text() and "s3cret" not in m.stderr_text()
    finally:
        r.stop()


def test_acl_user_and_wrong_password(mw_factory, upstream, tmp_path):
    """store_redis_user: AUTH as an ACL user (Redis 6+) limited to the
    prefix's keys.  A wrong password is a connection failure: logged once
    (WRONGPASS, never the password), store_failure applies."""
    r = start_redis(tmp_path, "--requirepass", "adminpw")
    try:
        prefix = "mwacl%x:" % random.getrandbits(32)
        reply = command_as(r, ("adminpw",), "ACL", "SETUSER", "mw", "on", ">userpw",
                           "~%s*" % prefix, "+@all")
        assert reply.startswith(b"+OK"), reply
        base = [("store", "redis"), ("store_redis", r.addr), ("store_prefix", prefix),
                ("filters", "greylist"), ("store_failure", "closed"), ("store_redis_user", "mw")]
        m = mw_factory(upstream, opts=base + [
            ("store_redis_password_file", password_file(tmp_path, "userpw"))])
        assert send(m).code == 451
        assert "GREYLIST_STORE_FAIL" not in m.stderr_text()
        bad = mw_factory(upstream, opts=base + [
            ("store_redis_password_file", password_file(tmp_path, "nope\n"))])
        for _ in range(5):
            res = send(bad)
            assert res.code == 451 and "unavailable" in res.text, res
        text = bad.stderr_text()
        assert text.count("WRONGPASS") == 1, text
        assert "nope" not in text
    finally:
        r.stop()


def test_password_file_others_may_read_is_refused(tmp_path):
    """A password file every local user may read is refused at -t, as
    dkim_sign_key's key files are; a missing file names the path."""
    pw = password_file(tmp_path, "s3cret\n", 0o644)
    base = ["-t", "--listen", "127.0.0.1:%d" % free_port(), "--upstream", "127.0.0.1:1",
            "-o", "store=redis", "-o", "store_redis=127.0.0.1:9", "-o", "filters=greylist"]
    r = run_mw(base + ["-o", "store_redis_password_file=" + pw])
    err = r.stderr.decode()
    assert r.returncode != 0, err
    assert "every local user may read the password" in err, err
    assert "s3cret" not in err
    r = run_mw(base + ["-o", "store_redis_password_file=" + str(tmp_path / "none")])
    err = r.stderr.decode()
    assert r.returncode != 0 and "cannot open" in err, err
    os.chmod(pw, 0o600)
    r = run_mw(base + ["-o", "store_redis_password_file=" + pw])
    assert r.returncode == 0, r.stderr.decode()
