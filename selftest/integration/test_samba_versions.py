"""Where Samba releases differ under the module, and which layer answers.

The same case names run against every Samba; what each must see follows from
the release under test (samba_runtime.SambaRuntime):

  * `ext4:dup:fake_fscaps`: share "fakecaps" on ext4 (which cannot clone)
    with "share:fake_fscaps = 134217728". FileFsAttributeInformation shows
    FILE_SUPPORTS_BLOCK_REFCOUNTING in every release. A DUPLICATE_EXTENTS
    request then gets:
      - 4.17: STATUS_INVALID_DEVICE_REQUEST from smbd itself: fake_fscaps only
        changes the reply, not the share's capabilities smbd checks, so
        neither the module nor the helper sees the request;
      - 4.22: fake_fscaps is part of the share's capabilities, so the clone
        reaches the module, which sends it to the helper clone-only; the
        helper's FICLONERANGE fails (EOPNOTSUPP) and the client gets
        STATUS_NOT_SUPPORTED (the helper log proves the module answered;
        stock 4.22's vfs_default answers the same status itself).
    The target is unchanged either way. Share "fakecaps_no" adds
    "copyoffload:block refcounting = no": on 4.22 the module strips the
    faked bit (fake_fscaps sits below it, in vfs_default); on 4.17 the
    reply still shows it (smbd adds it to the reply after every module).
  * `FS:helper_down:dup` (XFS, btrfs; the module loaded, no helper): a
    DUPLICATE_EXTENTS request gets
      - 4.17: STATUS_NOT_SUPPORTED from the module (vfs_default cannot clone,
        so the client copies the data itself);
      - 4.22: success: the module hands the clone to the next module like a
        copychunk, and vfs_default clones it with FICLONERANGE (shared
        extents, identical data), while smbd logs that the helper is down.
    Stock mode: the share advertises no block refcounting (no vfs_btrfs),
    the request is refused, and the case is an expected SKIP.
  * `FS:dup:longer than one helper request` (XFS, btrfs): a DUPLICATE_EXTENTS
    of 2^48 + 2^40 bytes of a sparse file (its first MiB data), more than one
    COPY to the helper may name (2^48). The module does not send it:
      - 4.17: STATUS_NOT_SUPPORTED (vfs_default cannot clone), the target
        unchanged;
      - 4.22: the next module clones it, the target's first MiB is the
        source's.
    Stock mode: refused as above, an expected SKIP.
"""

import os
import time

from impacket import nt_errors

import helper_daemon
import loop_filesystem
import scenario
import smb_raw
import test_clone
import test_helper_down
import testcase

FAKECAPS_SHARE = "fakecaps"
FAKECAPS_NO_SHARE = "fakecaps_no"
DUP_SIZE = 1 << 20
# Past the protocol's COPYOFFLOAD_MAX_COPY_LENGTH (2^48): sparse but for its
# first MiB. XFS and btrfs clone the holes at once.
HUGE_DUP_SIZE = (1 << 48) + (1 << 40)
HUGE_HEAD = 1 << 20

# How the helper may log the errno of a clone the filesystem refuses.
EOPNOTSUPP_NAMES = ("EOPNOTSUPP", "ENOTSUP", str(getattr(os, "EOPNOTSUPP", 95)))


def dup_new_target(env, share, size):
    """Source (random bytes, written on the mount) and a target of the same
    size made over SMB; DUPLICATE_EXTENTS of the whole range. Returns
    (source bytes, target path, NTSTATUS)."""
    _, data = test_clone.create_share_file(env, share, "ver-src.bin", size)
    with smb_raw.connect(env, share) as s:
        src, dst = s.open("ver-src.bin"), s.open("ver-dst.bin", create=True)
        s.set_end_of_file(dst, size)
        status = s.dup_extents_status(src, dst, 0, 0, size)
        s.close(dst)
        s.close(src)
    return data, env.share_path(share, "ver-dst.bin"), status


def require_status(check, status, expected, why):
    check.require(status == expected,
                  f"DUPLICATE_EXTENTS_TO_FILE: {smb_raw.status_name(status)}, expected "
                  f"{smb_raw.status_name(expected)} ({why})")
    check.note(f"{smb_raw.status_name(status)}: {why}")


def require_zeros(check, path, size):
    check.require(test_clone.read_file(path) == bytes(size),
                  "the refused clone changed the target")


def helper_records(env, position, count, timeout=5.0):
    """The helper's copy records since position, waiting for count of them."""
    deadline = time.monotonic() + timeout
    while True:
        records = env.helper.records_since(position)
        if len(records) >= count or time.monotonic() >= deadline:
            return records
        time.sleep(0.05)


