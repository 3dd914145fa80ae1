"""LocalExecutor dispatch and the package's public names."""

from __future__ import annotations

import asyncio
from typing import Any

import wayang.executors
from wayang.executors import LocalExecutor, TaskResult, TaskSpec


def task(**changes: Any) -> TaskSpec:
    fields: dict[str, Any] = {
        "run_id": "r",
        "step_id": "s",
        "attempt": 1,
        "idempotency_key": "r/s",
        "command": None,
        "uses": None,
        "inputs": {},
        "env": {},
        "cwd": ".",
        "timeout_s": None,
    }
    return TaskSpec(**(fields | changes))


def run(spec: TaskSpec) -> tuple[TaskResult, list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    executor = LocalExecutor()
    try:
        result = asyncio.run(
            executor.execute(spec, lambda stream, line: lines.append((stream, line)))
        )
    finally:
        executor.close()
    return result, lines


def test_a_command_runs_in_the_shell() -> None:
    result, lines = run(task(command="echo hi"))
    assert (result.status, lines) == ("succeeded", [("stdout", "hi")])


def test_a_python_reference_is_called() -> None:
    result, _ = run(task(uses="python:wayang_test_steps:add", inputs={"a": 1}))
    assert (result.status, result.outputs) == ("succeeded", {"sum": 2})


def test_a_command_wins_over_uses() -> None:
    result, _ = run(task(command="exit 4", uses="python:wayang_test_steps:add"))
    assert result.error == "exit status 4"


def test_nothing_to_execute_is_a_failed_result() -> None:
    empty, _ = run(task())
    assert (empty.status, empty.error) == (
        "failed",
        "nothing to execute: the step has neither a command nor a python: reference",
    )
    action, _ = run(task(uses="deploy"))
    assert action.error == "nothing to execute: uses 'deploy' is not a 'python:' reference"


def test_the_public_names_are_pinned() -> None:
    assert wayang.executors.__all__ == [
        "Executor",
        "LocalExecutor",
        "LogSink",
        "PythonExecutor",
        "ShellExecutor",
        "StepContext",
        "StepLogger",
        "TaskResult",
        "TaskSpec",
    ]
