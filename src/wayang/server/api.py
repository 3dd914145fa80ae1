"""The HTTP API (``/api/v1``), health and metrics, and the Workbench's static files.

Every route declares the resource and action it touches (``x-wayang-resource`` and
``x-wayang-action`` in the OpenAPI document, and the :func:`guard` it depends on), so role-based
access can be added route by route. Today the guard checks the API token when the server has
one. The acting user is the ``X-Wayang-User`` header, else the user the server runs as.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from wayang import wire
from wayang.engine import events as ev
from wayang.server import problems
from wayang.server.access import guard
from wayang.server.core import ServerCore
from wayang.server.fast_start import ROUTE_TEMPLATE, FastStart
from wayang.server.fleet_api import fleet_routes

WORKBENCH = Path(__file__).parent / "workbench"
API = "/api/v1"
STEPS_PREFIX = "/steps"
SSE_POLL_S = 1.0
SSE_PAGE = 500


def _json(model: wire.Reply, status: int = 200) -> Response:
    """A model as the response, serialised once (hot routes; ``response_model`` still
    documents them)."""
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


def core_of(request: Request) -> ServerCore:
    core: ServerCore = request.app.state.core
    return core


Core = Annotated[ServerCore, Depends(core_of)]


def actor_of(request: Request, x_wayang_user: Annotated[str | None, Header()] = None) -> str:
    return x_wayang_user or core_of(request).user


Actor = Annotated[str, Depends(actor_of)]
Limit = Annotated[int, Query(ge=1, le=1000)]


def create_api(core: ServerCore, *, token: str | None = None) -> FastAPI:
    api = FastAPI(
        title="Wayang",
        version=core.health().version,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    api.state.core = core
    api.state.token = token
    problems.install(api)
    api.include_router(_system())
    for routes in (
        _workflows,
        _runs,
        _artifacts,
        _streams,
        _people,
        _steps,
        _letters,
        fleet_routes,
    ):
        api.include_router(routes(), prefix=API)
    if core.steps_server is not None:
        api.mount(STEPS_PREFIX, _under(STEPS_PREFIX, core.steps_server.http), name="api-steps")
    _workbench(api)
    api.add_middleware(FastStart, core=core, path=API + "/runs", token=token)
    api.add_middleware(_Measured, core=core)
    return api


def _under(prefix: str, app: Any) -> Any:
    """``app`` seeing request paths without ``prefix`` (API steps declare their own paths)."""

    async def mounted(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if path.startswith(prefix):
            scope = {**scope, "path": path[len(prefix) :] or "/", "root_path": ""}
        await app(scope, receive, send)

    return mounted


class _Measured:
    """Count and time every request (by route template), in a span when tracing is on.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs
    each request in a task group and re-streams its response, a fifth of a run start's time.
    """

    def __init__(self, app: Any, core: ServerCore) -> None:
        self.app = app
        self.core = core

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        core, method, path = self.core, scope["method"], scope["path"]
        status = 500
        started = time.perf_counter()

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            with core.tracing.span(f"{method} {path}", method=method):
                await self.app(scope, receive, sending)
        finally:
            template = scope.get(ROUTE_TEMPLATE) or _template(scope, path)
            core.metrics.http_request(method, template, status, time.perf_counter() - started)


def _template(scope: Any, path: str) -> str:
    # The matched route is the router's own, whose path lacks its include prefix.
    route_path = getattr(scope.get("route"), "path", None)
    prefix = API if path.startswith(API) else ""
    return prefix + route_path if route_path else "unmatched"


# ------------------------------------------------------------------------------ system


def _system() -> APIRouter:
    r = APIRouter()

    @r.get("/healthz", response_model=wire.Health, tags=["system"])
    def healthz(core: Core) -> wire.Health:
        """Alive: answers as long as the process serves HTTP."""
        return core.health()

    @r.get("/readyz", response_model=wire.Health, tags=["system"])
    def readyz(core: Core, response: Response) -> wire.Health:
        """Ready: 200 once the engine runs and while it is not stopping, else 503."""
        health = core.health()
        if health.status != "ok":
            response.status_code = 503
        return health

    @r.get("/metrics", tags=["system"], **guard("metrics", "read"))
    def metrics(core: Core) -> Response:
        """Prometheus metrics; the task queues and workers are read from the store now."""
        core.fleet.observe(core.metrics)
        body, content_type = core.metrics.render()
        return Response(body, media_type=content_type)

    return r


# ------------------------------------------------------------------------------ workflows


def _workflows() -> APIRouter:
    r = APIRouter(prefix="/workflows", tags=["workflows"])

    @r.post("", status_code=201, response_model=wire.WorkflowDetail, **guard("workflows", "create"))
    def register(body: wire.WorkflowSource, core: Core, response: Response) -> wire.WorkflowDetail:
        """Register a workflow.toml (validated first); the same text again is a 200."""
        detail, created = core.register(body)
        response.status_code = 201 if created else 200
        return detail

    @r.get("", response_model=list[wire.WorkflowSummary], **guard("workflows", "read"))
    def list_workflows(core: Core) -> list[wire.WorkflowSummary]:
        return core.list_workflows()

    @r.post("/validate", response_model=wire.ValidationReport, **guard("workflows", "read"))
    def validate(body: wire.WorkflowSource) -> wire.ValidationReport:
        """Check a workflow.toml without registering it: every diagnostic, with line numbers."""
        from wayang.errors import DefinitionError  # noqa: PLC0415
        from wayang.model.loader import parse_workflow  # noqa: PLC0415
        from wayang.server.views import diagnostics  # noqa: PLC0415

        try:
            workflow = parse_workflow(body.source, body.filename)
        except DefinitionError as exc:
            return wire.ValidationReport(valid=False, diagnostics=diagnostics(exc.diagnostics))
        return wire.ValidationReport(valid=True, workflow_id=workflow.id, diagnostics=[])

    @r.get("/{workflow_id}", response_model=wire.WorkflowDetail, **guard("workflows", "read"))
    def get_workflow(
        workflow_id: str, core: Core, version: str | None = None
    ) -> wire.WorkflowDetail:
        return core.workflow(workflow_id, version)

    return r


# ------------------------------------------------------------------------------ runs


def _runs() -> APIRouter:
    r = APIRouter(prefix="/runs", tags=["runs"])

    @r.post("", status_code=202, response_model=wire.RunAccepted, **guard("runs", "create"))
    async def start(body: wire.StartRun, core: Core, actor: Actor) -> Response:
        """Start a run; it is queued while the concurrency limits are reached."""
        return _json(await core.start_run(body, actor), 202)

    @r.get("", response_model=wire.Page[wire.RunSummary], **guard("runs", "read"))
    def list_runs(
        core: Core,
        status: Annotated[
            str | None, Query(pattern="^(" + "|".join(wire.RUN_STATUSES) + ")$")
        ] = None,
        workflow: str | None = None,
        limit: Limit = 50,
        cursor: str | None = None,
    ) -> wire.Page[wire.RunSummary]:
        return core.list_runs(status=status, workflow=workflow, limit=limit, cursor=cursor)

    @r.get("/{run_id}", response_model=wire.RunDetail, **guard("runs", "read"))
    async def get_run(run_id: str, core: Core) -> Response:
        return _json(core.run(run_id))

    @r.post("/{run_id}/cancel", response_model=wire.RunSummary, **guard("runs", "cancel"))
    async def cancel(
        run_id: str, core: Core, body: wire.CancelRun | None = None
    ) -> wire.RunSummary:
        return await core.cancel(run_id, (body or wire.CancelRun()).reason)

    @r.post("/{run_id}/resume", response_model=wire.RunSummary, **guard("runs", "resume"))
    async def resume(run_id: str, core: Core) -> wire.RunSummary:
        return await core.resume(run_id)

    @r.post(
        "/{run_id}/retry",
        status_code=202,
        response_model=wire.RunAccepted,
        **guard("runs", "create"),
    )
    async def retry(run_id: str, core: Core, body: wire.RetryRun | None = None) -> wire.RunAccepted:
        return await core.retry(run_id, (body or wire.RetryRun()).from_step)

    @r.get("/{run_id}/events", response_model=wire.Page[wire.EventView], **guard("runs", "read"))
    def events(
        run_id: str, core: Core, after: int = 0, limit: Limit = SSE_PAGE
    ) -> wire.Page[wire.EventView]:
        return core.events(run_id, after, limit)

    @r.get("/{run_id}/logs", response_model=wire.Page[wire.LogLineView], **guard("runs", "read"))
    def logs(
        run_id: str, core: Core, step: str | None = None, after: int = 0, limit: Limit = SSE_PAGE
    ) -> wire.Page[wire.LogLineView]:
        return core.logs(run_id, step, after, limit)

    @r.get("/{run_id}/trace", response_model=wire.RunTrace, **guard("runs", "read"))
    def trace(run_id: str, core: Core) -> wire.RunTrace:
        """The run's timeline: each step attempt and wait from start to end."""
        return core.trace(run_id)

    return r


