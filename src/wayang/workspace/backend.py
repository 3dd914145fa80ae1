"""The port every version-control backend fills: make a checkout elsewhere, and remove it.

A backend never touches the user's own checkout: it adds a *workspace* (a ``git worktree`` or a
``jj workspace``) in a folder outside the repository, at a given change, and forgets it again.
Commands go through a :data:`CommandRunner`, so a backend whose tool is missing here (Jujutsu)
is tested against a recorded-command double while the real one runs ``subprocess``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from wayang.workspace.errors import BackendCommandError


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What one command printed and how it exited."""

    returncode: int
    stdout: str
    stderr: str


CommandRunner = Callable[[Sequence[str], Path], CommandResult]
"""``(argv, cwd) -> result``: runs a command and returns its output; never raises on exit code."""


def run_command(argv: Sequence[str], cwd: Path) -> CommandResult:
    """The real :data:`CommandRunner`: ``subprocess.run`` with text output captured."""
    try:
        done = subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        return CommandResult(127, "", f"{argv[0]}: command not found")
    return CommandResult(done.returncode, done.stdout, done.stderr)


def checked(runner: CommandRunner, argv: Sequence[str], cwd: Path) -> str:
    """Run ``argv``; its stdout, or :class:`BackendCommandError` naming the command and output."""
    result = runner(argv, cwd)
    if result.returncode != 0:
        raise BackendCommandError(describe_failure(argv, cwd, result))
    return result.stdout


def describe_failure(argv: Sequence[str], cwd: Path, result: CommandResult) -> str:
    """``'git …' failed in DIR: <its last line of output>``."""
    said = (result.stderr or result.stdout).strip().splitlines()
    detail = said[-1] if said else f"exit status {result.returncode}"
    return f"'{' '.join(argv)}' failed in {cwd}: {detail}"


class Backend(Protocol):
    """A version-control system that can check a repository out into another folder."""

    name: str  # "git" or "jj": recorded in each workspace's metadata

    def resolve(self, repo: Path, base: str | None) -> str:
        """The full id of the change ``base`` names (the current one when None)."""
        ...

    def add(
        self, repo: Path, dest: Path, base: str, *, name: str, include_uncommitted: bool
    ) -> str:
        """Make ``dest`` (absent or empty) a checkout of ``repo`` at ``base``, registered as
        ``name``; return the id of what it holds (which differs from ``base`` when uncommitted
        changes were included)."""
        ...

    def remove(self, repo: Path, dest: Path, *, name: str) -> None:
        """Unregister the workspace and delete ``dest``; tolerates one that is half made."""
        ...

    def uncommitted(self, repo: Path) -> list[str]:
        """The paths with changes not in the current change (empty when none or not tracked)."""
        ...


def find_repository(start: Path) -> Path | None:
    """The top of the repository holding ``start`` (a folder with ``.jj`` or ``.git``), if any."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / ".jj").is_dir() or (folder / ".git").exists():
            return folder
    return None


def detect_backend_name(repo: Path) -> str:
    """``jj`` when the repository has ``.jj/`` (even colocated with git), else ``git``."""
    return "jj" if (repo / ".jj").is_dir() else "git"


def tool_available(name: str) -> bool:
    return shutil.which(name) is not None
