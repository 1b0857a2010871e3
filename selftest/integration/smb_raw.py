"""Raw SMB2 requests that smbclient cannot send, through impacket (Debian's
python3-impacket 0.10, importable by /usr/bin/python3).

    with smb_raw.Session(env.server.port, env.user, "share") as s:
        attrs = s.fs_attributes()
        src = s.open("a.bin")
        dst = s.open("b.bin", create=True)
        s.set_end_of_file(dst, size)
        s.dup_extents(src, dst, 0, 0, size)          # FSCTL_DUPLICATE_EXTENTS_TO_FILE
        key = s.resume_key(src)                      # FSCTL_SRV_REQUEST_RESUME_KEY
        s.copychunk_write(dst, key, [(src_off, dst_off, length), ...])

impacket represents an open file by its SMB2_FILEID as 16 bytes (persistent
id then volatile id, little endian): create() returns exactly that, and it is
also what DUPLICATE_EXTENTS_DATA's SourceFileId field carries. A request that
fails raises SmbError with the NTSTATUS code and name.
"""

import socket
import struct

from impacket import nt_errors, smb3, smb3structs
from impacket.smbconnection import SMBConnection, SessionError

FSCTL_DUPLICATE_EXTENTS_TO_FILE = 0x00098344
FSCTL_SRV_REQUEST_RESUME_KEY = 0x00140078
FSCTL_SRV_COPYCHUNK_WRITE = 0x001480F2

# FileFsAttributeInformation.FileSystemAttributes bits (MS-FSCC 2.5.1)
FILE_FILE_COMPRESSION = 0x00000010
FILE_SUPPORTS_SPARSE_FILES = 0x00000040
FILE_SUPPORTS_BLOCK_REFCOUNTING = 0x08000000

STATUS_SUCCESS = nt_errors.STATUS_SUCCESS
STATUS_INVALID_DEVICE_REQUEST = nt_errors.STATUS_INVALID_DEVICE_REQUEST
STATUS_INVALID_HANDLE = nt_errors.STATUS_INVALID_HANDLE
STATUS_INVALID_VIEW_SIZE = nt_errors.STATUS_INVALID_VIEW_SIZE
STATUS_DISK_FULL = nt_errors.STATUS_DISK_FULL
STATUS_FILE_LOCK_CONFLICT = nt_errors.STATUS_FILE_LOCK_CONFLICT

COPYCHUNK_RESPONSE = struct.Struct("<III")  # ChunksWritten, ChunkBytesWritten, TotalBytesWritten
SMB2_HEADER_SIZE = 64
# SMB2 IOCTL response (MS-SMB2 2.2.32): OutputOffset (from the header's
# start) and OutputCount, 32 bytes into its body.
IOCTL_OUTPUT = struct.Struct("<II")
IOCTL_OUTPUT_AT = 32


def status_name(code):
    return nt_errors.ERROR_MESSAGES.get(code, (f"NTSTATUS 0x{code:08x}",))[0]


class SmbError(Exception):
    def __init__(self, what, status):
        super().__init__(f"{what}: {status_name(status)}")
        self.status = status


def error_code(error):
    """The NTSTATUS of impacket's SessionError: smbconnection's calls it
    getErrorCode(), smb3's get_error_code()."""
    if hasattr(error, "getErrorCode"):
        return error.getErrorCode()
    return error.get_error_code()


def _raises_smb_error(what):
    def wrap(fn):
        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (SessionError, smb3.SessionError) as e:
                raise SmbError(what, error_code(e)) from None
        return call
    return wrap


