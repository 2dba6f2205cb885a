"""storelib.py - the store backends for the tests: a Redis server started
on a free loopback port (no persistence, bound to 127.0.0.1 only), and the
-o settings that point mailwarden at LMDB or at that Redis."""

import os
import random
import shutil
import socket
import subprocess
import time

import pytest

from mwlib import free_port, wait_until


class Redis:
    """redis-server --port P --save '' --bind 127.0.0.1, stopped by stop()."""

    def __init__(self, tmpdir):
        self.tmpdir = str(tmpdir)
        self.port = free_port()
        self.proc = None

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed (scripts/install-deps installs redis-server)")
        os.makedirs(self.tmpdir, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.tmpdir, "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if not wait_until(self.ping, 5.0, 0.05):
            self.stop()
            pytest.fail("redis-server did not answer on %s" % self.addr)
        return self

    def command(self, *args):
        """One command over RESP; returns the raw reply bytes."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        try:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            time.sleep(0.02)
            return s.recv(65536)
        finally:
            s.close()

    def ping(self):
        try:
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def keys(self, pattern="*"):
        return self.command("KEYS", pattern)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def redis_server(tmp_path):
    r = Redis(tmp_path / "redis").start()
    yield r
    r.stop()


def store_opts(kind, tmp_path, redis=None):
    """-o settings for a fresh store of that kind."""
    if kind == "lmdb":
        return [("store", "lmdb"), ("store_path", str(tmp_path / ("store-%x.lmdb" % random.getrandbits(32))))]
    return [("store", "redis"), ("store_redis", redis.addr),
            ("store_prefix", "mwtest%x:" % random.getrandbits(32))]


@pytest.fixture(params=["lmdb", "redis"])
def store(request, tmp_path):
    """(kind, opts, redis-or-None) for each backend in turn."""
    if request.param == "redis":
        r = Redis(tmp_path / "redis").start()
        request.addfinalizer(r.stop)
        return request.param, store_opts("redis", tmp_path, r), r
    return request.param, store_opts("lmdb", tmp_path), None
