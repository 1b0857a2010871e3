"""Linux's own SMB3 client (cifs.ko, in a QEMU guest: linux_guest.py) copying
on cifs mounts of the module's shares with the host's cp and xfs_io.

cp (coreutils 9.1) clones first (FICLONE) and falls back to copy_file_range
for a dense file. cifs sends FSCTL_DUPLICATE_EXTENTS_TO_FILE for a clone only
where the share advertises FILE_SUPPORTS_BLOCK_REFCOUNTING (which stock
Samba 4.17 does on no XFS share, and the module does where the filesystem
clones), and for copy_file_range FSCTL_SRV_REQUEST_RESUME_KEY, then one
FSCTL_SRV_COPYCHUNK_WRITE per 1 MiB. Every case checks the client's exit
status and, on the host's own mount of the share, the destination byte for
byte, and reads the helper's log for what it moved. Scenario "linux-client":
shares "xfs" (reflink), "ext4" and "tiny" (a 64 MiB ext4). Cases:

  * `cp-clones-on-xfs`: cp of 24 MiB: identical, every byte in SHARED
    extents, the helper cloned exactly the file's size.
  * `cp-clones-odd-size-on-xfs`: cp of 5 MiB + 123: the clone ends inside
    a block at the source's end; identical, one clone request.
  * `cp-copies-on-ext4`: cp of 40 MiB: no block refcounting, so cifs
    refuses the clone itself and cp falls back to copy_file_range; identical,
    the helper moved it all with copy_file_range.
  * `cp-across-shares-xfs-to-ext4`: cp of 6 MiB + 4097 from the XFS share
    to the ext4 share (one session: copychunk): identical, moved by the
    helper with read/write (the kernel's copy_file_range refuses EXDEV).
  * `reflink-always-refused-on-ext4`: cp --reflink=always fails with
    "Operation not supported" and leaves an empty file; the helper moved
    nothing.
  * `copy-range-unaligned-on-ext4`, `...-on-xfs`: xfs_io copy_range of
    2,000,000 bytes from offset 12345 to 7777 of a pre-filled file: that
    range is the source's, the rest untouched.
  * `reflink-range-on-xfs`: xfs_io reflink of 4 MiB at 1 MiB to 2 MiB of an
    8 MiB file: identical, SHARED, cloned by the helper.
  * `reflink-unaligned-refused`: xfs_io reflink of 8192 bytes from offset
    1000: the client gets EINVAL (smbd's STATUS_INVALID_PARAMETER, which its
    log names), the destination stays as it was.
  * `parallel-copies-on-ext4`: four cp of one 8 MiB file at once, on the
    one connection (one smbd process) cifs keeps: all identical.
  * `copy-range-past-4gib-on-ext4`: xfs_io copy_range of 1 MiB from
    4 GiB + 12345 of a sparse 5 GiB file to 4 GiB + 777 of a new one: the
    range exact, nothing written below it.
  * `written-then-copied`: the guest writes a file through its page cache
    and copies it at once: the copy has the new bytes (cifs writes the
    source back before the copychunk), seen alike by guest and host.
  * `disk-full`: cp of 24 MiB into a share with 8 MiB free fails with "No
    space left on device"; the destination holds a prefix of the source, and
    the helper reported no byte the file lacks.

Module mode only, and in the XFS pass of the runner (the scenario makes its
own ext4 filesystems).
"""

import functools
import os
import re
import subprocess

import helper_daemon
import linux_guest
import scenario
import test_clone
import test_scopy
import testcase

MiB = 1 << 20
GUEST_MOUNTS = "/mnt"
# By path: the guest's busybox sh runs its own applets before PATH's programs.
CP, XFS_IO = linux_guest.PROGRAMS


def guest(env):
    """The scenario's booted guest, with every share mounted at
    /mnt/SHARE (vers=3.1.1, attributes never cached). A guest that failed
    to come up fails every case with the same reason."""
    if "guest" not in env.cache:
        env.cache["guest"] = None
        vm = linux_guest.LinuxGuest(env.dir)
        env.defer("stop the Linux client guest", vm.stop)
        vm.start()
        options = (f"port={env.server.port},username={env.user.name},"
                   f"password={env.user.password},vers=3.1.1,actimeo=0")
        for share in scenario.KIND_SHARES["linux-client"]:
            status, output = vm.run(f"mkdir -p {GUEST_MOUNTS}/{share} && mount -t cifs "
                                    f"//{linux_guest.HOST_ADDRESS}/{share} "
                                    f"{GUEST_MOUNTS}/{share} -o {options} "
                                    f"|| {{ dmesg | tail -n 5; false; }}")
            if status != 0:
                raise RuntimeError(f"mount of {share} in the guest failed: {' | '.join(output)}")
        env.defer("unmount the guest's shares",
                  lambda: vm.run(f"umount {GUEST_MOUNTS}/*", timeout=30))
        env.cache["guest"] = vm
    if env.cache["guest"] is None:
        raise RuntimeError("the Linux client guest did not come up (see the first case)")
    return env.cache["guest"]


