"""test_bayes_retrain.py - the character models kept current by the
daemon: an autolearned message keeps its example as `mailwarden learn`
does, and every bayes_retrain_interval a child of the master trains the
models again when their examples changed (autolearn, learn --no-train),
one process of all those sharing the store at a time (a lock in the
store), the scanners picking the new models up.  Real LMDB and Redis."""

import os
import re
import shutil
import socket
import tempfile
import threading
import time

import pytest

import mwlib

from mwlib import free_port, make_msg, run_mw, wait_until
from storelib import redis_server, store, store_opts  # noqa: F401 (fixtures)
from storelib import bayes_seen_key, key_hash, store_peek

BODY = "the quarterly figures are attached as discussed in the call"
TRAINED = "bayes: character models trained on"


def mid(label, i):
    """spam and ham differ only in the form of their Message-ID, which
    the word model does not read: only the character models tell them
    apart (as in test_bayes.py test_character_model)"""
    return "<%d.QZXJ-BULKMAIL-%d@mx7.massmail.example>" % (i, i) if label == "spam" \
        else "<20230102%d.mutt@lists.example.org>" % i


def msg(label, i):
    return make_msg(subject="quarterly figures", body=BODY, msgid=mid(label, i))


def write(tmp_path, label, i):
    path = tmp_path / ("%s%d.eml" % (label, i))
    path.write_bytes(msg(label, i))
    return str(path)


