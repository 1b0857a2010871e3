"""This VM's free page reporting, held off for a benchmark run.

The guest's virtio-balloon driver reports free memory to the host, which
takes it back; the next page the guest allocates there faults in the host
again. A 1 GiB copy into such memory ran at about 380 MiB/s from the point
where it met it, on stock smbd and copyoffload alike (16 MiB requests went
from 5 to 42 ms): runs two to four times as long as their neighbours,
which decided medians. This VM's kernel has a page_reporting parameter
min_free_ms, how long a page must stay free before it is reported;
holding it at its maximum for the run, after touching enough memory that
the run's page cache lands on pages the host still backs, removed them in
a probe of six runs per server.
"""

import contextlib
import mmap
import os

MIN_FREE_MS = "/sys/module/page_reporting/parameters/min_free_ms"
HELD_MS = 300000  # the largest the parameter takes here (5 minutes)
PAGE = 4096


def available():
    return os.path.exists(MIN_FREE_MS)


def _touch(nbytes):
    """Fault in nbytes of fresh anonymous memory, then free it."""
    with mmap.mmap(-1, nbytes) as m:
        for offset in range(0, nbytes, PAGE):
            m[offset] = 1


@contextlib.contextmanager
def held(warm_bytes):
    """min_free_ms at its maximum until the block ends, then as it was;
    warm_bytes of memory touched first."""
    with open(MIN_FREE_MS) as f:
        before = f.read().strip()
    with open(MIN_FREE_MS, "w") as f:
        f.write(str(HELD_MS))
    try:
        _touch(warm_bytes)
        yield
    finally:
        with open(MIN_FREE_MS, "w") as f:
            f.write(before)
