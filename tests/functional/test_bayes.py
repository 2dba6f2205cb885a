"""test_bayes.py - the Bayes classifier: `mailwarden learn` (spam, ham,
relearn, forget) into both stores, BAYES_* symbols in scans and through
the proxy, autolearn, and the accuracy on the SpamAssassin corpus
(training half only: learn from one part, measure on the other, through
the CLI, network checks off)."""

import json
import os
import re
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from corpuslib import training_half
from mwlib import MW_BIN, make_msg, run_mw
from storelib import redis_server, store, store_opts  # noqa: F401 (fixtures)
from storelib import bayes_seen_key, fnv1a64, key_hash, legacy_bayes_seen_key, store_del, store_peek, store_put

SPAMMY = ["cheap pills viagra offer click here now winner prize",
          "free money unclaimed prize lottery wire transfer now",
          "buy replica watches cheap discount click here offer"]
HAMMY = ["minutes of the meeting about the build system and tests",
         "the patch fixes the parser bug reported on the list yesterday",
         "lunch on friday with the team to discuss the release plan"]


def write(tmp_path, name, subject, body):
    p = tmp_path / name
    p.write_bytes(make_msg(subject=subject, body=body.encode(), msgid="<%s@test.example>" % name))
    return str(p)


def learn(opts, *args):
    cmd = ["learn"]
    for k, v in opts:
        cmd += ["-o", "%s=%s" % (k, v)]
    r = run_mw(cmd + list(args), timeout=600)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def scan(opts, path):
    cmd = ["scan", "-o", "filters=bayes", "-o", "dns_forwarder=127.0.0.1@9"]
    for k, v in opts:
        cmd += ["-o", "%s=%s" % (k, v)]
    r = run_mw(cmd + [path], timeout=60)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    bay = [s for s in res["symbols"] if s["name"].startswith("BAYES_")]
    p = float(re.search(r"p=([0-9.]+)", bay[0]["desc"]).group(1)) if bay else None
    return res, (bay[0]["name"] if bay else None), p


def test_learn_relearn_forget_and_scan(store, tmp_path):
    kind, opts, _ = store
    opts = opts + [("bayes_min_spam", "3"), ("bayes_min_ham", "3")]
    spam = [write(tmp_path, "s%d.eml" % i, "offer %d" % i, b) for i, b in enumerate(SPAMMY)]
    ham = [write(tmp_path, "h%d.eml" % i, "notes %d" % i, b) for i, b in enumerate(HAMMY)]
    probe = write(tmp_path, "probe.eml", "offer", "click here for cheap pills and a free prize")
    res, sym, p = scan(opts, probe)
    assert sym is None                        # nothing learned: Bayes says nothing
    rc, out, err = learn(opts, "--spam", *spam)
    assert rc == 0 and "learned as spam 3 message(s)" in out, (out, err)
    rc, out, _ = learn(opts, "--spam", spam[0])
    assert rc == 0 and "1 already learned so" in out
    rc, out, _ = learn(opts, "--ham", str(tmp_path / "h0.eml"), str(tmp_path / "h1.eml"),
                       str(tmp_path / "h2.eml"))
    assert "store holds 3 spam, 3 ham" in out, out
    res, sym, p = scan(opts, probe)
    assert sym in ("BAYES_95", "BAYES_99", "BAYES_999") and p > 0.9, (sym, p)
    assert res["symbols"][0]["score"] > 0
    hp = write(tmp_path, "hprobe.eml", "notes", "the patch for the build system and the parser tests")
    res, sym, p = scan(opts, hp)
    assert sym in ("BAYES_00", "BAYES_05") and p < 0.05, (sym, p)
    # relearning a spam as ham moves it, forgetting removes it
    rc, out, _ = learn(opts, "--ham", spam[0])
    assert "store holds 2 spam, 4 ham" in out, out
    rc, out, _ = learn(opts, "--forget", spam[0], ham[0])
    assert "forgot 2 message(s)" in out and "store holds 2 spam, 2 ham" in out, out
    rc, out, _ = learn(opts, "--forget", spam[0])
    assert "forgot 0 message(s), 1 already unknown" in out
    # below bayes_min_spam again: silent
    res, sym, p = scan(opts, probe)
    assert sym is None



LIST_FOOTER = ("_______________________________________________\r\n"
               "Dev mailing list of the Example project: dev@lists.example\r\n"
               "https://lists.example/mailman/listinfo/dev for subscription information\r\n"
               "archive https://lists.example/pipermail/dev posting guidelines maintainers\r\n")


def list_post(tmp_path, name, subject, text, listed=True):
    headers = [("List-Id", "Dev discussion <dev.lists.example>"),
               ("Received", "from mail.lists.example by mx.example.net")] if listed else []
    p = tmp_path / name
    p.write_bytes(make_msg(subject=subject, body=(text + "\r\n\r\n" + (LIST_FOOTER if listed else "")).encode(),
                           headers=headers, frm="poster%s@example.com" % name,
                           msgid="<%s@test.example>" % name))
    return str(p)


