"""Stand-ins for copyoffloadd on a unix SOCK_SEQPACKET socket, each serving
one smbd connection at a time on a thread, for the fault tests:

  * RefusingHelper: an older copyoffloadd left running after an upgrade of
    the module. It answers every HELLO with a refusal in its own protocol
    version (EPROTONOSUPPORT, offering version 3) and closes, and counts the
    handshakes, so a test can see how often the module tried it.
  * FailingHelper: a helper whose every copy fails with one errno (set by
    the test, 0 bytes done), so a test can see which NTSTATUS the client
    gets for each.
  * GatheringHelper: a helper that holds the copies it gets until a given
    number are waiting (or a second passes), then does them itself, last
    first, and answers them, the last answers late, so a test can see which
    copies the module sent at the same time and that it waits for every
    answer.
"""

import array
import dataclasses
import errno
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import protocol_client  # noqa: E402

OFFERED_VERSION = 3
COPY_REPLY_BODY = struct.Struct("<iIQ4Q")  # status, flags, bytes done, bytes by method
COPY_BODY = struct.Struct("<QQQIIII")  # offsets, length, methods, flags, share id, handle
READ_WRITE = 3  # the index of bytes_by_method's read_write count


class FakeHelper:
    """Listens at socket_path while in a with block; serve() answers one
    accepted connection."""

    def __init__(self, socket_path):
        self.socket_path = socket_path
        self.lock = threading.Lock()
        self.peer_pid = None  # of the connection being served
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
                pid, _, _ = struct.unpack("3i", conn.getsockopt(
                    socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
                with self.lock:
                    self.peer_pid = pid
                conn.settimeout(10)
                try:
                    self.serve(conn)
                except OSError:
                    continue

    def serve(self, conn):
        raise NotImplementedError


def receive_with_descriptors(conn):
    """The next message's (type, request id, bytes, descriptors); None at
    the end of the stream. The caller owns the descriptors."""
    descriptors = array.array("i")
    data, ancillary, _, _ = conn.recvmsg(512, socket.CMSG_SPACE(2 * descriptors.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            descriptors.frombytes(payload[:len(payload) - len(payload) % descriptors.itemsize])
    if len(data) < protocol_client.HEADER.size:
        for fd in descriptors:
            os.close(fd)
        return None
    header = protocol_client.HEADER.unpack_from(data)
    return header[2], header[5], data, tuple(descriptors)


def receive(conn):
    """The next message's (type, request id, bytes), descriptors closed; None
    at the end of the stream."""
    message = receive_with_descriptors(conn)
    if message is None:
        return None
    for fd in message[3]:
        os.close(fd)
    return message[:3]


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


@dataclasses.dataclass
class GatheredCopy:
    request_id: int
    src_offset: int
    dst_offset: int
    length: int
    descriptors: tuple  # (source, destination)
    own_descriptors: bool  # sent with this copy alone: closed once it is done


class GatheringHelper(FakeHelper):
    """Holds the copies it gets until `expected` are waiting, or until
    GATHER_SECONDS after the first; then copies each with copy_file_range,
    the last one first, and answers them in the order they came, each of the
    last `late_replies` answers `reply_delay` seconds after the one before
    (hold_late: only once the test sets `release`). A copy whose destination
    offset is in `failures` fails with that errno instead, with nothing
    done."""

    GATHER_SECONDS = 1.0

    def __init__(self, socket_path, expected, failures=None, late_replies=0,
                 reply_delay=0.3, hold_late=False):
        super().__init__(socket_path)
        self.hold_late = hold_late
        self.release = threading.Event()
        self.copy_peer_pids = []  # the peers that sent copies, in order
        self.expected = expected
        self.failures = dict(failures or {})
        self.late_replies = late_replies
        self.reply_delay = reply_delay
        self.batches = []  # the number of copies held together, per batch
        self.last_reply_at = None  # time.monotonic() of the last answer
        self.replies_sent = 0  # answers sent, or about to be

    def serve(self, conn):
        handles = {}
        waiting = []
        try:
            while True:
                if waiting:
                    left = waiting_since + self.GATHER_SECONDS - time.monotonic()
                    if len(waiting) >= self.expected or left <= 0:
                        self._answer(conn, waiting)
                        waiting = []
                        continue
                    conn.settimeout(left)
                else:
                    conn.settimeout(10)
                try:
                    message = receive_with_descriptors(conn)
                except socket.timeout:
                    continue
                if message is None:
                    return
                kind, request_id, data, descriptors = message
                if kind == protocol_client.HELLO:
                    conn.send(hello_reply(request_id, 0, protocol_client.VERSION))
                elif kind == protocol_client.RELEASE:
                    handle = struct.unpack_from("<I", data, protocol_client.HEADER.size)[0]
                    for fd in handles.pop(handle, ()):
                        os.close(fd)
                elif kind == protocol_client.COPY:
                    src_off, dst_off, length, _, _, _, handle = COPY_BODY.unpack_from(
                        data, protocol_client.HEADER.size)
                    if descriptors and handle != 0:
                        handles[handle] = descriptors
                    with self.lock:
                        if self.peer_pid not in self.copy_peer_pids:
                            self.copy_peer_pids.append(self.peer_pid)
                    if not waiting:
                        waiting_since = time.monotonic()
                    waiting.append(GatheredCopy(request_id, src_off, dst_off, length,
                                                descriptors or handles[handle],
                                                own_descriptors=handle == 0))
                else:
                    for fd in descriptors:
                        os.close(fd)
        finally:
            for fds in handles.values():
                for fd in fds:
                    os.close(fd)

    def _answer(self, conn, copies):
        with self.lock:
            self.batches.append(len(copies))
        replies = {}
        for copy in reversed(copies):
            status = self.failures.get(copy.dst_offset, 0)
            done = 0
            if status == 0:
                while done < copy.length:
                    n = os.copy_file_range(copy.descriptors[0], copy.descriptors[1],
                                           copy.length - done, copy.src_offset + done,
                                           copy.dst_offset + done)
                    if n == 0:
                        break
                    done += n
                if done < copy.length:
                    status = errno.ENODATA
            if copy.own_descriptors:
                for fd in copy.descriptors:
                    os.close(fd)
            by_method = [0, 0, 0, 0]
            by_method[READ_WRITE] = done
            replies[copy.request_id] = protocol_client.message(
                protocol_client.COPY_REPLY, copy.request_id,
                COPY_REPLY_BODY.pack(status, 0, done, *by_method))
        on_time = len(copies) - self.late_replies
        for i, copy in enumerate(copies):
            if i >= on_time and self.hold_late:
                self.release.wait(timeout=60)
            elif i >= on_time:
                time.sleep(self.reply_delay)
            # Counted before: smbd may act on the reply at once.
            with self.lock:
                self.replies_sent += 1
                if i == len(copies) - 1:
                    self.last_reply_at = time.monotonic()
            conn.send(replies[copy.request_id])
