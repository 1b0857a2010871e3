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
  * `FS:inline:read-only-source-cloned-in-smbd` (XFS, btrfs): as the clean
    case, with a source of root's that the user may only read. Linux answers
    questions about a file's page cache (cachestat) to its writers and
    owners only, so the module asks as root; as the user it was refused and
    sent every such copy to the helper.
  * `FS:inline:fragmented-source-goes-to-helper` (XFS, btrfs): a clean
    source with data in every other 4 KiB block, 1024 extents: each costs
    the clone about 7 us, so the module leaves it to the helper, which
    clones every byte; smbd clones none inline.
  * `FS:inline:source-dirty-elsewhere` (XFS, btrfs): a clean first MiB of a
    source whose last MiB is dirty, copied with one COPYCHUNK_WRITE. XFS
    writes back only the cloned range, so smbd clones it inline; btrfs writes
    back the whole source first, so there the helper takes it.
  * `FS:inline:large-source-until-written` (XFS, btrfs): a clean 64 MiB
    source, unchanged for two seconds: its first MiB is cloned inline, on
    btrfs after a look at the whole file, which the module then remembers
    until the file's ctime moves. Once its last MiB is rewritten (dirty, and
    a new ctime), the same copy goes to the helper on btrfs and is still
    cloned inline on XFS.
  * `btrfs:inline:clean-verdict-shared`: a clean 64 MiB source, unchanged
    for two seconds, copied by three connections, each an smbd process of
    its own. The first looks at the whole file and remembers it clean; the
    second clones inline on that verdict without looking again. After a
    chmod, which moves the ctime and leaves the pages clean, the third does
    not trust the verdict of the old ctime: it looks again.
  * `btrfs:inline:large-source-looked-at-in-pieces`: a clean 272 MiB
    source, more than one look takes (256 MiB). The first connection's
    chunk goes to the helper after a look at the first 256 MiB; the second
    looks at the rest and clones inline; the third clones inline on their
    verdict without a look.
  * `ext4:inline:no-reflink-goes-to-helper`: no inline clone, the helper
    copies every byte, and the smbd process decided once that it would not
    try (at tree connect, from the clone probe; else at the first refusal),
    not once per chunk.
