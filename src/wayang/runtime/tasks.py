"""What an engine and a worker share about running one task: where it runs and how it is told."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Protocol

from wayang.engine.messages import TaskFinished
from wayang.executors.base import TaskResult, TaskSpec


def workspace_for(run_cwd: str, workspace: str) -> tuple[str, bool]:
    """The directory a step runs in, and whether it is a scratch one to remove afterwards."""
    if workspace == "inherit":
        return run_cwd, False
    if workspace == "ephemeral":
        return tempfile.mkdtemp(prefix="wayang-step-"), True
    return str(Path(run_cwd, workspace)), False


class TaskLike(Protocol):
    """An attempt to run: the engine's dispatch command, or a task a worker claimed."""

    @property
    def step_id(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def idempotency_key(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...


def task_spec(
    run_id: str,
    task: TaskLike,
    cwd: str,
    *,
    launcher: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
) -> TaskSpec:
    """The executor's view of one attempt, from the task's payload (see ``decide.dispatch``);
    ``launcher`` and ``extra_env`` come from the run's workspace, when it has one."""
    payload = task.payload
    return TaskSpec(
        run_id=run_id,
        step_id=task.step_id,
        attempt=task.attempt,
        idempotency_key=task.idempotency_key,
        command=payload.get("command"),
        uses=payload.get("uses"),
        inputs=dict(payload.get("inputs") or {}),
        env={**(extra_env or {}), **dict(payload.get("env") or {})},
        cwd=cwd,
        timeout_s=payload.get("timeout_s"),
        workflow_id=str(payload.get("workflow_id") or ""),
        launcher=launcher,
    )


def finished_message(task: TaskLike, result: TaskResult, started: float) -> TaskFinished:
    """The core's input for an attempt that ran and produced ``result``."""
    return TaskFinished(
        task.step_id,
        task.attempt,
        result.status,
        result.outputs,
        result.error,
        result.exit_code,
        result.duration_s,
        started,
    )
