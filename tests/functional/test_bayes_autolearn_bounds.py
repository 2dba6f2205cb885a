"""test_bayes_autolearn_bounds.py - what Bayes autolearn may write to the
store (session 21, review rv-redis): a bounded number of tokens a
message, which on Redis expire unless learned again or taught by the
site; only messages the store has no mark for (a sender reusing the
Message-ID of a message the site taught cannot relearn it); counters
never below 0 on a Redis server that evicted them; a warning at start
when nothing bounds autolearn's tokens."""

import random
import re
import time

from mwlib import make_msg, run_mw
from storelib import redis_server, store, store_opts, store_del, store_peek  # noqa: F401 (fixtures)

AUTOLEARN_MAX_TOKENS = 3000        # BAYES_AUTOLEARN_MAX_TOKENS, filters/bayes.h
AUTOLEARN_TOKEN_TTL = 21 * 86400   # bayes_autolearn_token_ttl's default

# the keys under a prefix with no TTL, and with one (a Lua script: KEYS
# gives more than the test's RESP reader takes at once)
COUNT_TTL_LUA = ("local p, v = 0, 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                 "if redis.call('TTL', k) == -1 then p = p + 1 else v = v + 1 end end "
                 "return {p, v}")


def words(n, rnd):
    w = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(9)) for _ in range(n)]
    return "\r\n".join(" ".join(w[i:i + 8]) for i in range(0, n, 8))


def send(m, msg, frm="sender@example.org"):
    c = m.client()
    c.ehlo("client.example.org")
    r = c.transaction(frm, ["rcpt@example.net"], msg)
    c.quit()
    return r["final"]


def token_keys(redis, prefix):
    """(keys without a TTL, keys with one) among the Bayes tokens"""
    raw = redis.command("EVAL", COUNT_TTL_LUA, "0", prefix + "t:*")
    nums = [int(x) for x in re.findall(rb":(-?\d+)", raw)]
    assert len(nums) == 2, raw
    return nums[0], nums[1]


def learn(opts, *args):
    cmd = ["learn"]
    for k, v in opts + [("dns_forwarder", "127.0.0.1@9")]:
        cmd += ["-o", "%s=%s" % (k, v)]
    r = run_mw(cmd + list(args))
    assert r.returncode == 0, r.stderr
    return r


def counter(kind, opts, redis, name):
    got = store_peek(kind, opts, redis, name)
    return 0 if got is None else int(got[1])


# --- 4. autolearn's tokens on Redis: bounded per message, expiring ------------

def test_autolearn_tokens_are_bounded_and_expire_on_redis(mw_factory, upstream, redis_server, tmp_path):
    """store = redis, bayes_autolearn = yes, defaults otherwise
    (bayes_token_ttl 0): each of 10 plain messages of 4,000 random words
    (score 0: autolearned as ham) has 20,000 distinct tokens.  Until
    session 21 autolearn wrote them all and none ever expired (review
    rv-redis: 80,012 keys, 12.4 MB, ~3 MB a message; bayes_token_max is
    LMDB's).  Now at most BAYES_AUTOLEARN_MAX_TOKENS a message, each
    expiring after bayes_autolearn_token_ttl (21 days)."""
    rnd = random.Random(21)
    opts = store_opts("redis", tmp_path, redis_server)
    prefix = dict(opts)["store_prefix"]
    m = mw_factory(upstream, opts=opts + [("filters", "bayes"), ("bayes_autolearn", "yes")])
    for i in range(10):
        msg = make_msg(subject="w%d" % i, frm="s%d@example.org" % i, body=words(4000, rnd))
        assert send(m, msg, frm="s%d@example.org" % i).code == 250
    time.sleep(0.5)
    text = m.stderr_text()
    assert text.count("autolearned as ham") == 10, text
    assert "never expire" not in text           # no start-up warning with the defaults
    persistent, volatile = token_keys(redis_server, prefix)
    info = redis_server.command("INFO", "memory").decode()
    used = int(re.search(r"used_memory:(\d+)", info).group(1))
    assert persistent == 0, ("%d token keys without a TTL (%d with one, %.1f MB used_memory): "
                             "autolearn's tokens never expire" % (persistent, volatile, used / 1e6))
    assert 0 < volatile <= 10 * AUTOLEARN_MAX_TOKENS, volatile
    # a token key's TTL is bayes_autolearn_token_ttl
    raw = redis_server.command("EVAL", "return redis.call('TTL', redis.call('KEYS', ARGV[1])[1])", "0",
                               prefix + "t:*")
    ttl = int(raw[1:].split(b"\r\n")[0])
    assert AUTOLEARN_TOKEN_TTL - 60 <= ttl <= AUTOLEARN_TOKEN_TTL, ttl


