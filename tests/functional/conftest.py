"""conftest.py - fixtures of mailwarden's functional tests.

Each test starts what it needs on loopback ports: a capturing upstream
(aiosmtpd, a scripted raw-socket server, or Postfix's smtp-sink) and the
daemon (build/mailwarden from MW_BIN, in the foreground, its own process
group, stderr to a file that is shown when the test fails).  At the end the
daemon gets SIGTERM and must exit 0 without leaving a child behind.

Run: MW_BIN=build/mailwarden MW_PLUGIN=build/tests/example_plugin.so
/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/functional (what
`make functional` does).  The example plugin is loaded with word=viagra
score=6 reject_header=X-Reject-Me action_header=X-Example-Action
sleep_header=X-Example-Sleep (mwlib.plugin_opt).  Audit field names:
audit_fields.py.
"""

import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mwlib  # noqa: E402
from mwlib import Mailwarden, RawUpstream, SmtpSink, Upstream  # noqa: E402

TEST_DEADLINE = int(os.environ.get("MW_TEST_DEADLINE", "150"))  # seconds; a safety net, not a timing assertion


@pytest.fixture(autouse=True)
def _watchdog(request):
    def expired(sig, frame):
        raise TimeoutError("test %s ran past %d s" % (request.node.nodeid, TEST_DEADLINE))
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_DEADLINE)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for d in mwlib.DAEMONS:
            if d.owner == item.nodeid or d.alive():
                rep.sections.append(("mailwarden stderr (%s)" % " ".join(d.cmd[1:]),
                                     d.stderr_tail(200)))


@pytest.fixture
def make_upstream():
    """Factory: make_upstream(**Upstream kwargs) -> a started aiosmtpd upstream."""
    made = []

    def make(**kw):
        up = Upstream(**kw).start()
        made.append(up)
        return up
    yield make
    for up in made:
        up.stop()


@pytest.fixture
def upstream(make_upstream):
    """An aiosmtpd upstream: 8BITMIME and SMTPUTF8, recipients "unknown*"
    get 550 5.1.1, the final reply is "250 2.0.0 Ok: queued as ID"."""
    return make_upstream()


@pytest.fixture
def raw_upstream():
    """Factory: raw_upstream(script={...}, lenient=False) -> a started RawUpstream."""
    made = []

    def make(**kw):
        up = RawUpstream(**kw).start()
        made.append(up)
        return up
    yield make
    for up in made:
        up.stop()


@pytest.fixture
def smtp_sink(tmp_path):
    """Factory: smtp_sink(flags=[...]) -> a started Postfix smtp-sink."""
    made = []

    def make(flags=()):
        s = SmtpSink(tmp_path, flags).start()
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


@pytest.fixture
def mw_factory(tmp_path, request):
    """Factory: mw_factory(upstream, opts=[(name, value)...], **Mailwarden
    kwargs) -> a started daemon (answers 220 on each listener)."""
    made = []

    def make(upstream=None, opts=(), ready=True, **kw):
        m = Mailwarden(tmp_path / ("mw%d" % len(made)), upstream=upstream, opts=opts,
                       owner=request.node.nodeid, **kw)
        made.append(m)
        return m.start(ready=ready)
    yield make
    problems = []
    for m in made:
        if m.proc is None:
            continue
        was_alive = m.alive()
        rc = m.stop()
        if was_alive and rc != 0:
            problems.append("mailwarden did not exit 0 on SIGTERM (status %r)\n%s"
                            % (rc, m.stderr_tail(60)))
        left = m.leftovers()
        if left:
            m.kill()
            problems.append("processes left in mailwarden's group after the master exited: %s" % left)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def mw(mw_factory, upstream):
    """mailwarden with default settings in front of the aiosmtpd upstream."""
    return mw_factory(upstream)
