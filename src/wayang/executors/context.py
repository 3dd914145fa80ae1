"""What a Python step may ask for: who it is, and a logger whose lines reach the run's log.

A step function receives a :class:`StepContext` when it has a parameter named ``ctx`` or
``context``, or one annotated with ``StepContext``. Its ``logger`` is the way for a Python step to
log: ``print()`` is not captured, because every step shares the worker's one ``sys.stdout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from dataclasses import dataclass

from wayang.executors.base import LogSink

_BARE = frozenset('"= \t\n')


class StepLogger:
    """``debug/info/warning/error(msg, **extra)``, each sent to the log as ``LEVEL msg k=v``.

    Safe to call from the thread a sync step runs in: such lines are handed to the event loop, so
    the log sink is only ever called on the loop's thread, in the order the lines were written.
    A sync step abandoned after a timeout may still log; those lines arrive late, after the
    attempt's result.
    """

    __slots__ = ("_log", "_loop", "_loop_thread")

    def __init__(self, log: LogSink, loop: asyncio.AbstractEventLoop) -> None:
        self._log = log
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def debug(self, msg: str, **extra: object) -> None:
        self._emit("DEBUG", msg, extra)

    def info(self, msg: str, **extra: object) -> None:
        self._emit("INFO", msg, extra)

    def warning(self, msg: str, **extra: object) -> None:
        self._emit("WARNING", msg, extra)

    def error(self, msg: str, **extra: object) -> None:
        self._emit("ERROR", msg, extra)

    def _emit(self, level: str, msg: str, extra: dict[str, object]) -> None:
        fields = "".join(f" {key}={_field_value(value)}" for key, value in extra.items())
        for line in f"{level} {msg}{fields}".splitlines():
            self._send(line)

    def _send(self, line: str) -> None:
        if threading.get_ident() == self._loop_thread:
            self._log("log", line)
            return
        # A step abandoned after a timeout may outlive the loop; its late lines have nowhere to go.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._log, "log", line)


def _field_value(value: object) -> str:
    """``value`` as logfmt does it: bare when unambiguous, else a double-quoted string."""
    text = value if isinstance(value, str) else repr(value)
    if text and not _BARE.intersection(text):
        return text
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class StepContext:
    """The attempt a Python step is running as; ``idempotency_key`` is stable across retries."""

    run_id: str
    step_id: str
    attempt: int
    idempotency_key: str
    workflow_id: str
    logger: StepLogger
