"""Chunk runs: the chunks of one COPYCHUNK_WRITE that continue each other in
both files are copied by one helper request (copyoffload:merge chunks, on
by default); every other chunk by a request of its own.

Each case sends one request of 1 MiB chunks on an SMB session (impacket)
for a source written on the mount, then checks the response, the copy's
bytes, and the helper's "copy done" lines of the request:
  * `FS:chunk runs:file order`: 4 chunks in file order: one helper copy of
    4 MiB.
  * `FS:chunk runs:reverse order`: the same chunks last to first: 4 copies
    of 1 MiB.
  * `FS:chunk runs:two runs`: chunks 0, 1, 3, 2: copies of 2, 1 and 1 MiB.
  * `FS:chunk runs:past the source's end`: 4 chunks in file order of a
    3 MiB source. The run as a whole would read past the source's end, so
    each chunk goes on its own, as smbd's checks would have it: 3 copies of
    1 MiB, then STATUS_INVALID_VIEW_SIZE for the fourth chunk, and the
    first 3 MiB copied.
  * `FS:chunk runs:merge chunks = no` (share "nomerge"): 4 chunks in file
    order, 4 copies of 1 MiB.

A request's runs after the first go to the helper at once ("sent ahead").
  * `FS:chunk runs:a lock in a later run`: 4 chunks last to first, the
    third one's destination locked (a POSIX lock, which smbd's strict
    locking sees): the first two copied, STATUS_FILE_LOCK_CONFLICT for the
    third, as stock Samba answers (the case runs in stock mode too), and
    the helper got copies of the first two chunks only.
Cases on ext4 see what the helper gets and when, with a fake helper
(fake_helpers.GatheringHelper) on share "erring_helper" that holds the
copies until all it expects have come (or a second has passed), does them
itself, the last first, and answers them in order:
  * `ext4:chunk runs:sent ahead`: 4 chunks last to first reach the helper
    together, and the copy is right.
  * `ext4:chunk runs:a run sent ahead fails`: of the same 4 chunks the
    second fails with ENOSPC, and the last two answers come 0.3 s apart:
    STATUS_DISK_FULL, exactly the first chunk reported, and the answer only
    after the helper's last reply.
  * `ext4:chunk runs:client gone while ...`: the client drops its
    connection once smbd logs that a chunk waits, and the helper sends
    the answers it still owes only then: the second chunk waiting for its
    run's answer; the second chunk failing as above and waiting for the
    answers after it; the first chunk failing and waiting (its request,
    older than the runs, is freed after them). The smbd process ends,
    logs no PANIC, and a new session's copy is right.
  * `ext4:chunk runs:sent ahead up to a lock`: the lock case above: the
    first two chunks reach the helper together, the others not at all.
  * `ext4:chunk runs:runs the helper refuses`: every copy answered EUSERS
    (the helper keeps no more shares): all 4 chunks are copied by smbd, and
    after the first request's 4 copies each chunk reaches the helper once,
    alone, instead of sending the request's later runs again. `..., two
    chunks each`: chunks 2, 3, 0, 1 (two runs of two): batches 2, 1, 1, 1;
    the second chunk's copy does not send the declined run again.
  * `ext4:chunk runs:overlapping runs wait, ...`: the second run writes
    where the first writes, or (within one file) reads what the first
    writes, or writes what the first reads: it is not sent before the first
    is done, and the file ends as if the chunks were copied in order.
In stock mode only the lock case runs: the others are about the helper's
requests.
"""

import contextlib
import errno
import fcntl
import functools
import os
import time

import fake_helpers
import proc_stats
import smb_raw
import test_clone
import testcase
import scenario

MiB = 1 << 20


def file_order(count):
    return [(i * MiB, i * MiB, MiB) for i in range(count)]


