"""The pure engine core: scheduling, skips, retries, failures, cancellation, timeouts."""

from __future__ import annotations

from engine_sim import Sim
from wayang.engine import events as ev
from wayang.engine.decide import retry_delay
from wayang.engine.messages import CancelRun, DeadLetter, StopTask, TaskFinished, TimerFired, Wake
from wayang.model.plan import RetryPolicy

CHAIN = """
id = "c"
[steps.a]
run = "echo a"
[steps.b]
needs = ["a"]
run = "echo ${{ steps.a.outputs.v }} ${{ run.attempt }}"
[steps.c]
needs = ["b"]
run = "echo c"
"""


def test_chain_runs_in_order_and_outputs_flow() -> None:
    sim = Sim.begin(CHAIN)
    assert [t.step_id for t in sim.tasks.values()] == ["a"]
    sim.finish("a", v="hello world")
    [task] = sim.tasks.values()
    assert task.payload["command"] == "echo 'hello world' 1"
    assert task.idempotency_key == "r1/b" and task.task_id == "r1/b/1"
    sim.finish("b")
    sim.finish("c")
    assert sim.state.status == "succeeded"
    assert sim.statuses() == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    assert isinstance(sim.history[-1], ev.RunSucceeded)
    assert sim.refold() == sim.state


def test_fanout_respects_the_parallel_limit() -> None:
    steps = "".join(f'[steps.s{i}]\nrun = "true"\n' for i in range(5))
    sim = Sim.begin(
        'id = "f"\n' + steps + '[steps.join]\nneeds = ["s0","s1","s2","s3","s4"]\nrun = "true"\n',
        parallel=2,
    )
    assert len(sim.tasks) == 2
    sim.finish("s0")
    assert len(sim.tasks) == 2
    for step in ("s1", "s2", "s3", "s4"):
        sim.finish(step)
    assert [t.step_id for t in sim.tasks.values()] == ["join"]


def test_when_false_skips_and_skips_propagate() -> None:
    sim = Sim.begin(
        """
        id = "w"
        [parameters.go]
        type = "boolean"
        default = false
        [steps.a]
        when = "params.go"
        run = "x"
        [steps.b]
        needs = ["a"]
        run = "x"
        [steps.c]
        run = "x"
        """
    )
    assert sim.statuses()["a"] == "skipped" and sim.statuses()["b"] == "skipped"
    assert sim.state.steps["b"].reason == "needs 'a', which was skipped"
    sim.finish("c")
    assert sim.state.status == "succeeded"


def test_retry_with_backoff_then_success() -> None:
    sim = Sim.begin(
        'id = "r"\n[steps.a]\nrun = "x"\nretry = { attempts = 3, delay = "2s", jitter = false }\n'
    )
    sim.finish("a", "failed")
    assert sim.statuses()["a"] == "retrying" and not sim.tasks
    [timer] = sim.timers.values()
    assert timer.due_at == 2.0
    sim.fire_timers()
    [task] = sim.tasks.values()
    assert task.attempt == 2 and task.idempotency_key == "r1/a"
    sim.finish("a", "failed")
    assert next(iter(sim.timers.values())).due_at == sim.now + 4.0
    sim.fire_timers()
    sim.finish("a")
    assert sim.state.status == "succeeded" and sim.state.steps["a"].attempt == 3


def test_exhausted_retries_dead_letter_and_fail_the_run() -> None:
    sim = Sim.begin('id = "r"\n[steps.a]\nrun = "x"\n[steps.b]\nneeds = ["a"]\nrun = "x"\n')
    decision = sim.finish("a", "failed")
    assert any(isinstance(c, DeadLetter) for c in decision.commands)
    assert sim.state.status == "failed"
    assert sim.statuses() == {"a": "failed", "b": "skipped"}
    assert isinstance(sim.history[-1], ev.RunFailed) and sim.history[-1].failed_steps == ["a"]


def test_continue_on_error_lets_dependants_run_and_the_run_succeed() -> None:
    sim = Sim.begin(
        'id = "r"\n[steps.a]\nrun = "x"\ncontinue_on_error = true\n[steps.b]\nneeds = ["a"]\nrun = "x"\n'
    )
    sim.finish("a", "failed")
    sim.finish("b")
    assert sim.state.status == "succeeded" and sim.statuses()["a"] == "failed"


def test_failure_waits_for_running_siblings_then_fails() -> None:
    sim = Sim.begin(
        'id = "r"\n[steps.a]\nrun = "x"\n[steps.b]\nrun = "x"\n[steps.c]\nneeds = ["a", "b"]\nrun = "x"\n'
    )
    sim.finish("a", "failed")
    assert sim.state.status == "running"
    sim.finish("b")
    assert sim.state.status == "failed" and sim.statuses()["c"] == "skipped"