# ------------------------------------------------------------------------------ live streams


def _artifacts() -> APIRouter:
    r = APIRouter(tags=["runs"])

    @r.get("/runs/{run_id}/artifacts", response_model=wire.RunArtifacts, **guard("runs", "read"))
    def artifacts(run_id: str, core: Core) -> wire.RunArtifacts:
        """The files collected from the run's workspace when it ended, with sha256 checksums."""
        return core.artifacts(run_id)

    return r


def _streams() -> APIRouter:
    r = APIRouter(tags=["runs"])

    @r.get("/runs/{run_id}/stream", **guard("runs", "read"))
    async def run_stream(
        run_id: str, request: Request, core: Core, after: int = 0, logs_after: int = 0
    ) -> StreamingResponse:
        """Server-Sent Events: the run's events (``event: run-event``) and log lines
        (``event: log``) from the cursors on, live, until the run ends."""
        core.events(run_id, 0, 1)  # 404 now rather than an empty stream
        last_id = request.headers.get("last-event-id", "")
        if last_id.startswith("e"):
            after = max(after, int(last_id[1:] or 0))
        body = _run_events(core, request, run_id, after, logs_after)
        return StreamingResponse(body, media_type="text/event-stream", headers=_SSE_HEADERS)

    @r.get("/stream", **guard("runs", "read"))
    async def all_runs(request: Request, core: Core) -> StreamingResponse:
        """Server-Sent Events: ``event: run`` with ``{run_id, status}`` whenever a run of this
        server records events (for live lists)."""
        return StreamingResponse(
            _run_changes(core, request), media_type="text/event-stream", headers=_SSE_HEADERS
        )

    return r