def test_list_boilerplate_left_out(store, tmp_path):
    """A spam relayed by a mailing list carries the list's footer and
    fields, which Bayes learned from the list's ham: they outweighed the
    spam's own words.  Learned lists' boilerplate (the tokens in half of
    their latest learned messages) counts only where it leans to spam, the
    message judged by its words (session 20; bayes_list_boilerplate)."""
    kind, opts, _ = store
    opts = opts + [("bayes_min_spam", "3"), ("bayes_min_ham", "3"), ("bayes_chars", "no")]
    ham = [list_post(tmp_path, "h%d.eml" % i, "re: topic %d" % i, HAMMY[i % 3] + " number%d" % i)
           for i in range(8)]
    spam = [write(tmp_path, "s%d.eml" % i, "deal %d" % i, SPAMMY[i % 3]) for i in range(6)]
    rc, out, err = learn(opts, "--ham", *ham)
    assert rc == 0 and "learned as ham 8 message(s)" in out, (out, err)
    rc, out, err = learn(opts, "--spam", *spam)
    assert rc == 0, (out, err)
    probe = list_post(tmp_path, "probe.eml", "deal", "cheap pills viagra offer click here now winner prize")
    res, sym, p_off = scan(opts + [("bayes_list_boilerplate", "no")], probe)
    assert p_off is not None and p_off < 0.5, (sym, p_off)    # the list's words win
    res, sym, p_on = scan(opts, probe)
    assert p_on is not None and p_on > 0.95, (sym, p_on)
    desc = [s["desc"] for s in res["symbols"] if s["name"] == sym][0]
    m = re.search(r"(\d+) of the list's left out", desc)
    assert m and int(m.group(1)) >= 20, desc
    # the list's ham stays ham, judged by its words alone
    hp = list_post(tmp_path, "hprobe.eml", "re: topic", "the patch fixes the parser bug in the build system")
    res, sym, p = scan(opts, hp)
    assert p is not None and p < 0.05, (sym, p)
    # the same spam not through the list: nothing to leave out
    res, sym, p = scan(opts, list_post(tmp_path, "direct.eml", "deal", "cheap pills viagra offer click here now winner prize",
                                       listed=False))
    assert p > 0.95 and "of the list's left out" not in res["symbols"][0]["desc"], res["symbols"]
    # a list not learned: nothing left out
    other = list_post(tmp_path, "other.eml", "deal", "cheap pills viagra offer")
    with open(other, "rb") as f:
        data = f.read().replace(b"dev.lists.example", b"other.lists.example")
    with open(other, "wb") as f:
        f.write(data)
    res, sym, p = scan(opts, other)
    assert "of the list's left out" not in res["symbols"][0]["desc"], res["symbols"]
    # a list whose learned posts are all spam: its boilerplate leans to
    # spam and still counts (only the list's ham-leaning tokens are left
    # out): a post of it with words the store never saw is spam by them
    junk = []
    for i in range(6):
        j = list_post(tmp_path, "j%d.eml" % i, "deal %d" % i, SPAMMY[i % 3] + " offer%d" % i)
        with open(j, "rb") as f:
            data = f.read().replace(b"dev.lists.example", b"junk.lists.example")
        with open(j, "wb") as f:
            f.write(data)
        junk.append(j)
    rc, out, err = learn(opts, "--spam", *junk)
    assert rc == 0, (out, err)
    jp = list_post(tmp_path, "jprobe.eml", "hello", "zebra quantum marmalade")
    with open(jp, "rb") as f:
        data = f.read().replace(b"dev.lists.example", b"junk.lists.example")
    with open(jp, "wb") as f:
        f.write(data)
    res, sym, p = scan(opts, jp)
    assert p is not None and p > 0.9, (sym, p, res["symbols"])


def test_character_model(store, tmp_path):
    """The character model (filters/bayes_chars.c): spam and ham below
    differ only in the form of their Message-ID, a field the word model
    does not read, so the words give p 0.5 to both; the character 4-grams
    of the start of the message and of its header tell them apart.  Learning trains it again
    (and forgetting), --rebuild alone too, bayes_chars = no leaves the
    word model alone, and each learned message's example lives as long as
    its "seen" key."""
    kind, opts, redis = store
    opts = opts + [("bayes_min_spam", "3"), ("bayes_min_ham", "3")]
    body = "the quarterly figures are attached as discussed in the call"

    def msg(name, label, i):
        mid = "<%d.QZXJ-BULKMAIL-%d@mx7.massmail.example>" % (i, i) if label == "spam" \
            else "<20230102%d.mutt@lists.example.org>" % i
        path = tmp_path / name
        path.write_bytes(make_msg(subject="quarterly figures", body=body, msgid=mid))
        return str(path)

    spam = [msg("s%d.eml" % i, "spam", i) for i in range(6)]
    ham = [msg("h%d.eml" % i, "ham", i) for i in range(6)]
    rc, out, err = learn(opts, "--spam", *spam)
    assert rc == 0 and "character model trained on 6 spam, 0 ham" in out, (out, err)
    rc, out, err = learn(opts, "--ham", *ham)
    assert rc == 0 and "character model trained on 6 spam, 6 ham" in out, (out, err)
    ps_res, _, ps = scan(opts, msg("probe-s.eml", "spam", 99))
    _, _, ph = scan(opts, msg("probe-h.eml", "ham", 99))
    desc = [s["desc"] for s in ps_res["symbols"] if s["name"].startswith("BAYES_")][0]
    assert "words 0.5000" in desc and "characters +" in desc and "header +" in desc, desc
    assert ps > 0.6 and ph < 0.4, (ps, ph, desc)
    # the header model (the Message-ID is in the header) leans the same
    # way for the ham
    ph_res, _, _ = scan(opts, msg("probe-h.eml", "ham", 99))
    hdesc = [s["desc"] for s in ph_res["symbols"] if s["name"].startswith("BAYES_")][0]
    assert "characters -" in hdesc and "header -" in hdesc, hdesc
    # without it the word model alone: the same 0.5 for both
    _, _, ps0 = scan(opts + [("bayes_chars", "no")], msg("probe-s.eml", "spam", 99))
    _, _, ph0 = scan(opts + [("bayes_chars", "no")], msg("probe-h.eml", "ham", 99))
    assert ps0 == ph0 == 0.5, (ps0, ph0)
    # forgetting trains it again without the message
    rc, out, _ = learn(opts, "--forget", spam[0])
    assert "character model trained on 5 spam, 6 ham" in out, out
    rc, out, _ = learn(opts, "--rebuild")
    assert rc == 0 and out.startswith("character model trained on 5 spam, 6 ham"), out
    rc, out, err = learn(opts + [("bayes_chars", "no")], "--rebuild")
    assert rc != 0 and "bayes_chars = no" in err, err
    if redis is not None:
        prefix = dict(opts)["store_prefix"]
        keys = [k for k in redis.keys(prefix + "*").split(b"\r\n") if k.startswith(prefix.encode())]
        ex = [k for k in keys if b"bayes:ex:" in k]
        seen = [k for k in keys if b"bayes:seen:" in k]
        assert len(ex) == len(seen) == 11, keys
        for k in ex[:3]:
            ttl = redis.command("TTL", k)
            assert ttl.startswith(b":") and 90 * 86400 - 60 <= int(ttl[1:]) <= 90 * 86400, ttl
        assert redis.command("TTL", (prefix + "bayes:chars:model").encode()) == b":-1\r\n"
        # a message learned before examples were kept (a store from an
        # older version): teaching it again keeps its example
        assert redis.command("DEL", ex[0]) == b":1\r\n"
        rc, out, _ = learn(opts, "--spam", *spam[1:])
        assert "5 already learned so" in out, out
        rc, out, _ = learn(opts, "--ham", *ham)
        assert "6 already learned so" in out and "trained on 5 spam, 6 ham" in out, out
        keys = [k for k in redis.keys(prefix + "*").split(b"\r\n") if k.startswith(prefix.encode())]
        assert len([k for k in keys if b"bayes:ex:" in k]) == 11, keys

