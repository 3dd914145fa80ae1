"""The executor port: what a step attempt is, what it produced, and the one method that runs it.

The engine hands an executor a :class:`TaskSpec` and a :data:`LogSink`; the executor runs the step
and returns a :class:`TaskResult`. A step that goes wrong is a *result* (``failed`` or
``timed_out``), never an exception: the only exception that leaves :meth:`Executor.execute` on
purpose is :class:`asyncio.CancelledError`, after the work has been stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Status = Literal["succeeded", "failed", "timed_out"]

LogSink = Callable[[str, str], None]
"""``(stream, line)`` with stream ``"stdout"``, ``"stderr"`` or ``"log"``; called for every
captured line, in order within a stream, without the trailing newline."""


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One attempt of one step, fully rendered by the planner: nothing here is evaluated again."""

    run_id: str
    step_id: str
    attempt: int  # 1-based
    idempotency_key: str  # stable across retries and restarts of one logical step
    command: str | None  # shell: run with /bin/sh -c, already rendered and shell-quoted
    uses: str | None  # python: "python:package.module:function"
    inputs: dict[str, Any]  # python: keyword arguments
    env: dict[str, str]  # the step's env, added on top of the worker's os.environ
    cwd: str
    timeout_s: float | None
    workflow_id: str = ""
    # Goes before the command's argv: ``direnv exec WORKSPACE`` when the workspace's .envrc
    # applies (workspace/direnv.py); empty otherwise.
    launcher: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What one attempt produced. ``error`` is a one-line summary for people, None on success."""

    status: Status
    outputs: dict[str, Any]
    exit_code: int | None
    error: str | None
    duration_s: float

    @classmethod
    def failed(cls, error: str, duration_s: float, exit_code: int | None = None) -> TaskResult:
        return cls("failed", {}, exit_code, error, duration_s)

    @classmethod
    def timed_out(cls, timeout_s: float | None, duration_s: float) -> TaskResult:
        after = "" if timeout_s is None else f" after {timeout_s:g}s"
        return cls("timed_out", {}, None, f"timed out{after}", duration_s)


class Executor(Protocol):
    """Runs one attempt of a step.

    Cancelling the awaiting task stops the work and re-raises :class:`asyncio.CancelledError`.
    """

    async def execute(self, task: TaskSpec, log: LogSink) -> TaskResult: ...
