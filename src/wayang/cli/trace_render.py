"""``wayang logs --trace ID``: everything one trace caused, as a tree in causal order.

A trace starts where a message enters from outside (an API call, a cron fire, ``wayang emit``);
each message is handed to its subscribing steps as deliveries, whose log lines and emitted
messages hang below them, and so on down.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from wayang.cli.run_render import clock, iso_time, log_json
from wayang.errors import UsageError
from wayang.store.port import Delivery, LogLine, Store, TopicMessage

TRACE_PAGE = 10_000


@dataclass(frozen=True)
class Trace:
    trace_id: str
    messages: Sequence[TopicMessage]
    deliveries: Sequence[Delivery]
    logs: Sequence[LogLine]


def load_trace(store: Store, trace_id: str) -> Trace:
    messages = store.trace_messages(trace_id, limit=TRACE_PAGE)
    deliveries = store.list_deliveries(trace_id=trace_id, limit=TRACE_PAGE)
    logs = store.read_logs(trace_id, None, after_seq=0, limit=TRACE_PAGE)
    if not messages and not logs:
        raise UsageError(
            f"no trace {trace_id!r} in this store; 'wayang emit' and API calls print trace ids "
            "(the x-trace-id response header)"
        )
    return Trace(trace_id, messages, deliveries, logs)


def trace_lines(trace: Trace) -> Iterator[str]:
    """The tree, one line at a time."""
    tree = _Tree(trace)
    yield (
        f"trace {trace.trace_id}: {len(trace.messages)} messages, "
        f"{len(trace.deliveries)} deliveries"
    )
    yield from tree.trigger_logs()
    for message in tree.roots:
        yield from tree.message(message, 0)


class _Tree:
    def __init__(self, trace: Trace) -> None:
        self.by_message: dict[int, list[Delivery]] = defaultdict(list)
        for delivery in trace.deliveries:
            self.by_message[delivery.message_seq].append(delivery)
        self.children: dict[str, list[TopicMessage]] = defaultdict(list)
        self.roots: list[TopicMessage] = []
        for message in trace.messages:
            parent = message.source.removeprefix("delivery:")
            if message.source.startswith("delivery:"):
                self.children[parent].append(message)
            else:
                self.roots.append(message)
        self.delivered_steps = {d.step for d in trace.deliveries}
        self.logs = trace.logs

    def trigger_logs(self) -> Iterator[str]:
        for line in self.logs:
            if line.step_id not in self.delivered_steps:
                yield f"{clock(line.at)} {line.step_id} {line.stream} | {line.line}"

    def message(self, message: TopicMessage, depth: int) -> Iterator[str]:
        pad = "  " * depth
        yield f"{clock(message.created_at)} {pad}{message.source} -> {message.topic} #{message.seq}"
        for delivery in self.by_message.get(message.seq, []):
            yield from self.delivery(delivery, depth + 1)

    def delivery(self, delivery: Delivery, depth: int) -> Iterator[str]:
        pad = "  " * depth
        tries = f"{delivery.attempt} attempt{'s' if delivery.attempt != 1 else ''}"
        error = f": {delivery.error}" if delivery.error else ""
        head = f"{delivery.step} [{delivery.status}, {tries}]{error}"
        yield f"{clock(delivery.created_at)} {pad}{head}"
        end = delivery.finished_at if delivery.finished_at is not None else float("inf")
        for line in self.logs:
            if line.step_id == delivery.step and delivery.created_at <= line.at <= end:
                yield f"{clock(line.at)} {pad}  {line.stream} | {line.line}"
        for child in self.children.get(delivery.delivery_id, []):
            yield from self.message(child, depth + 1)


def trace_json(trace: Trace) -> dict[str, Any]:
    return {
        "trace_id": trace.trace_id,
        "messages": [
            {
                "seq": m.seq,
                "topic": m.topic,
                "data": m.data,
                "source": m.source,
                "at": iso_time(m.created_at),
            }
            for m in trace.messages
        ],
        "deliveries": [delivery_json(d) for d in trace.deliveries],
        "logs": [log_json(line) for line in trace.logs],
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.delivery_id,
        "step": delivery.step,
        "topic": delivery.topic,
        "message": delivery.message_seq,
        "trace_id": delivery.trace_id,
        "status": delivery.status,
        "attempts": delivery.attempt,
        "error": delivery.error,
        "created_at": iso_time(delivery.created_at),
        "finished_at": iso_time(delivery.finished_at),
    }
