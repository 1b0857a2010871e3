"""Real SMB clients: smbclient and smbtorture, and parsers for their output.

Both read a client smb.conf of our own (client_conf()) so that nothing from
/etc/samba or /var/cache/samba is used or written. Both run from the Samba
under test (a samba_runtime.SambaRuntime): the host's, or a Debian root's.
"""

import dataclasses
import os
import re

import processes

NT_STATUS_RE = re.compile(r"NT_STATUS_[A-Z0-9_]+")


def client_conf(workdir):
    """Write a minimal client smb.conf with its state under workdir/client."""
    d = os.path.join(workdir, "client")
    for sub in ("lock", "state", "cache", "private"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    path = os.path.join(d, "smb.conf")
    with open(path, "w") as f:
        f.write("[global]\n"
                f"\tlock directory = {d}/lock\n"
                f"\tstate directory = {d}/state\n"
                f"\tcache directory = {d}/cache\n"
                f"\tprivate dir = {d}/private\n"
                "\tclient min protocol = SMB2_02\n"
                "\tclient max protocol = SMB3\n"
                "\tdisable netbios = yes\n")
    return path


# ---------------------------------------------------------------- smbclient

@dataclasses.dataclass
class SmbClientResult:
    returncode: int
    output: str
    nt_errors: list  # NT_STATUS_* codes seen in the output (any is an error)

    @property
    def ok(self):
        return self.returncode == 0 and not self.nt_errors

    def describe(self):
        text = f"smbclient exit {self.returncode}"
        if self.nt_errors:
            text += f", {', '.join(self.nt_errors)}"
        tail = " | ".join(self.output.strip().splitlines()[-3:])
        return f"{text}: {tail}" if tail else text


class SmbClient:
    def __init__(self, port, user, conf, runtime=None):
        self.port = port
        self.user = user
        self.conf = conf
        self.runtime = runtime

    def command(self, share, commands):
        """The argv of smbclient -c 'commands' against //127.0.0.1/share."""
        if isinstance(commands, (list, tuple)):
            commands = "; ".join(commands)
        argv = ["smbclient", f"//127.0.0.1/{share}", "-p", str(self.port),
                "-s", self.conf, "-U", self.user.credentials, "-c", commands]
        return _in_runtime(self.runtime, argv)

    @staticmethod
    def result(returncode, output):
        """An SmbClientResult from an smbclient run's exit status and output."""
        errors = [e for e in NT_STATUS_RE.findall(output) if e != "NT_STATUS_OK"]
        return SmbClientResult(returncode, output, errors)

    def run(self, share, commands, timeout=300):
        """Run smbclient -c 'commands' against //127.0.0.1/share."""
        proc = processes.run(self.command(share, commands), timeout=timeout, check=False)
        return self.result(proc.returncode, proc.stdout)


# --------------------------------------------------------------- smbtorture

@dataclasses.dataclass
class TortureResult:
    name: str
    status: str   # success | failure | error | skip | xfail | missing
    reason: str = ""

    @property
    def passed(self):
        return self.status == "success"


_RESULT_RE = re.compile(
    r"^(?P<status>success|successful|failure|failed|error|skip|xfail|uxsuccess)"
    r": (?P<name>.*?)(?P<bracket> \[)?\s*$")

_STATUS_ALIASES = {"successful": "success", "failed": "failure",
                   "uxsuccess": "failure"}


def parse_torture_output(text):
    """Parse smbtorture's subunit-style lines into {test name: TortureResult}.

    Recognised: 'success: NAME', 'failure: NAME [' ... ']' (multi-line reason),
    'skip: NAME [' reason ']', 'error: NAME [' ... ']', with or without the
    bracketed detail on the same line ('failure: NAME [reason]').
    """
    results = {}
    lines = text.splitlines()
    warnings = []  # 'WARNING!: file:line: ...' since the last 'test:' line
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("test: "):
            warnings = []
            continue
        if line.startswith("WARNING!: "):
            warnings.append(line[len("WARNING!: "):].strip())
            continue
        m = _RESULT_RE.match(line)
        reason = ""
        if m is None:
            # Single-line form with the reason inline: 'skip: NAME [reason]'
            m2 = re.match(r"^(success|failure|error|skip|xfail): (.*?) \[(.*)\]\s*$", line)
            if m2 is None:
                continue
            status, name, reason = m2.group(1), m2.group(2), m2.group(3)
        else:
            status, name = m.group("status"), m.group("name")
            if m.group("bracket"):
                body = []
                while i < len(lines) and lines[i].rstrip() != "]":
                    body.append(lines[i])
                    i += 1
                i += 1  # the closing ']'
                reason = " ".join(s.strip() for s in body if s.strip())
        status = _STATUS_ALIASES.get(status, status)
        if status in ("failure", "error") and warnings:
            reason = f"{reason} (first warning: {warnings[0]})"
        results[name.strip()] = TortureResult(name.strip(), status, reason)
    return results


def short_name(full_name):
    """'smb2.ioctl.copy_chunk_simple' -> 'copy_chunk_simple'."""
    for prefix in ("smb2.ioctl.",):
        if full_name.startswith(prefix):
            return full_name[len(prefix):]
    return full_name


def lookup(results, full_name):
    """Find a test's result whatever prefix smbtorture printed it with."""
    short = short_name(full_name)
    for key in (full_name, short):
        if key in results:
            return results[key]
    for key, result in results.items():
        if key.endswith("." + short) or key.endswith(short):
            return result
    return None


def _in_runtime(runtime, argv):
    return runtime.command(argv) if runtime else argv


class SmbTorture:
    def __init__(self, port, user, conf, runtime=None):
        self.port = port
        self.user = user
        self.conf = conf
        self.runtime = runtime
        self._listed = None

    def has_test(self, full_name):
        """Whether this smbtorture has the test (smbtorture --list SUITE)."""
        suite = full_name.rsplit(".", 1)[0]
        if self._listed is None:
            self._listed = {}
        if suite not in self._listed:
            proc = processes.run(_in_runtime(self.runtime, ["smbtorture", "--list", suite]),
                                 check=False, quiet=True)
            # One line per test: SUITE.TEST.TEST (the test's only subtest).
            self._listed[suite] = {line.strip().rsplit(".", 1)[0]
                                   for line in proc.stdout.splitlines() if line.strip()}
        return full_name in self._listed[suite]

    def run(self, share, tests, options=(), timeout=600):
        """Run tests (full names, e.g. smb2.ioctl.copy_chunk_simple) in one
        smbtorture process. Returns ({full name: TortureResult}, raw output);
        tests without a result line get status 'missing'."""
        argv = ["smbtorture", f"//127.0.0.1/{share}", "-p", str(self.port),
                "--configfile", self.conf, "-U", self.user.credentials,
                "--target=samba3"]
        argv += [f"--option={o}" for o in options]
        argv += list(tests)
        try:
            # smbtorture makes its scratch directory in its working
            # directory, and leaves it there when it is killed.
            proc = processes.run(_in_runtime(self.runtime, argv), timeout=timeout, check=False,
                                 cwd=os.path.dirname(self.conf))
            output, rc = proc.stdout, proc.returncode
        except processes.CommandError as e:  # timeout
            output, rc = e.output, None
        parsed = parse_torture_output(output)
        results = {}
        for test in tests:
            found = lookup(parsed, test)
            if found is None:
                lines = [l for l in output.strip().splitlines()
                         if l.strip() and not l.startswith("time: ")]
                tail = " | ".join(lines[-3:])
                found = TortureResult(test, "missing",
                                      f"no result line (smbtorture exit {rc}): {tail}")
            results[test] = found
        return results, output
