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


# --- keys and entries as mailwarden writes them -------------------------------------

def key_hash(prefix, *fields):
    """store_key_hash (filters/store.c): SHA-256 over the prefix and each
    field as an 8-byte big-endian length and its bytes, ASCII lower-cased;
    the first 16 bytes in hex after the prefix."""
    import hashlib
    import struct
    m = hashlib.sha256()
    for f in (prefix,) + fields:
        b = f if isinstance(f, bytes) else f.encode()
        b = bytes(c + 32 if 65 <= c <= 90 else c for c in b)
        m.update(struct.pack(">Q", len(b)) + b)
    return prefix + m.hexdigest()[:32]


def fnv1a64(data, h=0xcbf29ce484222325):
    for c in data:
        h = ((h ^ c) * 0x100000001b3) & 0xffffffffffffffff
    return h


def bayes_seen_key(mid):
    """bayes_msg_key (filters/bayes_tok.c) of a message with that
    Message-ID: store_key_hash_bytes, the framing of key_hash over
    "bayes:seen:", "mid" and the Message-ID, nothing lower-cased"""
    import hashlib
    import struct
    m = hashlib.sha256()
    for b in (b"bayes:seen:", b"mid", mid.encode()):
        m.update(struct.pack(">Q", len(b)) + b)
    return "bayes:seen:" + m.hexdigest()[:32]


def legacy_bayes_seen_key(mid):
    """the same before: 64-bit FNV-1a over "mid" and the Message-ID"""
    return "bayes:seen:%016x" % fnv1a64(b"mid" + mid.encode())


def legacy_greylist_key(net, sender, rcpt):
    """the greylist key before store_key_hash: 64-bit FNV-1a over the
    lower-cased parts, each followed by 0xff"""
    data = b"".join(p.lower().encode() + b"\xff" for p in (net, sender, rcpt))
    return "gl:%016x" % fnv1a64(data)


class Lmdb:
    """The store's "kv" database in an LMDB file, through liblmdb itself
    (ctypes): key -> 8-byte little-endian expiry (unix seconds, 0 never),
    then the value (filters/store_lmdb.c).  For entries mailwarden of an
    older version would have left."""

    NOSUBDIR, CREATE, RDONLY, NOTFOUND = 0x4000, 0x40000, 0x20000, -30798

    def __init__(self, path):
        import ctypes
        import ctypes.util
        self.ct = ctypes
        self.lib = ctypes.CDLL(ctypes.util.find_library("lmdb") or "liblmdb.so.0")
        self.path = str(path)

        class Val(ctypes.Structure):
            _fields_ = [("size", ctypes.c_size_t), ("data", ctypes.c_void_p)]
        self.Val = Val

    def _call(self, name, *args):
        rc = getattr(self.lib, name)(*args)
        if rc != 0 and rc != self.NOTFOUND:
            raise OSError("%s: %d" % (name, rc))
        return rc

    def _txn(self, fn, rdonly):
        ct = self.ct
        env, txn, dbi = ct.c_void_p(), ct.c_void_p(), ct.c_uint()
        self._call("mdb_env_create", ct.byref(env))
        try:
            self._call("mdb_env_set_maxdbs", env, ct.c_uint(4))
            self._call("mdb_env_set_mapsize", env, ct.c_size_t(1 << 30))
            self._call("mdb_env_open", env, self.path.encode(), ct.c_uint(self.NOSUBDIR), 0o640)
            self._call("mdb_txn_begin", env, None, ct.c_uint(self.RDONLY if rdonly else 0),
                       ct.byref(txn))
            try:
                self._call("mdb_dbi_open", txn, b"kv", ct.c_uint(0 if rdonly else self.CREATE),
                           ct.byref(dbi))
                out = fn(txn, dbi)
            except BaseException:
                self.lib.mdb_txn_abort(txn)
                raise
            if rdonly:
                self.lib.mdb_txn_abort(txn)
            else:
                self._call("mdb_txn_commit", txn)
            return out
        finally:
            self.lib.mdb_env_close(env)

    def put(self, key, value, expiry):
        ct = self.ct
        data = struct_u64(expiry) + (value if isinstance(value, bytes) else value.encode())
        kb, vb = ct.create_string_buffer(key.encode(), len(key)), ct.create_string_buffer(data, len(data))

        def fn(txn, dbi):
            k = self.Val(len(key), ct.cast(kb, ct.c_void_p))
            v = self.Val(len(data), ct.cast(vb, ct.c_void_p))
            self._call("mdb_put", txn, dbi, ct.byref(k), ct.byref(v), ct.c_uint(0))
        self._txn(fn, False)

    def delete(self, key):
        ct = self.ct
        kb = ct.create_string_buffer(key.encode(), len(key))

        def fn(txn, dbi):
            k = self.Val(len(key), ct.cast(kb, ct.c_void_p))
            self._call("mdb_del", txn, dbi, ct.byref(k), None)
        self._txn(fn, False)

    def get(self, key, raw=False):
        """(expiry, value) or None; the value as bytes with raw"""
        ct = self.ct
        kb = ct.create_string_buffer(key.encode(), len(key))

        def fn(txn, dbi):
            k, v = self.Val(len(key), ct.cast(kb, ct.c_void_p)), self.Val()
            if self._call("mdb_get", txn, dbi, ct.byref(k), ct.byref(v)) != 0:
                return None
            data = ct.string_at(v.data, v.size)
            return int.from_bytes(data[:8], "little"), data[8:] if raw else data[8:].decode()
        return self._txn(fn, True)


def struct_u64(v):
    return int(v).to_bytes(8, "little")


def store_put(kind, opts, redis, key, value, expiry):
    """key = value until expiry (unix seconds) in the store opts name"""
    o = dict(opts)
    if kind == "lmdb":
        Lmdb(o["store_path"]).put(key, value, expiry)
    else:
        ttl = max(1, int(expiry - time.time()))
        assert redis.command("SET", o["store_prefix"] + key, value, "EX", ttl).startswith(b"+OK")


def store_del(kind, opts, redis, key):
    o = dict(opts)
    if kind == "lmdb":
        Lmdb(o["store_path"]).delete(key)
    else:
        assert redis.command("DEL", o["store_prefix"] + key).startswith(b":")


def store_peek(kind, opts, redis, key, raw=False):
    """(seconds left, value) of key, or None; the value as bytes with raw"""
    o = dict(opts)
    if kind == "lmdb":
        got = Lmdb(o["store_path"]).get(key, raw)
        if got is None or (got[0] and got[0] <= time.time()):
            return None
        return (got[0] - time.time() if got[0] else None), got[1]
    full = o["store_prefix"] + key
    v = redis.command("GET", full)
    if v.startswith(b"$-1"):
        return None
    ttl = int(redis.command("TTL", full)[1:].split(b"\r\n")[0])
    head, rest = v.split(b"\r\n", 1)
    value = rest[:int(head[1:])]
    return ttl, value if raw else value.decode()
