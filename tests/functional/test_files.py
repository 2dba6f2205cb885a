"""test_files.py - the files mailwarden makes and the privileges it keeps:
started as root (as the tests run here) with `user = nobody`, every child
runs as nobody with no group, capability or way back; what the filters
create at start-up (the LMDB store, the rules cache) is nobody's; mail
(quarantine entries, the audit log) is never readable by other users; and
a process running as root never follows a link the unprivileged user could
have planted (audit log, quarantine days, the directories it prepares, the
stats file, a released record); `mailwarden scan` as root scans as the
user; the systemd unit's capabilities and system call filter are what the
daemon needs (it runs under them, and fails without any one of the
capabilities).

The daemon's paths live under a directory of /tmp made 0755 for the test,
as /var/lib is: pytest's own tmp_path is 0700 root, which nobody could not
cross."""

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest

import mwlib
from mwlib import MW_BIN, Mailwarden, free_port, make_msg, plugin_opt, read_audit, run_mw, wait_until

NOBODY = 65534
NOGROUP = 65534


@pytest.fixture
def root():
    """A fresh directory of /tmp, 0755, removed afterwards."""
    d = tempfile.mkdtemp(prefix="mw-files-", dir="/tmp")
    os.chmod(d, 0o755)
    mwlib.OUR_DIRS.append(d)
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
    """{field: value} of /proc/PID/status ({} for a process gone meanwhile:
    the short-lived expiry child)"""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except (FileNotFoundError, ProcessLookupError):
        pass
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
    # the quarantine expiry (quarantine_max_age 30d) forks a short-lived
    # child of its own at start: checked when it is there, not waited for
    kids = m.children()
    roles = sorted(t.split("mailwarden: ")[1].split()[0] for _, t in kids if "mailwarden: " in t)
    assert [r for r in roles if r != "expiry"] == ["milter", "proxy", "scanner"], kids
    for pid, title in kids:
        s = status(pid)
        if not s and "expiry" in title:
            continue
        assert s["Uid"].split() == [str(NOBODY)] * 4, (title, s["Uid"])
        assert s["Gid"].split() == [str(NOGROUP)] * 4, (title, s["Gid"])
        assert s["Groups"] == "", (title, s["Groups"])
        assert int(s["CapEff"], 16) == 0 and int(s["CapPrm"], 16) == 0, (title, s)
        assert s["NoNewPrivs"] == "1", (title, s["NoNewPrivs"])
        assert s["Umask"] == "0027", (title, s["Umask"])
    log = m.stderr_text()
    assert "Permission denied" not in log, log



@pytest.mark.parametrize("front", ["proxy", "milter"])
def test_reload_of_a_root_only_config_reaches_the_front_ends(root, mw_factory, upstream, front):
    """A config file only root may read (0600, as admins protect config
    files): the master reads it at a reload (as root) and passes the config
    down to the front ends once the new scanner runs it.  Before, the proxy
    and the milter, dropped to nobody, read the file again themselves and
    could not (Permission denied): they kept the old settings while the
    master and the new scanner ran the new ones, half applied for good."""
    import soaklib
    lib = var_lib(root)
    p = paths(root, lib)
    del p["store_path"], p["rules_cache_dir"]
    port = free_port()
    conf = os.path.join(root, "mailwarden.conf")
    with open(conf, "w") as f:
        f.write("message_size_limit = 50M\n")
    os.chmod(conf, 0o600)
    opts = [("user", "nobody")] + list(p.items())
    if front == "milter":
        opts.append(("milter_listen", "inet:%d@127.0.0.1" % port))
    m = mw_factory(upstream, config=conf, opts=opts)
    big = make_msg(subject="5 KB", body=(b"y" * 70 + b"\r\n") * 70)

    def outcome():
        if front == "milter":
            return soaklib.milter_session(port, "normal", size=5000)[0]
        c = m.client()
        c.ehlo()
        r = c.transaction("a@example.org", ["b@example.net"], big)["final"]
        c.quit()
        return "accepted" if r.code == 250 else "refused %d" % r.code

    if front == "milter":
        assert wait_until(lambda: soaklib.milter_session(port, "normal")[0] == "accepted", 10), m.stderr_tail()
    assert outcome() == "accepted"
    with open(conf, "w") as f:
        f.write("message_size_limit = 2k\n")
    m.signal(signal.SIGHUP)
    said = "milter: config reloaded" if front == "milter" else "config reloaded (from the master)"
    assert wait_until(lambda: said in m.stderr_text(), 10), m.stderr_tail()
    assert outcome() == ("refused" if front == "milter" else "refused 552")
    log = m.stderr_text()
    assert "reload failed" not in log and "Permission denied" not in log, log[-3000:]

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


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def make_entry(qdir, qid, owner=(NOBODY, NOGROUP)):
    """A quarantine entry written by hand, as the scanner would."""
    day = os.path.join(qdir, qid[:8])
    os.makedirs(day, exist_ok=True)
    for name, data in ((qid + ".eml", b"Subject: x\r\n\r\nbody\r\n"),
                       (qid + ".json", ('{"id": "%s", "envelope": {"mail_from": "a@example.org", '
                                        '"rcpts": ["b@example.net"]}}' % qid).encode())):
        p = os.path.join(day, name)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, 0o600)
        os.chown(p, *owner)
    os.chown(day, *owner)
    return day