def test_learn_without_training(tmp_path):
    """--no-train: the messages are learned (words and examples) but the
    character model is left for a later --rebuild, which trains on them;
    --rebuild --no-train is refused."""
    opts = store_opts("lmdb", tmp_path)
    files = [write(tmp_path, "n%d.eml" % i, "offer %d" % i, SPAMMY[i]) for i in range(3)]
    rc, out, err = learn(opts, "--no-train", "--spam", *files)
    assert rc == 0 and "learned as spam 3 message(s)" in out, (out, err)
    assert "character model trained" not in out and "not trained (--no-train)" in out, out
    rc, out, err = learn(opts, "--rebuild")
    assert rc == 0 and out.startswith("character model trained on 3 spam, 0 ham"), (out, err)
    rc, out, err = learn(opts, "--rebuild", "--no-train")
    assert rc != 0 and "contradict" in err, err


def test_tokens_sender_and_capitals(tmp_path):
    """Two kinds of evidence the tokenizer keeps: a header word longer
    than body words (an address, a host name) whole, not cut to a "sk:"
    prefix that unrelated senders share; and an all-capitals body word as
    written besides its lower case.  Spam and ham below differ only by
    that, so without it Bayes cannot tell them apart (p near 0.5)."""
    body = "the weekly report for the project is below with the figures of the month"
    senders = {"spam": "offers-department@bulk-sender-one.example",
               "ham": "offers-department@bulk-sender-two.example"}
    words = {"spam": "FREE", "ham": "free"}
    for case in ("sender", "capitals"):
        d = tmp_path / case
        d.mkdir()
        opts = store_opts("lmdb", d) + [("bayes_min_spam", "3"), ("bayes_min_ham", "3")]

        def msg(name, label):
            frm = senders[label] if case == "sender" else "someone@example.org"
            text = body + (" " + words[label] + " delivery" if case == "capitals" else "")
            path = d / name
            path.write_bytes(make_msg(subject="weekly report", body=text.encode(), frm=frm,
                                      msgid="<%s-%s@test.example>" % (case, name)))
            return str(path)

        for label in ("spam", "ham"):
            rc, out, err = learn(opts, "--" + label, *[msg("%s%d.eml" % (label, i), label) for i in range(3)])
            assert rc == 0 and "learned as %s 3 message(s)" % label in out, (out, err)
        _, _, ps = scan(opts, msg("probe-spam.eml", "spam"))
        _, _, ph = scan(opts, msg("probe-ham.eml", "ham"))
        # the ham sender is evidence of ham; lower-case "free" is in both
        assert ps > 0.9 and ph < (0.1 if case == "sender" else 0.51), (case, ps, ph)


def test_learn_usage_and_bad_store(tmp_path):
    rc, out, err = learn([], str(tmp_path))
    assert rc != 0 and "--spam" in err
    # any number of files (until session 19 more than 254 were refused:
    # test_learn.py test_many_files_on_the_command_line)
    rc, out, err = learn([("store_path", str(tmp_path / "no" / "such" / "dir" / "s.lmdb"))],
                         "--spam", str(tmp_path))
    assert rc != 0 and "store_path" in err


def random_words(rng, n):
    """n words never seen elsewhere, ten to a line"""
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(9)) for _ in range(n)]
    return "\n".join(" ".join(words[i:i + 10]) for i in range(0, n, 10))


def test_token_max_keeps_a_small_store_writable(mw_factory, upstream, tmp_path):
    """Every learned message leaves a hundred or so tokens seen nowhere else;
    the LMDB map they fill is the one greylisting writes to.  Unbounded, a
    2 MiB map is full after some 150 such messages and learning stops with
    MDB_MAP_FULL; with bayes_token_max the store trims itself and stays
    writable for greylisting.  The character model's examples (3 KB a
    taught message, bounded by bayes_seen_ttl, not bayes_token_max) are
    off here: 300 of them would fill the 2 MiB map alone."""
    import random
    rng = random.Random(6)
    d = tmp_path / "mail"
    d.mkdir()
    for i in range(300):
        write(d, "r%03d.eml" % i, "note %d" % i, random_words(rng, 150))
    small = [("store_map_size", "2M"), ("bayes_chars", "no")]
    unbounded = store_opts("lmdb", tmp_path) + small + [("bayes_token_max", "0")]
    rc, out, err = learn(unbounded, "--spam", str(d))
    assert rc != 0 and "MDB_MAP_FULL" in err and "raise store_map_size" in err, (out, err)
    bounded = store_opts("lmdb", tmp_path) + small + [("bayes_token_max", "10000")]
    rc, out, err = learn(bounded, "--spam", str(d))
    assert rc == 0, err
    m = re.search(r"learned as spam 300 message\(s\).*store holds 300 spam, 0 ham, (\d+) tokens", out)
    assert m and 7500 <= int(m.group(1)) <= 10000, out
    # the trimmed store still takes greylisting's writes
    gl = mw_factory(upstream, opts=bounded + [("filters", "greylist"), ("greylist_delay", "1h")])
    c = gl.client()
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject="x"))
    c.quit()
    assert r["final"].code == 451 and "Greylisted" in r["final"].text, r
    assert "MDB_MAP_FULL" not in gl.stderr_text()


