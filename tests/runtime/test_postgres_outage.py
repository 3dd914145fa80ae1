"""An engine and a worker ride out PostgreSQL ending their sessions, again and again, mid-run.

The engine runs no step itself: every step goes through the queue to a real :class:`Worker` (real
shell steps), so claims, results, wake-ups, group commits, lease renewals and polls all cross
the server while its sessions are ended under them (``pg_terminate_backend``, what a restart
does to every client; only this test's sessions, which carry its schema's name as their
``application_name``). Each step records its idempotency key in a ledger, guarded so that the
effect counts once, and every execution in a second file: every run must succeed and every
effect must appear exactly once, however often a step ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from runtime_helpers import FAST, start, write_workflow
from wayang.app import App, Settings
from wayang.engine.state import RunStatus
from wayang.runtime.worker import Worker, WorkerSettings, store_link

RUNS = 8
STEPS = ["a", "b1", "b2", "b3", "c"]
CUTS = 10
WORKER = WorkerSettings(
    slots=4, lease_s=5.0, heartbeat_every_s=0.3, idle_poll_s=0.05, wakeup_poll_s=1.0, drain_s=5.0
)


def workflow(ledger: Path) -> str:
    guarded = (
        f'flock {ledger}.lock sh -c \'echo "$WAYANG_IDEMPOTENCY_KEY" >> {ledger}.executions; '
        f'grep -qx "$WAYANG_IDEMPOTENCY_KEY" {ledger} 2>/dev/null || '
        f'echo "$WAYANG_IDEMPOTENCY_KEY" >> {ledger}\''
    )
    needs = {"a": "", "c": '"b1", "b2", "b3"'}
    lines = ['id = "outage"']
    for step in STEPS:
        after = needs.get(step, '"a"')
        lines.append(f"[steps.{step}]\nneeds = [{after}]")
        lines.append(f"run = '''sleep 0.2; {guarded}'''")
    return "\n".join(lines) + "\n"


@pytest.fixture
def store_url(postgres_url: str, postgres_schema: str) -> str:
    return f"{postgres_url}&application_name={postgres_schema}"


@pytest.fixture
def apps(store_url: str) -> Iterator[tuple[App, App]]:
    """The engine's and the worker's: two stores, two pools, as two processes would have."""
    engine_app = App(Settings(store=store_url, engine=replace(FAST, run_tasks=False)))
    worker_app = App(Settings(store=store_url))
    yield engine_app, worker_app
    engine_app.close()
    worker_app.close()


@contextlib.asynccontextmanager
async def working(app: App) -> AsyncIterator[Worker]:
    worker = Worker(store_link(app.store), app.executor, WORKER)
    stop = asyncio.Event()
    job = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(job, 30)


def terminate_sessions(server: str, name: str) -> int:
    with psycopg.connect(server, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            [name],
        ).fetchall()
    return len(ended)


@pytest.mark.timeout(180)
def test_runs_finish_with_every_effect_once_while_sessions_are_ended_again_and_again(
    apps: tuple[App, App], tmp_path: Path, postgres_server: str, postgres_schema: str
) -> None:
    engine_app, worker_app = apps
    ledger = tmp_path / "ledger"
    path = write_workflow(tmp_path, workflow(ledger))
    ended: list[int] = []

    async def cut_sessions(done: asyncio.Future[list[object]]) -> None:
        for _ in range(CUTS):
            await asyncio.sleep(0.25)
            if done.done():
                return
            ended.append(
                await asyncio.to_thread(terminate_sessions, postgres_server, postgres_schema)
            )

    async def go() -> list[object]:
        async with engine_app.engine() as engine, working(worker_app) as worker:
            futures = [(await start(engine, path))[1] for _ in range(RUNS)]
            everything = asyncio.gather(*futures)
            chaos = asyncio.create_task(cut_sessions(everything))
            states = await asyncio.wait_for(everything, 150)
            await chaos
            print(f"\nworker: {worker.counts}")
            return list(states)

    started = time.monotonic()
    states = asyncio.run(go())
    took = time.monotonic() - started
    assert [state.status for state in states] == [RunStatus.SUCCEEDED] * RUNS  # type: ignore[attr-defined]
    run_ids = [state.run_id for state in states]  # type: ignore[attr-defined]
    effects = ledger.read_text().split()
    assert sorted(effects) == sorted(f"{run}/{step}" for run in run_ids for step in STEPS)
    executions = Counter(Path(f"{ledger}.executions").read_text().split())
    assert set(executions) == set(effects)
    print(
        f"{RUNS} runs, {len(effects)} effects once each, {sum(executions.values())} executions; "
        f"sessions ended {len(ended)} times ({sum(ended)} sessions) in {took:.1f}s"
    )