class Session:
    """One SMB connection, logged in, with a tree connect to share."""

    def __init__(self, port, user, share, timeout=60, dialect=None):
        """dialect: e.g. smb3structs.SMB2_DIALECT_21 to keep impacket from
        encrypting (it encrypts every SMB 3 session it can)."""
        self.conn = SMBConnection("127.0.0.1", "127.0.0.1", sess_port=port,
                                  timeout=timeout, preferredDialect=dialect)
        try:
            self.conn.login(user.name, user.password)
            self.tree = self.conn.connectTree(share)
        except BaseException:
            self.conn.close()
            raise
        self.smb = self.conn.getSMBServer()  # impacket.smb3.SMB3
        self.aborted = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.aborted:
            self.smb.get_socket().close()
        else:
            self.conn.close()
        return False

    def abort(self):
        """Drop the TCP connection at once, with no LOGOFF, as a client that
        crashed or lost its network; the session is unusable after."""
        self.smb.get_socket().shutdown(socket.SHUT_RDWR)
        self.aborted = True

    @_raises_smb_error("TREE_CONNECT")
    def connect_tree(self, share):
        """A second tree of this connection (its id), for copies between
        shares: a resume key is good only on the connection that asked."""
        return self.conn.connectTree(share)

    def _tree(self, tree):
        """tree, or the session's share when it is None."""
        return self.tree if tree is None else tree

    @_raises_smb_error("CREATE")
    def open(self, name, create=False, tree=None):
        """Open name read/write (create=True: create or truncate it) in
        tree (default: the session's share)."""
        return self.conn.createFile(
            self._tree(tree), name,
            desiredAccess=smb3structs.FILE_READ_DATA | smb3structs.FILE_WRITE_DATA
            | smb3structs.FILE_READ_ATTRIBUTES | smb3structs.FILE_WRITE_ATTRIBUTES,
            shareMode=smb3structs.FILE_SHARE_READ | smb3structs.FILE_SHARE_WRITE,
            creationDisposition=(smb3structs.FILE_OVERWRITE_IF if create
                                 else smb3structs.FILE_OPEN))

    @_raises_smb_error("CLOSE")
    def close(self, file_id, tree=None):
        self.conn.closeFile(self._tree(tree), file_id)

    @_raises_smb_error("SET_INFO FileEndOfFileInformation")
    def set_end_of_file(self, file_id, size):
        self.smb.setInfo(self.tree, file_id, struct.pack("<q", size),
                         infoType=smb3structs.SMB2_0_INFO_FILE,
                         fileInfoClass=smb3structs.SMB2_FILE_END_OF_FILE_INFO)

    @_raises_smb_error("QUERY_INFO FileFsAttributeInformation")
    def fs_attributes(self):
        """FileSystemAttributes of the share (FileFsAttributeInformation),
        i.e. smbd's conn->fs_capabilities as cached at tree connect."""
        root = self.conn.createFile(
            self.tree, "", desiredAccess=smb3structs.FILE_READ_ATTRIBUTES,
            shareMode=smb3structs.FILE_SHARE_READ | smb3structs.FILE_SHARE_WRITE,
            creationOption=smb3structs.FILE_DIRECTORY_FILE,
            creationDisposition=smb3structs.FILE_OPEN)
        try:
            info = self.smb.queryInfo(
                self.tree, root, infoType=smb3structs.SMB2_0_INFO_FILESYSTEM,
                fileInfoClass=smb3structs.SMB2_FILESYSTEM_ATTRIBUTE_INFO)
        finally:
            self.conn.closeFile(self.tree, root)
        return struct.unpack_from("<I", info, 0)[0]

    def fsctl(self, file_id, code, blob, max_output, tree=None):
        """Send an FSCTL; its output buffer, or SmbError."""
        try:
            out = self.smb.ioctl(self._tree(tree), file_id, ctlCode=code,
                                 flags=smb3structs.SMB2_0_IOCTL_IS_FSCTL,
                                 inputBlob=blob, maxInputResponse=0,
                                 maxOutputResponse=max_output)
        except (SessionError, smb3.SessionError) as e:
            raise SmbError(f"FSCTL 0x{code:08x}", error_code(e)) from None
        return out if isinstance(out, bytes) else b""

    def dup_extents(self, src_id, dst_id, src_off, dst_off, length):
        """FSCTL_DUPLICATE_EXTENTS_TO_FILE on dst: DUPLICATE_EXTENTS_DATA is
        SourceFileId (16 bytes), SourceFileOffset, TargetFileOffset, ByteCount."""
        blob = src_id + struct.pack("<qqq", src_off, dst_off, length)
        self.fsctl(dst_id, FSCTL_DUPLICATE_EXTENTS_TO_FILE, blob, 0)

    def dup_extents_status(self, src_id, dst_id, src_off, dst_off, length):
        """dup_extents, its NTSTATUS returned instead of raised."""
        try:
            self.dup_extents(src_id, dst_id, src_off, dst_off, length)
        except SmbError as e:
            return e.status
        return STATUS_SUCCESS

    def resume_key(self, file_id, tree=None):
        """The 24-byte ResumeKey of SRV_REQUEST_RESUME_KEY's response."""
        out = self.fsctl(file_id, FSCTL_SRV_REQUEST_RESUME_KEY, b"", 32, tree=tree)
        if len(out) < 24:
            raise SmbError(f"RESUME_KEY reply of {len(out)} bytes", nt_errors.STATUS_UNSUCCESSFUL)
        return out[:24]

    def _send(self, command, data):
        """Send a request in this tree without waiting; its message id."""
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
        """Send FSCTL_SRV_COPYCHUNK_WRITE of chunks without waiting; its
        message id."""
        return self.send_fsctl(dst_id, FSCTL_SRV_COPYCHUNK_WRITE,
                               copychunk_blob(key, chunks), COPYCHUNK_RESPONSE.size)

    def copychunk_write_outcome(self, dst_id, key, chunks):
        """FSCTL_SRV_COPYCHUNK_WRITE as copychunk_write, but a failure is
        returned, not raised: (NTSTATUS, (ChunksWritten, ChunkBytesWritten,
        TotalBytesWritten) or None). A failed copy still says how far it got
        (MS-SMB2 2.2.32.1), which impacket's ioctl() drops."""
        answer = self.smb.recvSMB(self.send_copychunk_write(dst_id, key, chunks))
        return answer["Status"], copychunk_written(answer.getData())

    def copychunk_write(self, dst_id, key, chunks, tree=None):
        """FSCTL_SRV_COPYCHUNK_WRITE of chunks [(src_off, dst_off, length)];
        returns (ChunksWritten, ChunkBytesWritten, TotalBytesWritten)."""
        out = self.fsctl(dst_id, FSCTL_SRV_COPYCHUNK_WRITE,
                         copychunk_blob(key, chunks), COPYCHUNK_RESPONSE.size, tree=tree)
        return COPYCHUNK_RESPONSE.unpack_from(out, 0)


