#!/usr/bin/python3
"""accuracy_cv.py - k-fold cross-validation of mailwarden's accuracy
(issue 6) inside the corpus' training half, so that the figure is out of
sample for everything that is learned or fitted.

The training half (md5 ending in an even hex digit; corpuslib, the odd half
is never read) is cut into folds by the md5's last digit: 4 folds
{0,2} {4,6} {8,a} {c,e} (default), 8 folds, one per digit (--folds 8),
or 16 (--folds 16: each digit cut by the parity of the digit before it;
Bayes learns 15/16 of the half, nearest to a model learned on all of it);
--second-digit: 8 folds by the digit before the last (mod 8), another
partition of the same messages, to see how much the estimate depends on
which messages share a fold (newsletters of one sender, say);
--partitions: all four, fitted out of sample, in one summary (the way to
judge a change: one partition alone moves by several messages; 6-10 min).
For each fold: Bayes learns every other fold (`mailwarden learn`, a fresh
LMDB store), then the fold is scanned with build/tests/rules_batch
--scores (the pipeline of `mailwarden scan`) twice: Bayes alone
(filters = bayes) and the full local score (filters = rules bayes, the
shipped rules/cf), network checks off.  Flagged = score >= 5.0 (the
default tag score).  Printed per fold and in total: spam recall, ham
flagged, the most spam-like ham's score.

--fit: the shipped scores (set 2 of rules/cf and bayes_scores) were
fitted on the whole training half, so the figure above is in-sample for
them.  With --fit the scores are fitted again for each fold on the OTHER
folds only (fit_scores below: the same procedure that set the shipped
scores), from a neutral start, and the fold is scored with them: that is
the honest out-of-sample figure.  Every message enters the fit with its
Bayes p from the fold model and from the two fixed-split models of
test_accuracy.py (VIEWS: learned on 0-8 / a-e), so the scores hold for
less learning too.  --fit-all prints the scores fitted on the whole
training half (what to ship once the procedure is validated); --write
puts them into rules/cf (the 3rd and 4th value of each 4-value score line;
bayes_scores goes by hand into proxy/config.c, etc/mailwarden.conf and
doc/mailwarden.conf.5).  Only rules with a non-zero Bayes score are seen
(a rule at 0 is not run), so refit from the scores before a --write to
repeat it exactly, or fit with --all-rules (how the shipped scores were
set: --folds 16 --all-rules --fit-all --write); --fit-method logistic is a
smooth alternative (tried: no better).

Usage (from the source tree, after make):
    nice -n 19 /usr/bin/python3 tests/bench/accuracy_cv.py [--folds 4|8|16] [--second-digit] [--partitions] [--fit] [--fit-all [--write]]
        [--margin M] [--fit-method grid|logistic] [--cache FILE] [--all-rules | --rules PATH ...]
        [-o name=value ...]
--all-rules: every shipped rule enters the fit, also those at 0 in the
Bayes sets (which the scan would not run), so that the fit picks its rules
inside each fold: the out-of-sample figure of the whole procedure, where
the default one takes the shipped selection (made on all folds) as given.
--rules PATH (repeatable) scans with those rules files or directories
instead of the shipped rules/cf (with --all-rules: besides all of ours,
every rule of both refitted in each fold), e.g. the stock SpamAssassin set:
    --rules /usr/share/spamassassin --rules /etc/spamassassin/65_debian.cf
    --rules /etc/spamassassin/local.cf --rules rules/cf
--cache FILE keeps the per-message results (JSON) and reuses them when the
options, rules/cf and build/mailwarden are the same (to try fits without
rescanning).  -o settings go to
both learn and scan (e.g. -o bayes_max_tokens=200).  Takes 1-3 minutes
with 4 folds on 2 cores.  A benchmark, not part of make check.
"""
import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "functional"))
BUILD = os.path.abspath(os.environ.get("MW_BUILD", os.path.join(SRC, "build")))
os.environ.setdefault("MW_BUILD", BUILD)
from corpuslib import training_half   # noqa: E402  (only the even half)

