"""othermilter.py - a minimal second milter (milter protocol 6, raw) for
tests (test_milter_postfix.py): it answers CONTINUE to everything and, at the end of each
message, inserts the fields it was given at index 0 (smfi_insheader), as
OpenDKIM/OpenDMARC/spamass-milter/rspamd insert theirs.  Loopback only."""
import socket
import struct
import threading


class OtherMilter:
    def __init__(self, insert=(), add=()):
        self.insert = list(insert)      # [(name, value)] inserted at index 0, in order
        self.add = list(add)            # [(name, value)] appended (smfi_addheader)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _read(c, n):
        b = b""
        while len(b) < n:
            d = c.recv(n - len(b))
            if not d:
                raise EOFError
            b += d
        return b

    @staticmethod
    def _send(c, cmd, data=b""):
        c.sendall(struct.pack("!I", len(data) + 1) + cmd + data)

    def _serve(self, c):
        try:
            while True:
                n = struct.unpack("!I", self._read(c, 4))[0]
                pkt = self._read(c, n)
                cmd, data = pkt[:1], pkt[1:]
                if cmd == b"O":
                    # version 6, actions ADDHDRS (0x01), no protocol steps skipped
                    self._send(c, b"O", struct.pack("!III", 6, 0x01, 0))
                elif cmd in (b"D",):
                    pass
                elif cmd == b"E":
                    for name, value in self.insert:
                        self._send(c, b"i", struct.pack("!I", 0) + name.encode() + b"\0"
                                   + value.encode() + b"\0")
                    for name, value in self.add:
                        self._send(c, b"h", name.encode() + b"\0" + value.encode() + b"\0")
                    self._send(c, b"c")
                elif cmd in (b"Q",):
                    return
                elif cmd == b"A":
                    pass
                else:
                    self._send(c, b"c")
        except (EOFError, OSError):
            pass
        finally:
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()
