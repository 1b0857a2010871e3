"""(g) Linux's client pattern: one 1 MiB chunk per COPYCHUNK_WRITE.

Linux's SMB3 client (cifs.ko) turns copy_file_range into requests of one
1 MiB chunk each and sends the next only after the reply, so no chunks
merge and every chunk is a round trip to the helper (docs/performance.md).
The same requests on an open session, the server timed as in section a;
the servers take turns run by run, so that neither always runs on the
page cache the other left behind.
"""

import copy_time
import source_files
import stats

MIB = 1 << 20


def row(env, share, size, runs):
    _, src = source_files.ensure_source(env, share, size)
    kinds = list(env.servers)
    samples = {kind: [] for kind in kinds}
    for run in range(runs):
        for kind in (kinds if run % 2 == 0 else reversed(kinds)):
            dst = f"single-chunks-{run}.bin"
            samples[kind].append(copy_time.session_scopy(
                env, env.servers[kind], share, src, dst, size, chunks_per_request=1))
            source_files.remove_and_sync(env.path(share, dst))
    medians = {kind: stats.median(values) for kind, values in samples.items()}
    requests = size // MIB
    out = {"share": share, "size": f"{requests} MiB", "requests": requests}
    for kind in kinds:
        out[kind] = stats.fmt_seconds(medians[kind])
        out[f"{kind} per request"] = stats.fmt_seconds(medians[kind] / requests)
    for kind in kinds:
        if kind != "stock":
            out[f"{kind}/stock"] = stats.fmt_ratio(stats.ratio(medians[kind], medians["stock"]))
    return out