TAG = 5.0
MW = os.path.join(BUILD, "mailwarden")
BATCH = os.path.join(BUILD, "tests", "rules_batch")
NO_NET = ["-o", "dns_forwarder=127.0.0.1@9"]
BANDS = ["BAYES_00", "BAYES_05", "BAYES_20", "BAYES_40", "BAYES_50",
         "BAYES_60", "BAYES_80", "BAYES_95", "BAYES_99", "BAYES_999"]


def md5_digit(path):
    # <group>-<NNNNN>.<md5>.txt
    return os.path.basename(path).split(".")[1][-1]


SECOND_DIGIT = False   # --second-digit


def fold_key(path, nfolds):
    """the md5's last digit; with 16 folds also the parity of the one
    before it ("0e", "0o", ...); with --second-digit (8 folds) the digit
    before the last, mod 8"""
    md5 = os.path.basename(path).split(".")[1]
    if SECOND_DIGIT:
        return str(int(md5[-2], 16) % 8)
    if nfolds != 16:
        return md5_digit(path)
    return md5[-1] + ("e" if int(md5[-2], 16) % 2 == 0 else "o")


def folds_of(n):
    digits = "02468ace"
    if SECOND_DIGIT:
        if n != 8:
            raise SystemExit("--second-digit: 8 folds")
        return [[str(i)] for i in range(8)]
    if n == 16:
        return [[d + half] for d in digits for half in "eo"]
    if n == 8:
        return [[d] for d in digits]
    if n == 4:
        return [[digits[i], digits[i + 1]] for i in range(0, 8, 2)]
    raise SystemExit("--folds: 4, 8 or 16")


def corpus():
    c = training_half()
    out = []
    for part in ("train", "test"):
        for label in ("spam", "ham"):
            out += [(f, label) for f in c[part][label]]
    return sorted(out)


def link_dirs(tmp, msgs):
    """hard links of msgs under tmp/<label>/ (learn walks directories)"""
    for label in ("spam", "ham"):
        os.makedirs(os.path.join(tmp, label), exist_ok=True)
    for f, label in msgs:
        dst = os.path.join(tmp, label, os.path.basename(f))
        try:
            os.link(f, dst)
        except OSError:
            with open(f, "rb") as s, open(dst, "wb") as d:
                d.write(s.read())


def learn(store, msgs, extra):
    with tempfile.TemporaryDirectory(dir=BUILD) as tmp:
        link_dirs(tmp, msgs)
        for label in ("spam", "ham"):
            r = subprocess.run([MW, "learn", "-o", "store=lmdb", "-o", "store_path=" + store] + extra
                               + ["--" + label, os.path.join(tmp, label)], capture_output=True, timeout=1800)
            n = sum(1 for _, lab in msgs if lab == label)
            out = r.stdout.decode()
            if r.returncode != 0 or ("learned as %s %d message(s)" % (label, n)) not in out:
                raise SystemExit("learn failed: %s %s" % (out, r.stderr.decode()[-2000:]))


