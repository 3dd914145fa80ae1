"""Engines and workers sharing a store: placement, capacity, cancel, fencing, lost workers.

Each test runs a real engine and real :class:`Worker` objects (real shell steps) in one event
loop, over a real SQLite file and over PostgreSQL; the crash tests with processes killed for
real are in tests/fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from runtime_helpers import FAST, start, write_workflow
from wayang.app import App
from wayang.engine.state import RunState, RunStatus, StepStatus
from wayang.executors.base import LogSink, TaskResult, TaskSpec
from wayang.runtime.engine import Engine
from wayang.runtime.worker import Worker, WorkerSettings, store_link
from wayang.store.port import WorkerRecord

QUICK = WorkerSettings(lease_s=2.0, heartbeat_every_s=0.2, idle_poll_s=0.05, drain_s=1.0)


@contextlib.asynccontextmanager
async def working(app: App, settings: WorkerSettings) -> AsyncIterator[Worker]:
    """A worker over ``app``'s store, running until the block ends."""
    worker = Worker(store_link(app.store), app.executor, settings)
    stop = asyncio.Event()
    job = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(job, 10)


def workers_only(app: App, **changes: Any) -> Engine:
    """An engine that runs no step itself: every step waits for a worker."""
    settings = replace(FAST, run_tasks=False, **changes)
    return Engine(app.store, app.executor, settings=settings)


GPU_FLOW = """
id = "placed"
[steps.here]
run = "echo engine"
[steps.gpu]
needs = ["here"]
run = 'echo "key=$WAYANG_IDEMPOTENCY_KEY" >> "$WAYANG_OUTPUT"'
runs_on = { capabilities = ["gpu"], labels = { region = "eu" } }
[steps.after]
needs = ["gpu"]
run = "echo after"
"""


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_step_asking_for_a_gpu_runs_on_the_worker_offering_one(app: App, tmp_path: Path) -> None:
    path = write_workflow(tmp_path, GPU_FLOW)
    seen: list[tuple[str, str]] = []

    async def go() -> RunState:
        gpu = replace(QUICK, capabilities=("shell", "gpu"), labels={"region": "eu"})
        cpu = replace(QUICK, worker_id="cpu-only")
        async with app.engine() as engine, working(app, cpu), working(app, gpu) as eu:
            eu._on_task = lambda task, result, counted: seen.append((task.step_id, eu.worker_id))
            _, done = await start(engine, path)
            return await asyncio.wait_for(done, 30)

    state = run(go())
    assert state.status is RunStatus.SUCCEEDED
    assert state.steps["gpu"].outputs == {"key": f"{state.run_id}/gpu"}
    assert [step for step, _ in seen] == ["gpu"]  # the engine ran the others itself
    workers = {w.worker_id: w for w in app.store.list_workers()}
    assert workers["cpu-only"].done == 0
    assert workers[seen[0][1]].done == 1
    assert all(w.state == "stopped" for w in workers.values())


def test_with_no_matching_worker_the_step_waits_in_its_queue(app: App, tmp_path: Path) -> None:
    path = write_workflow(tmp_path, GPU_FLOW)

    async def go() -> None:
        async with app.engine() as engine, working(app, QUICK):
            run_id, done = await start(engine, path)
            await asyncio.sleep(1.0)
            assert not done.done()
            live = engine.live_state(run_id)
            assert live is not None
            assert live.steps["gpu"].status is StepStatus.SCHEDULED
            [stats] = [s for s in app.store.queue_stats() if s.queue == "default"]
            assert (stats.queued, stats.running) == (1, 0)
            engine.cancel(run_id, "no gpu today")
            state = await asyncio.wait_for(done, 10)
            assert state.status is RunStatus.CANCELLED

    run(go())


