"""(c) Aggregate throughput of several clients copying at once, each with
its own smbclient scopy of its own source file."""

import subprocess
import time

import source_files
import stats

MIB = 1 << 20


def measure(env, server, share, clients, size):
    sources = []
    for i in range(clients):
        path, _ = source_files.ensure_source(env, share, size + i * MIB)
        sources.append(path)
    names = [p.rsplit("/", 1)[1] for p in sources]
    started = time.perf_counter()
    procs = [subprocess.Popen(
        ["smbclient", f"//127.0.0.1/{share}", "-p", str(server.port),
         "-U", env.user.credentials, "-c", f"scopy {name} parallel-{i}.bin"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i, name in enumerate(names)]
    outputs = [p.communicate()[0] for p in procs]
    elapsed = time.perf_counter() - started
    for p, out in zip(procs, outputs):
        if p.returncode != 0 or "NT_STATUS" in out:
            raise RuntimeError(f"parallel scopy failed: {out}")
    total = sum(size + i * MIB for i in range(clients))
    source_files.remove_and_sync(*[env.path(share, f"parallel-{i}.bin")
                                   for i in range(clients)])
    return total / elapsed


def row(env, share, clients, size, runs, target):
    out = {"share": share, "clients": f"{clients} x {size // MIB} MiB"}
    medians = {}
    for kind, server in env.servers.items():
        medians[kind] = stats.median([measure(env, server, share, clients, size)
                                      for _ in range(runs)])
        out[f"{kind} MiB/s"] = f"{medians[kind] / MIB:.0f}"
    # A throughput: higher is better, so the target is a lower bound.
    r = stats.ratio(medians["copyoffload"], medians["stock"])
    out["co/stock"] = f"{r:.2f}x" + (" (ok)" if r >= target else f" (target >= {target:.2f}x missed)")
    return out