"""

import os
import re
import time

import helper_daemon
import loop_filesystem
import ops_support
import proc_stats
import scenario
import smb_raw
import test_clone
import test_scopy
import testcase

SHARE = "inline"
MiB = 1 << 20
SIZE = 8 * MiB

INLINE_RE = re.compile(r"copyoffload: cloned (\d+) bytes to .* inline")
REMEMBERED_RE = r"copyoffload: source {}:{} found clean as a whole, remembered"
KNOWN_RE = r"copyoffload: source {}:{} known clean"
PIECE_RE = r"copyoffload: source {}:{} clean up to {} of {} bytes, remembered"
LOOK_STEP = 256 * MiB  # COPYOFFLOAD_INLINE_CLONE_LOOK_STEP
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


def clean_share_file(env, name, size=SIZE, roots=False):
    """NAME of random bytes, written and fsynced on the mount (no dirty
    pages), the test user's, or with roots root's, mode 0644, which the
    user may only read; returns its path."""
    path, _ = test_clone.create_share_file(env, SHARE, name, size)
    if roots:
        os.chown(path, 0, 0)
        os.chmod(path, 0o644)
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    return path


def scopy_clean_source(env, check, name, roots=False):
    """Makes a clean NAME-src.bin (clean_share_file), copies it to
    NAME-copy.bin with scopy and checks the copy; returns smbd's
    inline-clone byte count and the helper log position from before."""
    clean_share_file(env, f"{name}-src.bin", roots=roots)
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


def read_only_source_case(env, check):
    before, position = scopy_clean_source(env, check, "ro", roots=True)
    cloned = inline_bytes(env) - before
    helper = helper_daemon.summarize(env.helper.records_since(position))
    check.require(cloned == SIZE and helper.bytes_ok == 0,
                  f"{cloned} of {SIZE} bytes cloned inline, the helper: {helper.describe()}")
    check.note(f"{cloned} bytes of a source of root's cloned inside smbd")


def fragmented_source_case(env, check):
    path = env.share_path(SHARE, "frag-src.bin")
    block = bytes(range(256)) * 16
    with open(path, "wb") as f:
        for offset in range(0, SIZE, 2 * len(block)):
            f.seek(offset)
            f.write(block)
        f.truncate(SIZE)
        os.fsync(f.fileno())
    os.chown(path, env.user.uid, env.user.gid)
    before, position = inline_bytes(env), env.helper.log_position()
    scopy(env, check, "frag-src.bin", "frag-copy.bin")
    require_identical(env, check, "frag-src.bin", "frag-copy.bin")
    check.require(inline_bytes(env) == before,
                  f"smbd cloned {inline_bytes(env) - before} bytes of 1024 extents inline")
    helper = env.helper.wait_for_bytes(position, SIZE)
    check.require(not helper.failed and helper.method_bytes["clone"] == SIZE,
                  f"the helper did not clone it all: {helper.describe()}")
    check.note(f"helper: {helper.describe()}")


def copy_first_mib(env, check, src, dst):
    """One COPYCHUNK_WRITE of src's first MiB to a new dst; the bytes smbd
    cloned inline for it, and the helper log position from before."""
    before, position = inline_bytes(env), env.helper.log_position()
    with smb_raw.Session(env.server.port, env.user, SHARE) as s:
        src_id = s.open(src)
        dst_id = s.open(dst, create=True)
        written = s.copychunk_write(dst_id, s.resume_key(src_id), [(0, 0, MiB)])
        s.close(dst_id)
        s.close(src_id)
    check.require(written[0] == 1 and written[2] == MiB, f"COPYCHUNK_WRITE wrote {written}")
    check.require(test_clone.read_file(env.share_path(SHARE, dst))
                  == test_clone.read_file(env.share_path(SHARE, src))[:MiB],
                  f"the MiB copied to {dst} differs")
    return inline_bytes(env) - before, position


def dirty_tail(path, size):
    """Rewrites the file's last MiB and leaves it for writeback."""
    with open(path, "rb+") as f:
        f.seek(size - MiB)
        f.write(os.urandom(MiB))


def require_helper_on_btrfs(env, check, inline, position, what):
    """A MiB whose source is dirty elsewhere: btrfs, which writes back the
    whole source first, leaves it to the helper; XFS clones it in smbd."""
    if env.fs.fs_type == "btrfs":
        helper = env.helper.wait_for_bytes(position, MiB)
        check.require(inline == 0 and helper.bytes_ok == MiB,
                      f"btrfs, {what}: {inline} bytes inline, the helper: {helper.describe()}")
    else:
        check.require(inline == MiB, f"{what}: {inline} of {MiB} bytes inline")


def dirty_elsewhere_case(env, check):
    path = clean_share_file(env, "tail-src.bin")
    dirty_tail(path, SIZE)
    inline, position = copy_first_mib(env, check, "tail-src.bin", "tail-copy.bin")
    require_helper_on_btrfs(env, check, inline, position, "tail dirty")
    check.note(f"{inline} bytes inline")


def large_source_case(env, check):
    size = 64 * MiB
    path = clean_share_file(env, "large-src.bin", size)
    time.sleep(2.1)  # a verdict counts only for a ctime a second old
    inline, _ = copy_first_mib(env, check, "large-src.bin", "large-copy1.bin")
    check.require(inline == MiB, f"clean and unchanged: {inline} of {MiB} bytes inline")
    dirty_tail(path, size)
    inline, position = copy_first_mib(env, check, "large-src.bin", "large-copy2.bin")
    require_helper_on_btrfs(env, check, inline, position, "tail rewritten")
    check.note(f"after the rewrite {inline} bytes inline")


def verdict_lines(env, path):
    """(looks that found path clean, verdicts reused) in smbd's log."""
    st = os.stat(path)
    log = env.server.log_text()
    return tuple(len(re.findall(pattern.format(st.st_dev, st.st_ino), log))
                 for pattern in (REMEMBERED_RE, KNOWN_RE))


