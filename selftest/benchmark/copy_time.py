"""(a) Time of a whole server-side copy: copyoffload vs stock smbd, and vs a
local copy_file_range of the same file in 1 MiB calls (smbd's chunk size).

Two clients: `smbclient scopy` (wall time of the whole command, including
its connect and logon), and the same request pattern sent on an already
open connection (RESUME_KEY, then COPYCHUNK_WRITE of 16 x 1 MiB chunks per
request, one request at a time), which times the server alone: each request
from its send syscall to its response's arrival, summed.
"""

import os
import subprocess
import time

import source_files
import stats
from smb_pipeline import PipelinedSession

MIB = 1 << 20
CHUNK = MIB
CHUNKS_PER_REQUEST = 16


def timed_smbclient(env, server, share, command):
    """Wall time of one `smbclient -c COMMAND` on the share, from start to
    exit (connect and logon included); any NT status in its output fails."""
    argv = ["smbclient", f"//127.0.0.1/{share}", "-p", str(server.port),
            "-U", env.user.credentials, "-c", command]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "NT_STATUS" in done.stdout + done.stderr:
        raise RuntimeError(f"smbclient {command} failed: {done.stdout}{done.stderr}")
    return elapsed


def smbclient_scopy(env, server, share, src, dst):
    return timed_smbclient(env, server, share, f"scopy {src} {dst}")


def session_scopy_span(env, server, share, src, dst, size, before_start=None,
                       chunks_per_request=CHUNKS_PER_REQUEST):
    """(start, end, server seconds) of size bytes of src copied to dst in
    COPYCHUNK_WRITE requests of chunks_per_request 1 MiB chunks each (smbd's
    and smbclient's 16 unless told) on a session opened beforehand: start and end
    by perf_counter() (the requests are built before the start), the
    server's seconds as the sum of each request's
    time from its send syscall to its response's arrival (smb_pipeline), so
    that the Python client's work between requests is left out.
    before_start() runs once all is open, right before the clock starts."""
    requests, offset = [], 0
    while offset < size:
        chunks = []
        while offset < size and len(chunks) < chunks_per_request:
            length = min(CHUNK, size - offset)
            chunks.append((offset, offset, length))
            offset += length
        requests.append(chunks)
    with PipelinedSession(server.port, env.user, share) as s:
        src_id = s.open(src)
        dst_id = s.open(dst, create=True)
        key = s.resume_key(src_id)
        s.stamp_arrivals()
        # Built before the clock starts, so that it times the server.
        prepared = s.prepare_copychunk_writes(dst_id, key, requests)
        if before_start:
            before_start()
        started = time.perf_counter()
        server_seconds = 0.0
        for chunks, request in zip(requests, prepared):
            written, seconds = s.send_prepared(request)
            if written[2] != sum(c[2] for c in chunks):
                raise RuntimeError(f"COPYCHUNK_WRITE wrote {written}")
            server_seconds += seconds
        ended = time.perf_counter()
        s.close(dst_id)
        s.close(src_id)
    return started, ended, server_seconds


def session_scopy(env, server, share, src, dst, size, chunks_per_request=CHUNKS_PER_REQUEST):
    """The server's seconds of session_scopy_span()."""
    return session_scopy_span(env, server, share, src, dst, size,
                              chunks_per_request=chunks_per_request)[2]


def local_copy_file_range(src_path, dst_path, size):
    with open(src_path, "rb") as src, open(dst_path, "wb") as dst:
        started = time.perf_counter()
        offset = 0
        while offset < size:
            n = os.copy_file_range(src.fileno(), dst.fileno(), min(CHUNK, size - offset),
                                   offset, offset)
            if n <= 0:
                raise RuntimeError(f"copy_file_range returned {n}")
            offset += n
        return time.perf_counter() - started


def measure(env, share, size, runs):
    """{series: median seconds} for one share and size."""
    src_path, src = source_files.ensure_source(env, share, size)
    samples = {"local": []}
    for kind in env.servers:
        samples[f"{kind}:smbclient"] = []
        samples[f"{kind}:session"] = []
    for run in range(runs):
        dst = f"copy-{run}.bin"
        dst_path = env.path(share, dst)
        samples["local"].append(local_copy_file_range(src_path, dst_path, size))
        source_files.remove_and_sync(dst_path)
        for kind, server in env.servers.items():
            samples[f"{kind}:smbclient"].append(
                smbclient_scopy(env, server, share, src, dst))
            source_files.remove_and_sync(dst_path)
            samples[f"{kind}:session"].append(
                session_scopy(env, server, share, src, dst, size))
            source_files.remove_and_sync(dst_path)
    return {k: stats.median(v) for k, v in samples.items()}


def rows(env, shares, sizes, runs, targets):
    """Table rows: share, size, medians and ratios."""
    out = []
    for share in shares:
        for size in sizes:
            m = measure(env, share, size, runs)
            target_stock, target_local = targets(share, size)
            out.append({
                "share": share,
                "size": f"{size // MIB} MiB",
                "stock": stats.fmt_seconds(m["stock:smbclient"]),
                "copyoffload": stats.fmt_seconds(m["copyoffload:smbclient"]),
                "co/stock (smbclient)": stats.fmt_ratio(
                    stats.ratio(m["copyoffload:smbclient"], m["stock:smbclient"]),
                    target_stock),
                "stock (server)": stats.fmt_seconds(m["stock:session"]),
                "copyoffload (server)": stats.fmt_seconds(m["copyoffload:session"]),
                "co/stock (server)": stats.fmt_ratio(
                    stats.ratio(m["copyoffload:session"], m["stock:session"]),
                    target_stock),
                "local cfr": stats.fmt_seconds(m["local"]),
                "co/local (server)": stats.fmt_ratio(
                    stats.ratio(m["copyoffload:session"], m["local"]), target_local),
            })
            for kind in env.servers:
                if kind not in ("stock", "copyoffload"):
                    out[-1][f"{kind} (server)"] = stats.fmt_seconds(m[f"{kind}:session"])
                    out[-1][f"{kind}/stock (server)"] = stats.fmt_ratio(
                        stats.ratio(m[f"{kind}:session"], m["stock:session"]))
    return out
