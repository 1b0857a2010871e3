#!/usr/bin/python3
"""copyoffload benchmark: stock smbd and smbd + copyoffload side by side.

    /usr/bin/python3 selftest/benchmark/run.py [--build-dir build] [--runs 5]
        [--only copy,echo,slow,clients,chunks,single,connect,memory] [--markdown FILE]
        [--compare OPTION=VALUE] [--idle-cgroup] [--pin-cpu CPU]
        [--hold-freed-memory]

Starts, in one run, a stock smbd and an smbd with the module over the same
shares (an ext4 directory, an XFS reflink image, a btrfs image, a throttled
ext4 image) and one copyoffloadd; measures each scenario on both and prints
medians and ratios (copyoffload / stock; copyoffload / local
copy_file_range). Not a pass/fail test: it prints whether each target of
issue 4 holds. Needs root.
"""

import argparse
import contextlib
import datetime
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True

import bench_env  # noqa: E402  (puts selftest/integration on the path)
import blkio_throttle  # noqa: E402
import chunk_overhead  # noqa: E402
import concurrent_clients  # noqa: E402
import connect_time  # noqa: E402
import copy_time  # noqa: E402
import echo_latency  # noqa: E402
import free_page_reporting  # noqa: E402
import helper_memory  # noqa: E402
import single_chunk_requests  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIB = 1 << 20
GIB = 1 << 30
SECTIONS = ("copy", "echo", "slow", "clients", "chunks", "single", "connect", "memory")
CONNECTIONS = 15
SLOW_BYTES_PER_SECOND = 50 * 1000 * 1000
# Echo behind copychunk: enough requests for a p99 that is not just the
# largest sample, in turns so that no server always follows another.
ECHO_REQUESTS = 256
ECHO_ROUNDS = 8
# Each request reads 16 MiB at the throttled rate (about 0.33 s). The p99
# is a nearest-rank one: below 101 echoes it is the single worst.
SLOW_ECHO_REQUESTS = 128
SLOW_ECHO_ROUNDS = 8


def copy_targets(share, size):
    """(copyoffload/stock, copyoffload/local) upper bounds of issue 4."""
    if size < GIB:
        return None, None
    if share == "ext4":
        return 1.0, 1.15
    return 1.0, None


def markdown_table(rows):
    if not rows:
        return "(no rows)\n"
    headers = list(dict.fromkeys(h for row in rows for h in row))
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(h, "")) for h in headers) + " |")
    return "\n".join(lines) + "\n"


