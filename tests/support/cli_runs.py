"""Helpers for tests of the run commands of the ``wayang`` CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wayang.cli.main import main

TESTS = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


Wayang = Callable[..., Result]
"""``wayang(*argv)``: run the CLI on the test's store in this process."""


def child_env(db: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "WAYANG_STORE": str(db), "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "it") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def kill_group(pid_file: Path) -> None:
    """Kill the process group of the shell step whose pid is in ``pid_file`` (an orphan)."""
    with contextlib.suppress(ProcessLookupError, FileNotFoundError, ValueError):
        os.killpg(int(pid_file.read_text().strip()), signal.SIGKILL)


# ------------------------------------------------------------------------------ shared fixtures
# Loaded for every test through ``pytest_plugins`` in tests/conftest.py.


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The store of the test; also $WAYANG_STORE, so nothing reaches the user's own store."""
    path = tmp_path / "wayang.db"
    monkeypatch.setenv("WAYANG_STORE", str(path))
    return path


@pytest.fixture
def wayang(db: Path, capsys: pytest.CaptureFixture[str]) -> Wayang:
    """Run ``wayang --store DB *argv`` in this process; its exit status and output, never a
    traceback."""

    def run(*argv: str) -> Result:
        code = main(["--store", str(db), *argv])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err, out + err
        return Result(code, out, err)

    return run
