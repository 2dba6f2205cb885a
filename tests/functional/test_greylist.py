"""test_greylist.py - greylisting and rate limits end to end through the
proxy, with the LMDB and the Redis store; two mailwarden instances sharing
one Redis; Redis down with store_failure open and closed."""

import time

import pytest

from mwlib import make_msg
from storelib import Redis, redis_server, store, store_opts  # noqa: F401 (fixtures)
from storelib import fnv1a64, key_hash, legacy_greylist_key, store_peek, store_put

# Pairs of 13-character local parts with one 64-bit FNV-1a state after
# them (found by a distinguished-point collision search, 2^31 to 2^32
# FNV-1a runs, a few minutes of C), so any common suffix keeps them equal:
# GL_* from the state after "127.0.0.0/24\xff", the start of a greylist
# triplet from 127.0.0.1; RL_* from the offset basis, where a rate limit
# subject started.  The keys of before were one for each pair.
GL_A, GL_B = "572ixl3bjrvul@example.org", "27gcemoht2m7g@example.org"
RL_A, RL_B = "syglazw57kvyg", "i2s475yfm2vee"


def send(m, frm="sender@example.org", rcpts=("rcpt@example.net",), subject="hello",
         helo="client.example.org"):
    c = m.client()
    c.ehlo(helo)
    r = c.transaction(frm, list(rcpts), make_msg(subject=subject, frm=frm, to=rcpts[0]))
    c.quit()
    return r["final"]


def test_greylist_delay_then_pass(mw_factory, upstream, store):
    kind, opts, _ = store
    m = mw_factory(upstream, opts=opts + [("filters", "greylist"), ("greylist_delay", "2s")])
    r = send(m)
    assert r.code == 451 and "4.7.1" in r.text and "Greylisted" in r.text, r
    r = send(m)                                        # too early
    assert r.code == 451, r
    assert upstream.messages == []
    time.sleep(2.2)
    r = send(m)
    assert r.code == 250, r
    assert len(upstream.messages) == 1
    # a passed triplet goes through at once; a new recipient is a new triplet
    assert send(m).code == 250
    r = send(m, rcpts=("other@example.net",))
    assert r.code == 451, r
    # a triplet with a passed and a new recipient waits for the new one
    r = send(m, rcpts=("rcpt@example.net", "third@example.net"))
    assert r.code == 451, r
    rec = m.audit(6)[-1]
    assert any(s["name"] == "GREYLIST" for s in rec["symbols"]), rec


def test_greylist_whitelist_and_outbound_skip(mw_factory, upstream, tmp_path):
    opts = store_opts("lmdb", tmp_path) + [("filters", "greylist"), ("greylist_delay", "1h")]
    m = mw_factory(upstream, opts=opts + [("greylist_whitelist", "10.0.0.0/8 127.0.0.0/8")])
    assert send(m).code == 250
    m2 = mw_factory(upstream, opts=store_opts("lmdb", tmp_path) + [
        ("filters", "greylist"), ("greylist_delay", "1h"), ("greylist_whitelist", "@example.org")])
    assert send(m2).code == 250
    assert send(m2, frm="x@elsewhere.example").code == 451
    m3 = mw_factory(upstream, opts=store_opts("lmdb", tmp_path) + [
        ("filters", "greylist"), ("greylist_delay", "1h")], direction="outbound")
    assert send(m3).code == 250


def long_addr(user, tail):
    """user@<three 63-byte labels>.<tail>.example: about 270 bytes, as long
    as a path gets (a 64-byte local part, a 255-byte domain at most)"""
    return "%s@%s.%s.example" % (user.ljust(64, "x"), ".".join(["l" * 63] * 3), tail)


