"""A real ``wayang server`` as a child process, for the tests of the client and of the CLI
going through a server."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli_runs import child_env, wait_for
from wayang import wire
from wayang.client import Client

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``wayang --store DB server --port FREE *argv``, its output in ``logs``."""

    def __init__(self, db: Path, logs: Path, *argv: str, env: dict[str, str] | None = None) -> None:
        self.db = db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.err_path = logs / f"server-{self.port}.err"
        command = [sys.executable, "-m", "wayang.cli.main", "--store", str(db), "server"]
        command += ["--port", str(self.port), "--grace", "2", *argv]
        with self.err_path.open("w") as err:
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**child_env(db), **(env or {})},
                cwd=logs,
            )

    def wait_until_serving(self) -> ServerProcess:
        def answers() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"wayang server exited {self.process.returncode}: {self.err()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answers, START_TIMEOUT_S, "wayang server to answer")
        return self

    def err(self) -> str:
        return self.err_path.read_text()

    def stop(self) -> int:
        """SIGTERM; the exit status (killed when it does not stop within 15 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextlib.contextmanager
def running_server(
    db: Path, logs: Path, *argv: str, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A server on ``db``, serving until the block ends (then stopped, whatever happened)."""
    server = ServerProcess(db, logs, *argv, env=env)
    try:
        yield server.wait_until_serving()
    finally:
        server.stop()


# ------------------------------------------------------------------------------ runs through it


def start(client: Client, text: str, folder: Path, **fields: Any) -> str:
    """Start the workflow ``text`` (dedented, written to ``folder``) through the API; the run
    id."""
    path = folder / "workflow.toml"
    path.write_text(textwrap.dedent(text), "utf-8")
    request = wire.StartRun(source=path.read_text(), filename=str(path), **fields)
    return client.start_run(request).run_id


def finish(client: Client, run_id: str) -> wire.RunDetail:
    """Follow the run's stream to its end; the run then."""
    names = [name for name, _ in client.stream(run_id)]
    assert names[-1] == "end", names
    return client.run(run_id)


def waiting(client: Client, run_id: str, step: str, timeout: float = 15.0) -> wire.RunDetail:
    """Poll until ``step`` of the run waits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = client.run(run_id)
        if step in detail.steps and detail.steps[step].status == "waiting":
            return detail
        time.sleep(0.05)
    pytest.fail(f"step {step} of run {run_id} never waited")