def run_sections(env, args, emit):
    if "copy" in args.only:
        emit("a) Server-side copy time (median of %d runs)" % args.runs,
             "smbclient: wall time of `smbclient -c 'scopy'` incl. connect/logon; "
             "server: the same requests (RESUME_KEY, COPYCHUNK_WRITE 16 x 1 MiB "
             "per request) on an open connection, one at a time, each timed from "
             "its send syscall to the kernel's arrival stamp of its response and "
             "summed (the Python client's work between requests left out); "
             "local cfr: copy_file_range in 1 MiB calls on the server's filesystem.",
             copy_time.rows(env, ("ext4", "xfs", "btrfs"), (64 * MIB, GIB),
                            args.runs, copy_targets))
    if "echo" in args.only:
        emit("b) SMB2 ECHO pipelined behind each 16 MiB COPYCHUNK_WRITE "
             f"({ECHO_REQUESTS} requests per server)",
             "Latency from the client's send of the echo to the kernel's arrival stamp of its "
             "response (SO_TIMESTAMPNS), on the copy's connection, so the Python client's own "
             "time on the shared CPUs does not count. "
             f"The servers take turns, {ECHO_REQUESTS // ECHO_ROUNDS} requests at a time.",
             [echo_latency.row(env, share, ECHO_REQUESTS, ECHO_ROUNDS,
                               target=1e-3 if share == "ext4" else None)
              for share in ("ext4", "xfs", "btrfs")])
    if "slow" in args.only:
        if not blkio_throttle.available():
            emit("d) Slow disk", "cgroup v1 blkio throttling is not available here.", [])
        else:
            # Only the source's pages: drop_caches would also make smbd, the
            # helper and their libraries page their code back in from the
            # root disk during the echoes, which a working server does not.
            # Buffered writes are not throttled reliably under cgroup v1, so
            # the section measures reads of a cold source.
            def cold(src_path):
                blkio_throttle.drop_cache(src_path)
            with blkio_throttle.ReadThrottle(env.devices["slow"], SLOW_BYTES_PER_SECOND) as slow:
                for pid in env.daemon_pids():
                    slow.add(pid)
                emit("d) Echo behind COPYCHUNK_WRITE on a slow disk "
                     f"(reads throttled to {SLOW_BYTES_PER_SECOND // 1000000} MB/s, cold source)",
                     "A 16 MiB request reads 16 MiB from the throttled device. "
                     f"{SLOW_ECHO_REQUESTS} requests per server; the servers take turns, "
                     f"{SLOW_ECHO_REQUESTS // SLOW_ECHO_ROUNDS} at a time, each turn "
                     "after the source's pages were dropped from the page cache.",
                     [echo_latency.row(env, "slow", SLOW_ECHO_REQUESTS, SLOW_ECHO_ROUNDS,
                                       label="slow ext4", before_run=cold, target=2e-3)])
    if "clients" in args.only:
        emit("c) Aggregate throughput, 4 clients copying at once (median of %d runs)" % args.runs,
             "Each client copies its own source: with smbclient scopy (connect and logon "
             "timed), and on SMB sessions opened beforehand, their requests built beforehand "
             "too (only the copies timed). "
             "The servers take turns run by run.",
             [concurrent_clients.row(env, share, 4, 256 * MIB, args.runs, 1.0)
              for share in ("ext4", "xfs", "btrfs")])
    if "chunks" in args.only:
        emit("e) Per-chunk overhead (median of 20 requests)", "",
             [chunk_overhead.row(env, share, 20, reverse)
              for share in ("ext4", "xfs") for reverse in (False, True)])
    if "single" in args.only:
        emit("g) One 1 MiB chunk per request, as Linux's client sends (median of %d runs)"
             % args.runs,
             "COPYCHUNK_WRITE requests of one 1 MiB chunk, each sent after the reply to the "
             "one before, on an open connection; server time summed as in section a. "
             "The servers take turns run by run. No target: issue 4's are for smbclient's "
             "16-chunk requests.",
             [single_chunk_requests.row(env, share, 256 * MIB, args.runs)
              for share in ("ext4", "xfs", "btrfs")])
    if "connect" in args.only:
        emit(f"f) Connection cost (median of {CONNECTIONS} connections per server)",
             "Wall time of `smbclient -c pwd`: negotiate, session setup and tree connect, "
             "which loads the share's VFS modules, then disconnect. The servers take turns.",
             [connect_time.row(env, share, CONNECTIONS) for share in ("ext4", "xfs", "btrfs")])
    if "memory" in args.only:
        emit("Helper memory with 64 copies in flight", "",
             [helper_memory.row(env, "ext4", 16, 4, 64)])