def copy_chunks(env, check, share, chunks, source_size, expect_status=None):
    """Copies chunks from a new source of source_size bytes; returns the
    helper's records of the request. The copy must hold exactly what the
    chunks that were reported copied say."""
    name = f"runs-{len(chunks)}-{source_size}"
    _, data = test_clone.create_share_file(env, share, f"{name}.src", source_size)
    position = env.helper.log_position()
    status = None
    with smb_raw.Session(env.server.port, env.user, share) as s:
        src_id = s.open(f"{name}.src")
        dst_id = s.open(f"{name}.copy", create=True)
        key = s.resume_key(src_id)
        try:
            written = s.copychunk_write(dst_id, key, chunks)
        except smb_raw.SmbError as e:
            status, written = e.status, None
        s.close(dst_id)
        s.close(src_id)
    if expect_status is None:
        check.require(status is None,
                      f"COPYCHUNK_WRITE failed: {smb_raw.status_name(status or 0)}")
        total = sum(c[2] for c in chunks)
        # ChunkBytesWritten is 0 when every chunk was written (MS-SMB2).
        check.require(written == (len(chunks), 0, total),
                      f"COPYCHUNK_WRITE answered {written}, expected "
                      f"{(len(chunks), 0, total)}")
    else:
        check.require(status == expect_status,
                      f"COPYCHUNK_WRITE: expected {smb_raw.status_name(expect_status)}, "
                      f"got {smb_raw.status_name(status) if status else written}")
    copy = test_clone.read_file(env.share_path(share, f"{name}.copy"))
    for src_off, dst_off, length in chunks:
        if src_off + length > source_size:
            continue
        check.require(copy[dst_off:dst_off + length] == data[src_off:src_off + length],
                      f"the chunk at {dst_off} differs from its source")
    return env.helper.records_since(position)


def require_copies(check, records, lengths):
    got = [r.length for r in records]
    check.require(all(r.ok for r in records),
                  f"the helper failed copies: {[r.status for r in records]}")
    check.require(sorted(got) == sorted(lengths),
                  f"helper copies of {got} bytes, expected {lengths}")
    check.note(f"helper copies of {', '.join(str(n // MiB) for n in got)} MiB")


def chunks_case(env, check, share, chunks, lengths):
    records = copy_chunks(env, check, share, chunks, 4 * MiB)
    require_copies(check, records, lengths)


def past_end_case(env, check):
    records = copy_chunks(env, check, "share", file_order(4), 3 * MiB,
                          expect_status=smb_raw.STATUS_INVALID_VIEW_SIZE)
    require_copies(check, records, [MiB] * 3)


def locked_run_case(env, check, share="share", helper=None):
    chunks = list(reversed(file_order(4)))  # the third chunk writes at 1 MiB
    _, data = test_clone.create_share_file(env, share, "locked-run.src", 4 * MiB)
    dst_path, _ = test_clone.create_share_file(env, share, "locked-run.copy", 4 * MiB)
    position = env.helper.log_position() if env.helper else 0
    with open(dst_path, "r+b") as locked, (helper or contextlib.nullcontext()):
        fcntl.lockf(locked, fcntl.LOCK_EX | fcntl.LOCK_NB, 4096, MiB)
        with smb_raw.Session(env.server.port, env.user, share) as s:
            src_id = s.open("locked-run.src")
            dst_id = s.open("locked-run.copy")
            status, written = s.copychunk_write_outcome(dst_id, s.resume_key(src_id),
                                                        chunks)
            s.close(dst_id)
            s.close(src_id)
    check.require(status == smb_raw.STATUS_FILE_LOCK_CONFLICT,
                  f"expected STATUS_FILE_LOCK_CONFLICT, got {smb_raw.status_name(status)}")
    check.require(written is not None and written[0] == 2 and written[2] == 2 * MiB,
                  f"the response says {written}, expected 2 chunks and {2 * MiB} bytes")
    copy = test_clone.read_file(dst_path)
    check.require(copy[2 * MiB:] == data[2 * MiB:],
                  "the chunks reported written differ from their source")
    if helper is not None:
        check.require(helper.batches == [2],
                      f"the helper got copies in batches of {helper.batches}, expected "
                      f"the first two chunks together")
    elif env.stock:
        check.skipped_in_stock("helper log: copies of the first two chunks")
    else:
        require_copies(check, env.helper.records_since(position), [MiB, MiB])
    check.note(f"{smb_raw.status_name(status)}, {written}")


def gathering_helper(env, expected, **kwargs):
    return fake_helpers.GatheringHelper(
        os.path.join(env.dir, scenario.ERRING_HELPER_SOCKET), expected, **kwargs)


def sent_ahead_case(env, check):
    chunks = list(reversed(file_order(4)))
    with gathering_helper(env, expected=4) as helper:
        copy_chunks(env, check, "erring_helper", chunks, 4 * MiB)
    check.require(helper.batches == [4],
                  f"the helper got the copies in batches of {helper.batches}, "
                  f"expected all 4 at once")
    check.note("4 copies of 1 MiB at once")


