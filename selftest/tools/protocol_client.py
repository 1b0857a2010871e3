"""A small client of copyoffloadd's wire protocol (include/copyoffload_protocol.h)
for the tool and service tests: HELLO, SHARE, COPY with two descriptors, and
COPY_REPLY decoding. Little-endian, one message per SOCK_SEQPACKET packet."""

import socket
import struct

MAGIC = 0x46464F43
VERSION = 5  # COPYOFFLOAD_PROTOCOL_VERSION (2: descriptor handles, RELEASE; 3: CLONED;
#               4: reply flags; 5: share flags)
HELLO, HELLO_REPLY, COPY, COPY_REPLY, SHARE, RELEASE = 1, 2, 3, 4, 5, 8
METHODS = ("clone", "copy_file_range", "device", "read_write")
ALL_METHODS = 0xF
NONE = 0xFF

HEADER = struct.Struct("<IHHIIQ")  # magic, version, type, length, reserved, request id


def message(kind, request_id, body, version=VERSION):
    """One message: the header (in `version`), then body."""
    return HEADER.pack(MAGIC, version, kind, HEADER.size + len(body), 0, request_id) + body


class Client:
    """One connection to the daemon, after the handshake."""

    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.next_id = 1
        self.sock.send(message(HELLO, self._id(), struct.pack("<HHI", VERSION, VERSION, 0)))
        reply = self.sock.recv(256)
        status, version = struct.unpack_from("<iH", reply, HEADER.size)
        if status != 0 or version != VERSION:
            raise RuntimeError(f"handshake refused: status {status}, version {version}")

    def _id(self):
        self.next_id += 1
        return self.next_id - 1

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def declare_share(self, share_id, name, methods=("clone", "copy_file_range", "read_write"),
                      max_segment=0, max_bytes_per_second=0, max_concurrent=0, flags=0):
        order = [METHODS.index(m) for m in methods] + [NONE] * (4 - len(methods))
        encoded = name.encode()
        body = struct.pack("<I4BQQII", share_id, *order, max_segment, max_bytes_per_second,
                           max_concurrent, flags) + encoded + b"\0" * (128 - len(encoded))
        self.sock.send(message(SHARE, self._id(), body))

    def send_copy(self, src_fd, dst_fd, length, src_offset=0, dst_offset=0,
                  methods=ALL_METHODS, share_id=0, handle=0):
        """Sends one COPY (descriptors None: it names `handle` only);
        returns its request id."""
        request_id = self._id()
        body = struct.pack("<QQQIIII", src_offset, dst_offset, length, methods, 0, share_id,
                           handle)
        rights = [] if src_fd is None else [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                              struct.pack("<ii", src_fd, dst_fd))]
        self.sock.sendmsg([message(COPY, request_id, body)], rights)
        return request_id

    def reply(self, request_id):
        """Waits for the COPY_REPLY to request_id: (status, bytes_done,
        {method: bytes})."""
        reply = self.sock.recv(256)
        if not reply:
            raise ConnectionError(f"the daemon closed the connection before replying "
                                  f"to COPY id={request_id}")
        magic, _, kind, _, _, reply_id = HEADER.unpack_from(reply)
        if magic != MAGIC or kind != COPY_REPLY or reply_id != request_id:
            raise RuntimeError(f"unexpected reply {reply!r}")
        status, _, done, *by_method = struct.unpack_from("<iIQ4Q", reply, HEADER.size)
        return status, done, dict(zip(METHODS, by_method))

    def copy(self, src_fd, dst_fd, length, **kwargs):
        """Sends one COPY and waits for its reply."""
        return self.reply(self.send_copy(src_fd, dst_fd, length, **kwargs))

    def release(self, handle):
        """Drops a descriptor handle (no reply)."""
        self.sock.send(message(RELEASE, self._id(), struct.pack("<II", handle, 0)))
