"""OpenTelemetry traces of runs, step attempts, executors, API requests and deliveries.

Off unless the standard ``OTEL_*`` variables ask for it, and then free: a :class:`Tracing` that is
off returns at once from every method and never wraps an executor.

A run is one trace whose id is derived from the run id (see :mod:`wayang.observe.trace_ids`), so
spans made by any process that drives the run, or by a step's own tools through ``TRACEPARENT``,
join it. Spans of runs and steps are made when they end, with the start and end times of their
events: nothing is held open across a restart, and a run's span is written exactly once, by the
process that records its end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import INVALID_SPAN, Span, Status, StatusCode, Tracer, use_span
from opentelemetry.util.types import AttributeValue

from wayang.engine import events as ev
from wayang.errors import UsageError
from wayang.executors.base import Executor, LogSink, TaskResult, TaskSpec
from wayang.observe.trace_ids import (
    ChosenIds,
    attempt_span_id_of,
    parent_context,
    root_span_id_of,
    trace_id_of,
    traceparent_of,
)
from wayang.store.port import Delivery, DeliveryOutcome

UNKNOWN_WORKFLOW = "unknown"
_EXPORTERS: Mapping[str, Callable[[Mapping[str, str]], SpanExporter]] = {
    "otlp": lambda environ: OTLPSpanExporter(endpoint=_otlp_endpoint(environ)),
    "console": lambda environ: ConsoleSpanExporter(),
}
_RUN_ENDS: Mapping[type[ev.Event], str] = {
    ev.RunSucceeded: "succeeded",
    ev.RunFailed: "failed",
    ev.RunCancelled: "cancelled",
}
# A step's span starts at its attempt or, for steps that wait, when the wait began.
_STEP_BEGINS = (
    ev.StepStarted,
    ev.ApprovalRequested,
    ev.NegotiationStarted,
    ev.CompletionRequested,
    ev.EventWaitStarted,
    ev.TimerStarted,
    ev.SubworkflowStarted,
)


class _OfStep(Protocol):
    @property
    def step_id(self) -> str: ...

    @property
    def at(self) -> float: ...


@dataclass(slots=True)
class _RunTrace:
    """What is kept about a live run until its end: its names and when its steps began."""

    workflow_id: str
    started_at: float
    parent: str = ""
    steps: dict[str, float] = field(default_factory=dict)


class Tracing:
    """Traces for one server or CLI process, with a tracer provider of its own (the global
    OpenTelemetry provider is never set). Build it with :meth:`from_environment`,
    :meth:`with_exporter` or :meth:`off`; call :meth:`shutdown` when done to flush."""

    def __init__(
        self,
        processors: Sequence[SpanProcessor] = (),
        *,
        service_name: str = "wayang",
        max_runs: int = 10_000,
    ) -> None:
        self._ids = ChosenIds()
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None
        self._runs: dict[str, _RunTrace] = {}
        self._max_runs = max_runs
        if processors:
            resource = Resource.create({SERVICE_NAME: service_name})
            provider = TracerProvider(
                resource=resource, id_generator=self._ids, shutdown_on_exit=False
            )
            for processor in processors:
                provider.add_span_processor(processor)
            self._provider = provider
            self._tracer = provider.get_tracer("wayang")
        self._handlers = self._event_handlers()

    @classmethod
    def off(cls) -> Tracing:
        return cls()

    @classmethod
    def with_exporter(cls, exporter: SpanExporter, *, service_name: str = "wayang") -> Tracing:
        """Spans go to ``exporter`` as each ends (tests, with an ``InMemorySpanExporter``)."""
        return cls([SimpleSpanProcessor(exporter)], service_name=service_name)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Tracing:
        """On when ``OTEL_TRACES_EXPORTER`` lists ``otlp`` or ``console``, or when it is unset and
        an OTLP endpoint is; off when it is ``none``, unset without an endpoint, or when
        ``OTEL_SDK_DISABLED`` is true. The OTLP exporter (HTTP) reads its other ``OTEL_*``
        settings (headers, timeout, certificates) from the process environment itself."""
        names = _exporter_names(environ)
        processors = [BatchSpanProcessor(_EXPORTERS[name](environ)) for name in names]
        service_name = environ.get("OTEL_SERVICE_NAME", "") or "wayang"
        return cls(processors, service_name=service_name)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def shutdown(self) -> None:
        """Export what is buffered and stop the exporters."""
        if self._provider is not None:
            self._provider.force_flush()
            self._provider.shutdown()

    # --- runs and steps, from engine events ----------------------------------------------------

    def _event_handlers(self) -> dict[type[ev.Event], Callable[[str, Any], None]]:
        handlers: dict[type[ev.Event], Callable[[str, Any], None]] = {
            ev.RunStarted: self._run_started,
            ev.StepSucceeded: self._step_succeeded,
            ev.StepFailed: self._step_failed,
            ev.StepCancelled: self._step_cancelled,
        }
        handlers |= dict.fromkeys(_STEP_BEGINS, self._step_began)
        handlers |= dict.fromkeys(_RUN_ENDS, self._run_ended)
        return handlers

    def on_events(self, run_id: str, events: Sequence[ev.Event]) -> None:
        """The engine observer: spans for the runs and step attempts that ``events`` end."""
        if self._tracer is None:
            return
        for event in events:
            handle = self._handlers.get(type(event))
            if handle is not None:
                handle(run_id, event)

    def _run_started(self, run_id: str, event: ev.RunStarted) -> None:
        self._remember(run_id, _RunTrace(event.workflow_id, event.at, event.parent))

    def _step_began(self, run_id: str, event: _OfStep) -> None:
        self._run(run_id, event.at).steps[event.step_id] = event.at

    def _step_succeeded(self, run_id: str, event: ev.StepSucceeded) -> None:
        attributes = {"wayang.status": "succeeded"}
        span = self._step_span(run_id, event.step_id, event.attempt, event.at, event.duration_s)
        self._end(span, attributes, event.at)

    def _step_failed(self, run_id: str, event: ev.StepFailed) -> None:
        span = self._step_span(run_id, event.step_id, event.attempt, event.at, event.duration_s)
        span.set_status(Status(StatusCode.ERROR, event.error))
        attributes: dict[str, AttributeValue] = {
            "wayang.status": "timed_out" if event.timed_out else "failed",
            "wayang.final": event.final,
        }
        if event.exit_code is not None:
            attributes["wayang.exit_code"] = event.exit_code
        self._end(span, attributes, event.at)

    def _step_cancelled(self, run_id: str, event: ev.StepCancelled) -> None:
        span = self._step_span(run_id, event.step_id, event.attempt, event.at, 0.0)
        self._end(span, {"wayang.status": "cancelled"}, event.at)

    def _step_span(
        self, run_id: str, step_id: str, attempt: int, at: float, duration_s: float
    ) -> Span:
        started = self._run(run_id, at).steps.pop(step_id, at - duration_s)
        trace_id = trace_id_of(run_id)
        return self._start(
            f"step {step_id}",
            parent_context(trace_id, root_span_id_of(run_id)),
            (trace_id, attempt_span_id_of(run_id, step_id, attempt)),
            started,
            {"wayang.run_id": run_id, "wayang.step_id": step_id, "wayang.attempt": attempt},
        )

    def _run_ended(self, run_id: str, event: ev.RunFailed) -> None:
        run = self._runs.pop(run_id, None) or _RunTrace(UNKNOWN_WORKFLOW, event.at)
        attributes: dict[str, AttributeValue] = {
            "wayang.run_id": run_id,
            "wayang.workflow_id": run.workflow_id,
        }
        if run.parent:
            attributes["wayang.parent"] = run.parent
        ids = (trace_id_of(run_id), root_span_id_of(run_id))
        span = self._start(f"run {run.workflow_id}", Context(), ids, run.started_at, attributes)
        status = _RUN_ENDS[type(event)]
        if status == "failed":
            span.set_status(Status(StatusCode.ERROR, event.reason))
        end = max(event.at, run.started_at)  # RunFailed of old histories may lack its time
        self._end(span, {"wayang.status": status}, end)

    def _start(
        self,
        name: str,
        parent: Context,
        ids: tuple[int, int],
        started: float | None,
        attributes: Mapping[str, AttributeValue],
    ) -> Span:
        assert self._tracer is not None  # only called while on
        token = self._ids.choose(*ids)
        try:
            return self._tracer.start_span(
                name, parent, attributes=attributes, start_time=_ns(started)
            )
        finally:
            self._ids.release(token)

    @staticmethod
    def _end(span: Span, attributes: Mapping[str, AttributeValue], at: float) -> None:
        span.set_attributes(attributes)
        span.end(end_time=_ns(at))

    def _run(self, run_id: str, at: float) -> _RunTrace:
        run = self._runs.get(run_id)
        if run is None:  # adopted: this process never saw it start
            run = self._remember(run_id, _RunTrace(UNKNOWN_WORKFLOW, at))
        return run

    def _remember(self, run_id: str, run: _RunTrace) -> _RunTrace:
        self._runs[run_id] = run
        if len(self._runs) > self._max_runs:
            del self._runs[next(iter(self._runs))]
        return run

    # --- propagation, executors, requests and deliveries ---------------------------------------

    def traceparent(self, run_id: str, step_id: str, attempt: int) -> str | None:
        """The W3C ``traceparent`` of a step attempt's span; None when tracing is off."""
        if self._tracer is None:
            return None
        return traceparent_of(trace_id_of(run_id), attempt_span_id_of(run_id, step_id, attempt))

    def wrap(self, executor: Executor) -> Executor:
        """``executor`` with a span around each attempt when tracing is on; itself when off."""
        if self._tracer is None:
            return executor
        return TracingExecutor(executor, self._tracer)

    def span(
        self, name: str, *, trace_id: str = "", root: bool = False, **attributes: AttributeValue
    ) -> AbstractContextManager[Span]:
        """A span around a block (made current, so spans inside nest), recording an exception
        that leaves it. With ``trace_id`` (a run id or a delivery's trace id) it joins that
        trace, as its root span when ``root``. A no-op yielding an invalid span when off."""
        return self._span(name, trace_id, root, attributes)

    def _span(
        self, name: str, trace_id: str, root: bool, attributes: Mapping[str, AttributeValue]
    ) -> AbstractContextManager[Span]:
        if self._tracer is None:
            return nullcontext(INVALID_SPAN)
        if not trace_id:
            return self._tracer.start_as_current_span(name, attributes=attributes)
        ids = (trace_id_of(trace_id), root_span_id_of(trace_id))
        if not root:
            parent = parent_context(*ids)
            return self._tracer.start_as_current_span(name, parent, attributes=attributes)
        return use_span(self._start(name, Context(), ids, None, attributes), end_on_exit=True)

    def delivery_span(
        self, step: str, trace_id: str, *, delivery_id: str = "", attempt: int = 1
    ) -> AbstractContextManager[Span]:
        """The span of one delivery attempt to event step ``step``, in trace ``trace_id``."""
        attributes: dict[str, AttributeValue] = {
            "wayang.step": step,
            "wayang.trace_id": trace_id,
            "wayang.delivery_id": delivery_id,
            "wayang.attempt": attempt,
        }
        return self._span(f"delivery {step}", trace_id, False, attributes)

    async def traced_delivery(
        self, delivery: Delivery, attempt: Callable[[], Awaitable[DeliveryOutcome]]
    ) -> DeliveryOutcome:
        """Run a delivery attempt in its span (:meth:`delivery_span`), which records how it
        ended: ``wayang.status`` and, unless it succeeded, an error status with the reason."""
        if self._tracer is None:
            return await attempt()
        with self.delivery_span(
            delivery.step,
            delivery.trace_id,
            delivery_id=delivery.delivery_id,
            attempt=delivery.attempt,
        ) as span:
            outcome = await attempt()
            span.set_attribute("wayang.status", outcome.status)
            if outcome.status != "succeeded":
                span.set_status(Status(StatusCode.ERROR, outcome.error or outcome.status))
            return outcome


