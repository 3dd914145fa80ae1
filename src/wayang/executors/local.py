"""The executor a local worker uses: shell steps to :class:`ShellExecutor`, Python steps to
:class:`PythonExecutor`, just recipes to :class:`JustExecutor` (which runs them in the shell)."""

from __future__ import annotations

from wayang.executors.base import Executor, LogSink, TaskResult, TaskSpec
from wayang.executors.just import PREFIX as JUST_PREFIX
from wayang.executors.just import JustExecutor
from wayang.executors.python import PREFIX, PythonExecutor
from wayang.executors.shell import ShellExecutor


class LocalExecutor:
    """Dispatches on what the step has: a ``command`` runs in the shell, a ``python:`` reference
    is called in-process, a ``just:`` recipe runs with ``just`` in the shell, and anything else
    fails as ``nothing to execute``."""

    def __init__(
        self,
        shell: Executor | None = None,
        python: PythonExecutor | None = None,
        just: Executor | None = None,
    ) -> None:
        self._shell = shell or ShellExecutor()
        self._python = python or PythonExecutor()
        self._just = just or JustExecutor(self._shell)

    def close(self) -> None:
        self._python.close()

    async def execute(self, task: TaskSpec, log: LogSink) -> TaskResult:
        if task.command is not None:
            return await self._shell.execute(task, log)
        if task.uses is not None and task.uses.startswith(PREFIX):
            return await self._python.execute(task, log)
        if task.uses is not None and task.uses.startswith(JUST_PREFIX):
            return await self._just.execute(task, log)
        what = (
            f"uses {task.uses!r} is not a 'python:' reference"
            if task.uses
            else "the step has neither a command nor a python: reference"
        )
        return TaskResult.failed(f"nothing to execute: {what}", 0.0)
