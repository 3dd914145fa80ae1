"""A fleet of real ``wayang server`` and ``wayang worker`` processes on one PostgreSQL store,
for the fault tests of tests/fleet/.

Every process is started from the ``wayang`` script of the running interpreter's environment,
with its output in a file of its own, and killed by its PID only (``SIGKILL``, or ``SIGTERM``
for a clean stop). :class:`Fleet` remembers what it started and kills what is still alive when
the test ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

TESTS = Path(__file__).resolve().parents[1]
WAYANG = Path(sys.executable).with_name("wayang")
START_TIMEOUT_S = 30.0
HOST = socket.gethostname()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env() -> dict[str, str]:
    """The environment of a fleet process: ``tests/`` importable (the steps live there)."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


@dataclass(eq=False)
class FleetProcess:
    """One ``wayang`` process of the fleet."""

    name: str
    args: tuple[str, ...]
    """What the test asked for (what a restart asks for again)."""
    log: Path
    process: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def owner_prefix(self) -> str:
        """How the store names what this process holds: owner ids start ``host:pid:``."""
        return f"{HOST}:{self.pid}:"

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """``kill -9`` by PID, and reap it."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait()

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time. The exit status."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass(eq=False)
class ServerProcess(FleetProcess):
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answers(self) -> bool:
        """Whether it is ready (``/readyz`` answers 200)."""
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def ready(self) -> bool:
        if not self.alive():
            pytest.fail(f"{self.name} exited {self.process.returncode}: {self.output()[-2000:]}")
        return self.answers()

    def wait_until_serving(self) -> ServerProcess:
        wait_until(self.ready, START_TIMEOUT_S, f"{self.name} to answer", every=0.1)
        return self


class Fleet:
    """Servers and workers on ``store`` (a ``postgresql://…?schema=`` URL); logs in ``logs``."""

    def __init__(self, store: str, logs: Path) -> None:
        self.store = store
        self.logs = logs
        self.processes: list[FleetProcess] = []
        self._started = 0
        self._closed = False

    def _spawn(self, name: str, argv: list[str]) -> tuple[Path, subprocess.Popen[bytes]]:
        if self._closed:
            raise RuntimeError(f"the fleet is closed: {name} is not started again")
        self._started += 1
        log = self.logs / f"{self._started:03d}-{name}.log"
        command = [str(WAYANG), "--store", self.store, *argv]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=child_env(), cwd=self.logs
            )
        return log, process

    def server(self, name: str, *argv: str, wait: bool = True) -> ServerProcess:
        """``wayang server`` on a free port, without a Unix socket (several servers of one
        store on one host would share the socket derived from the store)."""
        port = free_port()
        args = ["server", "--port", str(port), "--socket", "", "--grace", "1", *argv]
        log, process = self._spawn(name, args)
        server = ServerProcess(name, argv, log, process, port=port)
        self.processes.append(server)
        return server.wait_until_serving() if wait else server

    def worker(self, name: str, *argv: str) -> FleetProcess:
        """``wayang worker --id NAME …``: its tasks are owned by ``NAME`` in the store."""
        log, process = self._spawn(name, ["worker", "--id", name, *argv])
        worker = FleetProcess(name, argv, log, process)
        self.processes.append(worker)
        return worker

    def restart(self, old: FleetProcess, wait: bool = True) -> FleetProcess:
        """The same command again (a server gets a new port)."""
        if isinstance(old, ServerProcess):
            return self.server(old.name, *old.args, wait=wait)
        return self.worker(old.name, *old.args)

    def close(self) -> None:
        self._closed = True
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.kill()


@contextlib.contextmanager
def fleet_of(store: str, logs: Path) -> Iterator[Fleet]:
    logs.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(store, logs)
    try:
        yield fleet
    finally:
        fleet.close()


# ------------------------------------------------------------------------------ runs


@dataclass(frozen=True)
class FleetDb:
    """A test's store URL, its ledger's URL, and connections to read both."""

    store: str
    ledger: str
    db: psycopg.Connection[tuple[Any, ...]]
    """Autocommit, ``search_path`` the store's schema (its tables: runs, tasks, …)."""
    books: psycopg.Connection[tuple[Any, ...]]
    """Autocommit, ``search_path`` the ledger's schema."""


def start_runs(
    servers: Iterable[ServerProcess], source: str, filename: str, count: int
) -> list[str]:
    """Start ``count`` runs of ``source`` through the servers' APIs, in turn; the run ids."""
    clients = [httpx.Client(base_url=server.url, timeout=30) for server in servers]
    body = {"source": source, "filename": filename}
    try:
        run_ids = []
        for number in range(count):
            answer = clients[number % len(clients)].post("/api/v1/runs", json=body)
            assert answer.status_code == 202, answer.text
            run_ids.append(str(answer.json()["run_id"]))
        return run_ids
    finally:
        for client in clients:
            client.close()


def ledger_dsn(server_url: str, schema: str) -> str:
    """A libpq URL whose sessions work in ``schema`` (where the ledger tables are)."""
    separator = "&" if "?" in server_url else "?"
    return f"{server_url}{separator}options=-csearch_path%3D{schema}"


@dataclass(frozen=True)
class Ledger:
    """What the steps recorded: effects (one per idempotency key) and every execution."""

    effects: int
    executions: int
    duplicate_effects: int
    """Effects beyond the first for one step of one run: a key that was not stable."""
    keys_executed_twice: int

    @property
    def absorbed(self) -> int:
        """Executions whose effect the key absorbed (the step had run before)."""
        return self.executions - self.effects


def read_ledger(conn: psycopg.Connection[Any]) -> Ledger:
    effects = conn.execute("SELECT count(*) FROM fleet_effects").fetchone()
    executions = conn.execute("SELECT count(*) FROM fleet_executions").fetchone()
    duplicates = conn.execute(
        "SELECT coalesce(sum(n - 1), 0) FROM "
        "(SELECT count(*) AS n FROM fleet_effects GROUP BY run_id, step_id) AS per_step"
    ).fetchone()
    twice = conn.execute(
        "SELECT count(*) FROM (SELECT idempotency_key FROM fleet_executions "
        "GROUP BY idempotency_key HAVING count(*) > 1) AS again"
    ).fetchone()
    assert effects and executions and duplicates and twice
    return Ledger(int(effects[0]), int(executions[0]), int(duplicates[0]), int(twice[0]))


def run_statuses(conn: psycopg.Connection[Any]) -> dict[str, str]:
    return {
        str(run_id): str(status)
        for run_id, status in conn.execute("SELECT run_id, status FROM runs")
    }


def figures_line(name: str, figures: dict[str, Any]) -> str:
    """One line of figures, printed by a test (``pytest -s``) and kept for docs/reliability.md."""
    text = " ".join(f"{key}={value}" for key, value in figures.items())
    line = f"[fleet] {name}: {text}"
    print(line)
    out = os.environ.get("WAYANG_FLEET_FIGURES")
    if out:
        with open(out, "a", encoding="utf-8") as file:
            file.write(line + "\n")
    return line
