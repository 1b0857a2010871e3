"""Pipelined SMB2 requests on one connection, as a real client sends them.

impacket's request methods wait for each answer; to put an SMB2 ECHO behind
a COPYCHUNK on the same connection we send both first and then read the
responses ourselves, timestamping each final (non-interim) response.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "integration"))

from impacket import nt_errors, smb3structs  # noqa: E402
from impacket.smb3structs import SMB2Packet  # noqa: E402

import smb_raw  # noqa: E402


class PipelinedSession(smb_raw.Session):
    """SMB 2.1: server-side copy exists there, and impacket does not encrypt
    it, so Python's AES does not sit in every measured round trip."""

    def __init__(self, port, user, share):
        super().__init__(port, user, share, dialect=smb3structs.SMB2_DIALECT_21)
        # As smbclient and Windows do. Without it, Nagle holds a request
        # pipelined behind one still unacknowledged until the server's next
        # segment carries the ACK: for an async copy that is the interim
        # response, sent 1 ms after the copy went async.
        self.smb._NetBIOSSession.get_socket().setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, command, data):
        packet = self.smb.SMB_PACKET()
        packet["Command"] = command
        packet["TreeID"] = self.tree
        packet["Data"] = data
        return self.smb.sendSMB(packet)

    def send_fsctl(self, file_id, code, blob, max_output):
        """Send an FSCTL without waiting; returns its message id."""
        ioctl = smb3structs.SMB2Ioctl()
        ioctl["FileID"] = file_id
        ioctl["CtlCode"] = code
        ioctl["MaxInputResponse"] = 0
        ioctl["MaxOutputResponse"] = max_output
        ioctl["InputCount"] = len(blob)
        ioctl["Buffer"] = blob
        ioctl["OutputOffset"] = 0
        ioctl["Flags"] = smb3structs.SMB2_0_IOCTL_IS_FSCTL
        return self._send(smb3structs.SMB2_IOCTL, ioctl)

    def send_copychunk_write(self, dst_id, key, chunks):
        return self.send_fsctl(dst_id, smb_raw.FSCTL_SRV_COPYCHUNK_WRITE,
                               smb_raw.copychunk_blob(key, chunks),
                               smb_raw.COPYCHUNK_RESPONSE.size)

    def send_echo(self):
        return self._send(smb3structs.SMB2_ECHO, smb3structs.SMB2Echo())

    def collect(self, message_ids):
        """Read until every id has its final response; returns
        {id: (status, arrival time, order of arrival)}."""
        wanted = set(message_ids)
        answers = {}
        while wanted:
            data = self.smb._NetBIOSSession.recv_packet(self.smb._timeout)
            arrived = time.perf_counter()
            packet = SMB2Packet(data.get_trailer())
            mid = packet["MessageID"]
            if packet["Status"] == nt_errors.STATUS_PENDING and \
                    packet["Flags"] & smb3structs.SMB2_FLAGS_ASYNC_COMMAND:
                continue  # interim response: the request went async
            if mid in wanted:
                answers[mid] = (packet["Status"], arrived, len(answers))
                wanted.discard(mid)
        return answers
