"""test_disk_full.py - what mailwarden does when a disk fills up or a write
fails: the client gets a temporary reply (never 250 for a message that is
not where it must be), the log says which file and why, nothing is left
half-written, and the daemon goes on by itself once there is space again.

A full disk is a small tmpfs mounted in the test's directory (the tests
run as root; they are skipped when mount is not permitted), filled to the
last byte with a filler file that is removed again to give the space back.
"""

import contextlib
import json
import os
import random
import resource
import subprocess

import pytest

from milterlib import RawMilter, milter_pid, reply_text
from mwlib import free_port, make_msg, read_audit, run_mw, wait_until
from quarantinelib import q_list, quarantine_opts, quarantine_one, spam_msg


class SmallFs:
    """A tmpfs of `size` mounted at path; fill() takes every free byte,
    free() gives them back."""

    def __init__(self, path, size):
        self.path = str(path)
        os.makedirs(self.path, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs",
                            self.path], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (%s): these tests need root and mount(2)"
                        % r.stderr.strip())
        self.filler = os.path.join(self.path, ".filler")

    def fill(self):
        """Write zeros until ENOSPC: the file system has no byte left."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (65536, 4096, 512, 64, 1):
                while True:
                    try:
                        if os.write(fd, b"\0" * chunk) == 0:
                            break
                    except OSError:
                        break
        finally:
            os.close(fd)
        st = os.statvfs(self.path)
        assert st.f_bavail == 0, "the tmpfs still has %d blocks" % st.f_bavail

    def free(self):
        os.unlink(self.filler)

    def resize(self, size):
        """More room without removing anything (remount)."""
        subprocess.run(["mount", "-o", "remount,size=%s" % size, self.path], check=True)

    def unmount(self):
        r = subprocess.run(["umount", self.path], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", self.path], capture_output=True)


@pytest.fixture
def small_fs(tmp_path):
    """Factory: small_fs(name, size="256k") -> a mounted SmallFs; every one
    is unmounted at the end, whether the test passed or not.  Requested
    before mw_factory, so it is torn down after the daemons stopped."""
    made = []

    def make(name, size="256k"):
        fs = SmallFs(tmp_path / name, size)
        made.append(fs)
        return fs
    yield make
    for fs in made:
        fs.unmount()


def stderr_of(m):
    with open(m.stderr_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def send(m, msg, rcpts=("rcpt@example.net",), frm="sender@example.org"):
    c = m.client()
    c.ehlo()
    r = c.transaction(frm, list(rcpts), msg)
    c.quit()
    return r


# --- the audit log ----------------------------------------------------------

def test_audit_log_full_disk_no_partial_line(small_fs, mw_factory, upstream):
    """A record that does not fit is lost whole, never in part: before,
    the first 4 KiB page's worth of a long record stayed in the file, and
    the next record, once there was space again, was glued onto it (one
    line that is not JSON, two records gone).  The message is delivered
    either way (the record is written after the client's reply), the loss
    is logged with the path and errno, and the recovery with the count."""
    fs = small_fs("auditfs")
    audit = os.path.join(fs.path, "audit.log")
    m = mw_factory(upstream, opts=[("audit_log", audit)])
    assert send(m, make_msg(subject="first"))["final"].code == 250
    assert wait_until(lambda: len(read_audit(audit)) == 1)
    size0 = os.path.getsize(audit)
    assert size0 < 2000          # the rest of its page is free for a partial write
    fs.fill()
    # a record of some 10 KB: 60 long recipients
    rcpts = ["recipient-with-a-rather-long-local-part-%03d@example.net" % i for i in range(60)]
    r = send(m, make_msg(subject="second"), rcpts=rcpts)
    assert r["final"].code == 250, r["final"]
    assert wait_until(lambda: "No space left on device" in stderr_of(m)), stderr_of(m)[-3000:]
    assert os.path.getsize(audit) == size0, "a partial record was left in the audit log"
    assert "audit log %s: write failed" % audit in stderr_of(m)
    assert len(upstream.messages) == 2
    fs.free()
    assert send(m, make_msg(subject="third"))["final"].code == 250
    assert wait_until(lambda: len(read_audit(audit)) == 2)
    recs = read_audit(audit)        # every line parses
    assert [x["subject"] for x in recs] == ["first", "third"]
    with open(audit, "rb") as f:
        assert f.read().endswith(b"\n")
    assert wait_until(lambda: "writing again; 1 record lost" in stderr_of(m))


# --- the stats file ---------------------------------------------------------

def test_stats_file_on_full_disk(small_fs, mw_factory, upstream):
    """The counters are a shared mapping of stats_file.  ftruncate makes
    a sparse file even on a full disk, and the first store into its page
    then needs a block: before, the master died of SIGBUS at start-up.
    Now the blocks are allocated before the mapping, and without them the
    daemon runs without counters, with a log line saying why."""
    fs = small_fs("statsfs")
    fs.fill()
    stats = os.path.join(fs.path, "stats")
    m = mw_factory(upstream, opts=[("stats_file", stats)])
    assert send(m, make_msg())["final"].code == 250
    assert len(upstream.messages) == 1
    err = stderr_of(m)
    assert "stats_file %s: running without counters: No space left on device" % stats in err, err[-3000:]


# --- the quarantine ---------------------------------------------------------

def q_files(qdir):
    out = []
    for root, _, files in os.walk(qdir):
        out += [os.path.join(root, f) for f in files if f != ".filler"]
    return out


def test_quarantine_full_disk_tempfails(small_fs, mw_factory, upstream):
    """A message to be quarantined where the quarantine has no room is not
    answered 250 and lost: 452 4.3.1, nothing half-written left behind (the
    message is larger than the whole file system: its .tmp- file fails
    part-way), a log line with the directory and errno; once there is room
    again the next one is held."""
    fs = small_fs("qfs")
    m = mw_factory(upstream, opts=quarantine_opts(("quarantine_dir", fs.path)))
    big = spam_msg(body="x" * 70 + "\r\n") + b"".join(b"%070d\r\n" % i for i in range(5000))
    r = quarantine_one(m, big)
    assert r.code == 452 and r.first.startswith("4.3.1"), r
    assert q_files(fs.path) == [], "left behind: %r" % q_files(fs.path)
    err = stderr_of(m)
    assert "quarantine store %s: No space left on device" % fs.path in err, err[-3000:]
    fs.fill()
    r = quarantine_one(m, spam_msg())
    assert r.code == 452, r
    assert q_files(fs.path) == []
    assert upstream.messages == []
    fs.free()
    r = quarantine_one(m, spam_msg())
    assert r.code == 250 and "Held for review" in r.text, r
    assert len([f for f in q_files(fs.path) if f.endswith(".eml")]) == 1
    recs = read_audit(m.audit_path)
    assert [x["action"] for x in recs] == ["tempfail", "tempfail", "quarantine"]


# --- the message spools: a write that fails (RLIMIT_FSIZE) -------------------

@pytest.fixture
def fsize_limit():
    """fsize_limit(n) -> a context in which processes started get
    RLIMIT_FSIZE n (inherited): the spools are memfds, which no disk
    fills, but a write past this limit fails as a write to a full disk
    does, and sends SIGXFSZ."""
    @contextlib.contextmanager
    def limit(n):
        old = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, old[1]))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, old)
    return limit


def big_msg(size, subject="big"):
    line = b"x" * 76 + b"\r\n"
    return make_msg(subject=subject, body=line * (size // len(line) + 1))


def test_spool_write_failure_tempfails(fsize_limit, mw_factory, upstream):
    """A spool write that fails (here: past RLIMIT_FSIZE) in the proxy,
    for DATA and for BDAT, and in the milter: 452 4.3.1 and a log line with
    the errno.  Before, SIGXFSZ killed the proxy or the milter in the middle
    of the message (the client saw the connection drop; the master started
    a new one); the milter, had it lived, would have done
    milter_default_action (here accept: unscanned) for its own spool."""
    mport = free_port()
    with fsize_limit(1024 * 1024):
        m = mw_factory(upstream, opts=[("milter_listen", "inet:%d@127.0.0.1" % mport),
                                       ("milter_default_action", "accept")])
    assert wait_until(lambda: milter_pid(m) is not None, 10.0)
    proxy = m.child_pid("proxy")
    big = big_msg(2 * 1024 * 1024)

    r = send(m, big)
    assert r["final"].code == 452 and r["final"].first.startswith("4.3.1"), r["final"]
    assert "File too large" in stderr_of(m)
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
    assert c.cmd("RCPT TO:<rcpt@example.net>").code == 250
    c.send(b"BDAT %d LAST\r\n" % len(big) + big)
    r = c.reply()
    assert r.code == 452 and r.first.startswith("4.3.1"), r
    # the write fails in a chunk before the last: the last one is refused
    assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
    assert c.cmd("RCPT TO:<rcpt@example.net>").code == 250
    c.send(b"BDAT %d\r\n" % len(big) + big)
    assert c.reply().code == 250
    c.send(b"BDAT 3 LAST\r\nx\r\n")
    r = c.reply()
    assert r.code == 452 and r.first.startswith("4.3.1"), r
    c.quit()
    assert send(m, make_msg())["final"].code == 250     # the same proxy goes on
    assert m.child_pid("proxy") == proxy
    assert len(upstream.messages) == 1

    mpid = milter_pid(m)
    with RawMilter(mport) as mc:
        mc.negotiate().connect()
        cmd, data, _ = mc.message(big)
        assert cmd == b"y" and reply_text(data).startswith("452 4.3.1"), (cmd, data)
        cmd, data, _ = mc.message(make_msg(), qid=b"QID2")
        assert cmd == b"c", (cmd, data)
    assert milter_pid(m) == mpid
    assert "milter: spool write: File too large" in stderr_of(m)


# --- the LMDB store ---------------------------------------------------------

@pytest.mark.parametrize("mode,code", [("open", 250), ("closed", 451)])
def test_lmdb_store_full_disk(small_fs, mw_factory, upstream, mode, code):
    """The disk under store_path is full (not the map): greylisting and
    rate limits do what store_failure says, the log names the file and the
    error, and the store writes again once there is room (no MDB_PANIC
    left behind that would need a restart)."""
    fs = small_fs("storefs", "1m")
    path = os.path.join(fs.path, "store.lmdb")
    m = mw_factory(upstream, opts=[("store", "lmdb"), ("store_path", path), ("store_failure", mode),
                                   ("filters", "greylist ratelimit"), ("greylist_delay", "0"),
                                   ("ratelimit_ip", "1000/1h")])
    assert send(m, make_msg(), frm="a@example.org")["final"].code == 250
    fs.fill()
    # new triplets need new pages: more than the first few fit in free ones
    codes = [send(m, make_msg(), frm="b%d@example.org" % i)["final"].code for i in range(20)]
    assert code in codes, codes
    assert set(codes) <= {250, code}, codes
    err = stderr_of(m)
    assert "store lmdb %s" % path in err and "No space left on device" in err, err[-3000:]
    fs.free()
    before = stderr_of(m).count("store unavailable")
    for i in range(5):
        assert send(m, make_msg(), frm="c%d@example.org" % i)["final"].code == 250
    assert stderr_of(m).count("store unavailable") == before, "the store did not recover"


def test_learn_full_disk(small_fs, tmp_path):
    """`mailwarden learn` into a store on a full disk: it stops with exit 1
    and says the file system is full (LMDB reports the short write as EIO,
    which reads as a failing disk); it no longer prints "store holds 0
    spam, 0 ham" for counts it never read.  The store stays usable: once
    there is room the next learn works on what was committed before."""
    fs = small_fs("learnfs")
    path = os.path.join(fs.path, "store.lmdb")
    files = []
    for i in range(40):
        words = " ".join("w%010x" % random.getrandbits(40) for _ in range(400))
        p = tmp_path / ("m%d.eml" % i)
        p.write_bytes(make_msg(subject="s%d" % i, body=words))
        files.append(str(p))
    r = run_mw(["learn", "-o", "store_path=%s" % path, "--spam"] + files)
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 1 and "Sanitizer" not in err, (out, err)
    assert "store lmdb %s" % path in err and "(its file system is full)" in err, err
    assert "store holds" not in out, out
    done = int(out.split("learned as spam ")[1].split(" ")[0])
    assert 0 < done < 40, out
    fs.resize("4m")
    r = run_mw(["learn", "-o", "store_path=%s" % path, "--spam", files[-1]])
    out = r.stdout.decode()
    assert r.returncode == 0, (out, r.stderr.decode())
    assert "store holds %d spam" % (done + 1) in out, out


# --- the rules cache ----------------------------------------------------------

def test_rules_cache_dir_full(small_fs, tmp_path):
    """A rules_cache_dir with no room: the rules load and hit all the same,
    no temporary file is left (the compiled shipped rules are larger than
    the file system: the write fails part-way), and a warning names the
    directory and the errno (before: nothing said why every start compiled
    again).  Once there is room the cache is written."""
    shipped = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "rules", "cf"))
    fs = small_fs("rulesfs", "64k")
    cf = tmp_path / "r.cf"
    cf.write_text("body T_LUNCH /\\bnoon\\b/\nscore T_LUNCH 3\n")
    msg = tmp_path / "m.eml"
    msg.write_bytes(make_msg(subject="lunch", body="See you at noon?"))

    def scan():
        r = run_mw(["scan", "-o", "filters=rules", "-o", "rules_files=", "-o", "rules_files=%s" % cf,
                    "-o", "rules_files=%s" % shipped, "-o", "rules_cache_dir=%s" % fs.path,
                    "-o", "dns_forwarder=127.0.0.1@9", str(msg)], timeout=120)
        assert r.returncode == 0, r.stderr.decode()
        names = {s["name"] for s in json.loads(r.stdout)["symbols"]}
        assert "T_LUNCH" in names, names
        return r.stderr.decode()

    err = scan()
    assert "rules_cache_dir %s: cannot write the compiled rules: No space left on device" % fs.path in err, err
    left = [f for f in os.listdir(fs.path) if f.endswith(".tmp")]
    assert left == [], left
    fs.resize("64m")
    err = scan()
    assert "cannot write" not in err, err
    assert any(f.startswith("rules-") and not f.endswith(".tmp") for f in os.listdir(fs.path))


# --- the quarantine command -----------------------------------------------------

def test_quarantine_command_audit_log_full(small_fs, mw_factory, upstream):
    """`mailwarden quarantine release` and `delete` must be audited: with
    the audit log on a full disk the release still happens (it cannot be
    undone), but the command says the record is missing and exits 1;
    before, it printed "released" and exited 0 with no record anywhere."""
    m = mw_factory(upstream, opts=quarantine_opts())
    for i in range(2):
        assert quarantine_one(m, spam_msg(subject="viagra %d" % i)).code == 250
    ids = [e["id"] for e in q_list(m)]
    assert len(ids) == 2
    fs = small_fs("clifs")
    audit = os.path.join(fs.path, "audit.log")
    open(audit, "wb").close()
    fs.fill()

    def q(*args):
        return run_mw(["quarantine", "-o", "quarantine_dir=%s" % m.quarantine_dir,
                       "-o", "audit_log=%s" % audit, "-o", "log_level=warning"] + list(args))

    r = q("release", ids[0])
    err = r.stderr.decode()
    assert r.returncode == 1 and "Sanitizer" not in err, (r.stdout, err)
    assert "%s released, but its audit record could not be written to %s: No space left on device" \
        % (ids[0], audit) in err, err
    assert len(upstream.messages) == 1
    r = q("delete", ids[1])
    err = r.stderr.decode()
    assert r.returncode == 1 and "Sanitizer" not in err, (r.stdout, err)
    assert "%s deleted, but its audit record could not be written" % ids[1] in err, err
    assert os.path.getsize(audit) == 0


def test_scan_output_full_disk(small_fs, tmp_path):
    """`mailwarden scan --output` onto a full disk: exit 1 with the path and
    errno, and no cut-off copy of the message left to pass for the whole
    one (before: the first 4 KiB or none of it stayed, under the name
    asked for)."""
    fs = small_fs("scanfs", "64k")
    msg = tmp_path / "m.eml"
    msg.write_bytes(big_msg(200 * 1024))
    out = os.path.join(fs.path, "out.eml")
    r = run_mw(["scan", "-o", "filters=", "-o", "dns_forwarder=127.0.0.1@9", "--output", out, str(msg)])
    err = r.stderr.decode()
    assert r.returncode == 1 and "Sanitizer" not in err, err
    assert "--output %s: No space left on device" % out in err, err
    assert not os.path.exists(out)


def test_audit_failure_tempfail(small_fs, mw_factory, upstream):
    """audit_failure = tempfail: once a record could not be written, new
    messages get 452 4.3.1 (the proxy at DATA, the milter at MAIL) until a
    record is written again; the refusals' own records are what finds out
    that there is room again.  The message whose record failed first was
    answered before its record was written: that one is the loss."""
    fs = small_fs("auditfs2")
    audit = os.path.join(fs.path, "audit.log")
    mport = free_port()
    m = mw_factory(upstream, opts=[("audit_log", audit), ("audit_failure", "tempfail"),
                                   ("milter_listen", "inet:%d@127.0.0.1" % mport)])
    assert wait_until(lambda: milter_pid(m) is not None, 10.0)
    assert send(m, make_msg(subject="one"))["final"].code == 250
    assert wait_until(lambda: len(read_audit(audit)) == 1)
    # a JSON line that fills the file's last page: from now on no write fits
    with open(audit, "ab") as f:
        n = 4096 - os.path.getsize(audit) % 4096
        f.write(b'{"pad":"' + b"x" * (n - 11) + b'"}\n')
    assert os.path.getsize(audit) % 4096 == 0
    fs.fill()
    assert send(m, make_msg(subject="two"))["final"].code == 250     # its record is lost
    assert wait_until(lambda: "audit log %s: write failed" % audit in stderr_of(m))
    r = send(m, make_msg(subject="three"))
    assert r["data"].code == 452 and r["data"].first.startswith("4.3.1"), r
    with RawMilter(mport) as mc:
        mc.negotiate().connect()
        assert mc.message(make_msg(), qid=b"Q1")[0] == b"c"         # the milter's first record fails
        cmd, data = mc.mail(qid=b"Q2")
        assert cmd == b"y" and reply_text(data).startswith("452 4.3.1"), (cmd, data)
    fs.free()
    # the proxy's refusal record (at QUIT) is written now; the next one passes
    assert send(m, make_msg(subject="four"))["data"].code == 452
    assert wait_until(lambda: "writing again" in stderr_of(m))
    assert send(m, make_msg(subject="five"))["final"].code == 250
    with RawMilter(mport) as mc:
        mc.negotiate().connect()
        cmd, data = mc.mail(qid=b"Q3")            # this refusal's record is written
        assert cmd == b"y", (cmd, data)
        assert mc.message(make_msg(), qid=b"Q4")[0] == b"c"
    subjects = [x.get("subject") for x in read_audit(audit) if x.get("listener") != "milter"]
    assert "one" in subjects and "five" in subjects and "two" not in subjects, subjects
    assert len(upstream.messages) == 3
