"""Step functions for the executor tests, referenced as ``python:wayang_test_steps:<name>``.

It lives directly under ``tests/`` because that is the directory pytest puts on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from typing import Any

from wayang.executors import StepContext

NOT_A_FUNCTION = 42
cancelled = threading.Event()  # set by slow_async when it sees its cancellation


def add(a: int, b: int = 1) -> dict[str, int]:
    return {"sum": a + b}


async def add_async(a: int, b: int = 1) -> dict[str, int]:
    await asyncio.sleep(0)
    return {"sum": a + b}


def scalar(value: Any) -> Any:
    return value


def nothing() -> None:
    return None


def whoami(ctx: StepContext) -> dict[str, Any]:
    return {
        "run_id": ctx.run_id,
        "step_id": ctx.step_id,
        "attempt": ctx.attempt,
        "key": ctx.idempotency_key,
        "workflow_id": ctx.workflow_id,
        "thread": threading.current_thread().name,
    }


def by_annotation(env: StepContext, name: str) -> dict[str, str]:
    return {"step": env.step_id, "name": name}


def chatty(context: StepContext, n: int) -> None:
    context.logger.debug("starting")
    for i in range(n):
        context.logger.info("item", index=i, label="two words")
    context.logger.warning("careful", path="/tmp/x")
    context.logger.error("two\nlines")


async def chatty_async(ctx: StepContext) -> None:
    ctx.logger.info("from the loop", ok=True)


def flexible(first: str, **rest: Any) -> dict[str, Any]:
    return {"first": first, **rest}


def not_serializable() -> dict[str, Any]:
    return {"when": object()}


def bad_key() -> dict[Any, Any]:
    return {1: "one"}


def raises(message: str) -> None:
    _helper(message)


def _helper(message: str) -> None:
    raise ValueError(message)


async def raises_async() -> None:
    await asyncio.sleep(0)
    raise KeyError("missing")


def raises_timeout() -> None:
    raise TimeoutError("the network gave up")


def exits() -> None:
    raise SystemExit(3)


def slow_sync(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


class AtOnce:
    """How many calls of :func:`counted_at_once` ran at the same time, at most."""

    lock = threading.Lock()
    now = 0
    most = 0
    calls = 0


def counted_at_once(seconds: float) -> int:
    with AtOnce.lock:
        AtOnce.calls += 1
        AtOnce.now += 1
        AtOnce.most = max(AtOnce.most, AtOnce.now)
    time.sleep(seconds)
    with AtOnce.lock:
        AtOnce.now -= 1
    return AtOnce.most


async def slow_async(seconds: float) -> str:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        cancelled.set()
        raise
    return "done"


class Namespace:
    @staticmethod
    def nested(x: int) -> int:
        return x * 2


class _AsyncCallable:
    async def __call__(self, x: int) -> int:
        await asyncio.sleep(0)
        return x + 1


async_callable = _AsyncCallable()


def collector_thresholds() -> dict[str, int]:
    """The garbage collector's thresholds in the process running the step."""
    young, middle, full = gc.get_threshold()
    return {"young": young, "middle": middle, "full": full}


def cpus_of_this_thread() -> dict[str, list[int]]:
    """The CPUs the thread running the step may use."""
    return {"cpus": sorted(os.sched_getaffinity(0))}