def test_a_worker_never_runs_more_tasks_than_its_slots(app: App, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    steps = "\n".join(
        f'[steps.s{i}]\nrun = "echo start $(date +%s.%N) >> {marks}; sleep 0.3; '
        f'echo end $(date +%s.%N) >> {marks}"\nqueue = "batch"\n'
        for i in range(6)
    )
    path = write_workflow(tmp_path, f'id = "wide"\n{steps}')

    async def go() -> RunState:
        two_slots = replace(QUICK, slots=2, queues=("batch",))
        async with workers_only(app) as engine, working(app, two_slots):
            _, done = await start(engine, path, parallel=6)
            return await asyncio.wait_for(done, 30)

    assert run(go()).status is RunStatus.SUCCEEDED
    events = sorted(
        (float(stamp), 1 if kind == "start" else -1)
        for kind, stamp in (line.split() for line in marks.read_text().splitlines())
    )
    running, most = 0, 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert most == 2


class CountingLink:
    """The store as a worker's link, counting how tasks were claimed."""

    def __init__(self, app: App) -> None:
        self.store = app.store
        self.by_claim = 0
        self.by_report = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        found = self.store.claim(*args, **kwargs)
        self.by_claim += len(found)
        return found

    def complete_many(self, *args: Any, **kwargs: Any) -> Any:
        reported = self.store.complete_many(*args, **kwargs)
        self.by_report += len(reported.claimed)
        return reported


def test_a_result_claims_the_next_task_in_its_own_transaction(app: App, tmp_path: Path) -> None:
    steps = "\n".join(f'[steps.s{i}]\nrun = "echo {i}"\n' for i in range(6))
    path = write_workflow(tmp_path, f'id = "queued"\n{steps}')
    link = CountingLink(app)

    async def go() -> RunState:
        worker = Worker(link, app.executor, replace(QUICK, slots=1))  # type: ignore[arg-type]
        stop = asyncio.Event()
        async with workers_only(app) as engine:
            job = asyncio.create_task(worker.run(stop))
            _, done = await start(engine, path, parallel=6)
            state = await asyncio.wait_for(done, 30)
            stop.set()
            await asyncio.wait_for(job, 10)
        assert worker.counts.done == 6
        return state

    assert run(go()).status is RunStatus.SUCCEEDED
    # One slot: the first task is claimed alone; the result of each takes the next.
    assert link.by_claim + link.by_report == 6
    assert link.by_report >= 4


def test_max_running_throttles_a_queue_across_workers(app: App, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    steps = "\n".join(
        f'[steps.s{i}]\nrun = "echo start $(date +%s.%N) >> {marks}; sleep 0.3; '
        f'echo end $(date +%s.%N) >> {marks}"\n'
        for i in range(4)
    )
    path = write_workflow(tmp_path, f'id = "throttled"\n{steps}')
    app.store.kv_set("queue-limits", "default", {"max_running": 1})

    async def go() -> RunState:
        async with (
            workers_only(app) as engine,
            working(app, replace(QUICK, slots=4)),
            working(app, QUICK),
        ):
            _, done = await start(engine, path, parallel=4)
            return await asyncio.wait_for(done, 30)

    assert run(go()).status is RunStatus.SUCCEEDED
    lines = [line.split() for line in marks.read_text().splitlines()]
    spans = sorted(float(stamp) for _, stamp in lines)
    assert len(spans) == 8
    kinds = [kind for kind, _ in sorted(lines, key=lambda pair: float(pair[1]))]
    assert kinds == ["start", "end"] * 4  # one at a time, whichever worker took it


class Wedged:
    """An executor that never returns: a worker that heartbeats but makes no progress."""

    async def execute(self, task: TaskSpec, log: LogSink) -> TaskResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_a_worker_that_makes_no_progress_past_the_timeout_loses_the_attempt(
    app: App, tmp_path: Path
) -> None:
    path = write_workflow(
        tmp_path,
        """
        id = "wedged"
        [steps.stuck]
        run = "sleep 60"
        timeout = "500ms"
        retry = { attempts = 2, delay = "10ms", jitter = false }
        """,
    )

    async def go() -> tuple[RunState, Worker]:
        worker = Worker(store_link(app.store), Wedged(), QUICK)
        stop = asyncio.Event()
        job = asyncio.create_task(worker.run(stop))
        async with workers_only(app, remote_grace_s=0.3) as engine:
            _, done = await start(engine, path)
            state = await asyncio.wait_for(done, 30)
        stop.set()
        await asyncio.wait_for(job, 10)
        return state, worker

    state, worker = run(go())
    assert state.status is RunStatus.FAILED
    stuck = state.steps["stuck"]
    assert stuck.attempt == 2
    assert "no result from its worker within the step's timeout" in (stuck.error or "")
    assert worker.counts.done == worker.counts.failed == 0  # both attempts taken from it
    assert [letter.step_id for letter in app.store.dead_letters()] == ["stuck"]


def test_cancelling_a_run_stops_its_task_on_the_worker(app: App, tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    path = write_workflow(
        tmp_path, f'id = "long"\n[steps.long]\nrun = "sleep 20; touch {marker}"\n'
    )

    async def go() -> tuple[RunState, Worker]:
        async with workers_only(app) as engine, working(app, QUICK) as worker:
            run_id, done = await start(engine, path)
            while not app.store.queue_stats() or not app.store.queue_stats()[0].running:
                await asyncio.sleep(0.05)
            engine.cancel(run_id, "changed my mind")
            state = await asyncio.wait_for(done, 10)
            while worker._running:  # the next heartbeat finds the task gone
                await asyncio.sleep(0.05)
            return state, worker

    state, worker = run(go())
    assert state.status is RunStatus.CANCELLED
    assert state.steps["long"].status is StepStatus.CANCELLED
    assert not marker.exists()
    assert worker.counts.done == 0


def test_a_task_whose_worker_died_is_run_again_by_another_with_the_same_key(
    app: App, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    path = write_workflow(
        tmp_path,
        f'id = "again"\n[steps.once]\nrun = \'echo "$WAYANG_IDEMPOTENCY_KEY" >> {ledger}\'\n',
    )

    async def go() -> RunState:
        async with workers_only(app) as engine:
            run_id, done = await start(engine, path)
            await engine.flush()
            # A worker claims the task and dies at once: no heartbeat, no result.
            [taken] = app.store.claim("dead-worker", time.time(), 0.5)
            assert taken.run_id == run_id
            async with working(app, QUICK):
                return await asyncio.wait_for(done, 30)

    state = run(go())
    assert state.status is RunStatus.SUCCEEDED
    assert state.steps["once"].attempt == 1  # the same attempt, claimed a second time
    assert ledger.read_text().splitlines() == [f"{state.run_id}/once"]
    [task] = app.store.run_tasks(state.run_id)
    assert task.owner != "dead-worker"


def test_workers_list_what_they_offer(app: App) -> None:
    async def go() -> list[WorkerRecord]:
        settings = replace(QUICK, capabilities=("shell", "gpu"), labels={"zone": "b"}, slots=3)
        async with working(app, settings):
            await asyncio.sleep(0.3)
            return app.store.list_workers()

    [record] = run(go())
    assert (list(record.capabilities), dict(record.labels)) == (["shell", "gpu"], {"zone": "b"})
    assert (record.slots, list(record.queues), record.state) == (3, ["default"], "running")
