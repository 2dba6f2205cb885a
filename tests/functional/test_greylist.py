"""test_greylist.py - greylisting and rate limits end to end through the
proxy, with the LMDB and the Redis store; two mailwarden instances sharing
one Redis; Redis down with store_failure open and closed; tagged senders,
the client auto-whitelist, greylist_whitelist_file with host names (a
loopback DNS server), @domain entries needing SPF, clock skew (session 19)."""

import json
import smtplib
import time

import pytest

from dnsserver import dns_server, txt  # noqa: F401 (fixture)
from mwlib import make_msg, run_mw
from storelib import Redis, redis_server, store, store_opts  # noqa: F401 (fixtures)
from storelib import fnv1a64, key_hash, legacy_greylist_key, store_del, store_peek, store_put

# Pairs of 13-character local parts with one 64-bit FNV-1a state after
# them (found by a distinguished-point collision search, 2^31 to 2^32
# FNV-1a runs, a few minutes of C), so any common suffix keeps them equal:
# GL_* from the state after "127.0.0.0/24\xff", the start of a greylist
# triplet from 127.0.0.1; RL_* from the offset basis, where a rate limit
# subject started.  The keys of before were one for each pair.
GL_A, GL_B = "572ixl3bjrvul@example.org", "27gcemoht2m7g@example.org"
# ... and as the triplet holds them since session 19 (sender_norm: digit
# runs to '#'); the keys of before hash them as written
GL_A_NORM = "#ixl#bjrvul@example.org"
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
        # store_prefix (15), "rl:sender:", 32 hex digits (LMDB adds ":<window>")
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
    assert store_peek(kind, opts, store[2], key_hash("gl:", net, GL_A_NORM, "rcpt@example.net"))[1][0] == "P"


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
    left, v = store_peek(kind, opts, redis, key_hash("gl:", net, GL_A_NORM, rcpt))
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


# --- session 19: what an administrator expects of greylisting ----------------

GL1 = [("filters", "greylist"), ("greylist_delay", "1s")]


def send_from(m, src_ip, frm="sender@example.org", rcpts=("rcpt@example.net",)):
    """One message from a given loopback source address: the SMTP code of
    the end of data (or of the first refusal)."""
    s = smtplib.SMTP(timeout=10, source_address=(src_ip, 0))
    try:
        s.connect("127.0.0.1", m.port)
        s.ehlo("out.pool.example")
        s.mail(frm)
        for r in rcpts:
            s.rcpt(r)
        code, _ = s.data(make_msg(subject="pool", frm="x@example.org", to="y@example.net"))
        return code
    except smtplib.SMTPDataError as e:
        return e.smtp_code
    finally:
        try:
            s.quit()
        except Exception:
            pass


def gl_symbol(rec, name):
    return [s for s in rec["symbols"] if s["name"] == name]


@pytest.mark.parametrize("tag1,tag2", [
    ("prvs=1123abcdef=news@example.org", "prvs=1124fedcba=news@example.org"),       # BATV
    ("SRS0=HHH1=T1=orig.example=alice@fwd.example", "SRS0=HHH2=T2=orig.example=alice@fwd.example"),
    ("bounces-1000123-rcpt=example.net@lists.example.org",                          # VERP
     "bounces-1000124-rcpt=example.net@lists.example.org"),
    ("list+ab12@example.org", "list+cd34@example.org"),                             # +ext
])
def test_tagged_sender_next_message_passes(mw_factory, upstream, tmp_path, tag1, tag2):
    """A list or BATV/SRS sender whose message passed greylisting writes its
    next one under a new tag: the triplet holds the sender without its tag
    (filters/sender_norm.c), so the next message is not greylisted again
    (before: every message waited greylist_delay, forever)."""
    m = mw_factory(upstream, opts=store_opts("lmdb", tmp_path) + GL1)
    assert send(m, frm=tag1).code == 451
    time.sleep(1.2)
    assert send(m, frm=tag1).code == 250
    r = send(m, frm=tag2)
    assert r.code == 250, "next message of a tagged sender greylisted again: %r" % (r,)
    # another sender of the same domain is still another triplet
    assert send(m, frm="someone@example.org").code == 451


