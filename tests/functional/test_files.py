"""test_files.py - the files mailwarden makes and the privileges it keeps:
started as root (as the tests run here) with `user = nobody`, every child
runs as nobody with no group, capability or way back; what the filters
create at start-up (the LMDB store, the rules cache) is nobody's; mail
(quarantine entries, the audit log) is never readable by other users; and
a process running as root never follows a link the unprivileged user could
have planted (audit log, quarantine days, the directories it prepares).

The daemon's paths live under a directory of /tmp made 0755 for the test,
as /var/lib is: pytest's own tmp_path is 0700 root, which nobody could not
cross."""

import os
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from mwlib import MW_BIN, free_port, make_msg, plugin_opt, read_audit, run_mw, wait_until

NOBODY = 65534
NOGROUP = 65534


@pytest.fixture
def root():
    """A fresh directory of /tmp, 0755, removed afterwards."""
    d = tempfile.mkdtemp(prefix="mw-files-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def var_lib(root):
    """root/lib/mw made by the admin for the daemon's user, as
    /var/lib/mailwarden is by a package: nobody's, 0750."""
    d = os.path.join(root, "lib", "mw")
    os.makedirs(d)
    os.chmod(os.path.join(root, "lib"), 0o755)
    os.chown(d, NOBODY, NOGROUP)
    os.chmod(d, 0o750)
    return d


def paths(root, lib):
    return {
        "quarantine_dir": os.path.join(lib, "quarantine"),
        "audit_log": os.path.join(root, "log", "mw", "audit.log"),
        "stats_file": os.path.join(root, "run", "stats"),
        "store_path": os.path.join(lib, "store.lmdb"),
        "rules_cache_dir": os.path.join(lib, "rules-cache"),
    }


def spam_opts(**extra):
    o = [plugin_opt(), ("inbound_tag_score", "3"), ("inbound_quarantine_score", "5"),
         ("inbound_reject_score", "15"), ("quarantine_reply", "250 2.0.0 Held for review")]
    return o + list(extra.items())


def status(pid):
    """{field: value} of /proc/PID/status"""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def send(m, subject="hello", frm="sender@example.org", rcpt="rcpt@example.net"):
    c = m.client()
    c.ehlo()
    r = c.transaction(frm, [rcpt], make_msg(subject=subject, frm=frm))
    c.quit()
    return r["final"]


def test_children_run_as_user_with_nothing_left(root, mw_factory, upstream):
    """Each child: uid and gid nobody (real, effective, saved, fs), no
    supplementary group (root's are gone), no capability, no_new_privs.
    The bayes filter makes its LMDB store at start-up: it is nobody's, and
    the scanner can open it (before: the start-up check, run as root, made
    it root's 0640, and the scanner died at every start: every message got
    451)."""
    lib = var_lib(root)
    p = paths(root, lib)
    sock = os.path.join(lib, "milter.sock")
    m = mw_factory(upstream, opts=spam_opts(user="nobody", filters="bayes",
                                            milter_listen="unix:" + sock, **p))
    assert send(m).code == 250
    assert len(upstream.messages) == 1
    st = os.stat(p["store_path"])
    assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP), "the store is not the scanner's"
    assert os.stat(p["store_path"] + "-lock").st_uid == NOBODY
    kids = m.children()
    roles = sorted(t.split("mailwarden: ")[1].split()[0] for _, t in kids if "mailwarden: " in t)
    assert roles == ["milter", "proxy", "scanner"], kids
    for pid, title in kids:
        s = status(pid)
        assert s["Uid"].split() == [str(NOBODY)] * 4, (title, s["Uid"])
        assert s["Gid"].split() == [str(NOGROUP)] * 4, (title, s["Gid"])
        assert s["Groups"] == "", (title, s["Groups"])
        assert int(s["CapEff"], 16) == 0 and int(s["CapPrm"], 16) == 0, (title, s)
        assert s["NoNewPrivs"] == "1", (title, s["NoNewPrivs"])
    log = m.stderr_text()
    assert "Permission denied" not in log, log


def test_check_runs_as_user(root):
    """`mailwarden -t` (ExecStartPre) sets the filters up as `user` too: the
    store it makes is nobody's, not root's."""
    lib = var_lib(root)
    p = paths(root, lib)
    args = ["-t", "-o", "user=nobody", "-o", "filters=bayes"]
    for k, v in p.items():
        args += ["-o", "%s=%s" % (k, v)]
    r = run_mw(args)
    assert r.returncode == 0, r.stderr.decode()
    assert os.stat(p["store_path"]).st_uid == NOBODY


def test_check_as_user_reports_its_error(root):
    """A filter that cannot start as `user` (its store in a directory only
    root may write) fails the check with the filter's own reason."""
    lib = os.path.join(root, "rootonly")
    os.makedirs(lib, mode=0o755)
    r = run_mw(["-t", "-o", "user=nobody", "-o", "filters=bayes",
                "-o", "store_path=%s/store.lmdb" % lib])
    assert r.returncode == 1
    assert b"store_path" in r.stderr and b"Permission denied" in r.stderr, r.stderr


def demote(uid, gid):
    def f():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return f


def test_started_as_another_user_says_so(root, upstream):
    """Started by an unprivileged user with `user` naming somebody else, the
    daemon cannot switch: it says so and exits 1 (before: it started, and
    every child died on setgroups, restarted, died again)."""
    d = os.path.join(root, "n")
    os.makedirs(d)
    os.chown(d, NOBODY, NOGROUP)
    cmd = [MW_BIN, "-f", "--listen", "127.0.0.1:%d" % free_port(), "--upstream", upstream.addr,
           "-o", "user=daemon", "-o", "audit_log=%s/audit.log" % d,
           "-o", "quarantine_dir=%s/q" % d, "-o", "stats_file=", "-o", "dns_client_name=no"]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=10, preexec_fn=demote(NOBODY, NOGROUP),
                           start_new_session=True)
    except subprocess.TimeoutExpired as e:
        pytest.fail("still running after 10 s: %r" % e.stderr[-500:])
    assert r.returncode == 1
    assert b"user daemon" in r.stderr and b"not root" in r.stderr, r.stderr