def in_guest(share, name):
    return f"{GUEST_MOUNTS}/{share}/{name}"


def run_client(env, check, command, expect_ok=True):
    """Runs command in the guest; returns (status, output text)."""
    status, output = guest(env).run(command)
    text = " | ".join(output)
    if expect_ok:
        check.require(status == 0, f"`{command}` exited {status}: {text}")
    else:
        check.require(status != 0, f"`{command}` succeeded, expected a failure: {text}")
    return status, text


def run_xfs_io(env, check, path, command, error=None):
    """xfs_io -c COMMAND PATH in the guest. xfs_io exits 0 whether its
    command worked or not, so success is silence, and a failure is the
    error text expected; returns the output text."""
    _, text = run_client(env, check, f"{XFS_IO} -c '{command}' {path}")
    if error is None:
        check.require(not text, f"xfs_io {command}: {text}")
    else:
        check.require(error in text, f"xfs_io {command}: {text or 'no error'}, expected {error}")
    return text


def helper_summary(env, position):
    return helper_daemon.summarize(env.helper.records_since(position))


def require_one_clone_request(env, check, position):
    """A clone through FSCTL_DUPLICATE_EXTENTS_TO_FILE is one helper request;
    copychunk's fallback would clone too, but in one request per 1 MiB."""
    summary = helper_summary(env, position)
    check.require(summary.count == 1,
                  f"{summary.count} helper requests, expected the one of a "
                  f"DUPLICATE_EXTENTS_TO_FILE ({summary.describe()})")


# ------------------------------------------------------------------ cases

def cp_with_method(env, check, name, src_share, dst_share, size, method):
    """cp of a new file of size bytes from src_share to dst_share: identical,
    and the helper moved all of it with method. Returns the helper log
    position taken before the copy."""
    _, data = test_clone.create_share_file(env, src_share, f"{name}-src.bin", size)
    position = env.helper.log_position()
    run_client(env, check, f"{CP} {in_guest(src_share, name + '-src.bin')} "
                           f"{in_guest(dst_share, name + '-dst.bin')}")
    test_clone.require_bytes(check, env.share_path(dst_share, f"{name}-dst.bin"), data, "the copy")
    summary = test_scopy.check_helper_copied(env, check, position, size)
    moved = summary.method_bytes[method]
    check.require(moved == size, f"helper moved {moved} bytes with {method}, expected {size} "
                                 f"({summary.describe()})")
    return position


def cp_clones_on_xfs(env, check):
    size = 24 * MiB
    position = cp_with_method(env, check, "cp", "xfs", "xfs", size, "clone")
    test_clone.require_shared(env, check, env.share_path("xfs", "cp-dst.bin"), [(0, size)],
                              "the copy")
    require_one_clone_request(env, check, position)


def cp_clones_odd_size_on_xfs(env, check):
    """Most files end inside a block: the clone of the whole file ends at the
    source's end, unaligned, into a target cifs has just made that long."""
    size = 5 * MiB + 123
    position = cp_with_method(env, check, "odd-size", "xfs", "xfs", size, "clone")
    test_clone.require_shared(env, check, env.share_path("xfs", "odd-size-dst.bin"),
                              [(0, size - size % 4096)], "the copy's whole blocks")
    require_one_clone_request(env, check, position)


def cp_copies_on_ext4(env, check):
    cp_with_method(env, check, "cp", "ext4", "ext4", 40 * MiB, "copy_file_range")


def cp_across_shares(env, check):
    """Two shares of one session: cifs still sends copychunk, and the helper,
    whose copy_file_range the kernel refuses between XFS and ext4 (EXDEV),
    moves the bytes with read/write."""
    cp_with_method(env, check, "across", "xfs", "ext4", 6 * MiB + 4097, "read_write")


def reflink_always_refused_on_ext4(env, check):
    test_clone.create_share_file(env, "ext4", "always-src.bin", MiB)
    position = env.helper.log_position()
    _, text = run_client(env, check, f"{CP} --reflink=always {in_guest('ext4', 'always-src.bin')} "
                                     f"{in_guest('ext4', 'always-dst.bin')}", expect_ok=False)
    check.require("Operation not supported" in text, f"{CP} said: {text}")
    size = os.path.getsize(env.share_path("ext4", "always-dst.bin"))
    check.require(size == 0, f"the refused clone left {size} bytes")
    summary = helper_summary(env, position)
    check.require(summary.bytes_ok == 0, f"the helper moved bytes: {summary.describe()}")
    check.note(f"cp: {text}")


