"""The events of a run's history, their persisted shapes, and upgrades of old shapes.

Every event is a frozen dataclass with a ``TYPE`` name. Persisted, it is ``(type, version, data)``;
:func:`from_record` rebuilds it, running the upgrade chain first when an old shape is read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from wayang.errors import WayangError

EVENT_VERSION = 1


class EventShapeError(WayangError):
    """A stored event has a type or shape this version of Wayang cannot read."""


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all events."""

    TYPE: ClassVar[str] = ""

    def to_data(self) -> dict[str, Any]:
        """The event's fields by name. Shallow on purpose: events are immutable and the data is
        encoded straight away, so the deep copy ``dataclasses.asdict`` makes is wasted."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    """A run began. It pins everything needed to rebuild its plan: the definition and inputs."""

    TYPE: ClassVar[str] = "RunStarted"
    workflow_id: str
    workflow_version: str
    source: str
    filename: str
    params: dict[str, Any]
    env: dict[str, str]
    env_overrides: dict[str, str]
    at: float
    timeout_s: float | None = None
    parallel: int = 0
    cwd: str = ""  # the run's workspace: where steps that inherit it run
    retry_of: str = ""  # the run this one retries, reusing its succeeded steps' outputs


@dataclass(frozen=True, slots=True)
class StepScheduled(Event):
    TYPE: ClassVar[str] = "StepScheduled"
    step_id: str
    attempt: int
    task_id: str
    idempotency_key: str
    at: float


@dataclass(frozen=True, slots=True)
class StepReused(Event):
    """A retried run took this step's outputs from the run it retries instead of running it."""

    TYPE: ClassVar[str] = "StepReused"
    step_id: str
    outputs: dict[str, Any]
    from_run: str
    at: float


@dataclass(frozen=True, slots=True)
class StepStarted(Event):
    TYPE: ClassVar[str] = "StepStarted"
    step_id: str
    attempt: int
    at: float


@dataclass(frozen=True, slots=True)
class StepSucceeded(Event):
    TYPE: ClassVar[str] = "StepSucceeded"
    step_id: str
    attempt: int
    outputs: dict[str, Any]
    duration_s: float
    at: float


@dataclass(frozen=True, slots=True)
class StepFailed(Event):
    """An attempt failed. ``final`` when no attempt follows (the step has failed for good)."""

    TYPE: ClassVar[str] = "StepFailed"
    step_id: str
    attempt: int
    error: str
    exit_code: int | None
    duration_s: float
    final: bool
    at: float
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class StepRetrying(Event):
    TYPE: ClassVar[str] = "StepRetrying"
    step_id: str
    next_attempt: int
    delay_s: float
    due_at: float
    at: float


@dataclass(frozen=True, slots=True)
class StepSkipped(Event):
    TYPE: ClassVar[str] = "StepSkipped"
    step_id: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class StepCancelled(Event):
    TYPE: ClassVar[str] = "StepCancelled"
    step_id: str
    attempt: int
    at: float


@dataclass(frozen=True, slots=True)
class RunCancelRequested(Event):
    TYPE: ClassVar[str] = "RunCancelRequested"
    reason: str
    at: float
    as_failure: bool = False  # a run timeout stops the run like a cancel, but it has failed


@dataclass(frozen=True, slots=True)
class RunSucceeded(Event):
    TYPE: ClassVar[str] = "RunSucceeded"
    at: float


@dataclass(frozen=True, slots=True)
class RunFailed(Event):
    TYPE: ClassVar[str] = "RunFailed"
    reason: str
    failed_steps: list[str] = field(default_factory=list)
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class RunCancelled(Event):
    TYPE: ClassVar[str] = "RunCancelled"
    reason: str
    at: float


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        RunStarted,
        StepScheduled,
        StepReused,
        StepStarted,
        StepSucceeded,
        StepFailed,
        StepRetrying,
        StepSkipped,
        StepCancelled,
        RunCancelRequested,
        RunSucceeded,
        RunFailed,
        RunCancelled,
    )
}

# (type, version) → function turning that shape into the next version's. Empty while every
# event is at version 1; each future change adds one small function with a docstring.
UPGRADES: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def from_record(type_name: str, version: int, data: Mapping[str, Any]) -> Event:
    """Rebuild an event from its stored ``(type, version, data)``, upgrading old shapes."""
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise EventShapeError(
            f"unknown event type {type_name!r}; was it written by a newer Wayang?"
        )
    if version > EVENT_VERSION:
        raise EventShapeError(
            f"{type_name} v{version} is newer than this Wayang reads (v{EVENT_VERSION})"
        )
    payload = dict(data)
    for step in range(version, EVENT_VERSION):
        payload = UPGRADES[(type_name, step)](payload)
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in payload.items() if k in names})
    except TypeError as exc:
        raise EventShapeError(f"cannot read {type_name}: {exc}") from None
