"""Running a just recipe: ``uses = "just:RECIPE"``, with optional ``inputs.args`` and
``inputs.justfile``.

The step runs ``just --justfile F --working-directory CWD RECIPE ARGS…`` through the shell
executor, so timeouts, cancellation, logs, the environment and the ``WAYANG_*`` variables
(``$WAYANG_OUTPUT`` included) are exactly those of a ``run`` step, the workspace's launcher
(direnv) too. ``F`` is ``inputs.justfile`` (relative to the step's directory), else the first of
:data:`JUSTFILES` in the step's directory or the nearest folder above it that has one; with
neither, the two options are left out and just looks for a ``justfile`` from the step's directory
upward. ``--working-directory`` keeps recipes running in the step's directory even when their
justfile lives in ``.agent-tools/`` or higher up.

When just itself fails (no such recipe, a recipe that exited non-zero), its last line on stderr
says why; it is added to the step's error, so ``wayang status`` shows more than an exit status.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from wayang.errors import WayangError
from wayang.executors.base import Executor, LogSink, TaskResult, TaskSpec
from wayang.executors.shell import ShellExecutor

PREFIX = "just:"
JUSTFILES = (".agent-tools/agents.just", "agents.just")
"""What a step looks for, in each folder from its own upward, without ``inputs.justfile``."""

INPUTS = frozenset({"args", "justfile"})
INSTALL_HINT = "pip install 'wayang[just]', or install just (https://just.systems)"
_JUST_ERROR = "error: "  # how just starts the line that says why it failed


class _JustStepError(WayangError):
    """The recipe cannot be run as asked; the message becomes the step's error."""


def find_just() -> str | None:
    """The ``just`` on ``PATH``, else the one pip put next to this Python (a venv's ``bin``,
    which need not be on ``PATH``)."""
    found = shutil.which("just")
    if found is not None:
        return found
    beside = Path(sys.executable).parent / "just"
    return str(beside) if os.access(beside, os.X_OK) and beside.is_file() else None


class JustExecutor:
    """Runs ``just:`` steps with ``shell`` (a :class:`ShellExecutor` by default); ``find`` says
    where the ``just`` binary is, or ``None`` when there is none."""

    def __init__(
        self, shell: Executor | None = None, find: Callable[[], str | None] = find_just
    ) -> None:
        self._shell = shell or ShellExecutor()
        self._find = find

    async def execute(self, task: TaskSpec, log: LogSink) -> TaskResult:
        try:
            command = just_command(task, self._binary(task))
        except _JustStepError as exc:
            return TaskResult.failed(str(exc), 0.0)
        last_error: list[str] = []
        result = await self._shell.execute(
            replace(task, command=command), _remember_errors(log, last_error)
        )
        return _explained(result, last_error)

    def _binary(self, task: TaskSpec) -> str:
        binary = self._find()
        if binary is None:
            raise _JustStepError(f"cannot run {task.uses}: 'just' is not installed; {INSTALL_HINT}")
        return binary


def just_command(task: TaskSpec, just: str) -> str:
    """The shell command that runs the task's recipe with ``just``, every word shell-quoted."""
    recipe = (task.uses or "").removeprefix(PREFIX)
    if not task.uses or not task.uses.startswith(PREFIX) or not recipe:
        raise _JustStepError(f"bad just step {task.uses!r}: expected 'just:RECIPE'")
    unknown = sorted(set(task.inputs) - INPUTS)
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise _JustStepError(f"a just step takes inputs 'args' and 'justfile', not {names}")
    cwd = os.path.abspath(task.cwd)  # the shell runs in it: a relative path would count twice
    justfile = _justfile(cwd, task.inputs)
    where = ["--justfile", justfile, "--working-directory", cwd] if justfile else []
    return shlex.join([just, *where, recipe, *_args(task.inputs.get("args", []))])


def _justfile(cwd: str, inputs: Mapping[str, Any]) -> str | None:
    given = inputs.get("justfile")
    if given is None:
        return _nearest_justfile(Path(cwd))
    relative = PurePosixPath(given) if isinstance(given, str) else None
    if relative is None or relative.is_absolute() or ".." in relative.parts or not given:
        raise _JustStepError(
            f"inputs.justfile is a path relative to the step's directory, without '..' "
            f"(got {given!r})"
        )
    path = Path(cwd, relative)
    if not path.is_file():
        raise _JustStepError(f"justfile {given!r} not found in {cwd}")
    return str(path)


def _nearest_justfile(cwd: Path) -> str | None:
    """The first of :data:`JUSTFILES` in ``cwd``, else in its parent, and so on up, as just
    looks for a ``justfile``: a workflow in a sub-folder of a workspace still finds the tools
    at the workspace's top (``.agent-tools/`` is where workspaces put them)."""
    for folder in (cwd, *cwd.parents):
        for name in JUSTFILES:
            if (folder / name).is_file():
                return str(folder / name)
    return None


def _args(args: object) -> list[str]:
    """Each argument as text; a ``${{ }}`` value may have made a number or boolean."""
    if not isinstance(args, list):
        raise _JustStepError(f"inputs.args is a list of strings, not {type(args).__name__}")
    return [_arg_text(index, arg) for index, arg in enumerate(args)]


def _arg_text(index: int, arg: object) -> str:
    if isinstance(arg, bool):
        return "true" if arg else "false"
    if isinstance(arg, str | int | float):
        return str(arg)
    kind = "null" if arg is None else type(arg).__name__
    raise _JustStepError(f"inputs.args[{index}] is {kind}; each argument is a string")


def _remember_errors(log: LogSink, last_error: list[str]) -> LogSink:
    """``log``, also keeping the latest stderr line in which just says why it failed."""

    def sink(stream: str, line: str) -> None:
        if stream == "stderr" and line.startswith(_JUST_ERROR):
            last_error[:] = [line.removeprefix(_JUST_ERROR)]
        log(stream, line)

    return sink


def _explained(result: TaskResult, last_error: list[str]) -> TaskResult:
    """A failed result with just's own reason appended, as in ``exit status 1: justfile does
    not contain recipe `lnt``."""
    if result.status != "failed" or not last_error or result.error is None:
        return result
    return replace(result, error=f"{result.error}: {last_error[0]}")
