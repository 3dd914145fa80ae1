"""API steps over HTTP: one ASGI app that routes each request to its step.

The handler gets a :class:`~wayang.steps.context.Request` and returns
``{"status": …, "body": …, "headers": …}``. A body that fails the step's ``bodySchema`` is a 400;
an unknown route a 404; the route of a deactivated step a 503; a handler that raises a 500 — each
an RFC 9457 problem document that says what went wrong, never a traceback. The response is sent
only after the handler's emits are durable.

The app speaks ASGI directly rather than through a framework's request and response objects: an
API step is on the hot path of every call, and the framework's layers cost more than the step
itself (docs/performance.md, "Event steps").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson
from starlette.types import Receive, Scope, Send

from wayang.steps.context import Request
from wayang.steps.model import PayloadError, StepDef
from wayang.steps.runtime import StepRuntime

PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://wayang.dev/problems/"
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


class Routes(Protocol):
    @property
    def inactive(self) -> AbstractSet[str]: ...
    def match(self, method: str, path: str) -> tuple[StepDef, dict[str, str]] | None: ...


class Reply:
    """A finished HTTP answer: status, headers and the encoded body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    @classmethod
    def of(cls, status: int, body: bytes, media_type: str, **extra: str) -> Reply:
        headers = [(b"content-type", media_type.encode("latin-1"))]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        return cls(status, body, headers)

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (lower case), or None."""
        wanted = name.encode("latin-1")
        return next((v.decode("latin-1") for k, v in self.headers if k == wanted), None)

    def json(self) -> Any:
        return orjson.loads(self.body)

    async def send(self, send: Send) -> None:
        headers = [*self.headers, (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> Reply:
    """An RFC 9457 problem document with a stable ``type`` per kind of error."""
    body = {"type": PROBLEM_BASE + kind, "title": title, "status": status, "detail": detail}
    return Reply.of(status, orjson.dumps({**body, **extra}), PROBLEM)


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
        reply = await self.respond(scope, await _read_body(receive))
        await reply.send(send)

    async def respond(self, scope: Scope, raw_bytes: bytes) -> Reply:
        """The answer to one request (``scope`` as ASGI gives it, the whole body read)."""
        method, path = scope["method"].upper(), scope["path"]
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
        headers = _headers(scope)
        raw = raw_bytes.decode("utf-8", errors="replace")
        try:
            body = _parse_body(raw, headers.get("content-type", ""))
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
            headers=headers,
            path_params=path_params,
            query_params=_query(scope.get("query_string", b"")),
            raw_body=raw,
            method=method,
            path=path,
        )
        return await self._call(step, request)

    async def _call(self, step: StepDef, request: Request) -> Reply:
        try:
            result, trace_id = await self.runtime.call_api(step, request)
        except Exception as exc:
            detail = f"step '{step.name}' ({step.where}) failed: {type(exc).__name__}: {exc}"
            return problem(500, "handler-failed", "The step's handler failed", detail)
        return _reply(step, result, trace_id)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (the last of repeated ones), as HTTP/ASGI sends them."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _parse_body(raw: str, content_type: str) -> Any:
    if not raw.strip():
        return None
    if "json" in content_type or raw.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return raw


def _query(query_string: bytes) -> dict[str, str | list[str]]:
    query: dict[str, str | list[str]] = {}
    if not query_string:
        return query
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        before = query.get(key)
        if before is None:
            query[key] = value
        elif isinstance(before, list):
            before.append(value)
        else:
            query[key] = [before, value]
    return query


def _reply(step: StepDef, result: Any, trace_id: str) -> Reply:
    if not isinstance(result, Mapping):
        detail = (
            f"step '{step.name}' ({step.where}) returned {type(result).__name__}; an API handler "
            'returns {"status": 200, "body": ..., "headers": {...}}'
        )
        return problem(500, "bad-response", "The step's response is malformed", detail)
    status = int(result.get("status", 200))
    headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    headers.setdefault("x-trace-id", trace_id)
    body = result.get("body")
    dump = getattr(body, "model_dump", None)
    if callable(dump):
        body = dump(mode="json")
    if isinstance(body, (str, bytes)):
        media_type = headers.pop("content-type", TEXT)
        encoded = body.encode("utf-8") if isinstance(body, str) else body
        return Reply.of(status, encoded, media_type, **headers)
    try:
        encoded = orjson.dumps(body)
    except TypeError as exc:
        detail = (
            f"step '{step.name}' ({step.where}) returned a body that is not JSON: {exc}; "
            "return dicts, lists, strings, numbers, booleans or None (or a pydantic model)"
        )
        return problem(500, "bad-response", "The step's response is malformed", detail)
    return Reply.of(status, encoded, headers.pop("content-type", JSON), **headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
