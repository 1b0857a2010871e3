#!/usr/bin/python3
"""copyoffloadd with a filesystem that hangs in a copy's checks.

bindfs mirrors a scratch directory through FUSE; stopping its daemon with
SIGSTOP leaves every request to that filesystem waiting, as a network
filesystem does when its server is gone. A worker that reads a new COPY of
files there hangs in the pair's checks (fstatfs: FUSE STATFS, never cached),
before any piece, the copy marked with the filesystems its files are on (as
the kernel has them cached: statx AT_STATX_DONT_SYNC, which does not ask).
The stall watch reports it, holds those filesystems, adds a worker and
moves the worker's other connections; a copy elsewhere goes on; a second
copy on the hung filesystem waits before its checks, without taking a
worker; a shutdown waits for both, which complete with the right data once
the filesystem answers.

Needs root and COPYOFFLOAD_BUILD_DIR; skipped without bindfs or /dev/fuse."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True
import daemon_process  # noqa: E402
import protocol_client  # noqa: E402

SIZE = 256 * 1024


@unittest.skipUnless(os.geteuid() == 0, "needs root")
@unittest.skipUnless(shutil.which("bindfs") and os.path.exists("/dev/fuse"),
                     "needs bindfs and /dev/fuse")
class HungFilesystem(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="copyoffload-hung.")
        self.real, self.mount, self.other = (os.path.join(self.dir, name)
                                             for name in ("real", "fuse", "other"))
        for path in (self.real, self.mount, self.other):
            os.mkdir(path)
        self.files = []
        self.daemon = None
        self.stopped = False
        self.bindfs = daemon_process.Process(["bindfs", "-f", self.real, self.mount],
                                             os.path.join(self.dir, "bindfs.log"))
        # Also when setUp fails from here on.
        self.addCleanup(self.clean_up)
        daemon_process.wait_for(lambda: os.path.ismount(self.mount),
                                what=f"bindfs to mount {self.mount}")

    def clean_up(self):
        # The filesystem answers first: whatever waits on it returns.
        self.resume()
        if self.daemon is not None:
            self.daemon.stop(signal.SIGKILL)
        for f in self.files:
            f.close()
        if os.path.ismount(self.mount):
            subprocess.run(["umount", self.mount], check=False)
        self.bindfs.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def resume(self):
        if self.stopped:
            os.kill(self.bindfs.pid, signal.SIGCONT)
            self.stopped = False

    def pair(self, directory, name):
        """An open source of SIZE random bytes and an open destination."""
        data = os.urandom(SIZE)
        src, dst = os.path.join(directory, name + ".src"), os.path.join(directory, name + ".dst")
        with open(src, "wb") as f:
            f.write(data)
        # Kept open until the clean-up: a close on the stopped filesystem could
        # wait too.
        self.files += [open(src, "rb"), open(dst, "wb")]
        return self.files[-2].fileno(), self.files[-1].fileno(), data, dst

    def privileges(self, thread_name):
        """The ids and capabilities of the daemon's thread of that name."""
        for status in daemon_process.thread_status(self.daemon.pid).values():
            if status["Name"] == thread_name:
                return {key: status[key] for key in ("Uid", "Gid", "CapEff", "CapPrm")}
        self.fail(f"the daemon has no thread named {thread_name!r}")

    def test_a_copy_hung_in_its_checks_hands_over(self):
        self.daemon, sock = daemon_process.start_daemon(self.dir, "--workers", "1",
                                                        "--stall-timeout", "1")
        hung, elsewhere = protocol_client.Client(sock), protocol_client.Client(sock)
        second = protocol_client.Client(sock)
        hung_src, hung_dst, hung_data, hung_path = self.pair(self.mount, "hung")
        second_src, second_dst, second_data, second_path = self.pair(self.mount, "second")
        os.kill(self.bindfs.pid, signal.SIGSTOP)
        self.stopped = True
        hung_id = hung.send_copy(hung_src, hung_dst, SIZE)

        # The only worker hangs in the copy's checks, before any piece.
        self.daemon.wait_log("worker 0: the checks of copy id=", timeout=10)
        self.daemon.wait_log("worker 1 added in place of worker 0", timeout=5)
        # Started by the main thread long after it dropped its privileges:
        # it has none either, and writes as "nobody" like the first.
        self.assertEqual(self.privileges("worker 1"), self.privileges("worker 0"))
        self.assertEqual(self.privileges("worker 1"),
                         {"Uid": "0\t0\t0\t65534", "Gid": "0\t0\t0\t65534",
                          "CapEff": "0000000000000000", "CapPrm": "0000000000000000"})
        src, dst, data, path = self.pair(self.other, "elsewhere")
        self.assertEqual(elsewhere.copy(src, dst, SIZE)[:2], (0, SIZE))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), data)

        # Another copy on the held filesystem waits before its checks: it
        # hangs no worker (worker 1, the only one going, reads it), so no
        # stall is reported for it one stall timeout and a half later.
        second_id = second.send_copy(second_src, second_dst, SIZE)
        self.daemon.wait_log("waits before its checks: its filesystem hangs", timeout=5)
        time.sleep(1.5)
        self.assertNotIn("worker 1: the checks of copy", self.daemon.log())
        self.assertNotIn("in place of worker 1", self.daemon.log())

        # A copy sent before the signal is answered; the hung one is
        # received too, so the daemon waits for it.
        src, dst, data, path = self.pair(self.other, "before-signal")
        before_id = elsewhere.send_copy(src, dst, SIZE)
        os.kill(self.daemon.pid, signal.SIGTERM)
        self.assertEqual(elsewhere.reply(before_id)[:2], (0, SIZE))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), data)
        time.sleep(1)
        self.assertIsNone(self.daemon.proc.poll(), "exited with a received copy unanswered")

        self.resume()
        self.assertEqual(hung.reply(hung_id)[:2], (0, SIZE))
        self.assertEqual(second.reply(second_id)[:2], (0, SIZE))
        for path, data in ((hung_path, hung_data), (second_path, second_data)):
            with open(path, "rb") as f:
                self.assertEqual(f.read(), data)
        self.assertEqual(self.daemon.proc.wait(10), 0)
        log = self.daemon.log()
        self.assertIn("going again after", log)
        self.assertIn("started 1 copies that waited for their filesystem", log)
        self.assertIn("shut down: every received copy was answered", log)
        for client in (hung, elsewhere, second):
            client.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
