"""A run's timeline (:class:`wayang.wire.RunTrace`) as an OTLP/JSON ``ExportTraceServiceRequest``.

The document is the protobuf JSON mapping that OTLP/HTTP accepts with ``Content-Type:
application/json``: ids in hex, times in nanoseconds as decimal strings, enums as numbers::

    {"resourceSpans": [{"resource": {"attributes": [service.name]},
                        "scopeSpans": [{"scope": {"name": "wayang"}, "spans": [...]}]}]}

One span for the run, then one child of it per span of the timeline. Ids, names and attribute
keys are those :mod:`wayang.observe.tracing` gives the spans it makes live, so an exported trace
lands in the same trace as the live one and its spans merge with theirs: the run is ``run
<workflow>`` with :func:`~wayang.observe.trace_ids.root_span_id_of`, a step attempt (and a wait
that has settled, which live tracing also names after its attempt) is ``step <step>`` with
:func:`~wayang.observe.trace_ids.attempt_span_id_of`. A wait still open has no live span yet and
takes :func:`~wayang.observe.trace_ids.wait_span_id_of`. A span still open ends at the run's end,
or at ``now`` while the run goes on, and says so with ``wayang.open = true``.

Pure functions of their arguments: nothing here reads the clock, a store or the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

from wayang import wire
from wayang.observe.trace_ids import (
    attempt_span_id_of,
    root_span_id_of,
    trace_id_of,
    wait_span_id_of,
)

Json: TypeAlias = dict[str, Any]
AttributeValue: TypeAlias = str | bool | int | float

SERVICE_NAME = "wayang"
SCOPE_NAME = "wayang"  # the name of the tracer live tracing makes its spans with
SPAN_KIND_INTERNAL = 1
STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2
OPEN_ATTRIBUTE = "wayang.open"
"""Set (true) on a span that had not ended when the trace was exported."""
KIND_ATTRIBUTE = "wayang.kind"
"""``attempt`` or ``wait``: the kind of the timeline's span."""

_NS_PER_S = 1_000_000_000


def trace_document(trace: wire.RunTrace, *, now: float, service_name: str = SERVICE_NAME) -> Json:
    """``trace`` as an OTLP/JSON ``ExportTraceServiceRequest``; spans still open end at the
    run's end, else at ``now`` (seconds since the epoch)."""
    end = trace.end if trace.end is not None else now
    spans = [run_span(trace, end), *(step_span(trace.run_id, span, end) for span in trace.spans)]
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attributes({"service.name": service_name})},
                "scopeSpans": [{"scope": {"name": SCOPE_NAME}, "spans": spans}],
            }
        ]
    }


def spans_of(document: Json) -> list[Json]:
    """Every span of an OTLP/JSON document (any number of resources and scopes)."""
    return [
        span
        for resource in document.get("resourceSpans", [])
        for scope in resource.get("scopeSpans", [])
        for span in scope.get("spans", [])
    ]


def run_span(trace: wire.RunTrace, end: float) -> Json:
    """The span of the run itself, the root of its trace, ending at ``end`` if still open."""
    still_open = trace.end is None
    start = trace.start
    if start is None:  # queued: not started yet
        start = min((span.start for span in trace.spans), default=end)
    values: dict[str, AttributeValue] = {
        "wayang.run_id": trace.run_id,
        "wayang.workflow_id": trace.workflow_id,
        "wayang.status": trace.status,
    }
    if still_open:
        values[OPEN_ATTRIBUTE] = True
    message = _run_failure(trace.spans) if trace.status == "failed" else ""
    return _span(
        trace_id=trace_id_of(trace.run_id),
        span_id=root_span_id_of(trace.run_id),
        parent_id=None,
        name=f"run {trace.workflow_id}",
        start=start,
        end=max(end, start),  # as live tracing: old histories may lack the end's time
        values=values,
        status=status_of(trace.status, message),
    )


def step_span(run_id: str, span: wire.SpanView, end: float) -> Json:
    """The span of one step attempt or wait of run ``run_id``, child of the run's span, ending
    at ``end`` if still open."""
    still_open = span.end is None
    if span.kind == "wait" and still_open:
        span_id = wait_span_id_of(run_id, span.step, span.attempt)
    else:
        span_id = attempt_span_id_of(run_id, span.step, span.attempt)
    values: dict[str, AttributeValue] = {
        "wayang.run_id": run_id,
        "wayang.step_id": span.step,
        "wayang.attempt": span.attempt,
        "wayang.status": span.status,
        KIND_ATTRIBUTE: span.kind,
    }
    if still_open:
        values[OPEN_ATTRIBUTE] = True
    return _span(
        trace_id=trace_id_of(run_id),
        span_id=span_id,
        parent_id=root_span_id_of(run_id),
        name=f"step {span.step}",
        start=span.start,
        end=span.end if span.end is not None else max(end, span.start),
        values=values,
        status=status_of(span.status, f"attempt {span.attempt} of step {span.step} failed"),
    )


def status_of(status: str, message: str) -> Json:
    """The OTLP status of a run or span in Wayang ``status``: ok when it succeeded, an error
    carrying ``message`` when it failed, unset otherwise (running, waiting, cancelled)."""
    if status == "succeeded":
        return {"code": STATUS_OK}
    if status == "failed":
        return {"code": STATUS_ERROR, "message": message}
    return {"code": STATUS_UNSET}


def attributes(values: dict[str, AttributeValue]) -> list[Json]:
    """``values`` as OTLP ``KeyValue`` objects, in their order."""
    return [{"key": key, "value": any_value(value)} for key, value in values.items()]


def any_value(value: AttributeValue) -> Json:
    """One OTLP ``AnyValue`` (64-bit integers are decimal strings in the JSON mapping)."""
    if isinstance(value, bool):  # before int: a bool is an int
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value}


def nanoseconds(seconds: float) -> str:
    """Seconds since the epoch as the decimal string of nanoseconds OTLP/JSON wants (rounded as
    live tracing rounds, so the same event gives the same time)."""
    return str(int(seconds * _NS_PER_S))


def _span(
    *,
    trace_id: int,
    span_id: int,
    parent_id: int | None,
    name: str,
    start: float,
    end: float,
    values: dict[str, AttributeValue],
    status: Json,
) -> Json:
    span: Json = {"traceId": f"{trace_id:032x}", "spanId": f"{span_id:016x}"}
    if parent_id is not None:
        span["parentSpanId"] = f"{parent_id:016x}"
    span |= {
        "name": name,
        "kind": SPAN_KIND_INTERNAL,
        "startTimeUnixNano": nanoseconds(start),
        "endTimeUnixNano": nanoseconds(end),
        "attributes": attributes(values),
        "status": status,
    }
    return span


def _run_failure(spans: Sequence[wire.SpanView]) -> str:
    """Why a failed run failed, as far as its timeline tells: the steps whose last span failed."""
    last: dict[str, str] = {}
    for span in spans:
        last[span.step] = span.status
    failed = [step for step, status in last.items() if status == "failed"]
    return f"a step failed ({', '.join(failed)})" if failed else "the run failed"


__all__ = [
    "KIND_ATTRIBUTE",
    "OPEN_ATTRIBUTE",
    "SCOPE_NAME",
    "SERVICE_NAME",
    "any_value",
    "attributes",
    "nanoseconds",
    "run_span",
    "spans_of",
    "status_of",
    "step_span",
    "trace_document",
]
