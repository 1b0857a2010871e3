"""A scenario: one loop filesystem, optionally one helper, one smbd.

Test cases name the scenario they need; the runner builds each scenario once
and runs all its selected cases against it. In stock mode "copyoffload" is
dropped from every "vfs objects" line and no helper is started.
"""

import contextlib
import dataclasses
import os

import cleanup

import helper_daemon
import loop_filesystem
import samba_server
import smb_clients
import unix_user

MODULE = samba_server.MODULE_NAME

# share name -> vfs objects (top of the stack first) in module mode
MAIN_SHARES = {
    "share": [MODULE],
    # Recommended order: streams_xattr on top, so every stream open, read and
    # write is intercepted by it before anything else sees the (fake) stream
    # fd. copyoffload only implements connect and the offload hooks, which
    # streams_xattr does not, so it sees the same offload calls in either
    # order; it hands stream fsps to the next module, whose buffered fallback
    # reads/writes from the top of the stack, i.e. through streams_xattr.
    "streams": ["streams_xattr", MODULE],
    # The reverse order, run too: "copy-chunk streams" must pass in both.
    "streams_rev": [MODULE, "streams_xattr"],
    # The one share with production's "copyoffload:inline clone = yes"
    # (test_inline_clone.py); elsewhere copies go to the helper.
    "inline": [MODULE],
    # "copyoffload:merge chunks = no": every chunk its own helper request
    # (test_chunk_runs.py).
    "nomerge": [MODULE],
    # No module: copies between it and a module share on one connection
    # (test_mixed_shares.py).
    "plain": [],
}

# Only on btrfs: copyoffload on top of vfs_btrfs, whose fs_capabilities adds
# FILE_FILE_COMPRESSION (and BLOCK_REFCOUNTING), which smbtorture's
# dup_extents_compressed_* need; copyoffload above it still serves the
# offload hooks.
BTRFS_SHARES = {
    "btrfs_stack": [MODULE, "btrfs"],
}

HELPER_DOWN_SHARES = {
    "share": [MODULE],
}

# Only on ext4, which cannot clone: "share:fake_fscaps = 134217728" fakes
# FILE_SUPPORTS_BLOCK_REFCOUNTING, which Samba 4.22 honours and 4.17 only
# shows; "fakecaps_no" also has "copyoffload:block refcounting = no"
# (test_samba_versions.py).
EXT4_SHARES = {
    "fakecaps": [MODULE],
    "fakecaps_no": [MODULE],
}

# Fault tests (test_faults.py): the same share with each 'helper down'
# policy, and a tiny filesystem to fill up.
FAULT_SHARES = {
    "share": [MODULE],
    "share_fail": [MODULE],
    "tiny": [MODULE],
    # Their sockets are served by fake_helpers.py, not by copyoffloadd.
    "old_helper": [MODULE],
    "erring_helper": [MODULE],
}

# The hung-helper test (test_faults.py): the same two policies, on a server
# whose reply timeout is short. It has its own server so that the other
# fault tests, whose throttled copies can be slow, keep the default timeout.
HANG_SHARES = {
    "share": [MODULE],
    "share_fail": [MODULE],
    # A bandwidth limit that keeps one copy longer than the reply timeout.
    "slow_limit": [MODULE],
}

# Load tests (test_load.py): one share on the scenario's filesystem, one on
# an XFS of its own, copied to at the same time.
LOAD_SHARES = {
    "share": [MODULE],
    "xfs": [MODULE],
}

# Operations tests (test_options.py, test_restart.py, test_stats.py,
# test_probe.py): per-share policies, good and bad option values.
OPS_SHARES = {
    "share": [MODULE],
    "rw_only": [MODULE],
    "cfr_first": [MODULE],
    "limited": [MODULE],
    "bad_values": [MODULE],
    "bad_socket": [MODULE],
    "no_prealloc": [MODULE],
}

# Block-device nodes in a share (test_blockdev_share.py): raw volumes, with
# the helper run with --device-copy.
BLOCKDEV_SHARES = {
    "raw": [MODULE],
}

# Linux's SMB client in a QEMU guest (test_linux_client.py): the scenario's
# XFS, an ext4 and a tiny ext4 to fill up.
LINUX_CLIENT_SHARES = {
    "xfs": [MODULE],
    "ext4": [MODULE],
    "tiny": [MODULE],
}

KIND_SHARES = {"main": MAIN_SHARES, "helper-down": HELPER_DOWN_SHARES,
               "faults": FAULT_SHARES, "hang": HANG_SHARES, "load": LOAD_SHARES,
               "ops": OPS_SHARES, "blockdev": BLOCKDEV_SHARES,
               "linux-client": LINUX_CLIENT_SHARES}

# Extra copyoffloadd options per scenario kind.
# Faults: a worker with no progress for STALL_SECONDS is stalled
# (test_faults.py). The slowest throttled slice there is 8 MiB of a first
# request's piece in "client disconnects mid-copy": 16 MiB such pieces
# took 13-15 s there, so about 7 s a slice.
STALL_SECONDS = 16
HELPER_ARGS = {"blockdev": ["--device-copy"],
               "faults": ["--stall-timeout", str(STALL_SECONDS)]}

