"""test_audit_writers.py - the audit log has several writers, each with its
own descriptor: the proxy, the milter and `mailwarden quarantine release`
or `delete`.  They take turns under flock (proxy/audit.c), so every line is
one whole record: none cut, none merged with another, whoever wrote it and
whatever the others did meanwhile.  The same with a writer killed
mid-record before (its fragment is a line of its own, never the start of
the next writer's record).  tests/unit/test_audit.c has the writes that
fail part-way while other processes append (the race that left a
fragment and the next record on one line); here all writes succeed, and
single writes of whole records never interleaved even before the lock:
test_proxy_milter_and_commands_at_once passed then too."""

import json
import os
import resource
import subprocess
import threading

import pytest

from milterlib import RawMilter, milter_pid
from mwlib import MW_BIN, free_port, make_msg, read_audit, wait_until
from quarantinelib import q, q_list, quarantine_one, quarantine_opts, spam_msg

FRAGMENT = b'{"time":"2026-01-01T00:00:00Z","session":"killed","subject":"cut he'


def lines_of(path):
    """The complete lines (a last one without its newline is not one yet)."""
    with open(path, "rb") as f:
        return f.read().split(b"\n")[:-1]


def record(raw):
    rec = json.loads(raw.decode("utf-8"))
    assert isinstance(rec, dict)
    return rec


def daemon(mw_factory, upstream):
    mport = free_port()
    m = mw_factory(upstream, opts=quarantine_opts(("milter_listen", "inet:%d@127.0.0.1" % mport)))
    assert wait_until(lambda: milter_pid(m) is not None, 10.0)
    return m, mport


def test_record_after_a_killed_writer(mw_factory, upstream):
    """A writer killed in the middle of its write leaves the start of a
    record.  The proxy's, the milter's and a quarantine command's next
    record each start a line of their own; before, each continued the
    fragment's line (one line that is not JSON: the record lost to every
    reader), unless that same process had left the fragment."""
    m, mport = daemon(mw_factory, upstream)
    assert quarantine_one(m, spam_msg(subject="viagra held")).code == 250
    assert wait_until(lambda: len(read_audit(m.audit_path)) == 1)
    qid = q_list(m)[0]["id"]

    def fragment():
        with open(m.audit_path, "ab") as f:
            f.write(FRAGMENT)

    fragment()
    c = m.client()
    c.ehlo()
    assert c.transaction("a@example.org", ["b@example.net"], make_msg(subject="by proxy"))["final"].code == 250
    c.quit()
    assert wait_until(lambda: len(lines_of(m.audit_path)) == 3), lines_of(m.audit_path)
    fragment()
    with RawMilter(mport) as mc:
        mc.negotiate().connect()
        assert mc.message(make_msg(subject="by milter"), qid=b"QF1")[0] in (b"c", b"a")
    assert wait_until(lambda: len(lines_of(m.audit_path)) == 5), lines_of(m.audit_path)
    fragment()
    r = q(m, "delete", qid)
    assert r.returncode == 0, r.stderr.decode()

    with open(m.audit_path, "rb") as f:
        assert f.read().endswith(b"\n")
    lines = lines_of(m.audit_path)
    assert lines[1] == lines[3] == lines[5] == FRAGMENT, lines
    recs = [record(x) for x in (lines[0], lines[2], lines[4], lines[6])]
    assert recs[0]["subject"] == "viagra held"
    assert recs[1]["subject"] == "by proxy" and recs[1]["listener"] != "milter"
    assert recs[2]["listener"] == "milter"
    assert recs[3]["event"] == "quarantine_delete" and recs[3]["quarantine_id"] == qid
    assert len(lines) == 7