def test_mail_is_nobody_elses(root, mw_factory, upstream):
    """Quarantine entries 0600 in 0700 days, the quarantine directory and the
    audit log without bits for others: a directory or log left open to
    every user (0755, 0644 by an admin's hand) is closed at start with a
    warning.  The store 0640, the stats file 0644 (counts, no mail: for a
    monitoring user)."""
    lib = var_lib(root)
    p = paths(root, lib)
    os.makedirs(p["quarantine_dir"])
    os.chown(p["quarantine_dir"], NOBODY, NOGROUP)
    os.chmod(p["quarantine_dir"], 0o755)
    logdir = os.path.dirname(p["audit_log"])
    os.makedirs(logdir)
    os.chown(logdir, NOBODY, NOGROUP)
    with open(p["audit_log"], "w"):
        pass
    os.chown(p["audit_log"], NOBODY, NOGROUP)
    os.chmod(p["audit_log"], 0o644)
    m = mw_factory(upstream, opts=spam_opts(user="nobody", filters="bayes", **p))
    assert send(m, subject="buy viagra now").raw == b"250 2.0.0 Held for review\r\n"
    assert mode(p["quarantine_dir"]) == 0o750
    assert mode(p["audit_log"]) == 0o640
    log = m.stderr_text()
    assert "quarantine_dir %s was mode 0755, open to every local user: now 0750" % p["quarantine_dir"] in log
    assert "audit_log %s was mode 0644" % p["audit_log"] in log
    files = []
    for d, _, names in os.walk(p["quarantine_dir"]):
        if d != p["quarantine_dir"]:
            assert mode(d) == 0o700 and os.stat(d).st_uid == NOBODY, d
        files += [os.path.join(d, n) for n in names]
    assert len(files) == 2, files
    for f in files:
        st = os.stat(f)
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, NOBODY), f
    assert wait_until(lambda: len(read_audit(p["audit_log"])) >= 1)
    assert mode(p["store_path"]) == 0o640
    assert mode(p["stats_file"]) == 0o644


def test_new_dirs_are_the_users_and_closed(root, mw_factory, upstream):
    """The directories of audit_log and quarantine_dir that the master makes
    are nobody's, 0750; the audit log the proxy then makes is 0640."""
    lib = var_lib(root)
    p = paths(root, lib)
    m = mw_factory(upstream, opts=spam_opts(user="nobody", **p))
    assert send(m).code == 250
    assert wait_until(lambda: os.path.exists(p["audit_log"]))
    for d in (p["quarantine_dir"], os.path.dirname(p["audit_log"]),
              os.path.dirname(os.path.dirname(p["audit_log"]))):
        st = os.stat(d)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, NOBODY, NOGROUP), d
    assert mode(p["audit_log"]) == 0o640


QID = "20200101T000000-0badf00d"


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_root_cli_does_not_write_through_a_planted_link(root, kind):
    """`mailwarden quarantine delete` run as root appends to the audit log,
    in a directory the daemon's user owns: a link planted there in place of
    the log (to /etc/passwd, say) is refused, the command writes nothing
    and deletes nothing."""
    lib = var_lib(root)
    q = os.path.join(lib, "quarantine")
    os.makedirs(q)
    os.chown(q, NOBODY, NOGROUP)
    make_entry(q, QID)
    victim = os.path.join(root, "passwd")
    with open(victim, "w") as f:
        f.write("root:x:0:0::/root:/bin/sh\n")
    log = os.path.join(lib, "audit.log")
    (os.symlink if kind == "symlink" else os.link)(victim, log)
    r = run_mw(["quarantine", "-o", "quarantine_dir=" + q, "-o", "audit_log=" + log, "delete", QID])
    assert r.returncode == 1, r
    assert b"audit log" in r.stderr, r.stderr
    with open(victim) as f:
        assert f.read() == "root:x:0:0::/root:/bin/sh\n"
    assert os.path.exists(os.path.join(q, QID[:8], QID + ".eml"))


def test_root_cli_makes_the_log_the_daemons(root):
    """A `quarantine delete` as root that creates the audit log leaves it to
    the directory's owner (the daemon's user), who must go on writing it."""
    lib = var_lib(root)
    q = os.path.join(lib, "quarantine")
    os.makedirs(q)
    os.chown(q, NOBODY, NOGROUP)
    make_entry(q, QID)
    log = os.path.join(lib, "audit.log")
    r = run_mw(["quarantine", "-o", "quarantine_dir=" + q, "-o", "audit_log=" + log, "delete", QID])
    assert r.returncode == 0, r.stderr
    st = os.stat(log)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOGROUP, 0o640)
    assert [x["event"] for x in read_audit(log)] == ["quarantine_delete"]


def test_expiry_follows_no_day_link(root, mw_factory, upstream):
    """The daemon's expiry (quarantine_max_age) removes an old entry, but not
    one that a day directory linked elsewhere shows it: before, the master
    did it as root and followed the link."""
    lib = var_lib(root)
    p = paths(root, lib)
    q = p["quarantine_dir"]
    os.makedirs(q)
    os.chown(q, NOBODY, NOGROUP)
    os.chmod(q, 0o750)
    real = make_entry(q, "20200102T000000-00000001")
    elsewhere = os.path.join(root, "elsewhere")
    make_entry(elsewhere, "20200101T000000-00000002", owner=(0, 0))
    os.chmod(os.path.join(elsewhere, "20200101"), 0o755)
    os.symlink(os.path.join(elsewhere, "20200101"), os.path.join(q, "20200101"))
    m = mw_factory(upstream, opts=spam_opts(user="nobody", quarantine_max_age="1d",
                                            quarantine_expire_interval="1s", **p))
    assert wait_until(lambda: not os.path.exists(os.path.join(real, "20200102T000000-00000001.json")),
                      timeout=5), m.stderr_tail()
    time.sleep(1.5)           # one more round
    left = sorted(os.listdir(os.path.join(elsewhere, "20200101")))
    assert left == ["20200101T000000-00000002.eml", "20200101T000000-00000002.json"]
    # and the CLI, run as root, does not either
    r = run_mw(["quarantine", "-o", "quarantine_dir=" + q, "-o", "audit_log=",
                "-o", "quarantine_max_age=1d", "expire"])
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(os.path.join(elsewhere, "20200101"))) == left
    r = run_mw(["quarantine", "-o", "quarantine_dir=" + q, "-o", "audit_log=", "show",
                "20200101T000000-00000002"])
    assert r.returncode == 1 and b"not a directory" in r.stderr, r.stderr


