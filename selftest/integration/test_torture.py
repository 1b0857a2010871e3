"""smbtorture smb2.ioctl copy-chunk tests, one reported case per torture test.

All selected tests for one share run in a single smbtorture process (the
first case of that share triggers the run; the others read the memoised
results). A skip counts as a failure: every test here must pass on stock
Samba and with the module.

Notes on options: copy_chunk_across_shares{,2,3} need no extra option; they
open a second tree connect to the same share (torture_smb2_tree_connect uses
torture:share, i.e. the share from the UNC) within one session.
"copy-chunk streams" needs streams_xattr on its share.

The smbtorture is the one of the Samba under test. Tests that only newer
releases have (NEWER_TESTS, e.g. 4.22's copy_chunk_bug15644: a copy chunk
with a resume key that no RESUME_KEY request made, on a fresh connection)
are an expected SKIP where `smbtorture --list` lacks them.
"""

import functools
import os

import scenario
import test_scopy
import testcase

PREFIX = "smb2.ioctl."

COPY_CHUNK_TESTS = tuple(f"copy_chunk_{n}" for n in (
    "simple", "multi", "tiny", "overwrite", "append", "limits", "src_lock",
    "dest_lock", "bad_key", "src_is_dest", "src_is_dest_overlap", "bad_access",
    "write_access", "src_exceed", "src_exceed_multi", "sparse_dest",
    "max_output_sz", "zero_length"))

ACROSS_SHARES_TESTS = ("copy_chunk_across_shares", "copy_chunk_across_shares2",
                       "copy_chunk_across_shares3")

NEWER_TESTS = ("copy_chunk_bug15644",)

SHARE_TESTS = COPY_CHUNK_TESTS + ACROSS_SHARES_TESTS + ("sparse_copy_chunk",) + NEWER_TESTS

STREAMS_TEST = "copy-chunk streams"

# Run separately to prove the helper serves smbtorture's copies:
# 4096 (simple) + 8192 (multi) bytes.
HELPER_PROOF_TESTS = ("copy_chunk_simple", "copy_chunk_multi")
HELPER_PROOF_BYTES = 4096 + 8192


def case_name(fs_type, test, share, vfs=()):
    return f"{fs_type}:torture:{test}{scenario.share_label(share, vfs)}"


def save_output(env, share, tag, output):
    path = os.path.join(env.dir, f"smbtorture-{share}-{tag}.log")
    with open(path, "a", encoding="utf-8") as f:
        f.write(output)


def run_batch_once(env, tag, share, tests):
    """Run tests (short names, without PREFIX) against share in one
    smbtorture process, the first time (env, tag, share) is asked for;
    returns {PREFIX + test: TortureResult}. Output: smbtorture-SHARE-TAG.log."""
    key = ("torture", tag, share)
    if key not in env.cache:
        results, output = env.torture.run(share, [PREFIX + t for t in tests])
        save_output(env, share, tag, output)
        env.cache[key] = results
    return env.cache[key]


def _share_batch(env, share):
    """Run every selected torture test for share once; memoised per env."""
    wanted = [test for (test, s, name) in plan(env.scenario.fs_type, env.stock)
              if s == share and name in env.selected and env.torture.has_test(PREFIX + test)]
    return run_batch_once(env, "batch", share, wanted)


def torture_case(env, check, test, share):
    if test in NEWER_TESTS and not env.torture.has_test(PREFIX + test):
        check.expected_skip(f"the smbtorture of Samba {env.server.runtime.version} "
                            f"has no {PREFIX + test} (smbtorture --list)")
    result = _share_batch(env, share)[PREFIX + test]
    if result.status == "skip":
        check.fail(f"skipped by smbtorture (must pass): {result.reason}")
    check.require(result.passed, f"{result.status}: {result.reason}")


def helper_proof_case(env, check):
    """The helper performs smbtorture's copies (module mode)."""
    position = env.helper.log_position() if env.helper else 0
    tests = [PREFIX + t for t in HELPER_PROOF_TESTS]
    results, output = env.torture.run("share", tests)
    save_output(env, "share", "helper-proof", output)
    for test in tests:
        r = results[test]
        check.require(r.passed, f"{test}: {r.status}: {r.reason}")
    test_scopy.check_helper_copied(env, check, position, HELPER_PROOF_BYTES)


def plan(fs_type, stock):
    """[(torture test, share, case name)] for this mode."""
    main = scenario.main(fs_type)
    vfs = main.share_vfs(stock)
    out = [(t, "share", case_name(fs_type, t, "share")) for t in SHARE_TESTS]
    seen = []
    for share in ("streams", "streams_rev"):
        if vfs[share] in seen:  # stock: both are just streams_xattr
            continue
        seen.append(vfs[share])
        out.append((STREAMS_TEST, share, case_name(fs_type, STREAMS_TEST, share, vfs[share])))
    if not stock:  # in stock mode "inline" is just another plain share
        out += [(t, "inline", case_name(fs_type, t, "inline", vfs["inline"]))
                for t in SHARE_TESTS]
    return out


def cases(fs_type, stock):
    main = scenario.main(fs_type)
    out = [testcase.Case(name, main,
                         functools.partial(torture_case, test=test, share=share))
           for test, share, name in plan(fs_type, stock)]
    out.append(testcase.Case(f"{fs_type}:torture:helper_performs_copies", main,
                             helper_proof_case))
    return out
