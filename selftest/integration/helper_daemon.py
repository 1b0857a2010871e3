"""The copyoffloadd helper daemon: start, stop, and read what it copied.

At --log-level debug the daemon writes one line per finished copy to stderr:

    copy done id=<n> peer_pid=<pid> src_off=<n> dst_off=<n> length=<n>
        bytes=<n> method=<name> status=<0 or errno> usec=<n>
        [clone=<n> copy_file_range=<n> device=<n> read_write=<n>] [share="<name>"]

(on one line; the errno may be a number or a name such as EXDEV; the share
is "" for copies that named none). The
per-method byte counts at the end are newer (a clone-first copy splits one
range over several methods); older builds lack them, and they then count as 0.
Tests note log_position() before a client operation and read records_since()
afterwards to attribute copies to that operation.
"""

import collections
import dataclasses
import os
import re
import stat
import time

import proc_stats
import processes

COPY_DONE_RE = re.compile(
    r"copy done id=(?P<id>\d+) peer_pid=(?P<peer_pid>\d+)"
    r" src_off=(?P<src_off>\d+) dst_off=(?P<dst_off>\d+)"
    r" length=(?P<length>\d+) bytes=(?P<bytes>\d+)"
    r" method=(?P<method>\S+) status=(?P<status>[-\w]+) usec=(?P<usec>\d+)"
    r"(?P<rest>[^\n]*)")

# Per-method byte counts, in the order the helper prints them.
METHODS = ("clone", "copy_file_range", "device", "read_write")
_METHOD_RE = re.compile(r"\b(" + "|".join(METHODS) + r")=(\d+)\b")
# Last, the share the copy counts for (quotes and backslashes escaped).
_SHARE_RE = re.compile(r' share="((?:[^"\\]|\\.)*)"$')


@dataclasses.dataclass(frozen=True)
class CopyDone:
    id: int
    peer_pid: int
    src_off: int
    dst_off: int
    length: int
    bytes: int
    method: str
    status: str   # "0" on success, else an errno (number or name)
    usec: int
    clone: int = 0            # bytes per method (0 if the build does not log them)
    copy_file_range: int = 0
    device: int = 0
    read_write: int = 0
    share: str = ""           # "" when the copy named no share (or older builds)

    @property
    def ok(self):
        return self.status == "0"


@dataclasses.dataclass(frozen=True)
class CopySummary:
    count: int          # "copy done" lines
    ok_count: int       # ... with status=0
    bytes_ok: int       # sum of bytes over status=0 lines
    failed: tuple       # CopyDone records with status != 0
    methods: tuple      # sorted distinct methods of successful copies
    method_bytes: dict  # METHODS -> bytes over status=0 lines (0 if not logged)

    def describe(self):
        text = (f"{self.count} copies, {self.bytes_ok} bytes ok"
                f" via {','.join(self.methods) or '-'}")
        if any(self.method_bytes.values()):
            text += " [" + " ".join(f"{m}={self.method_bytes[m]}" for m in METHODS) + "]"
        if self.failed:
            statuses = sorted({r.status for r in self.failed})
            text += f", {len(self.failed)} failed (status {statuses})"
        return text


def parse_copy_done(text):
    """All "copy done" records in text, in order."""
    records = []
    for m in COPY_DONE_RE.finditer(text):
        values = m.groupdict()
        rest = values.pop("rest")
        fields = {k: (v if k in ("method", "status") else int(v))
                  for k, v in values.items()}
        share = _SHARE_RE.search(rest)
        if share:
            fields["share"] = re.sub(r"\\(.)", r"\1", share.group(1))
            rest = rest[:share.start()]
        fields.update((k, int(v)) for k, v in _METHOD_RE.findall(rest))
        records.append(CopyDone(**fields))
    return records


