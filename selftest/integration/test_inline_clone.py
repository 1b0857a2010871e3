"""Inline cloning: smbd clones a bounded copychunk chunk itself.

On the "inline" share (copyoffload:inline clone = yes, the production
default) the module clones each chunk with FICLONERANGE inside smbd when
that cannot wait on I/O, and leaves everything else to the helper.

Cases (module mode only):
  * `FS:inline:clean-source-cloned-in-smbd` (XFS, btrfs): a source written
    and fsynced on the mount, copied with smbclient scopy: identical, every
    byte SHARED (FIEMAP), smbd's log accounts for every byte as cloned
    inline, and the helper's log shows none of it. `copyoffload stats`
    counts them all the same (CLONED): one clone request for the request's
    8 chunks, which continue each other (a chunk run), and every byte,
    under clone and in the share's total.
  * `FS:inline:dirty-source-goes-to-helper` (XFS, btrfs): smbclient put then
    scopy at once, so the source's pages are still dirty and an inline clone
    would wait for their writeback: the first chunk goes to the helper. Its
    clone makes the kernel write the source back, so later chunks may be
    clean and cloned inline: together the two account for every byte, and
    the helper's share is not empty.
  * `ext4:inline:no-reflink-goes-to-helper`: no inline clone, the helper
    copies every byte, and the smbd process decided once that it would not
    try (at tree connect, from the clone probe; else at the first refusal),
    not once per chunk.
"""

import os
import re

import helper_daemon
import loop_filesystem
import ops_support
import proc_stats
import scenario
import test_clone
import test_scopy
import testcase

SHARE = "inline"
MiB = 1 << 20
SIZE = 8 * MiB

INLINE_RE = re.compile(r"copyoffload: cloned (\d+) bytes to .* inline")
GAVE_UP_RE = re.compile(r"copyoffload: .* does not clone \(.*\): chunks go to the "
                        r"helper without an inline attempt")


def inline_bytes(env):
    """Bytes smbd's debug log says it cloned inline, so far."""
    return sum(int(n) for n in INLINE_RE.findall(env.server.log_text()))


def scopy(env, check, src, dst, put_from=None):
    commands = ([f"put {put_from} {src}"] if put_from else []) + [f"scopy {src} {dst}"]
    result = env.smbclient.run(SHARE, commands)
    check.require(result.ok, result.describe())


def require_identical(env, check, src, dst):
    check.require(test_scopy.sha256_file(env.share_path(SHARE, dst))
                  == test_scopy.sha256_file(env.share_path(SHARE, src)),
                  f"{dst} differs from {src} (sha256)")


def scopy_clean_source(env, check, name):
    """Writes and fsyncs NAME-src.bin on the mount (no dirty pages), copies
    it to NAME-copy.bin with scopy and checks the copy; returns smbd's
    inline-clone byte count and the helper log position from before."""
    path, _ = test_clone.create_share_file(env, SHARE, f"{name}-src.bin", SIZE)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    before, position = inline_bytes(env), env.helper.log_position()
    scopy(env, check, f"{name}-src.bin", f"{name}-copy.bin")
    require_identical(env, check, f"{name}-src.bin", f"{name}-copy.bin")
    return before, position


def clone_counts(env):
    """(requests, bytes) of clone and of all methods in the helper's
    statistics of the share; zeros before its first copy."""
    share = ops_support.stats(env).get(SHARE)
    if share is None:
        return (0, 0), (0, 0)
    clone, total = share["methods"]["clone"], share["total"]
    return (clone["requests"], clone["bytes"]), (total["requests"], total["bytes"])


def clean_source_case(env, check):
    counts_before = clone_counts(env)
    before, position = scopy_clean_source(env, check, "clean")
    test_clone.require_shared(env, check, env.share_path(SHARE, "clean-copy.bin"),
                              [(0, SIZE)], "inline-cloned copy")
    cloned = inline_bytes(env) - before
    check.require(cloned == SIZE, f"smbd's log shows {cloned} of {SIZE} bytes cloned inline")
    helper = helper_daemon.summarize(env.helper.records_since(position))
    check.require(helper.bytes_ok == 0,
                  f"the helper copied too: {helper.describe()}")
    # The smbd process reports its inline clones when the tree disconnects,
    # at smbclient's exit, or a second after the first. smbclient sends the
    # 8 chunks in one request, and they continue each other: one clone.
    clones = 1
    expected = tuple((before_n + clones, before_bytes + SIZE)
                     for before_n, before_bytes in counts_before)
    reported = proc_stats.wait_for(lambda: clone_counts(env) == expected, 5)
    check.require(reported, f"copyoffload stats (clone, total) went from {counts_before} "
                            f"to {clone_counts(env)}, expected {expected}")
    check.note(f"{cloned} bytes cloned inside smbd, none by the helper; "
               f"stats count {clones} clone of them")


def dirty_source_case(env, check):
    local = os.path.join(env.scratch, "dirty-src.local")
    test_scopy.write_random_file(local, SIZE)
    before, position = inline_bytes(env), env.helper.log_position()
    scopy(env, check, "dirty-src.bin", "dirty-copy.bin", put_from=local)
    require_identical(env, check, "dirty-src.bin", "dirty-copy.bin")
    inline = inline_bytes(env) - before
    helper = env.helper.wait_for_bytes(position, SIZE - inline)
    check.require(not helper.failed, f"helper copies failed: {helper.describe()}")
    check.require(helper.method_bytes["clone"] > 0,
                  f"smbd cloned the dirty source itself ({inline} bytes inline, "
                  f"helper: {helper.describe()})")
    check.require(inline + helper.bytes_ok == SIZE,
                  f"{inline} bytes inline + {helper.bytes_ok} by the helper != {SIZE}")
    check.note(f"helper cloned {helper.method_bytes['clone']} bytes, "
               f"smbd {inline} inline once the source was written back")


def no_reflink_case(env, check):
    gave_up_before = len(GAVE_UP_RE.findall(env.server.log_text()))
    before, position = scopy_clean_source(env, check, "ext4")
    check.require(inline_bytes(env) == before, "smbd claims an inline clone on ext4")
    test_scopy.check_helper_copied(env, check, position, SIZE)
    gave_up = len(GAVE_UP_RE.findall(env.server.log_text())) - gave_up_before
    check.require(gave_up == 1,
                  f"smbd logged {gave_up} times that ext4 does not clone, "
                  f"expected once for the {SIZE // MiB} chunks")


def cases(fs_type, stock):
    if stock:
        return []
    main = scenario.main(fs_type)
    if fs_type in loop_filesystem.REFLINK_FS:
        return [testcase.Case(f"{fs_type}:inline:clean-source-cloned-in-smbd", main,
                              clean_source_case),
                testcase.Case(f"{fs_type}:inline:dirty-source-goes-to-helper", main,
                              dirty_source_case)]
    return [testcase.Case(f"{fs_type}:inline:no-reflink-goes-to-helper", main,
                          no_reflink_case)]
