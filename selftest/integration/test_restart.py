"""The helper restarts under a running smbd: later copies of the SAME SMB
session, served by the same smbd process, go through the new helper, which
the new helper's log proves (scenario "ops", share "share").

`FS:restart:same session` (one impacket session, COPYCHUNK_WRITE each time):
  1. a copy goes through the helper: its log names the smbd process (peer_pid);
  2. the helper is killed (SIGKILL); a copy made while it is down goes to
     the next module and is still exact;
  3. a new helper starts on the same socket; after the module's 1 s retry
     pause a copy goes through it, for the same peer_pid, and smbd logs
     that the helper is reachable again;
  4. the new helper is stopped (SIGTERM) while a paced copy of share
     "limited" is in flight in the same session: that copy still completes
     exactly (the helper finishes what it received; the rest goes to the
     next module); then a third helper serves the session's next copy.
"""

import os
import signal
import threading
import time

import ops_support
import scenario
import smb_raw
import test_scopy
import testcase

MiB = 1 << 20


def copychunk(session, check, src, dst, size, chunk_per_request=False):
    """COPYCHUNK_WRITE of src over dst (same size) in 1 MiB chunks; every
    response must report every byte. In one request the chunks continue each
    other and make one helper request; with chunk_per_request each chunk is
    a COPYCHUNK_WRITE, and a helper request, of its own, sent after the reply
    to the one before."""
    s_id, d_id = session.open(src), session.open(dst)
    try:
        key = session.resume_key(s_id)
        chunks = [(off, off, min(MiB, size - off)) for off in range(0, size, MiB)]
        for request in ([[c] for c in chunks] if chunk_per_request else [chunks]):
            written = session.copychunk_write(d_id, key, request)
            total = sum(c[2] for c in request)
            check.require(written == (len(request), 0, total),
                          f"COPYCHUNK_WRITE response {written}, expected "
                          f"({len(request)}, 0, {total})")
    except smb_raw.SmbError as e:
        check.fail(f"COPYCHUNK_WRITE {src} -> {dst}: {e}")
    finally:
        session.close(d_id)
        session.close(s_id)


def fresh_pair(env, share, tag, size):
    """A random source and a zero-filled target of size bytes in share."""
    digest = ops_support.create_file(env, share, f"restart-{tag}.src", size)
    target = env.share_path(share, f"restart-{tag}.dst")
    with open(target, "wb") as f:
        f.truncate(size)
    os.chown(target, env.user.uid, env.user.gid)
    return f"restart-{tag}.src", f"restart-{tag}.dst", digest


def require_exact(env, check, share, name, digest):
    check.require(test_scopy.sha256_file(env.share_path(share, name)) == digest,
                  f"{share}/{name} differs from its source")


def require_through_helper(env, check, position, size, what):
    summary = env.helper.wait_for_bytes(position, size)
    records = env.helper.records_since(position)
    check.require(summary.bytes_ok == size and not summary.failed,
                  f"{what}: the helper's log shows {summary.describe()}")
    return {r.peer_pid for r in records}


def same_session(env, check):
    size = 4 * MiB
    with smb_raw.connect(env, "share") as session:
        # 1. Through the first helper.
        src, dst, digest = fresh_pair(env, "share", "1", size)
        position = env.helper.log_position()
        copychunk(session, check, src, dst, size)
        require_exact(env, check, "share", dst, digest)
        pids = require_through_helper(env, check, position, size, "first copy")
        check.require(len(pids) == 1, f"first copy from smbd pids {pids}")
        smbd_pid = pids.pop()

        # 2. Killed: the next copy goes to the next module.
        os.kill(env.helper.proc.pid, signal.SIGKILL)
        env.helper.stop()
        src, dst, digest = fresh_pair(env, "share", "2", size)
        copychunk(session, check, src, dst, size)
        require_exact(env, check, "share", dst, digest)

        # 3. Restarted: after the retry pause, the same session and smbd
        # process use the new helper.
        env.helper.start()
        position = env.helper.log_position()
        time.sleep(1.2)
        src, dst, digest = fresh_pair(env, "share", "3", size)
        copychunk(session, check, src, dst, size)
        require_exact(env, check, "share", dst, digest)
        pids = require_through_helper(env, check, position, size, "copy after the restart")
        check.require(pids == {smbd_pid},
                      f"copies after the restart came from smbd pids {pids}, "
                      f"not the session's {smbd_pid}")
        check.require(env.server.log_matches(r"copyoffload: helper at .* reachable again"),
                      "smbd did not log that the helper is reachable again")

        # 4. Stopped while a paced copy (4 MiB/s) is in flight.
        session_limited = session.conn.connectTree("limited")
        src, dst, digest = fresh_pair(env, "limited", "4", size)
        position = env.helper.log_position()
        # SIGTERM from a timer; the harness reaps the helper afterwards.
        stopper = threading.Timer(0.4, os.kill, (env.helper.proc.pid, signal.SIGTERM))
        stopper.start()
        tree, session.tree = session.tree, session_limited
        try:
            # A request per chunk, so the signal falls between helper
            # requests (a request's chunks would all reach the helper at once).
            copychunk(session, check, src, dst, size, chunk_per_request=True)
        finally:
            session.tree = tree
            stopper.join()
        require_exact(env, check, "limited", dst, digest)
        env.helper.stop()
        check.require(env.helper.proc.returncode == 0,
                      f"the stopped helper exited with {env.helper.proc.returncode}")
        log = env.helper.log_text(position)
        check.require("info: received SIGTERM" in log, "the helper was not stopped mid-copy")
        done = sum(r.bytes for r in env.helper.records_since(position) if r.ok)
        check.require(0 < done < size,
                      f"the stopped helper copied {done} of {size} bytes; expected part")

        # And a third helper serves the same session again.
        env.helper.start()
        time.sleep(1.2)
        src, dst, digest = fresh_pair(env, "share", "5", size)
        position = env.helper.log_position()
        copychunk(session, check, src, dst, size)
        require_exact(env, check, "share", dst, digest)
        pids = require_through_helper(env, check, position, size, "copy after the stop")
        check.require(pids == {smbd_pid}, f"copies came from smbd pids {pids}")
    check.note(f"smbd pid {smbd_pid}: helper killed, restarted, stopped mid-copy "
               f"({done} of {size} bytes by it), restarted")


def cases(fs_type, stock):
    if stock:
        return []
    return [testcase.Case(f"{fs_type}:restart:same session", scenario.ops(fs_type),
                          same_session)]