def test_full_map_makes_room_by_itself(mw_factory, upstream, tmp_path):
    """A map too small for bayes_token_max (2 MiB for the default 2
    million) fills with tokens before that bound is reached.  Until
    session 19 learning then failed with MDB_MAP_FULL for good (the expiry
    ran only after a learn that succeeded, and only past the bound), and
    greylisting soon after.  A write that finds the map full now removes
    the expired keys and a quarter of the tokens, says so in one line, and
    is tried again: all 300 messages are learned, and greylisting writes."""
    import random
    rng = random.Random(7)
    d = tmp_path / "mail"
    d.mkdir()
    for i in range(300):
        write(d, "r%03d.eml" % i, "note %d" % i, random_words(rng, 150))
    opts = store_opts("lmdb", tmp_path) + [("store_map_size", "2M"), ("bayes_chars", "no")]
    rc, out, err = learn(opts, "--spam", str(d))
    assert rc == 0, (out, err)
    m = re.search(r"learned as spam 300 message\(s\).*store holds 300 spam, 0 ham, (\d+) tokens", out)
    assert m and int(m.group(1)) < 300 * 150, out
    assert "map full (store_map_size 2 MiB), room made" in err, err
    assert "Bayes tokens (those seen in one message first" in err, err
    assert "MDB_MAP_FULL" not in err, err
    gl = mw_factory(upstream, opts=opts + [("filters", "greylist"), ("greylist_delay", "1h")])
    c = gl.client()
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject="x"))
    c.quit()
    assert r["final"].code == 451 and "Greylisted" in r["final"].text, r
    assert "MDB_MAP_FULL" not in gl.stderr_text()


def list_corpus(tmp_path, seed, n=300, words=600):
    """n messages of words never seen elsewhere, each naming a list of its
    own (List-Id)"""
    import random
    rng = random.Random(seed)
    d = tmp_path / ("listed%d" % seed)
    d.mkdir()
    for i in range(n):
        hdr = [("List-Id", "Offers <offers-%d-%d.lists.example>" % (seed, i))]
        (d / ("m%03d.eml" % i)).write_bytes(make_msg(
            subject="note %d" % i, headers=hdr, msgid="<m%d.%d@test.example>" % (i, seed),
            body=random_words(rng, words).replace("\n", "\r\n").encode()))
    return str(d)


@pytest.mark.parametrize("boiler", ["no", "yes"])
def test_list_named_messages_fit_a_small_map(mw_factory, upstream, tmp_path, boiler):
    """A sender names the list: a new List-Id in each message left a
    window of its tokens (bayes:list:<id>, up to 32 KB) per learned
    message, whatever bayes_list_boilerplate said, which nothing but
    their TTL (90 days) removed: 300 such messages filled a 2 MiB map,
    and learning, autolearn and greylisting then failed with MDB_MAP_FULL
    for good (review rv-today3, session 20; 117 of 300 learned).  Now
    the setting off writes nothing of the lists, and on, make_room removes
    the windows and boilerplates (a cache) with the expired keys; 1,500
    messages in all."""
    opts = store_opts("lmdb", tmp_path) + [("store_map_size", "2M"), ("bayes_chars", "no"),
                                           ("bayes_list_boilerplate", boiler)]
    rc, out, err = learn(opts, "--spam", list_corpus(tmp_path, 20))
    assert rc == 0 and "learned as spam 300 message(s)" in out, (rc, out, err[-1500:])
    errs = err
    # what a steady autolearn would do: more of them, day after day
    for seed in range(21, 25):
        rc, out, err = learn(opts, "--spam", list_corpus(tmp_path, seed))
        assert rc == 0 and "learned as spam 300 message(s)" in out, (seed, rc, out, err[-1500:])
        errs += err
    assert "MDB_MAP_FULL" not in errs and "window not updated" not in errs, errs[-1500:]
    if boiler == "yes":
        m = re.findall(r"room made: \d+ expired keys, (\d+) of the Bayes lists' windows", errs)
        assert m and sum(int(x) for x in m) > 0, errs[-1500:]
    else:
        assert store_peek("lmdb", opts, None, key_hash("bayes:list:", "offers-24-0.lists.example")) is None
    gl = mw_factory(upstream, opts=opts + [("filters", "greylist"), ("greylist_delay", "1h")])
    c = gl.client()
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(subject="x"))
    c.quit()
    assert r["final"].code == 451 and "Greylisted" in r["final"].text, r["final"]
    assert "MDB_MAP_FULL" not in gl.stderr_text()


def test_autolearn_of_strangers_list_names_fits_the_map(mw_factory, upstream, tmp_path):
    """the same through autolearn with the defaults (filters = bayes: a
    plain message scores 0 <= bayes_autolearn_ham 0.1 and is autolearned
    as ham), sent by anyone over SMTP, each message naming a list of its
    own: until session 20's review 117-121 of 200 were autolearned, then
    "autolearn failed: store unavailable" (MDB_MAP_FULL); now each name
    leaves a stub of 24 bytes, and all 200 are learned"""
    import random
    rng = random.Random(30)
    opts = store_opts("lmdb", tmp_path) + [("store_map_size", "2M"), ("bayes_chars", "no")]
    m = mw_factory(upstream, opts=opts + [("filters", "bayes"), ("bayes_autolearn", "yes")])
    c = m.client()
    c.ehlo()
    for i in range(200):
        r = c.transaction("a%d@example.org" % i, ["b@example.net"], make_msg(
            subject="n%d" % i, headers=[("List-Id", "<l%d.lists.example>" % i)],
            body=random_words(rng, 600).replace("\n", "\r\n").encode()))
        assert r["final"].code == 250
    c.quit()
    m.audit(200)
    text = m.stderr_text()
    learned = text.count("autolearned as ham")
    failed = [l for l in text.splitlines() if "autolearn failed" in l or "window not updated" in l]
    assert learned == 200 and not failed, (learned, failed[:3])
    # the stubs the last make_room left (the lists' cache goes with it)
    stubs = [store_peek("lmdb", opts, None, key_hash("bayes:list:", "l%d.lists.example" % i), raw=True)
             for i in range(200)]
    stubs = [v for v in stubs if v is not None]
    assert stubs and all(len(v[1]) == 24 for v in stubs), stubs[:3]


