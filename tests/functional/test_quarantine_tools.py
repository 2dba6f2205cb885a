"""The admin's tools against hostile content (session 21, reviewer
rv-tools): `quarantine list/show` against a record the daemon's user
tampered with (a null where an address stands, huge numbers), the
`quarantine_release` audit record within the proxy's bounds, `list`
fields a Subject or a sender cannot forge, a NUL in a Subject, and
`scan --output` leaving no earlier OUT.eml behind."""

import copy
import glob
import json
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile

import pytest

from mwlib import MW_BIN, make_msg, run_mw, plugin_opt
from quarantinelib import q, q_list, q_ok, quarantine_one, quarantine_opts, spam_msg


@pytest.fixture
def qmw(mw_factory, upstream):
    def make(*extra, up=None):
        return mw_factory(up or upstream, opts=quarantine_opts(*extra))
    return make


def record_path(m, qid):
    return glob.glob(os.path.join(m.quarantine_dir, "*", qid + ".json"))[0]


# a record with a null where an address stands ------------------------------

@pytest.mark.parametrize("where", ["envelope", "released"])
def test_null_recipient_in_record_does_not_kill_list_and_show(qmw, upstream, where):
    """A JSON null in envelope.rcpts or released[].rcpts (the record is the
    daemon user's file) killed root's `list` (every entry, not just this
    one: one bad record hid the whole quarantine) and `show` with SIGSEGV
    (json_object_get_string(NULL) -> strlen(NULL)).  The element is shown
    as "(not an address)"; the other entry is listed."""
    m = qmw()
    quarantine_one(m, spam_msg(), rcpts=["a@example.net"])
    quarantine_one(m, spam_msg(), rcpts=["b@example.net"])   # an innocent other entry
    entries = q_list(m)
    qid = entries[0]["id"]
    p = record_path(m, qid)
    rec = json.load(open(p))
    if where == "envelope":
        rec["envelope"]["rcpts"] = [None, "c@example.net"]
    else:
        rec["released"] = [{"time": "t", "by": "root", "upstream": "u", "rcpts": [None],
                            "reply": "250"}]
    with open(p, "w") as f:
        json.dump(rec, f)
    for args in (("list",), ("show", qid), ("list", "--json"), ("show", "--json", qid)):
        r = q(m, *args)
        assert r.returncode == 0, (args, r.returncode, r.stderr)
    out = q(m, "list").stdout.decode()
    assert entries[1]["id"] in out and out.count("\n") == 2, out
    if where == "envelope":
        assert "(not an address) <c@example.net>" in out, out
        assert "(not an address)" in q(m, "show", qid).stdout.decode()
    else:
        assert "to (not an address): 250" in q(m, "show", qid).stdout.decode()


def paths(o, p=()):
    yield p
    if isinstance(o, dict):
        for k, v in o.items():
            yield from paths(v, p + (k,))
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from paths(v, p + (i,))


def setp(o, p, v):
    for k in p[:-1]:
        o = o[k]
    o[p[-1]] = v


def test_every_record_value_corrupted_no_signal(qmw, upstream):
    """Every value of a record replaced in turn by null, a huge number
    (1e308, whose conversion to long long is undefined), [null] and an
    object: no list/show form dies of a signal (rv-tools' fuzzer)."""
    m = qmw()
    quarantine_one(m, spam_msg(), rcpts=["a@example.net", "b@example.net"])
    qid = q_list(m)[0]["id"]
    path = record_path(m, qid)
    orig = json.load(open(path))
    orig["released"] = [{"time": "t", "by": "root", "upstream": "u", "rcpts": ["a@example.net"],
                         "reply": "250"}]
    crashes = []
    for p in list(paths(orig)):
        if not p or p == ("id",):
            continue
        for v in (None, 1e308, [None], {"x": None}):
            rec = copy.deepcopy(orig)
            setp(rec, p, v)
            with open(path, "w") as f:
                json.dump(rec, f)
            for args in (("list",), ("list", "--json"), ("show", qid), ("show", "--json", qid),
                         ("show", "--release", qid)):
                r = q(m, *args)
                if r.returncode < 0:
                    crashes.append((p, v, args, r.returncode))
    with open(path, "w") as f:
        json.dump(orig, f)
    assert crashes == [], "\n".join(map(repr, crashes))


