"""(b, d) Responsiveness: an SMB2 ECHO pipelined behind each 16 MiB
COPYCHUNK_WRITE on the same connection. Stock smbd copies in its main loop,
so the echo waits for the copy; with copyoffload the copy goes async and the
echo is answered at once. Echo latency is measured from sending the echo to
its response: from right before the client's send syscall to the kernel's
receive stamp of the response (smb_pipeline.py), so the Python client's own
time on the shared CPUs is not counted.

The servers take turns in rounds, so that what one leaves behind (writeback,
a journal commit) falls on each of them alike. Requests cycle over one
source of at most SOURCE_REQUESTS x 16 MiB, so that a p99 can rest on a few
hundred requests without gigabytes of source."""

import source_files
import stats
from smb_pipeline import PipelinedSession

MIB = 1 << 20
REQUEST_BYTES = 16 * MIB
SOURCE_REQUESTS = 64


def measure(env, server, share, requests, before_run=None):
    """Echo latencies (seconds) and how often the echo was answered first."""
    span = min(requests, SOURCE_REQUESTS)
    src_path, src = source_files.ensure_source(env, share, span * REQUEST_BYTES)
    dst = "echo-copy.bin"
    if before_run:
        before_run(src_path)
    latencies, echo_first = [], 0
    with PipelinedSession(server.port, env.user, share) as s:
        s.stamp_arrivals()
        src_id = s.open(src)
        dst_id = s.open(dst, create=True)
        key = s.resume_key(src_id)
        for r in range(requests):
            base = (r % span) * REQUEST_BYTES
            chunks = [(base + i * MIB, base + i * MIB, MIB) for i in range(16)]
            copy_id = s.send_copychunk_write(dst_id, key, chunks)
            echo_id = s.send_echo()
            answers = s.collect([copy_id, echo_id])
            if answers[copy_id][0] != 0 or answers[echo_id][0] != 0:
                raise RuntimeError(f"request failed: {answers}")
            latencies.append(answers[echo_id][1] - s.sent_at.pop(echo_id))
            echo_first += answers[echo_id][2] < answers[copy_id][2]
        s.close(dst_id)
        s.close(src_id)
    source_files.remove_and_sync(env.path(share, dst))
    return latencies, echo_first


def idle_echo(env, server, share, count=32):
    """Echo latency with nothing else in flight: the floor of the client's
    send syscall, the loopback and smbd together."""
    latencies = []
    with PipelinedSession(server.port, env.user, share) as s:
        s.stamp_arrivals()
        for _ in range(count):
            echo_id = s.send_echo()
            answers = s.collect([echo_id])
            latencies.append(answers[echo_id][1] - s.sent_at.pop(echo_id))
    return stats.median(latencies)


def row(env, share, requests, rounds=1, label=None, before_run=None, target=None):
    """requests per server, in `rounds` turns of requests // rounds each."""
    out = {"share": label or share, "requests": requests,
           "echo alone p50": stats.fmt_seconds(
               idle_echo(env, env.servers["stock"], share))}
    latencies = {kind: [] for kind in env.servers}
    firsts = dict.fromkeys(env.servers, 0)
    for _ in range(rounds):
        for kind, server in env.servers.items():
            lat, first = measure(env, server, share, requests // rounds, before_run)
            latencies[kind] += lat
            firsts[kind] += first
    for kind, lat in latencies.items():
        out[f"{kind} p50"] = stats.fmt_seconds(stats.percentile(lat, 50))
        out[f"{kind} p99"] = stats.fmt_seconds(stats.percentile(lat, 99))
        out[f"{kind} max"] = stats.fmt_seconds(max(lat))
        out[f"{kind} echo first"] = f"{firsts[kind]}/{len(lat)}"
    if target is not None and "copyoffload" in latencies:
        p99 = stats.percentile(latencies["copyoffload"], 99)
        out["copyoffload p99 target"] = (f"<= {stats.fmt_seconds(target)}: "
                                         + ("ok" if p99 <= target else "missed"))
    return out
