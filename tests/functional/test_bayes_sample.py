"""Bayes: which tokens count when not all may (review rv-today3, B1-B3).

Autolearn counts a sample of BAYES_AUTOLEARN_MAX_TOKENS (3,000) of a
message's tokens, scoring keeps BAYES_MAX_TOKENS (20,000).  Until session
21 both were the lowest FNV-1a hashes, which anyone can compute: a spam
padded with words hashing low kept its own words out of both.  They are
now chosen by a secret of the store (bayes:sample_key, bayes_sample.c).
An autolearned message is marked 'S'/'H' (a sample), so that a forget or
a relearn takes off exactly that sample and a taught learn counts the
rest.  bayes_lowhash_pad.txt: 3,000 words whose FNV-1a is below 2^52
(the reviewer's lowhash_words.c, `lowhash_words 3000 12`)."""

import os
import random
import time

from mwlib import make_msg, run_mw
from storelib import redis_server, store_opts, fnv1a64  # noqa: F401 (fixtures)
from test_bayes_autolearn_bounds import learn

HERE = os.path.dirname(os.path.abspath(__file__))

# counts of a list of token hashes (ARGV[2..]) under prefix ARGV[1]:
# "present with_s with_h with_ttl"
COUNT_LUA = ("local p, s, h, t = 0, 0, 0, 0 for i = 2, #ARGV do local k = ARGV[1] .. 't:' .. ARGV[i] "
             "if redis.call('EXISTS', k) == 1 then p = p + 1 "
             "if tonumber(redis.call('HGET', k, 's') or '0') > 0 then s = s + 1 end "
             "if tonumber(redis.call('HGET', k, 'h') or '0') > 0 then h = h + 1 end "
             "if redis.call('TTL', k) >= 0 then t = t + 1 end end end "
             "return p .. ' ' .. s .. ' ' .. h .. ' ' .. t")


def body_hash(word):
    """filters/bayes_tok.c token(t, "", word): FNV-1a 64, no key"""
    return fnv1a64(b"\x01" + word.encode())


def counts(redis, prefix, words):
    keys = ["%016x" % body_hash(w) for w in sorted(set(words))]
    raw = redis.command("EVAL", COUNT_LUA, "0", prefix, *keys)
    assert raw.startswith(b"$"), raw
    return tuple(int(x) for x in raw.split(b"\r\n")[1].split())


def send(m, msg):
    c = m.client()
    c.ehlo("client.example.org")
    r = c.transaction("sender@example.org", ["rcpt@example.net"], msg)
    c.quit()
    return r["final"]


def rand_words(n, rnd):
    return ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(9)) for _ in range(n)]


def lines(ws):
    return "\r\n".join(" ".join(ws[i:i + 8]) for i in range(0, len(ws), 8))


# --- 1. the sample is chosen by an unkeyed hash: a spammer chooses it ------------

def test_padding_with_low_hash_words_keeps_a_spams_words_out_of_autolearn(mw_factory, upstream,
                                                                          redis_server, tmp_path):
    """The 3,000 tokens autolearn counts are those of the lowest FNV-1a
    hash, and FNV-1a is public and unkeyed (bayes_tok.c).  A spammer runs
    lowhash_words.c once (0.2 s) for 3,000 words whose hash is below
    2^52 and appends them (27 KB) to every spam: autolearn (as spam here:
    bayes_autolearn_spam = 0 stands in for rules that score it 12 or more)
    then counts the padding and none of the spam's own words.  README and
    bayes.h call the sample one "the words do not choose"."""
    opts = store_opts("redis", tmp_path, redis_server)
    prefix = dict(opts)["store_prefix"]
    # a key of the store's fixed here, so that the sample (random for a
    # store) is the same at every run
    redis_server.command("SET", prefix + "bayes:sample_key", "00112233445566778899aabbccddeeff")
    m = mw_factory(upstream, opts=opts + [("filters", "bayes"), ("bayes_autolearn", "yes"),
                                          ("bayes_autolearn_spam", "0")])
    rnd = random.Random(3)
    spam1 = [w for w in rand_words(80, rnd) if body_hash(w) >= 1 << 52][:60]
    spam2 = [w for w in rand_words(80, rnd) if body_hash(w) >= 1 << 52][:60]
    pad = open(os.path.join(HERE, "bayes_lowhash_pad.txt")).read().split()
    assert len(pad) == 3000 and all(body_hash(w) < 1 << 52 for w in pad)
    # control: the spam alone: its words are learned as spam
    assert send(m, make_msg(subject="offer", body=lines(spam1), msgid="<c1@spam.example>")).code == 250
    # the same kind of spam, padded
    assert send(m, make_msg(subject="offer", body=lines(spam2) + "\r\n" + lines(pad),
                            msgid="<c2@spam.example>")).code == 250
    time.sleep(0.5)
    assert m.stderr_text().count("autolearned as spam") == 2, m.stderr_text()
    p1, s1, _, _ = counts(redis_server, prefix, spam1)
    p2, s2, _, _ = counts(redis_server, prefix, spam2)
    padp, pads, _, _ = counts(redis_server, prefix, pad)
    assert s1 == len(set(spam1))          # control holds
    # the sample is about half of the padded message's ~6,100 tokens, the
    # spam's words in proportion (none before: all 3,000 were padding)
    assert s2 >= len(set(spam2)) // 4, (
        "padded spam: %d of its %d words learned by autolearn (control: %d of %d); the 3,000 "
        "padding words: %d learned" % (s2, len(set(spam2)), s1, len(set(spam1)), pads))