def sent_ahead_failure_case(env, check):
    share = "erring_helper"
    chunks = list(reversed(file_order(4)))  # the second chunk writes at 2 MiB
    _, data = test_clone.create_share_file(env, share, "ahead-fail.src", 4 * MiB)
    with gathering_helper(env, expected=4, failures={2 * MiB: errno.ENOSPC},
                          late_replies=2) as helper:
        with smb_raw.Session(env.server.port, env.user, share) as s:
            src_id = s.open("ahead-fail.src")
            dst_id = s.open("ahead-fail.copy", create=True)
            status, written = s.copychunk_write_outcome(dst_id, s.resume_key(src_id),
                                                        chunks)
            answered_at = time.monotonic()
            s.close(dst_id)
            s.close(src_id)
    check.require(helper.batches == [4], f"batches of {helper.batches}, expected [4]")
    check.require(status == smb_raw.STATUS_DISK_FULL,
                  f"expected STATUS_DISK_FULL, got {smb_raw.status_name(status)}")
    check.require(written is not None and written[0] == 1 and written[2] == MiB,
                  f"the response says {written} (ChunksWritten, ChunkBytesWritten, "
                  f"TotalBytesWritten), expected 1 chunk and {MiB} bytes")
    copy = test_clone.read_file(env.share_path(share, "ahead-fail.copy"))
    check.require(copy[3 * MiB:] == data[3 * MiB:],
                  "the chunk reported written differs from its source")
    check.require(helper.last_reply_at is not None and answered_at > helper.last_reply_at,
                  "the client had its answer before the helper's last reply")
    check.note(f"{smb_raw.status_name(status)}, {written}, answered after the last reply")


WAITS_RE = r"copyoffload: .*: chunk at \d+ waits for the run sent ahead at \d+"


def client_gone_case(env, check, failed_at, owed_when_gone):
    """The client drops its connection once smbd logs that a chunk waits
    for a run sent ahead: smbd frees the request while the helper, which
    holds its late answers until then, still owes them. A use after free
    would likely crash smbd (its PANIC line fails the case) or leave it
    hanging. failed_at: the destination offset of the chunk whose copy
    fails (ENOSPC), which then waits for the runs after it; None: the
    second chunk waits for its own run's answer."""
    share = "erring_helper"
    chunks = list(reversed(file_order(4)))
    failures = {} if failed_at is None else {failed_at: errno.ENOSPC}
    # The line of the wait the case is about: a failed chunk may first
    # have waited for its own run's answer.
    waits_re = WAITS_RE + ("$" if failed_at is None else ", then fails$")
    test_clone.create_share_file(env, share, "gone.src", 4 * MiB)
    waits_before = len(env.server.log_matches(waits_re, flags=0))
    with gathering_helper(env, expected=4, failures=failures,
                          late_replies=owed_when_gone, hold_late=True) as helper:
        try:
            with smb_raw.Session(env.server.port, env.user, share) as s:
                src_id = s.open("gone.src")
                dst_id = s.open("gone.copy", create=True)
                s.send_copychunk_write(dst_id, s.resume_key(src_id), chunks)
                waiting = proc_stats.wait_for(
                    lambda: len(env.server.log_matches(waits_re, flags=0)) > waits_before,
                    10)
                with helper.lock:
                    owed = 4 - helper.replies_sent
                s.abort()
        finally:
            helper.release.set()
        check.require(waiting, "smbd logged no chunk waiting for a run sent ahead")
        check.require(owed == owed_when_gone,
                      f"the helper owed {owed} answers when the client left, "
                      f"expected {owed_when_gone}")
        check.require(helper.batches == [4], f"batches of {helper.batches}, expected [4]")
        smbd_pid = helper.copy_peer_pids[0]
        check.require(proc_stats.wait_for(lambda: proc_stats.has_exited(smbd_pid), 15),
                      f"smbd {smbd_pid} still runs 15 s after its client left")
    with gathering_helper(env, expected=1) as helper:
        copy_chunks(env, check, share, file_order(4), 4 * MiB)
    check.require(helper.batches == [1], f"batches of {helper.batches}, expected [1]")
    waited = env.server.log_matches(waits_re, flags=0)[waits_before]
    check.note(f"{waited.split(': ', 2)[-1]}; smbd {smbd_pid} ended with {owed} "
               f"answers owed; a new session copied")


def refused_runs_case(env, check, chunks, batches):
    """Every copy refused: the request's runs reach the helper together,
    then each chunk alone, once, in `batches`."""
    refusals = {offset: errno.EUSERS for _, offset, _ in chunks}
    with gathering_helper(env, expected=batches[0], failures=refusals) as helper:
        copy_chunks(env, check, "erring_helper", chunks, 4 * MiB)
    check.require(helper.batches == batches,
                  f"the helper got copies in batches of {helper.batches}, expected "
                  f"{batches}: the request's runs, then each later chunk once")
    check.note(f"batches {helper.batches}, every chunk copied by smbd")


