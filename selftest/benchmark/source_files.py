"""Source files the measurements copy, written once straight onto a share's
filesystem (random bytes, owned by the test user, fsynced) and reused."""

import os

MIB = 1 << 20


def ensure_source(env, share, size):
    """Path of a size-byte random file on share, and its name there."""
    name = f"source-{size // MIB}MiB.bin"
    path = env.path(share, name)
    if not os.path.exists(path) or os.path.getsize(path) != size:
        with open(path, "wb") as f:
            remaining = size
            while remaining:
                block = os.urandom(min(remaining, 16 * MIB))
                f.write(block)
                remaining -= len(block)
            f.flush()
            os.fsync(f.fileno())
        os.chown(path, env.user.uid, env.user.gid)
    return path, name


def remove_and_sync(*paths):
    """Drop copies between runs and let writeback finish, untimed, so one
    run's dirty pages do not slow the next."""
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    os.sync()