def autogroups_line():
    """Whether the kernel groups the daemons by session: it decides whether
    SCHED_IDLE workers yield to smbd (design.md, Scheduling and fairness)."""
    state = {True: "on", False: "off", None: "not in this kernel"}[
        bench_env.cpu_cgroup.autogroups_enabled()]
    return f"Autogroups (kernel.sched_autogroup_enabled): {state}.\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--only", default=",".join(SECTIONS),
                   help="comma-separated sections: " + ",".join(SECTIONS))
    p.add_argument("--markdown", help="also write the tables to this file")
    p.add_argument("--idle-cgroup", action="store_true",
                   help="run the helper's workers in a scratch idle cgroup "
                        "(copyoffloadd --cpu-cgroup) instead of its own scheduling group")
    p.add_argument("--pin-cpu", type=int, metavar="CPU",
                   help="bind every smbd and all of the helper's threads to this CPU "
                        "(the clients stay free), so that they compete for one CPU")
    p.add_argument("--hold-freed-memory", action="store_true",
                   help="keep this VM from reporting freed memory to the host during the run "
                        "(page_reporting min_free_ms), after touching 4 GiB of it")
    p.add_argument("--compare", metavar="OPTION=VALUE",
                   help="also run copyoffload with copyoffload:OPTION = VALUE, "
                        "e.g. 'merge chunks=no'")
    args = p.parse_args()
    args.only = set(args.only.split(","))
    if args.compare is not None:
        option, sep, value = args.compare.partition("=")
        if not sep or not option.strip() or not value.strip():
            p.error(f"--compare wants OPTION=VALUE, got {args.compare!r}")
        args.compare = (option.strip(), value.strip())
    if args.idle_cgroup and bench_env.cpu_cgroup.hierarchy() is None:
        p.error("--idle-cgroup: this machine has no cgroup v1 cpu hierarchy")
    if args.pin_cpu is not None and args.pin_cpu not in os.sched_getaffinity(0):
        p.error(f"--pin-cpu: CPU {args.pin_cpu} is not one this process may run on "
                f"({sorted(os.sched_getaffinity(0))})")
    if args.hold_freed_memory and not free_page_reporting.available():
        p.error(f"--hold-freed-memory: this kernel has no {free_page_reporting.MIN_FREE_MS}")
    unknown = args.only - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")

    command = "/usr/bin/python3 selftest/benchmark/run.py " + shlex.join(sys.argv[1:])
    out = [f"Measured {datetime.date.today()} on {platform.node()} "
           f"({os.cpu_count()} CPUs, kernel {platform.release()}), "
           f"{subprocess.run(['smbd', '--version'], capture_output=True, text=True).stdout.strip()}.\n",
           f"Command: `{command.strip()}`\n"]

    def emit(title, note, rows):
        text = f"\n### {title}\n\n" + (f"{note}\n\n" if note else "") + markdown_table(rows)
        print(text, flush=True)
        out.append(text)

    bench_env.install_cleanup()
    started = time.monotonic()
    workdir = None
    try:
        with contextlib.ExitStack() as stack:
            if args.hold_freed_memory:
                stack.enter_context(free_page_reporting.held(4 * GIB))
            env = stack.enter_context(bench_env.BenchEnvironment(
                os.path.abspath(args.build_dir), compare=args.compare,
                idle_cgroup=args.idle_cgroup, pin_cpu=args.pin_cpu))
            workdir = env.dir
            setup = (f"copyoffloadd's workers: SCHED_IDLE in the idle cgroup "
                     f"{env.helper_cgroup} (--cpu-cgroup).\n" if env.helper_cgroup else
                     "copyoffloadd's workers: SCHED_IDLE in the helper's own scheduling "
                     "group (no --cpu-cgroup).\n")
            setup += autogroups_line()
            if args.hold_freed_memory:
                setup += (f"Free page reporting held off (--hold-freed-memory): "
                          f"{free_page_reporting.MIN_FREE_MS} = {free_page_reporting.HELD_MS} "
                          f"during the run, after 4 GiB were touched.\n")
            if args.pin_cpu is not None:
                setup += (f"Every smbd and all of copyoffloadd's threads are bound to CPU "
                          f"{args.pin_cpu} (--pin-cpu); the clients are not.\n")
            print(setup, flush=True)
            out.append(setup)
            run_sections(env, args, emit)
    except BaseException:
        print(f"benchmark failed; its files and logs are in {workdir}")
        raise
    finally:
        bench_env.run_cleanup()
    # Source files of up to 1 GiB sit in the ext4 share: do not keep them.
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"benchmark took {time.monotonic() - started:.0f} s")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
