"""The engine runtime end to end: a real SQLite file, real shell and Python steps."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest

from runtime_helpers import FAST, in_engine, make_app, run_text, start, write_workflow
from wayang.app import App
from wayang.engine import events as ev
from wayang.engine.replay import replay
from wayang.engine.state import RunState, RunStatus, StepStatus
from wayang.runtime.engine import Engine
from wayang.runtime.operations import load_run, prepare_retry, request_cancel
from wayang.runtime.records import read_events
from wayang.store.port import NewTopicMessage


def test_outputs_flow_between_shell_and_python_steps(tmp_path: Path) -> None:
    state = run_text(
        tmp_path,
        """
        id = "flow"
        [steps.produce]
        run = 'echo "greeting=hello" >> "$WAYANG_OUTPUT"; echo produced'
        [steps.add]
        needs = ["produce"]
        uses = "python:wayang_test_steps:add"
        inputs = { a = 40, b = 2 }
        [steps.consume]
        needs = ["produce", "add"]
        run = 'test "${{ steps.produce.outputs.greeting }}" = hello && test ${{ steps.add.outputs.sum }} = 42'
        """,
    )
    assert state.status is RunStatus.SUCCEEDED
    assert state.steps["produce"].outputs == {"greeting": "hello"}
    assert state.steps["add"].outputs == {"sum": 42}
    assert state.steps["consume"].status is StepStatus.SUCCEEDED


def test_history_and_summary_are_durable_and_replay_reproduces_them(tmp_path: Path) -> None:
    state = run_text(
        tmp_path,
        """
        id = "durable"
        [steps.a]
        run = "echo a"
        [steps.b]
        run = "echo b"
        [steps.c]
        needs = ["a", "b"]
        run = "echo c"
        """,
    )
    app = make_app(tmp_path)
    view = load_run(app.store, state.run_id)
    assert view.record.status == "succeeded"
    assert view.record.version == len(view.history)
    assert view.state == state
    report = replay(state.run_id, view.history)
    assert report.divergence is None
    assert report.state == state
    logs = app.store.read_logs(state.run_id)
    assert {(line.step_id, line.stream, line.line) for line in logs} == {
        ("a", "stdout", "a"),
        ("b", "stdout", "b"),
        ("c", "stdout", "c"),
    }
    app.close()


def test_a_failing_step_retries_then_dead_letters_and_fails_the_run(tmp_path: Path) -> None:
    state = run_text(
        tmp_path,
        """
        id = "retry"
        [steps.flaky]
        run = "echo attempt $WAYANG_ATTEMPT; exit 3"
        retry = { attempts = 3, delay = "10ms", backoff = "fixed", jitter = false }
        [steps.after]
        needs = ["flaky"]
        run = "true"
        """,
    )
    assert state.status is RunStatus.FAILED
    assert state.steps["flaky"].status is StepStatus.FAILED
    assert state.steps["flaky"].attempt == 3
    assert state.steps["after"].status is StepStatus.SKIPPED
    app = make_app(tmp_path)
    view = load_run(app.store, state.run_id)
    failures = [e for e in view.history if isinstance(e, ev.StepFailed)]
    assert [(f.attempt, f.exit_code, f.final) for f in failures] == [
        (1, 3, False),
        (2, 3, False),
        (3, 3, True),
    ]
    assert replay(state.run_id, view.history).divergence is None
    (letter,) = app.store.dead_letters()
    assert (letter.run_id, letter.step_id, letter.attempts) == (state.run_id, "flaky", 3)
    assert app.store.run_timers(state.run_id) == []
    app.close()


def test_a_step_that_succeeds_on_retry_lets_the_run_succeed(tmp_path: Path) -> None:
    marker = tmp_path / "seen"
    state = run_text(
        tmp_path,
        f"""
        id = "second-time"
        [steps.flaky]
        run = "if [ -e {marker} ]; then echo ok; else touch {marker}; exit 1; fi"
        retry = {{ attempts = 2, delay = "10ms" }}
        """,
    )
    assert state.status is RunStatus.SUCCEEDED
    assert state.steps["flaky"].attempt == 2


def test_when_false_skips_and_the_skip_propagates(tmp_path: Path) -> None:
    state = run_text(
        tmp_path,
        """
        id = "skips"
        [parameters.deploy]
        type = "boolean"
        default = false
        [steps.build]
        run = "true"
        [steps.deploy]
        needs = ["build"]
        when = "params.deploy"
        run = "exit 1"
        [steps.announce]
        needs = ["deploy"]
        run = "exit 1"
        """,
    )
    assert state.status is RunStatus.SUCCEEDED
    assert state.steps["deploy"].status is StepStatus.SKIPPED
    assert state.steps["announce"].status is StepStatus.SKIPPED


def test_a_step_timeout_fails_the_attempt(tmp_path: Path) -> None:
    state = run_text(
        tmp_path,
        """
        id = "slow"
        [steps.sleepy]
        run = "sleep 5"
        timeout = "200ms"
        """,
    )
    assert state.status is RunStatus.FAILED
    assert "timed out" in (state.steps["sleepy"].error or "")


def test_cancel_stops_a_running_shell_step_promptly(tmp_path: Path) -> None:
    path = write_workflow(
        tmp_path,
        """
        id = "long"
        [steps.sleepy]
        run = "sleep 30"
        [steps.after]
        needs = ["sleepy"]
        run = "true"
        """,
    )
    app = make_app(tmp_path)

    async def body(engine):  # type: ignore[no-untyped-def]
        run_id, done = await start(engine, path)
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        asked = loop.time()
        engine.cancel(run_id, "enough")
        state = await asyncio.wait_for(done, 10)
        return state, loop.time() - asked

    state, seconds = in_engine(app, body)
    assert state.status is RunStatus.CANCELLED
    assert state.steps["sleepy"].status is StepStatus.CANCELLED
    assert state.steps["after"].status is StepStatus.CANCELLED
    assert seconds < 5
    app.close()


def test_a_cancel_request_left_in_the_store_reaches_the_driving_engine(tmp_path: Path) -> None:
    path = write_workflow(tmp_path, 'id = "long"\n[steps.sleepy]\nrun = "sleep 30"\n')
    app = make_app(tmp_path)

    async def body(engine):  # type: ignore[no-untyped-def]
        run_id, done = await start(engine, path)
        await engine.flush()
        request_cancel(app.store, run_id, "from elsewhere")
        return await asyncio.wait_for(done, 10)

    state = in_engine(app, body)
    assert state.status is RunStatus.CANCELLED
    assert state.reason == "from elsewhere"
    app.close()


def test_a_run_timeout_fails_the_run(tmp_path: Path) -> None:
    path = write_workflow(tmp_path, 'id = "long"\n[steps.sleepy]\nrun = "sleep 30"\n')
    app = make_app(tmp_path)

    async def body(engine):  # type: ignore[no-untyped-def]
        from wayang.ids import new_run_id
        from wayang.runtime.operations import prepare_run

        request = prepare_run(path, {}, {}, parallel=0, timeout_s=0.3)
        done = engine.start(request.plan, request.started, new_run_id())
        return await asyncio.wait_for(done, 10)

    state = in_engine(app, body)
    assert state.status is RunStatus.FAILED
    assert "timed out" in (state.reason or "")
    app.close()


def test_observers_see_only_durable_events_in_order(tmp_path: Path) -> None:
    path = write_workflow(
        tmp_path,
        'id = "seen"\n[steps.a]\nrun = "echo hi"\n[steps.b]\nneeds = ["a"]\nrun = "true"\n',
    )
    app = make_app(tmp_path)
    seen: list[tuple[str, int]] = []
    lines: list[str] = []

    def on_events(run_id: str, events: list[ev.Event]) -> None:
        # Reported only once durable: the store already holds every event seen so far.
        seen.extend((e.TYPE, 0) for e in events)
        durable = app.store.get_run(run_id)
        assert durable is not None and durable.version >= len(seen)

    async def body(engine):  # type: ignore[no-untyped-def]
        _, done = await start(engine, path)
        return await done

    state = in_engine(app, body, on_events=on_events, on_log=lambda line: lines.append(line.line))
    types = [name for name, _ in seen]
    assert types[0] == "RunStarted" and types[-1] == "RunSucceeded"
    assert types.index("StepSucceeded") < types.index("RunSucceeded")
    assert lines == ["hi"]
    assert state.status is RunStatus.SUCCEEDED
    app.close()


def test_retry_reuses_succeeded_steps_and_from_reruns_the_rest(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    gate = tmp_path / "gate"
    text = f"""
        id = "retryable"
        [steps.one]
        run = "echo one >> {ledger}; echo v=1 >> $WAYANG_OUTPUT"
        [steps.two]
        needs = ["one"]
        run = "echo two >> {ledger}; test -e {gate}"
        [steps.three]
        needs = ["two"]
        run = "echo three-${{{{ steps.one.outputs.v }}}} >> {ledger}"
        """
    first = run_text(tmp_path, text)
    assert first.status is RunStatus.FAILED
    gate.touch()
    app = make_app(tmp_path)

    second = in_engine(app, lambda engine: _retry_body(app, engine, first.run_id, None))
    assert second.status is RunStatus.SUCCEEDED
    assert second.steps["one"].reason == f"reused from {first.run_id}"
    assert ledger.read_text().split() == ["one", "two", "two", "three-1"]
    third = in_engine(app, lambda engine: _retry_body(app, engine, second.run_id, "two"))
    assert third.status is RunStatus.SUCCEEDED
    assert ledger.read_text().split()[4:] == ["two", "three-1"]
    history = load_run(app.store, third.run_id).history
    assert replay(third.run_id, history).divergence is None
    app.close()


async def _retry_body(app, engine, run_id, from_step):  # type: ignore[no-untyped-def]
    from wayang.ids import new_run_id

    request = prepare_retry(app.store, run_id, from_step)
    return await engine.start(request.plan, request.started, new_run_id(), reuse=request.reuse)


def test_memory_of_the_engine_does_not_keep_finished_runs(tmp_path: Path) -> None:
    path = write_workflow(
        tmp_path, 'id = "tiny"\n[steps.a]\nuses = "python:wayang_test_steps:nothing"\n'
    )
    app = make_app(tmp_path)

    async def body(engine):  # type: ignore[no-untyped-def]
        for _ in range(3):
            futures = [(await start(engine, path))[1] for _ in range(50)]
            await asyncio.gather(*futures)
        return engine.active_runs

    assert in_engine(app, body) == []
    assert len(app.store.list_runs(limit=1000)) == 150
    app.close()


def test_logs_of_a_python_step_reach_the_store(tmp_path: Path) -> None:
    state = run_text(
        tmp_path,
        """
        id = "chatty"
        [steps.talk]
        uses = "python:wayang_test_steps:chatty"
        inputs = { n = 2 }
        """,
    )
    app = make_app(tmp_path)
    lines = [line.line for line in app.store.read_logs(state.run_id)]
    assert lines[0] == "DEBUG starting"
    assert len(lines) == 6
    json.dumps(lines)
    app.close()


def test_adopting_a_run_whose_cancel_is_recorded_does_not_run_its_steps_again(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger"
    path = write_workflow(
        tmp_path,
        f"""
        id = "stubborn"
        [steps.b]
        run = 'echo started >> {ledger}; trap "" TERM; sleep 2; echo finished >> {ledger}'
        """,
    )
    app = make_app(tmp_path)

    async def first(engine):  # type: ignore[no-untyped-def]
        run_id, _ = await start(engine, path)
        await asyncio.sleep(0.4)
        engine.cancel(run_id, "interrupted")
        await engine.flush()
        return run_id  # the engine stops here, as after a second Ctrl-C

    run_id = in_engine(app, first)

    async def second(engine):  # type: ignore[no-untyped-def]
        return await asyncio.wait_for(await engine.adopt(run_id), 10)

    state = in_engine(app, second)
    assert state.status is RunStatus.CANCELLED
    assert state.steps["b"].status is StepStatus.CANCELLED
    assert ledger.read_text().split() == ["started"]
    app.close()


def test_an_engine_keeps_renewing_the_leases_of_a_run_it_drives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A step outliving the lease: the run must still be this engine's, and renewing said nothing.
    path = write_workflow(tmp_path, 'id = "long"\n[steps.wait]\nrun = "sleep 1.5"\n')
    app = make_app(tmp_path, replace(FAST, lease_s=1.0, renew_every_s=0.1))

    async def body(engine: Engine) -> tuple[float, float, RunState]:
        run_id, done = await start(engine, path)
        await asyncio.sleep(1.2)
        record = app.store.get_run(run_id)
        assert record is not None and record.lease_expires_at is not None
        return record.lease_expires_at, time.time(), await asyncio.wait_for(done, 30)

    with caplog.at_level(logging.WARNING, logger="wayang"):
        lease_expires_at, read_at, state = in_engine(app, body)
    app.close()
    assert state.status is RunStatus.SUCCEEDED
    assert lease_expires_at > read_at
    assert [r.getMessage() for r in caplog.records] == []


def test_runs_waiting_on_one_topic_each_take_what_came_since_they_began(tmp_path: Path) -> None:
    # Both runs wait at the same place in the topic, so one read serves both; the first event
    # is dated between their starts: the first run's, not the second's.
    path = write_workflow(tmp_path, 'id = "wait"\n[steps.got]\nkind = "event"\ntopic = "orders"\n')
    app = make_app(tmp_path)

    def publish(n: int, at: float) -> None:
        app.store.publish(NewTopicMessage("orders", {"n": n}, at))

    def started_at(run_id: str) -> float:
        at = load_run(app.store, run_id).state.started_at
        assert at is not None
        return at

    async def body(engine: Engine) -> list[RunState]:
        first_id, first = await start(engine, path)
        await asyncio.sleep(0.05)
        second_id, second = await start(engine, path)
        await asyncio.sleep(0.2)  # both waiting, having seen nothing
        publish(1, (started_at(first_id) + started_at(second_id)) / 2)
        taken = await asyncio.wait_for(first, 10)
        await asyncio.sleep(0.2)
        assert not second.done()
        publish(2, time.time())
        return [taken, await asyncio.wait_for(second, 10)]

    states = in_engine(app, body)
    app.close()
    assert [state.steps["got"].outputs["n"] for state in states] == [1, 2]


def _parent_of_children(tmp_path: Path, children: int, sleep_s: float) -> Path:
    """A parent workflow of ``children`` subworkflow steps, each a child sleeping ``sleep_s``."""
    write_workflow(tmp_path, f'id = "c"\n[steps.work]\nrun = "sleep {sleep_s}"\n', "child.toml")
    steps = "".join(
        f'[steps.s{i}]\nkind = "subworkflow"\nworkflow = "child.toml"\n' for i in range(children)
    )
    return write_workflow(tmp_path, f'id = "p"\n{steps}')


def _started_with_children(app: App, path: Path, children: int) -> tuple[str, list[str]]:
    """Start the parent in ``app``'s engine, which stops once it started all its children."""

    def started(run_id: str) -> list[str]:
        history = read_events(app.store.load_history(run_id))
        return [e.child_run_id for e in history if isinstance(e, ev.SubworkflowStarted)]

    async def begin(engine: Engine) -> tuple[str, list[str]]:
        run_id, _ = await start(engine, path)
        while len(started(run_id)) < children:
            await asyncio.sleep(0.02)
        return run_id, started(run_id)

    return in_engine(app, begin)