def test_prepared_dirs_follow_no_users_link(root, mw_factory, upstream):
    """Making quarantine_dir's missing parts, the master (root) does not go
    through a link in a directory the user owns: before, it made the last
    part wherever the link pointed and gave it to the user."""
    lib = var_lib(root)
    p = paths(root, lib)
    elsewhere = os.path.join(root, "etc")
    os.makedirs(elsewhere, mode=0o755)
    os.symlink(elsewhere, os.path.join(lib, "q"))
    p["quarantine_dir"] = os.path.join(lib, "q", "quarantine")
    m = mw_factory(upstream, opts=spam_opts(user="nobody", **p))
    assert send(m).code == 250
    assert os.listdir(elsewhere) == []
    assert "%s/q: not a directory (a link in a directory root does not own is not followed)" % lib \
        in m.stderr_text()


def connect_as(path, uid, gid):
    """0 if a process of uid:gid can connect to the unix socket path, else
    the errno"""
    code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
            "try:\n s.connect(sys.argv[1])\nexcept OSError as e:\n sys.exit(e.errno)\n")
    return subprocess.run(["/usr/bin/python3", "-c", code, path], preexec_fn=demote(uid, gid),
                          timeout=10).returncode


def test_milter_socket_reaches_the_mta(root, mw_factory, upstream):
    """A unix: milter socket is milter_socket_mode (0660) and in
    milter_socket_group: a process of another user in that group (the MTA,
    here uid daemon in group mail) can connect, one outside it cannot.
    The milter keeps that one group, nothing else; the others have none.
    Before: the socket was 0755 (the umask's), and no MTA that was not
    mailwarden's user could connect."""
    lib = var_lib(root)
    p = paths(root, lib)
    run = os.path.join(root, "run", "mw")
    os.makedirs(run)
    os.chown(run, NOBODY, NOGROUP)
    sock = os.path.join(run, "milter.sock")
    mail_gid = 8
    m = mw_factory(upstream, opts=spam_opts(user="nobody", milter_listen="unix:" + sock,
                                            milter_socket_group="mail", **p))
    assert wait_until(lambda: os.path.exists(sock))
    assert wait_until(lambda: mode(sock) == 0o660), oct(mode(sock))
    st = os.stat(sock)
    assert (st.st_uid, st.st_gid) == (NOBODY, mail_gid)
    assert connect_as(sock, 1, mail_gid) == 0
    assert connect_as(sock, 1, 1) != 0
    for pid, title in m.children():
        s = status(pid)
        if not s and "expiry" in title:
            continue
        groups = s["Groups"]
        assert groups == (str(mail_gid) if "milter" in title else ""), (title, groups)


def test_milter_socket_mode_setting(root, mw_factory, upstream):
    """Without a group, the socket is in user's own group, with the mode
    asked for."""
    lib = var_lib(root)
    p = paths(root, lib)
    sock = os.path.join(lib, "milter.sock")
    mw_factory(upstream, opts=spam_opts(user="nobody", milter_listen="unix:" + sock,
                                        milter_socket_mode="0600", **p))
    assert wait_until(lambda: os.path.exists(sock) and mode(sock) == 0o600), oct(mode(sock))
    st = os.stat(sock)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP)
    r = run_mw(["-t", "-o", "milter_socket_mode=0999"])
    assert r.returncode == 1 and b"not an octal mode" in r.stderr, r.stderr


def test_milter_socket_directory_made_for_the_user(root, mw_factory, upstream):
    """milter_listen in a directory that does not exist yet (README:
    /var/spool/postfix/mailwarden/milter.sock, for Postfix's chroot): the
    master makes it for user (0750) in milter_socket_group, so the milter
    can make its socket there and the MTA (uid daemon, group mail) can
    reach it.  Before: nothing made it, and the milter failed at every
    restart."""
    lib = var_lib(root)
    p = paths(root, lib)
    spool = os.path.join(root, "spool")
    os.makedirs(spool)
    os.chmod(spool, 0o755)
    sock = os.path.join(spool, "mailwarden", "milter.sock")
    mail_gid = 8
    mw_factory(upstream, opts=spam_opts(user="nobody", milter_listen="unix:" + sock,
                                        milter_socket_group="mail", **p))
    assert wait_until(lambda: os.path.exists(sock), 5.0)
    st = os.stat(os.path.dirname(sock))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, mail_gid, 0o750), st
    assert connect_as(sock, 1, mail_gid) == 0
    assert connect_as(sock, 1, 1) != 0


def test_milter_socket_in_a_directory_of_roots_is_refused(root, mw_factory, upstream):
    """milter_listen = unix:DIR/milter.sock with DIR root's 0755 (what the
    unit's RuntimeDirectory made of /run/mailwarden): the milter, dropped
    to user, cannot make its socket.  Before: -t said OK, the master
    logged "milter on unix:...", and the milter logged "cannot listen"
    with no reason and was restarted forever.  Now -t and the start fail,
    saying whose directory it is, its mode and the errno."""
    lib = var_lib(root)
    p = paths(root, lib)
    run = os.path.join(root, "run", "mw")
    os.makedirs(run)
    os.chmod(run, 0o755)
    sock = os.path.join(run, "milter.sock")
    args = ["-t", "-o", "user=nobody", "-o", "milter_listen=unix:" + sock]
    for k, v in p.items():
        args += ["-o", "%s=%s" % (k, v)]
    r = run_mw(args)
    err = r.stderr.decode()
    assert r.returncode == 1, (r.stdout, err)
    assert "cannot make its socket in %s (root:root, mode 0755): Permission denied" % run in err, err
    m = mw_factory(upstream, opts=spam_opts(user="nobody", milter_listen="unix:" + sock, **p),
                   ready=False)
    m.proc.wait(10)
    assert m.proc.returncode == 1, m.stderr_tail()
    assert "(root:root, mode 0755): Permission denied" in m.stderr_text(), m.stderr_tail()


