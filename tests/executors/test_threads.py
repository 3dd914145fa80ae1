"""StepThreads: sync calls on threads of their own, outcomes handed back to the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from wayang.executors.threads import StepThreads, default_max_threads


def with_threads(max_threads: int, body: Callable[[StepThreads], Any]) -> Any:
    threads = StepThreads(max_threads)
    try:
        return asyncio.run(body(threads))
    finally:
        threads.close()


def test_a_call_returns_its_value_and_runs_off_the_loop_thread() -> None:
    async def body(threads: StepThreads) -> tuple[int, int]:
        value = await threads.run(lambda: 41 + 1)
        ident = await threads.run(threading.get_ident)
        return value, ident

    value, ident = with_threads(2, body)
    assert value == 42
    assert ident != threading.get_ident()


def test_an_exception_reaches_the_awaiting_coroutine() -> None:
    def fails() -> None:
        raise KeyError("missing")

    async def body(threads: StepThreads) -> None:
        with pytest.raises(KeyError, match="missing"):
            await threads.run(fails)

    with_threads(1, body)


def test_stop_iteration_becomes_a_runtime_error_rather_than_hanging_the_future() -> None:
    def stops() -> None:
        raise StopIteration("done")

    async def body(threads: StepThreads) -> None:
        with pytest.raises(RuntimeError, match="StopIteration: done"):
            await threads.run(stops)

    with_threads(1, body)


def test_calls_run_at_once_up_to_the_limit() -> None:
    barrier = threading.Barrier(3, timeout=10)  # breaks unless three calls run together

    async def body(threads: StepThreads) -> list[int]:
        return list(await asyncio.gather(*(threads.run(barrier.wait) for _ in range(3))))

    assert sorted(with_threads(3, body)) == [0, 1, 2]


def test_calls_beyond_the_limit_wait_for_a_free_thread() -> None:
    release = threading.Event()
    running: list[str] = []

    def hold(name: str) -> str:
        running.append(name)
        release.wait(10)
        return name

    async def body(threads: StepThreads) -> list[str]:
        first = threads.run(lambda: hold("first"))
        second = threads.run(lambda: hold("second"))
        await asyncio.sleep(0.2)
        seen = list(running)  # one thread: the second call has not started
        release.set()
        return [*seen, *(await asyncio.gather(first, second))]

    assert with_threads(1, body) == ["first", "first", "second"]


def test_idle_threads_are_reused_rather_than_new_ones_started() -> None:
    async def body(threads: StepThreads) -> set[int]:
        return {await threads.run(threading.get_ident) for _ in range(20)}

    assert len(with_threads(4, body)) == 1  # one call at a time needs one thread


def test_a_cancelled_call_runs_on_and_its_outcome_is_dropped() -> None:
    release = threading.Event()
    finished = threading.Event()

    def slow() -> str:
        release.wait(10)
        finished.set()
        return "late"

    async def body(threads: StepThreads) -> None:
        future = threads.run(slow)
        future.cancel()
        release.set()
        await asyncio.to_thread(finished.wait, 10)
        await asyncio.sleep(0.05)  # the late outcome reaches a cancelled future: no error
        assert future.cancelled()
        assert await threads.run(lambda: "next") == "next"

    with_threads(1, body)


def test_close_cancels_calls_not_yet_started() -> None:
    started, release = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return release.wait(10)

    async def body(threads: StepThreads) -> None:
        running = threads.run(hold)
        queued = threads.run(lambda: "never")
        await asyncio.to_thread(started.wait, 10)
        threads.close()
        release.set()
        assert await running is True
        with pytest.raises(asyncio.CancelledError):
            await queued
        with pytest.raises(RuntimeError, match="closed"):
            threads.run(lambda: None)

    with_threads(1, body)


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        StepThreads(0)
    assert default_max_threads() >= 5
