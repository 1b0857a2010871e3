"""Stand-ins for copyoffloadd on a unix SOCK_SEQPACKET socket, each serving
one smbd connection at a time on a thread, for the fault tests:

  * RefusingHelper: an older copyoffloadd left running after an upgrade of
    the module. It answers every HELLO with a refusal in its own protocol
    version (EPROTONOSUPPORT, offering version 3) and closes, and counts the
    handshakes, so a test can see how often the module tried it.
  * FailingHelper: a helper whose every copy fails with one errno (set by
    the test, 0 bytes done), so a test can see which NTSTATUS the client
    gets for each.
"""

import array
import errno
import os
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import protocol_client  # noqa: E402

OFFERED_VERSION = 3
COPY_REPLY_BODY = struct.Struct("<iIQ4Q")  # status, flags, bytes done, bytes by method


class FakeHelper:
    """Listens at socket_path while in a with block; serve() answers one
    accepted connection."""

    def __init__(self, socket_path):
        self.socket_path = socket_path
        self.lock = threading.Lock()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

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

    def _accept_loop(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed by __exit__
            with conn:
                conn.settimeout(10)
                try:
                    self.serve(conn)
                except OSError:
                    continue

    def serve(self, conn):
        raise NotImplementedError


def receive(conn):
    """The next message's (type, request id, bytes), descriptors closed; None
    at the end of the stream."""
    descriptors = array.array("i")
    data, ancillary, _, _ = conn.recvmsg(512, socket.CMSG_SPACE(2 * descriptors.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            descriptors.frombytes(payload[:len(payload) - len(payload) % descriptors.itemsize])
    for fd in descriptors:
        os.close(fd)
    if len(data) < protocol_client.HEADER.size:
        return None
    header = protocol_client.HEADER.unpack_from(data)
    return header[2], header[5], data


def hello_reply(request_id, status, version):
    body = struct.pack("<iHH", status, version, 0)
    return protocol_client.message(protocol_client.HELLO_REPLY, request_id, body,
                                   version=version)


class RefusingHelper(FakeHelper):
    def __init__(self, socket_path):
        super().__init__(socket_path)
        self.handshakes = 0

    def count(self):
        with self.lock:
            return self.handshakes

    def serve(self, conn):
        message = receive(conn)
        if message is None:
            return
        conn.send(hello_reply(message[1], errno.EPROTONOSUPPORT, OFFERED_VERSION))
        with self.lock:
            self.handshakes += 1
        # Closed at once, as copyoffloadd closes after a refusal: what the
        # module sent after its HELLO is left unread.


class FailingHelper(FakeHelper):
    def __init__(self, socket_path, status=errno.EIO):
        super().__init__(socket_path)
        self.status = status
        self.copies = 0

    def fail_with(self, status):
        with self.lock:
            self.status = status

    def count(self):
        with self.lock:
            return self.copies

    def serve(self, conn):
        while True:
            message = receive(conn)
            if message is None:
                return
            kind, request_id, _ = message
            if kind == protocol_client.HELLO:
                conn.send(hello_reply(request_id, 0, protocol_client.VERSION))
            elif kind == protocol_client.COPY:
                with self.lock:
                    status = self.status
                    self.copies += 1
                body = COPY_REPLY_BODY.pack(status, 0, 0, 0, 0, 0, 0)
                conn.send(protocol_client.message(protocol_client.COPY_REPLY, request_id, body))
            # SHARE, RELEASE and CLONED need no answer; a STATS probe comes
            # only after half the reply timeout.
