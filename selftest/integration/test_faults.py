"""Faults, with nothing lost: the helper killed under load, a full
destination, a source cut short, clients vanishing mid-copy.

Scenario "faults" (scenario.FAULT_SHARES): on the ext4 scenario filesystem
`share` (copyoffload:helper down = next, the default) and `share_fail`
(= fail); `tiny`, a 64 MiB ext4 of its own. Copies are slowed down where a
fault must land mid-copy: the helper's reads of the source's device are
throttled (blkio_throttle) and the sources are cold. The helper's reply
timeout is the default, so a throttled chunk is never taken for a hang;
the hang case has a server of its own (scenario "hang") with a short one.

The helper's descriptors are counted without its connections
(HelperDaemon.idle_descriptors), which come and go with other sessions'
smbd processes as they exit.

Cases (FS = ext4):
  * `FS:faults:kill -9 helper, 16 copies in flight`: 16 smbclient scopy of
    16 MiB each (8 on share, 8 on share_fail) through a throttled helper;
    once the helper has all 16 connections it is stopped (SIGSTOP), so that
    every smbd process ends up with exactly one chunk sent and unanswered,
    then killed (SIGKILL). Each smbd process must log that it handed back
    1 copy in flight (16 in all), and one more for each connection an smbd
    process made to the helper's listening socket while the kernel was
    still tearing it down (a chunk it sent then is handed back as well).
    Every copy on share completes with the right data (redone by smbd
    itself); every copy on share_fail completes with the right data or
    fails with an NT status. Then the helper is restarted, and an SMB
    session that copied through the old helper copies through the new one:
    same smbd process (the helper logs its pid), so the module reconnected,
    and smbd served throughout.
  * `FS:faults:disk full`: on tiny, a 2 MiB source, then the filesystem
    filled until less than 2 MiB is left for users while more than 2 MiB
    is left for root (ext4's reserved blocks). scopy must fail with
    NT_STATUS_DISK_FULL, exactly as a plain put of the same size does: the
    helper, without CAP_SYS_RESOURCE, gets no root reserve either. The
    source is untouched (size, sha256, mtime); the helper logged ENOSPC.
  * `FS:faults:disk full mid-run`: on tiny, room for one and a half of the
    four 1 MiB chunks of one COPYCHUNK_WRITE, which continue each other (a
    chunk run, one helper request): the response is STATUS_DISK_FULL with
    ChunksWritten 1 and TotalBytesWritten 1 MiB, as stock Samba answers
    chunk by chunk (also run in stock mode), the first MiB is the source's,
    and the helper logged one 4 MiB copy that failed with ENOSPC in its
    second MiB.
  * `FS:faults:source truncated mid-copy`: a 16 MiB scopy through the
    throttled helper; the source is truncated to 0 once 3 MiB are copied. The
    copy fails with an NT status, the helper keeps running, smbd serves the
    next copy.
  * `FS:faults:helper hangs` (scenario "hang"): the helper is stopped
    (SIGSTOP) with its socket open. A scopy on share and one on share_fail, at once, each wait
    for the module's reply timeout ([global] copyoffload:helper timeout =
    HANG_TIMEOUT s in this scenario), no longer: the one on share then
    completes with the right data through smbd, the one on share_fail fails
    with an NT status, and smbd logged the timeout. Once the helper runs
    again it accepts and lets go of both smbd processes' connections,
    drops what they sent, holds no more descriptors than before, and copies
    again.
  * `FS:faults:client disconnects mid-copy`: three scopy of 32 MiB through
    the throttled helper, the smbclient processes killed (SIGKILL) once each
    copy has written its first MiB. The helper logs each smbd process as
    disconnected and copies nothing for it afterwards beyond the copy it
    was running; at least one copy is cut short (smbd lets the requests in
    flight end, a run of 16 chunks each, and 4.22's smbclient sends both of
    a file's at once); its descriptor count returns to what it was before.
  * `FS:faults:a limited copy outlasts the reply timeout` (scenario "hang",
    timeout HANG_TIMEOUT s): share slow_limit has "max bytes per second =
    1M"; a scopy of 8 MiB takes longer than the timeout. smbd asks the quiet
    helper halfway whether it is alive, it answers, and it copies every byte
    at the limit's pace: no reply timeout in smbd's log, the copy right,
    taking longer than the timeout.
  * `FS:faults:a hung filesystem stalls only its own copies`: the helper's
    reads of share's device are throttled to a crawl (STALL_THROTTLE), so
    two scopy of cold sources there leave both workers stuck in a piece.
    Once the helper logs the stalls (its --stall-timeout is
    scenario.STALL_SECONDS here), copies on tiny, another filesystem, go on
    through the helper, well within the module's reply timeout: one from a
    session that copied there before the stall (its connection was read by
    a stuck worker) and one from a new smbclient. Then the throttle is
    lifted, the stuck copies complete with the right data, and the helper
    logs each stalled worker going again.
  * `FS:faults:older helper refuses the handshake`: share old_helper's
    socket is served by fake_helpers.RefusingHelper, which refuses every HELLO in
    protocol version 3 and closes, as copyoffloadd does. Two scopy of
    40 MiB + 1 (three requests, 41 chunks each) complete with the right data
    through smbd, and each smbd process shook hands once and logged once
    that it bypasses the helper, instead of once per chunk.
  * `FS:faults:helper errors keep smbd's statuses`: share erring_helper's
    socket is served by fake_helpers.FailingHelper, which fails every copy
    with one errno. A COPYCHUNK_WRITE of one 1 MiB chunk per errno gets the
    NTSTATUS smbd's own map_nt_error_from_unix() gives (what vfs_default's
    copy answers for it), never a success code, and reports nothing
    written; the target is untouched.

In stock mode only the disk-full cases run (the others are about the
helper), without the helper-log assertion.
"""

