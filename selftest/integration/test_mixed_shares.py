"""Copies between a share with the module and one without ("plain"), on one
connection, as Explorer makes them between two shares of one server.

A resume key asked for on the plain share is minted by vfs_default alone, so
the module does not know it; it must hand the copy to the next module, which
knows it, instead of refusing the key. Each case runs in stock mode too,
where both shares are plain.

Cases:
  * `FS:mixed:copychunk-plain-to-module`: RESUME_KEY on the plain share,
    COPYCHUNK_WRITE of 3 MiB + 4097 bytes (four chunks) into a pre-filled
    file of the module's share: all written, the range identical, the rest of
    the target untouched.
  * `FS:mixed:copychunk-module-to-plain`: the other way round.
  * `FS:mixed:dup-plain-to-module` (XFS, btrfs): DUPLICATE_EXTENTS_TO_FILE
    from a file of the plain share into the module's share, which advertises
    block refcounting: STATUS_INVALID_HANDLE, as Windows answers, since smbd
    looks for the source handle in the target's tree only (stock mode:
    STATUS_INVALID_DEVICE_REQUEST, nothing advertised); the target is
    untouched.
"""

import functools

import loop_filesystem
import scenario
import smb_raw
import test_clone
import testcase

MODULE_SHARE = "share"
PLAIN_SHARE = "plain"
MiB = 1 << 20
SIZE = 3 * MiB + 4097
TARGET_SIZE = 4 * MiB
# Source and target offsets differ, so a copy to the wrong place shows.
CHUNKS = tuple((i * MiB, 512 + i * MiB, min(MiB, SIZE - i * MiB))
               for i in range(-(-SIZE // MiB)))


def copychunk_case(env, check, src_share, dst_share):
    _, src_data = test_clone.create_share_file(env, src_share, "mixed-src.bin", SIZE)
    dst_path, dst_before = test_clone.create_share_file(env, dst_share, "mixed-dst.bin",
                                                        TARGET_SIZE)
    with smb_raw.connect(env, MODULE_SHARE) as s:
        trees = {MODULE_SHARE: s.tree, PLAIN_SHARE: s.connect_tree(PLAIN_SHARE)}
        src = s.open("mixed-src.bin", tree=trees[src_share])
        dst = s.open("mixed-dst.bin", tree=trees[dst_share])
        try:
            key = s.resume_key(src, tree=trees[src_share])
            written = s.copychunk_write(dst, key, list(CHUNKS), tree=trees[dst_share])
        except smb_raw.SmbError as e:
            check.fail(str(e))
        s.close(dst, tree=trees[dst_share])
        s.close(src, tree=trees[src_share])
    check.require(written == (len(CHUNKS), 0, SIZE),
                  f"COPYCHUNK_WRITE response {written}, expected ({len(CHUNKS)}, 0, {SIZE})")
    test_clone.require_bytes(check, dst_path, test_clone.copied_over(dst_before, src_data, CHUNKS),
                             "target")


def dup_refused_case(env, check):
    test_clone.create_share_file(env, PLAIN_SHARE, "mixed-dup-src.bin", MiB)
    dst_path, dst_before = test_clone.create_share_file(env, MODULE_SHARE,
                                                        "mixed-dup-dst.bin", MiB)
    with smb_raw.connect(env, MODULE_SHARE) as s:
        plain = s.connect_tree(PLAIN_SHARE)
        src = s.open("mixed-dup-src.bin", tree=plain)
        dst = s.open("mixed-dup-dst.bin")
        status = s.dup_extents_status(src, dst, 0, 0, MiB)
        s.close(dst)
        s.close(src, tree=plain)
    # Stock mode: the target's share does not advertise block refcounting,
    # which smbd checks first.
    expected = (smb_raw.STATUS_INVALID_HANDLE
                if "block_refcounting" in env.expected_capabilities(MODULE_SHARE)
                else smb_raw.STATUS_INVALID_DEVICE_REQUEST)
    check.require(status == expected,
                  f"DUPLICATE_EXTENTS_TO_FILE: {smb_raw.status_name(status)}, "
                  f"expected {smb_raw.status_name(expected)}")
    test_clone.require_bytes(check, dst_path, dst_before, "target")


def cases(fs_type, stock):
    main = scenario.main(fs_type)
    out = [
        testcase.Case(f"{fs_type}:mixed:copychunk-plain-to-module", main,
                      functools.partial(copychunk_case, src_share=PLAIN_SHARE,
                                        dst_share=MODULE_SHARE)),
        testcase.Case(f"{fs_type}:mixed:copychunk-module-to-plain", main,
                      functools.partial(copychunk_case, src_share=MODULE_SHARE,
                                        dst_share=PLAIN_SHARE)),
    ]
    if fs_type in loop_filesystem.REFLINK_FS:
        out.append(testcase.Case(f"{fs_type}:mixed:dup-plain-to-module", main,
                                 dup_refused_case))
    return out