def test_huge_numbers_are_bounded(qmw, upstream):
    """size 1e308 (and a NaN-free out-of-range score) in a record: list
    prints a number that is not garbage from an undefined conversion, and
    --json stays valid JSON."""
    m = qmw()
    quarantine_one(m, spam_msg())
    qid = q_list(m)[0]["id"]
    path = record_path(m, qid)
    rec = json.load(open(path))
    rec["size"] = 1e308
    rec["envelope"]["client_port"] = -1e300
    with open(path, "w") as f:
        json.dump(rec, f)
    out = q_ok(m, "list").stdout.decode()
    assert "size=0 " in out, out
    assert q_list(m)[0]["size"] == 0
    assert " port 0," in q_ok(m, "show", qid).stdout.decode()


# the release's audit record within the proxy's bounds ----------------------

def test_release_audit_record_is_bounded(qmw, upstream):
    """The proxy caps its record at 64 KiB (README "Audit log"), so that a
    log shipper keeps it; the `quarantine_release` record of the same
    message was not capped: 400 recipients of 500 bytes made a 221 KB line,
    which Fluent Bit and Vector drop.  Now the same bounds: accepted
    recipients first, the rest counted."""
    m = qmw()
    rcpts = ["r%04d+%s@example.net" % (i, "x" * 480) for i in range(400)]
    r = quarantine_one(m, spam_msg(), rcpts=rcpts)
    assert r.raw.startswith(b"250")
    qid = q_list(m)[0]["id"]
    r = q(m, "release", qid)
    assert r.returncode == 0, r.stderr
    assert len(upstream.wait_messages(1)[0].rcpt_tos) == 400
    with open(m.audit_path, "rb") as f:
        lines = f.read().split(b"\n")[:-1]
    sizes = [(json.loads(l).get("event", json.loads(l).get("action")), len(l) + 1) for l in lines]
    assert all(n <= 65536 for _, n in sizes), sizes
    rel = [json.loads(l) for l in lines if b'"quarantine_release"' in l][-1]
    assert rel["action"] == "released" and rel["quarantine_id"] == qid
    listed = rel["rcpts"]
    assert 50 < len(listed) < 400 and all(x["accepted"] for x in listed), len(listed)
    assert [x["address"] for x in listed] == rcpts[:len(listed)]    # in the envelope's order
    assert rel["rcpts_unlisted"] == 400 - len(listed)
    print("record sizes", sizes, "listed", len(listed))
    assert rel["rcpts_unlisted_accepted"] == 400 - len(listed)
    for k in ("rcpts_overridden", "size", "upstream", "reply", "queue_id", "removed",
              "header_edits", "rewritten_body", "mail_from", "mail_params", "by"):
        assert k in rel, k


def test_release_audit_record_small_unchanged(qmw, upstream):
    """A release of a few recipients lists every one, with no counters."""
    m = qmw()
    quarantine_one(m, spam_msg(), rcpts=["a@example.net", "b@example.net"])
    qid = q_list(m)[0]["id"]
    q_ok(m, "release", qid)
    with open(m.audit_path, "rb") as f:
        rel = [json.loads(l) for l in f if b'"quarantine_release"' in l][-1]
    assert [x["address"] for x in rel["rcpts"]] == ["a@example.net", "b@example.net"]
    assert all(x["accepted"] and x["reply"].startswith("250") for x in rel["rcpts"])
    assert "rcpts_unlisted" not in rel and rel["rcpts_overridden"] is False


# list fields that a sender cannot forge -------------------------------------

def test_list_line_fields_cannot_be_forged(qmw, upstream):
    """`list` printed subject="..."  reason="..." with the Subject's '"' as
    it is: a Subject  viagra"  reason="released by admin, safe  gave a line
    with two reason="..." fields, the sender's first; a quoted local part
    in MAIL FROM forged the '-> <rcpt>' part.  The values are escaped as
    log_esc_quoted / log_esc_word escape a log line's (\\x22, \\x20,
    \\x3c, \\x3e), printable UTF-8 kept."""
    m = qmw()
    quarantine_one(m, spam_msg(subject='viagra"  reason="released by admin, safe caf\u00e9'.encode()),
                   frm='"x> -> <ceo@example.com"@evil.example', rcpts=["rcpt@example.net"])
    line = q_ok(m, "list").stdout.decode()
    assert line.count('reason="') == 1, line
    assert line.count("-> <") == 1, line
    assert line.count('"') == 4, line
    # '=' kept (session 21, rv-today2 R2): inside quotes whose '"' is escaped it forges nothing
    assert 'subject="viagra\\x22  reason=\\x22released by admin, safe caf\u00e9"' in line, line
    assert "<\\x22x\\x3e\\x20-\\x3e\\x20\\x3cceo@example.com\\x22@evil.example> -> <rcpt@example.net>" \
        in line, line
    # the machine form is the data as it is
    e = q_list(m)[0]
    assert e["subject"].startswith('viagra"  reason="released')
    assert e["mail_from"] == '"x> -> <ceo@example.com"@evil.example'


