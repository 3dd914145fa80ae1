"""A typed client of the HTTP API of ``wayang server``: every call returns the wire models of
:mod:`wayang.wire`, every refusal raises :class:`ApiError`.

Over TCP (``Client("http://127.0.0.1:8080")``) or the Unix socket the server of a store listens
on (``Client(socket=path)``)::

    with Client(socket=path, user="ann") as client:
        accepted = client.start_run(wire.StartRun(source=text, filename="/abs/workflow.toml"))
        for name, data in client.stream(accepted.run_id):
            ...

The errors, below :class:`~wayang.errors.WayangError`::

    WayangError
    ├── ApiError                   the server answered with an error (a problem document)
    └── ServerUnavailableError     no server answers where the client looks
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from wayang import wire
from wayang.errors import Diagnostic, Severity, UsageError, WayangError

T = TypeVar("T")
A = TypeVar("A", bound=BaseModel)

SOCKET_BASE_URL = "http://wayang"
API = "/api/v1"
PROBLEM_BASE = "https://wayang.dev/problems/"


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


__all__ = ["ApiError", "Client", "ServerUnavailableError", "diagnostic_of"]