def learn(opts, *args):
    cmd = ["learn"]
    for k, v in opts:
        cmd += ["-o", "%s=%s" % (k, v)]
    r = run_mw(cmd + list(args), timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def scan_margin(opts, path):
    """the character model's margin of a message by `mailwarden scan`"""
    cmd = ["scan", "-o", "filters=bayes", "-o", "dns_forwarder=127.0.0.1@9",
           "-o", "bayes_min_spam=3", "-o", "bayes_min_ham=3"]
    for k, v in opts:
        cmd += ["-o", "%s=%s" % (k, v)]
    r = run_mw(cmd + [path], timeout=60)
    assert r.returncode == 0, r.stderr
    return margin_of(r.stdout.decode())


def margin_of(text):
    m = re.search(r"characters ([+-][0-9.]+)", text)
    assert m, text
    return float(m.group(1))


def send(m, content):
    c = m.client()
    c.ehlo()
    r = c.transaction("a@example.org", ["b@example.net"], content)
    c.quit()
    assert r["final"].code == 250, r


def trainings(*daemons):
    return sum(d.stderr_text().count(TRAINED) for d in daemons)


def version(kind, opts, redis):
    got = store_peek(kind, opts, redis, "bayes:chars:version")
    return int(got[1]) if got else 0


def daemon_opts(opts, interval="1", **more):
    o = opts + [("filters", "bayes"), ("bayes_min_spam", "3"), ("bayes_min_ham", "3"),
                ("bayes_retrain_interval", interval)]
    return o + list(more.items())


def test_autolearn_keeps_the_example(store, mw_factory, upstream, tmp_path):
    """With bayes_autolearn_examples an autolearned message keeps its
    example (bayes:ex:<id>) for bayes_autolearn_example_ttl (7 days; at
    most its seen key's bayes_seen_ttl, and as long as that with 0), which
    a training then counts; with bayes_chars = no none is kept, as with
    learn, nor by default."""
    kind, opts, redis = store
    m = mw_factory(upstream, opts=daemon_opts(opts, interval="0", bayes_autolearn="yes",
                                             bayes_autolearn_ham="0.5", bayes_autolearn_examples="yes"))
    send(m, msg("spam", 1))
    wait_until(lambda: "autolearned as ham" in m.stderr_text(), 3)
    assert "autolearned as ham" in m.stderr_text(), m.stderr_tail()
    seen = bayes_seen_key(mid("spam", 1))
    mark = store_peek(kind, opts, redis, seen)
    ex = store_peek(kind, opts, redis, seen.replace("seen", "ex"), raw=True)
    # 'H': autolearned, a sample of its tokens counted (session 21)
    assert mark is not None and mark[1] == "H", mark
    assert ex is not None and ex[1].startswith(b"h") and b"QZXJ-BULKMAIL-1" in ex[1], ex
    # bayes_autolearn_example_ttl (7 days), the seen key bayes_seen_ttl (90)
    assert 7 * 86400 - 60 < ex[0] <= 7 * 86400, (ex[0], mark[0])
    assert 90 * 86400 - 60 < mark[0] <= 90 * 86400, mark
    out = learn(opts, "--rebuild")
    assert out.startswith("character model trained on 0 spam, 1 ham"), out
    m.stop()
    # 0: as long as the seen key; never longer than it
    for i, more, days in ((4, {"bayes_autolearn_example_ttl": "0"}, 90),
                          (5, {"bayes_seen_ttl": "1d"}, 1)):
        n = mw_factory(upstream, opts=daemon_opts(opts, interval="0", bayes_autolearn="yes",
                                                 bayes_autolearn_ham="0.5", bayes_autolearn_examples="yes",
                                                 **more))
        send(n, msg("spam", i))
        wait_until(lambda: "autolearned as ham" in n.stderr_text(), 3)
        seen = bayes_seen_key(mid("spam", i))
        mark = store_peek(kind, opts, redis, seen)
        ex = store_peek(kind, opts, redis, seen.replace("seen", "ex"), raw=True)
        assert ex is not None and abs(ex[0] - mark[0]) < 3 and days * 86400 - 60 < ex[0] <= days * 86400, \
            (more, ex and ex[0], mark)
        n.stop()
    # with bayes_chars = no, and by default (bayes_autolearn_examples =
    # no: 3 KB of store each for bayes_seen_ttl), the words are learned
    # and no example is kept
    for i, more in ((2, {"bayes_chars": "no", "bayes_autolearn_examples": "yes"}), (3, {})):
        n = mw_factory(upstream, opts=daemon_opts(opts, interval="0", bayes_autolearn="yes",
                                                 bayes_autolearn_ham="0.5", **more))
        send(n, msg("spam", i))
        wait_until(lambda: "autolearned as ham" in n.stderr_text(), 3)
        seen = bayes_seen_key(mid("spam", i))
        assert store_peek(kind, opts, redis, seen)[1] == "H", more
        assert store_peek(kind, opts, redis, seen.replace("seen", "ex")) is None, more
        n.stop()


def test_list_window_lives_as_the_example(store, mw_factory, upstream, tmp_path):
    """A mailing list's window of learned messages (bayes_list.c) lives as
    long as the example of the message that wrote it last: taught by
    learn, bayes_seen_ttl (90 days); autolearned,
    bayes_autolearn_example_ttl (7 days), so that a sender who names a new
    list in every message autolearn takes leaves nothing longer than the
    example (it lived 90 days, session 20)."""
    kind, opts, redis = store
    def list_msg(name, i):
        return make_msg(subject="quarterly figures", body=BODY, msgid=mid("ham", 100 + i),
                        headers=[("List-Id", "<%s>" % name)])
    path = tmp_path / "taught.eml"
    path.write_bytes(list_msg("taught.lists.example", 1))
    learn(opts, "--ham", str(path))
    got = store_peek(kind, opts, redis, key_hash("bayes:list:", "taught.lists.example"), raw=True)
    assert got is not None and 90 * 86400 - 60 < got[0] <= 90 * 86400, got and got[0]
    m = mw_factory(upstream, opts=daemon_opts(opts, interval="0", bayes_autolearn="yes",
                                             bayes_autolearn_ham="0.5"))
    send(m, list_msg("invented.lists.example", 2))
    wait_until(lambda: "autolearned as ham" in m.stderr_text(), 3)
    assert "autolearned as ham" in m.stderr_text(), m.stderr_tail()
    got = store_peek(kind, opts, redis, key_hash("bayes:list:", "invented.lists.example"), raw=True)
    assert got is not None and 7 * 86400 - 60 < got[0] <= 7 * 86400, got and got[0]
    m.stop()


def test_daemon_retrains_after_autolearn(store, mw_factory, upstream, tmp_path):
    """Taught 3 spam and 3 ham, the character models lean a bulk-mail
    Message-ID to spam.  Autolearn (everything is ham here: no filter
    before Bayes scores) then teaches 6 such messages as ham; within the
    interval the daemon trains again on 3 spam and 9 ham, and the same
    message, through the proxy and through scan, leans to ham."""
    kind, opts, redis = store
    learn(opts, "--spam", *[write(tmp_path, "spam", i) for i in range(3)])
    learn(opts, "--ham", *[write(tmp_path, "ham", i) for i in range(3)])
    probe = write(tmp_path, "spam", 99)
    before_scan = scan_margin(opts, probe)
    assert before_scan > 0, before_scan
    m = mw_factory(upstream, opts=daemon_opts(opts, bayes_autolearn="yes", bayes_autolearn_ham="0.5",
                                             bayes_autolearn_examples="yes"))
    send(m, msg("spam", 99))
    before = margin_of(str(m.audit(1)[-1]["symbols"]))
    assert before > 0, before
    v0 = version(kind, opts, redis)
    for i in range(10, 16):
        send(m, msg("spam", i))
    # the probe itself was autolearned as ham too; a training may have
    # come between it and the others
    assert wait_until(lambda: "trained on 3 spam, 10 ham examples in" in m.stderr_text(), 5), \
        m.stderr_tail()
    assert version(kind, opts, redis) > v0
    time.sleep(1.2)         # the scanner looks at the version every second here
    send(m, msg("spam", 99))  # learned already: no change to the examples
    after = margin_of(str(m.audit(8)[-1]["symbols"]))
    assert after < 0 < before, (before, after)
    assert scan_margin(opts, probe) < 0 < before_scan


def test_no_training_when_nothing_changed(store, mw_factory, upstream, tmp_path):
    """The daemon looks every interval and trains only when examples were
    kept or forgotten since the stored models were trained: not after a
    `learn` that trained them, once after a `learn --no-train`."""
    kind, opts, redis = store
    learn(opts, "--spam", *[write(tmp_path, "spam", i) for i in range(3)])
    learn(opts, "--ham", *[write(tmp_path, "ham", i) for i in range(3)])
    v0 = version(kind, opts, redis)
    m = mw_factory(upstream, opts=daemon_opts(opts))
    looked = "character models up to date with their examples"
    assert wait_until(lambda: m.stderr_text().count(looked) >= 2, 4), m.stderr_tail()
    assert trainings(m) == 0 and version(kind, opts, redis) == v0, m.stderr_tail()
    out = learn(opts, "--no-train", "--ham", write(tmp_path, "ham", 7))
    assert "not trained (--no-train): the daemon trains it within bayes_retrain_interval (3600s)" \
        in out, out
    assert wait_until(lambda: trainings(m) == 1, 4), m.stderr_tail()
    assert "trained on 3 spam, 4 ham examples" in m.stderr_text()
    n = m.stderr_text().count(looked)
    assert wait_until(lambda: m.stderr_text().count(looked) >= n + 2, 4), m.stderr_tail()
    assert trainings(m) == 1 and version(kind, opts, redis) == v0 + 1, m.stderr_tail()


def test_one_machine_of_a_redis_store_trains(redis_server, mw_factory, upstream, tmp_path):
    """Two daemons on one Redis store: while another holds the training
    lock neither trains; once it is gone one of them trains, once."""
    opts = store_opts("redis", tmp_path, redis_server)
    prefix = dict(opts)["store_prefix"]
    learn(opts, "--spam", *[write(tmp_path, "spam", i) for i in range(3)])
    learn(opts, "--ham", *[write(tmp_path, "ham", i) for i in range(3)])
    v0 = version("redis", opts, redis_server)
    # a third machine training: its lock for 3 s more
    assert redis_server.command("SET", prefix + "bayes:chars:lock", "1", "EX", "3").startswith(b"+OK")
    learn(opts, "--no-train", "--ham", write(tmp_path, "ham", 7))
    a = mw_factory(upstream, opts=daemon_opts(opts))
    b = mw_factory(upstream, opts=daemon_opts(opts))
    held = "another process holds the training lock"
    assert wait_until(lambda: held in a.stderr_text() and held in b.stderr_text(), 3), \
        (a.stderr_tail(), b.stderr_tail())
    assert trainings(a, b) == 0
    assert wait_until(lambda: trainings(a, b) >= 1, 5), (a.stderr_tail(), b.stderr_tail())
    time.sleep(2.0)         # both have looked again meanwhile
    assert trainings(a, b) == 1, (a.stderr_tail(), b.stderr_tail())
    assert version("redis", opts, redis_server) == v0 + 1
    assert redis_server.command("EXISTS", prefix + "bayes:chars:lock") == b":0\r\n"


class LosesTheRelease:
    """A TCP relay on loopback to a real Redis that loses the first
    release of the training lock (EVAL of the swap script on
    bayes:chars:lock with an empty new value): that command is not passed
    on and the connection goes quiet, as when it is lost on the way, and
    the client gives up after store_timeout.  Everything else, later
    releases included, goes through unchanged."""

    def __init__(self, redis_port):
        self.redis_port = redis_port
        self.lost = 0
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.stop = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.redis_port))
            threading.Thread(target=self.replies, args=(u, c), daemon=True).start()
            threading.Thread(target=self.commands, args=(c, u), daemon=True).start()

    @staticmethod
    def replies(u, c):
        try:
            while True:
                d = u.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        c.close()

    @staticmethod
    def command(buf):
        """(the arguments of the first whole RESP command in buf, its
        length), or None while it is incomplete"""
        if not buf.startswith(b"*") or b"\r\n" not in buf:
            return None
        head, at = buf.split(b"\r\n", 1)
        pos, args = len(head) + 2, []
        for _ in range(int(head[1:])):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None
            n = int(buf[pos + 1:end])
            if len(buf) < end + 2 + n + 2:
                return None
            args.append(buf[end + 2:end + 2 + n])
            pos = end + 2 + n + 2
        return args, pos

    def commands(self, c, u):
        buf = b""
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                buf += d
                while (got := self.command(buf)) is not None:
                    args, n = got
                    if (self.lost == 0 and len(args) == 7 and args[0].upper() == b"EVAL"
                            and args[3].endswith(b"bayes:chars:lock") and args[5] == b""):
                        self.lost += 1          # this connection says no more
                        while c.recv(65536):
                            pass
                        raise OSError("lost")
                    u.sendall(buf[:n])
                    buf = buf[n:]
        except OSError:
            pass
        u.close()

    def close(self):
        self.stop = True
        self.ls.close()