def test_list_shows_what_follows_a_nul_in_the_subject(qmw, upstream):
    """A NUL in the Subject is kept in the record as \\u0000 (its length
    is kept; the proxy refuses a NUL in content, 550 5.6.0, so here the
    record as the milter's MTA or the daemon's user could leave it), but
    `list` read the value as a C string: "viagra\\0 hidden tail" showed as
    "viagra", hiding the rest from the admin.  Shown as \\x00 and the
    rest; --json keeps it as \\u0000."""
    m = qmw()
    quarantine_one(m, spam_msg())
    qid = q_list(m)[0]["id"]
    path = record_path(m, qid)
    rec = json.load(open(path))
    rec["subject"] = "viagra\x00 hidden tail"
    with open(path, "w") as f:
        json.dump(rec, f)
    out = q_ok(m, "list").stdout.decode()
    assert 'subject="viagra\\x00 hidden tail"' in out, out
    assert q_list(m)[0]["subject"] == "viagra\x00 hidden tail"


# scan --output: no earlier OUT.eml left behind ------------------------------

SCAN_OPTS = ["-o", "dns_forwarder=127.0.0.1@9", "-o", "inbound_tag_score=3",
             "-o", "inbound_quarantine_score=5", "-o", "inbound_reject_score=15", "-o", "audit_log="]


def scan(tmp_path, msg, out, *extra):
    (tmp_path / "in.eml").write_bytes(msg)
    p = plugin_opt()
    return run_mw(["scan", "-o", "%s=%s" % p, *SCAN_OPTS, "-o", "quarantine_dir=%s" % (tmp_path / "q"),
                   *extra, "--output", str(out), str(tmp_path / "in.eml")])


def test_scan_output_not_left_stale(tmp_path):
    """`scan --output OUT.eml` left an OUT.eml of an earlier scan in place
    when the action did not deliver (exit 0): `scan --output out.eml in.eml
    && deliver out.eml` handed on the previous message.  It is removed."""
    out = tmp_path / "out.eml"
    out.write_bytes(b"OLD-CONTENT-FROM-AN-EARLIER-SCAN\n")
    r = scan(tmp_path, spam_msg(), out)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["action"] == "quarantine"
    assert not out.exists(), out.read_bytes()
    # a delivered one is written, and the next that is not removes it
    r = scan(tmp_path, make_msg(subject="hello"), out)
    assert r.returncode == 0 and json.loads(r.stdout)["action"] == "accept", r.stderr
    assert out.read_bytes().endswith(b"\r\n")
    r = scan(tmp_path, spam_msg(), out)
    assert r.returncode == 0 and not out.exists()


def test_scan_output_only_regular_files_removed(tmp_path):
    """Not a symlink (/dev/stdout is one), a FIFO or a directory; and the
    message file itself is left, said, exit 1 (no script takes it)."""
    target = tmp_path / "target.eml"
    target.write_bytes(b"keep me\n")
    link = tmp_path / "link.eml"
    os.symlink(str(target), str(link))
    r = scan(tmp_path, spam_msg(), link)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and target.read_bytes() == b"keep me\n"
    msg = spam_msg()
    (tmp_path / "in.eml").write_bytes(msg)
    p = plugin_opt()
    r = run_mw(["scan", "-o", "%s=%s" % p, *SCAN_OPTS, "--output", str(tmp_path / "in.eml"),
                str(tmp_path / "in.eml")])
    assert r.returncode == 1 and b"is the message file" in r.stderr, r.stderr
    assert (tmp_path / "in.eml").read_bytes() == msg