def scan(opts, files):
    """{file: (score, {symbol: score}, p or None, its parts)}: the parts
    of Bayes' p, {"words": p, "chars": margin, "hdr": header margin}
    (bayes_chars.h), to try other mixes of the three on a cache"""
    r = subprocess.run([BATCH, "--scores"] + opts + files, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit("rules_batch failed: " + r.stderr[-2000:])
    out = {}
    for line in r.stdout.splitlines():
        f, score, syms, desc = line.split("\t")
        sym = dict((s.split("=")[0], float(s.split("=")[1])) for s in syms.split())
        p = None
        parts = {}
        if "p=" in desc:
            p = float(desc.split("p=")[1].split(",")[0].split(")")[0])
        if "words " in desc and "characters " in desc:
            parts = {"words": float(desc.split("words ")[1].split()[0]),
                     "chars": float(desc.split("characters ")[1].split(")")[0].split(",")[0])}
            if "header " in desc:
                parts["hdr"] = float(desc.split("header ")[1].split(")")[0].split(",")[0])
        out[f] = (float(score), sym, p, parts)
    missing = set(files) - set(out)
    if missing:
        raise SystemExit("rules_batch gave no line for %d files: %s" % (len(missing), r.stderr[-2000:]))
    return out


def run_folds(nfolds, extra, rules_paths):
    msgs = corpus()
    rules = ["-o", "rules_files="]
    for r in rules_paths:
        rules += ["-o", "rules_files=" + r]
    rules += ["-o", "rules_cache_dir=" + os.path.join(BUILD, "cache", "rules-db")]
    os.makedirs(os.path.join(BUILD, "cache", "rules-db"), exist_ok=True)
    res = {}
    for k, fold in enumerate(folds_of(nfolds)):
        test = [m for m in msgs if fold_key(m[0], nfolds) in fold]
        train = [m for m in msgs if fold_key(m[0], nfolds) not in fold]
        with tempfile.TemporaryDirectory(dir=BUILD) as tmp:
            store = os.path.join(tmp, "cv.lmdb")
            t0 = time.time()
            learn(store, train, extra)
            t1 = time.time()
            so = NO_NET + ["-o", "store=lmdb", "-o", "store_path=" + store] + extra
            files = [f for f, _ in test]
            bay = scan(so + ["-o", "filters=bayes"], files)
            t2 = time.time()
            full = scan(so + ["-o", "filters=rules bayes"] + rules, files)
            t3 = time.time()
        for f, label in test:
            res[f] = {"fold": k, "label": label, "bayes": bay[f][0], "score": full[f][0],
                      "symbols": full[f][1], "p": full[f][2], "parts": full[f][3]}
        print("fold %d %s: learned %d, scanned %d (learn %.0f s, bayes %.0f s, rules+bayes %.0f s)"
              % (k, "/".join(fold), len(train), len(test), t1 - t0, t2 - t1, t3 - t2), file=sys.stderr)
    # more views of every message for the fit: its Bayes p from models
    # learned on less (the fixed splits of test_accuracy.py: 5/8 and 3/8
    # of the half), so that the fitted scores hold whatever the site learned
    for learned_digits in VIEWS:
        train = [m for m in msgs if md5_digit(m[0]) in learned_digits]
        test = [m for m in msgs if md5_digit(m[0]) not in learned_digits]
        with tempfile.TemporaryDirectory(dir=BUILD) as tmp:
            store = os.path.join(tmp, "view.lmdb")
            learn(store, train, extra)
            so = NO_NET + ["-o", "store=lmdb", "-o", "store_path=" + store] + extra
            full = scan(so + ["-o", "filters=rules bayes"] + rules, [f for f, _ in test])
        for f, _ in test:
            res[f].setdefault("views", []).append({"symbols": full[f][1], "p": full[f][2], "parts": full[f][3]})
        print("view learned on %s: scanned %d" % (learned_digits, len(test)), file=sys.stderr)
    return res


VIEWS = ("02468", "ace")


def with_views(rows):
    """rows plus one row per extra view of each (for fitting only)"""
    out = []
    for r in rows:
        out.append(r)
        for v in r.get("views", []):
            out.append({"label": r["label"], "symbols": v["symbols"], "p": v["p"]})
    return out


def figures(rows, key):
    spam = [r[key] for r in rows if r["label"] == "spam"]
    ham = [r[key] for r in rows if r["label"] == "ham"]
    caught = sum(1 for s in spam if s >= TAG)
    flagged = sum(1 for s in ham if s >= TAG)
    return caught, len(spam), flagged, len(ham), max(ham) if ham else 0


def report(res, nfolds, key, title):
    print(title)
    tot = [0, 0, 0, 0, -99]
    for k, fold in enumerate(folds_of(nfolds)):
        rows = [r for r in res.values() if r["fold"] == k]
        c, ns, fl, nh, mx = figures(rows, key)
        print("  fold %-4s recall %5.1f%% (%d/%d)  ham flagged %d/%d  top ham %.2f"
              % ("/".join(fold), 100.0 * c / ns, c, ns, fl, nh, mx))
        tot = [tot[0] + c, tot[1] + ns, tot[2] + fl, tot[3] + nh, max(tot[4], mx)]
    print("  total     recall %5.1f%% (%d/%d)  ham flagged %d/%d  top ham %.2f"
          % (100.0 * tot[0] / tot[1], tot[0], tot[1], tot[2], tot[3], tot[4]))


def ranking(res):
    """how well Bayes' p alone separates, whatever the band scores: spam
    above the most spam-like ham of its fold, and at p >= 0.95"""
    above = hi = n = 0
    tops = []
    for k in sorted({r["fold"] for r in res.values()}):
        rows = [r for r in res.values() if r["fold"] == k and r["p"] is not None]
        top = max(r["p"] for r in rows if r["label"] == "ham")
        tops.append("%.3f" % top)
        for r in rows:
            if r["label"] == "spam":
                n += 1
                above += r["p"] > top
                hi += r["p"] >= 0.95
    print("  Bayes p: %.1f%% of spam above the most spam-like ham of its fold (p %s), %.1f%% at p >= 0.95"
          % (100.0 * above / n, " ".join(tops), 100.0 * hi / n))


# ---- score fitting ---------------------------------------------------------

def band_of(p):
    tops = [0.01, 0.05, 0.20, 0.40, 0.60, 0.80, 0.95, 0.99, 0.999]
    for i, t in enumerate(tops):
        if p < t:
            return i
    return len(tops)


def design(rows):
    """per message: (rule names hit, band index or None, is_spam)"""
    out = []
    for r in rows:
        hits = [s for s in r["symbols"] if not s.startswith("BAYES_")]
        band = band_of(r["p"]) if r["p"] is not None else None
        out.append((hits, band, r["label"] == "spam"))
    return out


HAM_WEIGHT = 20       # spam caught that one ham above the margin costs
# ham kept at or below TAG - MARGIN (--margin).  3.5 since session 12,
# chosen with the header model's weight (bayes_chars.c CHARS_HDR_MIX 2)
# and BAYES_95 at 4 under the four partitions: 2.0 (session 11's choice)
# 97.52% of spam and 8 ham flagged over the four, 3.0 97.27% and 2, 3.5
# 97.29% and 0, 4.0 97.19% and 0 (README "Bayes")
MARGIN = 3.5
MAX_RULE = 2.5
GRID = [x / 10.0 for x in range(-30, 26)]


def fit_scores(rows, signs, start_rules, start_bands, passes=6):
    """Coordinate search on a 0.1 grid: maximise spam at >= TAG minus
    HAM_WEIGHT per ham above TAG - MARGIN, minus a small cost per point
    of score (prefer small scores); rule scores keep their sign and stay
    within +-MAX_RULE, the Bayes bands stay monotonic."""
    d = design(rows)
    names = sorted(signs)
    w = dict(start_rules)
    b = list(start_bands)
    by_rule = {n: [] for n in names}
    by_band = [[] for _ in BANDS]
    for i, (hits, band, _) in enumerate(d):
        for h in hits:
            if h in by_rule:
                by_rule[h].append(i)
        if band is not None:
            by_band[band].append(i)
    score = [sum(w.get(h, 0) for h in hits) + (b[band] if band is not None else 0)
             for hits, band, _ in d]
    spam = [s for _, _, s in d]

    def gain(idx, delta):
        g = 0
        for i in idx:
            old, new = score[i], score[i] + delta
            if spam[i]:
                g += (new >= TAG) - (old >= TAG)
            else:
                g -= HAM_WEIGHT * ((new > TAG - MARGIN) - (old > TAG - MARGIN))
        return g

    def best_step(idx, cur, lo, hi, grid, cost):
        """the grid value in [lo, hi] that gains most over cur (cur if
        none gains); moves the scores of idx to it"""
        best, bestv = 0.0, cur
        for v in grid:
            if v < lo or v > hi or v == cur:
                continue
            g = gain(idx, v - cur) - cost * (abs(v) - abs(cur))
            if g > best + 1e-9:
                best, bestv = g, v
        if bestv != cur:
            for i in idx:
                score[i] += bestv - cur
        return bestv

    band_grid = [x / 10.0 for x in range(-50, 81)]
    for _ in range(passes):
        changed = False
        for n in names:
            lo, hi = (0.0, MAX_RULE) if signs[n] > 0 else (-MAX_RULE, 0.0)
            v = best_step(by_rule[n], w[n], lo, hi, GRID, 0.2)
            changed |= v != w[n]
            w[n] = v
        for k in range(FIT_FROM, min(FIXED_FROM, len(BANDS))):
            lo = b[k - 1] if k > 0 else -5.0
            hi = b[k + 1] if k + 1 < len(BANDS) else 8.0
            v = best_step(by_band[k], b[k], lo, hi, band_grid, 0.0)
            changed |= v != b[k]
            b[k] = v
        if not changed:
            break
    return w, b


BAGS = 1      # --bags


def fit_bagged(rows, signs, start_rules, start_bands):
    """--bags N (N > 1): fit_scores on N bootstrap samples of rows (drawn
    by a fixed seed), the scores their means.  One coordinate search jumps
    between score sets with the messages it is given (two trainings of the
    character models in different orders fitted the same promotional ham
    to 4.0 in one and 6.0 in the other); the mean of many jumps less, but
    shrinks the scores.  Tried in session 13, not the shipped procedure:
    under the four partitions, three runs of the 8-order character models
    gave 97.03-97.21% of spam with 0-1 ham flagged in all with 20 bags,
    against 97.27-97.32% with 1-3 ham from one search; fitted on the whole
    half, 20 bags caught 95.5% on the swapped split (README "Bayes")"""
    if BAGS <= 1:
        return fit_scores(rows, signs, start_rules, start_bands)
    rng = random.Random(20261128)
    ws, bs = [], []
    for _ in range(BAGS):
        sample = [rows[rng.randrange(len(rows))] for _ in rows]
        w, b = fit_scores(sample, signs, start_rules, start_bands)
        ws.append(w)
        bs.append(b)
    w = {n: round(sum(x[n] for x in ws) / BAGS, 2) for n in ws[0]}
    b = [round(sum(x[k] for x in bs) / BAGS, 2) for k in range(len(bs[0]))]
    return w, b


def fit_logistic(rows, signs, start_rules, start_bands, iters=400, rate=0.05,
                 ham_weight=10.0, margin=1.0, tau=0.5, l2=0.002):
    """Smooth alternative to fit_scores: logistic loss around the tag
    score (spam pushed above TAG, ham below TAG - margin, ham weighted
    ham_weight to 1), an L2 cost per point of score, projected gradient
    steps keeping signs, +-MAX_RULE, and monotonic bands."""
    import math
    d = design(rows)
    names = sorted(signs)
    idx = {n: i for i, n in enumerate(names)}
    nb = len(BANDS)
    w = [start_rules[n] for n in names] + list(start_bands)
    feats = []
    for hits, band, is_spam in d:
        f = [idx[h] for h in hits if h in idx]
        if band is not None:
            f.append(len(names) + band)
        feats.append((f, is_spam))
    nspam = sum(1 for _, sp in feats if sp)
    for _ in range(iters):
        g = [0.0] * len(w)
        for f, sp in feats:
            sc = sum(w[j] for j in f)
            if sp:
                z = (TAG - sc) / tau          # loss log(1+e^z), dz/dsc = -1/tau
                q = 1 / (1 + math.exp(-z)) if z > -30 else 0.0
                gs = -q / tau / nspam
            else:
                z = (sc - (TAG - margin)) / tau
                q = 1 / (1 + math.exp(-z)) if z > -30 else 0.0
                gs = ham_weight * q / tau / nspam
            for j in f:
                g[j] += gs
        for j in range(len(w)):
            w[j] -= rate * 10 * (g[j] + 2 * l2 * w[j])
        for n, j in idx.items():
            lo, hi = (0.0, MAX_RULE) if signs[n] > 0 else (-MAX_RULE, 0.0)
            w[j] = min(hi, max(lo, w[j]))
        base = len(names)
        for k in range(1, nb):
            if w[base + k] < w[base + k - 1]:
                m = (w[base + k] + w[base + k - 1]) / 2
                w[base + k] = w[base + k - 1] = m
        for k in list(range(FIT_FROM)) + list(range(FIXED_FROM, nb)):
            w[base + k] = start_bands[k]     # the bands held, as in fit_scores
    rules = {n: round(w[idx[n]], 1) for n in names}
    bands = [round(v, 1) for v in w[len(names):]]
    return rules, bands


def rescore(rows, w, b):
    for r in rows:
        hits = [s for s in r["symbols"] if not s.startswith("BAYES_")]
        band = band_of(r["p"]) if r["p"] is not None else None
        r["fitted"] = sum(w.get(h, 0) for h in hits) + (b[band] if band is not None else 0)


# BAYES_95 and up are not fitted: where Bayes alone tags is a design
# choice, checked by the Bayes-alone figures (below: from p 0.99 since
# session 12, from 0.95 before).
# Nor is BAYES_00, held at -3: a message Bayes is sure of as ham (p < 1%)
# needs 8 points from the rules.  The ham that CV flagged out of sample
# were such messages (hard-ham newsletters at p < 0.01 that three rules
# fitted on other folds pushed to 5.0-5.5); with BAYES_00 at -3 instead of
# fitted (-2) CV flags none, for the same recall (4/8/16 folds, margin 1.5).
# BAYES_95 is held at 4 since session 12: Bayes alone tags from p 0.99,
# and from 0.95 with a point from the rules.  With the header model Bayes
# puts 918-928 of the 969 spam at p >= 0.999 and 7-12 at 0.95-0.99, where
# the ham it was wrong about sat (hard-ham newsletters at 0.96-0.97): at 6
# the four partitions flag 3 ham by Bayes alone, at 4 none (README "Bayes").
FIT_FROM = 1
FIXED_FROM = BANDS.index("BAYES_95")
NEUTRAL_BANDS = [-3.0, -0.5, 0.0, 0.0, 1.0, 1.5, 2.5, 4.0, 6.0, 7.0]


def neutral_start(res):
    """signs from the scanned scores; every rule starts at 0.  Not at
    +-1: a ham that a dozen rules hit then starts far above the margin,
    and no single step of the coordinate search brings it under, so the
    fit left it flagged (one in sample, several out of sample); from 0,
    under --partitions --all-rules: 96.98% of spam and 10 ham over the
    four partitions against 96.34% and 13 from +-1"""
    signs = {}
    for r in res.values():
        for s, v in r["symbols"].items():
            if not s.startswith("BAYES_") and v != 0:
                signs[s] = 1 if v > 0 else -1
    return signs, {n: 0.0 for n in signs}


def write_scores(w):
    """the fitted values as the Bayes score sets (the 3rd and 4th value)
    of the 4-value score lines of rules/cf; sets 0/1 are left alone"""
    d = os.path.join(SRC, "rules", "cf")
    for name in sorted(os.listdir(d)):
        if not name.endswith(".cf"):
            continue
        path = os.path.join(d, name)
        out = []
        with open(path) as f:
            for line in f:
                t = line.split()
                if len(t) == 6 and t[0] == "score" and t[1] in w:
                    head = line[:line.index(t[2], len(t[0]) + len(t[1]) + 1)]
                    line = head + "%s %s %g %g\n" % (t[2], t[3], w[t[1]], w[t[1]])
                out.append(line)
        with open(path, "w") as f:
            f.writelines(out)


def all_rules_dir():
    """--all-rules: rules/cf with every rule scored in the Bayes sets
    (a rule at 0 there gets its set-0 score, or 1), so that the fit sees
    all of them and picks its rules inside each fold: the figure of the
    whole procedure (which rules to keep, then their scores), where the
    shipped selection was made on the whole training half"""
    src = os.path.join(SRC, "rules", "cf")
    out = os.path.join(BUILD, "cache", "all-rules-cf")
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(src)):
        if not name.endswith(".cf"):
            continue
        lines = []
        with open(os.path.join(src, name)) as f:
            for line in f:
                t = line.split()
                if len(t) == 6 and t[0] == "score" and float(t[4]) == 0:
                    s = t[2] if float(t[2]) != 0 else (t[3] if float(t[3]) != 0 else "1")
                    line = "score %s %s %s %s %s\n" % (t[1], t[2], t[3], s, s)
                lines.append(line)
        with open(os.path.join(out, name), "w") as f:
            f.writelines(lines)
    return out


