"""A scratch CPU cgroup for copyoffloadd --cpu-cgroup: where this machine's
cgroup v1 cpu hierarchy is, and a fresh directory there that is removed
once the threads in it have gone. Also whether the kernel's autogroups,
the other scheduling groups the daemon meets, are on."""

import os
import time
import uuid


def autogroups_enabled():
    """True or False as kernel.sched_autogroup_enabled says; None if the
    kernel has no autogroups."""
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            return f.read().strip() == "1"
    except FileNotFoundError:
        return None


def hierarchy():
    """The root of cgroup v1's cpu hierarchy, or None without one."""
    for root in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"):
        if os.path.exists(os.path.join(root, "cpu.idle")):
            return root
    return None


def read_idle(directory):
    with open(os.path.join(directory, "cpu.idle")) as f:
        return int(f.read())


class ScratchCgroup:
    """A path for a cgroup the daemon creates; removed on exit, once the
    daemon (stopped first by the caller) has gone."""

    def __init__(self, prefix="copyoffload-test"):
        root = hierarchy()
        self.path = os.path.join(root, f"{prefix}-{uuid.uuid4().hex[:8]}") if root else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    def remove(self, timeout=10.0):
        if self.path is None:
            return
        deadline = time.monotonic() + timeout
        while os.path.isdir(self.path):
            try:
                os.rmdir(self.path)
            except OSError:
                # EBUSY until the kernel has reaped the last task in it.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
