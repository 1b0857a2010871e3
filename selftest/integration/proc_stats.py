"""What a running process holds, from /proc: open descriptors and resident
memory, and whether it still runs. The fault and load tests watch the helper with these."""

import os
import threading
import time


def descriptor_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def stat_fields(pid):
    """The fields of /proc/PID/stat after comm (state first), or None once
    the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:  # gone, or going
        return None
    # The comm field may contain spaces/parentheses: split after the last ')'.
    return stat[stat.rfind(")") + 2:].split()


def has_exited(pid):
    """Whether pid has ended (or is a zombie, not yet reaped by its parent)."""
    fields = stat_fields(pid)
    return fields is None or fields[0] == "Z"


def wait_for(condition, timeout, interval=0.01):
    """Polls condition() until it is true (returns True) or timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class Sampler:
    """Samples a process's descriptor count and RSS in a thread until
    stopped; keeps the maxima.

        with Sampler(pid) as sampler:
            ...load...
        sampler.max_descriptors, sampler.max_rss_kib
    """

    def __init__(self, pid, interval=0.05):
        self.pid = pid
        self.interval = interval
        self.max_descriptors = 0
        self.max_rss_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        try:
            self.max_descriptors = max(self.max_descriptors, descriptor_count(self.pid))
            self.max_rss_kib = max(self.max_rss_kib, rss_kib(self.pid))
            self.samples += 1
        except (FileNotFoundError, ProcessLookupError):
            pass  # the process is gone; the test notices that itself

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        return False
