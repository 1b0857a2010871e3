"""Load: many clients copying at once across ext4 and XFS, nothing lost, the
helper's resources bounded.

Scenario "load" (scenario.LOAD_SHARES): `share` on the ext4 scenario
filesystem, `xfs` on an XFS of its own (reflink=1). Each share gets
SOURCES files of mixed sizes (0 B to 8 MiB + 7, aligned and not).

Case `ext4:load:CLIENTS clients x COPIES copies (ext4+xfs)`: CLIENTS
smbclient processes at once, half on each share, each running COPIES scopy
of those sources, one after the other in one session. Checks:
  * every client exits 0 with no NT status, every copy has its source's
    size and sha256;
  * the helper logged no failed copy, and its successful copies add up to
    exactly the bytes copied (nothing fell back to smbd);
  * while it ran, the helper never held more descriptors than it had
    before plus one connection and one copy's two descriptors per client
    (each smbd process has at most one chunk in flight), nor more than
    RSS_GROWTH_KIB of resident memory beyond what it had before;
  * afterwards its descriptor count is back where it started.

Soak: with COPYOFFLOAD_SOAK_SECONDS set (scripts/soak), the case repeats
rounds of the same load until that many seconds have passed, removing each
round's copies, and also fails if the helper's memory after a round grows
by more than RSS_GROWTH_KIB over the first round (a leak).
"""

import hashlib
import os
import time

import client_processes
import proc_stats
import scenario
import test_scopy
import testcase

MiB = 1 << 20
CLIENTS = 8
COPIES = 50
SHARES = ("share", "xfs")
SIZES = (0, 1, 4095, 4096, 65536 + 3, MiB, MiB + 1, 3 * MiB + 17, 4 * MiB, 8 * MiB + 7)
RSS_GROWTH_KIB = 32 * 1024
SOAK_VARIABLE = "COPYOFFLOAD_SOAK_SECONDS"


def make_sources(env, share):
    """SIZES files of random bytes in share; returns [(name, size, sha256)]."""
    sources = []
    for index, size in enumerate(SIZES):
        name = f"load-src-{index}.bin"
        data = os.urandom(size)
        path = env.share_path(share, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chown(path, env.user.uid, env.user.gid)
        sources.append((name, size, hashlib.sha256(data).hexdigest()))
    return sources


def client_plan(client, sources, round_index):
    """The (source, copy name) pairs one client copies, in order."""
    return [(sources[(client + n) % len(sources)],
             f"load-r{round_index}-c{client}-{n}.copy") for n in range(COPIES)]


def run_round(env, check, sources, round_index):
    """One round of CLIENTS x COPIES; returns the helper's peaks."""
    pid = env.helper.proc.pid
    base_fds = proc_stats.descriptor_count(pid)
    base_rss = proc_stats.rss_kib(pid)
    position = env.helper.log_position()
    plans = []
    with proc_stats.Sampler(pid) as sampler, \
            client_processes.ClientProcesses(env, f"load-r{round_index}") as clients:
        for client in range(CLIENTS):
            share = SHARES[client % len(SHARES)]
            plan = client_plan(client, sources[share], round_index)
            plans.append((share, plan))
            clients.start(share, [f"scopy {src[0]} {copy}" for src, copy in plan])
        results = clients.wait(timeout=600)

    for (share, plan), result in zip(plans, results):
        check.require(result.ok, f"a client on {share} failed: {result.describe()}")
    copied = 0
    for share, plan in plans:
        for (name, size, digest), copy in plan:
            path = env.share_path(share, copy)
            check.require(os.path.getsize(path) == size and
                          test_scopy.sha256_file(path) == digest,
                          f"{share}/{copy} differs from {name}")
            copied += size
    summary = env.helper.wait_for_bytes(position, copied, timeout=10)
    check.require(not summary.failed and summary.bytes_ok == copied,
                  f"helper: {summary.describe()}; expected {copied} bytes, none failed")

    bound = base_fds + CLIENTS * 3
    check.require(sampler.max_descriptors <= bound,
                  f"the helper held up to {sampler.max_descriptors} descriptors "
                  f"({base_fds} before, at most {bound} expected)")
    check.require(sampler.max_rss_kib <= base_rss + RSS_GROWTH_KIB,
                  f"the helper's RSS reached {sampler.max_rss_kib} KiB "
                  f"({base_rss} KiB before)")
    released = proc_stats.wait_for(lambda: proc_stats.descriptor_count(pid) == base_fds, 30)
    check.require(released, f"the helper holds {proc_stats.descriptor_count(pid)} "
                            f"descriptors after the load, {base_fds} before")
    for share, plan in plans:
        for _, copy in plan:
            os.unlink(env.share_path(share, copy))
    return sampler, summary, proc_stats.rss_kib(pid)


def load_case(env, check):
    sources = {share: make_sources(env, share) for share in SHARES}
    soak = float(os.environ.get(SOAK_VARIABLE, "0"))
    started = time.monotonic()
    first_rss = None
    rounds = 0
    peak_fds = peak_rss = 0
    while True:
        sampler, summary, rss = run_round(env, check, sources, rounds)
        rounds += 1
        peak_fds = max(peak_fds, sampler.max_descriptors)
        peak_rss = max(peak_rss, sampler.max_rss_kib)
        if first_rss is None:
            first_rss = rss
        check.require(rss <= first_rss + RSS_GROWTH_KIB,
                      f"the helper's RSS grew from {first_rss} KiB after round 1 to "
                      f"{rss} KiB after round {rounds}")
        if soak:
            print(f"  soak round {rounds}: {summary.describe()}; helper peaks "
                  f"{sampler.max_descriptors} descriptors, {sampler.max_rss_kib} KiB; "
                  f"RSS after {rss} KiB", flush=True)
        if time.monotonic() - started >= soak:
            break
    check.note(f"{rounds} round(s) of {CLIENTS}x{COPIES}; helper peaks {peak_fds} "
               f"descriptors, {peak_rss} KiB RSS")


def cases(fs_type, stock):
    if fs_type != "ext4" or stock:
        return []
    return [testcase.Case(f"{fs_type}:load:{CLIENTS} clients x {COPIES} copies (ext4+xfs)",
                          scenario.load(fs_type), load_case)]