def summarize(records):
    ok = [r for r in records if r.ok]
    return CopySummary(
        count=len(records),
        ok_count=len(ok),
        bytes_ok=sum(r.bytes for r in ok),
        failed=tuple(r for r in records if not r.ok),
        methods=tuple(sorted({r.method for r in ok})),
        method_bytes={m: sum(getattr(r, m) for r in ok) for m in METHODS},
    )


# How the daemon logs a connection it takes and one it lets go of ("cannot
# take": one it could not adopt).
CONNECTION_EVENT_RE = re.compile(
    r"accepted connection from peer pid=(?P<accepted>\d+) "
    r"|peer pid=(?P<released>\d+) uid=\d+ (?:disconnected|closed by the daemon);"
    r"|cannot take peer pid=(?P<refused>\d+) ")


class HelperDaemon(processes.Daemon):
    def __init__(self, binary, workdir, log_level="debug", extra_args=()):
        self.binary = binary
        self.extra_args = list(extra_args)
        self.dir = os.path.join(workdir, "helper")
        self.socket_path = os.path.join(self.dir, "copyoffloadd.sock")
        self.log_path = os.path.join(self.dir, "copyoffloadd.log")
        self.log_level = log_level
        self._log_start = 0  # where the running daemon's log begins

    def start(self, timeout=15):
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self._log_start = self.log_position()  # a restart appends
        argv = [self.binary, "--socket", self.socket_path,
                "--log-level", self.log_level, *self.extra_args]
        self.proc, self._token = processes.start_daemon(
            argv, self.log_path, "copyoffloadd", self._socket_exists,
            f"create {self.socket_path}", self.log_tail, timeout)

    def _socket_exists(self):
        try:
            return stat.S_ISSOCK(os.stat(self.socket_path).st_mode)
        except FileNotFoundError:
            return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- log -------------------------------------------------------------

    def log_position(self):
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def log_text(self, since=0):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def records_since(self, position):
        return parse_copy_done(self.log_text(position))

    def wait_for_bytes(self, position, nbytes, timeout=5.0):
        """Summary of copies logged after position, waiting up to timeout for
        the successful ones to cover nbytes (the log may trail the reply)."""
        deadline = time.monotonic() + timeout
        while True:
            summary = summarize(self.records_since(position))
            if summary.bytes_ok >= nbytes or time.monotonic() >= deadline:
                return summary
            time.sleep(0.05)

    def open_connections(self):
        """Peer pids of the connections the daemon has accepted and not yet
        let go of, by its log (--log-level debug), one entry per connection."""
        peers = collections.Counter()
        for m in CONNECTION_EVENT_RE.finditer(self.log_text(self._log_start)):
            if m.group("accepted"):
                peers[int(m.group("accepted"))] += 1
            else:
                peers[int(m.group("released") or m.group("refused"))] -= 1
        return sorted(peers.elements())  # elements() skips counts <= 0

    def accepted_since(self, position):
        """Peer pids of the connections accepted after log position."""
        return [int(m.group("accepted"))
                for m in CONNECTION_EVENT_RE.finditer(self.log_text(position))
                if m.group("accepted")]

    def descriptors_besides_connections(self):
        """The daemon's open descriptors less one per open connection: what
        its copies and its own machinery hold. Connections of smbd processes
        that are still exiting do not count, so this is a base that other
        tests' sessions coming and going do not move."""
        peers = self.open_connections()
        return proc_stats.descriptor_count(self.proc.pid) - len(peers)

    def idle_descriptors(self, settle=0.3):
        """descriptors_besides_connections() at rest: the least seen over
        settle seconds. It only ever reads high, for the moment between a
        connection's descriptor and its log line (accept) or the other way
        round (let go), so the least is the true count."""
        least = self.descriptors_besides_connections()
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            time.sleep(0.03)
            least = min(least, self.descriptors_besides_connections())
        return least

    def log_tail(self, lines=5):
        return " | ".join(self.log_text().strip().splitlines()[-lines:])