class TracingExecutor:
    """An executor that runs each attempt inside an ``executor <step_id>`` span, child of the
    attempt's span, and hands the step ``TRACEPARENT`` naming that span (a step that sets
    ``TRACEPARENT`` itself keeps its own). Made by :meth:`Tracing.wrap` only when tracing is on."""

    def __init__(self, executor: Executor, tracer: Tracer) -> None:
        self._executor = executor
        self._tracer = tracer

    async def execute(self, task: TaskSpec, log: LogSink) -> TaskResult:
        trace_id = trace_id_of(task.run_id)
        parent = parent_context(
            trace_id, attempt_span_id_of(task.run_id, task.step_id, task.attempt)
        )
        attributes: dict[str, AttributeValue] = {
            "wayang.run_id": task.run_id,
            "wayang.step_id": task.step_id,
            "wayang.attempt": task.attempt,
        }
        span = self._tracer.start_span(f"executor {task.step_id}", parent, attributes=attributes)
        header = traceparent_of(trace_id, span.get_span_context().span_id)
        traced = replace(task, env={"TRACEPARENT": header, **task.env})
        try:
            result = await self._executor.execute(traced, log)
        except asyncio.CancelledError:
            span.set_attribute("wayang.status", "cancelled")
            raise
        except Exception as exc:  # a bug in the executor: record it on the way out
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        else:
            _record_result(span, result)
            return result
        finally:
            span.end()


def _record_result(span: Span, result: TaskResult) -> None:
    span.set_attribute("wayang.status", result.status)
    if result.exit_code is not None:
        span.set_attribute("wayang.exit_code", result.exit_code)
    if result.status != "succeeded":
        span.set_status(Status(StatusCode.ERROR, result.error or result.status))


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    listed = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not listed:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    names = [name.strip() for name in listed.split(",") if name.strip() not in ("", "none")]
    unknown = sorted(set(names) - set(_EXPORTERS))
    if unknown:
        raise UsageError(
            f"OTEL_TRACES_EXPORTER={listed!r}: Wayang exports traces with "
            f"{', '.join(sorted(_EXPORTERS))} or none, not {', '.join(unknown)}"
        )
    return list(dict.fromkeys(names))


def _otlp_endpoint(environ: Mapping[str, str]) -> str | None:
    """The traces endpoint the variables name (the signal's own, or the base one plus
    ``/v1/traces``, as the specification says); None leaves the exporter's default."""
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
    if endpoint:
        return endpoint
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    return f"{base.rstrip('/')}/v1/traces" if base else None


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1_000_000_000)
