"""A gzip'd newc cpio archive for the guest, written directly (no cpio or
fakeroot needed): directories, files with their modes, symlinks, and the
shared libraries (with the dynamic loader) of dynamically linked programs,
found with ldd and put at the paths they have here."""

import gzip
import os
import re
import shutil
import stat
import subprocess

_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def shared_libraries(program):
    """Absolute paths of the libraries (and loader) `program` needs; [] for
    a static program."""
    result = subprocess.run(["ldd", program], capture_output=True, text=True)
    if result.returncode != 0:
        if "not a dynamic executable" in result.stdout + result.stderr:
            return []
        raise RuntimeError(f"ldd {program}: {result.stderr.strip()}")
    paths = []
    for line in result.stdout.splitlines():
        if "not found" in line:
            raise RuntimeError(f"ldd {program}: {line.strip()}")
        match = _LDD_PATH.search(line)
        if match:
            paths.append(match.group(1))
    return paths


class Archive:
    def __init__(self):
        self._entries = {}  # path in the archive -> (mode, data)
        self._ino = 1

    def directory(self, path, mode=0o755):
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            self._entries.setdefault("/".join(parts[:i]), (stat.S_IFDIR | mode, b""))

    def file(self, path, data, mode=0o644):
        path = path.strip("/")
        self.directory(os.path.dirname(path))
        self._entries[path] = (stat.S_IFREG | mode, data)

    def copy(self, source, path=None, mode=None):
        """A host file (symlinks followed), by default at the same path."""
        with open(source, "rb") as f:
            data = f.read()
        if mode is None:
            mode = stat.S_IMODE(os.stat(source).st_mode)
        self.file(path or source, data, mode)

    def symlink(self, path, target):
        path = path.strip("/")
        self.directory(os.path.dirname(path))
        self._entries[path] = (stat.S_IFLNK | 0o777, target.encode())

    def program(self, source, path):
        """A program and, if dynamically linked, its libraries."""
        self.copy(source, path, 0o755)
        for library in shared_libraries(source):
            self.copy(library, library, 0o755)

    def _header(self, name, mode, size):
        fields = [self._ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name) + 1, 0]
        self._ino += 1
        return b"070701" + b"".join(b"%08x" % value for value in fields)

    def _record(self, name, mode, data):
        encoded = name.encode()
        record = self._header(encoded, mode, len(data)) + encoded + b"\0"
        record += b"\0" * (-len(record) % 4)
        record += data + b"\0" * (-len(data) % 4)
        return record

    def write(self, path):
        out = bytearray()
        for name in sorted(self._entries):  # parents before children
            mode, data = self._entries[name]
            out += self._record(name, mode, data)
        out += self._record("TRAILER!!!", 0, b"")
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(bytes(out))


def guest_base(init_script, kernel_dir):
    """An archive with what every guest has: static busybox (its /init runs
    `busybox --install`), init_script as /init, the kernel modules staged in
    kernel_dir (guest_kernel.py) under /lib/modules with their load order,
    and the usual mount points."""
    archive = Archive()
    busybox = shutil.which("busybox") or "/bin/busybox"
    if shared_libraries(busybox):
        raise RuntimeError(f"{busybox} is not static: install busybox-static")
    archive.copy(busybox, "bin/busybox", 0o755)
    archive.symlink("bin/sh", "busybox")  # for /init's #!; it installs the rest
    archive.copy(init_script, "init", 0o755)
    for name in open(os.path.join(kernel_dir, "modules.order")).read().split():
        archive.copy(os.path.join(kernel_dir, "modules", name), f"lib/modules/{name}", 0o644)
    archive.copy(os.path.join(kernel_dir, "modules.order"), "lib/modules/modules.order")
    for directory in ("proc", "sys", "dev", "tmp", "run", "mnt"):
        archive.directory(directory)
    return archive
