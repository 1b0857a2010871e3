"""(c) Aggregate throughput of several clients copying at once, each its own
source file, measured two ways:

  smbclient: each client an `smbclient -c scopy`, timed from the first
             start to the last exit (connect and logon included: with
             256 MiB that is a large share of the time, and a noisy one);
  sessions:  each client an SMB session connected and logged on beforehand,
             in a thread of its own, sending COPYCHUNK_WRITE requests of
             16 x 1 MiB built before the start (impacket's half a
             millisecond per request, under Python's global lock, was
             most of the time); timed from a common start to the last
             response.

The servers take turns run by run, so that drift falls on each alike."""

import subprocess
import threading
import time

import copy_time
import source_files
import stats

MIB = 1 << 20


def _sources(env, share, clients, size):
    """Per client: (its source's name on share, its size)."""
    out = []
    for i in range(clients):
        path, name = source_files.ensure_source(env, share, size + i * MIB)
        out.append((name, size + i * MIB))
    return out


def _remove_copies(env, share, clients):
    source_files.remove_and_sync(*[env.path(share, f"parallel-{i}.bin")
                                   for i in range(clients)])


def measure_smbclient(env, server, share, clients, size):
    sources = _sources(env, share, clients, size)
    started = time.perf_counter()
    procs = [subprocess.Popen(
        ["smbclient", f"//127.0.0.1/{share}", "-p", str(server.port),
         "-U", env.user.credentials, "-c", f"scopy {name} parallel-{i}.bin"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i, (name, _) in enumerate(sources)]
    outputs = [p.communicate()[0] for p in procs]
    elapsed = time.perf_counter() - started
    for p, out in zip(procs, outputs):
        if p.returncode != 0 or "NT_STATUS" in out:
            raise RuntimeError(f"parallel scopy failed: {out}")
    _remove_copies(env, share, clients)
    return sum(n for _, n in sources) / elapsed


def measure_sessions(env, server, share, clients, size):
    sources = _sources(env, share, clients, size)
    start = threading.Barrier(clients + 1)
    finished = [None] * clients
    errors = []

    def client(i, name, nbytes):
        try:
            _, finished[i], _ = copy_time.session_scopy_span(
                env, server, share, name, f"parallel-{i}.bin", nbytes,
                before_start=start.wait)
        except BaseException as e:  # reported below, after the others
            errors.append(e)
            start.abort()

    threads = [threading.Thread(target=client, args=(i, name, n))
               for i, (name, n) in enumerate(sources)]
    for t in threads:
        t.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        pass
    started = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"parallel session copy failed: {errors[0]}")
    _remove_copies(env, share, clients)
    return sum(n for _, n in sources) / (max(finished) - started)


def row(env, share, clients, size, runs, target):
    out = {"share": share, "clients": f"{clients} x {size // MIB} MiB"}
    ways = {"smbclient": measure_smbclient, "sessions": measure_sessions}
    samples = {(way, kind): [] for way in ways for kind in env.servers}
    for _ in range(runs):
        for kind, server in env.servers.items():
            for way, measure in ways.items():
                samples[way, kind].append(measure(env, server, share, clients, size))
    for way in ways:
        medians = {kind: stats.median(samples[way, kind]) for kind in env.servers}
        for kind, value in medians.items():
            out[f"{kind} MiB/s ({way})"] = f"{value / MIB:.0f}"
        # A throughput: higher is better, so the target is a lower bound.
        r = stats.ratio(medians["copyoffload"], medians["stock"])
        out[f"co/stock ({way})"] = f"{r:.2f}x" + (
            " (ok)" if r >= target else f" (target >= {target:.2f}x missed)")
    return out
