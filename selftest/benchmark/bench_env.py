"""The benchmark's world: the same shares served by a stock smbd and by an
smbd with copyoffload, side by side, plus one copyoffloadd.

Shares (both servers, same directories):
  ext4   a plain directory on the root filesystem (ext4 on this machine kind)
  xfs    a loop-mounted XFS image made with reflink=1
  btrfs  a loop-mounted btrfs image
  slow   a loop-mounted ext4 image whose reads can be throttled (blkio)
Logging is kept at level 0 on both servers and at warning in the helper, so
neither side pays for debug output. With idle_cgroup the helper's workers run
in a scratch idle cgroup (copyoffloadd --cpu-cgroup), where the machine has
cgroup v1's cpu hierarchy. With pin_cpu every smbd and the helper share one
CPU, so that the scheduler, not a second CPU, decides who runs first.
"""

import contextlib
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import cleanup  # noqa: E402
import cpu_cgroup  # noqa: E402
import helper_daemon  # noqa: E402
import loop_filesystem  # noqa: E402
import processes  # noqa: E402
import samba_server  # noqa: E402
import unix_user  # noqa: E402

GIB = 1 << 30
SHARES = ("ext4", "xfs", "btrfs", "slow")
LOOP_TYPES = {"xfs": "xfs", "btrfs": "btrfs", "slow": "ext4"}


class BenchEnvironment:
    """A context manager; .servers maps "stock"/"copyoffload" to a server."""

    def __init__(self, build_dir, image_size=8 * GIB, compare=None, idle_cgroup=False,
                 pin_cpu=None):
        """compare: ("merge chunks", "no") runs a third server, named
        "merge chunks=no" in the tables, with copyoffload:merge chunks = no,
        to weigh one of the module's choices side by side. idle_cgroup:
        the workers in an idle cgroup of their own, not in the helper's
        scheduling group. pin_cpu: a CPU number every smbd and the helper
        are bound to; the clients are not."""
        self.build_dir = build_dir
        self.idle_cgroup = idle_cgroup
        self.pin_cpu = pin_cpu
        self.helper_cgroup = None  # the workers' idle cgroup, once set up
        self.compare = compare
        self.kinds = ["stock", "copyoffload"] + (["=".join(compare)] if compare else [])
        self.image_size = image_size
        # On the root filesystem, so the "ext4" share is a plain directory.
        self.dir = tempfile.mkdtemp(prefix="copyoffload-bench-", dir="/var/tmp")
        os.chmod(self.dir, 0o755)
        self.paths = {}
        self.devices = {}
        self.servers = {}
        self.helper = None
        self.user = None
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        try:
            self._setup()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc):
        self._stack.close()
        return False

    def _share_dir(self, parent, name):
        path = os.path.join(parent, name)
        os.makedirs(path, exist_ok=True)
        os.chown(path, self.user.uid, self.user.gid)
        return path

    def _setup(self):
        processes.configure(command_log=os.path.join(self.dir, "commands.log"))
        self.user = unix_user.ensure_user()
        self.paths["ext4"] = self._share_dir(self.dir, "ext4-share")
        for share, fs_type in LOOP_TYPES.items():
            fs = self._stack.enter_context(loop_filesystem.LoopFilesystem(
                fs_type, self.dir, size=self.image_size, name=share))
            self.paths[share] = self._share_dir(fs.mount_point, "share")
            self.devices[share] = fs.device()

        helper_args = []
        if self.idle_cgroup:
            # Entered before the helper: removed after it has stopped.
            cgroup = self._stack.enter_context(cpu_cgroup.ScratchCgroup("copyoffload-bench"))
            if cgroup.path is not None:
                self.helper_cgroup = cgroup.path
                helper_args = ["--cpu-cgroup", cgroup.path]
        self.helper = helper_daemon.HelperDaemon(
            os.path.join(self.build_dir, "helper", "copyoffloadd"), self.dir,
            log_level="warning", extra_args=helper_args)
        with self._pinned():
            self._stack.enter_context(self.helper)

        module = os.path.join(self.build_dir, "vfs_copyoffload", "copyoffload.so")
        for kind in self.kinds:
            shares = []
            for name in SHARES:
                vfs, options = [], {}
                if kind != "stock":
                    vfs = [samba_server.MODULE_NAME]
                    options["copyoffload:helper socket"] = self.helper.socket_path
                if kind not in ("stock", "copyoffload"):
                    options["copyoffload:" + self.compare[0]] = self.compare[1]
                shares.append(samba_server.Share(name, self.paths[name], vfs, options))
            with self._pinned():
                self.servers[kind] = self._stack.enter_context(samba_server.SambaServer(
                    self.dir, shares, self.user,
                    module_path=None if kind == "stock" else module,
                    log_level="0",
                    name="smbd-" + (kind if kind in ("stock", "copyoffload") else "compare")))

    @contextlib.contextmanager
    def _pinned(self):
        """With pin_cpu, binds this process to that CPU while it starts a
        daemon, which inherits the binding (and smbd's per-client children
        from it), so the helper counts one CPU, as under taskset. The
        clients, started later, are free."""
        if self.pin_cpu is None:
            yield
            return
        mask = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {self.pin_cpu})
        try:
            yield
        finally:
            os.sched_setaffinity(0, mask)

    def path(self, share, name):
        return os.path.join(self.paths[share], name)

    def daemon_pids(self):
        """The pids whose I/O a throttle must cover: both smbd parents
        (their per-client children inherit the cgroup) and the helper."""
        return [s.proc.pid for s in self.servers.values()] + [self.helper.proc.pid]


def install_cleanup():
    cleanup.install()


def run_cleanup():
    cleanup.run_all()
