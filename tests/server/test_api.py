"""The HTTP API in process (httpx over ASGI) on a real SQLite store and a real engine: workflows,
runs and their queue, events, logs, traces, approvals, topics, dead letters, problems, tokens."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from wayang.app import App, Settings
from wayang.observe import Tracing
from wayang.observe.trace_ids import trace_id_of
from wayang.runtime.engine import EngineSettings
from wayang.server.api import create_api
from wayang.server.core import CoreSettings, ServerCore
from wayang.server.queue import Limits

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "examples" / "pipeline" / "workflow.toml"
SLEEPY = """
id = "sleepy"
version = "1.0.0"
[parameters.seconds]
type = "number"
default = 0.3
[steps.nap]
run = "sleep ${{ params.seconds }}"
"""
APPROVAL = """
id = "spend"
version = "1.0.0"
[steps.ask]
kind = "approval"
assignees = ["alice"]
prompt = "Spend 10 EUR?"
[steps.pay]
needs = ["ask"]
run = "echo paid"
"""
FAILING = """
id = "broken"
version = "1.0.0"
[steps.boom]
run = "exit 3"
"""

Body = Callable[[httpx.AsyncClient, ServerCore], Awaitable[Any]]


def serve(tmp_path: Path, body: Body, *, limits: Limits | None = None, token: str | None = None,
          project: Path | None = None, tracing: Tracing | None = None) -> Any:  # fmt: skip
    async def go() -> Any:
        settings = Settings(
            store=str(tmp_path / "w.db"), engine=EngineSettings(poll_every_s=0.05,
                                                                adopt_orphans=True)
        )  # fmt: skip
        app = App(settings)
        try:
            core_settings = CoreSettings(limits or Limits(), project, grace_s=5.0)
            async with ServerCore(app, core_settings, tracing=tracing) as core:
                transport = httpx.ASGITransport(app=create_api(core, token=token))
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://wayang", timeout=30
                ) as client:
                    return await body(client, core)
        finally:
            app.close()

    return asyncio.run(go())


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    pytest.fail("timed out")


async def finished(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        run = (await client.get(f"/api/v1/runs/{run_id}")).json()
        return run if run["status"] in ("succeeded", "failed", "cancelled") else None

    result: dict[str, Any] = await until(done)
    return result


def test_a_run_from_source_succeeds_with_events_logs_and_trace(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        source = PIPELINE.read_text()
        started = await client.post(
            "/api/v1/runs", json={"source": source, "filename": str(PIPELINE)}
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        run = await finished(client, run_id)
        assert run["status"] == "succeeded"
        assert run["order"] == ["build", "unit-tests", "lint", "integration", "package"]
        assert run["steps"]["build"]["outputs"]["version"].startswith("1.4.")
        assert {n["status"] for n in run["graph"]["nodes"]} == {"succeeded"}

        events = (await client.get(f"/api/v1/runs/{run_id}/events?limit=3")).json()
        assert [e["type"] for e in events["items"]][:2] == ["RunStarted", "StepScheduled"]
        assert "source" not in events["items"][0]["data"]
        rest = (await client.get(f"/api/v1/runs/{run_id}/events?after={events['next']}")).json()
        assert rest["items"][-1]["type"] == "RunSucceeded"

        logs = (await client.get(f"/api/v1/runs/{run_id}/logs?step=build")).json()
        assert [line["line"] for line in logs["items"]] == ["building wayang-demo"]

        trace = (await client.get(f"/api/v1/runs/{run_id}/trace")).json()
        assert {s["step"] for s in trace["spans"]} == set(run["order"])
        assert all(s["end"] >= s["start"] for s in trace["spans"])

        listed = (await client.get("/api/v1/runs?status=succeeded")).json()
        assert [r["run_id"] for r in listed["items"]] == [run_id]

    serve(tmp_path, body)


RETRIED = """
id = "retried"
version = "1.0.0"
[steps.first]
run = "echo ${{ params.word }}"
[steps.first.retry]
attempts = 3
[parameters.word]
default = "hi"
[steps.slow]
needs = ["first"]
run = "sleep 30"
"""


def test_a_running_attempt_shows_as_running_with_its_inputs(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        started = await client.post("/api/v1/runs", json={"source": RETRIED})
        run_id = started.json()["run_id"]

        async def slow_runs() -> Any:
            run = (await client.get(f"/api/v1/runs/{run_id}")).json()
            return run if run["steps"]["slow"]["status"] == "running" else None

        run = await until(slow_runs)
        first, slow = run["steps"]["first"], run["steps"]["slow"]
        assert (first["status"], first["inputs"]) == ("succeeded", {"run": "echo hi"})
        assert (first["tries"], first["max_attempts"]) == (1, 3)
        assert (slow["inputs"], slow["started_at"] is not None) == ({"run": "sleep 30"}, True)
        assert {n["id"]: n["status"] for n in run["graph"]["nodes"]}["slow"] == "running"

        trace = (await client.get(f"/api/v1/runs/{run_id}/trace")).json()
        [running] = [s for s in trace["spans"] if s["step"] == "slow"]
        assert (running["status"], running["end"], running["attempt"]) == ("running", None, 1)

        await client.post(f"/api/v1/runs/{run_id}/cancel")

    serve(tmp_path, body)


def test_registered_workflows_keep_versions_and_start_by_id(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        first = await client.post("/api/v1/workflows", json={"source": SLEEPY})
        assert first.status_code == 201, first.text
        again = await client.post("/api/v1/workflows", json={"source": SLEEPY})
        assert again.status_code == 200
        clash = await client.post(
            "/api/v1/workflows", json={"source": SLEEPY.replace("0.3", "0.1")}
        )
        assert clash.status_code == 409
        assert clash.json()["type"].endswith("/version-taken")
        second = SLEEPY.replace('version = "1.0.0"', 'version = "2.0.0"').replace("0.3", "0.05")
        assert (await client.post("/api/v1/workflows", json={"source": second})).status_code == 201

        detail = (await client.get("/api/v1/workflows/sleepy")).json()
        assert detail["latest"] == "2.0.0"
        assert [v["version"] for v in detail["history"]] == ["1.0.0", "2.0.0"]
        assert detail["parameters"]["seconds"] == {
            "type": "number", "required": False, "default": 0.05, "description": "",
            "choices": None,
        }  # fmt: skip
        assert [n["id"] for n in detail["graph"]["nodes"]] == ["nap"]
        old = (await client.get("/api/v1/workflows/sleepy?version=1.0.0")).json()
        assert "0.3" in old["source"]

        started = await client.post("/api/v1/runs", json={"workflow": "sleepy",
                                                          "params": {"seconds": 0.01}})  # fmt: skip
        run = await finished(client, started.json()["run_id"])
        assert run["status"] == "succeeded" and run["params"] == {"seconds": 0.01}

        missing = await client.get("/api/v1/workflows/slepy")
        assert missing.status_code == 404
        assert "did you mean 'sleepy'?" in missing.json()["detail"]

    serve(tmp_path, body)


def test_validation_reports_diagnostics_with_lines(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        bad = 'id = "x"\n[steps.a]\nrun = "echo"\nneeds = ["nope"]\n'
        report = (await client.post("/api/v1/workflows/validate", json={"source": bad})).json()
        assert report["valid"] is False
        [diagnostic] = report["diagnostics"]
        assert (diagnostic["line"], diagnostic["severity"]) == (4, "error")
        assert "nope" in diagnostic["message"]
        refused = await client.post("/api/v1/workflows", json={"source": bad})
        assert refused.status_code == 422
        assert refused.json()["type"].endswith("/invalid-workflow")
        assert refused.json()["errors"][0]["field"] == "workflow.toml:4:10"
        good = await client.post("/api/v1/workflows/validate", json={"source": SLEEPY})
        assert good.json() == {"valid": True, "workflow_id": "sleepy", "diagnostics": []}

    serve(tmp_path, body)


def test_bad_input_is_a_problem_naming_the_field(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        unknown = await client.post("/api/v1/runs", json={"sauce": "x"})
        assert unknown.status_code == 422
        problem = unknown.json()
        assert problem["type"].endswith("/invalid-request")
        assert problem["errors"][0]["field"] == "body.sauce"
        assert unknown.headers["content-type"] == "application/problem+json"

        nothing = await client.post("/api/v1/runs", json={})
        assert nothing.status_code == 400 and "'workflow'" in nothing.json()["detail"]

        param = await client.post("/api/v1/runs", json={"source": SLEEPY,
                                                        "params": {"seconds": "soon"}})  # fmt: skip
        assert param.status_code == 422
        assert param.json()["type"].endswith("/invalid-parameters")
        assert "seconds" in param.json()["detail"]

        timeout = await client.post("/api/v1/runs", json={"source": SLEEPY, "timeout": "soon"})
        assert timeout.status_code == 400 and "timeout" in timeout.json()["detail"]

        no_run = await client.get("/api/v1/runs/nope")
        assert no_run.status_code == 404 and no_run.json()["type"].endswith("/run-not-found")
        no_route = await client.get("/api/v1/nowhere")
        assert no_route.status_code == 404 and no_route.json()["type"].endswith("/not-found")
        cursor = await client.get("/api/v1/runs?cursor=garbage")
        assert cursor.status_code == 400
        status = await client.get("/api/v1/runs?status=done")
        assert status.status_code == 422 and status.json()["errors"][0]["field"] == "query.status"
        steps = await client.get("/api/v1/steps")
        assert steps.status_code == 404 and "--project" in steps.json()["detail"]

    serve(tmp_path, body)


def test_the_queue_holds_runs_beyond_the_limits(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        accepted = []
        for _ in range(3):
            answer = await client.post("/api/v1/runs", json={"source": SLEEPY})
            accepted.append(answer.json())
        assert [a["status"] for a in accepted] == ["running", "queued", "queued"]
        assert [a["position"] for a in accepted[1:]] == [1, 2]
        queued = (await client.get("/api/v1/runs?status=queued")).json()["items"]
        assert [q["run_id"] for q in queued] == [a["run_id"] for a in accepted[1:]]
        assert (await client.get(f"/api/v1/runs/{accepted[2]['run_id']}")).json()[
            "status"
        ] == "queued"
        # Cancelling a queued run takes it off the queue; it never starts.
        cancelled = await client.post(f"/api/v1/runs/{accepted[2]['run_id']}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        second = await finished(client, accepted[1]["run_id"])
        first = await finished(client, accepted[0]["run_id"])
        assert second["created_at"] >= first["updated_at"][:19]  # started after the first ended
        gone = (await client.get(f"/api/v1/runs/{accepted[2]['run_id']}")).json()
        assert (gone["status"], gone["steps"]["nap"]["attempts"]) == ("cancelled", 0)
        history = (await client.get(f"/api/v1/runs/{accepted[2]['run_id']}/events")).json()
        assert [e["type"] for e in history["items"]] == ["RunStarted", "RunCancelled"]
        stream = await client.get(f"/api/v1/runs/{accepted[2]['run_id']}/stream")
        assert stream.text.rstrip().endswith('data: {"run_id":"' + accepted[2]["run_id"] + '"}')

        full = [await client.post("/api/v1/runs", json={"source": SLEEPY}) for _ in range(4)]
        assert [f.status_code for f in full] == [202, 202, 202, 429]  # one runs, two wait
        assert full[3].json()["type"].endswith("/queue-full")

    serve(tmp_path, body, limits=Limits(max_runs=1, max_queued=2))


def test_an_approval_through_the_api_resumes_the_run(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        run_id = (await client.post("/api/v1/runs", json={"source": APPROVAL})).json()["run_id"]

        async def pending() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = (await client.get("/api/v1/approvals")).json()
            return found

        [wait] = await until(pending)
        assert (wait["run_id"], wait["step_id"], wait["kind"]) == (run_id, "ask", "approval")
        assert (wait["prompt"], wait["assignees"]) == ("Spend 10 EUR?", ["alice"])
        mine = await client.get("/api/v1/approvals?mine=true", headers={"x-wayang-user": "bob"})
        assert mine.json() == []
        run = (await client.get(f"/api/v1/runs/{run_id}")).json()
        assert run["steps"]["ask"]["waiting_for"].startswith("approval by alice (0/1")

        stranger = await client.post(f"/api/v1/runs/{run_id}/steps/ask/approve",
                                     headers={"x-wayang-user": "bob"}, json={})  # fmt: skip
        assert stranger.status_code == 409
        assert stranger.json()["type"].endswith("/signal-refused")
        answer = await client.post(f"/api/v1/runs/{run_id}/steps/ask/approve",
                                   headers={"x-wayang-user": "alice"},
                                   json={"comment": "fine"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "accepted"
        assert (await finished(client, run_id))["status"] == "succeeded"

    serve(tmp_path, body)


def test_cancel_retry_resume_and_dead_letters(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        long = SLEEPY.replace("0.3", "30")
        run_id = (await client.post("/api/v1/runs", json={"source": long})).json()["run_id"]
        await until(lambda: _status_is(client, run_id, "running"))
        cancelled = await client.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": "enough"})
        assert cancelled.json()["status"] == "cancelled"

        broken = (await client.post("/api/v1/runs", json={"source": FAILING})).json()["run_id"]
        assert (await finished(client, broken))["status"] == "failed"
        [letter] = (await client.get("/api/v1/dlq")).json()
        assert (letter["kind"], letter["run_id"], letter["step"]) == ("step", broken, "boom")
        replayed = await client.post(f"/api/v1/dlq/{letter['id']}/replay")
        assert replayed.status_code == 200, replayed.text
        again = replayed.json()["run_id"]
        assert (await finished(client, again))["retry_of"] == broken
        assert (await client.post(f"/api/v1/dlq/{letter['id']}/replay")).status_code == 400

        retried = (await client.post(f"/api/v1/runs/{broken}/retry", json={})).json()
        assert (await finished(client, retried["run_id"]))["status"] == "failed"
        resumed = await client.post(f"/api/v1/runs/{broken}/resume")
        assert resumed.json()["status"] == "failed"  # a finished run stays as it is

    serve(tmp_path, body)


async def _status_is(client: httpx.AsyncClient, run_id: str, status: str) -> bool:
    run = (await client.get(f"/api/v1/runs/{run_id}")).json()
    # "scheduled" until the attempt's result: its start is recorded with it
    return bool(
        run["status"] == status and run["steps"]["nap"]["status"] in ("scheduled", "running")
    )


def test_emit_publishes_and_a_waiting_run_takes_it(tmp_path: Path) -> None:
    waiting = """