# --- 2. forget / relearn of an autolearned message: counts taken that it never gave --

def big_body(seed):
    ws = rand_words(4000, random.Random(seed))
    return ws, lines(ws)


def test_forget_after_autolearn_takes_counts_the_message_never_added(mw_factory, upstream,
                                                                     redis_server, tmp_path):
    """The site teaches a message as ham (<taught@example.org>): each of
    its 4,000 words has h = 1.  A copy under another Message-ID
    (<auto@example.org>) comes by mail and is autolearned as ham: 3,000
    of its ~8,000 tokens get h + 1.  The site then forgets the copy
    (`learn --forget`): the forget takes h - 1 off every one of its
    tokens, 20,000 at most, the ~5,000 autolearn never counted
    included, so the site's own ham training of <taught@> loses those
    words (each count "stops at 0", and the key is deleted).  The mark
    says only 's'/'h', not how many tokens were counted.  Expected: every
    word keeps h = 1 from <taught@>."""
    opts = store_opts("redis", tmp_path, redis_server)
    prefix = dict(opts)["store_prefix"]
    ws, body = big_body(7)
    taught = tmp_path / "taught.eml"
    taught.write_bytes(make_msg(subject="minutes", body=body, msgid="<taught@example.org>"))
    learn(opts, "--ham", str(taught))
    n = len(set(ws))
    assert counts(redis_server, prefix, ws)[2] == n
    m = mw_factory(upstream, opts=opts + [("filters", "bayes"), ("bayes_autolearn", "yes")])
    auto = make_msg(subject="minutes", body=body, msgid="<auto@example.org>")
    assert send(m, auto).code == 250
    time.sleep(0.5)
    assert "autolearned as ham" in m.stderr_text()
    f = tmp_path / "auto.eml"
    f.write_bytes(auto)
    learn(opts, "--forget", str(f))
    p, _, h, _ = counts(redis_server, prefix, ws)
    assert h == n, ("after forgetting the autolearned copy only %d of the %d words the site "
                    "taught under <taught@> still have a ham count" % (h, n))


def test_relearn_after_autolearn_moves_counts_the_message_never_added(mw_factory, upstream,
                                                                      redis_server, tmp_path):
    """As above with `learn --spam` of the autolearned copy (the site
    corrects autolearn's class): s + 1 and h - 1 on every token; the
    ~5,000 tokens autolearn never counted lose the h that the site's
    <taught@> gave them."""
    opts = store_opts("redis", tmp_path, redis_server)
    prefix = dict(opts)["store_prefix"]
    ws, body = big_body(8)
    taught = tmp_path / "taught.eml"
    taught.write_bytes(make_msg(subject="minutes", body=body, msgid="<taught@example.org>"))
    learn(opts, "--ham", str(taught))
    n = len(set(ws))
    m = mw_factory(upstream, opts=opts + [("filters", "bayes"), ("bayes_autolearn", "yes")])
    auto = make_msg(subject="minutes", body=body, msgid="<auto@example.org>")
    assert send(m, auto).code == 250
    time.sleep(0.5)
    f = tmp_path / "auto.eml"
    f.write_bytes(auto)
    learn(opts, "--spam", str(f))
    _, s, h, _ = counts(redis_server, prefix, ws)
    assert s == n
    assert h == n, ("after relearning the autolearned copy as spam only %d of the %d words the "
                    "site taught as ham under <taught@> still have a ham count" % (h, n))


# --- 3. the site teaches what autolearn learned: "already learned" -------------------

