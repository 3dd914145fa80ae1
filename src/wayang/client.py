"""A typed client of the HTTP API of ``wayang server``: every call returns the wire models of
:mod:`wayang.wire`, every refusal raises :class:`ApiError`.

Over TCP (``Client("http://127.0.0.1:8080")``) or the Unix socket the server of a store listens
on (``Client(socket=path)``)::

    with Client(socket=path, user="ann") as client:
        accepted = client.start_run(wire.StartRun(source=text, filename="/abs/workflow.toml"))
        for name, data in client.stream(accepted.run_id):
            ...

A worker on a host that must not reach the store works through a server with
:class:`HttpWorkerLink` (``wayang worker --server URL``).

The errors, below :class:`~wayang.errors.WayangError`::

    WayangError
    ├── ApiError                   the server answered with an error (a problem document)
    └── ServerUnavailableError     no server answers where the client looks
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from wayang import wire
from wayang.errors import Diagnostic, Severity, UsageError, WayangError
from wayang.runtime.queues import QUEUE_LIMITS
from wayang.store.port import (
    DEFAULT_MAX_CLAIMS,
    ClaimedTask,
    ClaimRequest,
    FencedResult,
    LogLine,
    Reported,
    WorkerBeat,
    WorkerRecord,
)

T = TypeVar("T")
A = TypeVar("A", bound=BaseModel)

SOCKET_BASE_URL = "http://wayang"
API = "/api/v1"
PROBLEM_BASE = "https://wayang.dev/problems/"
log = logging.getLogger("wayang.worker")


class ApiError(WayangError):
    """The server refused a request: the RFC 9457 problem document it answered with.

    ``str()`` is the problem's ``detail``; ``exit_code`` is 2 for a 4xx (the request was
    wrong) and 1 otherwise.
    """

    def __init__(
        self,
        status: int,
        type: str,
        title: str,
        detail: str,
        *,
        errors: Iterable[wire.FieldError] = (),
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.errors = list(errors)
        self.body = body or {}
        self.exit_code = 2 if 400 <= status < 500 else 1

    @property
    def kind(self) -> str:
        """The last part of ``type``: ``run-not-found``, ``invalid-workflow``…"""
        return self.type.rsplit("/", 1)[-1]

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """What an invalid workflow or parameter problem found (its ``diagnostics``)."""
        found = TypeAdapter(list[wire.DiagnosticView]).validate_python(
            self.body.get("diagnostics") or []
        )
        return tuple(diagnostic_of(d) for d in found)

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
            problem = wire.Problem.model_validate(body)
        except ValueError:
            text = response.text.strip()[:200] or response.reason_phrase
            return cls(
                response.status_code,
                "about:blank",
                response.reason_phrase,
                f"HTTP {response.status_code} from {response.request.url}: {text}",
            )
        return cls(
            problem.status,
            problem.type,
            problem.title,
            problem.detail,
            errors=problem.errors,
            body=body,
        )


class ServerUnavailableError(WayangError):
    """No Wayang server answered: nothing listens there, or it stopped answering."""


def diagnostic_of(view: wire.DiagnosticView) -> Diagnostic:
    """A diagnostic the server sent, as the one it found."""
    severity = Severity.WARNING if view.severity == Severity.WARNING.value else Severity.ERROR
    return Diagnostic(view.file, view.line, view.column, view.message, severity, view.code)


class Client:
    """The API of one server. Use it in ``with`` (or call :meth:`close`)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        socket: Path | None = None,
        token: str | None = None,
        user: str | None = None,
        timeout: float = 60,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if (base_url is None) == (socket is None):
            raise UsageError("give the server's URL or its Unix socket (one of them)")
        self.base_url = (base_url or SOCKET_BASE_URL).rstrip("/")
        self.socket = socket
        self.token = token
        self.user = user
        self.timeout = timeout
        if transport is None and socket is not None:
            transport = httpx.HTTPTransport(uds=str(socket))
        self._http = httpx.Client(base_url=self.base_url, transport=transport, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def where(self) -> str:
        """Where the server is, as people read it."""
        return f"the Unix socket {self.socket}" if self.socket is not None else self.base_url

    def acting_as(self, user: str) -> Client:
        """This client, acting on behalf of ``user``; it shares this one's connections (close
        only one of the two)."""
        twin = copy.copy(self)
        twin.user = user
        return twin

    # ------------------------------------------------------------------ system

    def health(self) -> wire.Health:
        return self._get(wire.Health, "/healthz")

    # ------------------------------------------------------------------ workflows

    def register_workflow(
        self, source: str, filename: str = "workflow.toml"
    ) -> wire.WorkflowDetail:
        body = _ask(wire.WorkflowSource, source=source, filename=filename)
        return self._post(wire.WorkflowDetail, "/workflows", body)

    def workflows(self) -> list[wire.WorkflowSummary]:
        return self._get(list[wire.WorkflowSummary], "/workflows")

    def workflow(self, workflow_id: str, version: str | None = None) -> wire.WorkflowDetail:
        return self._get(wire.WorkflowDetail, f"/workflows/{_part(workflow_id)}", version=version)

    def validate(self, source: str, filename: str = "workflow.toml") -> wire.ValidationReport:
        body = _ask(wire.WorkflowSource, source=source, filename=filename)
        return self._post(wire.ValidationReport, "/workflows/validate", body)

    # ------------------------------------------------------------------ runs

    def start_run(self, request: wire.StartRun) -> wire.RunAccepted:
        return self._post(wire.RunAccepted, "/runs", request)

    def runs(
        self,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> wire.Page[wire.RunSummary]:
        query = {"status": status, "workflow": workflow, "limit": limit, "cursor": cursor}
        return self._get(wire.Page[wire.RunSummary], "/runs", **query)

    def run(self, run_id: str) -> wire.RunDetail:
        return self._get(wire.RunDetail, f"/runs/{_part(run_id)}")

    def events(self, run_id: str, after: int = 0, limit: int = 500) -> wire.Page[wire.EventView]:
        path = f"/runs/{_part(run_id)}/events"
        return self._get(wire.Page[wire.EventView], path, after=after, limit=limit)

    def logs(
        self, run_id: str, step: str | None = None, after: int = 0, limit: int = 500
    ) -> wire.Page[wire.LogLineView]:
        path = f"/runs/{_part(run_id)}/logs"
        return self._get(wire.Page[wire.LogLineView], path, step=step, after=after, limit=limit)

    def trace(self, run_id: str) -> wire.RunTrace:
        return self._get(wire.RunTrace, f"/runs/{_part(run_id)}/trace")

    def cancel(self, run_id: str, reason: str = "cancelled through the API") -> wire.RunSummary:
        return self._post(
            wire.RunSummary, f"/runs/{_part(run_id)}/cancel", _ask(wire.CancelRun, reason=reason)
        )

    def resume(self, run_id: str) -> wire.RunSummary:
        return self._post(wire.RunSummary, f"/runs/{_part(run_id)}/resume")

    def retry(self, run_id: str, from_step: str | None = None) -> wire.RunAccepted:
        body = _ask(wire.RetryRun, from_step=from_step)
        return self._post(wire.RunAccepted, f"/runs/{_part(run_id)}/retry", body)

    def stream(
        self, run_id: str, after: int = 0, logs_after: int = 0
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The run's Server-Sent Events from the cursors on, until it ends: ``("run-event",
        EventView data)``, ``("log", LogLineView data)``, last ``("end", {"run_id"})``. It
        stops early, without ``end``, when the server goes away (a restart): follow on with
        the cursors of the last items read."""
        query = {"after": after, "logs_after": logs_after}
        headers = self._headers()
        with (
            self._calling(),
            self._http.stream(
                "GET", self._stream_path(run_id), params=query, headers=headers
            ) as answer,
        ):
            if answer.is_error:
                answer.read()
                raise ApiError.from_response(answer)
            parser = _EventParser()
            for line in answer.iter_lines():
                found = parser.feed(line)
                if found is not None:
                    yield found

    async def astream(
        self, run_id: str, after: int = 0, logs_after: int = 0
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """:meth:`stream` for asyncio: cancelling the task that reads it stops it at once."""
        transport = httpx.AsyncHTTPTransport(uds=str(self.socket)) if self.socket else None
        query = {"after": after, "logs_after": logs_after}
        http = httpx.AsyncClient(base_url=self.base_url, transport=transport, timeout=self.timeout)
        async with http:
            with self._calling():
                path, headers = self._stream_path(run_id), self._headers()
                async with http.stream("GET", path, params=query, headers=headers) as answer:
                    if answer.is_error:
                        await answer.aread()
                        raise ApiError.from_response(answer)
                    parser = _EventParser()
                    async for line in answer.aiter_lines():
                        found = parser.feed(line)
                        if found is not None:
                            yield found

    def _stream_path(self, run_id: str) -> str:
        return f"{API}/runs/{_part(run_id)}/stream"

    # ------------------------------------------------------------------ people

    def approvals(self, mine: bool = False) -> list[wire.PendingWaitView]:
        return self._get(list[wire.PendingWaitView], "/approvals", mine=mine or None)

    def approve(
        self, run_id: str, step_id: str, comment: str = "", fields: dict[str, Any] | None = None
    ) -> wire.SignalAnswer:
        return self._signal(
            run_id, step_id, "approve", _ask(wire.Vote, comment=comment, fields=fields or {})
        )

    def reject(self, run_id: str, step_id: str, comment: str = "") -> wire.SignalAnswer:
        return self._signal(run_id, step_id, "reject", _ask(wire.Vote, comment=comment))

    def offer(
        self, run_id: str, step_id: str, terms: dict[str, Any], comment: str = ""
    ) -> wire.SignalAnswer:
        return self._signal(
            run_id, step_id, "offer", _ask(wire.Offer, terms=terms, comment=comment)
        )

    def accept(self, run_id: str, step_id: str, comment: str = "") -> wire.SignalAnswer:
        return self._signal(run_id, step_id, "accept", _ask(wire.Vote, comment=comment))

    def decline(self, run_id: str, step_id: str, comment: str = "") -> wire.SignalAnswer:
        return self._signal(run_id, step_id, "decline", _ask(wire.Vote, comment=comment))

    def complete(
        self, run_id: str, step_id: str, outputs: dict[str, Any] | None = None
    ) -> wire.SignalAnswer:
        body = _ask(wire.Completion, outputs=outputs or {})
        return self._signal(run_id, step_id, "complete", body)

    def _signal(self, run_id: str, step_id: str, verb: str, body: BaseModel) -> wire.SignalAnswer:
        return self._post(
            wire.SignalAnswer, f"/runs/{_part(run_id)}/steps/{_part(step_id)}/{verb}", body
        )

    # ------------------------------------------------------------------ topics, steps

    def emit(self, topic: str, data: Any, key: str = "") -> wire.Emitted:
        return self._post(
            wire.Emitted, "/topics/emit", _ask(wire.Emit, topic=topic, data=data, key=key)
        )

    def steps(self) -> wire.StepList:
        return self._get(wire.StepList, "/steps")

    def flows(self) -> list[wire.FlowView]:
        return self._get(list[wire.FlowView], "/flows")

    def activate(self, name: str) -> wire.StepInfo:
        return self._post(wire.StepInfo, f"/steps/{_part(name)}/activate")

    def deactivate(self, name: str) -> wire.StepInfo:
        return self._post(wire.StepInfo, f"/steps/{_part(name)}/deactivate")

    # ------------------------------------------------------------------ dead letters

    def dead_letters(self, limit: int = 100) -> list[wire.DeadLetterView]:
        return self._get(list[wire.DeadLetterView], "/dlq", limit=limit)

    def replay(self, letter_id: str) -> wire.Replayed:
        return self._post(wire.Replayed, f"/dlq/{_part(letter_id, safe='/')}/replay")

    # ------------------------------------------------------------------ workers

    def register_worker(self, hello: wire.WorkerHello) -> wire.WorkerRegistered:
        return self._post(wire.WorkerRegistered, "/workers/register", hello)

    def heartbeat_worker(self, beat: wire.WorkerHeartbeat) -> wire.HeldTasks:
        return self._post(wire.HeldTasks, "/workers/heartbeat", beat)

    def claim_tasks(self, ask: wire.ClaimTasks) -> wire.ClaimedTasks:
        return self._post(wire.ClaimedTasks, "/tasks/claim", ask)

    def complete_task(self, result: wire.CompleteTask) -> wire.TaskCompleted:
        return self._post(wire.TaskCompleted, "/tasks/complete", result)

    def append_task_logs(self, logs: wire.TaskLogs) -> wire.LogsAppended:
        return self._post(wire.LogsAppended, "/tasks/logs", logs)

    def complete_tasks(self, batch: wire.CompleteTasks) -> wire.TasksCompleted:
        return self._post(wire.TasksCompleted, "/tasks/complete-batch", batch)

    def queue_limits(self) -> wire.QueueLimits:
        return self._get(wire.QueueLimits, "/queues/limits")

    # ------------------------------------------------------------------ plumbing

    def _headers(self) -> dict[str, str]:
        headers = {"accept": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        if self.user:
            headers["x-wayang-user"] = self.user
        return headers

    def _get(self, model: type[T], path: str, **query: Any) -> T:
        params = {k: _query_value(v) for k, v in query.items() if v is not None}
        return _read(model, self._send("GET", path, params=params))

    def _post(self, model: type[T], path: str, body: BaseModel | None = None) -> T:
        payload = body.model_dump(mode="json") if body is not None else None
        return _read(model, self._send("POST", path, json=payload))

    def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        url = path if path == "/healthz" else API + path
        with self._calling():
            answer = self._http.request(method, url, headers=self._headers(), **options)
        if answer.is_error:
            raise ApiError.from_response(answer)
        return answer

    @contextlib.contextmanager
    def _calling(self) -> Iterator[None]:
        """Transport failures as :class:`ServerUnavailableError`, saying what to do."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise ServerUnavailableError(
                f"the Wayang server at {self.where} did not answer in {self.timeout:g}s "
                f"({type(exc).__name__}); check that it runs, or work without it: --no-server"
            ) from None
        except httpx.TransportError as exc:
            raise ServerUnavailableError(
                f"no Wayang server answers at {self.where} ({exc or type(exc).__name__}); start "
                "one with 'wayang server', fix --server or $WAYANG_SERVER, or work without a "
                "server: --no-server"
            ) from None


class HttpWorkerLink:
    """A worker's way to the store through a server (``wayang worker --server URL``): what
    :class:`~wayang.runtime.worker.WorkerLink` asks for, over the worker routes of the API.

    The server's clock decides leases: the ``now`` the worker passes is not sent. A failure
    that may pass (no answer, a 5xx, a 429) raises, and the worker tries again as it does with
    the store; a claim or a batch of output is first repeated here, with the same request id,
    so a lost answer costs nothing. A refusal that will not pass (401, 403, a route the server
    lacks, a request it cannot take) is final: ``on_refused`` hears of it once, ``refused``
    keeps it, and from then on claims and heartbeats raise it while results and output are
    dropped (their leases lapse and another worker runs the tasks), until the worker stops.
    """

    PAUSES = (0.1, 0.2)
    """Seconds between the tries of a claim or a batch of output."""

    def __init__(
        self, client: Client, *, on_refused: Callable[[ApiError], None] | None = None
    ) -> None:
        self.client = client
        self.on_refused = on_refused
        self.refused: ApiError | None = None
        self._refusing = threading.Lock()

    def register_worker(self, worker: WorkerRecord) -> None:
        hello = wire.WorkerHello(
            worker_id=worker.worker_id,
            host=worker.host,
            pid=worker.pid,
            version=worker.version,
            capabilities=list(worker.capabilities),
            labels=dict(worker.labels),
            queues=list(worker.queues),
            slots=worker.slots,
        )
        self._call(self.client.register_worker, hello)

    def heartbeat_worker(self, beat: WorkerBeat, now: float, lease_s: float) -> list[str]:
        said = wire.WorkerHeartbeat(
            worker_id=beat.worker_id,
            state=beat.state,
            running=beat.running,
            done=beat.done,
            failed=beat.failed,
            lease_s=lease_s,
            tasks=list(beat.tasks) if beat.tasks is not None else None,
        )
        return self._call(self.client.heartbeat_worker, said).held

    def claim(
        self,
        owner: str,
        now: float,
        lease_s: float,
        limit: int = 1,
        queue: str = "default",
        *,
        offers: Collection[str] | None = None,
        max_claims: int = DEFAULT_MAX_CLAIMS,
        max_running: int | None = None,
    ) -> list[ClaimedTask]:
        if offers is None:
            raise UsageError("a worker over HTTP claims only what it offers: pass its offers")
        ask = wire.ClaimTasks(
            worker_id=owner,
            queue=queue,
            limit=limit,
            offers=sorted(offers),
            lease_s=lease_s,
            max_claims=max_claims,
            max_running=max_running,
            request_id=uuid.uuid4().hex,
        )
        found = self._call(self._repeating, self.client.claim_tasks, ask)
        return [_claimed(view, owner) for view in found.tasks]

    def complete(
        self, task_id: str, fencing_token: int, result: dict[str, Any], now: float
    ) -> bool:
        body = wire.CompleteTask(task_id=task_id, fencing_token=fencing_token, result=result)
        found = self._result(self.client.complete_task, body, f"the result of {task_id}")
        return found is not None and found.counted

    def complete_many(
        self,
        results: Sequence[FencedResult],
        now: float,
        logs: Sequence[LogLine] = (),
        *,
        then_claim: ClaimRequest | None = None,
    ) -> Reported:
        """The results and their output in one request (one transaction on the server),
        then the claim."""
        counted = self._complete_batch(results, logs) if results else []
        if not results:
            self.append_logs(logs)
        claimed: list[ClaimedTask] = []
        if then_claim is not None and self.refused is None:
            claimed = self.claim(
                then_claim.owner,
                now,
                then_claim.lease_s,
                then_claim.limit,
                then_claim.queue,
                offers=then_claim.offers,
                max_claims=then_claim.max_claims,
                max_running=then_claim.max_running,
            )
        return Reported(counted, claimed)

    def _complete_batch(
        self, results: Sequence[FencedResult], logs: Sequence[LogLine]
    ) -> list[bool]:
        """Whether each result counted; all False when the batch was dropped."""
        views = _line_views(logs)
        if len(views) > wire.MAX_LOG_LINES:  # more output than a request takes: on its own
            self.append_logs(logs)
            views = []
        body = wire.CompleteTasks(
            results=[
                wire.CompleteTask(
                    task_id=done.task_id, fencing_token=done.fencing_token, result=done.result
                )
                for done in results
            ],
            output=views,
            request_id=uuid.uuid4().hex,
        )
        found = self._result(self._send_batch, body, f"{len(results)} result(s)")
        if found is None:
            return [False] * len(results)
        return [answer.counted for answer in found.completed]

    def _send_batch(self, body: wire.CompleteTasks) -> wire.TasksCompleted:
        return self._repeating(self.client.complete_tasks, body)

    def append_logs(self, lines: Sequence[LogLine]) -> None:
        if not lines:
            return
        views = _line_views(lines)
        body = wire.TaskLogs(lines=views, request_id=_digest(views))
        self._result(self._append, body, "output")

    def _append(self, body: wire.TaskLogs) -> wire.LogsAppended:
        return self._repeating(self.client.append_task_logs, body)

    def kv_scan(self, namespace: str) -> dict[str, Any]:
        if namespace != QUEUE_LIMITS:
            raise UsageError(f"a server tells workers the {QUEUE_LIMITS!r} only, not {namespace!r}")
        limits = self._call(self.client.queue_limits).limits
        return {queue: limit.model_dump(exclude_none=True) for queue, limit in limits.items()}

    def wakeups(self, kinds: Collection[str]) -> None:
        """None: no wake-ups come over HTTP, so the worker polls."""
        return None

    # ------------------------------------------------------------------ plumbing

    def _call(self, fn: Callable[..., T], *args: Any, dropping: bool = False) -> T:
        """``fn(*args)``. A final refusal is remembered, and raised again by every later call;
        ``dropping``: only 401, 403, 404 and 405 are final (any other 4xx drops one result)."""
        if self.refused is not None:
            raise _again(self.refused)
        try:
            return fn(*args)
        except ApiError as exc:
            if exc.status in FINAL_REFUSALS or not (dropping or _passing(exc)):
                self._refuse(exc)
            raise
        except ServerUnavailableError as exc:
            raise ServerUnavailableError(
                f"the Wayang server at {self.client.where} did not answer "
                f"({exc.__context__ or exc})"
            ) from None

    def _result(self, fn: Callable[[A], T], body: A, what: str) -> T | None:
        """Send a result or output; None when it was dropped (refused for good)."""
        if self.refused is not None:
            return None
        try:
            return self._call(fn, body, dropping=True)
        except ApiError as exc:
            if _passing(exc):
                raise
            if exc.status not in FINAL_REFUSALS:
                log.error("the server refused %s: %s", what, exc)
            return None

    def _refuse(self, exc: ApiError) -> None:
        with self._refusing:  # the worker calls from several threads
            first = self.refused is None
            self.refused = self.refused or exc
        if first and self.on_refused is not None:
            self.on_refused(exc)

    def _repeating(self, fn: Callable[[A], T], body: A) -> T:
        """``fn(body)``, repeated a few times while the failure may pass (same request id)."""
        for pause in self.PAUSES:
            try:
                return fn(body)
            except (ServerUnavailableError, ApiError) as exc:
                if isinstance(exc, ApiError) and not _passing(exc):
                    raise
                time.sleep(pause)
        return fn(body)


def _line_views(lines: Sequence[LogLine]) -> list[wire.TaskLogLine]:
    return [
        wire.TaskLogLine(
            run_id=line.run_id,
            step_id=line.step_id,
            attempt=line.attempt,
            stream=line.stream,
            line=line.line,
            at=datetime.fromtimestamp(line.at, UTC),
        )
        for line in lines
    ]


PASSING = frozenset({408, 425, 429})
"""4xx statuses that may pass: the same request may succeed later (so do all 5xx)."""
FINAL_REFUSALS = frozenset({401, 403, 404, 405})


def _passing(exc: ApiError) -> bool:
    """Whether the request may succeed if sent again later."""
    return not 400 <= exc.status < 500 or exc.status in PASSING


def _again(exc: ApiError) -> ApiError:
    return ApiError(exc.status, exc.type, exc.title, exc.detail, errors=exc.errors, body=exc.body)


def _claimed(view: wire.ClaimedTaskView, owner: str) -> ClaimedTask:
    return ClaimedTask(
        task_id=view.task_id,
        run_id=view.run_id,
        step_id=view.step_id,
        attempt=view.attempt,
        idempotency_key=view.idempotency_key,
        payload=view.payload,
        owner=owner,
        fencing_token=view.fencing_token,
        lease_expires_at=datetime.fromisoformat(view.lease_expires_at).timestamp(),
        tenant=view.tenant,
    )


def _digest(lines: Sequence[wire.TaskLogLine]) -> str:
    """The request id of a batch of output: the same lines, the same id (a repeat)."""
    text = json.dumps([line.model_dump(mode="json") for line in lines], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _ask(model: type[A], **fields: Any) -> A:
    """A request, checked here as the server would: a field that does not fit is the 422
    the server would answer, naming the field."""
    try:
        return model(**fields)
    except ValidationError as exc:
        errors = [
            wire.FieldError(field=".".join(str(p) for p in e["loc"]), message=e["msg"])
            for e in exc.errors()
        ]
        names = ", ".join(e.field for e in errors)
        raise ApiError(
            422,
            PROBLEM_BASE + "invalid-request",
            "Invalid request",
            f"the request does not fit the API: {names}: {errors[0].message}",
            errors=errors,
        ) from None


def _part(value: str, safe: str = "") -> str:
    """``value`` as one segment of a path (a run id is never taken for a route)."""
    return quote(value, safe=safe)


def _query_value(value: Any) -> Any:
    return "true" if value is True else value


def _read(model: type[T], answer: httpx.Response) -> T:
    try:
        return TypeAdapter(model).validate_python(answer.json())
    except ValueError as exc:
        raise ApiError(
            answer.status_code,
            PROBLEM_BASE + "unreadable-answer",
            "Unreadable answer",
            f"the answer to {answer.request.method} {answer.request.url.path} does not fit "
            f"this client ({type(exc).__name__}); is the server a newer or older Wayang?",
        ) from None


class _EventParser:
    """Server-Sent Events, line by line: each complete event as ``(name, JSON data)``."""

    def __init__(self) -> None:
        self.name = ""
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, dict[str, Any]] | None:
        if line.startswith(":"):
            return None
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                self.name = value
            elif field == "data":
                self.data.append(value)
            return None
        if not self.data:
            self.name = ""
            return None
        name, text = self.name or "message", "\n".join(self.data)
        self.name, self.data = "", []
        return name, json.loads(text)


__all__ = ["ApiError", "Client", "HttpWorkerLink", "ServerUnavailableError", "diagnostic_of"]