def test_duplicate_and_stale_completions_are_dropped() -> None:
    sim = Sim.begin(CHAIN)
    sim.finish("a", v="1")
    again = sim.send(TaskFinished("a", 1, "succeeded", {"v": "2"}))
    assert again.events == [] and sim.state.steps["a"].outputs == {"v": "1"}
    stale = sim.send(TaskFinished("b", 7, "succeeded"))
    assert stale.events == []


def test_cancel_stops_running_tasks_and_ends_cancelled() -> None:
    sim = Sim.begin(CHAIN)
    decision = sim.send(CancelRun("user pressed ctrl-c"))
    assert [type(c) for c in decision.commands] == [StopTask]
    assert sim.state.status == "running"
    sim.finish("a", "failed")
    assert sim.state.status == "cancelled"
    assert sim.statuses() == {"a": "cancelled", "b": "cancelled", "c": "cancelled"}


def test_run_timeout_fails_the_run() -> None:
    sim = Sim.begin(CHAIN, timeout_s=10)
    [timer] = sim.timers.values()
    assert timer.kind == "run-timeout" and timer.due_at == 10
    sim.now = 10
    sim.send(TimerFired(timer.timer_id, "run-timeout"))
    sim.finish("a", "failed")
    assert sim.state.status == "failed" and "timed out" in (sim.state.reason or "")


def test_noop_and_unsupported_kinds() -> None:
    text = (
        'id = "n"\n[steps.a]\nkind = "noop"\n[steps.b]\nkind = "agent"\nmodel = "m"\nprompt = "p"\n'
    )
    sim = Sim.begin(text)
    assert sim.statuses()["a"] == "succeeded"
    assert sim.statuses()["b"] == "failed"
    assert "inference plane" in (sim.state.steps["b"].error or "")


def test_runtime_expression_error_fails_the_step_not_the_engine() -> None:
    sim = Sim.begin(
        'id = "e"\n[steps.a]\nrun = "x"\n[steps.b]\nneeds = ["a"]\nwhen = "steps.a.outputs.n < 3"\nrun = "x"\n'
    )
    sim.finish("a", n="text")
    assert sim.statuses()["b"] == "failed" and "when:" in (sim.state.steps["b"].error or "")


def test_compensation_steps_do_not_run_in_the_normal_flow() -> None:
    sim = Sim.begin(
        'id = "k"\n[steps.a]\nrun = "x"\ncompensate = "undo"\n[steps.undo]\nrun = "y"\n'
    )
    assert [t.step_id for t in sim.tasks.values()] == ["a"]
    sim.finish("a")
    assert sim.statuses()["undo"] == "skipped" and sim.state.status == "succeeded"


def test_wake_after_finish_and_late_timers_are_acknowledged() -> None:
    sim = Sim.begin('id = "k"\n[steps.a]\nkind = "noop"\n')
    assert sim.state.status == "succeeded"
    assert sim.send(Wake()).events == []
    late = sim.send(TimerFired("t", "retry", "a", 1))
    assert late.events == [] and [type(c).__name__ for c in late.commands] == ["CancelTimer"]


def test_retry_delay_is_deterministic_and_bounded() -> None:
    policy = RetryPolicy(attempts=10, backoff="exponential", delay_s=1, max_delay_s=30, jitter=0.5)
    delays = [retry_delay(policy, n, f"s{n}") for n in range(1, 10)]
    assert delays == [retry_delay(policy, n, f"s{n}") for n in range(1, 10)]
    assert all(0 <= d <= 30 for d in delays)
    fixed = RetryPolicy(attempts=3, backoff="fixed", delay_s=5, max_delay_s=60, jitter=0)
    assert [retry_delay(fixed, n, "x") for n in (1, 2, 3)] == [5, 5, 5]


def test_the_pinned_definition_rebuilds_the_same_plan() -> None:
    """Recovery starts from RunStarted alone: the plan it rebuilds must be the live one."""
    from wayang.engine.runplan import RunPlan

    sim = Sim.begin(CHAIN)
    started = sim.history[0]
    assert isinstance(started, ev.RunStarted)
    rebuilt = RunPlan.from_started(started)
    assert rebuilt.order == sim.run.order
    assert [s.to_dict() for s in rebuilt.plan.steps] == [s.to_dict() for s in sim.run.plan.steps]
    record = ev.from_record(started.TYPE, 1, started.to_data())
    assert record == started


def test_unknown_or_newer_event_shapes_are_refused_clearly() -> None:
    import pytest

    with pytest.raises(ev.EventShapeError, match="unknown event type 'Teleported'"):
        ev.from_record("Teleported", 1, {})
    with pytest.raises(ev.EventShapeError, match="newer than this Wayang reads"):
        ev.from_record("RunSucceeded", 99, {"at": 1.0})
    with pytest.raises(ev.EventShapeError, match="cannot read StepSkipped"):
        ev.from_record("StepSkipped", 1, {"step_id": "a"})