import collections
import errno
import functools
import hashlib
import os
import re
import signal
import time

from impacket import nt_errors

import blkio_throttle
import client_processes
import fake_helpers
import proc_stats
import scenario
import smb_raw
import test_clone
import test_scopy
import testcase

MiB = 1 << 20

KILL_CLIENTS = 16
KILL_FILE_SIZE = 16 * MiB
KILL_THROTTLE = 16 * MiB           # bytes/s for all of the helper's reads
CUT_FILE_SIZE = 16 * MiB
CUT_THROTTLE = 8 * MiB
VANISH_CLIENTS = 3
VANISH_FILE_SIZE = 32 * MiB
VANISH_THROTTLE = 2 * MiB
DISK_FULL_SIZE = 2 * MiB
# The module's reply timeout in the faults scenario: its default
# (REPLY_TIMEOUT_SECONDS in helper_client.c).
HELPER_TIMEOUT = 120
STALL_COPIES = 2
STALL_FILE_SIZE = 2 * MiB
STALL_THROTTLE = 4096              # bytes/s: a 1 MiB piece takes minutes
STALL_RE = r"worker (\d+): one piece of copy id=\d+ .* has moved nothing for [\d.]+ s"
RETURNED_RE = r"worker (\d+): going again after"
HANG_TIMEOUT = int(scenario.GLOBAL_OPTIONS["hang"]["copyoffload:helper timeout"])
HANG_FILE_SIZE = 2 * MiB + 1
LIMITED_FILE_SIZE = 8 * MiB  # at 1 MiB/s: longer than HANG_TIMEOUT
OLD_HELPER_COPIES = 2
OLD_HELPER_FILE_SIZE = 40 * MiB + 1  # three COPYCHUNK requests
# An errno a helper's copy may fail with, and the status smbd's own
# map_nt_error_from_unix() gives it (source3/lib/errmap_unix.c), or for
# one it does not list, libcli/util/errmap_unix.c's.
HELPER_ERRNO_STATUSES = (
    (errno.EAGAIN, nt_errors.STATUS_NETWORK_BUSY),
    (errno.EINTR, nt_errors.STATUS_RETRY),
    (errno.ENOBUFS, nt_errors.STATUS_INSUFFICIENT_RESOURCES),
    (errno.ENOSYS, nt_errors.STATUS_NOT_SUPPORTED),
    (errno.ETXTBSY, nt_errors.STATUS_SHARING_VIOLATION),
    (errno.EIO, nt_errors.STATUS_IO_DEVICE_ERROR),
    # Not in smbd's table (it would give ACCESS_DENIED): the common one's.
    (errno.EBUSY, nt_errors.STATUS_SHARING_VIOLATION),
)

HANDED_BACK_RE = re.compile(r"lost the helper at .* while (.*): .*; "
                            r"(\d+) copies in flight are handed back")
CONNECTED_RE = r"copyoffload: connected to helper at "
TIMED_OUT_RE = r"lost the helper at .* while waiting for a reply: Connection timed out"
REFUSED_RE = (r"for \d+ s before the helper at .*/" + re.escape(scenario.OLD_HELPER_SOCKET)
              + " is tried again")


