"""``POST /api/v1/runs`` answered before FastAPI's request machinery: starting runs is the hot
route (issue 6 asks for a thousand a second), and FastAPI's routing, dependency solving and
body handling were a third of a start.

The route is still declared in :mod:`wayang.server.api` (OpenAPI, the docs page), and anything
but a start that goes through, a well-formed body from an allowed caller, is handed on to it
untouched, so every refusal reads exactly as before: a bad token, a body that does not fit
:class:`~wayang.wire.StartRun`. Errors the start itself raises become the same problem
documents (:func:`wayang.server.problems.for_error`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.responses import Response

from wayang import wire
from wayang.errors import WayangError
from wayang.server import problems
from wayang.server.access import token_refusal
from wayang.server.core import ServerCore

MAX_BODY = 16 * 1024 * 1024
ROUTE_TEMPLATE = "wayang.route"
"""The scope key naming the route a request was served by, for the request metrics."""


class FastStart:
    """ASGI middleware serving ``POST {path}`` with ``core.start_run``."""

    def __init__(self, app: Any, core: ServerCore, path: str, token: str | None) -> None:
        self.app = app
        self.core = core
        self.path = path
        self.token = token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        body, whole = await _read_body(receive)
        response = await self._start(scope, body) if whole else None
        if response is None:
            await self.app(scope, _replay(body, whole, receive), send)
            return
        scope[ROUTE_TEMPLATE] = self.path
        await response(scope, receive, send)

    async def _start(self, scope: Any, body: bytes) -> Response | None:
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization")
        refusal = token_refusal(
            self.token, authorization.decode("latin-1") if authorization else None, "runs", "create"
        )
        if refusal:
            return None
        try:
            request = wire.StartRun.model_validate_json(body)
        except ValidationError:
            return None
        user = headers.get(b"x-wayang-user")
        actor = user.decode("utf-8", "replace") if user else self.core.user
        try:
            accepted = await self.core.start_run(request, actor)
        except WayangError as exc:
            return problems.for_error(exc)  # None: an internal error, reported by the app
        return Response(accepted.model_dump_json(), 202, media_type="application/json")


async def _read_body(receive: Any) -> tuple[bytes, bool]:
    """The request body read so far, and whether that is all of it (not when it outgrew
    :data:`MAX_BODY` or the client went away)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > MAX_BODY:
            return b"".join(chunks), False


def _replay(body: bytes, whole: bool, receive: Any) -> Any:
    """A ``receive`` that gives ``body`` first, then whatever the client sends after it."""
    given = False

    async def replayed() -> Any:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": not whole}
        return await receive()

    return replayed