def test_a_lost_release_of_the_training_lock_is_made_again(redis_server, tmp_path):
    """The release of the training lock is the one write nobody else can
    make: lost (the command gone with its connection, Redis out of reach
    for a moment), the lock held every trainer back until its 60 s ran
    out, and a `learn` waited that long.  A release that fails is made
    once more, a little over a second later (past the Redis client's 1 s
    between connection attempts).  A release that did reach Redis, its
    answer late past store_timeout, needs nothing: Redis runs a command
    whose client has gone, and the second release of our token finds the
    lock gone and does nothing."""
    opts = store_opts("redis", tmp_path, redis_server)
    prefix = dict(opts)["store_prefix"]
    learn(opts, "--no-train", "--spam", *[write(tmp_path, "spam", i) for i in range(3)])
    learn(opts, "--no-train", "--ham", *[write(tmp_path, "ham", i) for i in range(3)])
    relay = LosesTheRelease(redis_server.port)
    try:
        lossy = [(k, "127.0.0.1:%d" % relay.port if k == "store_redis" else v) for k, v in opts]
        cmd = ["learn", "--rebuild"]
        for k, v in lossy + [("store_timeout", "200ms")]:
            cmd += ["-o", "%s=%s" % (k, v)]
        t0 = time.monotonic()
        r = run_mw(cmd, timeout=60)
        took = time.monotonic() - t0
        out, err = r.stdout.decode(), r.stderr.decode()
        assert r.returncode == 0 and "character model trained on 3 spam, 3 ham" in out, (out, err)
        assert relay.lost == 1, (out, err)
        assert redis_server.command("EXISTS", prefix + "bayes:chars:lock") == b":0\r\n", (out, err)
        assert "could not be released" not in err, err
        assert 1.2 <= took < 10, took           # the second release, 1.2 s after the first
    finally:
        relay.close()
    # the next training takes the lock at once, not after a minute
    out = learn(opts, "--rebuild")
    assert "another process trains" not in out and "character model trained" in out, out


