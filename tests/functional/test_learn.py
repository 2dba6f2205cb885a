"""test_learn.py - `mailwarden learn` as an administrator uses it (session
19, from review rv-learn): files that are not messages (FIFOs, links a
user planted, a Maildir's and a quarantine's other files, pictures,
empty files), an mbox of several messages, a folder named through a
link, more files than 254, learn's own --help, and a message the store
cannot learn failing alone.  The root tests are skipped unless run as
root with a "nobody" user."""

import os
import pwd
import re
import shutil
import subprocess
import tempfile

import pytest

from mwlib import make_msg, preload_shim, run_mw  # noqa: E402
from storelib import Lmdb, bayes_seen_key  # noqa: E402

DNS = ("dns_forwarder", "127.0.0.1@9")


def learn(opts, *args, timeout=60):
    cmd = ["learn"]
    for k, v in list(opts) + [DNS]:
        cmd += ["-o", "%s=%s" % (k, v)]
    r = run_mw(cmd + list(args), timeout=timeout)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def msg(i, subject="offer", words="cheap pills viagra click here now winner prize"):
    return make_msg(subject="%s %d" % (subject, i), body="%s number%d" % (words, i),
                    msgid="<rvlearn-%s-%d@test.example>" % (subject.replace(" ", "_"), i))


