"""What a test module hands the runner: named cases bound to a scenario."""

import dataclasses
import typing


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    scenario: typing.Any          # scenario.Scenario
    body: typing.Callable         # body(env, check); raises results.TestFailure