def test_proxy_milter_and_commands_at_once(mw_factory, upstream):
    """The proxy (two event loops), the milter and quarantine commands
    appending at the same time: every line parses, and each writer's
    records are all there, once.  The lock is taken and given back by
    processes that never wait for each other otherwise (a lock left held
    would stop the others' writes, and with them the proxy's loop)."""
    m, mport = daemon(mw_factory, upstream)
    nheld, nclients, per, nmilter = 8, 4, 10, 30
    for i in range(nheld):
        assert quarantine_one(m, spam_msg(subject="viagra %d" % i)).code == 250
    ids = [e["id"] for e in q_list(m)]
    assert len(ids) == nheld
    errors = []

    def proxy_client(k):
        try:
            c = m.client()
            c.ehlo("h%d.example" % k)
            for i in range(per):
                # records from 1 KB to some 25 KB (many recipients)
                rcpts = ["r%d-%d-%03d@example.net" % (k, i, j) for j in range(1 + (i * 37) % 300)]
                r = c.transaction("s%d@example.org" % k, rcpts, make_msg(subject="p-%d-%d" % (k, i)))
                if r["final"].code != 250:
                    errors.append(("proxy", k, i, r["final"]))
            c.quit()
        except Exception as e:      # noqa: BLE001 - reported below
            errors.append(("proxy", k, repr(e)))

    def milter_client():
        try:
            with RawMilter(mport) as mc:
                mc.negotiate().connect()
                for i in range(nmilter):
                    mc.message(make_msg(subject="m-%d" % i), qid=b"QM%d" % i)
        except Exception as e:      # noqa: BLE001
            errors.append(("milter", repr(e)))

    deleted = []

    def commands():
        for qid in ids:
            r = q(m, "delete", qid)
            if r.returncode == 0:
                deleted.append(qid)
            else:
                errors.append(("delete", qid, r.stderr.decode()))

    threads = [threading.Thread(target=proxy_client, args=(k,)) for k in range(nclients)]
    threads += [threading.Thread(target=milter_client), threading.Thread(target=commands)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    total = nheld + nclients * per + nmilter + nheld
    assert wait_until(lambda: len(read_audit(m.audit_path)) >= total, 10.0)
    recs = read_audit(m.audit_path)         # every line is one JSON object
    assert len(lines_of(m.audit_path)) == len(recs) == total
    subjects = [x.get("subject") for x in recs if x.get("listener") != "milter" and "event" not in x]
    want = ["viagra %d" % i for i in range(nheld)] + \
        ["p-%d-%d" % (k, i) for k in range(nclients) for i in range(per)]
    assert sorted(subjects) == sorted(want)
    for x in recs:
        if x.get("subject", "").startswith("p-"):
            k, i = map(int, x["subject"][2:].split("-"))
            assert len(x["rcpts"]) == 1 + (i * 37) % 300
    assert len([x for x in recs if x.get("listener") == "milter"]) == nmilter
    assert sorted(x["quarantine_id"] for x in recs if x.get("event") == "quarantine_delete") \
        == sorted(deleted) == sorted(ids)
    assert os.path.getsize(m.audit_path) > 100000


def test_cut_refused_then_another_writer(mw_factory, upstream):
    """A quarantine command whose write fails part-way (here past
    RLIMIT_FSIZE, as on a full disk) on an append-only log (chattr +a: the
    cut is refused, EPERM) leaves its fragment; it exits 1 and says so.  The
    proxy's next record starts a line of its own: before, only the process
    that left a fragment knew of it, and the proxy continued its line."""
    m, _ = daemon(mw_factory, upstream)
    assert quarantine_one(m, spam_msg(subject="viagra held")).code == 250
    assert wait_until(lambda: len(read_audit(m.audit_path)) == 1)
    qid = q_list(m)[0]["id"]
    r = subprocess.run(["chattr", "+a", m.audit_path], capture_output=True)
    if r.returncode != 0:
        pytest.skip("chattr +a: %s" % r.stderr.decode().strip())
    try:
        size = os.path.getsize(m.audit_path)

        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20, resource.RLIM_INFINITY))

        r = subprocess.run([MW_BIN, "quarantine", "-o", "quarantine_dir=%s" % m.quarantine_dir,
                            "-o", "audit_log=%s" % m.audit_path, "delete", qid],
                           capture_output=True, preexec_fn=limit, timeout=30)
        err = r.stderr.decode()
        assert r.returncode == 1 and "its audit record could not be written" in err, err
        assert "File too large" in err, err
        assert os.path.getsize(m.audit_path) == size + 20     # the fragment stayed
        c = m.client()
        c.ehlo()
        assert c.transaction("a@example.org", ["b@example.net"],
                             make_msg(subject="after"))["final"].code == 250
        c.quit()
        assert wait_until(lambda: len(lines_of(m.audit_path)) == 3), lines_of(m.audit_path)
    finally:
        subprocess.run(["chattr", "-a", m.audit_path])
    lines = lines_of(m.audit_path)
    assert lines[1].startswith(b'{"time":') and len(lines[1]) == 20, lines[1]
    assert record(lines[0])["subject"] == "viagra held"
    assert record(lines[2])["subject"] == "after"


