"""A Linux SMB3 client: Debian's kernel with cifs.ko in a QEMU guest.

The host's kernel has no SMB client, so the Linux client the tests need
(cp, xfs_io: copy_file_range and FICLONE on a cifs mount become
FSCTL_SRV_COPYCHUNK_WRITE and FSCTL_DUPLICATE_EXTENTS_TO_FILE) runs in a
guest booted from an initramfs: static busybox, the host's cp and xfs_io
with their libraries, and linux_guest_init.sh as /init. The guest reaches
the host's 127.0.0.1 as 10.0.2.2 (QEMU's user network), so smbd keeps
listening on loopback only.

    guest = LinuxGuest(workdir)
    guest.start()                      # boot: 13.5 s under TCG, initramfs included
    status, output = guest.run("/usr/bin/cp /mnt/a /mnt/b")
    guest.stop()

Commands and answers travel over the serial console (linux_guest_init.sh
describes the lines); its whole transcript is in console.log.
"""

import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading
import time

import cleanup
import processes

QEMU_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "qemu")
sys.path.insert(0, QEMU_DIR)

import guest_kernel  # noqa: E402
import initramfs  # noqa: E402

# What the guest loads. cifs names its crypto as soft dependencies without
# "pre:" in this kernel, and the guest has no modprobe to load an algorithm
# when it is asked for, so they come first by name: SMB 3.1.1 signs with
# AES-CMAC or AES-GMAC, encrypts with AES-GCM or AES-CCM (allocated at
# negotiation even if unused: ctr and ghash under them) and hashes the
# negotiation with SHA-512.
KERNEL_MODULES = ["virtio_pci", "virtio_net", "ctr", "ghash_generic", "cmac", "gcm", "ccm",
                  "ecb", "sha512_generic", "cifs"]

# Host programs the guest runs (with their shared libraries), by path.
PROGRAMS = ("/usr/bin/cp", "/usr/sbin/xfs_io")

HOST_ADDRESS = "10.0.2.2"  # the host's 127.0.0.1, seen from the guest


class GuestError(Exception):
    pass


class LinuxGuest(processes.Daemon):
    def __init__(self, workdir, memory_mib=512):
        self.dir = os.path.join(workdir, "linux-guest")
        self.console_log = os.path.join(self.dir, "console.log")
        self.memory_mib = memory_mib
        self.kernel = None   # e.g. "6.1.0-56-amd64", from the guest's banner
        self._lines = queue.Queue()
        self._next_id = 1

    # -- lifecycle -------------------------------------------------------

    def start(self, timeout=180):
        missing = [p for p in ("qemu-system-x86_64", "busybox") + PROGRAMS if not shutil.which(p)]
        if missing:
            raise GuestError(f"missing {', '.join(missing)} (run scripts/install-deps.sh)")
        os.makedirs(self.dir, exist_ok=True)
        kernel_dir = guest_kernel.ensure_kernel("smb-client", KERNEL_MODULES,
                                                log=processes._log)
        initrd = os.path.join(self.dir, "initrd.gz")
        self._build_initramfs(initrd, kernel_dir)
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", str(self.memory_mib),
                "-smp", "2", "-nographic", "-no-reboot", "-nodefaults",
                "-serial", "stdio",
                "-kernel", os.path.join(kernel_dir, "vmlinuz"), "-initrd", initrd,
                "-append", "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init",
                "-netdev", "user,id=net0",
                "-device", "virtio-net-pci,netdev=net0,romfile="]
        processes._log(f"$ {shlex.join(argv)} (console: {self.console_log})")
        with cleanup.critical():
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            self._token = cleanup.register(f"stop the QEMU guest (pid {self.proc.pid})",
                                           self._power_off)
        threading.Thread(target=self._read_console, daemon=True).start()
        try:
            # The firmware's escape sequences may lead the line.
            line = self._wait_for(lambda l: "guest: " in l, timeout,
                                  time.monotonic() + timeout)
            line = line[line.index("guest: "):]
            if not line.startswith("guest: ready"):
                raise GuestError(f"{line} (console: {self.console_log})")
            self.kernel = line.split("kernel ", 1)[-1].rstrip(")")
        except BaseException:
            self.stop()
            raise

    def _power_off(self):
        """End of input: the guest's loop ends and it powers off; QEMU
        then exits. Stopped by PID if it does not within 20 s."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            processes.stop_daemon(self.proc, "QEMU guest")

    def _build_initramfs(self, path, kernel_dir):
        archive = initramfs.guest_base(
            os.path.join(os.path.dirname(os.path.abspath(__file__)), "linux_guest_init.sh"),
            kernel_dir)
        for program in PROGRAMS:
            archive.program(program, program)
        archive.write(path)

    # -- the console -----------------------------------------------------

    def _read_console(self):
        with open(self.console_log, "w", encoding="utf-8", errors="replace") as log:
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                log.write(line + "\n")
                log.flush()
                self._lines.put(line)
        self._lines.put(None)  # QEMU is gone

    def _wait_for(self, wanted, timeout, deadline):
        """The next console line for which wanted(line) holds, before
        deadline (time.monotonic(); timeout: the seconds it allowed)."""
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise GuestError(f"no answer from the guest within {timeout} s "
                                 f"(console: {self.console_log})") from None
            if line is None:
                self._lines.put(None)
                raise GuestError(f"the guest stopped (QEMU status {self.proc.poll()}; "
                                 f"console: {self.console_log})")
            if wanted(line):
                return line

    def run(self, command, timeout=120):
        """Runs a shell command (one line) in the guest, for at most
        timeout seconds: (exit status, output lines, stdout and stderr
        together)."""
        if "\n" in command:
            raise ValueError("one line per command")
        if self._token is None:
            raise GuestError("the guest is not running")
        command_id = self._next_id
        self._next_id += 1
        processes._log(f"guest$ {command}")
        self.proc.stdin.write(f"{command_id} {command}\n".encode())
        self.proc.stdin.flush()
        out_prefix, done_prefix = f"OUT {command_id} ", f"DONE {command_id} "
        output = []
        deadline = time.monotonic() + timeout
        while True:
            line = self._wait_for(lambda l: l.startswith((out_prefix, done_prefix)),
                                  timeout, deadline)
            if line.startswith(out_prefix):
                output.append(line[len(out_prefix):])
                continue
            status = int(line[len(done_prefix):])
            processes._log("\n".join(output + [f"[guest exit {status}]"]))
            return status, output
