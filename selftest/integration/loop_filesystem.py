"""A throwaway filesystem on a sparse loop image: make, mount, remove.

    with LoopFilesystem("ext4", workdir) as fs:
        fs.mount_point  # mounted, mode 0755

The unmount (and detaching of the loop device, and removal of the image) is
registered with cleanup before signals are unblocked, so it also happens on
Ctrl-C, SIGTERM and atexit.
"""

import os
import time

import cleanup
import processes

MKFS = {
    "ext4": ["mkfs.ext4", "-q", "-F", "-E", "nodiscard"],
    "xfs": ["mkfs.xfs", "-q", "-f", "-K", "-m", "reflink=1"],
    "btrfs": ["mkfs.btrfs", "-q", "-f", "--nodiscard"],
}

FS_TYPES = tuple(MKFS)

# Filesystems (as made above) on which FICLONERANGE works: reflink=1 XFS, btrfs.
REFLINK_FS = ("xfs", "btrfs")

DEFAULT_SIZE = 1 << 30  # 1 GiB, sparse


class LoopFilesystem:
    def __init__(self, fs_type, workdir, size=DEFAULT_SIZE, name=None):
        if fs_type not in MKFS:
            raise ValueError(f"unknown filesystem type {fs_type!r}; one of {FS_TYPES}")
        self.fs_type = fs_type
        self.size = size
        name = name or fs_type
        self.image = os.path.join(workdir, f"{name}.img")
        self.mount_point = os.path.join(workdir, f"{name}.mnt")
        self._token = None

    def __enter__(self):
        self.create()
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    def create(self):
        try:
            self._create()
        except BaseException:
            self.remove()
            raise

    def _create(self):
        with open(self.image, "wb") as f:
            f.truncate(self.size)
        processes.run(MKFS[self.fs_type] + [self.image], timeout=120)
        os.makedirs(self.mount_point, exist_ok=True)
        with cleanup.critical():
            try:
                processes.run(["mount", "-t", self.fs_type, "-o", "loop",
                               self.image, self.mount_point], timeout=60)
            finally:
                # Even a failed or timed-out mount may have attached a device.
                self._token = cleanup.register(
                    f"unmount {self.mount_point}", self._teardown)
        os.chmod(self.mount_point, 0o755)

    def remove(self):
        if self._token is not None:
            token, self._token = self._token, None
            cleanup.release(token)

    def device(self):
        proc = processes.run(["findmnt", "-n", "-o", "SOURCE", "--mountpoint",
                              self.mount_point], check=False, quiet=True)
        return proc.stdout.strip() or None

    def _is_mounted(self):
        return os.path.ismount(self.mount_point)

    def _holders(self):
        """'pid (comm)' of processes whose mount namespace still has
        this filesystem mounted: what keeps a loop device attached."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/mountinfo") as f:
                    if f" {self.mount_point} " not in f.read():
                        continue
                with open(f"/proc/{entry}/comm") as f:
                    found.append(f"{entry} ({f.read().strip()})")
            except OSError:
                continue
        return ", ".join(found[:10])

    def _teardown(self):
        errors = []
        # smbd's private mount namespace also holds the filesystem until its
        # last process exits; the daemons are stopped before we get here.
        for attempt in range(50):
            if not self._is_mounted():
                break
            proc = processes.run(["umount", self.mount_point], check=False, timeout=60)
            if proc.returncode == 0:
                break
            time.sleep(0.2)
        else:
            errors.append(f"umount {self.mount_point} kept failing; lazy unmount")
            processes.run(["umount", "-l", self.mount_point], check=False)
        # mount -o loop sets autoclear, but a device can stay attached if the
        # mount failed half way or the filesystem was still busy elsewhere.
        for attempt in range(50):
            proc = processes.run(["losetup", "-n", "-O", "NAME", "-j", self.image],
                                 check=False, quiet=True)
            devices = proc.stdout.split()
            if not devices:
                break
            for dev in devices:
                processes.run(["losetup", "-d", dev], check=False)
            time.sleep(0.2)
        else:
            errors.append(f"loop device(s) {devices} for {self.image} still attached; "
                          f"mounted in the namespace of: {self._holders() or 'nobody'}")
        try:
            os.rmdir(self.mount_point)
        except OSError:
            pass
        if not errors:
            try:
                os.unlink(self.image)  # large; logs are what a kept run needs
            except FileNotFoundError:
                pass
        if errors:
            raise RuntimeError("; ".join(errors))
