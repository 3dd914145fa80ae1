"""API steps over HTTP: one ASGI app that routes each request to its step.

The handler gets a :class:`~wayang.steps.context.Request` and returns
``{"status": …, "body": …, "headers": …}``. A body that fails the step's ``bodySchema`` is a 400;
an unknown route a 404; the route of a deactivated step a 503; a handler that raises a 500 — each
an RFC 9457 problem document that says what went wrong, never a traceback. The response is sent
only after the handler's emits are durable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from wayang.steps.context import Request
from wayang.steps.model import PayloadError, StepDef
from wayang.steps.runtime import StepRuntime

PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://wayang.dev/problems/"


class Routes(Protocol):
    @property
    def inactive(self) -> AbstractSet[str]: ...
    def match(self, method: str, path: str) -> tuple[StepDef, dict[str, str]] | None: ...


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem document with a stable ``type`` per kind of error."""
    body = {"type": PROBLEM_BASE + kind, "title": title, "status": status, "detail": detail}
    return JSONResponse({**body, **extra}, status_code=status, media_type=PROBLEM)


class StepsApp:
    """The ASGI app serving a project's API steps; ``routes()`` gives the current registry, so a
    reload takes effect on the next request."""

    def __init__(self, runtime: StepRuntime, routes: Callable[[], Routes]) -> None:
        self.runtime = runtime
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        response = await self.respond(HttpRequest(scope, receive))
        await response(scope, receive, send)

    async def respond(self, http: HttpRequest) -> Response:
        method, path = http.method.upper(), http.url.path
        routes = self.routes()
        found = routes.match(method, path)
        if found is None:
            detail = f"no API step serves {method} {path}; 'wayang flows' lists the API steps"
            return problem(404, "no-route", "No such route", detail)
        step, path_params = found
        if step.name in routes.inactive:
            detail = (
                f"step '{step.name}' serves {method} {path} but is deactivated; "
                f"'wayang steps activate {step.name}' turns it back on"
            )
            return problem(503, "step-inactive", "The step is deactivated", detail, step=step.name)
        raw = (await http.body()).decode("utf-8", errors="replace")
        try:
            body = _parse_body(raw, http.headers.get("content-type", ""))
        except ValueError as exc:
            return problem(400, "invalid-json", "The body is not JSON", str(exc), step=step.name)
        if step.body_schema is not None:
            try:
                checked = step.body_schema.validate(body)
            except PayloadError as exc:
                detail = f"{method} {path} (step '{step.name}'): body field {exc}"
                errors = [{"field": exc.field, "message": exc.message}]
                return problem(400, "invalid-body", "Invalid request body", detail, errors=errors)
            body = checked if step.handler_style == "model" else body
        request = Request(
            body=body,
            headers=dict(http.headers),
            path_params=path_params,
            query_params=_query(http),
            raw_body=raw,
            method=method,
            path=path,
        )
        return await self._call(step, request)

    async def _call(self, step: StepDef, request: Request) -> Response:
        try:
            result, trace_id = await self.runtime.call_api(step, request)
        except Exception as exc:
            detail = f"step '{step.name}' ({step.where}) failed: {type(exc).__name__}: {exc}"
            return problem(500, "handler-failed", "The step's handler failed", detail)
        return _response(step, result, trace_id)


def _parse_body(raw: str, content_type: str) -> Any:
    if not raw.strip():
        return None
    if "json" in content_type or raw.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return raw


def _query(http: HttpRequest) -> dict[str, str | list[str]]:
    query: dict[str, str | list[str]] = {}
    for key in http.query_params:
        values = http.query_params.getlist(key)
        query[key] = values[0] if len(values) == 1 else values
    return query


def _response(step: StepDef, result: Any, trace_id: str) -> Response:
    if not isinstance(result, Mapping):
        detail = (
            f"step '{step.name}' ({step.where}) returned {type(result).__name__}; an API handler "
            'returns {"status": 200, "body": ..., "headers": {...}}'
        )
        return problem(500, "bad-response", "The step's response is malformed", detail)
    status = int(result.get("status", 200))
    headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    headers.setdefault("x-trace-id", trace_id)
    body = result.get("body")
    dump = getattr(body, "model_dump", None)
    if callable(dump):
        body = dump(mode="json")
    if isinstance(body, (str, bytes)) and "content-type" not in {k.lower() for k in headers}:
        return Response(body, status_code=status, headers=headers, media_type="text/plain")
    return JSONResponse(body, status_code=status, headers=headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