def test_long_envelope_keys_stay_short(mw_factory, upstream, store, tmp_path):
    """Greylisting and rate limits hash the envelope into keys of a fixed
    length: a sender, recipient and HELO name of about 270 bytes each (their
    triplet far past the store's 511-byte key limit) are greylisted and
    counted as short ones are, with store_failure = closed (a key refused
    would be a 451 for the store, not "Greylisted"), and two senders that
    differ only at their ends are two triplets, not one."""
    kind, opts, redis = store
    frm, frm2, rcpt = long_addr("s", "a"), long_addr("s", "b"), long_addr("r", "a")
    helo = ".".join(["h" * 63] * 3) + ".example"
    m = mw_factory(upstream, opts=opts + [("filters", "greylist"), ("greylist_delay", "2s"),
                                          ("store_failure", "closed")])
    r = send(m, frm=frm, rcpts=(rcpt,), helo=helo)
    assert r.code == 451 and "Greylisted" in r.text, r
    time.sleep(2.2)
    assert send(m, frm=frm, rcpts=(rcpt,), helo=helo).code == 250
    r = send(m, frm=frm2, rcpts=(rcpt,), helo=helo)
    assert r.code == 451 and "Greylisted" in r.text, r
    m2 = mw_factory(upstream, opts=store_opts(kind, tmp_path, redis) + [
        ("filters", "ratelimit"), ("ratelimit_sender", "1/1h"), ("store_failure", "closed")])
    assert send(m2, frm=frm, rcpts=(rcpt,), helo=helo).code == 250
    r = send(m2, frm=frm, rcpts=(rcpt,), helo=helo)
    assert r.code == 451 and "sender" in r.text, r
    assert send(m2, frm=frm2, rcpts=(rcpt,), helo=helo).code == 250
    if redis is not None:
        keys = redis.keys()
        assert b"gl:" in keys and b"rl:" in keys, keys
        # RESP array of bulk strings: "$<len>" lines give each key's length
        lens = [int(x[1:]) for x in keys.split(b"\r\n") if x.startswith(b"$")]
        # store_prefix (15), "rl:sender:", 32 hex digits, ":<window>"
        assert lens and max(lens) < 80, keys


def test_fnv_colliding_sender_is_greylisted(mw_factory, upstream, store):
    """A sender crafted so that its triplet's FNV-1a key was a passed
    triplet's skipped greylisting; its key is its own now."""
    kind, opts, _ = store
    net = "127.0.0.0/24"
    assert legacy_greylist_key(net, GL_A, "rcpt@example.net") \
        == legacy_greylist_key(net, GL_B, "rcpt@example.net")
    m = mw_factory(upstream, opts=opts + [("filters", "greylist"), ("greylist_delay", "2s")])
    assert send(m, frm=GL_A).code == 451
    time.sleep(2.2)
    assert send(m, frm=GL_A).code == 250
    r = send(m, frm=GL_B)
    assert r.code == 451 and "Greylisted" in r.text, r
    assert len(upstream.messages) == 1
    assert store_peek(kind, opts, store[2], key_hash("gl:", net, GL_A, "rcpt@example.net"))[1][0] == "P"


def test_fnv_colliding_senders_count_apart(mw_factory, upstream, store, tmp_path):
    """Two senders (and two recipient domains) whose FNV-1a rate limit keys
    were one: the second used up the first's limit.  Each has its own
    counter now."""
    kind, opts, redis = store
    a, b = RL_A + "@example.org", RL_B + "@example.org"
    assert fnv1a64(a.encode()) == fnv1a64(b.encode())
    m = mw_factory(upstream, opts=opts + [("filters", "ratelimit"), ("ratelimit_sender", "1/1h")])
    assert send(m, frm=a).code == 250
    assert send(m, frm=b).code == 250
    r = send(m, frm=a)
    assert r.code == 451 and "sender" in r.text, r
    m2 = mw_factory(upstream, opts=store_opts(kind, tmp_path, redis) + [
        ("filters", "ratelimit"), ("ratelimit_rcpt_domain", "1/1h")])
    assert send(m2, rcpts=("x@%s.example" % RL_A,)).code == 250
    assert send(m2, rcpts=("x@%s.example" % RL_B,)).code == 250
    assert send(m2, rcpts=("y@%s.example" % RL_A,)).code == 451


