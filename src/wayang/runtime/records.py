"""Between engine values and store records: events, and the results of task attempts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wayang.engine import events as ev
from wayang.engine.messages import TaskFinished
from wayang.store.port import NewEvent, StoredEvent


def to_new_event(event: ev.Event) -> NewEvent:
    return NewEvent(event.TYPE, event.to_data(), ev.EVENT_VERSION)


def read_events(stored: Iterable[StoredEvent]) -> list[ev.Event]:
    """The engine events of a stored history, upgraded to the current shapes."""
    return [ev.from_record(record.type, record.version, record.data) for record in stored]


def result_record(finished: TaskFinished) -> dict[str, Any]:
    """What a worker stores as a task's result (``Store.complete``)."""
    return {
        "status": finished.status,
        "outputs": finished.outputs,
        "error": finished.error,
        "exit_code": finished.exit_code,
        "duration_s": finished.duration_s,
        "started_at": finished.started_at,
    }


def finished_from_record(step_id: str, attempt: int, result: dict[str, Any]) -> TaskFinished:
    """The engine input a stored task result stands for."""
    return TaskFinished(
        step_id,
        attempt,
        str(result.get("status", "failed")),
        dict(result.get("outputs") or {}),
        result.get("error"),
        result.get("exit_code"),
        float(result.get("duration_s") or 0.0),
        result.get("started_at"),
    )
