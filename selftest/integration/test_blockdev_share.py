"""Block-device nodes in a share (raw volumes): smbd serves them as files of
size 0, so stock Samba answers every copychunk of them with
INVALID_VIEW_SIZE. The module checks the range against the device's real
size and sends copies between two such nodes to the helper's device path
(copyoffloadd --device-copy), which claims both devices and copies. The
host has no NVMe or SCSI target, so the devices here are loop devices, which
cannot copy by themselves: the helper falls back to read/write, and says so.
NVMe Copy and SCSI EXTENDED COPY are tested in QEMU (selftest/blockdev).

Samba 4.22 does not serve block-device nodes at all: it opens no special
file for data (NT_STATUS_IO_REPARSE_TAG_NOT_HANDLED), so nothing reaches the
module; there every case checks exactly that.

Cases (ext4 only, one scenario):
  * copychunk between two nodes, unaligned chunks: the data is on the
    devices, the helper's log shows the device session and read/write bytes;
  * a chunk past the source device's end: INVALID_VIEW_SIZE from the module;
  * a mounted device: the helper's claim fails, SHARING_VIOLATION;
  * a node and a regular file: smbd's view (size 0) stands, INVALID_VIEW_SIZE;
  * a regular file onto a node: smbd's own copy answers, as in stock Samba
    4.17 (its copy_file_range fails with EINVAL: INVALID_PARAMETER), and the
    device is unchanged; the helper copies only between two nodes or two
    regular files.
"""

import os
import stat

import cleanup
import processes
import scenario
import smb_raw
import testcase

from impacket import nt_errors

MiB = 1 << 20
DEVICE_SIZE = 16 * MiB
STATUS_INVALID_VIEW_SIZE = nt_errors.STATUS_INVALID_VIEW_SIZE
# Where a file would be copied onto disk1, clear of the ranges the other
# cases use.
FILE_TO_NODE_OFFSET = 14 * MiB
FILE_TO_NODE_BYTES = 64 * 1024 + 100


def pattern(seed, size):
    out = bytearray(size)
    x = seed
    for i in range(0, size, 8):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        out[i:i + 8] = x.to_bytes(8, "little")
    return bytes(out)


def devices(env):
    """Three loop devices over images of known content, with nodes disk0,
    disk1, disk2 in the share; disk2's device carries a mounted ext4.
    Made once per scenario."""
    if "blockdev" in env.cache:
        return env.cache["blockdev"]
    share = env.share_path("raw")
    made = {}
    for i in range(3):
        image = os.path.join(env.dir, f"raw{i}.img")
        data = pattern(i + 1, DEVICE_SIZE)
        with open(image, "wb") as f:
            f.write(data)
        # critical(): an interrupt cannot come between attaching and
        # registering the undo, so the device never outlives the run.
        with cleanup.critical():
            loop = processes.run(["losetup", "--find", "--show", image]).stdout.strip()
            env.defer(f"detach {loop}",
                      lambda loop=loop: processes.run(["losetup", "-d", loop]))
        node = os.path.join(share, f"disk{i}")
        os.mknod(node, stat.S_IFBLK | 0o600, os.stat(loop).st_rdev)
        os.chmod(node, 0o666)  # the test user reads and writes through smbd
        made[f"disk{i}"] = (loop, data)
    loop2 = made["disk2"][0]
    mount_point = os.path.join(env.dir, "raw-mnt")
    os.mkdir(mount_point)
    processes.run(["mkfs.ext4", "-q", "-F", loop2])
    with cleanup.critical():
        processes.run(["mount", loop2, mount_point])
        env.defer(f"unmount {mount_point}", lambda: processes.run(["umount", mount_point]))
    env.cache["blockdev"] = made
    return made


def device_bytes(loop, offset, length):
    with open(loop, "rb") as f:
        f.seek(offset)
        return f.read(length)


def nodes_refused(env, check):
    """True (the case is done) on a Samba that does not open device nodes,
    after checking that it refuses them."""
    runtime = env.server.runtime
    if runtime.serves_device_nodes:
        return False
    with smb_raw.connect(env, "raw") as s:
        status = fsctl_status(lambda: s.open("disk0"))
    check.require(status == nt_errors.STATUS_IO_REPARSE_TAG_NOT_HANDLED,
                  f"Samba {runtime.version} opened a block-device node: "
                  f"{smb_raw.status_name(status)}")
    check.note(f"Samba {runtime.version}: smbd opens no special file for data")
    return True


def fsctl_status(call):
    try:
        call()
    except smb_raw.SmbError as e:
        return e.status
    return nt_errors.STATUS_SUCCESS


def copy_between_nodes(env, check):
    made = devices(env)
    if nodes_refused(env, check):
        return
    (loop0, data0), (loop1, _) = made["disk0"], made["disk1"]
    chunks = [(1000 + i * MiB, 5 * MiB + 1000 + i * MiB, MiB) for i in range(3)]
    position = env.helper.log_position()
    with smb_raw.connect(env, "raw") as s:
        src, dst = s.open("disk0"), s.open("disk1")
        written = s.copychunk_write(dst, s.resume_key(src), chunks)
        s.close(src)
        s.close(dst)
    check.require(written == (3, 0, 3 * MiB), f"copychunk answered {written}")
    for src_off, dst_off, length in chunks:
        check.require(device_bytes(loop1, dst_off, length) == data0[src_off:src_off + length],
                      f"{loop1} at {dst_off} does not hold {loop0} at {src_off}")
    # The three chunks continue each other in both devices: one request.
    summary = env.helper.wait_for_bytes(position, 3 * MiB)
    check.require(summary.ok_count == 1 and summary.bytes_ok == 3 * MiB,
                  f"helper log: {summary.describe()}")
    check.require(summary.method_bytes["read_write"] == 3 * MiB,
                  f"loop devices cannot copy by themselves: {summary.describe()}")
    reasons = [line for line in env.helper.log_text(position).splitlines()
               if "no device copy: no copy offload for loop" in line]
    check.require(len(reasons) == 1, "the helper did not log why the copy was not "
                                     "a device copy")
    check.note(f"{summary.describe()}")


