"""test_hygiene.py - conftest's guard against processes a test file leaves
running: run on a scratch test directory (this conftest and mwlib, and a
test file written here) by a pytest of its own, it fails the file whose
test left a daemonized process, a child or a process in its tmp dir
behind, names the test that started each, and kills them; a process that
is still exiting when the file ends is given its grace and not counted.
A file system left mounted in its tmp dir fails it too, and is unmounted;
so does a directory of its own outside (mwlib.OUR_DIRS), then removed."""

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

LEAKY = r'''
import subprocess

kept = []


def test_daemonizes(tmp_path):
    # as gpg-agent did: double fork, a new session, parent gone
    subprocess.run(["sh", "-c", "setsid sleep 417 >/dev/null 2>&1 &"], check=True)


def test_child_left(tmp_path):
    kept.append(subprocess.Popen(["sleep", "418"]))


def test_cleared_environment_in_tmp_dir(tmp_path):
    # no mark in its environment, not our child: found by its working directory
    subprocess.run(["env", "-i", "/bin/sh", "-c", "setsid sleep 419 >/dev/null 2>&1 &"],
                   cwd=str(tmp_path), check=True)
'''

MOUNTS = r'''
import subprocess


def test_mounts(tmp_path):
    d = tmp_path / "fs"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], check=True)
'''

OUTSIDE = r'''
import tempfile

import mwlib


def test_makes_a_dir_in_tmp():
    mwlib.OUR_DIRS.append(tempfile.mkdtemp(prefix="mw-hygiene-"))
'''

TIDY = r'''
import subprocess


def test_exiting(tmp_path):
    subprocess.Popen(["sleep", "1.5"])       # still there at the end, gone within the grace


def test_stopped(tmp_path):
    p = subprocess.Popen(["sleep", "420"])
    p.terminate()
    p.wait()
'''


def run_inner(tmp_path, name, text):
    d = tmp_path / "suite"
    d.mkdir(exist_ok=True)
    for f in ("conftest.py", "mwlib.py"):
        shutil.copy(os.path.join(HERE, f), str(d / f))
    (d / name).write_text(text)
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run([sys.executable, "-B", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / ("bt-" + name)), name],
                          cwd=str(d), capture_output=True, text=True, timeout=120, env=env)


def sleepers(*secs):
    out = subprocess.run(["pgrep", "-f", "^sleep (%s)$" % "|".join(map(str, secs))],
                         capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def test_guard_fails_and_kills_what_a_file_leaves(tmp_path):
    r = run_inner(tmp_path, "test_leaky.py", LEAKY)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "3 passed, 1 error" in out, out
    assert "test_leaky.py left processes running after its fixtures were torn down" in out, out
    assert "(started by test_leaky.py::test_daemonizes (call)): sleep 417" in out, out
    assert "(started by test_leaky.py::test_child_left (call)): sleep 418" in out, out
    assert ": sleep 419" in out, out
    time.sleep(0.2)
    assert sleepers(417, 418, 419) == [], "the guard did not kill what it found"


def test_guard_waits_for_what_is_exiting(tmp_path):
    t0 = time.monotonic()
    r = run_inner(tmp_path, "test_tidy.py", TIDY)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout and "left processes" not in r.stdout, r.stdout
    assert time.monotonic() - t0 < 60


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_guard_unmounts_what_a_file_leaves_mounted(tmp_path):
    r = run_inner(tmp_path, "test_mounts.py", MOUNTS)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "1 passed, 1 error" in out, out
    fs = str(tmp_path / "bt-test_mounts.py" / "test_mounts0" / "fs")
    assert "test_mounts.py left file systems mounted (now unmounted): %s" % fs in out, out
    with open("/proc/self/mountinfo") as f:
        assert fs not in f.read()


def test_guard_removes_a_dir_of_ours_left_outside(tmp_path):
    r = run_inner(tmp_path, "test_outside.py", OUTSIDE)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "1 passed, 1 error" in out, out
    said = re.search(r"left directories outside pytest's tmp dir \(now removed\): (\S+)", out)
    assert said and os.path.basename(said.group(1)).startswith("mw-hygiene-"), out
    assert not os.path.exists(said.group(1))
