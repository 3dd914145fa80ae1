"""The worker protocol and task-queue backpressure through the HTTP API, in process (httpx over
ASGI) on a real SQLite store and a real engine: a worker registers, claims a GPU task, loses it
when its lease lapses, and its late result is refused by fencing; a full task queue answers 429
on the fast start route and on the routes FastAPI serves alike; the fleet's gauges."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from wayang.app import App, Settings
from wayang.engine.messages import TaskFinished
from wayang.runtime.engine import EngineSettings
from wayang.runtime.queues import QUEUE_LIMITS
from wayang.runtime.records import result_record
from wayang.server.api import create_api
from wayang.server.core import CoreSettings, ServerCore

TOKEN = "s3cret"
AUTH = {"authorization": f"Bearer {TOKEN}"}
GPU = """
id = "gpu"
version = "1.0.0"
[steps.render]
run = "echo rendered"
runs_on = { capabilities = ["gpu"] }
"""
FAILING = """
id = "broken"
version = "1.0.0"
[steps.boom]
run = "exit 3"
"""
OFFERS = ["cap:gpu", "cap:shell"]

Body = Callable[[httpx.AsyncClient, ServerCore], Awaitable[None]]


def serve(tmp_path: Path, body: Body) -> None:
    async def go() -> None:
        engine = EngineSettings(poll_every_s=0.05, adopt_orphans=True)
        app = App(Settings(store=str(tmp_path / "w.db"), engine=engine))
        try:
            async with ServerCore(app, CoreSettings(grace_s=5.0)) as core:
                transport = httpx.ASGITransport(app=create_api(core, token=TOKEN))
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://wayang", headers=AUTH, timeout=30
                ) as client:
                    await body(client, core)
        finally:
            app.close()

    asyncio.run(go())


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    pytest.fail("timed out")


def hello(worker_id: str) -> dict[str, Any]:
    return {"worker_id": worker_id, "host": "gpu-1", "pid": 7, "version": "test",
            "capabilities": ["shell", "gpu"], "queues": ["default"], "slots": 2}  # fmt: skip


def claim(worker_id: str, lease_s: float, offers: list[str] = OFFERS) -> dict[str, Any]:
    return {"worker_id": worker_id, "queue": "default", "limit": 4, "offers": offers,
            "lease_s": lease_s}  # fmt: skip


def succeeded(task: dict[str, Any]) -> dict[str, Any]:
    finished = TaskFinished(task["step_id"], task["attempt"], "succeeded", {}, None, 0, 0.01)
    return result_record(finished)


def gauges(text: str) -> dict[tuple[str, str], float]:
    """``{(sample name, its one label's value): value}`` of the exposition text."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = next(iter(sample.labels.values()), "")
            found[sample.name, label] = sample.value
    return found


@pytest.mark.timeout(60)
def test_a_worker_over_http_claims_a_gpu_task_and_a_late_result_is_refused(
    tmp_path: Path,
) -> None:
    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        anonymous = await client.post(
            "/api/v1/workers/register", json=hello("w1"), headers={"authorization": ""}
        )
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.json()["detail"].startswith("workers.register needs the API token")
        for worker_id in ("w1", "w2"):
            registered = await client.post("/api/v1/workers/register", json=hello(worker_id))
            assert registered.status_code == 200, registered.text
        started = await client.post("/api/v1/runs", json={"source": GPU})
        run_id = started.json()["run_id"]

        async def claimed(worker_id: str, lease_s: float) -> list[dict[str, Any]]:
            answer = await client.post("/api/v1/tasks/claim", json=claim(worker_id, lease_s))
            assert answer.status_code == 200, answer.text
            tasks: list[dict[str, Any]] = answer.json()["tasks"]
            return tasks

        no_gpu = await client.post("/api/v1/tasks/claim", json=claim("w2", 30, ["cap:shell"]))
        assert no_gpu.json() == {"tasks": []}
        [first] = await until(lambda: claimed("w1", 0.5))
        assert (first["run_id"], first["step_id"], first["attempt"]) == (run_id, "render", 1)
        assert first["idempotency_key"] and first["payload"]["command"] == "echo rendered"

        # w1 stops heartbeating; once its lease lapsed w2 takes the task with a new token.
        [second] = await until(lambda: claimed("w2", 30))
        assert second["task_id"] == first["task_id"]
        assert second["fencing_token"] > first["fencing_token"]
        beat = {"worker_id": "w1", "running": 1, "lease_s": 30}
        held = await client.post("/api/v1/workers/heartbeat", json=beat)
        assert held.json() == {"held": []}  # w1 learns it lost the task

        late = {"task_id": first["task_id"], "fencing_token": first["fencing_token"],
                "result": succeeded(first)}  # fmt: skip
        refused = await client.post("/api/v1/tasks/complete", json=late)
        assert refused.status_code == 200, refused.text
        assert refused.json() == {"task_id": first["task_id"], "counted": False}

        line = {"run_id": run_id, "step_id": "render", "attempt": 1, "stream": "stdout",
                "line": "rendered", "at": "2026-11-21T08:54:14.123+00:00"}  # fmt: skip
        batch = {"lines": [line], "request_id": "r-1"}
        for _ in range(2):  # a repeat (its answer lost) appends nothing more
            appended = await client.post("/api/v1/tasks/logs", json=batch)
            assert appended.json() == {"appended": 1}
        current = {**late, "fencing_token": second["fencing_token"], "result": succeeded(second)}
        for _ in range(2):  # the same: counted once, and a repeat hears it counted
            counted = await client.post("/api/v1/tasks/complete", json=current)
            assert counted.json() == {"task_id": first["task_id"], "counted": True}

        async def ended() -> Any:
            run = (await client.get(f"/api/v1/runs/{run_id}")).json()
            return run if run["status"] == "succeeded" else None

        await until(ended)
        logs = (await client.get(f"/api/v1/runs/{run_id}/logs")).json()["items"]
        assert [item["line"] for item in logs] == ["rendered"]
        workers = {w.worker_id: w for w in core.store.list_workers()}
        assert (workers["w1"].host, workers["w1"].capabilities) == ("gpu-1", ["shell", "gpu"])

    serve(tmp_path, body)


TWO_GPU = """
id = "gpus"
version = "1.0.0"
[steps.left]
run = "echo left"
runs_on = { capabilities = ["gpu"] }
[steps.right]
run = "echo right"
runs_on = { capabilities = ["gpu"] }
"""


@pytest.mark.timeout(60)
def test_a_batch_of_results_and_their_output_is_recorded_once_in_one_request(
    tmp_path: Path,
) -> None:
    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        await client.post("/api/v1/workers/register", json=hello("w1"))
        run_id = (await client.post("/api/v1/runs", json={"source": TWO_GPU})).json()["run_id"]

        async def both() -> list[dict[str, Any]]:
            answer = await client.post("/api/v1/tasks/claim", json=claim("w1", 30))
            tasks: list[dict[str, Any]] = answer.json()["tasks"]
            return tasks if len(tasks) == 2 else []

        tasks = await until(both)
        line = {"run_id": run_id, "step_id": tasks[0]["step_id"], "attempt": 1,
                "stream": "stdout", "line": "batched", "at": "2026-11-21T08:54:14.123+00:00"}  # fmt: skip
        results = [
            {
                "task_id": task["task_id"],
                "fencing_token": task["fencing_token"],
                "result": succeeded(task),
            }
            for task in tasks
        ]
        results[1]["fencing_token"] -= 1  # stale: not counted
        batch = {"results": results, "output": [line], "request_id": "b-1"}
        for _ in range(2):  # a repeat (its answer lost) gets the first answer, does nothing
            answer = await client.post("/api/v1/tasks/complete-batch", json=batch)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {
                "completed": [
                    {"task_id": tasks[0]["task_id"], "counted": True},
                    {"task_id": tasks[1]["task_id"], "counted": False},
                ]
            }
        logs = (await client.get(f"/api/v1/runs/{run_id}/logs")).json()["items"]
        assert [item["line"] for item in logs] == ["batched"]
        empty = await client.post(
            "/api/v1/tasks/complete-batch", json={"results": [], "request_id": "b-2"}
        )
        assert empty.status_code == 422, empty.text

    serve(tmp_path, body)


@pytest.mark.timeout(60)
def test_the_server_applies_the_queue_limits_and_rejects_bad_worker_requests(
    tmp_path: Path,
) -> None:
    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        core.store.kv_set(QUEUE_LIMITS, "default", {"max_running": 1})
        limits = await client.get("/api/v1/queues/limits")
        assert limits.json() == {"limits": {"default": {"max_running": 1, "max_depth": None}}}
        for _ in range(2):
            await client.post("/api/v1/runs", json={"source": GPU})
        await until(lambda: _waiting(core, 2))
        # The worker asks for four and no limit; the queue allows one running task.
        taken = await client.post("/api/v1/tasks/claim", json=claim("w1", 30))
        assert len(taken.json()["tasks"]) == 1
        again = await client.post("/api/v1/tasks/claim", json=claim("w1", 30))
        assert again.json() == {"tasks": []}

        unknown = await client.post("/api/v1/tasks/claim", json={**claim("w1", 30), "x": 1})
        assert unknown.status_code == 422 and unknown.json()["type"].endswith("invalid-request")
        naive = {"lines": [{"run_id": "r", "step_id": "s", "attempt": 1, "stream": "stdout",
                            "line": "x", "at": "2026-11-21T08:54:14"}]}  # fmt: skip
        assert (await client.post("/api/v1/tasks/logs", json=naive)).status_code == 422

        spec = (await client.get("/api/v1/openapi.json")).json()
        route = spec["paths"]["/api/v1/tasks/claim"]["post"]
        assert (route["x-wayang-resource"], route["x-wayang-action"]) == ("tasks", "claim")
        assert "ClaimTasks" in spec["components"]["schemas"]

    serve(tmp_path, body)


async def _waiting(core: ServerCore, tasks: int) -> bool:
    return await asyncio.to_thread(core.store.queue_depth, "default") >= tasks


@pytest.mark.timeout(60)
def test_a_full_task_queue_refuses_runs_with_429_on_every_route_that_starts_one(
    tmp_path: Path,
) -> None:
    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        core.store.kv_set(QUEUE_LIMITS, "default", {"max_depth": 1})
        broken = (await client.post("/api/v1/runs", json={"source": FAILING})).json()["run_id"]
        first = await client.post("/api/v1/runs", json={"source": GPU})
        assert first.status_code == 202, first.text
        await until(lambda: _waiting(core, 1))

        refused = await client.post("/api/v1/runs", json={"source": GPU})  # the fast path
        assert refused.status_code == 429, refused.text
        problem = refused.json()
        assert problem["type"] == "https://wayang.dev/problems/task-queue-full"
        assert problem["queue"] == "default"
        assert problem["detail"].startswith(
            "queue 'default' holds 1 waiting tasks, its limit (max_depth) is 1: the run was not "
            "started"
        )
        assert "wayang queues limit default --max-depth N" in problem["detail"]

        async def failed() -> bool:
            run = (await client.get(f"/api/v1/runs/{broken}")).json()
            return bool(run["status"] == "failed")

        await until(failed)
        retried = await client.post(f"/api/v1/runs/{broken}/retry")  # a route FastAPI serves
        assert retried.status_code == 429, retried.text
        assert retried.json() == problem
        assert refused.headers.get("retry-after") == retried.headers.get("retry-after")

        await client.post("/api/v1/workers/register", json=hello("w1"))
        metrics = gauges((await client.get("/metrics")).text)
        assert metrics["wayang_task_queue_waiting", "default"] == 1
        assert metrics["wayang_task_queue_running", "default"] == 0
        assert metrics["wayang_task_queue_oldest_wait_seconds", "default"] >= 0
        assert metrics["wayang_workers", "running"] == 1
        assert metrics["wayang_workers", "lost"] == 0

    serve(tmp_path, body)