# ----------------------------------------------------------------- helpers

def make_source(env, share, name, size):
    """A file of size random bytes in share, owned by the test user, not in
    the page cache; returns its sha256."""
    path = env.share_path(share, name)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            block = os.urandom(MiB)
            digest.update(block)
            f.write(block)
        tail = os.urandom(size % MiB)
        digest.update(tail)
        f.write(tail)
    os.chown(path, env.user.uid, env.user.gid)
    blkio_throttle.drop_cache(path)
    return digest.hexdigest()


def helper_pid(env):
    return env.helper.proc.pid


def restart_helper(env):
    """Starts a new helper on the same socket (after a kill)."""
    env.helper.stop()
    try:
        os.unlink(env.helper.socket_path)  # so that start() waits for the new one
    except FileNotFoundError:
        pass
    env.helper.start()


def throttle(env, share, rate):
    """A ReadThrottle of the helper's reads of share's device."""
    return blkio_throttle.ReadThrottle(env.filesystem(share).device(), rate)


def smbd_lines(env, regex):
    return [m for line in env.server.log_text().splitlines()
            if (m := re.search(regex, line))]


# ------------------------------------------------------------------- cases

def kill_helper_case(env, check):
    names = [(("share", "share_fail")[i % 2], f"kill-{i}.bin") for i in range(KILL_CLIENTS)]
    digests = {name: make_source(env, share, name, KILL_FILE_SIZE) for share, name in names}
    make_source(env, "share", "session.bin", MiB)
    handed_back_before = len(smbd_lines(env, HANDED_BACK_RE))

    # A session that copies through the helper before and after the kill.
    with smb_raw.connect(env, "share") as session:
        src, dst = session.open("session.bin"), session.open("session.copy", create=True)
        position = env.helper.log_position()
        session.copychunk_write(dst, session.resume_key(src), [(0, 0, MiB)])
        records = env.helper.records_since(position)
        check.require(len(records) == 1 and records[0].ok,
                      f"the session's copy before the kill: helper logged {records}")
        session_pid = records[0].peer_pid

        pid = helper_pid(env)
        base = env.helper.idle_descriptors()
        connections = env.helper.log_position()
        with throttle(env, "share", KILL_THROTTLE) as slow, \
                client_processes.ClientProcesses(env, "kill") as clients:
            slow.add(pid)
            for share, name in names:
                clients.start(share, [f"scopy {name} {name}.copy"])
            all_connected = proc_stats.wait_for(
                lambda: len(set(env.helper.accepted_since(connections))) >= KILL_CLIENTS, 60)
            os.kill(pid, signal.SIGSTOP)
            # Every smbd process now sends its next chunk, if it was not
            # waiting for one already; none gets an answer.
            time.sleep(1)
            in_helper = env.helper.descriptors_besides_connections() - base
            connected = len(set(env.helper.accepted_since(connections)))
            connects_before_kill = len(smbd_lines(env, CONNECTED_RE))
            os.kill(pid, signal.SIGKILL)
            env.helper.proc.wait()
            check.require(all_connected,
                          f"only {connected} smbd processes connected to the helper "
                          f"after 60 s: the {KILL_CLIENTS} copies did not overlap")
            results = clients.wait()
        # While the killed helper's descriptors are released, its
        # listening socket may still queue a connection from an smbd
        # process that lost its own: the chunk it sends is handed back too.
        reconnects = len(smbd_lines(env, CONNECTED_RE)) - connects_before_kill
        restart_helper(env)

        position = env.helper.log_position()
        try:
            session.copychunk_write(dst, session.resume_key(src), [(0, 0, MiB)])
        except smb_raw.SmbError as e:
            check.fail(f"the session's copy after the restart: {e}")
        records = env.helper.records_since(position)
        check.require([r.peer_pid for r in records if r.ok] == [session_pid],
                      f"the session's smbd (pid {session_pid}) did not copy through the "
                      f"restarted helper: {records}")

    losses = smbd_lines(env, HANDED_BACK_RE)[handed_back_before:]
    handed_back = sum(int(m.group(2)) for m in losses)
    check.require(handed_back == KILL_CLIENTS + reconnects and
                  all(int(m.group(2)) <= 1 for m in losses),
                  f"smbd processes handed back {handed_back} copies in flight, expected "
                  f"{KILL_CLIENTS} in all, one each, and one more for each of the "
                  f"{reconnects} reconnections to the dying helper: "
                  f"{collections.Counter((m.group(1), int(m.group(2))) for m in losses)}")
    failed = 0
    for (share, name), result in zip(names, results):
        path = env.share_path(share, f"{name}.copy")
        if result.ok:
            check.require(test_scopy.sha256_file(path) == digests[name],
                          f"{share}/{name}: copy reported done, but its data differs")
            continue
        check.require(share == "share_fail",
                      f"{share}/{name} (helper down = next) failed: {result.describe()}")
        check.require(result.nt_errors,
                      f"{share}/{name} failed without an NT status: {result.describe()}")
        failed += 1
    check.note(f"{KILL_CLIENTS} in flight ({in_helper} file descriptors in the helper), "
               f"{KILL_CLIENTS - failed} completed, {failed} on share_fail failed; "
               f"session pid {session_pid} reconnected; {reconnects} connections to the "
               f"dying helper")


