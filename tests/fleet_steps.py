"""Steps for the fleet fault tests (tests/fleet/), run by ``wayang worker`` processes.

``record`` is a step with an effect: it adds a row to ``fleet_effects`` keyed by its idempotency
key (``INSERT … ON CONFLICT DO NOTHING``: a step run again adds nothing), and a row to
``fleet_executions`` every time it runs, so the tests can count how often steps ran more than
once and check that the key absorbed it. ``record_and_linger`` does the same, then waits.
``poison`` kills the process that runs it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time

import psycopg

from wayang.executors import StepContext

LEDGER_TABLES = """
CREATE TABLE fleet_effects (
    idempotency_key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE TABLE fleet_executions (
    id BIGSERIAL PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    inserted BOOLEAN NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
"""
"""The ledger, created by the tests in a schema of its own beside the store's (a store refuses a
schema that holds other tables)."""


_EFFECT = (
    "INSERT INTO fleet_effects (idempotency_key, run_id, step_id, pid, at) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING"
)
_EXECUTION = (
    "INSERT INTO fleet_executions (idempotency_key, run_id, step_id, attempt, pid, inserted, at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def _effect(ctx: StepContext, now: float) -> tuple[object, ...]:
    return (ctx.idempotency_key, ctx.run_id, ctx.step_id, os.getpid(), now)


def _execution(ctx: StepContext, now: float, inserted: bool) -> tuple[object, ...]:
    return (ctx.idempotency_key, ctx.run_id, ctx.step_id, ctx.attempt, os.getpid(), inserted, now)


def record(ctx: StepContext, ledger: str, pause_ms: int = 0) -> dict[str, int]:
    """Record this step's effect once per idempotency key, after a pause of up to ``pause_ms``
    (at random)."""
    if pause_ms:
        time.sleep(random.uniform(0, pause_ms / 1000))
    now = time.time()
    with psycopg.connect(ledger, connect_timeout=10) as conn:
        inserted = conn.execute(_EFFECT, _effect(ctx, now)).rowcount == 1
        conn.execute(_EXECUTION, _execution(ctx, now, inserted))
    return {"pid": os.getpid()}


async def record_and_linger(ctx: StepContext, ledger: str, linger_ms: int) -> dict[str, int]:
    """Record the effect like ``record``; the execution that recorded it then lingers until
    ``linger_ms`` after it began, so a test can stop its worker between effect and result.

    Async, so it runs on the worker's event loop: continued after that time, the worker ends
    the step and starts reporting in one go, before its heartbeat (due as well) can hear that
    the task was taken. A step in a thread would race the heartbeat instead.
    """
    until, now = time.monotonic() + linger_ms / 1000, time.time()
    async with await psycopg.AsyncConnection.connect(ledger, connect_timeout=10) as conn:
        inserted = (await conn.execute(_EFFECT, _effect(ctx, now))).rowcount == 1
        await conn.execute(_EXECUTION, _execution(ctx, now, inserted))
    if inserted:
        await asyncio.sleep(max(0.0, until - time.monotonic()))
    return {"pid": os.getpid()}


def poison(ctx: StepContext) -> None:
    """Kill the process running this step: the worker itself (Python steps run in it)."""
    os.kill(os.getpid(), signal.SIGKILL)
