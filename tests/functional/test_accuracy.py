"""test_accuracy.py - spam recall and ham false positives (issue 6,
Accuracy): Bayes learned with `mailwarden learn` from the "train" part of
the corpus' training half (corpuslib: md5 ending 0 2 4 6 8), measured on
its "test" part (a c e), for Bayes alone and for the full local score
(filters "rules bayes": the shipped rules + Bayes), network checks off (no
dnsbl, no spamd, DNS pointed at a dead loopback port).  The odd half of the
corpus is never read.

test_accuracy_swapped_parts: the same with the parts swapped (learned
from a c e, measured on 0 2 4 6 8), no ham flagged either.

The test part is scanned by build/tests/rules_batch --scores (the same
pipeline as `mailwarden scan`, one process for all messages); a sample of
it is scanned with `mailwarden scan` through the CLI too and must get the
same score.  A message is flagged when its score reaches the default tag
score, 5.0.

test_score_set_follows_bayes: which value of a 4-value score line applies
(rules_score_set), and -1 for a nice rule without a score.

MW_ACCURACY_STOCK=1 also measures the shipped rules + Debian's stock
SpamAssassin rules + Bayes (its first run compiles those rules: 60-90 s)."""
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from corpuslib import training_half
from mwlib import run_mw
from storelib import store_opts

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.path.abspath(os.environ.get("MW_BUILD", os.path.join(SRC, "build")))
TAG = 5.0                                   # inbound_tag_score default
NO_NET = ["-o", "dns_forwarder=127.0.0.1@9"]
SHIPPED = [os.path.join(SRC, "rules", "cf")]
STOCK = SHIPPED + ["/usr/share/spamassassin", "/etc/spamassassin/*.cf"]
# what is reached on this split (rules + Bayes 97.8%, no ham; Bayes
# alone, which tags from p 0.99 since session 12, 96.0-96.2%; see README;
# 97.8% and 96.2% again with session 20's list boilerplate):
# rules + Bayes at the target (97%), Bayes with a margin; a
# regression below these fails.  The shipped scores were fitted on the
# whole training half (these splits' Bayes included): the out-of-sample
# figure is tests/bench/accuracy_cv.py's
MIN_RECALL = {"bayes": 0.95, "rules bayes": 0.97}
# the same with the parts swapped (learned from a c e, only 3/8 of the
# half, tested on 0 2 4 6 8): guards against scores that only fit one
# part.  Until session 20 below the target: Bayes 93.5%, rules + Bayes
# 96.1%, no ham (spam relayed by mailing lists whose ham was learned sat
# at p 0.0-0.5: the lists' footers spoke for them).  Since the lists'
# boilerplate weighs only as spam evidence (bayes_list_boilerplate):
# Bayes 96.1%, rules + Bayes 97.7%, no ham: at the target too
MIN_RECALL_SWAPPED = {"bayes": 0.95, "rules bayes": 0.97}


def rules_opts(rules):
    cache = os.path.join(BUILD, "cache", "rules-db")  # shared with test_rules_sa.py
    os.makedirs(cache, exist_ok=True)
    o = ["-o", "rules_files="]
    for r in rules:
        o += ["-o", "rules_files=" + r]
    return o + ["-o", "rules_cache_dir=" + cache]


