"""Which Samba the tests run against: the host's, or the one in a Debian root.

The host's Samba (Debian 12: 4.17) runs as installed. Another release (e.g.
Debian 13's 4.22, in the root scripts/samba-runtime.sh makes) runs from its
root filesystem: every Samba program (smbd, smbpasswd, smbclient,
smbtorture) is started as

    unshare -m --propagation private sh -c \\
        'mount ... && exec chroot ROOT PROGRAM ARGS...'

in a mount namespace of its own, in which the root gets:
  * /proc, and /dev (recursive bind);
  * the harness's work directory at the same path (recursive bind, so the
    loop filesystems mounted below it on the host, the helper's socket
    directory, smb.conf and every state directory are the same paths inside
    and outside);
  * the host's /etc/passwd and /etc/group, so the test user has the same
    uid and gid on both sides, and its /etc/hosts: smbd puts its DNS name
    into every NTLMSSP challenge, and a host name the root's own hosts file
    lacks costs a DNS query per connection (seen: 5 s timeouts);
  * any extra binds the caller asks for (smbd: the VFS module directory).
Those mounts exist only in that namespace and disappear with its last
process: nothing is ever mounted in the cached root itself. The only trace
the harness leaves in the root is the empty directory it binds the work
directory onto, removed at teardown.

Clients run from the same Samba as the server: the root's smbtorture carries
the tests of its release (4.22 adds smb2.ioctl.copy_chunk_bug15644).
"""

import os
import re
import shlex
import subprocess

import cleanup

SAMBA_LIBDIR = "/usr/lib/x86_64-linux-gnu/samba"
SAMBA_VFS_DIR = SAMBA_LIBDIR + "/vfs"


def _package_version(root):
    """The samba package version installed in root ("/" for the host)."""
    argv = ["dpkg-query", "-W", "-f=${Version}", "samba"]
    if root != "/":
        argv.insert(1, f"--admindir={os.path.join(root, 'var/lib/dpkg')}")
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"samba is not installed in {root}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _codename(root):
    try:
        with open(os.path.join(root, "etc/os-release")) as f:
            m = re.search(r"^VERSION_CODENAME=(\S+)$", f.read(), re.M)
    except FileNotFoundError:
        return "?"
    return m.group(1) if m else "?"


class SambaRuntime:
    def __init__(self, root=None):
        """root: a Debian root filesystem holding the Samba to test, or None
        for the host's own Samba."""
        self.root = os.path.abspath(root) if root else None
        where = self.root or "/"
        smbd = os.path.join(where, "usr/sbin/smbd")
        if not os.path.isfile(smbd):
            raise RuntimeError(f"no smbd in {where} (scripts/install-deps.sh, "
                               f"or scripts/samba-runtime.sh for a root)")
        self.package_version = _package_version(where)
        # "2:4.22.11+dfsg-0+deb13u1" -> "4.22.11"
        self.version = re.sub(r"^\d+:", "", self.package_version).split("+")[0].split("-")[0]
        self.codename = _codename(where)
        self._workdir = None

    @property
    def release(self):
        """(major, minor), e.g. (4, 22)."""
        major, minor = self.version.split(".")[:2]
        return int(major), int(minor)

    @property
    def default_clones(self):
        """Since 4.22 vfs_default serves FSCTL_DUPLICATE_EXTENTS_TO_FILE
        itself (a synchronous FICLONERANGE, no copy fallback); before, it
        answers INVALID_PARAMETER."""
        return self.release >= (4, 22)

    @property
    def serves_device_nodes(self):
        """4.17 opens a block-device node in a share like a file (of size
        0) and reads and writes it; 4.22 treats every special file as a
        reparse point and refuses to open it for data
        (NT_STATUS_IO_REPARSE_TAG_NOT_HANDLED). Releases between are not
        tested."""
        return self.release < (4, 22)

    @property
    def fake_fscaps_enable(self):
        """Since 4.22 share:fake_fscaps is part of the share's capabilities
        (vfs_get_fs_capabilities, below every module), so faked
        BLOCK_REFCOUNTING lets clones through; before, it only changed the
        FileFsAttributeInformation reply, and smbd refuses the clone."""
        return self.release >= (4, 22)

    @property
    def label(self):
        """e.g. 'Samba 4.22.11 (trixie root /var/cache/...)' for reports."""
        where = f"{self.codename} root {self.root}" if self.root else f"{self.codename} host"
        return f"Samba {self.version} ({where})"

    def host_path(self, path):
        """Where path (absolute, as the Samba programs see it) is on the host."""
        return self.root + path if self.root else path

    @property
    def vfs_dir(self):
        """The Samba's VFS module directory, as a host path."""
        return self.host_path(SAMBA_VFS_DIR)

    def attach(self, workdir):
        """Make workdir reachable at the same path inside the root (a mount
        point directory, removed at teardown; the bind itself is made per
        command, in its own namespace)."""
        self._workdir = os.path.abspath(workdir)
        if not self.root:
            return
        target = self.root + self._workdir
        created = []
        path = target
        while not os.path.isdir(path):
            created.append(path)
            path = os.path.dirname(path)
        for path in reversed(created):
            os.mkdir(path, 0o755)

        def remove():
            for path in created:
                try:
                    os.rmdir(path)
                except OSError:
                    pass
        cleanup.register(f"remove mount point {target}", remove)

    def command(self, argv, binds=()):
        """argv to run argv against this Samba. binds: (host dir, dir as the
        program sees it) pairs to bind-mount first."""
        if not self.root and not binds:
            return list(argv)
        mounts = []
        if self.root:
            if self._workdir is None:
                raise RuntimeError("SambaRuntime.attach(workdir) was not called")
            r = self.root
            mounts += [["mount", "-t", "proc", "proc", r + "/proc"],
                       ["mount", "--rbind", "/dev", r + "/dev"],
                       ["mount", "--rbind", self._workdir, r + self._workdir],
                       ["mount", "--bind", "/etc/passwd", r + "/etc/passwd"],
                       ["mount", "--bind", "/etc/group", r + "/etc/group"],
                       ["mount", "--bind", "/etc/hosts", r + "/etc/hosts"]]
        mounts += [["mount", "--bind", src, self.host_path(dst)] for src, dst in binds]
        program = (["chroot", self.root] if self.root else []) + list(argv)
        script = " && ".join(shlex.join(m) for m in mounts)
        script += f" && exec {shlex.join(program)}"
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
