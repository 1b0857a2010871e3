"""(f) What a client pays to reach a share: `smbclient -c pwd`, from start to
exit (negotiate, session setup, tree connect, which loads the share's VFS
modules, then disconnect), on each server in turns."""

import copy_time
import stats


def row(env, share, runs):
    samples = {kind: [] for kind in env.servers}
    for _ in range(runs):
        for kind, server in env.servers.items():
            samples[kind].append(copy_time.timed_smbclient(env, server, share, "pwd"))
    medians = {kind: stats.median(times) for kind, times in samples.items()}
    out = {"share": share, "connections": runs}
    for kind, value in medians.items():
        out[kind] = stats.fmt_seconds(value)
    out["co - stock"] = f"{(medians['copyoffload'] - medians['stock']) * 1e3:+.1f} ms"
    out["co/stock"] = stats.fmt_ratio(stats.ratio(medians["copyoffload"], medians["stock"]))
    return out
