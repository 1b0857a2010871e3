"""Test case results and the one-line-per-test report.

A test body receives a Check. It calls check.fail(reason) to stop with a
failure, check.require(cond, reason) for assertions, check.note(text) to add
information to the PASS line, check.skipped_in_stock(what) for an
assertion that only makes sense with the module and helper loaded, and
check.expected_skip(reason) to end the case as `SKIP name: reason`: a skip
the test itself proved to be the right outcome (e.g. smbtorture skipped a
test for exactly the reason this share should make it skip). An expected skip
counts neither as passed nor as failed; the summary line stays
"N passed, N failed" (scripts/test parses it), preceded by
"N skipped (expected)" when there were any.
"""

import dataclasses
import sys


class TestFailure(Exception):
    pass


class ExpectedSkip(Exception):
    pass


PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclasses.dataclass
class Result:
    name: str
    status: str   # PASS, FAIL or SKIP (expected skip)
    reason: str = ""
    notes: list = dataclasses.field(default_factory=list)

    @property
    def passed(self):
        return self.status == PASS

    def line(self):
        if self.status == PASS:
            text = f"PASS {self.name}"
            if self.notes:
                text += f" ({'; '.join(self.notes)})"
            return text
        return f"{self.status} {self.name}: {self.reason}"


class Check:
    def __init__(self, stock):
        self.stock = stock
        self.notes = []

    def fail(self, reason):
        raise TestFailure(reason)

    def require(self, condition, reason):
        if not condition:
            raise TestFailure(reason)

    def expected_skip(self, reason):
        """End the case as an expected skip (SKIP line, not a pass)."""
        raise ExpectedSkip(reason)

    def note(self, text):
        self.notes.append(text)

    def skipped_in_stock(self, what):
        """Record that an assertion was skipped because we run stock Samba."""
        self.notes.append(f"skipped (stock): {what}")


class Reporter:
    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.results = []

    def record(self, result):
        self.results.append(result)
        print(result.line(), file=self.stream, flush=True)

    @property
    def passed(self):
        return sum(1 for r in self.results if r.passed)

    @property
    def failed(self):
        return sum(1 for r in self.results if r.status == FAIL)

    @property
    def skipped(self):
        return sum(1 for r in self.results if r.status == SKIP)

    def summary_lines(self):
        lines = [f"{self.skipped} skipped (expected)"] if self.skipped else []
        return lines + [f"{self.passed} passed, {self.failed} failed"]

    def success(self):
        return self.failed == 0 and self.passed > 0
