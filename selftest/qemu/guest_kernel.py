"""Debian's kernel for the QEMU guests: vmlinuz plus the few modules a test
loads, cached by package name and version.

The package is what linux-image-amd64 depends on (Debian 12: a 6.1 kernel).
`apt-get download` fetches it once and keeps the .deb; each test names its
set of modules, and the cache keeps vmlinuz, that set's modules (with
everything they depend on, found in each module's .modinfo section) and
their load order in

    /var/cache/copyoffload/qemu/kernel/<package>_<version>/<set>/

A second run only reads that directory (a set made for another list of
modules is made again from the kept .deb). When apt cannot say which kernel is
current (no package lists) or cannot fetch it, the package lists are
refreshed once; failing that, the newest cached kernel with the set is used.
"""

import glob
import os
import shutil
import struct
import subprocess
import tempfile

CACHE_ROOT = "/var/cache/copyoffload/qemu/kernel"
WANTED_FILE = "wanted"  # the module names a set was staged for, one per line


def _run(argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def current_package():
    """(package, version) of the kernel linux-image-amd64 depends on, or None."""
    try:
        depends = _run(["apt-cache", "depends", "linux-image-amd64"])
    except (OSError, subprocess.CalledProcessError):
        return None
    package = None
    for line in depends.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-"):
            package = line.split(":", 1)[1].strip()
            break
    if package is None:
        return None
    policy = _run(["apt-cache", "policy", package])
    for line in policy.splitlines():
        line = line.strip()
        if line.startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version and version != "(none)":
                return package, version
    return None


def _modinfo(path):
    """The key=value strings of a module's .modinfo section."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise RuntimeError(f"{path}: not a 64-bit ELF module")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3a)
    sections = []
    for i in range(shnum):
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", data, shoff + i * shentsize)
        sections.append((name, offset, size))
    strtab = sections[shstrndx][1]
    for name, offset, size in sections:
        end = data.index(b"\0", strtab + name)
        if data[strtab + name:end] == b".modinfo":
            return [item.decode("utf-8", "replace")
                    for item in data[offset:offset + size].split(b"\0") if item]
    return []


def module_order(modules_dir, wanted):
    """Paths of `wanted` and everything they need, each after its needs."""
    index = {}
    for path in glob.glob(os.path.join(modules_dir, "kernel", "**", "*.ko"),
                          recursive=True):
        index[os.path.basename(path)[:-3].replace("-", "_")] = path
    order, state = [], {}

    def visit(name):
        name = name.replace("-", "_")
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise RuntimeError(f"module dependency cycle at {name}")
        if name not in index:
            raise RuntimeError(f"module {name} not in the kernel package")
        state[name] = "visiting"
        needs = []
        for item in _modinfo(index[name]):
            key, _, value = item.partition("=")
            if key == "depends":
                needs += [n for n in value.split(",") if n]
            elif key == "softdep":
                # "pre: a b post: c": only real module names, in front.
                words = value.split()
                pre = False
                for word in words:
                    if word.endswith(":"):
                        pre = word == "pre:"
                    elif pre and word.replace("-", "_") in index:
                        needs.append(word)
        for need in needs:
            visit(need)
        state[name] = "done"
        order.append(index[name])

    for name in wanted:
        visit(name)
    return order


def _cached(directory, wanted):
    """Whether directory holds a set staged for exactly these modules: a
    test that changes its list gets a fresh set, not a stale one."""
    try:
        with open(os.path.join(directory, WANTED_FILE)) as f:
            staged_for = f.read().split()
    except FileNotFoundError:
        return False
    return (staged_for == list(wanted) and
            os.path.isfile(os.path.join(directory, "vmlinuz")) and
            os.path.isfile(os.path.join(directory, "modules.order")))


def _newest_cached(set_name, wanted):
    cached = sorted(d for d in glob.glob(os.path.join(CACHE_ROOT, "*", set_name))
                    if _cached(d, wanted))
    return cached[-1] if cached else None


def _package_file(package, version, log):
    """The kernel's .deb, downloaded once into the cache."""
    deb = os.path.join(CACHE_ROOT, f"{package}_{version}", f"{package}.deb")
    if os.path.isfile(deb):
        return deb
    log(f"guest kernel: fetching {package} {version} (once; cached in {os.path.dirname(deb)})")
    os.makedirs(os.path.dirname(deb), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_ROOT) as work:
        # A limit, so that a stalled mirror fails this step, not the run.
        subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=work,
                       check=True, capture_output=True, timeout=600)
        os.rename(glob.glob(os.path.join(work, "*.deb"))[0], deb)
    return deb


def _stage(deb, wanted, directory):
    """Unpacks vmlinuz and the wanted modules into `directory`."""
    with tempfile.TemporaryDirectory(dir=CACHE_ROOT) as work:
        tree = os.path.join(work, "tree")
        subprocess.run(["dpkg-deb", "-x", deb, tree], check=True)
        vmlinuz = glob.glob(os.path.join(tree, "boot", "vmlinuz-*"))[0]
        modules_dir = glob.glob(os.path.join(tree, "lib", "modules", "*"))[0]
        staged = os.path.join(work, "staged")
        os.makedirs(os.path.join(staged, "modules"))
        shutil.copy2(vmlinuz, os.path.join(staged, "vmlinuz"))
        names = []
        for path in module_order(modules_dir, wanted):
            shutil.copy2(path, os.path.join(staged, "modules"))
            names.append(os.path.basename(path))
        with open(os.path.join(staged, "modules.order"), "w") as f:
            f.write("\n".join(names) + "\n")
        with open(os.path.join(staged, WANTED_FILE), "w") as f:
            f.write("\n".join(wanted) + "\n")
        if os.path.isdir(directory):
            shutil.rmtree(directory)
        os.rename(staged, directory)


def ensure_kernel(set_name, wanted, log=print):
    """Directory with vmlinuz, modules/*.ko and modules.order (load order)
    for the modules `wanted` (names), cached under `set_name`."""
    for attempt in range(2):
        current = current_package()
        if current is not None:
            package, version = current
            directory = os.path.join(CACHE_ROOT, f"{package}_{version}", set_name)
            if _cached(directory, wanted):
                return directory
            try:
                _stage(_package_file(package, version, log), wanted, directory)
                return directory
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
                log(f"guest kernel: fetching {package} {version} failed: "
                    f"{(e.stderr or b'').decode(errors='replace').strip()[-300:] or e}")
        if attempt == 0:
            # Stale or missing package lists: the version they name may be
            # gone from the mirror.
            try:
                subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=300)
            except subprocess.TimeoutExpired:
                log("guest kernel: apt-get update took over 300 s")
    cached = _newest_cached(set_name, wanted)
    if cached is None:
        raise RuntimeError("cannot fetch the linux-image-amd64 kernel and none is cached")
    log(f"guest kernel: using the cached {os.path.basename(os.path.dirname(cached))}")
    return cached
