#!/usr/bin/python3
"""The copyoffload tool: `copy` (with and without a terminal, --method,
--segment, errors), `probe` (of a scratch directory, a file, a device) and
`stats` (against a real copyoffloadd, matching the copies made through it).
Filesystem-specific probes (ext4, XFS, btrfs) are integration tests.

Needs root (the daemon serves only root) and COPYOFFLOAD_BUILD_DIR."""

import json
import os
import pty
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
import daemon_process  # noqa: E402
import protocol_client  # noqa: E402

MiB = 1 << 20
SUMMARY_RE = re.compile(r"^copied (\d+) bytes in [\d.]+ s \([^)]*\): clone=(\d+) "
                        r"copy_file_range=(\d+) device=(\d+) read_write=(\d+)$")


def write_random(path, size):
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, 4 * MiB))
            f.write(chunk)
            remaining -= len(chunk)


def same_content(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(MiB), fb.read(MiB)
            if x != y:
                return False
            if not x:
                return True


def run_on_terminal(*args):
    """Runs the tool with a pseudo-terminal as standard output; returns
    (exit status, everything written to the terminal)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([daemon_process.CLI, *args], stdout=slave,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(slave)
    output = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the tool closed the terminal
            break
        if not data:
            break
        output += data
    os.close(master)
    proc.wait(60)
    proc.stderr.close()
    return proc.returncode, output.decode(errors="replace")


class Copy(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="copyoffload-cli.")
        self.src = os.path.join(self.dir, "src")
        self.dst = os.path.join(self.dir, "dst")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def summary(self, stdout):
        lines = stdout.strip().splitlines()
        match = SUMMARY_RE.match(lines[-1].strip()) if lines else None
        self.assertIsNotNone(match, f"no summary line in {stdout!r}")
        done, *by_method = map(int, match.groups())
        self.assertEqual(done, sum(by_method))
        return done, dict(zip(protocol_client.METHODS, by_method))

    def test_copy_without_terminal(self):
        write_random(self.src, 3 * MiB + 123)
        os.chmod(self.src, 0o640)
        result = daemon_process.run_cli("copy", self.src, self.dst)
        self.assertEqual(result.returncode, 0, result.stderr)
        # No progress bar into a pipe: just the summary line.
        self.assertNotIn("\r", result.stdout)
        self.assertNotIn("%", result.stdout)
        self.assertEqual(len(result.stdout.splitlines()), 1, result.stdout)
        done, _ = self.summary(result.stdout)
        self.assertEqual(done, 3 * MiB + 123)
        self.assertTrue(same_content(self.src, self.dst))
        self.assertEqual(stat.S_IMODE(os.stat(self.dst).st_mode), 0o640)

    def test_copy_on_a_terminal_draws_progress(self):
        size = 64 * MiB
        write_random(self.src, size)
        status, output = run_on_terminal("copy", "--method", "read_write",
                                         "--segment", "1M", self.src, self.dst)
        self.assertEqual(status, 0, output)
        draws = re.findall(r"\r\[([#-]+)\] +(\d+)%  ([^\r\n]*?)\x1b\[K", output)
        self.assertGreaterEqual(len(draws), 2, repr(output))
        # The first draw comes after the first 1 MiB step, the last at 100%.
        self.assertLess(int(draws[0][1]), 100)
        self.assertEqual(int(draws[-1][1]), 100)
        self.assertEqual(draws[-1][0], "#" * 30)
        self.assertIn("64.0 MiB / 64.0 MiB", draws[-1][2])
        self.assertRegex(draws[-1][2], r"/s$")
        percents = [int(p) for _, p, _ in draws]
        self.assertEqual(percents, sorted(percents))
        done, by_method = self.summary(output.replace("\r\n", "\n").split("\x1b[K")[-1])
        self.assertEqual(by_method["read_write"], size)
        self.assertTrue(same_content(self.src, self.dst))

    def test_method_restricts_and_orders(self):
        write_random(self.src, MiB + 1)
        for methods, used in (("read_write", "read_write"),
                              ("copy_file_range", "copy_file_range"),
                              ("read_write,copy_file_range", "read_write")):
            result = daemon_process.run_cli("copy", "--method", methods, self.src, self.dst)
            self.assertEqual(result.returncode, 0, result.stderr)
            done, by_method = self.summary(result.stdout)
            self.assertEqual(by_method[used], MiB + 1, result.stdout)
            self.assertTrue(same_content(self.src, self.dst))
        # Device copy alone: nothing this version can do.
        result = daemon_process.run_cli("copy", "--method", "device", self.src, self.dst)
        self.assertEqual(result.returncode, 1)
        self.assertIn("failed after 0 of 1048577 bytes: EOPNOTSUPP", result.stderr)
        self.assertIn("no allowed method is implemented", result.stderr)

    def test_copy_keeps_the_destination_safe(self):
        """As cp: setuid, setgid and sticky bits are not copied; a longer
        DST is cut to SRC's size; a copy refused before any byte leaves DST
        as it was instead of emptying it."""
        write_random(self.src, 100000)
        os.chmod(self.src, 0o7755)
        result = daemon_process.run_cli("copy", self.src, self.dst)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(self.dst).st_mode), 0o755)

        write_random(self.dst, 300000)
        result = daemon_process.run_cli("copy", self.src, self.dst)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(same_content(self.src, self.dst))

        write_random(self.dst, 300000)
        with open(self.dst, "rb") as f:
            before = f.read()
        result = daemon_process.run_cli("copy", "--method", "device", self.src, self.dst)
        self.assertEqual(result.returncode, 1)
        with open(self.dst, "rb") as f:
            self.assertEqual(f.read(), before, "a refused copy changed DST")

    def test_copy_errors(self):
        write_random(self.src, 1000)
        cases = [
            (["copy", os.path.join(self.dir, "missing"), self.dst], 1, "cannot open"),
            (["copy", self.src, self.src], 1, "are the same file"),
            (["copy", self.src, os.path.join(self.dir, "no", "such")], 1, "cannot open"),
            (["copy", self.dir, self.dst], 1, "is not a regular file"),
            (["copy", self.src], 2, "copy takes SRC and DST (1 given)"),
            (["copy", "--method", "fast", self.src, self.dst], 2,
             "--method fast: 'fast' (unknown method)"),
            (["copy", "--segment", "4K", self.src, self.dst], 2,
             "--segment 4K: not 0 or a size from 64K to 1G"),
            (["copy", "--json", self.src, self.dst], 2, "copy: unknown option '--json'"),
            (["frobnicate"], 2, "unknown command 'frobnicate'"),
            ([], 2, "no command given"),
        ]
        for args, status, message in cases:
            result = daemon_process.run_cli(*args)
            self.assertEqual(result.returncode, status, (args, result.stderr))
            self.assertIn(message, result.stderr, args)
        self.assertEqual(os.path.getsize(self.src), 1000)

        # A FIFO on either side is refused at once, not waited on.
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        for args, message in ((["copy", fifo, self.dst], "is not a regular file"),
                              (["copy", self.src, fifo], "cannot open")):
            result = daemon_process.run_cli(*args, timeout=10)
            self.assertEqual(result.returncode, 1, (args, result.stderr))
            self.assertIn(message, result.stderr, args)
        # A file that says it is empty and is not (/proc) is refused.
        result = daemon_process.run_cli("copy", "/proc/self/status", self.dst)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("says it is empty but is not", result.stderr)
        result = daemon_process.run_cli("--help")
        self.assertEqual(result.returncode, 0)
        self.assertIn("copyoffload probe [--json] PATH|DEVICE", result.stdout)


class Probe(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="copyoffload-probe.")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def probe(self, path, *extra):
        result = daemon_process.run_cli("probe", "--json", path, *extra)
        return result, json.loads(result.stdout)

    def test_probe_directory(self):
        result, report = self.probe(self.dir)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIsNone(report["error"])
        self.assertEqual(report["kind"], "directory")
        self.assertTrue(report["filesystem"])
        self.assertGreater(report["block_size"], 0)
        verdicts = {m["method"]: m for m in report["methods"]}
        self.assertEqual(list(verdicts), list(protocol_client.METHODS))
        self.assertEqual(verdicts["read_write"]["result"], "yes")
        self.assertEqual(verdicts["device"]["result"], "no")
        self.assertIn("between block devices", verdicts["device"]["detail"])
        self.assertIsNone(report["device"])
        engine = report["engine"]
        self.assertEqual(engine["status"], "0")
        self.assertEqual(engine["bytes_done"], engine["length"])
        self.assertEqual(sum(engine["bytes_by_method"].values()), engine["length"])
        self.assertTrue(engine["data_verified"])
        # What the probe says about clone is what the engine then did.
        cloned = engine["bytes_by_method"]["clone"]
        self.assertEqual(verdicts["clone"]["result"] == "yes", cloned > 0, report)
        # Scratch files only: nothing is left in the directory.
        self.assertEqual(os.listdir(self.dir), [])

        table = daemon_process.run_cli("probe", self.dir)
        self.assertEqual(table.returncode, 0)
        self.assertIn(f"path:        {self.dir}\n", table.stdout)
        for method in protocol_client.METHODS:
            self.assertRegex(table.stdout, rf"\n{method} +(yes|no|error) +\S")
        self.assertIn("engine: copying ", table.stdout)

    def test_probe_follows_a_link_to_another_filesystem(self):
        """A link is probed where it leads, not in the link's directory."""
        shm = "/dev/shm"
        if (not os.path.isdir(shm) or not os.access(shm, os.W_OK)
                or os.stat(shm).st_dev == os.stat(self.dir).st_dev):
            self.skipTest("no writable /dev/shm on another filesystem")
        target = os.path.join(shm, f"copyoffload-probe-{os.getpid()}")
        write_random(target, 10)
        try:
            link = os.path.join(self.dir, "link")
            os.symlink(target, link)
            _, through_link = self.probe(link)
            _, direct = self.probe(target)
        finally:
            os.unlink(target)
        self.assertIsNone(through_link["error"])
        self.assertEqual(through_link["filesystem"], direct["filesystem"])

    def test_probe_file_device_and_others(self):
        path = os.path.join(self.dir, "file")
        write_random(path, 10)
        result, report = self.probe(path)
        self.assertEqual(result.returncode, 0)
        self.assertEqual(report["kind"], "file")
        self.assertEqual(os.listdir(self.dir), ["file"])

        def can_open(path):  # the probe opens it (a sandbox may refuse)
            try:
                os.close(os.open(path, os.O_RDONLY))
                return True
            except OSError:
                return False

        devices = [d for d in ("/dev/loop0", "/dev/vda", "/dev/sda")
                   if os.path.exists(d) and stat.S_ISBLK(os.stat(d).st_mode) and can_open(d)]
        if devices:
            result, report = self.probe(devices[0])
            self.assertEqual(result.returncode, 0)
            self.assertEqual(report["kind"], "block device")
            verdicts = {m["method"]: m for m in report["methods"]}
            # Asked, never written: what the device is and whether it can copy.
            facts = report["device"]["facts"]
            self.assertEqual(facts["device"], os.path.basename(devices[0]))
            self.assertIn(facts["kind"], ("nvme", "scsi", "other"))
            self.assertIn("in use", facts)
            self.assertEqual(verdicts["device"]["result"],
                             "yes" if report["device"]["copy"] else "no")
            self.assertTrue(verdicts["device"]["detail"])
            if facts["kind"] == "other":  # loop, virtio: no copy offload
                self.assertIn("NVMe namespaces and SCSI disks", verdicts["device"]["detail"])
            self.assertEqual(verdicts["clone"]["result"], "n/a")

        result, report = self.probe("/dev/null")
        self.assertEqual(result.returncode, 1)
        self.assertIn("not a directory, regular file or block device", report["error"])
        result, report = self.probe(os.path.join(self.dir, "missing"))
        self.assertEqual(result.returncode, 1)
        self.assertIn("ENOENT", report["error"])


class Stats(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="copyoffload-stats.")
        self.daemon, self.socket = daemon_process.start_daemon(self.dir)

    def tearDown(self):
        self.daemon.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def stats(self):
        result = daemon_process.run_cli("stats", "--json", "--socket", self.socket)
        self.assertEqual(result.returncode, 0, result.stderr)
        return {share["name"]: share for share in json.loads(result.stdout)["shares"]}

    def test_stats_match_copies(self):
        src, dst = os.path.join(self.dir, "src"), os.path.join(self.dir, "dst")
        write_random(src, 2 * MiB)
        replies = []
        with protocol_client.Client(self.socket) as client, \
                open(src, "rb") as s, open(dst, "wb") as d:
            client.declare_share(1, "team \"a\"", methods=("copy_file_range", "read_write"))
            client.declare_share(2, "b")
            replies.append(client.copy(s.fileno(), d.fileno(), 2 * MiB, share_id=1))
            replies.append(client.copy(s.fileno(), d.fileno(), MiB, share_id=1,
                                       methods=1 << 3))
            replies.append(client.copy(s.fileno(), d.fileno(), 3 * MiB, share_id=2))
            replies.append(client.copy(s.fileno(), d.fileno(), 1000))
        self.assertEqual([r[0] for r in replies], [0, 0, 61, 0])  # 61: ENODATA

        shares = self.stats()
        a = shares['team "a"']
        self.assertEqual(a["total"]["requests"], 2)
        self.assertEqual(a["total"]["errors"], 0)
        self.assertEqual(a["total"]["bytes"], 3 * MiB)
        for method in protocol_client.METHODS:
            moved = sum(r[2][method] for r in replies[:2])
            self.assertEqual(a["methods"][method]["bytes"], moved, method)
            used = sum(1 for r in replies[:2] if r[2][method])
            self.assertEqual(a["methods"][method]["requests"], used, method)
        self.assertEqual(a["in_flight"], 0)
        latency = a["total"]["latency_us"]
        self.assertLessEqual(latency["p50"], latency["p90"])
        self.assertLessEqual(latency["p99"], latency["max"])
        self.assertGreater(latency["max"], 0)
        b = shares["b"]
        self.assertEqual((b["total"]["requests"], b["total"]["errors"], b["total"]["bytes"]),
                         (1, 1, 2 * MiB))
        none = shares[""]
        self.assertEqual((none["total"]["requests"], none["total"]["bytes"]), (1, 1000))

        table = daemon_process.run_cli("stats", "--socket", self.socket)
        self.assertEqual(table.returncode, 0, table.stderr)
        rows = [line.split() for line in table.stdout.splitlines()]
        self.assertEqual(rows[0][:3], ["SHARE", "METHOD", "REQUESTS"])
        self.assertIn(["b", "all", "1", "1", str(2 * MiB)], [r[:5] for r in rows])
        self.assertIn(["(none)", "all", "1", "0", "1000"], [r[:5] for r in rows])

    def test_stats_without_daemon(self):
        missing = os.path.join(self.dir, "nobody-here.sock")
        result = daemon_process.run_cli("stats", "--socket", missing)
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"copyoffloadd at {missing}: cannot connect: ENOENT", result.stderr)
        self.assertIn("is copyoffloadd running?", result.stderr)

    def test_stats_before_any_copy(self):
        table = daemon_process.run_cli("stats", "--socket", self.socket)
        self.assertEqual(table.returncode, 0, table.stderr)
        self.assertIn("(no copies since copyoffloadd started)", table.stdout)


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("skipped: copyoffloadd serves only root", file=sys.stderr)
        sys.exit(77)
    unittest.main(verbosity=2)
