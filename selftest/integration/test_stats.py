"""`copyoffload stats` against the scenario's helper matches the copies it
really made, as its own "copy done" lines record them (scenario "ops").

`FS:stats:match copies`: after scopies on shares with different method
orders (share, rw_only, cfr_first), for every share the current helper
instance logged copies for: requests, errors and bytes, per method and in
total, equal what the log lines add up to; nothing is in flight; the total
latency (receipt to reply) is at least the longest copy's own time; and
the table form lists the same shares.
"""

import ops_support
import scenario
import testcase

MiB = 1 << 20
COPIES = (("share", 8 * MiB), ("rw_only", 2 * MiB), ("cfr_first", MiB + 1))


def match_copies(env, check):
    for share, size in COPIES:
        digest = ops_support.create_file(env, share, "stats.bin", size)
        position = env.helper.log_position()
        ops_support.scopy(env, check, share, "stats.bin", "stats.copy", digest)
        env.helper.wait_for_bytes(position, size)
    records = ops_support.instance_records(env)
    shares = ops_support.stats(env)
    logged = sorted({r.share for r in records})
    for name in ("share", "rw_only", "cfr_first"):
        check.require(name in logged, f"no copies logged for {name}")
    for name in logged:
        check.require(name in shares, f"stats lack share {name!r} (have {sorted(shares)})")
        mine = ops_support.records_for(records, name)
        got = shares[name]
        total = got["total"]
        expected = (len(mine), sum(1 for r in mine if not r.ok), sum(r.bytes for r in mine))
        check.require((total["requests"], total["errors"], total["bytes"]) == expected,
                      f"{name}: stats say requests/errors/bytes "
                      f"{(total['requests'], total['errors'], total['bytes'])}, "
                      f"the log {expected}")
        for method in ("clone", "copy_file_range", "device", "read_write"):
            moved = ops_support.method_bytes(mine, method)
            used = sum(1 for r in mine if getattr(r, method) > 0)
            counted = got["methods"][method]
            check.require(counted["bytes"] == moved,
                          f"{name}/{method}: {counted['bytes']} bytes in stats, {moved} logged")
            if all(r.ok for r in mine):
                check.require(counted["requests"] == used,
                              f"{name}/{method}: {counted['requests']} requests in stats, "
                              f"{used} logged")
        check.require(got["in_flight"] == 0 and got["running"] == 0,
                      f"{name}: {got['in_flight']} in flight, {got['running']} running")
        longest = max(r.usec for r in mine)
        check.require(total["latency_us"]["max"] >= longest,
                      f"{name}: latency max {total['latency_us']['max']} us < the "
                      f"longest copy's {longest} us")
    table = ops_support.run_cli(env, "stats", "--socket", env.helper.socket_path).stdout
    rows = {tuple(line.split()[:2]) for line in table.splitlines()[1:]}
    for name in logged:
        check.require((name or "(none)", "all") in rows, f"the table lacks {name!r}:\n{table}")
    check.note("; ".join(f"{n}: {shares[n]['total']['requests']} copies, "
                         f"{shares[n]['total']['bytes']} bytes" for n in logged))


def cases(fs_type, stock):
    if stock:
        return []
    return [testcase.Case(f"{fs_type}:stats:match copies", scenario.ops(fs_type),
                          match_copies)]