def test_list_keeps_equals_in_addresses_and_encoded_subjects(qmw, upstream):
    """rv-today2 R2: since 3631b95 `list` escaped '=' as log_esc does, so
    BATV/SRS/VERP senders (prvs=TAG=user@) and every RFC 2047 Subject
    (=?UTF-8?B?...?=) printed as prvs\\x3d... and \\x3d?UTF-8?B?...?\\x3d:
    unreadable, and `list | grep prvs=` found nothing.  '=' ends neither a
    quoted value (its '"' is escaped) nor an address (space, '<', '>' are):
    it is kept; the Subject is shown as stored, not decoded."""
    m = qmw()
    sender = "prvs=1234abcd=news@example.org"
    rcpt = "list-bounces+r=example.net@lists.example.com"
    subj = "=?UTF-8?B?dmlhZ3JhIGNow6hyZQ==?="
    quarantine_one(m, spam_msg(subject=("viagra " + subj).encode()), frm=sender, rcpts=[rcpt])
    line = q_ok(m, "list").stdout.decode()
    assert "<%s> -> <%s>" % (sender, rcpt) in line, line
    assert 'subject="viagra %s"' % subj in line, line
    assert "\\x3d" not in line, line


# scan --output as root: no symlink or hard link another user planted ---------

def _user_dir(tmp_path):
    """A directory another user may write: nobody's when we are root (as
    ~user/ is), else group/other-writable without a sticky bit."""
    d = tmp_path / "userdir"
    d.mkdir()
    os.chmod(str(tmp_path), 0o755)
    if os.geteuid() == 0:
        import pwd
        os.chown(str(d), pwd.getpwnam("nobody").pw_uid, -1)
    else:
        os.chmod(str(d), 0o777)
    return d