def chunk_past_device_end(env, check):
    devices(env)
    if nodes_refused(env, check):
        return
    with smb_raw.connect(env, "raw") as s:
        src, dst = s.open("disk0"), s.open("disk1")
        key = s.resume_key(src)
        status = fsctl_status(lambda: s.copychunk_write(
            dst, key, [(DEVICE_SIZE - 4096, 0, 8192)]))
        # Within the device: served, although smbd calls its size 0.
        inside = fsctl_status(lambda: s.copychunk_write(
            dst, key, [(DEVICE_SIZE - 8192, 0, 8192)]))
        s.close(src)
        s.close(dst)
    check.require(status == STATUS_INVALID_VIEW_SIZE,
                  f"a chunk past the end gave {smb_raw.status_name(status)}")
    check.require(inside == nt_errors.STATUS_SUCCESS,
                  f"the device's last 8 KiB gave {smb_raw.status_name(inside)}")


def mounted_device_refused(env, check):
    made = devices(env)
    if nodes_refused(env, check):
        return
    position = env.helper.log_position()
    with smb_raw.connect(env, "raw") as s:
        src, dst = s.open("disk2"), s.open("disk1")
        status = fsctl_status(lambda: s.copychunk_write(
            dst, s.resume_key(src), [(0, 12 * MiB, MiB)]))
        s.close(src)
        s.close(dst)
    check.require(status == nt_errors.STATUS_SHARING_VIOLATION,
                  f"a copy from a mounted device gave {smb_raw.status_name(status)}")
    records = env.helper.records_since(position)
    check.require(any(r.status == "EBUSY" for r in records),
                  f"the helper's log has no EBUSY copy: {records}")
    check.require(device_bytes(made["disk1"][0], 12 * MiB, MiB) ==
                  made["disk1"][1][12 * MiB:13 * MiB], "the destination changed")


def node_file_copy_status(env, src, dst, chunk, file_name, file_bytes):
    """Writes file_bytes to file_name in the share, then the status of one
    COPYCHUNK_WRITE of chunk from src to dst (one of them that file)."""
    path = env.share_path("raw", file_name)
    with open(path, "wb") as f:
        f.write(file_bytes)
    os.chown(path, env.user.uid, env.user.gid)
    with smb_raw.connect(env, "raw") as s:
        src_id, dst_id = s.open(src), s.open(dst)
        status = fsctl_status(lambda: s.copychunk_write(
            dst_id, s.resume_key(src_id), [chunk]))
        s.close(src_id)
        s.close(dst_id)
    return status


def node_and_file_keep_smbd_view(env, check):
    devices(env)
    if nodes_refused(env, check):
        return
    status = node_file_copy_status(env, "disk0", "plain.bin", (0, 0, 4096),
                                   "plain.bin", pattern(9, MiB))
    check.require(status == STATUS_INVALID_VIEW_SIZE,
                  f"device node to file gave {smb_raw.status_name(status)}")


def file_to_node_keeps_smbd_answer(env, check):
    made = devices(env)
    if nodes_refused(env, check):
        return
    loop1, _ = made["disk1"]
    before = device_bytes(loop1, FILE_TO_NODE_OFFSET, FILE_TO_NODE_BYTES)
    status = node_file_copy_status(env, "to-node.bin", "disk1",
                                   (0, FILE_TO_NODE_OFFSET, FILE_TO_NODE_BYTES),
                                   "to-node.bin", pattern(10, FILE_TO_NODE_BYTES))
    check.require(status == nt_errors.STATUS_INVALID_PARAMETER,
                  f"file to device node gave {smb_raw.status_name(status)}")
    check.require(device_bytes(loop1, FILE_TO_NODE_OFFSET, FILE_TO_NODE_BYTES) == before,
                  f"{loop1} changed at {FILE_TO_NODE_OFFSET}")


def cases(fs_type, stock):
    if fs_type != "ext4" or stock:
        return []
    scen = scenario.blockdev(fs_type)
    return [
        testcase.Case("ext4:blockdev:copychunk between block-device nodes, via the helper",
                      scen, copy_between_nodes),
        testcase.Case("ext4:blockdev:chunk past the source device's end", scen,
                      chunk_past_device_end),
        testcase.Case("ext4:blockdev:mounted device refused (SHARING_VIOLATION)", scen,
                      mounted_device_refused),
        testcase.Case("ext4:blockdev:device node and file keep smbd's view (size 0)", scen,
                      node_and_file_keep_smbd_view),
        testcase.Case("ext4:blockdev:file to device node keeps smbd's answer", scen,
                      file_to_node_keeps_smbd_answer),
    ]