def test_milter_that_cannot_make_its_socket_is_not_restarted_forever(root, mw_factory, upstream):
    """the socket's directory taken away while the daemon runs: the milter
    restarted after a crash cannot listen, says why, and the daemon stops
    with status 1 instead of restarting it every few seconds"""
    lib = var_lib(root)
    p = paths(root, lib)
    sock = os.path.join(root, "spool", "mailwarden", "milter.sock")
    m = mw_factory(upstream, opts=spam_opts(user="nobody", milter_listen="unix:" + sock, **p))
    assert wait_until(lambda: os.path.exists(sock), 5.0)
    os.chown(os.path.dirname(sock), 0, 0)
    os.chmod(os.path.dirname(sock), 0o755)
    os.kill(m.child_pid("milter"), signal.SIGKILL)
    try:
        m.proc.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("still restarting the milter:\n" + m.stderr_tail(30))
    assert m.proc.returncode == 1, m.stderr_tail()
    text = m.stderr_text()
    assert "(root:root, mode 0755): Permission denied" in text, m.stderr_tail()
    assert "not restarted; mailwarden stops" in text, m.stderr_tail()
    assert text.count("milter started pid=") == 2, m.stderr_tail()


def test_root_learn_leaves_the_store_to_the_daemon(root, mw_factory, upstream):
    """`mailwarden learn` run as root into a store the daemon's user keeps:
    the store and its lock file it creates are that user's (before:
    root's 0640, and the scanner could not open them any more), and the
    daemon then scans with it."""
    lib = var_lib(root)
    p = paths(root, lib)
    msg = os.path.join(root, "spam.eml")
    with open(msg, "wb") as f:
        f.write(make_msg(subject="cheap pills"))
    os.chmod(msg, 0o600)             # the admin's file: root reads it, nobody could not
    r = run_mw(["learn", "-o", "store_path=" + p["store_path"], "--spam", msg])
    assert r.returncode == 0, r.stderr
    for f in (p["store_path"], p["store_path"] + "-lock"):
        st = os.stat(f)
        assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP), f
    os.chmod(p["store_path"], 0o644)      # an admin's hand: Bayes tokens are words of the mail
    m = mw_factory(upstream, opts=spam_opts(user="nobody", filters="bayes", **p))
    assert send(m).code == 250
    assert mode(p["store_path"]) == 0o640
    assert "store_path %s was mode 0644, open to every local user: now 0640" % p["store_path"] \
        in m.stderr_text()


def test_root_learn_truncates_nothing_through_a_link(root):
    """A link in place of the store's lock file (LMDB truncates that file),
    planted by the user who owns the directory, makes a root `learn` fail
    rather than wipe the file it points to."""
    lib = var_lib(root)
    victim = os.path.join(root, "shadow")
    with open(victim, "w") as f:
        f.write("root:*:19000:0:99999:7:::\n")
    os.chmod(victim, 0o600)
    store = os.path.join(lib, "store.lmdb")
    os.symlink(victim, store + "-lock")
    os.lchown(store + "-lock", NOBODY, NOGROUP)       # as the user would have made it
    msg = os.path.join(root, "spam.eml")
    with open(msg, "wb") as f:
        f.write(make_msg(subject="cheap pills"))
    r = run_mw(["learn", "-o", "store_path=" + store, "--spam", msg])
    assert r.returncode == 1, r
    with open(victim) as f:
        assert f.read() == "root:*:19000:0:99999:7:::\n"


RULES = os.path.join(mwlib.SOURCE_ROOT, "rules", "cf", "*.cf")   # where the user can read them


def test_root_scan_writes_no_rules_cache_through_a_link(root):
    """`mailwarden scan` run as root writes the compiled rules into
    rules_cache_dir, the daemon's user's: through a temporary name that
    user can guess (NAME.PID.tmp).  Links planted under those names for
    the next PIDs must not be followed (before: O_TRUNC wrote the database
    over their target), and root loads no database the user wrote."""
    lib = var_lib(root)
    cache = os.path.join(lib, "rules-cache")
    base = ["-o", "filters=rules", "-o", "rules_files=" + RULES, "-o", "rules_cache_dir=" + cache]
    r = run_mw(["-t", "-o", "user=nobody"] + base, timeout=120)
    assert r.returncode == 0, r.stderr
    names = [n for n in os.listdir(cache) if n.endswith(".hsdb")]
    assert names and all(os.stat(os.path.join(cache, n)).st_uid == NOBODY for n in names)
    for n in names:
        os.unlink(os.path.join(cache, n))
    victim = os.path.join(root, "shadow")
    with open(victim, "w") as f:
        f.write("secret\n")
    msg = os.path.join(root, "m.eml")
    with open(msg, "wb") as f:
        f.write(make_msg())
    with open("/proc/sys/kernel/ns_last_pid") as f:
        last = int(f.read())
    for pid in range(last + 1, last + 80):
        for n in names:
            os.symlink(victim, os.path.join(cache, "%s.%d.tmp" % (n, pid)))
    r = run_mw(["scan"] + base + [msg], timeout=120)
    assert r.returncode == 0, r.stderr
    with open(victim, "rb") as f:
        assert f.read() == b"secret\n", "the rules cache was written through the link"
    written = [n for n in os.listdir(cache) if n.endswith(".hsdb")]
    assert sorted(written) == sorted(names)


def test_check_by_an_unprivileged_admin(root):
    """`mailwarden -t` run by an unprivileged user with `user` set checks
    the settings as that user, as it always did."""
    d = os.path.join(root, "n")
    os.makedirs(d)
    os.chown(d, NOBODY, NOGROUP)
    r = subprocess.run([MW_BIN, "-t", "-o", "user=daemon", "-o", "filters=bayes",
                        "-o", "store_path=%s/store.lmdb" % d], capture_output=True, timeout=30,
                       preexec_fn=demote(NOBODY, NOGROUP))
    assert r.returncode == 0, r.stderr
    assert b"configuration OK" in r.stdout