def shared_verdict_case(env, check):
    size = 64 * MiB
    path = clean_share_file(env, "shared-src.bin", size)
    time.sleep(2.1)  # a verdict counts only for a ctime a second old
    looks, reused = verdict_lines(env, path)
    inline, _ = copy_first_mib(env, check, "shared-src.bin", "shared-copy1.bin")
    check.require(inline == MiB, f"first connection: {inline} of {MiB} bytes inline")
    check.require(verdict_lines(env, path) == (looks + 1, reused),
                  f"first connection: (looks, verdicts reused) went from {(looks, reused)} "
                  f"to {verdict_lines(env, path)}, expected one look")
    inline, _ = copy_first_mib(env, check, "shared-src.bin", "shared-copy2.bin")
    check.require(inline == MiB, f"second connection: {inline} of {MiB} bytes inline")
    check.require(verdict_lines(env, path) == (looks + 1, reused + 1),
                  f"second connection: (looks, verdicts reused) went from {(looks, reused)} "
                  f"to {verdict_lines(env, path)}, expected the first look's verdict reused")
    # A new ctime, with the pages left clean: the verdict of the old one
    # must not serve, so the next connection looks again.
    os.chmod(path, 0o664)
    time.sleep(2.1)
    inline, _ = copy_first_mib(env, check, "shared-src.bin", "shared-copy3.bin")
    check.require(inline == MiB, f"after a chmod: {inline} of {MiB} bytes inline")
    check.require(verdict_lines(env, path) == (looks + 2, reused + 1),
                  f"after a chmod: (looks, verdicts reused) went from {(looks, reused)} "
                  f"to {verdict_lines(env, path)}, expected a second look")
    check.note("one look served a second smbd process; a new ctime made a third look")


def pieces_case(env, check):
    size = LOOK_STEP + 16 * MiB
    path = clean_share_file(env, "pieces-src.bin", size)
    time.sleep(2.1)  # a verdict counts only for a ctime a second old
    st = os.stat(path)
    piece_re = PIECE_RE.format(st.st_dev, st.st_ino, LOOK_STEP, size)
    looks, reused = verdict_lines(env, path)
    inline, position = copy_first_mib(env, check, "pieces-src.bin", "pieces-copy1.bin")
    helper = env.helper.wait_for_bytes(position, MiB)
    check.require(inline == 0 and helper.bytes_ok == MiB,
                  f"first connection: {inline} bytes inline, the helper: {helper.describe()}")
    pieces = len(re.findall(piece_re, env.server.log_text()))
    check.require(pieces == 1, f"smbd logged {pieces} looks at the first {LOOK_STEP} bytes")
    for n, expected in ((2, (looks + 1, reused)), (3, (looks + 1, reused + 1))):
        inline, _ = copy_first_mib(env, check, "pieces-src.bin", f"pieces-copy{n}.bin")
        check.require(inline == MiB, f"connection {n}: {inline} of {MiB} bytes inline")
        check.require(verdict_lines(env, path) == expected,
                      f"connection {n}: (whole-file verdicts, verdicts reused) went from "
                      f"{(looks, reused)} to {verdict_lines(env, path)}, expected {expected}")
    os.unlink(path)
    check.note("looked at in two pieces by two smbd processes, then known clean")


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
                              dirty_source_case),
                testcase.Case(f"{fs_type}:inline:read-only-source-cloned-in-smbd", main,
                              read_only_source_case),
                testcase.Case(f"{fs_type}:inline:fragmented-source-goes-to-helper", main,
                              fragmented_source_case),
                testcase.Case(f"{fs_type}:inline:source-dirty-elsewhere", main,
                              dirty_elsewhere_case),
                testcase.Case(f"{fs_type}:inline:large-source-until-written", main,
                              large_source_case)] + (
                    [testcase.Case("btrfs:inline:clean-verdict-shared", main,
                                   shared_verdict_case),
                     testcase.Case("btrfs:inline:large-source-looked-at-in-pieces", main,
                                   pieces_case)] if fs_type == "btrfs" else [])
    return [testcase.Case(f"{fs_type}:inline:no-reflink-goes-to-helper", main,
                          no_reflink_case)]
