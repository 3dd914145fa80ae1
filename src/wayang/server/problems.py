"""Errors as RFC 9457 problem documents: a stable ``type`` per kind of error, a ``detail`` that
says what went wrong and what to do, ``errors`` naming fields; never a traceback."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from wayang.errors import DefinitionError, PlanError, UsageError, WayangError
from wayang.runtime.names import RunBusyError, RunNotFoundError
from wayang.runtime.queues import TaskQueueFullError
from wayang.runtime.signals import SignalRefusedError
from wayang.server.core import NoStepsProjectError, ServerStoppingError
from wayang.server.queue import QueueFullError
from wayang.server.workflows import VersionTakenError, WorkflowNotFoundError

PROBLEM = "application/problem+json"
BASE = "https://wayang.dev/problems/"
log = logging.getLogger("wayang.server")

# Most specific first: the first class an error is an instance of decides.
KINDS: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (RunNotFoundError, 404, "run-not-found", "No such run"),
    (WorkflowNotFoundError, 404, "workflow-not-found", "No such workflow"),
    (NoStepsProjectError, 404, "no-steps-project", "No steps project"),
    (SignalRefusedError, 409, "signal-refused", "The signal was refused"),
    (VersionTakenError, 409, "version-taken", "That version is taken"),
    (RunBusyError, 409, "run-busy", "Another engine drives the run"),
    (QueueFullError, 429, "queue-full", "The run queue is full"),
    (TaskQueueFullError, 429, "task-queue-full", "A task queue is full"),
    (ServerStoppingError, 503, "server-stopping", "The server is stopping"),
    (PlanError, 422, "invalid-parameters", "Invalid parameters"),
    (DefinitionError, 422, "invalid-workflow", "Invalid workflow"),
    (UsageError, 400, "bad-request", "Bad request"),
)
HTTP_KINDS = {
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
}


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> Response:
    body = {"type": BASE + kind, "title": title, "status": status, "detail": detail, **extra}
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM, headers=headers)


def install(api: FastAPI) -> None:
    api.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    api.add_exception_handler(HTTPException, _http)  # type: ignore[arg-type]
    api.add_exception_handler(WayangError, _wayang)  # type: ignore[arg-type]
    api.add_exception_handler(Exception, _internal)


async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    errors = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    names = ", ".join(e["field"] for e in errors)
    detail = f"the request does not fit the API: {names}: {errors[0]['message']}" if errors else ""
    return problem(422, "invalid-request", "Invalid request", detail, errors=errors)


async def _http(request: Request, exc: HTTPException) -> Response:
    kind, title = HTTP_KINDS.get(exc.status_code, ("http-error", "HTTP error"))
    return problem(exc.status_code, kind, title, str(exc.detail))


async def _wayang(request: Request, exc: WayangError) -> Response:
    return for_error(exc) or await _internal(request, exc)


def for_error(exc: WayangError) -> Response | None:
    """The problem document of a Wayang error, or None for one with no kind here (internal)."""
    for cls, status, kind, title in KINDS:
        if isinstance(exc, cls):
            extra: dict[str, Any] = {}
            if isinstance(exc, DefinitionError):
                extra["errors"] = [
                    {"field": f"{d.file}:{d.line}:{d.column}", "message": d.message}
                    for d in exc.diagnostics
                ]
                extra["diagnostics"] = [d.to_dict() for d in exc.diagnostics]
            if isinstance(exc, TaskQueueFullError):
                extra["queue"] = exc.queue
            return problem(status, kind, title, str(exc), **extra)
    return None


async def _internal(request: Request, exc: Exception) -> Response:
    log.error(
        "%s %s failed: %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        exc,
        exc_info=exc,
    )
    detail = (
        f"the server failed on {request.method} {request.url.path} ({type(exc).__name__}); "
        "its log has the details"
    )
    return problem(500, "internal", "Internal server error", detail)