def test_fresh_install_starts(root, mw_factory, upstream):
    """The default layout on a fresh machine: the store beside the quarantine
    (/var/lib/mailwarden), neither there.  The master makes the directory
    for `user` before the filters are first set up, so the store can be
    made in it (before: `store_path ...: No such file or directory`, and
    the daemon did not start)."""
    os.chmod(root, 0o755)
    lib = os.path.join(root, "lib", "mw")
    p = paths(root, lib)
    m = mw_factory(upstream, opts=spam_opts(user="nobody", filters="bayes", **p))
    assert send(m).code == 250
    st = os.stat(p["store_path"])
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o640)
    assert (os.stat(lib).st_uid, mode(lib)) == (NOBODY, 0o750)


def test_root_learn_keeps_a_root_store(root):
    """A store already root's in the user's directory (left by a daemon run
    as root, or by an older `learn`) is still opened by a root `learn`."""
    lib = var_lib(root)
    store = os.path.join(lib, "store.lmdb")
    msg = os.path.join(root, "spam.eml")
    with open(msg, "wb") as f:
        f.write(make_msg(subject="cheap pills"))
    r = run_mw(["learn", "-o", "store_path=" + store, "--spam", msg])
    assert r.returncode == 0, r.stderr
    for f in (store, store + "-lock"):
        os.chown(f, 0, 0)
    r = run_mw(["learn", "-o", "store_path=" + store, "--ham", msg])
    assert r.returncode == 0, r.stderr


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "store")


def learn_msgs(d):
    """the 40 messages tests/data/store's damaged stores were made with,
    in d (root's, 0700: nobody could not read them)"""
    os.makedirs(d)
    os.chmod(d, 0o700)
    for i in range(1, 41):
        with open(os.path.join(d, "m%d.eml" % i), "wb") as f:
            f.write(("From: a%d@example.org\r\nTo: b@example.net\r\nSubject: hello %d\r\n"
                     "Message-ID: <m%d@example.org>\r\n\r\n"
                     "word%d alpha%d beta%d gamma%d some body text here %d\r\n" % ((i,) * 8)).encode())
    return d


@pytest.mark.parametrize("damage", ["learn_crash_bus", "learn_crash_segv"])
@pytest.mark.parametrize("with_user", [True, False])
def test_root_learn_on_a_damaged_store_fails_as_the_user(root, damage, with_user):
    """The daemon's user can rewrite its LMDB store, and LMDB trusts every
    page of it: a few changed bytes (tests/data/store) made root's learn
    write past a heap buffer (AddressSanitizer) or die of SIGBUS/SIGSEGV,
    the map being root's memory (only the file-system identity was
    switched).  Now the store work runs in a child dropped to the user
    (`user`, or without it the directory's owner): the damage takes that
    child only, and learn says so and exits 1, never killed by a signal."""
    import gzip
    lib = var_lib(root)
    store = os.path.join(lib, "store.lmdb")
    with gzip.open(os.path.join(DATA, damage + ".lmdb.gz")) as f, open(store, "wb") as out:
        out.write(f.read())
    os.chown(store, NOBODY, NOGROUP)
    os.chmod(store, 0o640)
    msgs = learn_msgs(os.path.join(root, "msgs"))
    args = ["learn", "-o", "store_path=" + store, "-o", "bayes_chars=no"]
    if with_user:
        args += ["-o", "user=nobody"]
    r = run_mw(args + ["--ham", msgs], timeout=60)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1, (r.returncode, err[-2000:])
    assert "killed by signal" in err or "store lmdb unavailable" in err \
        or "AddressSanitizer" in err, err[-2000:]
    assert b"learned as ham 40" not in r.stdout


def test_root_learn_as_user_reads_roots_files(root):
    """With `user` set, root's learn, --forget and --rebuild do the store
    work as the user (the store and its lock file are the user's), while
    root still reads the messages, which the user could not; a file that
    cannot be read is counted as failed by the child that prints the
    counts."""
    lib = var_lib(root)
    store = os.path.join(lib, "store.lmdb")
    msgs = learn_msgs(os.path.join(root, "msgs"))
    base = ["learn", "-o", "store_path=" + store, "-o", "user=nobody"]
    r = run_mw(base + ["--spam", msgs, os.path.join(root, "missing.eml")], timeout=60)
    assert r.returncode == 1, r.stderr            # the missing one
    assert b"learned as spam 40 message(s), 0 already learned so, 1 failed" in r.stdout, r.stdout
    assert b"missing.eml: No such file or directory" in r.stderr
    for f in (store, store + "-lock"):
        st = os.stat(f)
        assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP), f
    r = run_mw(base + ["--forget", os.path.join(msgs, "m1.eml")], timeout=60)
    assert r.returncode == 0 and b"forgot 1 message(s)" in r.stdout, (r.stdout, r.stderr)
    r = run_mw(base + ["--rebuild"], timeout=60)
    assert r.returncode == 0 and b"character model trained on 39 spam" in r.stdout, (r.stdout, r.stderr)
    # a store the user may not open (root's, 0600): the user's child
    # fails to, as the daemon would; root does not open it instead
    os.chown(store, 0, 0)
    os.chmod(store, 0o600)
    r = run_mw(base + ["--ham", msgs], timeout=60)
    assert r.returncode == 1 and b"Permission denied" in r.stderr, r.stderr


def test_root_without_user_is_warned(mw):
    """The default (no `user`) keeps root in every child: said at start."""
    assert 'running as root with no "user"' in mw.stderr_text()