def in_order(data, chunks):
    """data after chunks (src_off, dst_off, length) were copied within it,
    one after the other."""
    out = bytearray(data)
    for src_off, dst_off, length in chunks:
        out[dst_off:dst_off + length] = out[src_off:src_off + length]
    return bytes(out)


def overlapping_runs_case(env, check, chunks):
    """Two runs within one file (destination and source the same file, under
    two names: impacket keeps one open per name), the second overlapping
    the first."""
    share = "erring_helper"
    path, data = test_clone.create_share_file(env, share, "ahead-overlap.bin", 4 * MiB)
    link = env.share_path(share, "ahead-overlap.link")
    os.link(path, link)
    try:
        with gathering_helper(env, expected=2) as helper:
            with smb_raw.Session(env.server.port, env.user, share) as s:
                src_id = s.open("ahead-overlap.bin")
                dst_id = s.open("ahead-overlap.link")
                written = s.copychunk_write(dst_id, s.resume_key(src_id), chunks)
                s.close(dst_id)
                s.close(src_id)
    finally:
        os.unlink(link)
    check.require(written == (2, 0, 2 * MiB), f"COPYCHUNK_WRITE answered {written}")
    check.require(helper.batches == [1, 1],
                  f"the helper got the copies in batches of {helper.batches}, "
                  f"expected one after the other")
    check.require(test_clone.read_file(path) == in_order(data, chunks),
                  "the file differs from the chunks copied in order")
    check.note("the second run sent after the first was done")


def cases(fs_type, stock):
    main = scenario.main(fs_type)
    locked = testcase.Case(f"{fs_type}:chunk runs:a lock in a later run", main,
                           locked_run_case)
    if stock:
        return [locked]
    reverse = list(reversed(file_order(4)))
    two_runs = [file_order(4)[i] for i in (0, 1, 3, 2)]

    def case(label, fn):
        return testcase.Case(f"{fs_type}:chunk runs:{label}", main, fn)

    return [
        case("file order", functools.partial(
            chunks_case, share="share", chunks=file_order(4), lengths=[4 * MiB])),
        case("reverse order", functools.partial(
            chunks_case, share="share", chunks=reverse, lengths=[MiB] * 4)),
        case("two runs", functools.partial(
            chunks_case, share="share", chunks=two_runs, lengths=[2 * MiB, MiB, MiB])),
        case("past the source's end", past_end_case),
        case("merge chunks = no", functools.partial(
            chunks_case, share="nomerge", chunks=file_order(4), lengths=[MiB] * 4)),
        locked,
    ] + ([] if fs_type != "ext4" else [
        testcase.Case(f"{fs_type}:chunk runs:sent ahead", scenario.faults(fs_type),
                      sent_ahead_case),
        testcase.Case(f"{fs_type}:chunk runs:a run sent ahead fails",
                      scenario.faults(fs_type), sent_ahead_failure_case),
    ] + [testcase.Case(f"{fs_type}:chunk runs:client gone while {label}",
                       scenario.faults(fs_type),
                       functools.partial(client_gone_case, failed_at=failed_at,
                                         owed_when_gone=owed))
         for label, failed_at, owed in (
             ("a chunk waits for a run sent ahead", None, 3),
             ("a failed chunk waits", 2 * MiB, 2),
             ("the first chunk waits to fail", 3 * MiB, 3))
    ] + [
        testcase.Case(f"{fs_type}:chunk runs:sent ahead up to a lock",
                      scenario.faults(fs_type), lambda env, check: locked_run_case(
                          env, check, "erring_helper", gathering_helper(env, expected=2))),
        testcase.Case(f"{fs_type}:chunk runs:runs the helper refuses",
                      scenario.faults(fs_type), functools.partial(
                          refused_runs_case, chunks=reverse, batches=[4, 1, 1, 1])),
        testcase.Case(f"{fs_type}:chunk runs:runs the helper refuses, two chunks each",
                      scenario.faults(fs_type), functools.partial(
                          refused_runs_case, chunks=[file_order(4)[i] for i in (2, 3, 0, 1)],
                          batches=[2, 1, 1, 1])),
    ] + [testcase.Case(f"{fs_type}:chunk runs:overlapping runs wait, {label}",
                       scenario.faults(fs_type),
                       functools.partial(overlapping_runs_case, chunks=chunks))
         for label, chunks in (
             ("same destination", [(0, 2 * MiB, MiB), (MiB, 2 * MiB, MiB)]),
             ("source written before", [(0, 2 * MiB, MiB), (2 * MiB, 3 * MiB, MiB)]),
             ("source read before", [(2 * MiB, 0, MiB), (3 * MiB, 2 * MiB, MiB)]))])
