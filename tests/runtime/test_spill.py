"""A driver's steps that would wait too long for its slots go to the queue (runtime/spill.py),
for another worker to run; with no other worker they wait for the driver's slots. Real engines
and a real worker in one event loop, over a real SQLite file and over PostgreSQL; with real
processes in tests/fleet/test_drivers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import wayang_test_steps as steps
from runtime_helpers import FAST, start, write_workflow
from wayang.app import App
from wayang.engine.state import RunStatus
from wayang.runtime.slots import Slots
from wayang.runtime.worker import Worker, WorkerSettings, store_link

HANDING_OFF = replace(FAST, hand_off=True)
WIDTH = 8
FANOUT = 'id = "wide"\n' + "".join(
    f"[steps.s{i}]\n"
    'uses = "python:wayang_test_steps:counted_at_once"\n'
    "inputs = { seconds = 0.15 }\n"
    for i in range(WIDTH)
)
HELPER = WorkerSettings(
    slots=4, lease_s=5.0, heartbeat_every_s=0.2, idle_poll_s=0.05, wakeup_poll_s=0.2, drain_s=1.0
)


@contextlib.asynccontextmanager
async def helper(app: App, settings: WorkerSettings = HELPER) -> AsyncIterator[Worker]:
    """Another worker of the fleet, registered before the block starts."""
    worker = Worker(store_link(app.store), app.executor, settings)
    stop = asyncio.Event()
    job = asyncio.create_task(worker.run(stop))
    while not app.store.list_workers():
        await asyncio.sleep(0.01)
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(job, 10)


async def drive_fanout(app: App, tmp_path: Path, *, spill_after_s: float) -> RunStatus:
    """Hand the fanout off and drive it with one slot."""
    path = write_workflow(tmp_path, FANOUT)
    settings = replace(FAST, drive=True, work_in=str(tmp_path), spill_after_s=spill_after_s)
    async with app.engine(settings=HANDING_OFF) as starter:
        run_id, done = await start(starter, path)
        await starter.flush()
        async with app.engine(settings=settings, slots=Slots(1)):
            state = await asyncio.wait_for(done, 30)
    assert all(t.status == "consumed" for t in app.store.run_tasks(run_id))
    return state.status


def test_a_driver_queues_the_steps_its_slots_would_start_late_for_another_worker(
    app: App, tmp_path: Path
) -> None:
    steps.AtOnce.most = steps.AtOnce.calls = 0

    async def scenario() -> tuple[RunStatus, int]:
        async with helper(app) as other:
            status = await drive_fanout(app, tmp_path, spill_after_s=0.05)
            return status, other.counts.done

    status, done_elsewhere = asyncio.run(scenario())
    assert status is RunStatus.SUCCEEDED
    assert steps.AtOnce.calls == WIDTH  # each step ran once, here or there
    # One slot keeps a step or so within 50 ms of 150 ms steps; the others went to the queue.
    assert done_elsewhere >= WIDTH // 2
    assert steps.AtOnce.most > 1  # the other worker ran them beside the driver's own


def test_a_driver_alone_keeps_its_steps_waiting_for_its_slots(app: App, tmp_path: Path) -> None:
    steps.AtOnce.most = steps.AtOnce.calls = 0
    status = asyncio.run(drive_fanout(app, tmp_path, spill_after_s=0.05))
    assert status is RunStatus.SUCCEEDED
    assert (steps.AtOnce.calls, steps.AtOnce.most) == (WIDTH, 1)  # all here, one at a time


def test_a_driver_with_spilling_off_keeps_its_steps(app: App, tmp_path: Path) -> None:
    steps.AtOnce.most = steps.AtOnce.calls = 0

    async def scenario() -> tuple[RunStatus, int]:
        async with helper(app) as other:
            return await drive_fanout(app, tmp_path, spill_after_s=0.0), other.counts.done

    assert asyncio.run(scenario()) == (RunStatus.SUCCEEDED, 0)
    assert steps.AtOnce.most == 1


def test_a_driver_keeps_the_steps_no_other_worker_could_run(app: App, tmp_path: Path) -> None:
    steps.AtOnce.most = steps.AtOnce.calls = 0
    shell_only = replace(HELPER, capabilities=("shell",))  # the steps are Python

    async def scenario() -> tuple[RunStatus, int]:
        async with helper(app, shell_only) as other:
            return await drive_fanout(app, tmp_path, spill_after_s=0.05), other.counts.done

    assert asyncio.run(scenario()) == (RunStatus.SUCCEEDED, 0)
    assert steps.AtOnce.most == 1


def test_a_driver_reads_the_fleet_as_its_steps_begin_to_wait(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before any step has ended (so before the steps can be weighed): steps that compute may
    # keep the driver's loop busy by the time they are.
    steps.AtOnce.most = steps.AtOnce.calls = steps.AtOnce.now = 0
    ended_at_each_read: list[int] = []
    read_workers = app.store.list_workers

    def noting(*args: Any, **kwargs: Any) -> Any:
        with steps.AtOnce.lock:
            ended_at_each_read.append(steps.AtOnce.calls - steps.AtOnce.now)
        return read_workers(*args, **kwargs)

    async def scenario() -> RunStatus:
        async with helper(app):
            monkeypatch.setattr(app.store, "list_workers", noting)
            return await drive_fanout(app, tmp_path, spill_after_s=0.05)

    assert asyncio.run(scenario()) is RunStatus.SUCCEEDED
    assert ended_at_each_read[:1] == [0]
