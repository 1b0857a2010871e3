"""A stand-in for an older copyoffloadd, left running after an upgrade of
the module: it accepts on a unix SOCK_SEQPACKET socket, answers every HELLO
with a refusal in its own protocol version (EPROTONOSUPPORT, offering
version 3) and closes, and counts the handshakes, so a test can see how
often the module tried it."""

import errno
import os
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import protocol_client  # noqa: E402

OFFERED_VERSION = 3


class RefusingHelper:
    def __init__(self, socket_path):
        self.socket_path = socket_path
        self.handshakes = 0
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o600)  # root's alone, as copyoffloadd's: smbd connects as root
        self._listener.listen(16)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=10)
        os.unlink(self.socket_path)
        return False

    def count(self):
        with self._lock:
            return self.handshakes

    def _serve(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed by __exit__
            with conn:
                conn.settimeout(10)
                try:
                    hello = conn.recv(256)
                except OSError:
                    continue
                if len(hello) < protocol_client.HEADER.size:
                    continue
                request_id = protocol_client.HEADER.unpack_from(hello)[5]
                body = struct.pack("<iHH", errno.EPROTONOSUPPORT, OFFERED_VERSION, 0)
                conn.send(protocol_client.message(protocol_client.HELLO_REPLY, request_id,
                                                  body, version=OFFERED_VERSION))
                with self._lock:
                    self.handshakes += 1
                # Closed at once, as copyoffloadd closes after a refusal:
                # what the module sent after its HELLO is left unread.
