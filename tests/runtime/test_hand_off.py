"""Runs handed off to drivers (runtime/hand_off.py): an engine with ``hand_off`` records them, an
engine with ``drive`` takes and drives them. Real engines in one event loop, over a real SQLite
file and over PostgreSQL; the driver killed for real is in tests/fleet/test_drivers.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import replace
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

import wayang_test_steps as steps
from runtime_helpers import FAST, start, write_workflow
from wayang.app import App, Settings
from wayang.engine.events import RunStarted
from wayang.engine.replay import replay
from wayang.engine.state import RunStatus
from wayang.policy import ENTRY_POINT_GROUP, gate_for, plugins
from wayang.runtime.engine import Engine
from wayang.runtime.hand_off import Definitions, driver_owner, runs_driven_by
from wayang.runtime.owner import owner_is_gone
from wayang.runtime.records import read_events
from wayang.runtime.slots import Slots
from wayang.store.port import DRIVER_SUFFIX, HANDED_OFF, StoreUnavailableError

HANDING_OFF = replace(FAST, hand_off=True)
CHAIN = """
id = "handed"
[steps.one]
run = 'echo "pid=$PPID" >> "$WAYANG_OUTPUT"; pwd > where.txt'
[steps.two]
needs = ["one"]
run = "echo two"
[steps.three]
needs = ["two"]
run = "echo three"
timeout = "30s"
"""


def driver(app: App, work_in: Path, drive_runs: int = 8) -> Engine:
    settings = replace(FAST, drive=True, drive_runs=drive_runs, work_in=str(work_in))
    return app.engine(settings=settings)


def test_a_handed_off_run_is_driven_by_a_driver_with_the_same_history(
    app: App, tmp_path: Path
) -> None:
    path = write_workflow(tmp_path, CHAIN)
    work_in = tmp_path / "driver"
    work_in.mkdir()

    async def scenario() -> tuple[str, RunStatus, str | None, str]:
        async with app.engine(settings=HANDING_OFF) as starter:
            run_id, done = await start(starter, path)
            await starter.flush()
            record = app.store.get_run(run_id)
            assert record is not None and record.owner == HANDED_OFF
            assert starter.active_runs == []  # recorded, not driven here
            async with driver(app, work_in) as drives:
                state = await asyncio.wait_for(done, 30)
                held = app.store.get_run(run_id)
                return run_id, state.status, held.owner if held else None, drives.owner

    run_id, status, owner, driver_owner = asyncio.run(scenario())
    assert status is RunStatus.SUCCEEDED
    assert owner == driver_owner and driver_owner.endswith(":driver")
    # The driver ran the steps in its folder, not where the run was started.
    assert (work_in / "where.txt").read_text().strip() == str(work_in)
    assert not (tmp_path / "where.txt").exists()
    # The history is the one the starting engine would have written: replay agrees.
    history = read_events(app.store.load_history(run_id))
    assert replay(run_id, history).divergence is None
    tasks = app.store.run_tasks(run_id)
    assert {task.owner for task in tasks} == {driver_owner}


def test_a_driver_takes_no_more_runs_than_it_may_drive(app: App, tmp_path: Path) -> None:
    path = write_workflow(tmp_path, CHAIN)

    async def scenario() -> list[RunStatus]:
        async with app.engine(settings=HANDING_OFF) as starter:
            futures = [(await start(starter, path))[1] for _ in range(5)]
            await starter.flush()
            async with driver(app, tmp_path, drive_runs=2) as drives:
                await asyncio.sleep(0.2)
                assert len(drives.active_runs) <= 2
                states = await asyncio.wait_for(asyncio.gather(*futures), 60)
        return [state.status for state in states]

    assert asyncio.run(scenario()) == [RunStatus.SUCCEEDED] * 5


def test_a_run_with_artifacts_is_not_handed_off(app: App, tmp_path: Path) -> None:
    flow = 'id = "kept"\n[artifacts.report]\npath = "report.txt"\n[steps.only]\nrun = "echo kept"\n'
    path = write_workflow(tmp_path, flow)

    async def scenario() -> tuple[RunStatus, str | None, str]:
        async with app.engine(settings=HANDING_OFF) as starter:
            run_id, done = await start(starter, path)
            state = await asyncio.wait_for(done, 30)
            record = app.store.get_run(run_id)
            return state.status, record.owner if record else None, starter.owner

    status, owner, starter_owner = asyncio.run(scenario())
    assert status is RunStatus.SUCCEEDED
    assert owner == starter_owner  # it drove the run itself: artifacts stay where they are made


def test_a_driver_that_stops_hands_its_runs_back_to_the_drivers(app: App, tmp_path: Path) -> None:
    path = write_workflow(
        tmp_path,
        'id = "slow"\n[steps.nap]\nrun = "sleep 0.5"\n[steps.after]\nneeds = ["nap"]\nrun = "true"\n',
    )

    async def scenario() -> RunStatus:
        async with app.engine(settings=HANDING_OFF) as starter:
            run_id, done = await start(starter, path)
            await starter.flush()
            async with driver(app, tmp_path) as first:
                await asyncio.sleep(0.2)
                assert first.active_runs == [run_id]
            record = app.store.get_run(run_id)
            assert record is not None and record.owner == HANDED_OFF
            async with driver(app, tmp_path):
                return (await asyncio.wait_for(done, 30)).status

    assert asyncio.run(scenario()) is RunStatus.SUCCEEDED


def test_on_postgresql_the_driver_wakes_the_engine_waiting_for_the_run(
    postgres_url: str, tmp_path: Path
) -> None:
    path = write_workflow(tmp_path, 'id = "quick"\n[steps.only]\nrun = "true"\n')
    app = App(Settings(store=postgres_url, engine=FAST))
    slow_poll = replace(HANDING_OFF, poll_every_s=30.0)  # it would not look again in time

    async def scenario() -> tuple[RunStatus, float]:
        async with app.engine(settings=slow_poll) as starter, driver(app, tmp_path):
            await asyncio.sleep(0.1)  # past the starter's first look
            began = time.monotonic()
            _, done = await start(starter, path)
            state = await asyncio.wait_for(done, 10)
            return state.status, time.monotonic() - began

    try:
        status, took_s = asyncio.run(scenario())
    finally:
        app.close()
    assert status is RunStatus.SUCCEEDED
    assert took_s < 5.0


def test_a_draining_driver_lets_running_steps_finish_and_hands_back_the_rest(
    app: App, tmp_path: Path
) -> None:
    flow = (
        'id = "drained"\n[steps.nap]\nrun = "sleep 0.4; echo once >> naps.txt"\n'
        '[steps.after]\nneeds = ["nap"]\nrun = "echo after >> naps.txt"\n'
    )
    path = write_workflow(tmp_path, flow)

    async def scenario() -> tuple[RunStatus, str | None]:
        async with app.engine(settings=HANDING_OFF) as starter:
            run_id, done = await start(starter, path)
            await starter.flush()
            async with driver(app, tmp_path) as first:
                await asyncio.sleep(0.2)  # into the nap
                assert first.active_runs == [run_id]
                await first.drain(5.0)
                # The nap finished and was recorded; the step after it was not started.
                assert (tmp_path / "naps.txt").read_text() == "once\n"
            record = app.store.get_run(run_id)
            handed_back = record.owner if record else None
            async with driver(app, tmp_path):
                return (await asyncio.wait_for(done, 30)).status, handed_back

    status, handed_back = asyncio.run(scenario())
    assert status is RunStatus.SUCCEEDED
    assert handed_back == HANDED_OFF
    assert (tmp_path / "naps.txt").read_text() == "once\nafter\n"  # the nap ran once


def test_a_run_a_driver_cannot_take_up_goes_back_to_the_drivers(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_workflow(tmp_path, CHAIN)
    failing = {"left": 1}
    resume = Engine._resume

    async def resume_failing_once(self: Engine, *args: Any) -> None:
        if failing["left"]:
            failing["left"] -= 1
            raise StoreUnavailableError("the store went away")
        await resume(self, *args)

    monkeypatch.setattr(Engine, "_resume", resume_failing_once)

    async def scenario() -> RunStatus:
        async with app.engine(settings=HANDING_OFF) as starter:
            _, done = await start(starter, path)
            await starter.flush()
            async with driver(app, tmp_path):  # fails once, lets go, takes it again
                return (await asyncio.wait_for(done, 30)).status

    assert asyncio.run(scenario()) is RunStatus.SUCCEEDED
    assert failing == {"left": 0}


FANOUT = """
id = "wide"
[steps.a]
uses = "python:wayang_test_steps:counted_at_once"
inputs = { seconds = 0.1 }
[steps.b]
uses = "python:wayang_test_steps:counted_at_once"
inputs = { seconds = 0.1 }
[steps.c]
uses = "python:wayang_test_steps:counted_at_once"
inputs = { seconds = 0.1 }
"""


def test_a_drivers_steps_hold_its_workers_slots(app: App, tmp_path: Path) -> None:
    path = write_workflow(tmp_path, FANOUT)
    slots = Slots(1)
    steps.AtOnce.most = 0

    async def scenario() -> RunStatus:
        async with app.engine(settings=HANDING_OFF) as starter:
            _, done = await start(starter, path)
            await starter.flush()
            settings = replace(FAST, drive=True, work_in=str(tmp_path))
            async with app.engine(settings=settings, slots=slots):
                state = await asyncio.wait_for(done, 30)
        return state.status

    assert asyncio.run(scenario()) is RunStatus.SUCCEEDED
    assert steps.AtOnce.most == 1  # three steps ready at once, one slot: one after another
    assert slots.driven == 0


def test_a_drivers_owner_id_names_its_worker(app: App) -> None:
    owner = driver_owner("host:7:abc")
    assert owner.startswith(f"{socket.gethostname()}:{os.getpid()}:")  # as every engine's
    assert owner.endswith(":host:7:abc" + DRIVER_SUFFIX)
    assert not owner_is_gone(owner)
    assert driver_owner("w") != driver_owner("w")  # two processes under one --id stay apart
    driven = {owner: 2, driver_owner("host:7:abc:x"): 5, "h:1:r:driver": 1, "h:1:r:w:driver": 3}
    assert runs_driven_by("host:7:abc", driven) == 2
    assert runs_driven_by("w", driven) == 3
    settings = replace(FAST, drive=True)
    assert app.engine(settings=settings, owner=owner).owner == owner
    with pytest.raises(ValueError, match="ends in ':driver'"):
        app.engine(settings=settings, owner="host:7:abc")


def test_a_draining_driver_starts_no_step_still_waiting_for_a_slot(
    app: App, tmp_path: Path
) -> None:
    path = write_workflow(tmp_path, FANOUT.replace("0.1", "0.4"))
    steps.AtOnce.calls = 0
    settings = replace(FAST, drive=True, work_in=str(tmp_path))

    async def scenario() -> tuple[int, RunStatus]:
        async with app.engine(settings=HANDING_OFF) as starter:
            _, done = await start(starter, path)
            await starter.flush()
            async with app.engine(settings=settings, slots=Slots(1)) as first:
                while steps.AtOnce.calls < 1:  # one step runs; two wait for the one slot
                    await asyncio.sleep(0.01)
                await first.drain(5.0)
                started_by_first = steps.AtOnce.calls
            async with app.engine(settings=settings):
                state = await asyncio.wait_for(done, 30)
        return started_by_first, state.status

    started_by_first, status = asyncio.run(scenario())
    assert started_by_first == 1  # the drain let the running step finish, and started no other
    assert status is RunStatus.SUCCEEDED
    assert steps.AtOnce.calls == 3  # the next driver ran the two that never started


PLANNED = """
id = "planned"
[parameters.who]
type = "string"
default = "world"
[steps.greet]
run = "echo hello ${{ params.who }}"
[policy]
max_parallel = 4
"""


def _started(params: dict[str, Any], policy: str = "") -> RunStarted:
    return RunStarted(
        workflow_id="planned",
        workflow_version="0.1.0",
        source=PLANNED,
        filename="workflow.toml",
        params=params,
        env={},
        env_overrides={},
        at=time.time(),
        policy_source=policy,
        policy_filename="wayang.policy.toml" if policy else "",
    )


def test_a_driver_plans_a_definition_once_for_runs_of_the_same_inputs() -> None:
    definitions = Definitions()
    first = definitions.plan(_started({"who": "ann"}), gate_for)
    assert definitions.plan(_started({"who": "ann"}), gate_for) is first  # started later
    other = definitions.plan(_started({"who": "bob"}), gate_for)
    assert other is not first
    assert other.steps["greet"].command == "echo hello bob"
    assert first.steps["greet"].command == "echo hello ann"


def test_a_plan_whose_gate_is_a_plugins_engine_is_not_shared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = EntryPoint(name="fake", value="tests.policy.fake_engine:make", group=ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda *, group: [entry])
    definitions = Definitions()
    policy = 'engine = "fake"\n[roles]\nadmins = ["ann"]\n'
    first = definitions.plan(_started({}, policy), gate_for)
    assert definitions.plan(_started({}, policy), gate_for) is not first