def test_training_without_the_store_is_logged(mw_factory, upstream, tmp_path):
    """The store out of reach (a Redis port nobody listens on): each look
    logs that the models could not be trained and stay as they are, and
    the daemon goes on taking mail."""
    opts = [("store", "redis"), ("store_redis", "127.0.0.1:%d" % free_port()),
            ("store_timeout", "200ms")]
    m = mw_factory(upstream, opts=daemon_opts(opts))
    failed = "training the character models failed: store redis unavailable; the stored models stay"
    assert wait_until(lambda: m.stderr_text().count(failed) >= 2, 5), m.stderr_tail()
    send(m, msg("spam", 1))
    assert m.alive() and TRAINED not in m.stderr_text()


NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start the daemon with user = nobody")
def test_training_runs_as_the_user_at_low_priority(mw_factory, upstream):
    """The training child runs as `user`, with no capability, at nice 10:
    caught while it waits on a "Redis" that accepts and never answers."""
    root = tempfile.mkdtemp(prefix="mw-retrain-", dir="/tmp")
    mwlib.OUR_DIRS.append(root)
    mute = socket.socket()
    try:
        os.chmod(root, 0o755)
        lib = os.path.join(root, "lib")
        os.makedirs(lib)
        os.chown(lib, NOBODY, NOBODY)
        os.chmod(lib, 0o750)
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)
        opts = [("store", "redis"), ("store_redis", "127.0.0.1:%d" % mute.getsockname()[1]),
                ("store_timeout", "3s"), ("user", "nobody"),
                ("quarantine_dir", os.path.join(lib, "quarantine")),
                ("audit_log", os.path.join(lib, "audit.log")),
                ("stats_file", os.path.join(lib, "stats"))]
        m = mw_factory(upstream, opts=daemon_opts(opts))
        kids = []
        assert wait_until(lambda: bool(kids.extend(p for p, t in m.children() if "retrain" in t) or kids),
                          4, 0.05), m.children()
        with open("/proc/%d/status" % kids[0]) as f:
            st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        def nice(pid):
            with open("/proc/%d/stat" % pid) as f:
                return int(f.read().rsplit(")", 1)[1].split()[16])
        assert st["Uid"].split() == [str(NOBODY)] * 4 and int(st["CapEff"], 16) == 0, st
        # 10 below the master's (which a test run under nice starts lower)
        assert nice(kids[0]) == min(19, nice(m.pid) + 10), (nice(kids[0]), nice(m.pid))
    finally:
        mute.close()
        shutil.rmtree(root, ignore_errors=True)