def test_list_windows_only_with_the_setting(store, tmp_path):
    """bayes_list_boilerplate = no writes nothing of the lists (until
    session 20's review every learned list message was noted "so that
    turning it on finds the lists learned"); on, learn keeps both messages
    in the list's window (autolearn's first leaves a stub:
    test_autolearn_of_strangers_list_names_fits_the_map)"""
    kind, opts, redis = store
    import random
    rng = random.Random(5)
    d = tmp_path / "two"
    d.mkdir()
    for i in range(2):
        (d / ("m%d.eml" % i)).write_bytes(make_msg(
            subject="post %d" % i, headers=[("List-Id", "Team <team.lists.example>")],
            msgid="<two%d@test.example>" % i, body=random_words(rng, 40).encode()))
    key = key_hash("bayes:list:", "team.lists.example")
    rc, out, err = learn(opts + [("bayes_list_boilerplate", "no")], "--ham", str(d))
    assert rc == 0 and "learned as ham 2 message(s)" in out, (out, err)
    assert store_peek(kind, opts, redis, key, raw=True) is None
    rc, out, err = learn(opts + [("bayes_list_boilerplate", "no")], "--forget", str(d))
    assert rc == 0, (out, err)
    rc, out, err = learn(opts, "--ham", str(d))
    assert rc == 0 and "learned as ham 2 message(s)" in out, (out, err)
    got = store_peek(kind, opts, redis, key, raw=True)
    assert got is not None and got[1][:4] == b"MWL2", got
    assert got[1][8:12] == b"\x02\0\0\0", got                  # two messages in it


def test_autolearn_past_token_max_trims_the_store(mw_factory, upstream, tmp_path):
    import random
    rng = random.Random(7)
    opts = store_opts("lmdb", tmp_path) + [("bayes_token_max", "2000")]
    m = mw_factory(upstream, opts=opts + [("filters", "bayes"), ("bayes_autolearn", "yes"),
                                          ("bayes_autolearn_ham", "0.5")])
    c = m.client()
    c.ehlo()
    for i in range(10):
        r = c.transaction("a@example.org", ["b@example.net"],
                          make_msg(subject="n%d" % i, body=random_words(rng, 150).replace("\n", "\r\n").encode()))
        assert r["final"].code == 250
    c.quit()
    m.audit(10)
    text = m.stderr_text()
    assert text.count("autolearned as ham") == 10, text
    assert "over bayes_token_max 2000" in text, text
    one = write(tmp_path, "one.eml", "one", random_words(rng, 5))
    rc, out, err = learn(opts, "--ham", one)
    n = int(re.search(r"(\d+) tokens", out).group(1))
    assert n <= 2000, out


def test_learned_message_is_remembered_for_seen_ttl(store, tmp_path):
    """one key per learned message (to skip or move a relearned one)
    expires after bayes_seen_ttl, so that a site that autolearns does not
    keep a key for every message it ever saw; after it the message counts
    as new"""
    kind, opts, _ = store
    msg = write(tmp_path, "seen.eml", "seen", "words of a message learned twice, long enough to be learned")
    # 3 s: two learn runs must fit in it on a loaded machine
    short = opts + [("bayes_seen_ttl", "3s")]
    rc, out, err = learn(short, "--spam", msg)
    assert rc == 0 and "learned as spam 1 message(s)" in out, (out, err)
    rc, out, err = learn(short, "--spam", msg)
    assert "1 already learned so" in out and "store holds 1 spam" in out, out
    time.sleep(3.2)
    rc, out, err = learn(short, "--spam", msg)
    assert "learned as spam 1 message(s)" in out and "store holds 2 spam" in out, out
    # the default remembers it for 90 days
    rc, out, err = learn(opts, "--ham", msg)
    assert "learned as ham 1 message(s)" in out, out
    rc, out, err = learn(opts, "--ham", msg)
    assert "1 already learned so" in out, out


def holds(out):
    """(spam, ham, tokens or None) of a learn run's summary line"""
    m = re.search(r"store holds (\d+) spam, (\d+) ham(?:, (\d+) tokens)?", out)
    assert m, out
    return int(m.group(1)), int(m.group(2)), None if m.group(3) is None else int(m.group(3))


