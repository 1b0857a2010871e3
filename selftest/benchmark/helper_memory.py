"""Helper memory with many copies in flight: sessions each pipelining
several 16 MiB COPYCHUNK_WRITE requests to distinct destinations, then the
helper's peak resident set (VmHWM) from /proc."""

import source_files
from smb_pipeline import PipelinedSession

MIB = 1 << 20


def _status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing for pid {pid}")


def measure(env, share, sessions, per_session):
    server = env.servers["copyoffload"]
    _, src = source_files.ensure_source(env, share, 16 * MIB)
    chunks = [(i * MIB, i * MIB, MIB) for i in range(16)]
    opened = []
    try:
        pending = []
        for n in range(sessions):
            s = PipelinedSession(server.port, env.user, share)
            opened.append(s)
            key = s.resume_key(s.open(src))
            # Every file opened before the first copy is sent: a copy's
            # response that arrived while the client waited for an open's
            # would be taken by impacket's wait, not by collect().
            destinations = [s.open(f"rss-{n}-{k}.bin", create=True)
                            for k in range(per_session)]
            ids = [s.send_copychunk_write(dst, key, chunks) for dst in destinations]
            pending.append((s, ids))
        for s, ids in pending:
            answers = s.collect(ids)
            if any(answer[0] != 0 for answer in answers.values()):
                raise RuntimeError(f"copy failed: {answers}")
    finally:
        for s in opened:
            s.conn.close()
    source_files.remove_and_sync(*[env.path(share, f"rss-{n}-{k}.bin")
                                   for n in range(sessions) for k in range(per_session)])
    pid = env.helper.proc.pid
    return _status_kib(pid, "VmHWM"), _status_kib(pid, "VmRSS")


def row(env, share, sessions, per_session, target_mib):
    peak, now = measure(env, share, sessions, per_session)
    return {"share": share,
            "copies in flight": f"{sessions} sessions x {per_session}",
            "helper peak RSS": f"{peak / 1024:.1f} MiB",
            "helper RSS after": f"{now / 1024:.1f} MiB",
            "target": f"<= {target_mib} MiB: " + ("ok" if peak / 1024 <= target_mib else "missed")}
