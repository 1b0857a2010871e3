#!/usr/bin/python3
"""copyoffload integration tests: real smbd, real helper, real clients.

    /usr/bin/python3 selftest/integration/run.py [--build-dir DIR] [--stock]
        [-k SUBSTRING] [-v] [--fs ext4[,xfs,btrfs]] [--keep]
        [--samba-root ROOT --module PATH]

Prints "PASS name" / "FAIL name: reason" / "SKIP name: reason" (an expected
skip) per case, keeps the temporary directory (logs, configs, command
transcript) when anything failed, and ends with "N passed, N failed" (after
"N skipped (expected)" if any). Exit status 0 only if nothing failed and
something passed. Needs root (loop mounts, mount namespaces, useradd).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True  # keep the source tree clean

import cleanup  # noqa: E402 (after dont_write_bytecode)
import loop_filesystem
import processes
import results
import samba_runtime
import samba_server
import scenario
import test_blockdev_share
import test_chunk_runs
import test_clone
import test_dup_torture
import test_faults
import test_helper_down
import test_inline_clone
import test_linux_client
import test_load
import test_mixed_shares
import test_options
import test_probe
import test_restart
import test_samba_versions
import test_scopy
import test_stats
import test_torture

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TEST_MODULES = (test_scopy, test_torture, test_dup_torture, test_clone, test_inline_clone,
                test_chunk_runs, test_mixed_shares, test_helper_down, test_faults, test_load, test_samba_versions,
                test_options, test_restart, test_stats, test_probe, test_blockdev_share,
                test_linux_client)

PANIC_RE = r"PANIC|INTERNAL ERROR|smb_panic"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build-dir", default=os.path.join(REPO_ROOT, "build"),
                   help="meson build directory (default: %(default)s)")
    p.add_argument("--stock", action="store_true",
                   help="run against stock Samba: no copyoffload module, no helper")
    p.add_argument("-k", dest="patterns", action="append", default=[],
                   metavar="SUBSTRING",
                   help="only cases whose name contains SUBSTRING (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print every command and its output")
    p.add_argument("--fs", default=",".join(loop_filesystem.FS_TYPES),
                   help="comma-separated filesystems to test on: "
                        f"{','.join(loop_filesystem.FS_TYPES)} (default: %(default)s)")
    p.add_argument("--log-level", default=samba_server.DEFAULT_LOG_LEVEL,
                   help="smbd 'log level' (default: %(default)s)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary directory even if everything passed")
    p.add_argument("--samba-root", metavar="ROOT",
                   help="test the Samba installed in this Debian root (made by "
                        "scripts/samba-runtime.sh) instead of the host's; smbd, "
                        "smbpasswd, smbclient and smbtorture run chrooted into it")
    p.add_argument("--module", metavar="PATH",
                   help="the VFS module to load (default: BUILD/vfs_copyoffload/"
                        "copyoffload.so); it must be built for the Samba under test")
    args = p.parse_args(argv)
    args.fs = [f.strip() for f in args.fs.split(",") if f.strip()]
    for fs in args.fs:
        if fs not in loop_filesystem.FS_TYPES:
            p.error(f"unknown filesystem {fs!r}")
    return args


def collect_cases(args):
    cases = []
    for fs in args.fs:
        for module in TEST_MODULES:
            cases.extend(module.cases(fs, args.stock))
    if args.patterns:
        cases = [c for c in cases if any(p in c.name for p in args.patterns)]
    return cases


def group_by_scenario(cases):
    groups = {}
    for case in cases:
        groups.setdefault(case.scenario, []).append(case)
    return groups


def missing_tools(args, runtime):
    tools = ["unshare", "mount", "umount", "losetup", "findmnt", "useradd", "chroot"]
    tools += [loop_filesystem.MKFS[fs][0] for fs in args.fs]
    missing = [t for t in tools if shutil.which(t) is None]
    samba_path = os.pathsep.join(runtime.host_path(d) for d in ("/usr/sbin", "/usr/bin"))
    return missing + [t for t in ("smbd", "smbclient", "smbtorture", "smbpasswd")
                      if shutil.which(t, path=samba_path) is None]


def module_path(args):
    return os.path.abspath(args.module or os.path.join(
        args.build_dir, "vfs_copyoffload", "copyoffload.so"))


def missing_artifacts(args):
    if args.stock:
        return []
    build = os.path.abspath(args.build_dir)
    wanted = [module_path(args), os.path.join(build, "helper", "copyoffloadd")]
    return [p for p in wanted if not os.path.isfile(p)]


def panic_count(env):
    if env.server is None:
        return 0
    return len(env.server.log_matches(PANIC_RE, flags=0))


def helper_running(env):
    return env.helper is not None and env.helper.running()


def run_case(env, case, stock):
    check = results.Check(stock)
    panics = panic_count(env)
    helper_was_running = helper_running(env)
    try:
        case.body(env, check)
        new_panics = panic_count(env) - panics
        if new_panics:
            check.fail(f"smbd logged {new_panics} PANIC/INTERNAL ERROR line(s) "
                       f"(see {env.server.log_path})")
        # smbd copies by itself when the helper is gone, so a case that
        # does not read the helper's log would pass over a crash.
        if helper_was_running and not helper_running(env):
            check.fail(f"copyoffloadd is no longer running (exit status "
                       f"{env.helper.proc.returncode}; see {env.helper.log_path})")
    except results.TestFailure as e:
        return results.Result(case.name, results.FAIL, str(e))
    except results.ExpectedSkip as e:
        return results.Result(case.name, results.SKIP, str(e))
    except Exception as e:  # a harness or environment error fails this case only
        processes._log(traceback.format_exc())
        return results.Result(case.name, results.FAIL, f"error: {type(e).__name__}: {e}")
    return results.Result(case.name, results.PASS, notes=check.notes)


def run_scenario(scen, cases, options, workdir, reporter, stock):
    """Set the scenario up once, run its cases, tear it down."""
    pending = list(cases)
    env = None
    try:
        with scenario.Environment(scen, options, workdir) as env:
            env.selected = {c.name for c in cases}
            while pending:
                reporter.record(run_case(env, pending[0], stock))
                pending.pop(0)
    except cleanup.Interrupted:
        raise
    except Exception as e:
        processes._log(traceback.format_exc())
        reason = f"scenario {scen.name} failed: {type(e).__name__}: {e}"
        if not pending:  # the cases ran; tearing down failed
            reporter.record(results.Result(f"{scen.name}:teardown", results.FAIL, reason))
        for case in pending:
            reporter.record(results.Result(case.name, results.FAIL, reason))
        pending.clear()
    if env is not None and env.helper is not None and env.helper.proc is not None:
        status = env.helper.proc.returncode
        if status not in (0, None):
            reporter.record(results.Result(
                f"{scen.name}:teardown", results.FAIL,
                f"copyoffloadd exited with status {status} when stopped "
                f"(see {env.helper.log_path})"))
    return pending


def mounts_below(path):
    prefix = os.path.realpath(path) + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def loop_devices_below(path):
    """Loop devices still attached to image files under path."""
    prefix = os.path.realpath(path) + "/"
    listing = subprocess.run(["losetup", "--list", "--noheadings", "--raw",
                              "--output", "NAME,BACK-FILE"],
                             capture_output=True, text=True, check=False).stdout
    return [f"{name} ({backing})" for name, _, backing in
            (line.partition(" ") for line in listing.splitlines())
            if backing.startswith(prefix)]


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("run.py must run as root (loop mounts, mount namespaces, useradd)",
              file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    try:
        runtime = samba_runtime.SambaRuntime(args.samba_root)
    except RuntimeError as e:
        print(f"run.py: {e}", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    started = time.monotonic()
    cleanup.install()
    processes.become_subreaper()
    reporter = results.Reporter()
    workdir = tempfile.mkdtemp(prefix="copyoffload-it-")
    os.chmod(workdir, 0o755)  # the test user must reach the share directories
    processes.configure(command_log=os.path.join(workdir, "commands.log"),
                        verbose=args.verbose)
    runtime.attach(workdir)
    mode = ("stock Samba" if args.stock else
            f"module {module_path(args)} + helper from {os.path.abspath(args.build_dir)}")
    print(f"copyoffload integration tests against {runtime.label} ({mode}); "
          f"work dir {workdir}", flush=True)

    cases = collect_cases(args)
    if not cases:
        print(f"no test case name contains any of {args.patterns}", file=sys.stderr)
    tools, missing = missing_tools(args, runtime), missing_artifacts(args)
    interrupted = None
    not_run = []
    try:
        if tools or missing:
            if tools:
                reason = (f"missing programs: {', '.join(tools)} "
                          f"(run scripts/install-deps.sh)")
            else:
                reason = (f"not built: {', '.join(missing)} (build with meson, "
                          f"pass --build-dir, or run --stock)")
            for case in cases:
                reporter.record(results.Result(case.name, results.FAIL, reason))
        else:
            build = os.path.abspath(args.build_dir)
            options = scenario.Options(
                stock=args.stock,
                module_path=None if args.stock else module_path(args),
                helper_path=None if args.stock else os.path.join(build, "helper", "copyoffloadd"),
                log_level=args.log_level, runtime=runtime)
            groups = list(group_by_scenario(cases).items())
            for index, (scen, scen_cases) in enumerate(groups):
                not_run = [c for _, cs in groups[index:] for c in cs]
                run_scenario(scen, scen_cases, options, workdir, reporter, args.stock)
            not_run = []
    except cleanup.Interrupted as e:
        interrupted = e
    finally:
        cleanup.run_all()
    if interrupted is None and cleanup.interrupted_by() is not None:
        interrupted = cleanup.Interrupted(cleanup.interrupted_by())
    cleanup.stop_raising()  # everything is torn down; just report

    done = {r.name for r in reporter.results}
    for case in not_run:
        if case.name not in done:
            reporter.record(results.Result(case.name, results.FAIL, f"not run: {interrupted}"))

    leftovers = ([f"mount {m}" for m in mounts_below(workdir)]
                 + [f"loop device {d}" for d in loop_devices_below(workdir)])
    if leftovers:
        # Every exit path must undo what the tests set up.
        reporter.record(results.Result("teardown", results.FAIL,
                                       f"left behind: {', '.join(leftovers)}"))
    keep = args.keep or not reporter.success() or interrupted or leftovers
    if keep:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"time: {time.monotonic() - started:.1f} s")
    print("\n".join(reporter.summary_lines()), flush=True)
    if interrupted:
        return 128 + interrupted.signum
    return 0 if reporter.success() else 1


if __name__ == "__main__":
    sys.exit(main())
