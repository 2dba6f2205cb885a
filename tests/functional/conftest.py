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
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# no __pycache__ in the source tree for the modules imported from here on
# (make functional runs python3 -B, which covers this file too)
sys.dont_write_bytecode = True

import mwlib  # noqa: E402
from mwlib import Mailwarden, RawUpstream, SmtpSink, Upstream  # noqa: E402

TEST_DEADLINE = int(os.environ.get("MW_TEST_DEADLINE", "150"))  # seconds; a safety net, not a timing assertion

# Every process a test starts inherits this mark in its environment, even one
# that daemonizes away from us (gpg-agent did, and outlived the run): the
# guard below finds our leftovers by it, by descent from this process, or by
# a command line or working directory under the run's tmp dirs, and never
# takes another run's processes (the machine is shared) for ours.
RUN_MARK = "MW_TEST_RUN=%d.%d" % (os.getpid(), time.time_ns())
os.environ["MW_TEST_RUN"] = RUN_MARK.partition("=")[2]
LEFTOVER_GRACE = 5.0    # seconds for a process told to stop to finish exiting


def _our_processes(dirs):
    """{pid: (args, test that started it)} of the live processes of this
    run but ourselves; zombies are dead already and not counted."""
    me = os.getpid()
    info = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open("/proc/%d/stat" % pid, "rb") as f:
                stat = f.read()
            state, ppid = stat[stat.rindex(b")") + 2:].split()[:2]
            if state == b"Z":
                continue
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                args = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            try:
                with open("/proc/%d/environ" % pid, "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                env = []
            try:
                cwd = os.readlink("/proc/%d/cwd" % pid)
            except OSError:
                cwd = ""
        except (OSError, ValueError):
            continue        # gone meanwhile, or not ours to read
        info[pid] = (int(ppid), args, env, cwd)
    dirs = [d.rstrip("/") + "/" for d in dirs]
    mark = RUN_MARK.encode()
    marked = {pid for pid, (_, args, env, cwd) in info.items()
              if mark in env or any(d in args or (cwd + "/").startswith(d) for d in dirs)}
    ours = {}
    for pid, (ppid, args, env, cwd) in info.items():
        if pid == me:
            continue
        # ours: marked, or a descendant of this process or of a marked one
        p, seen = pid, set()
        while p in info and p not in seen and p != me and p not in marked:
            seen.add(p)
            p = info[p][0]
        if p == me or p in marked:
            test = next((e.partition(b"=")[2].decode("utf-8", "replace") for e in env
                         if e.startswith(b"PYTEST_CURRENT_TEST=")), "?")
            ours[pid] = (args or "[%s]" % cwd, test)
    return ours


def _leftovers(config):
    """our processes still there after LEFTOVER_GRACE, then SIGKILLed so
    that they cannot disturb the tests that follow"""
    dirs = [str(config._tmp_path_factory.getbasetemp())] + list(mwlib.OUR_DIRS)
    deadline = time.monotonic() + LEFTOVER_GRACE
    left = _our_processes(dirs)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _our_processes(dirs)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return left


def _leftover_mounts(config):
    """mount points under the run's dirs (test_disk_full's tmpfs), then
    unmounted (lazily: a process of ours may still hold them)"""
    dirs = [d.rstrip("/") + "/" for d in
            [str(config._tmp_path_factory.getbasetemp())] + list(mwlib.OUR_DIRS)]
    left = []
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                # field 5 is the mount point, with space, tab, newline and \ octal-escaped
                point = line.split()[4].decode("utf-8", "surrogateescape")
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)
                if any((point + "/").startswith(d) for d in dirs):
                    left.append(point)
    except OSError:
        return []
    for point in reversed(left):        # the innermost first
        subprocess.run(["umount", "-l", point], capture_output=True)
    return left


def _describe(left):
    return "\n".join("  pid %d (started by %s): %s" % (pid, test, args[:300])
                     for pid, (args, test) in sorted(left.items()))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a test file and all its fixtures are done, none of the
    processes its tests started (servers, daemons, agents) may still run,
    nor a file system be left mounted, nor a directory of mwlib.OUR_DIRS
    (outside pytest's tmp dir) be left behind: each test stops what it
    starts and removes what it makes.
    Checked here, after pytest's own teardown of the file's last test (which
    tears the module's fixtures down), not in a module fixture: pytest does
    not tear same-scope fixtures down in the reverse order of their set-up
    (test_smtp's module-wide daemon was still up in such a fixture's end)."""
    yield
    module = item.getparent(pytest.Module)
    if nextitem is not None and nextitem.getparent(pytest.Module) is module:
        return
    name = module.nodeid if module is not None else item.nodeid
    left = _leftovers(item.config)
    mounts = _leftover_mounts(item.config)
    dirs = [d for d in mwlib.OUR_DIRS if os.path.lexists(d)]
    for d in dirs:
        if os.path.realpath(d).startswith(("/tmp/", "/var/tmp/")):    # never more than a scratch dir
            shutil.rmtree(d, ignore_errors=True)
    mwlib.OUR_DIRS[:] = []
    problems = []
    if left:
        problems.append("%s left processes running after its fixtures were torn down "
                        "(now killed):\n%s" % (name, _describe(left)))
    if mounts:
        problems.append("%s left file systems mounted (now unmounted): %s" % (name, " ".join(mounts)))
    if dirs:
        problems.append("%s left directories outside pytest's tmp dir (now removed): %s"
                        % (name, " ".join(dirs)))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    """The last word: anything of ours that outlived its test file's guard
    (or was started outside any test) is reported, killed, and fails the run."""
    if not hasattr(session.config, "_tmp_path_factory"):
        return
    left = _leftovers(session.config)
    if left:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = "processes of this test run left running at its end (now killed):\n" + _describe(left)
        if tr is not None:
            tr.write_sep("=", "LEFTOVER PROCESSES", red=True, bold=True)
            tr.write_line(msg)
        else:
            sys.stderr.write(msg + "\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