_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


async def _run_events(
    core: ServerCore, request: Request, run_id: str, after: int, logs_after: int
) -> AsyncIterator[bytes]:
    woken = asyncio.Event()
    stop = core.listen(lambda rid, _: woken.set() if rid == run_id else None)
    try:
        while True:
            # Read whether it ended before reading events: then every event is in this read.
            ended = core.ended(run_id)
            page = core.events(run_id, after, SSE_PAGE)
            for item in page.items:
                after = item.seq
                yield _sse("run-event", item.model_dump(mode="json"), f"e{item.seq}")
            lines = core.logs(run_id, None, logs_after, SSE_PAGE)
            for line in lines.items:
                logs_after = line.seq or logs_after
                yield _sse("log", line.model_dump(mode="json"))
            if page.next or lines.next:
                continue
            if ended or _ended(page.items):
                yield _sse("end", {"run_id": run_id})
                return
            if await request.is_disconnected():
                return
            woken.clear()
            try:
                async with asyncio.timeout(SSE_POLL_S):  # not wait_for: see ServerCore._pump_loop
                    await woken.wait()
            except TimeoutError:
                yield b": keep-alive\n\n"
    finally:
        stop()


def _ended(items: list[wire.EventView]) -> bool:
    ends = {ev.RunSucceeded.TYPE, ev.RunFailed.TYPE, ev.RunCancelled.TYPE}
    return any(item.type in ends for item in items)


async def _run_changes(core: ServerCore, request: Request) -> AsyncIterator[bytes]:
    changed: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=1000)

    def note(run_id: str, events: Any) -> None:
        status = _status_of(events)
        if status and not changed.full():
            changed.put_nowait((run_id, status))

    stop = core.listen(note)
    try:
        yield b": connected\n\n"
        while not await request.is_disconnected():
            try:
                async with asyncio.timeout(SSE_POLL_S * 15):
                    run_id, status = await changed.get()
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            yield _sse("run", {"run_id": run_id, "status": status})
    finally:
        stop()


def _status_of(events: Any) -> str:
    status = ""
    for event in events:
        if isinstance(event, ev.RunStarted):
            status = "running"
        elif isinstance(event, ev.RunSucceeded):
            status = "succeeded"
        elif isinstance(event, ev.RunFailed):
            status = "failed"
        elif isinstance(event, ev.RunCancelled):
            status = "cancelled"
        else:
            status = status or "running"
    return status


# ------------------------------------------------------------------------------ people