def test_pass_under_the_key_of_the_sender_as_written_moves(mw_factory, upstream, store):
    """A pass written before session 19 under the sender as written
    (list-42@) still passes, and moves to the normalised sender's key."""
    kind, opts, redis = store
    net, rcpt, frm = "127.0.0.0/24", "rcpt@example.net", "List-42@example.org"
    ms = int(time.time() * 1000)
    old = key_hash("gl:", net, frm, rcpt)
    store_put(kind, opts, redis, old, "P%d" % (ms - 60000), ms // 1000 + 86400)
    m = mw_factory(upstream, opts=opts + GL1)
    assert send(m, frm=frm).code == 250
    assert store_peek(kind, opts, redis, old) is None
    assert store_peek(kind, opts, redis, key_hash("gl:", net, "list-#@example.org", rcpt))[1][0] == "P"


def test_client_auto_whitelist(mw_factory, upstream, tmp_path):
    """A client network whose messages passed greylisting by retrying 5
    times (greylist_auto_whitelist_clients, Postgrey's default), each at
    least an hour after the last one counted (here 3 times, and
    greylist_pass_lifetime 9s shared out among them: 3 s), is not
    greylisted any more; with 0 it still is (before: always).  This test
    sent 5 one-recipient messages at once, which hid that a count was a
    triplet, not a message, and not spaced (session 19b)."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    so = store_opts("lmdb", tmp_path / "a")
    m = mw_factory(upstream, opts=so + GL1 + [
        ("greylist_auto_whitelist_clients", "3"), ("greylist_pass_lifetime", "9s")])
    net = "127.0.0.0/24"
    for i in range(3):
        assert send(m, rcpts=("u%d@example.net" % i,)).code == 451
    time.sleep(1.2)
    # three passed by retrying within the spacing (9 s / 3 = 3 s): one count
    for i in range(3):
        assert send(m, rcpts=("u%d@example.net" % i,)).code == 250
    assert store_peek("lmdb", so, None, key_hash("glc:", net))[1] == "1"
    assert send(m, rcpts=("new@example.net",)).code == 451
    time.sleep(3.1)
    assert send(m, rcpts=("new@example.net",)).code == 250        # the second count
    assert send(m, rcpts=("new2@example.net",)).code == 451
    time.sleep(3.1)
    assert send(m, rcpts=("new2@example.net",)).code == 250       # the third: whitelisted
    r = send(m, rcpts=("other@example.net",), helo="client2.example.org")
    assert r.code == 250, "client that passed 3 times still greylisted: %r" % (r,)
    rec = m.audit(11)[-1]
    assert "auto-whitelisted" in gl_symbol(rec, "GREYLIST_SKIP")[0]["description"], rec
    # another network is another client
    assert send_from(m, "127.0.7.1", rcpts=("new@example.net",)) == 451
    m0 = mw_factory(upstream, opts=store_opts("lmdb", tmp_path / "b") + GL1 + [
        ("greylist_auto_whitelist_clients", "0")])
    for i in range(5):
        assert send(m0, rcpts=("u%d@example.net" % i,)).code == 451
    time.sleep(1.2)
    for i in range(5):
        assert send(m0, rcpts=("u%d@example.net" % i,)).code == 250
    assert send(m0, rcpts=("new@example.net",)).code == 451


def test_auto_whitelist_counts_a_message_once_an_hour(mw_factory, upstream, store):
    """rv-today3 F1: one message to 5 recipients retried once counted 5
    and whitelisted the client's /24; a retry still refused (a sixth, new
    recipient) counted too.  Now: one count per message that passes, none
    for one still greylisted, and at most one an hour per network (both
    stores: the spacing is an INCR, shared through Redis)."""
    kind, opts, redis = store
    m = mw_factory(upstream, opts=opts + GL1)
    net = "127.0.0.0/24"
    rcpts = tuple("u%d@example.net" % i for i in range(5))
    assert send(m, frm="bot1@spam.example", rcpts=rcpts).code == 451
    time.sleep(1.2)
    # the retry adds a new recipient: refused again, and not counted
    assert send(m, frm="bot1@spam.example", rcpts=rcpts + ("new@example.net",)).code == 451
    assert store_peek(kind, opts, redis, key_hash("glc:", net)) is None
    time.sleep(1.2)
    assert send(m, frm="bot1@spam.example", rcpts=rcpts + ("new@example.net",)).code == 250
    left, n = store_peek(kind, opts, redis, key_hash("glc:", net))
    assert n == "1", n
    left, _ = store_peek(kind, opts, redis, key_hash("glt:", net))
    assert 3590 < left <= 3600, left                  # not counted again for an hour
    # more messages passing by retrying within the hour: not counted
    for frm in ("a@one.example", "b@two.example", "c@three.example", "d@four.example"):
        assert send(m, frm=frm).code == 451
    time.sleep(1.2)
    for frm in ("a@one.example", "b@two.example", "c@three.example", "d@four.example"):
        assert send(m, frm=frm).code == 250
    assert store_peek(kind, opts, redis, key_hash("glc:", net))[1] == "1"
    r = send(m, frm="other@elsewhere.example", rcpts=("victim@example.net",))
    assert r.code == 451, r
    # the hour over (its mark gone) and 4 counted before: the fifth whitelists
    store_put(kind, opts, redis, key_hash("glc:", net), "4", int(time.time()) + 86400)
    store_del(kind, opts, redis, key_hash("glt:", net))
    time.sleep(1.2)
    assert send(m, frm="other@elsewhere.example", rcpts=("victim@example.net",)).code == 250
    r = send(m, frm="third@elsewhere.example", rcpts=("victim2@example.net",))
    assert r.code == 250, r
    assert "auto-whitelisted" in gl_symbol(m.audit(14)[-1], "GREYLIST_SKIP")[0]["description"]


def test_known_pass_before_a_merged_first_attempt(mw_factory, upstream, store):
    """rv-today3 F2: user1@ passed under its key of before (the sender as
    written), user2@'s recent first attempt moved to the key they now share
    (user#@): the keys of before were read only when the new key was
    unknown, so user1, a known correspondent, was greylisted again.  A
    pass under an old key now wins over a first attempt under the new one,
    and moves (both stores); the same for the FNV-1a key."""
    kind, opts, redis = store
    net, rcpt = "127.0.0.0/24", "rcpt@example.net"
    ms = int(time.time() * 1000)
    old1 = key_hash("gl:", net, "user1@example.org", rcpt)
    store_put(kind, opts, redis, old1, "P%d" % (ms - 3600 * 1000), ms // 1000 + 86400)
    store_put(kind, opts, redis, key_hash("gl:", net, "user2@example.org", rcpt),
              "F%d" % (ms - 10 * 1000), ms // 1000 + 86400)
    # and under the FNV-1a key of before, for another recipient
    store_put(kind, opts, redis, legacy_greylist_key(net, "user3@example.org", "r2@example.net"),
              "P%d" % (ms - 60 * 1000), ms // 1000 + 86400)
    store_put(kind, opts, redis, key_hash("gl:", net, "user#@example.org", "r2@example.net"),
              "F%d" % ms, ms // 1000 + 86400)
    m = mw_factory(upstream, opts=opts + GL1 + [("greylist_delay", "300s")])
    assert send(m, frm="user2@example.org").code == 451      # still waiting: right
    r = send(m, frm="user1@example.org")
    assert r.code == 250, "known correspondent greylisted again after the upgrade: %r" % (r,)
    assert store_peek(kind, opts, redis, old1) is None
    assert store_peek(kind, opts, redis, key_hash("gl:", net, "user#@example.org", rcpt))[1][0] == "P"
    r = send(m, frm="user3@example.org", rcpts=("r2@example.net",))
    assert r.code == 250, r
    assert store_peek(kind, opts, redis, legacy_greylist_key(net, "user3@example.org",
                                                             "r2@example.net")) is None


def test_whitelist_file_holds_a_provider_list(mw_factory, upstream, tmp_path):
    """greylist_whitelist is one value of at most 1023 characters: 80
    networks did not fit.  greylist_whitelist_file takes any number a line,
    with comments, read at start; a bad entry refuses it with FILE:LINE."""
    nets = ["10.%d.%d.0/24" % (i // 200, i % 200) for i in range(80)]
    f = tmp_path / "gl-wl"
    f.write_text("# providers' published ranges\n" + "\n".join(nets[:40]) + "\n"
                 + " ".join(nets[40:]) + "  # the rest on one line\n\n127.0.0.0/24\nto:abuse@example.net\n")
    base = ["-t", "-o", "filters=greylist", "-o", "store_path=%s" % (tmp_path / "s.lmdb")]
    r = run_mw(base + ["-o", "greylist_whitelist_file=%s" % f])
    assert r.returncode == 0, r.stderr
    m = mw_factory(upstream, opts=store_opts("lmdb", tmp_path) + GL1 + [
        ("greylist_whitelist_file", str(f))])
    assert send(m).code == 250                                   # 127.0.0.0/24 listed
    assert send_from(m, "127.0.1.1") == 451
    bad = tmp_path / "gl-bad"
    bad.write_text("10.0.0.0/8\n# fine\n\n@example.org not/an/entry\n")
    r = run_mw(base + ["-o", "greylist_whitelist_file=%s" % bad])
    assert r.returncode != 0
    assert ("greylist_whitelist_file %s:4: \"not/an/entry\" is not" % bad) in r.stderr.decode(), r.stderr
    long_line = tmp_path / "gl-long"
    long_line.write_text("10.0.0.0/8 " * 200 + "\n")
    r = run_mw(base + ["-o", "greylist_whitelist_file=%s" % long_line])
    assert r.returncode != 0 and ("%s:1: line longer than" % long_line) in r.stderr.decode(), r.stderr
    r = run_mw(base + ["-o", "greylist_whitelist_file=%s" % (tmp_path / "absent")])
    assert r.returncode != 0 and "greylist_whitelist_file" in r.stderr.decode(), r.stderr


def test_whitelist_file_hash_inside_a_word(mw_factory, upstream, tmp_path):
    """rv-today3 S4: '#' started a comment anywhere in a line, so a to:
    address with '#' in its local part (valid) could not be listed: the
    entry became to:a.  A comment starts a line or a word now (after a
    blank or a comma)."""
    f = tmp_path / "gl-hash"
    f.write_text("# recipients\nto:ops#alerts@example.net # the pager\n"
                 "to:x@example.org,# a comment after a comma\n\t# indented\n")
    r = run_mw(["-t", "-o", "filters=greylist", "-o", "store_path=%s" % (tmp_path / "t.lmdb"),
                "-o", "greylist_whitelist_file=%s" % f])
    assert r.returncode == 0, r.stderr
    m = mw_factory(upstream, opts=store_opts("lmdb", tmp_path) + GL1 + [
        ("greylist_whitelist_file", str(f))])
    r = send(m, rcpts=("ops#alerts@example.net",))
    assert r.code == 250, "to:ops#alerts@example.net not whitelisted: %r" % (r,)
    assert send(m, rcpts=("ops@example.net",)).code == 451       # not "to:ops"


def scan_gl(tmp_path, opts, client, frm="sender@example.org", rcpt="rcpt@example.net"):
    """mailwarden scan of one message from client: (action, symbols by name)"""
    p = tmp_path / ("m%d.eml" % time.monotonic_ns())
    p.write_bytes(make_msg())
    args = ["scan", "-o", "store_path=%s" % (tmp_path / "scan.lmdb")]
    for k, v in opts:
        args += ["-o", "%s=%s" % (k, v)]
    r = run_mw(args + ["--client-ip", client, "--from", frm, "--rcpt", rcpt,
                       "--helo", "out.pool.example", str(p)], timeout=60)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    return res["action"], {s["name"]: s for s in res["symbols"]}


def test_pool_whitelisted_by_verified_host_name(dns_server, tmp_path):
    """A provider's pool retries from other /24s (greylisted afresh each
    time); a ".suffix" entry matched against the client's forward-confirmed
    name lets its servers through, wherever they are.  A PTR that its name
    does not confirm, or a name outside the suffix, is greylisted."""
    dns_server.add_zone("2.0.192.in-addr.arpa", ["5 PTR out1.pool.example.test.",
                                                 "6 PTR fake.pool.example.test.",
                                                 "7 PTR mx.other.test."])
    dns_server.add_zone("100.51.198.in-addr.arpa", ["9 PTR out2.pool.example.test."])
    dns_server.add_zone("pool.example.test", ["out1 A 192.0.2.5", "out2 A 198.51.100.9",
                                              "fake A 192.0.2.200"])
    dns_server.add_zone("other.test", ["mx A 192.0.2.7"])
    dns_server.start()
    f = tmp_path / "gl-hosts"
    f.write_text(".pool.example.test\n")
    opts = [("filters", "greylist"), ("greylist_delay", "1h"), ("dns_forwarder", dns_server.forwarder),
            ("dns_client_name", "yes"), ("greylist_whitelist_file", str(f))]
    for ip in ("192.0.2.5", "198.51.100.9"):
        action, sym = scan_gl(tmp_path, opts, ip)
        assert action == "accept" and "host name" in sym["GREYLIST_SKIP"]["desc"], (ip, sym)
    for ip in ("192.0.2.6", "192.0.2.7"):
        action, sym = scan_gl(tmp_path, opts, ip)
        assert action == "tempfail" and "GREYLIST" in sym, (ip, sym)


def test_at_domain_entry_needs_an_spf_pass(dns_server, tmp_path):
    """greylist_whitelist = @example.org exempted anyone who merely wrote
    MAIL FROM:<x@example.org>.  It now needs the spf filter's pass for that
    MAIL FROM: a forged sender (SPF neutral here, or no SPF record) is
    greylisted, and without spf before greylist the entry matches nothing
    (warned)."""
    dns_server.add_zone("example.org", ["@ TXT " + txt("v=spf1 ip4:192.0.2.0/24 ?all")])
    dns_server.start()
    opts = [("filters", "spf greylist"), ("greylist_delay", "1h"), ("dns_forwarder", dns_server.forwarder),
            ("spf_skip_networks", ""), ("greylist_whitelist", "@example.org @gmail.test")]
    action, sym = scan_gl(tmp_path, opts, "192.0.2.10")
    assert action == "accept" and "SPF pass" in sym["GREYLIST_SKIP"]["desc"], sym
    action, sym = scan_gl(tmp_path, opts, "203.0.113.9")              # SPF neutral
    assert action == "tempfail" and "GREYLIST" in sym, sym
    action, sym = scan_gl(tmp_path, opts, "203.0.113.9", frm="forged@gmail.test")  # no SPF
    assert action == "tempfail" and "GREYLIST" in sym, sym
    opts[0] = ("filters", "greylist")
    p = tmp_path / "x.eml"
    p.write_bytes(make_msg())
    r = run_mw(["-t", "-o", "store_path=%s" % (tmp_path / "t.lmdb")]
               + sum((["-o", "%s=%s" % kv] for kv in opts), []))
    assert r.returncode == 0 and b"@domain whitelist entr" in r.stderr + r.stdout, r
    action, sym = scan_gl(tmp_path, opts, "192.0.2.10")
    assert action == "tempfail" and "GREYLIST" in sym, sym


def test_to_whitelisted_recipient_and_a_new_one(mw_factory, upstream, tmp_path):
    """Through the proxy a message is answered once, at its end: to
    postmaster@ (whitelisted) and a new recipient it is greylisted as a
    whole, as README says now; the symbol names the recipient that held
    it, not postmaster (before: "1 triplet(s) greylisted" and no name)."""
    m = mw_factory(upstream, opts=store_opts("lmdb", tmp_path) + GL1 + [
        ("greylist_whitelist", "to:postmaster@example.net")])
    assert send(m, rcpts=("postmaster@example.net",)).code == 250
    r = send(m, rcpts=("postmaster@example.net", "new@example.net", "other@example.net"))
    assert r.code == 451, r
    desc = gl_symbol(m.audit(2)[-1], "GREYLIST")[0]["description"]
    assert desc.endswith("held by new@example.net, other@example.net") and "postmaster" not in desc, desc


def test_held_recipients_named_bounded(mw_factory, upstream, tmp_path):
    """Many new recipients: five named, the rest counted."""
    m = mw_factory(upstream, opts=store_opts("lmdb", tmp_path) + GL1)
    r = send(m, rcpts=tuple("r%d@example.net" % i for i in range(12)))
    assert r.code == 451, r
    desc = gl_symbol(m.audit(1)[-1], "GREYLIST")[0]["description"]
    assert desc.startswith("12 triplet(s) greylisted (12 new)"), desc
    assert desc.endswith("held by r0@example.net, r1@example.net, r2@example.net, r3@example.net, "
                         "r4@example.net and 7 more"), desc


def test_first_attempt_from_a_clock_ahead(mw_factory, upstream, redis_server):
    """Two machines share one Redis, one clock 10 minutes ahead: its first
    attempt was stamped in the future, and the retry on the other machine
    was told to wait ~600 s more.  A future stamp is taken as now: the
    retry waits greylist_delay at most, then passes."""
    opts = store_opts("redis", None, redis_server) + GL1
    m = mw_factory(upstream, opts=opts)
    net, frm, rcpt = "127.0.0.0/24", "sender@example.org", "rcpt@example.net"
    future = int(time.time() * 1000) + 600_000
    store_put("redis", opts, redis_server, key_hash("gl:", net, frm, rcpt), "F%d" % future,
              int(time.time()) + 3600)
    r = send(m)
    assert r.code == 451 and "try again in 1 seconds" in r.text, r
    time.sleep(1.2)
    r = send(m)
    assert r.code == 250, "retry after greylist_delay refused by a skewed first attempt: %r" % (r,)