def copy_range_unaligned(env, check, share):
    src_off, dst_off, length, dst_size = 12345, 7777, 2_000_000, 4 * MiB
    _, data = test_clone.create_share_file(env, share, "range-src.bin", 3 * MiB)
    dst, before = test_clone.create_share_file(env, share, "range-dst.bin", dst_size)
    position = env.helper.log_position()
    run_xfs_io(env, check, in_guest(share, "range-dst.bin"),
               f"copy_range -s {src_off} -d {dst_off} -l {length} "
               f"{in_guest(share, 'range-src.bin')}")
    test_clone.require_bytes(check, dst,
                             test_clone.copied_over(before, data, [(src_off, dst_off, length)]),
                             "the destination")
    test_scopy.check_helper_copied(env, check, position, length)


def reflink_range_on_xfs(env, check):
    src_off, dst_off, length = MiB, 2 * MiB, 4 * MiB
    _, data = test_clone.create_share_file(env, "xfs", "reflink-src.bin", 8 * MiB)
    dst, before = test_clone.create_share_file(env, "xfs", "reflink-dst.bin", 8 * MiB)
    position = env.helper.log_position()
    run_xfs_io(env, check, in_guest("xfs", "reflink-dst.bin"),
               f"reflink -q {in_guest('xfs', 'reflink-src.bin')} {src_off} {dst_off} {length}")
    test_clone.require_bytes(check, dst,
                             test_clone.copied_over(before, data, [(src_off, dst_off, length)]),
                             "the destination")
    test_clone.require_shared(env, check, dst, [(dst_off, dst_off + length)], "the range")
    test_clone.require_helper_cloned(env, check, position, length)
    require_one_clone_request(env, check, position)


def reflink_unaligned_refused(env, check):
    test_clone.create_share_file(env, "xfs", "odd-src.bin", MiB)
    dst, before = test_clone.create_share_file(env, "xfs", "odd-dst.bin", MiB)
    position = env.helper.log_position()
    text = run_xfs_io(env, check, in_guest("xfs", "odd-dst.bin"),
                      f"reflink -q {in_guest('xfs', 'odd-src.bin')} 1000 4096 8192",
                      error="Invalid argument")
    test_clone.require_bytes(check, dst, before, "the destination")
    summary = helper_summary(env, position)
    check.require(summary.bytes_ok == 0, f"the helper moved bytes: {summary.describe()}")
    # The client's EINVAL is smbd's answer, and its log names the copy.
    logged = env.server.log_matches(r"copy of 8192 bytes to odd-dst\.bin at 4096 failed "
                                    r"after 0 bytes: .*NT_STATUS_INVALID_PARAMETER")
    check.require(logged, "smbd logged no line about the refused clone")
    check.note(f"xfs_io: {text}")


def parallel_copies_on_ext4(env, check):
    """cifs keeps one connection per server, so one smbd process serves
    the guest: four copies in flight on it at once."""
    size, count = 8 * MiB, 4
    _, data = test_clone.create_share_file(env, "ext4", "par-src.bin", size)
    position = env.helper.log_position()
    src = in_guest("ext4", "par-src.bin")
    copies = " ".join(f"{CP} {src} {in_guest('ext4', f'par-dst{i}.bin')} & pids=\"$pids $!\";"
                      for i in range(count))
    # Each cp's own status: wait PID returns it.
    run_client(env, check, f"pids=; {copies} status=0; "
                           f"for p in $pids; do wait $p || status=1; done; exit $status")
    for i in range(count):
        test_clone.require_bytes(check, env.share_path("ext4", f"par-dst{i}.bin"), data,
                                 f"copy {i}")
    test_scopy.check_helper_copied(env, check, position, count * size)
    peers = {r.peer_pid for r in env.helper.records_since(position)}
    check.require(len(peers) == 1, f"the copies came from smbd processes {sorted(peers)}, "
                                   f"expected the one of the guest's connection")


