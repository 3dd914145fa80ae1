"""What the shell tells the core (inputs) and what the core asks of the shell (commands)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wayang.engine.events import Event

# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskFinished:
    """A worker finished an attempt: ``status`` is succeeded, failed or timed_out."""

    step_id: str
    attempt: int
    status: str
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    exit_code: int | None = None
    duration_s: float = 0.0
    started_at: float | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A durable timer came due: ``kind`` is ``retry`` or ``run-timeout``."""

    timer_id: str
    kind: str
    step_id: str | None = None
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class CancelRun:
    """Someone asked for the run to stop."""

    reason: str = "cancelled by request"


@dataclass(frozen=True, slots=True)
class Wake:
    """Look again: after a restart, to schedule whatever is ready."""


Input = TaskFinished | TimerFired | CancelRun | Wake


# --- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DispatchTask:
    """Hand an attempt to a worker."""

    task_id: str
    step_id: str
    attempt: int
    idempotency_key: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StartTimer:
    timer_id: str
    due_at: float
    kind: str
    step_id: str | None = None
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Remove a timer: it fired and was handled, or it is no longer wanted."""

    timer_id: str


@dataclass(frozen=True, slots=True)
class StopTask:
    """Stop a running attempt (SIGTERM, grace, SIGKILL for processes)."""

    task_id: str
    step_id: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An attempt exhausted its retries: keep it for inspection and replay."""

    step_id: str
    attempts: int
    error: str
    payload: dict[str, Any]


Command = DispatchTask | StartTimer | CancelTimer | StopTask | DeadLetter


@dataclass
class Decision:
    """The events to append and the commands to carry out once they are durable."""

    events: list[Event] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
