"""Fixtures for driving the ``wayang`` command: in this process, or as a child process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli_runs import child_env


@pytest.fixture
def workflow(tmp_path: Path) -> Callable[[str], str]:
    """Write dedented workflow text to ``tmp_path/workflow.toml``; returns the path."""

    def write(text: str, name: str = "workflow.toml") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    return write


@pytest.fixture
def spawn(db: Path, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``wayang --store DB *argv`` as a child process; any left running is killed after."""
    children: list[subprocess.Popen[str]] = []

    def start(*argv: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, "-m", "wayang.cli.main", "--store", str(db), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(db),
            cwd=tmp_path,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate()
