"""Clone everywhere: block refcounting advertised where the filesystem clones,
DUPLICATE_EXTENTS and copychunk that really share extents.

Cases (module-mode names):
  * `FS:dup:advertised` (XFS, btrfs) / `ext4:dup:not-advertised`: impacket
    QUERY_INFO FileFsAttributeInformation on the share root has
    FILE_SUPPORTS_BLOCK_REFCOUNTING (0x08000000) exactly where
    scenario.expected_capabilities says so (copyoffload:block refcounting =
    auto); where it must not, an FSCTL_DUPLICATE_EXTENTS_TO_FILE also gets
    STATUS_INVALID_DEVICE_REQUEST.
  * `FS:clone:scopy-shared`: smbclient put + scopy of 8 MiB of random data;
    the copy is identical (sha256), FIEMAP shows every byte of it in SHARED
    extents, and the helper's log shows clone bytes == the file size.
  * `FS:clone:dup-shared` (also on btrfs's "btrfs_stack" share): impacket
    FSCTL_DUPLICATE_EXTENTS_TO_FILE of an 8 MiB file into a target extended
    to that size with SET_INFO FileEndOfFileInformation; identical, every byte
    SHARED, helper clone bytes == size.
  * `FS:clone:unaligned-copychunk`: impacket RESUME_KEY + COPYCHUNK_WRITE of
    three 1 MiB chunks at source = target offset 1000 + i MiB into a
    pre-filled 4 MiB target: 3/0/3 MiB written, the range identical to the
    source and the rest of the target untouched, the block-aligned middle of
    each chunk SHARED, and the helper logs clone > 0 and
    copy_file_range + read_write > 0 (the unaligned head and tail).

Stock mode: assertions that need the helper's log, or that the kernel only
gives through our clone planner, are noted as "skipped (stock)"; a share that
(in stock mode) does not advertise block refcounting makes the DUP case an
expected SKIP after proving that DUP is refused.
"""

import functools
import hashlib
import os

import fiemap
import loop_filesystem
import scenario
import smb_raw
import test_dup_torture
import test_scopy
import testcase

SHARE = "share"
MiB = 1 << 20

SCOPY_LABEL, SCOPY_SIZE = "8MiB", 8 * MiB
DUP_SIZE = 8 * MiB

UNALIGNED_FILE_SIZE = 4 * MiB
UNALIGNED_CHUNKS = tuple((1000 + i * MiB, 1000 + i * MiB, MiB) for i in range(3))


# ----------------------------------------------------------------- helpers

def create_share_file(env, share, name, size):
    """A file of size random bytes in share, owned by the test user, written
    on the mounted filesystem; returns (path, its bytes)."""
    path = env.share_path(share, name)
    data = os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, env.user.uid, env.user.gid)
    return path, data


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def copied_over(before, source, chunks):
    """The bytes a destination that held `before` holds once chunks
    [(src_off, dst_off, length)] of `source` were copied onto it."""
    expected = bytearray(before)
    for src_off, dst_off, length in chunks:
        expected[dst_off:dst_off + length] = source[src_off:src_off + length]
    return bytes(expected)


def require_bytes(check, path, expected, what):
    """The file at path holds exactly `expected`; else the case fails
    naming the first offset that differs."""
    actual = read_file(path)
    check.require(len(actual) == len(expected),
                  f"{what} has {len(actual)} bytes, expected {len(expected)}")
    if actual != expected:
        first = next(i for i, (a, b) in enumerate(zip(actual, expected)) if a != b)
        check.fail(f"{what} differs from the expected bytes from offset {first}")


def require_shared(env, check, path, ranges, what, kernel_only=False):
    """FIEMAP (after a sync) puts every byte of ranges [(start, end)] of path
    in SHARED extents. kernel_only: stock Samba does not promise it (only
    our clone planner does), so in stock mode the result is just noted."""
    exts = fiemap.extents(path)
    missing = [gap for start, end in ranges for gap in fiemap.gaps(exts, start, end)]
    total = sum(end - start for start, end in ranges)
    shared = total - sum(b - a for a, b in missing)
    if kernel_only and env.stock:
        check.skipped_in_stock(f"FIEMAP: {what} shared (stock: {shared} of {total} bytes)")
        return
    check.require(not missing,
                  f"{what}: FIEMAP of {os.path.basename(path)}: "
                  f"{fiemap.describe_gaps(missing)} not in SHARED extents "
                  f"({shared} of {total} bytes shared, {len(exts)} extents)")
    check.note(f"FIEMAP: {total} bytes shared")


def require_helper_cloned(env, check, position, size):
    """The helper's log since position shows size bytes done, all cloned
    (nothing to check in stock mode)."""
    summary = test_scopy.check_helper_copied(env, check, position, size)
    if summary is not None:
        clone = summary.method_bytes["clone"]
        check.require(clone == size,
                      f"helper log shows clone={clone}, expected {size} "
                      f"({summary.describe()})")


def require_dup_refused(env, check, share):
    """FSCTL_DUPLICATE_EXTENTS_TO_FILE gets STATUS_INVALID_DEVICE_REQUEST."""
    create_share_file(env, share, "refused-src.bin", 4096)
    with smb_raw.connect(env, share) as s:
        src, dst = s.open("refused-src.bin"), s.open("refused-dst.bin", create=True)
        s.set_end_of_file(dst, 4096)
        status = s.dup_extents_status(src, dst, 0, 0, 4096)
    check.require(status == smb_raw.STATUS_INVALID_DEVICE_REQUEST,
                  f"DUPLICATE_EXTENTS_TO_FILE: {smb_raw.status_name(status)}, "
                  f"expected STATUS_INVALID_DEVICE_REQUEST")


# ------------------------------------------------------------------- cases

