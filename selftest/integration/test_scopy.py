"""smbclient put + scopy (FSCTL_SRV_COPYCHUNK_WRITE) of files of several sizes.

Each case uploads a file of random bytes, copies it server-side, and checks:
  * smbclient exits 0 and prints no NT_STATUS error;
  * the uploaded file and the copy on the mounted filesystem have the local
    file's size and sha256;
  * (module mode) the helper's "copy done" lines written during this
    smbclient run cover at least the file size with status=0, and none
    failed. In stock mode this is reported as "skipped (stock)".
"""

import functools
import hashlib
import os

import scenario
import testcase

SHARE = "share"

SIZES = (
    ("0B", 0),
    ("1B", 1),
    ("1MiB+1", (1 << 20) + 1),
    ("64MiB", 64 << 20),
)


def write_random_file(path, size, block=1 << 20):
    """Write size random bytes to path; return their sha256 hex digest."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            data = os.urandom(min(block, remaining))
            f.write(data)
            digest.update(data)
            remaining -= len(data)
    return digest.hexdigest()


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scopy_names(label):
    """(uploaded file, copy) names in SHARE for a put_and_scopy label."""
    safe = label.replace("+", "p")
    return f"scopy-{safe}.bin", f"scopy-{safe}.copy"


def put_and_scopy(env, check, label, size):
    """Upload a random file and scopy it; returns the helper log position
    taken before the client ran. Fails the case on any data mismatch."""
    name, copy = scopy_names(label)
    local = os.path.join(env.scratch, name + ".src")
    expected = write_random_file(local, size)

    position = env.helper.log_position() if env.helper else 0
    result = env.smbclient.run(SHARE, [f"put {local} {name}", f"scopy {name} {copy}"])
    check.require(result.ok, result.describe())

    for what, fname in (("uploaded file", name), ("copy", copy)):
        path = env.share_path(SHARE, fname)
        check.require(os.path.exists(path), f"{what} {path} missing on disk")
        actual_size = os.path.getsize(path)
        check.require(actual_size == size,
                      f"{what} has {actual_size} bytes, expected {size}")
        check.require(sha256_file(path) == expected,
                      f"{what} content differs from the source (sha256)")
    return position


def check_helper_copied(env, check, position, size):
    """Prove from the helper's log that it moved at least size bytes; returns
    the helper_daemon.CopySummary (None in stock mode)."""
    if env.stock:
        check.skipped_in_stock("helper log proof")
        return None
    summary = env.helper.wait_for_bytes(position, size)
    check.require(not summary.failed,
                  f"helper reported failed copies: {summary.describe()}")
    check.require(summary.bytes_ok >= size,
                  f"helper log shows {summary.bytes_ok} of {size} bytes copied "
                  f"({summary.describe()}); the copy did not go through the helper")
    check.note(f"helper: {summary.describe()}")
    return summary


def scopy_case(env, check, label, size):
    position = put_and_scopy(env, check, label, size)
    check_helper_copied(env, check, position, size)


def cases(fs_type, stock):
    main = scenario.main(fs_type)
    return [testcase.Case(f"{fs_type}:scopy:{label}", main,
                          functools.partial(scopy_case, label=label, size=size))
            for label, size in SIZES]
