"""A scenario: one loop filesystem, optionally one helper, one smbd.

Test cases name the scenario they need; the runner builds each scenario once
and runs all its selected cases against it. In stock mode "copyoffload" is
dropped from every "vfs objects" line and no helper is started.
"""

import contextlib
import dataclasses
import os

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
    kind: str        # "main" (helper running) or "helper-down"
    fs_type: str

    @property
    def name(self):
        return f"{self.fs_type}-{self.kind}"

    @property
    def wants_helper(self):
        return self.kind == "main"

    def share_vfs(self, stock):
        shares = MAIN_SHARES if self.kind == "main" else HELPER_DOWN_SHARES
        if self.kind == "main" and self.fs_type == "btrfs":
            shares = {**shares, **BTRFS_SHARES}
        out = {}
        for name, vfs in shares.items():
            out[name] = [m for m in vfs if not (stock and m == MODULE)]
        return out


def main(fs_type):
    return Scenario("main", fs_type)


def helper_down(fs_type):
    return Scenario("helper-down", fs_type)


@dataclasses.dataclass
class Options:
    stock: bool
    module_path: str     # None in stock mode
    helper_path: str     # None in stock mode
    log_level: str = samba_server.DEFAULT_LOG_LEVEL
    fs_size: int = loop_filesystem.DEFAULT_SIZE


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

        if not self.stock:
            # In the helper-down scenario the daemon object only names a
            # socket and a log that never come into existence.
            self.helper = helper_daemon.HelperDaemon(self.options.helper_path, self.dir)
            if self.scenario.wants_helper:
                self._stack.enter_context(self.helper)

        shares = []
        for name, vfs in self.scenario.share_vfs(self.stock).items():
            path = os.path.join(self.fs.mount_point, name)
            os.mkdir(path, 0o755)
            os.chown(path, self.user.uid, self.user.gid)
            options = {}
            if MODULE in vfs:
                options["copyoffload:helper socket"] = self.helper.socket_path
            shares.append(samba_server.Share(name, path, vfs, options))

        self.server = self._stack.enter_context(samba_server.SambaServer(
            self.dir, shares, self.user,
            module_path=None if self.stock else self.options.module_path,
            log_level=self.options.log_level))
        conf = smb_clients.client_conf(self.dir)
        self.smbclient = smb_clients.SmbClient(self.server.port, self.user, conf)
        self.torture = smb_clients.SmbTorture(self.server.port, self.user, conf)

    def share_path(self, share, *names):
        return os.path.join(self.fs.mount_point, share, *names)

    def share_vfs(self, share):
        return self.scenario.share_vfs(self.stock)[share]

    def expected_capabilities(self, share):
        return expected_capabilities(self.scenario.fs_type, self.share_vfs(share))
