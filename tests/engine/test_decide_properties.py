"""Properties of the core under random workflows and random orders of what happens.

Invariants: the state always equals the fold of the history (so recovery, which refolds, sees
what the live engine saw); no attempt is dispatched twice; a step is dispatched only after what it
needs has settled; attempts never exceed the retry policy; and once every task and timer has been
answered, every run has finished with every step settled.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine_sim import Sim
from wayang.engine.messages import CancelRun, TaskFinished, TimerFired
from wayang.engine.state import TERMINAL_STEP, StepStatus


@st.composite
def workflows(draw: st.DrawFn) -> str:
    count = draw(st.integers(1, 12))
    lines = ['id = "prop"', "[parameters.flag]", 'type = "boolean"', "default = true"]
    for index in range(count):
        needs = draw(st.lists(st.integers(0, index - 1), unique=True, max_size=3)) if index else []
        lines.append(f"[steps.s{index}]")
        lines.append(f"needs = {json.dumps([f's{n}' for n in needs])}")
        lines.append('run = "true"')
        attempts = draw(st.integers(1, 3))
        lines.append(f'retry = {{ attempts = {attempts}, delay = "1s" }}')
        if draw(st.booleans()):
            lines.append("continue_on_error = true")
        if draw(st.integers(0, 4)) == 0:
            lines.append('when = "not params.flag"')
    return "\n".join(lines) + "\n"


actions = st.lists(
    st.tuples(
        st.sampled_from(["ok", "fail", "timeout", "dup", "timer", "cancel"]), st.integers(0, 50)
    ),
    max_size=60,
)


def check_invariants(sim: Sim) -> None:
    assert sim.refold() == sim.state
    ids = [t.task_id for t in sim.dispatched]
    assert len(ids) == len(set(ids))
    for step_id, step in sim.state.steps.items():
        assert step.attempt <= sim.run.steps[step_id].retry.attempts


def step(sim: Sim, action: str, pick: int) -> None:
    tasks = list(sim.tasks.values())
    if action in ("ok", "fail", "timeout") and tasks:
        task = tasks[pick % len(tasks)]
        for need in sim.run.steps[task.step_id].needs:
            assert sim.state.steps[need].status in TERMINAL_STEP
        del sim.tasks[task.task_id]
        status = {"ok": "succeeded", "fail": "failed", "timeout": "timed_out"}[action]
        sim.send(
            TaskFinished(task.step_id, task.attempt, status, {}, None if action == "ok" else "x")
        )
    elif action == "dup" and sim.dispatched:
        old = sim.dispatched[pick % len(sim.dispatched)]
        sim.send(TaskFinished(old.step_id, old.attempt, "succeeded"))
    elif action == "timer" and sim.timers:
        timer = sorted(sim.timers.values(), key=lambda t: t.due_at)[0]
        sim.now = max(sim.now, timer.due_at)
        sim.send(TimerFired(timer.timer_id, timer.kind, timer.step_id, timer.attempt))
    elif action == "cancel" and pick % 5 == 0:
        sim.send(CancelRun())


def drain(sim: Sim) -> None:
    """Answer every outstanding task (successfully) and timer until nothing is left."""
    for _ in range(1000):
        if sim.tasks:
            task = next(iter(sim.tasks.values()))
            del sim.tasks[task.task_id]
            sim.send(TaskFinished(task.step_id, task.attempt, "succeeded"))
        elif sim.timers:
            step(sim, "timer", 0)
        else:
            return
        check_invariants(sim)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflows(), actions, st.integers(0, 4))
def test_random_runs_keep_the_invariants_and_always_finish(
    text: str, plan: list[tuple[str, int]], parallel: int
) -> None:
    sim = Sim.begin(text, parallel=parallel, timeout_s=None)
    check_invariants(sim)
    for action, pick in plan:
        step(sim, action, pick)
        check_invariants(sim)
    drain(sim)
    assert sim.state.finished, sim.statuses()
    assert all(s.status in TERMINAL_STEP for s in sim.state.steps.values())
    assert set(sim.state.steps) == set(sim.run.steps)
    if sim.state.status == "succeeded":
        assert not any(
            s.status is StepStatus.FAILED and not sim.run.steps[k].continue_on_error
            for k, s in sim.state.steps.items()
        )


@settings(max_examples=100, deadline=None)
@given(workflows(), actions)
def test_restarting_from_any_point_reaches_the_same_state(
    text: str, plan: list[tuple[str, int]]
) -> None:
    """A crash between decisions is a refold: a fresh state from history decides identically."""
    sim = Sim.begin(text)
    for action, pick in plan:
        step(sim, action, pick)
        restored = sim.refold()
        assert restored == sim.state
        sim.state = restored


@settings(max_examples=100, deadline=None)
@given(workflows(), actions, st.integers(1, 3))
def test_under_a_parallel_limit_the_held_back_steps_go_as_a_refold_would_send_them(
    text: str, plan: list[tuple[str, int]], parallel: int
) -> None:
    """The decider keeps the steps a parallel limit held back from one decision to the next
    (``state.ready_hint``); a state refolded from history has none and looks at every step.
    Both must dispatch the same steps in the same order."""
    kept, refolded = (Sim.begin(text, parallel=parallel, timeout_s=None) for _ in range(2))
    for action, pick in plan:
        step(kept, action, pick)
        step(refolded, action, pick)
        refolded.state = refolded.refold()
    drain(kept)
    drain(refolded)
    assert [(d.step_id, d.attempt) for d in kept.dispatched] == [
        (d.step_id, d.attempt) for d in refolded.dispatched
    ]
    assert kept.state == refolded.state