def learn_at_once(opts, runs):
    """the learn runs (argument lists) started together; their outputs"""
    cmd = [MW_BIN, "learn"]
    for k, v in opts:
        cmd += ["-o", "%s=%s" % (k, v)]
    procs = [subprocess.Popen(cmd + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args in runs]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, (out, err)
    return [out.decode() for out, _ in outs]


def test_concurrent_learns_count_each_message_once(store, tmp_path):
    """README "Bayes": a message learned twice the same way is skipped,
    also when the two learns run at once (the learn command beside
    autolearn, two machines on one Redis).  The look at the message's mark
    and the writes are one step (store_learn): before, three runs over the
    same 300 messages counted some twice (304..434 "newly learned"), and
    --forget never took the extra counts and tokens away."""
    kind, opts, _ = store
    opts = opts + [("bayes_chars", "no")]
    d = tmp_path / "corpus"
    d.mkdir()
    n = 300
    for i in range(n):
        (d / ("m%03d.eml" % i)).write_bytes(make_msg(
            subject="offer %d" % i, body="cheap pills number %d click here winner %d" % (i, i),
            msgid="<race%d@test.example>" % i))
    rc, out, err = learn(opts, "--spam", str(d / "m000.eml"))      # the store exists
    assert rc == 0, (out, err)
    outs = learn_at_once(opts, [["--spam", str(d)]] * 3)
    learned = sum(int(re.search(r"learned as spam (\d+) message", o).group(1)) for o in outs)
    assert learned == n - 1, ("newly learned by the three runs", learned, outs)
    rc, out, _ = learn(opts, "--forget", "/dev/null")
    assert holds(out)[:2] == (n, 0), out
    # relearning at once both ways: each message in one class, once
    outs = learn_at_once(opts, [["--ham", str(d)], ["--spam", str(d)], ["--ham", str(d)]])
    rc, out, _ = learn(opts, "--forget", "/dev/null")
    spam, ham, _ = holds(out)
    assert spam + ham == n, (spam, ham, outs)
    rc, out, _ = learn(opts, "--forget", str(d))
    assert "forgot %d message(s)" % n in out, out
    assert holds(out) == (0, 0, 0 if kind == "lmdb" else None), out
    if kind == "redis":
        redis = store[2]
        prefix = dict(opts)["store_prefix"]
        assert redis.keys(prefix + "t:*").count(prefix.encode()) == 0, "tokens left behind"


def marks_and_examples(kind, opts, redis, mids):
    """[(mark, the class byte of the example)] of the messages, each None
    when absent; Redis read in one MGET (store_peek takes 40 ms a key)"""
    keys = []
    for mid in mids:
        seen = bayes_seen_key(mid)
        keys += [seen, "bayes:ex:" + seen.rsplit(":", 1)[1]]
    if kind == "lmdb":
        got = [store_peek(kind, opts, redis, k, raw=True) for k in keys]
        vals = [g[1] if g else None for g in got]
    else:
        prefix = dict(opts)["store_prefix"]
        s = socket.create_connection(("127.0.0.1", redis.port), timeout=5)
        f = s.makefile("rb")
        args = [b"MGET"] + [(prefix + k).encode() for k in keys]
        s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        assert f.readline() == b"*%d\r\n" % len(keys)
        vals = []
        for _ in keys:
            n = int(f.readline()[1:])
            vals.append(None if n < 0 else f.read(n + 2)[:-2])
        s.close()
    return [(m and m.decode(), e and e[:1].decode()) for m, e in zip(vals[0::2], vals[1::2])]


def test_concurrent_learners_leave_the_example_of_the_mark(store, tmp_path):
    """The example kept for the character model (bayes:ex:<id>) is always
    of the class of the message's mark (bayes:seen:<id>), or both are
    absent, whatever learners of the message run at once.  Two or three
    real `learn` processes go through the same 20 messages, each 10 times
    over, one teaching ham, one forgetting (and one teaching spam); after
    each round every mark and example agree.  Before, the example was
    written on its own before the learn that set the mark: a message the
    store held as ham but without its example (its forget under way) got
    it back after the forget, or a learner's example landed after another
    learner's learn (Redis, 2-5 rounds in 40 left a message forgotten with
    a ham example).  It is written in the learn's one step now (store.h
    store_learn)."""
    kind, opts, redis = store
    d = tmp_path / "same"
    d.mkdir()
    mids = ["<same%d@test.example>" % i for i in range(20)]
    for c in range(10):                 # the same message at once in every learner
        for i, mid in enumerate(mids):
            (d / ("r%02d-m%02d.eml" % (c, i))).write_bytes(make_msg(
                subject="offer %d" % i, body="cheap pills number %d click here" % i, msgid=mid))
    cmd = [MW_BIN, "learn", "--no-train"]
    for k, v in opts:
        cmd += ["-o", "%s=%s" % (k, v)]
    mixes = [["--ham", "--forget"], ["--spam", "--forget"], ["--spam", "--ham", "--forget"]]
    for r in range(60 if kind == "redis" else 15):
        procs = [subprocess.Popen(cmd + [c, str(d)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for c in mixes[r % len(mixes)]]
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, (out, err)
        got = marks_and_examples(kind, opts, redis, mids)
        odd = [(mid, m, e) for mid, (m, e) in zip(mids, got) if m != e]
        assert not odd, ("round", r, mixes[r % len(mixes)], "mark and example differ", odd)


def big_message(path, stem, msgid):
    words = " ".join("%s%05d" % (stem, i) for i in range(12000))
    body = "\r\n".join(words[i:i + 70] for i in range(0, len(words), 70))
    path.write_bytes(make_msg(subject="big", body=body, msgid=msgid))
    return str(path)


def test_failed_learn_leaves_nothing_counted(tmp_path):
    """A learn that fails part-way (here a full LMDB map, the README's
    example of a store that fails) counts nothing: the tokens, the
    message count and the mark are one write transaction.  Before, the
    token batches of 4096 that fitted stayed counted with no mark and no
    message count: a retry counted them again, and --forget never took
    them away.  bayes_token_max = 0 in the tight map: a full map otherwise
    makes room by removing a quarter of the tokens (session 19), which is
    not what this counts."""
    store_path = tmp_path / "st.lmdb"
    opts = [("store", "lmdb"), ("store_path", str(store_path)), ("bayes_chars", "no")]
    roomy = opts + [("store_map_size", "64M")]
    tight = opts + [("store_map_size", "1M"), ("bayes_token_max", "0")]
    first = big_message(tmp_path / "big1.eml", "zq", "<big1@test.example>")
    second = big_message(tmp_path / "big2.eml", "zr", "<big2@test.example>")
    rc, out, err = learn(roomy, "--spam", first)
    assert rc == 0 and holds(out) == (1, 0, 20000), (out, err)
    rc, out, err = learn(tight, "--spam", second)                 # no room for 20000 more
    assert rc == 1 and "MDB_MAP_FULL" in err, (out, err)
    rc, out, err = learn(roomy, "--forget", "/dev/null")
    assert holds(out) == (1, 0, 20000), ("the failed learn left counts behind", out)
    rc, out, err = learn(roomy, "--spam", second)                 # the retry counts it once
    assert rc == 0 and holds(out)[:2] == (2, 0) and holds(out)[2] > 20000, (out, err)
    rc, out, err = learn(roomy, "--forget", first, second)
    assert holds(out) == (0, 0, 0), out


def test_redis_big_learn_within_a_small_store_timeout(redis_server, tmp_path):
    """A 20000-token message is one Redis script of 77-102 ms; with
    store_timeout = 20ms (valid: 10ms at least) the client gave up on it,
    learn said "failed" while the script ran on and counted the message,
    and the example revert queued behind it lost the counted message's
    example.  The learn now waits for a script of that size (store_timeout
    plus 25 ms per 1000 tokens) and reads the mark back before touching
    the example."""
    opts = store_opts("redis", tmp_path, redis_server) + [("store_timeout", "20ms")]
    prefix = dict(opts)["store_prefix"]
    msg = big_message(tmp_path / "big.eml", "zt", "<bigredis@test.example>")
    rc, out, err = learn(opts, "--spam", msg)
    assert rc == 0 and holds(out)[:2] == (1, 0), (out, err)
    keys = [k for k in redis_server.keys(prefix + "bayes:*").split(b"\r\n") if k.startswith(prefix.encode())]
    assert [k for k in keys if b"bayes:seen:" in k] and [k for k in keys if b"bayes:ex:" in k], keys
    rc, out, err = learn(opts, "--spam", msg)
    assert rc == 0 and "1 already learned so" in out and holds(out)[:2] == (1, 0), (out, err)


def test_a_mark_that_is_not_a_class_is_logged_escaped(store, tmp_path):
    """The store is not trusted input for the log (a Redis server shared
    by several machines, a damaged LMDB file): a message's mark that is no
    class is named in the log with its bytes escaped (log_esc).  Before,
    the log's last guard turned the newline and ESC into "?" (what the
    store holds was lost) and let a byte past 0x7e through raw: invalid
    UTF-8 in the log, and 0x9b, the 8-bit CSI, a terminal escape."""
    kind, opts, redis = store
    path = write(tmp_path, "odd.eml", "notes", HAMMY[0])
    rc, out, err = learn(opts, "--ham", path)                   # the store exists
    assert rc == 0, (out, err)
    store_put(kind, opts, redis, bayes_seen_key("<odd.eml@test.example>"),
              b"\n\x9bFAKE\x1b[2J", int(time.time()) + 3600)
    cmd = ["learn"]
    for k, v in opts:
        cmd += ["-o", "%s=%s" % (k, v)]
    err = run_mw(cmd + ["--spam", path]).stderr                # bytes: no decoding to fail
    assert b'holds "\\x0a\\x9bFAKE\\x1b", not a class: left alone' in err, err
    assert not [c for c in err if c >= 0x7f or (c < 0x20 and c != 0x0a)], err
    assert b"\nFAKE" not in err, err


# Two Message-IDs whose keys of before were one (tests/bench/fnv1a_collide.c
# "mid<": the old key was FNV-1a-64 over "mid" and the Message-ID)
MID_A = "<3i5beq2bsee2e@example.org>"
MID_B = "<ruvdim2aeptyi@example.org>"


def held(out):
    m = re.search(r"store holds (\d+) spam, (\d+) ham", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def test_fnv_colliding_message_is_learned_as_new(store, tmp_path):
    """A message whose Message-ID collides with a learned one's under the
    old FNV-1a key is another message now: learned (not "already
    learned"), and relearning or forgetting it leaves the other as it
    was."""
    kind, opts, redis = store
    assert legacy_bayes_seen_key(MID_A) == legacy_bayes_seen_key(MID_B)
    a, b = tmp_path / "a.eml", tmp_path / "b.eml"
    a.write_bytes(make_msg(subject="offer", body="cheap pills click here for the best offer", msgid=MID_A))
    b.write_bytes(make_msg(subject="minutes", body="the meeting notes of the build team", msgid=MID_B))
    rc, out, err = learn(opts, "--spam", str(a))
    assert rc == 0 and "learned as spam 1 message(s)" in out, (out, err)
    rc, out, err = learn(opts, "--spam", str(b))
    assert "learned as spam 1 message(s)" in out and held(out) == (2, 0), (out, err)
    rc, out, _ = learn(opts, "--ham", str(b))
    assert held(out) == (1, 1), out
    rc, out, _ = learn(opts, "--forget", str(b))
    assert "forgot 1 message(s)" in out and held(out) == (1, 0), out
    rc, out, _ = learn(opts, "--spam", str(a))
    assert "1 already learned so" in out and held(out) == (1, 0), out
    assert store_peek(kind, opts, redis, legacy_bayes_seen_key(MID_A)) is None
    assert store_peek(kind, opts, redis, bayes_seen_key(MID_A))[1] == "s"


def test_old_seen_keys_move(store, tmp_path):
    """A store taught by an older version keeps its marks under the FNV-1a
    keys (bayes:seen:<16 hex>, the example at bayes:ex:<16 hex>): such a
    message is still "already learned", its mark and example move to the
    new keys with the lifetime they had left (30 days here, not a new 90),
    and the old keys go; --rebuild counts examples under either form;
    --forget of a message learned so takes it off once."""
    kind, opts, redis = store
    day = 86400
    mids = {"s": "<old-spam.1@test.example>", "f": "<old-spam.2@test.example>",
            "h": "<old-ham.1@test.example>"}
    files = {}
    for n, mid in mids.items():
        files[n] = str(tmp_path / ("%s.eml" % n))
        with open(files[n], "wb") as f:
            f.write(make_msg(subject="old %s" % n, body="words of the %s message, enough of them to be learned" % n,
                             msgid=mid))
    rc, out, err = learn(opts, "--spam", files["s"], files["f"])
    assert rc == 0 and "learned as spam 2 message(s)" in out, (out, err)
    rc, out, err = learn(opts, "--ham", files["h"])
    assert held(out) == (2, 1), (out, err)
    # as an older version left them: the same entries under the old keys,
    # 30 days left
    exp = int(time.time()) + 30 * day
    examples = {}
    for n, mid in mids.items():
        new, old = bayes_seen_key(mid), legacy_bayes_seen_key(mid)
        nex, oex = new.replace("seen", "ex"), old.replace("seen", "ex")
        mark = store_peek(kind, opts, redis, new)
        ex = store_peek(kind, opts, redis, nex, raw=True)
        assert mark[1] == ("h" if n == "h" else "s") and ex and ex[1][:1] == mark[1].encode(), (n, ex)
        examples[n] = ex[1]
        store_put(kind, opts, redis, old, mark[1], exp)
        store_put(kind, opts, redis, oex, ex[1], exp)
        store_del(kind, opts, redis, new)
        store_del(kind, opts, redis, nex)
    # the character model is trained from examples under the old ids too
    rc, out, err = learn(opts, "--rebuild")
    assert rc == 0 and out.startswith("character model trained on 2 spam, 1 ham"), (out, err)
    rc, out, err = learn(opts, "--spam", files["s"])
    assert "1 already learned so" in out and held(out) == (2, 1), (out, err)
    rc, out, err = learn(opts, "--ham", files["h"])
    assert "1 already learned so" in out and held(out) == (2, 1), (out, err)
    for n in ("s", "h"):
        new, old = bayes_seen_key(mids[n]), legacy_bayes_seen_key(mids[n])
        assert store_peek(kind, opts, redis, old) is None, n
        assert store_peek(kind, opts, redis, old.replace("seen", "ex")) is None, n
        left, v = store_peek(kind, opts, redis, new)
        assert v == ("s" if n == "s" else "h") and 30 * day - 60 < left <= 30 * day, (n, left, v)
        left, v = store_peek(kind, opts, redis, new.replace("seen", "ex"), raw=True)
        assert v == examples[n] and 30 * day - 60 < left <= 30 * day, (n, left)
    # forgotten once: its tokens and counts off, every key of it gone
    rc, out, err = learn(opts, "--forget", files["f"])
    assert "forgot 1 message(s)" in out and held(out) == (1, 1), (out, err)
    assert "character model trained on 1 spam, 1 ham" in out, out
    for k in (bayes_seen_key(mids["f"]), legacy_bayes_seen_key(mids["f"])):
        assert store_peek(kind, opts, redis, k) is None, k
        assert store_peek(kind, opts, redis, k.replace("seen", "ex")) is None, k
    rc, out, err = learn(opts, "--forget", files["f"])
    assert "forgot 0 message(s), 1 already unknown" in out and held(out) == (1, 1), out
    # relearning one learned so as the other class moves it
    rc, out, err = learn(opts, "--ham", files["s"])
    assert "learned as ham 1 message(s)" in out and held(out) == (0, 2), out


def test_redis_seen_key_ttl(redis_server, tmp_path):
    opts = store_opts("redis", tmp_path, redis_server)
    prefix = dict(opts)["store_prefix"]
    msg = write(tmp_path, "s.eml", "seen", "a message whose seen key has a TTL")
    rc, out, err = learn(opts, "--spam", msg)
    assert rc == 0, err
    keys = [k for k in redis_server.keys(prefix + "*").split(b"\r\n")
            if k.startswith(prefix.encode()) and b"seen" in k]
    assert len(keys) == 1, redis_server.keys(prefix + "*")
    ttl = redis_server.command("TTL", keys[0])
    assert ttl.startswith(b":") and 90 * 86400 - 60 <= int(ttl[1:]) <= 90 * 86400, ttl


def test_redis_tokens_expire_after_token_ttl(redis_server, tmp_path):
    opts = store_opts("redis", tmp_path, redis_server)
    prefix = dict(opts)["store_prefix"]
    msg = write(tmp_path, "t.eml", "ttl", "a few words to learn here, enough of them to be learned")
    rc, out, err = learn(opts + [("bayes_token_ttl", "1h")], "--spam", msg)
    assert rc == 0, err
    keys = [k for k in redis_server.keys(prefix + "t:*").split(b"\r\n") if k.startswith(prefix.encode())]
    assert len(keys) > 5, keys
    ttl = redis_server.command("TTL", keys[0])
    assert ttl.startswith(b":") and 3500 <= int(ttl[1:]) <= 3600, ttl
    # no TTL by default: tokens live until unlearned
    rc, out, err = learn(opts, "--ham", write(tmp_path, "u.eml", "other",
                                               "unrelated sentence elsewhere, long enough to be learned"))
    keys = [k for k in redis_server.keys(prefix + "t:*").split(b"\r\n") if k.startswith(prefix.encode())]
    assert [k for k in keys if redis_server.command("TTL", k) == b":-1\r\n"], keys


def test_bayes_through_proxy_and_autolearn(mw_factory, upstream, tmp_path):
    opts = store_opts("lmdb", tmp_path) + [("bayes_min_spam", "1"), ("bayes_min_ham", "1")]
    spam = [write(tmp_path, "s%d.eml" % i, "offer %d" % i, b) for i, b in enumerate(SPAMMY)]
    ham = [write(tmp_path, "h%d.eml" % i, "notes %d" % i, b) for i, b in enumerate(HAMMY)]
    learn(opts, "--spam", *spam)
    learn(opts, "--ham", *ham)
    m = mw_factory(upstream, opts=opts + [("filters", "bayes"), ("bayes_autolearn", "yes"),
                                          ("bayes_autolearn_ham", "0.5"),
                                          ("bayes_scores", "BAYES_00=-1 BAYES_999=6 BAYES_99=6 BAYES_95=6")])
    c = m.client()
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"],
                      make_msg(subject="offer", body=b"cheap pills and a free prize, click here now"))
    c.quit()
    assert r["final"].code == 250
    rec = m.audit(1)[-1]
    assert rec["action"] == "tag", rec
    assert any(s["name"] in ("BAYES_95", "BAYES_99", "BAYES_999") for s in rec["symbols"])
    # autolearn: with no other filter the score before Bayes is 0 <= 0.5: learned as ham
    assert "autolearned as ham" in m.stderr_text()
    rc, out, _ = learn(opts, "--spam", spam[0])
    assert "store holds 4 spam" not in out and "already learned so" in out


def test_corpus_accuracy(tmp_path):
    """Learn from the "train" part of the training half, measure on its
    "test" part, through `mailwarden learn` and `mailwarden scan`."""
    c = training_half()
    opts = store_opts("lmdb", tmp_path)
    rc, out, err = learn(opts, "--spam", os.path.dirname(c["train"]["spam"][0]))
    assert rc == 0 and "learned as spam %d message(s)" % len(c["train"]["spam"]) in out, (out, err)
    rc, out, err = learn(opts, "--ham", os.path.dirname(c["train"]["ham"][0]))
    assert rc == 0 and "learned as ham %d message(s)" % len(c["train"]["ham"]) in out, (out, err)
    with ThreadPoolExecutor(4) as ex:
        ps = {lab: list(ex.map(lambda f: scan(opts, f)[2], c["test"][lab])) for lab in ("spam", "ham")}
    ns, nh = len(ps["spam"]), len(ps["ham"])
    lines = ["Bayes alone on the training half: learned %d spam, %d ham; tested %d spam, %d ham"
             % (len(c["train"]["spam"]), len(c["train"]["ham"]), ns, nh)]
    fig = {}
    for th in (0.5, 0.8, 0.95, 0.99):
        rec = sum(1 for p in ps["spam"] if p is not None and p >= th) / ns
        fp = sum(1 for p in ps["ham"] if p is not None and p >= th)
        fig[th] = (rec, fp)
        lines.append("  p >= %.2f: spam recall %.1f%%, ham flagged %d (%.2f%%)" % (th, rec * 100, fp, fp * 100 / nh))
    print("\n".join(lines))
    with open(os.path.join(os.environ.get("MW_BUILD", str(tmp_path)), "bayes-accuracy.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    # BAYES_99 and up, where Bayes alone reaches the tag score since
    # session 12: no ham, and most spam (96.0-96.2%)
    rec, fp = fig[0.99]
    assert fp == 0 and rec >= 0.95, lines
    # BAYES_95 and up, where Bayes alone tagged before session 12 (now
    # with a point from the rules, which test_accuracy.py measures): most
    # spam (97.0-97.3% with the header model; 95.2% with the character
    # model alone, 92.7% before it, 91.9% before the header-word and
    # capitals tokens, 86.8% before the log-tail indicator), at most one
    # ham: the models' training order (their examples' keys) moves a
    # hard-ham newsletter across 0.95
    rec, fp = fig[0.95]
    assert fp <= 1 and rec >= 0.96, lines
