"""Slow reads on purpose: a cgroup v1 blkio read-bandwidth limit on one block
device for chosen processes, so that copies take long enough to overlap
with a fault (see /work/shared/research/baseline-stock-samba.md).

    with ReadThrottle(env.filesystem("share").device(), 16 << 20) as throttle:
        throttle.add(env.helper.proc.pid)   # its reads of that device: 16 MiB/s
        drop_cache(path)                    # only reads that reach the device count

Only reads are throttled reliably (buffered writes are written back by
other threads), so sources must be cold: drop_cache() writes a file back and
evicts it from the page cache. The group is removed on every exit path
(processes still in it move back to the root group first).
"""

import errno
import os
import time

import cleanup

BLKIO = "/sys/fs/cgroup/blkio"


def available():
    return os.path.isfile(os.path.join(BLKIO, "blkio.throttle.read_bps_device"))


def drop_cache(path):
    """Write path back and drop its pages, so the next read hits the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class ReadThrottle:
    def __init__(self, device, bytes_per_second):
        """device: a block device path such as /dev/loop3."""
        if not available():
            raise RuntimeError(f"no cgroup v1 blkio controller at {BLKIO} "
                               f"(needed to slow reads down)")
        rdev = os.stat(device).st_rdev
        self.rule = f"{os.major(rdev)}:{os.minor(rdev)} {bytes_per_second}"
        self.path = os.path.join(BLKIO, f"copyoffload-test-{os.getpid()}")
        self._token = None

    def __enter__(self):
        with cleanup.critical():
            os.mkdir(self.path)
            self._token = cleanup.register(f"remove cgroup {self.path}", self._remove)
        with open(os.path.join(self.path, "blkio.throttle.read_bps_device"), "w") as f:
            f.write(self.rule)
        return self

    def __exit__(self, *exc):
        if self._token is not None:
            token, self._token = self._token, None
            cleanup.release(token)
        return False

    def set_rate(self, bytes_per_second):
        """A new limit (0: none); reads queued under the old one are
        dispatched at the new rate."""
        device = self.rule.split()[0]
        self.rule = f"{device} {bytes_per_second}"
        with open(os.path.join(self.path, "blkio.throttle.read_bps_device"), "w") as f:
            f.write(self.rule)

    def add(self, pid):
        """Move a process (all its threads) into the group."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def _remove(self):
        # Reads queued under the limit stay queued at its rate after the
        # processes leave and the group goes: lift it first, or a test that
        # fails with reads stuck at a crawl leaves its filesystem busy.
        self.set_rate(0)
        with open(os.path.join(self.path, "cgroup.procs")) as f:
            pids = f.read().split()
        for pid in pids:
            try:
                with open(os.path.join(BLKIO, "cgroup.procs"), "w") as f:
                    f.write(pid)
            except OSError:
                pass  # exited meanwhile
        # A process killed a moment ago may still be leaving the group.
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                time.sleep(0.1)
        os.rmdir(self.path)