def _people() -> APIRouter:
    r = APIRouter(tags=["approvals"])

    @r.get("/approvals", response_model=list[wire.PendingWaitView], **guard("approvals", "read"))
    def pending(core: Core, mine: bool = False, actor: Actor = "") -> list[wire.PendingWaitView]:
        """Steps waiting for people: approvals, negotiations, external work (``mine``: only
        those the acting user may answer)."""
        return core.pending(actor if mine else None)

    base = "/runs/{run_id}/steps/{step_id}"
    answer: dict[str, Any] = {"response_model": wire.SignalAnswer}

    @r.post(f"{base}/approve", **answer, **guard("approvals", "vote"))
    async def approve(
        run_id: str, step_id: str, core: Core, actor: Actor, body: wire.Vote | None = None
    ) -> wire.SignalAnswer:
        vote = body or wire.Vote()
        data = {"comment": vote.comment, "fields": vote.fields}
        return await core.signal(run_id, step_id, "approve", actor, data)

    @r.post(f"{base}/reject", **answer, **guard("approvals", "vote"))
    async def reject(
        run_id: str, step_id: str, core: Core, actor: Actor, body: wire.Vote | None = None
    ) -> wire.SignalAnswer:
        data = {"comment": (body or wire.Vote()).comment, "fields": {}}
        return await core.signal(run_id, step_id, "reject", actor, data)

    @r.post(f"{base}/offer", **answer, **guard("approvals", "negotiate"))
    async def offer(
        run_id: str, step_id: str, body: wire.Offer, core: Core, actor: Actor
    ) -> wire.SignalAnswer:
        data = {"terms": body.terms, "comment": body.comment}
        return await core.signal(run_id, step_id, "offer", actor, data)

    @r.post(f"{base}/accept", **answer, **guard("approvals", "negotiate"))
    async def accept(
        run_id: str, step_id: str, core: Core, actor: Actor, body: wire.Vote | None = None
    ) -> wire.SignalAnswer:
        comment = (body or wire.Vote()).comment
        return await core.signal(
            run_id, step_id, "accept", actor, {"comment": comment} if comment else {}
        )

    @r.post(f"{base}/decline", **answer, **guard("approvals", "negotiate"))
    async def decline(
        run_id: str, step_id: str, core: Core, actor: Actor, body: wire.Vote | None = None
    ) -> wire.SignalAnswer:
        data = {"comment": (body or wire.Vote()).comment}
        return await core.signal(run_id, step_id, "decline", actor, data)

    @r.post(f"{base}/complete", **answer, **guard("approvals", "complete"))
    async def complete(
        run_id: str, step_id: str, core: Core, actor: Actor, body: wire.Completion | None = None
    ) -> wire.SignalAnswer:
        data = {"outputs": (body or wire.Completion()).outputs}
        return await core.signal(run_id, step_id, "complete", actor, data)

    return r


# ------------------------------------------------------------------------------ topics, steps


def _steps() -> APIRouter:
    r = APIRouter(tags=["steps"])

    @r.post("/topics/emit", status_code=202, response_model=wire.Emitted, **guard("topics", "emit"))
    def emit(body: wire.Emit, core: Core, actor: Actor) -> wire.Emitted:
        """Publish on a topic: event steps subscribed get a delivery, waiting runs may take it."""
        return core.emit(body, actor)

    @r.get("/steps", response_model=wire.StepList, **guard("steps", "read"))
    def steps(core: Core) -> wire.StepList:
        """The project's steps, and the problems loading its step files (their steps are left
        out)."""
        return core.step_list()

    @r.post("/steps/{name}/activate", response_model=wire.StepInfo, **guard("steps", "manage"))
    def activate(name: str, core: Core) -> wire.StepInfo:
        return core.set_active(name, True)

    @r.post("/steps/{name}/deactivate", response_model=wire.StepInfo, **guard("steps", "manage"))
    def deactivate(name: str, core: Core) -> wire.StepInfo:
        return core.set_active(name, False)

    @r.get("/flows", response_model=list[wire.FlowView], **guard("steps", "read"))
    def flows(core: Core) -> list[wire.FlowView]:
        return core.flows()

    @r.get("/state", response_model=list[str], **guard("state", "read"))
    async def state_groups(core: Core) -> list[str]:
        return await core.state_groups()

    @r.get("/state/{group}", response_model=wire.StateGroup, **guard("state", "read"))
    async def state_group(group: str, core: Core) -> wire.StateGroup:
        return await core.state_group(group)

    return r


# ------------------------------------------------------------------------------ dead letters


def _letters() -> APIRouter:
    r = APIRouter(prefix="/dlq", tags=["dead letters"])

    @r.get("", response_model=list[wire.DeadLetterView], **guard("dlq", "read"))
    def letters(core: Core, limit: Limit = 100) -> list[wire.DeadLetterView]:
        return core.dead_letters(limit)

    @r.post("/{letter_id:path}/replay", response_model=wire.Replayed, **guard("dlq", "replay"))
    async def replay(letter_id: str, core: Core) -> wire.Replayed:
        return await core.replay(letter_id)

    return r


# ------------------------------------------------------------------------------ workbench


def _workbench(api: FastAPI) -> None:
    index = WORKBENCH / "index.html"
    if not index.is_file():
        return
    api.mount("/ui", StaticFiles(directory=WORKBENCH), name="workbench")

    @api.get("/", include_in_schema=False, response_class=HTMLResponse)
    def home() -> FileResponse:
        return FileResponse(index, media_type="text/html")