def test_taught_tokens_never_expire_beside_autolearn(mw_factory, upstream, redis_server, tmp_path):
    """With bayes_token_ttl = 0 what the site teaches stays: a token that
    autolearn made (expiring) and the site then teaches loses its TTL,
    and a later autolearn of a taught token does not give it one back."""
    opts = store_opts("redis", tmp_path, redis_server)
    prefix = dict(opts)["store_prefix"]
    body = "quarterly figures attached for the planning meeting on thursday\r\n" * 3
    m = mw_factory(upstream, opts=opts + [("filters", "bayes"), ("bayes_autolearn", "yes")])
    assert send(m, make_msg(subject="figures", body=body, msgid="<auto1@example.org>")).code == 250
    time.sleep(0.3)
    persistent, volatile = token_keys(redis_server, prefix)
    assert persistent == 0 and volatile > 10, (persistent, volatile)
    # the site teaches a copy of the same words under another Message-ID
    f = tmp_path / "taught.eml"
    f.write_bytes(make_msg(subject="figures", body=body, msgid="<taught1@example.org>"))
    learn(opts, "--ham", str(f))
    p2, v2 = token_keys(redis_server, prefix)
    assert p2 >= 10 and v2 < volatile, (p2, v2, volatile)
    # autolearn meets the taught tokens again: they stay without a TTL
    assert send(m, make_msg(subject="figures", body=body, msgid="<auto2@example.org>")).code == 250
    time.sleep(0.3)
    p3, _ = token_keys(redis_server, prefix)
    assert p3 >= p2, (p3, p2)


def test_unbounded_autolearn_warns_at_start(mw_factory, upstream, redis_server, tmp_path):
    """bayes_autolearn_token_ttl = 0 with bayes_token_ttl = 0 on Redis (or
    bayes_token_max = 0 on LMDB): nothing bounds autolearn's tokens, said
    at start."""
    opts = store_opts("redis", tmp_path, redis_server)
    m = mw_factory(upstream, opts=opts + [("filters", "bayes"), ("bayes_autolearn", "yes"),
                                          ("bayes_autolearn_token_ttl", "0")])
    assert send(m, make_msg(subject="hello")).code == 250
    assert "the tokens autolearn adds never expire" in m.stderr_text()
    lm = mw_factory(upstream, opts=store_opts("lmdb", tmp_path) + [
        ("filters", "bayes"), ("bayes_autolearn", "yes"), ("bayes_token_max", "0")])
    assert send(lm, make_msg(subject="hello")).code == 250
    assert "the tokens autolearn adds are never removed" in lm.stderr_text()


# --- 5. autolearn learns new messages only ------------------------------------

def test_autolearn_never_relearns_a_taught_message(store, mw_factory, upstream, tmp_path):
    """The site teaches a spam S (Message-ID <c1@spam.example>) with
    `mailwarden learn --spam`.  The spammer sends a plain message (score 0
    before Bayes: autolearned as ham) under the same Message-ID with S's
    words.  Until session 21 autolearn found the mark 's' and relearned
    it s -> h: nspam 1 -> 0, nham 0 -> 1, S's spam counts taken off every
    token, ham counts added (review rv-redis).  Now autolearn leaves any
    message the store has a mark for alone, as SpamAssassin's does (its
    no_relearn), and says so."""
    kind, opts, redis = store
    body = "zorblax quintuple megadeal pharmaflux buy now winner prize\r\n" * 3
    f = tmp_path / "s.eml"
    f.write_bytes(make_msg(subject="megadeal", body=body, frm="x@spam.example", msgid="<c1@spam.example>"))
    learn(opts, "--spam", str(f))
    assert (counter(kind, opts, redis, "bayes:nspam"), counter(kind, opts, redis, "bayes:nham")) == (1, 0)
    m = mw_factory(upstream, opts=opts + [("filters", "bayes"), ("bayes_autolearn", "yes")])
    msg = make_msg(subject="megadeal", body=body, frm="x@spam.example", msgid="<c1@spam.example>")
    assert send(m, msg, frm="x@spam.example").code == 250
    time.sleep(0.3)
    text = m.stderr_text()
    got = (counter(kind, opts, redis, "bayes:nspam"), counter(kind, opts, redis, "bayes:nham"))
    assert got == (1, 0), ("the site's spam training undone by a sender reusing its Message-ID: "
                           "nspam, nham = %r; log: %s" % (got, [l for l in text.splitlines() if "autolearn" in l]))
    assert "not autolearned as ham (score 0.00): learned before" in text, text
    assert "autolearned as ham" not in text.replace("not autolearned as ham", "")
    # a message of its own is still autolearned
    assert send(m, make_msg(subject="other", body=body, msgid="<c2@example.org>")).code == 250
    time.sleep(0.3)
    assert counter(kind, opts, redis, "bayes:nham") == 1


# --- 6. counters on a Redis server that evicted them --------------------------

def test_forget_after_eviction_keeps_the_counter_at_zero(redis_server, tmp_path):
    """A Redis server with maxmemory-policy allkeys-lru may evict
    bayes:nspam; a `learn --forget` of a spam learned before then counted
    it -1 (learn_lua did not clamp it), a negative count of learned
    messages.  Now it stays at 0."""
    opts = store_opts("redis", tmp_path, redis_server)
    f = tmp_path / "s.eml"
    f.write_bytes(make_msg(subject="megadeal", body="zorblax quintuple megadeal winner prize " * 4,
                           msgid="<evicted@spam.example>"))
    learn(opts, "--spam", str(f))
    assert counter("redis", opts, redis_server, "bayes:nspam") == 1
    store_del("redis", opts, redis_server, "bayes:nspam")      # as an eviction would
    learn(opts, "--forget", str(f))
    got = store_peek("redis", opts, redis_server, "bayes:nspam")
    assert got is not None and int(got[1]) == 0, got
