"""What the operations tests (options, restart, stats, probe) share: the
copyoffload tool next to the helper binary, files on a share, server-side
copies, and the helper's log since its current instance started."""

import hashlib
import json
import os

import helper_daemon
import processes
import test_scopy


def cli_path(env):
    """The copyoffload tool built next to copyoffloadd."""
    return os.path.join(os.path.dirname(env.options.helper_path), "copyoffload")


def run_cli(env, *args, check=True):
    """Runs the tool; a CompletedProcess (stdout and stderr together)."""
    return processes.run([cli_path(env), *args], check=check, timeout=120)


def cli_json(env, *args):
    return json.loads(run_cli(env, *args, "--json").stdout)


def stats(env):
    """copyoffload stats of the scenario's helper, by share name."""
    report = cli_json(env, "stats", "--socket", env.helper.socket_path)
    return {share["name"]: share for share in report["shares"]}


def create_file(env, share, name, size):
    """size random bytes in share/name, owned by the test user; returns
    their sha256."""
    path = env.share_path(share, name)
    data = os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, env.user.uid, env.user.gid)
    return hashlib.sha256(data).hexdigest()


def scopy(env, check, share, name, copy, expected_sha256):
    """smbclient scopy share/name -> share/copy; the copy must be exact."""
    result = env.smbclient.run(share, [f"scopy {name} {copy}"])
    check.require(result.ok, f"scopy on {share}: {result.describe()}")
    actual = test_scopy.sha256_file(env.share_path(share, copy))
    check.require(actual == expected_sha256, f"{share}/{copy} differs from {name} (sha256)")


def instance_log(env):
    """The helper's log written by its current instance (the log file is
    appended to across restarts)."""
    text = env.helper.log_text()
    start = text.rfind("info: listening on ")
    return text[text.rfind("\n", 0, start) + 1:] if start >= 0 else text


def instance_records(env):
    return helper_daemon.parse_copy_done(instance_log(env))


def records_for(records, share):
    return [r for r in records if r.share == share]


def method_bytes(records, method):
    return sum(getattr(r, method) for r in records)
