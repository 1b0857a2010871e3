"""A throwaway smbd on 127.0.0.1 with every bit of state under one directory.

smbd loads VFS modules only from SAMBA_VFS_DIR, and rejects absolute paths
in "vfs objects". To load our module without touching /usr, smbd runs in a
private mount namespace in which a copy of that directory (Debian's modules
plus ours as copyoffload.so) is bind-mounted over it:

    unshare -m --propagation private \\
        sh -c 'mount --bind DIR VFS_DIR && exec smbd --foreground ...'

For a Samba in a Debian root, the same happens inside that root
(samba_runtime.SambaRuntime.command: ... && exec chroot ROOT smbd ...).
unshare (without --fork), sh and chroot all exec, so the PID we started is
smbd's.
"""

import dataclasses
import errno
import glob
import os
import random
import re
import shutil
import socket

import processes
import samba_runtime

SAMBA_VFS_DIR = samba_runtime.SAMBA_VFS_DIR
MODULE_NAME = "copyoffload"
DEFAULT_LOG_LEVEL = "1 vfs:10"


@dataclasses.dataclass
class Share:
    name: str
    path: str
    vfs_objects: list  # top of the stack first, as in smb.conf
    options: dict = dataclasses.field(default_factory=dict)

    def render(self):
        lines = [f"[{self.name}]", f"\tpath = {self.path}", "\tread only = no"]
        if self.vfs_objects:
            lines.append(f"\tvfs objects = {' '.join(self.vfs_objects)}")
        for key, value in self.options.items():
            lines.append(f"\t{key} = {value}")
        return "\n".join(lines) + "\n"


def pick_free_port(low=20000, high=40000):
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    continue
                raise
            return port
    raise RuntimeError(f"no free port in [{low}, {high})")


class SambaServer(processes.Daemon):
    def __init__(self, workdir, shares, user, module_path=None,
                 log_level=DEFAULT_LOG_LEVEL, name="smbd", runtime=None,
                 global_options=None):
        """module_path: our built module, or None to run stock Samba.
        runtime: the samba_runtime.SambaRuntime to run (default: the host's).
        global_options: extra [global] lines (name -> value)."""
        self.runtime = runtime or samba_runtime.SambaRuntime()
        self.dir = os.path.join(workdir, name)
        self.shares = shares
        self.user = user
        self.module_path = module_path
        self.log_level = log_level
        self.global_options = dict(global_options or {})
        self.conf = os.path.join(self.dir, "smb.conf")
        self.log_path = os.path.join(self.dir, "smbd.log")
        self.vfs_dir = os.path.join(self.dir, "vfs")
        self.port = None

    # -- configuration -------------------------------------------------

    def _state_dirs(self):
        names = ["lock", "state", "cache", "private", "pid", "ncalrpc", "binddns"]
        return {n: os.path.join(self.dir, n) for n in names}

    def render_conf(self):
        d = self._state_dirs()
        glob_lines = {
            "server role": "standalone server",
            "workgroup": "COPYOFFLOAD",
            "netbios name": "COPYOFFLOADTEST",
            "smb ports": str(self.port),
            "interfaces": "127.0.0.1",
            "bind interfaces only": "yes",
            "disable netbios": "yes",
            "load printers": "no",
            "printcap name": "/dev/null",
            "disable spoolss": "yes",
            "passdb backend": f"tdbsam:{os.path.join(self.dir, 'passdb.tdb')}",
            "lock directory": d["lock"],
            "state directory": d["state"],
            "cache directory": d["cache"],
            "private dir": d["private"],
            "pid directory": d["pid"],
            "ncalrpc dir": d["ncalrpc"],
            "binddns dir": d["binddns"],
            "usershare path": os.path.join(self.dir, "usershares"),
            "log file": os.path.join(self.dir, "log.%m"),
            "max log size": "0",
            "log level": self.log_level,
            "debug pid": "yes",
            "debug hires timestamp": "yes",
            "map to guest": "never",
            "dns proxy": "no",
            **self.global_options,
        }
        out = ["[global]"] + [f"\t{k} = {v}" for k, v in glob_lines.items()]
        text = "\n".join(out) + "\n\n"
        text += "\n".join(share.render() for share in self.shares)
        return text

    def _prepare_vfs_dir(self):
        os.makedirs(self.vfs_dir)
        for src in glob.glob(os.path.join(self.runtime.vfs_dir, "*.so")):
            if os.path.basename(src) != f"{MODULE_NAME}.so":
                shutil.copy2(src, self.vfs_dir)
        if self.module_path:
            shutil.copy2(self.module_path,
                         os.path.join(self.vfs_dir, f"{MODULE_NAME}.so"))

    # -- lifecycle -------------------------------------------------------

    def start(self, timeout=30):
        if not os.path.isdir(self.runtime.vfs_dir):
            raise RuntimeError(f"{self.runtime.vfs_dir} missing: install samba-vfs-modules "
                               f"(scripts/install-deps.sh)")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        for path in self._state_dirs().values():
            os.makedirs(path, exist_ok=True)
        os.makedirs(os.path.join(self.dir, "usershares"), exist_ok=True)
        self._prepare_vfs_dir()
        self.port = pick_free_port()
        with open(self.conf, "w") as f:
            f.write(self.render_conf())
        processes.run(self.runtime.command(
                          ["smbpasswd", "-c", self.conf, "-a", "-s", self.user.name]),
                      input=f"{self.user.password}\n{self.user.password}\n")
        argv = self.runtime.command(
            ["smbd", "--foreground", "--no-process-group", "--debug-stdout",
             "-s", self.conf],
            binds=[(self.vfs_dir, SAMBA_VFS_DIR)])
        self.proc, self._token = processes.start_daemon(
            argv, self.log_path, "smbd", self._listening,
            f"listen on port {self.port}", self.log_tail, timeout)

    def _listening(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    # -- logs ------------------------------------------------------------

    def log_files(self):
        """smbd's stdout log plus any log.%m files it wrote."""
        return [self.log_path] + sorted(glob.glob(os.path.join(self.dir, "log.*")))

    def log_text(self):
        chunks = []
        for path in self.log_files():
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    chunks.append(f.read())
            except FileNotFoundError:
                pass
        return "\n".join(chunks)

    def log_matches(self, pattern, flags=re.IGNORECASE):
        return [line for line in self.log_text().splitlines()
                if re.search(pattern, line, flags)]

    def log_tail(self, lines=8):
        text = self.log_text().strip().splitlines()
        return " | ".join(text[-lines:])
