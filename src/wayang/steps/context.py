"""What a step handler gets: ``ctx`` (emit, logger, state, trace id, flows) and, for API steps,
the request. The names follow the Motia 0.x conventions for Python steps, so step files written
for them run unmodified: ``ctx.emit({"topic": …, "data": …})`` (awaitable), ``ctx.logger.info``,
``ctx.state.get(group, key)``, ``ctx.trace_id`` (also ``ctx.traceId``), ``req.body`` (also
``req["body"]``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from wayang.errors import WayangError
from wayang.steps.model import StepDef
from wayang.steps.state import StateAdapter

LogSink = Callable[[str, str, Mapping[str, Any] | None], None]
"""``sink(level, message, extra)``: where a handler's log lines go."""


class EmitError(WayangError):
    """A handler emitted something its step may not: an unknown topic or a malformed event."""


class _Done:
    """An awaitable that is already finished: ``ctx.emit`` works with and without ``await``."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator function that never yields: awaiting it returns at once


_DONE = _Done()


@dataclass(frozen=True, slots=True)
class Emitted:
    """One event a handler emitted; it is published only if the handler returns successfully."""

    topic: str
    data: Any
    key: str = ""


class Logger:
    """``info/warn/warning/error/debug(message, extra)``: lines in the trace's log."""

    __slots__ = ("_sink",)

    def __init__(self, sink: LogSink) -> None:
        self._sink = sink

    def info(self, message: str, extra: Mapping[str, Any] | None = None) -> None:
        self._sink("info", str(message), extra)

    def warn(self, message: str, extra: Mapping[str, Any] | None = None) -> None:
        self._sink("warn", str(message), extra)

    warning = warn

    def error(self, message: str, extra: Mapping[str, Any] | None = None) -> None:
        self._sink("error", str(message), extra)

    def debug(self, message: str, extra: Mapping[str, Any] | None = None) -> None:
        self._sink("debug", str(message), extra)


def log_text(message: str, extra: Mapping[str, Any] | None) -> str:
    """A log line as stored: the message, then its extra fields as compact JSON."""
    if not extra:
        return message
    return f"{message} {json.dumps(extra, default=str, separators=(',', ':'))}"


@dataclass(slots=True)
class Context:
    """The ``ctx`` of one handler attempt."""

    step: StepDef
    trace_id: str
    state: StateAdapter
    logger: Logger
    flows: tuple[str, ...] = ()
    attempt: int = 1
    emitted: list[Emitted] = field(default_factory=list)

    @property
    def traceId(self) -> str:  # noqa: N802 - the Motia name, kept for unmodified step files
        return self.trace_id

    def emit(self, event: Mapping[str, Any]) -> _Done:
        """Queue ``{"topic": …, "data": …}`` (optionally ``"key"``) for publishing."""
        if not isinstance(event, Mapping) or not isinstance(event.get("topic"), str):
            raise EmitError(
                f"step '{self.step.name}' emitted {event!r}; an event is a dict like "
                '{"topic": "order.created", "data": {...}}'
            )
        topic = event["topic"]
        allowed = {*self.step.emit_topics, *(e.topic for e in self.step.virtual_emits)}
        if topic not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise EmitError(
                f"step '{self.step.name}' ({self.step.where}) emitted topic '{topic}', which "
                f"its config does not list in 'emits' (it lists: {known}); add it there"
            )
        data = event.get("data")
        dump = getattr(data, "model_dump", None)
        if callable(dump):  # a pydantic model: published as its JSON form
            data = dump(mode="json")
        self.emitted.append(Emitted(topic, data, str(event.get("key") or "")))
        return _DONE


class Request:
    """An API step's request: ``body``, ``headers``, ``pathParams``, ``queryParams``,
    ``rawBody``; also readable as ``req["body"]`` and with snake_case names."""

    __slots__ = ("body", "headers", "method", "path", "pathParams", "queryParams", "rawBody")

    def __init__(
        self,
        *,
        body: Any,
        headers: Mapping[str, str],
        path_params: Mapping[str, str],
        query_params: Mapping[str, str | list[str]],
        raw_body: str,
        method: str,
        path: str,
    ) -> None:
        self.body = body
        self.headers = dict(headers)
        self.pathParams = dict(path_params)
        self.queryParams = dict(query_params)
        self.rawBody = raw_body
        self.method = method
        self.path = path

    @property
    def path_params(self) -> dict[str, str]:
        return self.pathParams

    @property
    def query_params(self) -> dict[str, str | list[str]]:
        return self.queryParams

    @property
    def raw_body(self) -> str:
        return self.rawBody

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)