def test_scan_output_does_not_follow_a_planted_symlink(tmp_path):
    """rv-today2 R3: `scan --output` run as root opened OUT.eml with
    O_CREAT|O_TRUNC and followed a symlink the owner of its directory had
    planted (to root's 0600 file): root overwrote the link's target with
    the message.  A symlink is followed only when it and its directory are
    root's (or ours) and the directory is writable by no one else
    (Postfix's safe_open: /dev/stdout qualifies); otherwise refused, exit 1."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"ROOT SECRET\n")
    os.chmod(str(victim), 0o600)
    d = _user_dir(tmp_path)
    link = d / "out.eml"
    os.symlink(str(victim), str(link))
    if os.geteuid() == 0:
        import pwd
        os.lchown(str(link), pwd.getpwnam("nobody").pw_uid, -1)
    r = scan(tmp_path, make_msg(subject="hello"), link)
    assert victim.read_bytes() == b"ROOT SECRET\n", "wrote through the planted symlink"
    assert r.returncode == 1 and b"symlink" in r.stderr, (r.returncode, r.stderr)
    assert link.is_symlink()
    # a hard link there to root's file is refused alike, the file untouched
    link.unlink()
    try:
        os.link(str(victim), str(link))
    except OSError:
        pytest.skip("no hard link across here")
    r = scan(tmp_path, make_msg(subject="hello"), link)
    assert victim.read_bytes() == b"ROOT SECRET\n", "wrote through a planted hard link"
    assert r.returncode == 1 and b"links" in r.stderr, (r.returncode, r.stderr)


def test_scan_output_follows_trusted_symlinks(tmp_path):
    """/dev/stdout (root's symlink in root's /dev) and a symlink of ours in
    a directory of ours that no one else writes are still followed."""
    os.chmod(str(tmp_path), 0o700)
    target = tmp_path / "target.eml"
    link = tmp_path / "link.eml"
    os.symlink(str(target), str(link))
    r = scan(tmp_path, make_msg(subject="hello"), link)
    assert r.returncode == 0, r.stderr
    assert b"Subject: hello\r\n" in target.read_bytes()
    r = scan(tmp_path, make_msg(subject="hello"), "/dev/stdout")
    assert r.returncode == 0, r.stderr
    assert b"Subject: hello\r\n" in r.stdout, r.stdout


def _nobody_link(target, link):
    os.symlink(str(target), str(link))
    if os.geteuid() == 0:
        import pwd
        os.lchown(str(link), pwd.getpwnam("nobody").pw_uid, -1)


def test_scan_output_does_not_follow_a_planted_directory_symlink(tmp_path):
    """rv-today3 S1: only the last component and its directory were
    checked: the owner of ~user replaced ~user/sub by a symlink to a
    directory of root's, and `scan --output ~user/sub/out.eml` as root
    overwrote root's out.eml there (or, when the action did not deliver,
    removed it).  Every component is walked (openat, O_NOFOLLOW): a link
    another user could have planted is refused wherever it is."""
    rootonly = tmp_path / "rootonly"
    rootonly.mkdir()
    os.chmod(str(rootonly), 0o700)
    victim = rootonly / "out.eml"
    victim.write_bytes(b"ROOT SECRET\n")
    os.chmod(str(victim), 0o600)
    d = _user_dir(tmp_path)
    _nobody_link(rootonly, d / "sub")
    out = d / "sub" / "out.eml"
    r = scan(tmp_path, make_msg(subject="hello"), out)
    assert victim.read_bytes() == b"ROOT SECRET\n", "wrote through the planted directory symlink"
    assert r.returncode == 1 and b"symlink" in r.stderr, (r.returncode, r.stderr)
    assert r.stderr.count(b"--output") == 1, r.stderr      # said once
    # a scan that does not deliver does not remove it through the link
    r = scan(tmp_path, spam_msg(), out)
    assert json.loads(r.stdout)["action"] == "quarantine"
    assert victim.exists(), "removed through the planted directory symlink"
    assert r.returncode == 1 and b"symlink" in r.stderr, (r.returncode, r.stderr)
    # and deeper: ~user/a/b where a is the link
    (rootonly / "deep").mkdir()
    (rootonly / "deep" / "x.eml").write_bytes(b"ROOT SECRET\n")
    _nobody_link(rootonly, d / "a")
    r = scan(tmp_path, make_msg(subject="hello"), d / "a" / "deep" / "x.eml")
    assert r.returncode == 1 and (rootonly / "deep" / "x.eml").read_bytes() == b"ROOT SECRET\n"


def test_scan_output_follows_trusted_directory_symlinks(tmp_path):
    """A symlink of ours (root's) on the way, in a directory no one else
    writes, is followed as before, relative or absolute, and the file is
    written where it leads; a chain of them too."""
    os.chmod(str(tmp_path), 0o700)
    real = tmp_path / "real"
    real.mkdir()
    os.symlink("real", str(tmp_path / "rel"))
    os.symlink(str(real), str(tmp_path / "abs"))
    os.symlink("rel", str(tmp_path / "chain"))
    for name in ("rel", "abs", "chain"):
        r = scan(tmp_path, make_msg(subject="hello"), tmp_path / name / ("%s.eml" % name))
        assert r.returncode == 0, r.stderr
        assert b"Subject: hello\r\n" in (real / ("%s.eml" % name)).read_bytes()
    # and through ".." of a real directory
    r = scan(tmp_path, make_msg(subject="hello"), str(real) + "/../real/dots.eml")
    assert r.returncode == 0, r.stderr
    assert (real / "dots.eml").exists()


def test_scan_output_fifo_planted_is_refused_without_blocking(tmp_path):
    """rv-today3 S1: a FIFO planted at OUT.eml held root's open(O_WRONLY)
    until someone read it (for ever, or the user read the message).  It
    is opened non-blocking, and anything but a regular file is written
    only in a directory no one else writes (/dev/stdout's)."""
    d = _user_dir(tmp_path)
    fifo = d / "out.eml"
    os.mkfifo(str(fifo))
    if os.geteuid() == 0:
        import pwd
        os.chown(str(fifo), pwd.getpwnam("nobody").pw_uid, -1)
    r = scan(tmp_path, make_msg(subject="hello"), fifo)     # run_mw's timeout: no hang
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert b"not a regular file" in r.stderr or b"FIFO" in r.stderr, r.stderr
    # one with a reader, in that directory: refused too, nothing written to it
    rfd = os.open(str(fifo), os.O_RDONLY | os.O_NONBLOCK)
    try:
        r = scan(tmp_path, make_msg(subject="hello"), fifo)
        assert r.returncode == 1 and b"not a regular file" in r.stderr, r.stderr
        try:
            got = os.read(rfd, 4096)
        except BlockingIOError:
            got = b""
        assert got == b"", got
        # reached through a link of ours (trusted) that names it: the
        # link's target is walked under the same rule, not opened as the
        # kernel would (through whatever the user put on the way)
        link = tmp_path / "mine.eml"
        os.symlink(str(fifo), str(link))
        r = scan(tmp_path, make_msg(subject="hello"), link)
        assert r.returncode == 1 and b"not a regular file" in r.stderr, r.stderr
        try:
            got = os.read(rfd, 4096)
        except BlockingIOError:
            got = b""
        assert got == b"", got
    finally:
        os.close(rfd)


# --- review rv-today6: scan --output's rule is root's; the errors say what failed --

OUTPUT_OPTS = ["-o", "dns_forwarder=127.0.0.1@9", "-o", "audit_log="]


def scan_out_cmd(d, out):
    """mailwarden scan of d/in.eml with --output out"""
    p = plugin_opt()
    return [MW_BIN, "scan", "-o", "%s=%s" % p, *OUTPUT_OPTS, "-o", "quarantine_dir=%s" % os.path.join(d, "q"),
            "--output", str(out), os.path.join(d, "in.eml")]


def as_nobody(cmd, **kw):
    return subprocess.run(["runuser", "-u", "nobody", "--"] + cmd, capture_output=True, timeout=20, **kw)


@pytest.fixture
def nobody_dir():
    if os.geteuid() != 0:
        pytest.skip("needs root (runuser)")
    nb = pwd.getpwnam("nobody")
    base = pathlib.Path(tempfile.mkdtemp(prefix="rv6-", dir="/tmp"))   # pytest's tmp is 0700
    os.chmod(str(base), 0o755)
    d = base / "home"
    d.mkdir()
    (d / "in.eml").write_bytes(make_msg(subject="hello"))
    (d / "real").mkdir()
    for p in (d, d / "in.eml", d / "real"):
        os.chown(str(p), nb.pw_uid, nb.pw_gid)
    yield d, nb
    shutil.rmtree(str(base), ignore_errors=True)


def test_nonroot_own_link_on_the_way_in_own_group_writable_dir(nobody_dir):
    """review rv-today6: the rule for root walked every user's path too; a
    user (umask 002, user-private group) writing through a symlink of
    their own in their own 0775 directory was refused"""
    d, nb = nobody_dir
    os.chmod(str(d), 0o775)
    os.symlink(str(d / "real"), str(d / "maildir"))
    os.lchown(str(d / "maildir"), nb.pw_uid, nb.pw_gid)
    r = as_nobody(scan_out_cmd(str(d), d / "maildir" / "out.eml"))
    assert r.returncode == 0, r.stderr
    assert (d / "real" / "out.eml").exists()


def test_nonroot_own_link_in_sticky_tmp(nobody_dir):
    """/tmp/mylink -> ~/real, the link the user's own in sticky /tmp (no one
    else can remove or replace it there): refused on main."""
    d, nb = nobody_dir
    link = "/tmp/rv6-link-%d" % os.getpid()
    os.symlink(str(d / "real"), link)
    os.lchown(link, nb.pw_uid, nb.pw_gid)
    try:
        r = as_nobody(scan_out_cmd(str(d), link + "/out.eml"))
        assert r.returncode == 0, r.stderr
        assert (d / "real" / "out.eml").exists()
    finally:
        os.unlink(link)


def test_nonroot_own_fifo_in_tmp_with_a_reader(nobody_dir):
    """mkfifo /tmp/f; consumer </tmp/f & scan --output /tmp/f: the user's
    own FIFO with a reader, written on 73e6570, refused on main."""
    d, nb = nobody_dir
    fifo = "/tmp/rv6-fifo-%d" % os.getpid()
    os.mkfifo(fifo)
    os.chown(fifo, nb.pw_uid, nb.pw_gid)
    got = []
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        r = as_nobody(scan_out_cmd(str(d), fifo))
        try:
            got.append(os.read(rfd, 65536))
        except BlockingIOError:
            pass
        assert r.returncode == 0, r.stderr
        assert got and b"Subject: hello" in got[0]
    finally:
        os.close(rfd)
        os.unlink(fifo)


def test_stdout_socket_error_is_not_called_a_fifo(tmp_path):
    """--output /dev/stdout with stdout a socket (systemd service, inetd,
    a Python socketpair): the open fails ENXIO, as before, but main says
    "a FIFO nobody reads", which it is not."""
    (tmp_path / "in.eml").write_bytes(make_msg(subject="hello"))
    a, b = socket.socketpair()
    try:
        r = subprocess.run(scan_out_cmd(str(tmp_path), "/dev/stdout"), stdout=a, stderr=subprocess.PIPE,
                           timeout=20)
    finally:
        a.close()
        b.close()
    assert r.returncode == 1
    assert b"No such device or address (a socket" in r.stderr, r.stderr