def holds(out):
    m = re.search(r"store holds (\d+) spam, (\d+) ham", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def learned(out):
    m = re.search(r"learned as (?:spam|ham) (\d+) message", out)
    return int(m.group(1)) if m else None


# --- 1. FIFOs: learn waits for a writer for ever -------------------------

def test_fifo_named_on_the_command_line_does_not_hang(tmp_path):
    """A FIFO among the files (a user's Junk folder globbed by a root cron
    job: `learn --spam /home/*/Maildir/.Junk/cur/*`) makes open() wait for
    a writer for ever: the cron job never ends and nothing after it runs.
    The quarantine commands refuse FIFOs since session 16; learn does not."""
    store = [("store_path", str(tmp_path / "s.lmdb"))]
    (tmp_path / "a.eml").write_bytes(msg(1))
    os.mkfifo(tmp_path / "b.eml")
    try:
        rc, out, err = learn(store, "--spam", str(tmp_path / "a.eml"), str(tmp_path / "b.eml"), timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("mailwarden learn hung on a FIFO named among its files (still waiting after 15 s)")
    assert rc == 1 and "1 failed" in out, (rc, out, err)
    assert "b.eml: not a regular file or a directory" in err, err
    # in a folder walked: the same, and the walk goes on
    (tmp_path / "c.eml").write_bytes(msg(2))
    rc, out, err = learn(store, "--spam", str(tmp_path), timeout=15)
    assert rc == 1 and "1 failed" in out and holds(out) == (2, 0), (rc, out, err)


# --- 2./3. root follows links the user planted ---------------------------

def _root_setup():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        nb = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    base = tempfile.mkdtemp(prefix="rvlearn-")
    os.chmod(base, 0o755)
    store_dir = os.path.join(base, "store")
    folder = os.path.join(base, "folder")      # a mail user's folder, or the quarantine
    os.mkdir(store_dir)
    os.mkdir(folder)
    os.chown(store_dir, nb.pw_uid, nb.pw_gid)
    os.chown(folder, nb.pw_uid, nb.pw_gid)
    secret = os.path.join("/root", "rvlearn-secret-%d.txt" % os.getpid())
    with open(secret, "wb") as f:
        f.write(b"Subject: root only\r\n\r\nROOTONLY-SECRET-MARKER-7f3a9 root:$6$hash:19000:0:99999:7:::\r\n")
    os.chmod(secret, 0o600)
    opts = [("store_path", os.path.join(store_dir, "s.lmdb")), ("user", "nobody")]
    return base, folder, store_dir, secret, nb, opts


def _store_bytes(store_dir):
    data = b""
    for n in os.listdir(store_dir):
        with open(os.path.join(store_dir, n), "rb") as f:
            data += f.read()
    return data


def _user_file(nb, path, data):
    """a message of the user's own in their folder (root writes it, as a
    delivery would, and gives it to the user)"""
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, nb.pw_uid, nb.pw_gid)


def _as_nobody(nb, fn):
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(nb.pw_gid)
            os.setuid(nb.pw_uid)
            fn()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, st = os.waitpid(pid, 0)
    assert os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0


def test_root_learn_of_a_users_files_does_not_follow_their_links():
    """`learn` as root (user = nobody) of the files of a folder another
    user owns (`mailwarden learn --spam /var/lib/mailwarden/quarantine/DAY/*.eml`,
    the copy README tells to relearn from, or a user's Junk folder) follows a
    symlink that user planted: root reads the root-only target and its first
    3,000 bytes are kept in the store as the message's example
    (bayes:ex:<id>), which the daemon's user reads.  README "Links and root"
    treats the daemon user's directories as hostile for every other root
    command (O_NOFOLLOW, regular files only)."""
    base, folder, store_dir, secret, nb, opts = _root_setup()
    try:
        _user_file(nb, os.path.join(folder, "1.eml"), msg(1))
        _as_nobody(nb, lambda: os.symlink(secret, os.path.join(folder, "2.eml")))
        files = sorted(os.path.join(folder, n) for n in os.listdir(folder))   # the shell's glob
        rc, out, err = learn(opts, "--spam", *files)
        leaked = b"ROOTONLY-SECRET-MARKER-7f3a9" in _store_bytes(store_dir)
        assert not leaked, ("root's learn followed the user's symlink to a root-only file "
                            "and stored its bytes in the daemon user's store", out, err)
        # said and counted as a failure; the user's real message learned
        assert rc == 1 and "2.eml: a symbolic link in a directory of uid" in err, (rc, out, err)
        assert learned(out) == 1 and "1 failed" in out, out
    finally:
        os.unlink(secret)
        shutil.rmtree(base, True)


def test_root_follows_no_link_where_others_write():
    """Root follows a link only in a directory only root can write: not in
    one others may write even if root owns it (/tmp, a group's /var/mail:
    the link could be anyone's), and reads no file of another owner with
    two names in a user's folder (a hard link, where
    fs.protected_hardlinks is off)."""
    base, folder, store_dir, secret, nb, opts = _root_setup()
    try:
        shared = os.path.join(base, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o1777)
        os.symlink(secret, os.path.join(shared, "1.eml"))
        mine = os.path.join(base, "root-only.eml")          # on the folder's file system
        shutil.copyfile(secret, mine)
        os.chmod(mine, 0o600)
        os.link(mine, os.path.join(folder, "2.eml"))        # root makes it, as a user would
        rc, out, err = learn(opts, "--spam", os.path.join(shared, "1.eml"), os.path.join(folder, "2.eml"))
        assert b"ROOTONLY-SECRET-MARKER-7f3a9" not in _store_bytes(store_dir), (out, err)
        assert rc == 1 and "2 failed" in out, (rc, out, err)
        assert "1.eml: a symbolic link in a directory of uid 0, mode 1777: not followed" in err, err
        assert ("2.eml: a file of uid 0 with 2 names in a directory of uid %d, mode 755: not read"
                % nb.pw_uid in err), err
    finally:
        os.unlink(secret)
        shutil.rmtree(base, True)


SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* the user's move in the window between nftw's lstat and learn's open:
 * victim.eml (a regular file when lstat saw it) becomes a symlink */
static void race(const char *p)
{
	const char *swap = getenv("RV_SWAP"), *victim = getenv("RV_VICTIM");
	size_t n = strlen(p);
	/* by its path, or by its name in the folder (openat) */
	if (swap && victim && (strcmp(p, "victim.eml") == 0
	    || (n >= 11 && strcmp(p + n - 11, "/victim.eml") == 0)))
		rename(swap, victim);
}
#define WRAP(name) \
int name(const char *p, int fl, ...) { \
	static int (*real)(const char *, int, ...); \
	va_list ap; mode_t m; \
	va_start(ap, fl); m = va_arg(ap, mode_t); va_end(ap); \
	if (!real) real = dlsym(RTLD_NEXT, #name); \
	race(p); return real(p, fl, m); }
#define WRAPAT(name) \
int name(int d, const char *p, int fl, ...) { \
	static int (*real)(int, const char *, int, ...); \
	va_list ap; mode_t m; \
	va_start(ap, fl); m = va_arg(ap, mode_t); va_end(ap); \
	if (!real) real = dlsym(RTLD_NEXT, #name); \
	race(p); return real(d, p, fl, m); }
WRAP(open) WRAP(open64) WRAPAT(openat) WRAPAT(openat64)
"""


def test_root_walk_of_a_users_folder_reads_no_link_swapped_in(monkeypatch, tmp_path):
    """The directory walk skips symlinks (FTW_PHYS, S_ISREG of nftw's lstat)
    but then opens the file by name, following links: a user who swaps a
    message for a symlink between the two (a loop of rename() over a folder
    of thousands of messages wins it) has root read what it points to.  The
    shim makes the swap at the open, deterministically.  (A FIFO swapped in
    the same way hangs the walk, as in test 1.)"""
    base, folder, store_dir, secret, nb, opts = _root_setup()
    try:
        for i in range(3):
            _user_file(nb, os.path.join(folder, "%d.eml" % i), msg(i))
        _user_file(nb, os.path.join(folder, "victim.eml"), msg(9))
        swap = os.path.join(base, "swap-link")
        os.symlink(secret, swap)
        preload_shim(monkeypatch, tmp_path, "race", SHIM)
        monkeypatch.setenv("RV_SWAP", swap)
        monkeypatch.setenv("RV_VICTIM", os.path.join(folder, "victim.eml"))
        rc, out, err = learn(opts, "--spam", folder)
        monkeypatch.delenv("LD_PRELOAD")
        assert os.path.islink(os.path.join(folder, "victim.eml")), "the shim did not swap"
        leaked = b"ROOTONLY-SECRET-MARKER-7f3a9" in _store_bytes(store_dir)
        assert not leaked, ("root's walk opened a symlink swapped in after its lstat and stored "
                            "the root-only target in the daemon user's store", out, err)
        assert rc == 1 and learned(out) == 3 and "1 failed" in out, (rc, out, err)
    finally:
        os.unlink(secret)
        shutil.rmtree(base, True)


# --- review rv-today4: what root reads behind an admin's link, and where
# others write (each failed on main 339577c) -------------------------------

MARK = b"ROOTONLY-SECRET-MARKER-7f3a9"


def _secret_dir(secret):
    d = secret + ".d"
    os.mkdir(d, 0o700)
    shutil.copyfile(secret, os.path.join(d, "mail.eml"))
    os.chmod(os.path.join(d, "mail.eml"), 0o600)
    return d


def test_admin_link_to_a_users_folder_follows_no_link_of_the_users():
    """README: root follows "an admin's link, or the argument /srv/corpus/spam
    that is one".  The admin's link (in a root-only directory) points into a
    user's tree; openat() without O_NOFOLLOW let the kernel resolve the whole
    target path, so a symlink the USER planted on that path (their Junk
    folder replaced by a link to a root-only directory) was followed too,
    and the root-only file ended up in the daemon user's store."""
    base, folder, store_dir, secret, nb, opts = _root_setup()
    sdir = _secret_dir(secret)
    try:
        rootonly = os.path.join(base, "corpus")       # root 0755: "only root writes"
        os.mkdir(rootonly, 0o755)
        os.symlink(os.path.join(folder, "Junk"), os.path.join(rootonly, "spam"))   # admin's link
        _as_nobody(nb, lambda: os.symlink(sdir, os.path.join(folder, "Junk")))     # user's move
        rc, out, err = learn(opts, "--spam", os.path.join(rootonly, "spam"))
        assert MARK not in _store_bytes(store_dir), (
            "root followed the user's link behind the admin's link", rc, out, err)
        assert rc == 1 and "1 failed" in out, (rc, out, err)
        assert ("corpus/spam: Junk is a symbolic link in a directory of uid %d, mode 755: not followed"
                % nb.pw_uid in err), err
        # the user's own folder there (their files) is what the admin's link learns
        os.unlink(os.path.join(folder, "Junk"))
        os.mkdir(os.path.join(folder, "Junk"))
        os.chown(os.path.join(folder, "Junk"), nb.pw_uid, nb.pw_gid)
        for i in range(2):
            _user_file(nb, os.path.join(folder, "Junk", "%d.eml" % i), msg(i))
        rc, out, err = learn(opts, "--spam", os.path.join(rootonly, "spam"))
        assert rc == 0 and learned(out) == 2, (rc, out, err)
    finally:
        os.unlink(secret)
        shutil.rmtree(sdir, True)
        shutil.rmtree(base, True)


def test_admin_link_to_a_users_file_follows_no_link_of_the_users():
    """The same for one file: the admin's link corpus/x.eml -> folder/x.eml,
    the user replaces folder/x.eml by a link to a root-only file; and an
    admin's link to a link of the admin's own is followed (hop by hop)."""
    base, folder, store_dir, secret, nb, opts = _root_setup()
    try:
        rootonly = os.path.join(base, "corpus")
        os.mkdir(rootonly, 0o755)
        os.symlink(os.path.join(folder, "x.eml"), os.path.join(rootonly, "x.eml"))
        _as_nobody(nb, lambda: os.symlink(secret, os.path.join(folder, "x.eml")))
        rc, out, err = learn(opts, "--spam", os.path.join(rootonly, "x.eml"))
        assert MARK not in _store_bytes(store_dir), (
            "root followed the user's link behind the admin's link", rc, out, err)
        assert rc == 1 and "x.eml: x.eml is a symbolic link in a directory of uid %d" % nb.pw_uid in err, (
            rc, out, err)
        # root's links, relative and absolute, to a root-only file: read
        with open(os.path.join(rootonly, "real.eml"), "wb") as f:
            f.write(msg(5))
        os.mkdir(os.path.join(rootonly, "sub"), 0o700)
        os.symlink("../real.eml", os.path.join(rootonly, "sub", "rel.eml"))
        os.symlink(os.path.join(rootonly, "sub", "rel.eml"), os.path.join(rootonly, "abs.eml"))
        rc, out, err = learn(opts, "--spam", os.path.join(rootonly, "abs.eml"))
        assert rc == 0 and learned(out) == 1, (rc, out, err)
    finally:
        os.unlink(secret)
        shutil.rmtree(base, True)


def test_root_owned_file_with_one_name_in_a_users_folder_is_not_read():
    """The hard-link rule refused "a file of another owner with more than one
    name" in a user's folder.  With fs.protected_hardlinks off (the case the
    rule exists for) a user links /etc/shadow into their folder; passwd(1)
    later replaces /etc/shadow by rename, and the user's name is then the
    old inode's only name (nlink 1, owner root, mode 0600): it was read,
    learned, its text kept as the example in the daemon user's store.  Root
    makes the link here as the user would, then drops the original's name.
    A file of another user than the folder's, one name, is not read either
    (moved there, or a link whose original is gone); the user's own is."""
    base, folder, store_dir, secret, nb, opts = _root_setup()
    try:
        orig = os.path.join(base, "shadow")         # same file system as folder
        shutil.copyfile(secret, orig)
        os.chmod(orig, 0o600)
        os.link(orig, os.path.join(folder, "2.eml"))  # the user's hard link
        os.unlink(orig)                              # the original replaced (rename over it)
        _user_file(nb, os.path.join(folder, "1.eml"), msg(1))
        other = os.path.join(folder, "3.eml")
        with open(other, "wb") as f:
            f.write(msg(3))
        os.chown(other, 54321, 54321)               # another user's, one name
        rc, out, err = learn(opts, "--spam", folder)
        assert MARK not in _store_bytes(store_dir), (
            "root read a root-only file (one name) in the user's folder", rc, out, err)
        assert rc == 1 and learned(out) == 1 and "2 failed" in out, (rc, out, err)
        assert "2.eml: a file of uid 0 with 1 name in a directory of uid %d, mode 755: not read" % nb.pw_uid in err, err
        assert "3.eml: a file of uid 54321 with 1 name in a directory of uid %d" % nb.pw_uid in err, err
    finally:
        os.unlink(secret)
        shutil.rmtree(base, True)


def test_users_own_hard_links_in_their_folder_are_read():
    """A user's own file with more names in the user's own folder is read:
    Dovecot copies a message between Maildir folders as a hard link."""
    base, folder, store_dir, secret, nb, opts = _root_setup()
    try:
        _user_file(nb, os.path.join(folder, "1.eml"), msg(1))
        os.link(os.path.join(folder, "1.eml"), os.path.join(folder, "copy.eml"))
        rc, out, err = learn(opts, "--spam", os.path.join(folder, "copy.eml"))
        assert rc == 0 and learned(out) == 1, (rc, out, err)
    finally:
        os.unlink(secret)
        shutil.rmtree(base, True)


def test_root_owned_hard_link_in_a_shared_root_directory_is_not_read():
    """In a directory root owns but others write (/tmp, /var/mail root:mail
    2775 or 1777) links were refused, but the hard-link rule compared the
    file's owner with the directory's (both 0): a user's hard link to a
    root-only file there (2 names, protected_hardlinks off) was read.  Now
    root's files are not read there at all (one name: the original renamed
    over), another user's only with one name; a user's mailbox is read."""
    base, folder, store_dir, secret, nb, opts = _root_setup()
    try:
        shared = os.path.join(base, "varmail")
        os.mkdir(shared)
        os.chmod(shared, 0o1777)
        mine = os.path.join(base, "root-only.eml")
        shutil.copyfile(secret, mine)
        os.chmod(mine, 0o600)
        os.link(mine, os.path.join(shared, "alice"))      # made by a user
        os.link(mine, os.path.join(shared, "bob"))
        os.unlink(mine)                                   # bob: 2 names, then alice: 1
        os.unlink(os.path.join(shared, "bob"))
        rc, out, err = learn(opts, "--spam", os.path.join(shared, "alice"))
        assert MARK not in _store_bytes(store_dir), (
            "root read a hard link to a root-only file in a directory others write", rc, out, err)
        assert rc == 1 and "alice: a file of uid 0 with 1 name in a directory of uid 0, mode 1777: not read" in err, (
            rc, out, err)
        # a user's mailbox there (theirs, one name): read; with two names not
        box = os.path.join(shared, "nobody")
        _user_file(nb, box, b"From a@example.org Mon Jan  2 10:00:00 2023\n" + msg(7).replace(b"\r\n", b"\n"))
        rc, out, err = learn(opts, "--spam", box)
        assert rc == 0 and learned(out) == 1, (rc, out, err)
        os.link(box, os.path.join(base, "second-name"))
        rc, out, err = learn(opts, "--forget", box)
        assert rc == 1 and "nobody: a file of uid %d with 2 names in a directory of uid 0" % nb.pw_uid in err, (
            rc, out, err)
    finally:
        os.unlink(secret)
        shutil.rmtree(base, True)


# --- 4. a Maildir is learned as a plain tree -----------------------------

def test_maildir_learns_its_messages_only(tmp_path):
    """`learn --ham ~/Maildir` walks everything that does not start with a
    dot: the Maildir++ subfolders (.Junk/cur/... is learned as HAM with its
    parent), tmp/ (deliveries under way), messages flagged deleted (:2,ST),
    and the IMAP server's own files (dovecot-uidlist, dovecot.index*,
    subscriptions, maildirfolder), each counted as a ham message.  sa-learn
    (ArchiveIterator) takes a directory with cur/new/tmp as one Maildir and
    reads cur/ and new/ only, skipping dot files and T-flagged messages."""
    store = [("store_path", str(tmp_path / "s.lmdb"))]
    md = tmp_path / "Maildir"
    for d in ("cur", "new", "tmp", ".Junk/cur", ".Junk/new", ".Junk/tmp", ".Trash/cur", ".Trash/new",
              ".Trash/tmp"):
        (md / d).mkdir(parents=True)
    (md / "cur" / "1700000000.M1P1.host:2,S").write_bytes(msg(1, "ham", "minutes of the meeting about the "
                                                               "build system"))
    (md / "new" / "1700000001.M2P1.host").write_bytes(msg(2, "ham", "the patch fixes the parser"))
    (md / "cur" / "1700000002.M3P1.host:2,ST").write_bytes(msg(3, "deleted spam"))   # trashed
    (md / "tmp" / "1700000003.M4P1.host").write_bytes(msg(4, "being delivered"))
    for i in range(3):
        (md / ".Junk" / "cur" / ("17000001%d.M1P1.host:2,S" % i)).write_bytes(msg(i, "junk"))
    (md / ".Trash" / "cur" / "1700000200.M1P1.host:2,ST").write_bytes(msg(7, "trash"))
    (md / "dovecot-uidlist").write_bytes(b"3 V1700000000 N4 G0123456789abcdef0123456789abcdef\n"
                                         b"1 :1700000000.M1P1.host\n")
    (md / "dovecot.index.log").write_bytes(os.urandom(4096))
    (md / "dovecot.index.cache").write_bytes(b"\x00" * 8192 + os.urandom(512))
    (md / "dovecot-keywords").write_bytes(b"0 $Junk\n1 NonJunk\n")
    (md / "subscriptions").write_bytes(b"V\t2\n\nJunk\nTrash\n")
    (md / ".Junk" / "maildirfolder").write_bytes(b"")
    rc, out, err = learn(store, "--ham", str(md))
    assert holds(out) == (0, 2), ("a Maildir of 2 ham messages (cur, new) counted as %r ham: its "
                                  "Junk/Trash subfolders, tmp/, deleted messages and Dovecot's "
                                  "files learned as ham" % (holds(out),), out, err)
    assert rc == 0 and "skipped (" not in out, (rc, out, err)
    # a subfolder named is a Maildir of its own (its maildirfolder file not a message)
    rc, out, err = learn(store, "--spam", str(md / ".Junk"))
    assert rc == 0 and holds(out) == (3, 2) and "skipped (" not in out, (rc, out, err)


def test_quarantine_day_learns_no_json_records(tmp_path):
    """README tells to relearn from the quarantine's .eml; learning a
    quarantine day (`learn --spam quarantine/20240601`) also learns every
    ID.json (envelope and scan results: symbol names, scores) as a spam
    message."""
    store = [("store_path", str(tmp_path / "s.lmdb"))]
    day = tmp_path / "q" / "20240601"
    day.mkdir(parents=True)
    for i in range(2):
        (day / ("ID%d.eml" % i)).write_bytes(msg(i))
        (day / ("ID%d.json" % i)).write_bytes(
            b'{"id":"ID%d","from":"x@example.org","rcpt":["u@example.net"],"score":9.5,'
            b'"symbols":[{"name":"BAYES_99","score":6.0},{"name":"MW_FREE_OFFER","score":2.0}]}\n' % i)
    rc, out, err = learn(store, "--spam", str(day))
    assert holds(out) == (2, 0), ("2 quarantined messages counted as %r: the .json records learned as "
                                  "spam messages" % (holds(out),), out, err)
    assert rc == 0 and "skipped (" not in out, (rc, out, err)
    # a JSON file alone is no message either: skipped, said
    rc, out, err = learn(store, "--spam", str(day / "ID0.json"))
    assert rc == 0 and "1 skipped (not mail" in out and "ID0.json: not a message" in err, (rc, out, err)


# --- 5. what is not mail is learned as mail ------------------------------

def test_files_that_are_not_mail_are_not_learned(tmp_path):
    """An empty file and a binary file (an attachment saved beside the
    messages, a core file, `learn --spam ~/spam` pointed one level too
    high) are each learned and counted as a spam message: a thousand tokens
    of noise, and the counts that bayes_min_spam/bayes_min_ham wait for
    grow with them.  rspamd does not learn a message of fewer than
    min_tokens (11) tokens; here nothing is refused."""
    store = [("store_path", str(tmp_path / "s.lmdb"))]
    (tmp_path / "empty.eml").write_bytes(b"")
    (tmp_path / "core").write_bytes(os.urandom(20000))
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(20000))
    rc, out, err = learn(store, "--spam", str(tmp_path / "empty.eml"), str(tmp_path / "core"),
                         str(tmp_path / "photo.jpg"))
    assert holds(out) == (0, 0), ("three files that are no mail counted as %r spam messages"
                                  % (holds(out),), out, err)
    # skipped and said, not failed: one stray file must not fail a cron job
    assert rc == 0 and "3 skipped (not mail, or fewer than 11 tokens)" in out, (rc, out, err)
    assert "empty.eml: empty: skipped" in err and "photo.jpg: not a message" in err, err
    # a message of a few words: under rspamd's min_tokens (11)
    (tmp_path / "short.eml").write_bytes(b"Subject: hi\n\nok\n")
    rc, out, err = learn(store, "--spam", str(tmp_path / "short.eml"))
    assert rc == 0 and holds(out) == (0, 0) and "fewer than 11: skipped" in err, (rc, out, err)


# --- 6. an mbox is one message --------------------------------------------

def test_mbox_with_several_messages_is_not_one_message(tmp_path):
    """The man page allows an mbox "From " line; an mbox file of 5 messages
    is learned as ONE message (under the first one's Message-ID, all 5
    bodies' tokens counted once), exit 0.  It should be split (sa-learn
    --mbox) or refused with a failure; 'learned as spam 1 message(s)' with
    exit 0 tells a cron job all is well."""
    store = [("store_path", str(tmp_path / "s.lmdb"))]
    box = b""
    for i in range(5):
        box += (b"From sender%d@example.org Mon Jan  2 10:00:0%d 2023\n" % (i, i)
                + msg(i).replace(b"\r\n", b"\n") + b"\n")
    (tmp_path / "Junk.mbox").write_bytes(box)
    rc, out, err = learn(store, "--spam", str(tmp_path / "Junk.mbox"))
    assert holds(out) == (5, 0) and rc == 0, ("an mbox of 5 messages learned as %r, exit %d"
                                              % (holds(out), rc), out, err)
    # each one under its own Message-ID: forgetting one message file of
    # the five forgets one
    (tmp_path / "one.eml").write_bytes(msg(3))
    rc, out, err = learn(store, "--forget", str(tmp_path / "one.eml"))
    assert rc == 0 and "forgot 1 message(s)" in out and holds(out) == (4, 0), (rc, out, err)


# --- 7. links to folders: nothing learned, success -----------------------

def test_folder_given_as_a_symlink_is_learned(tmp_path):
    """`learn --spam /srv/corpus/spam` where that is a symlink to the real
    folder (or a folder of symlinks, as mairix and notmuch search results
    are) learns nothing and exits 0: 'learned as spam 0 message(s) ... 0
    failed'.  sa-learn follows the link (stat) and learns the messages; at
    the very least a cron job must see a failure."""
    store = [("store_path", str(tmp_path / "s.lmdb"))]
    real = tmp_path / "real"
    real.mkdir()
    for i in range(3):
        (real / ("%d.eml" % i)).write_bytes(msg(i))
    os.symlink(real, tmp_path / "spam")
    rc, out, err = learn(store, "--spam", str(tmp_path / "spam"))
    assert learned(out) == 3 and rc == 0, ("a folder named through a symlink: %r learned, exit %d"
                                           % (learned(out), rc), out, err)
    results = tmp_path / "results"                # mairix/notmuch style folder of links
    results.mkdir()
    for i in range(3):
        os.symlink(real / ("%d.eml" % i), results / ("%d.eml" % i))
    rc, out, err = learn(store + [("bayes_chars", "no")], "--forget", str(results))
    assert "forgot 3 message(s)" in out and rc == 0, ("a folder of links: %r, exit %d" % (out, rc), err)


# --- 8. small ones --------------------------------------------------------

def test_many_files_on_the_command_line(tmp_path):
    """`learn --spam Junk/cur/*` of 300 files: 'too many arguments (give
    directories instead of files)', exit 1, nothing learned.  The limit
    (254) is in neither the man page nor README; sa-learn takes any number
    (and -f FILE for a list)."""
    store = [("store_path", str(tmp_path / "s.lmdb")), ("bayes_chars", "no")]
    files = []
    for i in range(300):
        p = tmp_path / ("%03d.eml" % i)
        p.write_bytes(msg(i))
        files.append(str(p))
    rc, out, err = learn(store, "--spam", *files)
    assert rc == 0 and learned(out) == 300, (rc, out, err)


def test_learn_help_is_learns_help():
    """`mailwarden learn --help` prints the general usage (main.c's
    parse_cli catches --help first); learn's own text, the only place
    --no-train is explained on the command line, is printed only after a
    usage error."""
    r = run_mw(["learn", "--help"])
    assert r.returncode == 0 and b"--no-train:" in r.stdout, r.stdout.decode()


# --- a message the store cannot learn is one failure, not the store's ----

def test_a_message_that_cannot_be_learned_fails_alone(tmp_path):
    """bayes_learn gave -1 for a mark that holds no class (a damaged store,
    another program's key) as for a store that is gone: learn said "store
    lmdb unavailable, stopped" and learned none of the messages after it.
    The store answers: that message fails, the others are learned."""
    store = [("store_path", str(tmp_path / "s.lmdb")), ("bayes_chars", "no")]
    (tmp_path / "first.eml").write_bytes(msg(100))
    rc, out, err = learn(store, "--spam", str(tmp_path / "first.eml"))
    assert rc == 0 and holds(out) == (1, 0), (rc, out, err)
    d = tmp_path / "d"
    d.mkdir()
    for i in range(3):
        (d / ("%d.eml" % i)).write_bytes(msg(i))
    Lmdb(store[0][1]).put(bayes_seen_key("<rvlearn-offer-0@test.example>"), b"x", 0)
    rc, out, err = learn(store, "--spam", str(d))
    assert "unavailable" not in err, err
    assert rc == 1 and learned(out) == 2 and "1 failed" in out and holds(out) == (3, 0), (rc, out, err)
    assert "0.eml: not learned" in err and "not a class" in err, err


# --- 7. hostile file names on root's terminal (session 20) ----------------

# bytes a terminal acts on: C0 (ESC, BEL, newline), DEL, C1 (U+009B is
# CSI in UTF-8 too), bidi overrides (U+202E reverses the rest of the line)
_ACTING = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]|"
                     rb"\xe2\x80[\x8e\x8f]|\xd8\x9c")


def _learn_bytes(opts, *args, timeout=60):
    cmd = ["learn"]
    for k, v in list(opts) + [DNS]:
        cmd += ["-o", "%s=%s" % (k, v)]
    r = run_mw(cmd + list(args), timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def test_hostile_file_names_are_escaped_on_the_terminal(tmp_path):
    """`mailwarden learn` run by root over a user's Maildir said each file
    name it skipped or could not read on root's terminal as it was: a name
    holding ESC sequences (retitle the window, clear the screen), a C1 CSI,
    a bidi override or a newline (a forged "mailwarden learn: ..." line)
    acted there.  Each is said escaped now (log_esc: \\xHH)."""
    store = [("store_path", str(tmp_path / "s.lmdb"))]
    md = tmp_path / "Maildir"
    for d in ("cur", "new", "tmp"):
        (md / d).mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    cur = os.fsencode(str(md / "cur"))
    esc_name = b"\x1b]0;owned\x07\x1b[2J1700000000.M1:2,S"          # not a message: refused
    c1_name = b"\xc2\x9b31m\xe2\x80\xaegpj.exe:2,S"                    # not a message: refused
    nl_name = b"x\nmailwarden learn: all 0 messages learned, nothing failed"   # a FIFO: failed
    link_name = b"\x1b[8mhidden"                                        # a link to a folder: said
    for n in (esc_name, c1_name):
        with open(os.path.join(cur, n), "wb") as f:
            f.write(os.urandom(64) + b"\x00")
    os.mkfifo(os.path.join(cur, nl_name))
    os.symlink(str(tmp_path / "elsewhere"), os.path.join(cur, link_name))
    (md / "cur" / "1700000009.M9:2,S").write_bytes(msg(1))
    rc, out, err = _learn_bytes(store, "--spam", str(md), timeout=30)
    assert holds(out.decode()) == (1, 0), (rc, out, err)
    for stream in (out, err):
        hit = _ACTING.search(stream)
        assert hit is None, ("a control byte from a file name reached the terminal", hit, stream)
    assert b"\\x1b]0;owned\\x07\\x1b[2J1700000000.M1:2,S: not a message" in err, err
    assert b"\\xc2\\x9b31m\\xe2\\x80\\xaegpj.exe:2,S: not a message" in err, err
    assert b"x\\x0amailwarden learn: all 0 messages learned, nothing failed: not a regular file" in err, err
    assert b"\\x1b[8mhidden: a link to a directory, not followed" in err, err
    # one line per thing said: the newline in a name made none of its own
    assert not any(line.startswith(b"mailwarden learn: all 0") for line in err.split(b"\n")), err


def test_root_says_a_users_hostile_link_name_escaped():
    """As root (user = nobody), a link on the way in a user's folder is
    refused and named: the name, the user's, went to root's terminal raw."""
    base, folder, store_dir, secret, nb, opts = _root_setup()
    try:
        link = os.path.join(os.fsencode(folder), b"\x1b[2J\xe2\x80\xaeJunk")
        _as_nobody(nb, lambda: os.symlink(b"/root", link))
        rc, out, err = _learn_bytes(opts, "--spam", os.path.join(link, b"x.eml"))
        assert rc == 1, (rc, out, err)
        assert _ACTING.search(err) is None, ("the user's link name acted on root's terminal", err)
        assert b"\\x1b[2J\\xe2\\x80\\xaeJunk is a symbolic link in a directory of uid" in err, err
    finally:
        os.unlink(secret)
        shutil.rmtree(base, True)
