"""The module with its helper NOT running: copies still work, via the next
module (stock behaviour), and smbd says why in its log.

Checks:
  * scopy of a 1 MiB + 1 file succeeds and the copy is identical;
  * (module mode) smbd's log has a line matching HELPER_DOWN_RE;
  * the helper log does not exist or records no copy.
"""

import os

import helper_daemon
import scenario
import test_scopy
import testcase

HELPER_DOWN_RE = r"copyoffload.*helper.*unavailable"

SIZE_LABEL, SIZE = "1MiB+1", (1 << 20) + 1


def helper_down_case(env, check):
    test_scopy.put_and_scopy(env, check, SIZE_LABEL, SIZE)

    if env.stock:
        check.skipped_in_stock(f"smbd log /{HELPER_DOWN_RE}/i")
    else:
        check.require(not env.helper.running(), "the helper is running")
        lines = env.server.log_matches(HELPER_DOWN_RE)
        check.require(lines, f"no line matching /{HELPER_DOWN_RE}/i in smbd's log "
                             f"({', '.join(env.server.log_files())})")
        check.note(f"smbd log: {lines[0].strip()[:120]}")

        log = env.helper.log_path
        if os.path.exists(log):
            records = helper_daemon.parse_copy_done(env.helper.log_text())
            check.require(not records,
                          f"helper log {log} shows {len(records)} copies")


def cases(fs_type, stock):
    return [testcase.Case(f"{fs_type}:helper_down:scopy {SIZE_LABEL}",
                          scenario.helper_down(fs_type), helper_down_case)]
