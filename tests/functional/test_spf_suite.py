"""test_spf_suite.py - the RFC 7208 test suite (tests/data/spf/
rfc7208-tests.yml, 203 tests) through mailwarden's spf filter
(`mailwarden scan`), each scenario's zone data served by unbound on
loopback (spflib.py).  Prints "N passed, N failed".  Every test must pass
but the exceptions below (none now), each listed in the README with its
reason; an exception that starts passing must leave the list."""

import os

import spflib

MW_BIN = os.environ.get("MW_BIN", "")

# tests that may fail, with the reason (also listed in the README): none
EXCEPTIONS = {}


def test_rfc7208_suite(tmp_path):
    results = spflib.run_suite(MW_BIN, tmp_path)
    assert len(results) == 203
    failed = [r for r in results if not r["ok"]]
    print("\nRFC 7208 suite: %d passed, %d failed (%d listed exceptions)"
          % (len(results) - len(failed), len(failed), len(EXCEPTIONS)))
    unexpected = [r for r in failed if r["name"] not in EXCEPTIONS]
    fixed = sorted(set(EXCEPTIONS) - {r["name"] for r in failed})
    lines = ["%s (%s): want %s got %s%s" % (r["name"], r["spec"], r["want"], r["got"],
             "" if r["want_expl"] in (None, "DEFAULT") else
             " explanation %r got %r" % (r["want_expl"], r["got_expl"])) for r in unexpected]
    assert not unexpected, "tests failing outside the exceptions:\n" + "\n".join(lines)
    assert not fixed, "exceptions that pass now (remove them): %s" % fixed