def batch(opts, files):
    """{file: (score, {symbol: score})} from rules_batch --scores"""
    r = subprocess.run([os.path.join(BUILD, "tests", "rules_batch"), "--scores"] + opts + files,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    out = {}
    for line in r.stdout.splitlines():
        f, score, syms, _bayes = line.split("\t")
        out[f] = (float(score), dict((s.split("=")[0], float(s.split("=")[1])) for s in syms.split()))
    assert set(out) == set(files), r.stderr[-2000:]
    return out


def figures(res, c):
    spam = [res[f][0] >= TAG for f in c["test"]["spam"]]
    ham = [f for f in c["test"]["ham"] if res[f][0] >= TAG]
    return sum(spam) / len(spam), ham


def learn_part(c, part, tmp):
    """a store that learned c[part] (both labels); the scan options"""
    so = store_opts("lmdb", tmp)
    for label in ("spam", "ham"):
        cmd = ["learn"]
        for k, v in so:
            cmd += ["-o", "%s=%s" % (k, v)]
        r = run_mw(cmd + ["--" + label, os.path.dirname(c[part][label][0])], timeout=600)
        out = r.stdout.decode()
        assert r.returncode == 0 and "learned as %s %d message(s)" % (label, len(c[part][label])) in out, \
            (out, r.stderr.decode())
    opts = NO_NET[:]
    for k, v in so:
        opts += ["-o", "%s=%s" % (k, v)]
    return opts


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    c = training_half()
    return c, learn_part(c, "train", tmp_path_factory.mktemp("acc"))


def test_accuracy_bayes_and_rules(learned):
    c, opts = learned
    files = c["test"]["spam"] + c["test"]["ham"]
    ns, nh = len(c["test"]["spam"]), len(c["test"]["ham"])
    runs = {"bayes": opts + ["-o", "filters=bayes"],
            "rules bayes": opts + ["-o", "filters=rules bayes"] + rules_opts(SHIPPED)}
    res = {k: batch(v, files) for k, v in runs.items()}
    lines = ["learned %d spam, %d ham; tested %d spam, %d ham (network checks off, tag at %.1f)"
             % (len(c["train"]["spam"]), len(c["train"]["ham"]), ns, nh, TAG)]
    fig = {}
    for name, label in (("bayes", "Bayes alone"), ("rules bayes", "rules + Bayes")):
        rec, fp = figures(res[name], c)
        fig[name] = (rec, fp)
        lines.append("%s: recall %.1f%%, ham flagged %d/%d" % (label, rec * 100, len(fp), nh))
    if os.environ.get("MW_ACCURACY_STOCK"):
        r = batch(opts + ["-o", "filters=rules bayes"] + rules_opts(STOCK), files)
        rec, fp = figures(r, c)
        lines.append("rules + SpamAssassin stock rules + Bayes: recall %.1f%%, ham flagged %d/%d"
                     % (rec * 100, len(fp), nh))
    print("\n" + "\n".join(lines))
    with open(os.path.join(BUILD, "accuracy.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")

    # the CLI gives the same verdicts: `mailwarden scan` on a sample (the
    # spam and ham nearest the threshold first, then some of each)
    rb = res["rules bayes"]
    near = sorted(files, key=lambda f: abs(rb[f][0] - TAG))[:8]
    sample = near + c["test"]["spam"][::60] + c["test"]["ham"][::120]

    def cli(f):
        r = run_mw(["scan"] + runs["rules bayes"] + [f], timeout=120)
        assert r.returncode == 0, r.stderr.decode()[-1000:]
        return f, json.loads(r.stdout)

    with ThreadPoolExecutor(2) as ex:
        for f, j in ex.map(cli, sample):
            assert abs(j["score"] - rb[f][0]) < 0.01, (f, j["score"], rb[f])
            assert (j["action"] == "tag") == (rb[f][0] >= TAG), (f, j["action"], rb[f])
            assert {s["name"] for s in j["symbols"]} == set(rb[f][1]), f

    # no ham flagged, by Bayes alone or with the rules
    assert fig["bayes"][1] == [] and fig["rules bayes"][1] == [], lines
    # the rules add to Bayes; recall at least the target (97.6% reached)
    assert fig["rules bayes"][0] > fig["bayes"][0], lines
    for k, m in MIN_RECALL.items():
        assert fig[k][0] >= m, (k, lines)


def test_accuracy_swapped_parts(tmp_path):
    """The parts the other way round: learned from "test" (a c e), measured
    on "train" (0 2 4 6 8).  The shipped scores were fitted on the whole
    training half, so neither direction is out of sample for them; the two
    together show how much the figures move with what was learned."""
    c = training_half()
    opts = learn_part(c, "test", tmp_path)
    files = c["train"]["spam"] + c["train"]["ham"]
    runs = {"bayes": opts + ["-o", "filters=bayes"],
            "rules bayes": opts + ["-o", "filters=rules bayes"] + rules_opts(SHIPPED)}
    sw = {"test": c["train"]}
    lines = ["swapped: learned %d spam, %d ham; tested %d spam, %d ham"
             % (len(c["test"]["spam"]), len(c["test"]["ham"]), len(c["train"]["spam"]), len(c["train"]["ham"]))]
    fig = {}
    for name, label in (("bayes", "Bayes alone"), ("rules bayes", "rules + Bayes")):
        rec, fp = figures(batch(runs[name], files), sw)
        fig[name] = (rec, fp)
        lines.append("%s: recall %.1f%%, ham flagged %d/%d" % (label, rec * 100, len(fp), len(c["train"]["ham"])))
    print("\n" + "\n".join(lines))
    with open(os.path.join(BUILD, "accuracy.txt"), "a") as f:
        f.write("\n".join(lines) + "\n")
    assert fig["bayes"][1] == [] and fig["rules bayes"][1] == [], lines
    for k, m in MIN_RECALL_SWAPPED.items():
        assert fig[k][0] >= m, (k, lines)


def test_score_set_follows_bayes(tmp_path):
    """SpamAssassin's 4-value score lines: set 0 without Bayes, set 2 when
    the bayes filter runs (rules_score_set = auto), or the set named."""
    cf = tmp_path / "t.cf"
    cf.write_text("header FOUR Subject =~ /accuracy probe/\nscore FOUR 1.0 2.0 3.0 4.0\n"
                  "header NICE_ONE Subject =~ /accuracy probe/\ntflags NICE_ONE nice\n")
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"From: a@example.org\r\nTo: b@example.net\r\nSubject: accuracy probe\r\n"
                    b"Message-ID: <p@example.org>\r\nDate: Fri, 27 Nov 2026 05:00:00 +0000\r\n\r\nbody\r\n")
    base = NO_NET + ["-o", "rules_files=", "-o", "rules_files=" + str(cf), "-o", "rules_cache_dir=",
                     "-o", "store_path=" + str(tmp_path / "s.lmdb")]

    def scores(*extra):
        r = run_mw(["scan"] + base + list(extra) + [str(msg)], timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        return {s["name"]: s["score"] for s in json.loads(r.stdout)["symbols"]}

    assert scores("-o", "filters=rules") == {"FOUR": 1.0, "NICE_ONE": -1.0}
    assert scores("-o", "filters=rules bayes") == {"FOUR": 3.0, "NICE_ONE": -1.0}   # Bayes silent: nothing learned
    assert scores("-o", "filters=rules bayes", "-o", "rules_score_set=1")["FOUR"] == 2.0
    assert scores("-o", "filters=rules", "-o", "rules_score_set=3")["FOUR"] == 4.0