def fake_fscaps_case(env, check):
    runtime = env.server.runtime
    attrs = smb_raw.share_attributes(env, FAKECAPS_SHARE)
    check.require(attrs & smb_raw.FILE_SUPPORTS_BLOCK_REFCOUNTING,
                  f"FileFsAttributeInformation 0x{attrs:08x} lacks the faked "
                  f"FILE_SUPPORTS_BLOCK_REFCOUNTING")
    attrs_no = smb_raw.share_attributes(env, FAKECAPS_NO_SHARE)
    stripped = not env.stock and runtime.fake_fscaps_enable
    shown = bool(attrs_no & smb_raw.FILE_SUPPORTS_BLOCK_REFCOUNTING)
    check.require(shown != stripped,
                  f"{FAKECAPS_NO_SHARE} (copyoffload:block refcounting = no): "
                  f"FileFsAttributeInformation 0x{attrs_no:08x}, expected the faked "
                  f"bit {'stripped' if stripped else 'shown'}")
    check.note(f"block refcounting = no: faked bit {'stripped' if stripped else 'shown'}")
    position = env.helper.log_position() if env.helper else 0
    _, target, status = dup_new_target(env, FAKECAPS_SHARE, DUP_SIZE)
    require_zeros(check, target, DUP_SIZE)
    if not runtime.fake_fscaps_enable:
        require_status(check, status, smb_raw.STATUS_INVALID_DEVICE_REQUEST,
                       f"Samba {runtime.version}: smbd refuses, fake_fscaps only "
                       f"changes the reply")
        if env.helper:
            records = env.helper.records_since(position)
            check.require(not records, f"the helper saw {len(records)} copies")
        return
    who = "vfs_default" if env.stock else "the module"
    require_status(check, status, nt_errors.STATUS_NOT_SUPPORTED,
                   f"Samba {runtime.version}: {who} answers, ext4 cannot clone")
    if env.stock:
        check.skipped_in_stock("helper log proof")
        return
    records = helper_records(env, position, 1)
    clone_refused = [r for r in records if r.status in EOPNOTSUPP_NAMES]
    check.require(len(records) == 1 and clone_refused,
                  f"expected one clone refused with EOPNOTSUPP in the helper log, got "
                  f"{helper_daemon.summarize(records).describe()}")
    check.note("helper: clone refused with EOPNOTSUPP")


def helper_down_dup_case(env, check):
    runtime = env.server.runtime
    if "block_refcounting" not in env.expected_capabilities("share"):
        test_clone.require_dup_refused(env, check, "share")
        check.expected_skip("stock Samba without vfs_btrfs advertises no block "
                            "refcounting (DUP refused with STATUS_INVALID_DEVICE_REQUEST)")
    data, target, status = dup_new_target(env, "share", DUP_SIZE)
    check.require(not env.helper.running(), "the helper is running")
    if not runtime.default_clones:
        require_status(check, status, nt_errors.STATUS_NOT_SUPPORTED,
                       f"Samba {runtime.version}: the module refuses, vfs_default "
                       f"cannot clone")
        require_zeros(check, target, DUP_SIZE)
        return
    require_status(check, status, smb_raw.STATUS_SUCCESS,
                   f"Samba {runtime.version}: vfs_default clones")
    check.require(test_clone.read_file(target) == data,
                  "target content differs from the source")
    test_clone.require_shared(env, check, target, [(0, DUP_SIZE)], "DUP target")
    lines = env.server.log_matches(test_helper_down.HELPER_DOWN_RE)
    check.require(lines, f"no line matching /{test_helper_down.HELPER_DOWN_RE}/i "
                         f"in smbd's log")


def huge_dup_case(env, check):
    """A clone longer than one COPY may name (a sparse file past 256 TiB)."""
    if "block_refcounting" not in env.expected_capabilities("share"):
        test_clone.require_dup_refused(env, check, "share")
        check.expected_skip("stock Samba without vfs_btrfs advertises no block "
                            "refcounting (DUP refused with STATUS_INVALID_DEVICE_REQUEST)")
    runtime = env.server.runtime
    src_path, head = test_clone.create_share_file(env, "share", "huge-src.bin", HUGE_HEAD)
    os.truncate(src_path, HUGE_DUP_SIZE)
    with smb_raw.connect(env, "share") as s:
        src, dst = s.open("huge-src.bin"), s.open("huge-dst.bin", create=True)
        s.set_end_of_file(dst, HUGE_DUP_SIZE)
        status = s.dup_extents_status(src, dst, 0, 0, HUGE_DUP_SIZE)
        s.close(dst)
        s.close(src)
    target = env.share_path("share", "huge-dst.bin")
    with open(target, "rb") as f:
        target_head = f.read(HUGE_HEAD)
    os.unlink(target)
    os.unlink(src_path)
    if not runtime.default_clones:
        require_status(check, status, nt_errors.STATUS_NOT_SUPPORTED,
                       f"Samba {runtime.version}: beyond the helper's protocol, and "
                       f"vfs_default cannot clone")
        check.require(target_head == bytes(HUGE_HEAD), "the target changed")
        return
    require_status(check, status, smb_raw.STATUS_SUCCESS,
                   f"Samba {runtime.version}: beyond the helper's protocol, vfs_default clones")
    check.require(target_head == head, "the target's first MiB differs from the source's")


def cases(fs_type, stock):
    out = []
    if fs_type == "ext4":
        out.append(testcase.Case("ext4:dup:fake_fscaps", scenario.main(fs_type),
                                 fake_fscaps_case))
    if fs_type in loop_filesystem.REFLINK_FS:
        out.append(testcase.Case(f"{fs_type}:helper_down:dup",
                                 scenario.helper_down(fs_type),
                                 helper_down_dup_case))
        out.append(testcase.Case(f"{fs_type}:dup:longer than one helper request",
                                 scenario.main(fs_type), huge_dup_case))
    return out
