"""(e) Per-chunk overhead: COPYCHUNK_WRITE requests of 256 chunks of 4 KiB,
the worst case for a design that makes a round trip per chunk. In file
order the chunks continue each other, and copyoffload copies them with one
helper request (copyoffload:merge chunks); in reverse order none continues
the one before it, so each is a request of its own."""

import source_files
import stats
from smb_pipeline import PipelinedSession

KIB = 1 << 10
CHUNKS = 256
CHUNK = 4 * KIB


def measure(env, server, share, requests, reverse):
    _, src = source_files.ensure_source(env, share, 1 << 20)
    dst = "chunks-copy.bin"
    with PipelinedSession(server.port, env.user, share) as s:
        src_id = s.open(src)
        dst_id = s.open(dst, create=True)
        key = s.resume_key(src_id)
        s.stamp_arrivals()
        chunks = [(i * CHUNK, i * CHUNK, CHUNK) for i in range(CHUNKS)]
        if reverse:
            chunks.reverse()
        times = []
        for _ in range(requests):
            written, seconds = s.copychunk_write_stamped(dst_id, key, chunks)
            times.append(seconds)
            if written[0] != CHUNKS:
                raise RuntimeError(f"COPYCHUNK_WRITE wrote {written}")
        s.close(dst_id)
        s.close(src_id)
    source_files.remove_and_sync(env.path(share, dst))
    return stats.median(times)


def row(env, share, requests, reverse=False):
    order = "reverse order" if reverse else "file order"
    out = {"share": share, "request": f"{CHUNKS} x {CHUNK // KIB} KiB, {order}"}
    medians = {}
    for kind, server in env.servers.items():
        medians[kind] = measure(env, server, share, requests, reverse)
        out[f"{kind} per chunk"] = stats.fmt_seconds(medians[kind] / CHUNKS)
    out["co/stock"] = stats.fmt_ratio(stats.ratio(medians["copyoffload"], medians["stock"]))
    return out