def test_teaching_an_autolearned_message_counts_all_its_tokens_and_keeps_them(mw_factory, upstream,
                                                                             redis_server, tmp_path):
    """A message is autolearned as ham (3,000 of its ~8,000 tokens,
    expiring in 21 days), then the site teaches the same message as ham
    (`mailwarden learn --ham`, same Message-ID).  README: "`mailwarden
    learn` counts every token" and "a token the site teaches is taken
    off expiry (PERSIST)".  Actual: the mark says 'h' already, learn
    reports it learned before and does nothing: 5,000 words never
    counted, the 3,000 counted expire with autolearn's TTL."""
    opts = store_opts("redis", tmp_path, redis_server)
    prefix = dict(opts)["store_prefix"]
    ws, body = big_body(9)
    n = len(set(ws))
    m = mw_factory(upstream, opts=opts + [("filters", "bayes"), ("bayes_autolearn", "yes")])
    msg = make_msg(subject="minutes", body=body, msgid="<m1@example.org>")
    assert send(m, msg).code == 250
    time.sleep(0.5)
    f = tmp_path / "m1.eml"
    f.write_bytes(msg)
    r = learn(opts, "--ham", str(f))
    p, _, h, ttl = counts(redis_server, prefix, ws)
    assert (h, ttl) == (n, 0), ("taught after autolearn: %d of %d words counted, %d of them "
                                "still expiring; learn said: %s" % (h, n, ttl, r.stdout.strip()))


# --- 4. scoring's 20,000: the same keyed choice ---------------------------------------

LOWHASH_C = r'''
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
	long want = atol(argv[1]);
	int shift = atoi(argv[2]);
	uint64_t lim = UINT64_MAX >> shift, x = 88172645463325252ULL;
	char w[9] = { 0 };
	while (want > 0) {
		uint64_t h = 0xcbf29ce484222325ULL;
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		for (int i = 0; i < 8; i++)
			w[i] = (char)('a' + ((x >> (i * 5)) % 26));
		h = (h ^ 1) * 0x100000001b3ULL;
		for (int i = 0; i < 8; i++)
			h = (h ^ (unsigned char)w[i]) * 0x100000001b3ULL;
		if (h <= lim) {
			puts(w);
			want--;
		}
	}
	return 0;
}
'''


def test_scoring_of_a_spam_padded_with_low_hash_words(tmp_path):
    """Scoring kept the 20,000 lowest FNV-1a hashes: a spam padded with
    20,000 words hashing below 2^56 (180 KB, found in 0.1 s) was scored on
    the padding alone, BAYES_50 where the spam alone is BAYES_999.  The
    20,000 are now those of the store's key: the spam's words count in
    proportion (here a third of its 120 words, ample)."""
    import json
    import shutil
    import subprocess
    cc = shutil.which("cc")
    if cc is None:
        import pytest
        pytest.skip("no C compiler for the padding generator")
    src, exe = tmp_path / "lowhash.c", tmp_path / "lowhash"
    src.write_text(LOWHASH_C)
    subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True)
    pad = subprocess.run([str(exe), "20000", "8"], capture_output=True, check=True).stdout.decode().split()
    assert len(pad) == 20000 and all(body_hash(w) < 1 << 56 for w in pad)
    rnd = random.Random(1)
    spamw = [w for w in rand_words(300, rnd) if body_hash(w) >= 1 << 56][:200]
    hamw = [w for w in rand_words(300, rnd) if body_hash(w) >= 1 << 56][:200]
    opts = store_opts("lmdb", tmp_path) + [("bayes_chars", "no"), ("bayes_min_spam", "10"),
                                           ("bayes_min_ham", "10")]
    sp, hm = [], []
    for i in range(30):
        f = tmp_path / ("s%d.eml" % i)
        f.write_bytes(make_msg(subject="offer", body=lines(rnd.sample(spamw, 120)), msgid="<s%d@ex>" % i))
        sp.append(str(f))
        f = tmp_path / ("h%d.eml" % i)
        f.write_bytes(make_msg(subject="minutes", body=lines(rnd.sample(hamw, 120)), msgid="<h%d@ex>" % i))
        hm.append(str(f))
    learn(opts, "--spam", "--no-train", *sp)
    learn(opts, "--ham", "--no-train", *hm)
    real = rnd.sample(spamw, 120)
    padded = tmp_path / "padded.eml"
    padded.write_bytes(make_msg(subject="offer", body=lines(real) + "\r\n" + lines(pad), msgid="<p@ex>"))
    cmd = ["scan", "-o", "filters=bayes", "-o", "dns_forwarder=127.0.0.1@9"]
    for k, v in opts:
        cmd += ["-o", "%s=%s" % (k, v)]
    r = run_mw(cmd + [str(padded)], timeout=120)
    assert r.returncode == 0, r.stderr
    names = [s["name"] for s in json.loads(r.stdout)["symbols"]]
    assert "BAYES_999" in names or "BAYES_99" in names, names
