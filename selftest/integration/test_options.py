"""Per-share copyoffload:<name> options read at tree connect, through a real
smbd: good values change what the helper does, bad values are logged with
the option's name and replaced by their defaults (scenario "ops").

Cases (FS = ext4, xfs, btrfs):
  * `FS:options:methods read_write`: share rw_only (methods = read_write):
    an 8 MiB scopy is all read_write in the helper's log, and the share does
    not advertise block refcounting (no clone allowed).
  * `FS:options:methods order`: share cfr_first (copy_file_range, clone,
    read_write): the scopy is all copy_file_range, even where the
    filesystem clones (the default order would clone there).
  * `FS:options:limits`: share limited (methods copy_file_range read_write,
    max segment 256K, 4M bytes per second, 2 concurrent copies): the
    helper's SHARE line shows these, and a 4 MiB scopy takes >= 0.8 s.
  * `ext4:options:preallocate`: a 32 MiB scopy on share "share" (two
    requests, the second in 1 MiB pieces over the workers) writes into
    blocks the helper reserved (FIEMAP before writeback: unwritten extents,
    no delayed allocation); on share no_prealloc (preallocate = no) into
    delayed allocation, and the helper was told so. (That the other pieces
    wait for the reservation is test_scheduler_waits_for_a_reservation's.)
  * `FS:options:bad values`: share bad_values: smbd logs one line per bad
    option naming share, option, value and the default used; the helper
    gets the default policy and the copy goes through it.
  * `FS:options:bad helper socket`: a relative socket path is logged and
    replaced by the default, where no helper listens: the copy goes to the
    next module and is still exact.
  * `FS:options:bad global values`: [global] reply poll out of range and
    helper timeout that is no number: each logged, its default used, and
    copies go on.
"""

import contextlib
import os
import re
import time

import fiemap
import ops_support
import scenario
import smb_raw
import testcase

MiB = 1 << 20


def helper_declaration(env, check, share):
    """The helper's debug line for the SHARE that declared `share`."""
    pattern = re.compile(rf'share id \d+ is "{re.escape(share)}": (.*)')
    found = pattern.findall(ops_support.instance_log(env))
    check.require(found, f"the helper's log has no SHARE declaration of {share!r}")
    return found[-1]


def copy_via_helper(env, check, share, size, name=None):
    """An scopy of size random bytes on share, from name (default
    opt-SHARE) .bin to .copy; returns the helper's records of it (they must
    cover size, none failed)."""
    name = name or f"opt-{share}"
    digest = ops_support.create_file(env, share, f"{name}.bin", size)
    position = env.helper.log_position()
    ops_support.scopy(env, check, share, f"{name}.bin", f"{name}.copy", digest)
    summary = env.helper.wait_for_bytes(position, size)
    check.require(not summary.failed and summary.bytes_ok == size,
                  f"helper log after the scopy on {share}: {summary.describe()}")
    records = env.helper.records_since(position)
    check.require(all(r.share == share for r in records),
                  f"copies counted for {sorted({r.share for r in records})}, not {share!r}")
    check.note(summary.describe())
    return summary


def methods_read_write(env, check):
    summary = copy_via_helper(env, check, "rw_only", 8 * MiB)
    check.require(summary.method_bytes["read_write"] == 8 * MiB,
                  f"expected only read_write: {summary.describe()}")
    attrs = smb_raw.share_attributes(env, "rw_only")
    check.require(not attrs & smb_raw.FILE_SUPPORTS_BLOCK_REFCOUNTING,
                  f"rw_only advertises block refcounting (0x{attrs:08x}) without clone")
    check.require("methods=read_write max_segment=0" in helper_declaration(env, check, "rw_only"),
                  "the helper was not told methods = read_write")


def methods_order(env, check):
    summary = copy_via_helper(env, check, "cfr_first", 8 * MiB)
    check.require(summary.method_bytes["copy_file_range"] == 8 * MiB,
                  f"expected only copy_file_range: {summary.describe()}")
    declared = helper_declaration(env, check, "cfr_first")
    check.require(declared.startswith("methods=copy_file_range,clone,read_write "), declared)


def limits(env, check):
    started = time.monotonic()
    copy_via_helper(env, check, "limited", 4 * MiB)
    elapsed = time.monotonic() - started
    declared = helper_declaration(env, check, "limited")
    check.require(declared == "methods=copy_file_range,read_write max_segment=262144 "
                              "max_bytes_per_second=4194304 max_concurrent=2 "
                              "preallocate=yes", declared)
    # 4 MiB at 4 MiB/s in 256 KiB steps, the first step free: >= 0.94 s.
    check.require(0.8 <= elapsed < 30, f"4 MiB at 4 MiB/s took {elapsed:.2f} s")
    check.note(f"4 MiB in {elapsed:.2f} s")