def results(nfolds, extra, rules_paths, cache):
    """run_folds, or its results from the cache file when the options,
    the rules and the build are the same"""
    h = hashlib.sha1(json.dumps([nfolds, SECOND_DIGIT, extra, VIEWS, rules_paths]).encode())
    for f in sorted(os.listdir(os.path.join(SRC, "rules", "cf"))) + [MW]:
        with open(os.path.join(SRC, "rules", "cf", f) if f != MW else MW, "rb") as fh:
            h.update(fh.read())      # the rules and the build the cache was made with
    key = h.hexdigest()
    if cache and os.path.exists(cache):
        with open(cache) as f:
            c = json.load(f)
        if c.get("key") == key:
            return c["res"]
    res = run_folds(nfolds, extra, rules_paths)
    if cache:
        with open(cache, "w") as f:
            json.dump({"key": key, "res": res}, f)
    return res


def fit_folds(res, nfolds, fitter):
    """every fold scored with scores fitted on the other folds ("fitted")"""
    signs, start = neutral_start(res)
    for k in range(len(folds_of(nfolds))):
        train = [r for r in res.values() if r["fold"] != k]
        w, b = fitter(with_views(train), signs, start, NEUTRAL_BANDS)
        rescore([r for r in res.values() if r["fold"] == k], w, b)


