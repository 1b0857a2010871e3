"""A slow disk: cgroup v1 blkio read throttling of one loop device.

Buffered writes are not throttled reliably under v1 (writeback is
attributed elsewhere), so the slow case reads a cold source: its pages are
dropped from the page cache before each run (evict) and reads of the loop
device by the daemons are limited to a fixed rate.
"""

import contextlib
import os
import subprocess

BLKIO = "/sys/fs/cgroup/blkio"


def available():
    return os.path.isfile(os.path.join(BLKIO, "blkio.throttle.read_bps_device"))


def evict(path):
    """Drops path's pages from the page cache, so that its next reads come
    from its device. Only this file's: drop_caches would also make smbd,
    the helper and their libraries page their code back in from the root
    disk during the echoes, which a working server does not."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


@contextlib.contextmanager
def throttled_reads(device, bytes_per_second, pids):
    """Runs the body with pids (and children forked later) limited to
    bytes_per_second of reads from device; restores everything after."""
    majmin = subprocess.run(["lsblk", "-dno", "MAJ:MIN", device], check=True,
                            capture_output=True, text=True).stdout.strip()
    group = os.path.join(BLKIO, f"copyoffload-bench-{os.getpid()}")
    os.mkdir(group)
    try:
        _write(os.path.join(group, "blkio.throttle.read_bps_device"),
               f"{majmin} {bytes_per_second}\n")
        for pid in pids:
            _write(os.path.join(group, "cgroup.procs"), f"{pid}\n")
        yield
    finally:
        with open(os.path.join(group, "cgroup.procs")) as f:
            members = [line.strip() for line in f if line.strip()]
        for pid in members:
            with contextlib.suppress(ProcessLookupError, OSError):
                _write(os.path.join(BLKIO, "cgroup.procs"), f"{pid}\n")
        os.rmdir(group)
