"""smbtorture smb2.ioctl dup_extents_* (FSCTL_DUPLICATE_EXTENTS_TO_FILE) on
the reflink filesystems, one reported case per torture test and share.

Shares: "share" (copyoffload alone) on XFS and btrfs, and on btrfs also
"btrfs_stack" (copyoffload on top of vfs_btrfs). Every test runs in one
smbtorture process per share (test_torture.run_batch_once).

What each test must do follows from what the share should advertise
(scenario.expected_capabilities):
  * with BLOCK_REFCOUNTING (and, for dup_extents_compressed_*, also
    FILE_FILE_COMPRESSION): pass; any skip is a failure;
  * dup_extents_compressed_* where the share has BLOCK_REFCOUNTING but not
    FILE_FILE_COMPRESSION (copyoffload alone: XFS, btrfs): smbtorture must skip
    it with "... compressed files not supported", and the share's
    FileFsAttributeInformation must show exactly that; reported as
    `SKIP name: <FS> share does not advertise FILE_FILE_COMPRESSION`;
  * without BLOCK_REFCOUNTING (stock Samba without vfs_btrfs): smbtorture
    must skip every test with "block refcounting ... not supported", and the
    share must not advertise it; reported as SKIP.
"""

import functools

import loop_filesystem
import scenario
import smb_raw
import test_torture
import testcase

DUP_TESTS = tuple(f"dup_extents_{n}" for n in (
    "simple", "len_beyond_dest", "len_beyond_src", "len_zero", "sparse_src",
    "sparse_dest", "sparse_both", "src_is_dest", "src_is_dest_overlap",
    "compressed_src", "compressed_dest", "bad_handle", "src_lock", "dest_lock"))

COMPRESSED_TESTS = ("dup_extents_compressed_src", "dup_extents_compressed_dest")

FS_NAMES = {"xfs": "XFS", "btrfs": "btrfs", "ext4": "ext4"}


def shares(fs_type):
    """Shares to run the dup tests on (module-mode names)."""
    return ["share"] + list(scenario.BTRFS_SHARES if fs_type == "btrfs" else ())


def case_name(fs_type, test, share, vfs):
    return f"{fs_type}:dup:torture:{test}{scenario.share_label(share, vfs)}"


def expected_skip(env, share, test):
    """(reason, smbtorture skip text, attribute bits that must be set,
    bits that must be clear) if test should skip on share, else None."""
    caps = env.expected_capabilities(share)
    fs = FS_NAMES[env.scenario.fs_type]
    if "block_refcounting" not in caps:
        who = "stock Samba: " if env.stock else ""
        return (f"{who}{fs} share without vfs_btrfs does not advertise "
                f"FILE_SUPPORTS_BLOCK_REFCOUNTING", "block refcounting",
                0, smb_raw.FILE_SUPPORTS_BLOCK_REFCOUNTING)
    if test in COMPRESSED_TESTS and "compression" not in caps:
        return (f"{fs} share does not advertise FILE_FILE_COMPRESSION",
                "compressed files not supported",
                smb_raw.FILE_SUPPORTS_BLOCK_REFCOUNTING, smb_raw.FILE_FILE_COMPRESSION)
    return None


def _batch(env, share):
    wanted = [test for test in DUP_TESTS
              if case_name(env.scenario.fs_type, test, share, env.share_vfs(share))
              in env.selected]
    return test_torture.run_batch_once(env, "dup", share, wanted)


def dup_torture_case(env, check, test, share):
    result = _batch(env, share)[test_torture.PREFIX + test]
    skip = expected_skip(env, share, test)
    if skip is None:
        if result.status == "skip":
            check.fail(f"skipped by smbtorture (must pass): {result.reason}")
        check.require(result.passed, f"{result.status}: {result.reason}")
        return
    reason, text, must_set, must_clear = skip
    check.require(result.status == "skip",
                  f"expected smbtorture to skip it ({reason}), got "
                  f"{result.status}: {result.reason}")
    check.require(text in result.reason,
                  f"smbtorture skipped it for another reason: {result.reason!r} "
                  f"(expected: {reason})")
    attrs = smb_raw.share_attributes(env, share)
    check.require(attrs & must_set == must_set and not attrs & must_clear,
                  f"the skip is not explained by the share's FileSystemAttributes "
                  f"0x{attrs:08x} (expected set 0x{must_set:08x}, clear 0x{must_clear:08x})")
    check.expected_skip(reason)


def cases(fs_type, stock):
    if fs_type not in loop_filesystem.REFLINK_FS:
        return []
    main = scenario.main(fs_type)
    vfs = main.share_vfs(stock)
    return [testcase.Case(case_name(fs_type, test, share, vfs[share]), main,
                          functools.partial(dup_torture_case, test=test, share=share))
            for share in shares(fs_type) for test in DUP_TESTS]