# Sockets of the fault tests' fake helpers (fake_helpers.py), in the
# scenario's directory.
OLD_HELPER_SOCKET = "old-helper.sock"
ERRING_HELPER_SOCKET = "erring-helper.sock"

# Extra smb.conf options per scenario kind and share.
# "{dir}" in a value is the scenario's directory.
SHARE_OPTIONS = {"faults": {"share_fail": {"copyoffload:helper down": "fail"},
                            "old_helper": {"copyoffload:helper socket":
                                           "{dir}/" + OLD_HELPER_SOCKET},
                            "erring_helper": {"copyoffload:helper socket":
                                              "{dir}/" + ERRING_HELPER_SOCKET}},
                 "hang": {"share_fail": {"copyoffload:helper down": "fail"},
                          "slow_limit": {"copyoffload:max bytes per second": "1M"}},
                 "main": {"nomerge": {"copyoffload:merge chunks": "no"},
                          "fakecaps": {"share:fake_fscaps": "134217728"},
                          "fakecaps_no": {"share:fake_fscaps": "134217728",
                                          "copyoffload:block refcounting": "no"}},
                 "ops": {
                     "rw_only": {"copyoffload:methods": "read_write"},
                     "cfr_first": {"copyoffload:methods":
                                   "copy_file_range, clone, read_write"},
                     "limited": {"copyoffload:methods": "copy_file_range read_write",
                                 "copyoffload:max segment": "256K",
                                 "copyoffload:max bytes per second": "4M",
                                 "copyoffload:max concurrent copies": "2"},
                     "bad_values": {"copyoffload:methods": "fast, reflink",
                                    "copyoffload:max segment": "4K",
                                    "copyoffload:max bytes per second": "lots",
                                    "copyoffload:max concurrent copies": "-1",
                                    "copyoffload:helper down": "maybe",
                                    "copyoffload:block refcounting": "sometimes",
                                    "copyoffload:dup extents fallback": "perhaps",
                                    "copyoffload:merge chunks": "often",
                                    "copyoffload:preallocate": "maybe"},
                     "no_prealloc": {"copyoffload:preallocate": "no"},
                     # Relative: refused, so the default socket (no helper
                     # there) is used and copies go to the next module.
                     "bad_socket": {"copyoffload:helper socket": "copyoffloadd.sock"},
                 }}

# Extra [global] smb.conf options per scenario kind: the fault tests stop
# the helper and wait out the module's reply timeout; the option tests
# give the reply poll a value out of range and the helper timeout one that
# is no number (their defaults are used).
GLOBAL_OPTIONS = {"hang": {"copyoffload:helper timeout": "5"},
                  "ops": {"copyoffload:reply poll": "20000",
                          "copyoffload:helper timeout": "two minutes"}}

# Shares that live on a loop filesystem of their own, per scenario kind:
# share -> (fs type, image size).
EXTRA_FILESYSTEMS = {
    "faults": {"tiny": ("ext4", 64 << 20)},
    "load": {"xfs": ("xfs", 1 << 30)},
    "linux-client": {"ext4": ("ext4", 1 << 30), "tiny": ("ext4", 64 << 20)},
}


def expected_capabilities(fs_type, vfs):
    """What FileFsAttributeInformation should say for a share with this
    (effective) vfs objects stack: {"block_refcounting", "compression"} subset.
    The module advertises block refcounting where the filesystem really
    clones (copyoffload:block refcounting = auto); vfs_btrfs adds both."""
    caps = set()
    if MODULE in vfs and fs_type in loop_filesystem.REFLINK_FS:
        caps.add("block_refcounting")
    if "btrfs" in vfs:
        caps.update(("block_refcounting", "compression"))
    return frozenset(caps)


def share_label(share, vfs):
    """'' for the plain module share, else ' [name: vfs objects = ...]' for
    case names."""
    return "" if share == "share" else f" [{share}: vfs objects = {' '.join(vfs)}]"


@dataclasses.dataclass(frozen=True)
class Scenario:
    kind: str        # a KIND_SHARES key; all but "helper-down" run the helper
    fs_type: str

    @property
    def name(self):
        return f"{self.fs_type}-{self.kind}"

    @property
    def wants_helper(self):
        return self.kind != "helper-down"

    def extra_filesystems(self):
        return EXTRA_FILESYSTEMS.get(self.kind, {})

    def share_vfs(self, stock):
        shares = KIND_SHARES[self.kind]
        if self.kind == "main" and self.fs_type == "btrfs":
            shares = {**shares, **BTRFS_SHARES}
        if self.kind == "main" and self.fs_type == "ext4":
            shares = {**shares, **EXT4_SHARES}
        out = {}
        for name, vfs in shares.items():
            out[name] = [m for m in vfs if not (stock and m == MODULE)]
        return out