def test_started_as_user_itself_runs(root, upstream):
    """Started by the user `user` names (a container, a test), there is
    nothing to switch: the daemon serves."""
    import signal
    from mwlib import SMTPClient
    d = os.path.join(root, "n")
    os.makedirs(d)
    os.chown(d, NOBODY, NOGROUP)
    port = free_port()
    cmd = [MW_BIN, "-f", "--listen", "127.0.0.1:%d" % port, "--upstream", upstream.addr,
           "-o", "user=nobody", "-o", "audit_log=%s/audit.log" % d, "-o", "quarantine_dir=%s/q" % d,
           "-o", "stats_file=", "-o", "dns_client_name=no",
           "-o", "dns_forwarder=127.0.0.1@%d" % free_port()]
    with open(os.path.join(d, "stderr"), "wb") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=demote(NOBODY, NOGROUP), start_new_session=True)
    try:
        def greets():
            try:
                c = SMTPClient(port, timeout=2)
                ok = c.greeting.code == 220
                c.quit()
                return ok
            except OSError:
                return False
        assert wait_until(greets, timeout=10), open(os.path.join(d, "stderr")).read()
        assert status(proc.pid)["Uid"].split()[0] == str(NOBODY)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_quarantine_dir_the_user_cannot_write_is_reported(root, mw_factory, upstream):
    """A quarantine_dir an admin made root's: the scanner (user) could not
    store a message there, which is said at start, not at the first
    quarantined message."""
    lib = var_lib(root)
    p = paths(root, lib)
    os.makedirs(p["quarantine_dir"], mode=0o750)
    m = mw_factory(upstream, opts=spam_opts(user="nobody", **p))
    assert ("quarantine_dir %s belongs to uid 0: user nobody cannot store messages in it"
            % p["quarantine_dir"]) in m.stderr_text()


def test_root_scan_uses_the_daemons_rules_cache(root):
    """`mailwarden scan` run as root with `user` set scans as that user, as
    the daemon's scanner does: it loads the compiled rules the daemon's
    user wrote (before: root refused them and compiled the rules again,
    minutes for a large set) without trusting them with root's memory;
    the message file is still read as root (0600, the admin's)."""
    lib = var_lib(root)
    cache = os.path.join(lib, "rules-cache")
    base = ["-o", "filters=rules", "-o", "rules_files=" + RULES, "-o", "rules_cache_dir=" + cache,
            "-o", "user=nobody"]
    r = run_mw(["-t"] + base, timeout=120)
    assert r.returncode == 0, r.stderr
    before = {n: os.stat(os.path.join(cache, n)) for n in os.listdir(cache)}
    assert before and all(n.endswith(".hsdb") and st.st_uid == NOBODY for n, st in before.items())
    for n in before:           # a use touches the file: seen below
        os.utime(os.path.join(cache, n), (1e9, 1e9))
    msg = os.path.join(root, "m.eml")
    with open(msg, "wb") as f:
        f.write(make_msg(subject="hello"))
    os.chmod(msg, 0o600)
    out = os.path.join(root, "out.eml")
    r = run_mw(["scan"] + base + ["--output", out, msg], timeout=120)
    assert r.returncode == 0, r.stderr
    after = {n: os.stat(os.path.join(cache, n)) for n in os.listdir(cache)}
    assert sorted(after) == sorted(before), "the rules were compiled again"
    for n, st in after.items():
        assert (st.st_ino, st.st_uid) == (before[n].st_ino, NOBODY), n
        assert st.st_mtime > 1e9, "%s not used" % n
    # the relayed copy is the admin's, as before
    st = os.stat(out)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    with open(out, "rb") as f:
        assert b"Subject: hello" in f.read()


def test_root_scan_as_user_relays_only_what_it_delivers(root):
    """The scan as the user: a message the policy quarantines is not
    written to --output (as before), a file an earlier scan left there is
    removed by root (session 21: it was left alone, and `scan --output
    out.eml m.eml && deliver out.eml` delivered the previous message), and
    the JSON still reaches stdout from the child."""
    import json
    lib = var_lib(root)
    msg = os.path.join(root, "m.eml")
    with open(msg, "wb") as f:
        f.write(make_msg(subject="buy viagra now"))
    os.chmod(msg, 0o600)
    out = os.path.join(root, "out.eml")
    with open(out, "w") as f:
        f.write("keep\n")
    args = ["scan", "-o", "user=nobody", "-o", "store_path=%s/store.lmdb" % lib]
    for k, v in spam_opts():
        args += ["-o", "%s=%s" % (k, v)]
    r = run_mw(args + ["--output", out, msg])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["action"] == "quarantine", r.stdout
    assert not os.path.exists(out)


# --- the systemd unit -------------------------------------------------------

UNIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "etc", "mailwarden.service")
# the capabilities the master needs, as README "Files and privileges" and
# the unit's comments list them
UNIT_CAPS = {"CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN",
             "CAP_DAC_OVERRIDE", "CAP_FOWNER"}


def unit_settings():
    """{key: [values]} of the unit's [Service] section"""
    out, section = {}, None
    with open(UNIT) as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == "[Service]" and "=" in line and not line.startswith("#"):
                k, _, v = line.partition("=")
                out.setdefault(k, []).append(v)
    return out


