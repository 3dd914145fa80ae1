"""An engine and a worker on PostgreSQL wake each other instead of waiting for their next poll.

Both are set to poll only every 60 s, longer than the tests' own timeouts: a step can only get
through the queue and back if the worker is woken by its task and the engine by its result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from runtime_helpers import FAST, start, write_workflow
from wayang.app import App, Settings
from wayang.engine.state import RunStatus
from wayang.runtime.worker import Worker, WorkerSettings, store_link

SLOW_POLLS = 60.0
WAIT_S = 30.0  # only a timeout: the run takes milliseconds when woken
CHAIN = """
id = "chain"
[steps.a]
run = 'echo "n=1" >> "$WAYANG_OUTPUT"'
[steps.b]
needs = ["a"]
run = 'echo "n=$(( ${{ steps.a.outputs.n }} + 1 ))" >> "$WAYANG_OUTPUT"'
[steps.c]
needs = ["b"]
run = 'echo "n=$(( ${{ steps.b.outputs.n }} + 1 ))" >> "$WAYANG_OUTPUT"'
"""


@pytest.fixture
def apps(postgres_url: str) -> Iterator[tuple[App, App]]:
    engine = replace(FAST, run_tasks=False, poll_every_s=SLOW_POLLS)
    engine_app = App(Settings(store=postgres_url, engine=engine))
    worker_app = App(Settings(store=postgres_url))
    yield engine_app, worker_app
    engine_app.close()
    worker_app.close()


def test_a_chain_of_worker_steps_goes_through_on_wakeups_alone(
    apps: tuple[App, App], tmp_path: Path
) -> None:
    engine_app, worker_app = apps
    path = write_workflow(tmp_path, CHAIN)
    settings = WorkerSettings(
        slots=1, idle_poll_s=SLOW_POLLS, busy_poll_s=SLOW_POLLS, wakeup_poll_s=SLOW_POLLS
    )

    async def go() -> object:
        worker = Worker(store_link(worker_app.store), worker_app.executor, settings)
        stop = asyncio.Event()
        job = asyncio.create_task(worker.run(stop))
        try:
            async with engine_app.engine() as engine:
                _, done = await start(engine, path)
                return await asyncio.wait_for(done, WAIT_S)
        finally:
            stop.set()
            await asyncio.wait_for(job, WAIT_S)

    state = asyncio.run(go())
    assert state.status is RunStatus.SUCCEEDED  # type: ignore[attr-defined]
    assert state.steps["c"].outputs == {"n": "3"}  # type: ignore[attr-defined]
    [worker] = worker_app.store.list_workers()
    assert worker.done == 3
