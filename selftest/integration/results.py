"""Test case results and the one-line-per-test report.

A test body receives a Check. It calls check.fail(reason) to stop with a
failure, check.require(cond, reason) for assertions, check.note(text) to add
information to the PASS line, and check.skipped_in_stock(what) for an
assertion that only makes sense with the module and helper loaded.
"""

import dataclasses
import sys


class TestFailure(Exception):
    pass


@dataclasses.dataclass
class Result:
    name: str
    passed: bool
    reason: str = ""
    notes: list = dataclasses.field(default_factory=list)

    def line(self):
        if self.passed:
            text = f"PASS {self.name}"
            if self.notes:
                text += f" ({'; '.join(self.notes)})"
            return text
        return f"FAIL {self.name}: {self.reason}"


class Check:
    def __init__(self, stock):
        self.stock = stock
        self.notes = []

    def fail(self, reason):
        raise TestFailure(reason)

    def require(self, condition, reason):
        if not condition:
            raise TestFailure(reason)

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
        return sum(1 for r in self.results if not r.passed)

    def summary_line(self):
        return f"{self.passed} passed, {self.failed} failed"

    def success(self):
        return self.failed == 0 and self.passed > 0