def main(fs_type):
    return Scenario("main", fs_type)


def helper_down(fs_type):
    return Scenario("helper-down", fs_type)


def faults(fs_type):
    return Scenario("faults", fs_type)


def hang(fs_type):
    return Scenario("hang", fs_type)


def ops(fs_type):
    return Scenario("ops", fs_type)


def load(fs_type):
    return Scenario("load", fs_type)


def blockdev(fs_type):
    return Scenario("blockdev", fs_type)


def linux_client():
    return Scenario("linux-client", "xfs")


@dataclasses.dataclass
class Options:
    stock: bool
    module_path: str     # None in stock mode
    helper_path: str     # None in stock mode
    log_level: str = samba_server.DEFAULT_LOG_LEVEL
    fs_size: int = loop_filesystem.DEFAULT_SIZE
    runtime: object = None  # samba_runtime.SambaRuntime under test (None: the host's)


class Environment:
    """Everything a scenario's test cases use; a context manager."""

    def __init__(self, scenario, options, workdir):
        self.scenario = scenario
        self.options = options
        self.stock = options.stock
        self.dir = os.path.join(workdir, scenario.name)
        self.scratch = os.path.join(self.dir, "scratch")  # local client files
        self.user = None
        self.fs = None
        self.extra_fs = {}    # share -> LoopFilesystem, for shares with their own
        self.helper = None    # HelperDaemon (started only when it should run)
        self.server = None
        self.smbclient = None
        self.torture = None
        self.cache = {}       # per-scenario memo for test modules
        self.selected = set()  # names of the cases the runner will run here
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        try:
            self._setup()
        except BaseException as setup_error:
            try:
                self._stack.close()
            except Exception as teardown_error:
                # Keep the setup error (or Interrupted) as what is reported.
                setup_error.add_note(f"teardown also failed: {teardown_error}")
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self._stack.close()
        except Exception as teardown_error:
            if exc is None:
                raise
            exc.add_note(f"teardown also failed: {teardown_error}")
        return False

    def _setup(self):
        os.makedirs(self.scratch)
        os.chmod(self.dir, 0o755)
        self.user = unix_user.ensure_user()
        self.fs = self._stack.enter_context(loop_filesystem.LoopFilesystem(
            self.scenario.fs_type, self.dir, size=self.options.fs_size))
        for share, (fs_type, size) in self.scenario.extra_filesystems().items():
            self.extra_fs[share] = self._stack.enter_context(
                loop_filesystem.LoopFilesystem(fs_type, self.dir, size=size, name=share))

        if not self.stock:
            # In the helper-down scenario the daemon object only names a
            # socket and a log that never come into existence.
            self.helper = helper_daemon.HelperDaemon(
                self.options.helper_path, self.dir,
                extra_args=HELPER_ARGS.get(self.scenario.kind, ()))
            if self.scenario.wants_helper:
                self._stack.enter_context(self.helper)

        shares = []
        for name, vfs in self.scenario.share_vfs(self.stock).items():
            path = self.share_path(name)
            os.mkdir(path, 0o755)
            os.chown(path, self.user.uid, self.user.gid)
            options = {option: value.replace("{dir}", self.dir) for option, value in
                       SHARE_OPTIONS.get(self.scenario.kind, {}).get(name, {}).items()}
            if MODULE in vfs:
                options.setdefault("copyoffload:helper socket", self.helper.socket_path)
                # Keep chunks on the helper path, whose log the tests read,
                # except where inline cloning itself is under test.
                options.setdefault("copyoffload:inline clone",
                                   "yes" if name == "inline" else "no")
            shares.append(samba_server.Share(name, path, vfs, options))

        self.server = self._stack.enter_context(samba_server.SambaServer(
            self.dir, shares, self.user,
            module_path=None if self.stock else self.options.module_path,
            log_level=self.options.log_level, runtime=self.options.runtime,
            global_options=GLOBAL_OPTIONS.get(self.scenario.kind)))
        conf = smb_clients.client_conf(self.dir)
        runtime = self.server.runtime
        self.smbclient = smb_clients.SmbClient(self.server.port, self.user, conf, runtime)
        self.torture = smb_clients.SmbTorture(self.server.port, self.user, conf, runtime)

    def defer(self, description, callback):
        """Runs callback() when the scenario is torn down (before smbd,
        the helper and the filesystems go), and on any exit path."""
        token = cleanup.register(description, callback)
        self._stack.callback(cleanup.release, token)

    def filesystem(self, share):
        """The LoopFilesystem a share lives on."""
        return self.extra_fs.get(share, self.fs)

    def share_path(self, share, *names):
        return os.path.join(self.filesystem(share).mount_point, share, *names)

    def share_vfs(self, share):
        return self.scenario.share_vfs(self.stock)[share]

    def expected_capabilities(self, share):
        return expected_capabilities(self.scenario.fs_type, self.share_vfs(share))