PARTITIONS = ((4, False), (8, False), (16, False), (8, True))


def partitions(a, extra, rules_paths):
    """--partitions: the out-of-sample figure under the four partitions
    (4, 8, 16 folds and 8 by the second digit), so that a change is judged
    by all of them: one partition alone moves by several messages with
    which messages share a fold"""
    fitter = fit_bagged if a.fit_method == "grid" else fit_logistic
    rows = []
    for nfolds, second in PARTITIONS:
        globals()["SECOND_DIGIT"] = second
        name = "%d%s" % (nfolds, "-second-digit" if second else "")
        res = results(nfolds, extra, rules_paths, a.cache + "." + name if a.cache else None)
        fit_folds(res, nfolds, fitter)
        rows.append((name, figures(list(res.values()), "bayes"), figures(list(res.values()), "score"),
                     figures(list(res.values()), "fitted")))
    print("out of sample under four partitions of the training half, network checks off, tag at %.1f%s"
          % (TAG, (" (" + " ".join(a.o) + ")") if a.o else ""))
    scanned = "all rules (0 -> set 0)" if a.all_rules else "shipped (in sample)"
    print("  %-16s %-30s %-30s %s" % ("folds", "Bayes alone", scanned, "fitted (out of sample)"))
    caught = 0
    for name, bay, ship, fit in rows:
        cell = ["%5.1f%% (%d) ham %d top %.1f" % (100.0 * f[0] / f[1], f[0], f[2], f[4]) for f in (bay, ship, fit)]
        print("  %-16s %-30s %-30s %s" % (name, cell[0], cell[1], cell[2]))
        caught += fit[0]
    print("  fitted, mean of the four: %.2f%% of spam, %d ham flagged in all"
          % (100.0 * caught / sum(r[3][1] for r in rows), sum(r[3][2] for r in rows)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--fit-all", action="store_true")
    ap.add_argument("--fit-method", choices=("grid", "logistic"), default="grid")
    ap.add_argument("--bags", type=int, default=BAGS,
                    help="bootstrap samples the grid fit is the mean of (1: one fit)")
    ap.add_argument("--write", action="store_true",
                    help="with --fit-all: write the fitted set-2/3 scores into rules/cf/*.cf")
    ap.add_argument("--margin", type=float, default=MARGIN,
                    help="ham kept this far below the tag score by the fit (default %(default)s)")
    ap.add_argument("--cache")
    ap.add_argument("--second-digit", action="store_true",
                    help="8 folds by the md5's digit before the last (mod 8): another partition")
    ap.add_argument("--partitions", action="store_true",
                    help="fit out of sample under the 4 partitions (4, 8, 16 folds, 8 by the second digit), "
                         "one summary; --cache F keeps F.<partition>")
    ap.add_argument("--rules", action="append", default=[],
                    help="rules file or directory (repeatable; default the shipped rules/cf; "
                         "with --all-rules, added to all of ours)")
    ap.add_argument("--all-rules", action="store_true",
                    help="every shipped rule seen by the fit, also those at 0 with Bayes (see all_rules_dir)")
    ap.add_argument("-o", action="append", default=[])
    a = ap.parse_args()
    globals()["MARGIN"] = a.margin
    globals()["BAGS"] = a.bags
    globals()["SECOND_DIGIT"] = a.second_digit
    extra = []
    for o in a.o:
        extra += ["-o", o]
    rules_paths = a.rules or [os.path.join(SRC, "rules", "cf")]
    if a.all_rules:
        # --rules then adds sets to all of ours (session 15: the stock
        # SpamAssassin rules as more features of the fit)
        rules_paths = a.rules + [all_rules_dir()]
    if a.partitions:
        partitions(a, extra, rules_paths)
        return
    res = results(a.folds, extra, rules_paths, a.cache)
    print("%d-fold cross-validation on the training half, network checks off, tag at %.1f%s"
          % (a.folds, TAG, (" (" + " ".join(a.o) + ")") if a.o else ""))
    report(res, a.folds, "bayes", "Bayes alone (Bayes learned on the other folds):")
    ranking(res)
    report(res, a.folds, "score", "rules + Bayes, shipped scores (fitted on the whole training half: in-sample):")
    if a.fit or a.fit_all:
        signs, start = neutral_start(res)
        fitter = fit_bagged if a.fit_method == "grid" else fit_logistic
    if a.fit:
        fit_folds(res, a.folds, fitter)
        report(res, a.folds, "fitted", "rules + Bayes, scores fitted on the other folds only (out of sample):")
    if a.fit_all:
        w, b = fitter(with_views(list(res.values())), signs, start, NEUTRAL_BANDS)
        print("scores fitted on the whole training half:")
        print("  bayes_scores = " + " ".join("%s=%g" % (n, v) for n, v in zip(BANDS, b)))
        for n in sorted(w):
            print("  score %s %g" % (n, w[n]))
        if a.write:
            write_scores(w)


if __name__ == "__main__":
    main()