def advertised_case(env, check, share):
    attrs = smb_raw.share_attributes(env, share)
    expected = "block_refcounting" in env.expected_capabilities(share)
    has = bool(attrs & smb_raw.FILE_SUPPORTS_BLOCK_REFCOUNTING)
    check.require(has == expected,
                  f"FileFsAttributeInformation 0x{attrs:08x}: "
                  f"FILE_SUPPORTS_BLOCK_REFCOUNTING is {'' if has else 'not '}advertised "
                  f"(expected {'' if expected else 'not '}to be)")
    check.note(f"FileSystemAttributes 0x{attrs:08x}")
    if not expected:
        require_dup_refused(env, check, share)
        check.note("DUP: STATUS_INVALID_DEVICE_REQUEST")
        if env.stock and env.scenario.fs_type in loop_filesystem.REFLINK_FS:
            check.skipped_in_stock("advertised (stock Samba needs vfs_btrfs, or "
                                   "from 4.22 share:fake_fscaps); asserted not "
                                   "advertised instead")


def scopy_shared_case(env, check):
    position = test_scopy.put_and_scopy(env, check, SCOPY_LABEL, SCOPY_SIZE)
    copy = env.share_path(SHARE, test_scopy.scopy_names(SCOPY_LABEL)[1])
    require_shared(env, check, copy, [(0, SCOPY_SIZE)], "scopy copy", kernel_only=True)
    require_helper_cloned(env, check, position, SCOPY_SIZE)


def dup_shared_case(env, check, share):
    if "block_refcounting" not in env.expected_capabilities(share):
        require_dup_refused(env, check, share)
        check.expected_skip(test_dup_torture.expected_skip(env, share, "")[0]
                            + " (DUP refused with STATUS_INVALID_DEVICE_REQUEST)")
    src_path, data = create_share_file(env, share, "dup-src.bin", DUP_SIZE)
    dst_path = env.share_path(share, "dup-dst.bin")
    position = env.helper.log_position() if env.helper else 0
    with smb_raw.connect(env, share) as s:
        src, dst = s.open("dup-src.bin"), s.open("dup-dst.bin", create=True)
        s.set_end_of_file(dst, DUP_SIZE)
        try:
            s.dup_extents(src, dst, 0, 0, DUP_SIZE)
        except smb_raw.SmbError as e:
            check.fail(str(e))
        s.close(dst)
        s.close(src)
    size = os.path.getsize(dst_path)
    check.require(size == DUP_SIZE, f"target has {size} bytes, expected {DUP_SIZE}")
    check.require(hashlib.sha256(read_file(dst_path)).digest()
                  == hashlib.sha256(data).digest(),
                  "target content differs from the source (sha256)")
    require_shared(env, check, dst_path, [(0, DUP_SIZE)], "DUP target")
    require_helper_cloned(env, check, position, DUP_SIZE)


def unaligned_copychunk_case(env, check):
    src_path, src_data = create_share_file(env, SHARE, "unaligned-src.bin",
                                           UNALIGNED_FILE_SIZE)
    dst_path, dst_before = create_share_file(env, SHARE, "unaligned-dst.bin",
                                             UNALIGNED_FILE_SIZE)
    total = sum(length for _, _, length in UNALIGNED_CHUNKS)
    position = env.helper.log_position() if env.helper else 0
    with smb_raw.connect(env, SHARE) as s:
        src, dst = s.open("unaligned-src.bin"), s.open("unaligned-dst.bin")
        try:
            key = s.resume_key(src)
            written = s.copychunk_write(dst, key, list(UNALIGNED_CHUNKS))
        except smb_raw.SmbError as e:
            check.fail(str(e))
        s.close(dst)
        s.close(src)
    check.require(written == (len(UNALIGNED_CHUNKS), 0, total),
                  f"COPYCHUNK_WRITE response {written}, expected "
                  f"({len(UNALIGNED_CHUNKS)}, 0, {total})")

    require_bytes(check, dst_path, copied_over(dst_before, src_data, UNALIGNED_CHUNKS),
                  "target")

    block = os.statvfs(env.fs.mount_point).f_frsize
    middles = [(-(-dst_off // block) * block, (dst_off + length) // block * block)
               for _, dst_off, length in UNALIGNED_CHUNKS]
    require_shared(env, check, dst_path, middles,
                   f"block-aligned ({block}) middle of each chunk", kernel_only=True)
    summary = test_scopy.check_helper_copied(env, check, position, total)
    if summary is not None:
        by = summary.method_bytes
        copied = by["copy_file_range"] + by["read_write"]
        check.require(by["clone"] > 0 and copied > 0,
                      f"helper log shows clone={by['clone']} and "
                      f"copy_file_range+read_write={copied}; expected both > 0 "
                      f"({summary.describe()})")


def cases(fs_type, stock):
    main = scenario.main(fs_type)
    vfs = main.share_vfs(stock)
    advertised = "block_refcounting" in scenario.expected_capabilities(
        fs_type, main.share_vfs(False)[SHARE])
    out = [testcase.Case(f"{fs_type}:dup:{'advertised' if advertised else 'not-advertised'}",
                         main, functools.partial(advertised_case, share=SHARE))]
    if fs_type not in loop_filesystem.REFLINK_FS:
        return out
    out.append(testcase.Case(f"{fs_type}:clone:scopy-shared", main, scopy_shared_case))
    for share in test_dup_torture.shares(fs_type):
        out.append(testcase.Case(
            f"{fs_type}:clone:dup-shared{scenario.share_label(share, vfs[share])}",
            main, functools.partial(dup_shared_case, share=share)))
    out.append(testcase.Case(f"{fs_type}:clone:unaligned-copychunk", main,
                             unaligned_copychunk_case))
    return out