def test_unit_verifies_and_bounds_capabilities(tmp_path):
    """`systemd-analyze verify` accepts the unit (the binary's path pointed
    at the one under test); its bounding set is exactly the documented
    list, nothing ambient, no new privileges, a read-only system but for
    the daemon's directories."""
    sa = shutil.which("systemd-analyze")
    if sa is None:
        pytest.skip("no systemd-analyze")
    with open(UNIT) as f:
        text = f.read().replace("/usr/local/sbin/mailwarden", MW_BIN)
    unit = tmp_path / "mailwarden.service"
    unit.write_text(text)
    r = subprocess.run([sa, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    s = unit_settings()
    assert set(" ".join(s["CapabilityBoundingSet"]).split()) == UNIT_CAPS
    assert s["AmbientCapabilities"] == [""]
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["ProtectSystem"] == ["strict"]
    assert set(" ".join(s["ReadWritePaths"]).split()) == {"/var/lib/mailwarden", "/var/log/mailwarden"}
    assert s["RuntimeDirectory"] == ["mailwarden"]
    # the defaults of the paths it writes are inside those
    import re
    with open(os.path.join(os.path.dirname(UNIT), "..", "proxy", "config.c")) as f:
        conf = f.read()
    for name in ("audit_log", "quarantine_dir", "store_path", "rules_cache_dir", "stats_file"):
        default = re.search(r'G_STR\("%s", \w+, "([^"]*)"' % name, conf).group(1)
        assert any(default.startswith(d + "/") for d in
                   ("/var/lib/mailwarden", "/var/log/mailwarden", "/run/mailwarden")), (name, default)
    r = subprocess.run([sa, "security", "--offline=yes", str(unit)], capture_output=True, text=True,
                       timeout=60)
    if r.returncode == 0:
        exposure = float(r.stdout.rsplit("level for", 1)[1].split(":")[1].split()[0])
        assert exposure <= 3.0, r.stdout[-300:]


def bounded(caps, argv):
    """argv under setpriv with only caps in the bounding set, none
    inheritable or ambient, no_new_privs: as the unit starts it"""
    keep = ",".join("+" + c[len("CAP_"):].lower() for c in sorted(caps))
    return ["setpriv", "--bounding-set=-all" + ("," + keep if keep else ""), "--inh-caps=-all",
            "--ambient-caps=-all", "--no-new-privs", "--"] + argv


class BoundedMailwarden(Mailwarden):
    caps = UNIT_CAPS

    def command(self):
        return bounded(self.caps, super().command())


def low_port():
    """a free port below 1024 on loopback (CAP_NET_BIND_SERVICE's)"""
    import random
    import socket
    for _ in range(200):
        p = random.randint(600, 1000)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free port below 1024")


def start_bounded(root, upstream, caps, **extra):
    lib = var_lib(root)
    p = paths(root, lib)
    port = low_port()
    m = BoundedMailwarden(os.path.join(root, "mw"), upstream=upstream,
                          opts=spam_opts(user="nobody", filters="bayes", **dict(p, **extra)),
                          listeners=[("mx", "127.0.0.1:%d" % port, upstream.addr, None)])
    m.caps = caps
    return m, p


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv")
def test_daemon_runs_with_the_units_capabilities_only(root, upstream):
    """Started as the unit starts it (only its bounding set, no_new_privs)
    on a fresh layout: it binds a port below 1024, makes its directories
    for nobody, drops the children to nobody, passes a message and a
    quarantined one, reloads and stops cleanly.  The master holds the
    unit's capabilities and nothing more."""
    m, p = start_bounded(root, upstream, UNIT_CAPS)
    m.start()
    try:
        s = status(m.pid)
        held = int(s["CapEff"], 16)
        assert held == int(s["CapBnd"], 16) and s["NoNewPrivs"] == "1", s
        assert bin(held).count("1") == len(UNIT_CAPS), s["CapEff"]
        assert send(m).code == 250
        assert len(upstream.messages) == 1
        assert send(m, subject="buy viagra now").raw == b"250 2.0.0 Held for review\r\n"
        assert len([n for _, _, ns in os.walk(p["quarantine_dir"]) for n in ns]) == 2
        for pid, title in m.children():
            st = status(pid)
            if st:
                assert st["Uid"].split()[0] == str(NOBODY) and int(st["CapEff"], 16) == 0, (title, st)
        old = sorted(pid for pid, t in m.children() if "scanner" in t)
        m.signal(signal.SIGHUP)
        assert wait_until(lambda: sorted(pid for pid, t in m.children() if "scanner" in t) not in ([], old),
                          timeout=10), m.stderr_tail()
        assert send(m).code == 250
        assert len(upstream.messages) == 2
        log = m.stderr_text()
        for bad in ("Operation not permitted", "Permission denied", "Read-only"):
            assert bad not in log, log
    finally:
        assert m.stop() == 0, m.stderr_tail()
        assert m.leftovers() == []


# what goes wrong without each one (the master's own words)
WITHOUT = {
    "CAP_NET_BIND_SERVICE": "listener mx: ",          # bind: Permission denied, and exit
    "CAP_SETUID": "cannot drop privileges",
    "CAP_SETGID": "cannot drop privileges",
    "CAP_CHOWN": "chown %(root)s/log: Operation not permitted",
    "CAP_DAC_OVERRIDE": "%(lib)s: Permission denied",           # quarantine_dir inside it
    "CAP_FOWNER": "store_path %(lib)s/store.lmdb is mode 0644, open to every local user, and could not be changed",
    "CAP_KILL": None,                                 # seen at stop
}


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv")
@pytest.mark.parametrize("missing", sorted(UNIT_CAPS))
def test_each_unit_capability_is_needed(root, upstream, missing):
    """Without any one of them, the master fails at something of the test
    above, and says what (the list is not merely enough: each is used)."""
    assert set(WITHOUT) == UNIT_CAPS
    m, p = start_bounded(root, upstream, UNIT_CAPS - {missing})
    lib = os.path.dirname(p["store_path"])
    # a store of the user's left open to others: closing it takes CAP_FOWNER
    with open(p["store_path"], "w"):
        pass
    os.chown(p["store_path"], NOBODY, NOGROUP)
    os.chmod(p["store_path"], 0o644)
    m.start(ready=False)
    try:
        if WITHOUT[missing] is not None:
            said = WITHOUT[missing] % {"root": root, "lib": lib}
            assert wait_until(lambda: said in m.stderr_text(), timeout=10), m.stderr_tail()
            return
        # the children are nobody's: the master cannot signal them
        m._wait_ready("127.0.0.1", m.port)
        assert send(m).code == 250
        assert m.stop(timeout=5) != 0 or m.leftovers(timeout=1) != []
    finally:
        m.kill()


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv")
@pytest.mark.parametrize("extra", [(), ("CAP_NET_RAW",)])
def test_tproxy_listener_needs_net_raw(root, upstream, extra):
    """A transparent listener's IP_TRANSPARENT is refused with the unit's
    set alone (said at start), and taken with CAP_NET_RAW added, as the
    unit's comment tells a TPROXY setup to do (not CAP_NET_ADMIN)."""
    m, p = start_bounded(root, upstream, UNIT_CAPS | set(extra))
    m.opts.append(("listener.mx.transparent", "yes"))
    m.start(ready=False)        # a direct connection gets 421 here, no 220
    try:
        assert wait_until(lambda: "mailwarden started" in m.stderr_text(), timeout=10), m.stderr_tail()
        log = m.stderr_text()
        warned = "listener mx: IP_TRANSPARENT" in log
        assert warned == (not extra), log[-1500:]
        assert m.stop() == 0
    finally:
        m.kill()                # a failed assertion above left it running (with its children)


SECCOMP_EXEC = r'''
import ctypes, os, sys
names = open(sys.argv[1]).read().split()
lib = ctypes.CDLL("libseccomp.so.2")
lib.seccomp_init.restype = ctypes.c_void_p
ctx = ctypes.c_void_p(lib.seccomp_init(ctypes.c_uint32(0x80000000)))    # SCMP_ACT_KILL_PROCESS
for n in names:
    nr = lib.seccomp_syscall_resolve_name(n.encode())
    if nr >= 0 and lib.seccomp_rule_add(ctx, ctypes.c_uint32(0x7fff0000), nr, 0) != 0:  # SCMP_ACT_ALLOW
        sys.exit("seccomp_rule_add %s" % n)
if lib.seccomp_load(ctx) != 0:
    sys.exit("seccomp_load")
os.execv(sys.argv[2], sys.argv[2:])
'''


def syscall_group(group, seen=None):
    """the system calls of a systemd group, nested groups expanded"""
    seen = seen or {group}
    out = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    names = set()
    for line in out.splitlines()[1:]:
        line = line.strip()
        if line.startswith("@") and line not in seen:
            seen.add(line)
            names |= syscall_group(line, seen)
        elif line and line[0] not in "#@":
            names.add(line)
    return names


@pytest.mark.skipif(shutil.which("setpriv") is None or shutil.which("systemd-analyze") is None,
                    reason="no setpriv or systemd-analyze")
def test_daemon_runs_within_the_units_syscall_filter(root, upstream, monkeypatch):
    """The unit's SystemCallFilter (@system-service), applied here with
    libseccomp, killing a process at any other call (the unit answers
    EPERM instead, SystemCallErrorNumber): `-t` (ExecStartPre) and the
    daemon with the rules (Hyperscan, PCRE2's JIT), Bayes, the plugin, a
    quarantined message, one spooled to a memfd, a reload and a stop."""
    import ctypes.util
    if ctypes.util.find_library("seccomp") is None:
        pytest.skip("no libseccomp")
    s = unit_settings()
    assert s["SystemCallFilter"] == ["@system-service"] and s["SystemCallErrorNumber"] == ["EPERM"]
    allowed = syscall_group("@system-service")
    # always allowed by systemd whatever the filter says
    allowed |= {"execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn"}
    listf = os.path.join(root, "syscalls")
    with open(listf, "w") as f:
        f.write(" ".join(sorted(allowed)))
    script = os.path.join(root, "seccomp_exec.py")
    with open(script, "w") as f:
        f.write(SECCOMP_EXEC)

    class Filtered(BoundedMailwarden):
        def command(self):
            return bounded(self.caps, ["/usr/bin/python3", script, listf] + Mailwarden.command(self))

    lib = var_lib(root)
    p = paths(root, lib)
    rules = ["-o", "rules_files=" + RULES]
    opts = spam_opts(user="nobody", filters="bayes rules", **p)
    with open(MW_BIN, "rb") as f:
        if b"libasan.so" in f.read():
            # LeakSanitizer stops the world with ptrace, which no service
            # filter allows; AddressSanitizer's own checks stay on
            monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    r = subprocess.run(bounded(UNIT_CAPS, ["/usr/bin/python3", script, listf, MW_BIN, "-t"] + rules +
                                          [a for k, v in opts for a in ("-o", "%s=%s" % (k, v))]),
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    m = Filtered(os.path.join(root, "mw"), upstream=upstream, opts=opts, args=rules,
                 listeners=[("mx", "127.0.0.1:%d" % low_port(), upstream.addr, None)])
    m.start()
    try:
        assert send(m).code == 250
        assert send(m, subject="buy viagra now").raw == b"250 2.0.0 Held for review\r\n"
        # past SPOOL_MEM_MAX: spooled in a memfd, handed to the scanner sealed
        c = m.client()
        c.ehlo()
        big = make_msg(subject="big", body=b"line of text\r\n" * 30000)
        assert c.transaction("sender@example.org", ["rcpt@example.net"], big)["final"].code == 250
        c.quit()
        m.signal(signal.SIGHUP)
        assert wait_until(lambda: "reload: scanner pid=" in m.stderr_text(), timeout=20), m.stderr_tail()
        assert send(m).code == 250
        assert len(upstream.messages) == 3
        log = m.stderr_text()
        assert "signal" not in log and "restarting" not in log, log[-2000:]
    finally:
        assert m.stop() == 0, m.stderr_tail()
        assert m.leftovers() == []


def test_root_release_goes_only_to_a_configured_upstream(root, upstream):
    """Without quarantine_release_upstream, a release goes to the upstream
    recorded with the entry, in a file the daemon's user may rewrite: root
    connected wherever it said (a loopback service, or past a firewall rule
    that matches the socket's owner).  Run as root with `user` set, the
    command now takes a recorded upstream only when a listener of the
    config names it."""
    lib = var_lib(root)
    q = os.path.join(lib, "quarantine")
    os.makedirs(q)
    os.chown(q, NOBODY, NOGROUP)
    day = make_entry(q, QID)
    rec = os.path.join(day, QID + ".json")
    with open(rec, "w") as f:
        f.write('{"id": "%s", "envelope": {"mail_from": "a@example.org", "rcpts": ["b@example.net"]}, '
                '"upstream": "%s"}' % (QID, upstream.addr))
    base = ["quarantine", "-o", "user=nobody", "-o", "quarantine_dir=" + q,
            "-o", "audit_log=" + os.path.join(lib, "audit.log")]
    r = run_mw(base + ["release", QID])
    assert r.returncode == 1 and b"no listener's upstream" in r.stderr, r
    assert upstream.messages == []
    r = run_mw(base + ["-o", "listener.in.listen=127.0.0.1:%d" % free_port(),
                       "-o", "listener.in.upstream=" + upstream.addr, "release", QID])
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: len(upstream.messages) == 1, 5)