def fill(env, share, leave):
    """Fills share's filesystem (filler.bin) until about leave bytes are
    free for users; returns (bytes free for users, for root)."""
    mount = env.filesystem(share).mount_point
    st = os.statvfs(mount)
    fd = os.open(env.share_path(share, "filler.bin"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize - leave)
    finally:
        os.close(fd)
    os.sync()
    st = os.statvfs(mount)
    return st.f_bavail * st.f_frsize, st.f_bfree * st.f_frsize


def disk_full_mid_run_case(env, check):
    """Four chunks that continue each other, with room for one and a half:
    smbd must report exactly the first chunk, then DISK_FULL, as stock
    Samba does chunk by chunk, although the module sends the four to the
    helper as one request."""
    share = "tiny"
    make_source(env, share, "run-src.bin", 4 * MiB)
    try:
        user_free, _ = fill(env, share, 3 * MiB // 2)
        check.require(MiB < user_free < 2 * MiB,
                      f"could not set up: {user_free} bytes free for users")
        position = env.helper.log_position() if env.helper else 0
        chunks = [(i * MiB, i * MiB, MiB) for i in range(4)]
        with smb_raw.Session(env.server.port, env.user, share) as s:
            src_id = s.open("run-src.bin")
            dst_id = s.open("run-copy.bin", create=True)
            status, written = s.copychunk_write_outcome(dst_id, s.resume_key(src_id), chunks)
            s.close(dst_id)
            s.close(src_id)
        check.require(status == smb_raw.STATUS_DISK_FULL,
                      f"expected STATUS_DISK_FULL, got {smb_raw.status_name(status)}")
        check.require(written is not None and written[0] == 1 and written[2] == MiB,
                      f"the response says {written} (ChunksWritten, ChunkBytesWritten, "
                      f"TotalBytesWritten), expected 1 chunk and {MiB} bytes")
        with open(env.share_path(share, "run-src.bin"), "rb") as src, \
                open(env.share_path(share, "run-copy.bin"), "rb") as dst:
            check.require(dst.read(MiB) == src.read(MiB),
                          "the chunk reported written differs from its source")
        if env.stock:
            check.skipped_in_stock("helper log: one request for the four chunks")
        else:
            records = env.helper.records_since(position)
            check.require(len(records) == 1 and records[0].length == 4 * MiB and
                          records[0].status == "ENOSPC" and
                          MiB <= records[0].bytes < 2 * MiB,
                          f"expected one helper copy of 4 MiB that failed with ENOSPC "
                          f"in its second MiB: {records}")
        check.note(f"{user_free} bytes free: {written}, "
                   f"{smb_raw.status_name(status)}")
    finally:
        for name in ("run-src.bin", "run-copy.bin", "filler.bin"):
            try:
                os.unlink(env.share_path(share, name))
            except FileNotFoundError:
                pass


def disk_full_case(env, check):
    share = "tiny"
    source = env.share_path(share, "full-src.bin")
    digest = make_source(env, share, "full-src.bin", DISK_FULL_SIZE)
    mtime = os.stat(source).st_mtime_ns
    local = os.path.join(env.scratch, "full-put.bin")
    test_scopy.write_random_file(local, DISK_FULL_SIZE)

    # Leave users less than the copy, root (reserved blocks) more.
    user_free, root_free = fill(env, share, 256 * 1024)
    check.require(user_free < DISK_FULL_SIZE <= root_free - MiB,
                  f"could not set up: {user_free} bytes free for users, {root_free} for root")

    position = env.helper.log_position() if env.helper else 0
    scopy = env.smbclient.run(share, ["scopy full-src.bin full-copy.bin"])
    put = env.smbclient.run(share, [f"put {local} full-put.bin"])
    check.require("NT_STATUS_DISK_FULL" in put.nt_errors,
                  f"plain put: expected NT_STATUS_DISK_FULL: {put.describe()}")
    check.require(scopy.nt_errors == put.nt_errors,
                  f"scopy: {scopy.describe()}; a plain write gets {put.nt_errors}")
    check.require(os.path.getsize(source) == DISK_FULL_SIZE and
                  os.stat(source).st_mtime_ns == mtime and
                  test_scopy.sha256_file(source) == digest,
                  "the source changed")
    if env.stock:
        check.skipped_in_stock("helper log: ENOSPC")
    else:
        statuses = {r.status for r in env.helper.records_since(position)}
        check.require("ENOSPC" in statuses,
                      f"the helper logged no ENOSPC copy (statuses {statuses})")
    for name in ("full-copy.bin", "full-put.bin", "filler.bin"):
        try:
            os.unlink(env.share_path(share, name))
        except FileNotFoundError:
            pass
    check.note(f"{user_free} bytes free for users, {root_free} for root: "
               f"scopy and put both {scopy.nt_errors}")


def copied_size(env, name):
    """The size of a copy in share "share" so far (0 before it exists)."""
    try:
        return os.path.getsize(env.share_path("share", name))
    except FileNotFoundError:
        return 0


def truncated_source_case(env, check):
    make_source(env, "share", "cut.bin", CUT_FILE_SIZE)
    pid = helper_pid(env)
    position = env.helper.log_position()
    with throttle(env, "share", CUT_THROTTLE) as slow, \
            client_processes.ClientProcesses(env, "cut") as clients:
        slow.add(pid)
        clients.start("share", ["scopy cut.bin cut.copy"])
        # The 16 chunks continue each other: one helper request, which logs
        # only at its end. Its progress shows in the destination.
        started = proc_stats.wait_for(
            lambda: copied_size(env, "cut.copy") >= 3 * MiB, 60)
        os.truncate(env.share_path("share", "cut.bin"), 0)
        result = clients.wait()[0]
    check.require(started, "the copy made no progress through the helper")
    check.require(not result.ok and result.nt_errors,
                  f"scopy of a source truncated mid-copy: expected an NT status: "
                  f"{result.describe()}")
    check.require(env.helper.running(), "the helper died")
    failed = [r.status for r in env.helper.records_since(position) if not r.ok]
    after = test_scopy.put_and_scopy(env, check, "after-cut", MiB)
    check.require(env.helper.records_since(after), "the next copy did not use the helper")
    check.note(f"client got {result.nt_errors}; helper failures: {failed or 'none'} "
               f"(else smbd's own size check refused the next chunk)")


def helper_hangs_case(env, check):
    pid = helper_pid(env)
    base = env.helper.idle_descriptors()
    digest = make_source(env, "share", "hang.bin", HANG_FILE_SIZE)
    make_source(env, "share_fail", "hang.bin", HANG_FILE_SIZE)
    timed_out_before = len(smbd_lines(env, TIMED_OUT_RE))
    os.kill(pid, signal.SIGSTOP)
    resumed = env.helper.log_position()  # nothing is logged while it is stopped
    try:
        started = time.monotonic()
        with client_processes.ClientProcesses(env, "hang") as clients:
            for share in ("share", "share_fail"):
                clients.start(share, ["scopy hang.bin hang.copy"])
            next_result, fail_result = clients.wait(timeout=10 * HANG_TIMEOUT)
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    check.require(HANG_TIMEOUT <= elapsed < 4 * HANG_TIMEOUT,
                  f"the copies took {elapsed:.1f} s; the timeout is {HANG_TIMEOUT} s")
    check.require(next_result.ok, f"share (helper down = next): {next_result.describe()}")
    check.require(test_scopy.sha256_file(env.share_path("share", "hang.copy")) == digest,
                  "share: the copy differs from the source")
    check.require(not fail_result.ok and fail_result.nt_errors,
                  f"share_fail (helper down = fail): expected an NT status: "
                  f"{fail_result.describe()}")
    timeouts = len(smbd_lines(env, TIMED_OUT_RE)) - timed_out_before
    check.require(timeouts >= 2, f"smbd logged {timeouts} reply timeouts, expected one per "
                                 f"smbd process")

    def released():
        hung = env.helper.accepted_since(resumed)
        return (len(hung) >= 2 and not set(hung) & set(env.helper.open_connections()) and
                env.helper.descriptors_besides_connections() == base)
    check.require(proc_stats.wait_for(released, 30),
                  f"the resumed helper: connections accepted "
                  f"{env.helper.accepted_since(resumed)}, still open "
                  f"{env.helper.open_connections()}; it holds "
                  f"{env.helper.descriptors_besides_connections()} descriptors besides "
                  f"connections, {base} before")
    position = test_scopy.put_and_scopy(env, check, "after-hang", MiB)
    check.require(env.helper.wait_for_bytes(position, MiB).bytes_ok >= MiB,
                  "the resumed helper did not copy")
    check.note(f"both copies ended after {elapsed:.1f} s (timeout {HANG_TIMEOUT} s); "
               f"share_fail got {fail_result.nt_errors}")


def client_disconnect_case(env, check):
    pid = helper_pid(env)
    names = [f"vanish-{i}.bin" for i in range(VANISH_CLIENTS)]
    for name in names:
        make_source(env, "share", name, VANISH_FILE_SIZE)
    base = env.helper.idle_descriptors()
    position = env.helper.log_position()
    with throttle(env, "share", VANISH_THROTTLE) as slow, \
            client_processes.ClientProcesses(env, "vanish") as clients:
        slow.add(pid)
        for name in names:
            clients.start("share", [f"scopy {name} {name}.copy"])

        def peers():
            return {r.peer_pid for r in env.helper.records_since(position)}

        # Each 16 MiB request is one helper copy, logged at its end; the
        # copies' progress shows in their destinations.
        def started():
            return [name for name in names if copied_size(env, f"{name}.copy") >= MiB]
        busy = proc_stats.wait_for(lambda: len(started()) == VANISH_CLIENTS, 60)
        for index in range(VANISH_CLIENTS):
            clients.kill(index)
        clients.wait()

        # Samba 4.22's smbd may finish its last copy a moment before it
        # exits and the helper sees the connection close: wait for both.
        def released():
            return (env.helper.descriptors_besides_connections() == base and
                    not peers() & set(env.helper.open_connections()))
        let_go = proc_stats.wait_for(released, 30)
    check.require(busy, f"only {len(started())} of {VANISH_CLIENTS} copies made progress")
    check.require(len(peers()) == VANISH_CLIENTS,
                  f"the helper logged copies of {len(peers())} smbd processes, "
                  f"expected {VANISH_CLIENTS}")
    check.require(let_go, f"the helper holds {env.helper.descriptors_besides_connections()} "
                          f"descriptors besides connections, {base} before the copies; "
                          f"connections still open: {env.helper.open_connections()}")
    log = env.helper.log_text(position)
    dropped, done = 0, {}
    for peer in peers():
        gone = re.search(rf"peer pid={peer} uid=0 disconnected; dropped (\d+) queued", log)
        check.require(gone, f"the helper did not log smbd pid {peer} as disconnected")
        dropped += int(gone.group(1))
        after = env.helper.records_since(position + gone.start())
        late = [r for r in after if r.peer_pid == peer]
        check.require(len(late) <= 1,
                      f"the helper went on copying for pid {peer}: {len(late)} copies "
                      f"after it disconnected")
        done[peer] = sum(r.bytes for r in env.helper.records_since(position)
                         if r.peer_pid == peer)
    # Samba 4.22's smbd ends the requests it has in flight before it exits,
    # and its smbclient sends a file's requests at once: a copy may finish.
    check.require(any(n < VANISH_FILE_SIZE for n in done.values()),
                  f"no copy was cut short: {done}")
    check.note(f"descriptors back to {base}; {dropped} queued copies dropped; "
               f"bytes per smbd process {sorted(done.values())}")


def hung_filesystem_case(env, check):
    digests = {f"stall-{i}.bin": make_source(env, "share", f"stall-{i}.bin", STALL_FILE_SIZE)
               for i in range(STALL_COPIES)}
    elsewhere = {name: make_source(env, "tiny", name, MiB)
                 for name in ("elsewhere.bin", "fresh.bin")}
    position = env.helper.log_position()

    def logged(regex):
        return re.findall(regex, env.helper.log_text(position))

    with smb_raw.connect(env, "tiny") as session:
        src, dst = session.open("elsewhere.bin"), session.open("session.copy", create=True)
        key = session.resume_key(src)
        session.copychunk_write(dst, key, [(0, 0, MiB)])
        with throttle(env, "share", STALL_THROTTLE) as slow, \
                client_processes.ClientProcesses(env, "stall") as clients:
            slow.add(helper_pid(env))
            for name in digests:
                clients.start("share", [f"scopy {name} {name}.copy"])
            stalled = proc_stats.wait_for(lambda: len(logged(STALL_RE)) >= STALL_COPIES,
                                          10 * scenario.STALL_SECONDS)
            check.require(stalled, f"the helper logged no stall of {STALL_COPIES} workers: "
                                   f"{logged(STALL_RE)}")
            during = env.helper.log_position()
            started = time.monotonic()
            try:
                session.copychunk_write(dst, key, [(0, 0, MiB)])
            except smb_raw.SmbError as e:
                check.fail(f"the session's copy on tiny during the stall: {e}")
            # The session holds elsewhere.bin open: smbclient copies its own.
            fresh = env.smbclient.run("tiny", ["scopy fresh.bin fresh.copy"])
            elapsed = time.monotonic() - started
            check.require(fresh.ok, f"a new client's copy on tiny: {fresh.describe()}")
            done = env.helper.records_since(during)
            check.require(sum(r.bytes for r in done if r.ok) == 2 * MiB,
                          f"the helper did not do the two copies on tiny during the "
                          f"stall: {done}")
            check.require(all(clients.running(i) for i in range(STALL_COPIES)),
                          "a copy of the throttled share ended before the throttle "
                          "was lifted")
            slow.set_rate(0)
            results = clients.wait()
        session.close(dst)
        session.close(src)
    for name, result in zip(digests, results):
        check.require(result.ok, f"{name}: {result.describe()}")
        check.require(test_scopy.sha256_file(env.share_path("share", f"{name}.copy"))
                      == digests[name], f"{name}: the copy differs from the source")
    for source, name in (("elsewhere.bin", "session.copy"), ("fresh.bin", "fresh.copy")):
        check.require(test_scopy.sha256_file(env.share_path("tiny", name)) == elsewhere[source],
                      f"tiny/{name} differs from its source")
    check.require(elapsed < HELPER_TIMEOUT / 4,
                  f"the copies on tiny took {elapsed:.1f} s during the stall")
    stalls = logged(STALL_RE)
    returned = proc_stats.wait_for(lambda: sorted(logged(RETURNED_RE)) == sorted(stalls), 30)
    check.require(returned, f"stalled workers {stalls}, going again {logged(RETURNED_RE)}")
    check.note(f"workers {', '.join(stalls)} stalled; the copies on tiny took {elapsed:.1f} s; "
               f"the stuck copies completed once the throttle was lifted")


def limited_outlasts_timeout_case(env, check):
    """A copy that a share's bandwidth limit keeps longer than the reply
    timeout: the helper, asked halfway, shows it is alive, and copies it all
    at the limit's pace; smbd neither times out nor copies it itself."""
    digest = make_source(env, "slow_limit", "limited.bin", LIMITED_FILE_SIZE)
    timed_out_before = len(smbd_lines(env, TIMED_OUT_RE))
    position = env.helper.log_position()
    started = time.monotonic()
    result = env.smbclient.run("slow_limit", ["scopy limited.bin limited.copy"])
    elapsed = time.monotonic() - started
    check.require(result.ok, f"scopy: {result.describe()}")
    check.require(test_scopy.sha256_file(env.share_path("slow_limit", "limited.copy"))
                  == digest, "the copy differs from the source")
    timeouts = len(smbd_lines(env, TIMED_OUT_RE)) - timed_out_before
    check.require(timeouts == 0, f"smbd timed out {timeouts} times waiting for the helper")
    summary = env.helper.wait_for_bytes(position, LIMITED_FILE_SIZE)
    check.require(summary.bytes_ok == LIMITED_FILE_SIZE,
                  f"the helper copied {summary.bytes_ok} of {LIMITED_FILE_SIZE} bytes: "
                  f"{summary.describe()}")
    # At 1 MiB/s the bytes past the first free MiB take a second each.
    check.require(elapsed > HANG_TIMEOUT,
                  f"the copy took {elapsed:.1f} s, not longer than the {HANG_TIMEOUT} s "
                  f"timeout: the limit did not hold it")
    check.note(f"{LIMITED_FILE_SIZE // MiB} MiB in {elapsed:.1f} s through the helper, "
               f"reply timeout {HANG_TIMEOUT} s")


def refusing_helper_case(env, check):
    """An older helper refuses the handshake: the copies go to the next
    module, and the module shakes hands once, not once per copy."""
    digest = make_source(env, "old_helper", "old.bin", OLD_HELPER_FILE_SIZE)
    refused_before = len(smbd_lines(env, REFUSED_RE))
    with fake_helpers.RefusingHelper(os.path.join(env.dir, scenario.OLD_HELPER_SOCKET)) as old:
        for i in range(OLD_HELPER_COPIES):
            result = env.smbclient.run("old_helper", [f"scopy old.bin old-{i}.copy"])
            check.require(result.ok, f"copy {i}: {result.describe()}")
            check.require(test_scopy.sha256_file(env.share_path("old_helper", f"old-{i}.copy"))
                          == digest, f"copy {i} differs from the source")
        handshakes = old.count()
    refused = len(smbd_lines(env, REFUSED_RE)) - refused_before
    # One smbd process per smbclient: each shakes hands once, then leaves
    # the helper alone for the reply timeout, whatever number of requests
    # its copy makes.
    check.require(handshakes == OLD_HELPER_COPIES,
                  f"{handshakes} handshakes for {OLD_HELPER_COPIES} copies of "
                  f"{OLD_HELPER_FILE_SIZE // MiB} MiB")
    check.require(refused == OLD_HELPER_COPIES,
                  f"smbd logged {refused} refusals, expected {OLD_HELPER_COPIES}")
    check.note(f"{handshakes} handshakes, each copy done by smbd")


def helper_errors_case(env, check):
    """Every errno a helper's copy fails with reaches the client as smbd's own
    copy would answer it, never as a success code, with nothing written."""
    test_clone.create_share_file(env, "erring_helper", "erring-src.bin", MiB)
    dst_path, dst_before = test_clone.create_share_file(env, "erring_helper",
                                                        "erring-dst.bin", MiB)
    with fake_helpers.FailingHelper(os.path.join(env.dir, scenario.ERRING_HELPER_SOCKET)) as helper:
        with smb_raw.connect(env, "erring_helper") as s:
            src = s.open("erring-src.bin")
            dst = s.open("erring-dst.bin")
            key = s.resume_key(src)
            for err, expected in HELPER_ERRNO_STATUSES:
                helper.fail_with(err)
                status, written = s.copychunk_write_outcome(dst, key, [(0, 0, MiB)])
                check.require(status == expected,
                              f"a copy failed with {errno.errorcode[err]}: "
                              f"{smb_raw.status_name(status)}, expected "
                              f"{smb_raw.status_name(expected)}")
                check.require(written is None or written[2] == 0,
                              f"{errno.errorcode[err]}: {written} reported written")
            s.close(dst)
            s.close(src)
        copies = helper.count()
    check.require(copies == len(HELPER_ERRNO_STATUSES),
                  f"the failing helper got {copies} copies, expected "
                  f"{len(HELPER_ERRNO_STATUSES)}")
    test_clone.require_bytes(check, dst_path, dst_before, "target")
    check.note(", ".join(f"{errno.errorcode[err]}: {smb_raw.status_name(expected)}"
                         for err, expected in HELPER_ERRNO_STATUSES))


def cases(fs_type, stock):
    if fs_type != "ext4":
        return []
    faults = scenario.faults(fs_type)
    name = functools.partial("{}:faults:{}".format, fs_type)
    out = [testcase.Case(name("disk full"), faults, disk_full_case),
           testcase.Case(name("disk full mid-run"), faults, disk_full_mid_run_case)]
    if stock:
        return out
    return out + [
        testcase.Case(name(f"kill -9 helper, {KILL_CLIENTS} copies in flight"), faults,
                      kill_helper_case),
        testcase.Case(name("source truncated mid-copy"), faults, truncated_source_case),
        testcase.Case(name("helper hangs"), scenario.hang(fs_type), helper_hangs_case),
        testcase.Case(name("client disconnects mid-copy"), faults, client_disconnect_case),
        testcase.Case(name("a hung filesystem stalls only its own copies"), faults,
                      hung_filesystem_case),
        testcase.Case(name("older helper refuses the handshake"), faults,
                      refusing_helper_case),
        testcase.Case(name("helper errors keep smbd's statuses"), faults,
                      helper_errors_case),
        testcase.Case(name("a limited copy outlasts the reply timeout"),
                      scenario.hang(fs_type), limited_outlasts_timeout_case),
    ]