def copy_range_past_4gib_on_ext4(env, check):
    """Offsets beyond 32 bits, through the client, smbd, the module and the
    helper: 1 MiB from 4 GiB + 12345 of a sparse 5 GiB file to 4 GiB + 777."""
    src_off, dst_off, length = (4 << 30) + 12345, (4 << 30) + 777, MiB
    data = os.urandom(length)
    src = env.share_path("ext4", "big-src.bin")
    with open(src, "wb") as f:
        f.truncate(5 << 30)
        f.seek(src_off)
        f.write(data)
    os.chown(src, env.user.uid, env.user.gid)
    dst = env.share_path("ext4", "big-dst.bin")
    position = env.helper.log_position()
    run_client(env, check, f"{XFS_IO} -f -c 'copy_range -s {src_off} -d {dst_off} -l {length} "
                           f"{in_guest('ext4', 'big-src.bin')}' {in_guest('ext4', 'big-dst.bin')}")
    check.require(os.path.getsize(dst) == dst_off + length,
                  f"the destination has {os.path.getsize(dst)} bytes, expected {dst_off + length}")
    with open(dst, "rb") as f:
        f.seek(dst_off)
        check.require(f.read(length) == data, "the copied range differs from the source's")
        # Nothing was written below the range: a hole up to its first block.
        first_data = os.lseek(f.fileno(), 0, os.SEEK_DATA)
    check.require(first_data >= dst_off - dst_off % 4096,
                  f"the destination has data at {first_data}, below the copied range")
    test_scopy.check_helper_copied(env, check, position, length)


def written_then_copied(env, check):
    src, dst = in_guest("ext4", "fresh-src.bin"), in_guest("ext4", "fresh-dst.bin")
    _, text = run_client(env, check, f"dd if=/dev/urandom of={src} bs=64k count=64 2>/dev/null "
                                     f"&& {CP} {src} {dst} && sha256sum {src} {dst}")
    sums = re.findall(r"\b([0-9a-f]{64})\b", text)
    check.require(len(sums) == 2 and sums[0] == sums[1],
                  f"the guest reads different copies: {text}")
    host = [test_scopy.sha256_file(env.share_path("ext4", name))
            for name in ("fresh-src.bin", "fresh-dst.bin")]
    check.require(host == sums, f"the host reads {host}, the guest {sums}")


def disk_full(env, check):
    size = 24 * MiB
    _, data = test_clone.create_share_file(env, "tiny", "full-src.bin", size)
    mount_point = env.filesystem("tiny").mount_point
    filler = os.path.join(mount_point, "filler")
    free = os.statvfs(mount_point).f_bavail * os.statvfs(mount_point).f_frsize
    subprocess.run(["fallocate", "-l", str(free - 8 * MiB), filler], check=True)
    position = env.helper.log_position()
    _, text = run_client(env, check, f"{CP} {in_guest('tiny', 'full-src.bin')} "
                                     f"{in_guest('tiny', 'full-dst.bin')}", expect_ok=False)
    check.require("No space left on device" in text, f"{CP} said: {text}")
    dst = test_clone.read_file(env.share_path("tiny", "full-dst.bin"))
    check.require(0 < len(dst) < size, f"the destination has {len(dst)} bytes")
    check.require(dst == data[:len(dst)], "the destination is not a prefix of the source")
    summary = helper_summary(env, position)
    check.require(summary.failed, f"the helper logged no failed copy: {summary.describe()}")
    check.require(summary.bytes_ok + sum(r.bytes for r in summary.failed) <= len(dst),
                  f"the helper reported more bytes than the destination has ({len(dst)}): "
                  f"{summary.describe()}")
    check.note(f"{len(dst)} of {size} bytes, cp: {text}")


CASES = (
    ("cp-clones-on-xfs", cp_clones_on_xfs),
    ("cp-clones-odd-size-on-xfs", cp_clones_odd_size_on_xfs),
    ("cp-copies-on-ext4", cp_copies_on_ext4),
    ("cp-across-shares-xfs-to-ext4", cp_across_shares),
    ("reflink-always-refused-on-ext4", reflink_always_refused_on_ext4),
    ("copy-range-unaligned-on-ext4", functools.partial(copy_range_unaligned, share="ext4")),
    ("copy-range-unaligned-on-xfs", functools.partial(copy_range_unaligned, share="xfs")),
    ("reflink-range-on-xfs", reflink_range_on_xfs),
    ("reflink-unaligned-refused", reflink_unaligned_refused),
    ("parallel-copies-on-ext4", parallel_copies_on_ext4),
    ("copy-range-past-4gib-on-ext4", copy_range_past_4gib_on_ext4),
    ("written-then-copied", written_then_copied),
    ("disk-full", disk_full),
)


def cases(fs_type, stock):
    if stock or fs_type != "xfs":
        return []
    scen = scenario.linux_client()
    return [testcase.Case(f"linux-client:{name}", scen, body) for name, body in CASES]
