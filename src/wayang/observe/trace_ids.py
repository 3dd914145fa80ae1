"""Trace and span ids derived from Wayang ids, so every process names a run's spans alike.

A run's trace id is the first 16 bytes of ``sha256(run_id)`` and its root span id the next 8; a
step attempt's span id comes from ``sha256("run_id/step_id/attempt")``. A server that restarts, a
remote worker or the process that adopts a run therefore put their spans in the same trace, under
the same parents, without passing anything but the run id. Trace ids of deliveries (same form as
run ids) are derived the same way.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar, Token

from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from opentelemetry.trace.span import INVALID_SPAN_ID, INVALID_TRACE_ID

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def trace_id_of(key: str) -> int:
    """The 128-bit trace id of a run id or a delivery trace id."""
    return int.from_bytes(_digest(key)[:16]) or 1  # all zeros is the invalid id


def root_span_id_of(key: str) -> int:
    """The 64-bit id of the span at the root of ``key``'s trace (a run's span)."""
    return int.from_bytes(_digest(key)[16:24]) or 1


def attempt_span_id_of(run_id: str, step_id: str, attempt: int) -> int:
    """The 64-bit id of the span of one step attempt."""
    return int.from_bytes(_digest(f"{run_id}/{step_id}/{attempt}")[:8]) or 1


def wait_span_id_of(run_id: str, step_id: str, attempt: int) -> int:
    """The 64-bit id of the span of a step's wait still open (for a person, an event, a timer or
    a subworkflow), from a key no attempt span uses; once the wait settles, the step's span is
    :func:`attempt_span_id_of` of the settling attempt, as live tracing names it."""
    return int.from_bytes(_digest(f"{run_id}/{step_id}/{attempt}/wait")[:8]) or 1


def traceparent_of(trace_id: int, span_id: int) -> str:
    """The W3C ``traceparent`` header naming ``span_id`` as the parent, sampled."""
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def parent_context(trace_id: int, span_id: int) -> Context:
    """A context whose current span is a stand-in for a span made elsewhere (or not yet)."""
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=_SAMPLED)
    return set_span_in_context(NonRecordingSpan(parent), Context())


class ChosenIds(IdGenerator):
    """Random ids, except for the span started while :meth:`choose` holds a pair of ids.

    The SDK asks its id generator for a span's ids; this is the one way to give a span an id
    derived from a run. The choice lives in a context variable, so a span started at the same
    time on another thread or task still gets random ids.
    """

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._chosen: ContextVar[tuple[int, int]] = ContextVar(
            "wayang_chosen_ids", default=(INVALID_TRACE_ID, INVALID_SPAN_ID)
        )

    def choose(self, trace_id: int, span_id: int) -> Token[tuple[int, int]]:
        return self._chosen.set((trace_id, span_id))

    def release(self, token: Token[tuple[int, int]]) -> None:
        self._chosen.reset(token)

    def generate_trace_id(self) -> int:
        return self._chosen.get()[0] or self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        return self._chosen.get()[1] or self._random.generate_span_id()
