"""Wide joins: the readiness shortcuts (known-taken edges, waiting at the first open edge) decide
exactly what a full scan decides, whatever order the joined steps end in and however they end."""

from __future__ import annotations

import itertools
import json

import pytest

from engine_sim import Sim
from wayang.engine.decide import decide
from wayang.engine.messages import TaskFinished
from wayang.engine.state import StepStatus


def _wide(width: int, join: str, continues: tuple[bool, ...], skip_first: bool = False) -> str:
    lines = ['id = "wide"', "[parameters.flag]", 'type = "boolean"', "default = true"]
    for index in range(width):
        lines += [f"[steps.w{index}]", 'run = "true"']
        if continues[index]:
            lines.append("continue_on_error = true")
        if skip_first and index == 0:
            lines.append('when = "not params.flag"')  # skipped at the start: a dead edge
    needs = json.dumps([f"w{index}" for index in range(width)])
    lines += ["[steps.join]", f"needs = {needs}", 'run = "true"', f"join = {join}"]
    return "\n".join(lines) + "\n"


Case = tuple[int, str, tuple[int, ...], tuple[bool, ...], tuple[bool, ...], bool]


def _cases() -> list[Case]:
    """Every order in which 3 joined steps can end, every way they can end, every join rule."""
    width = 3
    outcomes = list(itertools.product((False, True), repeat=width))
    return [
        (width, join, order, fails, continues, skip_first)
        for join in ('"all"', '"any"', "2")
        for order in itertools.permutations(range(width))
        for fails in outcomes
        for continues in ((False,) * width, (True, False, False))
        for skip_first in (False, True)
    ]


@pytest.mark.parametrize("case", _cases())
def test_a_join_decides_as_a_full_scan_would(case: Case) -> None:
    width, join, order, fails, continues, skip_first = case
    sim = Sim.begin(_wide(width, join, continues, skip_first))
    for index in order:
        task = next((t for t in sim.tasks.values() if t.step_id == f"w{index}"), None)
        if task is None:  # skipped, or never started because the run failed
            continue
        status = "failed" if fails[index] else "succeeded"
        message = TaskFinished(task.step_id, task.attempt, status)
        # The same input decided on a state fresh from the history (no memo): the same answer.
        fresh = decide(sim.run, sim.refold(), message, sim.now)
        del sim.tasks[task.task_id]
        live = sim.send(message)
        assert live.events == fresh.events
        assert live.commands == fresh.commands
    assert sim.state.step("join").status in (StepStatus.SCHEDULED, StepStatus.SKIPPED)


def test_a_wide_join_waits_then_runs_and_a_failure_skips_it() -> None:
    width = 200
    needs = json.dumps([f"w{i}" for i in range(width)])
    steps = "".join(f'[steps.w{i}]\nrun = "true"\n' for i in range(width))
    sim = Sim.begin(f'id = "fan"\n{steps}[steps.join]\nneeds = {needs}\nrun = "true"\n')
    for index in reversed(range(width - 1)):  # out of order: the memo cannot run ahead
        sim.finish(f"w{index}")
        assert sim.state.step("join").status is StepStatus.PENDING
    sim.finish(f"w{width - 1}")
    assert sim.state.step("join").status is StepStatus.SCHEDULED

    failing = Sim.begin(f'id = "fan"\n{steps}[steps.join]\nneeds = {needs}\nrun = "true"\n')
    for index in range(width):
        failing.finish(f"w{index}", "failed" if index == 150 else "succeeded")
    join = failing.state.step("join")
    assert join.status is StepStatus.SKIPPED