def test_a_parent_taken_up_takes_up_its_children_left_with_it(tmp_path: Path) -> None:
    # The first engine starts the parent and its three children, then stops; the second takes
    # up the parent alone, and with it the children (their statuses read in one call).
    path = _parent_of_children(tmp_path, 3, 0.3)
    first, second = (make_app(tmp_path, FAST) for _ in range(2))
    parent, kids = _started_with_children(first, path, 3)
    left = [first.store.get_run(kid) for kid in kids]
    assert all(record is not None and record.status == "running" for record in left)

    async def take_up() -> tuple[RunState, set[str]]:
        async with second.engine() as engine:
            done = await engine.adopt(parent)
            driven = {kid for kid in kids if kid in engine._runs}
            return await asyncio.wait_for(done, 10), driven

    state, driven = asyncio.run(take_up())
    for app in (first, second):
        app.close()
    assert driven == set(kids)
    assert state.status is RunStatus.SUCCEEDED
    assert {step.status for step in state.steps.values()} == {StepStatus.SUCCEEDED}


def test_a_parent_hears_of_children_that_another_engine_finished(tmp_path: Path) -> None:
    # The first engine starts the parent and its two children, then stops. A second takes up
    # the children; a third the parent, which finds them busy elsewhere and so watches the
    # store for their ends.
    path = _parent_of_children(tmp_path, 2, 0.5)
    settings = replace(FAST, lease_s=2.0, renew_every_s=0.2)
    first, second, third = (make_app(tmp_path, settings) for _ in range(3))
    parent, kids = _started_with_children(first, path, 2)

    async def take_up() -> RunState:
        async with second.engine() as others, third.engine() as mine:
            ends = [await others.adopt(kid) for kid in kids]
            done = await mine.adopt(parent)
            assert not any(kid in mine._runs for kid in kids)  # busy elsewhere: watched
            await asyncio.gather(*ends)
            return await asyncio.wait_for(done, 10)

    state = asyncio.run(take_up())
    for app in (first, second, third):
        app.close()
    assert state.status is RunStatus.SUCCEEDED
    assert {step.status for step in state.steps.values()} == {StepStatus.SUCCEEDED}