id = "waiter"
[steps.paid]
kind = "event"
topic = "payment.done"
correlate = "event.order == 'A1'"
"""

    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        run_id = (await client.post("/api/v1/runs", json={"source": waiting})).json()["run_id"]
        emitted = await client.post("/api/v1/topics/emit",
                                    json={"topic": "payment.done", "data": {"order": "A1"}})  # fmt: skip
        assert emitted.status_code == 202 and emitted.json()["topic"] == "payment.done"
        run = await finished(client, run_id)
        assert run["steps"]["paid"]["outputs"]["order"] == "A1"
        bad = await client.post("/api/v1/topics/emit", json={"topic": "no spaces"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.topic"

    serve(tmp_path, body)


def test_health_readiness_metrics_and_openapi(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        assert (await client.get("/healthz")).json()["status"] == "ok"
        assert (await client.get("/readyz")).status_code == 200
        run_id = (await client.post("/api/v1/runs", json={"source": SLEEPY})).json()["run_id"]
        await finished(client, run_id)
        text = (await client.get("/metrics")).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        [started] = families["wayang_runs_started"].samples
        assert (started.labels, started.value) == ({"workflow": "sleepy"}, 1.0)
        requests = families["wayang_http_requests"].samples
        assert any(s.labels["route"] == "/api/v1/runs/{run_id}" for s in requests)
        # Starts are served before FastAPI's routing (server/fast_start.py), under the same name.
        starts = [s for s in requests if s.labels["route"] == "/api/v1/runs"]
        assert [(s.labels["method"], s.labels["status"], s.value) for s in starts] == [
            ("POST", "202", 1.0)
        ]

        schema = (await client.get("/api/v1/openapi.json")).json()
        start = schema["paths"]["/api/v1/runs"]["post"]
        assert (start["x-wayang-resource"], start["x-wayang-action"]) == ("runs", "create")
        every = [op for path in schema["paths"].values() for op in path.values()]
        guarded = [op for op in every if "x-wayang-resource" in op]
        assert len(guarded) == len(every) - 2  # all but /healthz and /readyz
        assert (await client.get("/api/docs")).status_code == 200

    serve(tmp_path, body)


def test_a_token_guards_every_route_but_health(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        assert (await client.get("/healthz")).status_code == 200
        refused = await client.get("/api/v1/runs")
        assert refused.status_code == 401
        assert refused.json()["type"].endswith("/unauthorized")
        assert "runs.read" in refused.json()["detail"]
        wrong = await client.get("/api/v1/runs", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await client.get("/api/v1/runs", headers={"authorization": "Bearer s3cret"})
        assert right.status_code == 200
        assert (await client.get("/metrics")).status_code == 401

        start = {"source": SLEEPY, "params": {"seconds": 0}}
        no_token = await client.post("/api/v1/runs", json=start)
        assert no_token.status_code == 401 and "runs.create" in no_token.json()["detail"]
        as_ada = {"authorization": "Bearer s3cret", "x-wayang-user": "ada"}
        started = await client.post("/api/v1/runs", json=start, headers=as_ada)
        assert started.status_code == 202
        detail = await client.get(f"/api/v1/runs/{started.json()['run_id']}", headers=as_ada)
        assert detail.json()["started_by"] == "ada"

    serve(tmp_path, body, token="s3cret")


def test_steps_routes_with_a_project(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    shutil.copytree(ROOT / "examples" / "steps-basic", project,
                    ignore=shutil.ignore_patterns(".wayang"))  # fmt: skip

    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        listing = (await client.get("/api/v1/steps")).json()
        names = {s["name"] for s in listing["steps"]}
        assert names >= {"CreateOrder", "StoreOrder", "ConfirmOrder"}
        assert listing["diagnostics"] == []
        off = await client.post("/api/v1/steps/StoreOrder/deactivate")
        assert off.json()["active"] is False
        on = await client.post("/api/v1/steps/StoreOrder/activate")
        assert on.json()["active"] is True
        unknown = await client.post("/api/v1/steps/StorOrder/activate")
        assert unknown.status_code == 400 and "StoreOrder" in unknown.json()["detail"]
        [flow] = (await client.get("/api/v1/flows")).json()
        assert flow["name"] == "orders"
        assert any(e["label"].startswith("order.created") for e in flow["graph"]["edges"])

        order = {"id": "o-1", "item": "widget", "quantity": 2, "customer": "ann"}
        emitted = await client.post("/api/v1/topics/emit",
                                    json={"topic": "order.created", "data": order})  # fmt: skip
        assert emitted.status_code == 202

        async def stored() -> Any:
            groups = (await client.get("/api/v1/state")).json()
            if "orders" not in groups:
                return None
            values = (await client.get("/api/v1/state/orders")).json()["values"]
            return values if values and values[0]["status"] == "confirmed" else None

        [value] = await until(stored)
        assert (value["id"], value["total"]) == ("o-1", 5.0)

        # Each delivery attempt is a span in the emit's trace, saying how it ended.
        trace_id = trace_id_of(emitted.json()["trace_id"])
        deliveries = [s for s in exporter.get_finished_spans() if s.name.startswith("delivery ")]
        assert {s.name for s in deliveries} >= {"delivery StoreOrder", "delivery ConfirmOrder"}
        assert all(s.context.trace_id == trace_id for s in deliveries)
        assert all(s.attributes["wayang.status"] == "succeeded" for s in deliveries)

    exporter = InMemorySpanExporter()
    tracing = Tracing.with_exporter(exporter)
    try:
        serve(tmp_path, body, project=project, tracing=tracing)
    finally:
        tracing.shutdown()


def test_api_steps_of_the_project_are_served_under_steps(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    shutil.copytree(ROOT / "examples" / "steps-basic", project,
                    ignore=shutil.ignore_patterns(".wayang"))  # fmt: skip

    async def body(client: httpx.AsyncClient, core: ServerCore) -> None:
        order = {"item": "widget", "quantity": 3, "customer": "ann"}
        created = await client.post("/steps/orders", json=order)
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]

        async def confirmed() -> Any:
            answer = await client.get(f"/steps/orders/{order_id}")
            return answer.json() if "confirmed" in answer.text else None

        assert (await until(confirmed))["total"] == 7.5
        bad = await client.post("/steps/orders", json={**order, "quantity": 0})
        assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "quantity"

    serve(tmp_path, body, project=project)