BAD_VALUE_LINES = (
    r'"copyoffload:methods = fast, reflink": "fast" dropped: unknown method',
    r'"copyoffload:methods = fast, reflink": "reflink" dropped: unknown method',
    r'"copyoffload:methods = fast, reflink" names no method; using clone, '
    r'copy_file_range, device, read_write',
    r'"copyoffload:max segment = 4K" is not 0 or a size from 65536 to 1073741824 '
    r'bytes .*; using 0',
    r'"copyoffload:max bytes per second = lots" is not 0 or a size from 1 to '
    r'281474976710656 bytes .*; using 0',
    r'"copyoffload:max concurrent copies = -1" is not a number from 0 to 65535; using 0',
    r'"copyoffload:helper down = maybe" is not one of next,fail; using next',
    r'"copyoffload:block refcounting = sometimes" is not one of auto,yes,no; using auto',
    r'"copyoffload:dup extents fallback = perhaps" is not a boolean; using no',
    r'"copyoffload:merge chunks = often" is not a boolean; using yes',
    r'"copyoffload:preallocate = maybe" is not a boolean; using yes',
)


def extent_bytes(path, flag):
    """Bytes of the file in extents flagged `flag`, as they are now (dirty
    pages not written back)."""
    return sum(e.length for e in fiemap.extents(path, sync=False) if e.flags & flag)


def preallocate(env, check):
    size = 32 * MiB
    found = {}
    for share in ("share", "no_prealloc"):
        # A copy over an old one would be truncated, which ext4 writes
        # back on close; and earlier cases' dirty pages could start a
        # writeback that converts the extents before they are looked at.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(env.share_path(share, "prealloc.copy"))
        os.sync()
        copy_via_helper(env, check, share, size, name="prealloc")
        path = env.share_path(share, "prealloc.copy")
        found[share] = (extent_bytes(path, fiemap.FIEMAP_EXTENT_UNWRITTEN),
                        extent_bytes(path, fiemap.FIEMAP_EXTENT_DELALLOC))
    check.require(found["share"] == (size, 0),
                  f"on share: {found['share'][0]} bytes in reserved (unwritten) extents and "
                  f"{found['share'][1]} in delayed allocation, expected {size} and 0")
    check.require(found["no_prealloc"] == (0, size),
                  f"on no_prealloc: {found['no_prealloc'][0]} bytes in reserved extents and "
                  f"{found['no_prealloc'][1]} in delayed allocation, expected 0 and {size}")
    declared = helper_declaration(env, check, "no_prealloc")
    check.require(declared.endswith(" preallocate=no"), declared)
    check.note(f"{size // MiB} MiB reserved first on share, delayed allocation on no_prealloc")


def bad_values(env, check):
    summary = copy_via_helper(env, check, "bad_values", 2 * MiB)
    for line in BAD_VALUE_LINES:
        found = env.server.log_matches(r"copyoffload: share bad_values: " + line, flags=0)
        check.require(found, f"smbd's log lacks /{line}/")
    declared = helper_declaration(env, check, "bad_values")
    check.require(declared == "methods=clone,copy_file_range,device,read_write max_segment=0 "
                              "max_bytes_per_second=0 max_concurrent=0 preallocate=yes",
                  f"the helper got {declared!r}, not the defaults")
    check.note(f"{len(BAD_VALUE_LINES)} log lines; defaults used; {summary.describe()}")


def bad_global_values(env, check):
    """[global] copyoffload:reply poll = 20000 (above 10000) and
    copyoffload:helper timeout = two minutes (text, which Samba's integer
    reader takes for 0: no timeout): each logged when smbd connects to the
    helper, and its default used; copies go on."""
    summary = copy_via_helper(env, check, "share", 2 * MiB)
    for line in (r'copyoffload: "copyoffload:reply poll = 20000" is not a number '
                 r'from 0 to 10000; using 60',
                 r'copyoffload: "copyoffload:helper timeout = two minutes" is not a '
                 r'number from 0 to 86400; using 120'):
        check.require(env.server.log_matches(line, flags=0), f"smbd's log lacks /{line}/")
    check.note(f"logged; {summary.describe()}")


def bad_helper_socket(env, check):
    name, copy = "sock.bin", "sock.copy"
    digest = ops_support.create_file(env, "bad_socket", name, MiB + 1)
    position = env.helper.log_position()
    ops_support.scopy(env, check, "bad_socket", name, copy, digest)
    line = (r'copyoffload: share bad_socket: "copyoffload:helper socket = '
            r'copyoffloadd.sock" must be an absolute path shorter than 108 bytes; '
            r'using /run/copyoffload/copyoffloadd.sock')
    check.require(env.server.log_matches(line, flags=0), f"smbd's log lacks /{line}/")
    records = env.helper.records_since(position)
    check.require(not records, f"the test helper copied for bad_socket: {records}")
    check.note("copied by the next module")


def cases(fs_type, stock):
    if stock:
        return []
    ops = scenario.ops(fs_type)
    bodies = [
        ("methods read_write", methods_read_write),
        ("methods order", methods_order),
        ("limits", limits),
        ("bad values", bad_values),
        ("bad global values", bad_global_values),
        ("bad helper socket", bad_helper_socket),
    ]
    if fs_type == "ext4":  # the one filesystem where the helper preallocates
        bodies.insert(3, ("preallocate", preallocate))
    return [testcase.Case(f"{fs_type}:options:{name}", ops, body) for name, body in bodies]
