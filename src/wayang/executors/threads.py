"""Threads for sync step functions, each call's result handed straight back to the event loop.

A chain of quick Python steps spends much of each step handing it to a thread and back. The
standard route (``loop.run_in_executor`` on a ``ThreadPoolExecutor``) builds a
``concurrent.futures.Future`` with its own condition variable per call, chains it to an asyncio
future and takes the pool's locks twice; here a call is one queue put and one
``call_soon_threadsafe``. ``bench/hop_bench.py`` measures both: 12 µs a call against 26 µs.

Threads start as calls need them, up to ``max_threads``, and then stay, waiting for the next call.
They are daemon threads: a process that exits does not wait for a step still running in one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


def default_max_threads() -> int:
    """As asyncio's default executor: enough for I/O-bound steps, bounded on big machines."""
    return min(32, (os.cpu_count() or 1) + 4)


class StepThreads:
    """Runs sync callables on up to ``max_threads`` threads; see the module docstring."""

    def __init__(self, max_threads: int, name: str = "wayang-step") -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, got {max_threads}")
        self._max = max_threads
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # Every queued job is promised a thread: an idle one (reserved), a new one, or the next
        # to finish (``_waiting``); so no job waits while a thread could have been started.
        self._threads = 0
        self._idle = 0
        self._waiting = 0
        self._closed = False

    def run(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Call ``fn`` on a thread; the future gets its result or exception. Cancelling the
        future does not stop ``fn`` (a thread cannot be stopped): its outcome is dropped."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the step threads are closed")
            if self._idle:
                self._idle -= 1
            elif self._threads < self._max:
                self._threads += 1
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{self._threads}", daemon=True
                )
                thread.start()
            else:
                self._waiting += 1
        self._jobs.put((loop, future, fn))
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, fn = job
            del job
            try:
                outcome: tuple[bool, Any] = (True, fn())
            except StopIteration as exc:  # a future cannot hold one
                outcome = (False, RuntimeError(f"the step raised StopIteration: {exc}"))
            except BaseException as exc:  # the awaiting coroutine gets it, whatever it is
                outcome = (False, exc)
            # Free before the outcome is handed back, so the call the loop makes next on
            # hearing it finds this thread idle instead of starting another.
            with self._lock:
                if self._waiting:
                    self._waiting -= 1  # this thread takes a job already queued
                else:
                    self._idle += 1
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody awaits it now
                loop.call_soon_threadsafe(_settle, future, *outcome)
            del loop, future, fn, outcome

    def close(self) -> None:
        """Cancel the calls not yet started and let the threads end; calls running go on."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._threads
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                loop, future, _ = job
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    loop.call_soon_threadsafe(future.cancel)
        for _ in range(threads):
            self._jobs.put(None)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
