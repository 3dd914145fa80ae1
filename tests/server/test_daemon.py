"""``wayang server`` as a real process: listens on TCP and a Unix socket, refuses to start open on
a public interface, stops cleanly on SIGTERM letting busy runs finish, and after a SIGKILL the next
server carries the unfinished run on."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli_runs import child_env, wait_for
from wayang.store.sqlite import SQLiteStore

SLOW = """
id = "slow"
[parameters.seconds]
type = "number"
default = 1
[steps.nap]
run = "sleep ${{ params.seconds }} && echo rested"
[steps.after]
needs = ["nap"]
run = "echo after"
"""


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, db: Path, logs: Path, *extra: str, env: dict[str, str] | None = None):
        self.db = db
        self.port = free_port()
        self.socket = logs / f"s{self.port}.sock"
        self.err_path = logs / f"server-{self.port}.err"
        argv = [sys.executable, "-m", "wayang.cli.main", "--store", str(db), "server",
                "--port", str(self.port), "--socket", str(self.socket), "--grace", "20", *extra]  # fmt: skip
        with self.err_path.open("w") as err:
            self.process = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=err, env={**child_env(db), **(env or {})}
            )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"server exited {self.process.returncode}: {self.err()}")
            try:
                return self.http.get("/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 20, "the server to be ready")

    def err(self) -> str:
        return self.err_path.read_text()

    def start(self, source: str, **params: Any) -> str:
        answer = self.http.post("/api/v1/runs", json={"source": source, "params": params})
        assert answer.status_code == 202, answer.text
        run_id: str = answer.json()["run_id"]
        return run_id

    def run(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.http.get(f"/api/v1/runs/{run_id}").json()
        return found

    def close(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Any]:
    started: list[Server] = []

    def start(*extra: str, env: dict[str, str] | None = None, ready: bool = True) -> Server:
        server = Server(tmp_path / "w.db", tmp_path, *extra, env=env)
        started.append(server)
        if ready:
            server.wait_ready()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.close()


@pytest.mark.timeout(60)
def test_sigterm_lets_a_busy_run_finish_then_exits_0(servers: Any) -> None:
    server = servers()
    run_id = server.start(SLOW, seconds=1.5)
    wait_for(lambda: server.run(run_id)["steps"].get("nap"), 10, "the run to start")
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0, server.err()
    assert "Traceback" not in server.err()
    assert stored_status(server, run_id) == "succeeded"
    assert not server.socket.exists()  # removed on the way out


@pytest.mark.timeout(90)
def test_after_a_sigkill_the_next_server_carries_the_run_on(servers: Any) -> None:
    first = servers()
    run_id = first.start(SLOW, seconds=3)
    wait_for(lambda: first.run(run_id)["status"] == "running", 10, "the run to start")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    second = servers()
    done = wait_for(
        lambda: second.run(run_id)["status"] in ("succeeded", "failed") and second.run(run_id),
        40,
        "the second server to finish the run",
    )
    assert done["status"] == "succeeded"
    assert done["steps"]["after"]["status"] == "succeeded"
    metrics = second.http.get("/metrics").text
    assert "wayang_lease_expiries_total 1.0" in metrics  # the run it took over


@pytest.mark.timeout(60)
def test_the_unix_socket_serves_the_same_api(servers: Any) -> None:
    server = servers()
    transport = httpx.HTTPTransport(uds=str(server.socket))
    with httpx.Client(transport=transport, base_url="http://wayang") as over_socket:
        health = over_socket.get("/healthz").json()
        assert health["status"] == "ok"
        assert over_socket.get("/api/v1/runs").status_code == 200


@pytest.mark.timeout(60)
def test_a_public_interface_needs_a_token(servers: Any, tmp_path: Path) -> None:
    refused = servers("--host", "0.0.0.0", ready=False)
    assert refused.process.wait(timeout=30) == 2
    assert "WAYANG_API_TOKEN" in refused.err() and "Traceback" not in refused.err()

    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    guarded = servers("--host", "0.0.0.0", "--token-file", str(token_file))
    assert guarded.http.get("/api/v1/runs").status_code == 401
    headers = {"authorization": "Bearer s3cret"}
    assert guarded.http.get("/api/v1/runs", headers=headers).status_code == 200


@pytest.mark.timeout(60)
def test_json_logs_carry_run_ids(servers: Any) -> None:
    server = servers("--log-format", "json")
    run_id = server.start(SLOW, seconds=0.1)
    wait_for(lambda: server.run(run_id)["status"] == "succeeded", 20, "the run to finish")
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)
    lines = [json.loads(line) for line in server.err().splitlines() if line.startswith("{")]
    assert any(line.get("run_id") == run_id for line in lines), server.err()
    assert all({"ts", "level", "msg"} <= set(line) for line in lines)


def stored_status(server: Server, run_id: str) -> str:
    with closing(SQLiteStore(server.db)) as store:
        record = store.get_run(run_id)
        assert record is not None
        return record.status
