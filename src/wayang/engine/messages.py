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
    """A durable timer came due: ``kind`` is ``retry``, ``run-timeout``, ``wait-timeout``
    (an approval, negotiation, event or external step waited too long) or ``sleep``."""

    timer_id: str
    kind: str
    step_id: str | None = None
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class CancelRun:
    """Someone asked for the run to stop."""

    reason: str = "cancelled by request"


@dataclass(frozen=True, slots=True)
class NoteWorkspace:
    """The runtime did something to a workspace of the run; recorded as ``WorkspaceNoted``."""

    kind: str
    workspace_id: str
    path: str
    detail: str
    step_id: str = ""


@dataclass(frozen=True, slots=True)
class Wake:
    """Look again: after a restart, to schedule whatever is ready."""


@dataclass(frozen=True, slots=True)
class Signal:
    """A person's (or system's) input to a waiting step, from the store's signal inbox.

    ``kind``: approve, reject (approvals); offer, accept, decline (negotiations); complete
    (external steps). ``data`` holds ``comment``, ``fields``, ``terms`` or ``outputs``.
    """

    seq: int
    step_id: str
    kind: str
    actor: str
    roles: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicMessage:
    """A message published on a topic, offered to the run's event waits in ``seq`` order."""

    seq: int
    topic: str
    data: Any


@dataclass(frozen=True, slots=True)
class ChildFinished:
    """The run a subworkflow step started has ended."""

    step_id: str
    child_run_id: str
    status: str
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str = ""


Input = (
    TaskFinished
    | TimerFired
    | CancelRun
    | Wake
    | Signal
    | TopicMessage
    | ChildFinished
    | NoteWorkspace
)


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


@dataclass(frozen=True, slots=True)
class AnswerSignal:
    """Mark a signal handled (in the same transaction as the events it caused)."""

    seq: int
    status: str  # accepted | rejected
    outcome: str


@dataclass(frozen=True, slots=True)
class StartChildRun:
    """Start (or, after a restart, find) the run of a subworkflow step."""

    child_run_id: str
    step_id: str
    workflow: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CancelChildRun:
    child_run_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class PublishMessage:
    """Publish a message on a topic, durably with the decision's events (a step's ``emit``)."""

    step_id: str
    topic: str
    data: Any
    key: str = ""


Command = (
    DispatchTask
    | StartTimer
    | CancelTimer
    | StopTask
    | DeadLetter
    | AnswerSignal
    | StartChildRun
    | CancelChildRun
    | PublishMessage
)


@dataclass
class Decision:
    """The events to append and the commands to carry out once they are durable."""

    events: list[Event] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
