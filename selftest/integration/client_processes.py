"""Many smbclient runs at once, each its own process, that a test may also
kill mid-copy.

    with ClientProcesses(env) as clients:
        a = clients.start("share", ["scopy a b"])
        ...
        clients.kill(a)            # SIGKILL, as a client vanishing would
    results = clients.results      # SmbClientResult per started client

Each client runs in a session of its own with its output in a file under
the scenario's scratch directory. Clients still running when the block ends
(normally or not) are killed by PID; the block waits for all of them.
"""

import os
import signal
import subprocess
import time

import cleanup
import processes


class ClientProcesses:
    def __init__(self, env, name="client"):
        self.env = env
        self.name = name
        self.procs = []
        self.outputs = []
        self.results = []
        self._token = None

    def __enter__(self):
        self._token = cleanup.register(f"kill {self.name} processes", self._kill_all)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._kill_all()
        if len(self.results) != len(self.procs):
            self.wait()
        token, self._token = self._token, None
        cleanup.forget(token)
        return False

    def start(self, share, commands):
        """Starts smbclient -c commands on share; returns its index."""
        index = len(self.procs)
        output = os.path.join(self.env.scratch, f"{self.name}-{index}.out")
        argv = self.env.smbclient.command(share, commands)
        processes._log(f"$ {' '.join(argv)} >{output} 2>&1 &")
        with cleanup.critical(), open(output, "wb") as out:
            self.procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                               stderr=subprocess.STDOUT,
                                               start_new_session=True))
        self.outputs.append(output)
        return index

    def pid(self, index):
        return self.procs[index].pid

    def running(self, index):
        return self.procs[index].poll() is None

    def kill(self, index):
        if self.procs[index].poll() is None:
            os.kill(self.procs[index].pid, signal.SIGKILL)

    def _kill_all(self):
        for index in range(len(self.procs)):
            self.kill(index)

    def wait(self, timeout=300):
        """Waits for every client (killing what is left after timeout) and
        fills self.results."""
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        self.results = []
        for proc, output in zip(self.procs, self.outputs):
            with open(output, encoding="utf-8", errors="replace") as f:
                text = f.read()
            processes._log(f"[{self.name} pid {proc.pid}: exit {proc.returncode}]\n{text}")
            self.results.append(self.env.smbclient.result(proc.returncode, text))
        return self.results
