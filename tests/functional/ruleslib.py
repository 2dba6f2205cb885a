"""ruleslib.py - helpers of the rules tests (issue 6): the SpamAssassin
public corpus from npm (training half only), mailwarden's rules_batch and
SpamAssassin itself run over the same sample, and the comparison."""
import json
import os
import subprocess
import tarfile

from corpuslib import Unreachable, extract_lock, tarball  # noqa: F401 (Unreachable: for callers)

SA_RULES = "/usr/share/spamassassin"
HERE = os.path.dirname(os.path.abspath(__file__))


def cache_dir(build):
    d = os.path.join(build, "cache")
    os.makedirs(d, exist_ok=True)
    return d


def corpus_even(build):
    """The training half of the corpus as .eml files (md5 in the name ends
    in an even hex digit), extracted on first use into BUILD/cache from
    corpuslib's tarball.  Returns {group: [paths]}.  Raises Unreachable when npm
    cannot fetch the package."""
    cdir = cache_dir(build)
    out = os.path.join(cdir, "sa-corpus-even")
    done = os.path.join(out, ".complete")
    with extract_lock(cdir):
        if not os.path.exists(done):
            tgz = tarball(build)
            with tarfile.open(tgz) as tf:
                for m in tf:
                    parts = m.name.split("/")
                    if len(parts) != 4 or parts[1] != "data" or not parts[3].endswith(".json"):
                        continue
                    group, fname = parts[2], parts[3]
                    md5 = fname[:-5].split(".")[-1]
                    if int(md5[-1], 16) % 2 != 0:
                        continue     # odd: the held-out half, never used here
                    d = json.load(tf.extractfile(m))
                    text = d["text"]
                    if text.startswith("From "):
                        text = text.split("\n", 1)[1] if "\n" in text else ""
                    os.makedirs(os.path.join(out, group), exist_ok=True)
                    with open(os.path.join(out, group, fname[:-5] + ".eml"), "w",
                              encoding="utf-8", errors="surrogateescape") as f:
                        f.write(text)
            open(done, "w").close()
    groups = {}
    for g in sorted(os.listdir(out)):
        p = os.path.join(out, g)
        if os.path.isdir(p):
            groups[g] = sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(".eml"))
    return groups


def sample(groups, n):
    """n messages spread evenly over every group, deterministic."""
    allp = []
    per = max(1, n // len(groups))
    for g, paths in sorted(groups.items()):
        step = max(1, len(paths) // per)
        allp += paths[::step][:per]
    return allp[:n]


def mw_rules_args(build, rules):
    args = ["-o", "filters=rules", "-o", "rules_files="]
    for r in rules:
        args += ["-o", "rules_files=" + r]
    args += ["-o", "rules_cache_dir=" + os.path.join(cache_dir(build), "rules-db"),
             "-o", "log_level=err", "-o", "rules_time_budget=0"]
    return args


def mw_hits(build, rules, files):
    """{file: set(rules)} from mailwarden's rules_batch; and its stderr"""
    r = subprocess.run([os.path.join(build, "tests", "rules_batch")] + mw_rules_args(build, rules) + files,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    hits = {}
    for line in r.stdout.splitlines():
        f, _, syms = line.partition("\t")
        hits[f] = set(syms.split())
    return hits, r.stderr


def mw_report(build, rules):
    """[(name, kind, loaded, score, reason)] for every rule defined"""
    r = subprocess.run([os.path.join(build, "tests", "rules_batch"), "--report",
                        os.path.join(cache_dir(build), "rules-db")] + rules,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    out = []
    for line in r.stdout.splitlines():
        name, kind, loaded, score, why = line.split("\t", 4)
        out.append((name, kind, loaded == "1", float(score), why))
    return out


def sa_hits(files):
    """{file: set(rules)} from SpamAssassin itself (Perl, local tests only)"""
    r = subprocess.run(["/usr/bin/perl", os.path.join(HERE, "sa_hits.pl"), SA_RULES] + files,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    hits = {}
    for line in r.stdout.splitlines():
        f, _, names = line.partition("\t")
        hits[f] = set(n for n in names.split(",") if n)
    return hits
