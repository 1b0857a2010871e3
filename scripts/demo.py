#!/usr/bin/python3
"""Shows one server-side copy going through copyoffload, end to end.

Uses the integration harness to start, on a loop-mounted ext4 image, a
throwaway smbd (module loaded) and copyoffloadd; uploads a file with
smbclient, copies it server-side with `scopy`, and prints what the client,
the helper and smbd saw. Everything it started is stopped and unmounted on
exit.
"""

import argparse
import os
import sys
import tempfile
import time

sys.dont_write_bytecode = True
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "selftest", "integration"))

import cleanup  # noqa: E402
import processes  # noqa: E402
import scenario  # noqa: E402
import test_scopy  # noqa: E402

MIB = 1 << 20


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    p.add_argument("--size-mib", type=int, default=256)
    args = p.parse_args()
    build = os.path.abspath(args.build_dir)
    size = args.size_mib * MIB

    cleanup.install()
    workdir = tempfile.mkdtemp(prefix="copyoffload-demo-")
    os.chmod(workdir, 0o755)
    processes.configure(command_log=os.path.join(workdir, "commands.log"))
    options = scenario.Options(
        stock=False,
        module_path=os.path.join(build, "vfs_copyoffload", "copyoffload.so"),
        helper_path=os.path.join(build, "helper", "copyoffloadd"),
        fs_size=max(1024 * MIB, 3 * size))
    verified = False
    try:
        with scenario.Environment(scenario.main("ext4"), options, workdir) as env:
            verified = demo(env, size)
    finally:
        cleanup.run_all()
    print(f"\nlogs and configs: {workdir}")
    return 0 if verified else 1


def demo(env, size):
    print(f"smbd (pid {env.server.proc.pid}) on 127.0.0.1:{env.server.port}, share 'share' "
          f"on a loop-mounted ext4 at {env.fs.mount_point}")
    print(f"  vfs objects = copyoffload, copyoffload:helper socket = {env.helper.socket_path}")
    print(f"copyoffloadd (pid {env.helper.proc.pid}) log: {env.helper.log_path}\n")

    local = os.path.join(env.scratch, "demo.src")
    digest = test_scopy.write_random_file(local, size)
    put = env.smbclient.run("share", [f"put {local} demo.bin"])
    if not put.ok:
        print(f"upload failed: {put.describe()}")
        return False

    print(f"$ smbclient //127.0.0.1/share -c 'scopy demo.bin demo-copy.bin'   ({size // MIB} MiB)")
    position = env.helper.log_position()
    started = time.monotonic()
    copy = env.smbclient.run("share", ["scopy demo.bin demo-copy.bin"])
    elapsed = time.monotonic() - started
    if not copy.ok:
        print(f"server-side copy failed: {copy.describe()}")
        return False
    print(f"  done in {elapsed:.2f} s (including smbclient's connect and logon)\n")

    summary = env.helper.wait_for_bytes(position, size)
    lines = [line for line in env.helper.log_text(since=position).splitlines()
             if "copy done" in line]
    print(f"copyoffloadd did {summary.describe()}; first and last of its log lines:")
    for line in lines[:2] + (["  ..."] if len(lines) > 4 else []) + lines[-2:]:
        print(f"  {line}")

    cli = os.path.join(os.path.dirname(env.options.helper_path), "copyoffload")
    print(f"\n$ copyoffload stats --socket {env.helper.socket_path}")
    stats = processes.run([cli, "stats", "--socket", env.helper.socket_path], check=False)
    print("  " + stats.stdout.rstrip("\n").replace("\n", "\n  "))

    copy_path = env.share_path("share", "demo-copy.bin")
    same = test_scopy.sha256_file(copy_path) == digest
    print(f"\nsha256 source {digest[:16]}...  copy {'identical' if same else 'DIFFERENT'}")
    helper_did_it = summary.bytes_ok >= size and not summary.failed
    if same and helper_did_it:
        print(f"VERIFIED: {size} bytes copied server-side by copyoffloadd, data identical.")
        return True
    print("NOT VERIFIED: " + ("data differs" if not same else
                              "the helper's log does not account for the copy"))
    return False


if __name__ == "__main__":
    sys.exit(main())