SLOW_AUDIT_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A write of the record that holds MARK into the file MW_TEST_SLOW_PATH
 * stops 2 s before it is made, having created MW_TEST_SLOW_FLAG: the
 * descriptor is taken, the data not yet written. */
#define MARK "slow-audit-record"
ssize_t write(int fd, const void *buf, size_t n)
{
    static ssize_t (*real)(int, const void *, size_t);
    const char *want = getenv("MW_TEST_SLOW_PATH");
    char link[64], target[4096];
    ssize_t k;

    if (real == NULL)
        real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (want != NULL && memmem(buf, n, MARK, sizeof MARK - 1) != NULL) {
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        k = readlink(link, target, sizeof target - 1);
        if (k > 0 && (target[k] = '\0', strcmp(target, want) == 0)) {
            int f = open(getenv("MW_TEST_SLOW_FLAG"), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
            if (f >= 0) close(f);
            usleep(2000 * 1000);
        }
    }
    return real(fd, buf, n);
}
"""


def test_reload_without_audit_log_waits_for_a_write(upstream, tmp_path, monkeypatch):
    """A reload that sets `audit_log =` (none) closes the log while another
    thread may be writing a record to it (a milter connection's thread at
    the end of its message).  The close took no lock: the writer's write()
    went to a descriptor number closed under it (EBADF, the record lost) or
    to whatever file or socket took that number meanwhile.  Now the close
    waits for the write in progress: its record is in the log whole.  The
    shim holds that write 2 s, its descriptor taken, while the reload
    comes."""
    import signal as _signal
    from milterlib import wait_log
    from mwlib import Mailwarden, preload_shim
    preload_shim(monkeypatch, tmp_path, "slow_audit", SLOW_AUDIT_SHIM)
    audit = str(tmp_path / "audit.log")
    flag = tmp_path / "in_write"
    monkeypatch.setenv("MW_TEST_SLOW_PATH", audit)
    monkeypatch.setenv("MW_TEST_SLOW_FLAG", str(flag))
    mport = free_port()
    conf = tmp_path / "mw.conf"
    conf.write_text("audit_log = %s\nmilter_listen = inet:%d@127.0.0.1\n" % (audit, mport))
    m = Mailwarden(tmp_path / "mw", upstream=upstream, config=str(conf))
    # the audit log in the file only: the command line's setting would win
    m.opts = [kv for kv in m.opts if kv[0] != "audit_log"]
    m.audit_path = audit
    m.start()
    try:
        assert wait_until(lambda: milter_pid(m) is not None, 10.0), m.stderr_tail()
        with RawMilter(mport) as mc:
            mc.negotiate().connect()
            assert mc.message(make_msg(subject="before"), qid=b"Q1")[0] == b"c"
            assert mc.mail(qid=b"Q2")[0] == b"c"
            assert mc.rcpt()[0] == b"c"
            mc.body(mc.headers(make_msg(subject="slow-audit-record")))
            mc.send(b"E")                       # end of message: its record is written now
            assert wait_until(flag.exists, 5.0), m.stderr_tail()
            conf.write_text("audit_log =\nmilter_listen = inet:%d@127.0.0.1\n" % mport)
            m.signal(_signal.SIGHUP)
            assert wait_log(m, "milter: config reloaded", 10.0), m.stderr_tail()
            while True:                         # the end of message's answer
                cmd, _ = mc.recv()
                if cmd in (b"c", b"a", b"r", b"t", b"d", b"y"):
                    break
        subjects = [r.get("subject") for r in read_audit(audit)]
        assert subjects == ["before", "slow-audit-record"], (subjects, m.stderr_tail())
        assert "Bad file descriptor" not in m.stderr_text(), m.stderr_tail()
    finally:
        m.stop()
