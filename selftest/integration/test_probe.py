"""`copyoffload probe` on each filesystem says what copies really do there
(scenario "ops", share "share"): XFS (reflink=1) and btrfs clone, ext4 does
not; copy_file_range works everywhere; device copy is for block devices, not
files. Then real copies must agree with the probe:

`FS:probe:matches copies`:
  * the probe's own engine trial cloned bytes exactly where it says clone
    works, and its data was verified;
  * an 8 MiB `copyoffload copy` on the mount clones all of it where clone
    works and none of it elsewhere;
  * an 8 MiB scopy through smbd and the helper: the helper's log shows
    clone bytes == size where clone works and 0 elsewhere, and FIEMAP finds
    the copy's extents shared exactly where the probe said extents are
    shared by clone.
"""

import os
import re

import fiemap
import loop_filesystem
import ops_support
import scenario
import testcase

MiB = 1 << 20
SIZE = 8 * MiB
SUMMARY_RE = re.compile(r"clone=(\d+) copy_file_range=(\d+) device=(\d+) read_write=(\d+)")


def matches_copies(env, check):
    fs_type = env.scenario.fs_type
    directory = env.share_path("share")
    report = ops_support.cli_json(env, "probe", directory)
    check.require(report["error"] is None, f"probe failed: {report['error']}")
    check.require(report["filesystem"] == fs_type,
                  f"probe says filesystem {report['filesystem']!r}, expected {fs_type}")
    verdicts = {m["method"]: m for m in report["methods"]}
    clones = verdicts["clone"]["result"] == "yes"
    check.require(clones == (fs_type in loop_filesystem.REFLINK_FS),
                  f"probe says clone {verdicts['clone']['result']} on {fs_type}: "
                  f"{verdicts['clone']['detail']}")
    check.require(verdicts["copy_file_range"]["result"] == "yes",
                  f"copy_file_range: {verdicts['copy_file_range']}")
    check.require(verdicts["read_write"]["result"] == "yes", f"{verdicts['read_write']}")
    check.require(verdicts["device"]["result"] == "no", f"{verdicts['device']}")
    if clones:
        check.require(verdicts["clone"]["shared_bytes"] == 16 * report["block_size"],
                      f"clone verdict without shared extents: {verdicts['clone']}")
    engine = report["engine"]
    check.require(engine["status"] == "0" and engine["data_verified"], f"engine: {engine}")
    check.require((engine["bytes_by_method"]["clone"] > 0) == clones,
                  f"engine trial: {engine['bytes_by_method']} but clone {clones}")
    # Nothing left behind by the probe.
    leftovers = [n for n in os.listdir(directory) if n.startswith(".copyoffload-probe")]
    check.require(not leftovers, f"probe left {leftovers}")

    # A local copy through the engine does what the probe said.
    ops_support.create_file(env, "share", "probe-local.src", SIZE)
    result = ops_support.run_cli(env, "copy", env.share_path("share", "probe-local.src"),
                                 env.share_path("share", "probe-local.dst"))
    by_method = [int(n) for n in SUMMARY_RE.search(result.stdout).groups()]
    check.require((by_method[0] == SIZE) == clones and (by_method[0] == 0) != clones,
                  f"copyoffload copy: {result.stdout.strip()} (probe: clone {clones})")

    # So does a server-side copy through smbd and the helper.
    digest = ops_support.create_file(env, "share", "probe-smb.src", SIZE)
    position = env.helper.log_position()
    ops_support.scopy(env, check, "share", "probe-smb.src", "probe-smb.dst", digest)
    summary = env.helper.wait_for_bytes(position, SIZE)
    cloned = summary.method_bytes["clone"]
    check.require(cloned == (SIZE if clones else 0),
                  f"scopy: helper cloned {cloned} bytes; the probe said clone {clones}")
    extents = fiemap.extents(env.share_path("share", "probe-smb.dst"))
    unshared = sum(b - a for a, b in fiemap.gaps(extents, 0, SIZE))
    check.require((unshared == 0) == clones,
                  f"scopy copy: {SIZE - unshared} of {SIZE} bytes in shared extents; "
                  f"the probe said clone {clones}")
    check.note(f"probe: clone {verdicts['clone']['result']}, copy_file_range "
               f"{verdicts['copy_file_range']['detail']}; engine "
               f"{engine['bytes_by_method']}; scopy {summary.describe()}")


def cases(fs_type, stock):
    if stock:
        return []
    return [testcase.Case(f"{fs_type}:probe:matches copies", scenario.ops(fs_type),
                          matches_copies)]
