#!/usr/bin/python3
"""copyoffloadd as a service: the systemd units pass systemd-analyze verify,
socket activation hands over a SOCK_SEQPACKET listener (and anything else is
refused with a clear message), and readiness and stopping are notified
through NOTIFY_SOCKET. Nothing here needs systemd as PID 1.

Needs root (the daemon serves only root) and COPYOFFLOAD_BUILD_DIR."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import cpu_cgroup  # noqa: E402
import daemon_process  # noqa: E402
import protocol_client  # noqa: E402

UNIT_DIR = os.path.join(daemon_process.BUILD, "systemd")


class Service(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="copyoffload-service.")
        self.processes = []

    def tearDown(self):
        for process in self.processes:
            process.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def track(self, process):
        self.processes.append(process)
        return process

    def copy_through(self, path, size=300000):
        """One real copy through the daemon at path; returns its reply."""
        src, dst = os.path.join(self.dir, "src"), os.path.join(self.dir, "dst")
        with open(src, "wb") as f:
            f.write(os.urandom(size))
        with protocol_client.Client(path) as client:
            with open(src, "rb") as s, open(dst, "wb") as d:
                reply = client.copy(s.fileno(), d.fileno(), size)
        with open(src, "rb") as s, open(dst, "rb") as d:
            self.assertEqual(s.read(), d.read())
        return reply

    # -- units ---------------------------------------------------------

    def verify_units(self, service_text, socket_text):
        for name, text in (("copyoffloadd.service", service_text),
                           ("copyoffloadd.socket", socket_text)):
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)
        return subprocess.run(
            ["systemd-analyze", "verify", "--man=no",
             os.path.join(self.dir, "copyoffloadd.socket"),
             os.path.join(self.dir, "copyoffloadd.service")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze missing")
    def test_units_verify(self):
        with open(os.path.join(UNIT_DIR, "copyoffloadd.service")) as f:
            service = f.read()
        with open(os.path.join(UNIT_DIR, "copyoffloadd.socket")) as f:
            sock = f.read()
        exec_start = next(line for line in service.splitlines()
                          if line.startswith("ExecStart="))
        installed = exec_start.split("=", 1)[1].split()[0]
        self.assertTrue(installed.endswith("/sbin/copyoffloadd"), exec_start)
        self.assertIn("Type=notify", service)
        self.assertIn("ListenSequentialPacket=/run/copyoffload/copyoffloadd.sock", sock)
        self.assertIn("SocketMode=0600", sock)
        # Verify against the binary just built (the installed path may not
        # exist here).
        service = service.replace(installed, daemon_process.DAEMON)
        result = self.verify_units(service, sock)
        self.assertEqual(result.returncode, 0, result.stdout)
        self.assertEqual(result.stdout.strip(), "", result.stdout)
        # The check can fail: a misspelt Listen setting is caught.
        broken = self.verify_units(service, sock.replace("ListenSequentialPacket",
                                                         "ListenSequencePacket"))
        self.assertNotEqual(broken.returncode, 0, broken.stdout)

    @unittest.skipUnless(shutil.which("setpriv"), "setpriv missing")
    def test_unit_capabilities_suffice(self):
        """The daemon starts and copies with no more capabilities than the
        service's CapabilityBoundingSet= leaves it."""
        with open(os.path.join(UNIT_DIR, "copyoffloadd.service")) as f:
            line = next(l for l in f.read().splitlines()
                        if l.startswith("CapabilityBoundingSet="))
        allowed = [c.lower().removeprefix("cap_") for c in line.split("=", 1)[1].split()]
        bounding = ",".join(["-all"] + [f"+{c}" for c in allowed])
        path = os.path.join(self.dir, "bounded.sock")
        daemon = self.track(daemon_process.Process(
            ["setpriv", f"--bounding-set={bounding}", "--inh-caps=-all",
             daemon_process.DAEMON, "--socket", path, "--log-level", "debug"],
            os.path.join(self.dir, "daemon.log")))
        daemon_process.wait_for(lambda: daemon.proc.poll() is not None
                                or "info: listening on " in daemon.log(),
                                what="the daemon to start or exit")
        self.assertIsNone(daemon.proc.poll(), f"{line}: the daemon exited: {daemon.log()}")
        self.assertEqual(self.copy_through(path)[:2], (0, 300000))
        self.assertEqual(daemon.stop(), 0)

    def test_unit_allows_lifting_starved_workers(self):
        """Without CAP_SYS_NICE, which the service's bounding set leaves
        out, the daemon lifts starved SCHED_IDLE workers only as far as
        RLIMIT_NICE allows: the unit's LimitNICE= covers --worker-nice."""
        with open(os.path.join(UNIT_DIR, "copyoffloadd.service")) as f:
            limit = next(l for l in f.read().splitlines() if l.startswith("LimitNICE="))
        self.assertGreaterEqual(int(limit.split("=", 1)[1]), 20 - 10)

    # -- socket activation ----------------------------------------------

    @unittest.skipUnless(shutil.which("systemd-socket-activate"),
                         "systemd-socket-activate missing")
    def test_systemd_socket_activate(self):
        path = os.path.join(self.dir, "activated.sock")
        activator = self.track(daemon_process.Process(
            ["systemd-socket-activate", "--seqpacket", "-l", path,
             daemon_process.DAEMON, "--log-level", "debug"],
            os.path.join(self.dir, "daemon.log")))
        daemon_process.wait_for(lambda: os.path.exists(path), what=f"{path} to exist")
        # The first connection starts the daemon on the passed socket.
        status, done, by_method = self.copy_through(path)
        self.assertEqual((status, done), (0, 300000))
        log = activator.log()
        self.assertIn(f"info: listening on {path} with ", log)
        self.assertIn("(socket passed by the service manager)", log)
        self.assertRegex(log, r"copy done id=\d+ .* bytes=300000 .* status=0 ")
        self.assertEqual(activator.stop(), 0)
        # The socket belongs to whoever passed it: the daemon leaves it.
        self.assertTrue(os.path.exists(path))

    def test_passed_socket(self):
        path = os.path.join(self.dir, "passed.sock")
        listener = daemon_process.listening_socket(path)
        daemon = self.track(daemon_process.start_with_passed_sockets(self.dir, [listener]))
        listener.close()  # the daemon has its own copy
        daemon.wait_log("info: listening on ")
        self.assertIn(f"info: listening on {path} with", daemon.log())
        self.assertEqual(self.copy_through(path)[:2], (0, 300000))
        self.assertEqual(daemon.stop(), 0)
        self.assertTrue(os.path.exists(path))

    def test_passed_socket_wins_over_option(self):
        path = os.path.join(self.dir, "passed.sock")
        listener = daemon_process.listening_socket(path)
        other = os.path.join(self.dir, "other.sock")
        daemon = self.track(daemon_process.start_with_passed_sockets(
            self.dir, [listener], "--socket", other))
        listener.close()
        daemon.wait_log("info: listening on ")
        self.assertIn(f"--socket {other} ignored: serving the socket the service manager "
                      f"passed, {path}", daemon.log())
        self.assertFalse(os.path.exists(other))
        self.assertEqual(self.copy_through(path)[:2], (0, 300000))

    def refused(self, sockets, message):
        daemon = self.track(daemon_process.start_with_passed_sockets(self.dir, sockets))
        for s in sockets:
            s.close()
        self.assertEqual(daemon.proc.wait(10), 1)
        self.assertIn(message, daemon.log())

    def test_passed_stream_socket_refused(self):
        listener = daemon_process.listening_socket(os.path.join(self.dir, "stream.sock"),
                                                   socket.SOCK_STREAM)
        self.refused([listener], "the socket passed by the service manager (LISTEN_FDS) is "
                                 "not a listening unix SOCK_SEQPACKET socket")

    def test_passed_unlistening_socket_refused(self):
        unbound = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.refused([unbound], "is not a listening unix SOCK_SEQPACKET socket")

    def test_two_passed_sockets_refused(self):
        sockets = [daemon_process.listening_socket(os.path.join(self.dir, f"{i}.sock"))
                   for i in range(2)]
        self.refused(sockets, "the service manager passed 2 sockets (LISTEN_FDS); "
                              "copyoffloadd needs exactly one")

    def test_no_socket_at_all_is_a_usage_error(self):
        result = subprocess.run([daemon_process.DAEMON], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, timeout=10)
        self.assertEqual(result.returncode, 2)
        self.assertIn("--socket PATH is required (unless the service manager passes a "
                      "socket)", result.stderr)

    # -- scheduling -----------------------------------------------------

    def test_starved_idle_workers_are_lifted(self):
        """Normal processes that keep every CPU busy in the daemon's own
        task group (its session's autogroup) leave SCHED_IDLE workers, the
        default, next to no time: the copy would outlast the client's 10 s
        timeout. The daemon lifts them to SCHED_OTHER instead.

        The daemon and its hogs share one CPU: with four hogs on two CPUs,
        a CI run's 256 MiB copy took 68 ms, as on an idle machine, so the
        worker had found a CPU the hogs left it, and the guard rightly
        stayed put."""
        cpu = max(os.sched_getaffinity(0))
        hogs = 2
        path = os.path.join(self.dir, "sock")
        # One session for the hogs and the daemon: one autogroup.
        daemon = self.track(daemon_process.Process(
            ["/bin/sh", "-c",
             f"for i in $(seq {hogs}); do {daemon_process.HOG} & done; "
             f"exec {daemon_process.DAEMON} --socket {path} --log-level debug"],
            os.path.join(self.dir, "daemon.log"),
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu})))
        try:
            daemon.wait_log("info: listening on ")
            self.assertIn("with 1 workers", daemon.log())

            spinning = self.wait_until_spinning(daemon.pid, hogs)
            try:
                reply = self.copy_through(path, 256 << 20)
            except TimeoutError:
                self.fail(f"no reply within the client's timeout; threads "
                          f"{self.threads_by_name(daemon.pid)}, daemon log:\n{daemon.log()}")
            self.assertEqual(reply[:2], (0, 256 << 20))
            self.assertIn("under SCHED_IDLE, waiting for a CPU: running the workers under "
                          "SCHED_OTHER", daemon.log(),
                          f"hogs' CPU seconds before the copy {spinning}, "
                          f"after {self.spinning_hogs(daemon.pid)}")
            self.assertEqual(daemon.stop(), 0)
            self.assertRegex(daemon.log(), r"lifted to SCHED_OTHER [1-9]\d* times")
        finally:
            self.kill_session(daemon.pid, spare=daemon.pid)

    # -- idle cgroup (--cpu-cgroup) ---------------------------------------

    def scratch_cgroup(self):
        cgroup = cpu_cgroup.ScratchCgroup()
        if cgroup.path is None:
            self.skipTest("no cpu cgroup controller on this machine")
        self.addCleanup(cgroup.remove)  # after tearDown has stopped the daemon
        return cgroup.path

    @staticmethod
    def cgroup_of(pid, tid):
        """One thread's cgroup in the cgroup v1 cpu hierarchy, as /proc lists it."""
        with open(f"/proc/{pid}/task/{tid}/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if "cpu" in controllers.split(","):
                    return path
        return None

    @staticmethod
    def threads_by_name(pid):
        """(name, tid) of each thread of process pid."""
        return [(status["Name"], tid)
                for tid, status in daemon_process.thread_status(pid).items()]

    def test_cpu_cgroup_holds_the_workers_idle(self):
        """--cpu-cgroup: the daemon creates the cgroup, marks it idle and
        moves its workers there; the main thread stays with the daemon's
        parent, and copies go on as before."""
        path = self.scratch_cgroup()
        daemon, sock = daemon_process.start_daemon(self.dir, "--cpu-cgroup", path)
        self.track(daemon)
        self.assertIn(f"in the idle cgroup {path}", daemon.log())
        self.assertNotIn("autogroups are on", daemon.log())
        self.assertEqual(cpu_cgroup.read_idle(path), 1)
        with open(os.path.join(path, "tasks")) as f:
            in_cgroup = {int(t) for t in f.read().split()}
        threads = self.threads_by_name(daemon.pid)
        workers = {tid for name, tid in threads if name.startswith("worker ")}
        self.assertEqual(in_cgroup, workers)
        self.assertEqual(len(workers), len(os.sched_getaffinity(0)))
        # The main thread and the starvation guard's stay with the
        # daemon's parent: starved with the workers, they could not lift
        # them.
        others = {tid for name, tid in threads} - workers
        self.assertEqual(sorted(name for name, tid in threads if tid in others),
                         ["copyoffloadd", "guard"])
        for tid in others:
            self.assertEqual(self.cgroup_of(daemon.pid, tid),
                             self.cgroup_of(os.getpid(), os.getpid()))
        self.assertEqual(self.copy_through(sock)[:2], (0, 300000))
        self.assertEqual(daemon.stop(), 0)

    def test_cpu_cgroup_that_is_no_cpu_cgroup_is_refused(self):
        """A directory outside the cpu controller: a clear error, exit
        status 1, and the directory it created is gone again."""
        path = os.path.join(self.dir, "not-a-cgroup")
        result = subprocess.run(
            [daemon_process.DAEMON, "--socket", os.path.join(self.dir, "sock"),
             "--cpu-cgroup", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=10)
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn(f"--cpu-cgroup {path}: it has no cpu.idle, so it is not a CPU cgroup",
                      result.stdout)
        self.assertFalse(os.path.exists(path))

    def test_starved_idle_cgroup_is_lifted(self):
        """Busy processes of another session, in a scheduling group of their
        own, starve the workers' idle cgroup (it weighs what a SCHED_IDLE
        task does against theirs): the guard sets cpu.idle to 0 as it lifts
        the workers to SCHED_OTHER, the copy finishes, and after the lift
        cpu.idle is 1 again."""
        path = self.scratch_cgroup()
        cpu = max(os.sched_getaffinity(0))
        hogs = 2
        pin = {"preexec_fn": lambda: os.sched_setaffinity(0, {cpu})}
        spinners = self.track(daemon_process.Process(
            ["/bin/sh", "-c",
             f"for i in $(seq {hogs}); do {daemon_process.HOG} & done; wait"],
            os.path.join(self.dir, "hogs.log"), **pin))
        try:
            daemon = self.track(daemon_process.Process(
                [daemon_process.DAEMON, "--socket", os.path.join(self.dir, "sock"),
                 "--log-level", "debug", "--cpu-cgroup", path],
                os.path.join(self.dir, "daemon.log"), **pin))
            daemon.wait_log("info: listening on ")
            self.assertIn("with 1 workers", daemon.log())

            spinning = self.wait_until_spinning(spinners.pid, hogs)
            self.assertEqual(self.copy_through(os.path.join(self.dir, "sock"), 256 << 20)[:2],
                             (0, 256 << 20))
            self.assertIn("running the workers under SCHED_OTHER in a cgroup that is not "
                          "idle", daemon.log(),
                          f"hogs' CPU seconds before the copy {spinning}, "
                          f"after {self.spinning_hogs(spinners.pid)}")
            daemon_process.wait_for(lambda: cpu_cgroup.read_idle(path) == 1,
                                    what="cpu.idle back at 1 after the lift")
            self.assertEqual(daemon.stop(), 0)
            self.assertRegex(daemon.log(), r"lifted to SCHED_OTHER [1-9]\d* times")
        finally:
            self.kill_session(spinners.pid)

    # -- autogroups -----------------------------------------------------

    AUTOGROUP_ADVICE = ("autogroups are on (kernel.sched_autogroup_enabled = 1): SCHED_IDLE "
                        "puts the workers below this daemon's own threads only")

    def test_autogroups_are_named_at_start(self):
        """In the root CPU cgroup with autogroups on, smbd's session and the
        daemon's are two scheduling groups: the daemon says so at start."""
        if not cpu_cgroup.autogroups_enabled():
            self.skipTest("autogroups are off or missing on this machine")
        daemon, _ = daemon_process.start_daemon(self.dir)
        self.track(daemon)
        self.assertIn(self.AUTOGROUP_ADVICE, daemon.log())
        self.assertEqual(daemon.stop(), 0)

    def test_no_autogroup_word_in_a_cpu_cgroup_of_its_own(self):
        """Autogroups apply only to the root CPU cgroup: a daemon started in
        another (as a service whose manager enabled the cpu controller for
        it) is not told about them."""
        if not cpu_cgroup.autogroups_enabled():
            self.skipTest("autogroups are off or missing: nothing to stay quiet about")
        cgroup = self.scratch_cgroup()
        os.mkdir(cgroup)

        def enter_cgroup():
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        path = os.path.join(self.dir, "sock")
        daemon = self.track(daemon_process.Process(
            [daemon_process.DAEMON, "--socket", path], os.path.join(self.dir, "daemon.log"),
            preexec_fn=enter_cgroup))
        daemon.wait_log("info: listening on ")
        self.assertNotEqual(self.cgroup_of(daemon.pid, daemon.pid), "/")
        self.assertNotIn("autogroups are on", daemon.log())
        self.assertEqual(daemon.stop(), 0)

    @staticmethod
    def session_members(sid):
        members = []
        for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
            try:
                if os.getsid(pid) == sid:
                    members.append(pid)
            except ProcessLookupError:
                pass
        return members

    def kill_session(self, sid, spare=None):
        """SIGKILL to every process of session sid but `spare` (the hogs)."""
        for pid in self.session_members(sid):
            if pid != spare:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def wait_until_spinning(self, sid, hogs):
        """The hogs' CPU seconds once all `hogs` of session sid spin."""
        def all_spinning():
            seconds = self.spinning_hogs(sid)
            return seconds if len(seconds) == hogs else None
        return daemon_process.wait_for(all_spinning, what=f"{hogs} hogs to spin")

    def spinning_hogs(self, sid):
        """CPU seconds of each python3 of session sid that has run for
        a tenth of a second."""
        seconds = []
        for pid in self.session_members(sid):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
            except FileNotFoundError:
                continue
            if "(python3)" not in stat:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            cpu_seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            if cpu_seconds >= 0.1:
                seconds.append(cpu_seconds)
        return seconds

    # -- readiness notification -------------------------------------------

    def test_notify_ready_and_stopping(self):
        notify_path = os.path.join(self.dir, "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(10)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        daemon, path = daemon_process.start_daemon(self.dir, env=env)
        self.track(daemon)
        ready = notify.recv(4096).decode()
        self.assertIn("READY=1", ready.splitlines())
        self.assertIn(f"STATUS=listening on {path} with ", ready)
        # Ready means ready: a copy goes through at once.
        self.assertEqual(self.copy_through(path)[:2], (0, 300000))
        os.kill(daemon.pid, signal.SIGTERM)
        stopping = notify.recv(4096).decode()
        self.assertIn("STOPPING=1", stopping.splitlines())
        self.assertEqual(daemon.proc.wait(10), 0)
        notify.close()


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("skipped: copyoffloadd serves only root", file=sys.stderr)
        sys.exit(77)
    unittest.main(verbosity=2)