def test_old_greylist_keys_move(mw_factory, upstream, store):
    """Entries under the FNV-1a keys of before (as an older mailwarden left
    them in the store) count after the upgrade: a passed triplet passes, a
    first attempt old enough passes, a recent one waits out its delay; each
    moves to its new key with the lifetime it had left, and its old key
    goes, so a sender colliding with it gains nothing afterwards."""
    kind, opts, redis = store
    net, rcpt = "127.0.0.0/24", "rcpt@example.net"
    now = time.time()
    ms = int(now * 1000)
    life, retry = 86400, 3600
    old = {}

    def put(sender, value, born_ms, span):
        old[sender] = legacy_greylist_key(net, sender, rcpt)
        store_put(kind, opts, redis, old[sender], value, (born_ms // 1000) + span)

    put(GL_A, "P%d" % (ms - 600000), ms - 600000, life)       # passed 10 min ago
    put("late@example.org", "F%d" % (ms - 5000), ms - 5000, retry)
    put("early@example.org", "F%d" % (ms - 500), ms - 500, retry)
    # a pass spent (greylist_pass_lifetime lowered since), its key still there
    put("spent@example.org", "P%d" % (ms - 2 * life * 1000), ms, life)
    m = mw_factory(upstream, opts=opts + [
        ("filters", "greylist"), ("greylist_delay", "2s"),
        ("greylist_pass_lifetime", "1d"), ("greylist_retry_window", "1h")])
    assert send(m, frm=GL_A).code == 250
    assert send(m, frm="late@example.org").code == 250
    r = send(m, frm="early@example.org")
    assert r.code == 451 and "Greylisted" in r.text, r
    rec = m.audit(3)[-1]
    gl = [x for x in rec["symbols"] if x["name"] == "GREYLIST"]
    assert gl and "(0 new)" in gl[0]["description"], rec
    assert send(m, frm="spent@example.org").code == 451
    for sender in (GL_A, "late@example.org", "early@example.org"):
        assert store_peek(kind, opts, redis, old[sender]) is None, sender
    left, v = store_peek(kind, opts, redis, key_hash("gl:", net, GL_A, rcpt))
    assert v == "P%d" % (ms - 600000) and life - 600 - 5 < left <= life - 600 + 2, (left, v)
    left, v = store_peek(kind, opts, redis, key_hash("gl:", net, "late@example.org", rcpt))
    assert v[0] == "P" and left > life - 10, (left, v)
    left, v = store_peek(kind, opts, redis, key_hash("gl:", net, "early@example.org", rcpt))
    assert v == "F%d" % (ms - 500) and retry - 5 < left <= retry + 1, (left, v)
    # the old key is gone: the sender colliding with it is a new triplet
    r = send(m, frm=GL_B)
    assert r.code == 451 and "Greylisted" in r.text, r
    time.sleep(2.2)
    assert send(m, frm="early@example.org").code == 250


def test_two_instances_share_greylist_in_redis(mw_factory, upstream, redis_server, tmp_path):
    opts = store_opts("redis", tmp_path, redis_server) + [("filters", "greylist"),
                                                          ("greylist_delay", "2s")]
    a = mw_factory(upstream, opts=opts)
    b = mw_factory(upstream, opts=opts)
    assert send(a).code == 451
    assert send(b).code == 451          # b knows the triplet: still too early
    time.sleep(2.2)
    assert send(b).code == 250          # b saw a's first attempt
    assert send(a).code == 250          # a sees the pass b recorded
    # a triplet first seen by b: a greylists it as seen, not as new
    assert send(b, rcpts=("new@example.net",)).code == 451
    r = send(a, rcpts=("new@example.net",))
    assert r.code == 451
    rec = a.audit(3)[-1]
    gl = [s for s in rec["symbols"] if s["name"] == "GREYLIST"]
    assert gl and "(0 new)" in gl[0]["description"], rec


@pytest.mark.parametrize("mode,code", [("open", 250), ("closed", 451)])
def test_redis_down(mw_factory, upstream, mode, code):
    from mwlib import free_port
    opts = [("store", "redis"), ("store_redis", "127.0.0.1:%d" % free_port()),
            ("store_timeout", "300ms"), ("store_failure", mode),
            ("filters", "greylist ratelimit"), ("ratelimit_ip", "100/1h")]
    m = mw_factory(upstream, opts=opts)
    r = send(m)
    assert r.code == code, r
    assert m.alive()
    assert "cannot connect" in m.stderr_text()


def test_redis_restart_recovers(mw_factory, upstream, tmp_path):
    r = Redis(tmp_path / "redis")
    opts = [("store", "redis"), ("store_redis", r.addr), ("store_timeout", "300ms"),
            ("store_failure", "closed"), ("filters", "greylist"), ("greylist_delay", "0")]
    m = mw_factory(upstream, opts=opts)
    assert send(m).code == 451          # not running yet: fail closed
    r.start()
    try:
        time.sleep(1.1)                 # reconnects at most once a second
        assert send(m).code == 250
        assert b"gl:" in r.keys()
    finally:
        r.stop()


def test_ratelimit_sender_and_ip(mw_factory, upstream, store, tmp_path):
    kind, opts, redis = store
    m = mw_factory(upstream, opts=opts + [("filters", "ratelimit"), ("ratelimit_sender", "2/1h")])
    assert send(m).code == 250
    assert send(m).code == 250
    r = send(m)
    assert r.code == 451 and "4.7.1" in r.text and "sender" in r.text, r
    assert send(m, frm="other@example.org").code == 250
    rec = m.audit(4)[-2]
    assert any(s["name"] == "RATELIMIT_SENDER" for s in rec["symbols"]), rec
    m2 = mw_factory(upstream, opts=store_opts(kind, tmp_path, redis) + [
        ("filters", "ratelimit"), ("ratelimit_ip", "1/1h")])
    assert send(m2).code == 250
    assert send(m2, frm="x@example.com").code == 451


def test_ratelimit_rcpt_domain_window_slides(mw_factory, upstream, tmp_path):
    m = mw_factory(upstream, opts=store_opts("lmdb", tmp_path) + [
        ("filters", "ratelimit"), ("ratelimit_rcpt_domain", "1/2s")])
    assert send(m).code == 250
    assert send(m, rcpts=("x@example.net", "y@example.net")).code == 451
    assert send(m, rcpts=("z@other.example",)).code == 250
    time.sleep(4.1)                     # two windows later nothing is left
    assert send(m).code == 250


def test_bad_settings_refused(tmp_path):
    from mwlib import run_mw
    r = run_mw(["-t", "-o", "filters=ratelimit", "-o", "ratelimit_ip=lots",
                "-o", "store_path=%s" % (tmp_path / "s.lmdb")])
    assert r.returncode != 0 and "ratelimit_ip" in (r.stderr + r.stdout).decode()
    r = run_mw(["-t", "-o", "filters=greylist", "-o", "greylist_whitelist=not-an-ip",
                "-o", "store_path=%s" % (tmp_path / "s.lmdb")])
    assert r.returncode != 0 and "greylist_whitelist" in (r.stderr + r.stdout).decode()


def test_delay_not_shorter_than_retry_window_refused(tmp_path):
    """greylist_delay >= greylist_retry_window was accepted, by -t too, and
    then no new triplet ever passed: its first attempt was forgotten before
    the delay was over, and each retry started a new one.  Now refused
    where the clash is made (the later of the two in the file; -o: the
    delay)."""
    from mwlib import run_mw
    base = ["-t", "-o", "filters=greylist", "-o", "store_path=%s" % (tmp_path / "s.lmdb")]
    r = run_mw(base + ["-o", "greylist_delay=3s", "-o", "greylist_retry_window=2s"])
    assert r.returncode == 1, r
    assert ("-o greylist_delay: greylist_delay (3s) must be shorter than "
            "greylist_retry_window (2s)") in r.stderr.decode(), r.stderr
    r = run_mw(base + ["-o", "greylist_retry_window=1500ms", "-o", "greylist_delay=1500ms"])
    assert r.returncode == 1 and b"-o greylist_delay: greylist_delay (1500ms)" in r.stderr, r.stderr
    conf = tmp_path / "gl.conf"
    conf.write_text("filters = greylist\ngreylist_delay = 10m\ngreylist_retry_window = 5m\n")
    r = run_mw(["-t", "-c", str(conf), "-o", "store_path=%s" % (tmp_path / "s.lmdb")])
    assert r.returncode == 1 and ("%s:3: greylist_delay (600s) must be shorter" % conf).encode() \
        in r.stderr, r.stderr
    r = run_mw(base + ["-o", "greylist_delay=2s", "-o", "greylist_retry_window=3s"])
    assert r.returncode == 0, r.stderr


def test_short_pass_lifetime_renewed_by_regular_mail(mw_factory, upstream, tmp_path):
    """A pass is renewed by the mail that uses it, but at most hourly: with
    greylist_pass_lifetime under an hour a correspondent sending all the
    time was greylisted again when its pass ran out.  Now it is renewed
    after half its lifetime when that is shorter than an hour: a message a
    second for 8 s keeps a 6 s pass (renewed every 3 s) alive."""
    opts = store_opts("lmdb", tmp_path) + [("filters", "greylist"), ("greylist_delay", "1s"),
                                           ("greylist_pass_lifetime", "6s")]
    m = mw_factory(upstream, opts=opts)
    assert send(m).code == 451
    time.sleep(1.2)
    codes = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 8.5:
        codes.append(send(m).code)
        time.sleep(1.0)
    assert codes and all(c == 250 for c in codes), codes