def copychunk_written(message):
    """(ChunksWritten, ChunkBytesWritten, TotalBytesWritten) of a
    COPYCHUNK(_WRITE) response, the raw SMB2 message with its header, which
    carries them with success and failure alike (MS-SMB2 2.2.32.1); None if
    it has none (an SMB2 ERROR response, say)."""
    at = SMB2_HEADER_SIZE + IOCTL_OUTPUT_AT
    if len(message) < at + IOCTL_OUTPUT.size:
        return None
    offset, count = IOCTL_OUTPUT.unpack_from(message, at)
    if count != COPYCHUNK_RESPONSE.size or offset + count > len(message):
        return None
    return COPYCHUNK_RESPONSE.unpack_from(message, offset)


def copychunk_blob(key, chunks):
    """SRV_COPYCHUNK_COPY: the 24-byte resume key, ChunkCount, Reserved, then
    SRV_COPYCHUNK entries (SourceOffset, TargetOffset, Length, Reserved)."""
    blob = key + struct.pack("<II", len(chunks), 0)
    for src_off, dst_off, length in chunks:
        blob += struct.pack("<QQII", src_off, dst_off, length, 0)
    return blob


# ------------------------------------------------------- harness conveniences

def connect(env, share):
    """A Session as the test user to share on the scenario's smbd."""
    return Session(env.server.port, env.user, share)


def share_attributes(env, share):
    """FileSystemAttributes of share, queried once per scenario."""
    key = ("fs_attributes", share)
    if key not in env.cache:
        with connect(env, share) as session:
            env.cache[key] = session.fs_attributes()
    return env.cache[key]
