"""Running copyoffloadd (and friends) for the tool and service tests: in a
temporary directory, output to a log file, stopped by PID."""

import ctypes
import os
import signal
import socket
import stat
import subprocess
import time

BUILD = os.environ.get("COPYOFFLOAD_BUILD_DIR", "")
DAEMON = os.environ.get("COPYOFFLOADD", os.path.join(BUILD, "helper", "copyoffloadd"))
CLI = os.environ.get("COPYOFFLOAD_CLI", os.path.join(BUILD, "helper", "copyoffload"))


def wait_for(condition, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


PR_SET_PDEATHSIG = 1

# A CPU hog for /bin/sh -c: spins until its parent goes, so that it cannot
# outlive the daemon it was started next to.
HOG = "/usr/bin/python3 -c 'import os; p = os.getppid()\nwhile os.getppid() == p: pass'"


# Each child leads a session of its own, out of reach of the process-group
# kill with which meson ends a test at its timeout (SIGTERM, then SIGKILL
# half a second later), and that kill skips every finally. So the children
# get SIGKILL when the test process goes (PR_SET_PDEATHSIG; a daemon that
# drops privileges loses it, the kernel clears it with the credentials),
# and SIGTERM kills every child still running before the test exits.
_started = []


def _dies_with_parent(then=None):
    """A preexec_fn that asks for SIGKILL when the parent ends, then runs
    then()."""
    def preexec():
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if then is not None:
            then()
    return preexec


def _kill_children_and_exit(signum, frame):
    for proc in _started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _kill_children_and_exit)


class Process:
    """A started process with its output in a log file."""

    def __init__(self, argv, log_path, env=None, preexec_fn=None, **popen):
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True,
                                         preexec_fn=_dies_with_parent(preexec_fn), **popen)
        _started.append(self.proc)

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_log(self, needle, timeout=10.0):
        return wait_for(lambda: needle in self.log(), timeout, f"{needle!r} in {self.log_path}")

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signals the process (by PID) and waits; SIGKILL if it lingers.
        Returns the exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def thread_status(pid):
    """{tid: {field: value}} of /proc/PID/task/TID/status, for each thread
    of process pid (Name is the thread's name)."""
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            threads[int(tid)] = dict(line.rstrip("\n").split(":\t", 1) for line in f
                                     if ":\t" in line)
    return threads


def start_daemon(directory, *extra, env=None):
    """copyoffloadd on DIRECTORY/sock at debug level; returns (Process, socket path)."""
    path = os.path.join(directory, "sock")
    daemon = Process([DAEMON, "--socket", path, "--log-level", "debug", *extra],
                     os.path.join(directory, "daemon.log"), env=env)
    wait_for(lambda: daemon.proc.poll() is not None or
             (os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode)),
             what=f"copyoffloadd to listen on {path}")
    if daemon.proc.poll() is not None:
        raise AssertionError(f"copyoffloadd exited: {daemon.log()}")
    daemon.wait_log("info: listening on ")
    return daemon, path


def listening_socket(path, kind=socket.SOCK_SEQPACKET):
    sock = socket.socket(socket.AF_UNIX, kind)
    sock.bind(path)
    sock.listen(16)
    return sock


def start_with_passed_sockets(directory, sockets, *extra, env=None):
    """copyoffloadd started the way systemd starts it: the sockets as
    descriptors 3, 4, ... and LISTEN_FDS/LISTEN_PID naming them."""
    fds = [s.fileno() for s in sockets]
    # bash (dash knows only descriptors 0-9) moves the sockets to 3..
    # (through 100.., so that none clobbers another), exports its own PID,
    # which exec keeps, and execs.
    park = " ".join(f"{100 + i}<&{fd}" for i, fd in enumerate(fds))
    place = " ".join(f"{3 + i}<&{100 + i}" for i in range(len(fds)))
    unpark = " ".join(f"{100 + i}<&-" for i in range(len(fds)))
    stray = " ".join(f"{fd}<&-" for fd in fds if not 3 <= fd < 3 + len(fds))
    script = (f"exec {park}; exec {place}; exec {unpark} {stray}; "
              f'LISTEN_PID=$$ LISTEN_FDS={len(fds)} exec "$0" "$@"')
    argv = ["/bin/bash", "-c", script, DAEMON, "--log-level", "debug", *extra]
    return Process(argv, os.path.join(directory, "daemon.log"), env=env, pass_fds=fds)


def run_cli(*args, timeout=60, **kwargs):
    return subprocess.run([CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, **kwargs)
