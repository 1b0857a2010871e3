#!/usr/bin/python3
"""Block-device copy offload test: boots Debian's kernel in QEMU (TCG) with
emulated NVMe namespaces of chosen copy limits and LIO tcm_loop SCSI disks,
runs copyoffloadd --device-copy and the static test program
(blockdev_test.cpp) in it, and reports each case:

    PASS name | FAIL name: reason ...
    N passed, N failed

Exit status 0 only if nothing failed and something passed. See README.md.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "qemu"))

import guest_kernel  # noqa: E402
import initramfs  # noqa: E402

MIB = 1 << 20

# What the guest loads, by module name. Crypto providers first: crc-t10dif,
# crc64-rocksoft and crc32c look their algorithm up at load time, and the
# guest has no modprobe to load it on demand.
KERNEL_MODULES = [
    "crct10dif_generic", "crc64_rocksoft_generic", "crc32c_generic",
    "nvme",                                   # NVMe namespaces, ngXnY
    "target_core_mod", "tcm_loop", "sd_mod",  # LIO + tcm_loop SCSI disks
    "ext4",                                   # a mounted device (busybox mke2fs)
]

# The NVMe namespaces, in nsid order (/dev/nvme0n1 ... n4). Limits are in
# logical blocks; msrc is 0-based. Chosen so that each limit is the one that
# binds somewhere: n1 MCL (3 ranges of 8 would be 24 > 20), n2 MSRC (2 ranges
# of 4 = 8 < 64), n3 MSSRL x ranges (8 x 16 = 128 < 256).
NAMESPACES = [
    {"name": "n1", "size": 32 * MIB, "lba": 512, "mssrl": 8, "mcl": 20, "msrc": 2},
    {"name": "n2", "size": 16 * MIB, "lba": 4096, "mssrl": 4, "mcl": 64, "msrc": 1},
    {"name": "n3", "size": 32 * MIB, "lba": 512, "mssrl": 16, "mcl": 256, "msrc": 7,
     # MBR partitions, in 512-byte sectors: p1 at 1 MiB, p2 at 17 MiB, 14 MiB each
     "partitions": [(2048, 28672), (34816, 28672)]},
    {"name": "n4", "size": 8 * MIB, "lba": 512, "mssrl": 128, "mcl": 128, "msrc": 0},
]


def write_mbr(path, partitions):
    """A DOS partition table of Linux partitions (start, sectors) at sector 0."""
    table = bytearray(512)
    for i, (start, sectors) in enumerate(partitions):
        entry = 446 + 16 * i
        table[entry + 4] = 0x83
        table[entry + 8:entry + 12] = start.to_bytes(4, "little")
        table[entry + 12:entry + 16] = sectors.to_bytes(4, "little")
        # CHS fields: the "too large" marker everyone ignores.
        table[entry + 1:entry + 4] = b"\xfe\xff\xff"
        table[entry + 5:entry + 8] = b"\xfe\xff\xff"
    table[510:512] = b"\x55\xaa"
    with open(path, "r+b") as f:
        f.write(table)


def make_images(workdir):
    args = []
    for nsid, ns in enumerate(NAMESPACES, start=1):
        image = os.path.join(workdir, f"nvme-{ns['name']}.img")
        with open(image, "wb") as f:
            f.truncate(ns["size"])
        if "partitions" in ns:
            write_mbr(image, ns["partitions"])
        drive = f"nvm{nsid}"
        args += ["-drive", f"file={image},if=none,id={drive},format=raw,cache=unsafe",
                 "-device", f"nvme-ns,drive={drive},bus=nvme0,nsid={nsid},"
                 f"logical_block_size={ns['lba']},physical_block_size={ns['lba']},"
                 f"mssrl={ns['mssrl']},mcl={ns['mcl']},msrc={ns['msrc']}"]
    return args


def build_initramfs(path, kernel_dir, build_dir):
    archive = initramfs.guest_base(os.path.join(HERE, "guest_init.sh"), kernel_dir)
    archive.program(os.path.join(build_dir, "helper", "copyoffloadd"), "bin/copyoffloadd")
    archive.program(os.path.join(build_dir, "helper", "copyoffload"), "bin/copyoffload")
    test = os.path.join(build_dir, "selftest", "blockdev", "blockdev-test")
    if initramfs.shared_libraries(test):
        raise RuntimeError(f"{test} is not static")
    archive.copy(test, "bin/blockdev-test", 0o755)
    archive.write(path)


def run_guest(kernel_dir, initrd, workdir, timeout, verbose):
    """Boots the guest; returns (its console lines, whether it finished)."""
    argv = ["timeout", "--kill-after=10", str(timeout),
            "qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2",
            "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
            "-kernel", os.path.join(kernel_dir, "vmlinuz"), "-initrd", initrd,
            "-append", "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init",
            "-device", "nvme,id=nvme0,serial=copyoffload0"]
    argv += make_images(workdir)
    log_path = os.path.join(workdir, "console.log")
    lines = []
    with open(log_path, "w") as log:
        log.write(" ".join(argv) + "\n")
        # A session of its own, so that an interrupted run ends timeout and
        # QEMU with it instead of leaving the guest running.
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                log.write(line + "\n")
                lines.append(line)
                if verbose or line.startswith(("PASS ", "FAIL ")):
                    print(line, flush=True)
            process.wait()
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    finished = any(line.startswith("blockdev guest: done") for line in lines)
    return lines, finished, process.returncode


STATUS_RE = re.compile(r"\(test status (\d+), copyoffloadd status (\d+)\)")


def exit_problems(lines, failed):
    """What the guest's exit statuses say that its PASS and FAIL lines do
    not: a test program that crashed or failed after its last reported case
    (its later cases never print), or a helper that did not exit cleanly on
    SIGTERM."""
    for line in lines:
        found = STATUS_RE.search(line)
        if found:
            test, helper = int(found.group(1)), int(found.group(2))
            problems = []
            if test != 0 and failed == 0:
                problems.append(f"blockdev-test exited with status {test} "
                                "though no case failed")
            if helper != 0:
                problems.append(f"copyoffloadd exited with status {helper} on SIGTERM")
            return problems
    return []  # the guest did not get that far: "did not finish" says so


def interrupted(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    parser.add_argument("--timeout", type=int, default=600,
                        help="seconds the guest may run (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the whole guest console")
    args = parser.parse_args()
    # SIGTERM and SIGHUP unwind like Ctrl-C, through run_guest's cleanup.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    if os.geteuid() != 0:
        print("blockdev: needs root (apt-get download, the guest's images)")
        print("0 passed, 1 failed")
        return 1

    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="copyoffload-blockdev-")
    keep = args.keep
    passed = failed = 0
    try:
        kernel_dir = guest_kernel.ensure_kernel("blockdev", KERNEL_MODULES)
        initrd = os.path.join(workdir, "initrd.gz")
        build_initramfs(initrd, kernel_dir, os.path.abspath(args.build_dir))
        prepared = time.monotonic()
        print(f"blockdev: guest kernel {os.path.basename(os.path.dirname(kernel_dir))}, "
              f"initramfs {os.path.getsize(initrd) // 1024} KiB, "
              f"ready in {prepared - started:.1f} s", flush=True)
        lines, finished, status = run_guest(kernel_dir, initrd, workdir, args.timeout,
                                            args.verbose)
        passed = sum(1 for line in lines if line.startswith("PASS "))
        failed = sum(1 for line in lines if line.startswith("FAIL "))
        for problem in exit_problems(lines, failed):
            failed += 1
            print(f"FAIL {problem}")
        if not finished:
            failed += 1
            tail = " | ".join(lines[-15:])
            print(f"FAIL blockdev guest: did not finish (qemu status {status}): {tail}")
        if failed:
            for line in lines:
                if line.startswith("blockdev guest:"):
                    print(line)
        print(f"blockdev: guest ran {time.monotonic() - prepared:.1f} s, "
              f"{time.monotonic() - started:.1f} s in all", flush=True)
    except Exception as e:  # a setup step failed: one failure, with why
        failed += 1
        print(f"FAIL blockdev setup: {e}")
    finally:
        if failed or keep:
            print(f"blockdev: work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
