"""The API-step ASGI app through httpx's ASGI transport, on a real runtime and SQLite store:
what reaches the handler (path, query, headers, body) and what goes back (status, headers, JSON
or text bodies, problem documents)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pydantic

from wayang.steps.asgi import StepsApp
from wayang.steps.context import Context, Request
from wayang.steps.model import Emit, StepDef, Where
from wayang.steps.runtime import RuntimeSettings, StepRuntime
from wayang.steps.state import FileState
from wayang.store.sqlite import SQLiteStore

JSON = "application/json"
FAST = RuntimeSettings(poll_every_s=0.02, renew_every_s=0.2, lease_s=5.0)


class Routes:
    def __init__(self, *steps: StepDef, inactive: tuple[str, ...] = ()) -> None:
        self.steps = steps
        self.inactive = set(inactive)

    def subscriptions(self) -> dict[str, list[tuple[str, int]]]:
        return {}

    def match(self, method: str, path: str) -> tuple[StepDef, dict[str, str]] | None:
        for step in self.steps:
            prefix = (step.path or "").split(":")[0]
            if step.method == method and path.startswith(prefix):
                rest = path[len(prefix) :]
                return step, ({"id": rest} if ":" in (step.path or "") else {})
        return None


def api_step(path: str, handler: Callable[..., Any], method: str = "GET", **extra: Any) -> StepDef:
    return StepDef(
        "Api",
        "api",
        Where(Path("api.step.py"), 3),
        handler=handler,
        handler_is_async=asyncio.iscoroutinefunction(handler),
        path=path,
        method=method,
        **extra,
    )


def call(tmp_path: Path, routes: Routes, *requests: dict[str, Any]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        store = SQLiteStore(tmp_path / "w.db")
        try:
            state = FileState(tmp_path / "state")
            async with StepRuntime(store, routes, state, owner="t", settings=FAST) as runtime:
                transport = httpx.ASGITransport(app=StepsApp(runtime, lambda: routes))
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    return [await client.request(**r) for r in requests]
        finally:
            store.close()

    return asyncio.run(go())


def test_the_handler_sees_path_query_headers_and_body(tmp_path: Path) -> None:
    seen: list[Request] = []

    async def handler(req: Request, ctx: Context) -> dict[str, Any]:
        seen.append(req)
        return {"status": 201, "body": {"id": req.pathParams["id"]}, "headers": {"X-Kind": "t"}}

    routes = Routes(api_step("/orders/:id", handler, "POST"))
    [response] = call(
        tmp_path,
        routes,
        {
            "method": "POST",
            "url": "/orders/42?tag=a&tag=b&page=2&empty=",
            "json": {"qty": 3},
            "headers": {"X-Caller": "bench"},
        },
    )
    assert response.status_code == 201
    assert response.json() == {"id": "42"}
    assert response.headers["x-kind"] == "t"
    assert response.headers["content-type"] == "application/json"
    assert len(response.headers["x-trace-id"]) == 24
    [req] = seen
    assert req["body"] == {"qty": 3} and req.rawBody == '{"qty":3}'
    assert req.queryParams == {"tag": ["a", "b"], "page": "2", "empty": ""}
    assert req.headers["x-caller"] == "bench"
    assert (req.method, req.path) == ("POST", "/orders/42")


def test_text_bodies_keep_their_content_type(tmp_path: Path) -> None:
    async def plain(req: Request, ctx: Context) -> dict[str, Any]:
        return {"body": "hello"}

    def csv(req: Request, ctx: Context) -> dict[str, Any]:  # a sync handler
        return {"body": "a,b\n", "headers": {"Content-Type": "text/csv"}}

    routes = Routes(api_step("/plain", plain), api_step("/csv", csv, "POST"))
    first, second = call(
        tmp_path, routes, {"method": "GET", "url": "/plain"}, {"method": "POST", "url": "/csv"}
    )
    assert (first.status_code, first.text) == (200, "hello")
    assert first.headers["content-type"].startswith("text/plain")
    assert (second.text, second.headers["content-type"]) == ("a,b\n", "text/csv")


def test_pydantic_bodies_are_sent_as_json(tmp_path: Path) -> None:
    class Order(pydantic.BaseModel):
        id: int
        at: str

    async def handler(req: Request, ctx: Context) -> dict[str, Any]:
        return {"body": Order(id=1, at="now")}

    [response] = call(tmp_path, Routes(api_step("/o", handler)), {"method": "GET", "url": "/o"})
    assert response.json() == {"id": 1, "at": "now"}


def test_errors_are_problem_documents(tmp_path: Path) -> None:
    async def boom(req: Request, ctx: Context) -> dict[str, Any]:
        raise RuntimeError("no stock")

    async def malformed(req: Request, ctx: Context) -> Any:
        return ["not", "a", "response"]

    async def unserialisable(req: Request, ctx: Context) -> dict[str, Any]:
        return {"body": {"when": object()}}

    async def ok(req: Request, ctx: Context) -> dict[str, Any]:
        return {"body": {}}

    off = api_step("/off", ok)
    off = StepDef("Off", "api", off.where, ok, True, path="/off", method="GET")
    routes = Routes(
        api_step("/boom", boom),
        api_step("/malformed", malformed),
        api_step("/object", unserialisable),
        api_step("/json", ok, "POST"),
        off,
        inactive=("Off",),
    )
    answers = call(
        tmp_path,
        routes,
        {"method": "GET", "url": "/boom"},
        {"method": "GET", "url": "/malformed"},
        {"method": "GET", "url": "/object"},
        {"method": "POST", "url": "/json", "content": b"{bad", "headers": {"content-type": JSON}},
        {"method": "GET", "url": "/off"},
        {"method": "GET", "url": "/nowhere"},
    )
    kinds = [(a.status_code, a.json()["type"].rsplit("/", 1)[1]) for a in answers]
    assert kinds == [
        (500, "handler-failed"),
        (500, "bad-response"),
        (500, "bad-response"),
        (400, "invalid-json"),
        (503, "step-inactive"),
        (404, "no-route"),
    ]
    assert all(a.headers["content-type"] == "application/problem+json" for a in answers)
    assert "RuntimeError: no stock" in answers[0].json()["detail"]
    assert "api.step.py:3" in answers[1].json()["detail"]
    assert "not JSON" in answers[2].json()["detail"]
    assert "line 1 column 2" in answers[3].json()["detail"]
    assert "wayang steps activate Off" in answers[4].json()["detail"]


def test_an_api_step_emit_is_published_under_the_answer_s_trace(tmp_path: Path) -> None:
    async def handler(req: Request, ctx: Context) -> dict[str, Any]:
        await ctx.emit({"topic": "order.created", "data": req.body})
        return {"status": 202, "body": {"queued": True}}

    routes = Routes(api_step("/orders", handler, "POST", emits=(Emit("order.created"),)))
    [response] = call(tmp_path, routes, {"method": "POST", "url": "/orders", "json": {"id": 9}})
    assert response.status_code == 202
    store = SQLiteStore(tmp_path / "w.db")
    try:
        [message] = store.trace_messages(response.headers["x-trace-id"])
    finally:
        store.close()
    assert (message.topic, message.data) == ("order.created", {"id": 9})
