"""Pipelined SMB2 requests on one connection, as a real client sends them.

impacket's request methods wait for each answer; to put an SMB2 ECHO behind
a COPYCHUNK on the same connection we send both first and then read the
responses ourselves.

Latencies are the server's, not this Python client's: a request is stamped
right before the syscall that sends it (after impacket has built it), and a
response by the kernel when it reaches the socket (SO_TIMESTAMPNS). On a
2-CPU machine the client shares the CPUs with smbd and the helper, and a
client stamp taken after it got the CPU back measured its own wait too.
"""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "integration"))

from impacket import nt_errors, smb3structs  # noqa: E402

import smb_raw  # noqa: E402

# <asm-generic/socket.h>; Python's socket module does not name them.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
TIMESPEC = struct.Struct("@qq")
NETBIOS_SESSION_MESSAGE = 0x00
NETBIOS_KEEP_ALIVE = 0x85
# SMB2 header fields (MS-SMB2 2.2.1): Status at byte 8, Flags at byte 16,
# MessageId at byte 24.
STATUS_AND_FLAGS = struct.Struct("<I4xI")
MESSAGE_ID = struct.Struct("<Q")


class PipelinedSession(smb_raw.Session):
    """SMB 2.1: server-side copy exists there, and impacket does not encrypt
    it, so Python's AES does not sit in every measured round trip."""

    def __init__(self, port, user, share):
        super().__init__(port, user, share, dialect=smb3structs.SMB2_DIALECT_21)
        # As smbclient and Windows do. Without it, Nagle holds a request
        # pipelined behind one still unacknowledged until the server's next
        # segment carries the ACK: for an async copy that is the interim
        # response, sent 1 ms after the copy went async.
        self.sock = self.smb._NetBIOSSession.get_socket()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sent_at = {}  # message id -> wall-clock time it was sent
        self._last_sent = None
        self._held = None  # frames built but not sent, while preparing
        self.smb._NetBIOSSession.send_packet = self._send_frame

    def _send_frame(self, data):
        """impacket's NetBIOSTCPSession.send_packet, stamped: a direct-TCP
        frame is a zero byte and a 24-bit length."""
        frame = struct.pack(">I", len(data)) + data
        if self._held is not None:
            self._held.append(frame)
            return
        self._last_sent = time.time()
        self.sock.sendall(frame)

    def stamp_arrivals(self, attempts=100):
        """Have the kernel stamp each response as it arrives. Linux turns
        receive stamps on in a deferred work item when the first socket asks
        for them, so echo until a response comes back stamped."""
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        for _ in range(attempts):
            echo_id = self.send_echo()
            arrived = self.collect([echo_id])[echo_id][1]
            del self.sent_at[echo_id]
            if arrived is not None:
                return
            time.sleep(0.001)
        raise RuntimeError("the kernel does not stamp received packets (SO_TIMESTAMPNS)")

    def _recv_exact(self, length):
        """length bytes, and when the kernel received the first of them
        (None until stamp_arrivals())."""
        data, arrived = b"", None
        while len(data) < length:
            part, ancillary, _, _ = self.sock.recvmsg(
                length - len(data), socket.CMSG_SPACE(TIMESPEC.size))
            if not part:
                raise ConnectionError("server closed the connection")
            for level, kind, value in ancillary:
                if arrived is None and level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                    seconds, nanoseconds = TIMESPEC.unpack(value[:TIMESPEC.size])
                    arrived = seconds + nanoseconds / 1e9
            data += part
        return data, arrived

    def _recv_frame(self):
        """The next SMB2 message and its arrival time."""
        while True:
            header, arrived = self._recv_exact(4)
            kind, length = header[0], int.from_bytes(header[1:], "big")
            body, _ = self._recv_exact(length) if length else (b"", None)
            if kind == NETBIOS_SESSION_MESSAGE:
                return body, arrived
            if kind != NETBIOS_KEEP_ALIVE:
                raise ConnectionError(f"unexpected NetBIOS frame type {kind:#x}")

    def _send(self, command, data):
        message_id = super()._send(command, data)
        if self._held is None:
            self.sent_at[message_id] = self._last_sent
        return message_id

    def send_echo(self):
        return self._send(smb3structs.SMB2_ECHO, smb3structs.SMB2Echo())

    def copychunk_write_stamped(self, dst_id, key, chunks):
        """FSCTL_SRV_COPYCHUNK_WRITE of chunks, as smb_raw's copychunk_write;
        returns ((ChunksWritten, ChunkBytesWritten, TotalBytesWritten),
        seconds from its send to its response's arrival), once
        stamp_arrivals() has been called."""
        return self.send_prepared(self.prepare_copychunk_writes(dst_id, key, [chunks])[0])

    def prepare_copychunk_writes(self, dst_id, key, requests):
        """Build a COPYCHUNK_WRITE for each list of chunks in requests, in
        order, without sending them; send each with send_prepared(), in the
        same order and before any other request of this session.
        impacket takes about half a millisecond to build a request and
        holds Python's global lock meanwhile, so a timed loop of several
        sessions' threads measured this client more than the servers;
        Windows and smbclient build requests in C."""
        self._held = []
        try:
            ids = [self.send_copychunk_write(dst_id, key, chunks) for chunks in requests]
            return list(zip(ids, self._held))
        finally:
            self._held = None

    def send_prepared(self, prepared):
        """Send one (message id, frame) of prepare_copychunk_writes() and
        wait for its answer, as copychunk_write_stamped()."""
        message_id, frame = prepared
        self.sent_at[message_id] = time.time()
        self.sock.sendall(frame)
        status, arrived, _, data = self.collect([message_id])[message_id]
        if status != 0:
            raise RuntimeError(f"COPYCHUNK_WRITE failed: status 0x{status:08x}")
        return smb_raw.copychunk_written(data), arrived - self.sent_at.pop(message_id)

    def collect(self, message_ids):
        """Read until every id has its final response; returns
        {id: (status, arrival time, order of arrival, raw SMB2 message)},
        arrival time on the clock of sent_at, once stamp_arrivals() has been
        called."""
        wanted = set(message_ids)
        answers = {}
        while wanted:
            data, arrived = self._recv_frame()
            # Read from the raw header: impacket's parse costs about 160 us of
            # this client's CPU, which on a 2-CPU machine is taken from the
            # servers. An interim response (the request went async) is
            # skipped; only a server that answers asynchronously sends them.
            status, flags = STATUS_AND_FLAGS.unpack_from(data, 8)
            if status == nt_errors.STATUS_PENDING and \
                    flags & smb3structs.SMB2_FLAGS_ASYNC_COMMAND:
                continue
            mid = MESSAGE_ID.unpack_from(data, 24)[0]
            if mid in wanted:
                answers[mid] = (status, arrived, len(answers), data)
                wanted.discard(mid)
        return answers

