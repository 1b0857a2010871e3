"""Starting, running and stopping processes, always by PID.

Daemons run in a session of their own (start_new_session=True): smbd signals
its whole process group when it exits, and a terminal Ctrl-C must reach the
harness first so that it can tear things down in order. Stopping a daemon
means SIGTERM to its PID, then SIGKILL, then the same for every process still
in its session (smbd's forked children), one PID at a time.
"""

import ctypes
import os
import shlex
import signal
import subprocess
import time

import cleanup
import proc_stats

_command_log = None  # path of a file recording every command and its output
_verbose = False


def configure(command_log=None, verbose=False):
    global _command_log, _verbose
    _command_log = command_log
    _verbose = verbose


def _log(text):
    if _verbose:
        print(text, flush=True)
    if _command_log:
        with open(_command_log, "a", encoding="utf-8", errors="replace") as f:
            f.write(text + "\n")


def run(argv, *, input=None, timeout=120, check=True, env=None, quiet=False, cwd=None):
    """Run a short command, capturing stdout+stderr as text.

    The command runs in a session of its own, so a terminal Ctrl-C reaches
    only the harness; if the harness is interrupted, subprocess.run kills
    the command by PID (unless we are in a critical section, where it is
    left to finish, e.g. an umount during teardown).
    Raises CommandError if check and the exit status is not 0.
    """
    _log(f"$ {shlex.join(argv)}")
    try:
        proc = subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              errors="replace", timeout=timeout, env=env,
                              cwd=cwd, start_new_session=True)
    except subprocess.TimeoutExpired as e:
        out = e.output or ""
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        _log(out + f"[timed out after {timeout} s]")
        raise CommandError(argv, None, out, f"timed out after {timeout} s") from None
    if not quiet or proc.returncode != 0:
        _log(proc.stdout.rstrip("\n") + f"\n[exit {proc.returncode}]")
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout)
    return proc


class CommandError(Exception):
    def __init__(self, argv, returncode, output, what=None):
        self.argv = argv
        self.returncode = returncode
        self.output = output
        what = what or f"exit status {returncode}"
        tail = " | ".join(output.strip().splitlines()[-3:])
        super().__init__(f"{shlex.join(argv)}: {what}: {tail}")


def spawn_daemon(argv, log_path, description, env=None):
    """Start a long-running process in its own session, output to log_path.

    Returns (Popen, cleanup token). The stop action is registered before
    signals are unblocked.
    """
    _log(f"$ {shlex.join(argv)} >{log_path} 2>&1 &")
    with cleanup.critical():
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        token = cleanup.register(f"stop {description} (pid {proc.pid})",
                                 lambda: stop_daemon(proc, description))
    _log(f"[{description} started, pid {proc.pid}]")
    return proc, token


def start_daemon(argv, log_path, description, ready, waiting_for, log_tail, timeout):
    """spawn_daemon, then poll ready() until it is true. If the process
    exits first or timeout seconds pass, it is stopped and RuntimeError
    says what it did not do (waiting_for) with log_tail(). Returns
    (Popen, cleanup token)."""
    proc, token = spawn_daemon(argv, log_path, description)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{description} exited with status "
                                   f"{proc.returncode}; log tail: {log_tail()}")
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{description} did not {waiting_for} within "
                                   f"{timeout} s; log tail: {log_tail()}")
            time.sleep(0.05)
    except BaseException:
        cleanup.release(token)
        raise
    return proc, token


class Daemon:
    """A daemon started with start_daemon() by a subclass's start(), which
    sets self.proc and self._token; stopped by stop() (or on any exit path
    by the cleanup registry). A context manager: start, then stop."""

    proc = None
    _token = None

    def stop(self):
        if self._token is not None:
            token, self._token = self._token, None
            cleanup.release(token)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    """Adopt orphaned descendants (smbd's children outlive smbd by a moment),
    so that we can reap them instead of leaving zombies for PID 1."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        _log(f"[prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}]")


def _reap(pids):
    """waitpid() those of pids that are our own zombie children."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def session_members(sid, include_zombies=False):
    """PIDs of processes whose session id is sid."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = proc_stats.stat_fields(entry)
        if fields is None:
            continue
        state, session = fields[0], int(fields[3])
        if session == sid and (include_zombies or state != "Z"):
            pids.append(int(entry))
    return pids


def _signal_pid(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_daemon(proc, description="process", timeout=10.0):
    """SIGTERM, wait, SIGKILL proc by PID; then reap its session, PID by PID."""
    sid = proc.pid  # start_new_session: the daemon leads its own session
    if proc.poll() is None:
        _signal_pid(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _log(f"[{description} pid {proc.pid} ignored SIGTERM, sending SIGKILL]")
            _signal_pid(proc.pid, signal.SIGKILL)
            proc.wait()
    # Children (smbd's per-connection processes) normally exit with the parent.
    for sig, wait in ((None, timeout / 2), (signal.SIGTERM, timeout / 2),
                      (signal.SIGKILL, timeout)):
        members = session_members(sid)
        if members and sig is not None:
            _log(f"[{description}: sending {sig.name} to leftover pids {members}]")
            for pid in members:
                _signal_pid(pid, sig)
        deadline = time.monotonic() + wait
        while members and time.monotonic() < deadline:
            time.sleep(0.05)
            members = session_members(sid)
        if not members:
            break
    else:
        _log(f"[{description}: pids {members} did not exit]")
    _reap(session_members(sid, include_zombies=True))
    _log(f"[{description} stopped, exit {proc.returncode}]")
    return proc.returncode
